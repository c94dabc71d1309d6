-- orch update: the daemon re-executes itself from the binary now on disk,
-- in place (same pid), and every process goes on: same pid, restart count,
-- uptime, log lines without a gap, IPC channel; a pending restart delay
-- is kept. A binary that cannot take over leaves the daemon as it was.
-- Each test runs the daemon from a copy of the build's binary in its own
-- directory, so that it can replace "the binary on disk".
local H = require("helpers")
local uv = require("luv")
H.need("node")

local apps = H.root .. "/spec/fixtures/apps"

describe("orch update", function()
  local dir, home, bin
  local opened = H.closed_after_each()
  H.each_test(function(d, h)
    dir, home = d, h
    bin = dir .. "/bin/orch"
    H.sh(string.format("mkdir -p '%s/bin' && cp '%s' '%s'", dir, H.bin, bin))
  end)

  -- orch ARGS with the copy: decoded --json output, exit status, stderr.
  local function orch(args, env)
    local full = { "--json" }
    for _, a in ipairs(args) do table.insert(full, #full, a) end
    local code, out, err = H.orch_sync(full, { home = home, cwd = dir, program = bin, env = env, timeout = 60000 })
    local ok, v = pcall(require("cjson").decode, out)
    return ok and v or nil, code, err
  end

  -- Replaces the binary on disk as an install does: a new file renamed
  -- over the old one (the running image keeps the old inode).
  local function replace_binary(content_from, mode)
    H.sh(string.format("cp '%s' '%s.new' && chmod %s '%s.new' && mv '%s.new' '%s'", content_from, bin,
      mode or "755", bin, bin, bin))
  end

  -- Puts on disk, as an install does, a build that fails while it takes
  -- over: this binary run with Lua sources whose orch.MODULE has PATTERN
  -- replaced by REPL (once: the edit must apply). Returns a copy of the
  -- good binary, to run the CLI from and to put back.
  local function install_failing_build(module, pattern, repl)
    local lua = dir .. "/badlua"
    H.sh(string.format("rm -rf '%s' && cp -r '%s/lua' '%s'", lua, H.root, lua))
    local f = lua .. "/orch/" .. module .. ".lua"
    local text, n = H.read(f):gsub(pattern, repl, 1)
    assert.are.equal(1, n, "the edit of " .. f)
    H.write(f, text)
    local real, good = dir .. "/bin/orch.real", dir .. "/bin/orch.good"
    H.sh(string.format("cp '%s' '%s' && cp '%s' '%s'", bin, real, bin, good))
    H.write(dir .. "/wrapper", string.format("#!/bin/sh\nORCH_LUA_DIR='%s' exec '%s' \"$@\"\n", lua, real), "755")
    replace_binary(dir .. "/wrapper")
    return good
  end

  local function by_name()
    local t = {}
    for _, p in ipairs(assert(orch({ "list" }))) do t[p.name .. ":" .. p.id] = p end
    -- when each started (PM2's pm_uptime, wall time in ms)
    local _, out = H.orch_sync({ "jlist" }, { home = home, program = bin })
    for _, p in ipairs(require("cjson").decode(out)) do t[p.name .. ":" .. p.pm_id].since = p.pm2_env.pm_uptime end
    return t
  end

  local function daemon_pid() return tonumber(H.read(home .. "/daemon.pid")) end

  -- web's two processes online: the list by name, else false
  local function both_online()
    local l = by_name()
    return l["web:0"].status == "online" and l["web:1"].status == "online" and l
  end

  -- n workers of app listening on its (first) cluster socket
  local function wait_listening(app, n, what)
    H.wait_until(function()
      local v = orch({ "describe", app })
      local cl = v and (v[1] or v).cluster
      return cl and cl[1] and cl[1].workers == n
    end, 15000, what)
  end

  it("keeps every process running: pids, restart counts, uptimes, log lines, IPC, a pending restart delay",
    function()
    H.ecosystem(dir, string.format([[
      { name = "ticker", script = "node", args = { "-e",
        "let i = 0; setInterval(() => console.log('tick ' + (++i)), 1)" } },
      { name = "ipc", script = %q },
      -- the delay must outlast the wait for late's exit, the new binary's
      -- check and the exec even on a loaded machine (6 s did not, once)
      { name = "late", script = "sh", restart_delay = 15000, args = { "-c",
        "if [ -e ran ]; then exec sleep 1000; fi; while [ ! -e go ]; do sleep 0.05; done; touch ran; exit 1" } },
    ]], apps .. "/ipc_node.js"))
    local _, code, err = orch({ "start", "ecosystem.lua" })
    assert.are.equal(0, code, err)
    H.wait_until(function()
      local l = by_name()
      return l["ticker:0"].status == "online" and l["ipc:1"].status == "online" and l["late:2"].status == "online"
    end, 15000, "every app online")
    -- a restart counted before the update stays counted
    assert.are.equal(0, select(2, orch({ "restart", "ipc" })))
    H.wait_until(function() local p = by_name()["ipc:1"] return p.status == "online" and p.restarts == 1 end,
      15000, "ipc restarted once")
    H.wait_until(function() return by_name()["ipc:1"].uptime_ms > 400 end, 10000, "ipc up for a while")
    local before = by_name()
    local daemon = daemon_pid()
    assert.are.equal(0, before["late:2"].restarts)
    H.wait_until(function() return #H.ticks(H.read(home .. "/logs/ticker-out.log") or "") > 50 end, 10000,
      "ticks in the log")
    replace_binary(H.bin)
    -- late exits now: its restart is pending during the update
    H.write(dir .. "/go", "")
    H.wait_until(function() return by_name()["late:2"].status == "waiting restart" end, 15000, "late to wait")
    local res, ucode, uerr = orch({ "update" })
    assert.are.equal(0, ucode, uerr)
    assert.are.equal(daemon, res.pid_now)
    assert.are.equal(3, res.processes)
    assert.are.equal(daemon, daemon_pid())
    local after = by_name()
    for _, k in ipairs({ "ticker:0", "ipc:1" }) do
      assert.are.equal(before[k].pid, after[k].pid, k)
      assert.are.equal(before[k].restarts, after[k].restarts, k)
      assert.are.equal("online", after[k].status, k)
      -- the uptime goes on from where it was (not from the update)
      -- (computed from the monotonic start and the wall clock at the time of
      -- the listing: a few ms either way; a reset would be >= 300 ms off)
      assert.is_true(math.abs(before[k].since - after[k].since) <= 100, k)
      assert.is_true(after[k].uptime_ms > before[k].uptime_ms, k)
    end
    assert.are.equal(1, after["ipc:1"].restarts)
    -- the restart delay is still pending, and it ends when it was due
    assert.are.equal("waiting restart", after["late:2"].status)
    H.wait_until(function() return by_name()["late:2"].status == "online" end, 40000, "late's delayed restart")
    assert.are.equal(1, by_name()["late:2"].restarts)
    -- the log goes on without a gap across the exec
    local n0 = #H.ticks(H.read(home .. "/logs/ticker-out.log"))
    H.wait_until(function() return #H.ticks(H.read(home .. "/logs/ticker-out.log")) > n0 + 50 end, 10000,
      "more ticks")
    local ticks = H.ticks(H.read(home .. "/logs/ticker-out.log"))
    assert.are.equal(1, ticks[1])
    assert.is_true(H.consecutive(ticks))
    -- the IPC channel still works both ways
    assert.are.equal(0, (H.orch_sync({ "eval", "got = {} orch.on('message', function(p, m) got[#got + 1] = m end)" },
      { home = home, program = bin })))
    local sent, scode, serr = orch({ "send", "ipc", '{"ping": 7}' })
    assert.are.equal(0, scode, serr)
    assert.are.equal(1, #sent.sent)
    H.wait_until(function()
      local _, o = H.orch_sync({ "eval", "got[#got] and got[#got].pong" }, { home = home, program = bin })
      return o == "7\n"
    end, 5000, "ipc's reply")
  end)

  -- One app that ticks into its log; returns its pid and the daemon's.
  local function one_ticker()
    H.ecosystem(dir, [[ { name = "ticker", script = "node", args = { "-e",
        "let i = 0; setInterval(() => console.log('tick ' + (++i)), 1)" } }, ]])
    local _, code, err = orch({ "start", "ecosystem.lua" })
    assert.are.equal(0, code, err)
    local pid = H.wait_until(function() local p = by_name()["ticker:0"] return p.status == "online" and p.pid end,
      15000, "ticker online")
    return pid, daemon_pid()
  end

  -- The daemon still serves, with the same process, and its log goes on.
  local function unchanged(pid, daemon)
    assert.are.equal(daemon, daemon_pid())
    local p = by_name()["ticker:0"]
    assert.are.equal(pid, p.pid)
    assert.are.equal("online", p.status)
    assert.are.equal(0, p.restarts)
    local n0 = #H.ticks(H.read(home .. "/logs/ticker-out.log"))
    H.wait_until(function() return #H.ticks(H.read(home .. "/logs/ticker-out.log")) > n0 + 20 end, 10000,
      "more ticks")
    assert.is_true(H.consecutive(H.ticks(H.read(home .. "/logs/ticker-out.log"))))
  end

  it("refuses a replacement binary that cannot start, and the daemon goes on as it was", function()
    local pid, daemon = one_ticker()
    H.write(dir .. "/broken", "#!/bin/sh\necho 'this build is broken' >&2\nexit 1\n", "755")
    local good = dir .. "/bin/orch.good"
    H.sh(string.format("cp '%s' '%s'", bin, good))
    replace_binary(dir .. "/broken")
    local code, _, err = H.orch_sync({ "update" }, { home = home, cwd = dir, program = good, timeout = 60000 })
    assert.are.equal(1, code)
    assert.matches("orch update: " .. dir:gsub("%p", "%%%0") .. "/bin/orch refused to take over %(exit 1%): "
      .. "this build is broken; the daemon goes on as it was", err)
    replace_binary(good)
    unchanged(pid, daemon)
  end)

  it("refuses a binary that does not read the handover format, naming both", function()
    local code, out, err = H.orch_sync({ "--handover-check", "99" }, { home = home, program = bin })
    assert.are.equal(1, code)
    assert.are.equal("", out)
    assert.matches("reads handover formats 1 to %d+, not 99: it cannot take over that daemon", err)
    code, out = H.orch_sync({ "--handover-check", "1" }, { home = home, program = bin })
    assert.are.equal(0, code)
    assert.matches("^ok %S+\n$", out)
  end)

  it("goes back to the previous binary when the new one fails while taking over", function()
    local pid, daemon = one_ticker()
    -- a build whose takeover raises
    local good = install_failing_build("takeover", "function M.restore%(engine, doc%)\n",
      "%0  error('this build cannot take over')\n")
    local code, _, err = H.orch_sync({ "update" }, { home = home, cwd = dir, program = good, timeout = 60000 })
    assert.are.equal(1, code)
    assert.matches("the new binary did not take over: .*this build cannot take over; the daemon goes on as it was",
      err)
    assert.matches("going back to the previous binary", H.read(home .. "/daemon.log"))
    replace_binary(good)
    unchanged(pid, daemon)
    -- and a good binary takes over after that
    local res, ucode, uerr = orch({ "update" })
    assert.are.equal(0, ucode, uerr)
    assert.are.equal(daemon, res.pid_now)
    unchanged(pid, daemon)
  end)

  -- HTTP load on the port (spec/fixtures/apps/http_load.py) until stop():
  -- lines() is what it printed so far ("keep PID", "close PID" or
  -- "ERR ..."), one per request; stop() ends it and returns them all.
  local function load(port, modes)
    local stopfile, out, done = dir .. "/stop-load", {}, false
    os.remove(stopfile)
    local pipe, buf = uv.new_pipe(false), ""
    local handle, pid = uv.spawn("python3", { args = { H.root .. "/spec/fixtures/apps/http_load.py", tostring(port),
      stopfile, modes }, stdio = { nil, pipe, 2 }, detached = true }, function() done = true end)
    assert(handle, pid)
    H.track(pid) -- its own group (detached), killed after the test if it still runs
    opened[#opened + 1], opened[#opened + 2] = pipe, handle
    pipe:read_start(function(_, data)
      if not data then return end
      buf = buf .. data
      for line in buf:gmatch("([^\n]*)\n") do out[#out + 1] = line end
      buf = buf:match("[^\n]*$")
    end)
    local function stop()
      H.write(stopfile, "")
      H.wait_until(function() return done end, 60000, "the load to end")
      H.wait_until(function() return not pipe:is_active() end, 5000, "the load's output")
      return out
    end
    return function() return out end, stop
  end

  -- Lines from..to of the load's output: the pids that answered per mode, and the failures.
  local function answers(lines, from, to)
    local pids, errors = { keep = {}, close = {} }, {}
    for i = from, to or #lines do
      local mode, pid = lines[i]:match("^(%a+) (%d+)$")
      if mode and pids[mode] then pids[mode][tonumber(pid)] = (pids[mode][tonumber(pid)] or 0) + 1
      else errors[#errors + 1] = lines[i] end
    end
    return pids, errors
  end

  local function count(t) local n = 0 for _, v in pairs(t) do n = n + v end return n end

  -- Apps whose sockets orch holds: Node cluster apps (round-robin: orch
  -- accepts and hands each connection over; shared: the workers accept on
  -- orch's socket), one on its app's `listen` socket, and a socket-activated
  -- fork app (LISTEN_FDS).
  local node = H.root .. "/bench/apps/hello.js"
  local cases = {
    { what = "a Node cluster app (round-robin)", rr = true, app = [[ script = %q, exec_mode = "cluster",
      instances = 2, balance = "round-robin", env = { PORT = "%d", HOST = "127.0.0.1" } ]], script = node },
    { what = "a Node cluster app (shared)", app = [[ script = %q, exec_mode = "cluster", instances = 2,
      balance = "shared", env = { PORT = "%d", HOST = "127.0.0.1" } ]], script = node },
    { what = "a Node cluster app on its `listen` socket (round-robin)", rr = true, app = [[ script = %q,
      exec_mode = "cluster", instances = 2, listen = "tcp://127.0.0.1:%d",
      env = { PORT = "%d", HOST = "127.0.0.1" } ]], script = node, twice = true },
    { what = "a socket-activated app", app = [[ script = %q, instances = 2, listen = "tcp://127.0.0.1:%d" ]],
      script = apps .. "/activated_server.py" },
  }
  for _, case in ipairs(cases) do
    local rr = case.rr
    it("carries " .. case.what .. " across the update under load: no request fails, same "
      .. "processes, restart counts, connections still balanced, reload works after", function()
      local port = H.free_port()
      H.ecosystem(dir, "{ name = \"web\", " .. string.format(case.app, case.script, port, case.twice and port or nil)
        .. " },")
      local _, code, err = orch({ "start", "ecosystem.lua" })
      assert.are.equal(0, code, err)
      H.wait_until(both_online, 15000, "web online")
      -- a restart counted before the update stays counted
      local victim = by_name()["web:1"].pid
      uv.kill(victim, "sigkill")
      H.wait_until(function()
        local l = both_online()
        return l and l["web:1"].pid ~= victim and l["web:1"].restarts == 1
      end, 15000, "web:1 restarted")
      local before, daemon = by_name(), daemon_pid()
      local workers = { [before["web:0"].pid] = true, [before["web:1"].pid] = true }
      local lines, stop = load(port)
      H.wait_until(function()
        local pids = answers(lines(), 1)
        return count(pids.keep) >= 20 and count(pids.close) >= 20
      end, 20000, "both kinds of clients answered")
      replace_binary(H.bin)
      local res, ucode, uerr = orch({ "update" })
      assert.are.equal(0, ucode, uerr)
      assert.are.equal(daemon, res.pid_now)
      local at = #lines()
      -- the load goes on through the new daemon: both kinds of clients, and
      -- new connections spread over both workers (round-robin: orch's balancer)
      H.wait_until(function()
        local pids = answers(lines(), at + 1)
        local spread = not rr or (pids.close[before["web:0"].pid] or 0) >= 5
          and (pids.close[before["web:1"].pid] or 0) >= 5
        return count(pids.keep) >= 40 and count(pids.close) >= 40 and spread
      end, 30000, "requests answered after the update")
      local all = stop()
      local pids, errors = answers(all, 1)
      assert.are.same({}, errors)
      for _, kind in ipairs({ "keep", "close" }) do
        for pid in pairs(pids[kind]) do assert.is_true(workers[pid], kind .. " answered by " .. pid) end
      end
      assert.are.equal(daemon, daemon_pid())
      local after = by_name()
      for _, k in ipairs({ "web:0", "web:1" }) do
        assert.are.equal(before[k].pid, after[k].pid, k)
        assert.are.equal(before[k].restarts, after[k].restarts, k)
        assert.are.equal("online", after[k].status, k)
      end
      if rr then
        local view = assert(orch({ "describe", "web" }))
        local cl = (view[1] or view).cluster
        assert.are.equal(2, cl[1].workers, require("cjson").encode(cl))
      end
      -- a reload after the update replaces both workers, which serve
      local _, rcode, rerr = orch({ "reload", "web" })
      assert.are.equal(0, rcode, rerr)
      local l = H.wait_until(both_online, 30000, "web reloaded")
      assert.is_nil(workers[l["web:0"].pid])
      assert.is_nil(workers[l["web:1"].pid])
      local lines2, stop2 = load(port, "close,close")
      H.wait_until(function() return count(answers(lines2(), 1).close) >= 20 end, 20000, "answers after the reload")
      local p2, e2 = answers(stop2(), 1)
      assert.are.same({}, e2)
      for pid in pairs(p2.close) do assert.is_true(pid == l["web:0"].pid or pid == l["web:1"].pid, pid) end
    end)
  end

  it("goes back to the previous binary with a cluster app's sockets when the new one cannot rebuild them",
    function()
    local port = H.free_port()
    H.ecosystem(dir, string.format([[ { name = "web", script = %q, exec_mode = "cluster", instances = 2,
      balance = "round-robin", env = { PORT = "%d", HOST = "127.0.0.1" } }, ]], node, port))
    local _, code, err = orch({ "start", "ecosystem.lua" })
    assert.are.equal(0, code, err)
    local before = H.wait_until(both_online, 15000, "web online")
    -- online comes before a worker's listen: wait for the balancer to hold
    -- the socket with both workers, or the takeover has no socket to rebuild
    wait_listening("web", 2, "both workers listening")
    local daemon = daemon_pid()
    -- a build that cannot duplicate a socket while it takes the cluster over
    -- (as when out of descriptors)
    local good = install_failing_build("clusterstate", "function M.import%(cluster, state, by_id, listen_fd%)\n",
      "%0  core.dup = function() return nil, 'EMFILE: injected' end\n")
    local ucode, _, uerr = H.orch_sync({ "update" }, { home = home, cwd = dir, program = good, timeout = 60000 })
    assert.are.equal(1, ucode)
    assert.matches("EMFILE: injected.*the daemon goes on as it was", uerr)
    replace_binary(good)
    -- the previous binary serves the app on the same workers, balanced
    assert.are.equal(daemon, daemon_pid())
    local lines, stop = load(port, "close,close")
    H.wait_until(function()
      local pids = answers(lines(), 1)
      return (pids.close[before["web:0"].pid] or 0) >= 5 and (pids.close[before["web:1"].pid] or 0) >= 5
    end, 20000, "both workers answering after the failed update")
    local _, errors = answers(stop(), 1)
    assert.are.same({}, errors)
    local after = by_name()
    assert.are.equal(before["web:0"].pid, after["web:0"].pid)
    assert.are.equal(before["web:1"].pid, after["web:1"].pid)
  end)

  it("fails when a worker does not answer for a connection it was given, and the balancer accepts again", function()
    local port, out = H.free_port(), dir .. "/mute.out"
    H.ecosystem(dir, string.format([[ { name = "mute", script = %q, exec_mode = "cluster", instances = 1,
      env = { PORT = "%d", OUT = %q } }, ]], apps .. "/cluster_mute.lua", port, out))
    local _, code, err = orch({ "start", "ecosystem.lua" })
    assert.are.equal(0, code, err)
    local function newconns() return select(2, (H.read(out) or ""):gsub('"act":"newconn"', "")) end
    wait_listening("mute", 1, "the worker listening")
    local before, daemon = by_name()["mute:0"].pid, daemon_pid()
    -- a connection handed to the worker, which never answers for it
    local function connect()
      local c = uv.new_tcp()
      opened[#opened + 1] = c
      c:connect("127.0.0.1", port, function() end)
    end
    connect()
    H.wait_until(function() return newconns() == 1 end, 10000, "the connection handed over")
    replace_binary(H.bin)
    local ucode, _, uerr = H.orch_sync({ "update" }, { home = home, cwd = dir, program = bin, timeout = 60000 })
    assert.are.equal(1, ucode)
    assert.matches("orch update: the new binary did not take over: 1 connection%(s%) of app 'mute' not yet taken "
      .. "by a worker after %d+ ms; the daemon goes on as it was", uerr)
    assert.are.equal(daemon, daemon_pid())
    assert.are.equal(before, by_name()["mute:0"].pid)
    -- the balancer accepts again: the next connection goes to the worker too
    connect()
    H.wait_until(function() return newconns() == 2 end, 10000, "a connection handed over after the failed update")
  end)
end)
