-- The life cycle seen from outside: `orch describe` tells why a process
-- restarted (its last transitions), and a kill reaches every process.
local H = require("helpers")
local uv = require("luv")

local function wall_ms()
  local sec, usec = uv.gettimeofday()
  return sec * 1000 + math.floor(usec / 1000)
end

-- The index of the first transition from i on matching event (and to).
local function find(list, i, event, to)
  for j = i, #list do
    if list[j].event == event and (to == nil or list[j].to == to) then return j end
  end
  return nil
end

describe("orch describe transitions", function()
  local dir, home
  H.each_test(function(d, h) dir, home = d, h end)

  it("shows why a process restarted: its exit, the policy's delay, and its way back online", function()
    local t0 = wall_ms()
    -- exits once (code 3), then runs on: the history stays within its 10
    H.started(dir, home, string.format([[
      { name = "crash", script = "sh", restart_delay = 400, min_uptime = 100,
        args = { "-c", "if [ -e %s ]; then exec sleep 1000; fi; touch %s; sleep 0.5; exit 3" } },
    ]], dir .. "/ran", dir .. "/ran"))
    local d
    H.wait_until(function()
      d = H.json(home, { "describe", "crash" })[1]
      return d.restarts >= 1 and d.status == "online"
    end, 20000, "a restart of crash")
    local tr = d.transitions
    assert.is_table(tr)
    local exit = find(tr, 1, "exit")
    assert.is_not_nil(exit, "no exit in " .. require("cjson").encode(tr))
    assert.are.same({ "online", "online", "exit code 3" }, { tr[exit].from, tr[exit].to, tr[exit].detail })
    local policy = assert(find(tr, exit, "policy_restart", "waiting restart"))
    assert.are.equal("in 400 ms", tr[policy].detail)
    local back = assert(find(tr, policy, "dequeue", "launching"))
    assert.is_not_nil(find(tr, back, "ready", "online"))
    -- when: oldest first, each in wall-clock ms since the start
    local now = wall_ms()
    for i, t in ipairs(tr) do
      assert.is_true(t.at >= t0 - 1000 and t.at <= now + 1000, "transition " .. i .. " at " .. t.at)
      if i > 1 then assert.is_true(t.at >= tr[i - 1].at) end
    end
    assert.is_true(tr[policy + 1].at - tr[policy].at >= 350, "the delay is not in the times")

    -- The same from the Lua API.
    local code0, out0 = H.orch_sync({ "eval", "local t = orch.get('crash').transitions return t[1].event, t[1].to" },
      { home = home })
    assert.are.equal(0, code0)
    assert.matches('"start"%s+"launching"', out0)

    -- The human form: one line per transition.
    local code, out = H.orch_sync({ "describe", "crash" }, { home = home })
    assert.are.equal(0, code)
    assert.matches("transitions%s+%d%d%d%d%-%d%d%-%d%d [%d:]+%.%d%d%d  start: stopped %-> launching\n", out)
    assert.matches("\n%s+[%d: .-]+  exit: online %-> online  %(exit code 3%)\n", out)
    assert.matches("\n%s+[%d: .-]+  policy_restart: online %-> waiting restart  %(in 400 ms%)\n", out)
  end)

  it("keeps at most the last 10 and shows a stop as stop, then group_gone", function()
    H.started(dir, home, [[
      { name = "crash", script = "sh", args = { "-c", "sleep 0.2; exit 1" }, min_uptime = 50 },
    ]])
    H.wait_until(function() return H.json(home, { "describe", "crash" })[1].restarts >= 4 end, 20000,
      "four restarts")
    local res, code = H.json(home, { "stop", "crash" })
    assert.are.equal(0, code)
    assert.are.equal("stopped", res[1].status)
    local tr = H.json(home, { "describe", "crash" })[1].transitions
    assert.are.equal(10, #tr)
    -- The stop came while it ran: stop, its exit, then its group gone; or,
    -- between runs, it cancelled the pending restart.
    local last = tr[#tr]
    if last.event == "stop" then
      assert.are.same({ "waiting restart", "stopped" }, { last.from, last.to })
    else
      assert.are.same({ "group_gone", "stopping", "stopped" }, { last.event, last.from, last.to })
      local stop = assert(find(tr, #tr - 3, "stop", "stopping"))
      assert.is_true(stop < #tr)
    end
  end)
end)

describe("kill_all", function()
  local dir, home
  H.each_test(function(d, h) dir, home = d, h end)

  -- A second SIGINT to `orch run` while an ordered stop waits for a
  -- dependent used to SIGKILL only the processes already stopping: the
  -- dependency, not signalled yet, got its kill_signal later and its whole
  -- kill_timeout (60 s here) was waited for.
  it("kills the processes an ordered stop has not reached yet", function()
    local stubborn = [[ "-c", "trap '' INT TERM; echo up; exec sleep 1000" ]]
    local file = H.ecosystem(dir, string.format([[
      { name = "db", script = "sh", args = { %s }, kill_timeout = 60000 },
      { name = "web", script = "sh", args = { %s }, kill_timeout = 60000, depends_on = { db = "online" } },
    ]], stubborn, stubborn))
    local o = H.orch({ "run", file }, { home = home })
    -- "up" comes after the trap: a SIGINT before it would end web at once
    -- and let the ordered stop go on to db (a spec race seen under load)
    o:wait_output("db:0 +| up", 15000)
    o:wait_output("web:0 +| up", 15000)
    o:kill("sigint")
    o:wait_output("web:0 stopping", 15000)
    assert.is_nil(o.err:match("db:0 stopping"), "db was not to be stopped before web")
    o:kill("sigint")
    assert.are.equal(1, o:wait_exit(20000)) -- killed, not stopped cleanly
    assert.matches("db:0 stopped", o.err)
    assert.matches("web:0 stopped", o.err)
    assert.are.same({}, H.app_pids(home))
  end)
end)

describe("reload's swap", function()
  local dir, home
  H.each_test(function(d, h) dir, home = d, h end)

  -- The main processes (sh) of app ra that run, by their environment.
  local function shells()
    local n = 0
    for _, pid in ipairs(H.app_pids(home, "ra")) do
      if (H.read("/proc/" .. pid .. "/comm") or ""):match("^sh") then n = n + 1 end
    end
    return n
  end

  -- A restart that joined the reload's stop of the old process launched it
  -- again after the reload had dropped it from the table: it ran on,
  -- outside `orch list`, and survived `orch kill`.
  it("leaves no process outside the table when a restart joins the stop of the old process", function()
    H.started(dir, home, [[
      { name = "ra", script = "sh", args = { "-c", "trap 'sleep 1; exit 0' INT; while :; do sleep 0.1; done" } },
    ]])
    local reload = H.orch({ "reload", "ra" }, { home = home })
    H.wait_until(function()
      for _, p in ipairs(H.json(home, { "list" })) do
        if p.status == "stopping" then return true end
      end
    end, 15000, "the reload to stop the old process")
    local code = H.orch_sync({ "restart", "ra" }, { home = home })
    assert.are.equal(0, code)
    reload:wait_exit(15000)
    local listed
    H.wait_until(function()
      listed = H.json(home, { "list" })
      for _, p in ipairs(listed) do
        if p.status ~= "online" then return false end
      end
      return shells() == #listed
    end, 15000, function() return string.format("%d shells for %d listed", shells(), #listed) end)
    assert.are.equal(0, H.orch_sync({ "kill" }, { home = home }))
    H.wait_until(function() return shells() == 0 end, 10000, "no shell of ra left after orch kill")
  end)
end)
