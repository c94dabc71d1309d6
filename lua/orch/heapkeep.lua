-- orch.heapkeep: the daemon's memory after a burst of work. The Lua heap
-- lives in malloc's arena (core/heap.c); with LuaJIT's default pause (200: a
-- collection once the heap has doubled) and glibc keeping freed pages,
-- starting and deleting 100 apps 10 times left the daemon at 11.4 MB with
-- 100 running, against 7.5 MB fresh. A pause of 100 collects sooner; once
-- the processes' events have been quiet for SETTLE_MS, a full collection
-- and malloc_trim give back what the burst left.
local core = require("orch.core")
local timers = require("orch.timers")

local M = {}

M.PAUSE = 100
M.SETTLE_MS = 2000

local timer

function M.start()
  collectgarbage("setpause", M.PAUSE)
end

-- Something changed (a process started, exited, was deleted): settle once
-- SETTLE_MS have passed, at most once per SETTLE_MS.
function M.changed()
  if timer then return end
  timer = timers.after(M.SETTLE_MS, function()
    timers.close(timer)
    timer = nil
    collectgarbage()
    core.heap_trim()
  end)
  timer:unref() -- settling alone does not keep orch running
end

return M
