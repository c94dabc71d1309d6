-- orch.hook: calling a user's function (restart policy, later every hook)
-- so that it can neither raise into orch nor run forever.
--
-- The function runs with the JIT off for it (compiled loops skip count hooks)
-- under a count hook that raises once the deadline has passed. An error comes
-- back as a message with its traceback.
local M = {}

M.DEFAULT_DEADLINE_MS = 100

local clock = os.clock

-- The traceback stops where the user's function was called: orch's own
-- frames below it say nothing about the user's error.
local function traceback(e)
  local tb = debug.traceback(tostring(e), 2)
  local cut = tb:find("\n%s*%[C%]: in function 'xpcall'")
  return cut and tb:sub(1, cut - 1) or tb
end

-- Returns true, results... or false, "message\ntraceback".
function M.call(fn, deadline_ms, ...)
  local limit = (deadline_ms or M.DEFAULT_DEADLINE_MS) / 1000
  local start = clock()
  local timed_out = false
  jit.off(fn, true)
  debug.sethook(function()
    if clock() - start > limit then
      timed_out = true
      error(string.format("hook interrupted: ran longer than %d ms", limit * 1000), 2)
    end
  end, "", 1000)
  local function pack(...) return { n = select("#", ...), ... } end
  local res = pack(xpcall(fn, traceback, ...))
  debug.sethook()
  if not res[1] and timed_out then
    res[2] = res[2]:gsub("^[^\n]*hook interrupted", "hook interrupted", 1)
  end
  return unpack(res, 1, res.n)
end

return M
