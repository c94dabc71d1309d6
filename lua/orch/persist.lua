-- orch.persist: what outlives the daemon. The dump (orch save/resurrect)
-- and the state file, kept current so that a daemon started after a SIGKILL
-- knows what ran (orch.recovery reads it). Methods of the engine
-- (orch.engine mixes them in): they read its apps and process table.
local core = require("orch.core")
local uv = require("luv")
local cjson = require("cjson").new()
local state = require("orch.state")
local key_of = require("orch.targets").key
local sources = require("orch.sources")

local M = {}
local E = {} -- engine methods
M.methods = E
-- The apps as data: one entry per app with its source, whether it ran, its
-- number of instances (orch scale changes it) and which of them are stopped
-- (a stopped process stays stopped through a resurrect or a crash).
-- A copy of v that JSON can hold: functions (hooks in a spec given to
-- orch.start) cannot be saved and are left out; `dropped` counts them.
function M.plain(v, dropped)
  if type(v) == "function" or type(v) == "userdata" or type(v) == "thread" then
    dropped.n = dropped.n + 1
    return nil
  end
  if type(v) ~= "table" then return v end
  local out = {}
  for k, x in pairs(v) do out[k] = M.plain(x, dropped) end
  return out
end

-- The plain copy of each source, shared by every app of the source (a start
-- of 100 apps from one file made 100 copies of the CLI's environment:
-- ~2 kB of tables per app, and as much again in its JSON), made again once
-- its env is replaced. Weak: a source no app holds goes.
local copies = setmetatable({}, { __mode = "k" })

local function plain_of(source)
  local c = copies[source]
  if not (c and c.env == source.env) then
    local dropped = { n = 0 }
    c = { env = source.env, plain = M.plain(source, dropped), dropped = dropped.n }
    copies[source] = c
  end
  return c.plain, c.dropped
end

