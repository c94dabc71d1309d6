-- orch.http: a small HTTP/1.1 server on orch's libuv loop (luv), for the
-- opt-in endpoint (orch.httpserve). Generic: it knows requests, responses,
-- server-sent events and its limits, not orch; what it serves is a route
-- table. Whatever a client does, the daemon's memory, descriptors and loop
-- stay bounded: heads and bodies are capped, a request must arrive within
-- REQUEST_TIMEOUT_MS of its first byte, idle connections close, connections
-- are capped (the least recently active idle one makes room), a client that
-- does not read is dropped, and a request that is not HTTP gets 400 and the
-- connection closes. A handler that raises gets the client a 500 and the
-- daemon a log line. docs/http.md says what is served, docs/protocol.md
-- ("HTTP routes") how to add a route.
local uv = require("luv")
local bit = require("bit")

local M = {}

M.MAX_HEAD = 8192               -- request line + headers, bytes
M.MAX_BODY = 65536              -- request body, bytes
M.REQUEST_TIMEOUT_MS = 10000    -- from a request's first byte to its last
M.IDLE_TIMEOUT_MS = 30000       -- a kept-alive connection with nothing to do
M.WRITE_TIMEOUT_MS = 30000      -- a response the client does not read
M.MAX_QUEUED = 1048576          -- bytes an event stream may hold for a slow reader
M.HEARTBEAT_MS = 15000          -- a comment on each event stream, so dead peers are found

local REASONS = {
  [200] = "OK", [204] = "No Content", [400] = "Bad Request", [401] = "Unauthorized", [404] = "Not Found",
  [405] = "Method Not Allowed", [408] = "Request Timeout", [409] = "Conflict", [413] = "Content Too Large",
  [431] = "Request Header Fields Too Large", [500] = "Internal Server Error", [501] = "Not Implemented",
  [503] = "Service Unavailable", [504] = "Gateway Timeout",
}

-- "ADDR:PORT" -> host, port, or nil, message. ADDR is an IPv4 address,
-- [an IPv6 one] or localhost (127.0.0.1); names are not resolved (that
-- would block the loop). PORT 0 lets the kernel choose (orch ping shows it).
function M.parse_address(s)
  if type(s) ~= "string" or s == "" then return nil, "expected ADDR:PORT (e.g. 127.0.0.1:9615)" end
  local host, port = s:match("^%[([%x:%.]+)%]:(%d+)$")
  if not host then
    host, port = s:match("^([^:%[%]]+):(%d+)$")
    if host and host:lower() == "localhost" then host = "127.0.0.1" end
    local a, b, c, d = (host or ""):match("^(%d+)%.(%d+)%.(%d+)%.(%d+)$")
    if host and not (a and tonumber(a) < 256 and tonumber(b) < 256 and tonumber(c) < 256 and tonumber(d) < 256) then
      return nil, string.format("'%s': '%s' is not an IP address (names are not resolved; e.g. 127.0.0.1:9615)",
        s, host)
    end
  elseif not host:find(":", 1, true) then
    return nil, string.format("'%s': '[%s]' is not an IPv6 address", s, host)
  end
  if not host then return nil, string.format("'%s': expected ADDR:PORT (e.g. 127.0.0.1:9615)", s) end
  port = tonumber(port)
  if port > 65535 then return nil, string.format("'%s': port %d is out of range (0-65535)", s, port) end
  return host, port
end

