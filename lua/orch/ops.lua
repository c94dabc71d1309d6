-- orch.ops: one operation at a time per app. Every command that changes an
-- app (start, stop, restart, reload, scale, delete, a config applied, a
-- restart by a trigger or a user's handler) runs through here. Two of them
-- interleaving their steps on one app is how processes escaped the table: a
-- reload swapped out a process that a restart was launching again meanwhile.
--
-- An operation names the apps it changes (its keys) and runs once it is
-- first in the queue of each of them; operations are queued on all their
-- keys at once, so two queues never hold two operations in opposite orders
-- (no deadlock). An app's operations never wait for another app's, except
-- for one that names both. An operation not begun yet is joined by an equal
-- one (the same merge string on the same keys): it runs once and every
-- caller gets its result.
local M = {}
local Ops = {}
Ops.__index = Ops

-- opts.log(level, msg): where an operation that raised is reported;
-- opts.holds(proc): whether the process table still holds proc (see each).
function M.new(opts)
  opts = opts or {}
  return setmetatable({ queues = {}, log = opts.log or function() end, ready = {},
                        holds = opts.holds or function() return true end }, Ops)
end

local function unique(keys)
  local out, seen = {}, {}
  for _, k in ipairs(keys) do
    if not seen[k] then
      seen[k] = true
      out[#out + 1] = k
    end
  end
  table.sort(out)
  return out
end

local function same_keys(a, b)
  if #a ~= #b then return false end
  for i = 1, #a do
    if a[i] ~= b[i] then return false end
  end
  return true
end

-- Runs fn(finish) once the operation is first on every key; finish(...)
-- ends it (later calls do nothing) and passes its arguments to done and to
-- the done of every caller that joined it. merge: nil (never joined) or a
-- string saying what the operation does. Returns the operation (a table;
-- op.merged counts the callers that joined it).
function Ops:run(keys, merge, fn, done)
  keys = unique(keys)
  done = done or function() end
  if merge and keys[1] then
    for _, op in ipairs(self.queues[keys[1]] or {}) do
      if not op.running and op.merge == merge and same_keys(op.keys, keys) then
        op.waiters[#op.waiters + 1] = done
        op.merged = op.merged + 1
        return op
      end
    end
  end
  local op = { keys = keys, merge = merge, fn = fn, waiters = { done }, merged = 0 }
  for _, k in ipairs(keys) do
    local q = self.queues[k]
    if not q then
      q = {}
      self.queues[k] = q
    end
    q[#q + 1] = op
  end
  self:_offer(op)
  return op
end

-- fn(proc, done) for each of procs (records with a name: their app), as one
-- operation on their apps; a process the table no longer holds when it
-- runs (deleted, replaced meanwhile) is left out. done() once all are done.
function Ops:each(procs, merge, fn, done)
  local keys = {}
  for i, p in ipairs(procs) do keys[i] = p.name end
  return self:run(keys, merge, function(finish)
    local pending = 1
    local function one()
      pending = pending - 1
      if pending == 0 then finish() end
    end
    for _, p in ipairs(procs) do
      if self.holds(p) then
        pending = pending + 1
        fn(p, one)
      end
    end
    one()
  end, done)
end

-- Whether anything is queued or running on key.
function Ops:busy(key)
  return self.queues[key] ~= nil
end

function Ops:_first_everywhere(op)
  for _, k in ipairs(op.keys) do
    if self.queues[k][1] ~= op then return false end
  end
  return true
end

-- Starts op if it may run. Operations become ready inside others' finish
-- (often synchronously, inside fn): they are started from a loop here, not
-- by recursion, so a long queue of operations that finish at once does not
-- grow the stack.
function Ops:_offer(op)
  self.ready[#self.ready + 1] = op
  if self.starting then return end
  self.starting = true
  while #self.ready > 0 do
    local next_op = table.remove(self.ready, 1)
    if not next_op.running and not next_op.over and self:_first_everywhere(next_op) then
      self:_start(next_op)
    end
  end
  self.starting = false
end

function Ops:_start(op)
  op.running = true
  local function finish(...)
    if op.over then return end
    op.over = true
    local heads = {}
    for _, k in ipairs(op.keys) do
      local q = self.queues[k]
      table.remove(q, 1) -- op is first there: it ran
      if #q == 0 then self.queues[k] = nil else heads[#heads + 1] = q[1] end
    end
    -- a caller's failure must not keep the queue from going on
    for _, w in ipairs(op.waiters) do
      local good, werr = xpcall(w, debug.traceback, ...)
      if not good then self.log("error", "reply to an operation failed: " .. tostring(werr)) end
    end
    for _, h in ipairs(heads) do self:_offer(h) end
  end
  local ok, err = xpcall(op.fn, debug.traceback, finish)
  if not ok then
    self.log("error", string.format("operation '%s' on %s failed: %s", op.merge or "?",
      table.concat(op.keys, ", "), tostring(err)))
    finish(nil, "EINTERNAL", "internal error: " .. tostring(err):match("^[^\n]*"))
  end
end

return M
