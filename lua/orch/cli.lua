-- orch.cli: the verbs that talk to the daemon (PM2's names and habits):
-- parse the command line, send one request, print the reply.
-- Exit status: 0 done, 1 the operation failed, 2 usage error.
local client = require("orch.client")
local util = require("orch.util")

local M = {}

local FLAG, VALUE = "flag", "value"
local JSON = { json = FLAG }

M.verbs = {
  start = { args = "<script|ecosystem.{lua,json}|name|id> [-- args...]", min = 1, max = 1, rest = true,
    summary = "start a script, the apps of an ecosystem file, or a stopped app",
    opts = { name = VALUE, n = "name", instances = VALUE, i = "instances", only = VALUE, env = VALUE,
             watch = FLAG, interpreter = VALUE, cwd = VALUE, json = FLAG } },
  stop = { args = "<name|id|all>", min = 1, max = 1, summary = "stop processes (kill_signal, then SIGKILL)", opts = JSON },
  restart = { args = "<name|id|all>", min = 1, max = 1, summary = "restart processes",
    opts = { ["update-env"] = FLAG, json = FLAG } },
  delete = { args = "<name|id|all>", min = 1, max = 1, summary = "stop and forget processes", opts = JSON },
  list = { args = "", min = 0, max = 0, summary = "list processes (aliases: ls, status)", opts = JSON },
  describe = { args = "<name|id>", min = 1, max = 1, summary = "show everything about processes", opts = JSON },
  logs = { args = "[name|id|all]", min = 0, max = 1, summary = "print the last lines of logs, -f to follow",
    opts = { lines = VALUE, follow = FLAG, f = "follow", out = FLAG, err = FLAG, json = FLAG, timestamps = FLAG,
             timestamp = "timestamps" } },
  flush = { args = "[name|id|all]", min = 0, max = 1, summary = "empty log files (rotated ones are deleted)", opts = JSON },
  ["reopen-logs"] = { args = "", min = 0, max = 0,
    summary = "reopen every log file by its path (after an external logrotate)", opts = JSON },
  save = { args = "", min = 0, max = 0, summary = "remember the apps for resurrect (" .. "$ORCH_HOME/dump.json)", opts = JSON },
  resurrect = { args = "", min = 0, max = 0, summary = "bring back the apps saved by save (stopped ones stay stopped)", opts = JSON },
  ping = { args = "", min = 0, max = 0, summary = "start the daemon if needed and show it", opts = JSON },
  kill = { args = "", min = 0, max = 0, summary = "stop every process, then the daemon", opts = JSON },
  eval = { args = "<lua code>", min = 1, max = 1, summary = "run Lua in the daemon and print the result", opts = JSON },
  reload = { args = "<name|id|all>", min = 1, max = 1,
    summary = "zero-downtime restart: each replacement is online before its old process stops", opts = JSON },
  scale = { args = "<name> <N>", min = 2, max = 2, summary = "run N instances of an app", opts = JSON },
  send = { args = "<name|id|all> <json>", min = 2, max = 2,
    summary = "send a message to processes over their IPC channel (text that is not JSON goes as a string)", opts = JSON },
}
M.aliases = { ls = "list", status = "list", l = "list", del = "delete", desc = "describe", show = "describe",
              dump = "save", reloadLogs = "reopen-logs" }

local function err(fmt, ...)
  io.stderr:write(string.format(fmt, ...), "\n")
end

-- Returns { positional = {...}, opts = {...}, rest = {...} } or nil, message.
function M.parse(verb, spec, argv)
  local r = { positional = {}, opts = {}, rest = {} }
  local i = 1
  while i <= #argv do
    local a = argv[i]
    if a == "--" then
      if not spec.rest then return nil, "'--' is not accepted here" end
      for j = i + 1, #argv do r.rest[#r.rest + 1] = argv[j] end
      break
    elseif a:sub(1, 1) == "-" and #a > 1 and not tonumber(a) then
      local name, value = a:match("^%-%-?([^=]+)=(.*)$")
      name = name or a:gsub("^%-%-?", "")
      local kind = spec.opts[name]
      if type(kind) == "string" and kind ~= FLAG and kind ~= VALUE then
        name, kind = kind, spec.opts[kind] -- a short alias
      end
      if not kind then
        local names = {}
        for k, v in pairs(spec.opts) do if v == FLAG or v == VALUE then names[#names + 1] = k end end
        local hint = util.did_you_mean(name, names)
        return nil, string.format("unknown option '%s'%s", a, hint and (" (did you mean '--" .. hint .. "'?)") or "")
      end
      if kind == FLAG then
        if value then return nil, string.format("option '--%s' takes no value", name) end
        r.opts[name] = true
      else
        if not value then
          i = i + 1
          value = argv[i]
          if value == nil then return nil, string.format("option '--%s' needs a value", name) end
        end
        r.opts[name] = value
      end
    else
      r.positional[#r.positional + 1] = a
    end
    i = i + 1
  end
  if #r.positional < spec.min then return nil, "missing argument " .. spec.args end
  if #r.positional > spec.max then return nil, string.format("unexpected argument '%s'", r.positional[spec.max + 1]) end
  return r
end

local function usage_line(verb)
  local spec = M.verbs[verb]
  local flags = {}
  for k, v in pairs(spec.opts) do
    if v == FLAG then flags[#flags + 1] = "[--" .. k .. "]"
    elseif v == VALUE then flags[#flags + 1] = "[--" .. k .. " X]" end
  end
  table.sort(flags)
  return string.format("usage: orch %s %s %s", verb, spec.args, table.concat(flags, " ")):gsub("%s+$", "")
end

---------------------------------------------------------------------------
-- Output
---------------------------------------------------------------------------

-- An empty table is an empty list in every reply the CLI prints as JSON
-- (cjson would print {}).
local function json_out(v)
  local text = type(v) == "table" and next(v) == nil and "[]" or require("cjson").encode(v)
  io.stdout:write(text, "\n")
end

local function duration(ms)
  local s = math.floor((ms or 0) / 1000)
  if s < 60 then return s .. "s" end
  if s < 3600 then return math.floor(s / 60) .. "m" end
  if s < 86400 then return math.floor(s / 3600) .. "h" end
  return math.floor(s / 86400) .. "D"
end

local function bytes(n)
  n = n or 0
  if n < 1024 then return n .. "b" end
  if n < 1024 * 1024 then return string.format("%.1fkb", n / 1024) end
  if n < 1024 ^ 3 then return string.format("%.1fmb", n / 1024 / 1024) end
  return string.format("%.1fgb", n / 1024 ^ 3)
end

local function table_out(rows, header)
  local widths = {}
  for _, row in ipairs({ header, unpack(rows) }) do
    for c, cell in ipairs(row) do widths[c] = math.max(widths[c] or 0, #tostring(cell)) end
  end
  local out = {}
  for _, row in ipairs({ header, unpack(rows) }) do
    local cells = {}
    for c, cell in ipairs(row) do cells[c] = string.format("%-" .. widths[c] .. "s", tostring(cell)) end
    out[#out + 1] = table.concat(cells, "  "):gsub("%s+$", "")
  end
  io.stdout:write(table.concat(out, "\n"), "\n")
end

local function print_procs(procs)
  if #procs == 0 then
    io.stdout:write("no processes\n")
    return
  end
  local rows = {}
  for _, p in ipairs(procs) do
    rows[#rows + 1] = { p.id, p.name, p.mode, p.pid == client.null and "-" or p.pid, p.status,
      p.restarts, p.status == "online" and duration(p.uptime_ms) or "-", string.format("%.1f%%", p.cpu),
      bytes(p.memory) }
  end
  table_out(rows, { "id", "name", "mode", "pid", "status", "restarts", "uptime", "cpu", "memory" })
end

-- One line per transition, oldest first: when, event, from -> to, detail.
local function transitions_out(list)
  local lines = {}
  for i, t in ipairs(list) do
    local detail = t.detail ~= client.null and t.detail ~= nil and ("  (" .. t.detail .. ")") or ""
    lines[i] = string.format("%s.%03d  %s: %s -> %s%s", os.date("%Y-%m-%d %H:%M:%S", math.floor(t.at / 1000)),
      t.at % 1000, t.event, t.from, t.to, detail)
  end
  return table.concat(lines, "\n" .. string.rep(" ", 19))
end

local function describe_out(procs)
  local keys = { "id", "name", "instance", "status", "pid", "restarts", "unstable_restarts", "uptime_ms", "cpu",
    "memory", "mode", "source", "script", "args", "exec", "interpreter", "cwd", "instances", "balance", "listen",
    "cluster", "out_log", "err_log",
    "log_problems", "log_stats", "started_at", "last_exit", "reason", "autorestart", "max_restarts", "min_uptime", "kill_signal", "kill_timeout", "health",
    "last_user_error", "transitions" }
  for i, p in ipairs(procs) do
    if i > 1 then io.stdout:write("\n") end
    for _, k in ipairs(keys) do
      local v = p[k]
      if v == client.null or v == nil then v = "-"
      elseif k == "last_user_error" then
        v = string.format("%s failed at %s: %s", v.what, os.date("%Y-%m-%d %H:%M:%S", v.time), v.message)
      elseif k == "transitions" then
        v = transitions_out(v)
      elseif type(v) == "table" then v = require("cjson").encode(v)
      elseif k == "started_at" then v = os.date("%Y-%m-%d %H:%M:%S", v)
      elseif k == "memory" then v = bytes(v) end
      io.stdout:write(string.format("%-18s %s\n", k, tostring(v)))
    end
  end
end

---------------------------------------------------------------------------
-- Verbs
---------------------------------------------------------------------------

local function environ()
  return require("orch.core").environ()
end

local function is_ecosystem(path)
  return path:match("%.json$") or path:match("ecosystem[^/]*%.lua$") or path:match("%.config%.lua$")
end

local function file_exists(path)
  local f = io.open(path, "rb")
  if f then f:close() return true end
  return false
end

-- start: an ecosystem file, a script, or the name/id of a known app.
-- Returns cmd, args, and the target to try as a known app first (or nil).
local function start_request(p)
  local target, o = p.positional[1], p.opts
  local known
  local cwd = require("orch.util").getcwd()
  if is_ecosystem(target) then
    if o.name or o.instances or o.interpreter or #p.rest > 0 then
      return nil, "--name, -i, --interpreter and -- args apply to a script, not to an ecosystem file"
    end
    local only
    if o.only then
      only = {}
      for n in o.only:gmatch("[^,%s]+") do only[#only + 1] = n end
    end
    return "start", { file = util.abspath(target, cwd), env_name = o.env, only = only, env = environ(), cwd = cwd }
  end
  if o.only then return nil, "--only applies to an ecosystem file" end
  if not o.name then
    -- A known app's name or id wins over a file or a command of that name
    -- (PM2's order): the daemon is asked first (known_app).
    known = target
  end
  if not file_exists(util.abspath(target, o.cwd and util.abspath(o.cwd, cwd) or cwd))
     and not target:find("/") and not util.which(target, os.getenv("PATH")) then
    -- not a file nor a command: a known app's name or id
    return "start", { target = target }
  end
  local spec = { script = target, name = o.name, interpreter = o.interpreter, cwd = o.cwd }
  if o.instances then spec.instances = tonumber(o.instances) or o.instances end
  if o.watch then spec.watch = true end
  if #p.rest > 0 then spec.args = p.rest end
  return "start", { spec = spec, env_name = o.env, env = environ(), cwd = cwd }, known
end

-- When target names a known app (or is its id), start means that app:
-- returns the request for it, or nil, message when options for a new
-- script came with it. Returns false for an unknown target.
local function known_app(c, p, target)
  local procs = client.request(c, "describe", { target = target })
  if not procs then return false end
  local o = p.opts
  if o.instances or o.interpreter or o.watch or o.cwd or #p.rest > 0 then
    return nil, string.format("'%s' is a known app (id %s); -i, --interpreter, --watch, --cwd and -- args "
      .. "apply to a new script: give it another --name, or orch delete %s first", target,
      tostring(procs[1].id), target)
  end
  return { target = target }
end

local function run_verb(verb, p)
  local o = p.opts
  local cmd, args, known = verb, {}, nil
  if verb == "start" then
    cmd, args, known = start_request(p)
    if not cmd then
      err("orch start: %s", args)
      return 2
    end
  elseif verb == "stop" or verb == "delete" or verb == "describe" then
    args = { target = p.positional[1] }
  elseif verb == "reload" then
    args = { target = p.positional[1] }
  elseif verb == "restart" then
    args = { target = p.positional[1], update_env = o["update-env"] or nil }
    if o["update-env"] then args.env = environ() end
  elseif verb == "flush" then
    args = { target = p.positional[1] }
  elseif verb == "reopen-logs" then
    cmd = "reopen_logs"
  elseif verb == "eval" then
    args = { code = p.positional[1] }
  elseif verb == "scale" then
    local n = tonumber(p.positional[2])
    if not n then
      err("orch scale: N must be a number, got '%s'\n%s", p.positional[2], usage_line("scale"))
      return 2
    end
    args = { name = p.positional[1], instances = n }
  elseif verb == "send" then
    local good, msg = pcall(require("cjson").decode, p.positional[2])
    args = { target = p.positional[1], message = good and msg or p.positional[2] }
  elseif verb == "logs" then
    return require("orch.logview").main(p)
  end

  local c, cerr, code = client.connect(verb ~= "kill")
  if not c then
    if verb == "kill" and code == "ENOTRUNNING" then
      if o.json then json_out({ stopped = false }) else io.stdout:write("orch is not running\n") end
      return 0
    end
    err("orch %s: %s", verb, cerr)
    return 1
  end
  if known then
    local kargs, kerr = known_app(c, p, known)
    if kargs == nil then
      c:close()
      err("orch start: %s", kerr)
      return 2
    end
    args = kargs or args
  end
  local result, rerr = client.request(c, cmd, args)
  c:close()
  if not result then
    err("orch %s: %s", verb, rerr.message)
    return 1
  end
  if verb == "kill" and result.pid then
    -- The daemon answers before its last state write and its exit, and
    -- holds the home's lock until then: returning at once let the next
    -- `orch VERB` (or an `orch run`) find the home taken by an orch that
    -- would never answer. Returns once it is gone, as PM2's kill does.
    local gone, gerr = client.await_exit(result.pid, "the daemon")
    if not gone then
      err("orch kill: %s", gerr)
      return 1
    end
  end
  if o.json then
    json_out(result)
    return 0
  end
  if verb == "list" then
    print_procs(result)
  elseif verb == "describe" then
    describe_out(result)
  elseif verb == "start" then
    for _, w in ipairs(result.warnings or {}) do err("warning: %s", w) end
    local ch = result.changes or {}
    for _, kind in ipairs({ "started", "restarted", "deleted", "unchanged" }) do
      if ch[kind] and #ch[kind] > 0 then io.stdout:write(kind, ": ", table.concat(ch[kind], ", "), "\n") end
    end
    print_procs(result.processes)
    for _, v in ipairs(result.processes) do
      if v.status == "errored" then return 1 end
    end
  elseif verb == "stop" or verb == "restart" or verb == "delete" or verb == "scale" or verb == "reload" then
    print_procs(result)
  elseif verb == "flush" then
    io.stdout:write("flushed ", #result.flushed, " log file(s)\n")
  elseif verb == "reopen-logs" then
    io.stdout:write("reopened ", #result.reopened, " log file(s)\n")
    for _, e in ipairs(result.errors) do err("orch reopen-logs: %s", e) end
    if #result.errors > 0 then return 1 end
  elseif verb == "save" then
    io.stdout:write(string.format("saved %d app(s) to %s\n", result.apps, result.file))
  elseif verb == "resurrect" then
    io.stdout:write(string.format("resurrected %d app(s)%s\n", #result.started + #(result.stopped or {}),
      #(result.stopped or {}) > 0 and string.format(" (%d stopped, as saved)", #result.stopped) or ""))
    for _, e in ipairs(result.errors) do err("orch resurrect: %s", e) end
    if #result.errors > 0 then return 1 end
  elseif verb == "ping" then
    io.stdout:write(string.format("orch %s (pid %d, %s, %d processes, up %s%s) in %s\n", result.version, result.pid,
      result.mode, result.processes, duration(result.uptime_ms),
      result.recovering and ", stopping what a crashed daemon left" or "", result.home))
    local trees = result.trees or {}
    io.stdout:write(trees.mode == "cgroup" and ("process trees: cgroup v2, under " .. tostring(trees.cgroup) .. "\n")
      or ("process trees: environment marker (" .. tostring(trees.why) .. ")\n"))
  elseif verb == "kill" then
    io.stdout:write("orch stopped\n")
  elseif verb == "send" then
    io.stdout:write(string.format("sent to %d process(es)\n", #result.sent))
    for _, e in ipairs(result.errors) do err("orch send: %s", e) end
  elseif verb == "eval" then
    if result.output ~= "" then io.stdout:write(result.output, "\n") end
    if result.count > 0 then io.stdout:write(result.values, "\n") end
    for _, e in ipairs(result.errors or {}) do err("orch eval: %s", e) end
  end
  return 0
end

function M.help(verb)
  verb = M.aliases[verb] or verb
  local spec = M.verbs[verb]
  if not spec then return nil end
  return usage_line(verb) .. "\n\n" .. spec.summary .. "\n"
end

function M.main(verb, argv)
  verb = M.aliases[verb] or verb
  local spec = M.verbs[verb]
  local p, perr = M.parse(verb, spec, argv)
  if not p then
    err("orch %s: %s\n%s", verb, perr, usage_line(verb))
    return 2
  end
  if verb == "logs" and p.opts.lines and not tonumber(p.opts.lines) then
    err("orch logs: option '--lines': expected a number, got '%s'", p.opts.lines)
    return 2
  end
  return run_verb(verb, p)
end

return M
