-- orch.control: the control socket's protocol. serve(engine) listens on
-- $ORCH_HOME/orch.sock (framed in C, core/ctl.c); each line is a request
-- {id, cmd, args}, checked here, handed to its handler in orch.commands,
-- and answered with one reply line {id, ok, result | error} once what the
-- client is told is on disk (docs/protocol.md). While what a crashed daemon
-- left is being stopped, requests other than ping are held.
local core = require("orch.core")
local uv = require("luv")
local cjson = require("cjson").new()
local commands = require("orch.commands")
local util = require("orch.util")
local subscribe = require("orch.subscribe")

local M = {}

local MAX_ID = 2 ^ 53
local MAX_ID_STRING = 256

-- fd: the listening socket a previous image handed over (orch update).
function M.serve(engine, fd)
  local server, err = core.ctl_listen(engine.paths.sock, {
    on_line = function(conn, line) M.request(engine, conn, line) end,
    on_close = function(conn) subscribe.closed(engine, conn) end,
    fd = fd,
  })
  if not server then return nil, string.format("cannot listen on %s: %s", engine.paths.sock, err) end
  engine.server = server
  return true
end


-- The id as the client wrote it: an integer below 2^53 is exact in a double
-- and printed in full (cjson would round it to 14 digits).
local function id_json(id)
  if type(id) == "number" then return string.format("%.0f", id) end
  return cjson.encode(id)
end

local function reply(conn, id, ok, payload)
  if ok and getmetatable(payload) == commands.JSON then
    -- JSON text in pieces: one copy makes the line (a list of 1000
    -- processes is 160 KB)
    local n = #payload
    payload[1] = '{"id":' .. id_json(id) .. ',"ok":true,"result":' .. payload[1]
    payload[n] = payload[n] .. "}\n"
    if not conn:closed() then conn:send(table.concat(payload)) end
    return
  end
  local msg
  if ok then
    msg = { ok = true, result = payload }
  else
    -- user input quoted in a message must not make the line invalid UTF-8
    payload.message = util.utf8_clean(tostring(payload.message))
    msg = { ok = false, error = payload }
  end
  local good, text = pcall(cjson.encode, msg)
  if not good then
    text = cjson.encode({ ok = false,
      error = { code = "EINTERNAL", message = "reply not encodable: " .. tostring(text) } })
  end
  -- cjson encodes an empty table as {}; a list result must read [].
  if ok and type(payload) == "table" and next(payload) == nil and getmetatable(payload) == commands.LIST then
    text = text:gsub('"result":{}', '"result":[]', 1)
  end
  if not conn:closed() then conn:send('{"id":' .. id_json(id) .. "," .. text:sub(2) .. "\n") end
end

M.MAX_HELD = 10000 -- requests held during recovery; past it: ERECOVERING

-- How long a reply waits for the state file to be on disk (see request).
M.STATE_WAIT_MS = 2000

-- Commands that change nothing: never "not saved", whatever the disk does.
local READ_ONLY = { ping = true, list = true, describe = true, logs = true, complete = true, subscribe = true }

-- Requests answered with a stream of lines after their reply.
M.STREAMS = { subscribe = subscribe.handler }

