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
    -- (LeakSanitizer, in an ASan build, cannot work under ptrace)
    local out = H.sh(string.format("ORCH_HOME=%s ASAN_OPTIONS=\"${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0\" "
      .. "strace -qq -o %s -e trace=connect,nanosleep,clock_nanosleep %s ping 2>&1; echo status $?", home, trace, H.bin))
    assert.matches("status 0", out)
    assert.matches("daemon, 0 processes", out)
    local text = assert(H.read(trace))
    local _, connects = text:gsub("connect%(", "")
    local _, sleeps = text:gsub("nanosleep%(", "")
    assert.are.equal(0, sleeps, text)
    assert.is_true(connects >= 1 and connects <= 3, connects .. " connect() calls:\n" .. text)
  end)
end)

describe("recovery after a daemon crash", function()
  local dir, home
  H.each_test(function(d, h) dir, home = d, h end)

  -- The new daemon used to stop the leftovers first (polling their groups
  -- every 10 ms) and open its socket only then: with kill_timeout 8000 the
  -- CLI that started it waited 8 s for a ping.
  it("answers ping at once while a leftover with a long kill_timeout is stopped, and kills it after that", function()
    local file = H.ecosystem(dir, [[
      { name = "stubborn", script = "sh", args = { "-c", "trap '' INT; exec sleep 1000" }, kill_timeout = 8000 },
    ]])
    local started, code, err = H.json(home, { "start", file }, { cwd = dir })
    assert.are.equal(0, code, err)
    local old_pid = started.processes[1].pid
    H.track(old_pid)
    H.wait_until(function() return H.read("/proc/" .. old_pid .. "/comm") == "sleep\n" end, 5000,
      "the app to ignore SIGINT")
    local old_daemon = tonumber(H.read(home .. "/daemon.pid"))
    uv.kill(old_daemon, "sigkill")
    H.wait_until(function() return not H.alive(old_daemon) end, 5000, "the daemon to die")

    local t0 = uv.hrtime()
    local pong
    pong, code, err = H.json(home, { "ping" })
    local ping_ms = (uv.hrtime() - t0) / 1e6
    assert.are.equal(0, code, err)
    assert.is_true(ping_ms < 3000, "ping answered after " .. ping_ms .. " ms")
    assert.is_true(pong.recovering)
    assert.is_true(H.alive(old_pid), "SIGINT is ignored: the leftover waits for its kill_timeout")

    -- the next verb waits until the leftover is gone, then sees the app again
    local out
    code, out, err = H.orch_sync({ "list", "--json" }, { home = home, timeout = 30000 })
    local list_ms = (uv.hrtime() - t0) / 1e6
    assert.are.equal(0, code, err)
    assert.is_false(H.alive(old_pid))
    assert.is_true(list_ms >= 7000, "the leftover was gone after " .. list_ms .. " ms, before its kill_timeout")
    assert.is_true(list_ms < 20000, "list answered after " .. list_ms .. " ms")
    local list = require("cjson").decode(out)
    assert.are.equal(1, #list)
    assert.are.equal("online", list[1].status)
    assert.are_not.equal(old_pid, list[1].pid)
    assert.is_false(H.json(home, { "ping" }).recovering)
  end)
end)

describe("stopping a tree", function()
  local dir, home
  H.each_test(function(d, h) dir, home = d, h end)

  -- A stop used to signal raw pids from a snapshot (kill(pid, sig)), which
  -- a recycled pid could receive. strace, attached to the daemon, shows
  -- how the tree is signalled: the group by its id while the main process
  -- is unreaped (the group cannot be another's then), the rest through
  -- pidfds; never kill() of a single pid. (That a recycled pid is spared
  -- follows from pidfds naming one process; this shows they are used.)
  it("signals the processes of a tree through pidfds, never by raw pid", function()
    local file = H.ecosystem(dir, [[
      { name = "tree", script = "sh", args = { "-c", "setsid sleep 1001 & sleep 1002 & wait" },
        kill_signal = "SIGTERM", kill_timeout = 5000 },
    ]])
    local started, code, err = H.json(home, { "start", file }, { cwd = dir })
    assert.are.equal(0, code, err)
    local main = started.processes[1].pid
    H.track(main)
    local pids
    H.wait_until(function()
      pids = H.app_pids(home, "tree")
      return #pids == 3
    end, 5000, "sh and its two sleeps")
    for _, pid in ipairs(pids) do H.track(pid) end
    local daemon = tonumber(H.read(home .. "/daemon.pid"))
    local trace = dir .. "/stop.trace"
    local strace_err = ""
    local errpipe = uv.new_pipe(false)
    local strace, spid = uv.spawn("strace", {
      args = { "-p", tostring(daemon), "-e", "trace=kill,pidfd_open,pidfd_send_signal", "-o", trace },
      stdio = { nil, nil, errpipe },
    }, function() end)
    assert(strace, spid)
    errpipe:read_start(function(_, data) if data then strace_err = strace_err .. data end end)
    local ok, perr = pcall(function()
      H.wait_until(function() return strace_err:match("attached") end, 5000, "strace to attach")
      local stop_code, _, stop_err = H.orch_sync({ "stop", "tree" }, { home = home })
      assert.are.equal(0, stop_code, stop_err)
    end)
    uv.kill(spid, "sigint") -- detaches
    H.wait_until(function() return not H.exists(spid) or not H.alive(spid) end, 5000, "strace to detach")
    errpipe:close()
    strace:close()
    assert(ok, perr)
    for _, pid in ipairs(pids) do assert.is_false(H.alive(pid), "pid " .. pid .. " outlived the stop") end
    local text = assert(H.read(trace))
    assert.matches("kill%(%-" .. main .. ", SIGTERM%)", text)
    assert.matches("pidfd_send_signal%(%d+, SIGTERM", text)
    for pid in text:gmatch("kill%((%d+),") do
      error("a raw pid was signalled: kill(" .. pid .. ", ...)\n" .. text)
    end
  end)
end)

describe("core.pidfd", function()
  local dir, home
  H.each_test(function(d, h) dir, home = d, h end)

  -- What recovery relies on to never signal a recycled pid: a pidfd is
  -- taken only for the process that has the recorded start time; signals
  -- go through it, and its exit is an event.
  it("holds only the process with the given start time, signals it and reports its exit", function()
    local script = H.write(dir .. "/pidfd.lua", [[
      local uv, core = require("luv"), require("orch.core")
      local child = uv.spawn("sleep", { args = { "1000" } }, function() end)
      local pid = child:get_pid()
      local start = assert(core.proc_starttime(pid))
      local _, err, code = core.pidfd(pid, start + 1)
      print("recycled:", code, err)
      local h = assert(core.pidfd(pid, start))
      h:on_exit(function() print("exited:", h:exited()) h:close() child:close() end)
      print("signal:", h:signal(core.signum("SIGTERM")))
      uv.run()
    ]])
    local code, out, err = H.orch_sync({ "lua", script }, { home = home })
    assert.are.equal(0, code, err)
    assert.matches("recycled:\tESRCH\tESRCH: no such process\n", out, 1, true)
    assert.matches("signal:\ttrue\n", out, 1, true)
    assert.matches("exited:\ttrue\n", out, 1, true)
  end)
end)
