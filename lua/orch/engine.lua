-- orch.engine: the supervisor plus what a long-lived orch needs around it:
-- the apps and where each came from (so they can be saved, resurrected and
-- recovered), and the events raised to the Lua API. `orch run` and the
-- daemon are both an engine; they differ in where output goes. Its concerns
-- live in their own modules: orch.deps (depends_on), orch.readiness,
-- orch.views (list/describe), orch.persist and orch.recovery; orch.control
-- serves the control socket with it.
local uv = require("luv")
local sources = require("orch.sources")
local supervisor = require("orch.supervisor")
local readiness = require("orch.readiness")
local views = require("orch.views")
local pidfile = require("orch.pidfile")
local targets = require("orch.targets")
local events = require("orch.events")

local M = {}
local Engine = {}
Engine.__index = Engine

M.VERSION = require("orch.version").version

-- Persistence (state file, dump) and crash recovery live in their own modules.
for _, mod in ipairs({ "orch.persist", "orch.recovery" }) do
  for k, f in pairs(require(mod).methods) do Engine[k] = f end
end

-- A process orch counts as running: starting, up, stopping, or waiting to
-- start (a restart delay, or its dependencies).
local function running(p)
  local s = p.status
  return s == "online" or s == "launching" or s == "stopping" or s == "waiting restart" or s == "blocked"
end

