-- Whose a process is, wherever it went: every process orch spawns carries
-- ORCH_MARK=<id>@<absolute ORCH_HOME> in its environment, read back from
-- /proc (core.marker_scan on the thread pool, H.marked in specs).
local H = require("helpers")
local uv = require("luv")

describe("the process marker", function()
  local dir, home
  H.each_test(function(d, h) dir, home = d, h end)

  it("marks every process orch spawns with its id and orch's absolute home", function()
    H.started(dir, home, [[
      { name = "one", script = "sleep", args = { "1000" } },
      { name = "two", script = "sleep", args = { "1000" }, instances = 2 },
    ]])
    local procs = H.json(home, { "list" })
    assert.are.equal(3, #procs)
    local by_pid = {}
    for _, m in ipairs(H.marked(home)) do by_pid[m.pid] = m.id end
    for _, p in ipairs(procs) do
      assert.are.equal(p.id, by_pid[p.pid], "process " .. p.id .. " (pid " .. tostring(p.pid) .. ") is not marked")
    end
    assert.are.equal(3, H.count_marked(home))
    assert.are.equal(0, H.count_marked(home .. "x")) -- another home's marker is not ours
  end)

  -- core.marker_scan reads every /proc/PID/environ on libuv's thread pool
  -- and hands back pidfds, each checked again once held.
  it("finds the processes whose environment carries a prefix, from a scan on the thread pool", function()
    local script = H.write(dir .. "/scan.lua", [[
      local uv, core = require("luv"), require("orch.core")
      local home = arg[1]
      local function spawn(mark)
        local h = uv.spawn("sleep", { args = { "1000" }, env = { "PATH=" .. os.getenv("PATH"), mark } },
          function() end)
        return h
      end
      local ours, other = spawn("ORCH_MARK=3@" .. home), spawn("ORCH_MARK=3@" .. home .. "x")
      local none = spawn("ORCH_OTHER=1")
      local f = assert(io.open(arg[2], "w"))
      f:write(ours:get_pid(), " ", other:get_pid(), " ", none:get_pid(), "\n")
      f:close()
      print("get:", core.marker_get(ours:get_pid(), "ORCH_MARK="), core.marker_get(none:get_pid(), "ORCH_MARK="))
      assert(core.marker_scan("ORCH_MARK=3@" .. home, function(list)
        for _, hit in ipairs(list) do
          print("hit:", hit.pid == ours:get_pid(), hit.value, hit.pidfd:pid() == hit.pid)
          hit.pidfd:signal(core.signum("SIGKILL"))
          hit.pidfd:close()
        end
        print("hits:", #list)
        other:kill("sigkill")
        none:kill("sigkill")
        ours:close() other:close() none:close()
      end))
      uv.run()
    ]])
    local pids = dir .. "/pids"
    local code, out, err
    finally(function()
      for pid in (H.read(pids) or ""):gmatch("%d+") do pcall(uv.kill, tonumber(pid), "sigkill") end
    end)
    code, out, err = H.orch_sync({ "lua", script, home, pids }, { home = home })
    assert.are.equal(0, code, err)
    assert.matches("get:\t3@" .. home .. "\tfalse\n", out, 1, true)
    -- the prefix matches ours and the other home's that begins with it
    assert.matches("hits:\t2\n", out, 1, true)
    assert.matches("hit:\ttrue\t\ttrue\n", out, 1, true)
    assert.matches("hit:\tfalse\tx\ttrue\n", out, 1, true)
  end)

  -- Crash recovery scans with its home as the suffix: other homes' processes
  -- (every orch on the machine marks its own) get no pidfd and no table.
  it("leaves out of a scan the values that do not end with the suffix asked for", function()
    local script = H.write(dir .. "/scan.lua", [[
      local uv, core = require("luv"), require("orch.core")
      local home = arg[1]
      local function spawn(mark)
        return uv.spawn("sleep", { args = { "1000" }, env = { "PATH=" .. os.getenv("PATH"), mark } }, function() end)
      end
      local ours, other = spawn("ORCH_MARK=7@" .. home), spawn("ORCH_MARK=7@" .. home .. "x")
      local f = assert(io.open(arg[2], "w"))
      f:write(ours:get_pid(), " ", other:get_pid(), "\n")
      f:close()
      assert(core.marker_scan("ORCH_MARK=", function(list)
        for _, hit in ipairs(list) do
          print("hit:", hit.pid == ours:get_pid(), hit.value)
          hit.pidfd:close()
        end
        print("hits:", #list)
        ours:kill("sigkill") other:kill("sigkill")
        ours:close() other:close()
      end, "@" .. home))
      uv.run()
    ]])
    local pids = dir .. "/pids"
    finally(function()
      for pid in (H.read(pids) or ""):gmatch("%d+") do pcall(uv.kill, tonumber(pid), "sigkill") end
    end)
    local code, out, err = H.orch_sync({ "lua", script, home, pids }, { home = home })
    assert.are.equal(0, code, err)
    assert.matches("hits:\t1\n", out, 1, true)
    assert.matches("hit:\ttrue\t7@" .. home .. "\n", out, 1, true)
  end)
end)

-- A program that daemonises (fork, setsid, fork: spec/fixtures/apps/
-- daemonize.sh) leaves its app's group and tree, and is re-parented to orch.
-- It is still the app's: stopped with it, in both modes orch knows (the
-- marker, and a cgroup per process where cgroup v2 is delegated).
local apps = H.root .. "/spec/fixtures/apps"

local function stat_fields(pid)
  local s = H.read("/proc/" .. pid .. "/stat") or ""
  local ppid, pgrp = s:match("^%d+ .*%) %a (%d+) (%d+)")
  return tonumber(ppid), tonumber(pgrp)
end

for _, mode in ipairs({ "marker", "cgroup" }) do
  describe("a daemonised descendant (" .. mode .. " mode)", function()
    local dir, home
    H.each_test(function(d, h) dir, home = d, h end)
    local env = { ORCH_TREE = mode }

    local function json(args) return H.json(home, args, { env = env, cwd = dir }) end

    -- Starts the app and returns its pid and its daemon's, checked to have
    -- left the app's group and tree.
    local function start()
      local file = H.ecosystem(dir, string.format([[
        { name = "d", script = %q, env = { OUT = %q }, kill_timeout = 3000 },
      ]], apps .. "/daemonize.sh", dir))
      local res, code, err = json({ "start", file })
      assert.are.equal(0, code, err)
      assert.truthy(res)
      local ping = json({ "ping" })
      if mode == "cgroup" and ping.trees.mode ~= "cgroup" then
        pending("no delegated cgroup v2 subtree here: " .. tostring(ping.trees.why))
        return nil
      end
      assert.are.equal(mode, ping.trees.mode)
      local daemon = tonumber(H.wait_until(function()
        local s = H.read(dir .. "/daemon.pid")
        return s and s:match("^%d+\n$") and s
      end, 30000, "the daemonised child's pid"))
      local app = json({ "list" })[1].pid
      -- re-parented to orch once the middle process has exited (it writes
      -- the pid file just before)
      local orch = tonumber(H.read(home .. "/daemon.pid"))
      H.wait_until(function() return stat_fields(daemon) == orch end, 30000, "the daemon re-parented to orch")
      assert.are_not.equal(app, select(2, stat_fields(daemon))) -- out of the app's group
      return app, daemon, ping.trees
    end

    it("is stopped with its app by orch stop", function()
      local app, daemon = start()
      if not app then return end
      finally(function() pcall(uv.kill, daemon, "sigkill") end)
      local _, code, err = json({ "stop", "d" })
      assert.are.equal(0, code, err)
      -- gone when the stop returns (not later)
      assert.is_false(H.alive(daemon), "the daemonised child survived orch stop")
      assert.is_false(H.alive(app))
      assert.are.equal(0, H.count_marked(home))
      if mode == "cgroup" then
        -- the process's own cgroup goes once empty, and the daemon's subtree
        -- with the last one: nothing runs, nothing is left (even if the
        -- daemon were SIGKILLed now)
        local base = H.cgroup_base(home)
        H.wait_until(function() return not uv.fs_stat(base) end, 10000, base .. " to be removed")
      end
    end)

    it("is stopped by orch kill, which leaves no cgroup behind", function()
      local app, daemon, trees = start()
      if not app then return end
      finally(function() pcall(uv.kill, daemon, "sigkill") end)
      local _, code, err = json({ "kill" })
      assert.are.equal(0, code, err)
      H.wait_until(function() return not H.alive(daemon) end, 10000, "the daemonised child to be gone")
      assert.are.equal(0, H.count_marked(home))
      if trees.cgroup then
        assert.are.equal(H.cgroup_base(home), trees.cgroup)
        assert.is_nil(uv.fs_stat(trees.cgroup), trees.cgroup .. " is left")
      end
    end)

    -- The next daemon finds what the crashed one spawned by its marker (or
    -- its cgroups) and stops it before it starts the apps again.
    it("is stopped after a crash of the daemon, before its app starts again", function()
      local app, daemon = start()
      if not app then return end
      finally(function() pcall(uv.kill, daemon, "sigkill") end)
      local orch = tonumber(H.read(home .. "/daemon.pid"))
      assert(uv.kill(orch, "sigkill"))
      H.wait_until(function() return not H.exists(orch) end, 10000, "the daemon to die")
      assert.is_true(H.alive(daemon))
      local _, code, err = json({ "ping" })
      assert.are.equal(0, code, err)
      H.wait_until(function() return not H.alive(daemon) end, 20000,
        "the daemonised child of the crashed daemon's app to be gone")
      assert.is_false(H.alive(app))
      -- the app runs again, with a daemon of its own
      H.wait_until(function()
        local p = (json({ "list" }) or {})[1]
        return p and p.status == "online" and p.pid ~= app
      end, 30000, "the app to run again")
    end)
  end)
end
