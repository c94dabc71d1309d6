-- The daemon's life cycle driven by events, not polling: its start (a
-- readiness fd), its recovery after a crash (pidfds on what the old one
-- left, the socket served at once), and stops (pidfds for the snapshot).
local H = require("helpers")
local uv = require("luv")

describe("daemon start", function()
  local dir, home
  H.each_test(function(d, h) dir, home = d, h end)

  -- The CLI used to retry connect() every 2 ms for 10 s: a daemon that died
  -- at start was reported only then, as "did not answer".
  it("reports a daemon that fails at start at once, with the daemon's own message", function()
    assert(uv.fs_mkdir(home, tonumber("700", 8)))
    assert(uv.fs_mkdir(home .. "/daemon.pid", tonumber("700", 8))) -- the lock cannot be taken
    local t0 = uv.hrtime()
    local o = H.orch({ "ping" }, { home = home })
    assert.are.equal(1, o:wait_exit(8000))
    local ms = (uv.hrtime() - t0) / 1e6
    assert.is_true(ms < 5000, "reported after " .. ms .. " ms")
    assert.matches("exited at start: orch daemon: cannot lock .*/daemon%.pid: EISDIR", o.err)
  end)

  it("refuses an unknown argument of orch daemon", function()
    local code, _, err = H.orch_sync({ "daemon", "--bogus" }, { home = home })
    assert.are.equal(2, code)
    assert.matches("orch daemon: unknown argument '%-%-bogus'", err)
    code, _, err = H.orch_sync({ "daemon", "--ready-fd", "x" }, { home = home })
    assert.are.equal(2, code)
    assert.matches("%-%-ready%-fd: expected a file descriptor number >= 3, got 'x'", err)
  end)

  -- strace follows the CLI only (no -f, not the daemon): it never sleeps,
  -- and it connects at most three times: finding no daemon, after taking
  -- the start lock, and once the daemon said it is ready.
  it("waits for a new daemon on its readiness fd, not by retrying connect", function()
    local trace = dir .. "/connect.trace"
    local out = H.sh(string.format("ORCH_HOME=%s strace -qq -o %s -e trace=connect,nanosleep,clock_nanosleep %s ping 2>&1;"
      .. " echo status $?", home, trace, H.bin))
    assert.matches("status 0", out)
    assert.matches("daemon, 0 processes", out)
    local text = assert(H.read(trace))
    local _, connects = text:gsub("connect%(", "")
    local _, sleeps = text:gsub("nanosleep%(", "")
    assert.are.equal(0, sleeps, text)
    assert.is_true(connects >= 1 and connects <= 3, connects .. " connect() calls:\n" .. text)
  end)
end)