-- opts: paths (from orch.paths.ensure_home), echo, log(level, msg),
--       on_event(event, proc, info), on_forget(key) (an app deleted),
--       mode ("run" | "daemon")
function M.new(opts)
  -- No trace compiler in the supervisor: Debian 12's LuaJIT (2.1.0-beta3,
  -- GC64) miscompiles traces over next()/pairs (a 32-bit xchg after the
  -- call to lj_vm_next cuts BASE to its low half) and the daemon died of
  -- SIGSEGV. Its work is I/O and small tables: the interpreter suffices.
  -- (orch.hook leaves it off: it restores the JIT only if it found it on.)
  if jit then
    jit.off()
    jit.flush()
  end
  -- String methods called by user code go through orch.bounds.
  require("orch.bounds").install()
  local self = setmetatable({
    paths = opts.paths, opts = opts, log = opts.log, mode = opts.mode,
    apps = {},      -- name -> { app = normalised app, source = ..., env = base env }
    started_at = uv.hrtime(),
    api_queue = {}, -- events queued for the Lua API (see _event)
  }, Engine)
  -- every transition as a record (orch.events): the control socket's
  -- subscribers, metrics and dashboards read them here
  self.events = events.new({ log = self.log })
  -- one operation at a time per app (commands, triggers, users' handlers)
  self.ops = require("orch.ops").new({ log = self.log, holds = function(p) return self.sup:get(p.id) == p end })
  self.api = require("orch.api").new(self)
  self.triggers = require("orch.triggers").new({
    log = self.log, list = function() return self.sup:list() end, stats = function(p) return self:stats(p) end,
    procs_of = function(name) return self:procs_of(name) end,
    restart = function(p, cause, why) self:restart_running(p, cause, why) end,
    home = opts.paths.home, log_file = function(path) return self.sup:is_log_file(path) end,
  })
  self.health = require("orch.health").new({
    log = self.log, label = function(p) return self.sup:label(p) end, home = opts.paths.home,
    maybe_online = function(p) self.readiness:maybe_online(p) end,
    emit = function(event, p, info) self:_event(event, p, info) end,
    api_get = function(id) return self.api.get(id) end,
    user_error = function(p, what, err) self:user_error(p, what, err) end,
    restart = function(p, cause, why) self:restart_running(p, cause, why) end,
  })
  -- the log files' problems as records (orch.logproblems), from C
  self.logproblems = require("orch.logproblems").new({
    record = function(kind, proc, fields) return self:record(kind, proc, fields) end,
    writers = function(path) return self.sup:writers(path) end,
    log = self.log, text = require("orch.eventlog").text,
  })
  require("orch.core").on_log_problem(function(p) self.logproblems:report(p) end)
  -- which descendants are whose (cgroup v2 or the environment marker)
  self.tree = require("orch.tree").new(opts.paths.home, { log = opts.log })
  self.sup = supervisor.new({
    logs_dir = opts.paths.logs,
    home = opts.paths.home,
    tree = self.tree,
    echo = opts.echo,
    log = opts.log,
    emit = function(event, proc, info) self:_event(event, proc, info) end,
    -- wait_healthy / wait_ready: launching until healthy and/or 'ready'
    gate = readiness.gated,
    listeners = function(proc) return self.sockets:inherited(proc.app) end,
    user_error = function(proc, what, err, suffix) self:user_error(proc, what, err, suffix) end,
    internal = function(proc, ch, msg) self.cluster:message(proc, ch, msg) end,
    channel_closed = function(_, ch) self.cluster:closed(ch) end,
    graceful = function(proc, after) return self.cluster:disconnect(proc, after) end,
    log_problem = function(p) self.logproblems:report(p) end,
  })
  self.readiness = readiness.new({
    log = self.log, set_online = function(p) self.sup:set_online(p) end,
    emit = function(event, p) self:_event(event, p) end,
  })
  self.deps = require("orch.deps").new({
    sup = self.sup, log = self.log, running = running,
    procs_of = function(name) return self:procs_of(name) end,
  })
  -- PM2's custom actions (trigger), over each process's IPC channel
  self.actions = require("orch.actions").new({
    send = function(p, msg) return self.sup:send(p, msg) end,
  })
  self.sockets = require("orch.sockets").new(function(name) self.cluster:forget(name) end)
  self.cluster = require("orch.cluster").new({
    log = self.log,
    label = function(p) return self.sup:label(p) end,
    listen_fds = function(app) return self.sockets:held(app) end,
    emit = function(event, p) self:_event(event, p) end,
  })
  return self
end

-- A restart that is not a command (a trigger, a failed health check): an
-- operation of the process's app, after those before it (orch.ops), if the
-- process still runs then; a cron_restart's whatever its status (a stopped
-- process starts, as PM2's cron). cause: orch.events' restart cause
-- ("memory", "health", "cron"...), why: its text.
function Engine:restart_running(p, cause, why)
  self.ops:each({ p }, "restart " .. p.id, function(_, done)
    if cause == "cron" or p.status == "online" or p.status == "launching" then
      return self.sup:restart(p, done, { cause = cause, reason = why })
    end
    done()
  end)
end

-- Records an event of proc (or of no process: proc nil) in the ring
-- (orch.events); fields: the kind's own. Returns the record.
Engine.RESTARTS_KEPT = 5 -- per process, for orch describe

function Engine:record(kind, proc, fields)
  local r = self.events:emit(kind, events.of(proc, fields))
  if kind == "restart" and proc then
    local h = proc.restart_log or {}
    proc.restart_log = h
    h[#h + 1] = { time = r.time, cause = r.cause, reason = r.reason, delay = r.delay, code = r.code,
                  signal = r.signal }
    if #h > self.RESTARTS_KEPT then table.remove(h, 1) end
  end
  return r
end

-- PM2's pid_file: written when a process starts, removed when it exits.
function Engine:_pid_file(event, proc)
  if event == "start" then
    local path = pidfile.path(proc.app, proc.id)
    local ok, err = pidfile.write(path, proc.pid)
    if ok then
      proc.pid_written = { path = path, pid = proc.pid }
    else
      self.log("warn", string.format("%s: pid_file %s: %s", self.sup:label(proc), path, tostring(err)))
    end
  elseif event == "exit" and proc.pid_written then
    pidfile.remove(proc.pid_written.path, proc.pid_written.pid)
    proc.pid_written = nil
  end
end

function Engine:_event(event, proc, info)
  local kind, fields = events.from_engine(event, proc, info)
  if kind then self:record(kind, proc, fields) end
  -- one-shot watchers of a process (reload waits for its replacement)
  local watch = proc and self.proc_watchers and self.proc_watchers[proc]
  if watch and watch(event) then self.proc_watchers[proc] = nil end
  self.health:on_event(event, proc)
  if event == "start" and proc.app.wait_ready then self.readiness:await(proc) end
  if event == "ready" then self.readiness:maybe_online(proc) end
  if event == "listening" then proc.listening = true end
  if event == "start" then
    proc.listening = nil
    self.actions:forget(proc)
  end
  if event == "message" then self.actions:on_message(proc, info.message) end
  if event == "stopping" then self.cluster:drain(proc) end
  if proc and proc.app.pid_file then self:_pid_file(event, proc) end
  if event ~= "exit" and event ~= "restart" and event ~= "restarting" then self:save_state_soon() end
  if self.opts.on_event then self.opts.on_event(event, proc, info) end
  -- Users' hooks and handlers run after the transition that raised the event
  -- has finished, so that whatever they do (stop, restart...) meets a
  -- consistent process table.
  if proc and self.api then
    self.api_queue[#self.api_queue + 1] = { event, proc, info }
    if not self.event_timer then
      self.event_timer = uv.new_timer()
      self.event_timer:start(0, 0, function() self:_dispatch_events() end)
    end
  end
end

function Engine:_dispatch_events()
  self.event_timer:close()
  self.event_timer = nil
  local queued = self.api_queue
  self.api_queue = {}
  for _, e in ipairs(queued) do self.api._dispatch(e[1], e[2], e[3]) end
  self.deps:unblock()
end

-- load(source): the config, or nil and why; load(source, done): the same
-- to done, users and groups looked up in the background (orch.sources).
function Engine:load(source, done) return sources.load(source, self.api, done) end

-- The processes of the app of that key (orch.targets.key: its name, but
-- for a second app of a name).
function Engine:procs_of(key)
  return self.sup.index:of(key)
end

-- A key for a second app named name (PM2's start -f: names are not unique).
function Engine:new_key(name)
  local n = 2
  while self.apps[name .. "#" .. n] do n = n + 1 end
  return name .. "#" .. n
end

function Engine:is_running(p) return running(p) end

-- Whether a process of that name (of any app: -f makes several) runs.
function Engine:name_running(name)
  for _, key in ipairs(self:keys_named(name)) do
    if self:app_running(key) then return true end
  end
  return false
end

function Engine:app_running(name)
  for _, p in ipairs(self:procs_of(name)) do
    if running(p) then return true end
  end
  return false
end

-- Registers (or, for an app that is not running, replaces) an app and starts
-- its instances. Returns its processes.
function Engine:install(app, source)
  local procs = self:register(app, source)
  if app.autostart ~= false then self:start_procs(procs) end
  return procs
end

-- Registers every app before starting any, so that an app failing at once
-- never looks like "nothing is running any more" while others are pending.
function Engine:install_all(apps, source)
  local all = {}
  for _, app in ipairs(apps) do
    local procs = self:register(app, source)
    if app.autostart ~= false then
      for _, p in ipairs(procs) do all[#all + 1] = p end
    end
  end
  self:start_procs(all)
  return all
end

-- Starts processes whose dependencies hold; the others wait for them.
function Engine:start_procs(procs)
  self.deps:start(procs)
  self:save_state_soon()
end

-- Every app's operation first: one on all of them.
function Engine:stop_all(done)
  local names = {}
  for name in pairs(self.apps) do names[#names + 1] = name end
  for _, p in ipairs(self.sup:list()) do names[#names + 1] = p.name end
  self.ops:run(names, nil, function(finish) self.deps:stop_ordered(self.sup:list(), finish) end, done)
end

-- app.key: set for a second app of a name (new_key), which its processes
-- carry through their p.app.
function Engine:register(app, source)
  local key = app.key or app.name
  local entry = self.apps[key]
  local procs = self:procs_of(key)
  if entry and #procs == app.instances then
    for _, p in ipairs(procs) do p.app, p.base_env = app, source.env end
  else
    for _, p in ipairs(procs) do self.sup:remove(p) end
    procs = self.sup:add(app, source.env)
  end
  self.apps[key] = { app = app, source = source, env = source.env }
  self.sup.index:note_app(app.name, key)
  self.triggers:app_changed(app, key)
  self:renew_sockets(key)
  return procs
end

-- The keys of the apps named name: the first (name itself), then those
-- start -f added (NAME#2...).
function Engine:keys_named(name)
  return self.sup.index:keys(name, self.apps)
end

-- The app's options or environment changed: cluster sockets its new workers
-- do not ask for again are closed (orch.cluster renew). The sockets are the
-- name's, which every app of it (start -f) shares, as PM2's workers share a
-- server whatever their app: each one's workers are the name's.
function Engine:renew_sockets(key)
  local entry = self.apps[key]
  local name = entry and entry.app.name or key
  local channels, cluster = {}, false
  for _, k in ipairs(self:keys_named(name)) do
    for _, p in ipairs(self:procs_of(k)) do
      if p.channel then channels[#channels + 1] = p.channel end
    end
    cluster = cluster or self.apps[k].app.exec_mode == "cluster"
  end
  self.cluster:renew(name, channels, cluster)
end

-- Options equal as loaded from a file: functions compare by their bytecode
-- (a reload makes new closures of the same source), config_line not at all
-- (moving an app in its file changes nothing about it).
local function same(a, b)
  if type(a) ~= type(b) then return false end
  if type(a) == "function" then
    local ok1, d1 = pcall(string.dump, a)
    local ok2, d2 = pcall(string.dump, b)
    return a == b or (ok1 and ok2 and d1 == d2)
  end
  if type(a) ~= "table" then return a == b end
  for k, v in pairs(a) do
    if k ~= "config_line" and not same(v, b[k]) then return false end
  end
  for k in pairs(b) do
    if k ~= "config_line" and a[k] == nil then return false end
  end
  return true
end

-- Runs act(p, one) for each process, then done() once each has called
-- one() (at once for none): to wait for several stops or restarts.
function Engine:each_proc(procs, act, done)
  local left = #procs + 1
  local function one()
    left = left - 1
    if left == 0 then done() end
  end
  for _, p in ipairs(procs) do act(p, one) end
  one()
end

-- Applies an ecosystem file to what runs: its new apps start, changed ones
-- restart with their new options, unchanged running ones are left alone, and
-- apps that came from this file but are gone from it are deleted (not with
-- --only). done(summary) once every stop and start has happened.
function Engine:apply(cfg, source, done)
  local summary = { started = {}, restarted = {}, deleted = {}, unchanged = {} }
  local pending = 1
  local function one()
    pending = pending - 1
    if pending == 0 then
      self:save_state_soon()
      self:_record_config(summary, source)
      done(summary)
    end
  end
  local wanted = {}
  for _, app in ipairs(cfg.apps) do
    wanted[app.name] = true
    local entry = self.apps[app.name]
    local up = self:app_running(app.name)
    if entry and up and same(entry.app, app) and same(entry.env, source.env) then
      entry.source = source
      table.insert(summary.unchanged, app.name)
    elseif not up then
      self:install(app, source)
      if app.autostart == false then
        summary.added = summary.added or {} -- registered, stopped
        table.insert(summary.added, app.name)
      else
        table.insert(summary.started, app.name)
      end
    else
      pending = pending + 1
      self:each_proc(self:procs_of(app.name), function(p, stopped) self.sup:stop(p, stopped) end, function()
        self:install(app, source)
        table.insert(summary.restarted, app.name)
        one()
      end)
    end
  end
  if not source.only then
    for name, entry in pairs(self.apps) do
      if not wanted[name] and source.file and entry.source.file == source.file then
        pending = pending + 1
        self:each_proc(self:procs_of(name), function(p, removed)
          self.sup:stop(p, function()
            self.sup:remove(p)
            removed()
          end)
        end, function()
          self:forget(name)
          table.insert(summary.deleted, name)
          one()
        end)
      end
    end
  end
  one()
end

-- A "config" event per app an apply changed (orch.events).
function Engine:_record_config(summary, source)
  for _, change in ipairs({ "started", "added", "restarted", "deleted" }) do
    for _, name in ipairs(summary[change] or {}) do
      self:record("config", nil, { app = name, change = change, source = source.file or "command line" })
    end
  end
end

-- Replaces each process in turn with a new one (orch.reload).
function Engine:reload(procs, done)
  -- a service manager hears of a reload of every process (orch.service)
  if self.reload_hook then done = self.reload_hook(procs, done) end
  return require("orch.reload").run(self, procs, done)
end

-- Changes the number of instances of an app as PM2's scale does: surplus
-- processes are the oldest (the lowest ids: PM2 deletes from the head of its
-- list) and go; new ones take the lowest free instance numbers (PM2's
-- injectVariables), so a scale down then up reuses the numbers.
-- done(procs) once every change has happened.
function Engine:scale(name, n, done)
  local entry = self.apps[name]
  local procs = self:procs_of(name)
  table.sort(procs, function(a, b) return a.id < b.id end)
  local app = entry.app
  self:record("scale", nil, { app = name, from = #procs, to = n })
  app.instances = n -- one table for all instances: they all see the new count
  if n > #procs then
    local used, i = {}, 0
    for _, p in ipairs(procs) do used[p.instance] = true end
    while #procs < n do
      while used[i] do i = i + 1 end
      used[i] = true
      local p = self.sup:add(app, entry.env, i)[1]
      procs[#procs + 1] = p
      self:start_procs({ p })
    end
    return done(procs)
  end
  local surplus = {}
  for i = 1, #procs - n do surplus[i] = procs[i] end
  self.deps:stop_ordered(surplus, function()
    for _, p in ipairs(surplus) do self.sup:remove(p) end
    self:save_state_soon()
    done(self:procs_of(name))
  end)
end

function Engine:forget(key)
  if #self:procs_of(key) == 0 then
    local entry = self.apps[key]
    self.apps[key] = nil
    self.triggers:app_removed(key)
    -- the name's sockets (every app of it shares them) close with its last app
    local name = entry and entry.app.name or key
    if #self:keys_named(name) == 0 then self.sockets:unbind(name) end
    if self.opts.on_forget then self.opts.on_forget(key) end
  end
  self:save_state_soon()
end

-- A target (orch.targets: all, /regex/, a name or script path, a namespace,
-- an id) -> a new list of processes, or nil, message, code. opts.cwd: the
-- directory a script path is relative to.
function Engine:resolve(target, opts)
  return require("orch.targets").resolve(self.sup:list(), target,
    { cwd = opts and opts.cwd, regex_find = require("orch.core").regex_find })
end

-- An error in a user's function (a hook, a handler, a timer): the daemon's
-- log, and where the user looks: the process's `orch describe`
-- (last_user_error) and error log (`orch logs`), and the REPL (the next
-- eval's reply carries the errors since the previous one).
Engine.USER_ERRORS_KEPT = 20

function Engine:user_error(p, what, err, suffix)
  err = tostring(err)
  local label = p and (self.sup:label(p) .. ": ") or ""
  self.log("error", string.format("%s%s failed%s: %s", label, what, suffix or "", err))
  local entry = { what = what, message = err, time = os.time(), process = p and self.sup:label(p) or nil }
  if p then
    p.last_user_error = entry
    self.sup:note(p, string.format("%s failed%s: %s", what, suffix or "", err:match("^[^\n]*")))
  end
  local list = self.user_errors or { seq = 0 }
  self.user_errors = list
  list.seq = list.seq + 1
  entry.seq = list.seq
  list[#list + 1] = entry
  if #list > self.USER_ERRORS_KEPT then table.remove(list, 1) end
end

-- The user errors after seq (for the REPL), and the newest seq.
function Engine:user_errors_since(seq)
  local list = self.user_errors or { seq = 0 }
  local out = {}
  for _, e in ipairs(list) do
    if e.seq > seq then out[#out + 1] = e end
  end
  return out, list.seq
end

---------------------------------------------------------------------------
-- Views: what list/describe return (orch.views).
---------------------------------------------------------------------------

function Engine:stats(p) return views.stats(p, running) end

function Engine:view(p) return views.view(p, running, self.sampler) end

-- procs as JSON text, each as view(p) would show it.
function Engine:list_json(procs) return views.list_json(procs, running, self.sampler) end

-- Someone lists every process: orch.views' sampler keeps their CPU and
-- memory fresh off the request path for a while.
function Engine:listing()
  self.sampler = self.sampler or views.sampler(function() return self.sup:list() end, running)
  self.sampler:touch()
end

function Engine:describe(p)
  local entry = self.apps[targets.key(p)]
  return views.describe(p, {
    running = running, logs_dir = self.paths.logs, sup = self.sup, health = self.health, cluster = self.cluster,
    source = entry and entry.source,
  })
end

function Engine:shutdown()
  if self.server then
    self.server:close()
    self.server = nil
  end
  if self.http then
    self.http:close()
    self.http = nil
  end
  readiness.close(self.sup:list())
  if self.state_timer then
    self.state_timer:close()
    self.state_timer = nil
  end
  if self.event_timer then
    self.event_timer:close()
    self.event_timer = nil
  end
  require("orch.core").on_log_problem(nil)
  self.logproblems:close()
  self.triggers:close()
  self.actions:close()
  self.health:close()
  self.tree:close()
  self:save_state(true)
end

return M
