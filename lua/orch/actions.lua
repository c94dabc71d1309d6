-- orch.actions: PM2's custom actions (`pm2 trigger APP ACTION [PARAM]`), over
-- the IPC channel every process has, in the messages @pm2/io exchanges with
-- PM2, so an app written for PM2 answers orch unchanged:
--   the app registers an action: {type = "axm:action", data = {action_name = NAME}}
--   orch triggers it:            "NAME", or {msg = NAME, opts = PARAM} with a parameter
--   the app answers:             {type = "axm:reply", data = {action_name = NAME, return = VALUE}}
-- Registrations last for the run that made them (a restart forgets them,
-- as PM2 does). Any program can play the app's part: docs/cli.md, `trigger`.
local uv = require("luv")

local M = {}
local Actions = {}
Actions.__index = Actions

M.TIMEOUT_MS = 10000 -- the longest a trigger waits for the replies by default

-- opts.send(p, msg) → true or nil, why.
function M.new(opts)
  return setmetatable({ opts = opts, by_proc = setmetatable({}, { __mode = "k" }), waiters = {} }, Actions)
end

-- The actions p registered in its current run, sorted, or nil.
function Actions:names(p)
  local set = self.by_proc[p]
  if not set then return nil end
  local out = {}
  for name in pairs(set) do out[#out + 1] = name end
  table.sort(out)
  return out
end

-- A new run of p: what the previous one registered is gone.
function Actions:forget(p)
  self.by_proc[p] = nil
end

function Actions:on_message(p, msg)
  if type(msg) ~= "table" or type(msg.data) ~= "table" then return end
  local name = msg.data.action_name
  if msg.type == "axm:action" and type(name) == "string" then
    self.by_proc[p] = self.by_proc[p] or {}
    self.by_proc[p][name] = true
  elseif msg.type == "axm:reply" then
    for _, w in ipairs(self.waiters) do
      if w.pending[p] and (name == nil or name == w.action) then
        w.pending[p] = nil
        w.reply(p, msg.data["return"])
      end
    end
  end
end

-- Sends action (with param, when not nil) to each of procs that registered
-- it, and waits up to timeout_ms for their replies. done(result) with
-- result = {action, replies = [{id, name, instance, value}], missing = [ids]},
-- or done(nil, code, message) when no process has the action.
function Actions:trigger(procs, action, param, timeout_ms, done)
  local sent, pending, order = {}, {}, {}
  for _, p in ipairs(procs) do
    local set = self.by_proc[p]
    if set and set[action] then
      local msg = param == nil and action or { msg = action, opts = param }
      if self.opts.send(p, msg) then
        sent[#sent + 1] = p
        pending[p] = true
        order[#order + 1] = p
      end
    end
  end
  if #sent == 0 then
    local known = {}
    for _, p in ipairs(procs) do
      for name in pairs(self.by_proc[p] or {}) do known[name] = true end
    end
    local names = {}
    for name in pairs(known) do names[#names + 1] = name end
    table.sort(names)
    return done(nil, "ENOACTION", string.format(
      "no running process of the target has registered action '%s' (%s; an app registers one with "
      .. "@pm2/io's io.action(), or by sending {\"type\":\"axm:action\",\"data\":{\"action_name\":\"%s\"}} "
      .. "over its IPC channel)",
      action, #names > 0 and ("registered: " .. table.concat(names, ", ")) or "none registered any action", action))
  end
  local replies, w, timer = {}, nil, uv.new_timer()
  local function finish()
    for i, x in ipairs(self.waiters) do
      if x == w then table.remove(self.waiters, i) break end
    end
    if not timer:is_closing() then timer:close() end
    local missing = {}
    for _, p in ipairs(order) do
      if w.pending[p] then missing[#missing + 1] = p.id end
    end
    done({ action = action, replies = replies, missing = missing })
  end
  w = { action = action, pending = pending, finish = finish }
  function w.reply(p, value)
    replies[#replies + 1] = { id = p.id, name = p.name, instance = p.instance, value = value }
    if next(pending) == nil then finish() end
  end
  self.waiters[#self.waiters + 1] = w
  timer:start(timeout_ms or M.TIMEOUT_MS, 0, finish)
end

-- Ends every wait (the daemon is going): each trigger answers with what it has.
function Actions:close()
  for _, w in ipairs({ unpack(self.waiters) }) do w.finish() end
end

return M
