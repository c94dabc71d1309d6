-- orch.schema: every option of an ecosystem file's app, as plain data
-- (type, default, doc): `orch help` and docs/ecosystem.md read it, orch.validate
-- checks values against it, and orch.ecosystem applies it. PM2's aliases and
-- the PM2 options orch accepts without using them are listed here too.
local M = {}

-- `orch help` and docs/ecosystem.md read this table, so it stays plain data;
-- the checking code lives in orch.validate. `order` gives a stable listing.
local OPTIONS, ORDER = {}, {}

local function option(name, spec)
  ORDER[#ORDER + 1] = name
  spec.order = #ORDER
  OPTIONS[name] = spec
end

option("name", { type = "string", default_doc = "script file name without extension",
  doc = "Process name used by every command. Letters, digits, '_', '.', '-' (all digits too: a target names an app before an id, as in PM2); not \"all\"; unique in the file." })
option("namespace", { type = "string", default = "default",
  doc = "Group of apps (PM2's namespace): a target for commands that act on every app in it, and the `namespace` variable of its processes. Letters, digits, '_', '.', '-'; not \"all\"." })
option("script", { type = "string", required = true,
  doc = "Program to run. Resolved against cwd; a bare command name absent from cwd is looked up on PATH when no interpreter is set, and its path recorded (PM2's: orch start ls runs /usr/bin/ls). A command string (with a space, naming no file: \"python3 -m http.server 8123\") runs through bash -c (sh -c without bash), as in PM2; args are appended to it, quoted." })
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
option("instance_var", { type = "string", default = "NODE_APP_INSTANCE",
  doc = "Name of the variable holding each process's instance number (0, 1, ...); ORCH_INSTANCE holds it too." })
option("increment_var", { type = "string", default_doc = "none",
  doc = "Name of a variable that grows by one per instance: its value in env (0 when unset) for instance 0, the next number for instance 1, ... (PORT 3000, 3001, ...)." })
option("filter_env", { type = "boolean|string|list", default = false,
  doc = "Variables of the starting environment (the CLI's shell) the processes do not inherit: true: none; a name: that one; a list: every variable whose name contains one of its strings (PM2's rule). env and orch's own variables are set regardless." })
option("instances", { type = "integer|string", default = 1,
  doc = "Number of processes, at most 1024. 0 or \"max\": one per CPU; -N: CPUs minus N (at least 1)." })
option("exec_mode", { type = "string", default_doc = "\"cluster\" when instances is given and the interpreter is node or bun (PM2's rule), else \"fork\"",
  doc = "\"fork\" (independent processes) or \"cluster\" (instances are workers of Node's cluster protocol: a Node script's listen() gets its socket from orch, balanced by `balance`). PM2's fork_mode/cluster_mode are accepted." })
option("listen", { type = "string|list|table", default = {},
  doc = "Sockets the daemon binds and holds for the app (they outlive restarts): \"tcp://127.0.0.1:8000\", \"tcp://[::1]:8000\", \"unix:///run/app.sock\"; a list, or a table of name = address." })
option("balance", { type = "string", default_doc = "\"round-robin\" in cluster mode, else \"shared\"",
  doc = "How instances share the sockets: \"shared\" (every instance inherits the listen sockets by systemd socket activation: LISTEN_FDS, LISTEN_PID, LISTEN_FDNAMES, fds from 3; cluster workers get the socket itself), \"round-robin\" (orch accepts and hands each connection to the next cluster worker) or \"preload\" (an LD_PRELOAD library turns the program's own bind() on a listen address into the shared socket)." })
option("cluster_max_sockets", { type = "integer", default_doc = "16",
  doc = "Cluster mode: how many sockets orch binds or keeps for the app's workers (the servers they listen on, 1 to 1024); a worker's listen() past it fails with EMFILE." })
option("keepalive_drain", { type = "boolean|duration", default_doc = "true: kill_timeout less a quarter (at most 500 ms less)",
  doc = "Cluster mode, Node workers: a stopping worker (reload, restart, stop) answers each kept-alive connection's next request with `Connection: close` instead of cutting it, and closes the connections that stay idle after this long (a duration; true: kill_timeout less a quarter, at most 500 ms less). orch loads its drain module into the workers (NODE_OPTIONS=--require); false: it does not. A duration must be below kill_timeout." })
option("port", { type = "integer", compat = "env",
  doc = "Shortcut for env.PORT, over env's PORT (an env_<name> overlay's PORT wins, as in PM2); not kept as a field." })
option("autostart", { type = "boolean", default = true,
  doc = "Start the app's processes when it is loaded; false: they are added stopped, for orch start NAME." })
option("execute_command", { type = "boolean", default = false,
  doc = "PM2's option: true runs the app in fork mode, whatever exec_mode and instances say." })
option("source_map_support", { type = "boolean", default_doc = "Node's default (off)",
  doc = "true: a Node app runs with --enable-source-maps (stack traces point into the sources a bundle or TypeScript was built from)." })
option("disable_source_map_support", { type = "boolean", default = false,
  doc = "PM2's negative form of source_map_support: false is source_map_support = true, true leaves Node's default." })
option("force", { type = "boolean", default = false,
  doc = "orch start SCRIPT -f while an app of that name runs starts a second app of that name, as PM2 does (names are not unique there: a name acts on every app of it, an id on one process); without it the start is refused." })
option("append_env_to_name", { type = "boolean", default = false,
  doc = "With --env NAME, the app is called NAME-suffixed: web becomes web-production." })
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
option("treekill", { type = "boolean", default = true,
  doc = "false: kill_signal goes to the main process only (it stops its children itself); what is left of its tree when kill_timeout has passed is killed (SIGKILL) all the same." })
option("pid_file", { type = "string", default_doc = "none",
  doc = "File holding the pid of a running process (PM2's \"-ID\" is added before a \".pid\" extension: web.pid becomes web-0.pid for the process of id 0), removed when it exits; relative to cwd." })
option("uid", { type = "integer|string", default_doc = "the daemon's user",
  doc = "User the processes run as, a name or a uid with an entry in the user database (PM2's; `user` too): orch, as root, starts them with that user's uid, its groups (the primary one, gid's if given, and its supplementary ones) and HOME, USER, LOGNAME set (the app's env wins). Only root can run an app as another user: otherwise it is an error when the app is loaded." })
option("gid", { type = "integer|string", default_doc = "the uid's primary group, else the daemon's",
  doc = "Group the processes run as, a name or a gid (PM2's; `group` too). Without uid, the daemon's user keeps its uid and has this one group." })
option("umask", { type = "string|integer", default_doc = "the daemon's",
  doc = "File mode creation mask of the processes, in octal digits: \"0027\" (a number's digits are read as octal too: 27 is 0027)." })
option("nice", { type = "integer", default_doc = "the daemon's",
  doc = "Scheduling priority of the processes, from -20 (first) to 19 (last); below the daemon's needs root." })
option("oom_score_adj", { type = "integer", default_doc = "the daemon's",
  doc = "How readily the kernel's out-of-memory killer picks the processes, from -1000 (never) to 1000 (first); below the daemon's needs root." })
option("limits", { type = "table", default_doc = "the daemon's limits (nofile: the soft limit the daemon started with)",
  doc = "Resource limits of the processes, by the names of systemd's Limit*= settings (setrlimit): as, core, cpu, data, fsize, locks, memlock, msgqueue, nice, nofile, nproc, rss, rtprio, rttime, sigpending, stack. A value sets the soft and the hard limit: a number, \"infinity\", a size (\"1G\") for those in bytes; { soft, hard } sets each: limits = { nofile = 65536, core = 0, nproc = { 512, 1024 } }. A limit that cannot be set (a hard limit raised without root, nofile above /proc/sys/fs/nr_open) makes the process errored, the message naming it." })
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
  doc = "File for stdout; relative to cwd. \"NULL\" or /dev/null: discarded. Missing directories are made." })
