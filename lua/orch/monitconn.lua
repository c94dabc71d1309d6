-- orch.monitconn: `orch monit`'s connection to the daemon: the control
-- protocol (JSON lines, replies matched by id) on a luv pipe, so the screen
-- and the keys go on while a `stop` waits for its processes. orch.client is
-- blocking on purpose (a verb sends one request); a dashboard cannot be.
local uv = require("luv")
local cjson = require("cjson").new()

local M = {}

local Conn = {}
Conn.__index = Conn

-- Connects to the socket at path; on_close(message) is called once when
-- the connection ends (the daemon went away). Returns the connection at
-- once; requests sent before it is up wait for it.
function M.open(path, on_close)
  local self = setmetatable({ pipe = uv.new_pipe(false), waiting = {}, queue = {}, next_id = 0,
                              buf = "", on_close = on_close }, Conn)
  self.pipe:connect(path, function(err)
    if err then return self:fail("cannot connect to " .. path .. ": " .. err) end
    self.up = true
    for _, line in ipairs(self.queue) do self.pipe:write(line) end
    self.queue = {}
    self.pipe:read_start(function(rerr, data)
      if rerr or not data then return self:fail(rerr and ("connection lost: " .. rerr) or "the daemon closed the connection") end
      self:feed(data)
    end)
  end)
  return self
end

function Conn:feed(data)
  local buf = self.buf .. data
  local from = 1
  while true do
    local nl = buf:find("\n", from, true)
    if not nl then break end
    local ok, msg = pcall(cjson.decode, buf:sub(from, nl - 1))
    from = nl + 1
    if ok and type(msg) == "table" then self:dispatch(msg) end
    if self.closed then return end
  end
  self.buf = buf:sub(from)
end

function Conn:dispatch(msg)
  local cb = self.waiting[msg.id]
  if not cb then return end -- a reply to a request given up (a closed subscription)
  -- a subscription's records: {"id": ID, "event": RECORD}
  if msg.event ~= nil and cb.stream then return cb.stream(msg.event) end
  if not cb.stream or msg.ok == false then self.waiting[msg.id] = nil end
  if msg.ok then return cb.fn(msg.result) end
  local e = type(msg.error) == "table" and msg.error or {}
  cb.fn(nil, tostring(e.message or "unknown error"), tostring(e.code or "EUNKNOWN"))
end

-- Ends the connection: every request still waiting gets nil, message.
function Conn:fail(message)
  if self.closed then return end
  self.closed = true
  if not self.pipe:is_closing() then self.pipe:close() end
  local waiting = self.waiting
  self.waiting = {}
  for _, cb in pairs(waiting) do cb.fn(nil, message, "EIO") end
  if self.on_close then self.on_close(message) end
end

function Conn:close()
  self.on_close = nil
  self:fail("closed")
end

-- Sends cmd with args; fn(result) or fn(nil, message, code) when the reply
-- comes. stream: for a subscription, stream(record) for each of its records
-- after the reply. Returns the request's id.
function Conn:request(cmd, args, fn, stream)
  if self.closed then
    fn(nil, "not connected", "EIO")
    return
  end
  self.next_id = self.next_id + 1
  local id = self.next_id
  self.waiting[id] = { fn = fn, stream = stream }
  local line = cjson.encode({ id = id, cmd = cmd, args = args or {} }) .. "\n"
  if self.up then self.pipe:write(line) else self.queue[#self.queue + 1] = line end
  return id
end

-- Whether a request is still waiting for its reply.
function Conn:pending(id)
  return id ~= nil and self.waiting[id] ~= nil
end

M.null = cjson.null

return M
