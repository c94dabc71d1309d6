-- orch.channel: the IPC channel of a managed process, in Node's
-- child_process format so that an unmodified Node program's process.send()
-- and process.on('message') work: the child has a Unix stream socket at
-- NODE_CHANNEL_FD, and each message is one JSON value on one line
-- (NODE_CHANNEL_SERIALIZATION_MODE=json). Any language can speak it with a
-- socket and a JSON library; docs/protocol.md has the details.
local uv = require("luv")
local cjson = require("cjson").new()
local util = require("orch.util")

local M = {}

M.MAX_MESSAGE = 1024 * 1024   -- a longer line closes the channel
M.MAX_QUEUED = 4 * 1024 * 1024 -- unread by the child: send() refuses more

-- Node's own messages ({cmd = "NODE_..."}: handle acks, cluster) are not the
-- app's; they are for the cluster layer.
function M.is_internal(msg)
  return type(msg) == "table" and type(msg.cmd) == "string" and #msg.cmd > 5 and msg.cmd:sub(1, 5) == "NODE_"
end

local ACK = '{"cmd":"NODE_HANDLE_ACK"}' -- as Node writes it: the common case, not decoded

M.HANDLE_WINDOW = 8 -- descriptors written and not yet acknowledged

local Fifo = {}
Fifo.__index = Fifo
function Fifo:push(v)
  self.tail = self.tail + 1
  self[self.tail] = v
  self.n = self.n + 1
end
function Fifo:pop()
  if self.n == 0 then return nil end
  local v = self[self.head]
  self[self.head] = nil
  self.head = self.head + 1
  self.n = self.n - 1
  return v
end
local function fifo() return setmetatable({ head = 1, tail = 0, n = 0 }, Fifo) end

-- Wraps the parent's end (an fd object, which the channel takes over,
-- whether or not it opens). on_message(msg) for every message that is
-- not a handle acknowledgement; on_problem(text) for a malformed or
-- oversized one; on_close() once when the channel closes (EOF, error or
-- close()). Returns the channel.
function M.open(fd, on_message, on_problem, on_close)
  -- An IPC pipe: libuv attaches descriptors with SCM_RIGHTS (write2) and
  -- collects those the child sends.
  local pipe = uv.new_pipe(true)
  local ok, err = util.open_handle(pipe, fd)
  if not ok then
    pipe:close()
    return nil, err
  end
  local ch = { pipe = pipe, closed = false }
  local buf = ""
  -- Descriptors wait in `queue` and, once written, in `sent` until the
  -- receiver's NODE_HANDLE_ACK or NACK (then sent again, at most 3 times),
  -- which come back in order. Node's own sender keeps one in flight; the
  -- kernel hands each descriptor over with its own message (a read never
  -- spans two of them), so a few at once are safe and save a round trip
  -- per connection.
  local queue, sent = fifo(), fifo()

  local function write(text)
    if pipe:get_write_queue_size() > M.MAX_QUEUED then
      return nil, "the process does not read its channel (over " .. M.MAX_QUEUED .. " bytes queued)"
    end
    local wrote, werr = pipe:write(text)
    if not wrote then return nil, tostring(werr) end
    return true
  end

  local function send_more()
    while not ch.closed and sent.n < M.HANDLE_WINDOW and queue.n > 0 do
      local item = queue:pop()
      local good, req, werr = pcall(pipe.write2, pipe, item.text, item.handle)
      if good and req then
        sent:push(item)
      else
        item.done(false, tostring(good and werr or req))
      end
    end
  end

  local function handle_reply(cmd)
    local item = sent:pop()
    if not item then return end
    if cmd == "NODE_HANDLE_NACK" and item.tries < 3 then
      item.tries = item.tries + 1
      queue:push(item)
    else
      item.done(cmd == "NODE_HANDLE_ACK")
    end
    send_more()
  end

  function ch.close()
    if ch.closed then return end
    ch.closed = true
    if not pipe:is_closing() then pipe:close() end
    for _, q in ipairs({ sent, queue }) do
      while q.n > 0 do q:pop().done(false, "the channel closed") end
    end
    if on_close then on_close() end
  end

  -- Returns true, or nil and why the message could not be sent.
  function ch.send(msg)
    if ch.closed then return nil, "the channel is closed" end
    local good, text = pcall(cjson.encode, msg)
    if not good then return nil, "not encodable as JSON: " .. tostring(text) end
    return write(text .. "\n")
  end

  -- Sends msg with a descriptor (a luv stream handle), wrapped as Node's
  -- {cmd = "NODE_HANDLE", type = "net.Native", msg = msg}. done(ok, why)
  -- runs once the child acknowledged it (ok) or it was refused or the
  -- channel closed; the caller keeps its handle open until then.
  -- msg may be its JSON text already (the per-connection path saves the
  -- encoding).
  function ch.send_handle(msg, handle, done)
    if ch.closed then return done(false, "the channel is closed") end
    if type(msg) ~= "string" then msg = cjson.encode(msg) end
    local text = '{"cmd":"NODE_HANDLE","type":"net.Native","msg":' .. msg .. "}\n"
    queue:push({ text = text, handle = handle, done = done, tries = 0 })
    send_more()
  end

  -- A descriptor the child sent is taken and closed (orch has no use for
  -- one); the message is acknowledged so that Node's sender goes on.
  local function drop_pending()
    while pipe:pending_count() > 0 do
      local kind = pipe:pending_type()
      local h = (kind == "tcp" and uv.new_tcp()) or (kind == "udp" and uv.new_udp()) or uv.new_pipe(false)
      pcall(pipe.accept, pipe, h)
      h:close()
    end
  end

  pipe:read_start(function(rerr, data)
    if rerr or not data then return ch.close() end
    buf = buf .. data
    while true do
      local nl = buf:find("\n", 1, true)
      if not nl then break end
      local line = buf:sub(1, nl - 1)
      buf = buf:sub(nl + 1)
      if line == ACK then
        handle_reply("NODE_HANDLE_ACK")
      elseif line ~= "" then
        local good, msg = pcall(cjson.decode, line)
        if not good then
          on_problem("malformed message ignored: " .. line:sub(1, 80))
        elseif type(msg) == "table" and (msg.cmd == "NODE_HANDLE_ACK" or msg.cmd == "NODE_HANDLE_NACK") then
          handle_reply(msg.cmd)
        elseif type(msg) == "table" and msg.cmd == "NODE_HANDLE" then
          drop_pending()
          write('{"cmd":"NODE_HANDLE_ACK"}\n')
          on_message(msg.msg)
        else
          on_message(msg)
        end
        if ch.closed then return end
      end
    end
    if #buf > M.MAX_MESSAGE then
      on_problem("a message over " .. M.MAX_MESSAGE .. " bytes: channel closed")
      ch.close()
    end
  end)
  return ch
end

return M