option("error_file", { type = "string", default_doc = "orch's log directory",
  doc = "File for stderr; relative to cwd. \"NULL\" or /dev/null: discarded. Missing directories are made." })
option("log_file", { type = "string", default_doc = "none",
  doc = "File receiving both stdout and stderr; relative to cwd. true: NAME.log in orch's log directory (PM2's default)." })
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
for _, a in ipairs({ "exec", "cmd", "command" }) do
  option(a, { type = "string", alias_of = "script", doc = "PM2 alias of script." })
end
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
option("pid", { type = "string", alias_of = "pid_file", doc = "PM2 alias of pid_file." })
option("user", { type = "integer|string", alias_of = "uid", doc = "PM2 alias of uid." })
option("group", { type = "integer|string", alias_of = "gid", doc = "Alias of gid (systemd's Group=)." })
option("interpreterArgs", { type = "string|list", alias_of = "interpreter_args", doc = "PM2 alias of interpreter_args." })

-- PM2 options that have no effect here, accepted (type-checked) so PM2
-- files load, each with a warning that says why, unless its value asks for
-- what orch does anyway (`quiet`: vizion = false). { types, why, quiet? }
local NO_EFFECT = {
  vizion = { "boolean", "orch collects no version-control metadata", quiet = false },
  pmx = { "boolean|string", "orch injects no PM2 monitoring module (@pm2/io)", quiet = false },
  automation = { "boolean", "orch has no PM2 Plus automation", quiet = false },
  trace = { "boolean", "orch has no PM2 Plus transaction tracing", quiet = false },
  disable_trace = { "boolean", "orch has no PM2 Plus transaction tracing", quiet = true },
  deep_monitoring = { "boolean", "orch has no PM2 Plus monitoring", quiet = false },
  v8 = { "boolean", "orch has no PM2 Plus V8 metrics", quiet = false },
  event_loop_inspector = { "boolean", "orch has no PM2 Plus event loop inspector", quiet = false },
  io = { "table", "orch has no PM2 Plus agent (@pm2/io) to configure" },
  post_update = { "list", "PM2 runs these from its PM2 Plus dashboard, which orch has no counterpart of" },
  autodump = { "boolean", "orch keeps its state as it changes; `orch save` writes what resurrect starts" },
  windowsHide = { "boolean", "it concerns Windows only" },
  username = { "string", "PM2 records there the user who started the app; uid sets the user an app runs as" },
  kill_retry_time = { "duration", "orch learns of an exit at once (a pidfd per process) instead of polling for it" },
  watch_options = { "table", "orch's watcher is not chokidar: use watch_delay and ignore_watch" },
  install_url = { "string", "PM2 uses it for its modules only" },
  name_prefix = { "string", "PM2 uses it for its modules only" },
  write = { "boolean", "it is PM2's `start --write` (save the configuration to a file), which orch has not" },
}
do
  local names = {}
  for n in pairs(NO_EFFECT) do names[#names + 1] = n end
  table.sort(names)
  for _, n in ipairs(names) do
    local e = NO_EFFECT[n]
    option(n, { type = e[1], compat = "no_effect", why = e[2], quiet = e.quiet,
      doc = "PM2 option with no effect in orch: " .. e[2] .. "; accepted with a warning"
        .. (e.quiet ~= nil and (" unless " .. tostring(e.quiet)) or "") .. "." })
  end
end

M.options = OPTIONS
M.option_order = ORDER
M.NO_EFFECT = NO_EFFECT

-- The keys a file's top-level table may have.
M.TOP_LEVEL = { apps = true, deploy = true }

-- Option names for suggestions: everything but the env_<name> pattern entry.
M.SUGGEST = {}
for _, n in ipairs(ORDER) do
  if not OPTIONS[n].pattern then M.SUGGEST[#M.SUGGEST + 1] = n end
end

---------------------------------------------------------------------------
-- FLAGS: `orch start`'s flags (PM2 7's `pm2 start` flags, lib/binaries/CLI.js,
-- plus a few of orch's), each mapped to the option above it sets. orch.cliflags
-- turns them into an app and checks values with orch.validate (as in a file);
-- `orch help start` and docs/cli.md (tools/clidoc) list them with the option's
-- doc. Plain data; an entry is { long name, short = letter, and one of:
--   option = NAME   the option set: by the flag's value (kind = "value", the
--                   default), to true (kind = "flag"), to false (kind = "off":
--                   PM2's --no-X), to `value` (kind = "const"); kind = "list":
--                   repeatable, the values make a list (`optional`: a value
--                   only after '=', alone the flag means true; `variadic`:
--                   the integers after it are values too, as PM2's
--                   --stop-exit-codes 0 3);
--                   `seconds`: a bare number counts seconds (PM2's --watch-delay);
--   cli = "doc"     handled by the CLI itself (not an option; kind = "flag":
--                   takes no value);
--   why = "text"    not available, and what to do instead. }
---------------------------------------------------------------------------
M.FLAGS = {
  { "name", short = "n", option = "name" },
  { "instances", short = "i", option = "instances" },
  { "interpreter", option = "interpreter" },
  { "interpreter-args", option = "interpreter_args" },
  { "node-args", option = "node_args" },
  { "cwd", option = "cwd" },
  { "env", cli = "Apply each app's env_NAME over its env (PM2's --env NAME)." },
  { "only", cli = "Ecosystem file: start only these apps (names separated by commas)." },
  { "update-env", short = "a", kind = "flag", cli = "A new app always gets this shell's environment; a known app takes it as it restarts (orch start NAME -a, orch restart NAME -a)." },
  { "namespace", option = "namespace" },
  { "exec-mode", option = "exec_mode" },
  { "execute-command", short = "x", option = "exec_mode", kind = "const", value = "fork" },
  { "output", short = "o", option = "out_file" },
  { "error", short = "e", option = "error_file" },
  { "log", short = "l", option = "log_file" },
  { "log-type", option = "log_type" },
  { "log-date-format", option = "log_date_format" },
  { "time", option = "time", kind = "flag" },
  { "merge-logs", option = "merge_logs", kind = "flag" },
  { "disable-logs", option = "disable_logs", kind = "flag" },
  { "no-autorestart", option = "autorestart", kind = "off" },
  { "no-autostart", option = "autostart", kind = "off" },
  { "restart-delay", option = "restart_delay" },
  { "exp-backoff-restart-delay", option = "exp_backoff_restart_delay" },
  { "max-restarts", option = "max_restarts" },
  { "min-uptime", option = "min_uptime" },
  { "stop-exit-codes", option = "stop_exit_codes", kind = "list", variadic = true },
  { "kill-timeout", short = "k", option = "kill_timeout" },
  { "kill-signal", option = "kill_signal" },
  { "shutdown-with-message", option = "shutdown_with_message", kind = "flag" },
  { "wait-ready", option = "wait_ready", kind = "flag" },
  { "listen-timeout", option = "listen_timeout" },
  { "max-memory-restart", option = "max_memory_restart" },
  { "cron", short = "c", option = "cron_restart" },
  { "cron-restart", option = "cron_restart" },
  { "watch", option = "watch", kind = "list", optional = true },
  { "ignore-watch", option = "ignore_watch", kind = "list" },
  { "watch-delay", option = "watch_delay", seconds = true },
  { "instance-var", option = "instance_var" },
  { "increment-var", option = "increment_var" },
  { "filter-env", option = "filter_env", kind = "list", optional = true },
  { "pid", short = "p", option = "pid_file" },
  { "uid", option = "uid" },
  { "user", short = "u", option = "uid" },
  { "gid", option = "gid" },
  { "no-treekill", option = "treekill", kind = "off" },
  { "no-vizion", option = "vizion", kind = "off" },
  { "no-pmx", option = "pmx", kind = "off" },
  { "no-automation", option = "automation", kind = "off" },
  { "source-map-support", option = "source_map_support", kind = "flag" },
  { "disable-source-map-support", option = "disable_source_map_support", kind = "flag" },
  { "trace", option = "trace", kind = "flag" },
  { "disable-trace", option = "disable_trace", kind = "flag" },
  { "deep-monitoring", option = "deep_monitoring", kind = "flag" },
  { "v8", option = "v8", kind = "flag" },
  { "event-loop-inspector", option = "event_loop_inspector", kind = "flag" },
  { "force", short = "f", option = "force", kind = "flag" },
  { "no-daemon", why = "orch run FILE runs the apps of an ecosystem file in the foreground (as pm2-runtime does)" },
  { "attach", kind = "flag", cli = "Then follow the logs of the processes started (their last lines first, as orch logs); Ctrl-C stops following, the apps run on." },
  { "parallel", why = "orch restarts and reloads every process of the target without a parallelism setting" },
  { "write", short = "w", why = "orch writes no configuration from flags: put the options in an ecosystem file" },
  { "ext", why = "watching by extension is not supported: give watch paths (--watch=PATH) and ignore_watch patterns" },
  { "silent", short = "s", why = "orch prints only the process table: send it to /dev/null, the exit status tells the result" },
  { "mini-list", short = "m", why = "a format of pm2 list: orch list --json gives a form for scripts" },
  { "sort", why = "orch start prints its processes by id: orch list --sort FIELD[:asc|desc] sorts the table" },
  { "no-color", kind = "flag", cli = "No colours in the process table (as NO_COLOR=1; without a terminal there are none)." },
  { "hp", why = "a flag of startup, not of start: orch startup --hp DIR (docs/production.md)" },
  { "service-name", why = "a flag of startup, not of start: orch startup --service-name NAME (docs/production.md)" },
  { "wait-ip", why = "a flag of startup, not of start: orch startup --wait-ip (docs/production.md)" },
  { "container", why = "PM2's container mode is not part of orch" },
  { "dist", why = "PM2's container mode is not part of orch" },
  { "image-name", why = "PM2's container mode is not part of orch" },
  { "node-version", why = "PM2's container mode is not part of orch" },
  { "fresh", why = "PM2's container mode is not part of orch" },
  { "dockerdaemon", why = "PM2's container mode is not part of orch" },
  { "daemon", why = "PM2's container mode is not part of orch (orch start always hands the app to the daemon)" },
}

return M
