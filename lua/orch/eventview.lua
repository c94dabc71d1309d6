-- orch.eventview: `orch events`, and the event lines of `orch logs
-- --events`: a subscribe request (docs/protocol.md, "subscribe") on a
-- connection of luv's loop, so that its lines and log files are followed
-- together; Ctrl-C ends it.
local client = require("orch.client")
local eventlog = require("orch.eventlog")
local cjson = require("cjson").new()

local M = {}

M.LAST = 20 -- records shown before following, without --since

-- Subscribes with args (the request's) and calls on_event(record) for each
-- record that comes, on_end(message) when the stream ends (nil: EOF after
-- the backlog, when follow = false). Returns the luv pipe, or nil, message.
function M.stream(args, on_event, on_end)
  local uv = require("luv")
  -- the blocking client starts a daemon if there is none
  local c, err = client.connect(true)
  if not c then return nil, err end
  c:close()
  local paths = require("orch.paths")
  local sock = paths.layout((paths.home())).sock
  local pipe = uv.new_pipe(false)
  local buf, acked, ended = "", false, false
  local function finish(msg)
    if ended then return end
    ended = true
    if not pipe:is_closing() then pipe:close() end
    on_end(msg)
  end
  local function line(l)
    local ok, msg = pcall(cjson.decode, l)
    if not ok or type(msg) ~= "table" then return finish("unreadable line from orch: " .. l:sub(1, 200)) end
    if msg.event then return on_event(msg.event) end
    if msg.ok == false then
      local e = type(msg.error) == "table" and msg.error or {}
      return finish(tostring(e.message or e.code or "error"))
    end
    acked = true
  end
  pipe:connect(sock, function(cerr)
    if cerr then return finish("cannot connect to " .. sock .. ": " .. cerr) end
    pipe:write(cjson.encode({ id = 1, cmd = "subscribe", args = args }) .. "\n")
    pipe:read_start(function(rerr, chunk)
      if rerr or not chunk then
        if args.follow == false and acked then return finish(nil) end
        return finish(rerr and ("connection to orch lost: " .. rerr) or "orch closed the connection")
      end
      buf = buf .. chunk
      for l in buf:gmatch("([^\n]*)\n") do
        if ended then return end
        line(l)
      end
      buf = buf:match("([^\n]*)$")
    end)
  end)
  return pipe
end

-- Milliseconds now, Unix.
local function now_ms()
  local sec, usec = require("luv").gettimeofday()
  return sec * 1000 + math.floor(usec / 1000)
end

-- The subscribe arguments of `orch events`/`logs --events`: target, and
-- --since DURATION (else the last n). nil, message for a bad duration.
function M.args(target, since, n)
  local args = { target = target, cwd = require("orch.util").getcwd() }
  if since then
    local ms, err = require("orch.util").parse_duration(since)
    if not ms then return nil, "option '--since': " .. err end
    args.since_ms = math.max(0, now_ms() - ms)
  else
    args.last = n or M.LAST
  end
  return args
end

-- A record as `orch events` prints it.
function M.line(r)
  return eventlog.clock(r) .. "  " .. eventlog.text(r)
end

function M.main(p)
  local uv = require("luv")
  local o = p.opts
  local args, aerr = M.args(p.positional[1], o.since)
  if not args then
    io.stderr:write("orch events: ", aerr, "\n")
    return 2
  end
  local status = 0
  local pipe, err = M.stream(args, function(r)
    if o.json then
      io.stdout:write(cjson.encode(r), "\n")
    else
      io.stdout:write(M.line(r), "\n")
    end
    io.stdout:flush()
  end, function(msg)
    if msg then
      io.stderr:write("orch events: ", msg, "\n")
      status = 1
    end
    uv.stop()
  end)
  if not pipe then
    io.stderr:write("orch events: ", err, "\n")
    return 1
  end
  local sig = uv.new_signal()
  sig:start("sigint", function() uv.stop() end)
  uv.run()
  sig:close()
  if not pipe:is_closing() then pipe:close() end
  return status
end

return M
