-- orch.lifecycle: each process's life cycle as data. TABLE[state][event]
-- gives the action to take and the next state; fire() is the only code
-- that writes proc.status. The actions are the core's (orch.supervisor's,
-- or a fake one in spec/unit/lifecycle_spec.lua): the table decides, the
-- core does. A (state, event) pair the table does not define is an error,
-- raised with both names: a transition nobody thought of must not pass
-- silently. docs/architecture.md prints the table (tools/statetable).
--
-- States (what `orch list` shows):
--   stopped          not running, and will not run by itself
--   blocked          held back until its dependencies (depends_on) hold
--   launching        spawning, or spawned and waiting to be ready
--                    (wait_ready, wait_healthy)
--   online           running and ready
--   stopping         signalled; stopped once its whole tree is gone
--   waiting restart  exited; a restart is pending (restart_delay, or its
--                    turn among the restarts spawned this loop turn)
--   errored          failed for good (exec error, too many unstable exits)
--   deleted          removed from the table (the reply to `orch delete`)
local M = {}

M.STATES = { "stopped", "blocked", "launching", "online", "stopping", "waiting restart", "errored", "deleted" }

-- Events, with the arguments each passes to its action, and what it means.
M.EVENTS = {
  { "start", "", "start requested (orch start, a dependency now holds)" },
  { "block", "reason", "start requested while a dependency does not hold" },
  { "restart", "done", "restart requested (orch restart, a reload of a process not online, a trigger)" },
  { "relaunch", "done", "the stop of a restart is over: launch again" },
  { "stop", "done", "stop requested" },
  { "kill", "why", "SIGKILL now (kill_timeout passed, or a second SIGINT/SIGTERM while stopping: kill_all)" },
  { "spawned", "", "exec succeeded" },
  { "ready", "", "every readiness condition holds (or there is none)" },
  { "exec_failed", "err", "exec failed for good (no such file, no descriptors left...)" },
  { "exit", "exit", "the main process ended, or its exec failed with an error that may go away" },
  { "policy_restart", "decision", "the restart policy says restart (after decision.delay)" },
  { "policy_stop", "decision", "the restart policy says stop (autorestart off, stop_exit_codes...)" },
  { "policy_error", "decision", "the restart policy says errored (max_restarts unstable exits)" },
  { "delay_over", "", "the restart delay has passed" },
  { "dequeue", "", "the launch queue's turn for this process" },
  { "group_gone", "", "the main process and its whole tree are gone" },
  { "remove", "", "delete requested" },
}

local function rows(list)
  local t = {}
  for _, r in ipairs(list) do t[r[1]] = { action = r[2], to = r[3] } end
  return t
end

-- Stopped and errored behave alike; they differ in what they tell the user.
local function at_rest(self_state)
  return rows({
    { "start", "launch", "launching" },
    { "block", "hold", "blocked" },
    { "restart", "start_over", "launching" },      -- not running: PM2 starts it, no restart counted
    { "relaunch", "relaunch", "launching" },       -- the stop of a restart is over
    { "stop", "already_stopped", self_state },
    { "kill", "nothing", self_state },
    { "ready", "ignore", self_state },     -- a late readiness of the run that ended
    { "dequeue", "ignore", self_state },   -- a queued restart stopped meanwhile
    { "remove", "drop", "deleted" },
  })
end

-- Launching and online alike: the exit, the policy and stop requests.
local function running(self_state)
  return rows({
    { "start", "refuse", self_state },
    { "block", "refuse", self_state },
    { "restart", "stop_then_relaunch", "stopping" },
    { "relaunch", "already_running", self_state }, -- another restart launched it first
    { "stop", "begin_stop", "stopping" },
    { "kill", "begin_kill", "stopping" },
    { "exit", "decide", self_state },
    { "policy_restart", "schedule", "waiting restart" },
    { "policy_stop", "finish", "stopped" },
    { "policy_error", "finish", "errored" },
    { "dequeue", "ignore", self_state },
    { "remove", "refuse", self_state },
  })
end

