-- orch.views: what `orch list` and `orch describe` (and the Lua API's
-- process objects) show of a process: plain tables made for JSON.
local core = require("orch.core")
local uv = require("luv")
local cjson = require("cjson")
local launch = require("orch.launch")
local timers = require("orch.timers")
local new_table = require("table.new")

local M = {}

-- A process tree's CPU % and resident bytes, sampled from /proc at most
-- once per STATS_TTL: reading a tree costs two files per process, and a
-- dashboard polling `list` must not make the daemon walk /proc for each
-- poll. CPU % is over the time since the previous sample (at least the
-- TTL, which also keeps it from being noise).
M.STATS_TTL = 1.0

-- While someone lists (a dashboard, `orch monit`, a script polling `list`),
-- a sampler refreshes the samples off the request path: every SLICE_MS a
-- slice of the processes, each once per STATS_TTL, for SAMPLER_KEEP_S after
-- the last list. A list then reads no /proc at all (it cost `orch list` with
-- 100 processes a third of its round trip every second), and the loop never
-- stalls on all the trees at once.
M.SLICE_MS = 100
M.SAMPLER_KEEP_S = 3

local function sample(p, now)
  local prev = p.cpu_sample
  local s = core.proc_stats(p.pid)
  if not s then return nil end
  local cpu
  if prev and prev.pid == p.pid and now > prev.t then
    cpu = (s.cpu - prev.cpu) / (now - prev.t) * 100
  else
    local up = p.started_at and (uv.hrtime() / 1e6 - p.started_at) / 1000 or 0
    cpu = up > 0 and (s.cpu / up * 100) or 0
  end
  local pct = math.floor(math.max(cpu, 0) * 10 + 0.5) / 10
  p.cpu_sample = { pid = p.pid, cpu = s.cpu, t = now, pct = pct, rss = s.rss }
  return p.cpu_sample
end

-- The sample to show of running p (now in seconds): the last one while it
-- is younger than max_age, else a new one; nil when /proc has none.
local function current_sample(p, now, max_age)
  local prev = p.cpu_sample
  -- a sample of no memory was taken mid-exec: not worth keeping
  if prev and prev.pid == p.pid and prev.rss > 0 and now - prev.t < max_age then return prev end
  return sample(p, now)
end

-- p's CPU % and resident bytes; running(p): whether it has a process.
-- max_age: how old a sample may be (STATS_TTL; more while a sampler runs).
function M.stats(p, running, max_age)
  if not p.pid or not running(p) then return 0, 0 end
  local s = current_sample(p, uv.hrtime() / 1e9, max_age or M.STATS_TTL)
  if not s then return 0, 0 end
  return s.pct, s.rss
end

local Sampler = {}
Sampler.__index = Sampler

-- A sampler over list() (every process); running(p) as for stats.
function M.sampler(list, running)
  return setmetatable({ list = list, running = running, cursor = 1, until_t = 0 }, Sampler)
end

-- How old a sample the views may show: a round of the sampler later than
-- the TTL, while it runs.
function Sampler:max_age()
  return self.timer and 2 * M.STATS_TTL or M.STATS_TTL
end

-- Someone lists: keep the samples fresh for a while.
function Sampler:touch()
  self.until_t = uv.hrtime() / 1e9 + M.SAMPLER_KEEP_S
  if self.timer then return end
  self.timer = uv.new_timer()
  self.timer:start(M.SLICE_MS, M.SLICE_MS, function() self:_tick() end)
  self.timer:unref() -- sampling alone does not keep orch running
end

function Sampler:_tick()
  local now = uv.hrtime() / 1e9
  if now > self.until_t then
    timers.close(self.timer)
    self.timer = nil
    return
  end
  local procs = self.list()
  local slice = math.ceil(#procs * M.SLICE_MS / (M.STATS_TTL * 1000))
  for _ = 1, math.min(slice, #procs) do
    if self.cursor > #procs then self.cursor = 1 end
    local p = procs[self.cursor]
    self.cursor = self.cursor + 1
    local prev = p.cpu_sample
    -- taken less than a slice ago (a list did it): not again
    if p.pid and self.running(p) and not (prev and prev.pid == p.pid and now - prev.t < M.STATS_TTL / 2) then
      sample(p, now)
    end
  end
end

function Sampler:close()
  timers.close(self.timer)
  self.timer = nil
end

-- What `orch list` shows of p; sampler: the engine's, or nil.
function M.view(p, running, sampler)
  local cpu, mem = M.stats(p, running, sampler and sampler:max_age())
  return {
    id = p.id, name = p.name, instance = p.instance, pid = running(p) and p.pid or cjson.null,
    status = p.status, restarts = p.restarts,
    uptime_ms = (p.status == "online" and p.started_at) and math.floor(uv.hrtime() / 1e6 - p.started_at) or 0,
    cpu = cpu, memory = mem, mode = p.app.exec_mode, namespace = p.app.namespace or "default",
    -- with a health check, while it runs: starting, healthy or unhealthy
    health = running(p) and p.health_state and p.health_state.status or nil,
  }
end

-- `orch list`'s reply as JSON text, in pieces (table.concat makes the
-- text): the same content as M.view of each process encoded. With 1000
-- processes, building 1000 tables and encoding them was 15 ms of daemon CPU
-- per list (without the JIT). Each process keeps the JSON of what seldom
-- changes (p.list_json: id, name, instance, mode, namespace, status, pid,
-- restarts, health) with the values it was made of, and each sample the
-- JSON of its cpu and memory; a list compares those values (a change
-- anywhere makes new text: nothing to invalidate) and adds the one field
-- that changes every call, the uptime. What is left is memory latency: the
-- processes' tables are spread over the heap and each field read from a
-- process is a cache miss, so the entry is an array (one block) and a list
-- reads from a process only the fields compared.
local NO_SAMPLE = '"cpu":0,"memory":0,"uptime_ms":'

-- p's entry: { status, pid, restarts, health, name, id, instance, mode,
-- namespace, running, text }
local function entry(p, run, health)
  local app = p.app
  local text = cjson.encode({
    id = p.id, name = p.name, instance = p.instance, pid = run and p.pid or cjson.null,
    status = p.status, restarts = p.restarts, mode = app.exec_mode, namespace = app.namespace or "default",
    health = health,
  })
  local c = { p.status, p.pid, p.restarts, health, p.name, p.id, p.instance, app.exec_mode, app.namespace, run,
              text:sub(1, -2) .. "," }
  p.list_json = c
  return c
