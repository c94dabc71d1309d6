-- orch.service: the daemon as a service of systemd (or any manager that
-- speaks sd_notify): what `orch daemon --resurrect` does at boot, and what
-- the daemon tells its manager over the NOTIFY_SOCKET in its environment:
--   READY=1     once the control socket serves and what it brought back at
--               start (the dump, or a crashed predecessor's apps) has
--               settled: no process launching (wait_ready, wait_healthy,
--               listen_timeout decide how long that takes), none blocked on
--               dependencies that hold
--   STATUS=     one line, "3 online, 1 errored", as the process table
--               changes (at most once a second)
--   WATCHDOG=1  every half WATCHDOG_USEC, from the loop itself: a loop that
--               stops turning stops the pings (unless WATCHDOG_PID names
--               another process)
--   RELOADING=1 and READY=1 around a reload of every process (the unit's
--               ExecReload, orch reload all)
--   STOPPING=1  on the way out
-- NOTIFY_SOCKET stays in the daemon's environment (an `orch update`
-- re-exec keeps telling the same manager); orch.launch keeps it, and the
-- watchdog's variables, out of every process orch starts.
local uv = require("luv")
local core = require("orch.core")

local M = {}

M.STATUS_EVERY_MS = 1000

-- The statuses a summary counts, in its order.
local ORDER = { "online", "launching", "waiting restart", "blocked", "stopping", "errored", "stopped" }

