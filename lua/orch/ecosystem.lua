-- Ecosystem files: load (Lua in a sandbox, or JSON), validate every option
-- exhaustively, and normalise apps into plain tables with every default
-- applied. Errors are for humans: "FILE:LINE: app 'NAME': option 'X': ...",
-- and only the first one is reported.

local util = require("orch.util")
local srcmap = require("orch.srcmap")
local health = require("orch.health")
local hook = require("orch.hook")
local bounds = require("orch.bounds")

local describe, quote, is_integer = util.describe, util.quote, util.is_integer
local sub, concat, sort = string.sub, table.concat, table.sort

local M = {}

---------------------------------------------------------------------------
-- Schema
---------------------------------------------------------------------------

-- `orch help` and docs/ecosystem.md read this table, so it stays plain data;
-- the checking code lives in CHECK below. `order` gives a stable listing.
local OPTIONS, ORDER = {}, {}

local function option(name, spec)
  ORDER[#ORDER + 1] = name
  spec.order = #ORDER
  OPTIONS[name] = spec
end

option("name", { type = "string", default_doc = "script file name without extension",
  doc = "Process name used by every command. Letters, digits, '_', '.', '-'; not all digits; unique in the file." })
option("script", { type = "string", required = true,
  doc = "Program to run. Resolved against cwd; a bare command name absent from cwd is looked up on PATH when no interpreter is set." })
option("args", { type = "string|list", default = {},
  doc = "Arguments for the script. A string is split like a shell does (quotes, backslashes), without any expansion." })
option("interpreter", { type = "string", default_doc = "none: the script is executed directly",
  doc = "Program that runs the script (e.g. \"python3\", \"node\"). \"none\" means no interpreter." })
option("interpreter_args", { type = "string|list", default = {},
  doc = "Arguments for the interpreter, placed before the script." })
option("node_args", { type = "string|list", alias_of = "interpreter_args",
  doc = "PM2 name of interpreter_args; appended to interpreter_args when both are given." })
option("cwd", { type = "string", default_doc = "directory of the ecosystem file",
  doc = "Working directory of the process; relative paths are resolved against the ecosystem file's directory. Must exist." })
option("env", { type = "table", default = {},
  doc = "Environment variables added to the process environment. Values may be strings, numbers or booleans (no NUL bytes)." })
option("env_<name>", { type = "table", pattern = "^env_",
  doc = "Environment overlay merged over env when started with --env <name>." })
option("instances", { type = "integer|string", default = 1,
  doc = "Number of processes, at most 1024. 0 or \"max\": one per CPU; -N: CPUs minus N (at least 1)." })
option("exec_mode", { type = "string", default = "fork",
  doc = "\"fork\" (independent processes) or \"cluster\" (instances are workers of Node's cluster protocol: a Node script's listen() gets its socket from orch, balanced by `balance`). PM2's fork_mode/cluster_mode are accepted." })
option("listen", { type = "string|list|table", default = {},
  doc = "Sockets the daemon binds and holds for the app (they outlive restarts): \"tcp://127.0.0.1:8000\", \"tcp://[::1]:8000\", \"unix:///run/app.sock\"; a list, or a table of name = address." })
option("balance", { type = "string", default_doc = "\"round-robin\" in cluster mode, else \"shared\"",
  doc = "How instances share the sockets: \"shared\" (every instance inherits the listen sockets by systemd socket activation: LISTEN_FDS, LISTEN_PID, LISTEN_FDNAMES, fds from 3; cluster workers get the socket itself), \"round-robin\" (orch accepts and hands each connection to the next cluster worker) or \"preload\" (an LD_PRELOAD library turns the program's own bind() on a listen address into the shared socket)." })
option("cluster_max_sockets", { type = "integer", default_doc = "16",
  doc = "Cluster mode: how many sockets orch binds or keeps for the app's workers (the servers they listen on, 1 to 1024); a worker's listen() past it fails with EMFILE." })
option("port", { type = "integer", compat = "ignored",
  doc = "Shortcut for env.PORT (set only when env has no PORT)." })
option("autorestart", { type = "boolean", default = true,
  doc = "Restart the process when it exits." })
option("max_restarts", { type = "integer", default = 16,
  doc = "Unstable exits (before min_uptime) in a row after which the process is marked errored." })
option("min_uptime", { type = "duration", default = 1000,
  doc = "An exit sooner than this after start counts as unstable." })
option("restart_delay", { type = "duration", default = 0,
  doc = "Delay before a restart." })
option("exp_backoff_restart_delay", { type = "duration", default = 0,
  doc = "Initial delay of exponential backoff between restarts; 0 disables backoff." })
option("stop_exit_codes", { type = "integer|list", default = {},
  doc = "Exit codes after which the process is not restarted." })
option("kill_timeout", { type = "duration", default = 1600,
  doc = "Time between kill_signal and SIGKILL when stopping." })
option("kill_signal", { type = "signal", default = "SIGINT",
  doc = "Signal sent to the process group to stop it: a name (\"SIGTERM\", \"term\") or a number." })
option("listen_timeout", { type = "duration", default = 3000,
  doc = "How long to wait for a wait_ready process to signal ready." })
option("wait_ready", { type = "boolean", default = false,
  doc = "The process is online only after it sends 'ready' over the IPC channel." })
option("health", { type = "table", default_doc = "none",
  doc = "Health check: one of http = URL, tcp = \"HOST:PORT\", exec = argv, check = function(proc, done) (Lua only), with interval, timeout, retries, start_period." })
option("wait_healthy", { type = "boolean", default = false,
  doc = "The process is online only after its first good health check." })
option("shutdown_with_message", { type = "boolean", default = false,
  doc = "Send a 'shutdown' IPC message before kill_signal." })
option("restart", { type = "function", lua_only = true,
  doc = "Lua files only: a restart policy function replacing the built-in one." })
option("on_start", { type = "function", lua_only = true,
  doc = "Lua files only: on_start(proc) runs when a process of the app has been spawned." })
option("on_online", { type = "function", lua_only = true,
  doc = "Lua files only: on_online(proc) runs when a process of the app is online." })
option("on_exit", { type = "function", lua_only = true,
  doc = "Lua files only: on_exit(proc, code, signal) runs when a process of the app exits (code or signal is nil)." })
option("on_message", { type = "function", lua_only = true,
  doc = "Lua files only: on_message(proc, msg) runs for every message the process sends over its IPC channel (process.send in Node)." })
option("hook_deadline", { type = "duration", default = 100,
  doc = "How long a hook or restart function of this app may run before it is interrupted." })
option("depends_on", { type = "table|list", default = {},
  doc = "Apps of the same file this one waits for: { db = \"healthy\", migrate = \"completed\" } (conditions started, online, healthy, completed) or a list of names (online). Started in dependency order, stopped in reverse." })
option("out_file", { type = "string", default_doc = "orch's log directory",
  doc = "File for stdout; relative to cwd." })
option("error_file", { type = "string", default_doc = "orch's log directory",
  doc = "File for stderr; relative to cwd." })
option("log_file", { type = "string", default_doc = "none",
  doc = "File receiving both stdout and stderr; relative to cwd." })
option("merge_logs", { type = "boolean", default = false,
  doc = "All instances of the app write the same log files instead of one per instance." })
option("log_date_format", { type = "string", default_doc = "none",
  doc = "Timestamp format prefixed to each log line." })
option("time", { type = "boolean", default = false,
  doc = "Prefix log lines with a timestamp." })
option("log_type", { type = "string", default = "raw",
  doc = "\"raw\": lines as written (with a timestamp when log_date_format or time is set); \"json\": one JSON object per line." })
option("disable_logs", { type = "boolean", default = false,
  doc = "Discard output: out_file and error_file become /dev/null." })
option("max_size", { type = "size|boolean", default_doc = "10M, or $ORCH_LOG_MAX_SIZE of the daemon",
  doc = "Rotate a log file when it would grow past this size (FILE -> FILE.1 -> FILE.2 ...); 0 or false: never rotate." })
option("retain", { type = "integer", default_doc = "5, or $ORCH_LOG_RETAIN of the daemon",
  doc = "Rotated files kept per log file (FILE.1 ... FILE.N, the oldest deleted), 1 to 1000." })
option("log_compress", { type = "boolean", default_doc = "false, or $ORCH_LOG_COMPRESS of the daemon",
  doc = "gzip each rotated log file (FILE.1.gz, FILE.2.gz ...), in a worker thread." })
option("watch", { type = "boolean|string|list", default = false,
  doc = "Restart when files change: true watches cwd, or give paths (relative to cwd)." })
option("ignore_watch", { type = "string|list", default = {},
  doc = "Patterns excluded from watching." })
option("watch_delay", { type = "duration", default = 500,
  doc = "How long watched files must stay quiet before the app is restarted (one restart per burst of changes)." })
option("max_memory_restart", { type = "size", default_doc = "none",
  doc = "Restart when the process's memory exceeds this size." })
option("cron_restart", { type = "string", default_doc = "none",
  doc = "Cron expression (5 or 6 fields) at which the app is restarted." })

-- PM2 aliases, resolved to their canonical option.
option("exec", { type = "string", alias_of = "script", doc = "PM2 alias of script." })
option("exec_interpreter", { type = "string", alias_of = "interpreter", doc = "PM2 alias of interpreter." })
option("combine_logs", { type = "boolean", alias_of = "merge_logs", doc = "PM2 alias of merge_logs." })
option("cron", { type = "string", alias_of = "cron_restart", doc = "PM2 alias of cron_restart." })
for _, a in ipairs({ "out", "output", "out_log" }) do
  option(a, { type = "string", alias_of = "out_file", doc = "PM2 alias of out_file." })
end
for _, a in ipairs({ "error", "err", "err_file", "err_log" }) do
  option(a, { type = "string", alias_of = "error_file", doc = "PM2 alias of error_file." })
end
option("log", { type = "string", alias_of = "log_file", doc = "PM2 alias of log_file." })

-- PM2 options with no meaning here, accepted (type-checked) so PM2 files load.
local IGNORED = {
  namespace = "string", vizion = "boolean", autodump = "boolean", treekill = "boolean",
  pmx = "boolean", automation = "boolean", source_map_support = "boolean",
  disable_source_map_support = "boolean", instance_var = "string",
  filter_env = "boolean|string|list", post_update = "list", force = "boolean",
  append_env_to_name = "boolean", increment_var = "string", kill_retry_time = "duration",
  windowsHide = "boolean", trace = "boolean", disable_trace = "boolean",
  deep_monitoring = "boolean", username = "string",
}
-- PM2 options a user would miss if silently dropped: accepted with a warning.
local UNSUPPORTED = {
  pid_file = "string", pid = "string", uid = "integer|string", user = "integer|string",
  gid = "integer|string", watch_options = "table",
}
do
  local names = {}
  for n in pairs(IGNORED) do names[#names + 1] = n end
  for n in pairs(UNSUPPORTED) do names[#names + 1] = n end
  sort(names)
  for _, n in ipairs(names) do
    local unsupported = UNSUPPORTED[n] ~= nil
    option(n, { type = IGNORED[n] or UNSUPPORTED[n], compat = unsupported and "unsupported" or "ignored",
      doc = unsupported and "PM2 option not supported by orch: accepted with a warning and ignored."
        or "PM2 option accepted for compatibility and ignored." })
  end
end

M.options = OPTIONS
M.option_order = ORDER

local TOP_LEVEL = { apps = true, deploy = true }

-- Option names for suggestions: everything but the env_<name> pattern entry.
local SUGGEST = {}
for _, n in ipairs(ORDER) do
  if not OPTIONS[n].pattern then SUGGEST[#SUGGEST + 1] = n end
end

---------------------------------------------------------------------------
-- Value checks
---------------------------------------------------------------------------

-- Each check takes the raw value (never nil) and a context, and returns the
-- normalised value, or nil plus a message (and optionally a sub-key whose
-- line is more precise than the option's own).

local function list_length(t)
  if type(t) ~= "table" then return nil end
  local n = 0
  for k in pairs(t) do
    if type(k) ~= "number" or k < 1 or k ~= math.floor(k) then return nil end
    n = n + 1
  end
  for i = 1, n do if t[i] == nil then return nil end end
  return n
end

local function to_integer(v)
  if is_integer(v) then return v end
  if type(v) == "string" and v:match("^%s*%-?%d+%s*$") then return tonumber(v) end
  return nil
end

local function int_string(n)
  if is_integer(n) and math.abs(n) < 2^53 then return string.format("%d", n) end
  return tostring(n)
end

local function expected(what, v)
  return nil, "expected " .. what .. ", got " .. describe(v)
end

local function check_boolean(v)
  if type(v) == "boolean" then return v end
  return expected("a boolean", v)
end

local function check_string(v)
  if type(v) == "string" and v ~= "" then return v end
  return expected("a non-empty string", v)
end

local function check_nonneg_integer(v)
  local n = to_integer(v)
  if n and n >= 0 then return n end
  return expected("a non-negative integer", v)
end

local function check_socket_cap(v)
  local n = to_integer(v)
  if n and n >= 1 and n <= 1024 then return n end
  return expected("an integer from 1 to 1024", v)
end

local function check_duration(v)
  local ms = util.parse_duration(v)
  if ms then return ms end
  return expected("a duration (" .. util.DURATION_HINT .. ")", v)
end

-- A list of strings from a string (one item) or a list of strings.
local function check_string_list(v)
  if type(v) == "string" then return { v } end
  local n = list_length(v)
  if not n then return expected("a string or a list of strings", v) end
  local out = {}
  for i = 1, n do
    if type(v[i]) ~= "string" then
      return nil, "item " .. i .. ": expected a string, got " .. describe(v[i])
    end
    out[i] = v[i]
  end
  return out
end

-- Argument vectors: a string is split shell-style; list items may be numbers.
local function check_argv(v)
  if type(v) == "string" then
    local words, err = util.split_args(v)
    if not words then return nil, err .. " in " .. describe(v) end
    return words
  end
  local n = list_length(v)
  if not n then return expected("a string or a list of strings", v) end
  local out = {}
  for i = 1, n do
    local x = v[i]
    if type(x) == "string" then out[i] = x
    elseif type(x) == "number" then out[i] = int_string(x)
    else return nil, "item " .. i .. ": expected a string or number, got " .. describe(x) end
  end
  return out
end

local function check_env(v)
  if type(v) ~= "table" then return expected("a table of NAME = value", v) end
  local names = {}
  for k in pairs(v) do
    if type(k) ~= "string" then
      return nil, "expected variable names as keys, got key " .. describe(k)
    end
    names[#names + 1] = k
  end
  sort(names)
  local out = {}
  for _, k in ipairs(names) do
    if k == "" or k:find("[=%z]") then
      return nil, "invalid variable name " .. quote(k), k
    end
    local x = v[k]
    local t = type(x)
    if t == "string" and x:find("%z") then
      -- the program would see it cut short there
      return nil, "variable '" .. k .. "': contains a NUL byte, which an environment cannot hold", k
    elseif t == "string" then out[k] = x
    elseif t == "number" then out[k] = int_string(x)
    elseif t == "boolean" then out[k] = tostring(x)
    else
      return nil, "variable '" .. k .. "': expected a string, number or boolean, got " .. describe(x), k
    end
  end
  return out
end

local function check_path(v, ctx)
  if type(v) == "string" and v:find("\0", 1, true) then return nil, "a path cannot contain a NUL byte" end
  if type(v) == "string" and v ~= "" then return util.abspath(v, ctx.cwd) end
  return expected("a file path (non-empty string)", v)
end

-- Loose type check for compatibility-only options: "boolean|string|list".
local function check_types(types)
  return function(v)
    for t in types:gmatch("[^|]+") do
      if (t == "list" and list_length(v))
        or (t == "integer" and is_integer(v))
        or (t == "duration" and util.parse_duration(v))
        or type(v) == t then
        return v
      end
    end
    local words = {}
    for t in types:gmatch("[^|]+") do words[#words + 1] = (t == "integer" and "an " or "a ") .. t end
    local what = #words > 1 and (concat(words, ", ", 1, #words - 1) .. " or " .. words[#words]) or words[1]
    return expected(what, v)
  end
end


local CHECK = {
  args = check_argv,
  interpreter_args = check_argv,
  node_args = check_argv,
  env = check_env,
  autorestart = check_boolean,
  max_restarts = check_nonneg_integer,
  cluster_max_sockets = check_socket_cap,
  min_uptime = check_duration,
  restart_delay = check_duration,
  exp_backoff_restart_delay = check_duration,
  kill_timeout = check_duration,
  hook_deadline = check_duration,
  listen_timeout = check_duration,
  wait_ready = check_boolean,
  health = health.validate,
  wait_healthy = check_boolean,
  shutdown_with_message = check_boolean,
  out_file = check_path,
  error_file = check_path,
  merge_logs = check_boolean,
  time = check_boolean,
  disable_logs = check_boolean,
  log_compress = check_boolean,
  ignore_watch = check_string_list,
  watch_delay = check_duration,
}

M.MAX_INSTANCES = 1024 -- as `orch scale` allows

function CHECK.instances(v, ctx)
  local n = v == "max" and 0 or to_integer(v)
  if not n then
    return expected('a positive integer, 0 or "max" (one per CPU), or -N (CPUs minus N)', v)
  end
  if n > M.MAX_INSTANCES then
    return expected(string.format("at most %d instances", M.MAX_INSTANCES), v)
  end
  if n > 0 then return n end
  local cpus = ctx.cpus()
  return math.max(1, cpus + n)
end

local EXEC_MODES = { fork = "fork", cluster = "cluster", fork_mode = "fork", cluster_mode = "cluster" }

function CHECK.exec_mode(v)
  if EXEC_MODES[v] then return EXEC_MODES[v] end
  local guess = type(v) == "string" and util.did_you_mean(v, { "fork", "cluster" })
  local ok, err = expected('"fork" or "cluster"', v)
  return ok, err .. (guess and (' (did you mean "' .. guess .. '"?)') or "")
end

function CHECK.port(v)
  local n = to_integer(v)
  if n and n >= 0 and n <= 65535 then return n end
  return expected("a port number (integer 0-65535)", v)
end

function CHECK.stop_exit_codes(v)
  local function code(x)
    local n = to_integer(x)
    return n and n >= 0 and n <= 255 and n or nil
  end
  if type(v) ~= "table" then
    local n = code(v)
    if n then return { n } end
    return expected("an exit code (integer 0-255) or a list of them", v)
  end
  local len = list_length(v)
  if not len then return expected("an exit code (integer 0-255) or a list of them", v) end
  local out = {}
  for i = 1, len do
    out[i] = code(v[i])
    if not out[i] then
      return nil, "item " .. i .. ": expected an exit code (integer 0-255), got " .. describe(v[i])
    end
  end
  return out
end

function CHECK.kill_signal(v)
  return util.signal_name(v)
end

function CHECK.restart(v)
  if type(v) == "function" then return v end
  return expected("a function", v)
end
CHECK.on_start, CHECK.on_online, CHECK.on_exit = CHECK.restart, CHECK.restart, CHECK.restart
CHECK.on_message = CHECK.restart

function CHECK.log_type(v)
  if v == "raw" or v == "json" then return v end
  return expected('"raw" or "json"', v)
end

-- The format becomes part of every log line; a bound keeps it from
-- overflowing the log writer's buffers (core/sink.c).
function CHECK.log_date_format(v)
  local s, err = check_string(v)
  if not s then return nil, err end
  if #s > 100 then return nil, "expected a format of at most 100 characters, got " .. #s end
  return s
end

function CHECK.log_file(v, ctx)
  if v == false then return nil end
  if v == true then
    return nil, "expected a file path (non-empty string), got boolean true (orch has no default combined log file)"
  end
  return check_path(v, ctx)
end

function CHECK.watch(v, ctx)
  if v == false then return false end
  if v == true then return { ctx.cwd } end
  local list, err = check_string_list(v)
  if not list then
    if err:match("^expected") then return expected("a boolean, a path or a list of paths", v) end
    return nil, err
  end
  if #list == 0 then return false end
  for i, p in ipairs(list) do
    local path, perr = check_path(p, ctx)
    if not path then return nil, "item " .. i .. ": " .. perr end
    list[i] = path
  end
  return list
end

-- Log rotation: 0 (never) is kept, unlike max_memory_restart's, since an
-- absent max_size means the daemon's default.
function CHECK.max_size(v)
  if v == false then return 0 end
  local bytes = util.parse_size(v)
  if not bytes then return expected("a size (" .. util.SIZE_HINT .. "), 0 for no rotation", v) end
  return bytes
end

function CHECK.retain(v)
  local n = to_integer(v)
  if n and n >= 1 and n <= 1000 then return n end
  return expected("a number of files from 1 to 1000", v)
end

function CHECK.max_memory_restart(v)
  local bytes = util.parse_size(v)
  if not bytes then return expected("a size (" .. util.SIZE_HINT .. ")", v) end
  if bytes == 0 then return nil end
  return bytes
end

function CHECK.cron_restart(v)
  if v == false then return nil end
  local sched, err = require("orch.cron").parse(v)
  if not sched then
    if type(v) ~= "string" then return expected('a cron expression (e.g. "0 3 * * *")', v) end
    return nil, "invalid cron expression " .. quote(v) .. ": " .. err
  end
  return util.trim(v)
end

M.DEPENDENCY_CONDITIONS = { started = true, online = true, healthy = true, completed = true }

-- { name = condition } from a map or a list of names (condition "online").
function CHECK.depends_on(v)
  if type(v) ~= "table" then return expected("a table of app name = condition, or a list of app names", v) end
  local out = {}
  for k, c in pairs(v) do
    local name, cond
    if is_integer(k) then name, cond = c, "online" else name, cond = k, c end
    if type(name) ~= "string" or name == "" then
      return nil, "expected app names, got " .. describe(name)
    end
    if not M.DEPENDENCY_CONDITIONS[cond] then
      return nil, string.format('condition for \'%s\' must be "started", "online", "healthy" or "completed", got %s',
        name, describe(cond)), name
    end
    out[name] = cond
  end
  return out
end

-- "tcp://HOST:PORT" (numeric host, IPv6 in brackets) or "unix:///path".
local function parse_address(s)
  if type(s) ~= "string" then return nil, "expected an address string, got " .. describe(s) end
  local host, port = s:match("^tcp://%[([%x:%.]+)%]:(%d+)$")
  if not host then host, port = s:match("^tcp://([%d%.]+):(%d+)$") end
  if host then
    port = tonumber(port)
    if port > 65535 then return nil, "port out of range in " .. quote(s) end
    return { kind = "tcp", host = host, port = port, address = s }
  end
  local path = s:match("^unix://(/.+)$")
  if path then return { kind = "unix", path = path, address = s } end
  return nil, "expected \"tcp://HOST:PORT\" (a numeric address) or \"unix:///path\", got " .. quote(s)
end

-- A list of { name, kind, host, port | path, address }; names label the fds
-- in LISTEN_FDNAMES.
function CHECK.listen(v, ctx)
  local entries = {}
  if type(v) == "string" then v = { v } end
  if type(v) ~= "table" then return expected("an address, a list of addresses or a table of name = address", v) end
  local n = list_length(v)
  if n then
    for i = 1, n do entries[#entries + 1] = { nil, v[i] } end
  else
    local names = {}
    for k in pairs(v) do names[#names + 1] = k end
    for _, k in ipairs(names) do
      if type(k) ~= "string" or not k:match("^[%w_.-]+$") then
        return nil, "socket names must be words (letters, digits, _ . -), got " .. describe(k)
      end
    end
    sort(names)
    for _, k in ipairs(names) do entries[#entries + 1] = { k, v[k] } end
  end
  local out = {}
  for i, e in ipairs(entries) do
    local a, err = parse_address(e[2])
    if not a then return nil, err, e[1] end
    a.name = e[1] or ("listen" .. (i > 1 and i or ""))
    out[#out + 1] = a
  end
  return out
end

function CHECK.balance(v)
  if v == "shared" or v == "round-robin" or v == "preload" then return v end
  return expected('"shared", "round-robin" or "preload"', v)
end

for name, types in pairs(IGNORED) do CHECK[name] = check_types(types) end
for name, types in pairs(UNSUPPORTED) do CHECK[name] = check_types(types) end
for name, spec in pairs(OPTIONS) do
  if spec.alias_of and not CHECK[name] then CHECK[name] = CHECK[spec.alias_of] end
end

---------------------------------------------------------------------------
-- Normalisation
---------------------------------------------------------------------------

local function copy(v)
  if type(v) ~= "table" then return v end
  local t = {}
  for k, x in pairs(v) do t[k] = copy(x) end
  return t
end

local function location(file, line)
  if file and line then return file .. ":" .. line .. ": " end
  if file then return file .. ": " end
  if line then return "line " .. line .. ": " end
  return ""
end

local function valid_name(v)
  return type(v) == "string" and v ~= "" and not v:find("[^%w_%.%-]") and not v:match("^%d+$")
end

local function derive_name(script)
  local base = util.basename(script)
  base = base:match("^(.+)%.[^.]*$") or base
  base = base:gsub("[^%w_%.%-]", "_")
  if base == "" or base:match("^%d+$") then base = "app_" .. base end
  return base
end

-- Resolves `script` following PM2: a path relative to cwd, or a bare command
-- found on PATH when nothing would interpret it.
local function resolve_script(v, ctx)
  if type(v) ~= "string" or v == "" then return expected("a non-empty string", v) end
  local full = util.abspath(v, ctx.cwd)
  if util.is_file(full) then return full end
  if util.is_dir(full) then return nil, "is a directory: " .. full end
  if not v:find("/", 1, true) and ctx.no_interpreter and util.which(v, ctx.path) then
    return v
  end
  return nil, "no such file: " .. full
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
  local raw_name, raw_script = rawget(raw, "name"), rawget(raw, "script") or rawget(raw, "exec")
  if valid_name(raw_name) then
    label = "'" .. raw_name .. "'"
  elseif raw_name == nil and type(raw_script) == "string" and raw_script ~= "" then
    label = "'" .. derive_name(raw_script) .. "'"
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

  -- Unknown options first, in file order, so the message points at the typo.
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
    local k = unknown[1]
    local guess = util.did_you_mean(k, SUGGEST)
    return fail(k, "unknown option" .. (guess and (" (did you mean '" .. guess .. "'?)") or ""))
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

  local app = { config_line = lines.line }
  local ctx = { cpus = st.cpus, path = st.path }

  -- name
  if vals.name ~= nil then
    local v = vals.name
    if type(v) ~= "string" or v == "" or v:find("[^%w_%.%-]") then
      return fail("name", "expected a non-empty string of letters, digits, '_', '.' and '-', got " .. describe(v))
    end
    if v:match("^%d+$") then
      return fail("name", "must not be all digits (process ids are numbers), got " .. describe(v))
    end
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

  -- script
  if vals.script == nil then return fail("script", "required") end
  local script, err = resolve_script(vals.script, ctx)
  if err then return fail(opt_name("script"), err) end
  app.script = script
  if not app.name then app.name = derive_name(vals.script) end
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
        if not spec.compat then app[o] = copy(spec.default) end
      else
        local val, e, subkey = CHECK[o](v, ctx)
        if e then return fail(opt_name(o), e, subkey) end
        if spec.compat == "unsupported" then
          warn(o, "is a PM2 option orch does not support; ignored")
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

  -- env_<name> overlays are all validated; the selected one is merged.
  local overlays = {}
  for _, k in ipairs(keys) do
    if k:match("^env_") then overlays[#overlays + 1] = k end
  end
  sort(overlays)
  for _, k in ipairs(overlays) do
    local overlay, e, subkey = check_env(vals[k])
    if e then return fail(k, e, subkey) end
    if st.env_name and k == "env_" .. st.env_name then
      st.env_used = true
      for name, value in pairs(overlay) do app.env[name] = value end
    end
  end

  if ctx.port and app.env.PORT == nil then app.env.PORT = int_string(ctx.port) end

  if app.disable_logs then
    app.out_file, app.error_file = "/dev/null", "/dev/null"
  end

  if app.balance == nil then
    app.balance = app.exec_mode == "cluster" and "round-robin" or "shared"
  end
  if app.balance == "preload" and #app.listen == 0 then
    return fail("balance", "is \"preload\", which needs the sockets to hand over (the 'listen' option)")
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

-- Validates a raw configuration table {apps = {...}} and returns
-- {file, dir, apps, warnings}. opts: file (label for messages), dir (base
-- for relative paths; default the current directory), env_name, cpus,
-- base_env (for PATH lookups), lines (line map, see line_map), null (a
-- value meaning "absent", e.g. cjson.null).
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

  local top_keys = {}
  for k in next, tbl do
    if type(k) ~= "string" then
      if is_integer(k) then
        return fail("apps", "required (the file must hold { apps = { ... } }, not a bare list of apps)")
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
  for _, k in ipairs(top_keys) do
    if not TOP_LEVEL[k] then
      local guess = util.did_you_mean(k, { "apps", "deploy" })
      return fail(k, "unknown key" .. (guess and (" (did you mean '" .. guess .. "'?)") or ""))
    end
  end

  local apps = rawget(tbl, "apps")
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
    names = {}, warnings = {},
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

  if st.env_name and not st.env_used then
    st.warnings[#st.warnings + 1] = location(file, nil) .. "no app defines 'env_" .. st.env_name
      .. "', so the environment '" .. st.env_name .. "' changes nothing"
  end

  return { file = file, dir = dir, apps = out, warnings = st.warnings }
end

---------------------------------------------------------------------------
-- Loading
---------------------------------------------------------------------------

-- Keeps the innermost "FILE:LINE:" when an error was re-raised with another
-- position prepended, and adds "FILE: " to messages that carry none.
local function clean_error(msg, file)
  msg = tostring(msg)
  local prefix = file .. ":"
  if sub(msg, 1, #prefix) ~= prefix then return prefix .. " " .. msg end
  while true do
    local rest = msg:match("^[^\n]-:%d+: (.*)$")
    if rest and sub(rest, 1, #prefix) == prefix and sub(msg, 1, #prefix) == prefix then
      msg = rest
    else
      break
    end
  end
  return msg
end

local function env_lookup(base_env)
  if base_env then
    return function(k)
      local v = base_env[k]
      if v ~= nil then return tostring(v) end
    end
  end
  return os.getenv
end

local function env_snapshot(base_env)
  local snap = {}
  if base_env then
    for k, v in pairs(base_env) do snap[k] = tostring(v) end
    return snap
  end
  local ok, uv = pcall(require, "luv")
  if ok and type(uv) == "table" and uv.os_environ then
    for k, v in pairs(uv.os_environ()) do snap[k] = v end
  end
  return snap
end

local function shallow(t, skip)
  local c = {}
  for k, v in pairs(t) do if not (skip and skip[k]) then c[k] = v end end
  return c
end

-- A copy of the file's result made of plain tables (no metatables, cycles
-- kept): validation reads it after the deadline, where a user's __index or
-- __eq must not run.
local function plain(v, seen)
  if type(v) ~= "table" then return v end
  seen = seen or {}
  if seen[v] then return seen[v] end
  local c = {}
  seen[v] = c
  local k, x = next(v)
  while k ~= nil do
    rawset(c, plain(k, seen), plain(x, seen))
    k, x = next(v, k)
  end
  return c
end

-- The globals an ecosystem file sees: pure functions, copies of the
-- libraries (so the daemon's own can't be altered; string's bounded by
-- orch.bounds) and a read-only `env`. Its functions (hooks) see `orch` once
-- the file has loaded (opts.api, inside the daemon).
local function sandbox(opts)
  local lookup = env_lookup(opts.base_env)
  local env_pairs = {}
  local env = setmetatable({}, {
    __index = function(_, k) if type(k) == "string" then return lookup(k) end end,
    __newindex = function(_, k) error("env is read-only (tried to set " .. describe(k) .. ")", 2) end,
    __metatable = false,
  })
  env_pairs[env] = function()
    return next, env_snapshot(opts.base_env), nil
  end

  local G = {
    assert = assert, error = error, ipairs = ipairs, next = next, select = select,
    tonumber = tonumber, tostring = tostring, type = type, unpack = unpack,
    rawget = rawget, rawset = rawset, rawequal = rawequal,
    setmetatable = setmetatable, pcall = pcall, xpcall = hook.xpcall,
    getmetatable = function(v)
      -- The string metatable is shared with the daemon; keep it out of reach.
      if type(v) == "string" then return nil end
      return getmetatable(v)
    end,
    pairs = function(t)
      local p = env_pairs[t]
      if p then return p() end
      return pairs(t)
    end,
    print = function(...)
      local parts = {}
      for i = 1, select("#", ...) do parts[i] = tostring((select(i, ...))) end
      io.stderr:write(concat(parts, "\t"), "\n")
    end,
    math = shallow(math),
    string = bounds.string(),
    table = bounds.table(),
    os = { getenv = lookup, time = os.time, date = os.date, clock = os.clock },
    env = env,
  }
  G._G = G
  return G
end

M.EVAL_MESSAGE = "evaluation took longer than %d ms"

local function eval_lua(src, file, opts)
  bounds.install()
  -- Text only: a binary chunk is LuaJIT bytecode, which is not checked.
  local fn, err = hook.load(src, srcmap.chunkname(file))
  if not fn then
    if err:find("wrong mode", 1, true) then err = "is a binary (bytecode) chunk; only Lua source is accepted" end
    return nil, clean_error(srcmap.expand(err), file)
  end
  local G = sandbox(opts)
  setfenv(fn, G)
  local ok, result = hook.run(fn, opts.deadline_ms or 2000, M.EVAL_MESSAGE)
  if not ok then
    return nil, clean_error(result:match("^(.-)\nstack traceback:") or result, file)
  end
  if type(result) ~= "table" then
    return nil, file .. ": expected the file to return a table with an 'apps' list, got " .. describe(result)
  end
  G.orch = opts.api
  return plain(result)
end

local function decode_json(src, file)
  local ok, cjson = pcall(require, "cjson")
  if not ok then return nil, file .. ": cannot read JSON: the cjson module is not available" end
  local json = cjson.new()
  json.decode_invalid_numbers(false)
  local ok2, result = pcall(json.decode, src)
  if not ok2 then
    local msg = tostring(result)
    local pos = tonumber(msg:match("at character (%d+)"))
    local line = pos and (1 + srcmap.count_newlines(src, 1, pos - 1)) or nil
    return nil, location(file, line) .. "invalid JSON: " .. msg
  end
  if type(result) ~= "table" then
    return nil, file .. ": expected a JSON object with an \"apps\" list, got " .. describe(result)
  end
  return result, nil, json.null
end

-- Loads, validates and normalises the ecosystem file at `path`.
-- opts: env_name, cpus, base_env, deadline_ms (Lua evaluation budget),
-- cwd (base for a relative `path`; default the process's cwd).
function M.load(path, opts)
  opts = opts or {}
  if type(path) ~= "string" or path == "" then
    return nil, "ecosystem path must be a non-empty string, got " .. describe(path)
  end
  if opts.deadline_ms ~= nil and not (type(opts.deadline_ms) == "number" and opts.deadline_ms > 0) then
    return nil, "deadline_ms must be a positive number, got " .. describe(opts.deadline_ms)
  end
  local file = util.abspath(path, opts.cwd)
  local dir = util.dirname(file)
  local lower = file:lower()

  if lower:match("%.[cm]?js$") then
    return nil, file .. ": JavaScript ecosystem files are not supported; use ecosystem.lua or ecosystem.json"
  end
  if lower:match("%.ya?ml$") then
    return nil, file .. ": YAML ecosystem files are not supported; use ecosystem.lua or ecosystem.json"
  end
  if util.is_dir(file) then return nil, file .. ": is a directory" end
  local f, err = io.open(file, "r")
  if not f then return nil, err end
  local src = f:read("*a")
  f:close()
  if not src then return nil, file .. ": cannot read file" end

  local is_json = lower:match("%.json$") or (not lower:match("%.lua$") and src:match("^%s*{"))
  local raw, null, find_lines
  if is_json then
    raw, err, null = decode_json(src, file)
    find_lines = srcmap.json_lines
  else
    raw, err = eval_lua(src, file, opts)
    find_lines = srcmap.lua_lines
  end
  if not raw then return nil, err end

  if null then
    -- JSON null means "not given" for options, as in PM2.
    local function strip(t)
      for k, v in pairs(t) do
        if v == null and type(k) == "string" then t[k] = nil
        elseif type(v) == "table" then strip(v) end
      end
    end
    strip(raw)
  end

  local apps = type(raw) == "table" and rawget(raw, "apps")
  local napps = type(apps) == "table" and list_length(apps) or -1
  -- Line numbers are a convenience: a tokenizer surprise must never turn
  -- a valid file into an error.
  local ok, lines = pcall(find_lines, src, napps)
  if not ok then lines = nil end

  return M.normalize(raw, {
    file = file, dir = dir, env_name = opts.env_name, cpus = opts.cpus,
    base_env = opts.base_env, lines = lines, null = null,
  })
end

return M
