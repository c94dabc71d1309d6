-- orch.subscribe: the control socket's `subscribe` request: the event
-- records (orch.events) kept since a point, then every new one, as lines on
-- the connection, until it closes. Nothing waits for a subscriber: a line
-- is queued (core/ctl_conn.c never blocks), and a subscriber that leaves
-- more than its bound unread is dropped with a last line saying so
-- (docs/protocol.md, "subscribe").
local cjson = require("cjson").new()
local util = require("orch.util")

local M = {}

M.MAX_QUEUED = 1024 * 1024 -- unread bytes past which a subscriber is dropped
M.MIN_QUEUED = 4096        -- the least a client may ask for (max_queued)
M.MAX_LAST = 1000          -- `last` at most (the ring's size)

-- Each record is encoded once, whatever the number of subscribers: they all
-- get it in the same turn.
local cached_rec, cached_json

local function encode(r)
  if r ~= cached_rec then
    cached_rec, cached_json = r, util.utf8_clean(cjson.encode(r))
  end
  return cached_json
end

-- Lines are queued per subscriber and written once per loop turn: a burst
-- of records (many processes restarting) costs one write per subscriber,
-- not one per record. No timer runs while nothing is queued.
local queued_subs, flush_timer = {}, nil

local function flush()
  local subs = queued_subs
  queued_subs = {}
  for _, q in ipairs(subs) do
    local lines = q.lines
    q.lines, q.bytes = nil, 0
    -- (none when dropped since)
    if lines and not q.conn:closed() then q.conn:send(table.concat(lines)) end
  end
end

local function queue(q, line)
  if not q.lines then
    q.lines = {}
    queued_subs[#queued_subs + 1] = q
    if not flush_timer then
      flush_timer = require("luv").new_timer()
      flush_timer:unref() -- never what keeps a loop running
    end
    if not flush_timer:is_active() then flush_timer:start(0, 0, flush) end
  end
  q.lines[#q.lines + 1] = line
  q.bytes = q.bytes + #line
end

local function id_json(id)
  if type(id) == "number" then return string.format("%.0f", id) end
  return cjson.encode(id)
end

-- The filter of a request's target and kind (orch.events.matcher), or nil,
-- message, code. A target of one process by its id follows that id; any
-- other follows the apps it names now (their future instances too).
local function filter_of(engine, args)
  local filter = {}
  if args.kind ~= nil then
    local kinds = type(args.kind) == "table" and args.kind or { args.kind }
    for _, k in ipairs(kinds) do
      if type(k) ~= "string" then return nil, "'kind' must be a string or a list of strings", "EINVAL" end
    end
    filter.kind = kinds
  end
  local target = args.target
  if target ~= nil and target ~= "all" then
    if type(target) ~= "string" and type(target) ~= "number" then
      return nil, "'target' must be a string", "EINVAL"
    end
    target = tostring(target)
    local procs, err, code = engine:resolve(target, { cwd = args.cwd })
    if not procs then return nil, err, code end
    if #procs == 1 and tostring(procs[1].id) == target and procs[1].name ~= target then
      filter.id = procs[1].id
    else
      local names = {}
      for _, p in ipairs(procs) do names[#names + 1] = p.name end
      filter.app = names
    end
  end
  return filter
end

local function count(v, name, min, max)
  if v == nil then return true end
  if type(v) ~= "number" or v ~= math.floor(v) or v < min or v > max then
    return nil, string.format("'%s' must be an integer from %d to %d", name, min, max)
  end
  return true
end

-- Checks the arguments: a table for start(), or nil, message, code.
function M.parse(engine, args)
  for _, c in ipairs({ { "since", 0, 2 ^ 53 }, { "since_ms", 0, 2 ^ 53 }, { "last", 0, M.MAX_LAST },
                       { "max_queued", M.MIN_QUEUED, M.MAX_QUEUED } }) do
    local ok, err = count(args[c[1]], c[1], c[2], c[3])
    if not ok then return nil, err, "EINVAL" end
  end
  local filter, err, code = filter_of(engine, args)
  if not filter then return nil, err, code end
  if args.follow ~= nil and type(args.follow) ~= "boolean" then
    return nil, "'follow' must be a boolean", "EINVAL"
  end
  return { filter = filter, since = args.since, since_ms = args.since_ms, last = args.last,
           max_queued = args.max_queued or M.MAX_QUEUED, follow = args.follow ~= false }
end

-- The subscriptions of each connection, to end them when it closes.
local function subs_of(engine, conn)
  engine.subscribers = engine.subscribers or setmetatable({}, { __mode = "k" })
  local list = engine.subscribers[conn]
  if not list then
    list = {}
    engine.subscribers[conn] = list
  end
  return list
end

-- Sends the backlog and subscribes conn (request id) per sub (M.parse).
function M.start(engine, conn, id, sub)
  if conn:closed() then return end
  local ring = engine.events
  local prefix = '{"id":' .. id_json(id) .. ',"event":'
  local q = { conn = conn, bytes = 0 }
  local unsubscribe
  local function drop(queued)
    unsubscribe()
    q.lines = nil -- dropped lines are not written (flush skips it)
    local pid = conn:peer()
    engine.log("warn", string.format("event subscriber (pid %d) dropped: %d bytes unread", pid, queued))
    conn:send('{"id":' .. id_json(id) .. ',"ok":false,"error":' .. cjson.encode({ code = "EDROPPED",
      message = string.format("dropped: %d bytes of events unread (more than %d)", queued, sub.max_queued) })
      .. "}\n")
    conn:finish()
  end
  local function send(r)
    if conn:closed() then return unsubscribe() end
    local queued = conn:pending() + q.bytes
    if queued > sub.max_queued then return drop(queued) end
    queue(q, prefix .. encode(r) .. "}\n")
  end
  -- what is kept since the point asked for, then what comes: no gap, no
  -- repeat (both in this turn)
  local backlog
  if sub.since then
    backlog = ring:since(sub.since, sub.filter)
  elseif sub.since_ms then
    backlog = ring:since({ time = sub.since_ms }, sub.filter)
  elseif sub.last and sub.last > 0 then
    backlog = ring:since(0, sub.filter)
    if #backlog > sub.last then backlog = { unpack(backlog, #backlog - sub.last + 1) } end
  end
  if not sub.follow then
    -- the backlog alone, then EOF
    unsubscribe = function() end
    for _, r in ipairs(backlog or {}) do send(r) end
    flush()
    return conn:finish()
  end
  unsubscribe = ring:subscribe(send, sub.filter)
  local list = subs_of(engine, conn)
  list[#list + 1] = unsubscribe
  for _, r in ipairs(backlog or {}) do
    send(r)
    if conn:closed() then break end
  end
end

-- The request's handler (orch.control): the reply {subscribed = true}, then
-- the records as lines {"id": ID, "event": RECORD}.
function M.handler(engine, args, respond, conn, id)
  local sub, err, code = M.parse(engine, args)
  if not sub then return respond(nil, code, err) end
  respond({ subscribed = true }, nil, nil, function() M.start(engine, conn, id, sub) end)
end

-- The connection closed: its subscriptions end.
function M.closed(engine, conn)
  local list = engine.subscribers and engine.subscribers[conn]
  if not list then return end
  engine.subscribers[conn] = nil
  for _, unsubscribe in ipairs(list) do unsubscribe() end
end

return M
