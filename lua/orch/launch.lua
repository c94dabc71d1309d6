-- orch.launch: from a normalised app and an instance number to what exec
-- needs (program, argv, environment, cwd) and where its output goes.
-- Pure functions: no process is started here.
local M = {}

-- Interpreters inferred from the script's extension, as PM2 does. ".lua"
-- runs under orch itself ("orch lua FILE"), so Lua apps need no LuaJIT.
M.interpreters = {
  js = "node", mjs = "node", cjs = "node",
  py = "python3",
  sh = "sh",
  lua = true,
}

-- Variables that describe orch's own relation to its parent (socket
-- activation, an IPC channel, a notify socket) and must not leak into
-- children, where they would point at the wrong fds or the wrong pid; and
-- ORCH_HTTP, the address of orch's own endpoint: an app that is itself an
-- orch (orch run) would try to listen there too. An app's env may still
-- set any of them.
M.scrubbed_env = {
  LISTEN_FDS = true, LISTEN_PID = true, LISTEN_FDNAMES = true, LISTEN_PIDFDID = true,
  NOTIFY_SOCKET = true, WATCHDOG_USEC = true, WATCHDOG_PID = true, NODE_CHANNEL_FD = true,
  NODE_CHANNEL_SERIALIZATION_MODE = true, NODE_UNIQUE_ID = true, ORCH_HTTP = true,
}

local function extension(path)
  return path:match("%.([%w]+)$")
end

local function append(dst, src)
  for i = 1, #(src or {}) do dst[#dst + 1] = src[i] end
  return dst
end

-- balance = "preload": liborch_preload.so (preload/orch_preload.c) is
-- LD_PRELOADed into every instance, so a program that binds its port itself
-- gets the socket the daemon holds. It sits next to the orch binary in a
-- build tree, in ../lib of an installed prefix.
M.PRELOAD_LIBRARY = "liborch_preload.so"

function M.uses_preload(app)
  return app.balance == "preload" and #(app.listen or {}) > 0
end

