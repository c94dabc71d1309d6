-- orch.persist: the snapshot of the apps that the state file holds is taken
-- on every loop turn that changed something, so its cost must grow with the
-- number of apps, not with its square, and an app's source (its env: a
-- whole environment) is copied once, not per write.
-- The state file's text is made of each app's and each running process's
-- JSON, kept on them: a write encodes (and reads a start time from /proc
-- for) only what changed.
local core_stub = { starttimes = 0 }
function core_stub.getpid() return 4242 end
function core_stub.proc_starttime(pid) core_stub.starttimes = core_stub.starttimes + 1 return pid * 10 end
package.loaded["orch.core"] = core_stub -- no C core needed here
local persist = require("orch.persist")
local cjson = require("cjson")

-- A stand-in engine of n one-instance apps (the last one stopped), counting
-- every walk of its process table.
local function engine(n)
  local procs, apps, walks = {}, {}, { n = 0 }
  for i = 1, n do
    local name = string.format("a%04d", i)
    procs[i] = { id = i - 1, name = name, instance = 0, status = i == n and "stopped" or "online",
                 pid = i == n and nil or 1000 + i, started_at = i, app = { kill_signal = "SIGTERM" } }
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

  it("writes the state file's text from the pieces that changed, the same as one encoding", function()
    local e = engine(300)
    core_stub.starttimes = 0
    local text = e:state_text()
    assert.are.equal(299, core_stub.starttimes) -- one per running process
    local v = cjson.decode(text)
    assert.are.equal(4242, v.pid)
    assert.are.equal(300, #v.apps)
    assert.are.same(cjson.decode(cjson.encode(e:snapshot())), v.apps)
    assert.are.same({ id = 0, name = "a0001", pid = 1001, starttime = 10010, kill_signal = "SIGTERM" }, v.procs[1])
    assert.are.equal(299, #v.procs)
    assert.is_nil(v.clean)
    -- nothing changed: the same text, no start time read again
    assert.are.equal(text, e:state_text())
    assert.are.equal(299, core_stub.starttimes)
    -- one process restarted (a new run), one app stopped
    local p = e.sup.list()[5]
    p.pid, p.started_at = 77, 99
    e.sup.list()[7].status = "stopped"
    v = cjson.decode(e:state_text(true))
    assert.are.equal(300, core_stub.starttimes)
    assert.are.same({ id = 4, name = "a0005", pid = 77, starttime = 770, kill_signal = "SIGTERM" }, v.procs[5])
    assert.are.equal(298, #v.procs)
    assert.is_false(v.apps[7].running)
    assert.are.same({ 0 }, v.apps[7].stopped)
    assert.is_true(v.clean)
  end)

  it("shares one copy of a source, and one encoding of it, among the apps of that source", function()
    local e = engine(3)
    local source = { file = "/eco.lua", env = { HOME = "/root" } }
    for _, entry in pairs(e.apps) do entry.source = source end
    local snap = e:snapshot()
    assert.are.equal(snap[1].source, snap[3].source)
    local v = cjson.decode(e:state_text())
    assert.are.same(cjson.decode(cjson.encode(e:snapshot())), v.apps)
    assert.are.equal(e.apps.a0001.state_text.parts[2], e.apps.a0003.state_text.parts[2])
    -- orch restart --update-env of one: its own copy, the others keep theirs
    e.apps.a0002.source = { file = "/eco.lua", env = { HOME = "/home/u" } }
    v = cjson.decode(e:state_text())
    assert.are.same({ file = "/eco.lua", env = { HOME = "/home/u" } }, v.apps[2].source)
    assert.are.same({ file = "/eco.lua", env = { HOME = "/root" } }, v.apps[3].source)
  end)
end)
