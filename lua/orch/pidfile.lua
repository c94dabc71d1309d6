-- orch.pidfile: PM2's pid_file option: the pid of a running process in a
-- file, written when it starts and removed when it exits.
local uv = require("luv")

local M = {}

-- The file of the process of id `id`, or nil: PM2 puts "-ID" before the
-- ".pid" extension (replacing a "-N" already there); other names get "-ID"
-- appended, so instances never share a file.
function M.path(app, id)
  local f = app.pid_file
  if not f then return nil end
  local stem = f:match("^(.*)%-%d+%.pid$") or f:match("^(.*)%.pid$")
  if stem then return stem .. "-" .. id .. ".pid" end
  return f .. "-" .. id
end

-- Makes the missing directories above path (0755, as PM2 does).
local function parents(path)
  local dir = path:match("^(.+)/[^/]*$")
  if not dir or uv.fs_stat(dir) then return true end
  local ok, err = parents(dir)
  if not ok then return nil, err end
  local made, merr, code = uv.fs_mkdir(dir, tonumber("755", 8))
  if not made and code ~= "EEXIST" then return nil, merr end
  return true
end

-- Writes pid to path (by a rename: a reader never sees half a file). true,
-- or nil and why not.
function M.write(path, pid)
  local ok, err = parents(path)
  if not ok then return nil, err end
  local tmp = path .. ".orch-tmp"
  local f, ferr = io.open(tmp, "w")
  if not f then return nil, ferr end
  local wrote, werr = f:write(tostring(pid))
  local closed, cerr = f:close()
  if not (wrote and closed) then
    os.remove(tmp)
    return nil, werr or cerr
  end
  local renamed, rerr = os.rename(tmp, path)
  if not renamed then
    os.remove(tmp)
    return nil, rerr
  end
  return true
end

-- Removes path if it still holds pid (a later run may have written it).
function M.remove(path, pid)
  local f = io.open(path, "r")
  if not f then return end
  local content = f:read("*a")
  f:close()
  if content == tostring(pid) then os.remove(path) end
end

return M
