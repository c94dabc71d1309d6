-- The daemon and the CLI verbs, driven through the real binary.
local H = require("helpers")
local uv = require("luv")

local apps = H.root .. "/spec/fixtures/apps"

local function mode(path)
  local st = assert(uv.fs_stat(path))
  return st.mode % 4096
end

local function by_name(list, name)
  local out = {}
  for _, p in ipairs(list) do if p.name == name then out[#out + 1] = p end end
  return out
end

describe("orch daemon and CLI", function()
  local dir, home
  H.each_test(function(d, h) dir, home = d, h end)

  local function orch(args, opts)
    opts = opts or {}
    opts.home = home
    opts.cwd = opts.cwd or dir
    return H.orch_sync(args, opts)
  end

  local function ecosystem(name, body) return H.ecosystem(dir, body, name) end

  it("starts the daemon on first use, private to its owner", function()
    local code, out = orch({ "ping" })
    assert.are.equal(0, code)
    assert.matches("orch %S+ %(pid %d+, daemon, 0 processes", out)
    assert.are.equal(tonumber("700", 8), mode(home))
    assert.are.equal(tonumber("600", 8), mode(home .. "/orch.sock"))
    local pid = tonumber(H.read(home .. "/daemon.pid"))
    assert.matches("^orch: daemon %(" .. home:gsub("%p", "%%%0") .. "%)", H.read("/proc/" .. pid .. "/cmdline"))
    -- a new session: not killed with the shell that started it
    local stat = H.read("/proc/" .. pid .. "/stat"):match("%) (.*)$")
    local fields = {}
    for f in stat:gmatch("%S+") do fields[#fields + 1] = f end
    assert.are.equal(tostring(pid), fields[4]) -- session id
  end)

  it("starts exactly one daemon when ten CLIs race", function()
    local racers = {}
    for i = 1, 10 do racers[i] = H.orch({ "ping", "--json" }, { home = home }) end
    local pids = {}
    for _, o in ipairs(racers) do
      assert.are.equal(0, o:wait_exit(15000))
      pids[require("cjson").decode(o.out).pid] = true
    end
    local n = 0
    for _ in pairs(pids) do n = n + 1 end
    assert.are.equal(1, n)
    local daemons = H.sh("ps -eo args | grep -c '^orch: daemon (" .. home .. ")'")
    assert.are.equal(1, tonumber(daemons))
  end)

  it("runs every verb with its --json shape", function()
    local file = ecosystem("ecosystem.lua", string.format([[
      { name = "web", script = %q, args = { "1000" }, instances = 2 },
      { name = "tick", script = %q, env = { OUT = %q } },
    ]], "sleep", apps .. "/sleeper.sh", dir))
    local started, code = H.json(home, { "start", file }, { cwd = dir })
    assert.are.equal(0, code)
    assert.are.equal(3, #started.processes)

    -- memory is 0 until a process has exec'd (its first instant)
    local list
    H.wait_until(function()
      list = H.json(home, { "list" })
      for _, p in ipairs(list) do if p.memory == 0 then return false end end
      return true
    end, 5000, "every process's memory in list")
    assert.are.equal(3, #list)
    for _, p in ipairs(list) do
      for _, k in ipairs({ "id", "name", "instance", "pid", "status", "restarts", "uptime_ms", "cpu", "memory", "mode" }) do
        assert.is_not_nil(p[k], "list entry lacks " .. k)
      end
      assert.are.equal("online", p.status)
      assert.are.equal("fork", p.mode)
      assert.is_true(p.memory > 0)
      assert.is_true(H.alive(p.pid))
    end
    local webs = by_name(list, "web")
    assert.are.same({ 0, 1 }, { webs[1].instance, webs[2].instance })

    local d = H.json(home, { "describe", "tick" })
    assert.are.equal(1, #d)
    assert.are.equal(apps .. "/sleeper.sh", d[1].script)
    assert.are.equal(home .. "/logs/tick-out.log", d[1].out_log)
    assert.are.equal(file, d[1].source)

    -- stop by name, then start it again by name
    local stopped = H.json(home, { "stop", "web" })
    assert.are.same({ "stopped", "stopped" }, { stopped[1].status, stopped[2].status })
    assert.is_false(H.alive(webs[1].pid))
    local again = H.json(home, { "start", "web" })
    assert.are.equal("online", again.processes[1].status)

    -- restart by id: new pid, restart count 1
    local tick = by_name(H.json(home, { "list" }), "tick")[1]
    local restarted = H.json(home, { "restart", tostring(tick.id) })
    assert.are_not.equal(tick.pid, restarted[1].pid)
    assert.are.equal(1, restarted[1].restarts)

    -- logs: the sleeper writes nothing; web neither. flush empties files.
    H.write(home .. "/logs/web-out-0.log", "one\ntwo\nthree\n")
    local code2, out2 = orch({ "logs", "--nostream", "web", "--lines", "2", "--out" })
    assert.are.equal(0, code2)
    assert.matches("web:0 | two\nweb:0 | three\n", out2, 1, true)
    local lines = H.json(home, { "logs", "--nostream", "web", "--lines", "1", "--out" })
    assert.are.equal("three", lines.line)
    assert.are.equal("out", lines.stream)
    local flushed = H.json(home, { "flush", "web" })
    assert.is_true(#flushed.flushed >= 1)
    assert.are.equal("", H.read(home .. "/logs/web-out-0.log"))

    -- delete all of stopped processes (the list must not be walked while it shrinks)
    H.json(home, { "start", "sleep", "--name", "s1", "--", "1000" })
    H.json(home, { "start", "sleep", "--name", "s2", "--", "1000" })
    H.json(home, { "stop", "s1" })
    H.json(home, { "stop", "s2" })
    -- delete: gone from the list
    local deleted = H.json(home, { "delete", "web" })
    assert.are.equal(2, #deleted)
    assert.are.same({ "deleted", "deleted" }, { deleted[1].status, deleted[2].status })
    assert.are.equal(0, #by_name(H.json(home, { "list" }), "web"))
    H.json(home, { "stop", "tick" })
    local all = H.json(home, { "delete", "all" })
    assert.are.equal(3, #all)
    local code4, out4 = orch({ "list", "--json" })
    assert.are.equal(0, code4)
    assert.are.equal("[]\n", out4)
    assert.are.equal(0, (orch({ "start", file, "--only", "tick" })))

    local ping = H.json(home, { "ping" })
    assert.are.equal("daemon", ping.mode)
    assert.are.equal(1, ping.processes)

    local code3, out3 = orch({ "list" })
    assert.are.equal(0, code3)
    assert.matches("id%s+name%s+mode%s+pid%s+status%s+restarts%s+uptime%s+cpu%s+memory", out3)
    assert.matches("tick%s+fork%s+%d+%s+online", out3)
  end)

  it("starts a single script with --name, -i and -- args", function()
    local res, code = H.json(home, { "start", "sleep", "--name", "nap", "-i", "2", "--", "1000" })
    assert.are.equal(0, code)
    assert.are.equal(2, #res.processes)
    local d = H.json(home, { "describe", "nap" })
    assert.are.same({ "1000" }, d[1].args)
    -- a second start of a running name is refused, nothing changes
    local _, code2, err2 = H.json(home, { "start", "sleep", "--name", "nap", "--", "5" })
    assert.are.equal(1, code2)
    assert.matches("app 'nap' is already running", err2)
    local after = H.json(home, { "list" })
    assert.are.equal(res.processes[1].pid, after[1].pid)
  end)

  it("reports errors with exit status 1, usage errors with 2", function()
    local code, _, err = orch({ "stop", "nosuch" })
    assert.are.equal(1, code)
    assert.matches("orch stop: no app named 'nosuch'", err)
    code, _, err = orch({ "stopp", "x" })
    assert.are.equal(2, code)
    assert.matches("unknown verb 'stopp' %(did you mean 'stop'%?%)", err)
    code, _, err = orch({ "list", "--jsno" })
    assert.are.equal(2, code)
    assert.matches("unknown option '%-%-jsno' %(did you mean '%-%-json'%?%)", err)
    code, _, err = orch({ "stop" })
    assert.are.equal(2, code)
    assert.matches("usage: orch stop", err)
  end)

  it("lists every verb and the environment it reads in orch help", function()
    local code, out, err = orch({ "help" })
    assert.are.equal(0, code, err)
    for _, verb in ipairs({ "start", "kill", "reload", "scale", "repl", "run", "daemon" }) do
      assert.matches("\n  " .. verb .. "[ \n]", out)
    end
    assert.matches("\nenvironment:\n  ORCH_HOME ", out)
    assert.matches("\n  ORCH_TREE=auto|cgroup|marker ", out, 1, true)
  end)

  it("leaves running apps alone when start gets a bad ecosystem", function()
    local good = ecosystem("ecosystem.lua", [[ { name = "nap", script = "sleep", args = { "1000" } }, ]])
    local first = H.json(home, { "start", good })
    local bad = ecosystem("bad.ecosystem.lua", [[
      { name = "nap", script = "sleep", args = { "5" } },
      { name = "other", script = "sleep", max_restarts = "ten" },
    ]])
    local code, _, err = orch({ "start", bad })
    assert.are.equal(1, code)
    assert.matches("bad%.ecosystem%.lua:3: app 'other': option 'max_restarts'", err)
    local list = H.json(home, { "list" })
    assert.are.equal(1, #list)
    assert.are.equal(first.processes[1].pid, list[1].pid)
    assert.are.equal("online", list[1].status)
  end)

  it("answers malformed, unknown and oversized requests with errors and carries on", function()
    assert.are.equal(0, (orch({ "ping" })))
    local script = H.write(dir .. "/raw.lua", string.format([[
      local core = require("orch.core")
      local c = assert(core.ctl_connect(%q))
      local function ask(line)
        assert(c:send(line .. "\n"))
        return assert(c:read_line(5000))
      end
      print(ask("not json"))
      print(ask('{"id":1,"cmd":"frobnicate"}'))
      print(ask('{"id":2,"cmd":"stop","args":{"target":{}}}'))
      print(ask('{"id":3,"cmd":"list","args":[1,2]}'))
      print(ask('{"id":4,"cmd":"lsit"}'))
      print(ask('[1,2,3]'))
      c:close()
      -- a line over the limit closes that connection only
      local big = assert(core.ctl_connect(%q))
      big:send(string.rep("x", 2 * 1024 * 1024) .. "\n")
      print(big:read_line(5000))
      big:close()
      -- a client that disconnects before its reply
      local rude = assert(core.ctl_connect(%q))
      rude:send('{"id":5,"cmd":"list"}\n')
      rude:close()
    ]], home .. "/orch.sock", home .. "/orch.sock", home .. "/orch.sock"))
    local code, out, err = orch({ "lua", script })
    assert.are.equal(0, code, err)
    local lines = {}
    for l in out:gmatch("[^\n]+") do lines[#lines + 1] = require("cjson").decode(l) end
    assert.are.equal("EPARSE", lines[1].error.code)
    assert.are.equal("ENOCMD", lines[2].error.code)
    assert.are.equal(1, lines[2].id)
    assert.are.equal("EINVAL", lines[3].error.code)
    assert.matches("argument 'target' must be string or number", lines[3].error.message)
    assert.are.equal("EINVAL", lines[4].error.code)
    assert.matches("did you mean 'list'", lines[5].error.message)
    assert.are.equal("EPARSE", lines[6].error.code)
    assert.are.equal("E2BIG", lines[7].error.code)
    local pong = H.json(home, { "ping" })
    assert.are.equal("daemon", pong.mode)
  end)

  it("refuses a client of another uid", function()
    assert.are.equal(0, (orch({ "ping" })))
    -- open the way to the socket so that only the daemon's own check stands
    assert(uv.fs_chmod(dir, tonumber("711", 8)))
    assert(uv.fs_chmod(home, tonumber("711", 8)))
    assert(uv.fs_chmod(home .. "/orch.sock", tonumber("666", 8)))
    local script = H.write(dir .. "/other.lua", string.format([[
      local c = assert(require("orch.core").ctl_connect(%q))
      c:send('{"id":1,"cmd":"list"}\n')
      print(c:read_line(5000))
    ]], home .. "/orch.sock"), tonumber("644", 8))
    local out = H.sh(string.format("setpriv --reuid=65534 --regid=65534 --clear-groups %s lua %s 2>&1",
      H.bin, script))
    assert.matches('"code":"EPERM"', out)
    assert.matches("uid 65534 may not use this orch", out)
  end)

  it("after a SIGKILL of the daemon, the next verb restarts the apps: no duplicates, no leftovers", function()
    local file = ecosystem("ecosystem.lua", [[
      { name = "nap", script = "sleep", args = { "1000" }, instances = 2, kill_timeout = 300 },
    ]])
    local before = H.json(home, { "start", file }).processes
    local old_daemon = tonumber(H.read(home .. "/daemon.pid"))
    uv.kill(old_daemon, "sigkill")
    H.wait_until(function() return not H.alive(old_daemon) end, 5000, "the daemon to die")
    for _, p in ipairs(before) do assert.is_true(H.alive(p.pid), "apps outlive the daemon") end

    local list, code = H.json(home, { "list" })
    assert.are.equal(0, code)
    local new_daemon = tonumber(H.read(home .. "/daemon.pid"))
    assert.are_not.equal(old_daemon, new_daemon)
    -- the old, unsupervised copies are gone; the app runs again, once
    for _, p in ipairs(before) do
      H.wait_until(function() return not H.alive(p.pid) end, 3000, "old pid " .. p.pid .. " to be stopped")
    end
    assert.are.equal(2, #list)
    for _, p in ipairs(list) do
      assert.are.equal("online", p.status)
      assert.is_true(H.alive(p.pid))
    end
    assert.are.equal(2, #H.app_pids(home, "nap"))
  end)

  it("restores the saved apps after kill and resurrect", function()
    local file = ecosystem("ecosystem.lua", [[
      { name = "a", script = "sleep", args = { "1000" } },
      { name = "b", script = "sleep", args = { "1001" }, instances = 2 },
    ]])
    H.json(home, { "start", file })
    H.json(home, { "start", "sleep", "--name", "c", "--", "1002" })
    local saved, code = H.json(home, { "save" })
    assert.are.equal(0, code)
    assert.are.equal(3, saved.apps)
    local killed = H.json(home, { "kill" })
    assert.is_true(killed.stopped)
    local res = H.json(home, { "resurrect" })
    table.sort(res.started)
    assert.are.same({ "a", "b", "c" }, res.started)
    local list = H.json(home, { "list" })
    assert.are.equal(4, #list)
    for _, p in ipairs(list) do assert.are.equal("online", p.status) end
    assert.are.same({ "1002" }, H.json(home, { "describe", "c" })[1].args)
  end)

  -- `orch kill` returned on the daemon's reply, before the daemon had let
  -- go of its pid-file lock (it writes its state file, closes, exits): a
  -- verb right after it found the lock held, took the new daemon for another
  -- orch starting and waited 30 s for it to answer.
  it("orch kill returns once the daemon has exited", function()
    H.json(home, { "start", "sleep", "--name", "a", "--", "1000" })
    local daemon = tonumber(H.read(home .. "/daemon.pid"))
    for _ = 1, 3 do
      local killed, code, err = H.json(home, { "kill" })
      assert.are.equal(0, code, err)
      assert.is_true(killed.stopped)
      assert.is_false(H.alive(daemon), "the daemon still runs after orch kill returned")
      H.json(home, { "ping" })
      daemon = tonumber(H.read(home .. "/daemon.pid"))
    end
  end)

  -- Every process the daemon ever ran was kept in memory through its Lua
  -- API object (a weak-keyed table whose values held the keys: ~4.5 kB per
  -- process): the Lua heap after a full collection must not grow per round.
  it("forgets deleted processes: the Lua heap stays flat over start/delete rounds", function()
    local file = H.write(dir .. "/many.config.lua", [[
      local apps = {}
      for i = 1, 50 do apps[i] = { name = "m" .. i, script = "sleep", args = { "1000" } } end
      return { apps = apps } ]])
    local function heap_kb()
      local code, out = H.orch_sync({ "eval", "collectgarbage() collectgarbage() return collectgarbage('count')" },
        { home = home })
      assert.are.equal(0, code)
      return assert(tonumber(out))
    end
    local heap = {}
    -- the event ring (orch.events, 1000 records, about 250 a round) is full
    -- from round 4 on: the heap is compared after that
    for round = 1, 8 do
      local started, code, err = H.json(home, { "start", file }, { cwd = dir })
      assert.are.equal(0, code, err)
      assert.are.equal(50, #started.processes)
      assert.are.equal(0, select(2, H.json(home, { "delete", "all" })))
      heap[round] = heap_kb()
    end
    -- rounds 6 to 8 create and forget 150 processes
    assert.is_true(heap[8] - heap[5] < 150, ("Lua heap %d kB after round 5, %d kB after round 8"):format(heap[5], heap[8]))
  end)

  it("serves the control socket from a foreground orch run", function()
    local file = ecosystem("ecosystem.lua", [[ { name = "fg", script = "sleep", args = { "1000" } }, ]])
    local o = H.orch({ "run", file }, { home = home, cwd = dir })
    o:wait_output("fg:0 online")
    local list = H.json(home, { "list" })
    assert.are.equal(1, #list)
    assert.are.equal("fg", list[1].name)
    local ping = H.json(home, { "ping" })
    assert.are.equal("run", ping.mode)
    H.json(home, { "stop", "fg" })
    -- nothing left running: orch run ends
    assert.are.equal(0, o:wait_exit(5000))
  end)
end)