function M.request(engine, conn, line)
  local ok, req = pcall(cjson.decode, line)
  -- While the processes a previous daemon left are looked for and stopped,
  -- the apps are not ours yet: requests wait (ping answers at once, unless
  -- its connection has requests waiting: replies keep their order).
  local waiting = engine.recovering and engine.held_conns and engine.held_conns[conn]
  if engine.recovering and (waiting or not (ok and type(req) == "table" and req.cmd == "ping")) then
    engine.held = engine.held or {}
    engine.held_conns = engine.held_conns or setmetatable({}, { __mode = "k" })
    if #engine.held >= M.MAX_HELD then
      local id = ok and type(req) == "table" and type(req.id) == "number" and req.id or cjson.null
      return reply(conn, id, false, { code = "ERECOVERING",
        message = "orch is stopping what a crashed daemon left running; try again in a moment" })
    end
    engine.held_conns[conn] = true
    engine.held[#engine.held + 1] = { conn, function() M.request(engine, conn, line) end }
    return
  end
  if not ok or type(req) ~= "table" or rawget(req, 1) ~= nil then
    return reply(conn, cjson.null, false, { code = "EPARSE", message = "request is not a JSON object" })
  end
  local id = req.id
  if id ~= nil and id ~= cjson.null and not (type(id) == "number" and id == math.floor(id) and math.abs(id) < MAX_ID)
     and not (type(id) == "string" and #id <= MAX_ID_STRING and util.utf8_clean(id) == id) then
    return reply(conn, cjson.null, false, { code = "EINVAL",
      message = string.format("'id' must be an integer below 2^53 or a UTF-8 string of at most %d bytes",
        MAX_ID_STRING) })
  end
  id = id or cjson.null
  local cmd = req.cmd
  local handler = type(cmd) == "string" and (M.STREAMS[cmd] or commands.handlers[cmd])
  if not handler then
    local names = commands.names()
    for name in pairs(M.STREAMS) do names[#names + 1] = name end
    local hint = type(cmd) == "string" and util.did_you_mean(cmd, names) or nil
    return reply(conn, id, false, { code = "ENOCMD",
      message = string.format("unknown command %s%s", type(cmd) == "string" and ("'" .. cmd .. "'") or "(none)",
        hint and (" (did you mean '" .. hint .. "'?)") or "") })
  end
  local args = req.args
  if args == nil or args == cjson.null then args = {} end
  if type(args) ~= "table" or rawget(args, 1) ~= nil then
    return reply(conn, id, false, { code = "EINVAL", message = "'args' must be an object" })
  end
  for k, v in pairs(args) do
    if v == cjson.null then args[k] = nil end -- null is the same as absent
  end
  local answered = false
  local seq = engine.state_seq
  conn:busy(1) -- at most a few requests in progress per connection (core/ctl.c)
  -- after(): once the reply is queued (kill ends the daemon then)
  local function respond(result, code, message, after)
    if answered then return end
    answered = true
    -- What a client has been told is on disk first: a daemon killed right
    -- after this reply must find these processes in the state file. When
    -- the state file could not be written (a full disk) after a change
    -- during the request, the change happened but is not kept: the client
    -- is told, not answered as if all were well. A disk slow to fsync
    -- (seconds, under heavy writes) holds the reply of a command that
    -- changed nothing STATE_WAIT_MS at most; a change waits for the disk
    -- (an OK before it is there would be forgotten by a crash).
    local sent, timer = false, nil
    local function send()
      if sent then return end
      sent = true
      if timer then timer:close() end
      local changed = engine.state_seq ~= seq and not READ_ONLY[cmd]
      if not code and changed and engine.state_error then
        code, message = "EIO", string.format("'%s' done, but not saved: %s (a daemon restarted after a crash "
          .. "would not know it)", cmd, engine.state_error)
      end
      conn:busy(-1) -- done once its reply is queued: a result waiting here counts
      if code then reply(conn, id, false, { code = code, message = message })
      else reply(conn, id, true, result == nil and cjson.null or result) end
      if after then after() end
    end
    engine:flush_state(send)
    if not sent then
      timer = uv.new_timer()
      timer:start(M.STATE_WAIT_MS, 0, function()
        if sent then return end
        local changed = engine.state_seq ~= seq and not READ_ONLY[cmd]
        engine.log("warn", string.format("state file not on disk after %d ms; %s '%s'", M.STATE_WAIT_MS,
          changed and "still waiting for it to answer" or "answering", cmd))
        if not changed then send() end
      end)
    end
  end
  local good, err = xpcall(handler, debug.traceback, engine, args, respond, conn, id)
  if not good then
    engine.log("error", string.format("command '%s' failed: %s", cmd, err))
    respond(nil, "EINTERNAL", "internal error: " .. tostring(err):match("^[^\n]*"))
  end
end

return M
