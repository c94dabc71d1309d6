-- orch.run: `orch run FILE`, the engine in the foreground (pm2-runtime):
-- FILE an ecosystem, or a script with start's flags (`orch run app.js -i 4`).
-- Every app's output is copied to the terminal as "name:instance | line";
-- SIGINT/SIGTERM/SIGHUP stop everything gracefully (a second one kills);
-- orch exits once nothing is left running: 0, or 1 if an app ended errored
-- or a stop had to SIGKILL it. It can be a container's PID 1 (examples/container/).
local uv = require("luv")
local core = require("orch.core")
local paths = require("orch.paths")
local engine_mod = require("orch.engine")
local eventlog = require("orch.eventlog")
local cliargs = require("orch.cliargs")
local cliflags = require("orch.cliflags")
local ecocli = require("orch.ecocli")
local util = require("orch.util")

local M = {}

M.USAGE = "usage: orch run FILE [--env NAME] [-i N] [--http ADDR:PORT]\n"
  .. "       orch run SCRIPT [start's options] [--http ADDR:PORT] [-- args...]"

M.help = M.USAGE .. [[


Runs the apps of an ecosystem file (ecosystem.lua, PM2's JSON, YAML or
JavaScript; "-": a JSON file on stdin) in the foreground, or one script with
orch start's options, as pm2-runtime does (orch run app.js -i 4): output
goes to the log files under $ORCH_HOME/logs and to this terminal, prefixed
with name:instance. Ctrl-C (SIGINT), SIGTERM or SIGHUP stop every app with
its kill_signal, then SIGKILL after kill_timeout; a second signal kills at
once. orch exits when no app is running any more: with status 0, or 1 if an
app ended errored or had to be killed (SIGKILL).

FILE is an ecosystem when its name says so (as for orch start) or, with no
option for a script, when it is no program (app.js, app.py, run.sh are
scripts; apps.lua and a file without an extension are ecosystems).

  --env NAME   apply each app's env_NAME over its env
  -i N         instances of each app (over a file's instances, as PM2's)
  --http ADDR:PORT
               serve /metrics, /healthz, /readyz... over HTTP there
               (docs/http.md); default: $ORCH_HTTP, else no HTTP
  orch help start lists the options for a script.
]]

local SPEC = { args = "FILE|SCRIPT", min = 1, max = 1, rest = true, opts = cliflags.opts({ http = cliargs.VALUE }),
               unknown = cliflags.unknown }

-- Whether `orch run FILE ...` runs a script rather than an ecosystem:
-- pm2-runtime's form. See M.help.
local function is_script(file, p)
  if ecocli.is_config(file) then return false end
  if #p.rest > 0 then return true end
  for _, f in ipairs(cliflags.given(p.opts)) do
    if f.option ~= "instances" then return true end
  end
  local ext = file:lower():match("%.([^./]+)$")
  return ext ~= nil and ext ~= "lua" and require("orch.launch").interpreters[ext] ~= nil
end

