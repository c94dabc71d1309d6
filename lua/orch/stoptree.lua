-- orch.stoptree: stopping a process and its whole tree (docs/architecture.md,
-- "Stopping a tree"): a snapshot of the tree as pidfds, kill_signal to the
-- group and through the pidfds, SIGKILL after kill_timeout, and the test of
-- "stopped" (main process gone, every pidfd of the snapshot exited, the
-- group empty). Methods of the supervisor (orch.supervisor mixes them in);
-- the status is orch.lifecycle's: this module fires group_gone.
local core = require("orch.core")
local uv = require("luv")
local timers = require("orch.timers")
local close_timer, after = timers.close, timers.after

local M = {}
local S = {} -- supervisor methods
M.methods = S

-- How often a stopping process whose group still has a member that orch
-- cannot see (not below it) is checked again. Everything else is an event:
-- the exits of the snapshot's pidfds, SIGCHLD.
local LEFTOVER_CHECK_MS = 250

-- Signals through pidfds (a snapshot's handles cannot reach a recycled pid).
local function signal_handles(handles, signal)
  local signum = core.signum(signal)
  for _, h in pairs(handles) do
    if not h:exited() then h:signal(signum) end
  end
end

local function close_handles(handles)
  for _, h in pairs(handles or {}) do h:close() end
end

-- The app died by itself: what it left in its group (held by pidfds) gets
-- kill_signal, and SIGKILL after kill_timeout, so restarts do not pile up
-- orphans (or ports held by them). So does what daemonised (scope: orch.tree),
-- found now, before a restart whose run carries the same marker.
function S:_kill_leftovers(pgid, app, scope)
  local tree = self.opts.tree
  if not (pgid and core.pgroup_alive(pgid)) and not scope then return end
  local left = core.pidfd_snapshot(0, pgid or 0, nil, scope)
  if #left == 0 and not (tree and tree:populated(scope)) then return end
  signal_handles(left, app.kill_signal)
  local t
  t = after(app.kill_timeout, function()
    close_timer(t)
    signal_handles(left, "SIGKILL")
    close_handles(left)
    if tree then tree:kill(scope) end
    local late = core.pidfd_snapshot(0, pgid or 0) -- joined meanwhile
    signal_handles(late, "SIGKILL")
    close_handles(late)
  end)
  t:unref() -- leftovers alone do not keep orch running
end

-- Takes pidfds for what is now in proc's tree: descendants of its main
-- process while it runs (also those that left its group with setsid),
-- members of its group (among orch's children: where orphans land), and
-- what daemonised (proc.scope, orch.tree: its marker, its cgroup). They go
-- into proc.snapshot (pid -> handle), each watched for its exit; returns
-- those new to it.
function S:_snapshot(proc)
  proc.snapshot = proc.snapshot or {}
  local new = {}
  for _, h in ipairs(core.pidfd_snapshot(proc.handle and proc.pid or 0, proc.pid, nil, proc.scope)) do
    local old = proc.snapshot[h:pid()]
    if old and not old:exited() then
      h:close()
    else
      if old then old:close() end
      proc.snapshot[h:pid()] = h
      new[#new + 1] = h
      h:on_exit(function() self:_check_stopped(proc) end)
    end
  end
  return new
end

-- signal to proc's tree: by group while its main process is ours and not
-- yet reaped (the group cannot be another's then), and through the pidfds
-- of handles to the rest. A process orch may not signal (EPERM: another
-- user's, such as a setuid program) is noted in proc.unreachable.
local function signal_tree(proc, signal, handles)
  if proc.app.treekill == false and signal ~= "SIGKILL" then
    -- PM2's treekill = false: the main process alone is asked to stop
    if proc.handle then core.kill(proc.pid, signal) end
    return
  end
  local grouped = proc.handle ~= nil
  if grouped then core.kill(-proc.pid, signal) end
  local signum = core.signum(signal)
  for _, h in pairs(handles) do
    -- Group members already got it from the group kill; a second SIGINT
    -- means "force quit" to many programs.
    if not h:exited() and (signal == "SIGKILL" or not grouped or h:pgid() ~= proc.pid) then
      local ok, _, code = h:signal(signum)
      if not ok and code == "EPERM" then
        proc.unreachable = proc.unreachable or {}
        proc.unreachable[h:pid()] = true
      end
    end
  end
end

-- Signals a process that is stopping already.
function S:_begin_stop(proc, done)
  proc.stop_waiters = { done }
  proc.killed = nil
  self:_snapshot(proc)
  self.emit("stopping", proc)
  local app = proc.app
  -- shutdown_with_message: 'shutdown' over the channel instead of the signal
  -- (PM2's option); SIGKILL after kill_timeout either way.
  local sent = app.shutdown_with_message and proc.handle and self:send(proc, "shutdown")
  -- A cluster worker is told to disconnect first: it stops listening and
  -- lets its connections finish; the signal follows once it has let go of
  -- the channel.
  if not sent and proc.handle and self.opts.graceful then
    local handle = proc.handle
    sent = self.opts.graceful(proc, function()
      if proc.status == "stopping" and proc.handle == handle then
        self:_snapshot(proc)
        signal_tree(proc, app.kill_signal, proc.snapshot)
      end
    end)
  end
  if not sent then signal_tree(proc, app.kill_signal, proc.snapshot) end
  proc.timer = after(app.kill_timeout, function()
    close_timer(proc.timer)
    proc.timer = nil
    self:kill(proc)
  end)  -- the main process may be gone already (its exit is being handled)
  if not proc.handle then self:_check_stopped(proc) end
end

-- SIGKILL to proc's tree now: to the snapshot and to what joined it since.
function S:_sigkill(proc, why)
  proc.killed = true
  self:_snapshot(proc)
  self.log("info", string.format("%s: %s, sending SIGKILL", self:label(proc),
    why or string.format("still running after kill_timeout %d ms", proc.app.kill_timeout)))
  signal_tree(proc, "SIGKILL", proc.snapshot)
  if self.opts.tree then self.opts.tree:kill(proc.scope) end -- and cgroup.kill: no race with forks
  self:_check_stopped(proc) -- what is left may be out of reach: see there
end

-- Stopped once the main process has exited and every process of the
-- snapshot too (their pidfds call back here, as SIGCHLD does), the group
-- and the cgroup (orch.tree) hold nothing new, and a last look finds no
-- descendant that daemonised since the last snapshot (its marker shows it). Members out of reach (EPERM: another user's, say
-- a setuid program) may still go by themselves until kill_timeout; after
-- the SIGKILL nothing orch does can end them, so they do not hold the stop
-- for ever.
function S:_check_stopped(proc)
  if proc.status ~= "stopping" or proc.handle then
    self.tree_waits[proc] = nil
    return
  end
  -- waiting for its tree: an orphan reaped may be the last of it
  self.tree_waits[proc] = true
  local stuck = false
  for pid, h in pairs(proc.snapshot or {}) do
    if not h:exited() then
      if not (proc.killed and proc.unreachable and proc.unreachable[pid]) then return end
      stuck = true
    end
  end
  local alive, why = false, nil
  if proc.pid then alive, why = core.pgroup_alive(proc.pid) end
  -- With a cgroup (orch.tree) the whole tree is in it: empty, there is
  -- nothing to look for. The last look, a scan of orch's children in /proc,
  -- is for the marker, which no one keeps from daemonising out of sight.
  local cgroup = self.opts.tree and proc.scope and proc.scope.cgroup
  alive = alive or (cgroup and self.opts.tree:populated(proc.scope))
  if alive or not (proc.looked or cgroup) then
    proc.looked = true
    local new = self:_snapshot(proc)
    if #new > 0 then
      signal_tree(proc, proc.killed and "SIGKILL" or proc.app.kill_signal, new)
      return
    end
  end
  local out_of_reach = why == "EPERM"
  if alive or (out_of_reach and not proc.killed) then
    -- a member out of sight (not below orch), or out of reach before the
    -- SIGKILL: looked for again a little later
    if not proc.recheck then
      proc.recheck = uv.new_timer()
      proc.recheck:start(LEFTOVER_CHECK_MS, LEFTOVER_CHECK_MS, function() self:_check_stopped(proc) end)
    end
    return
  end
  if out_of_reach or stuck then
    self.log("warn", string.format("%s: process group %d still has processes that may not be signalled "
      .. "(EPERM: another user's, a setuid program?); counted as stopped", self:label(proc), proc.pid))
  end
  self:fire(proc, "group_gone")
end

-- The stop is over: its timers and pidfds go.
function S:_forget_tree(proc)
  self.tree_waits[proc] = nil
  close_timer(proc.timer)
  close_timer(proc.recheck)
  close_handles(proc.snapshot)
  proc.timer, proc.recheck, proc.snapshot, proc.killed, proc.unreachable = nil, nil, nil, nil, nil
  proc.looked = nil
end

-- Orphans were reaped: a process group may be empty now. Only the processes
-- waiting for their tree are looked at (a walk of every process per SIGCHLD
-- made a stop of N processes cost O(N^2)).
function S:_on_sigchld()
  local waits = {}
  for proc in pairs(self.tree_waits) do waits[#waits + 1] = proc end
  for _, proc in ipairs(waits) do self:_check_stopped(proc) end
end

return M
