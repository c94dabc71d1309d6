-- orch.clusterstate: the cluster layer (orch.cluster) across `orch update`
-- (orch.handover explains the exec). What the kernel holds goes across by
-- itself: the sockets orch bound for the workers (their descriptors are
-- listed to keep), the connections waiting in their queues, the workers'
-- messages waiting in their channels. What orch holds in memory is
-- described here and rebuilt by the new image: which sockets each app has
-- (key, mode, Node's data), which workers take connections from each, in
-- the round-robin's order, and what each worker said (online, listening,
-- started before its app changed).
--
-- What is in flight cannot be described: a connection a worker has not
-- acknowledged yet (its descriptor is orch's to close or to give to another
-- worker), a handle or message not yet taken from a channel. So before the
-- exec the balancers stop accepting (new connections wait in the kernel's
-- queue) and orch waits, at most SETTLE_MS, for what is out to be answered;
-- the workers answer in a few ms. A worker that does not answer fails the
-- update, and the balancers accept again: nothing was lost.
local uv = require("luv")
local cjson = require("cjson").new()
local core = require("orch.core")
local timers = require("orch.timers")
local open_entry = require("orch.cluster").open_entry

local M = {}

M.SETTLE_MS = 3000
local POLL_MS = 2

local function each_entry(cluster, fn)
  for name, by_key in pairs(cluster.apps) do
    for _, e in pairs(by_key) do fn(e, name) end
  end
end

-- Round-robin balancers stop accepting (true) or accept again (false).
function M.pause(cluster, paused)
  each_entry(cluster, function(e) if e.bal then e.bal:pause(paused) end end)
end

-- What is still out (a description), or nil once nothing is.
local function in_flight(engine)
  local out
  each_entry(engine.cluster, function(e, name)
    local n = not out and e.bal and e.bal:stats().inflight or 0
    if n > 0 then out = string.format("%d connection(s) of app '%s' not yet taken by a worker", n, name) end
  end)
  if out then return out end
  for _, p in ipairs(engine.sup:list()) do
    if p.channel and not p.channel.closed then
      local fd, _, code = p.channel.handover()
      if not fd and code == "EAGAIN" then
        return engine.sup:label(p) .. ": messages or descriptors on its channel not yet taken or acknowledged"
      end
    end
  end
end

-- Pauses the balancers and calls done() once nothing is in flight, or
-- done(why) after SETTLE_MS (the balancers are paused either way: the
-- caller resumes them if it does not exec).
function M.settle(engine, done)
  local deadline = uv.now() + M.SETTLE_MS
  local function poll()
    -- again each time: a socket a worker asked for meanwhile has a new balancer
    M.pause(engine.cluster, true)
    local why = in_flight(engine)
    if not why then return done() end
    if uv.now() >= deadline then
      return done(string.format("%s after %d ms", why, M.SETTLE_MS))
    end
    timers.after(POLL_MS, poll)
  end
  poll()
end

-- The description (plain values); the descriptors of the sockets orch bound
-- are added to keep (an app's `listen` sockets are carried by orch.handover).
function M.export(cluster, sup, keep)
  local out = { seq = cluster.seq, sockets = {}, workers = {}, old = {} }
  each_entry(cluster, function(e, name)
    local ids = {}
    for i, w in ipairs(e.workers) do ids[i] = w.proc.id end
    local fd = e.fd:fd()
    if e.owned then keep[#keep + 1] = fd end
    out.sockets[#out.sockets + 1] = { app = name, key = e.key, fd = fd, owned = e.owned, unix = e.unix, rr = e.rr,
      data = e.data, stale = e.stale, workers = ids }
  end)
  for ch, w in pairs(cluster.workers) do
    if not ch.closed then
      local keys = {}
      for e in pairs(w.entries) do keys[#keys + 1] = e.key end
      out.workers[#out.workers + 1] = { id = w.proc.id, app = w.app, fresh = w.fresh, listening = w.listening,
        online = w.online, keys = keys }
    end
  end
  for _, p in ipairs(sup:list()) do
    if p.channel and cluster.old[p.channel] then out.old[#out.old + 1] = p.id end
  end
  return out
end

-- The descriptors export kept (for a fall back to the old image).
function M.kept(state, keep)
  for _, s in ipairs(state and state.sockets or {}) do
    if s.owned then keep[#keep + 1] = s.fd end
  end
end

-- Rebuilds the cluster layer once the processes are taken over (by_id:
-- id -> process, its channel open). listen_fd(n): the fd object of an
-- app's `listen` socket with that number, taken over already. Raises on
-- what it cannot rebuild (the new image then goes back to the old one).
function M.import(cluster, state, by_id, listen_fd)
  if not state then return end
  cluster.seq = state.seq or 0
  local entries = {}
  for _, s in ipairs(state.sockets or {}) do
    local fd = s.owned and core.fd_adopt(s.fd) or listen_fd(s.fd)
    if not fd then error(string.format("app '%s': cluster socket %s (fd %d) not handed over", s.app, s.key, s.fd), 0) end
    local e = open_entry({ key = s.key, key_json = cjson.encode(s.key), app = s.app, fd = fd,
      owned = s.owned, unix = s.unix, rr = s.rr, data = s.data, stale = s.stale, workers = {}, keep_fd = true })
    if not e.handle then
      -- open, and no longer this image's: the fall back hands it to the old one
      if s.owned then fd:release() end
      error(string.format("app '%s': cluster socket %s: %s", s.app, s.key, e.why), 0)
    end
    cluster.apps[s.app] = cluster.apps[s.app] or {}
    cluster.apps[s.app][s.key] = e
    entries[s.app .. "\0" .. s.key] = { e = e, ids = s.workers }
  end
  local by_proc = {}
  for _, r in ipairs(state.workers or {}) do
    local p = by_id[r.id]
    if p and p.channel and not p.channel.closed then
      local w = { proc = p, ch = p.channel, app = r.app, entries = {}, fresh = r.fresh, listening = r.listening,
        online = r.online }
      cluster.workers[p.channel] = w
      by_proc[r.id] = w
      for _, k in ipairs(r.keys) do
        local x = entries[r.app .. "\0" .. k]
        if x then w.entries[x.e] = true end
      end
    end
  end
  for _, id in ipairs(state.old or {}) do
    local p = by_id[id]
    if p and p.channel then cluster.old[p.channel] = true end
  end
  -- the round-robin's members in their order (a process gone meanwhile is
  -- left out, as its channel's closing would have done)
  for _, x in pairs(entries) do
    for _, id in ipairs(x.ids) do
      if by_proc[id] then cluster:_add_worker(x.e, by_proc[id]) end
    end
  end
end

return M
