-- orch.recovery: after a crash of the previous orch, what it left running
-- is stopped before this one serves requests (which wait meanwhile). Methods
-- of the engine (orch.engine mixes them in).
local core = require("orch.core")
local uv = require("luv")
local state = require("orch.state")

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
M.GIVE_UP_MS = 60000

function E:recover(done)
  local prev = state.read_json(self.paths.state)
  if type(prev) ~= "table" or prev.pid == core.getpid() then return self:_recovered(done, nil) end
  local groups = {}
  for _, p in ipairs(prev.procs or {}) do
    local root = type(p.pid) == "number" and p.pid > 1 and type(p.starttime) == "number"
      and core.pidfd(p.pid, p.starttime)
    if root then
      groups[#groups + 1] = { rec = p, root = root }
      self.log("info", string.format("stopping %s (pid %d), left running by a previous orch (pid %s)",
        tostring(p.name), p.pid, tostring(prev.pid)))
    end
  end
  if #groups == 0 then return self:_recovered(done, prev) end
  self.recovering = true
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
  self.held = nil
  for _, r in ipairs(held) do
    if not r[1]:closed() then r[2]() end
  end
end


return M
