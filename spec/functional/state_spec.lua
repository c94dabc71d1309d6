-- What the user asked for survives: `orch start NAME` means the known app,
-- the dump and the state file keep stopped apps stopped and instance counts.
local H = require("helpers")

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
      assert.are.equal("sleep", d.script)
      assert.are.same({ name == "echo" and "1000" or "1001" }, d.args)
    end
    assert.are.equal(2, #json({ "list" }))
    -- a known id wins too
    assert.are.equal(0, select(2, json({ "stop", "echo" })))
    local id = by_name(first.processes, "echo")[1].id
    local res = json({ "start", tostring(id) })
    assert.are.equal(id, res.processes[1].id)
    -- options that describe a new script are refused for a known app, nothing changes
    local rcode, _, rerr = H.orch_sync({ "start", "sleep", "--", "5" }, { home = home, cwd = dir })
    assert.are.equal(2, rcode)
    assert.matches("'sleep' is a known app", rerr)
    assert.are.same({ "1001" }, json({ "describe", "sleep" })[1].args)
  end)
end)
