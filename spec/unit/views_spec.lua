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
