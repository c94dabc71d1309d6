-- orch.sockets: the `listen` sockets of each app, which orch binds on first
-- use and holds while the app exists: a restart of its processes never
-- closes them (connections wait in the kernel's queue meanwhile). The
-- instances inherit them (socket activation) or, under round-robin,
-- orch.cluster accepts on them.
local core = require("orch.core")
local cjson = require("cjson").new()

local M = {}
local Sockets = {}
Sockets.__index = Sockets

-- What identifies an app's `listen` sockets, compared on every bind (a
-- changed `listen` rebinds): arrays, not the entries as they are, since a
-- JSON object's key order differs between two images of orch, and a key
-- handed over by `orch update` must equal the one computed after it.
function M.key(listen)
  local t = {}
  for i, l in ipairs(listen) do t[i] = { l.kind, l.host or "", l.port or 0, l.path or "", l.name or "" } end
  return cjson.encode(t)
end

-- A key handed over by `orch update`, in this version's form (before,
-- the entries were encoded as objects).
function M.handed_key(text)
  local ok, t = pcall(cjson.decode, text)
  if ok and type(t) == "table" and type(t[1]) == "table" and t[1].kind then return M.key(t) end
  return text
end

-- on_unbind(name): the app's sockets are closing (orch.cluster lets go).
function M.new(on_unbind)
  return setmetatable({ bound = {}, on_unbind = on_unbind or function() end }, Sockets)
end

-- What an instance inherits: { fds, names }, or nil (no sockets, or
-- round-robin), or nil, message when binding failed.
function Sockets:inherited(app)
  local held, err = self:bind(app)
  if app.balance == "round-robin" then return nil, err end
  return held, err
end

-- The app's sockets as { fd =, spec = } pairs (fd: an fd object, which
-- stays this module's), bound if need be.
function Sockets:held(app)
  local held = self:bind(app)
  if not held then return {} end
  local out = {}
  for i, fd in ipairs(held.fds) do out[i] = { fd = fd, spec = app.listen[i] } end
  return out
end

-- Binds what the app's `listen` asks for, once; a changed `listen` (a
-- reloaded ecosystem) closes the old sockets first. Returns
-- { key, fds, names } (fds: fd objects), nil (nothing to bind) or nil,
-- message.
function Sockets:bind(app)
  if #(app.listen or {}) == 0 then return nil end
  local key = M.key(app.listen)
  local held = self.bound[app.name]
  if held and held.key == key then return held end
  self:unbind(app.name)
  held = { key = key, fds = {}, names = {} }
  for _, l in ipairs(app.listen) do
    local fd, err
    if l.kind == "tcp" then fd, err = core.listen_tcp(l.host, l.port)
    else fd, err = core.listen_unix(l.path) end
    if not fd then
      for _, f in ipairs(held.fds) do f:close() end
      return nil, string.format("cannot listen on %s: %s", l.address, err)
    end
    held.fds[#held.fds + 1] = fd
    held.names[#held.names + 1] = l.name
  end
  self.bound[app.name] = held
  return held
end

function Sockets:unbind(name)
  self.on_unbind(name)
  local held = self.bound[name]
  if not held then return end
  for _, f in ipairs(held.fds) do f:close() end
  self.bound[name] = nil
end

return M
