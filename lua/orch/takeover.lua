-- orch.takeover: the new image's side of `orch update` (orch.handover is
-- the old image's and explains the design): read the document, take every
-- process over as it runs (same id, pid, counters, times, log pipes, IPC
-- channel), the held sockets, the pending restart delays.
local uv = require("luv")
local core = require("orch.core")
local cjson = require("cjson").new()
local handover = require("orch.handover")
local launch = require("orch.launch")
local lifecycle = require("orch.lifecycle")
local key_of = require("orch.targets").key
local clusterstate = require("orch.clusterstate")
local handed_key = require("orch.sockets").handed_key

local M = {}

-- The handover a previous image left (ORCH_HANDOVER_FD), or nil (a plain
-- start), or nil, why. The variables are removed from the environment, so
-- nothing orch starts inherits them. Returns { doc, fd, image }: fd and
-- image (fd objects) stay open until the takeover is over, for a fall back.
function M.incoming()
  local n, image = os.getenv(handover.ENV_FD), os.getenv(handover.ENV_IMAGE)
  if not n then return nil end
  uv.os_unsetenv(handover.ENV_FD)
  uv.os_unsetenv(handover.ENV_IMAGE)
  local fd, err = core.fd_adopt(tonumber(n) or -1)
  if not fd then return nil, string.format("%s=%s: %s", handover.ENV_FD, n, tostring(err)) end
  local img = image and core.fd_adopt(tonumber(image) or -1) or nil
  local st = uv.fs_fstat(fd:fd())
  local text = st and uv.fs_read(fd:fd(), st.size, 0)
  local ok, doc = pcall(cjson.decode, text or "")
  if not (ok and type(doc) == "table") then return nil, "the handover document is not JSON" end
  if doc.format ~= handover.FORMAT then
    return nil, string.format("handover format %s, this binary reads 1 to %d", tostring(doc.format), handover.FORMAT)
  end
  return { doc = doc, fd = fd, image = img }
end

