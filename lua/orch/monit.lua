-- orch.monit: `orch monit`, a terminal dashboard: every process with its
-- status, restarts, CPU and memory (whole tree, as `orch list` reports
-- them) and their recent history, the selected process's logs and events,
-- and keys to act on it. A client like any other: it asks for `list` once a
-- second over one connection (the daemon samples /proc at most once a
-- second per process anyway, orch.views), reads the log files itself, and
-- costs the daemon nothing when nobody watches.
--
-- Every way out restores the terminal (orch.monitterm): q, Ctrl-C,
-- SIGTERM/SIGHUP/SIGINT, an error in monit's own code (each callback runs
-- guarded: the error ends the loop, the terminal is restored, then the
-- traceback is printed).
local uv = require("luv")
local client = require("orch.client")
local paths = require("orch.paths")
local conn_ = require("orch.monitconn")
local term_ = require("orch.monitterm")
local view = require("orch.monitview")
local logs_ = require("orch.monitlogs")
local decode = require("orch.lineedit").decode

local M = {}

M.HELP = [[
Every process with its status, restarts, CPU and memory (its whole process
tree) and their history over the last minute; below, the selected process's
log lines as they come and its recent events. FILTER (or / on the screen)
shows only the processes whose name or namespace holds it.

keys:  Up/Down (j/k)  select      r  restart     R  reload (zero-downtime)
       Home/End (g/G)             s  stop        S  start
       / filter (Enter keeps it, Esc clears it)  + / -  one instance more / fewer
       Ctrl-L redraw   Ctrl-Z suspend   q or Ctrl-C  quit

--ascii     no UTF-8 glyphs (the default when the locale is not UTF-8)
--no-color  no colours (also when NO_COLOR is set)
]]

