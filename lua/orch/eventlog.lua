-- orch.eventlog: the line of text a supervisor event makes in the daemon's
-- log and on orch run's terminal ("web:0 online, pid 123, restarts 0"), or
-- nil for an event that makes none.
local M = {}

local function duration(ms)
  if ms < 1000 then return string.format("%d ms", ms) end
  return string.format("%.1f s", ms / 1000)
end

function M.line(event, proc, info)
  local who = proc and (proc.name .. ":" .. proc.instance)
  if event == "online" then
    return string.format("%s online, pid %d, restarts %d", who, proc.pid, proc.restarts)
  elseif event == "spawn_error" then
    return string.format("%s failed to start: %s", who, info.error)
  elseif event == "exit" then
    local how = info.signal and ("killed by " .. info.signal) or ("exited with code " .. tostring(info.code))
    return string.format("%s (pid %s) %s after %s", who, tostring(proc.pid), how, duration(info.uptime_ms))
  elseif event == "waiting" then
    return string.format("%s restarting in %s (restart %d)", who, duration(info.delay), proc.restarts + 1)
  elseif event == "stopping" then
    return string.format("%s stopping: %s, SIGKILL after %s", who, proc.app.kill_signal, duration(proc.app.kill_timeout))
  elseif event == "stopped" then
    return string.format("%s stopped%s", who, info and info.reason and (": " .. info.reason) or "")
  elseif event == "errored" then
    return string.format("%s errored: %s", who, info and info.reason or "?")
  end
end

return M