-- Takes p (registered again from its app's source) over from record r.
local function adopt_one(engine, p, r)
  local sup = engine.sup
  -- the state it was in: the lifecycle table goes on from there (while p
  -- is still under its new id in the table, so the busy count follows)
  lifecycle.restore(p, r.status, sup)
  p.id = r.id
  for _, f in ipairs(handover.FIELDS) do p[f] = r[f] end
  if type(p.counters) ~= "table" then p.counters = { unstable = 0, backoff = 0 } end
  if r.pid then
    p.scope = { mark = launch.mark(engine.paths.home, p.id), cgroup = r.cgroup }
    if r.cgroup then engine.tree.cgroups[r.cgroup] = true end
    local stdout, stderr = sup:_streams(p)
    if not stdout then
      -- the pipes must be read all the same, or the app blocks on them
      engine.log("error", sup:label(p) .. ": " .. tostring(stderr) .. "; its output is discarded")
      local null = sup:_sink(require("orch.logfiles").DISCARD)
      stdout, stderr = { sink = null }, { sink = null }
    end
    local handle, err
    handle, err = core.adopt({ pid = r.pid, stdout_fd = r.stdout_fd, stderr_fd = r.stderr_fd, stdout = stdout,
      stderr = stderr, on_exit = function(code, signal) sup:_on_exit(p, handle, code, signal) end })
    if not handle then error(string.format("%s (pid %d): %s", sup:label(p), r.pid, tostring(err)), 0) end
    p.handle, p.pid = handle, r.pid
    if r.chan_fd then sup:_open_channel(p, handle, assert(core.fd_adopt(r.chan_fd)), r.chan_buf) end
    if p.status == "online" then
      engine.health:start(p)
      if p.app.wait_ready and sup.notify_socket then sup.notify_socket(p) end
    end
  elseif p.status == "waiting restart" then
    if r.delay_left then sup:_delay(p, r.delay_left) else sup:_queue_launch(p) end
  end
end

-- Processes whose app no longer loads from its source (its file changed or
-- went): they are stopped as a crash's leftovers are (orch.recovery), never
-- left running unsupervised.
local function stop_orphans(engine, recs)
  local groups = {}
  for _, r in pairs(recs) do
    for _, n in ipairs({ r.stdout_fd, r.stderr_fd, r.chan_fd }) do
      local f = core.fd_adopt(n)
      if f then f:close() end
    end
    local root = r.pid and core.pidfd(r.pid, core.proc_starttime(r.pid))
    if root then groups[#groups + 1] = { root = root, name = r.key .. ":" .. r.instance, rec = { pid = r.pid } } end
  end
  if #groups > 0 then
    engine.recovering = true
    engine:_stop_leftovers(groups, nil, function() end)
  end
end

-- Restores the engine from the document. Raises on what it cannot take
-- over (the caller falls back to the old image).
function M.restore(engine, doc)
  local sup = engine.sup
  engine.started_at = doc.started_at or engine.started_at
  -- the held sockets first: launches and cluster queries find them bound
  for _, s in ipairs(doc.sockets or {}) do
    local fds = {}
    for i, n in ipairs(s.fds) do fds[i] = assert(core.fd_adopt(n)) end
    engine.sockets.bound[s.name] = { key = handed_key(s.key), fds = fds, names = s.names }
  end
  local recs = {}
  for _, r in ipairs(doc.procs or {}) do recs[r.key .. ":" .. r.instance] = r end
  local _, _, errors = engine:restore(doc.apps or {}, function(procs)
    for _, p in ipairs(procs) do
      local k = key_of(p) .. ":" .. p.instance
      local r = recs[k]
      recs[k] = nil
      if r then adopt_one(engine, p, r) end -- else: not there before, left stopped
    end
  end)
  for _, e in ipairs(errors) do engine.log("error", "orch update: " .. e) end
  -- ids as they were; the table in id order
  sup.index:reindex()
  local top = doc.next_id or 0
  for _, p in ipairs(sup.procs) do
    if p.id >= top then top = p.id + 1 end
  end
  sup.next_id, sup.worker_ids = top, doc.worker_ids
  -- the cluster layer, on the processes' channels and the sockets above
  local listen = {}
  for _, held in pairs(engine.sockets.bound) do
    for _, f in ipairs(held.fds) do listen[f:fd()] = f end
  end
  clusterstate.import(engine.cluster, doc.cluster, sup.by_id, function(n) return listen[n] end)
  stop_orphans(engine, recs)
  engine:save_state_soon()
end

-- Execs the old image again with the same document, marked as failed, so
-- that it goes on as before and `orch update` reports why. Returns only
-- if that exec fails.
function M.fall_back(engine, incoming, ctx, why)
  local doc = incoming.doc
  if not incoming.image then return nil, "the old image was not kept" end
  -- the old image failing too: going back and forth would never end
  if doc.failed then return nil, "this is the previous binary already" end
  doc.failed = why
  local text = cjson.encode(doc)
  local fd = incoming.fd:fd()
  local trunc = uv.fs_ftruncate(fd, 0)
  local wrote = trunc and uv.fs_write(fd, text, 0)
  if wrote ~= #text then return nil, "cannot write the handover document again" end
  local keep = { doc.lock_fd, doc.ctl_fd, fd, incoming.image:fd() }
  for _, r in ipairs(doc.procs) do
    for _, n in ipairs({ r.stdout_fd, r.stderr_fd, r.chan_fd }) do keep[#keep + 1] = n end
  end
  for _, s in ipairs(doc.sockets or {}) do
    for _, n in ipairs(s.fds) do keep[#keep + 1] = n end
  end
  clusterstate.kept(doc.cluster, keep)
  -- the environment the old image had, not this one's
  local env = {}
  for _, e in ipairs(doc.env or handover.environment({})) do env[#env + 1] = e end
  env[#env + 1] = handover.ENV_FD .. "=" .. fd
  env[#env + 1] = handover.ENV_IMAGE .. "=" .. incoming.image:fd()
  engine.log("error", "orch update: " .. why .. "; going back to the previous binary")
  local argv = { ctx.exe, "daemon" }
  for _, a in ipairs(ctx.args) do argv[#argv + 1] = a end
  local _, err = core.reexec({ image = incoming.image, argv = argv, env = env, keep = keep })
  return nil, tostring(err)
end

return M
