-- orch.metrics: what orch knows, in Prometheus' text exposition format
-- (version 0.0.4), for the HTTP endpoint's /metrics. Names follow
-- Prometheus' naming guide: the orch_ prefix, base units (_seconds,
-- _bytes), _total on counters; one HELP and one TYPE line per family.
-- A process's labels are app, app_instance (`instance` is Prometheus' own
-- target label, which a scrape would rename) and id (two apps may share a
-- name: `orch start -f`). docs/http.md lists the families.
local uv = require("luv")
local core = require("orch.core")
local lifecycle = require("orch.lifecycle")

local M = {}

-- The life-cycle states a process can be in (deleted ones are not listed).
local STATUSES = {}
for _, s in ipairs(lifecycle.STATES) do
  if s ~= "deleted" then STATUSES[#STATUSES + 1] = s end
end
local HEALTH = { "starting", "healthy", "unhealthy" }
local PROBLEMS = require("orch.logproblems").PROBLEMS

local function esc(v)
  return (tostring(v):gsub("[\\\"\n]", { ["\\"] = "\\\\", ['"'] = '\\"', ["\n"] = "\\n" }))
end

local floor, format = math.floor, string.format

-- A sample's value: integers in full, others with every significant digit.
local function num(v)
  if v ~= v then return "NaN" end
  if v == floor(v) and v < 2 ^ 53 and v > -2 ^ 53 then return format("%d", v) end
  return format("%.17g", v)
end

-- A writer of families: family(name, type, help) then sample(labels, value,
-- extra). Pieces go into one table, joined once: with 100 processes a
-- scrape is some 2000 lines, and the loop runs without the JIT compiler.
local function writer()
  local out, n, name = {}, 0, nil
  local w = {}
  function w.family(fam, kind, help)
    out[n + 1], out[n + 2], out[n + 3], out[n + 4], out[n + 5], out[n + 6], out[n + 7] =
      "# HELP ", fam, " ", help, "\n# TYPE ", fam, " "
    out[n + 8], out[n + 9] = kind, "\n"
    n = n + 9
    name = fam
  end
  -- labels: a prepared string 'a="x",b="y"' (or ""), extra: one more pair
  function w.sample(labels, value, extra)
    out[n + 1] = name
    if extra then
      if labels == "" then
        out[n + 2], out[n + 3], out[n + 4] = "{", extra, "} "
      else
        out[n + 2], out[n + 3], out[n + 4] = "{", labels, ","
        n = n + 2
        out[n + 3], out[n + 4] = extra, "} "
      end
    elseif labels == "" then
      out[n + 2], out[n + 3], out[n + 4] = "", "", " "
    else
      out[n + 2], out[n + 3], out[n + 4] = "{", labels, "} "
    end
    out[n + 5], out[n + 6] = num(value), "\n"
    n = n + 6
  end
  function w.text() return table.concat(out, "", 1, n) end
  return w
end

local function seconds(tv) return tv.sec + tv.usec / 1e6 end

-- The daemon's own figures. ctx: loop (core.loop_lag's), events ({kinds, counts}) or nil.
local function daemon_families(w, engine, ctx)
  local now_s = uv.hrtime() / 1e9
  w.family("orch_info", "gauge", "Always 1; the orch version and whether this is a daemon or orch run.")
  w.sample('version="' .. esc(require("orch.version").version) .. '",mode="' .. esc(engine.mode) .. '"', 1)
  w.family("orch_daemon_start_time_seconds", "gauge", "When this orch started, in seconds since the Unix epoch.")
  local sec, usec = uv.gettimeofday()
  w.sample("", (sec + usec / 1e6) - (now_s - engine.started_at / 1e9))
  local ru = uv.getrusage()
  w.family("orch_daemon_cpu_seconds_total", "counter", "CPU time the orch process itself used (user and system).")
  w.sample("", ru and (seconds(ru.utime) + seconds(ru.stime)) or 0)
  w.family("orch_daemon_resident_memory_bytes", "gauge", "Resident memory of the orch process itself.")
  w.sample("", uv.resident_set_memory() or 0)
  local open_fds, max_fds = core.fd_count()
  if open_fds then
    w.family("orch_daemon_open_fds", "gauge", "Descriptors the orch process has open.")
    w.sample("", open_fds)
    w.family("orch_daemon_max_fds", "gauge", "The orch process's descriptor limit (RLIMIT_NOFILE, soft).")
    w.sample("", max_fds)
  end
  if ctx.loop then
    w.family("orch_daemon_loop_lag_seconds", "gauge",
      "The longest time the event loop spent on one turn since the previous scrape (what any event may have waited).")
    w.sample("", ctx.loop.max)
    w.family("orch_daemon_loop_busy_seconds_total", "counter", "Time the event loop spent working (not waiting).")
    w.sample("", ctx.loop.busy)
  end
  if ctx.events then
    w.family("orch_daemon_events_total", "counter", "Events orch recorded, by kind (docs/protocol.md, Events).")
    for _, kind in ipairs(ctx.events.kinds) do w.sample('kind="' .. esc(kind) .. '"', ctx.events.counts[kind]) end
  end
