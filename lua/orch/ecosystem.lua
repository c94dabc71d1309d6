-- Ecosystem files: load (orch.ecofile: Lua in a sandbox, PM2's JSON, YAML,
-- JavaScript evaluated by the CLI), take PM2's top-level shapes, validate
-- every option exhaustively (orch.schema, orch.validate), and normalise apps
-- into plain tables with every default applied. Errors are for humans:
-- "FILE:LINE: app 'NAME': option 'X': ...", and only the first one is reported.

local util = require("orch.util")
local srcmap = require("orch.srcmap")
local schema = require("orch.schema")
local validate = require("orch.validate")
local runas = require("orch.runas")
local ecofile = require("orch.ecofile")
local launch = require("orch.launch")
local appscript = require("orch.appscript")

local describe, is_integer = util.describe, util.is_integer
local concat, sort = table.concat, table.sort
local OPTIONS, ORDER, SUGGEST, TOP_LEVEL = schema.options, schema.option_order, schema.SUGGEST, schema.TOP_LEVEL
local CHECK, check_env = validate.CHECK, validate.check_env
local list_length, int_string = validate.list_length, validate.int_string
local location = ecofile.location
local derive_name, command_name, is_command = appscript.derive_name, appscript.command_name, appscript.is_command
local missing_program, resolve_script = appscript.missing_program, appscript.resolve_script

local M = {}

M.options = OPTIONS
M.option_order = ORDER
M.MAX_INSTANCES = validate.MAX_INSTANCES
M.DEPENDENCY_CONDITIONS = validate.DEPENDENCY_CONDITIONS
M.EVAL_MESSAGE = ecofile.EVAL_MESSAGE

local function valid_name(v)
  return validate.target_word(v) ~= nil
end

