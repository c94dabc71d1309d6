-- orch.views' sampler: while someone lists, the CPU and memory samples are
-- refreshed off the request path (a slice of the processes per tick), so a
-- list reads no /proc; counted with a stand-in for core.proc_stats.
package.loaded["orch.core"] = package.loaded["orch.core"] or {} -- no C core needed here
local core = require("orch.core")
local views = require("orch.views")
local uv = require("luv")

describe("orch.views sampler", function()
  local saved, reads
  before_each(function()
    saved, reads = core.proc_stats, 0
    core.proc_stats = function() reads = reads + 1; return { cpu = 0, rss = 4096 } end
  end)
  after_each(function()
    core.proc_stats = saved
    uv.run("nowait") -- the samplers' timers, closed, are gone before busted ends
  end)

  local function procs(n)
    local t = {}
    for i = 1, n do t[i] = { id = i, pid = 1000 + i, status = "online", app = {} } end
    return t
  end
  local function running() return true end
  local function age(list, s) for _, p in ipairs(list) do p.cpu_sample.t = p.cpu_sample.t - s end end

  it("samples each process once per round of ticks, and a list then reads nothing", function()
    local list = procs(100)
    local sampler = views.sampler(function() return list end, running)
    for _, p in ipairs(list) do views.stats(p, running, sampler:max_age()) end
    assert.are.equal(100, reads) -- the first list has no samples to show
    sampler:touch()
    finally(function() sampler:close() end)
    age(list, views.STATS_TTL)
    reads = 0
    local ticks = views.STATS_TTL * 1000 / views.SLICE_MS
    for _ = 1, ticks do sampler:_tick() end
    assert.are.equal(100, reads)
    -- older than the TTL, but the sampler runs: shown as they are
    age(list, views.STATS_TTL * 1.5)
    reads = 0
    for _, p in ipairs(list) do views.view(p, running, sampler) end
    assert.are.equal(0, reads)
    -- without a sampler the TTL holds
    for _, p in ipairs(list) do views.view(p, running) end
    assert.are.equal(100, reads)
  end)

  it("stops once nobody has listed for a while", function()
    local sampler = views.sampler(function() return procs(3) end, running)
    sampler:touch()
    finally(function() sampler:close() end)
    sampler.until_t = 0
    sampler:_tick()
    assert.is_nil(sampler.timer)
    assert.are.equal(views.STATS_TTL, sampler:max_age())
  end)
end)

-- orch.views.list_json: list's reply as text, from pieces each process
-- keeps; what it shows must be what view shows, after any change.
describe("orch.views list_json", function()
  local cjson = require("cjson")
  local saved, rss
  before_each(function()
    saved, rss = core.proc_stats, 4096
    core.proc_stats = function() return { cpu = 0, rss = rss } end
  end)
  after_each(function() core.proc_stats = saved end)

  local function running(p)
    local s = p.status
    return s == "online" or s == "launching" or s == "stopping" or s == "waiting restart" or s == "blocked"
  end
  local now_ms = function() return uv.hrtime() / 1e6 end
  local function procs()
    return {
      { id = 0, name = "web", instance = 0, pid = 101, status = "online", restarts = 0, started_at = now_ms() - 5000,
        app = { exec_mode = "cluster", namespace = "front" }, health_state = { status = "healthy" } },
      { id = 1, name = "web", instance = 1, pid = 102, status = "launching", restarts = 2, started_at = now_ms(),
        app = { exec_mode = "cluster", namespace = "front" } },
      { id = 2, name = "job/\"x\"", instance = 0, pid = 103, status = "stopped", restarts = 1,
        app = { exec_mode = "fork" }, health_state = { status = "unhealthy" } },
      { id = 3, name = "cron", instance = 0, status = "errored", restarts = 15, app = { exec_mode = "fork" } },
    }
  end

  -- list_json's entries against view's; uptime_ms within a second (they
  -- are read at different times)
  local function same(list)
    local got = cjson.decode(table.concat(views.list_json(list, running)))
    assert.are.equal(#list, #got)
    for i, p in ipairs(list) do
      local want, g = views.view(p, running), got[i]
      assert.is_true(math.abs(want.uptime_ms - g.uptime_ms) < 1000)
      want.uptime_ms, g.uptime_ms = nil, nil
      assert.are.same(want, g)
    end
    return got
  end

  it("shows what view shows, [] for no process", function()
    assert.are.equal("[]", table.concat(views.list_json({}, running)))
    local got = same(procs())
    assert.are.equal(cjson.null, got[3].pid) -- stopped: no pid, no health, no samples
    assert.is_nil(got[3].health)
    assert.are.equal("healthy", got[1].health)
    assert.are.equal(4096, got[1].memory)
  end)

  it("shows each change of a process it has shown", function()
    local list = procs()
    same(list)
    local p, q = list[1], list[3]
    -- a restart: new pid, one more restart, a new start time
    p.pid, p.restarts, p.started_at = 201, 1, now_ms()
    assert.are.equal(201, same(list)[1].pid)
    -- a new process alone (a reload), a status alone
    p.pid = 211
    assert.are.equal(211, same(list)[1].pid)
    p.status = "stopping"
    assert.are.equal("stopping", same(list)[1].status)
    p.status = "online"
    -- health changes in place
    p.health_state.status = "unhealthy"
    assert.are.equal("unhealthy", same(list)[1].health)
    p.health_state = nil
    assert.is_nil(same(list)[1].health)
    -- a new sample
    rss, p.cpu_sample = 8192, nil
    assert.are.equal(8192, same(list)[1].memory)
    -- stopped, then started again
    p.status = "stopped"
    assert.are.equal(cjson.null, same(list)[1].pid)
    p.status, p.pid = "online", 202
    assert.are.equal(202, same(list)[1].pid)
    -- renamed; its app's options changed (a new table, or the same one)
    p.name = "www"
    assert.are.equal("www", same(list)[1].name)
    p.app = { exec_mode = "fork", namespace = "back" }
    assert.are.same({ "fork", "back" }, { same(list)[1].mode, same(list)[1].namespace })
    p.app.namespace = nil
    assert.are.equal("default", same(list)[1].namespace)
    p.app.exec_mode = "cluster"
    assert.are.equal("cluster", same(list)[1].mode)
    -- PM2's reset: the restart count alone
    p.restarts = 0
    assert.are.equal(0, same(list)[1].restarts)
    p.id = 7
    assert.are.equal(7, same(list)[1].id)
    p.instance = 3
    assert.are.equal(3, same(list)[1].instance)
    -- a stopped process started
    q.status, q.pid = "launching", 301
    assert.are.equal(301, same(list)[3].pid)
    assert.are.equal("unhealthy", same(list)[3].health)
  end)
end)