-- One pass over the process table, then one over each app's processes: it
-- runs on every loop turn that changed something, and a walk of the table
-- per app made that quadratic in the number of apps.
function E:snapshot()
  local of, order, running = {}, {}, {}
  for _, p in ipairs(self.sup:list()) do
    local key = key_of(p) -- its name, but for a second app of a name (orch start -f)
    if not of[key] then
      of[key] = {}
      order[#order + 1] = key
    end
    table.insert(of[key], p)
    if self:is_running(p) then running[key] = true end
  end
  local list = {}
  for _, key in ipairs(order) do
    local entry, name = self.apps[key], of[key][1].name
    if entry then
      -- copied once per source (its env is the whole environment of a CLI;
      -- orch restart --update-env replaces it): plain_of keeps the copy
      local plain, dropped = plain_of(entry.source)
      if dropped > 0 and not entry.warned_lossy then
        entry.warned_lossy = true
        self.log("warn", string.format("%s: %d Lua function(s) in its options cannot be saved; "
          .. "a resurrect or a restart after a crash starts it without them", name, dropped))
      end
      -- stopped: ranks in instance order, which a restore numbers from 0
      -- (after a scale down the numbers may start higher)
      local procs, stopped = of[key], {}
      table.sort(procs, function(a, b) return a.instance < b.instance end)
      for i, p in ipairs(procs) do
        if p.status == "stopped" then stopped[#stopped + 1] = i - 1 end
      end
      list[#list + 1] = { name = name, key = key ~= name and key or nil, source = plain,
                          running = running[key] == true, instances = entry.app.instances, stopped = stopped }
    end
  end
  return list
end

function E:save_state_soon()
  if self.state_timer or not self.paths.state then return end
  self.state_timer = uv.new_timer()
  self.state_timer:start(0, 0, function()
    self.state_timer:close()
    self.state_timer = nil
    self:save_state()
  end)
end

-- done() once the state as it is now is written (or failed: state_error).
function E:flush_state(done)
  if self.state_timer then
    self.state_timer:close()
    self.state_timer = nil
    self:save_state()
  end
  if not self.state_writer then return done() end
  self.state_writer.flush(function() done() end)
end

-- Written off the loop thread (orch.state.writer); clean: the last write of
-- an orch that stopped its processes and exits, written at once, and the
-- next orch then starts with nothing (a crash leaves clean unset).
-- The state file's text: { pid, apps = snapshot, procs = the running
-- ones, clean }, made of the JSON of each app entry and each process, kept
-- on them with what it was made of: a write encodes (and reads the start
-- time from /proc of) only what changed since the previous one. A restart
-- of one of 1000 apps encoded all 1000 sources, several times.
-- An app's JSON is its source's, encoded once per source copy and shared by
-- the apps of that source, spliced into the JSON of the rest of the entry.
local source_json = setmetatable({}, { __mode = "k" })

local function entry_json(e)
  local src = source_json[e.source]
  if not src then
    src = cjson.encode(e.source)
    source_json[e.source] = src
  end
  local rest = {}
  for k, v in pairs(e) do
    if k ~= "source" then rest[k] = v end
  end
  -- rest holds name, running, instances and stopped: never "{}"
  return { '{"source":', src, "," .. cjson.encode(rest):sub(2) }
end

function E:state_text(clean)
  local apps, procs = {}, {}
  for _, e in ipairs(self:snapshot()) do
    local entry = self.apps[e.key or e.name]
    local sig = table.concat({ e.name, e.key or "", tostring(e.running), tostring(e.instances),
                               table.concat(e.stopped, ",") }, "|")
    local c = entry and entry.state_text
    if not (c and c.source == e.source and c.sig == sig) then
      c = { source = e.source, sig = sig, parts = entry_json(e) }
      if entry then entry.state_text = c end
    end
    if #apps > 0 then apps[#apps + 1] = "," end
    for _, s in ipairs(c.parts) do apps[#apps + 1] = s end
  end
  for _, p in ipairs(self.sup:list()) do
    if p.pid and self:is_running(p) then
      local c = p.state_text
      -- started_at: a new run, though the kernel may give it the same pid
      if not (c and c.pid == p.pid and c.started == p.started_at and c.id == p.id and c.name == p.name
              and c.app == p.app) then
        local starttime = core.proc_starttime(p.pid)
        c = { pid = p.pid, started = p.started_at, id = p.id, name = p.name, app = p.app,
              text = cjson.encode({ id = p.id, name = p.name, pid = p.pid, starttime = starttime,
                                    kill_signal = p.app.kill_signal, kill_timeout = p.app.kill_timeout }) }
        if starttime then p.state_text = c end -- a process already gone: asked again next time
      end
      procs[#procs + 1] = c.text
    end
  end
  return table.concat({ '{"pid":', tostring(core.getpid()), ',"apps":[', table.concat(apps), '],"procs":[',
                        table.concat(procs, ","), "]", clean and ',"clean":true' or "", "}" })
end

-- The state as it is when its write begins: while one write is in
-- progress, any number of changes cost one snapshot and encoding after it
-- (per change, a start of N processes encoded the whole table N times).
function E:save_state(clean)
  local function value() return self:state_text(clean) end
  -- counted, so that a command whose change was not kept says so (orch.control)
  self.state_seq = (self.state_seq or 0) + 1
  local function written(ok, err)
    self.state_error = not ok and err or nil
    if not ok then self.log("error", "state file not written: " .. tostring(err)) end
  end
  if clean then return written(state.write_json(self.paths.state, value(), true)) end
  self.state_writer = self.state_writer or state.writer(self.paths.state)
  self.state_writer.write(value, written)
end

-- Which instances of a snapshot's entry stay stopped: its `stopped` list
-- (a dump written before there was one: all of them when it did not run).
local function stopped_set(e, instances)
  local set = {}
  if type(e.stopped) == "table" then
    for _, i in ipairs(e.stopped) do set[i] = true end
  elseif not e.running then
    for i = 0, instances - 1 do set[i] = true end
  end
  return set
end

-- Brings back the apps of a snapshot (from the dump or the state file) as
-- they were: their instance count, their running processes started, their
-- stopped ones registered but stopped. Apps whose name is already known are
-- left alone. Returns started (apps with a process started), stopped (apps
-- restored stopped), errors.
-- An entry's key: its name, or the key of a second app of that name
-- ("NAME#N"; anything else is not one).
local function entry_key(e)
  if type(e.key) == "string" and e.key:match("^(.*)#%d+$") == e.name then return e.key end
  return e.name
end

-- adopt(procs): instead of starting them, what becomes of an app's
-- registered processes (orch update takes over the running ones).
function E:restore(entries, adopt)
  local by_source, order, by_key = {}, {}, {}
  for _, e in ipairs(entries or {}) do
    if type(e) == "table" and type(e.name) == "string" and type(e.source) == "table"
       and not self.apps[entry_key(e)] and not by_key[entry_key(e)] then
      by_key[entry_key(e)] = e
      local skey = cjson.encode(e.source)
      if not by_source[skey] then
        by_source[skey] = { source = e.source, keys = {} }
        order[#order + 1] = skey
      end
      table.insert(by_source[skey].keys, entry_key(e))
    end
  end
  local started, stopped, errors = {}, {}, {}
  local function bring(app, e, source)
    local n = e.instances
    if type(n) == "number" and n == math.floor(n) and n >= 1 and n <= 1024 then app.instances = n end
    local down, start = stopped_set(e, app.instances), {}
    local procs = self:register(app, source)
    if adopt then return adopt(procs) end
    for _, p in ipairs(procs) do
      if not down[p.instance] then start[#start + 1] = p end
    end
    self:start_procs(start)
    if #start > 0 then started[#started + 1] = app.name else stopped[#stopped + 1] = app.name end
  end
  -- The users and groups the apps name are looked up as each launches, in
  -- the background (orch.sources.load_unresolved): a slow user database
  -- must not keep the daemon from serving (it restores before it serves).
  local function load(source) return sources.load_unresolved(source, self.api) end
  for _, skey in ipairs(order) do
    local group = by_source[skey]
    local cfg, err = load(group.source)
    if not cfg then
      errors[#errors + 1] = err
    else
      -- the keys of each name (several for apps started with -f from one command line)
      local want = {}
      for _, k in ipairs(group.keys) do
        local name = by_key[k].name
        want[name] = want[name] or {}
        table.insert(want[name], k)
      end
      for _, app in ipairs(cfg.apps) do
        for i, k in ipairs(want[app.name] or {}) do
          local own = app
          if i > 1 then -- another app of that name: its own table
            for _, again in ipairs(load(group.source).apps) do
              if again.name == app.name then own = again end
            end
          end
          if k ~= app.name then own.key = k end
          bring(own, by_key[k], group.source)
        end
        want[app.name] = nil
      end
      for n in pairs(want) do errors[#errors + 1] = string.format("app '%s' is no longer in its source", n) end
    end
  end
  return started, stopped, errors
end

return M
