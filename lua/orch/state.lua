-- orch.state: JSON files in $ORCH_HOME written atomically (a temporary file
-- renamed over the old one), so a crash or a full disk never leaves half a
-- file: the dump of `orch save` and the state file a restarted daemon reads.
local cjson = require("cjson").new()

local M = {}

function M.write_json(path, value)
  local uv = require("luv")
  local ok, text = pcall(cjson.encode, value)
  if not ok then return nil, "cannot encode " .. path .. ": " .. tostring(text) end
  local tmp = path .. ".tmp"
  local fd, err = uv.fs_open(tmp, "w", tonumber("600", 8)) -- private, like all of $ORCH_HOME
  if not fd then return nil, "cannot write " .. tmp .. ": " .. tostring(err) end
  local wrote, werr = uv.fs_write(fd, text .. "\n", 0)
  uv.fs_close(fd)
  if wrote ~= #text + 1 then
    uv.fs_unlink(tmp)
    return nil, "cannot write " .. tmp .. ": " .. tostring(werr or "short write")
  end
  local renamed, rerr = uv.fs_rename(tmp, path)
  if not renamed then
    uv.fs_unlink(tmp)
    return nil, "cannot rename " .. tmp .. ": " .. tostring(rerr)
  end
  return true
end

-- Returns the decoded value, or nil plus "ENOENT" when the file is absent,
-- or nil plus a message when it cannot be read or parsed.
function M.read_json(path)
  local f = io.open(path, "rb")
  if not f then return nil, "ENOENT" end
  local text = f:read("*a")
  f:close()
  local ok, value = pcall(cjson.decode, text)
  if not ok then return nil, path .. ": " .. tostring(value) end
  return value
end

return M
