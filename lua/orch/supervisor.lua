-- orch.supervisor: the process table, and the actions of each process's
-- life cycle. Which action runs, and every status a process takes, is
-- orch.lifecycle's table: the methods here fire events at it (M.actions
-- holds what they do). Its parts: orch.logfiles (the log files),
-- orch.pacing (launch queue, run times), orch.stoptree (stopping a tree).
--
-- Stopping sends kill_signal to the process group and to descendants that
-- left it, and SIGKILL to all of them after kill_timeout. A process is
-- stopped only when its main process has exited and nothing of its tree is
-- left. Events go to opts.emit(event, proc, info).
local core = require("orch.core")
local uv = require("luv")
local policy = require("orch.policy")
local launch = require("orch.launch")
local runas = require("orch.runas")
local fdbudget = require("orch.fdbudget")
local hook = require("orch.hook")
local channel = require("orch.channel")
local colour = require("orch.colour")
local lifecycle = require("orch.lifecycle")
local timers = require("orch.timers")
local proctable = require("orch.proctable")
local close_timer, after = timers.close, timers.after

local M = {}
local Supervisor = {}
Supervisor.__index = Supervisor
-- The log files (sinks), the pacing of launches and the stopping of a
-- process tree live in their own modules.
for _, mod in ipairs({ "orch.logfiles", "orch.pacing", "orch.stoptree" }) do
  for k, fn in pairs(require(mod).methods) do Supervisor[k] = fn end
end
-- The lifecycle's actions (see orch.lifecycle.TABLE): A.name(self, proc, ...).
local A = {}
Supervisor.actions = A
M.actions = A

local function call(done, ...)
  if type(done) == "function" then return done(...) end
end

-- Exec errors that may go away by themselves (resource limits) go through
-- the restart policy; anything else (no such file, not executable) is final.
local transient_spawn_errors = { EAGAIN = true, ENOMEM = true, EMFILE = true, ENFILE = true }

local function now_ms()
  return uv.hrtime() / 1e6
end

