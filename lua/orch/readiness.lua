-- orch.readiness: when a launching process counts as online. Without
-- wait_ready or wait_healthy, at once (the supervisor decides). With them,
-- once every condition holds: wait_healthy, its first good health check
-- (orch.health calls maybe_online); wait_ready, 'ready' over the IPC
-- channel or READY=1 on its own NOTIFY_SOCKET, or listen_timeout passing
-- (then online anyway, as PM2 does).
-- opts: set_online(p), emit(event, p) (for 'ready'), log(level, msg).
local uv = require("luv")
local notify = require("orch.notify")

local M = {}
local Readiness = {}
Readiness.__index = Readiness

function M.new(opts)
  return setmetatable({ set_online = opts.set_online, emit = opts.emit, log = opts.log }, Readiness)
end

-- The supervisor's gate: whether a process stays launching after its spawn.
function M.gated(proc)
  return (proc.app.wait_healthy and proc.app.health ~= nil) or proc.app.wait_ready
end

-- Online once every readiness condition of the app holds.
function Readiness:maybe_online(p)
  if p.status ~= "launching" then return end
  if p.app.wait_healthy and p.app.health ~= nil and not p.healthy then return end
  if p.app.wait_ready and not p.ready then return end
  self.set_online(p)
end

-- A wait_ready process was spawned: it has listen_timeout to say 'ready'.
function Readiness:await(p)
  p.ready = false
  local pid = p.pid
  local t = uv.new_timer()
  t:start(p.app.listen_timeout, 0, function()
    t:close()
    if p.pid == pid and p.status == "launching" and not p.ready then
      self.log("warn", string.format("%s:%d sent no 'ready' within listen_timeout %d ms; online anyway",
        p.name, p.instance, p.app.listen_timeout))
      p.ready = true
      self:maybe_online(p)
    end
  end)
  t:unref()
end

-- Creates dir (0700) for the processes' NOTIFY_SOCKETs and has sup give
-- each wait_ready process one. Without it wait_ready still works over the
-- IPC channel.
function Readiness:open(dir, sup)
  local ok, merr, code = uv.fs_mkdir(dir, tonumber("700", 8))
  if not (ok or code == "EEXIST") then
    self.log("warn", string.format("cannot create %s: %s; no NOTIFY_SOCKET for wait_ready", dir, merr))
    return
  end
  self.dir = dir
  sup.notify_socket = function(p) return self:socket(p) end
end

-- The NOTIFY_SOCKET of process p, or nil: a socket of its own, kept for
-- the process's life, so that a datagram belongs to p by where it arrives.
-- Finding its process by the sender's pid would lose READY=1 from a sender
-- that exits right after sending (systemd-notify does): gone, it has no
-- parent to follow.
function Readiness:socket(p)
  if p.notify then return p.notify.path end
  local path = string.format("%s/%d.sock", self.dir, p.id)
  local sock, err = notify.open(path, function(pid, fields) self:_notified(p, pid, fields) end, self.log)
  if not sock then
    self.log("warn", err)
    return nil
  end
  p.notify = sock
  return path
end

-- A datagram for process p from pid: READY=1 is its 'ready', STATUS= shows
-- in describe. A live sender must be p's main process or a descendant;
-- a sender already gone cannot be checked, and only p was given the socket.
function Readiness:_notified(p, pid, fields)
  if not p.pid or (p.status ~= "launching" and p.status ~= "online") then return end
  if notify.descends(pid, p.pid) == false then return end
  if fields.STATUS then p.notify_status = fields.STATUS end
  if fields.READY == "1" and not p.ready and p.app.wait_ready then
    p.ready = true
    self.emit("ready", p)
  end
end

-- Closes the NOTIFY_SOCKETs of procs (at shutdown).
function M.close(procs)
  for _, p in ipairs(procs) do
    if p.notify then
      p.notify.close()
      p.notify = nil
    end
  end
end

return M
