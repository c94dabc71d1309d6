-- A raw HTTP/1.1 client for specs (luv, 127.0.0.1): sends bytes exactly as
-- given, so specs can also send what no real client would.
local uv = require("luv")
local H = require("helpers")

local C = {}

-- An open connection to port: :send(bytes), :response(timeout_ms) (the next
-- whole response: {status, headers, body}), :wait_closed(timeout_ms), :close().
local Conn = {}
Conn.__index = Conn

function C.connect(port)
  local self = setmetatable({ buf = "", tcp = uv.new_tcp() }, Conn)
  local done, cerr = false, nil
  self.tcp:connect("127.0.0.1", port, function(err) done, cerr = true, err end)
  H.wait_until(function() return done end, 10000, "a connection to port " .. port)
  if cerr then
    self.tcp:close()
    return nil, cerr
  end
  self.tcp:read_start(function(err, data)
    if err or not data then self.eof = true else self.buf = self.buf .. data end
  end)
  return self
end

function Conn:send(bytes)
  self.tcp:write(bytes)
  return self
end

-- Parses one response off the front of buf: response, rest; or nil.
local function parse(buf, eof)
  local s, e = buf:find("\r\n\r\n", 1, true)
  if not s then return nil end
  local head = buf:sub(1, s - 1)
  local status = tonumber(head:match("^HTTP/1%.%d (%d%d%d)"))
  local headers = {}
  for name, value in head:gmatch("\r\n([^:\r\n]+): *([^\r\n]*)") do headers[name:lower()] = value end
  local len = tonumber(headers["content-length"] or "")
  if not len then
    if not eof then return nil end
    return { status = status, headers = headers, body = buf:sub(e + 1) }, ""
  end
  if #buf - e < len then return nil end
  return { status = status, headers = headers, body = buf:sub(e + 1, e + len) }, buf:sub(e + len + 1)
end

function Conn:response(timeout_ms)
  local r
  H.wait_until(function()
    local rest
    r, rest = parse(self.buf, self.eof)
    if r then self.buf = rest end
    return r or (self.eof and self.buf == "")
  end, timeout_ms or 10000, function() return "an HTTP response; got so far: " .. self.buf end)
  return r
end

function Conn:wait_closed(timeout_ms)
  H.wait_until(function() return self.eof end, timeout_ms or 10000, "the server to close the connection")
end

function Conn:close()
  if not self.tcp:is_closing() then self.tcp:close() end
  uv.run("nowait")
end

-- One request on its own connection: the response; nil when the server
-- closed without one; nil, error when nothing listens.
function C.raw(port, bytes, timeout_ms)
  local c, err = C.connect(port)
  if not c then return nil, err end
  c:send(bytes)
  local r = c:response(timeout_ms)
  c:close()
  return r
end

-- GET/POST path on port: response. headers: { "Name: value", ... }.
function C.request(port, method, path, headers, body)
  local req = method .. " " .. path .. " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
  for _, h in ipairs(headers or {}) do req = req .. h .. "\r\n" end
  if body then req = req .. "Content-Length: " .. #body .. "\r\n" end
  return C.raw(port, req .. "\r\n" .. (body or ""))
end

function C.get(port, path) return C.request(port, "GET", path) end

return C