local function readable(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

-- The library's path for the orch binary at orch_exe, or nil and the path
-- it is expected at (in the installed layout when orch sits in a bin/).
-- exists(path) is for tests.
-- A file installed with orch: next to the binary (a build tree), else in
-- subdir of the installed prefix; or nil and where it is expected.
local function installed_file(orch_exe, name, subdir, exists)
  exists = exists or readable
  local dir = orch_exe:match("^(.*)/[^/]*$") or "."
  local prefix = dir:match("^(.*)/[^/]+$") or ""
  local beside, installed = dir .. "/" .. name, prefix .. "/" .. subdir .. "/" .. name
  if exists(beside) then return beside end
  if exists(installed) then return installed end
  return nil, dir:match("/bin$") and installed or beside
end

function M.preload_library(orch_exe, exists)
  return installed_file(orch_exe, M.PRELOAD_LIBRARY, "lib", exists)
end

-- keepalive_drain: node/orch_drain.cjs, --required into every Node worker
-- of a cluster app (through NODE_OPTIONS, so that a wrapper that execs or
-- spawns node carries it too), makes a stopping worker answer each
-- kept-alive connection's next request with `Connection: close` instead of
-- cutting it (Node's server.close() destroys idle connections). Next to the
-- binary in a build tree, in share/orch of an installed prefix.
M.DRAIN_SHIM = "orch_drain.cjs"

function M.drain_shim(orch_exe, exists)
  return installed_file(orch_exe, M.DRAIN_SHIM, "share/orch", exists)
end

-- Whether any user can read path: the file readable by others and every
-- directory above it searchable by them. An app run as another user (uid,
-- gid) gets the module only then: node exits at once on a --require it
-- cannot read, and the daemon (root) reads what its users may not (a build
-- tree in a private home). stat(path) -> mode, or nil; for tests.
function M.readable_by_all(path, stat)
  stat = stat or function(p)
    local st = require("luv").fs_stat(p)
    return st and st.mode
  end
  local band = require("bit").band
  local mode = stat(path)
  if not mode or band(mode, 4) == 0 then return false end
  local dir = path:match("^(.*)/[^/]*$")
  while dir and dir ~= "" do
    mode = stat(dir)
    if not mode or band(mode, 1) == 0 then return false end
    dir = dir:match("^(.*)/[^/]*$")
  end
  return true
end

-- How long a stopping worker waits for its idle keep-alive connections'
-- next request, ms, or nil (no shim): keepalive_drain's duration, or by
-- default kill_timeout less a quarter of it (at most 500 ms less), so the
-- worker is gone before orch's SIGKILL.
function M.drain_ms(app)
  if app.exec_mode ~= "cluster" or app.keepalive_drain == false then return nil end
  if type(app.keepalive_drain) == "number" then return app.keepalive_drain end
  local kill = app.kill_timeout or 1600
  return math.floor(kill - math.min(kill / 4, 500))
end

-- NODE_OPTIONS with `--require shim` appended (Node reads it in order, so
-- the user's own options keep their effect), quoted as Node splits it.
function M.node_options(current, shim)
  local opt = '--require "' .. shim:gsub('[\\"]', "\\%0") .. '"'
  if current == nil or current == "" then return opt end
  if current:find(opt, 1, true) then return current end -- a worker's own orch start
  return current .. " " .. opt
end

-- The interpreter that runs the app's script: its own, the one its
-- extension implies, true for orch itself (Lua), or nil (executed directly).
function M.interpreter_of(app)
  if app.interpreter or app.interpreter_none or app.shell then return app.interpreter end
  return M.interpreters[extension(app.script) or ""]
end

-- Whether interp (a name or a path) is Node or Bun: PM2 makes their apps
-- with instances cluster apps.
function M.is_node(interp)
  local base = type(interp) == "string" and interp:match("[^/]*$") or ""
  return base:match("node$") ~= nil or base:match("bun$") ~= nil
end

-- The program and argv for the app's script and interpreter.
-- s as one word for sh.
local function shell_quote(s)
  if s ~= "" and not s:find("[^%w_%-%.,:/=@%%+]") then return s end
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

local function program(app, orch_exe)
  if app.shell then
    -- a command string: the shell runs it, args appended as words
    local cmd = { app.script }
    for _, a in ipairs(app.args or {}) do cmd[#cmd + 1] = shell_quote(a) end
    return { file = app.shell, argv = { app.shell, "-c", table.concat(cmd, " ") } }
  end
  local interp = M.interpreter_of(app)
  if interp == true then
    return { file = orch_exe, argv = append({ orch_exe, "lua", app.script }, app.args) }
  end
  if interp then
    local argv = append({ interp }, app.interpreter_args)
    argv[#argv + 1] = app.script
    return { file = interp, argv = append(argv, app.args) }
  end
  return { file = app.script, argv = append({ app.script }, app.args) }
end

-- Returns { file = program, argv = {...} }. orch_exe is the path of the orch
-- binary (for .lua scripts).
M.command = program

-- The marker every process orch spawns carries (ORCH_MARK=<id>@<home>,
-- home absolute): it says whose a process is after it left its group and
-- its parent (double fork + setsid), and what a crashed daemon left
-- running (core.marker_scan, orch.tree). The id comes first, so a home
-- holding an '@' still parses.
M.MARK_VAR = "ORCH_MARK"

function M.mark(home, id)
  return tostring(id) .. "@" .. home
end

-- id and home of a marker's value, or nil.
function M.parse_mark(value)
  local id, home = value:match("^(%d+)@(/.*)$")
  if id then return tonumber(id), home end
  return nil
end

-- The child's complete environment as a sorted "K=V" list: the base
-- environment (orch's own, or the CLI's), the app's env over it, then the
-- instance variables, and the marker when home (orch's, absolute) is given.
-- orch_exe defaults to the running orch binary; login: variables of the
-- app's user (orch.runas), over the base environment.
-- Whether filter_env (orch.validate's form) keeps variable k of the
-- starting environment.
local function inherited(filter, k)
  if not filter then return true end
  if filter == true then return false end
  if filter.name then return k ~= filter.name end
  for _, part in ipairs(filter) do
    if k:find(part, 1, true) then return false end
  end
  return true
end

-- What PM2 puts in each process's environment and programs read (pm2_env's
-- plain fields): they override the starting environment (a CLI run from a
-- managed process must not pass its own on) and the app's env overrides them.
local function pm2_variables(env, app, id)
  env.pm_id = tostring(id)
  env.name = app.name
  env.namespace = app.namespace or "default"
  env.exec_mode = (app.exec_mode or "fork") .. "_mode"
  env.instances = tostring(app.instances or 1)
  env.pm_exec_path = app.shell or app.script
  env.pm_cwd = app.cwd
end

-- The orch binary's path: orch_exe, else the running one's (none where
-- orch.core is absent: unit tests).
local function exe_of(orch_exe)
  if orch_exe then return orch_exe end
  local ok, core = pcall(require, "orch.core")
  return ok and core.exe_path() or nil
end

function M.environment(app, instance, id, base_env, orch_exe, home, login)
  local env = {}
  for k, v in pairs(base_env or {}) do
    if not M.scrubbed_env[k] and inherited(app.filter_env, k) then env[k] = v end
  end
  pm2_variables(env, app, id)
  -- login: HOME, USER, LOGNAME of the app's uid (orch.runas), under its env
  for k, v in pairs(login or {}) do env[k] = v end
  for k, v in pairs(app.env or {}) do env[k] = tostring(v) end
  if M.uses_preload(app) then
    -- When it is missing, the supervisor does not spawn (its error names
    -- the path).
    local exe = exe_of(orch_exe)
    local lib = exe and M.preload_library(exe)
    if lib then
      -- First, so that the program's bind() reaches it before any other
      -- library's. ld.so separates entries by ':' or ' '.
      local list = { lib }
      for entry in (env.LD_PRELOAD or ""):gmatch("[^: ]+") do
        if entry ~= lib then list[#list + 1] = entry end
      end
      env.LD_PRELOAD = table.concat(list, ":")
    end
  end
  local drain = M.drain_ms(app)
  local exe = drain and exe_of(orch_exe)
  local shim = exe and M.drain_shim(exe)
  if shim and (app.uid ~= nil or app.gid ~= nil) and not M.readable_by_all(shim) then shim = nil end
  if shim then
    env.NODE_OPTIONS = M.node_options(env.NODE_OPTIONS, shim)
    env.ORCH_DRAIN_MS = string.format("%d", drain)
  end
  env[app.instance_var or "NODE_APP_INSTANCE"] = tostring(instance)
  if app.increment_var then
    local base = tonumber(env[app.increment_var])
    if not base or base ~= math.floor(base) or math.abs(base) > 2^52 then base = 0 end
    env[app.increment_var] = string.format("%d", base + instance)
  end
  env.ORCH_INSTANCE = tostring(instance)
  env.ORCH_HOME = home
  env.ORCH_APP_NAME = app.name
  env.ORCH_ID = tostring(id)
  env[M.MARK_VAR] = home and M.mark(home, id) or nil
  local list = {}
  for k, v in pairs(env) do list[#list + 1] = k .. "=" .. v end
  table.sort(list)
  return list
end

-- PM2's file names: NAME-out.log / NAME-error.log, with -INSTANCE before the
-- extension when an app has several instances whose logs are not merged.
-- Returns out, err and the combined file (log_file) or nil.
function M.log_paths(app, instance, logs_dir)
  local function per_instance(path)
    if app.merge_logs or (app.instances or 1) <= 1 then return path end
    if path == "/dev/null" then return path end
    local stem, ext = path:match("^(.*)(%.[^./]+)$")
    if stem then return stem .. "-" .. instance .. ext end
    return path .. "-" .. instance
  end
  local safe = app.name:gsub("[^%w_.-]", "_")
  local out = app.out_file or (logs_dir .. "/" .. safe .. "-out.log")
  local err = app.error_file or (logs_dir .. "/" .. safe .. "-error.log")
  -- log_file = true: PM2's default combined file, NAME.log
  local log_file = app.log_file == true and (logs_dir .. "/" .. safe .. ".log") or app.log_file
  local combined = log_file and not app.disable_logs and per_instance(log_file) or nil
  return per_instance(out), per_instance(err), combined
end

-- Whether path is one the user named (out_file, error_file, log_file as
-- configured): a symlink there is the user's choice and is followed. Names
-- orch makes (the defaults, per-instance names) never follow one.
function M.log_path_named(app, path)
  return path == app.out_file or path == app.error_file or path == app.log_file
end

-- Log rotation (core/sink.c rotates). Bounded by default: an app without
-- max_size/retain/log_compress gets the defaults, which the daemon's
-- environment may change (ORCH_LOG_MAX_SIZE, a size, 0 for no rotation;
-- ORCH_LOG_RETAIN; ORCH_LOG_COMPRESS, 1/true or 0/false).
M.DEFAULT_MAX_SIZE = 10 * 1024 * 1024
M.DEFAULT_RETAIN = 5

-- The defaults from getenv (os.getenv by default): { max_size, retain,
-- compress } and
-- a list of complaints about values that were not understood (ignored).
function M.rotation_defaults(getenv)
  getenv = getenv or os.getenv
  local d, problems = { max_size = M.DEFAULT_MAX_SIZE, retain = M.DEFAULT_RETAIN, compress = false }, {}
  local size = getenv("ORCH_LOG_MAX_SIZE")
  if size and size ~= "" then
    local n = require("orch.util").parse_size(size)
    if n then d.max_size = n
    else problems[#problems + 1] = "ORCH_LOG_MAX_SIZE: expected a size (\"10M\", 0 for none), got \"" .. size .. "\"" end
  end
  local retain = getenv("ORCH_LOG_RETAIN")
  if retain and retain ~= "" then
    local n = tonumber(retain)
    if n and n == math.floor(n) and n >= 1 and n <= 1000 then d.retain = n
    else problems[#problems + 1] = "ORCH_LOG_RETAIN: expected 1 to 1000, got \"" .. retain .. "\"" end
  end
  local compress = getenv("ORCH_LOG_COMPRESS")
  if compress and compress ~= "" then
    local v = ({ ["1"] = true, ["true"] = true, ["0"] = false, ["false"] = false })[compress:lower()]
    if v ~= nil then d.compress = v
    else problems[#problems + 1] = "ORCH_LOG_COMPRESS: expected 1 or 0, got \"" .. compress .. "\"" end
  end
  return d, problems
end

-- How long an unfinished line may wait for its end where others write the
-- file too (core/outpipe.c): ms from ORCH_LOG_LINE_HOLD (a duration, 1s by
-- default), and a complaint about a value that was not understood, or nil.
M.DEFAULT_LINE_HOLD = 1000
function M.line_hold(getenv)
  local v = (getenv or os.getenv)("ORCH_LOG_LINE_HOLD")
  if not v or v == "" then return M.DEFAULT_LINE_HOLD end
  local ms = require("orch.util").parse_duration(v)
  if ms and ms >= 1 and ms <= 3600000 then return math.floor(ms) end
  return M.DEFAULT_LINE_HOLD, 'ORCH_LOG_LINE_HOLD: expected a duration from 1ms to 1h ("1s"), got "' .. v .. '"'
end

-- core.sink_open's rotation options for an app's log files.
function M.log_rotation(app, defaults)
  defaults = defaults or { max_size = M.DEFAULT_MAX_SIZE, retain = M.DEFAULT_RETAIN, compress = false }
  local compress = app.log_compress
  if compress == nil then compress = defaults.compress or false end
  return { max_size = app.max_size or defaults.max_size, retain = app.retain or defaults.retain,
           compress = compress }
end

-- moment.js tokens (PM2's log_date_format) and their strftime equivalents,
-- longest first. %L (milliseconds) and %:z (+hh:mm) are orch's additions,
-- handled by the log writer (core/sink.c).
local MOMENT = {
  { "YYYY", "%Y" }, { "YY", "%y" },
  { "MMMM", "%B" }, { "MMM", "%b" }, { "MM", "%m" }, { "M", "%-m" },
  { "DDDD", "%j" }, { "DD", "%d" }, { "D", "%-d" },
  { "dddd", "%A" }, { "ddd", "%a" },
  { "HH", "%H" }, { "H", "%-H" }, { "hh", "%I" }, { "h", "%-I" },
  { "mm", "%M" }, { "m", "%-M" }, { "ss", "%S" }, { "s", "%-S" },
  { "SSS", "%L" }, { "A", "%p" }, { "a", "%P" },
  { "ZZ", "%z" }, { "Z", "%:z" }, { "X", "%s" },
}

-- PM2's default for `time = true`.
M.default_time_format = "%Y-%m-%dT%H:%M:%S"

-- A moment.js format ("YYYY-MM-DD HH:mm:ss Z", text in [brackets] kept
-- literally) as a strftime format. Other characters are kept as they are.
function M.moment_to_strftime(fmt)
  local out, i, n = {}, 1, #fmt
  while i <= n do
    local c = fmt:sub(i, i)
    local matched = false
    if c == "[" then
      local close = fmt:find("]", i + 1, true)
      if close then
        out[#out + 1] = (fmt:sub(i + 1, close - 1):gsub("%%", "%%%%"))
        i, matched = close + 1, true
      end
    else
      for _, t in ipairs(MOMENT) do
        if fmt:sub(i, i + #t[1] - 1) == t[1] then
          out[#out + 1] = t[2]
          i, matched = i + #t[1], true
          break
        end
      end
    end
    if not matched then
      out[#out + 1] = c == "%" and "%%" or c
      i = i + 1
    end
  end
  return table.concat(out)
end

-- The strftime format for an app's log timestamps, or nil: log_date_format
-- is taken as strftime when it holds a '%', as moment.js otherwise.
function M.time_format(app)
  local f = app.log_date_format
  if f then return f:find("%", 1, true) and f or M.moment_to_strftime(f) end
  if app.time then return M.default_time_format end
  return nil
end

-- The `format` option of core.spawn's stdout/stderr for one stream ("out" or
-- "err") of a process, or nil when the bytes pass through untouched.
function M.log_format(app, id, stream)
  local ts = M.time_format(app)
  if app.log_type == "json" then
    return { timestamp = ts, json = { app = app.name, id = id, stream = stream } }
  end
  if ts then return { timestamp = ts } end
  return nil
end

-- Parses an environ-style list ({"K=V", ...}) into a table.
function M.env_table(list)
  local t = {}
  for _, kv in ipairs(list) do
    local k, v = kv:match("^([^=]+)=(.*)$")
    if k then t[k] = v end
  end
  return t
end

return M
