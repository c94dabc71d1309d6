-- orch.channel: the IPC channel of a managed process, in Node's
-- child_process format so that an unmodified Node program's process.send()
-- and process.on('message') work: the child has a Unix stream socket at
-- NODE_CHANNEL_FD, and each message is one JSON value on one line
-- (NODE_CHANNEL_SERIALIZATION_MODE=json). Any language can speak it with a
-- socket and a JSON library; docs/protocol.md has the details.
-- The daemon's end is C (core/chan.c): it owns every write, so that the
-- round-robin balancer (core/balancer.c) and Lua never interleave inside a
-- message, and it answers a worker's per-connection acks without Lua.
local core = require("orch.core")
local cjson = require("cjson").new()

local M = {}

M.MAX_MESSAGE = 1024 * 1024   -- a longer line closes the channel (chan.h)
M.MAX_QUEUED = 4 * 1024 * 1024 -- unread by the child: send() refuses more

-- Node's own messages ({cmd = "NODE_..."}: handle acks, cluster) are not the
-- app's; they are for the cluster layer.
function M.is_internal(msg)
  return type(msg) == "table" and type(msg.cmd) == "string" and #msg.cmd > 5 and msg.cmd:sub(1, 5) == "NODE_"
end

local function failed(err, code)
  if code == "ENOBUFS" then
    return nil, "the process does not read its channel (over " .. M.MAX_QUEUED .. " bytes queued)"
  end
  if code == "EPIPE" then return nil, "the channel is closed" end
  return nil, err
end

-- Wraps the parent's end (an fd object, which the channel takes over,
-- whether or not it opens). on_message(msg) for every message that is
-- not a handle acknowledgement; on_problem(text) for a malformed or
-- oversized one; on_close() once when the channel closes (EOF, error or
-- close()). buffered: the start of a message an earlier image read (orch
-- update). Returns the channel: ch.send(msg), ch.send_handle(msg, fd),
-- ch.close(), ch.closed, ch.handover(), and ch.c, the C object (for the
-- balancer).
function M.open(fd, on_message, on_problem, on_close, buffered)
  local ch = { closed = false }
  local c, err = core.chan_open(fd, function(line)
    if not line then return on_problem("a message over " .. M.MAX_MESSAGE .. " bytes: channel closed") end
    local good, msg = pcall(cjson.decode, line)
    if not good then return on_problem("malformed message ignored: " .. line:sub(1, 80)) end
    if type(msg) ~= "table" then return on_message(msg) end
    if msg.cmd == "NODE_HANDLE_ACK" or msg.cmd == "NODE_HANDLE_NACK" then
      ch.c:handle_reply(msg.cmd == "NODE_HANDLE_ACK")
    elseif msg.cmd == "NODE_HANDLE" then
      -- its descriptor was closed as it came (orch has no use for one); the
      -- ack lets Node's sender go on
      ch.c:send('{"cmd":"NODE_HANDLE_ACK"}\n')
      on_message(msg.msg)
    else
      on_message(msg)
    end
  end, function()
    ch.closed = true
    if on_close then on_close() end
  end, buffered)
  if not c then return nil, err end
  ch.c = c

  function ch.close()
    if not ch.closed then c:close() end
  end

  -- For orch update: the descriptor and what was read of a message not
  -- complete yet, or nil and why not now (what the child has not taken or
  -- acknowledged yet would be lost).
  function ch.handover()
    if ch.closed then return nil, "the channel is closed" end
    return c:handover()
  end

  -- Returns true, or nil and why the message could not be sent.
  function ch.send(msg)
    if ch.closed then return nil, "the channel is closed" end
    local good, text = pcall(cjson.encode, msg)
    if not good then return nil, "not encodable as JSON: " .. tostring(text) end
    local ok, werr, code = c:send(text .. "\n")
    if not ok then return failed(werr, code) end
    return true
  end

  -- Sends msg with a duplicate of fd (an fd object or number; the caller's
  -- stays its own), wrapped as Node's {cmd = "NODE_HANDLE", type =
  -- "net.Native", msg = msg}; the duplicate closes once the child
  -- acknowledged it. true, or nil and why not.
  function ch.send_handle(msg, handle_fd)
    if ch.closed then return nil, "the channel is closed" end
    if type(msg) ~= "string" then msg = cjson.encode(msg) end
    local ok, werr, code = c:send_fd(msg, handle_fd)
    if not ok then return failed(werr, code) end
    return true
  end

  return ch
end

return M
