-- orch.cliverbs: the verbs that talk to the daemon (PM2's names and habits),
-- one entry each; orch.cli runs them. An entry holds:
--   name, args (usage text), min, max (positional arguments), rest (accepts
--   `-- args...`), summary, opts (orch.cliargs: FLAG, VALUE or an alias, or a
--   function returning them);
--   request(p) → command, arguments[, known target] or nil, message[, true]
--     (a usage error; true: print the usage line too); p is
--     orch.cliargs.parse's result;
--   show(result, p) → exit status (nil: 0), prints a reply without --json;
--   help() → more text for orch help VERB (a list of options);
--   run(p) → exit status, instead of request/show (a verb with its own module);
--   autostart = false: do not start a daemon; not_running(p) → status then;
--   prepare(c, p, known) → arguments, nil (keep) or nil, message[, status]: start's
--     check of a known app, with the connection;
--   after(result) → true or nil, message: once the reply is in (kill);
--   json_text = true: --json prints the result's JSON text as the daemon sent
--     it, not decoded and encoded again (list: 160 KB for 1000 processes);
--   each(p) → nil or message: the verb takes several positionals and runs
--     once per positional (start); a message refuses options that cannot
--     apply to several.
-- Another module can define verbs the same way: orch.cli lists the modules.
-- Every CLI call loads this module: what only some verbs use (orch.cliflags
-- and orch.schema for start's and restart's flags, orch.ecocli) is required
-- when used, so that orch ping or orch list loads little (bench/run's CLI
-- round trip; spec/functional/footprint_spec.lua).
local client = require("orch.client")
local util = require("orch.util")
local args_ = require("orch.cliargs")
local out = require("orch.cliout")

local function cliflags() return require("orch.cliflags") end

local FLAG, VALUE = args_.FLAG, args_.VALUE
local JSON = { json = FLAG }

local function err(fmt, ...)
  io.stderr:write(string.format(fmt, ...), "\n")
end

local function environ()
  return require("orch.core").environ()
end

local function target(p)
  return { target = p.positional[1] }
end

local function is_ecosystem(path) return require("orch.ecocli").is_config(path) end

local function file_exists(path)
  local f = io.open(path, "rb")
  if f then f:close() return true end
  return false
end

-- start: an ecosystem file, a script, or the name/id of a known app.
-- Returns cmd, args, and the target to try as a known app first (or nil).
local function start_request(p)
  local tgt, o = p.positional[1], p.opts
  local known
  local cwd = util.getcwd()
  if not tgt then
    -- PM2's default: the ecosystem.config.js of this directory
    tgt = "ecosystem.config.js"
    if not file_exists(util.abspath(tgt, cwd)) then
      return nil, string.format("no ecosystem.config.js in %s: give a script or a config file", cwd), nil, 1
    end
  end
  if is_ecosystem(tgt) then
    local applied, ferr = cliflags().for_file(o, cwd) -- -i N, as PM2's _startJson
    if not applied then return nil, ferr end
    if #p.rest > 0 then return nil, "-- args apply to a script, not to an ecosystem file: set option 'args' in the file" end
    -- a JavaScript file: Node evaluates it here; "-": the file is read from stdin
    local req, perr = require("orch.ecocli").request(tgt, o, environ(), cwd)
    if not req then return nil, perr, nil, 1 end
    req.instances = applied.instances
    return "start", req
  end
  if o.only then return nil, "--only applies to an ecosystem file" end
  -- A known app's name or id wins over a file or a command of that name
  -- (PM2's order): the daemon is asked first (known_app), which restarts it.
  known = tgt
  if not file_exists(util.abspath(tgt, o.cwd and util.abspath(o.cwd, cwd) or cwd))
     and not tgt:find("[/%s]") and not util.which(tgt, os.getenv("PATH")) then
    -- not a file nor a command: a known app's name or id (or an error)
    return "start", { target = tgt }, known
  end
  local spec, ferr = cliflags().options(o, o.cwd and util.abspath(o.cwd, cwd) or cwd)
  if not spec then return nil, ferr end
  spec.script = tgt
  if #p.rest > 0 then spec.args = p.rest end
  return "start", { spec = spec, env_name = o.env, env = environ(), cwd = cwd }, known
end

-- The changes a restart makes to an app, from flags (PM2's restart takes
-- start's): { options = {...}, args = {...} } (empty: none), or nil,
-- message naming the flag. skip: an option set by no flag here.
local function amendments(p, cwd, skip)
  local opts = p.opts
  if skip then
    opts = {}
    for k, v in pairs(p.opts) do opts[k] = v end
    opts[skip] = nil
  end
  local options, ferr = cliflags().options(opts, opts.cwd and util.abspath(opts.cwd, cwd) or cwd)
  if not options then return nil, ferr end
  local req = {}
  if next(options) ~= nil then req.options = options end
  if #p.rest > 0 then req.args = p.rest end
  return req
end

-- When target names a known app (or is its id, a namespace or all), start
-- means that app, as PM2's: a restart of it, with the flags' options (and
-- -- args) changing it, -a/--update-env this shell's environment. Returns the
-- request, nil, message for a bad flag, or false for an unknown target.
local function known_app(c, p, tgt)
  local found, ferr = client.request(c, "describe", { target = tgt })
  if not found then
    if ferr.code == "ENOTFOUND" or ferr.code == "EINVAL" then return false end
    return nil, ferr.message, 1 -- the daemon refused or went away: that error, not a usage one
  end
  local req, aerr = amendments(p, util.getcwd())
  if not req then return nil, aerr end
  req.target = tgt
  if p.opts["update-env"] then req.update_env, req.env = true, environ() end
  return req
end

-- stop, restart, delete, reload: several targets of every form, an
-- ecosystem file among them (orch.targetcli).
local TARGETS = "<name|id|namespace|script|/regex/|all|ecosystem>..."
local FILE_OPTS = { json = FLAG, only = VALUE }
local function on_targets(verb, args)
  return function(p)
    return require("orch.targetcli").run(verb, p, { is_config = is_ecosystem, args = args })
  end
end

-- restart and reload: -a / --update-env, this shell's environment for the
-- processes (PM2's)
local UPDATE_OPTS = { ["update-env"] = FLAG, a = "update-env", json = FLAG, env = VALUE, only = VALUE }
local function update_env(p)
  local o = p.opts
  return { update_env = o["update-env"] or nil, env = o["update-env"] and environ() or nil }
end

-- restart also takes start's flags, which change the apps (orch.amend), and
-- -- args; not -i (orch scale) nor -f. --watch toggles watching of each
-- process (PM2's); an ecosystem file sets its options itself.
local restart_opts -- built from orch.schema's FLAGS on first use
local function restart_flags()
  if not restart_opts then
    restart_opts = cliflags().opts(UPDATE_OPTS)
    for _, k in ipairs({ "instances", "i", "force", "f" }) do restart_opts[k] = nil end
    restart_opts.attach = { why = "orch start NAME --attach restarts a known app and follows its logs" }
    restart_opts.watch = FLAG
  end
  return restart_opts
end

local function restart(p)
  local req, aerr = amendments(p, util.getcwd(), "watch")
  if not req then return out.fail("restart", p.opts.json, 2, aerr) end
  for _, t in ipairs(p.positional) do
    if p.opts.watch and is_ecosystem(t) then
      return out.fail("restart", p.opts.json, 2, string.format("--watch toggles watching of apps, not of an "
        .. "ecosystem file (%s): set option 'watch' in the file", t))
    end
    if (req.options or req.args) and is_ecosystem(t) then
      return out.fail("restart", p.opts.json, 2, string.format(
        "options and -- args apply to apps, not to an ecosystem file (%s): set them in the file", t))
    end
  end
  return require("orch.targetcli").run("restart", p, { is_config = is_ecosystem, args = function()
    local args = update_env(p)
    args.watch = p.opts.watch or nil
    args.options, args.args = req.options, req.args
    return args
  end })
end

-- The process table's colour: false with --no-color, else as the terminal allows.
local function colour(p)
  if p and p.opts["no-color"] then return false end
end

local function show_procs(result, p)
  out.procs(result, colour(p), p.opts.sort and out.sort_spec(p.opts.sort))
end

-- start's and apply's reply: the changes by kind, then the processes.
local function show_changes(result, p)
  for _, w in ipairs(result.warnings or {}) do err("warning: %s", w) end
  local ch = result.changes or {}
  for _, kind in ipairs({ "started", "restarted", "deleted", "unchanged" }) do
    if ch[kind] and #ch[kind] > 0 then io.stdout:write(kind, ": ", table.concat(ch[kind], ", "), "\n") end
  end
  out.procs(result.processes, colour(p))
  for _, v in ipairs(result.processes) do
    if v.status == "errored" then return 1 end
  end
end

local start_opts -- built from orch.schema's FLAGS on first use
local function unknown_flag(name) return cliflags().unknown(name) end

local verbs = {
  { name = "start", args = "[script|ecosystem file|name|id]... [-- args...]", min = 0, max = math.huge, rest = true,
    summary = "start scripts or the apps of ecosystem files, or restart known apps (several: one after the other)",
    each = function(p)
      if p.opts.name then return "--name names one app: give one script with it" end
    end,
    opts = function()
      start_opts = start_opts or cliflags().opts({ json = FLAG })
      return start_opts
    end,
    unknown = unknown_flag, help = function() return cliflags().help() end,
    request = function(p)
      if p.opts.attach and p.opts.json then return nil, "--attach follows logs on the terminal: not with --json" end
      return start_request(p)
    end,
    prepare = function(c, p, known) return known_app(c, p, known) end,
    show = show_changes,
    attach = function(results)
      local ids, seen = {}, {}
      for _, r in ipairs(results) do
        for _, v in ipairs(r.processes or {}) do
          if not seen[v.id] then ids[#ids + 1], seen[v.id] = v.id, true end
        end
      end
      return require("orch.logview").attach(ids)
    end },
  { name = "apply", args = "<ecosystem>", min = 1, max = 1,
    summary = "make what runs what an ecosystem file says: new apps start, changed ones restart, unchanged ones "
      .. "run on, apps gone from it are deleted (not with --only)",
    opts = { env = VALUE, only = VALUE, json = FLAG },
    request = function(p)
      if not is_ecosystem(p.positional[1]) then
        return nil, string.format("'%s' is not an ecosystem file (orch start runs a script)", p.positional[1])
      end
      local req, rerr = require("orch.targetcli").file_args(p.positional[1], p, util.getcwd())
      if not req then return nil, rerr, nil, 1 end
      return "apply", req
    end,
    show = show_changes },
  { name = "stop", args = TARGETS, min = 1, max = math.huge, summary = "stop processes (kill_signal, then SIGKILL)",
    opts = FILE_OPTS, run = on_targets("stop") },
  { name = "restart", args = TARGETS .. " [-- args...]", min = 1, max = math.huge, rest = true,
    summary = "restart processes (an ecosystem file: start its apps that do not run, restart the others); "
      .. "start's flags (and -- args) change the apps first, --name renames one; --watch toggles watching",
    opts = restart_flags, unknown = unknown_flag, run = restart },
  { name = "delete", args = TARGETS, min = 1, max = math.huge, summary = "stop and forget processes",
    opts = FILE_OPTS, run = on_targets("delete") },
  { name = "list", args = "", min = 0, max = 0,
    summary = "list processes, by id or --sort FIELD[:asc|desc] (aliases: ls, ps, status)",
    opts = { json = FLAG, ["no-color"] = FLAG, sort = VALUE },
    request = function(p)
      if p.opts.sort then
        local ok, why = out.sort_spec(p.opts.sort)
        if not ok then return nil, why end
      end
      return "list", {}
    end, show = show_procs, json_text = true },
  { name = "describe", args = "<name|id>", min = 1, max = 1,
    summary = "show everything about processes (--env-vars: with their environment)",
    opts = { json = FLAG, ["env-vars"] = FLAG }, request = function(p) return "describe", target(p) end,
    show = function(result, p) out.describe(result, p.opts["env-vars"]) end },
  { name = "logs", args = "[name|id|namespace|/regex/|all]", min = 0, max = 1,
    summary = "print the last lines of logs, then follow them (--nostream: print and exit; --format: PM2's "
      .. "key=value lines; --highlight VALUE: VALUE marked on a terminal)",
    opts = { lines = VALUE, follow = FLAG, f = "follow", out = FLAG, err = FLAG, json = FLAG, timestamps = FLAG,
             timestamp = "timestamps", nostream = FLAG, raw = FLAG, events = FLAG, format = FLAG, highlight = VALUE },
    run = function(p)
      if p.opts.lines and not tonumber(p.opts.lines) then
        err("orch logs: option '--lines': expected a number, got '%s'", p.opts.lines)
        return 2
      end
      -- one shape of line at a time
      local shapes = {}
      for _, k in ipairs({ "json", "format", "raw" }) do
        if p.opts[k] then shapes[#shapes + 1] = "--" .. k end
      end
      if #shapes > 1 then
        err("orch logs: options '%s' and '%s' exclude each other", shapes[1], shapes[2])
        return 2
      end
      return require("orch.logview").main(p)
    end },
  { name = "monit", args = "[filter]", min = 0, max = 1,
    summary = "a terminal dashboard: processes with CPU and memory history, logs, events; keys act on them",
    opts = { ascii = FLAG, ["no-color"] = FLAG },
    help = function() return require("orch.monit").HELP end,
    run = function(p) return require("orch.monit").main(p) end },
  { name = "events", args = "[name|id|namespace|/regex/|all]", min = 0, max = 1,
    summary = "print the recent events of processes (starts, exits, restarts and their causes...), then follow them",
    opts = { json = FLAG, since = VALUE },
    run = function(p) return require("orch.eventview").main(p) end },
  { name = "flush", args = "[name|id|all]", min = 0, max = 1, summary = "empty log files (rotated ones are deleted)",
    opts = JSON, request = function(p) return "flush", target(p) end,
    show = function(result) io.stdout:write("flushed ", #result.flushed, " log file(s)\n") end },
  { name = "reopen-logs", args = "", min = 0, max = 0,
    summary = "reopen every log file by its path (after an external logrotate)", opts = JSON,
    request = function() return "reopen_logs", {} end,
    show = function(result)
      io.stdout:write("reopened ", #result.reopened, " log file(s)\n")
      for _, e in ipairs(result.errors) do err("orch reopen-logs: %s", e) end
      if #result.errors > 0 then return 1 end
    end },
  { name = "save", args = "", min = 0, max = 0,
    summary = "remember the apps for resurrect (" .. "$ORCH_HOME/dump.json); with no app, only --force empties it",
    opts = { json = FLAG, force = FLAG, f = "force" },
    request = function(p) return "save", { force = p.opts.force or nil } end,
    show = function(result)
      if result.skipped then
        err("warning: no app to save: %s left as it was (orch save --force saves an empty list)", result.file)
        return
      end
      io.stdout:write(string.format("saved %d app(s) to %s\n", result.apps, result.file))
    end },
  { name = "resurrect", args = "", min = 0, max = 0,
    summary = "bring back the apps saved by save (stopped ones stay stopped)", opts = JSON,
    request = function() return "resurrect", {} end,
    show = function(result)
      io.stdout:write(string.format("resurrected %d app(s)%s%s\n", #result.started + #(result.stopped or {}),
        #(result.stopped or {}) > 0 and string.format(" (%d stopped, as saved)", #result.stopped) or "",
        result.backup and string.format(" from %s (%s)", result.backup, result.why) or ""))
      for _, e in ipairs(result.errors) do err("orch resurrect: %s", e) end
      if #result.errors > 0 then return 1 end
    end },
  { name = "ping", args = "", min = 0, max = 0, summary = "start the daemon if needed and show it", opts = JSON,
    request = function() return "ping", {} end,
    show = function(result)
      io.stdout:write(string.format("orch %s (pid %d, %s, %d processes, up %s%s) in %s\n", result.version,
        result.pid, result.mode, result.processes, out.duration(result.uptime_ms),
        result.recovering and ", stopping what a crashed daemon left" or "", result.home))
      local trees = result.trees or {}
      io.stdout:write(trees.mode == "cgroup" and ("process trees: cgroup v2, under " .. tostring(trees.cgroup) .. "\n")
        or ("process trees: environment marker (" .. tostring(trees.why) .. ")\n"))
      if result.http then
        io.stdout:write(string.format("http: http://%s/ (token in %s)\n", result.http.address, result.http.token_file))
      end
      -- the environment of the command that starts the daemon counts, not a later one's
      local want = os.getenv("ORCH_HTTP")
      if want and want ~= "" and not result.http then
        err("orch ping: ORCH_HTTP=%s is not in effect: this orch started without it (orch kill, then start it again)",
          want)
      end
    end },
  { name = "kill", args = "", min = 0, max = 0, summary = "stop every process, then the daemon", opts = JSON,
    autostart = false,
    not_running = function(p)
      if p.opts.json then out.json({ stopped = false }) else io.stdout:write("orch is not running\n") end
      return 0
    end,
    request = function() return "kill", {} end,
    after = function(result)
      -- The daemon answers before its last state write and its exit, and
      -- holds the home's lock until then: returning at once let the next
      -- `orch VERB` (or an `orch run`) find the home taken by an orch that
      -- would never answer. Returns once it is gone, as PM2's kill does.
      if not result.pid then return true end
      return client.await_exit(result.pid, "the daemon")
    end,
    show = function() io.stdout:write("orch stopped\n") end },
  { name = "update", args = "", min = 0, max = 0, opts = JSON, autostart = false,
    summary = "re-execute the daemon from the orch binary now on disk, keeping every process running (pm2 update)",
    not_running = function() err("orch update: orch is not running") return 1 end,
    request = function() return "update", {} end,
    after = function(result) return require("orch.updatecli").await(result) end,
    show = function(result)
      io.stdout:write(string.format("orch updated from %s to %s in %d ms: pid %d, %d process(es) kept running\n",
        result.from, result.version, result.ms, result.pid_now, result.processes))
    end },
  { name = "reload", args = TARGETS, min = 1, max = math.huge,
    summary = "zero-downtime restart: each replacement is online before its old process stops",
    opts = UPDATE_OPTS, run = on_targets("reload", update_env) },
  { name = "scale", args = "<name> <N|+N|-N>", min = 2, max = 2,
    summary = "run N instances of an app (+N / -N: N more / fewer)", opts = JSON,
    request = function(p)
      local given = p.positional[2]
      local n = tonumber(given)
      if not n then return nil, string.format("N must be a number, got '%s'", given), true end
      -- +N / -N: that many more or fewer than run now (PM2's)
      if given:match("^[+-]") then return "scale", { name = p.positional[1], delta = n } end
      return "scale", { name = p.positional[1], instances = n }
    end,
    show = show_procs },
  { name = "send", args = "<name|id|all> <json>", min = 2, max = 2,
    summary = "send a message to processes over their IPC channel (text that is not JSON goes as a string)",
    opts = JSON,
    request = function(p)
      local good, msg = pcall(require("cjson").decode, p.positional[2])
      return "send", { target = p.positional[1], message = good and msg or p.positional[2] }
    end,
    show = function(result)
      io.stdout:write(string.format("sent to %d process(es)\n", #result.sent))
      for _, e in ipairs(result.errors) do err("orch send: %s", e) end
    end },
  { name = "eval", args = "<lua code>", min = 1, max = 1, summary = "run Lua in the daemon and print the result",
    opts = JSON, request = function(p) return "eval", { code = p.positional[1] } end,
    show = function(result)
      if result.output ~= "" then io.stdout:write(result.output, "\n") end
      if result.count > 0 then io.stdout:write(result.values, "\n") end
      for _, e in ipairs(result.errors or {}) do err("orch eval: %s", e) end
    end },
}

verbs.aliases = { ls = "list", ps = "list", status = "list", l = "list", del = "delete", desc = "describe",
                  show = "describe", dump = "save", reloadLogs = "reopen-logs",
                  dashboard = "monit", dash = "monit", imonit = "monit" }

return verbs
