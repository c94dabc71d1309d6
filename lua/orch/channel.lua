-- orch.channel: the IPC channel of a managed process, in Node's
-- child_process format so that an unmodified Node program's process.send()
-- and process.on('message') work: the child has a Unix stream socket at
-- NODE_CHANNEL_FD, and each message is one JSON value on one line
-- (NODE_CHANNEL_SERIALIZATION_MODE=json). Any language can speak it with a
-- socket and a JSON library; docs/protocol.md has the details.
local uv = require("luv")
local cjson = require("cjson").new()

local M = {}

M.MAX_MESSAGE = 1024 * 1024   -- a longer line closes the channel
M.MAX_QUEUED = 4 * 1024 * 1024 -- unread by the child: send() refuses more

-- Node's own messages ({cmd = "NODE_..."}: handle acks, cluster) are not the
-- app's; they are for the cluster layer.
function M.is_internal(msg)
  return type(msg) == "table" and type(msg.cmd) == "string" and #msg.cmd > 5 and msg.cmd:sub(1, 5) == "NODE_"
end

-- Wraps the parent's end (fd). on_message(msg) for every message;
-- on_problem(text) for a malformed or oversized one. Returns the channel.
function M.open(fd, on_message, on_problem)
  local pipe = uv.new_pipe(false)
  local ok, err = pipe:open(fd)
  if not ok then
    pipe:close()
    return nil, err
  end
  local ch = { pipe = pipe, closed = false }
  local buf = ""

  function ch.close()
    if ch.closed then return end
    ch.closed = true
    if not pipe:is_closing() then pipe:close() end
  end

  -- Returns true, or nil and why the message could not be sent.
  function ch.send(msg)
    if ch.closed then return nil, "the channel is closed" end
    local good, text = pcall(cjson.encode, msg)
    if not good then return nil, "not encodable as JSON: " .. tostring(text) end
    if pipe:get_write_queue_size() > M.MAX_QUEUED then
      return nil, "the process does not read its channel (over " .. M.MAX_QUEUED .. " bytes queued)"
    end
    local wrote, werr = pipe:write(text .. "\n")
    if not wrote then return nil, tostring(werr) end
    return true
  end

  pipe:read_start(function(rerr, data)
    if rerr or not data then return ch.close() end
    buf = buf .. data
    while true do
      local nl = buf:find("\n", 1, true)
      if not nl then break end
      local line = buf:sub(1, nl - 1)
      buf = buf:sub(nl + 1)
      if line ~= "" then
        local good, msg = pcall(cjson.decode, line)
        if good then on_message(msg)
        else on_problem("malformed message ignored: " .. line:sub(1, 80)) end
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
