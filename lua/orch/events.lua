-- orch.events: what happens to processes, as records kept in a bounded ring
-- in the engine (daemon or orch run), and the subscribers that follow them
-- (the control socket's subscribe request, orch.http, orch monit...).
-- Every transition goes through Ring:emit: the engine turns the
-- supervisor's events into records here (M.from_engine), and the commands,
-- triggers, reloads and scales emit their own. docs/protocol.md, "Events",
-- lists the kinds and their fields.
--
-- A record: { seq, time, kind, id, app, instance, pid, ...cause fields }.
-- seq counts from 1 and never repeats within an engine; time is Unix ms.
local uv = require("luv")
local cjson = require("cjson").new()
local find = string.find

local M = {}

M.CAPACITY = 1000 -- records kept

-- The restart causes a "restart" record names (cause = ...).
M.CAUSES = { "exit", "spawn_error", "command", "api", "reload", "memory", "watch", "cron", "health" }

local Ring = {}
Ring.__index = Ring

-- opts: capacity (records kept), log(level, msg) (a subscriber that raised).
function M.new(opts)
  opts = opts or {}
  return setmetatable({
    cap = opts.capacity or M.CAPACITY, log = opts.log or function() end,
    buf = {}, seq = 0,
    subs = {},          -- in subscription order: { fn, match }
    counts = {},        -- kind -> records emitted (monotonic, for metrics)
  }, Ring)
end

local function now_ms()
  local sec, usec = uv.gettimeofday()
  return sec * 1000 + math.floor(usec / 1000)
end

-- A set from a value or a list of values (nil: anything).
local function set_of(v)
  if v == nil then return nil end
  local s = {}
  if type(v) == "table" then
    for _, x in ipairs(v) do s[x] = true end
  else
    s[v] = true
  end
  return s
end

-- filter -> a function(record) -> bool. A filter is nil (everything), a
-- function, or a table whose fields must all hold: kind, app, id, instance,
-- each a value or a list of values; app also matches records of no
-- process of that app (scale, config).
function M.matcher(filter)
  if filter == nil then return function() return true end end
  if type(filter) == "function" then return filter end
  local kinds, apps, ids, insts = set_of(filter.kind), set_of(filter.app), set_of(filter.id), set_of(filter.instance)
  return function(r)
    if kinds and not kinds[r.kind] then return false end
    if apps and not apps[r.app] then return false end
    if ids and not ids[r.id] then return false end
    if insts and not insts[r.instance] then return false end
    return true
  end
end

-- A record as the ring keeps it once compacted (Ring:compact): its JSON
-- text when that gives it back exactly (string keys; strings, booleans and
-- finite numbers, written with the digits that read back the same double),
-- ~150 bytes against ~400 for the table (1000 records kept: 0.2 MB of the
-- daemon's heap); else the table.
local function number_text(v)
  if v % 1 == 0 and v > -1e14 and v < 1e14 then return tostring(v) end -- most: ids, pids, ms
  if not (v > -math.huge and v < math.huge) then return nil end -- inf, nan
  local text = string.format("%.14g", v)
  if tonumber(text) ~= v then text = string.format("%.17g", v) end
  return text
end

-- '"key":' and ',"key":' for each field name met (a handful)
local function key_texts(sep)
  return setmetatable({}, { __index = function(t, k)
    local text = sep .. cjson.encode(k) .. ":"
    t[k] = text
    return text
  end })
end
local first_key, next_key = key_texts(""), key_texts(",")

local function pack(r)
  local parts, n = {}, 0
  for k, v in pairs(r) do
    local t, text = type(v), nil
    if t == "string" then
      -- nothing to escape in most (names, signals): no call into cjson
      text = find(v, '[%c"\\]') and cjson.encode(v) or '"' .. v .. '"'
    elseif t == "number" then
      text = number_text(v)
    elseif t == "boolean" then
      text = tostring(v)
    end
    if type(k) ~= "string" or not text then return r end
    parts[n + 1], parts[n + 2] = n == 0 and first_key[k] or next_key[k], text
    n = n + 2
  end
  return "{" .. table.concat(parts) .. "}"
end

local function record_of(kept)
  if type(kept) == "string" then return cjson.decode(kept) end
  return kept
end

-- Records fields as an event of this kind, and hands it to every
-- subscriber whose filter it matches. fields becomes the record (not
-- copied). Returns the record.
function Ring:emit(kind, fields)
  local r = fields or {}
  self.seq = self.seq + 1
  r.seq, r.kind = self.seq, kind
  r.time = r.time or now_ms()
  self.buf[(self.seq - 1) % self.cap + 1] = r
  self.counts[kind] = (self.counts[kind] or 0) + 1
  local subs = self.subs
  if #subs == 0 then return r end
  -- a subscriber may unsubscribe (itself or another) while it runs
  local copy = {}
  for i = 1, #subs do copy[i] = subs[i] end
  for _, s in ipairs(copy) do
    if not s.gone and s.match(r) then
      local ok, err = pcall(s.fn, r)
      if not ok then
        self.log("error", "an event subscriber failed and was removed: " .. tostring(err))
        s.unsubscribe()
      end
    end
  end
  return r
end

-- The records emitted since the last compaction as their text: ~3 us a
-- record, so not in emit (a stop of 100 processes makes 300) but once the
-- daemon is idle (orch.heapkeep).
function Ring:compact()
  local first = self:bounds()
  for seq = math.max(first, (self.packed or 0) + 1), self.seq do
    local i = (seq - 1) % self.cap + 1
    if type(self.buf[i]) == "table" then self.buf[i] = pack(self.buf[i]) end
  end
  self.packed = self.seq
end

-- The oldest seq still kept (seq + 1 when none is), and the newest (0 when
-- none was emitted yet).
function Ring:bounds()
  return math.max(1, self.seq - self.cap + 1), self.seq
end

-- The kept records after a point (made again from what the ring keeps: not
-- the tables emit returned), oldest first: after is a seq (those with
-- a greater seq; nil or 0: all kept), or { time = unix_ms } (those at or
-- after that time). filter as in M.matcher.
function Ring:since(after, filter)
  local match = M.matcher(filter)
  local first, last = self:bounds()
  local out = {}
  local t = type(after) == "table" and after.time
  local from = t and first or math.max(first, (tonumber(after) or 0) + 1)
  for seq = from, last do
    local r = record_of(self.buf[(seq - 1) % self.cap + 1])
    if (not t or r.time >= t) and match(r) then out[#out + 1] = r end
  end
  return out
end

-- fn(record) for every record emitted from now on that matches filter.
-- Runs synchronously inside the transition: fn must not block, and must
-- defer (a timer, a write queue) anything that changes processes. A fn that
-- raises is removed (and logged). Returns unsubscribe() (safe to call
-- twice).
function Ring:subscribe(fn, filter)
  assert(type(fn) == "function", "events.subscribe: fn must be a function")
  local s = { fn = fn, match = M.matcher(filter) }
  s.unsubscribe = function()
    if s.gone then return end
    s.gone = true
    for i, x in ipairs(self.subs) do
      if x == s then
        table.remove(self.subs, i)
        break
      end
    end
  end
  self.subs[#self.subs + 1] = s
  return s.unsubscribe
end

function Ring:subscribers()
  return #self.subs
end

---------------------------------------------------------------------------
-- The supervisor's events (orch.engine's _event) as records.
---------------------------------------------------------------------------

-- The fields every record of a process carries.
function M.of(proc, fields)
  local r = fields or {}
  if proc then
    r.id, r.app, r.instance, r.pid = proc.id, proc.name, proc.instance, proc.pid
  end
  return r
end

local FROM = {
  start = function() return "start", {} end,
  online = function() return "online", {} end,
  ready = function() return "ready", {} end,
  listening = function() return "listening", {} end,
  exit = function(_, info)
    return "exit", { code = info.code, signal = info.signal, uptime_ms = info.uptime_ms, error = info.error }
  end,
  spawn_error = function(_, info) return "spawn_error", { error = info.error, code = info.code } end,
  errored = function(_, info) return "errored", { reason = info and info.reason } end,
  stopping = function(proc)
    return "stopping", { signal = proc.app.kill_signal, kill_timeout = proc.app.kill_timeout }
  end,
  stopped = function(_, info) return "stopped", { reason = info and info.reason } end,
  health = function(_, info) return "health", { healthy = info.healthy, message = info.message } end,
  -- the restart policy's decision after an exit (waiting: with a delay)
  waiting = function(proc, info) return M.policy_restart(proc, info) end,
  restart = function(proc, info) return M.policy_restart(proc, info) end,
  -- a restart asked for (a command, a trigger): supervisor:restart
  restarting = function(proc, info)
    return "restart", { cause = info.cause or "command", reason = info.reason, delay = 0,
                        restarts = proc.restarts + 1 }
  end,
}

function M.policy_restart(proc, info)
  local exit = proc.last_exit or {}
  local fields = { cause = exit.error and "spawn_error" or "exit", delay = info and info.delay or 0,
                   restarts = proc.restarts + 1, code = exit.code, signal = exit.signal,
                   reason = exit.error }
  return "restart", fields
end

-- kind, fields of the record an engine event makes, or nil for one that
-- makes none (app messages, idle).
function M.from_engine(event, proc, info)
  local f = proc and FROM[event]
  if not f then return nil end
  local kind, fields = f(proc, info)
  return kind, M.of(proc, fields)
end

return M
