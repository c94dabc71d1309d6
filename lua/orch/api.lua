-- orch.api: the `orch` table that ecosystem hooks, `orch eval` and the REPL
-- see inside the daemon (docs/lua-api.md). Processes are live objects: their
-- fields read the current state; methods act on them.
local uv = require("luv")
local core = require("orch.core")
local hook = require("orch.hook")
local sources = require("orch.sources")

local M = {}

-- Supervisor events -> API event names.
M.EVENTS = { start = "start", online = "online", exit = "exit", waiting = "restart", restart = "restart",
             errored = "errored", stopped = "stop", stopping = "stopping", health = "health",
             message = "message", ready = "ready" }

M.CALLBACK_DEADLINE_MS = 1000

-- a restart asked for from Lua: its cause in the event stream (orch.events)
local API_RESTART = { cause = "api" }

-- The app option that hooks an event of its processes.
local HOOKS = { start = "on_start", online = "on_online", exit = "on_exit", message = "on_message" }

function M.new(engine)
  local api = { uv = require("orch.bounds").uv(uv) }

  -- A user function called later by orch or libuv (a timer, a `done`, a
  -- luv callback): protected and under a deadline like every hook; an error
  -- is logged.
  local function report(what, ok, ...)
    if not ok then
      engine:user_error(nil, what, (...))
      return
    end
    return ...
  end
  local function protect(fn, what)
    if fn == nil then return nil end
    if type(fn) ~= "function" then error("expected a function, got " .. type(fn), 3) end
    return function(...) return report(what, hook.call(fn, M.CALLBACK_DEADLINE_MS, ...)) end
  end
  -- luv's callbacks into user functions come here (core/runtime.c).
  debug.getregistry()["orch.user_call"] = function(fn, ...)
    return report("callback", hook.call(fn, M.CALLBACK_DEADLINE_MS, ...))
  end
  local handlers = {}          -- event -> list of functions
  -- object -> proc record. Weak both ways: the record holds its object
  -- (p.api_object) and the object's closures hold the record, and LuaJIT's
  -- weak keys are no ephemerons: with weak keys alone the strong value would
  -- keep every process ever started (and its object) alive. The engine's
  -- process table, or a script holding the object, keeps an entry alive.
  local records = setmetatable({}, { __mode = "kv" })

  local methods = {}
  local function object(p)
    if not p then return nil end
    local o = p.api_object
    if o then return o end
    o = setmetatable({}, {
      __index = function(_, k)
        if methods[k] then return methods[k] end
        if k == "config" then return p.app end
        if k == "cpu" or k == "memory" then
          local cpu, mem = engine:stats(p)
          return k == "cpu" and cpu or mem
        end
        if k == "uptime" then return engine:view(p).uptime_ms end
        if k == "pid" then return p.pid end
        if k == "health" then return engine.health:describe(p) end
        if k == "transitions" then return engine.sup:transitions(p) end
        return ({ id = p.id, name = p.name, instance = p.instance, status = p.status,
                  restarts = p.restarts, unstable_restarts = p.counters.unstable,
                  last_exit = p.last_exit, reason = p.reason })[k]
      end,
      __newindex = function(_, k) error("process objects are read-only (field '" .. tostring(k) .. "')", 2) end,
      __tostring = function() return string.format("<process %s:%d id %d %s>", p.name, p.instance, p.id, p.status) end,
    })
    p.api_object = o
    records[o] = p
    return o
  end

  local function record(o)
    return records[o]
  end

  -- Resolves "all", a name, an id, or a process object to records.
  local function targets(t)
    if type(t) == "table" and record(t) then return { record(t) } end
    local procs, err = engine:resolve(tostring(t))
    if not procs then error(err, 3) end
    return procs
  end

  -- fn(p, d) for each process, as one operation on their apps (orch.ops):
  -- after what runs on them already, for those the table still holds then.
  local function after_all(procs, fn, done)
    engine.ops:each(procs, nil, fn, done)
  end

  function methods.stop(self, done)
    after_all({ record(self) }, function(p, d) engine.sup:stop(p, d) end, protect(done, "stop callback"))
  end
  function methods.restart(self, done)
    after_all({ record(self) }, function(p, d) engine.sup:restart(p, d, API_RESTART) end, protect(done, "restart callback"))
  end
  -- Sends msg (any JSON value) over the process's IPC channel: it reaches
  -- process.on('message') in Node. true, or nil and why not.
  function methods.send(self, msg)
    return engine.sup:send(record(self), msg)
  end

  function methods.signal(self, sig)
    local p = record(self)
    if not (p.handle and p.pid) then return nil, "not running" end
    return core.kill(-p.pid, sig)
  end

  function api.list()
    local out = {}
    for _, p in ipairs(engine.sup:list()) do out[#out + 1] = object(p) end
    return out
  end

  function api.get(t)
    local ok, procs = pcall(engine.resolve, engine, tostring(t))
    if not ok or not procs or type(t) == "string" and t == "all" then return nil end
    return object(procs[1])
  end

  -- Starts apps from a spec table (the options of one app, as in an
  -- ecosystem). Returns their process objects, or nil, message.
  function api.start(spec)
    if type(spec) ~= "table" then error("orch.start: expected a table of app options", 2) end
    local source = { spec = spec, env = core.environ(), cwd = uv.cwd() }
    -- its processes are returned now: a uid/gid is looked up as each
    -- launches, in the background, not here on the loop
    local cfg, err = sources.load_unresolved(source, api)
    if not cfg then return nil, err end
    local name = cfg.apps[1].name
    -- Its processes are returned now: refused while a command changes the app.
    if engine.ops:busy(name) then return nil, "app '" .. name .. "' is busy (a command is changing it)" end
    if engine:app_running(name) then return nil, "app '" .. name .. "' is already running" end
    local out = {}
    engine.ops:run({ name }, nil, function(finish)
      for _, p in ipairs(engine:install(cfg.apps[1], source)) do out[#out + 1] = object(p) end
      finish()
    end)
    return out
  end

  function api.stop(t, done)
    after_all(targets(t), function(p, d) engine.sup:stop(p, d) end, protect(done, "stop callback"))
  end
  function api.restart(t, done)
    after_all(targets(t), function(p, d) engine.sup:restart(p, d, API_RESTART) end, protect(done, "restart callback"))
  end
  function api.send(t, msg)
    local sent, errors = 0, {}
    for _, p in ipairs(targets(t)) do
      local ok, err = engine.sup:send(p, msg)
      if ok then sent = sent + 1 else errors[#errors + 1] = err end
    end
    return sent, errors[1]
  end

  function api.signal(t, sig)
    for _, p in ipairs(targets(t)) do
      if p.handle and p.pid then core.kill(-p.pid, sig) end
    end
  end
  function api.delete(t, done)
    done = protect(done, "delete callback")
    local names = {}
    after_all(targets(t), function(p, d)
      names[p.name] = true
      engine.sup:stop(p, function() engine.sup:remove(p) d() end)
    end, function()
      for name in pairs(names) do engine:forget(name) end
      if done then done() end
    end)
  end

  -- orch.on(event, fn): fn(proc, ...) for start, online, exit (code, signal),
  -- restart (delay), errored (reason), stop, stopping, health (healthy,
  -- message). Returns a function
  -- that unsubscribes.
  function api.on(event, fn)
    if type(fn) ~= "function" then error("orch.on: expected a function", 2) end
    local known = false
    for _, name in pairs(M.EVENTS) do if name == event then known = true end end
    if not known then error("orch.on: unknown event '" .. tostring(event) .. "'", 2) end
    handlers[event] = handlers[event] or {}
    table.insert(handlers[event], fn)
    return function()
      for i, f in ipairs(handlers[event] or {}) do
        if f == fn then table.remove(handlers[event], i) return end
      end
    end
  end

  function api.log(level, msg)
    if msg == nil then level, msg = "info", level end
    engine.log(hook.tostring(level), hook.tostring(msg))
  end

  -- A timer whose callback runs protected, like every hook.
  function api.timer(ms, fn, repeat_ms)
    if type(fn) ~= "function" then error("orch.timer: expected a function", 2) end
    local t = uv.new_timer()
    t:start(ms, repeat_ms or 0, protect(fn, "timer callback"))
    return t
  end

  -- Called by the engine for every supervisor event.
  function api._dispatch(event, p, info)
    local name = M.EVENTS[event]
    if not name or not p then return end
    local hook_name = HOOKS[name]
    local own = hook_name and p.app[hook_name]
    -- no hook, no handler: no process object (~0.7 kB a process) made for nobody
    if type(own) ~= "function" and #(handlers[name] or {}) == 0 then return end
    local args
    if name == "exit" then args = { info.code, info.signal }
    elseif name == "restart" then args = { info and info.delay or 0 }
    elseif name == "errored" or name == "stop" then args = { info and info.reason }
    elseif name == "health" then args = { info.healthy, info.message }
    elseif name == "message" then args = { info.message }
    else args = {} end
    local o = object(p)
    local deadline = p.app.hook_deadline
    if type(own) == "function" then
      local ok, err = hook.call(own, deadline, o, unpack(args, 1, 2))
      if not ok then engine:user_error(p, hook_name, err) end
    end
    for _, fn in ipairs(handlers[name] or {}) do
      local ok, err = hook.call(fn, deadline, o, unpack(args, 1, 2))
      if not ok then engine:user_error(nil, string.format("orch.on('%s') handler", name), err) end
    end
  end

  return api
end

return M