end

local function sample_json(s)
  local text = cjson.encode({ cpu = s.pct, memory = s.rss }):sub(2, -2) .. ',"uptime_ms":'
  s.json = text
  return text
end

function M.list_json(procs, running, sampler)
  local max_age = sampler and sampler:max_age() or M.STATS_TTL
  local now_ns = uv.hrtime()
  local now, now_ms = now_ns / 1e9, now_ns / 1e6
  local floor = math.floor
  local buf, n = new_table(4 * #procs + 1, 0), 1 -- sized once: 4 pieces per process
  buf[1] = "["
  for i = 1, #procs do
    local p = procs[i]
    local c, status, pid = p.list_json, p.status, p.pid
    local run
    if c and c[1] == status then run = c[10] else run = running(p) end
    local hs = run and p.health_state
    local health = hs and hs.status or nil
    local app = p.app
    if not (c and c[1] == status and c[2] == pid and c[3] == p.restarts and c[4] == health and c[5] == p.name
            and c[6] == p.id and c[7] == p.instance and c[8] == app.exec_mode and c[9] == app.namespace) then
      c = entry(p, run, health)
    end
    local stats = NO_SAMPLE
    if run and pid then
      local s = current_sample(p, now, max_age)
      if s then stats = s.json or sample_json(s) end
    end
    local started = p.started_at
    buf[n + 1] = c[11]
    buf[n + 2] = stats
    buf[n + 3] = (status == "online" and started) and floor(now_ms - started) or 0
    buf[n + 4] = "},"
    n = n + 4
  end
  buf[n] = n > 1 and "}]" or "[]"
  return buf
end

-- v as JSON can hold it: functions (Lua hooks, health checks) become
-- "function", keys stay as they are.
local function plain(v)
  if type(v) == "function" then return "function" end
  if type(v) ~= "table" or v == cjson.null then return v end
  local out = {}
  for k, x in pairs(v) do out[k] = plain(x) end
  return out
end

-- The options of app as set (after defaults), for `orch describe --json`:
-- schema's canonical names, not PM2's aliases.
local function options(app)
  local schema = require("orch.schema")
  local out = {}
  for _, name in ipairs(schema.option_order) do
    local o = schema.options[name]
    if not o.alias_of and not o.pattern and app[name] ~= nil then out[name] = plain(app[name]) end
  end
  return out
end

-- What `orch describe` shows of p. ctx: running(p), logs_dir, sup (exe,
-- log_problems, log_stats, transitions), health (describe), cluster (view),
-- source (where p's app came from, or nil).
function M.describe(p, ctx)
  local v = M.view(p, ctx.running)
  local app = p.app
  local out, err = launch.log_paths(app, p.instance, ctx.logs_dir)
  local cmd = launch.command(app, ctx.sup.exe)
  v.script, v.args, v.cwd = app.script, app.args, app.cwd
  v.exec = cmd.argv
  v.interpreter = app.interpreter or cjson.null
  v.instances = app.instances
  v.unstable_restarts = p.counters.unstable
  v.out_log, v.err_log = out, err
  v.log_problems = ctx.sup:log_problems(p) or cjson.null
  v.log_stats = ctx.sup:log_stats(p)
  v.started_at = p.started_wall or cjson.null
  v.last_exit = p.last_exit or cjson.null
  v.reason = p.reason or cjson.null
  v.transitions = ctx.sup:transitions(p) or cjson.null
  -- the last restart a trigger (watch, cron_restart, max_memory_restart) asked for: { why, at }
  v.restart_cause = p.restart_cause or cjson.null
  -- the last restarts (orch.engine's record): { time, cause, reason, delay, code, signal }
  v.last_restarts = p.restart_log or cjson.null
  local ue = p.last_user_error
  v.last_user_error = ue and { what = ue.what, message = ue.message, time = ue.time } or cjson.null
  v.autorestart, v.max_restarts, v.min_uptime = app.autorestart, app.max_restarts, app.min_uptime
  v.kill_signal, v.kill_timeout = app.kill_signal, app.kill_timeout
  v.health = ctx.health:describe(p, cjson.null) or cjson.null
  v.exec_mode, v.balance = app.exec_mode, app.balance
  v.notify_status = p.notify_status or cjson.null
  v.listen = {}
  for i, l in ipairs(app.listen or {}) do v.listen[i] = l.address end
  v.cluster = ctx.cluster:view(p.name)
  v.source = ctx.source and (ctx.source.file or ctx.source.stdin and "<stdin>") or "command line"
  v.options = options(app)
  -- the environment the process gets (or got), as `orch describe --env-vars` shows
  v.env = launch.env_table(launch.environment(app, p.instance, p.id, p.base_env or ctx.sup.opts.base_env, nil,
    ctx.sup.opts.home))
  return v
end

return M