-- a == b without an early exit (the token check: timing tells nothing).
function M.equal_ct(a, b)
  if type(a) ~= "string" or type(b) ~= "string" then return false end
  local diff = bit.bxor(#a, #b)
  for i = 1, #b do
    diff = bit.bor(diff, bit.bxor(a:byte(i) or 0, b:byte(i)))
  end
  return diff == 0
end

local function unescape(s)
  return (s:gsub("+", " "):gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

-- "a=1&b=2&a=3" -> { a = {"1", "3"}, b = {"2"} }
local function parse_query(q)
  local out = {}
  for pair in q:gmatch("[^&]+") do
    local k, v = pair:match("^([^=]*)=?(.*)$")
    k = unescape(k)
    out[k] = out[k] or {}
    table.insert(out[k], unescape(v))
  end
  return out
end

local Request = {}
Request.__index = Request

-- The first value of query parameter name, or nil.
function Request:param(name)
  local v = self.query[name]
  return v and v[1]
end

-- Parses one request head (without its blank line) -> request, or nil,
-- status, message.
local function parse_head(head)
  local line, rest = head:match("^([^\r\n]*)\r?\n?(.*)$")
  local method, target, minor = line:match("^(%u+) (%S+) HTTP/1%.([01])$")
  if not method then return nil, 400, "malformed request line" end
  if target:sub(1, 1) ~= "/" then return nil, 400, "the request target must be a path" end
  local path, query = target:match("^([^?#]*)%??([^#]*)")
  local req = setmetatable({ method = method, target = target, path = unescape(path), query = parse_query(query),
                             headers = {}, version = "1." .. minor }, Request)
  for hl in rest:gmatch("[^\n]+") do
    hl = hl:gsub("\r$", "")
    local name, value = hl:match("^([!#$%%&'*+%-.^_`|~%w]+):[ \t]*(.-)[ \t]*$")
    if not name then return nil, 400, "malformed header line" end
    name = name:lower()
    local old = req.headers[name]
    if old and name == "content-length" and old ~= value then return nil, 400, "conflicting Content-Length" end
    req.headers[name] = old and name ~= "content-length" and (old .. ", " .. value) or value
  end
  if req.headers["transfer-encoding"] then return nil, 501, "Transfer-Encoding is not supported" end
  local cl = req.headers["content-length"]
  if cl and not cl:match("^%d+$") then return nil, 400, "malformed Content-Length" end
  req.length = tonumber(cl or "0")
  if req.length > M.MAX_BODY then return nil, 413, string.format("bodies are limited to %d bytes", M.MAX_BODY) end
  local conn = (req.headers.connection or ""):lower()
  if minor == "1" then req.keep_alive = not conn:find("close", 1, true)
  else req.keep_alive = conn:find("keep-alive", 1, true) ~= nil end
  return req
end

---------------------------------------------------------------------------
-- Connections
---------------------------------------------------------------------------

local Conn = {}
Conn.__index = Conn

function Conn:close()
  if self.closed then return end
  self.closed = true
  self.server.conns[self] = nil
  self.server.count = self.server.count - 1
  if self.on_close then
    local fn = self.on_close
    self.on_close = nil
    local ok, err = pcall(fn)
    if not ok then self.server.log("error", "http: an event stream's close handler failed: " .. tostring(err)) end
  end
  self.timer:close()
  if not self.tcp:is_closing() then self.tcp:close() end
end

-- (Re)arms the connection's one timer: fn after ms.
function Conn:deadline(ms, why)
  self.timer:stop()
  self.timer:start(ms, 0, function()
    if why == "request" and self.buf ~= "" and not self.req then
      self:raw_reply(408, "no complete request within " .. M.REQUEST_TIMEOUT_MS .. " ms\n", true)
    else
      self:close()
    end
  end)
end

-- Queues data; then(): once it is written (not when the connection closes first).
function Conn:write(data, after)
  if self.closed then return end
  self.tcp:write(data, function(err)
    if err then return self:close() end
    if after and not self.closed then after() end
  end)
end

-- Writes a whole response; then closes the connection, or waits for the
-- next request once the client has read this one.
function Conn:respond(status, body, headers, keep)
  if self.closed then return end
  local parts = { string.format("HTTP/1.1 %d %s\r\n", status, REASONS[status] or "Unknown") }
  headers = headers or {}
  if not headers["Content-Type"] then headers["Content-Type"] = "text/plain; charset=utf-8" end
  headers["Content-Length"] = #body
  headers["Connection"] = keep and "keep-alive" or "close"
  headers["Cache-Control"] = headers["Cache-Control"] or "no-store"
  for k, v in pairs(headers) do parts[#parts + 1] = k .. ": " .. tostring(v) .. "\r\n" end
  parts[#parts + 1] = "\r\n"
  if not (self.req and self.req.method == "HEAD") then parts[#parts + 1] = body end
  self.last = uv.now()
  self.req = nil
  self:deadline(M.WRITE_TIMEOUT_MS)
  if not keep then
    self.tcp:read_stop()
    return self:write(table.concat(parts), function()
      self.tcp:shutdown(function() self:close() end)
    end)
  end
  self.writing = true
  self:write(table.concat(parts), function()
    self.writing = false
    if self.req then return end
    self:deadline(self.buf == "" and M.IDLE_TIMEOUT_MS or M.REQUEST_TIMEOUT_MS, "request")
    if self.stopped then
      self.stopped = false
      self.tcp:read_start(function(err, data) self:on_data(err, data) end)
    end
    self:resume()
  end)
end

-- An error before a request was understood: a short answer, then close.
function Conn:raw_reply(status, msg, close)
  self.req = self.req or { method = "GET" }
  self:respond(status, msg, nil, not close)
end

-- Handles what is buffered: at most one request in progress.
function Conn:resume()
  if self.closed or self.req or self.writing then return end
  local buf = self.buf
  local s, e = buf:find("\r?\n\r?\n")
  if not s then
    if #buf > M.MAX_HEAD then return self:raw_reply(431, "request head over " .. M.MAX_HEAD .. " bytes\n", true) end
    return
  end
  if s - 1 > M.MAX_HEAD then return self:raw_reply(431, "request head over " .. M.MAX_HEAD .. " bytes\n", true) end
  local req, status, msg = parse_head(buf:sub(1, s - 1))
  if not req then return self:raw_reply(status, msg .. "\n", true) end
  if #buf - e < req.length then return end -- the body is on its way
  req.body = buf:sub(e + 1, e + req.length)
  self.buf = buf:sub(e + req.length + 1)
  self.req = req
  self.timer:stop()
  self.server:dispatch(self, req)
end

function Conn:on_data(err, data)
  if err or not data then return self:close() end
  if self.buf == "" and not self.req and not self.writing then self:deadline(M.REQUEST_TIMEOUT_MS, "request") end
  self.buf = self.buf .. data
  self.last = uv.now()
  if #self.buf > M.MAX_HEAD + M.MAX_BODY then
    -- pipelined requests behind a slow one: read no more until it is done
    if self.req or self.writing then self.tcp:read_stop() self.stopped = true return end
  end
  self:resume()
end

---------------------------------------------------------------------------
-- Responses handed to handlers
---------------------------------------------------------------------------

local Response = {}
Response.__index = Response

-- Sends status with body (a string) and headers ({Name = value}); once.
function Response:send(status, body, headers)
  if self.done then return end
  self.done = true
  local c = self.conn
  if c.closed then return end
  c:respond(status, body or "", headers, self.req.keep_alive)
end

-- Whether the client has gone (a handler that answers later may skip work).
function Response:gone() return self.conn.closed end

local Stream = {}
Stream.__index = Stream

-- One event: name (nil for the default "message"), data (a string; its
-- lines become data: lines), id (optional). false when the stream is gone
-- (closed, or dropped because its client fell MAX_QUEUED bytes behind).
function Stream:send(name, data, id)
  local c = self.conn
  if c.closed then return false end
  if c.tcp:get_write_queue_size() > M.MAX_QUEUED then
    c.server.log("info", "http: dropped an event stream whose client fell " .. M.MAX_QUEUED .. " bytes behind")
    c:close()
    return false
  end
  local parts = {}
  if id then parts[#parts + 1] = "id: " .. tostring(id) .. "\n" end
  if name then parts[#parts + 1] = "event: " .. name .. "\n" end
  for line in (tostring(data) .. "\n"):gmatch("([^\n]*)\n") do parts[#parts + 1] = "data: " .. line .. "\n" end
  parts[#parts + 1] = "\n"
  c:write(table.concat(parts))
  return true
end

-- fn() runs once when the stream ends (the client went, or was dropped).
function Stream:on_close(fn) self.conn.on_close = fn end

function Stream:close() self.conn:close() end

-- Turns the response into a server-sent event stream (text/event-stream);
-- the connection stays open until the client goes. Returns the stream.
function Response:sse()
  assert(not self.done, "response already sent")
  self.done = true
  local c = self.conn
  c.sse = true
  c:write("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-store\r\n"
    .. "Connection: close\r\nX-Accel-Buffering: no\r\n\r\n")
  -- a comment now and then: a peer gone without a FIN is found by the write
  c.timer:stop()
  c.timer:start(M.HEARTBEAT_MS, M.HEARTBEAT_MS, function()
    if c.tcp:get_write_queue_size() > M.MAX_QUEUED then return c:close() end
    c:write(": keep-alive\n\n")
  end)
  return setmetatable({ conn = c }, Stream)
end

---------------------------------------------------------------------------
-- The server
---------------------------------------------------------------------------

local Server = {}
Server.__index = Server

-- Makes room for one more connection: closes the least recently active one
-- with no request or response in progress (not an event stream). false if none.
function Server:make_room()
  local victim
  for c in pairs(self.conns) do
    if not (c.req or c.sse or c.writing) and (not victim or c.last < victim.last) then victim = c end
  end
  if not victim then return false end
  victim:close()
  return true
end

function Server:accept()
  local tcp = uv.new_tcp()
  local ok, err = self.tcp:accept(tcp)
  if not ok then
    tcp:close()
    return self.log("warn", "http: accept failed: " .. tostring(err))
  end
  local c = setmetatable({ tcp = tcp, server = self, buf = "", last = uv.now(), timer = uv.new_timer() }, Conn)
  self.conns[c] = true
  self.count = self.count + 1
  if self.count > self.max_conns and not self:make_room() then
    c.req = { method = "GET" }
    return c:respond(503, "too many connections\n", { ["Retry-After"] = "1" }, false)
  end
  tcp:nodelay(true)
  c:deadline(M.REQUEST_TIMEOUT_MS, "request")
  tcp:read_start(function(rerr, data) c:on_data(rerr, data) end)
end

-- The route for req: handler, route; or nil, status, message.
function Server:find(req)
  local by_method = self.routes[req.path]
  if not by_method then return nil, 404, "no such path: " .. req.path end
  local method = req.method == "HEAD" and "GET" or req.method
  local route = by_method[method]
  if not route then
    local allowed = {}
    for m in pairs(by_method) do allowed[#allowed + 1] = m end
    table.sort(allowed)
    return nil, 405, req.method .. " is not allowed here (allowed: " .. table.concat(allowed, ", ") .. ")",
      { Allow = table.concat(allowed, ", ") }
  end
  return route
end

function Server:dispatch(c, req)
  local res = setmetatable({ conn = c, req = req }, Response)
  local route, status, msg, headers = self:find(req)
  if not route then return res:send(status, msg .. "\n", headers) end
  if route.auth then
    local given = (req.headers.authorization or ""):match("^[Bb]earer +(%S+)$")
    if not (self.token and M.equal_ct(given, self.token)) then
      return res:send(401, "this needs the token of " .. self.token_file
        .. " as 'Authorization: Bearer TOKEN'\n", { ["WWW-Authenticate"] = 'Bearer realm="orch"' })
    end
  end
  local ok, err = xpcall(route.handler, debug.traceback, req, res)
  if not ok then
    self.log("error", string.format("http: %s %s failed: %s", req.method, req.path, tostring(err)))
    if not res.done then res:send(500, "internal error (see the daemon's log)\n") end
  end
end

-- Stops listening and closes every connection.
function Server:close()
  if self.tcp:is_closing() then return end
  self.tcp:close()
  for c in pairs(self.conns) do c:close() end
end

-- "ADDR:PORT" the server listens on (the port the kernel chose for 0).
function Server:address()
  local a = self.tcp:getsockname()
  if not a then return nil end
  return (a.family == "inet6" and ("[" .. a.ip .. "]") or a.ip) .. ":" .. a.port
end

-- Adds a route: method ("GET", "POST"...), path (exact), handler(req, res);
-- opts.auth: the token is needed (every method but GET needs it anyway).
function Server:route(method, path, handler, opts)
  assert(type(handler) == "function", "route handler must be a function")
  self.routes[path] = self.routes[path] or {}
  self.routes[path][method] = { handler = handler, auth = (opts and opts.auth) or method ~= "GET" }
end

-- Listens on address ("ADDR:PORT"). opts: log(level, msg), token (string),
-- token_file (named in 401 answers), max_conns. Returns the server, or nil,
-- message naming the address.
function M.listen(address, opts)
  local host, port = M.parse_address(address)
  if not host then return nil, port end
  local tcp = uv.new_tcp()
  local self = setmetatable({ tcp = tcp, conns = {}, count = 0, routes = {}, log = opts.log, token = opts.token,
                              token_file = opts.token_file or "the token file", max_conns = opts.max_conns or 64 },
    Server)
  local ok, err = tcp:bind(host, port)
  if ok then
    ok, err = tcp:listen(128, function(lerr)
      if lerr then return self.log("warn", "http: cannot accept: " .. tostring(lerr)) end
      self:accept()
    end)
  end
  if not ok then
    tcp:close()
    return nil, string.format("cannot listen on %s: %s", address, tostring(err))
  end
  return self
end

return M
