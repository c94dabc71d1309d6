-- orch.recovery: after a crash of the previous orch, what it left running
-- is stopped before this one serves requests (which wait meanwhile). Methods
-- of the engine (orch.engine mixes them in).
local core = require("orch.core")
local uv = require("luv")
local state = require("orch.state")
local launch = require("orch.launch")

local M = {}
local E = {} -- engine methods
M.methods = E

-- Stops one recorded process and what is left of its tree: kill_signal to
-- all of it now, SIGKILL to all of it (scanned again) after kill_timeout.
-- finished() once every member has exited and the group has no new one.
local function stop_leftover(g, finished)
  local pgid = g.rec.pid
  local signum = core.signum(g.rec.kill_signal or "SIGINT") or core.signum("SIGINT")
  local live, n, killed, over = {}, 0, false, false
  local timer = uv.new_timer()
  local function finish()
    if over then return end
    over = true
    timer:close()
    for _, h in pairs(live) do h:close() end
    finished()
  end
  g.abandon = function()
    over = true
    if not timer:is_closing() then timer:close() end
    for _, h in pairs(live) do h:close() end
  end
  local take
  -- Every watched process is gone: the group may still hold one that joined
  -- after the last scan.
  local function check()
    if over or n > 0 then return end
    local more = core.pidfd_snapshot(0, pgid, "system")
    if #more == 0 then return finish() end
    take(more, killed and core.signum("SIGKILL") or signum)
  end
  take = function(list, sig)
    for _, h in ipairs(list) do
      if live[h:pid()] then
        h:close() -- held already
      else
        live[h:pid()] = h
        n = n + 1
        h:signal(sig)
        h:on_exit(function()
          live[h:pid()] = nil
          n = n - 1
          h:close()
          check()
        end)
      end
    end
  end
  local first = core.pidfd_snapshot(pgid, pgid, "system")
  table.insert(first, 1, g.root)
  take(first, signum)
  timer:start(g.rec.kill_timeout or 1600, 0, function()
    killed = true
    local sigkill = core.signum("SIGKILL")
    for _, h in pairs(live) do h:signal(sigkill) end
    take(core.pidfd_snapshot(live[pgid] and pgid or 0, pgid, "system"), sigkill)
  end)
end

-- After a crash of the previous orch (SIGKILL, OOM): its processes run on,
-- unsupervised, with their output pipes broken. They are stopped (kill_signal,
-- SIGKILL after their kill_timeout) and, once gone, done() runs with the
-- previous state so the caller can start those apps again. They are not our
-- children: each is held by a pidfd (its start time checked once held), and
-- so are the members of its group and its descendants, so no signal can
-- reach a recycled pid and each exit is an event. Requests other than ping
-- wait meanwhile (see orch.control).
--
-- Which processes: every one whose environment carries this home's marker
-- (ORCH_MARK=<id>@<home>, orch.launch), found by a scan of /proc, plus the
-- ones the state file records (a process whose environment cannot be read).
-- The marker, not the state file, is what makes this complete: the state
-- file is written after the spawns of a loop turn, so a SIGKILL between a
-- spawn and that write would leave a process it does not name. Every
-- process orch spawns gets the marker in the execve that starts its
-- program, and until that execve it shares the open pid-file lock (the lock
-- fd is close-on-exec, a vfork child holds it until exec). We hold that
-- lock now, so every process a previous orch of this home created has
-- exec'd with its marker, and /proc/PID/environ shows it. They are stopped,
-- not adopted: the pipes their output went to and their IPC channel died
-- with the old daemon, and they are not our children; starting the saved
-- apps again gives the same result whatever instant the crash hit.
M.GIVE_UP_MS = 60000

function E:recover(done)
  local prev = state.read_json(self.paths.state)
  if type(prev) ~= "table" or prev.pid == core.getpid() then prev = nil end
  self.recovering = true
  -- only this home's markers come back (no pidfd, no table for other homes')
  local queued, err = core.marker_scan(launch.MARK_VAR .. "=", function(hits, serr)
    if not hits then self.log("error", "cannot look for processes a previous orch left: " .. tostring(serr)) end
    self:_stop_leftovers(self:_leftovers(prev, hits or {}), prev, done)
  end, launch.mark(self.paths.home, ""))
  if not queued then
    self.log("error", "cannot look for processes a previous orch left: " .. tostring(err))
    self:_stop_leftovers(self:_leftovers(prev, {}), prev, done)
  end
end

-- The leftovers to stop: the marked processes of this home (each with the
-- kill settings its record in the state file gives, if any), then recorded
-- ones the scan did not find.
function E:_leftovers(prev, hits)
  local recs, groups, taken = {}, {}, {}
  for _, p in ipairs(prev and prev.procs or {}) do
    if type(p) == "table" and p.id ~= nil then recs[p.id] = p end
  end
  for _, h in ipairs(hits) do
    local id, home = launch.parse_mark(h.value)
    if home == self.paths.home and not taken[h.pid] then
      taken[h.pid] = true
      local rec = recs[id] or {}
      groups[#groups + 1] = { root = h.pidfd, name = rec.name or ("process " .. id),
        rec = { pid = h.pid, kill_signal = rec.kill_signal, kill_timeout = rec.kill_timeout } }
    else
      h.pidfd:close()
    end
  end
  for _, p in ipairs(prev and prev.procs or {}) do
    local root = type(p) == "table" and type(p.pid) == "number" and p.pid > 1 and not taken[p.pid]
      and type(p.starttime) == "number" and core.pidfd(p.pid, p.starttime)
    if root then
      taken[p.pid] = true
      groups[#groups + 1] = { rec = p, root = root, name = tostring(p.name) }
    end
  end
  return groups
end

function E:_stop_leftovers(groups, prev, done)
  for _, g in ipairs(groups) do
    self.log("info", string.format("stopping %s (pid %d), left running by a previous orch%s", g.name, g.rec.pid,
      prev and prev.pid and (" (pid " .. tostring(prev.pid) .. ")") or ""))
  end
  if #groups == 0 then return self:_recovered(done, prev) end
  local pending, give_up = #groups, uv.new_timer()
  local function finished()
    pending = pending - 1
    if pending > 0 then return end
    give_up:close()
    self:_recovered(done, prev)
  end
  give_up:start(M.GIVE_UP_MS, 0, function()
    self.log("error", pending .. " leftover process group(s) would not die; going on")
    pending = 1
    finished()
    for _, g in ipairs(groups) do g.abandon() end
  end)
  for _, g in ipairs(groups) do stop_leftover(g, finished) end
end

-- Recovery is over: requests held meanwhile are served in their order.
function E:_recovered(done, prev)
  self.recovering = false
  self.tree:sweep() -- what the crashed orch's cgroups still hold (orch.tree)
  done(prev)
  local held = self.held or {}
  self.held, self.held_conns = nil, nil
  for _, r in ipairs(held) do
    if not r[1]:closed() then r[2]() end
  end
end


return M
