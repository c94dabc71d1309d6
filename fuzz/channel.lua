-- Fuzz driver: the IPC channel (lua/orch/channel.lua), the daemon's end of
-- a managed process's socket. Each input is what the child writes before it
-- closes its end: line framing, the acknowledgements of handles, the JSON
-- decode of each message, the size limit. The channel must close within
-- 10 s of the child's EOF, having raised nothing.
local C = dofile(debug.getinfo(1, "S").source:match("^@(.*/)") .. "lib/common.lua")
local uv = require("luv")
local core = require("orch.core")
local channel = require("orch.channel")

return function(data)
  local ours, theirs = assert(core.socketpair())
  local closed = false
  local ch = assert(channel.open(ours, function(msg)
    channel.is_internal(msg)
  end, function(problem)
    assert(type(problem) == "string", "a problem is a message")
  end, function() closed = true end))
  local child = uv.new_pipe(false)
  assert(require("orch.util").open_handle(child, theirs))
  child:write(data, function() child:close() end)
  C.run_until(function() return closed end, 10000, "close of the channel after the child's EOF")
  if not child:is_closing() then child:close() end
  ch.close()
end
