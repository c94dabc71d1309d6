-- orch.client: the CLI's side of the control socket. Blocking and small (no
-- luv on this path), because every `orch` verb pays for it. When nothing
-- answers, the daemon is started and awaited; if several CLIs race, the
-- daemon's pid-file lock lets exactly one of the started daemons live.
local core = require("orch.core")
local cjson = require("cjson").new()
local paths = require("orch.paths")

local M = {}

M.START_TIMEOUT_MS = 10000
M.REPLY_TIMEOUT_MS = 120000 -- stop waits for kill_timeout; long ones take long

local function start_daemon(layout)
  local ok, err = paths.ensure_home()
  if not ok then return nil, err end
  local exe = assert(core.exe_path())
  local pid
  pid, err = core.spawn_detached({ file = exe, argv = { exe, "daemon" }, log = layout.daemon_log, cwd = "/" })
  if not pid then return nil, "cannot start the daemon: " .. err end
  return pid
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
  local pid, serr = start_daemon(layout)
  if not pid then return nil, serr end
  local waited = 0
  while waited < M.START_TIMEOUT_MS do
    c, err, code = core.ctl_connect(layout.sock)
    if c then return c end
    core.sleep_ms(2)
    waited = waited + 2
  end
  return nil, string.format("the daemon did not answer within %d ms (see %s)", M.START_TIMEOUT_MS, layout.daemon_log)
end

local next_id = 0

-- Sends one request and waits for its reply. Returns result, or nil and an
-- error table { code =, message = }.
function M.request(c, cmd, args, timeout_ms)
  next_id = next_id + 1
  local line = cjson.encode({ id = next_id, cmd = cmd, args = args or {} })
  local ok, err = c:send(line .. "\n")
  if not ok then return nil, { code = "EIO", message = "cannot send to orch: " .. tostring(err) } end
  local reply, rerr = c:read_line(timeout_ms or M.REPLY_TIMEOUT_MS)
  if not reply then return nil, { code = "EIO", message = "no reply from orch: " .. tostring(rerr) } end
  local good, msg = pcall(cjson.decode, reply)
  if not good or type(msg) ~= "table" then
    return nil, { code = "EPROTO", message = "unreadable reply from orch: " .. reply:sub(1, 200) }
  end
  if msg.ok then return msg.result end
  local e = type(msg.error) == "table" and msg.error or {}
  return nil, { code = tostring(e.code or "EUNKNOWN"), message = tostring(e.message or "unknown error") }
end

M.null = cjson.null

return M