end

local Metrics = {}
Metrics.__index = Metrics

-- The metrics of engine. Starts measuring the loop's lag (core.loop_lag),
-- and counts restarts by cause from the event ring (orch.events) from now on.
function M.new(engine)
  local self = setmetatable({ engine = engine, causes = {}, file_labels = {} }, Metrics)
  core.loop_lag()
  local ring = engine.events
  if type(ring) == "table" and ring.subscribe then
    self.ring = ring
    -- causes in a stable order: the known ones, then any other as it comes
    self.cause_list, self.cause_label = {}, {}
    local function know(cause)
      if self.cause_label[cause] then return end
      self.cause_label[cause] = 'cause="' .. esc(cause) .. '"'
      self.cause_list[#self.cause_list + 1] = cause
    end
    for _, cause in ipairs(require("orch.events").CAUSES) do know(cause) end
    ring:subscribe(function(r)
      local by = self.causes[r.id] or {}
      self.causes[r.id] = by
      local cause = r.cause or "unknown"
      know(cause)
      by[cause] = (by[cause] or 0) + 1
    end, { kind = "restart" })
  end
  return self
end

-- Every family, as the text Prometheus reads.
-- 'status="online"' and the like, made once.
local function label_set(key, values)
  local out = {}
  for _, v in ipairs(values) do out[v] = key .. '="' .. esc(v) .. '"' end
  return out
end
local STATUS_LABEL, HEALTH_LABEL = label_set("status", STATUSES), label_set("status", HEALTH)

-- p's labels, kept with p while its name stays (a restart may rename it).
local label_cache = setmetatable({}, { __mode = "k" })
local function labels_of(p)
  local c = label_cache[p]
  if not (c and c.name == p.name) then
    c = { name = p.name, text = format('app="%s",app_instance="%d",id="%d"', esc(p.name), p.instance, p.id) }
    label_cache[p] = c
  end
  return c.text
end

-- Every family, as the text Prometheus reads.
function Metrics:render()
  local engine = self.engine
  local ctx = { loop = core.loop_lag() }
  if self.ring then
    local kinds = {}
    for k in pairs(self.ring.counts) do kinds[#kinds + 1] = k end
    table.sort(kinds)
    ctx.events = { kinds = kinds, counts = self.ring.counts }
  end
  local w = writer()
  daemon_families(w, engine, ctx)
  local procs = engine.sup:list()
  local now_ms = uv.hrtime() / 1e6
  local rows = {}
  for i, p in ipairs(procs) do
    local running = engine:is_running(p)
    local _, rss = engine:stats(p)
    local cpu = running and p.cpu_sample and p.cpu_sample.pid == p.pid and p.cpu_sample.cpu or 0
    rows[i] = { p = p, labels = labels_of(p), cpu = cpu, rss = rss }
  end
  w.family("orch_process_status", "gauge",
    "1 for the life-cycle status each process is in, 0 for the others (docs/protocol.md lists them).")
  for _, r in ipairs(rows) do
    local st = r.p.status
    for _, s in ipairs(STATUSES) do w.sample(r.labels, st == s and 1 or 0, STATUS_LABEL[s]) end
  end
  w.family("orch_process_restarts_total", "counter",
    "Restarts of each process (automatic and asked for), as orch list shows them (orch reset sets them to 0).")
  for _, r in ipairs(rows) do w.sample(r.labels, r.p.restarts or 0) end
  if self.ring then
    w.family("orch_process_restart_causes_total", "counter",
      "Restarts of each process by cause since this orch started; a cause appears at its first restart.")
    local present = {}
    for _, r in ipairs(rows) do
      local id = r.p.id
      present[id] = true
      local by = self.causes[id]
      if by then
        for _, cause in ipairs(self.cause_list) do
          if by[cause] then w.sample(r.labels, by[cause], self.cause_label[cause]) end
        end
      end
    end
    for id in pairs(self.causes) do
      if not present[id] then self.causes[id] = nil end -- deleted
    end
  end
  w.family("orch_process_uptime_seconds", "gauge", "Time since each process's current run started (0 unless online).")
  for _, r in ipairs(rows) do
    local p = r.p
    w.sample(r.labels, (p.status == "online" and p.started_at) and math.max(now_ms - p.started_at, 0) / 1000 or 0)
  end
  w.family("orch_process_cpu_seconds_total", "counter",
    "CPU time of each process's tree (the process and its live descendants), sampled at most once a second.")
  for _, r in ipairs(rows) do w.sample(r.labels, r.cpu) end
  w.family("orch_process_resident_memory_bytes", "gauge",
    "Resident memory of each process's tree (the process and its descendants), sampled at most once a second.")
  for _, r in ipairs(rows) do w.sample(r.labels, r.rss) end
  w.family("orch_process_health_status", "gauge",
    "1 for the health-check status each process with a health check is in, 0 for the others.")
  for _, r in ipairs(rows) do
    if r.p.app.health then
      local st = r.p.health_state and r.p.health_state.status or "starting"
      for _, s in ipairs(HEALTH) do w.sample(r.labels, st == s and 1 or 0, HEALTH_LABEL[s]) end
    end
  end
  -- Log files: one series per app and file (instances may share a file).
  local files, seen = {}, {}
  for _, r in ipairs(rows) do
    for _, f in ipairs(engine.sup:log_stats(r.p)) do
      local key = r.p.name .. "\0" .. f.path
      if not seen[key] then
        seen[key] = true
        local labels = self.file_labels[key]
        if not labels then
          labels = format('app="%s",path="%s"', esc(r.p.name), esc(f.path))
          self.file_labels[key] = labels
        end
        files[#files + 1] = { labels = labels, st = f }
      end
    end
  end
  w.family("orch_log_written_bytes_total", "counter", "Bytes written to each log file since this orch opened it.")
  for _, f in ipairs(files) do w.sample(f.labels, f.st.written or 0) end
  w.family("orch_log_dropped_bytes_total", "counter",
    "Bytes that could not be written to each log file (write errors other than a full disk, which pauses writers).")
  for _, f in ipairs(files) do w.sample(f.labels, f.st.dropped or 0) end
  local lp = engine.logproblems
  if lp then
    w.family("orch_log_problems_total", "counter",
      "Problems of the log files of each app since this orch started, by kind (docs/protocol.md, log_error).")
    local apps = {}
    for app in pairs(lp.totals) do apps[#apps + 1] = app end
    table.sort(apps)
    for _, app in ipairs(apps) do
      local t = lp.totals[app]
      for _, problem in ipairs(PROBLEMS) do
        if t[problem] then
          w.sample(app == "" and "" or format('app="%s"', esc(app)), t[problem], 'problem="' .. problem .. '"')
        end
      end
    end
  end
  -- labels of files no longer open are forgotten
  for key in pairs(self.file_labels) do
    if not seen[key] then self.file_labels[key] = nil end
  end
  return w.text()
end

return M
