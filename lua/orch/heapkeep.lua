-- orch.heapkeep: the daemon's memory after a burst of work. The Lua heap
-- lives in malloc's arena (core/heap.c), and glibc keeps the pages a burst
-- freed: starting and deleting 100 apps 10 times left the daemon at 10.6 MB
-- with 100 running, against 8.0 MB fresh. Once the processes' events have
-- been quiet for SETTLE_MS, a full collection and malloc_trim give back what
-- the burst left. (A GC pause of 100 instead of LuaJIT's 200 saved ~0.9 MB
-- more, but made user code that fills the heap up to its cap run past its
-- deadline: lua_api_spec's 'caps the memory user code may take'.)
local core = require("orch.core")
local timers = require("orch.timers")

local M = {}

M.SETTLE_MS = 2000

local timer

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
