-- orch.proctable: the process table keeps each app's processes (by key)
-- and the keys of each app name, so that "the processes of this app" reads
-- that app's processes, not the whole table (a start of N apps asked it N
-- times: a walk each time made the start quadratic).
local proctable = require("orch.proctable")
local targets = require("orch.targets")

local function proc(id, name, key)
  return { id = id, name = name, instance = 0, app = { name = name, key = key } }
end

local function ids(list)
  local out = {}
  for i, p in ipairs(list) do out[i] = p.id end
  return out
end

describe("orch.proctable", function()
  it("lists an app's processes in id order through removes and a replacement", function()
    local t = proctable.new()
    local a0, b1, a2, a3 = proc(0, "a"), proc(1, "b"), proc(2, "a"), proc(3, "a")
    for _, p in ipairs({ a0, b1, a2, a3 }) do t:add(p) end
    assert.are.same({ 0, 2, 3 }, ids(t:of("a")))
    assert.are.same({ 1 }, ids(t:of("b")))
    assert.are.same({}, t:of("c"))
    -- a reload: a new process (id 4) takes the place of a0, which leaves
    local new = proc(4, "a")
    t:add(new)
    t:remove(a0)
    t:take_place(new, 0)
    assert.are.equal(new, t.by_id[0])
    assert.is_nil(t.by_id[4])
    assert.are.same({ 0, 1, 2, 3 }, ids(t.list))
    assert.are.equal(new, t:of("a")[1])
    t:remove(a2)
    assert.are.same({ 0, 3 }, ids(t:of("a")))
    assert.are.same({ 0, 1, 3 }, ids(t.list))
    -- a list returned is the caller's: changing it changes no index
    table.remove(t:of("a"), 1)
    assert.are.same({ 0, 3 }, ids(t:of("a")))
  end)

  it("files a renamed process under its new key, and a second app of a name under NAME#2", function()
    local t = proctable.new()
    local p, q = proc(0, "old"), proc(1, "web", "web#2")
    t:add(p)
    t:add(q)
    assert.are.same({ 1 }, ids(t:of("web#2")))
    t:rekey(p, function() p.name, p.app = "new", { name = "new" } end)
    assert.are.same({}, t:of("old"))
    assert.are.same({ 0 }, ids(t:of("new")))
    t:remove(p)
    assert.are.same({}, t:of("new"))
    assert.is_nil(next(t.of_key.new or {}))
  end)

  it("orders and indexes again after ids changed from outside (orch update)", function()
    local t = proctable.new()
    local x, y = proc(0, "x"), proc(1, "x")
    t:add(x)
    t:add(y)
    x.id, y.id = 7, 3
    t:reindex()
    assert.are.same({ 3, 7 }, ids(t.list))
    assert.are.equal(y, t.by_id[3])
    assert.is_nil(t.by_id[0])
    assert.are.same({ 3, 7 }, ids(t:of("x")))
    t:remove(x)
    assert.are.same({ 3 }, ids(t:of("x")))
  end)

  it("gives the keys of a name: the name first, then its second apps, forgetting those gone", function()
    local t = proctable.new()
    local apps = { web = { app = { name = "web" } }, ["web#3"] = { app = { name = "web" } },
                   ["web#2"] = { app = { name = "web" } }, api = { app = { name = "api" } } }
    for key, e in pairs(apps) do t:note_app(e.app.name, key) end
    assert.are.same({ "web", "web#2", "web#3" }, t:keys("web", apps))
    apps["web#2"] = nil
    apps.web = { app = { name = "www" } } -- renamed (its key follows later)
    assert.are.same({ "web", "web#3" }, t:keys("web", apps)) -- as before: apps[name] comes first
    assert.are.same({ "api" }, t:keys("api", apps))
    assert.are.same({}, t:keys("none", apps))
  end)

  it("answers an app's processes without reading the others (a count, 2000 processes)", function()
    local t, calls = proctable.new(), 0
    local key = targets.key
    targets.key = function(p) calls = calls + 1 return key(p) end
    for i = 0, 1999 do t:add(proc(i, "a" .. i % 1000)) end
    local added = calls
    for i = 0, 999 do assert.are.equal(2, #t:of("a" .. i)) end
    targets.key = key
    assert.are.equal(2000, added) -- one per process added
    assert.are.equal(added, calls) -- none per question
  end)
end)
