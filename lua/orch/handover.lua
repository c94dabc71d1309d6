-- orch.handover: `orch update`, the daemon re-executing itself from the
-- binary now on disk, in place (same pid, as systemd's daemon-reexec), so
-- that no app is restarted.
--
-- Why in place: the managed processes are the daemon's children. A new
-- daemon process could not wait for them, and their log pipes, IPC channels
-- and cluster sockets would have to be passed over a socket one by one.
-- execve keeps the pid, so the children stay ours (their exits are still
-- ours to collect: a pidfd is opened again for each), and every descriptor
-- whose close-on-exec flag is cleared survives as it is, with what the
-- kernel holds in it: bytes a child wrote to its log pipe or channel during
-- the exec are read by the new image; connections made meanwhile wait in a
-- listening socket's queue.
--
-- The old image describes its state in a JSON document (FORMAT below) in a
-- memfd whose number the new image finds in ORCH_HANDOVER_FD: the apps as
-- orch.persist snapshots them (loaded again from their sources, as after a
-- crash), and per process its id, counters, times, status and descriptors.
-- Every carried descriptor is listed there; only those lose close-on-exec
-- (core.reexec), so nothing else leaks into the new image.
--
-- Safety: the new binary is first run as `orch --handover-check FORMAT`; if
-- it cannot run or does not read this format, the update fails with what it
-- said and nothing changed. The update is also refused while something is
-- between two states (a process launching or stopping, a command running):
-- those hold timers and callbacks that are not described. What is in
-- flight on the channels (a connection handed to a cluster worker, a
-- message not yet taken) is waited for, a few ms, with the balancers not
-- accepting (orch.clusterstate); cluster apps' state is described there. If execve itself fails, the old image goes on. If the
-- new image fails while taking the state over (a Lua error), it execs the
-- old image again (kept open as ORCH_HANDOVER_IMAGE_FD) with the same
-- document.
local uv = require("luv")
local core = require("orch.core")
local cjson = require("cjson").new()
local timers = require("orch.timers")
local key_of = require("orch.targets").key
local plain = require("orch.persist").plain
local clusterstate = require("orch.clusterstate")

local M = {}

-- The version of the document's layout. A binary reads the formats from 1
-- to FORMAT and refuses the others (--handover-check says so first).
M.FORMAT = 1
M.ENV_FD, M.ENV_IMAGE = "ORCH_HANDOVER_FD", "ORCH_HANDOVER_IMAGE_FD"
M.CHECK_MS = 10000 -- how long the new binary's check may take

-- `orch --handover-check N`: 0 and "ok VERSION" when this binary reads
-- format N, 1 and why not otherwise.
function M.check_main(args)
  local version = require("orch.version").version
  local n = tonumber(args[1] or "")
  if not n then
    io.stderr:write("usage: orch --handover-check FORMAT\n")
    return 2
  end
  if n < 1 or n > M.FORMAT or n ~= math.floor(n) then
    io.stderr:write(string.format("orch %s reads handover formats 1 to %d, not %s: it cannot take over that daemon\n",
      version, M.FORMAT, args[1]))
    return 1
  end
  io.stdout:write("ok ", version, "\n")
  return 0
end

-- Runs `exe --handover-check FORMAT` (uv.spawn: the loop goes on);
-- done(version) or done(nil, why) once it exited and both pipes are read.
function M.check_binary(exe, done)
  local pipes, said = { uv.new_pipe(false), uv.new_pipe(false) }, { {}, {} }
  local open, status, finished, timer = 2, nil, false, nil
  local function finish()
    if finished or open > 0 or status == nil then return end
    finished = true
    timers.close(timer)
    local version = table.concat(said[1]):match("^ok (%S+)")
    if status == 0 and version then return done(version) end
    local text = table.concat(said[2]):gsub("%s+$", "")
    done(nil, string.format("%s refused to take over (%s)%s", exe, status == false and "no answer within "
      .. M.CHECK_MS .. " ms" or tostring(status), text ~= "" and (": " .. text) or ""))
  end
  local handle, pid
  handle, pid = uv.spawn(exe, { args = { "--handover-check", tostring(M.FORMAT) }, stdio = { nil, pipes[1], pipes[2] } },
    function(code, signal)
      handle:close()
      status = status == nil and (signal ~= 0 and ("killed by signal " .. signal) or
        code == 0 and 0 or ("exit " .. code)) or status
      finish()
    end)
  if not handle then
    for _, p in ipairs(pipes) do p:close() end
    return done(nil, string.format("cannot run %s: %s", exe, tostring(pid)))
  end
  for i, pipe in ipairs(pipes) do
    pipe:read_start(function(rerr, data)
      if data and not rerr then
        if #said[i] < 64 then table.insert(said[i], data) end
        return
      end
      pipe:close()
      open = open - 1
      finish()
    end)
  end
  timer = timers.after(M.CHECK_MS, function()
    status = false
    pcall(handle.kill, handle, "sigkill")
  end)
end

-- Why the state cannot be handed over now, or nil. A process between two states holds timers and callbacks
-- (a stop's kill timer, a readiness wait) that the document does not
-- describe.
function M.blocker(engine)
  if engine.recovering then return "the daemon is still stopping what a crashed one left" end
  for _, p in ipairs(engine.sup:list()) do
    local s = p.status
    if s == "launching" or s == "stopping" or s == "blocked" then
      return string.format("%s is %s", engine.sup:label(p), s)
    end
    if engine.ops:busy(key_of(p)) then return string.format("a command on app '%s' is under way", p.name) end
  end
  return nil
end

-- What a process keeps across the exec (plain values only).
M.FIELDS = { "restarts", "counters", "created_at", "started_at", "started_wall", "transitions", "last_exit",
                 "ready", "reason", "pid_written", "listening", "healthy" }

-- The document and the descriptors it names, or nil, why. Called right
-- before the exec, in the same loop turn: nothing changes in between.
function M.collect(engine, ctx)
  local sup = engine.sup
  local doc = {
    format = M.FORMAT, version = require("orch.version").version, generation = ctx.generation + 1,
    attempt = ctx.attempt,
    started_at = engine.started_at, next_id = sup.next_id, worker_ids = sup.worker_ids,
    lock_fd = ctx.lock:fd(), ctl_fd = engine.server and engine.server:fd(),
    apps = engine:snapshot(), procs = {}, sockets = {},
    env = M.environment({}), -- what the old image goes back with (orch.takeover.fall_back)
  }
  local keep = { doc.lock_fd, doc.ctl_fd }
  if not (doc.lock_fd and doc.ctl_fd) then return nil, "the daemon's lock or control socket is closed" end
  local dropped = { n = 0 }
  for _, p in ipairs(sup:list()) do
    local r = { id = p.id, key = key_of(p), instance = p.instance, status = p.status }
    for _, f in ipairs(M.FIELDS) do r[f] = plain(p[f], dropped) end
    if p.handle then
      local out, err, code = p.handle:handover()
      if not out and code then return nil, sup:label(p) .. ": " .. err end
      r.pid, r.stdout_fd, r.stderr_fd = p.pid, out, err
      if p.channel then
        local fd, buf = p.channel.handover()
        if not fd then return nil, sup:label(p) .. ": " .. buf end
        r.chan_fd, r.chan_buf = fd, buf
      end
      r.cgroup = p.scope and p.scope.cgroup
      for _, k in ipairs({ r.stdout_fd, r.stderr_fd, r.chan_fd }) do keep[#keep + 1] = k end
    end
    if p.status == "waiting restart" then
      -- a restart delay's deadline, as time left; a queued launch stays queued
      r.delay_left = p.timer and p.timer:get_due_in() or nil
    end
    doc.procs[#doc.procs + 1] = r
  end
  for name, held in pairs(engine.sockets.bound) do
    local fds = {}
    for i, f in ipairs(held.fds) do
      fds[i] = f:fd()
      keep[#keep + 1] = fds[i]
    end
    doc.sockets[#doc.sockets + 1] = { name = name, key = held.key, fds = fds, names = held.names }
  end
  doc.cluster = clusterstate.export(engine.cluster, sup, keep)
  return doc, keep
end

-- orch's environment as a list, without the handover's variables, plus extra.
function M.environment(extra)
  local env = {}
  for k, v in pairs(core.environ()) do
    if k ~= M.ENV_FD and k ~= M.ENV_IMAGE then env[#env + 1] = k .. "=" .. v end
  end
  for k, v in pairs(extra) do env[#env + 1] = k .. "=" .. v end
  return env
end

-- Describes the state and execs ctx.exe with it. Returns only on failure:
-- nil, why (the daemon goes on as it was).
function M.exec(engine, ctx)
  local doc, keep = M.collect(engine, ctx)
  if not doc then return nil, keep end
  local mf, merr = core.memfd("orch-handover")
  if not mf then return nil, "memfd: " .. tostring(merr) end
  local text = cjson.encode(doc)
  local wrote, werr = uv.fs_write(mf:fd(), text, 0)
  if wrote ~= #text then
    mf:close()
    return nil, "cannot write the handover document: " .. tostring(werr)
  end
  local image = core.open_exe()
  keep[#keep + 1] = mf:fd()
  local extra = { [M.ENV_FD] = tostring(mf:fd()) }
  if image then
    keep[#keep + 1] = image:fd()
    extra[M.ENV_IMAGE] = tostring(image:fd())
  end
  local argv = { ctx.exe, "daemon" }
  for _, a in ipairs(ctx.args) do argv[#argv + 1] = a end
  engine.log("info", string.format("orch update: re-executing %s (generation %d, %d processes, %d cluster sockets; "
    .. "nothing in flight after %d ms)", ctx.exe, doc.generation, #doc.procs, #doc.cluster.sockets, ctx.settled_ms or 0))
  local _, err = core.reexec({ file = ctx.exe, argv = argv, env = M.environment(extra), keep = keep })
  mf:close()
  if image then image:close() end
  return nil, "exec " .. ctx.exe .. ": " .. tostring(err)
end

-- Once nothing is in flight (the balancers stop accepting meanwhile:
-- orch.clusterstate), describes the state and execs. Returns only if
-- that did not happen: the balancers accept again, the CLI learns why.
function M.settle_and_exec(engine, ctx, attempt)
  local t0 = uv.now()
  clusterstate.settle(engine, function(unsettled)
    ctx.settled_ms = uv.now() - t0
    local err = unsettled or M.blocker(engine)
    if not err then err = select(2, M.exec(engine, ctx)) end
    clusterstate.pause(engine.cluster, false)
    ctx.busy = false
    ctx.failed = { attempt = attempt, message = err }
    engine.log("error", "orch update: " .. tostring(err) .. "; the daemon goes on as it was")
  end)
end

-- The control command: checks the new binary, replies, then re-executes.
-- The reply says which generation this daemon is; the CLI waits for the
-- next one to answer ping (or for update_failed with its attempt).
function M.update(engine, respond)
  local ctx = engine.update_ctx
  if not ctx then return respond(nil, "ENOTSUP", "only the daemon re-executes itself (orch run: restart it)") end
  if ctx.busy then return respond(nil, "EBUSY", "an update is already under way") end
  local why = M.blocker(engine)
  if why then return respond(nil, "EBUSY", why .. "; try again once it is done") end
  ctx.busy = true
  ctx.attempt = ctx.attempt + 1
  local attempt = ctx.attempt
  M.check_binary(ctx.exe, function(version, cerr)
    if not version then
      ctx.busy = false
      engine.log("error", "orch update: " .. cerr)
      return respond(nil, "EUPDATE", cerr .. "; the daemon goes on as it was")
    end
    respond({ from = require("orch.version").version, to = version, exe = ctx.exe, pid = core.getpid(),
              generation = ctx.generation, attempt = attempt }, nil, nil, function()
      -- a few ms for the reply to leave; then describe and exec in one go
      timers.after(5, function() M.settle_and_exec(engine, ctx, attempt) end)
    end)
  end)
end

return M
