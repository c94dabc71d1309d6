-- orch.pm2cmds: the control commands behind the verbs PM2's users know:
-- jlist (PM2's JSON list), env, reset, signal, trigger (PM2's custom
-- actions), cleardump, file_apps (the apps an ecosystem file names) and
-- start_or (startOrRestart / startOrReload). orch.commands adds them to its
-- handlers; t holds what they share with it (check, list, views, with_procs,
-- source).
local core = require("orch.core")
local launch = require("orch.launch")
local jlist = require("orch.jlist")

local M = {}

-- The environment p runs with: what the kernel shows of a running process,
-- else what orch would start it with.
local function environment(engine, p)
  if p.pid and engine:is_running(p) then
    local f = io.open("/proc/" .. p.pid .. "/environ", "rb")
    local text = f and f:read("*a")
    if f then f:close() end
    if text and text ~= "" then
      local list = {}
      for kv in text:gmatch("([^%z]+)") do list[#list + 1] = kv end
      return launch.env_table(list)
    end
  end
  return launch.env_table(launch.environment(p.app, p.instance, p.id, p.base_env, nil, engine.paths.home))
end
M.environment = environment

function M.handlers(t)
  local H = {}

  -- Every process in PM2's shape (orch.jlist).
  function H.jlist(engine, args, respond)
    local ok, err = t.check(args, {})
    if not ok then return respond(nil, "EINVAL", err) end
    local out, procs = {}, {}
    for i, p in ipairs(engine.sup:list()) do procs[i] = p end
    table.sort(procs, function(a, b) return a.id < b.id end)
    for _, p in ipairs(procs) do
      out[#out + 1] = jlist.process(p, {
        view = engine:view(p), env = environment(engine, p), logs_dir = engine.paths.logs,
        actions = engine.actions and engine.actions:names(p), list = t.list,
      })
    end
    respond(t.list(out))
  end

  -- The environment of each process of the target.
  function H.env(engine, args, respond)
    local procs = t.with_procs(engine, args, respond)
    if not procs then return end
    local out = {}
    for _, p in ipairs(procs) do
      out[#out + 1] = { id = p.id, name = p.name, instance = p.instance, env = environment(engine, p) }
    end
    respond(t.list(out))
  end

  -- PM2's reset: the restart counters back to 0 (restarts, unstable exits)
  -- and created_at to now; nothing else changes.
  function H.reset(engine, args, respond)
    local procs = t.with_procs(engine, args, respond)
    if not procs then return end
    local now = engine.sup:now()
    for _, p in ipairs(procs) do
      p.restarts = 0
      p.counters.unstable = 0
      p.created_at = now
    end
    engine:save_state_soon()
    respond(t.views(engine, procs))
  end

  -- A signal to the main process of each running process of the target (as
  -- PM2's sendSignal: the process, not its group).
  function H.signal(engine, args, respond)
    local ok, err = t.check(args, { target = "string|number", signal = "string|number", cwd = "string" },
      { "target", "signal" })
    if not ok then return respond(nil, "EINVAL", err) end
    local signum = type(args.signal) == "number" and (core.signame(args.signal) and args.signal)
      or core.signum(tostring(args.signal))
    if not signum then return respond(nil, "EINVAL", string.format("unknown signal '%s'", tostring(args.signal))) end
    local procs = t.with_procs(engine, { target = args.target, cwd = args.cwd }, respond)
    if not procs then return end
    local sent, errors = {}, {}
    for _, p in ipairs(procs) do
      if p.pid and engine:is_running(p) then
        local good, kerr = core.kill(p.pid, signum)
        if good then sent[#sent + 1] = p.id else errors[#errors + 1] = engine.sup:label(p) .. ": " .. kerr end
      end
    end
    if #sent == 0 then
      return respond(nil, "ENOTRUNNING", errors[1] or string.format("no process of '%s' is running", tostring(args.target)))
    end
    respond({ signalled = t.list(sent), signal = core.signame(signum), errors = t.list(errors) })
  end

  -- PM2's custom actions (orch.actions).
  function H.trigger(engine, args, respond)
    local ok, err = t.check(args, { target = "string|number", action = "string", param = "string|number|boolean|table",
                                    timeout_ms = "number", cwd = "string" }, { "target", "action" })
    if not ok then return respond(nil, "EINVAL", err) end
    local procs = t.with_procs(engine, { target = args.target, cwd = args.cwd }, respond)
    if not procs then return end
    engine.actions:trigger(procs, args.action, args.param, args.timeout_ms, function(result, code, message)
      if not result then return respond(nil, code, message) end
      respond(result)
    end)
  end

  -- PM2's cleardump: an empty dump, so that resurrect brings back nothing.
  function H.cleardump(engine, args, respond)
    local ok, err = t.check(args, {})
    if not ok then return respond(nil, "EINVAL", err) end
    engine.dump_writer = engine.dump_writer or require("orch.state").writer(engine.paths.dump)
    engine.dump_writer.write({ version = 1, apps = {} }, function(wrote, werr)
      if not wrote then return respond(nil, "EIO", werr) end
      respond({ file = engine.paths.dump, apps = 0 })
    end)
  end

  -- with(cfg, source) once the file is loaded (its users and groups looked
  -- up in the background: orch.runas), or the error answered.
  local function load_file(engine, args, respond, extra, with)
    local fields = { file = "string", stdin = "string", env_name = "string", only = "table", env = "table",
                     cwd = "string", evaluated = "table", instances = "string|number" }
    for k, v in pairs(extra or {}) do fields[k] = v end
    local ok, err = t.check(args, fields)
    if not ok then return respond(nil, "EINVAL", err) end
    if (args.file == nil) == (args.stdin == nil) then
      return respond(nil, "EINVAL", "give exactly one of 'file' and 'stdin'")
    end
    local source, serr = t.source(args)
    if not source then return respond(nil, "EINVAL", serr) end
    engine:load(source, function(cfg, lerr)
      if not cfg then return respond(nil, "ECONFIG", lerr) end
      with(cfg, source)
    end)
  end

  -- The names of the apps of an ecosystem file: `orch stop FILE` acts on
  -- them (PM2's actionFromJson).
  function H.file_apps(engine, args, respond)
    load_file(engine, args, respond, nil, function(cfg)
      local names = {}
      for _, app in ipairs(cfg.apps) do names[#names + 1] = app.name end
      respond({ apps = t.list(names), warnings = t.list(cfg.warnings or {}) })
    end)
  end

  -- startOrRestart / startOrReload (PM2's _startJson): the file's apps that
  -- do not run start; those that run take the file's options and
  -- environment again (env_<env_name> included) and restart, or reload one
  -- instance after the other. Apps the file no longer has are left alone.
  local function start_or(engine, args, respond, cfg, source)
    if args.action ~= "restart" and args.action ~= "reload" then
      return respond(nil, "EINVAL", "argument 'action' must be \"restart\" or \"reload\"")
    end
    local keys = {}
    for _, app in ipairs(cfg.apps) do keys[#keys + 1] = app.name end
    engine.ops:run(keys, nil, function(finish)
      local done_kind = args.action == "reload" and "reloaded" or "restarted"
      local changes = { started = t.list({}), [done_kind] = t.list({}) }
      local failed = {}
      local pending = 1
      local function one()
        pending = pending - 1
        if pending > 0 then return end
        engine:save_state_soon()
        if #failed > 0 then return finish(nil, "ERELOAD", table.concat(failed, "; ")) end
        local procs = {}
        for _, app in ipairs(cfg.apps) do
          for _, p in ipairs(engine:procs_of(app.name)) do procs[#procs + 1] = p end
        end
        finish({ processes = t.views(engine, procs), warnings = t.list(cfg.warnings or {}), changes = changes })
      end
      for _, app in ipairs(cfg.apps) do
        local procs = engine:procs_of(app.name)
        if not engine:app_running(app.name) then
          engine:install(app, source)
          table.insert(changes.started, app.name)
        elseif #procs ~= app.instances then
          -- another number of instances: stopped, then started anew
          pending = pending + 1
          engine:each_proc(procs, function(p, stopped) engine.sup:stop(p, stopped) end, function()
            engine:install(app, source)
            table.insert(changes[done_kind], app.name)
            one()
          end)
        else
          engine:register(app, source)
          pending = pending + 1
          table.insert(changes[done_kind], app.name)
          if args.action == "reload" then
            engine:reload(procs, function(results)
              for _, r in ipairs(results) do
                if not r.ok then failed[#failed + 1] = string.format("id %d: %s", r.id, r.error) end
              end
              one()
            end)
          else
            engine:each_proc(procs, function(p, restarted) engine.sup:restart(p, restarted) end, one)
          end
        end
      end
      one()
    end, function(result, code, message)
      if not result then return respond(nil, code, message) end
      respond(result)
    end)
  end

  function H.start_or(engine, args, respond)
    load_file(engine, args, respond, { action = "string" },
      function(cfg, source) start_or(engine, args, respond, cfg, source) end)
  end

  return H
end

return M
