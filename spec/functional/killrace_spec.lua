-- A daemon on its way out (it answered `orch kill`, or a SIGTERM stopped its
-- processes) closes its socket first and drops its pid-file lock only when
-- it exits, after a last fsync of the state file. A verb meanwhile must not
-- take the lock it still holds for a live orch that will answer: it waits
-- for that daemon to be gone, then starts a new one. strace stretches that
-- last fsync to seconds, so the window is there every time.
local H = require("helpers")
local uv = require("luv")

describe("a daemon on its way out", function()
  local dir, home
  H.each_test(function(d, h) dir, home = d, h end)

  -- strace follows the daemons here until they exit: H.traced_env
  local function json(args, timeout) return H.json(home, args, { cwd = dir, timeout = timeout, env = H.traced_env() }) end

  -- Every fsync of the daemon waits delay_ms (strace attached to it).
  local function slow_fsync(daemon, delay_ms)
    finally(H.strace_daemon(daemon, dir .. "/trace", { "-e", "trace=openat,fsync,fdatasync",
      "-e", "inject=fsync,fdatasync:delay_enter=" .. delay_ms * 1000 }, function() json({ "list" }) end))
  end

  -- Whether the control socket refuses connections (nobody listens, or the
  -- socket file is gone).
  local function refused()
    local pipe, result = uv.new_pipe(false), nil
    pipe:connect(home .. "/orch.sock", function(err) result = err or "connected" end)
    H.wait_until(function() return result end, 5000, "a connection attempt to end")
    pipe:close()
    return result == "ECONNREFUSED" or result == "ENOENT"
  end

  it("`orch kill` returns once the daemon has exited; the next verb starts a new daemon at once", function()
    assert.are.equal(0, select(2, json({ "start", "sleep", "--name", "nap", "--", "1000" })))
    local old = tonumber(H.read(home .. "/daemon.pid"))
    slow_fsync(old, 1500)
    local killed, code, err = json({ "kill" }, 60000)
    assert.are.equal(0, code, err)
    assert.is_true(killed.stopped)
    assert.is_false(H.alive(old), "orch kill returned while the daemon (pid " .. old .. ") still ran")
    -- well below the 30 s a CLI waited for the old daemon to answer
    local pong, pcode, perr = json({ "ping" }, 20000)
    assert.are.equal(0, pcode, perr)
    assert.are_not.equal(old, pong.pid)
  end)

  it("a verb that finds the daemon exiting (SIGTERM) waits for it to be gone, then starts a new one", function()
    assert.are.equal(0, select(2, json({ "start", "sleep", "--name", "nap", "--", "1000" })))
    local old = tonumber(H.read(home .. "/daemon.pid"))
    slow_fsync(old, 1500)
    assert(uv.kill(old, "sigterm"))
    -- its socket closed, its lock still held: its last fsync takes seconds
    H.wait_until(function() return refused() end, 20000, "the daemon to close its socket")
    assert.is_true(H.alive(old), "the daemon exited before the verb ran: no race to test")
    local pong, code, err = json({ "ping" }, 20000)
    assert.are.equal(0, code, err)
    assert.are_not.equal(old, pong.pid)
    assert.is_false(H.alive(old))
  end)
end)
