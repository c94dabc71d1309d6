-- orch.pacing: when restarts are spawned and how long a run lasted, as the
-- loop can vouch for it. Restarts by policy wait in a queue drained a
-- bounded time per loop turn (LAUNCH_BUDGET_MS), and an exit's run time is
-- measured against the polls of the loop (docs/architecture.md, "Restarts
-- are paced"). Methods of the supervisor (orch.supervisor mixes them in).
local core = require("orch.core")
local uv = require("luv")

local M = {}
local S = {} -- supervisor methods
M.methods = S

-- Restarts by policy are spawned from a queue, a bounded time of spawning
-- per loop turn, right before the loop polls: a process's exit is then
-- noticed within about that long, so its run time (_run_time) stays close
-- to the truth under load. Spawning a whole round of 1000 crash-looping apps in one
-- turn took seconds; every exit of the round then looked like a run longer
-- than min_uptime and the crash-loop breaker never tripped. The bound is a
-- quarter of the min_uptime of the apps spawned in that turn, within
-- LAUNCH_BUDGET_MS: more per turn means less of the turn's fixed costs
-- (the state file, events) per spawn, less means run times measured closer.
M.LAUNCH_BUDGET_MS = { min = 20, max = 250 }

local function launch_budget(app)
  local b = (app.min_uptime or 1000) / 4
  return math.max(M.LAUNCH_BUDGET_MS.min, math.min(M.LAUNCH_BUDGET_MS.max, b))
end

local function now_ms()
  return uv.hrtime() / 1e6
end

-- A poll that returned later than this after it began has waited: what it
-- reports happened while it waited, not before.
local POLL_WAITED_MS = 10

-- When the latest poll of the loop began, whether it could wait at all (not
-- while launches are queued: the idle handle), and when it returned (uv.now()
-- as the poll returned, not advanced by the callbacks after it): kept by C
-- (core.poll_clock, core/pollclock.c), since Lua callbacks before and after
-- every poll cost a few µs of each loop turn, once per connection or more
-- under round-robin load. Started here; read by _run_time.
function S:_watch_polls()
  local began, err = core.poll_clock() -- began is nil until the first poll, err a string on failure
  if began == nil and type(err) == "string" then error("orch: the poll clock: " .. err) end
end

-- How long the process of an exit reported by this poll ran, at least. A
-- poll that waited was woken by the exit (or along with it): it happened
-- as the poll returned. A poll that found it at once could be late by all
-- the loop did since the previous poll (a round of restarts, a big start):
-- the exit happened after that poll returned without it, and no more can be
-- known, so that is taken. A busy daemon thus errs towards "unstable": the
-- crash-loop breaker never fails open under load.
function S:_run_time(proc)
  local start = proc.started_at
  if not start then return 0 end
  local noticed = uv.now() -- coarser than hrtime: a few ms behind at most
  local began, nowait, returned = core.poll_clock()
  local waited = not nowait and began and noticed - began > POLL_WAITED_MS
  if waited or not returned then return math.max(0, noticed - start) end
  return math.max(0, returned - start)
end

-- Launches a waiting process from the queue (see LAUNCH_BUDGET_MS). A stop
-- or start meanwhile takes it out (_launch and the status check).
function S:_queue_launch(proc)
  local token = {}
  proc.queued = token
  self.launch_queue = self.launch_queue or {}
  table.insert(self.launch_queue, { proc, token })
  if not self.launcher then
    -- an idle handle: the loop polls without blocking while it is active
    self.launcher = uv.new_idle()
    self.launcher:start(function() self:_drain_launches() end)
    core.poll_clock_nowait(true)
  end
end

function S:_drain_launches()
  local queue, t0, i, budget = self.launch_queue, now_ms(), 0, M.LAUNCH_BUDGET_MS.max
  while i < #queue do
    local proc, token = queue[i + 1][1], queue[i + 1][2]
    local live = proc.queued == token and proc.status == "waiting restart"
    if live then
      budget = math.min(budget, launch_budget(proc.app))
      if i > 0 and now_ms() - t0 >= budget then break end
    end
    i = i + 1
    if live then self:fire(proc, "dequeue") end
  end
  local rest = {}
  for j = i + 1, #queue do rest[#rest + 1] = queue[j] end
  self.launch_queue = rest
  if #rest == 0 then
    self.launcher:close()
    self.launcher = nil
    core.poll_clock_nowait(false)
  end
end

return M
