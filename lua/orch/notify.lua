-- orch.notify: systemd's notify socket (sd_notify), for programs written
-- for Type=notify services: with wait_ready, each process gets
-- NOTIFY_SOCKET and its READY=1 counts as the 'ready' message. The kernel
-- names the sender (SO_PASSCRED); a datagram is newline-separated
-- KEY=VALUE pairs.
local uv = require("luv")
local core = require("orch.core")

local M = {}

-- The fields of one datagram: { READY = "1", STATUS = "..." }.
function M.parse(text)
  local fields = {}
  for line in text:gmatch("[^\n]+") do
    local k, v = line:match("^([A-Z_]+)=(.*)$")
    if k then fields[k] = v end
  end
  return fields
end

-- The parent pid of pid, from /proc (nil when it is gone).
local function ppid(pid)
  local f = io.open("/proc/" .. pid .. "/stat", "r")
  if not f then return nil end
  local stat = f:read("*a")
  f:close()
  return tonumber(stat:match("%) %S+ (%d+)"))
end

-- Whether pid is root or descends from it (a server's worker may notify);
-- nil when pid itself is gone (a zombie still counts) and cannot tell.
function M.descends(pid, root)
  for i = 1, 32 do
    if pid == root then return true end
    pid = ppid(pid)
    if not pid and i == 1 then return nil end
    if not pid or pid <= 1 then return false end
  end
  return false
end

-- Opens the socket at path; on_message(pid, fields) per datagram. Returns
-- an object with close(), or nil, message.
function M.open(path, on_message, log)
  local sock, err = core.notify_socket(path)
  if not sock then return nil, string.format("cannot create %s: %s", path, err) end
  -- the poll only watches the descriptor: sock keeps it, and closes it
  local poll = uv.new_poll(sock:fd())
  poll:start("r", function()
    while true do
      local pid, text = core.notify_recv(sock)
      if not pid then
        if text and log then log("warn", "notify socket: " .. text) end
        return
      end
      on_message(pid, M.parse(text))
    end
  end)
  return {
    path = path,
    close = function()
      if not poll:is_closing() then poll:close() end
      sock:close()
      os.remove(path)
    end,
  }
end

return M
