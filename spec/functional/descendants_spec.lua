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
end)
