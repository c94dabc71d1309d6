-- What the user asked for survives: `orch start NAME` means the known app,
-- the dump and the state file keep stopped apps stopped and instance counts.
local H = require("helpers")
local uv = require("luv")

local function by_name(list, name)
  local out = {}
  for _, p in ipairs(list) do if p.name == name then out[#out + 1] = p end end
  table.sort(out, function(a, b) return a.instance < b.instance end)
  return out
end

describe("desired state", function()
  local dir, home
  H.each_test(function(d, h) dir, home = d, h end)

  local function json(args) return H.json(home, args, { cwd = dir }) end

  it("start NAME starts the stopped app of that name, not the command of that name", function()
    local file = H.ecosystem(dir, [[
      { name = "echo", script = "sleep", args = { "1000" } },
      { name = "sleep", script = "sleep", args = { "1001" } },
    ]])
    local first, code, err = json({ "start", file })
    assert.are.equal(0, code, err)
    for _, name in ipairs({ "echo", "sleep" }) do
      local id = by_name(first.processes, name)[1].id
      assert.are.equal(0, select(2, json({ "stop", name })))
      local res, scode, serr = json({ "start", name })
      assert.are.equal(0, scode, serr)
      assert.are.equal(1, #res.processes)
      assert.are.equal(id, res.processes[1].id)
      assert.are.equal("online", res.processes[1].status)
      local d = json({ "describe", name })[1]
      assert.are.equal(require("orch.util").which("sleep"), d.script)
      assert.are.same({ name == "echo" and "1000" or "1001" }, d.args)
    end
    assert.are.equal(2, #json({ "list" }))
    -- a known id wins too
    assert.are.equal(0, select(2, json({ "stop", "echo" })))
    local id = by_name(first.processes, "echo")[1].id
    local res = json({ "start", tostring(id) })
    assert.are.equal(id, res.processes[1].id)
    -- -- args (and flags) with a known app change it as it restarts, as PM2's
    -- start NAME does; an app of a file takes them from the file
    local rcode, _, rerr = H.orch_sync({ "start", "sleep", "--", "5" }, { home = home, cwd = dir })
    assert.are.equal(1, rcode)
    assert.matches("app 'sleep' comes from .*: set args there and orch restart", rerr)
    assert.are.same({ "1001" }, json({ "describe", "sleep" })[1].args)
  end)

  it("save, kill, resurrect brings back running and stopped apps as they were", function()
    local file = H.ecosystem(dir, [[
      { name = "up", script = "sleep", args = { "1000" } },
      { name = "down", script = "sleep", args = { "1001" }, instances = 2 },
    ]])
    assert.are.equal(0, select(2, json({ "start", file })))
    assert.are.equal(0, select(2, json({ "stop", "down" })))
    local saved, code, err = json({ "save" })
    assert.are.equal(0, code, err)
    assert.are.equal(2, saved.apps)
    assert.is_true(json({ "kill" }).stopped)
    local res, rcode, rerr = json({ "resurrect" })
    assert.are.equal(0, rcode, rerr)
    assert.are.same({ "up" }, res.started)
    assert.are.same({ "down" }, res.stopped)
    local list = json({ "list" })
    assert.are.equal(3, #list)
    assert.are.equal("online", by_name(list, "up")[1].status)
    local down = by_name(list, "down")
    assert.are.equal(2, #down)
    for _, p in ipairs(down) do assert.are.equal("stopped", p.status) end
    assert.are.equal(0, #H.app_pids(home, "down"))
    -- and it starts as itself
    local again = json({ "start", "down" })
    assert.are.equal(2, #again.processes)
    for _, p in ipairs(again.processes) do assert.are.equal("online", p.status) end
  end)

  it("after a daemon SIGKILL, a stopped app stays stopped and a scaled app keeps its count", function()
    local file = H.ecosystem(dir, [[
      { name = "x", script = "sleep", args = { "1000" }, kill_timeout = 300 },
      { name = "y", script = "sleep", args = { "1001" }, kill_timeout = 300 },
    ]])
    assert.are.equal(0, select(2, json({ "start", file })))
    assert.are.equal(0, select(2, json({ "stop", "x" })))
    local scaled, code, err = json({ "scale", "y", "3" })
    assert.are.equal(0, code, err)
    assert.are.equal(3, #scaled)
    local old_daemon = tonumber(H.read(home .. "/daemon.pid"))
    uv.kill(old_daemon, "sigkill")
    H.wait_until(function() return not H.alive(old_daemon) end, 5000, "the daemon to die")

    local list, lcode, lerr = json({ "list" })
    assert.are.equal(0, lcode, lerr)
    assert.are_not.equal(old_daemon, tonumber(H.read(home .. "/daemon.pid")))
    local x, y = by_name(list, "x"), by_name(list, "y")
    assert.are.equal(1, #x)
    assert.are.equal("stopped", x[1].status)
    assert.are.equal(3, #y)
    for _, p in ipairs(y) do assert.are.equal("online", p.status) end
    H.wait_until(function() return #H.app_pids(home, "y") == 3 end, 5000, "3 processes of y")
    assert.are.equal(0, #H.app_pids(home, "x"))
    assert.are.equal(3, json({ "describe", "y" })[1].instances)
  end)
end)