M.TABLE = {
  stopped = at_rest("stopped"),
  errored = at_rest("errored"),
  blocked = rows({
    { "start", "launch", "launching" },
    { "block", "hold", "blocked" },                  -- still (another dependency)
    { "restart", "keep_blocked", "blocked" },        -- it starts when its dependencies hold
    { "relaunch", "keep_blocked", "blocked" },
    { "stop", "cancel_block", "stopped" },
    { "kill", "cancel_block", "stopped" },
    { "ready", "ignore", "blocked" },
    { "dequeue", "ignore", "blocked" },
    { "remove", "refuse", "blocked" },
  }),
  launching = running("launching"),
  online = running("online"),
  stopping = rows({
    { "start", "refuse", "stopping" },
    { "block", "refuse", "stopping" },
    { "restart", "join_then_relaunch", "stopping" },
    { "relaunch", "join_then_relaunch", "stopping" },
    { "stop", "join", "stopping" },
    { "kill", "sigkill", "stopping" },
    { "ready", "ignore", "stopping" },
    { "exit", "check_stopped", "stopping" },          -- the main process is gone; its tree may not be
    { "group_gone", "release", "stopped" },
    { "dequeue", "ignore", "stopping" },
    { "remove", "refuse", "stopping" },
  }),
  ["waiting restart"] = rows({
    { "start", "launch_restart", "launching" },      -- the pending restart, now
    { "block", "refuse", "waiting restart" },
    { "restart", "relaunch", "launching" },           -- now, without the rest of the delay
    { "relaunch", "relaunch", "launching" },
    { "stop", "cancel_restart", "stopped" },
    { "kill", "cancel_restart", "stopped" },
    { "ready", "ignore", "waiting restart" },
    { "delay_over", "queue", "waiting restart" },
    { "dequeue", "launch_restart", "launching" },
    { "remove", "refuse", "waiting restart" },
  }),
  deleted = rows({
    { "start", "refuse", "deleted" },
    { "block", "refuse", "deleted" },
    { "restart", "refuse", "deleted" },
    { "relaunch", "refuse", "deleted" },
    { "stop", "already_stopped", "deleted" },
    { "kill", "nothing", "deleted" },
    { "ready", "ignore", "deleted" },
    { "dequeue", "ignore", "deleted" },
    { "remove", "nothing", "deleted" },
  }),
}
M.TABLE.launching.spawned = { action = "started", to = "launching" }
M.TABLE.launching.ready = { action = "go_online", to = "online" }
M.TABLE.launching.exec_failed = { action = "fail", to = "errored" }
M.TABLE.online.ready = { action = "ignore", to = "online" }