M.INTERVAL_MS = 1000 -- how often `list` is asked
M.LOG_POLL_MS = 250 -- how often the selected process's log files are looked at
M.EVENTS_MS = 2000 -- how often its events are asked (describe's transitions)
M.HISTORY = 60 -- samples kept per process for the sparklines
M.MESSAGE_MS = 6000 -- how long a message stays in the bottom line
M.ESC_MS = 50 -- a lone Esc: no sequence followed within this time

local function now_ms()
  local sec, usec = uv.gettimeofday()
  return sec * 1000 + math.floor(usec / 1000)
end

-- The words of an action's messages: verb → { doing, done }.
local WORDS = {
  restart = { "restarting", "restarted" }, reload = { "reloading", "reloaded" }, stop = { "stopping", "stopped" },
  start = { "starting", "started" }, scale = { "scaling", "scaled" },
}

local Monit = {}
Monit.__index = Monit

function Monit:guard(fn)
  return function(...)
    if self.crash or self.done then return end
    local ok, err = xpcall(fn, debug.traceback, ...)
    if not ok then
      self.crash = err
      uv.stop()
    end
  end
end

function Monit:quit(status)
  self.exit_status = status
  self.done = true
  uv.stop()
end

function Monit:say(text, is_error)
  self.v.message, self.v.message_error = text, is_error
  self.message_until = now_ms() + M.MESSAGE_MS
end

function Monit:selected()
  return self.v.procs[self.v.sel]
end

-- Which processes the filter lets through (name, namespace, or id).
local function matches(p, filter)
  if filter == "" then return true end
  local f = filter:lower()
  return p.name:lower():find(f, 1, true) ~= nil or (p.namespace or ""):lower():find(f, 1, true) ~= nil
    or tostring(p.id) == filter
end

-- Applies the filter and keeps the same process selected when it is there.
function Monit:apply_filter()
  local v = self.v
  v.procs = {}
  for _, p in ipairs(v.all) do
    if matches(p, v.filter) then v.procs[#v.procs + 1] = p end
  end
  v.sel = 1
  for i, p in ipairs(v.procs) do
    if p.id == self.sel_id then v.sel = i end
  end
  if v.sel > #v.procs then v.sel = math.max(1, #v.procs) end
  self:selection_changed()
end

function Monit:on_list(procs)
  local v = self.v
  table.sort(procs, function(a, b) return a.id < b.id end)
  local per_name, alive = {}, {}
  for _, p in ipairs(procs) do per_name[p.name] = (per_name[p.name] or 0) + 1 end
  for _, p in ipairs(procs) do
    p.label = per_name[p.name] > 1 and (p.name .. ":" .. p.instance) or p.name
    alive[p.id] = true
    local h = v.history[p.id] or { cpu = {}, mem = {} }
    v.history[p.id] = h
    h.cpu[#h.cpu + 1] = tonumber(p.cpu) or 0
    h.mem[#h.mem + 1] = tonumber(p.memory) or 0
    if #h.cpu > M.HISTORY then table.remove(h.cpu, 1) table.remove(h.mem, 1) end
  end
  for id in pairs(v.history) do
    if not alive[id] then v.history[id] = nil end
  end
  v.all = procs
  self:apply_filter()
end

-- The selection moved (or its process came or went): its logs and events.
function Monit:selection_changed()
  local p = self:selected()
  local id = p and p.id
  if id == self.shown_id then return end
  self.shown_id, self.sel_id = id, id or self.sel_id
  self.follower, self.v.logs, self.v.events = nil, {}, {}
  if not id then return end
  self:show_records()
  self.conn:request("logs", { target = tostring(id) }, self:guard(function(result)
    if self.shown_id ~= id or not result or not result[1] then return end
    self.follower = logs_.follow(result[1], 200)
    self.v.logs = self.follower.lines
    self:render()
  end))
  self:ask_events()
end

-- Events come from the daemon's event stream (`subscribe`: every record,
-- kept here per process and per app) or, from a daemon without it,
-- describe's transitions of the selected process, asked every EVENTS_MS.
M.KEEP_RECORDS = 50 -- per process, and per app for the app's own records

local function keep(t, key, r)
  local list = t[key] or {}
  t[key] = list
  list[#list + 1] = r
  if #list > M.KEEP_RECORDS * 2 then
    local n = #list - M.KEEP_RECORDS
    for k = 1, M.KEEP_RECORDS do list[k] = list[n + k] end
    for k = #list, M.KEEP_RECORDS + 1, -1 do list[k] = nil end
  end
end

-- The selected process's records (and its app's), oldest first.
function Monit:show_records()
  if not self.live then return end
  local p = self:selected()
  if not p then return end
  local out = {}
  for _, r in ipairs(self.by_id[p.id] or {}) do out[#out + 1] = r end
  for _, r in ipairs(self.by_app[p.name] or {}) do out[#out + 1] = r end
  table.sort(out, function(a, b) return (a.seq or 0) < (b.seq or 0) end)
  self.v.events = out
end

-- What changes the table: a record of these kinds asks for `list` at once.
local MOVES = { start = true, online = true, exit = true, errored = true, stopping = true, stopped = true,
                restart = true, scale = true, config = true, reload = true, health = true }

function Monit:on_record(r)
  if type(r) ~= "table" then return end
  if r.id ~= nil and r.id ~= conn_.null then keep(self.by_id, r.id, r)
  elseif type(r.app) == "string" then keep(self.by_app, r.app, r) end
  self:show_records()
  if MOVES[r.kind] then self:refresh() end
  self:render_soon()
end

function Monit:subscribe()
  -- the newest records kept, again after a reconnection (to what may be
  -- a new daemon, whose records are numbered anew)
  self.by_id, self.by_app = {}, {}
  self.conn:request("subscribe", { follow = true, last = 1000 }, self:guard(function(result, _, code)
    if result then
      self.live = true
      self:show_records()
    elseif code == "ENOCMD" then
      self.live = false -- an orch without the event stream
      self:ask_events()
    end
  end), self:guard(function(r) self:on_record(r) end))
end

-- Recent events of the selected process from describe: its transitions
-- (the last ten), and the last restart a trigger asked for.
function Monit:ask_events()
  local id = self.shown_id
  if self.live ~= false or not id or self.conn:pending(self.events_req) then return end
  self.events_req = self.conn:request("describe", { target = tostring(id) }, self:guard(function(result)
    if self.shown_id ~= id or not result or not result[1] then return end
    local d, null = result[1], conn_.null
    local events = {}
    for _, t in ipairs(d.transitions ~= null and d.transitions or {}) do events[#events + 1] = t end
    local cause = d.restart_cause
    if cause ~= nil and cause ~= null and type(cause.at) == "number" then
      events[#events + 1] = { at = cause.at, event = "cause", detail = cause.why }
      table.sort(events, function(a, b) return (a.at or 0) < (b.at or 0) end)
    end
    self.v.events = events
    self:render()
  end))
end

function Monit:refresh()
  if self.conn.closed then return self:reconnect() end
  if self.conn:pending(self.list_req) then return end
  self.list_req = self.conn:request("list", {}, self:guard(function(result, err)
    if not result then
      self.v.problem = err
    else
      self.v.problem = nil
      self:on_list(result)
    end
    self:render()
  end))
end

function Monit:reconnect()
  self.conn = conn_.open(self.sock, self:guard(function(why)
    self.v.problem = "orch is not reachable (" .. why .. "); trying again"
    self.shown_id = nil
    self:render()
  end))
  self:subscribe()
  self:refresh()
end

function Monit:act(verb, args, what)
  local words = WORDS[verb]
  self:say(string.format("%s %s ...", words[1], what))
  self:render()
  self.conn:request(verb, args, self:guard(function(result, err)
    if result then self:say(string.format("%s %s", words[2], what))
    else self:say(string.format("%s %s: %s", verb, what, err), true) end
    self:refresh()
    self:render()
  end))
end

function Monit:act_on_selected(verb)
  local p = self:selected()
  if not p then return self:say("no process selected", true) end
  -- a target of digits names an app or namespace of that name before an id
  -- (PM2's order, orch.targets): then the id cannot name this process alone
  local id = tostring(p.id)
  for _, o in ipairs(self.v.all) do
    if o.name == id or o.namespace == id then
      return self:say(string.format("not done: '%s' names an app or namespace, not only process %s", id, id), true)
    end
  end
  self:act(verb, { target = id }, string.format("%s (id %d)", p.label or p.name, p.id))
end

function Monit:scale(delta)
  local p = self:selected()
  if not p then return self:say("no process selected", true) end
  self:act("scale", { name = p.name, delta = delta }, string.format("%s by %+d", p.name, delta))
end

function Monit:move(to)
  local v = self.v
  v.sel = math.max(1, math.min(#v.procs, to))
  local p = self:selected()
  if p then self.sel_id = p.id end
  self:selection_changed()
end

-- A key while the filter is typed.
function Monit:filter_key(k)
  local v = self.v
  if k == "enter" then v.filter_editing = false
  elseif k == "escape" or k == "interrupt" then v.filter, v.filter_editing = "", false
  elseif k == "backspace" then v.filter = v.filter:sub(1, -2):gsub("[\192-\255][\128-\191]*$", "")
  elseif k == "kill_start" then v.filter = ""
  elseif #k == 1 then v.filter = v.filter .. k
  end
  self:apply_filter()
end

function Monit:key(k)
  local v = self.v
  if v.filter_editing then return self:filter_key(k) end
  if k == "q" or k == "interrupt" or k == "eof_or_delete" then return self:quit(0)
  elseif k == "up" or k == "k" then self:move(v.sel - 1)
  elseif k == "down" or k == "j" then self:move(v.sel + 1)
  elseif k == "home" or k == "g" then self:move(1)
  elseif k == "end" or k == "G" then self:move(#v.procs)
  elseif k == "r" then self:act_on_selected("restart")
  elseif k == "R" then self:act_on_selected("reload")
  elseif k == "s" then self:act_on_selected("stop")
  elseif k == "S" then self:act_on_selected("start")
  elseif k == "+" then self:scale(1)
  elseif k == "-" then self:scale(-1)
  elseif k == "/" then v.filter_editing = true
  elseif k == "escape" then v.message = nil
  elseif k == "clear" then self.term:invalidate()
  elseif k == "suspend" then self.term:suspend()
  end
end

function Monit:input(data)
  if not data then return self:quit(0) end -- the terminal went away
  self.pending = self.pending .. data
  while self.pending ~= "" do
    local k, n = decode(self.pending)
    if not k then break end
    self.pending = self.pending:sub(n + 1)
    self:key(k)
    if self.done then return end
  end
  if self.pending == "\27" then
    -- Esc alone, or the start of a sequence still on its way
    self.esc_timer:start(M.ESC_MS, 0, self:guard(function()
      if self.pending == "\27" then
        self.pending = ""
        self:key("escape")
        self:render()
      end
    end))
  end
  self:render()
end

-- A frame soon: many records in a row (the backlog) make one.
function Monit:render_soon()
  if self.soon:is_active() then return end
  self.soon:start(20, 0, self:guard(function() self:render() end))
end

function Monit:render()
  if self.done or self.crash then return end
  local v = self.v
  v.now = now_ms()
  if v.message and self.message_until and v.now > self.message_until then v.message = nil end
  local cols, rows = self.term:size()
  self.term:draw(view.build(v, cols, rows))
end

function Monit:run()
  local function every(ms, fn)
    local t = uv.new_timer()
    t:start(ms, ms, self:guard(fn))
    self.handles[#self.handles + 1] = t
  end
  self.esc_timer, self.soon = uv.new_timer(), uv.new_timer()
  self.handles[#self.handles + 1] = self.esc_timer
  self.handles[#self.handles + 1] = self.soon
  every(M.INTERVAL_MS, function() self:refresh() end)
  every(M.LOG_POLL_MS, function()
    if self.follower and self.follower:poll() then self:render() end
  end)
  every(M.EVENTS_MS, function() self:ask_events() end)
  local codes = { sigterm = 143, sighup = 129, sigint = 130 }
  for _, name in ipairs({ "sigterm", "sighup", "sigint", "sigwinch" }) do
    local h = uv.new_signal()
    h:start(name, self:guard(function()
      if name == "sigwinch" then
        self.term:invalidate()
        return self:render()
      end
      self:quit(codes[name])
    end))
    self.handles[#self.handles + 1] = h
  end
  self:reconnect()
  self:render()
  uv.run("default")
end

function Monit:close()
  for _, h in ipairs(self.handles) do
    if not h:is_closing() then h:close() end
  end
  if self.conn then self.conn:close() end
  self.term:restore()
  uv.run("nowait") -- lets the handles finish closing
end

function M.main(p)
  local o = p.opts
  -- starts the daemon when none runs, as other verbs do
  local c, err = client.connect(true)
  if not c then
    io.stderr:write("orch monit: ", err, "\n")
    return 1
  end
  c:close()
  local utf8 = not o.ascii and term_.utf8_locale()
  local no_colour = os.getenv("NO_COLOR")
  local self = setmetatable({
    sock = paths.layout(assert(paths.home())).sock, handles = {}, pending = "", by_id = {}, by_app = {},
    v = { all = {}, procs = {}, sel = 1, history = {}, filter = p.positional[1] or "", utf8 = utf8,
          glyphs = view.GLYPHS[utf8 and "utf8" or "ascii"], null = conn_.null, now = now_ms(),
          colour = not o["no-color"] and (no_colour == nil or no_colour == "") },
  }, Monit)
  local term, terr = term_.open(self:guard(function(data) self:input(data) end))
  if not term then
    io.stderr:write("orch monit: ", terr, "\n")
    return 1
  end
  self.term = term
  local ok, rerr = xpcall(self.run, debug.traceback, self)
  self:close()
  local crash = self.crash or (not ok and rerr)
  if crash then
    io.stderr:write("orch monit: ", tostring(crash), "\n")
    return 1
  end
  return self.exit_status or 0
end

return M
