-- orch.commands: what each control-socket command does. A handler gets the
-- engine, the request's args, and respond(result) / respond(nil, code, msg);
-- it may respond later (stop waits for the processes to be gone). A rejected
-- command changes nothing: arguments and files are checked first.
local cjson = require("cjson")
local state = require("orch.state")
local launch = require("orch.launch")
local key_of = require("orch.targets").key

local M = {}
local H = {}
M.handlers = H

-- Metatable marking a result that is a list: cjson encodes an empty table
-- as {}, and orch.control writes [] for an empty list.
M.LIST = {}

-- Metatable marking a result that is JSON text already, in pieces (a
-- list of strings and numbers table.concat joins): orch.control puts it in
-- the reply as it is.
M.JSON = {}

function M.names()
  local n = {}
  for k in pairs(H) do n[#n + 1] = k end
  table.sort(n)
  return n
end

local function list(t)
  return setmetatable(t, M.LIST)
end

-- The reply most commands give: the processes as list() shows them.
local function views(engine, procs)
  local out = {}
  for _, p in ipairs(procs) do out[#out + 1] = engine:view(p) end
  return list(out)
end

-- Checks args against { field = "string" | "number" | "boolean" | "table" |
-- "string|number" ... } (every field optional unless listed in `required`).
local function check(args, fields, required)
  for _, name in ipairs(required or {}) do
    if args[name] == nil or args[name] == cjson.null then
      return nil, string.format("missing argument '%s'", name)
    end
  end
  for name, v in pairs(args) do
    local want = fields[name]
    if not want then return nil, string.format("unknown argument '%s'", tostring(name)) end
    if v ~= cjson.null and not want:find(type(v), 1, true) then
      return nil, string.format("argument '%s' must be %s, got %s", name, want:gsub("|", " or "), type(v))
    end
  end
  return true
end

local function string_map(t, what)
  if t == nil or t == cjson.null then return {} end
  for k, v in pairs(t) do
    if type(k) ~= "string" or type(v) ~= "string" then
      return nil, string.format("argument '%s' must map strings to strings", what)
    end
  end
  return t
end

-- The processes of args.target (orch.targets' forms; args.cwd: the CLI's
-- directory, for a script path), or nil once it has responded. `all` with
-- no process is an error, as in PM2 (a script's `restart all` exits 1).
local function resolve(engine, args)
  local procs, err, code = engine:resolve(tostring(args.target), { cwd = args.cwd })
  if procs and #procs == 0 then return nil, "no processes: nothing to act on", "ENOTFOUND" end
  return procs, err, code
end

local function with_procs(engine, args, respond, more)
  local fields = { target = "string|number", update_env = "boolean", env = "table", cwd = "string" }
  for k, v in pairs(more or {}) do fields[k] = v end
  local ok, err = check(args, fields, { "target" })
  if not ok then return respond(nil, "EINVAL", err) end
  local procs, rerr, code = resolve(engine, args)
  if not procs then return respond(nil, code, rerr) end
  return procs
end

-- Like with_procs, but without a target (or with `all`): every process,
-- none at all being no error.
local function optional_procs(engine, args, respond)
  if args.target == nil or args.target == "all" then
    local ok, err = check(args, { target = "string", cwd = "string" })
    if not ok then return respond(nil, "EINVAL", err) end
    return engine.sup:list()
  end
  return with_procs(engine, args, respond)
end

-- Runs fn(proc, done) for each process, then respond(views) once all are done.
local function each(engine, procs, fn, respond, after)
  local pending = #procs + 1
  local function one()
    pending = pending - 1
    if pending > 0 then return end
    if after then after() end
    respond(views(engine, procs))
  end
  for _, p in ipairs(procs) do fn(p, one) end
  one()
end

-- The names of the apps of procs: what an operation on them waits for.
local function apps_of(procs)
  local names = {}
  for _, p in ipairs(procs) do names[#names + 1] = p.name end
  return names
end

-- A command that changes the processes of args.target runs as one
-- operation (orch.ops): after those before it on the same apps, never
-- interleaved with them. The target is resolved again when it runs (what ran
-- before may have deleted or replaced processes), within the apps it waited
-- for. work(procs, finish) makes the change and ends with finish(result) or
-- finish(nil, code, message), which is the reply. merge: what makes two
-- requests the same operation (nil: never one). more: arguments it takes
-- besides with_procs's.
local function operate(engine, args, respond, merge, work, more)
  local procs = with_procs(engine, args, respond, more)
  if not procs then return end
  local keys = apps_of(procs)
  engine.ops:run(keys, merge and (merge .. "\0" .. tostring(args.target)), function(finish)
    local now, err = engine:resolve(tostring(args.target), { cwd = args.cwd })
    local held, mine = {}, {}
    for _, k in ipairs(keys) do held[k] = true end
    for _, p in ipairs(now or {}) do
      if held[p.name] then mine[#mine + 1] = p end
    end
    if #mine == 0 then
      return finish(nil, "ENOTFOUND", err or string.format("nothing left of '%s'", tostring(args.target)))
    end
    work(mine, finish)
  end, respond)
end

-- eval and complete: Lua run in the daemon, for orch eval and orch repl.
for name, fn in pairs(require("orch.evalcmd").handlers(check, list)) do H[name] = fn end

function H.ping(engine, args, respond)
  local ok, err = check(args, {})
  if not ok then return respond(nil, "EINVAL", err) end
  local core = require("orch.core")
  respond({
    pid = core.getpid(), version = require("orch.version").version, home = engine.paths.home,
    mode = engine.mode, processes = #engine.sup:list(), recovering = engine.recovering == true,
    trees = engine.tree:describe(),
    uptime_ms = math.floor((require("luv").hrtime() - engine.started_at) / 1e6),
    -- orch run's echo: lines its terminal or pipe was too slow for (the logs have them)
    echo_dropped = engine.mode == "run" and core.echo_stats().lines or nil,
    http = engine.http_info, -- {address, token_file}: orch.httpserve
    -- the daemon's re-execs (orch update) and the last one that failed
    update = engine.update_ctx and { generation = engine.update_ctx.generation, failed = engine.update_ctx.failed },
  })
end

-- orch update: the daemon re-executes itself (orch.handover).
function H.update(engine, args, respond)
  local ok, err = check(args, {})
  if not ok then return respond(nil, "EINVAL", err) end
  require("orch.handover").update(engine, respond)
end

-- restart and reload with update_env: the processes' base environment
-- becomes args.env (the CLI's) before they start again. Returns the
-- environment (nil without update_env), or nil, message.
local function new_env(args)
  if not args.update_env then return false end
  return string_map(args.env, "env")
end

local function update_env(engine, procs, env)
  if not env then return end
  local names = {}
  for _, p in ipairs(procs) do
    p.base_env = env
    local entry = engine.apps[key_of(p)]
    if entry then entry.env, entry.source.env = env, env end
    names[key_of(p)] = true
  end
  for name in pairs(names) do engine:renew_sockets(name) end
end

-- restart, and start of known apps ({target}): PM2's start NAME|ID is a
-- restart (a stopped process starts, which counts no restart). options
-- and args change the apps first (orch.amend), update_env their
-- environment. done(procs) once each has started again; or done(nil,
-- code, message), having changed nothing.
local RESTART_ARGS = { options = "table", args = "table", watch = "boolean" }

local function string_list(t, what)
  if t == nil or t == cjson.null then return nil end
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  for i = 1, n do
    if type(t[i]) ~= "string" then return nil, string.format("argument '%s' must be a list of strings", what) end
  end
  return t
end

local function restart_known(engine, args, respond, reply)
  if not with_procs(engine, args, respond, RESTART_ARGS) then return end
  local env, err = new_env(args)
  if env == nil then return respond(nil, "EINVAL", err) end
  local script_args, aerr = string_list(args.args, "args")
  if aerr then return respond(nil, "EINVAL", aerr) end
  local options = args.options ~= cjson.null and args.options or nil
  if options and next(options) == nil and not script_args then options = nil end
  -- a restart that changes the app or its environment, or toggles watching, is not the same as another
  local same = not args.update_env and not options and not script_args and not args.watch
  operate(engine, args, respond, same and "restart" or nil, function(procs, finish)
    local function go()
      if args.watch then engine.triggers:set_watching(procs, "toggle") end -- PM2's restart --watch
      update_env(engine, procs, env)
      each(engine, procs, function(p, done) engine.sup:restart(p, done) end, function(views_)
        finish(reply(views_))
      end)
    end
    if not (options or script_args) then return go() end
    local amend = require("orch.amend")
    amend.plan(engine, procs, options or {}, script_args, function(plan, code, why)
      if not plan then return finish(nil, code, why) end
      amend.apply(engine, plan)
      go()
    end)
  end, RESTART_ARGS)
end

-- Where apps come from (engine:load's source), from a request's file or
-- spec, env_name, env, cwd and only; or nil, message.
function M.source(args)
  for _, name in ipairs({ "file", "cwd" }) do
    local path = args[name]
    if path ~= nil and (path:sub(1, 1) ~= "/" or path:find("\0", 1, true)) then
      return nil, string.format("argument '%s' must be an absolute path without NUL bytes, got %s",
        name, require("orch.util").describe(path))
    end
  end
  local env, eerr = string_map(args.env, "env")
  if not env then return nil, eerr end
  local source = { file = args.file, stdin = args.stdin, spec = args.spec, env_name = args.env_name, env = env,
                   cwd = args.cwd or "/", evaluated = args.evaluated, instances = args.instances }
  if args.only ~= nil then
    local n = 0
    for _ in pairs(args.only) do n = n + 1 end
    if n == 0 then return nil, "argument 'only' must not be an empty list" end
    source.only = {}
    for i = 1, n do
      if type(args.only[i]) ~= "string" then
        return nil, "argument 'only' must be a list of app names (strings)"
      end
      source.only[i] = args.only[i]
    end
  end
  return source
end

function H.start(engine, args, respond)
  if args.target ~= nil then
    if args.file or args.stdin or args.spec then
      return respond(nil, "EINVAL", "'target' excludes 'file', 'stdin' and 'spec'")
    end
    return restart_known(engine, args, respond, function(v)
      local names, seen = {}, {}
      for _, name in ipairs(apps_of(v)) do
        if not seen[name] then names[#names + 1], seen[name] = name, true end
      end
      return { processes = v, warnings = list({}), changes = { restarted = list(names) } }
    end)
  end
  local ok, err = check(args, { file = "string", stdin = "string", spec = "table", env_name = "string",
                                only = "table", env = "table", cwd = "string", evaluated = "table",
                                instances = "string|number" })
  if not ok then return respond(nil, "EINVAL", err) end
  if (args.file and 1 or 0) + (args.stdin and 1 or 0) + (args.spec and 1 or 0) ~= 1 then
    return respond(nil, "EINVAL", "give exactly one of 'file', 'stdin', 'spec' and 'target'")
  end
  -- a process file (or its text from stdin): PM2's _startJson,
  -- startOrRestart's work (orch.pm2cmds)
  if args.file or args.stdin then
    local req = { action = "restart" }
    for k, v in pairs(args) do req[k] = v end
    return H.start_or(engine, req, respond)
  end
  return M.apply(engine, args, respond)
end

-- orch apply FILE: what runs becomes what the file says (orch's own verb):
-- its new apps start, changed ones restart with their new options,
-- unchanged running ones are left alone, those gone from it are deleted.
function H.apply(engine, args, respond)
  local ok, err = check(args, { file = "string", env_name = "string", only = "table", env = "table", cwd = "string",
                                evaluated = "table" }, { "file" })
  if not ok then return respond(nil, "EINVAL", err) end
  return M.apply(engine, args, respond)
end

-- An ecosystem file applied (engine:apply), or a single app from the
-- command line ({spec}) started.
function M.apply(engine, args, respond)
  local source, serr = M.source(args)
  if not source then return respond(nil, "EINVAL", serr) end
  -- the file's users and groups are looked up in the background (orch.runas)
  engine:load(source, function(cfg, lerr)
    if not cfg then return respond(nil, "ECONFIG", lerr) end
    M.apply_loaded(engine, source, cfg, respond)
  end)
end

-- The apps of a loaded source (M.apply) installed or applied.
function M.apply_loaded(engine, source, cfg, respond)
  local function report(changes)
    local result = {}
    for _, app in ipairs(cfg.apps) do
      for _, p in ipairs(engine:procs_of(app.key or app.name)) do result[#result + 1] = engine:view(p) end
    end
    respond({ processes = list(result), warnings = list(cfg.warnings or {}), changes = changes })
  end
  -- One operation on the apps it names and, for a file, the apps that came
  -- from that file (those gone from it are deleted). Another file's start
  -- may have added some of those by the time it runs: then it waits for
  -- them too.
  local function keys()
    local names = {}
    for _, app in ipairs(cfg.apps) do names[#names + 1] = app.name end
    if source.file and not source.only then
      for name, entry in pairs(engine.apps) do
        if entry.source.file == source.file then names[#names + 1] = name end
      end
    end
    return names
  end
  local function attempt(held)
    engine.ops:run(held, nil, function(finish)
      local set = {}
      for _, k in ipairs(held) do set[k] = true end
      for _, k in ipairs(keys()) do
        if not set[k] then return finish("again") end
      end
      if source.file then return engine:apply(cfg, source, function(changes) finish("done", changes) end) end
      -- A single script whose name runs already is refused, changing
      -- nothing, unless force (PM2's -f) asks for a second app of that name
      -- (PM2's names are not unique: the name acts on both, ids on one).
      local app = cfg.apps[1]
      if engine:name_running(app.name) then
        if not app.force then
          return finish(nil, "EEXIST", string.format("app '%s' is already running (orch restart %s; "
            .. "-f starts a second app of that name)", app.name, app.name))
        end
        app.key = engine:new_key(app.name)
      end
      engine:install(app, source)
      finish("done", { started = { app.name } })
    end, function(outcome, x, message)
      if outcome == "again" then return attempt(keys()) end
      if outcome == "done" then return report(x) end
      respond(nil, x, message)
    end)
  end
  attempt(keys())
end

function H.stop(engine, args, respond)
  operate(engine, args, respond, "stop", function(procs, finish)
    engine.triggers:set_watching(procs, false) -- as PM2's stop
    -- dependents first (depends_on)
    engine.deps:stop_ordered(procs, function() finish(views(engine, procs)) end)
  end)
end

function H.restart(engine, args, respond)
  restart_known(engine, args, respond, function(v) return v end)
end

function H.delete(engine, args, respond)
  operate(engine, args, respond, "delete", function(procs, finish)
    local names = {}
    each(engine, procs, function(p, done)
      names[key_of(p)] = true
      engine.sup:stop(p, function()
        engine.sup:remove(p) -- deleted, as its view in the reply says
        done()
      end)
    end, finish, function()
      for name in pairs(names) do engine:forget(name) end
    end)
  end)
end

function H.list(engine, args, respond)
  local ok, err = check(args, {})
  if not ok then return respond(nil, "EINVAL", err) end
  engine:listing()
  respond(setmetatable(engine:list_json(engine.sup:list()), M.JSON))
end

function H.describe(engine, args, respond)
  local procs = with_procs(engine, args, respond)
  if not procs then return end
  local described = {}
  for _, p in ipairs(procs) do described[#described + 1] = engine:describe(p) end
  respond(list(described))
end

-- Where the logs are; `orch logs` reads and follows the files itself, so no
-- log byte ever passes through the daemon twice. Also how they are written,
-- for `--timestamps`: a JSON record carries its own timestamp, and a line of a
-- log_date_format log starts with one.
function H.logs(engine, args, respond)
  local procs = optional_procs(engine, args, respond)
  if not procs then return end
  local out = {}
  for _, p in ipairs(procs) do
    local o, e = launch.log_paths(p.app, p.instance, engine.paths.logs)
    out[#out + 1] = { id = p.id, name = p.name, instance = p.instance, out_log = o, err_log = e,
                      log_type = p.app.log_type or "raw", log_date_format = launch.time_format(p.app) }
  end
  respond(list(out))
end

-- Empties the log files and deletes their rotated ones (FILE.1 ...);
-- writers go on at the new end, nothing needs reopening.
function H.flush(engine, args, respond)
  local procs = optional_procs(engine, args, respond)
  if not procs then return end
  local files, seen = {}, {}
  for _, p in ipairs(procs) do
    for _, path in ipairs({ launch.log_paths(p.app, p.instance, engine.paths.logs) }) do
      if not seen[path] and path ~= "/dev/null" then
        seen[path] = true
        if engine.sup:flush_log(path, p.app) then files[#files + 1] = path end
      end
    end
  end
  respond({ flushed = list(files) })
end

-- Opens every log file again by its path, the daemon's own log included:
-- for an external logrotate that renamed them. Returns reopened, errors.
function M.reopen_logs(engine)
  local reopened, errors = engine.sup:reopen_logs()
  local own = engine.log_sink -- set by orch.daemon
  if own then
    local ok, err = own:reopen()
    if ok then reopened[#reopened + 1] = own:path() else errors[#errors + 1] = own:path() .. ": " .. err end
  end
  return reopened, errors
end

-- (SIGUSR2 to the daemon does the same.)
function H.reopen_logs(engine, args, respond)
  local ok, err = check(args, {})
  if not ok then return respond(nil, "EINVAL", err) end
  local reopened, errors = M.reopen_logs(engine)
  respond({ reopened = list(reopened), errors = list(errors) })
end

function H.save(engine, args, respond)
  local ok, err = check(args, { force = "boolean" })
  if not ok then return respond(nil, "EINVAL", err) end
  local apps = engine:snapshot()
  engine.dump_writer = engine.dump_writer or state.writer(engine.paths.dump)
  -- No app: the dump is left as it is unless force, as PM2's (a save run
  -- by a script right after a daemon restart must not wipe the saved apps);
  -- with no dump at all an empty one is written, as PM2's.
  local uv = require("luv")
  if #apps == 0 and not args.force then
    return uv.fs_stat(engine.paths.dump, function(_, st)
      if st then return respond({ file = engine.paths.dump, apps = 0, skipped = true }) end
      engine.dump_writer.write({ version = 1, apps = {} }, function(wrote, werr)
        if not wrote then return respond(nil, "EIO", werr) end
        respond({ file = engine.paths.dump, apps = 0, skipped = true })
      end)
    end)
  end
  -- The dump it replaces stays as DUMP.bak (PM2's dump.pm2.bak), which
  -- resurrect falls back to: a second link to it, so that the dump itself
  -- stays whole until the writer's rename replaces it (a save that fails
  -- leaves it as it was). No dump yet: ENOENT, nothing to keep.
  local bak = engine.paths.dump .. ".bak"
  uv.fs_unlink(bak, function()
    uv.fs_link(engine.paths.dump, bak, function()
      engine.dump_writer.write({ version = 1, apps = apps }, function(wrote, werr)
        if not wrote then return respond(nil, "EIO", werr) end
        respond({ file = engine.paths.dump, apps = #apps })
      end)
    end)
  end)
end

-- The dump, or when it is missing or unreadable its backup (as PM2 does):
-- dump, the backup's path when it was used, and why the dump was not.
local function read_dump(path)
  local dump, derr = state.read_json(path)
  if dump and type(dump.apps) ~= "table" then dump, derr = nil, path .. ": no 'apps' list" end
  if dump then return dump end
  local bak = state.read_json(path .. ".bak")
  if bak and type(bak.apps) == "table" then
    return bak, path .. ".bak", derr == "ENOENT" and (path .. " does not exist") or derr
  end
  if derr == "ENOENT" then return nil, "ENOENT", "nothing saved: " .. path .. " does not exist (run orch save)" end
  return nil, "EIO", derr
end

function H.resurrect(engine, args, respond)
  local ok, err = check(args, {})
  if not ok then return respond(nil, "EINVAL", err) end
  local dump, backup, why = read_dump(engine.paths.dump)
  if not dump then return respond(nil, backup, why) end
  if backup then engine.log("warn", string.format("resurrect: %s; using %s", why, backup)) end
  local names = {}
  for _, e in ipairs(dump.apps) do
    if type(e) == "table" and type(e.name) == "string" then names[#names + 1] = e.name end
  end
  engine.ops:run(names, nil, function(finish)
    local started, stopped, errors = engine:restore(dump.apps)
    finish({ started = list(started), stopped = list(stopped), errors = list(errors), backup = backup, why = why })
  end, respond)
end

-- Zero-downtime reload (see Engine:reload).
function H.reload(engine, args, respond)
  if not with_procs(engine, args, respond) then return end
  local env, err = new_env(args)
  if env == nil then return respond(nil, "EINVAL", err) end
  operate(engine, args, respond, not args.update_env and "reload" or nil, function(procs, finish)
    update_env(engine, procs, env)
    engine:reload(procs, function(results)
      local failed = {}
      for _, r in ipairs(results) do
        if not r.ok then failed[#failed + 1] = string.format("id %d: %s", r.id, r.error) end
      end
      if #failed > 0 then return finish(nil, "ERELOAD", table.concat(failed, "; ")) end
      finish(views(engine, engine:resolve(tostring(args.target), { cwd = args.cwd }) or {}))
    end)
  end)
end

-- Sets the number of instances of an app: `instances`, or `delta` more
-- (or fewer) than it runs when the operation begins (PM2's scale NAME +N).
-- Sends a message over the IPC channel of each process of the target.
function H.send(engine, args, respond)
  local ok, err = check(args, { target = "string|number", message = "string|number|boolean|table" },
    { "target", "message" })
  if not ok then return respond(nil, "EINVAL", err) end
  local procs, rerr, code = engine:resolve(tostring(args.target))
  if not procs then return respond(nil, code, rerr) end
  local sent, errors = {}, {}
  for _, p in ipairs(procs) do
    local good, serr = engine.sup:send(p, args.message)
    if good then sent[#sent + 1] = p.id else errors[#errors + 1] = serr end
  end
  if #sent == 0 then return respond(nil, "ENOTRUNNING", errors[1] or "nothing to send to") end
  respond({ sent = list(sent), errors = list(errors) })
end

function H.kill(engine, args, respond)
  local ok, err = check(args, {})
  if not ok then return respond(nil, "EINVAL", err) end
  -- a service manager hears it now, not once every app has stopped
  if engine.on_stopping then engine.on_stopping() end
  engine:stop_all(function()
    -- the daemon ends once the reply is queued (it may wait for the state file)
    -- its pid: the CLI returns once it has exited (and let go of its lock)
    respond({ stopped = true, pid = require("orch.core").getpid() }, nil, nil, function()
      if engine.on_kill then engine.on_kill() end
    end)
  end)
end

-- The verbs PM2's users know: jlist, env, reset, signal, trigger, cleardump,
-- file_apps, start_or (orch.pm2cmds); scale (orch.scalecmd).
for _, module in ipairs({ "orch.pm2cmds", "orch.scalecmd" }) do
  for name, fn in pairs(require(module).handlers({ check = check, list = list, views = views,
      with_procs = with_procs, source = M.source })) do
    H[name] = fn
  end
end

return M