-- What each action does (orch.supervisor's actions; docs print this list).
M.ACTIONS = {
  { "launch", "spawn it (log files, sockets, IPC channel, exec)" },
  { "launch_restart", "spawn it as the restart the policy scheduled: restarts + 1 (PM2 counts it then)" },
  { "relaunch", "spawn it as a restart: restarts + 1, unstable exits forgotten; done(ok, err)" },
  { "start_over", "spawn it again, unstable exits forgotten, no restart counted (PM2's); done(ok, err)" },
  { "stop_then_relaunch", "stop it (as begin_stop), then fire relaunch" },
  { "join_then_relaunch", "wait for the stop under way, then fire relaunch" },
  { "keep_blocked", "nothing: it starts when its dependencies hold; done(true)" },
  { "hold", "keep the reason (which dependency it waits for)" },
  { "cancel_block", "no longer wait for the dependencies; done()" },
  { "started", "emit start; fire ready unless a readiness gate (wait_ready, wait_healthy) holds it" },
  { "go_online", "emit online" },
  { "fail", "emit errored with the exec error" },
  { "decide", "stop what the run left in its group; ask the restart policy, fire its answer" },
  { "schedule", "a timer for the delay (fires delay_over), or the launch queue at once" },
  { "finish", "keep the policy's reason, emit stopped or errored" },
  { "queue", "put it in the launch queue (spawned a bounded time per loop turn)" },
  { "begin_stop", "snapshot the tree, kill_signal (or shutdown message, cluster disconnect), kill timer" },
  { "begin_kill", "begin_stop, then SIGKILL at once" },
  { "join", "wait for the stop under way; done() with it" },
  { "sigkill", "SIGKILL to the tree and to what joined it since" },
  { "check_stopped", "stopped once the tree is gone: fire group_gone then" },
  { "cancel_restart", "drop the pending restart (timer, queue); done()" },
  { "release", "close the stop's timers and pidfds, emit stopped, run the stop's done()s" },
  { "drop", "take it out of the table, close log files no one else writes" },
  { "already_stopped", "nothing to stop: done()" },
  { "already_running", "someone else launched it first: done(true)" },
  { "refuse", "nil, \"NAME:I is STATE\" (and done(nil, that))" },
  { "ignore", "nothing: it came late (a readiness after the run, a stale queue entry)" },
  { "nothing", "nothing to do" },
}

-- Actions that change nothing and are not worth a line in the history.
local QUIET = { ignore = true, refuse = true, nothing = true, already_stopped = true, already_running = true }

M.HISTORY = 10 -- transitions kept per process (orch describe)

-- A few words on what came with an event, for the history.
local function detail(event, arg)
  if type(arg) == "string" then return arg end
  if type(arg) ~= "table" then return nil end
  if event == "exit" then
    if arg.error then return arg.error end
    if arg.signal then return "killed by " .. arg.signal end
    return "exit code " .. tostring(arg.code)
  end
  if arg.reason then return arg.reason end
  if arg.delay then return string.format("in %d ms", arg.delay) end
  return nil
end

-- The transition for (state, event), or an error naming both.
function M.lookup(state, event, who)
  local row = M.TABLE[state] and M.TABLE[state][event]
  if row then return row end
  error(string.format("orch.lifecycle: %s: event '%s' is not defined in state '%s'", who or "process",
    tostring(event), tostring(state)), 3)
end

-- A machine over core: core.actions[name](core, proc, ...) performs an
-- action; core.now() (optional) gives the wall time in ms for the history;
-- core:on_status(proc, from, to) (optional) hears of each status written,
-- before the action runs.
function M.new(core)
  local machine = {}
  local actions = core.actions
  local function clock()
    if core.now then return core:now() end
    return os.time() * 1000
  end

  -- Writes the next state, notes the transition, then runs the action with
  -- the event's arguments; returns what the action returns.
  function machine.fire(proc, event, ...)
    local from = proc.status
    local row = M.lookup(from, event, (proc.name or "?") .. ":" .. tostring(proc.instance))
    local act = actions[row.action]
    if not act then error("orch.lifecycle: no action '" .. row.action .. "' in the core", 2) end
    proc.status = row.to
    if core.on_status then core:on_status(proc, from, row.to) end
    if not QUIET[row.action] then
      local h = proc.transitions or {}
      proc.transitions = h
      h[#h + 1] = { event = event, from = from, to = row.to, at = clock(), detail = detail(event, (...)) }
      if #h > M.HISTORY then table.remove(h, 1) end
    end
    return act(core, proc, ...)
  end

  return machine
end

-- A new process's first state (the only status not written by fire(),
-- with restore's).
M.INITIAL = "stopped"

-- orch update: a process the new image takes over resumes in the state it
-- was in (one of the states at rest or running: orch.handover refuses an
-- update while a process is between two). Not a transition: none is noted.
M.RESUMABLE = { stopped = true, online = true, ["waiting restart"] = true, errored = true }
-- core: the machine's core, whose on_status hears of it as of any status.
function M.restore(proc, state, core)
  if not M.RESUMABLE[state] then error("orch.lifecycle: cannot resume in state '" .. tostring(state) .. "'", 2) end
  local from = proc.status
  proc.status = state
  if core and core.on_status then core:on_status(proc, from, state) end
end

-- The table as Markdown: one row per event, one column per state; a cell
-- holds "action → next state" (the action alone when the state stays), and
-- "error" where the pair is not defined.
function M.markdown()
  local out = {}
  local head, rule = { "event \\ state" }, { "---" }
  for _, s in ipairs(M.STATES) do
    head[#head + 1] = "**" .. s .. "**"
    rule[#rule + 1] = "---"
  end
  out[#out + 1] = "| " .. table.concat(head, " | ") .. " |"
  out[#out + 1] = "| " .. table.concat(rule, " | ") .. " |"
  for _, e in ipairs(M.EVENTS) do
    local cells = { "`" .. e[1] .. "`" }
    for _, s in ipairs(M.STATES) do
      local row = M.TABLE[s][e[1]]
      if not row then
        cells[#cells + 1] = "error"
      elseif row.to == s then
        cells[#cells + 1] = row.action
      else
        cells[#cells + 1] = row.action .. " → " .. row.to
      end
    end
    out[#out + 1] = "| " .. table.concat(cells, " | ") .. " |"
  end
  out[#out + 1] = ""
  out[#out + 1] = "Events (with their arguments):"
  out[#out + 1] = ""
  for _, e in ipairs(M.EVENTS) do
    out[#out + 1] = string.format("- `%s`%s: %s", e[1], e[2] ~= "" and ("(" .. e[2] .. ")") or "", e[3])
  end
  out[#out + 1] = ""
  out[#out + 1] = "Actions:"
  out[#out + 1] = ""
  for _, a in ipairs(M.ACTIONS) do out[#out + 1] = string.format("- %s: %s", a[1], a[2]) end
  return table.concat(out, "\n") .. "\n"
end

-- The table as docs/architecture.md holds it, between these markers.
M.DOC_BEGIN = "<!-- state table: generated by tools/statetable, do not edit -->"
M.DOC_END = "<!-- end of state table -->"

function M.doc_section()
  return M.DOC_BEGIN .. "\n\n" .. M.markdown() .. "\n" .. M.DOC_END
end

return M