-- opts: logs_dir, home (absolute: the marker's), tree (orch.tree: what
--       else a process's tree holds), base_env (table), emit(event, proc, info), log(level, msg),
--       echo (bool: copy output lines to our stdout/stderr with a prefix),
--       gate(proc) -> true when a new process must wait for set_online(),
--       listeners(proc) -> { fds, names } inherited by socket activation,
--       internal(proc, channel, msg): Node's own messages (cluster),
--       channel_closed(proc, channel),
--       graceful(proc, after) -> true when a stop was asked for over the
--         channel (after() runs when the signal is due),
--       log_problem(p): a log file that cannot be opened (orch.logproblems)
function M.new(opts)
  local index = proctable.new()
  local self = setmetatable({
    index = index, procs = index.list, by_id = index.by_id, -- procs: in id order
    tree_waits = {},  -- stopping processes whose main process is gone (orch.stoptree)
    busy = 0,         -- processes in the table neither stopped nor errored (_check_idle)
    next_id = 0,
    sinks = {},       -- path -> sink, shared by restarts and merged instances
    prefix_width = 0,
    opts = opts,
    emit = opts.emit or function() end,
    log = opts.log or function() end,
    exe = assert(core.exe_path()),
    -- the echo's labels are coloured when our stdout/stderr is a terminal
    colour_out = opts.echo and colour.enabled(1),
    colour_err = opts.echo and colour.enabled(2),
  }, Supervisor)
  self.machine = lifecycle.new(self)
  self:_watch_polls()
  local ok, err = core.reaper_start(function() self:_on_sigchld() end)
  if not ok then self.log("warn", "cannot reap orphans: " .. tostring(err)) end
  -- Several descriptors per app: the soft limit goes up to the hard one
  -- (children get the original back, see core/fds.c).
  ok, err = core.raise_fd_limit()
  if not ok then self.log("warn", "cannot raise the open file limit: " .. tostring(err)) end
  return self
end

function Supervisor:label(proc)
  return proc.name .. ":" .. proc.instance
end

-- Adds an app's instances to the table (stopped). Returns them. base_env is
-- the environment the app's own env goes over (the CLI's, for the daemon).
-- only: add just that instance number (scaling up).
function Supervisor:add(app, base_env, only)
  local added = {}
  for i = only or 0, only or app.instances - 1 do
    local proc = {
      id = self.next_id, name = app.name, instance = i, app = app, base_env = base_env,
      status = lifecycle.INITIAL, restarts = 0, counters = { unstable = 0, backoff = 0 },
      created_at = self:now(), -- Unix ms (PM2's created_at; orch reset sets it again)
    }
    self.next_id = self.next_id + 1
    self.index:add(proc)
    added[#added + 1] = proc
    self.prefix_width = math.max(self.prefix_width, #self:label(proc))
  end
  return added
end

function Supervisor:list()
  return self.procs
end

function Supervisor:get(id)
  return self.by_id[id]
end

-- Fires event at proc's life cycle (orch.lifecycle).
-- Wall time in ms, for the history of transitions (orch describe).
function Supervisor:now()
  local sec, usec = uv.gettimeofday()
  return sec * 1000 + math.floor(usec / 1000)
end

local function busy(status) return status ~= "stopped" and status ~= "errored" end

-- orch.lifecycle's hook: the count of busy processes follows each status
-- written to a process of the table.
function Supervisor:on_status(proc, from, to)
  if self.by_id[proc.id] == proc then
    self.busy = self.busy + (busy(to) and 1 or 0) - (busy(from) and 1 or 0)
  end
end

function Supervisor:fire(proc, event, ...)
  return self.machine.fire(proc, event, ...)
end

-- The last transitions of proc, oldest first (orch describe): { event,
-- from, to, at (Unix time in ms), detail }, or nil before the first.
function Supervisor:transitions(proc)
  local h = proc.transitions
  if not h or #h == 0 then return nil end
  local out = {}
  for i, t in ipairs(h) do
    out[i] = { event = t.event, from = t.from, to = t.to, at = t.at, detail = t.detail }
  end
  return out
end

-- A request the process's state refuses: nil, "NAME:I is STATE".
function A.refuse(self, proc, done)
  local err = self:label(proc) .. " is " .. proc.status
  call(done, nil, err)
  return nil, err
end

function A.ignore() return false end
function A.nothing() return true end
function A.already_stopped(_, _, done) call(done) return true end
function A.already_running(_, _, done) call(done, true) return true end

-- Drops a process that is not running from the table (it becomes deleted).
function Supervisor:remove(proc)
  return self:fire(proc, "remove")
end

function A.drop(self, proc)
  close_timer(proc.timer)
  proc.timer = nil
  if proc.notify then
    proc.notify.close()
    proc.notify = nil
  end
  if self.by_id[proc.id] == proc and busy(proc.status) then self.busy = self.busy - 1 end
  self.index:remove(proc)
  self:_close_unused_sinks()
  return true
end

-- The new process takes the old one's place (its id and its position in
-- the table); the old one leaves as a remove (deleted), which its state
-- may refuse: a process that runs again (restarted meanwhile) stays in the
-- table, never dropped while it runs. For reloads. true, or nil, err.
function Supervisor:replace(old, new)
  if self.by_id[old.id] ~= old then return nil, self:label(old) .. " is no longer in the table" end
  local ok, err = self:fire(old, "remove") -- new is still listed: its log files stay open
  if not ok then return nil, err end
  self.index:take_place(new, old.id)
  return true
end

-- Stops (if running) and starts again; counts as a restart, as in PM2, and
-- forgets earlier unstable exits. done(ok, err) once launched.
-- cause: { cause, reason } for the "restarting" event (orch.events'
-- restart causes; default "command"), raised when the restart stops or
-- cuts short a run (a stopped process just starts).
function Supervisor:restart(proc, done, cause)
  local s = proc.status
  if s == "online" or s == "launching" or s == "stopping" or s == "waiting restart" then
    self.emit("restarting", proc, cause or { cause = "command" })
  end
  return self:fire(proc, "restart", done or function() end)
end

function A.relaunch(self, proc, done)
  proc.restarts = proc.restarts + 1
  proc.counters = { unstable = 0, backoff = 0 }
  return call(done, self:_launch(proc))
end

-- A restart of a process that is not running starts it: PM2 counts no
-- restart then.
function A.start_over(self, proc, done)
  proc.counters = { unstable = 0, backoff = 0 }
  return call(done, self:_launch(proc))
end

function A.stop_then_relaunch(self, proc, done)
  self:_begin_stop(proc, function() self:fire(proc, "relaunch", done) end)
end

function A.join_then_relaunch(self, proc, done)
  A.join(self, proc, function() self:fire(proc, "relaunch", done) end)
end

-- Held until its dependencies hold: a restart changes nothing.
function A.keep_blocked(_, _, done) call(done, true) return true end

-- Starts a stopped, errored, blocked or waiting process. Returns true or
-- nil, err.
function Supervisor:start(proc)
  return self:fire(proc, "start")
end

-- Holds a process back until its dependencies hold (start() then).
function Supervisor:block(proc, reason)
  return self:fire(proc, "block", reason)
end

function A.hold(_, proc, reason)
  proc.reason = reason
  return true
end

-- Stopped while held back: it will not start by itself any more.
function A.cancel_block(self, proc, done)
  self.emit("stopped", proc, { reason = "stopped while waiting for its dependencies" })
  call(done)
  self:_check_idle()
  return true
end

-- Spawns proc, launching already.
function A.launch(self, proc)
  return self:_launch(proc)
end

-- The restart the policy scheduled happens: it counts now, as in PM2
-- (not at the exit, so `waiting restart` shows the restarts done so far).
function A.launch_restart(self, proc)
  proc.restarts = proc.restarts + 1
  return self:_launch(proc)
end

-- An app with a uid or gid waits for its users and groups, looked up in
-- the background (orch.runas.resolve_async): launching meanwhile, a stop,
-- restart or delete may overtake the look-up, whose answer is then dropped
-- (a stop finds no process, and is over at once).
function Supervisor:_launch(proc)
  close_timer(proc.timer)
  proc.timer, proc.queued = nil, nil
  proc.reason = nil
  local app = proc.app
  if not runas.needs_lookup(app) then return self:_spawn(proc, runas.resolve(app)) end
  local turn = {}
  proc.resolving = turn
  runas.resolve_async(app, function(as, aerr)
    if proc.resolving ~= turn then return end
    proc.resolving = nil
    if proc.status == "launching" and proc.app == app and not proc.handle then self:_spawn(proc, as, aerr) end
  end)
  return true
end

-- Spawns proc as as says (orch.runas.resolve's answer; nil: aerr).
function Supervisor:_spawn(proc, as, aerr)
  local app = proc.app
  self.fds = self.fds or fdbudget.new()
  local full = fdbudget.take(self.fds)
  if full then return self:_spawn_failed(proc, full, "EMFILE", true) end
  local cmd = launch.command(app, self.exe)
  if launch.uses_preload(app) then
    -- Without it every instance would fail on its own bind() with
    -- EADDRINUSE, far from the cause.
    local lib, expected = launch.preload_library(self.exe)
    if not lib then
      return self:_spawn_failed(proc, string.format('balance "preload" needs %s, which is missing', expected), nil)
    end
  end
  if not as then return self:_spawn_failed(proc, aerr, nil) end
  local stdout, stderr = self:_streams(proc)
  if not stdout then return self:_spawn_failed(proc, stderr, nil) end
  local env = launch.environment(app, proc.instance, proc.id, proc.base_env or self.opts.base_env, nil,
    self.opts.home, as.env)
  -- Listening sockets first, from fd 3 (systemd socket activation), then the
  -- IPC channel (Node's child_process protocol).
  local fds = {}
  local held, lerr = nil, nil
  if self.opts.listeners then held, lerr = self.opts.listeners(proc) end
  if lerr then return self:_spawn_failed(proc, lerr, nil) end
  if held then
    for _, f in ipairs(held.fds) do fds[#fds + 1] = f end
    env[#env + 1] = "LISTEN_FDS=" .. #held.fds
    env[#env + 1] = "LISTEN_FDNAMES=" .. table.concat(held.names, ":")
  end
  local notify_socket = app.wait_ready and self.notify_socket and self.notify_socket(proc)
  if notify_socket then env[#env + 1] = "NOTIFY_SOCKET=" .. notify_socket end
  local chan_fd, child_fd, perr = core.socketpair()
  if not chan_fd then
    return self:_spawn_failed(proc, "cannot create the IPC channel: " .. tostring(child_fd), perr)
  end
  fds[#fds + 1] = child_fd
  env[#env + 1] = "NODE_CHANNEL_FD=" .. (2 + #fds)
  env[#env + 1] = "NODE_CHANNEL_SERIALIZATION_MODE=json"
  -- Node's cluster module makes a process with this variable a worker,
  -- whose listen() asks the primary (orch.cluster) for its socket.
  if app.exec_mode == "cluster" then
    self.worker_ids = (self.worker_ids or 0) + 1
    env[#env + 1] = "NODE_UNIQUE_ID=" .. self.worker_ids
  end
  local handle, err, code, step
  local tree = self.opts.tree
  proc.scope = tree and tree:enter(proc)
  local spawn = as.spawn -- uid, gid, groups, umask, nice, oom_score_adj, limits
  spawn.cgroup, spawn.file, spawn.argv, spawn.env, spawn.fds = proc.scope and proc.scope.cgroup, cmd.file,
    cmd.argv, env, fds
  spawn.listen_pid, spawn.cwd = held ~= nil, app.cwd
  spawn.stdout, spawn.stderr = stdout, stderr
  spawn.on_exit = function(exit_code, signal) self:_on_exit(proc, handle, exit_code, signal) end
  handle, err, code, step = core.spawn(spawn)
  child_fd:close() -- the child has its copy
  if not handle then
    chan_fd:close()
    if tree then tree:release(proc.scope) end
    -- step: the option the child could not apply (limits.nofile, uid...)
    return self:_spawn_failed(proc, step and err or string.format("cannot exec %s: %s", cmd.file, err), code)
  end
  proc.handle = handle
  proc.pid = handle:pid()
  -- The old run's channel closes by itself at EOF, after its last message.
  self:_open_channel(proc, handle, chan_fd)
  proc.started_at = now_ms()
  proc.started_wall = os.time()
  return self:fire(proc, "spawned")
end

-- proc's IPC channel on fd (an fd object, taken over); buffered: bytes of
-- a message read before (orch update hands them over).
function Supervisor:_open_channel(proc, handle, fd, buffered)
  local ch, cerr
  ch, cerr = channel.open(fd,
    function(msg) self:_message(proc, handle, msg, ch) end,
    function(problem) self.log("warn", self:label(proc) .. ": " .. problem) end,
    function() if self.opts.channel_closed then self.opts.channel_closed(proc, ch) end end, buffered)
  if not ch then
    self.log("warn", self:label(proc) .. ": no IPC channel: " .. tostring(cerr))
  end
  proc.channel = ch
end

function A.started(self, proc)
  self.emit("start", proc)
  -- A readiness gate (a health check with wait_healthy, a ready message)
  -- keeps the process launching until set_online().
  if self.opts.gate and self.opts.gate(proc) then return true end
  self:fire(proc, "ready")
  return true
end

function A.go_online(self, proc)
  self.emit("online", proc)
  return true
end

-- A message from a process over its channel: 'ready' ends a wait_ready
-- wait; every message that is not Node's own becomes a "message" event.
function Supervisor:_message(proc, handle, msg, ch)
  if channel.is_internal(msg) then
    if self.opts.internal then self.opts.internal(proc, ch, msg) end
    return
  end
  if proc.handle == handle and msg == "ready" then
    proc.ready = true
    self.emit("ready", proc)
  end
  self.emit("message", proc, { message = msg })
end

-- Sends a message to a running process. true, or nil and why not.
function Supervisor:send(proc, msg)
  if not (proc.handle and proc.channel) then return nil, self:label(proc) .. " is not running" end
  return proc.channel.send(msg)
end

-- Ends the readiness wait of a launching process (see opts.gate).
function Supervisor:set_online(proc)
  if not proc.handle then return false end
  return self:fire(proc, "ready")
end

-- final: no retry even for an error that may go away by itself.
function Supervisor:_spawn_failed(proc, err, code, final)
  proc.pid = nil
  proc.reason = err
  self.emit("spawn_error", proc, { error = err, code = code })
  if transient_spawn_errors[code] and not final then
    proc.last_exit = { uptime_ms = 0, error = err }
    self:fire(proc, "exit", proc.last_exit)
  else
    self:fire(proc, "exec_failed", err)
  end
  return nil, err
end

function A.fail(self, proc, err)
  self.emit("errored", proc, { reason = err })
  self:_check_idle()
end

-- A read-only copy of what a user's function may look at.
function Supervisor:view(proc)
  return {
    id = proc.id, name = proc.name, instance = proc.instance, pid = proc.pid,
    status = proc.status, restarts = proc.restarts,
    unstable_restarts = proc.counters.unstable,
    uptime_ms = proc.started_at and (now_ms() - proc.started_at) or 0,
    config = proc.app,
  }
end

function Supervisor:_decide(proc, exit)
  local decision, counters = policy.decide(proc.app, proc.counters, exit)
  proc.counters = counters
  local fn = proc.app.restart
  if type(fn) ~= "function" then return decision end
  -- The decision is read under the deadline too: a table it returns may
  -- have metamethods.
  local ok, user, err = hook.call(function(...) return policy.from_user(fn(...)) end,
    proc.app.hook_deadline, self:view(proc), exit)
  if not ok or err then
    local msg = ok and ("returned an invalid decision: " .. err) or user
    if self.opts.user_error then
      self.opts.user_error(proc, "restart function", msg, ", using the default policy")
    else
      self.log("error", self:label(proc) .. ": restart function failed, using the default policy: " .. msg)
    end
    return decision
  end
  return user or decision
end

function Supervisor:_on_exit(proc, handle, code, signal)
  if proc.handle ~= handle then return end -- an exit of an older run
  proc.handle = nil
  if self.opts.tree then self.opts.tree:release(proc.scope) end -- its cgroup goes once empty
  local exit = { code = code, signal = signal, uptime_ms = self:_run_time(proc) }
  proc.last_exit = exit
  self.emit("exit", proc, exit)
  self:fire(proc, "exit", exit)
end

function A.check_stopped(self, proc)
  self:_check_stopped(proc)
end

-- The process ended by itself (or its exec failed with an error that may
-- go away): the restart policy decides.
function A.decide(self, proc, exit)
  -- What it left in its group goes too, so restarts do not pile up orphans
  -- (or ports held by them).
  self:_kill_leftovers(proc.pid, proc.app, proc.scope)
  local d = self:_decide(proc, exit)
  proc.pid = nil
  if d.action == "restart" then return self:fire(proc, "policy_restart", d) end
  return self:fire(proc, d.status == "errored" and "policy_error" or "policy_stop", d)
end

function A.finish(self, proc, d)
  proc.reason = d.reason
  self.emit(proc.status, proc, { reason = d.reason })
  self:_check_idle()
end

function A.schedule(self, proc, d)
  if d.delay > 0 then
    self.emit("waiting", proc, { delay = d.delay })
    self:_delay(proc, d.delay)
  else
    -- waiting for a loop turn or so: no event of its own
    self.emit("restart", proc, { delay = 0 })
    self:_queue_launch(proc)
  end
end

-- proc's restart delay: "delay_over" after ms (orch update arms what was
-- left of one).
function Supervisor:_delay(proc, ms)
  proc.timer = after(ms, function()
    close_timer(proc.timer)
    proc.timer = nil
    self:fire(proc, "delay_over")
  end)
end

function A.queue(self, proc)
  self:_queue_launch(proc)
end

-- Stops a process; done() runs once it and its tree are gone.
function Supervisor:stop(proc, done)
  return self:fire(proc, "stop", done or function() end)
end

function A.cancel_restart(self, proc, done)
  close_timer(proc.timer)
  proc.timer, proc.queued = nil, nil
  self.emit("stopped", proc, { reason = "stopped while waiting to restart" })
  call(done)
  self:_check_idle()
  return true
end

function A.join(_, proc, done)
  proc.stop_waiters[#proc.stop_waiters + 1] = done
end

function A.begin_stop(self, proc, done)
  return self:_begin_stop(proc, done)
end

-- SIGKILL now (kill_timeout passed, or a second Ctrl-C): to the snapshot
-- and to what joined the tree since. A process not stopping yet starts to.
function Supervisor:kill(proc, why)
  return self:fire(proc, "kill", why)
end

function A.sigkill(self, proc, why)
  return self:_sigkill(proc, why)
end

function A.begin_kill(self, proc, why)
  self:_begin_stop(proc, function() end)
  if proc.status == "stopping" then self:_sigkill(proc, why) end
end

function A.release(self, proc)
  -- a stop that needed SIGKILL was not clean: orch run's exit status says so
  local info = proc.killed and { reason = "killed by SIGKILL", killed = true } or nil
  self:_forget_tree(proc)
  proc.pid = nil
  local waiters = proc.stop_waiters or {}
  proc.stop_waiters = nil
  self.emit("stopped", proc, info)
  for _, w in ipairs(waiters) do w() end
  self:_check_idle()
end

-- SIGKILL to every process (a second SIGINT or SIGTERM while stopping):
-- those still waiting for their turn in an ordered stop too.
function Supervisor:kill_all(why)
  for _, proc in ipairs(self.procs) do self:kill(proc, why or "killed at once (kill_all)") end
end

-- "idle" is emitted when nothing runs or will run by itself any more.
-- O(1) while something runs (a walk of the table at each exit made a stop
-- of N processes cost O(N^2)); the walk confirms a count of 0.
function Supervisor:_check_idle()
  if self.busy > 0 then return end
  for _, proc in ipairs(self.procs) do
    if busy(proc.status) then return end
  end
  self.emit("idle")
end

return M
