-- orch.client: the CLI's side of the control socket. Blocking and small (no
-- luv on this path), because every `orch` verb pays for it. When nothing
-- answers, the daemon is started and awaited on its readiness pipe, one CLI
-- at a time (a lock on $ORCH_HOME); the daemon's pid-file lock still lets
-- only one engine live per home.
local core = require("orch.core")
local cjson = require("cjson").new()
local paths = require("orch.paths")

local M = {}

M.START_TIMEOUT_MS = 30000 -- a daemon that died is known at once (readiness fd)
M.EXIT_TIMEOUT_MS = 30000 -- a daemon's last state write (fsync) can take seconds
M.REPLY_TIMEOUT_MS = 120000 -- stop waits for kill_timeout; long ones take long

-- The daemon's fd for its readiness pipe (s6's notification-fd): it writes
-- "\n" there once its socket listens, "=" when another orch has this home;
-- EOF without a byte means it died, and daemon.log says why.
local READY_FD = 3

local function log_size(path)
  local f = io.open(path, "rb")
  if not f then return 0 end
  local size = f:seek("end")
  f:close()
  return size or 0
end

-- What the daemon wrote to its log from offset on (its last lines), or nil.
local function log_since(path, offset)
  local f = io.open(path, "rb")
  if not f then return nil end
  f:seek("set", offset)
  local text = f:read(64 * 1024) or ""
  f:close()
  local lines = {}
  for line in text:gmatch("[^\n]+") do lines[#lines + 1] = line end
  if #lines == 0 then return nil end
  return table.concat(lines, "\n", math.max(1, #lines - 4))
end

-- Starts a daemon and waits until it serves. true, or nil, message, or
-- nil, nil, "EWOULDBLOCK" when another orch holds this home (and will serve).
local function start_daemon(layout)
  local exe = assert(core.exe_path())
  local offset = log_size(layout.daemon_log)
  local pid, fd = core.spawn_detached({ file = exe, argv = { exe, "daemon", "--ready-fd", tostring(READY_FD) },
                                        log = layout.daemon_log, cwd = "/", ready_fd = READY_FD })
  if not pid then return nil, "cannot start the daemon: " .. fd end
  local byte, err, code = core.ready_wait(fd, M.START_TIMEOUT_MS)
  if byte == "\n" then return true end
  if byte == "=" then return nil, nil, "EWOULDBLOCK" end
  if code == "EOF" then
    local said = log_since(layout.daemon_log, offset)
    return nil, string.format("the daemon (pid %d) exited at start: %s", pid, said or "it said nothing (see "
      .. layout.daemon_log .. ")")
  end
  if code == "ETIMEDOUT" then
    return nil, string.format("the daemon (pid %d) was not ready within %d ms (see %s)", pid, M.START_TIMEOUT_MS,
      layout.daemon_log)
  end
  return nil, string.format("cannot wait for the daemon (pid %d): %s", pid,
    byte and ("unexpected byte " .. byte) or err)
end

-- Waits until process pid has exited: its pidfd is readable once it has
-- released its files, and with them its pid-file lock (a zombie holds
-- nothing). true, or nil, message; what names the process in the message.
function M.await_exit(pid, what)
  local h, err, code = core.pidfd(pid)
  if not h then
    if code == "ESRCH" then return true end
    return nil, string.format("cannot watch %s (pid %d): %s", what, pid, err)
  end
  local waited, step = 0, 1
  while not h:exited() do
    if waited >= M.EXIT_TIMEOUT_MS then
      h:close()
      return nil, string.format("%s (pid %d) has not exited within %d ms", what, pid, M.EXIT_TIMEOUT_MS)
    end
    core.sleep_ms(step)
    waited, step = waited + step, math.min(step * 2, 50)
  end
  h:close()
  return true
end

-- Our daemon found the home's pid-file lock taken. Its holder is either an
-- orch that just started (an `orch run`, a daemon started by hand), which
-- listens within moments, or the previous daemon on its way out: it
-- answered a kill (or a SIGTERM) and closed its socket, but drops the lock
-- only when it exits, after its last state write (an fsync: seconds on a
-- slow disk). That one never answers, so waiting for an answer alone hung
-- for START_TIMEOUT_MS. Waits for whichever comes first: a connection (c),
-- or the holder named by the pid file gone (nil, nil, "EGONE": start a
-- daemon again). Polled with backoff; CLIs never race each other here
-- (start_lock), and the pid-file lock is never touched: taking it even for a
-- moment could turn away an `orch run` starting meanwhile.
local function await_other(layout)
  local waited, step = 0, 5
  local holder -- pidfd of the pid the pid file names
  local function done(...)
    if holder then holder:close() end
    return ...
  end
  while waited < M.START_TIMEOUT_MS do
    local c, err, code = core.ctl_connect(layout.sock)
    if c then return done(c) end
    if code ~= "ENOENT" and code ~= "ECONNREFUSED" then
      return done(nil, string.format("cannot connect to %s: %s", layout.sock, err))
    end
    -- nil while a new holder is writing its pid; ENOSYS (no pidfd): wait
    -- for an answer alone, as before
    local pid = core.read_pidfile(layout.pid)
    if pid and not (holder and holder:pid() == pid) then
      if holder then holder:close() end
      local h, _, pcode = core.pidfd(pid)
      if not h and pcode == "ESRCH" then return nil, nil, "EGONE" end
      holder = h
    end
    if holder and holder:exited() then return done(nil, nil, "EGONE") end
    core.sleep_ms(step)
    waited, step = waited + step, math.min(step * 2, 200)
  end
  return done(nil, string.format("another orch%s holds %s but does not answer on %s within %d ms",
    holder and (" (pid " .. holder:pid() .. ")") or "", layout.home, layout.sock, M.START_TIMEOUT_MS))
end

-- Returns a connected client, or nil, message. autostart: start the daemon
-- when none answers.
function M.connect(autostart)
  local home, herr = paths.home()
  if not home then return nil, herr end
  local layout = paths.layout(home)
  local c, err, code = core.ctl_connect(layout.sock)
  if c then return c end
  if code ~= "ENOENT" and code ~= "ECONNREFUSED" then
    return nil, string.format("cannot connect to %s: %s", layout.sock, err)
  end
  if not autostart then return nil, "orch is not running (" .. layout.sock .. ")", "ENOTRUNNING" end
  local ok
  ok, err = paths.ensure_home()
  if not ok then return nil, err end
  -- One CLI at a time starts a daemon; the others wait here for the lock
  -- and then find it serving.
  local lock, lerr = core.start_lock(layout.home)
  if not lock then return nil, string.format("cannot lock %s: %s", layout.home, lerr) end
  c = core.ctl_connect(layout.sock)
  -- Again once the holder of the home is gone (see await_other); a few
  -- times at most, should orchs keep taking it and exiting around us.
  local tries = 0
  while not c and tries < 3 do
    tries = tries + 1
    ok, err, code = start_daemon(layout)
    if ok then
      c, err = core.ctl_connect(layout.sock)
      if not c then err = string.format("the daemon is ready but %s refuses: %s", layout.sock, err) end
      break
    end
    if code ~= "EWOULDBLOCK" then break end
    c, err, code = await_other(layout)
    if code ~= "EGONE" then break end
    err = string.format("another orch took %s each time the last one exited", layout.home)
  end
  lock:release()
  return c, err
end

local next_id = 0

-- Sends one request and waits for its reply line: read(c, timeout_ms) reads
-- it (c:read_line). nil and an error table { code =, message = } when there
-- is none.
local function exchange(c, cmd, args, timeout_ms, read)
  next_id = next_id + 1
  local line = cjson.encode({ id = next_id, cmd = cmd, args = args or {} })
  local ok, err = c:send(line .. "\n")
  local reply, rerr
  if not ok then
    -- A daemon that refuses us answers before it closes: its reason beats EPIPE.
    reply = c:read_line(100)
    if not reply then return nil, { code = "EIO", message = "cannot send to orch: " .. tostring(err) } end
  else
    reply, rerr = (read or c.read_line)(c, timeout_ms or M.REPLY_TIMEOUT_MS)
  end
  if not reply then return nil, { code = "EIO", message = "no reply from orch: " .. tostring(rerr) } end
  return reply
end

local function result_of(reply)
  local good, msg = pcall(cjson.decode, reply)
  if not good or type(msg) ~= "table" then
    return nil, { code = "EPROTO", message = "unreadable reply from orch: " .. reply:sub(1, 200) }
  end
  if msg.ok then return msg.result end
  local e = type(msg.error) == "table" and msg.error or {}
  return nil, { code = tostring(e.code or "EUNKNOWN"), message = tostring(e.message or "unknown error") }
end

-- Sends one request and waits for its reply. Returns result, or nil and an
-- error table { code =, message = }.
function M.request(c, cmd, args, timeout_ms)
  local reply, err = exchange(c, cmd, args, timeout_ms)
  if not reply then return nil, err end
  return result_of(reply)
end

-- The same for a result the caller prints as JSON: when the daemon wrote
-- the reply as '{"id":N,"ok":true,"result":...}' (orch.control does for
-- list), the result's JSON text goes to stdout as it is, from the read
-- buffer (c:pass_line), and true, nil, true is returned: a list of 1000
-- processes decoded and encoded again cost the CLI 5 ms, a copy into a Lua
-- string and one out of it 80 page faults. A failed write (a reader that
-- went away) counts as printed, as io.stdout:write's does. Else as request.
function M.print_result(c, cmd, args, timeout_ms)
  io.stdout:flush()
  local reply, err = exchange(c, cmd, args, timeout_ms, function(conn, t)
    return conn:pass_line(t, '{"id":' .. next_id .. ',"ok":true,"result":', 1)
  end)
  if not reply then return nil, err end
  if reply == true then return true, nil, true end
  return result_of(reply)
end

M.null = cjson.null

return M
