-- orch.cluster: orch as the primary of Node's cluster module, for any
-- worker that speaks its protocol over the IPC channel (unmodified Node
-- cluster workers, orch.worker for Lua). A worker's listen() sends
-- queryServer; orch binds the socket once per app and key (or uses the
-- app's `listen` socket on that port) and holds it while the app exists,
-- so restarts never close it. Then, by the app's `balance`:
--   round-robin: orch accepts and hands each connection to the next worker
--                (newconn with the descriptor attached): core/balancer.c
--                does it all in C; this module says which workers take
--                connections (a worker listening, draining, gone);
--   shared:      every worker gets the listening socket itself.
-- Wire format: docs/protocol.md; Node's side: lib/internal/cluster/.
local uv = require("luv")
local core = require("orch.core")
local util = require("orch.util")
local cjson = require("cjson").new()
local null = cjson.null

local M = {}

local Cluster = {}
Cluster.__index = Cluster

-- libuv's (negative) error numbers, which Node turns back into names.
local ERRNO = {
  EACCES = -13, EADDRINUSE = -98, EADDRNOTAVAIL = -99, EINVAL = -22, ENOENT = -2,
  ENAMETOOLONG = -36, ENOTSUP = -95, EMFILE = -24,
}

-- Sockets orch binds or keeps for one app's workers (servers a worker may
-- ask for), unless the app says otherwise (cluster_max_sockets): more are
-- refused with EMFILE, so a runaway or hostile worker cannot make the
-- daemon bind without limit.
M.MAX_SOCKETS = 16