local function normalize_app(raw, index, st)
  local lines = st.lines and st.lines.apps and st.lines.apps[index] or {}
  local label = "#" .. index

  local function fail(opt, msg, subkey)
    local line
    if opt then
      local subs = lines.subkeys and lines.subkeys[opt]
      line = subs and subkey and subs[subkey] or (lines.keys and lines.keys[opt])
    end
    line = line or lines.line
    local where = "app " .. label .. ": " .. (opt and ("option '" .. opt .. "': ") or "")
    return nil, location(st.file, line) .. where .. msg
  end

  local function warn(opt, msg)
    local line = lines.keys and lines.keys[opt] or lines.line
    st.warnings[#st.warnings + 1] =
      location(st.file, line) .. "app " .. label .. ": option '" .. opt .. "' " .. msg
  end

  if type(raw) ~= "table" then
    return fail(nil, "expected a table of options, got " .. describe(raw))
  end

  -- A derived name labels errors as soon as possible.
  local raw_name = rawget(raw, "name")
  local raw_script = rawget(raw, "script") or rawget(raw, "exec") or rawget(raw, "cmd") or rawget(raw, "command")
  if valid_name(raw_name) then
    label = "'" .. raw_name .. "'"
  elseif raw_name == nil and type(raw_script) == "string" and raw_script ~= "" then
    label = "'" .. (raw_script:find("%s") and command_name(raw_script) or derive_name(raw_script)) .. "'"
  end

  -- Raw access only: a user metatable must not run code while we validate.
  local vals, keys = {}, {}
  for k, v in next, raw do
    if type(k) ~= "string" then
      return fail(nil, "unexpected list item [" .. tostring(k) .. "] = " .. describe(v)
        .. "; options are written as key = value")
    end
    if v ~= st.null then
      vals[k] = v
      keys[#keys + 1] = k
    end
  end

  -- Unknown options first, in file order, so the message points at the
  -- typo. PM2 ignores them (its own fixtures hold "max": "10"): in its
  -- formats they are dropped with a warning each; orch's Lua refuses them.
  local unknown = {}
  for _, k in ipairs(keys) do
    local spec = OPTIONS[k]
    if not spec and not k:match("^env_") then unknown[#unknown + 1] = k end
  end
  if #unknown > 0 then
    local function line_of(k) return lines.keys and lines.keys[k] or math.huge end
    sort(unknown, function(a, b)
      if line_of(a) ~= line_of(b) then return line_of(a) < line_of(b) end
      return a < b
    end)
    for _, k in ipairs(unknown) do
      local guess = util.did_you_mean(k, SUGGEST)
      local hint = guess and (" (did you mean '" .. guess .. "'?)") or ""
      if not st.pm2 then return fail(k, "unknown option" .. hint) end
      warn(k, "is no option of orch's or PM2's, ignored" .. hint)
      vals[k] = nil
    end
  end

  -- Fold aliases into their canonical option, remembering the spelling used
  -- so errors name what the user wrote.
  local spelled = {}
  for _, k in ipairs(keys) do
    local target = OPTIONS[k] and OPTIONS[k].alias_of
    if target and k ~= "node_args" then
      if vals[target] ~= nil or spelled[target] then
        return fail(k, "same as '" .. target .. "', which is already set")
      end
      vals[target], vals[k], spelled[target] = vals[k], nil, k
    end
  end
  local function opt_name(o) return spelled[o] or o end
  -- start's -i over the file's instances (PM2's _startJson), before the
  -- exec mode follows from it
  if st.instances ~= nil then vals.instances = st.instances end

  local app = { config_line = lines.line }
  local ctx = { cpus = st.cpus, path = st.path, pm2 = st.pm2 }

  -- name
  if vals.name ~= nil then
    local v, e = validate.target_word(vals.name)
    if not v then return fail("name", e) end
    app.name = v
  end

  -- cwd, before anything resolved against it
  if vals.cwd ~= nil then
    local v = vals.cwd
    if type(v) ~= "string" or v == "" then
      return fail("cwd", "expected a directory path (non-empty string), got " .. describe(v))
    end
    local dir = util.abspath(v, st.dir)
    if not util.is_dir(dir) then
      return fail("cwd", (util.is_file(dir) and "not a directory: " or "no such directory: ") .. dir)
    end
    app.cwd = dir
  else
    app.cwd = st.dir
  end
  ctx.cwd = app.cwd

  -- interpreter, which decides how script is looked up
  app.interpreter_none = false
  if vals.interpreter ~= nil then
    local v = vals.interpreter
    if type(v) ~= "string" or v == "" then
      return fail(opt_name("interpreter"), "expected a non-empty string, got " .. describe(v))
    end
    if v == "none" then
      app.interpreter_none = true
    elseif v:find("/", 1, true) then
      app.interpreter = util.abspath(v, app.cwd)
    else
      app.interpreter = v
    end
  end
  ctx.no_interpreter = app.interpreter == nil

  -- script: a file, a command on PATH, or a command string for the shell
  if vals.script == nil then return fail("script", "required") end
  if is_command(vals.script, app.cwd) then
    for _, o in ipairs({ "interpreter", "interpreter_args", "node_args" }) do
      if vals[o] ~= nil then
        return fail(opt_name(o), "does not apply to a command string (" .. opt_name("script") .. " = "
          .. describe(vals.script) .. "), which runs through the shell: put the program in the command")
      end
    end
    local missing = missing_program(vals.script, ctx)
    if missing then
      return fail(opt_name("script"), "no such file: " .. util.abspath(vals.script, app.cwd)
        .. "; as a command string (it holds a space) it runs '" .. missing .. "', which is no file nor command on PATH")
    end
    app.script = vals.script
    -- PM2 runs it with bash -c, or sh -c where there is no bash.
    app.shell = util.which("bash", ctx.path) or "/bin/sh"
    if not app.name then app.name = command_name(vals.script) end
  else
    local script, err = resolve_script(vals.script, ctx)
    if err then return fail(opt_name("script"), err) end
    app.script = script
    if not app.name then app.name = derive_name(vals.script) end
  end
  -- append_env_to_name (PM2): web started with --env production is web-production
  if vals.append_env_to_name ~= nil then
    local on, e = CHECK.append_env_to_name(vals.append_env_to_name)
    if e then return fail("append_env_to_name", e) end
    if on and st.env_name then
      local named, ne = validate.target_word(app.name .. "-" .. st.env_name)
      if not named then return fail("append_env_to_name", "the name with --env's name appended " .. ne) end
      app.name = named
    end
  end
  label = "'" .. app.name .. "'"
  if st.names[app.name] then
    return fail(vals.name ~= nil and "name" or opt_name("script"),
      "duplicate name '" .. app.name .. "' (also used by app #" .. st.names[app.name] .. ")")
  end
  st.names[app.name] = index

  -- Everything else, in schema order.
  for _, o in ipairs(ORDER) do
    local spec = OPTIONS[o]
    if not spec.alias_of and not spec.pattern and o ~= "name" and o ~= "script" and o ~= "cwd"
        and o ~= "interpreter" then
      local v = vals[o]
      if v == nil then
        if not spec.compat then app[o] = util.deepcopy(spec.default) end
      else
        local check = CHECK[o]
        if st.users and (o == "uid" or o == "gid") then check = st.users.check end
        local val, e, subkey = check(v, ctx, o)
        if st.users and check == st.users.check and not e then
          st.users[#st.users + 1] = { app = app, option = o, value = val, where = select(2, fail(opt_name(o), "")) }
        end
        if e then return fail(opt_name(o), e, subkey) end
        if spec.compat == "no_effect" then
          if val ~= spec.quiet then warn(o, "has no effect: " .. spec.why) end
        elseif not spec.compat then
          app[o] = val
        end
        if o == "port" then ctx.port = val end
      end
    end
  end

  -- node_args is PM2's spelling of interpreter_args: both may be given.
  if vals.node_args ~= nil then
    local extra, e = CHECK.node_args(vals.node_args)
    if e then return fail("node_args", e) end
    for _, a in ipairs(extra) do app.interpreter_args[#app.interpreter_args + 1] = a end
  end

  -- port (PM2): over env's PORT, under the selected overlay's
  if ctx.port then app.env.PORT = int_string(ctx.port) end

  -- env_<name> overlays are all validated; the selected one is merged.
  local overlays = {}
  for _, k in ipairs(keys) do
    if k:match("^env_") then overlays[#overlays + 1] = k end
  end
  sort(overlays)
  for _, k in ipairs(overlays) do
    local overlay, e, subkey = check_env(vals[k], ctx)
    if e then return fail(k, e, subkey) end
    if st.env_name and k == "env_" .. st.env_name then
      st.env_used = true
      for name, value in pairs(overlay) do app.env[name] = value end
    end
  end

  -- Source maps (PM2 turns them on in its Node wrapper): Node's flag.
  local maps = app.source_map_support
  if maps == nil and app.disable_source_map_support == false and vals.disable_source_map_support ~= nil then
    maps = true
  end
  if maps then
    if launch.is_node(launch.interpreter_of(app)) then
      table.insert(app.interpreter_args, 1, "--enable-source-maps")
    else
      warn(vals.source_map_support ~= nil and "source_map_support" or "disable_source_map_support",
        "has no effect: source maps are Node's (the app does not run under node)")
    end
  end


  if app.disable_logs then
    app.out_file, app.error_file = "/dev/null", "/dev/null"
  end

  -- PM2's determineExecMode: instances given to a Node (or Bun) program
  -- means cluster mode; execute_command means fork mode.
  if app.execute_command then
    app.exec_mode = "fork"
  elseif app.exec_mode == nil then
    local node = vals.instances ~= nil and launch.is_node(launch.interpreter_of(app))
    app.exec_mode = node and "cluster" or "fork"
  end

  if app.balance == nil then
    app.balance = app.exec_mode == "cluster" and "round-robin" or "shared"
  end
  if app.balance == "preload" and #app.listen == 0 then
    return fail("balance", "is \"preload\", which needs the sockets to hand over (the 'listen' option)")
  end
  -- A drain kill_timeout cuts short loses the requests it drains.
  if app.exec_mode == "cluster" and type(app.keepalive_drain) == "number"
    and app.keepalive_drain >= app.kill_timeout then
    return fail("keepalive_drain", string.format("is %d ms, not below kill_timeout (%d ms): the worker would be "
      .. "killed while it drains", app.keepalive_drain, app.kill_timeout))
  end
  if app.wait_healthy and not app.health then
    return fail("wait_healthy", "needs a health check (the 'health' option)")
  end

  return app
end

-- Every dependency names an app of the same file, and there is no cycle
-- (the error names it: a -> b -> a). Returns nil or the message made by
-- where(app_index, text).
function M.check_dependencies(apps, where)
  local index = {}
  for i, app in ipairs(apps) do index[app.name] = i end
  for i, app in ipairs(apps) do
    local names = {}
    for dep in pairs(app.depends_on or {}) do names[#names + 1] = dep end
    sort(names)
    for _, dep in ipairs(names) do
      if not index[dep] then
        local all = {}
        for name in pairs(index) do all[#all + 1] = name end
        local hint = util.did_you_mean(dep, all)
        return where(i, "no app named '" .. dep .. "' in this file" .. (hint and (" (did you mean '" .. hint .. "'?)") or ""))
      end
    end
  end
  local state, stack = {}, {}
  local function visit(name)
    if state[name] == "done" then return nil end
    if state[name] == "active" then
      local cycle, from = {}, nil
      for k = 1, #stack do if stack[k] == name then from = k end end
      for k = from, #stack do cycle[#cycle + 1] = stack[k] end
      cycle[#cycle + 1] = name
      return where(index[name], "dependency cycle " .. concat(cycle, " -> "))
    end
    state[name] = "active"
    stack[#stack + 1] = name
    local deps = {}
    for dep in pairs(apps[index[name]].depends_on or {}) do deps[#deps + 1] = dep end
    sort(deps)
    for _, dep in ipairs(deps) do
      local err = visit(dep)
      if err then return err end
    end
    stack[#stack] = nil
    state[name] = "done"
    return nil
  end
  for _, app in ipairs(apps) do
    local err = visit(app.name)
    if err then return err end
  end
  return nil
end

-- PM2's shapes of a config (API._startJson): { apps = [...] }, else
-- { pm2 = [...] }, else a bare list of apps, else one app; `apps` itself
-- may be one app. Returns { apps = list, ...other top-level keys }, or tbl
-- unchanged when it is none of these (normalize then says what is wrong).
local function one_app(t, null)
  if type(t) ~= "table" or t == null or list_length(t) then return false end
  for k in next, t do
    if type(k) == "string" and (OPTIONS[k] or k:match("^env_")) then return true end
  end
  return false
end

function M.shape(tbl, null)
  if type(tbl) ~= "table" or tbl == null then return tbl end
  local apps = rawget(tbl, "apps")
  if apps == nil and rawget(tbl, "pm2") ~= nil then
    local t = {}
    for k, v in next, tbl do if k ~= "pm2" then t[k] = v end end
    t.apps = rawget(tbl, "pm2")
    tbl, apps = t, t.apps
  end
  if apps == nil then
    local n = list_length(tbl)
    if n and n > 0 then return { apps = tbl } end
    if one_app(tbl, null) then return { apps = { tbl } } end
    return tbl
  end
  if one_app(apps, null) then
    local t = {}
    for k, v in next, tbl do t[k] = v end
    t.apps = { apps }
    return t
  end
  return tbl
end

-- Validates a raw configuration table {apps = {...}} and returns
-- {file, dir, apps, warnings}. opts: file (label for messages), dir (base
-- for relative paths; default the current directory), env_name, cpus,
-- base_env (for PATH lookups), lines (line map, see line_map), null (a
-- value meaning "absent", e.g. cjson.null), pm2 (the file is in PM2's
-- formats: unknown keys warn, as PM2 ignores them; env tables are JSON),
-- instances (over every app's, as start's -i with a file).
function M.normalize(tbl, opts)
  opts = opts or {}
  local file = opts.file
  local dir = opts.dir and util.abspath(opts.dir) or util.getcwd() or "/"
  if opts.env_name ~= nil and type(opts.env_name) ~= "string" then
    return nil, "env_name must be a string, got " .. describe(opts.env_name)
  end

  local top_lines = opts.lines and opts.lines.keys or {}
  local function fail(key, msg)
    return nil, location(file, key and top_lines[key]) .. (key and ("top-level key '" .. key .. "': ") or "") .. msg
  end

  if type(tbl) ~= "table" then
    return fail(nil, "expected a table with an 'apps' list, got " .. describe(tbl))
  end
  tbl = M.shape(tbl, opts.null)

  local top_keys = {}
  for k in next, tbl do
    if type(k) ~= "string" then
      if is_integer(k) then
        return fail("apps", "required (a list of apps is numbered 1..n without gaps)")
      end
      return fail(nil, "unexpected top-level key " .. describe(k))
    end
    top_keys[#top_keys + 1] = k
  end
  sort(top_keys, function(a, b)
    local la, lb = top_lines[a] or math.huge, top_lines[b] or math.huge
    if la ~= lb then return la < lb end
    return a < b
  end)
  local apps = rawget(tbl, "apps")
  local warnings = {}
  for _, k in ipairs(top_keys) do
    if not TOP_LEVEL[k] then
      local guess = util.did_you_mean(k, { "apps", "deploy" })
      local hint = guess and (" (did you mean '" .. guess .. "'?)") or ""
      -- PM2 ignores them, as it does unknown options (but a file without
      -- apps is an error, best explained by the misspelt key).
      if not (opts.pm2 and apps ~= nil and apps ~= opts.null) then return fail(k, "unknown key" .. hint) end
      warnings[#warnings + 1] = location(file, top_lines[k]) .. "top-level key '" .. k .. "' is unknown, ignored" .. hint
    end
  end

  if apps == nil or apps == opts.null then return fail("apps", "required") end
  local n = list_length(apps)
  if not n then return fail("apps", "expected a list of app tables, got " .. describe(apps)) end
  if n == 0 then return fail("apps", "expected a non-empty list of app tables, got empty table") end

  local cpus_cache = opts.cpus
  if cpus_cache ~= nil and not (is_integer(cpus_cache) and cpus_cache >= 1) then
    return nil, "cpus must be a positive integer, got " .. describe(cpus_cache)
  end
  local base_env = opts.base_env
  local st = {
    file = file, dir = dir, env_name = opts.env_name, lines = opts.lines, null = opts.null,
    names = {}, warnings = warnings, pm2 = opts.pm2, instances = opts.instances,
    -- defer_users: uid and gid looked up later (orch.engine's load), their
    -- syntax checked now
    users = opts.defer_users and { check = function(v, _, o)
      return runas.check_user_syntax(v, o == "uid" and "user" or "group")
    end } or nil,
    -- The PATH the user's shell had decides where bare commands are found;
    -- with none, use the default execvp falls back to.
    path = (base_env and base_env.PATH) or (not base_env and os.getenv("PATH"))
      or "/usr/local/bin:/usr/bin:/bin",
    cpus = function()
      cpus_cache = cpus_cache or util.cpu_count()
      return cpus_cache
    end,
  }

  local out = {}
  for i = 1, n do
    local app, err = normalize_app(apps[i], i, st)
    if not app then return nil, err end
    out[i] = app
  end

  local derr = M.check_dependencies(out, function(i, msg)
    local l = st.lines and st.lines.apps and st.lines.apps[i] or {}
    return location(file, l.keys and l.keys.depends_on or l.line) .. "app '" .. out[i].name
      .. "': option 'depends_on': " .. msg
  end)
  if derr then return nil, derr end

  -- PM2's deploy.<env>.env, with --env <env>: under each app's env and
  -- env_<env> (Common.mergeEnvironmentVariables).
  local deploy = rawget(tbl, "deploy")
  local target = st.env_name and type(deploy) == "table" and rawget(deploy, st.env_name)
  local denv = type(target) == "table" and rawget(target, "env")
  if denv and denv ~= opts.null then
    local vars, eerr = check_env(denv, { pm2 = st.pm2 })
    if not vars then return fail("deploy", st.env_name .. ".env: " .. eerr) end
    for _, app in ipairs(out) do
      for k, v in pairs(vars) do
        if app.env[k] == nil then app.env[k] = v end
      end
    end
    st.env_used = true
  end

  if st.env_name and not st.env_used then
    st.warnings[#st.warnings + 1] = location(file, nil) .. "no app defines 'env_" .. st.env_name
      .. "', so the environment '" .. st.env_name .. "' changes nothing"
  end

  if st.users then st.users.check = nil end
  return { file = file, dir = dir, apps = out, warnings = st.warnings, users = st.users }
end


-- Loads, validates and normalises the ecosystem file at `path`.
-- opts: env_name, cpus, base_env, deadline_ms (Lua evaluation budget),
-- cwd (base for a relative `path`; default the process's cwd), evaluated
-- (a JavaScript file's value), instances (as normalize's), text (the
-- file's JSON text, read from stdin by the CLI: `path` is then its label
-- and relative paths start at cwd).
function M.load(path, opts)
  opts = opts or {}
  if type(path) ~= "string" or path == "" then
    return nil, "ecosystem path must be a non-empty string, got " .. describe(path)
  end
  if opts.deadline_ms ~= nil and not (type(opts.deadline_ms) == "number" and opts.deadline_ms > 0) then
    return nil, "deadline_ms must be a positive number, got " .. describe(opts.deadline_ms)
  end
  local file, dir, src, kind, err
  if opts.text ~= nil then
    file, dir, src, kind = path, util.abspath(opts.cwd or util.getcwd() or "/"), opts.text, "json"
  else
    file = util.abspath(path, opts.cwd)
    dir = util.dirname(file)
    if util.is_dir(file) then return nil, file .. ": is a directory" end
    local f, oerr = io.open(file, "r")
    if not f then return nil, oerr end
    src = f:read("*a")
    f:close()
    if not src then return nil, file .. ": cannot read file" end
    kind = require("orch.ecocli").kind(file, src)
  end
  local raw, null, find_lines
  if kind == "js" then
    raw = opts.evaluated
    if raw == nil then
      return nil, file .. ": a JavaScript config is evaluated with Node by the orch CLI (orch start FILE), "
        .. "not here"
    end
    if type(raw) ~= "table" then
      return nil, file .. ": expected the file to export an object with an 'apps' list, got " .. describe(raw)
    end
    null = require("cjson").null
    find_lines = srcmap.js_lines
  elseif kind == "json" then
    if opts.evaluated ~= nil and type(opts.evaluated) == "table" then
      raw, null = opts.evaluated, require("cjson").null -- an expression, evaluated by Node in the CLI
    else
      raw, err, null = ecofile.json(src, file)
    end
    find_lines = srcmap.json_lines
  elseif kind == "yaml" then
    raw, err, null = ecofile.yaml(src, file)
    find_lines = function(text, n) return srcmap.shaped(require("orch.yamlconf").outline(text), n) end
  else
    raw, err = ecofile.lua(src, file, opts)
    find_lines = srcmap.lua_lines
  end
  if not raw then return nil, err end

  if null then
    -- null means "not given" for options, as in PM2.
    local function strip(t)
      for k, v in pairs(t) do
        if v == null and type(k) == "string" then t[k] = nil
        elseif type(v) == "table" and v ~= null then strip(v) end
      end
    end
    strip(raw)
  end

  raw = M.shape(raw, null)
  local apps = type(raw) == "table" and rawget(raw, "apps")
  local napps = type(apps) == "table" and list_length(apps) or -1
  -- Line numbers are a convenience: a tokenizer surprise must never turn
  -- a valid file into an error.
  local ok, lines = pcall(find_lines, src, napps)
  if not ok then lines = nil end

  return M.normalize(raw, {
    file = file, dir = dir, env_name = opts.env_name, cpus = opts.cpus,
    base_env = opts.base_env, lines = lines, null = null, pm2 = kind ~= "lua", instances = opts.instances,
    defer_users = opts.defer_users,
  })
end

return M
