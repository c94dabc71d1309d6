-- orch.persist: the snapshot of the apps that the state file holds is taken
-- on every loop turn that changed something, so its cost must grow with the
-- number of apps, not with its square, and an app's source (its env: a
-- whole environment) is copied once, not per write.
package.loaded["orch.core"] = package.loaded["orch.core"] or {} -- no C core needed here
local persist = require("orch.persist")

-- A stand-in engine of n one-instance apps (the last one stopped), counting
-- every walk of its process table.
local function engine(n)
  local procs, apps, walks = {}, {}, { n = 0 }
  for i = 1, n do
    local name = string.format("a%04d", i)
    procs[i] = { name = name, instance = 0, status = i == n and "stopped" or "online" }
    apps[name] = { app = { instances = 1 }, source = { file = "/eco.lua", env = { HOME = "/root", N = tostring(i) } } }
  end
  local e = setmetatable({ apps = apps, log = function() end }, { __index = persist.methods })
  e.sup = { list = function() walks.n = walks.n + 1 return procs end }
  function e:is_running(p) return p.status == "online" end
  function e:procs_of(name)
    local l = {}
    for _, p in ipairs(self.sup:list()) do
      if p.name == name then l[#l + 1] = p end
    end
    return l
  end
  function e:app_running(name)
    for _, p in ipairs(self:procs_of(name)) do
      if self:is_running(p) then return true end
    end
    return false
  end
  return e, walks
end

describe("orch.persist snapshot", function()
  it("walks the process table a fixed number of times, whatever the number of apps", function()
    local small, small_walks = engine(10)
    local big, big_walks = engine(500)
    assert.are.equal(10, #small:snapshot())
    local snap = big:snapshot()
    assert.are.equal(500, #snap)
    assert.are.equal(small_walks.n, big_walks.n)
    assert.is_true(snap[1].running)
    assert.are.same({}, snap[1].stopped)
    assert.is_false(snap[500].running)
    assert.are.same({ 0 }, snap[500].stopped)
  end)

  it("copies an app's source once, and again once its env is replaced", function()
    local e = engine(2)
    local first = e:snapshot()[1].source
    assert.are.same({ file = "/eco.lua", env = { HOME = "/root", N = "1" } }, first)
    assert.are.equal(first, e:snapshot()[1].source) -- the same copy
    -- orch restart --update-env replaces the env in place
    e.apps.a0001.source.env = { HOME = "/home/u" }
    assert.are.same({ file = "/eco.lua", env = { HOME = "/home/u" } }, e:snapshot()[1].source)
  end)
end)
