-- orch.heapkeep: the daemon's memory after a burst of work. The Lua heap
-- lives in malloc's arena (core/heap.c), and glibc keeps the pages a burst
-- freed: starting and deleting 100 apps 10 times left the daemon at 10.6 MB
-- with 100 running, against 8.0 MB fresh. Once the processes' events have
-- been quiet for SETTLE_MS, a full collection and malloc_trim give back what
-- the burst left, and the pages of the bytecode the modules were loaded from
-- are unmapped (core.heap_trim). The GC pause is 100 (LuaJIT's default 200
-- waits until the heap has doubled): garbage of a burst then never sits
-- between the objects that live on, so fewer pages stay half used (100 apps
-- after 10 rounds of start and delete all: 9.7 -> 7.9 MB). User code runs
-- with the default pause (orch.hook): code that fills the capped heap would
-- otherwise collect more often on its way to the cap.
local core = require("orch.core")
local timers = require("orch.timers")

local M = {}

M.SETTLE_MS = 2000
M.PAUSE = 100

-- The daemon's GC pause, set once at start.
function M.start()
  collectgarbage("setpause", M.PAUSE)
end

local timer, at_once
local compactors = {}

-- fn() runs before each settle's collection: work that makes what lives
-- smaller, deferred to idle time (orch.events' Ring:compact).
function M.compactor(fn)
  compactors[#compactors + 1] = fn
end

-- A full collection, then malloc's free pages and the bytecode's pages go.
local function settle()
  for _, fn in ipairs(compactors) do fn() end
  collectgarbage()
  core.heap_trim()
end

-- Something changed (a process started, exited, was deleted): settle once
-- SETTLE_MS (or ms) have passed, at most once per SETTLE_MS.
function M.changed(ms)
  if timer then return end
  at_once = ms == 0
  timer = timers.after(ms or M.SETTLE_MS, function()
    timers.close(timer)
    timer = nil
    settle()
  end)
  timer:unref() -- settling alone does not keep orch running
end

-- Apps were deleted: their objects are garbage now. Settle at the next loop
-- turn, before what comes next (a start) is allocated among them while the
-- incremental collector frees them piece by piece: the next processes then
-- reuse their pages instead of spreading over new ones (100 apps after 10
-- rounds of start and delete all: docs/benchmarks.md, "Daemon RSS after churn").
function M.deleted()
  if timer and at_once then return end
  timers.close(timer)
  timer = nil
  M.changed(0)
end

return M
