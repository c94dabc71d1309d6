-- orch.timers: the two timer helpers the supervisor's modules share.
local uv = require("luv")

local M = {}

-- Closes a timer unless it is closed or closing already (t may be nil).
function M.close(t)
  if t and not t:is_closing() then t:close() end
end

-- A one-shot timer calling fn after ms (at least 0).
function M.after(ms, fn)
  local t = uv.new_timer()
  t:start(math.max(0, math.floor(ms)), 0, fn)
  return t
end

return M
