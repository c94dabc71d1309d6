-- orch.policy: what happens when a process exits on its own.
--
-- PM2's semantics are the default: an exit before min_uptime is unstable, and
-- max_restarts unstable exits in a row make the process errored; a stable run
-- resets that count. restart_delay waits before each restart;
-- exp_backoff_restart_delay grows the wait by 1.5x per restart up to 15 s and
-- starts over once a run lasted 30 s. An app's own `restart(proc, exit)`
-- function may replace the decision.
local M = {}

M.BACKOFF_MAX_MS = 15000
M.BACKOFF_RESET_MS = 30000
M.BACKOFF_FACTOR = 1.5

local function contains(list, v)
  for i = 1, #list do
    if list[i] == v then return true end
  end
  return false
end

local function describe_exit(exit)
  if exit.error then return exit.error end -- the program could not be started
  if exit.signal then return "killed by " .. tostring(exit.signal) end
  return "exit code " .. tostring(exit.code)
end

-- Returns the decision and the counters to keep for the next exit. Neither
-- argument is modified.
--   app:      normalised app (autorestart, min_uptime, max_restarts,
--             restart_delay, exp_backoff_restart_delay, stop_exit_codes)
--   counters: { unstable = n, backoff = ms } (unstable exits in a row, last
--             backoff delay); the restart count itself is the caller's
--   exit:     { code = n|nil, signal = "SIGx"|nil, uptime_ms = n }
-- decision:   { action = "restart", delay = ms }
--           | { action = "stop", status = "stopped"|"errored", reason = s }
function M.decide(app, counters, exit)
  local c = {
    unstable = counters.unstable or 0,
    backoff = counters.backoff or 0,
  }
  if not exit.signal and exit.code and contains(app.stop_exit_codes or {}, exit.code) then
    return { action = "stop", status = "stopped",
             reason = "exit code " .. exit.code .. " is in stop_exit_codes" }, c
  end
  if app.autorestart == false then
    return { action = "stop", status = "stopped", reason = "autorestart is off" }, c
  end

  local uptime = exit.uptime_ms or 0
  if uptime < (app.min_uptime or 1000) then
    c.unstable = c.unstable + 1
  else
    c.unstable = 0
  end
  local max = app.max_restarts or 16
  if c.unstable > 0 and c.unstable >= max then
    return { action = "stop", status = "errored",
             reason = string.format("%d unstable exit%s in a row (up less than min_uptime %d ms), last: %s",
               c.unstable, c.unstable == 1 and "" or "s", app.min_uptime or 1000, describe_exit(exit)) }, c
  end

  local delay = app.restart_delay or 0
  local base = app.exp_backoff_restart_delay or 0
  if base > 0 then
    if uptime >= M.BACKOFF_RESET_MS or c.backoff == 0 then
      c.backoff = base
    else
      c.backoff = math.min(M.BACKOFF_MAX_MS, math.floor(c.backoff * M.BACKOFF_FACTOR))
    end
    delay = c.backoff
  end
  return { action = "restart", delay = delay }, c
end

-- Turns what a user's restart function returned into a decision, or nil plus
-- a message when the value makes no sense (the default then applies).
--   nil                      -> nil (use the default)
--   true | "restart"         -> restart now
--   number                   -> restart after that many ms
--   false | "stop"           -> stop (status stopped)
--   "errored"                -> stop (status errored)
--   { action=..., delay=n }  -> as given
function M.from_user(v)
  local t = type(v)
  if v == nil then return nil end
  if v == true or v == "restart" then return { action = "restart", delay = 0 } end
  if v == false or v == "stop" then
    return { action = "stop", status = "stopped", reason = "the restart function said stop" }
  end
  if v == "errored" then
    return { action = "stop", status = "errored", reason = "the restart function said errored" }
  end
  if t == "string" then
    return nil, string.format('unknown decision "%s" (expected "restart", "stop" or "errored")', v)
  end
  if t == "number" then
    if v ~= v or v < 0 then return nil, "a delay must be a number >= 0, got " .. tostring(v) end
    return { action = "restart", delay = v }
  end
  if t == "table" then
    local delay = v.delay or 0
    if type(delay) ~= "number" or delay < 0 then
      return nil, "'delay' must be a number >= 0, got " .. tostring(v.delay)
    end
    if v.action == "restart" then return { action = "restart", delay = delay } end
    if v.action == "stop" or v.action == "errored" then
      return { action = "stop", status = v.action == "stop" and "stopped" or "errored",
               reason = type(v.reason) == "string" and v.reason or "the restart function said " .. v.action }
    end
    return nil, "'action' must be \"restart\", \"stop\" or \"errored\", got " .. tostring(v.action)
  end
  return nil, "expected nil, a boolean, a number, a string or a table, got " .. t
end

return M
