-- orch.reload: zero-downtime replacement of running processes, one at a
-- time: the new one starts next to the old, and only once it serves (online
-- and, for a cluster worker, listening) does the old one stop; orch.cluster
-- routes no new connection to a stopping worker. A replacement that fails
-- leaves the old one running.
--
-- A reload runs as one operation of its app (orch.ops), so no other command
-- changes the app meanwhile; still, after each wait it checks that the old
-- process is the one in its slot, and gives the replacement up otherwise:
-- a process the table does not hold must never go on running.
local uv = require("luv")

local M = {}

-- done(results): { id, ok, pid | restarted | error } per process.
function M.run(engine, procs, done)
  local results, i = {}, 0
  engine.proc_watchers = engine.proc_watchers or setmetatable({}, { __mode = "k" })
  local function next_one()
    i = i + 1
    local old = procs[i]
    if not old then return done(results) end
    if engine.sup:get(old.id) ~= old then
      results[#results + 1] = { id = old.id, ok = false, error = "the process was removed during the reload" }
      return next_one()
    end
    if old.status ~= "online" then
      -- nothing serves on it: a plain restart is the reload
      return engine.sup:restart(old, function()
        results[#results + 1] = { id = old.id, ok = true, restarted = true }
        next_one()
      end, { cause = "reload" })
    end
    local new = engine.sup:add(old.app, old.base_env, old.instance)[1]
    new.restarts = old.restarts + 1
    -- the event stream: old is restarted by a reload, in steps
    engine:record("restart", old, { cause = "reload", delay = 0, restarts = new.restarts })
    engine:record("reload", old, { step = "begin", new_id = new.id })
    local switched, timer = false, nil
    -- The replacement goes: it failed, or its slot is no longer old's.
    local function give_up(why)
      engine.sup:stop(new, function()
        engine.sup:remove(new)
        engine:record("reload", old, { step = "failed", new_id = new.id, reason = why })
        results[#results + 1] = { id = old.id, ok = false, error = why }
        next_one()
      end)
    end
    local function in_slot()
      return engine.sup:get(old.id) == old
    end
    -- The old one stops once the new one serves: it is online and, for a
    -- cluster worker, listening (or listen_timeout passed).
    local function switch()
      if switched then return end
      switched = true
      -- the listen_timeout timer would hold both processes until it fired
      if timer and not timer:is_closing() then timer:close() end
      engine.proc_watchers[new] = nil
      if not in_slot() then return give_up("the process was removed during the reload") end
      engine:record("reload", old, { step = "switch", new_id = new.id, new_pid = new.pid })
      engine.sup:stop(old, function()
        -- refused when old left the table or runs again
        local swapped, err = engine.sup:replace(old, new)
        if not swapped then return give_up("the process was changed during the reload: " .. err) end
        new.restart_log = old.restart_log -- describe's last restarts go on
        engine:record("reload", new, { step = "done", old_id = old.id })
        results[#results + 1] = { id = new.id, ok = true, pid = new.pid }
        next_one()
      end)
    end
    local function wait_listening()
      timer = uv.new_timer()
      timer:start(new.app.listen_timeout, 0, function()
        timer:close()
        if new.status == "online" then switch() end
      end)
    end
    engine.proc_watchers[new] = function(event)
      if event == "online" then
        if new.app.exec_mode ~= "cluster" or new.app.wait_ready or new.listening then
          switch()
          return true
        end
        wait_listening()
      elseif event == "listening" then
        if new.status == "online" then
          switch()
          return true
        end
      elseif event == "errored" or event == "stopped" or event == "waiting" then
        if timer and not timer:is_closing() then timer:close() end
        give_up("replacement failed: " .. (new.reason or event))
        return true
      end
    end
    engine.sup:start(new)
  end
  next_one()
end

return M
