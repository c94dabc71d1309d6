-- orch.worker: the process side of orch's IPC channel, for Lua programs
-- that orch runs (`script = "app.lua"` runs under orch's own runtime):
--
--   local worker = require("orch.worker")
--   worker.on_message(function(msg) ... end)   -- orch send / proc:send
--   worker.send({ hits = 1 })                   -- on_message hooks, orch.on("message")
--   worker.ready()                              -- for wait_ready
--   worker.listen(8000, function(conn) ... end) -- conn: a connected luv stream
--
-- listen() takes the socket the way the app is configured: inherited by
-- socket activation (balance "shared" with `listen`), or from orch as a
-- cluster worker (exec_mode "cluster": orch's round-robin hands over each
-- connection, "shared" the listening socket). It speaks the same protocol
-- as Node's cluster module (docs/protocol.md). Without orch (no channel)
-- send() returns nil, message and listen() binds the port itself.
local uv = require("luv")
local cjson = require("cjson").new()
local core = require("orch.core")
local util = require("orch.util")

local M = {}

local chan, buf, seq = nil, "", 0
local replies = {}   -- seq of our request -> function(reply, handle)
local servers = {}   -- cluster key -> on_connection
local handlers = {}  -- on_message callbacks
local closers = {}   -- what disconnect closes
local conns = setmetatable({}, { __mode = "k" }) -- connections given to the program
local cluster_worker = os.getenv("NODE_UNIQUE_ID") ~= nil

local function write(msg)
  if not chan then return nil, "no IPC channel (not started by orch)" end
  local good, text = pcall(cjson.encode, msg)
  if not good then return nil, "not encodable as JSON: " .. tostring(text) end
  local ok, err = chan:write(text .. "\n")
  if not ok then return nil, tostring(err) end
  return true
end

local function internal(msg)
  seq = seq + 1
  msg.cmd, msg.seq = "NODE_CLUSTER", seq
  write(msg)
  return seq
end

local function take_handle()
  if not chan or chan:pending_count() == 0 then return nil end
  local kind = chan:pending_type()
  local h = kind == "pipe" and uv.new_pipe(false) or uv.new_tcp()
  if not chan:accept(h) then
    h:close()
    return nil
  end
  return h
end

local function take(conn, on_connection)
  conns[conn] = true
  on_connection(conn)
end

local function drained()
  for c in pairs(conns) do
    if not c:is_closing() then return false end
  end
  return true
end

-- The channel goes once what was written on it is out (the ACKs of the
-- last connections).
local function close_channel()
  if not chan or chan:is_closing() then return end
  local ok = chan:shutdown(function() if not chan:is_closing() then chan:close() end end)
  if not ok then chan:close() end
end

-- Node's disconnect: stop listening, and let the channel go once the
-- connections in hand are finished: orch sends the stop signal when the
-- channel closes, and a request must not be cut short by it.
local function disconnect()
  for _, close in ipairs(closers) do close() end
  closers = {}
  if drained() then return close_channel() end
  local t = uv.new_timer()
  t:start(20, 20, function()
    if drained() then
      t:close()
      close_channel()
    end
  end)
end

local function cluster_message(msg, handle)
  if msg.ack ~= nil and replies[msg.ack] then
    local cb = replies[msg.ack]
    replies[msg.ack] = nil
    return cb(msg, handle)
  end
  if msg.act == "newconn" then
    local on_conn = servers[msg.key]
    write({ cmd = "NODE_CLUSTER", ack = msg.seq, accepted = on_conn ~= nil and handle ~= nil })
    if on_conn and handle then take(handle, on_conn) elseif handle then handle:close() end
  elseif msg.act == "disconnect" then
    disconnect()
  end
end

local function dispatch(msg)
  local handle
  if type(msg) == "table" and msg.cmd == "NODE_HANDLE" then
    handle = take_handle()
    write({ cmd = handle and "NODE_HANDLE_ACK" or "NODE_HANDLE_NACK" })
    if not handle then return end
    msg = msg.msg
  end
  if type(msg) == "table" and msg.cmd == "NODE_CLUSTER" then return cluster_message(msg, handle) end
  if handle then handle:close() end
  for _, fn in ipairs(handlers) do fn(msg) end
end

local function open()
  local fd = tonumber(os.getenv("NODE_CHANNEL_FD") or "")
  if not fd then return end
  chan = uv.new_pipe(true)
  if not chan:open(fd) then
    chan:close()
    chan = nil
    return
  end
  chan:read_start(function(err, data)
    if err or not data then
      if not chan:is_closing() then chan:close() end
      return
    end
    buf = buf .. data
    for line in buf:gmatch("([^\n]*)\n") do
      if line ~= "" then
        local ok, msg = pcall(cjson.decode, line)
        if ok then dispatch(msg) end
      end
    end
    buf = buf:match("([^\n]*)$")
  end)
  -- the channel alone must not keep a finished program alive
  chan:unref()
  if cluster_worker then internal({ act = "online" }) end
end

function M.send(msg) return write(msg) end

function M.ready() return write("ready") end

function M.on_message(fn)
  handlers[#handlers + 1] = fn
  if chan then chan:ref() end
end

-- Whether orch runs this program with a channel.
function M.connected() return chan ~= nil and not chan:is_closing() end

-- An inherited socket on this port (socket activation), or nil.
local function inherited(port)
  local n = tonumber(os.getenv("LISTEN_FDS") or "")
  if not n or tonumber(os.getenv("LISTEN_PID") or "") ~= core.getpid() then return nil end
  for fd = 3, 2 + n do
    if core.sockport(fd) == port then return fd end
  end
end

local function serve(h, on_connection)
  h:listen(511, function(err)
    if err then return end
    local conn = uv.new_tcp()
    if h:accept(conn) then take(conn, on_connection) else conn:close() end
  end)
  closers[#closers + 1] = function() if not h:is_closing() then h:close() end end
end

-- Serves connections on port (a number, or { port =, host = }) with
-- on_connection(conn); done(err) (optional) once listening or failed.
function M.listen(where, on_connection, done)
  done = done or function(err) if err then error("orch.worker.listen: " .. err, 0) end end
  local port = type(where) == "table" and where.port or where
  local host = type(where) == "table" and where.host or nil
  local fd = inherited(port)
  if fd then
    local h = uv.new_tcp()
    util.open_handle(h, assert(core.dup(fd)))
    serve(h, on_connection)
    return done(nil)
  end
  if not (chan and cluster_worker) then
    local h = uv.new_tcp()
    local ok, err = h:bind(host or "0.0.0.0", port)
    if not ok then h:close() return done(tostring(err)) end
    serve(h, on_connection)
    return done(nil)
  end
  chan:ref()
  local q = { act = "queryServer", index = 0, address = host, port = port, addressType = 4, backlog = 511 }
  local id = internal(q)
  replies[id] = function(reply, handle)
    if reply.errno ~= 0 and reply.errno ~= nil then
      if handle then handle:close() end
      return done("orch could not listen on port " .. tostring(port) .. " (errno " .. tostring(reply.errno) .. ")")
    end
    if handle then
      serve(handle, on_connection)      -- shared: the listening socket itself
    else
      servers[reply.key] = on_connection -- round-robin: connections come as newconn
      closers[#closers + 1] = function()
        servers[reply.key] = nil
        internal({ act = "close", key = reply.key })
      end
    end
    internal({ act = "listening", index = 0, address = host, port = port, addressType = 4 })
    done(nil)
  end
end

open()

return M