-- The source of the apps to run (engine:load's), or nil, message.
local function source_of(p, base_env, cwd)
  local file = p.positional[1]
  if is_script(file, p) then
    local spec, ferr = cliflags.options(p.opts, p.opts.cwd and util.abspath(p.opts.cwd, cwd) or cwd)
    if not spec then return nil, ferr end
    spec.script = file
    if #p.rest > 0 then spec.args = p.rest end
    return { spec = spec, env_name = p.opts.env, env = base_env, cwd = cwd }
  end
  if #p.rest > 0 then return nil, "-- args apply to a script, not to an ecosystem file: set option 'args' in the file" end
  local applied, ferr = cliflags.for_file(p.opts, cwd)
  if not applied then return nil, ferr end
  -- a JavaScript file is evaluated now, before anything is supervised
  local source, serr = ecocli.request(file, p.opts, base_env, cwd)
  if not source then return nil, serr end
  source.instances = applied.instances
  return source
end

-- Through the echo's writer of fd 2, as the apps' stderr lines: in order
-- with them, and never blocking the loop behind a paused terminal.
local function say(msg)
  local line = "orch | " .. msg .. "\n"
  if not core.echo(2, line) then io.stderr:write(line) end
end

-- The signals that stop orch run. Their handlers are installed before the
-- ecosystem file is read: as a container's init (PID 1) orch gets only the
-- signals it handles, so a `docker stop` during a slow start (Node
-- evaluating a JavaScript config) would be dropped, and the container
-- killed after its grace period. on_signal(NAME) is called for each; until
-- it is set, the first signal is kept in the table's `pending`.
local STOP_SIGNALS = { "sigint", "sigterm", "sighup" }

local function catch_stop_signals()
  local caught = { handles = {} }
  for _, name in ipairs(STOP_SIGNALS) do
    local h = uv.new_signal()
    h:start(name, function()
      if caught.on_signal then caught.on_signal(name:upper())
      else caught.pending = caught.pending or name:upper() end
    end)
    caught.handles[#caught.handles + 1] = h
  end
  return caught
end

-- orch run itself, once its options are parsed and its stop signals caught.
local function run(opts, caught)
  local layout = paths.ensure_home_for("run")
  if not layout then return 1 end
  local source, why = source_of(opts, core.environ(), util.getcwd())
  if not source then
    io.stderr:write("orch run: ", why, "\n")
    return 2
  end
  if caught.pending then
    say("received " .. caught.pending .. " before any app started, exiting")
    return 0
  end
  local log = function(_, msg) say(msg) end
  local sup -- set below; the idle check lists it
  local status, shutting_down = 0, false
  local killed = {} -- labels of the apps a shutdown had to SIGKILL
  local engine = engine_mod.new({
    paths = layout, echo = true, log = log, mode = "run",
    on_event = function(event, proc, info)
      if event == "idle" then
        if not shutting_down then
          for _, p in ipairs(sup:list()) do
            if p.status == "errored" then status = 1 end
          end
          say("no app is running any more, exiting")
          uv.stop()
        end
        return
      end
      if event == "stopped" and shutting_down and info and info.killed then
        killed[#killed + 1] = proc.name .. ":" .. proc.instance
      end
      local msg = eventlog.line(event, proc, info)
      if msg then say(msg) end
    end,
  })
  sup = engine.sup
  local cfg, err = engine:load(source)
  if not cfg then
    io.stderr:write(err, "\n")
    return 2
  end
  for _, w in ipairs(cfg.warnings or {}) do say("warning: " .. w) end
  -- One engine per $ORCH_HOME: the control socket and state are its own.
  local lock, lerr = core.lock_pidfile(layout.pid)
  if not lock then
    local pid = core.read_pidfile(layout.pid)
    io.stderr:write(string.format("orch run: %s is in use by another orch%s (%s); use another ORCH_HOME\n",
      layout.home, pid and (" (pid " .. pid .. ")") or "", lerr))
    return 1
  end
  core.on_error(function(msg) say("error: " .. msg) end)
  if opts.http_addr then
    local ok, herr = require("orch.httpserve").start(engine, opts.http_addr, opts.http_origin)
    if not ok then
      io.stderr:write("orch run: ", herr, "\n")
      lock:release()
      return 1
    end
  end

  local signals = {}
  caught.on_signal = function(name)
    if shutting_down then
      say("received " .. name .. " again, killing everything now")
      sup:kill_all()
      return
    end
    shutting_down = true
    say("received " .. name .. ", stopping all apps")
    engine:stop_all(function() uv.stop() end)
  end
  -- SIGUSR2: reopen every log file (orch reopen-logs), for an external logrotate.
  local usr2 = uv.new_signal()
  usr2:start("sigusr2", function()
    local reopened, errors = require("orch.commands").reopen_logs(engine)
    say(string.format("received SIGUSR2, reopened %d log file(s)", #reopened))
    for _, e in ipairs(errors) do say("error: cannot reopen " .. e) end
  end)
  signals[#signals + 1] = usr2
  engine.on_kill = function()
    shutting_down = true
    uv.stop()
  end

  engine:recover(function()
    local ok, serr = require("orch.control").serve(engine)
    if ok then
      engine.readiness:open(layout.notify, sup)
    else
      say("warning: " .. serr .. "; orch list and friends will not reach this orch")
    end
    engine:install_all(cfg.apps, source)
  end)
  uv.run()
  engine:shutdown()
  caught.on_signal = nil
  for _, h in ipairs(signals) do h:close() end
  lock:release()
  if #killed > 0 then
    say(string.format("%s did not stop by itself (SIGKILL after kill_timeout), exit status 1",
      table.concat(killed, ", ")))
    status = 1
  end
  return status
end

function M.main(args)
  local opts, perr = cliargs.parse(SPEC, args)
  if opts then
    opts.http_addr, opts.http_origin = require("orch.httpserve").address(opts.opts.http)
    if not opts.http_addr and opts.http_origin then opts, perr = nil, opts.http_origin end
  end
  if not opts then
    io.stderr:write("orch run: ", perr, "\n", M.USAGE, "\n")
    return 2
  end
  local caught = catch_stop_signals()
  local status = run(opts, caught)
  for _, h in ipairs(caught.handles) do h:close() end
  return status
end

return M
