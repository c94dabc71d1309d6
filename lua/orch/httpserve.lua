-- orch.httpserve: orch's opt-in HTTP endpoint, for the daemon and `orch
-- run`: where it listens (--http, else $ORCH_HTTP; off when neither), the
-- token that state-changing requests need ($ORCH_HOME/http.token, 0600),
-- and the routes of ROUTE_MODULES on an orch.http server.
local uv = require("luv")
local http = require("orch.http")

local M = {}

-- Modules whose routes(engine) returns { {method, path, handler(req, res), opts}, ... }
-- (docs/protocol.md, "HTTP routes"). A module added here is served.
M.ROUTE_MODULES = { "orch.httproutes", "orch.dashboard" }

M.TOKEN_FILE = "http.token"

-- The address asked for: flag (--http's value) or $ORCH_HTTP; nil when
-- neither (the endpoint is off). Returns address, where it came from; or
-- nil, message naming it when it is malformed.
function M.address(flag, getenv)
  local v, origin = flag, "--http"
  if v == nil then
    v, origin = (getenv or os.getenv)("ORCH_HTTP"), "ORCH_HTTP"
    if v == "" then v = nil end
  end
  if v == nil then return nil end
  local ok, err = http.parse_address(v)
  if not ok then return nil, origin .. ": " .. err end
  return v, origin
end

-- The token in home's token file, made (32 random bytes, hex) when there is
-- none: kept across restarts of orch, so a dashboard's token stays good;
-- deleting the file makes a new one next time. token, path | nil, message.
function M.token(home)
  local path = home .. "/" .. M.TOKEN_FILE
  local fd = uv.fs_open(path, "r", 0)
  if fd then
    local st = uv.fs_fstat(fd)
    local data = uv.fs_read(fd, 128, 0)
    uv.fs_close(fd)
    -- only a file nobody else can read is kept
    if st and st.mode % 512 == 384 and data and data:match("^%x+\n?$") and #data >= 64 then
      return data:match("^(%x+)"), path
    end
  end
  local bytes, rerr = uv.random(32, {})
  if not bytes then return nil, "cannot make a token: " .. tostring(rerr) end
  local token = bytes:gsub(".", function(c) return string.format("%02x", c:byte()) end)
  local tmp = path .. ".tmp"
  uv.fs_unlink(tmp)
  local wfd, err = uv.fs_open(tmp, "wx", 384)
  local ok = wfd and uv.fs_fchmod(wfd, 384) and uv.fs_write(wfd, token .. "\n", 0)
  if wfd then uv.fs_close(wfd) end
  if ok then ok, err = uv.fs_rename(tmp, path) end
  if not ok then
    uv.fs_unlink(tmp)
    return nil, string.format("cannot write %s: %s", path, tostring(err))
  end
  return token, path
end

-- Starts serving engine at address (from M.address). Sets engine.http to
-- the server. true, or nil, message naming the address or the token file.
function M.start(engine, address, origin)
  local token, path = M.token(engine.paths.home)
  if not token then return nil, path end
  local _, limit = require("orch.core").fd_count()
  -- an eighth of the descriptors at most (the control socket may take a quarter)
  local max_conns = math.max(8, math.min(256, math.floor((limit or 1024) / 8)))
  local server, err = http.listen(address, { log = engine.log, token = token, token_file = path,
                                             max_conns = max_conns })
  if not server then return nil, (origin and (origin .. ": ") or "") .. err end
  for _, mod in ipairs(M.ROUTE_MODULES) do
    for _, r in ipairs(require(mod).routes(engine)) do server:route(r[1], r[2], r[3], r[4]) end
  end
  engine.http = server
  -- what orch ping shows
  engine.http_info = { address = server:address(), token_file = path }
  engine.log("info", string.format("HTTP endpoint on http://%s/ (token in %s)", server:address(), path))
  return true
end

return M
