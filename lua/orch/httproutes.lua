-- orch.httproutes: what orch's HTTP endpoint serves (docs/http.md): probes
-- for Kubernetes (/healthz, /readyz), Prometheus metrics (/metrics), the
-- process list and the state-changing actions a dashboard needs (through
-- the control protocol's own request path, so they queue, save and answer
-- as a CLI's would). routes(engine) returns the route list orch.httpserve
-- installs; every method but GET needs the token.
local cjson = require("cjson").new()
local metrics = require("orch.metrics")

local M = {}

-- What blocks readiness for p (a string), or nil when p is ready: online
-- and, with a health check, healthy. Stopped processes need not run.
local function not_ready(engine, p)
  local label = engine.sup:label(p)
  if p.status == "stopped" then return nil end
  if p.status ~= "online" then return label .. " is " .. p.status end
  if p.app.health and not (p.health_state and p.health_state.status == "healthy") then
    return label .. " is not healthy yet (health: " .. (p.health_state and p.health_state.status or "starting") .. ")"
  end
  return nil
end

-- GET /readyz[?app=A&app=B]: 200 "ready" when every process that should run
-- (of the apps named, else of all) is online and healthy; 503 and why.
local function readyz(engine, req, res)
  if engine.recovering then
    return res:send(503, "not ready: orch is still looking for (and stopping) what a previous daemon left running\n")
  end
  local names, reasons = req.query.app, {}
  local procs = {}
  if names then
    for _, name in ipairs(names) do
      local mine = engine:procs_of(name)
      if #mine == 0 then reasons[#reasons + 1] = "no app named '" .. name .. "'" end
      for _, p in ipairs(mine) do
        procs[#procs + 1] = p
        if p.status == "stopped" then reasons[#reasons + 1] = engine.sup:label(p) .. " is stopped" end
      end
    end
  else
    procs = engine.sup:list()
  end
  for _, p in ipairs(procs) do reasons[#reasons + 1] = not_ready(engine, p) end
  if #reasons > 0 then return res:send(503, "not ready: " .. table.concat(reasons, "; ") .. "\n") end
  res:send(200, "ready\n")
end

-- An HTTP status for a control error code.
local STATUS = { ENOTFOUND = 404, EINVAL = 400, ECONFIG = 400, ERECOVERING = 503, EINTERNAL = 500, EIO = 500 }

-- Runs control command cmd with args as a control client would, and
-- answers with its reply line (JSON: {id, ok, result | error}).
local function command(engine, cmd, args, res)
  local conn = {
    closed = function() return res:gone() end,
    busy = function() end,
    send = function(_, line)
      local ok, reply = pcall(cjson.decode, line)
      local code = ok and type(reply) == "table" and type(reply.error) == "table" and reply.error.code
      res:send(code and (STATUS[code] or 409) or 200, line, { ["Content-Type"] = "application/json" })
    end,
  }
  require("orch.control").request(engine, conn, cjson.encode({ cmd = cmd, args = args }))
end

-- POST /api/ACTION?target=T (or a JSON body {"target": T}).
local function action(engine, cmd)
  return function(req, res)
    local target = req:param("target")
    if not target and req.body ~= "" then
      local ok, body = pcall(cjson.decode, req.body)
      target = ok and type(body) == "table" and body.target or nil
    end
    if type(target) ~= "string" or target == "" then
      return res:send(400, '{"ok":false,"error":{"code":"EINVAL","message":"name a target: ?target=NAME"}}',
        { ["Content-Type"] = "application/json" })
    end
    command(engine, cmd, { target = target }, res)
  end
end

-- GET /events[?app=NAME...][&since=SEQ]: the event ring (orch.events) as
-- server-sent events, one per record: data is the record as JSON, id its
-- seq. A client reconnecting with Last-Event-ID (EventSource does), or
-- since=SEQ, first gets the records kept after that seq.
local function events(engine, req, res)
  local ring = engine.events
  local filter = req.query.app and { app = req.query.app } or nil
  local after = tonumber(req.headers["last-event-id"] or req:param("since") or "")
  local stream = res:sse()
  local function send(r) return stream:send(nil, cjson.encode(r), r.seq) end
  if after then
    for _, r in ipairs(ring:since(after, filter)) do
      if not send(r) then return end
    end
  end
  stream:on_close(ring:subscribe(send, filter))
end

function M.routes(engine)
  local m = metrics.new(engine)
  return {
    { "GET", "/healthz", function(_, res) res:send(200, "ok\n") end },
    { "GET", "/readyz", function(req, res) readyz(engine, req, res) end },
    { "GET", "/metrics", function(_, res)
      res:send(200, m:render(),
        { ["Content-Type"] = "text/plain; version=0.0.4; charset=utf-8" })
    end },
    { "GET", "/api/processes", function(_, res) command(engine, "list", {}, res) end },
    { "GET", "/events", function(req, res) events(engine, req, res) end },
    { "POST", "/api/restart", action(engine, "restart") },
    { "POST", "/api/stop", action(engine, "stop") },
    { "POST", "/api/start", action(engine, "start") },
    { "POST", "/api/reload", action(engine, "reload") },
  }
end

return M
