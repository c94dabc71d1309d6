-- orch.validate: the value check of each ecosystem option (M.CHECK[name]).
-- Each check takes the raw value (never nil) and a context, and returns the
-- normalised value, or nil plus a message (and optionally a sub-key whose
-- line is more precise than the option's own).
local util = require("orch.util")
local health = require("orch.health")
local schema = require("orch.schema")
local runas = require("orch.runas")

local describe, quote, is_integer = util.describe, util.quote, util.is_integer
local concat, sort = table.concat, table.sort
local OPTIONS, NO_EFFECT = schema.options, schema.NO_EFFECT

local M = {}

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

-- A check of an integer (or a string of one) from lo to hi; what: the
-- message's "expected ...".
local function integer_in(lo, hi, what)
  return function(v)
    local n = to_integer(v)
    if n and n >= lo and n <= hi then return n end
    return expected(what, v)
  end
end

local check_nonneg_integer = integer_in(0, math.huge, "a non-negative integer")
local check_socket_cap = integer_in(1, 1024, "an integer from 1 to 1024")

local function check_duration(v)
  local ms = util.parse_duration(v)
  if ms then return ms end
  return expected("a duration (" .. util.DURATION_HINT .. ")", v)
end

-- true (the default: nil), false or a duration.
local function check_drain(v)
  if v == true then return nil end
  if v == false then return false end
  local ms = util.parse_duration(v)
  if ms then return ms end
  return expected("true, false or a duration (" .. util.DURATION_HINT .. ")", v)
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

-- As check_string_list, false for an empty list; what: the message's
-- "expected ..." for a value of another type.
local function string_list_or(v, what)
  local list, err = check_string_list(v)
  if not list then
    if err:match("^expected") then return expected(what, v) end
    return nil, err
  end
  if #list == 0 then return false end
  return list
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

-- An object or list as PM2 passes it in an environment variable
-- (Common.mergeEnvironmentVariables: JSON.stringify), without cjson's "\/".
local function json_text(x)
  local ok, text = pcall(require("cjson").encode, x)
  if not ok then return nil end
  return (text:gsub("\\(.)", function(c) return c == "/" and "/" or "\\" .. c end))
end

-- ctx.pm2: the value comes from a file in PM2's formats, where a table
-- value is JSON-encoded as PM2 does (orch's Lua ecosystems refuse it).
local function check_env(v, ctx)
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
    elseif t == "table" and ctx and ctx.pm2 then
      out[k] = json_text(x)
      if not out[k] then return nil, "variable '" .. k .. "': cannot be written as JSON: " .. describe(x), k end
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

-- A log file: PM2's "NULL" discards, as /dev/null does.
local function check_log_path(v, ctx)
  if v == "NULL" then return "/dev/null" end
  return check_path(v, ctx)
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
  keepalive_drain = check_drain,
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
  out_file = check_log_path,
  error_file = check_log_path,
  merge_logs = check_boolean,
  time = check_boolean,
  disable_logs = check_boolean,
  log_compress = check_boolean,
  autostart = check_boolean,
  execute_command = check_boolean,
  source_map_support = check_boolean,
  disable_source_map_support = check_boolean,
  force = check_boolean,
  append_env_to_name = check_boolean,
  treekill = check_boolean,
  pid_file = check_path,
  ignore_watch = check_string_list,
  watch_delay = check_duration,
  uid = runas.check_uid,
  gid = runas.check_gid,
  umask = runas.check_umask,
  nice = runas.check_nice,
  oom_score_adj = runas.check_oom_score_adj,
  limits = runas.check_limits,
}

-- A name commands take as a target (an app's name, a namespace): a word
-- that no other target form claims ("all" is every app, /.../ a regular
-- expression). All digits is a name, as in PM2: a target names an app of
-- that name before the process with that id (orch.targets).
-- Returns v, or nil and the complaint.
function M.target_word(v)
  if type(v) ~= "string" or v == "" or v:find("[^%w_%.%-]") then
    return expected("a non-empty string of letters, digits, '_', '.' and '-'", v)
  end
  if v == "all" then return nil, "must not be \"all\" (commands take it to mean every app)" end
  return v
end
CHECK.namespace = M.target_word

-- The name of an environment variable.
local function check_var_name(v)
  if type(v) == "string" and v ~= "" and not v:find("[=%z]") then return v end
  return expected("a variable name (a non-empty string without '=')", v)
end
CHECK.instance_var, CHECK.increment_var = check_var_name, check_var_name

-- false, true (nothing inherited), or a list of strings: a name (PM2's
-- string form, one variable) is { name = NAME }.
function CHECK.filter_env(v)
  if type(v) == "boolean" then return v end
  if type(v) == "string" then
    local name, err = check_var_name(v)
    if not name then return nil, err end
    return { name = name }
  end
  return string_list_or(v, "a boolean, a variable name or a list of strings")
end

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

CHECK.port = integer_in(0, 65535, "a port number (integer 0-65535)")

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
  if v == true then return true end -- PM2's default combined file (launch.log_paths)
  return check_log_path(v, ctx)
end

function CHECK.watch(v, ctx)
  if v == false then return false end
  if v == true then return { ctx.cwd } end
  local list, err = string_list_or(v, "a boolean, a path or a list of paths")
  if not list then return list, err end
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

CHECK.retain = integer_in(1, 1000, "a number of files from 1 to 1000")

function CHECK.max_memory_restart(v)
  local bytes = util.parse_size(v)
  if not bytes then return expected("a size (" .. util.SIZE_HINT .. ")", v) end
  if bytes == 0 then return nil end
  return bytes
end

function CHECK.cron_restart(v)
  if v == false or v == 0 or v == "0" then return nil end -- PM2: 0 turns it off
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

for name, e in pairs(NO_EFFECT) do CHECK[name] = check_types(e[1]) end
for name, spec in pairs(OPTIONS) do
  if spec.alias_of and not CHECK[name] then CHECK[name] = CHECK[spec.alias_of] end
end

M.CHECK = CHECK
M.list_length, M.int_string, M.expected, M.check_env = list_length, int_string, expected, check_env

return M
