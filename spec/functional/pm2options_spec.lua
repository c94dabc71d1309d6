-- PM2's per-app options as PM2 7 users rely on them, with real processes:
-- namespace, cluster mode inferred for Node, PM2's environment per process,
-- increment_var/instance_var, command strings through the shell, and the
-- PM2 options orch implements or warns about.
local H = require("helpers")

describe("PM2 options", function()
  local dir, home
  H.each_test(function(d, h) dir, home = d, h end)

  it("keeps an app's namespace, \"default\" unless set, in list and describe", function()
    H.started(dir, home, [[
      { name = "a", script = "sleep", args = "600", namespace = "backend" },
      { name = "b", script = "sleep", args = "600" },
    ]])
    local list = H.json(home, { "list" })
    local ns = {}
    for _, p in ipairs(list) do ns[p.name] = p.namespace end
    assert.are.same({ a = "backend", b = "default" }, ns)
    assert.are.equal("backend", H.json(home, { "describe", "a" })[1].namespace)
  end)

  it("refuses an app named all, naming the file, line and option", function()
    local path = H.ecosystem(dir, '{ name = "all", script = "sleep", args = "600" },')
    local code, _, err = H.orch_sync({ "start", path }, { home = home, cwd = dir })
    assert.are_not.equal(0, code)
    assert.is_truthy(err:find(path .. ":2: app #1: option 'name': must not be \"all\"", 1, true), err)
    assert.are.same({}, H.json(home, { "list" }))
  end)
end)