-- opts:
--   log(level, text)
--   label(proc) -> "name:instance"
--   listen_fds(app) -> list of { fd =, spec = one entry of app.listen }
--     (the sockets, fd objects, the engine holds for the app's `listen`)
--   emit(event, proc): "listening" when a worker is serving
function M.new(opts)
  return setmetatable({
    log = opts.log, label = opts.label, listen_fds = opts.listen_fds,
    emit = opts.emit or function() end,
    apps = {},    -- app name -> key -> entry
    workers = {}, -- channel -> worker state
    old = setmetatable({}, { __mode = "k" }), -- channels of workers started before their app changed (renew)
    seq = 0,
  }, Cluster)
end

function Cluster:_next_seq()
  self.seq = self.seq + 1
  return self.seq
end

function Cluster:_reply(w, query, fields)
  fields.cmd = "NODE_CLUSTER"
  fields.ack = query.seq
  fields.seq = self:_next_seq()
  return w.ch.send(fields)
end

local function worker_state(self, proc, ch)
  local w = self.workers[ch]
  if not w then
    w = { proc = proc, ch = ch, app = proc.app.name, entries = {},
          fresh = not self.old[ch] }
    self.workers[ch] = w
  end
  return w
end

-- The app's `listen` socket a query is for, or nil: same kind, same port
-- (or path), and the same host unless the worker asked for any address.
local function configured(self, app, q)
  for _, held in ipairs(self.listen_fds(app) or {}) do
    local l = held.spec
    if q.addressType == -1 then
      if l.kind == "unix" and l.path == q.address then return held.fd end
    elseif l.kind == "tcp" and l.port == q.port and (q.address == nil or q.address == l.host) then
      return held.fd
    end
  end
end

-- Where a worker's Unix socket goes: a path relative to the app's cwd (as
-- Node's worker resolves it itself; never the daemon's cwd, /), not a
-- directory, no NUL (no abstract sockets). nil, code when not acceptable.
local function pipe_path(app, address)
  if type(address) ~= "string" or address == "" or address:find("\0", 1, true) then return nil, "EINVAL" end
  local path = util.abspath(address, app.cwd or "/nonexistent")
  if path == "/" or address:sub(-1) == "/" then return nil, "EINVAL" end
  if #path > 107 then return nil, "ENAMETOOLONG" end
  return path
end

-- The socket for a query: the app's own, or one bound now (Node binds an
-- unspecified address as "::", falling back to "0.0.0.0"). Returns the fd
-- object, owned (bound here: the entry's to close), or nil, code.
local function bind(self, app, q)
  local fd = configured(self, app, q)
  if fd then return fd, false end
  local f, name, _
  if q.addressType == -1 then
    local path, perr = pipe_path(app, q.address)
    if not path then return nil, perr end
    -- an existing file is EADDRINUSE, as for Node: a worker never makes
    -- orch remove a socket that someone else serves
    f, _, name = core.listen_unix(path, 511, true)
    return f, f and true or name
  end
  if q.addressType ~= 4 and q.addressType ~= 6 then return nil, "ENOTSUP" end
  local port = tonumber(q.port) or 0
  local host = q.address
  if port ~= math.floor(port) or port < 0 or port > 65535 then return nil, "EINVAL" end
  if host ~= nil and type(host) ~= "string" then return nil, "EINVAL" end
  if host then
    f, _, name = core.listen_tcp(host, port)
  else
    f, _, name = core.listen_tcp("::", port)
    if not f then f, _, name = core.listen_tcp("0.0.0.0", port) end
  end
  return f, f and true or name
end

local function sockname(handle, unix)
  if unix then return nil end
  local sn = handle:getsockname()
  if not sn then return nil end
  return { address = sn.ip, port = sn.port, family = sn.family == "inet6" and "IPv6" or "IPv4" }
end

-- Gives entry e (its socket e.fd) a handle of its own on a duplicate, for
-- sockname and (round-robin) accepting; closing it leaves the app's socket
-- open. Without one (e.handle nil, e.why) the socket is closed if owned,
-- unless e.keep_fd (orch update's takeover: the old image may need it back).
-- Also for orch update (orch.clusterstate), whose sockets come in bare.
function M.open_entry(e)
  local dup, derr = core.dup(e.fd)
  if dup then
    e.handle = e.unix and uv.new_pipe(false) or uv.new_tcp()
    util.open_handle(e.handle, dup)
    e.sockname = sockname(e.handle, e.unix)
    if e.rr then
      local bal, berr = core.balancer(e.fd, e.key_json)
      if bal then e.bal = bal return e end
      e.handle:close()
      e.handle, derr = nil, berr
    else
      return e
    end
  end
  if e.owned and not e.keep_fd then e.fd:close() end
  e.why = tostring(derr)
  return e
end

function Cluster:_entry(app, q)
  local key = string.format("%s:%s:%s:%s:%s", tostring(q.address), tostring(q.port),
    tostring(q.addressType), tostring(q.fd), tostring(q.index))
  local by_key = self.apps[app.name]
  if not by_key then
    by_key = {}
    self.apps[app.name] = by_key
  end
  local e = by_key[key]
  if e then
    e.stale = nil -- asked for again after a change: kept
    return e
  end
  local held = 0
  for _ in pairs(by_key) do held = held + 1 end
  local cap = app.cluster_max_sockets or M.MAX_SOCKETS
  if held >= cap then return nil, "EMFILE", "the app holds " .. cap .. " sockets already (cluster_max_sockets)" end
  local fd, owned_or_err = bind(self, app, q)
  if not fd then return nil, owned_or_err end
  local unix = q.addressType == -1
  e = M.open_entry({
    key = key, key_json = cjson.encode(key), app = app.name, fd = fd, owned = owned_or_err, unix = unix,
    rr = app.balance == "round-robin", data = q.data,
    workers = {},
  })
  if not e.handle then return nil, "EMFILE", e.why end
  by_key[key] = e
  return e
end

function Cluster:_add_worker(e, w)
  for _, x in ipairs(e.workers) do
    if x == w then return end
  end
  e.workers[#e.workers + 1] = w
  w.entries[e] = true
  -- accepting starts with the first worker, and stops while none has room
  if e.bal then e.bal:add(w.ch.c) end
end

function Cluster:_remove_worker(e, w)
  for i, x in ipairs(e.workers) do
    if x == w then
      table.remove(e.workers, i)
      if e.bal then e.bal:remove(w.ch.c) end
      break
    end
  end
  w.entries[e] = nil
  if #e.workers == 0 and e.stale then self:_sweep(e.app) end
end

function Cluster:_query(w, q)
  local app = w.proc.app
  local e, err, why = self:_entry(app, q)
  if not e then
    self.log("warn", string.format("%s: cannot listen on %s:%s for the cluster: %s%s", self.label(w.proc),
      tostring(q.address or "*"), tostring(q.port or q.address), tostring(err), why and (" (" .. why .. ")") or ""))
    return self:_reply(w, q, { errno = ERRNO[err] or ERRNO.EINVAL, key = nil, data = q.data })
  end
  if e.rr then
    self:_reply(w, q, { errno = 0, key = e.key, data = e.data, sockname = e.sockname })
    return self:_add_worker(e, w)
  end
  -- shared: the listening socket itself (the channel sends a duplicate)
  w.entries[e] = true
  local ok, err2 = w.ch.send_handle({ cmd = "NODE_CLUSTER", errno = 0, key = e.key, ack = q.seq, data = e.data,
    seq = self:_next_seq() }, e.fd)
  if not ok then self.log("warn", self.label(w.proc) .. ": cannot pass the cluster socket: " .. tostring(err2)) end
end

-- A NODE_CLUSTER message from a worker (its channel ch).
function Cluster:message(proc, ch, msg)
  if msg.cmd ~= "NODE_CLUSTER" then return end
  local w = worker_state(self, proc, ch)
  if msg.ack ~= nil then
    -- a newconn's answer in other spelling than Node's (which C reads itself)
    if type(msg.ack) == "number" and not w.ch.closed then w.ch.c:cluster_ack(msg.ack, msg.accepted == true) end
    return
  end
  local act = msg.act
  if act == "queryServer" then
    -- JSON null (Node's undefined address: any) reads as nil here
    if msg.address == null then msg.address = nil end
    if msg.port == null then msg.port = nil end
    self:_query(w, msg)
  elseif act == "listening" then
    w.listening = true
    self.emit("listening", proc)
    self:_sweep(w.app)
  elseif act == "close" then
    for e in pairs(w.entries) do
      if e.key == msg.key then self:_remove_worker(e, w) end
    end
  elseif act == "exitedAfterDisconnect" then
    self:drain(proc, ch)
    self:_reply(w, msg, {})
  elseif act == "online" then
    w.online = true
  end
end

-- Routes no new connection to the worker (it is being stopped); the ones
-- it was given are still its own to answer.
function Cluster:drain(proc, ch)
  local w = self.workers[ch or proc.channel or false]
  if not w then return end
  for e in pairs(w.entries) do self:_remove_worker(e, w) end
end

-- A graceful stop for a worker that took part in the cluster: Node's
-- {act = "disconnect"} closes its servers, lets their connections finish
-- and closes the channel; then() runs at that point (the supervisor sends
-- the stop signal then). Returns false for any other process.
function Cluster:disconnect(proc, after)
  local w = proc.channel and self.workers[proc.channel]
  if not (w and (w.online or w.listening) and not w.ch.closed) then return false end
  self:drain(proc, w.ch)
  w.after_close = after
  return w.ch.send({ cmd = "NODE_CLUSTER", act = "disconnect", seq = self:_next_seq() }) or false
end

-- The worker's channel closed (it exited or disconnected): what it had not
-- answered has gone to the others already (core/chan.c).
function Cluster:closed(ch)
  local w = self.workers[ch]
  if not w then return end
  self.workers[ch] = nil
  self:drain(w.proc, ch)
  if w.after_close then w.after_close() end
end

local function close_entry(e)
  if not e.handle:is_closing() then e.handle:close() end
  if e.bal then e.bal:close() end
  if e.owned then e.fd:close() end
end

-- The app is gone: its sockets (those bound here) close, and connections
-- held for it are dropped.
function Cluster:forget(name)
  local by_key = self.apps[name]
  if not by_key then return end
  self.apps[name] = nil
  for _, e in pairs(by_key) do close_entry(e) end
end

-- The app changed (new options or environment: its workers may listen
-- elsewhere now). Its sockets are kept for the workers that ask for them
-- again; the others close once a worker started since is listening and no
-- older worker takes connections from them (_sweep). old_channels: the
-- channels of its processes now. cluster: whether the app is still one
-- (if not, no worker will ask again).
function Cluster:renew(name, old_channels, cluster)
  for _, ch in ipairs(old_channels) do self.old[ch] = true end
  local by_key = self.apps[name]
  if not by_key then return end
  for _, e in pairs(by_key) do e.stale = true end
  if not cluster then self:_sweep(name, true) end
end

-- Closes the stale sockets of the app that no worker uses, once a worker
-- started after the change is listening (it has asked for what it wants).
function Cluster:_sweep(name, now)
  local by_key = self.apps[name]
  if not by_key then return end
  if not now then
    for _, w in pairs(self.workers) do
      if w.app == name and w.fresh and w.listening and not w.ch.closed then now = true break end
    end
    if not now then return end
  end
  for key, e in pairs(by_key) do
    -- shared: the workers hold their own copies; round-robin: orch accepts for them
    if e.stale and (not e.rr or #e.workers == 0) then
      by_key[key] = nil
      for _, w in pairs(self.workers) do w.entries[e] = nil end
      close_entry(e)
      self.log("info", string.format("%s: closed the cluster socket %s, which no worker uses since the app changed",
        name, e.key))
    end
  end
end

-- For describe: how many workers take connections, per socket.
function Cluster:view(name)
  local out = {}
  for _, e in pairs(self.apps[name] or {}) do
    local v = { key = e.key, mode = e.rr and "round-robin" or "shared", workers = #e.workers,
      address = e.sockname and e.sockname.address, port = e.sockname and e.sockname.port }
    if e.bal then v.balancer = e.bal:stats() end
    out[#out + 1] = v
  end
  return out
end

return M
