-- orch.logproblems: the problems of log files (a failed write, a full disk,
-- a failed rotation or gzip, a file or directory deleted under orch) as
-- event records (orch.events: `log_error`, and `log_resumed` when writers
-- paused by a full disk go on), and counted for /metrics. C counts them
-- where they happen and hands them over at most once a second
-- (core.on_log_problem); here each file's problem of each kind makes a
-- record at once the first time, and then at most one record per interval,
-- which sums up what came meanwhile (count, bytes): a disk that fails every
-- write fills neither the ring nor the daemon's log.
local uv = require("luv")

local M = {}

M.INTERVAL_MS = 60000

-- The problems C reports (besides "resumed"), in the order /metrics lists them.
M.PROBLEMS = { "open", "write", "no_space", "rotate", "compress", "remade", "dir_remade" }

-- Those whose line core/sink.c writes to the daemon's log itself.
local LOGGED_BY_C = { no_space = true, resumed = true, remade = true, dir_remade = true }

local P = {}
P.__index = P

-- opts: record(kind, proc, fields) (engine:record), writers(path) -> the
-- processes writing to the file at path, log(level, msg), text(record) ->
-- its line (orch.eventlog), interval_ms (default M.INTERVAL_MS).
function M.new(opts)
  return setmetatable({
    opts = opts, interval = opts.interval_ms or M.INTERVAL_MS,
    keys = {},   -- path .. "\0" .. problem -> { next_at, count, bytes, last } while within an interval
    totals = {}, -- app (or "" for a file of no app) -> problem -> occurrences (monotonic)
  }, P)
end

-- The record(s) of a problem: one per app writing the file (with the
-- process's fields when only one of its processes does), or one of no app.
function P:_emit(p, count, bytes)
  local kind = p.problem == "resumed" and "log_resumed" or "log_error"
  local fields = { path = p.path, problem = p.problem, error = p.error, message = p.message, count = count }
  if kind == "log_resumed" then
    fields.problem, fields.count, fields.paused_ms = nil, nil, p.paused_ms
  elseif bytes and bytes > 0 then
    fields.bytes = bytes
  end
  local by_app, order = {}, {}
  for _, proc in ipairs(self.opts.writers(p.path)) do
    if not by_app[proc.name] then
      order[#order + 1] = proc.name
      by_app[proc.name] = {}
    end
    local list = by_app[proc.name]
    list[#list + 1] = proc
  end
  local first
  local function one(proc, app)
    local f = {}
    for k, v in pairs(fields) do f[k] = v end
    f.app = app
    local r = self.opts.record(kind, proc, f)
    first = first or r
  end
  for _, name in ipairs(order) do
    local procs = by_app[name]
    if #procs == 1 then one(procs[1]) else one(nil, name) end
  end
  if #order == 0 then one(nil, nil) end
  if not LOGGED_BY_C[p.problem] and first and self.opts.text then
    self.opts.log("warn", self.opts.text(first))
  end
end

function P:_count(p)
  if p.problem == "resumed" then return end
  local apps, seen = {}, {}
  for _, proc in ipairs(self.opts.writers(p.path)) do
    if not seen[proc.name] then
      seen[proc.name] = true
      apps[#apps + 1] = proc.name
    end
  end
  if #apps == 0 then apps[1] = "" end
  for _, app in ipairs(apps) do
    local t = self.totals[app] or {}
    self.totals[app] = t
    t[p.problem] = (t[p.problem] or 0) + (p.count or 1)
  end
end

-- A report from C: { path, problem, error, message, count, bytes | paused_ms };
-- or of a file that could not be opened (orch.logfiles: problem "open").
function P:report(p)
  self:_count(p)
  local key = p.path .. "\0" .. p.problem
  local k = self.keys[key]
  local now = uv.now()
  if not k or (k.count == 0 and now >= k.next_at) then
    self:_emit(p, p.count, p.bytes)
    self.keys[key] = { next_at = now + self.interval, count = 0, bytes = 0 }
    self:_arm()
    return
  end
  k.count, k.bytes, k.last = k.count + (p.count or 1), k.bytes + (p.bytes or 0), p
  self:_arm()
end

-- One timer while any file is within an interval: none when all is well.
function P:_arm()
  local soonest
  for _, k in pairs(self.keys) do
    if not soonest or k.next_at < soonest then soonest = k.next_at end
  end
  if not soonest then
    if self.timer then
      self.timer:close()
      self.timer = nil
    end
    return
  end
  self.timer = self.timer or uv.new_timer()
  self.timer:start(math.max(soonest - uv.now(), 0), 0, function() self:_tick() end)
end

-- An interval is over: what came meanwhile makes one record, and the next
-- interval begins; a quiet interval ends the file's watch.
function P:_tick()
  local now = uv.now()
  for key, k in pairs(self.keys) do
    if now >= k.next_at then
      if k.count > 0 then
        self:_emit(k.last, k.count, k.bytes)
        k.next_at, k.count, k.bytes, k.last = now + self.interval, 0, 0, nil
      else
        self.keys[key] = nil
      end
    end
  end
  self:_arm()
end

function P:close()
  if self.timer then self.timer:close() end
  self.timer, self.keys = nil, {}
end

return M
