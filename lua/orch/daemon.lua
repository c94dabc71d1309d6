-- orch.daemon: `orch daemon`, PM2's God process. Started detached by the
-- CLI (new session, output to $ORCH_HOME/daemon.log); a pid-file lock makes
-- it the only one per $ORCH_HOME. It first stops what a crashed predecessor
-- left running and starts those apps again, then serves the control socket.
local uv = require("luv")
local core = require("orch.core")
local paths = require("orch.paths")
local engine_mod = require("orch.engine")
local eventlog = require("orch.eventlog")
local heapkeep = require("orch.heapkeep")

local M = {}

M.help = [[
usage: orch daemon [--ready-fd N] [--http ADDR:PORT] [--resurrect]

Runs the daemon in the foreground of the calling process. The CLI starts it
by itself (detached) when no daemon answers; a service manager runs it with
--resurrect (orch startup writes such a unit).

  --ready-fd N   once the control socket listens, write a newline to fd N
                 and close it (s6's notification-fd); "=" instead when
                 another orch already has this ORCH_HOME
  --http ADDR:PORT
                 serve /metrics, /healthz, /readyz... over HTTP there
                 (docs/http.md); default: $ORCH_HTTP, else no HTTP
  --resurrect    start the saved apps (orch save) as orch resurrect does,
                 unless a crashed daemon's own apps come back instead; fail
                 when another orch already has this ORCH_HOME

With NOTIFY_SOCKET set (systemd's Type=notify), the daemon says READY=1
once it serves and what it started has settled, STATUS= as processes
change, WATCHDOG=1 (WatchdogSec=), RELOADING=1 around orch reload all and
STOPPING=1 on the way out (docs/production.md).
]]

-- argv after "daemon" -> { ready_fd = n | nil, http = address | nil, resurrect = true | nil },
-- or nil, message.
local function parse(args)
  local opts, i = {}, 1
  while i <= #args do
    local a = args[i]
    local v = a:match("^%-%-ready%-fd=(.*)$")
    local h = a:match("^%-%-http=(.*)$")
    if a == "--http" then
      i = i + 1
      h = args[i]
      if h == nil then return nil, "--http needs an address (ADDR:PORT, e.g. 127.0.0.1:9615)" end
    end
    if a == "--ready-fd" then
      i = i + 1
      v = args[i]
      if v == nil then return nil, "--ready-fd needs a file descriptor number" end
    end
    if a == "--resurrect" then
      opts.resurrect = true
    elseif h then
      opts.http = h
    elseif v then
      local n = tonumber(v)
      if not n or n ~= math.floor(n) or n < 3 then
        return nil, string.format("--ready-fd: expected a file descriptor number >= 3, got '%s'", v)
      end
      opts.ready_fd = n
    else
      return nil, string.format("unknown argument '%s'", a)
    end
    i = i + 1
  end
  return opts
end

-- Writes the readiness byte to fd and closes it; a reader gone is no matter.
local function notify(fd, byte)
  if not fd then return end
  uv.fs_write(fd, byte)
  uv.fs_close(fd)
end

-- sink: the daemon's own log as a rotating sink, or nil (stderr as it is).
local function logger(sink)
  return function(level, msg)
    -- one write per line: stderr is unbuffered, and stop logs two lines per process
    local line = os.date("%Y-%m-%dT%H:%M:%S ") .. level .. ": " .. msg .. "\n"
    if sink then sink:write(line) else io.stderr:write(line) end
  end
end

-- When our stderr is $ORCH_HOME/daemon.log (the CLI started us), the log
-- becomes a sink that rotates like the apps' logs (the same defaults), with
-- fds 1 and 2 following it, so that stray output lands in the current file.
-- Run by hand on a terminal, stderr stays what it is. Returns the sink or nil.
local function own_log(path)
  local st, err_st = uv.fs_fstat(2), uv.fs_stat(path)
  if not (st and err_st and st.dev == err_st.dev and st.ino == err_st.ino) then return nil end
  local defaults, problems = require("orch.launch").rotation_defaults()
  local sink = core.sink_open(path, defaults)
  if not (sink and sink:own_stdio()) then return nil end
  for _, p in ipairs(problems) do sink:write("warning: " .. p .. "; using the default\n") end
  return sink
end

function M.main(args)
  local opts, perr = parse(args or {})
  local http_addr, http_origin
  if opts then
    -- orch.httpserve (and orch.http) load only for an address
    if opts.http or os.getenv("ORCH_HTTP") then
      http_addr, http_origin = require("orch.httpserve").address(opts.http)
    end
    if not http_addr and http_origin then
      io.stderr:write("orch daemon: ", http_origin, "\n")
      return 2
    end
  end
  if not opts then
    io.stderr:write("orch daemon: ", perr, "\n", M.help)
    return 2
  end
  local layout = paths.ensure_home_for("daemon")
  if not layout then return 1 end
  -- orch update: a previous image of this process left its state (and its
  -- lock on daemon.pid, which was never let go).
  -- orch.takeover loads only then (orch.handover.ENV_FD is set; update_spec
  -- fails if the names part): an idle daemon does without its heap.
  local takeover = os.getenv("ORCH_HANDOVER_FD") and require("orch.takeover")
  local incoming, ierr
  if takeover then incoming, ierr = takeover.incoming() end
  local lock, lerr, code
  if incoming then lock, lerr = core.lock_adopt(incoming.doc.lock_fd)
  else lock, lerr, code = core.lock_pidfile(layout.pid) end
  if not lock then
    if code == "EWOULDBLOCK" then -- another daemon won the race: fine
      notify(opts.ready_fd, "=")
      -- unless we were to bring the dump back (a service manager's daemon)
      if not opts.resurrect then return 0 end
      io.stderr:write("orch daemon: another orch already runs in ", layout.home, " (", layout.pid,
        "); stop it (orch kill) for this one to start\n")
      return 1
    end
    io.stderr:write("orch daemon: cannot lock ", layout.pid, ": ", lerr, "\n")
    return 1
  end
  core.set_title("orch: daemon (" .. layout.home .. ")")
  heapkeep.start()
  local log_sink = own_log(layout.daemon_log)
  local log = logger(log_sink)
  core.on_error(function(msg) log("error", msg) end)
  local service -- orch.service: what the service manager is told (NOTIFY_SOCKET)
  local engine = engine_mod.new({
    paths = layout, echo = false, log = log, mode = "daemon",
    on_forget = heapkeep.deleted,
    on_event = function(event, proc, info)
      heapkeep.changed()
      -- no "stopping" line: a stop writes two lines per process as it is
      local msg = event ~= "stopping" and eventlog.line(event, proc, info)
      if msg then log("info", msg) end
      if service then service:changed() end
    end,
  })
  service = require("orch.service").new({ engine = engine, log = log })
  heapkeep.compactor(function() engine.events:compact() end)
  local status = 0
  local signals = {}
  local function quit()
    service:stopping()
    service:close()
    engine:shutdown()
    for _, h in ipairs(signals) do h:close() end
    uv.stop()
  end
  engine.on_kill = quit
  -- orch kill (or SIGTERM) begins: STOPPING=1 for the service manager
  function engine.on_stopping()
    service:stopping(string.format("stopping %d process(es)", #engine.sup:list()))
  end
  local stopping = false
  for _, name in ipairs({ "sigint", "sigterm" }) do
    local h = uv.new_signal()
    h:start(name, function()
      if stopping then engine.sup:kill_all() return end
      stopping = true
      log("info", "received " .. name:upper() .. ", stopping every process")
      engine.on_stopping()
      engine:stop_all(quit)
    end)
    signals[#signals + 1] = h
  end
  local hup = uv.new_signal()
  hup:start("sighup", function() end) -- detached: a hangup means nothing here
  signals[#signals + 1] = hup
  -- SIGUSR2: reopen every log file (orch reopen-logs), for an external logrotate.
  engine.log_sink = log_sink
  local usr2 = uv.new_signal()
  usr2:start("sigusr2", function()
    local reopened, errors = require("orch.commands").reopen_logs(engine)
    log("info", string.format("received SIGUSR2, reopened %d log file(s)", #reopened))
    for _, e in ipairs(errors) do log("error", "cannot reopen " .. e) end
  end)
  signals[#signals + 1] = usr2

  if ierr then log("error", "orch update: " .. ierr .. "; starting afresh") end
  -- what orch update needs: the binary's path now (a replaced file reads
  -- "PATH (deleted)" later), the arguments again (not --ready-fd: used up)
  local update_ctx = { exe = (core.exe_path() or ""):gsub(" %(deleted%)$", ""), args = {}, lock = lock,
                       generation = 0, attempt = 0 }
  if opts.http then update_ctx.args = { "--http", opts.http } end
  engine.update_ctx = update_ctx
  local doc = incoming and incoming.doc
  if doc then
    update_ctx.attempt = doc.attempt or 0
    -- back from a new binary that could not take over: this one goes on
    if doc.failed then update_ctx.failed = { attempt = doc.attempt, message = doc.failed }
    else update_ctx.generation = doc.generation end
    if doc.failed then update_ctx.generation = doc.generation - 1 end
  end
  log("info", string.format("orch %s daemon %s, pid %d, home %s", engine_mod.VERSION,
    doc and (doc.failed and "back" or ("updated from " .. tostring(doc.version))) or "started", core.getpid(), layout.home))
  log("info", engine.tree:summary())
  -- The socket is served at once, also while what a crashed predecessor
  -- left is being stopped (requests wait for that, ping answers).
  local ok, serr = require("orch.control").serve(engine, doc and doc.ctl_fd)
  if ok and http_addr then ok, serr = require("orch.httpserve").start(engine, http_addr, http_origin) end
  if not ok then
    -- the state file stays as it is: it tells the next daemon what to stop
    log("error", serr)
    for _, h in ipairs(signals) do h:close() end
    lock:release()
    service:close()
    log("info", "daemon exiting")
    return 1
  end
  engine.readiness:open(layout.notify, engine.sup)
  notify(opts.ready_fd, "\n")
  if doc then
    local good, why = pcall(takeover.restore, engine, doc)
    if good then
      incoming.fd:close()
      if incoming.image then incoming.image:close() end
      log("info", string.format("orch update: took over %d process(es) from orch %s", #(doc.procs or {}),
        tostring(doc.version)))
      service:expect_ready()
    else
      local _, ferr = takeover.fall_back(engine, incoming, update_ctx, tostring(why))
      -- last resort: this image goes on with what it took over
      log("error", "orch update: cannot go back to the previous binary: " .. tostring(ferr)
        .. "; going on with what was taken over (orch list shows it)")
      service:expect_ready()
    end
  end
  if not doc then engine:recover(function(prev)
    -- started: start-up's garbage and the modules' bytecode go once this
    -- turn (which holds the scan's list) is over
    heapkeep.changed(0)
    if prev and not prev.clean then
      local started, stopped, errors = engine:restore(prev.apps)
      if #started > 0 then log("info", "restarted after a crash: " .. table.concat(started, ", ")) end
      if #stopped > 0 then log("info", "restored stopped after a crash: " .. table.concat(stopped, ", ")) end
      for _, e in ipairs(errors) do log("error", "cannot restart after a crash: " .. e) end
      return service:expect_ready()
    end
    -- a crashed daemon's apps are newer than the dump: they came back instead
    if not opts.resurrect then return service:expect_ready() end
    require("orch.service").resurrect(engine, log, function() service:expect_ready() end)
  end) end
  uv.run()
  lock:release()
  log("info", "daemon exiting")
  return status
end

return M
