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

local function esc(v)
  return (tostring(v):gsub("[\\\"\n]", { ["\\"] = "\\\\", ['"'] = '\\"', ["\n"] = "\\n" }))
end

local function num(v)
  if v ~= v then return "NaN" end
  if v == math.floor(v) and math.abs(v) < 2 ^ 53 then return string.format("%d", v) end
  return string.format("%.17g", v)
end

-- A writer of families: family(name, type, help) then sample(labels, value).
local function writer()
  local out = {}
  local w = {}
  function w.family(name, kind, help)
    out[#out + 1] = "# HELP " .. name .. " " .. help .. "\n# TYPE " .. name .. " " .. kind .. "\n"
    w.name = name
  end
  -- labels: a prepared string 'a="x",b="y"' (or ""), extra: one more pair
  function w.sample(labels, value, extra)
    if extra then labels = labels == "" and extra or (labels .. "," .. extra) end
    out[#out + 1] = w.name .. (labels ~= "" and ("{" .. labels .. "}") or "") .. " " .. num(value) .. "\n"
  end
  function w.text() return table.concat(out) end
  return w
end

local function seconds(tv) return tv.sec + tv.usec / 1e6 end

-- The daemon's own figures. ctx.loop: core.loop_stats-like table or nil.
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
    w.sample("", ctx.loop.max_busy)
    w.family("orch_daemon_loop_busy_seconds_total", "counter", "Time the event loop spent working (not waiting).")
    w.sample("", ctx.loop.busy)
  end
  if ctx.events then
    w.family("orch_daemon_events_total", "counter", "Events orch raised, by kind (docs/protocol.md, events).")
    for _, kind in ipairs(ctx.events.kinds) do w.sample('event="' .. esc(kind) .. '"', ctx.events.counts[kind]) end
  end
end

-- Renders every family for engine's processes. ctx (optional): loop (from
-- core.loop_stats), events ({kinds, counts}), restart_causes(p) ->
-- {cause = n} (restarts by cause), or nil for a total only.
function M.render(engine, ctx)
  ctx = ctx or {}
  local w = writer()
  daemon_families(w, engine, ctx)
  local procs = engine.sup:list()
  local now_ms = uv.hrtime() / 1e6
  local rows = {}
  for i, p in ipairs(procs) do
    local running = engine:is_running(p)
    local _, rss = engine:stats(p)
    local cpu = running and p.cpu_sample and p.cpu_sample.pid == p.pid and p.cpu_sample.cpu or 0
    rows[i] = { p = p, labels = string.format('app="%s",app_instance="%d",id="%d"', esc(p.name), p.instance, p.id),
                cpu = cpu, rss = rss }
  end
  w.family("orch_process_status", "gauge",
    "1 for the life-cycle status each process is in, 0 for the others (docs/protocol.md lists them).")
  for _, r in ipairs(rows) do
    for _, s in ipairs(STATUSES) do w.sample(r.labels, r.p.status == s and 1 or 0, 'status="' .. s .. '"') end
  end
  w.family("orch_process_restarts_total", "counter",
    "Restarts of each process (automatic and asked for), by cause where known.")
  for _, r in ipairs(rows) do
    local causes = ctx.restart_causes and ctx.restart_causes(r.p)
    if causes then
      for cause, n in pairs(causes) do w.sample(r.labels, n, 'cause="' .. esc(cause) .. '"') end
    else
      w.sample(r.labels, r.p.restarts or 0)
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
      for _, s in ipairs(HEALTH) do w.sample(r.labels, st == s and 1 or 0, 'status="' .. s .. '"') end
    end
  end
  -- Log files: one series per app and file (instances may share a file).
  local files, seen = {}, {}
  for _, r in ipairs(rows) do
    for _, f in ipairs(engine.sup:log_stats(r.p)) do
      local key = r.p.name .. "\0" .. f.path
      if not seen[key] then
        seen[key] = true
        files[#files + 1] = { labels = string.format('app="%s",path="%s"', esc(r.p.name), esc(f.path)), st = f }
      end
    end
  end
  w.family("orch_log_written_bytes_total", "counter", "Bytes written to each log file since this orch opened it.")
  for _, f in ipairs(files) do w.sample(f.labels, f.st.written or 0) end
  w.family("orch_log_dropped_bytes_total", "counter",
    "Bytes that could not be written to each log file (write errors other than a full disk, which pauses writers).")
  for _, f in ipairs(files) do w.sample(f.labels, f.st.dropped or 0) end
  return w.text()
end

return M
