-- orch.jlist: a process as PM2's `pm2 jlist` shows it, for the scripts and
-- dashboards that parse it: { pid, name, pm_id, monit = { memory, cpu },
-- pm2_env = {...} }, with PM2's field names, values and units (pm_uptime and
-- created_at are Unix milliseconds, memory bytes, cpu percent). PM2 also
-- copies every environment variable to pm2_env's top level; so does this,
-- where no field of PM2's has that name. docs/cli.md lists the fields.
local uv = require("luv")
local cjson = require("cjson")
local launch = require("orch.launch")
local targets = require("orch.targets")
local watching = require("orch.triggers").watching

local M = {}

-- orch's statuses as PM2's: `blocked` (held back by depends_on) has no
-- PM2 equivalent and shows as "launching"; pm2_env.orch_status always
-- carries orch's own.
M.STATUS = {
  online = "online", launching = "launching", stopping = "stopping", stopped = "stopped",
  errored = "errored", ["waiting restart"] = "waiting restart", blocked = "launching",
}

local function now_ms()
  local sec, usec = uv.gettimeofday()
  return sec * 1000 + math.floor(usec / 1000)
end

-- PM2's pm2_env.watch: false when the process is not watched, else the
-- paths as configured (relative to the app's cwd when below it), or true
-- for the app's directory.
local function watch_value(p, app)
  if not watching(p) then return false end
  local paths = app.watch
  if type(paths) ~= "table" or (#paths == 1 and paths[1] == app.cwd) then return true end
  local shown, prefix = {}, app.cwd .. "/"
  for i, path in ipairs(paths) do
    shown[i] = path:sub(1, #prefix) == prefix and path:sub(#prefix + 1) or path
  end
  return shown
end

local function or_null(v)
  if v == nil then return cjson.null end
  return v
end

-- p: a process of the table; ctx.view: its orch view (engine:view), ctx.env:
-- its environment (a table), ctx.logs_dir, ctx.actions: the names of the
-- custom actions it registered (or nil); ctx.list(t): marks t a JSON list.
function M.process(p, ctx)
  local v, app, list = ctx.view, p.app, ctx.list
  local running = v.pid ~= cjson.null
  local out_log, err_log, combined = launch.log_paths(app, p.instance, ctx.logs_dir)
  local now = now_ms()
  local started = running and (now - (v.uptime_ms or 0)) or (p.started_wall and p.started_wall * 1000)
  local actions = {}
  for i, name in ipairs(ctx.actions or {}) do
    actions[i] = { action_name = name, action_type = "custom" }
  end
  local args, node_args = {}, {}
  for i, a in ipairs(type(app.args) == "table" and app.args or {}) do args[i] = a end
  local iargs = app.interpreter_args
  if type(iargs) == "string" then
    for a in iargs:gmatch("%S+") do node_args[#node_args + 1] = a end
  else
    for i, a in ipairs(iargs or {}) do node_args[i] = a end
  end
  local env = {}
  for k, val in pairs(ctx.env or {}) do env[k] = val end
  local pm2_env = {
    name = p.name, namespace = targets.namespace(app), pm_id = p.id,
    status = M.STATUS[p.status] or p.status, orch_status = p.status,
    restart_time = p.restarts, unstable_restarts = p.counters and p.counters.unstable or 0,
    pm_uptime = or_null(started), created_at = or_null(p.created_at),
    exec_mode = app.exec_mode == "cluster" and "cluster_mode" or "fork_mode",
    instances = app.instances, instance_var = "NODE_APP_INSTANCE", NODE_APP_INSTANCE = p.instance,
    pm_exec_path = app.script, pm_cwd = app.cwd, cwd = app.cwd,
    exec_interpreter = app.interpreter or "none", interpreter = app.interpreter or "none",
    node_args = list(node_args), args = list(args),
    -- pm_log_path only with a combined log, as PM2 (scripts test for the key)
    pm_out_log_path = out_log, pm_err_log_path = err_log, pm_log_path = combined,
    merge_logs = app.merge_logs == true,
    autorestart = app.autorestart ~= false, watch = watch_value(p, app),
    ignore_watch = app.ignore_watch and #app.ignore_watch > 0 and app.ignore_watch or nil,
    max_restarts = app.max_restarts, min_uptime = app.min_uptime, kill_timeout = app.kill_timeout,
    restart_delay = app.restart_delay or 0, max_memory_restart = or_null(app.max_memory_restart),
    cron_restart = or_null(app.cron_restart), wait_ready = app.wait_ready == true,
    exit_code = or_null(p.last_exit and p.last_exit.code),
    env = env,
    axm_actions = list(actions), axm_monitor = {}, axm_options = {}, axm_dynamic = {},
    vizion = false, vizion_running = false, versioning = cjson.null, version = "N/A",
  }
  -- PM2's pm2_env holds the environment at its top level too
  for k, val in pairs(env) do
    if pm2_env[k] == nil then pm2_env[k] = val end
  end
  return {
    pid = running and v.pid or 0, name = p.name, pm_id = p.id,
    monit = { memory = v.memory or 0, cpu = v.cpu or 0 },
    pm2_env = pm2_env,
  }
end

return M
