-- orch.hook: calling a user's function (hooks, handlers, timers, health
-- checks, `orch eval`, an ecosystem file) so that it can neither raise into
-- orch nor run past its deadline, whatever it does.
--
-- The deadline is wall time (libuv's monotonic clock). A count hook checks
-- it every HOOK_COUNT instructions; once it has passed, the hook fires at
-- every instruction and raises in every user frame until the call that ran
-- out of time has returned, so a pcall in user code cannot swallow it
-- (Redis stops scripts the same way). Calls nest: an inner call gets the
-- earlier of the two deadlines and leaves the outer one in place.
--
-- User code is any Lua function whose environment is not the daemon's own
-- (ecosystem files run in a sandbox, `orch eval` in the REPL environment).
-- Only there is the deadline raised: orch's own functions that user code
-- calls finish what they do, so an interruption never leaves the daemon's
-- tables half-changed. User functions run with the JIT off (compiled
-- traces skip count hooks); code that user code loads must be switched off
-- too (M.load does it).
local uv = require("luv")

local M = {}

M.DEFAULT_DEADLINE_MS = 100
M.MESSAGE = "hook interrupted: ran longer than %d ms"
local HOOK_COUNT = 1000

local now = uv.hrtime -- ns, monotonic
local getinfo, sethook, gethook = debug.getinfo, debug.sethook, debug.gethook
local daemon_env = getfenv(1)
-- The daemon's heap cap while user code runs (orch.core, absent in plain
-- LuaJIT, e.g. unit specs).
local has_core, core = pcall(require, "orch.core")
local heap_limit = has_core and type(core) == "table" and core.heap_limit or nil

-- Active calls, outermost first: limit[i] (ns, the earliest deadline of
-- calls 1..i), ms[i] and message[i] (for the error).
local limit, ms, message = {}, {}, {}
local depth = 0
local expired = nil -- index of the outermost call past its deadline
local saved = nil   -- a hook someone else had set before the outermost call
local jit_was_on = false
local gc_pause = nil -- the GC pause the outermost call found (orch.heapkeep's)

-- User code runs with LuaJIT's default GC pause (a collection once the heap
-- has doubled): the daemon's lower pause (orch.heapkeep) would make code
-- that fills the capped heap collect more often on its way to the cap.
M.USER_GC_PAUSE = 200

local own = {} -- this module's functions: never interrupted

-- Whether user code is running (a call is in progress).
function M.active() return depth > 0 end

function M.is_user(fn)
  return type(fn) == "function" and not own[fn] and getfenv(fn) ~= daemon_env
end

local function count_hook()
  -- enter() and leave() fill a slot before counting it and count it off
  -- before clearing it, so limit[depth] is there whenever depth > 0.
  if depth == 0 then return end
  if not expired then
    local t = now()
    if t < limit[depth] then return end
    local i = 1
    while limit[i] > t do i = i + 1 end
    expired = i
    sethook(count_hook, "", 1) -- from now on, at every chance
  end
  local info = getinfo(2, "f")
  if info and M.is_user(info.func) then
    error(string.format(message[expired], ms[expired]), 2)
  end
end
own[count_hook] = true

-- Formats an error value without running user code past the deadline: a
-- __tostring metamethod runs under the deadline (we are inside the call).
local function describe_error(e)
  if type(e) == "string" then return e end
  if type(e) == "number" or type(e) == "boolean" or e == nil then return tostring(e) end
  local ok, s = pcall(tostring, e)
  if ok and type(s) == "string" then return s end
  return "(error object is a " .. type(e) .. " value)"
end
own[describe_error] = true

-- The traceback stops where the user's function was called: orch's own
-- frames below it say nothing about the user's error.
local function traceback(e)
  -- Raised by the count hook: start below it (traceback, error, count_hook).
  local hooked = (getinfo(3, "f") or {}).func == count_hook
  local tb = debug.traceback(describe_error(e), hooked and 4 or 2)
  local cut = tb:find("\n%s*%[C%]: in function 'xpcall'")
  return cut and tb:sub(1, cut - 1) or tb
end
own[traceback] = true