-- "3 online, 1 errored" for a list of processes; "no processes" for none.
function M.summary(procs)
  local count, other = {}, 0
  for _, p in ipairs(procs) do count[p.status] = (count[p.status] or 0) + 1 end
  local parts = {}
  for _, s in ipairs(ORDER) do
    if count[s] then parts[#parts + 1] = count[s] .. " " .. s end
    count[s] = nil
  end
  for _, n in pairs(count) do other = other + n end
  if other > 0 then parts[#parts + 1] = other .. " other" end
  return #parts > 0 and table.concat(parts, ", ") or "no processes"
end

-- The watchdog's period in ms (half of WATCHDOG_USEC), or nil when there
-- is none for us: unset, not a positive integer, or WATCHDOG_PID another's.
function M.watchdog_ms(usec, pid, own)
  local n = tonumber(usec)
  if not n or n <= 0 or n ~= math.floor(n) then return nil end
  if pid and pid ~= "" and tonumber(pid) ~= own then return nil end
  return math.max(1, math.floor(n / 2000))
end

-- Whether what the daemon started has settled (see the top).
local function settled(engine)
  local procs = engine.sup:list()
  for _, p in ipairs(procs) do
    if p.status == "launching" then return false end
  end
  for _, p in ipairs(procs) do
    if p.status == "blocked" and not engine.deps:unmet(p.app) then return false end
  end
  return true
end

local Service = {}
Service.__index = Service

-- opts: engine, log(level, msg), getenv (os.getenv, for tests).
-- A service whose methods do nothing when NOTIFY_SOCKET is not set.
function M.new(opts)
  local getenv = opts.getenv or os.getenv
  local address = getenv("NOTIFY_SOCKET")
  local self = setmetatable({ engine = opts.engine, log = opts.log, timers = {},
                              address = address ~= "" and address or nil, reloads = 0 }, Service)
  if not self.address then return self end
  local every = M.watchdog_ms(getenv("WATCHDOG_USEC"), getenv("WATCHDOG_PID"), core.getpid())
  if every then
    self.watchdog = self:_timer()
    self.watchdog:start(every, every, function() self:send("WATCHDOG=1") end)
  end
  -- the unit's `systemctl reload` (orch reload all)
  opts.engine.reload_hook = function(procs, done) return self:_reloading(procs, done) end
  return self
end

function Service:_timer()
  local t = uv.new_timer()
  self.timers[#self.timers + 1] = t
  return t
end

-- One datagram to the manager. A failure is logged when it starts and when
-- it ends, not per message (the watchdog would fill the log).
function Service:send(text)
  if not self.address then return end
  local ok, err = core.notify_send(self.address, text)
  if not ok and not self.failing then
    self.log("warn", string.format("cannot notify the service manager at %s: %s", self.address, err))
  elseif ok and self.failing then
    self.log("info", "notifying the service manager at " .. self.address .. " again")
  end
  self.failing = not ok
end

-- The process table changed: READY once settled, STATUS soon.
function Service:changed()
  if not self.address or self.soon then return end
  self.soon = self:_timer()
  -- the next loop turn: the events of one turn make one update, and the
  -- transition that raised this one (unblocking dependents...) is over
  self.soon:start(0, 0, function()
    self:_close_timer("soon")
    self:_update()
  end)
end

function Service:_close_timer(field)
  local t = self[field]
  self[field] = nil
  for i, x in ipairs(self.timers) do
    if x == t then table.remove(self.timers, i) break end
  end
  if t and not t:is_closing() then t:close() end
end

function Service:_update()
  if self.is_stopping then return end
  local status = M.summary(self.engine.sup:list())
  if self.awaiting and settled(self.engine) then
    self.awaiting = nil
    self.ready = true
    self:_status_sent(status)
    self:send("READY=1\nSTATUS=" .. status)
    self.log("info", "ready (told the service manager): " .. status)
    return
  end
  if status == self.summary_sent or self.status_timer then return end
  local wait = (self.summary_at or -math.huge) + M.STATUS_EVERY_MS - uv.now()
  if wait <= 0 then
    self:_status_sent(status)
    return self:send("STATUS=" .. status)
  end
  self.status_timer = self:_timer()
  self.status_timer:start(wait, 0, function()
    self:_close_timer("status_timer")
    self:_update()
  end)
end

function Service:_status_sent(status)
  self.summary_sent, self.summary_at = status, uv.now()
end

-- The daemon serves and has started what it brings back: READY=1 once
-- that has settled.
function Service:expect_ready()
  self.awaiting = true
  if self.address then self:changed() end
end

-- A reload of every process: RELOADING=1 (with the CLOCK_MONOTONIC time
-- systemd asks for) until the last such reload is done, then READY=1.
function Service:_reloading(procs, done)
  if self.is_stopping or #procs < #self.engine.sup:list() then return done end
  self.reloads = self.reloads + 1
  if self.reloads == 1 then
    self:send(string.format("RELOADING=1\nMONOTONIC_USEC=%.0f\nSTATUS=reloading %d process(es)",
      math.floor(uv.hrtime() / 1000), #procs))
  end
  return function(...)
    self.reloads = self.reloads - 1
    if self.reloads == 0 and not self.is_stopping then
      local status = M.summary(self.engine.sup:list())
      self:_status_sent(status)
      self:send("READY=1\nSTATUS=" .. status)
    end
    return done(...)
  end
end

-- The daemon is on its way out (SIGTERM, orch kill): said once.
function Service:stopping(why)
  if self.is_stopping then return end
  self.is_stopping = true
  self:send("STOPPING=1\nSTATUS=" .. (why or "stopping"))
end

function Service:close()
  for _, t in ipairs(self.timers) do
    if not t:is_closing() then t:close() end
  end
  self.timers, self.soon, self.status_timer, self.watchdog = {}, nil, nil, nil
  self.engine.reload_hook = nil
end

-- `orch daemon --resurrect`: the dump's apps (orch save) as they were
-- saved, stopped ones registered stopped. done() once they are started.
function M.resurrect(engine, log, done)
  require("orch.commands").handlers.resurrect(engine, {}, function(result, code, message)
    if code == "ENOENT" then
      log("info", "resurrect: " .. tostring(message))
    elseif code then
      log("error", "resurrect: " .. tostring(message))
    else
      log("info", string.format("resurrected %d app(s) started, %d stopped", #result.started, #result.stopped))
      for _, e in ipairs(result.errors) do log("error", "resurrect: " .. e) end
    end
    done()
  end)
end

return M
