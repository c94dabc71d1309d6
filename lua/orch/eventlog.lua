-- orch.eventlog: the line of text a supervisor event makes in the daemon's
-- log and on orch run's terminal ("web:0 online, pid 123, restarts 0"), or
-- nil for an event that makes none; and the text of an event record
-- (orch.events) for `orch events` and `orch logs --events`.
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

local function how_ended(r)
  if r.signal then return "killed by " .. r.signal end
  if r.code then return "exit code " .. tostring(r.code) end
  return r.error or "ended"
end

local RECORD = {
  start = function(r) return string.format("started, pid %s", tostring(r.pid)) end,
  online = function(r) return string.format("online, pid %s", tostring(r.pid)) end,
  exit = function(r)
    local how = r.signal and ("killed by " .. r.signal) or r.code and ("exited with code " .. tostring(r.code))
      or (r.error and ("ended: " .. r.error)) or "ended"
    return string.format("(pid %s) %s after %s", tostring(r.pid), how, duration(r.uptime_ms or 0))
  end,
  spawn_error = function(r) return "failed to start: " .. tostring(r.error) end,
  restart = function(r)
    local why = r.cause == "exit" and how_ended(r) or r.reason or nil
    return string.format("restarting%s (restart %s, cause: %s%s)", (r.delay or 0) > 0 and (" in " .. duration(r.delay)) or "",
      tostring(r.restarts), tostring(r.cause), why and (", " .. why) or "")
  end,
  errored = function(r) return "errored: " .. tostring(r.reason or "?") end,
  stopping = function(r)
    return string.format("stopping: %s, SIGKILL after %s", tostring(r.signal), duration(r.kill_timeout or 0))
  end,
  stopped = function(r) return "stopped" .. (r.reason and (": " .. r.reason) or "") end,
  health = function(r) return (r.healthy and "healthy: " or "unhealthy: ") .. tostring(r.message) end,
  reload = function(r)
    if r.step == "begin" then return string.format("reload: starting its replacement (id %s)", tostring(r.new_id)) end
    if r.step == "switch" then
      return string.format("reload: replacement serves (pid %s), stopping this one", tostring(r.new_pid))
    end
    if r.step == "done" then return "reload: done, the replacement took its place" end
    return "reload failed: " .. tostring(r.reason)
  end,
  scale = function(r) return string.format("scaled from %s to %s instance(s)", tostring(r.from), tostring(r.to)) end,
  config = function(r) return string.format("%s from %s", tostring(r.change), tostring(r.source)) end,
  log_error = function(r) return M.log_problem(r) end,
  log_resumed = function(r)
    return string.format("log %s: writing again after %s", tostring(r.path), duration(r.paused_ms or 0))
  end,
}

-- What a log_error record says (orch.logproblems): its file, what went
-- wrong, and how often since the previous record of it.
local PROBLEM = {
  open = function(r) return string.format("cannot open it (%s), the process does not start", tostring(r.message)) end,
  write = function(r)
    return string.format("write failed (%s), %s bytes dropped", r.message or r.error or "?", tostring(r.bytes or 0))
  end,
  no_space = function(r)
    return string.format("%s (%s), writing paused until there is space; the app waits", tostring(r.error),
      tostring(r.message))
  end,
  rotate = function(r) return string.format("rotation failed (%s), still writing to it", tostring(r.error)) end,
  compress = function(r)
    return string.format("gzip of the rotated file failed (%s), kept as it is", tostring(r.error))
  end,
  remade = function() return "deleted while open; writing to a new file at that path" end,
  dir_remade = function() return "its directory was gone; orch made it again" end,
}

function M.log_problem(r)
  local f = PROBLEM[r.problem]
  local what = f and f(r) or tostring(r.problem)
  local times = (r.count or 1) > 1 and string.format(" (%d times since the last report)", r.count) or ""
  return string.format("log %s: %s%s", tostring(r.path), what, times)
end

-- Whom a record is about: "web:0", or "web" for one of an app.
function M.who(r)
  return r.instance and (tostring(r.app) .. ":" .. tostring(r.instance)) or tostring(r.app or "orch")
end

-- What happened, without whom: "(pid 12) exited with code 1 after 250 ms".
function M.what(r)
  local f = RECORD[r.kind]
  return f and f(r) or r.kind
end

-- "web:0 (pid 12) exited with code 1 after 250 ms" for a record.
function M.text(r)
  return M.who(r) .. " " .. M.what(r)
end

-- A record's time as local "YYYY-MM-DD HH:MM:SS.mmm".
function M.clock(r)
  local ms = math.floor(r.time or 0)
  return os.date("%Y-%m-%d %H:%M:%S", math.floor(ms / 1000)) .. string.format(".%03d", ms % 1000)
end

return M