local function enter(deadline_ms, msg)
  if depth == 0 then
    local h, mask, count = gethook()
    saved = h and { h, mask, count } or nil
    if heap_limit then heap_limit(true) end
    gc_pause = collectgarbage("setpause", M.USER_GC_PAUSE)
    -- Nothing compiles while user code runs: a helper it calls that was
    -- made elsewhere (not switched off) would otherwise get a trace, and
    -- traces skip the count hook. User code orch loads is off from the start.
    jit_was_on = jit and jit.status()
    if jit_was_on then jit.off() end
  end
  local d = depth + 1
  local t = now() + deadline_ms * 1e6
  limit[d] = d > 1 and math.min(t, limit[d - 1]) or t
  ms[d], message[d] = deadline_ms, msg
  depth = d
  if not expired then sethook(count_hook, "", HOOK_COUNT) end
end
own[enter] = true

local function leave()
  local d = depth
  local timed_out = expired == d
  depth = d - 1
  limit[d], ms[d], message[d] = nil, nil, nil
  if expired and expired > depth then expired = nil end
  if depth == 0 then
    if saved then sethook(saved[1], saved[2], saved[3]) else sethook() end
    saved = nil
    if heap_limit then heap_limit(false) end
    collectgarbage("setpause", gc_pause)
    if jit_was_on then jit.on() end
  elseif not expired then
    sethook(count_hook, "", HOOK_COUNT)
  end
  return timed_out
end
own[leave] = true

-- Leaves the call before anything is allocated: the heap may be at its cap.
local function finish(ok, ...)
  local timed_out = leave()
  if not ok then return false, require("orch.srcmap").expand((...)), timed_out end
  return ok, ...
end
own[finish] = true

-- Calls fn(...) under a deadline of deadline_ms; msg (a format with one %d,
-- the milliseconds) is the error raised when it runs out. Returns true,
-- results... or false, "message\ntraceback", timed_out.
function M.run(fn, deadline_ms, msg, ...)
  -- (orch's own functions passed here keep the JIT: they only call user code)
  if jit and M.is_user(fn) and getinfo(fn, "S").what ~= "C" then jit.off(fn, true) end
  enter(deadline_ms or M.DEFAULT_DEADLINE_MS, msg or M.MESSAGE)
  return finish(xpcall(fn, traceback, ...))
end
own[M.run] = true

-- Returns true, results... or false, "message\ntraceback".
local function first_two(ok, ...)
  if ok then return ok, ... end
  local err, timed_out = ...
  if timed_out then
    -- The message starts the text (the traceback names the line).
    local at = err:find("hook interrupted: ", 1, true)
    if at then err = err:sub(at) end
  end
  return ok, err
end
own[first_two] = true

function M.call(fn, deadline_ms, ...)
  return first_two(M.run(fn, deadline_ms, M.MESSAGE, ...))
end
own[M.call] = true

-- xpcall for user code. A message handler runs where the error was raised,
-- and for the deadline's error that is inside the count hook, where LuaJIT
-- fires no hooks: past the deadline the user's handler is skipped.
function M.xpcall(f, handler, ...)
  return xpcall(f, function(e)
    if expired then return e end
    return handler(e)
  end, ...)
end
own[M.xpcall] = true

-- tostring(v) for a value from user code: a __tostring runs under a
-- deadline; one that fails or runs out gives a placeholder.
function M.tostring(v)
  local t = type(v)
  if t == "string" then return v end
  if t ~= "table" and t ~= "userdata" then return tostring(v) end
  local mt = getmetatable(v)
  if not (type(mt) == "table" and rawget(mt, "__tostring")) then return tostring(v) end
  local ok, s = M.call(tostring, M.DEFAULT_DEADLINE_MS, v)
  if ok and type(s) == "string" then return s end
  return "(" .. t .. " value: __tostring failed)"
end
own[M.tostring] = true

-- Loads user text (never bytecode) as a function with the JIT off and the
-- given environment: load, loadstring, loadfile and dofile for user code.
function M.load(chunk, name, env)
  local fn, err = load(chunk, name, "t")
  if not fn then return nil, err end
  if jit then jit.off(fn, true) end
  if env then setfenv(fn, env) end
  return fn
end

return M
