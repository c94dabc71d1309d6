-- bench/events.lua: what an event costs the daemon, with 0 and with 10
-- subscribers on the control socket, and the daemon's idle CPU with a
-- subscriber connected. From the repository: build/orch lua bench/events.lua
-- (ORCH_BIN=path picks the binary of the idle part; ORCH_BENCH_IDLE_S=10
-- shortens its window).
--
-- 1. The cost: orch's own ring (orch.events) and control socket
--    (orch.control, orch.subscribe, core/ctl*.c) in this process, with an
--    engine that has nothing else, and 10 real `orch events --json`
--    subscribers (other processes). Records shaped as the daemon's (an exit
--    with its fields) are emitted 1 and 100 per loop turn, and the turn's
--    lines written; this process's CPU time (getrusage) over that, per event. The
--    subscribers read between batches (not counted: waiting is no CPU).
-- 2. Idle: a real daemon with one app (sleep) and `orch events` connected:
--    its CPU ticks (utime + stime) over the window. Every process started
--    is ended by pid.
local uv = require("luv")

local lib = dofile((arg[0]:match("^(.*)/") or ".") .. "/lib.lua")
local BIN, PATH = lib.BIN, lib.PATH

local EVENTS, ROUNDS = 50000, 3
local IDLE_S = tonumber(os.getenv("ORCH_BENCH_IDLE_S")) or 30

local home = assert(uv.fs_mkdtemp("/tmp/orch-bench-XXXXXX"))

---------------------------------------------------------------------------
-- 1. cost per event
---------------------------------------------------------------------------

-- the daemon runs without the trace compiler (orch.engine says why)
if jit then jit.off() jit.flush() end

local function engine_stub()
  local events = require("orch.events")
  return {
    paths = { sock = home .. "/orch.sock" }, log = function() end, state_seq = 0,
    events = events.new({ capacity = 1000 }),
    flush_state = function(_, done) done() end,
  }
end

-- n real `orch events --json` CLIs subscribed to engine's ring (their
-- ORCH_HOME holds the stub's socket); returns their pids once all are in.
local function subscribers(engine, n)
  local pids = {}
  local env = { "ORCH_HOME=" .. home, "PATH=" .. PATH, "HOME=" .. home }
  for i = 1, n do
    local h, pid = uv.spawn(BIN, { args = { "events", "--json" }, env = env, stdio = { nil, nil, nil } },
      function() end)
    assert(h, pid)
    lib.observe(pid)
    pids[i] = pid
  end
  lib.poll(function() return engine.events:subscribers() == n end, 20000, "the subscribers")
  return pids
end

local function cpu_ns()
  local r = uv.getrusage()
  return (r.utime.sec + r.stime.sec) * 1e9 + (r.utime.usec + r.stime.usec) * 1e3
end

-- Waits (in the loop: no CPU) until every subscriber has read its lines.
local function drained(engine)
  lib.poll(function()
    for conn in pairs(engine.subscribers or {}) do
      if not conn:closed() and conn:pending() > 0 then return false end
    end
    return true
  end, 30000, "the subscribers to read")
end

-- This process's CPU per event over EVENTS records, batch per loop turn:
-- emit(), the fan-out, and the writes (the subscribers are other processes).
local function cost(engine, batch)
  local ring = engine.events
  local spent, sent = 0, 0
  while sent < EVENTS do
    local t0 = cpu_ns()
    for _ = 1, batch do
      sent = sent + 1
      ring:emit("exit", { id = sent % 50, app = "web", instance = sent % 4, pid = 10000 + sent % 5000, code = 1,
                          uptime_ms = 1234 })
    end
    uv.run("nowait") -- the lines queued this turn are written
    spent = spent + (cpu_ns() - t0)
    if sent % 100 == 0 then drained(engine) end
  end
  return spent / EVENTS
end

local function measure(n, batch)
  local engine = engine_stub()
  assert(require("orch.control").serve(engine))
  local pids = subscribers(engine, n)
  local best
  for _ = 1, ROUNDS do
    local ns = cost(engine, batch)
    best = best and math.min(best, ns) or ns
  end
  assert(engine.events:subscribers() == n, "a subscriber was dropped")
  for _, pid in ipairs(pids) do uv.kill(pid, "sigint") end
  engine.server:close()
  uv.run("nowait")
  return best
end

-- one event per loop turn (a lone exit), and 100 (a burst: many restarts)
for _, batch in ipairs({ 1, 100 }) do
  local zero, ten = measure(0, batch), measure(10, batch)
  print(string.format("event cost in the daemon, %d per loop turn (best of %d x %d events): 0 subscribers %.2f us, "
    .. "10 subscribers %.2f us (%.2f us per subscriber)", batch, ROUNDS, EVENTS, zero / 1000, ten / 1000,
    (ten - zero) / 10 / 1000))
end

---------------------------------------------------------------------------
-- 2. idle CPU with a subscriber
---------------------------------------------------------------------------

local env = { "ORCH_HOME=" .. home .. "/home", "PATH=" .. PATH, "HOME=" .. home }
local function run(args)
  local done, code
  local h, pid = uv.spawn(BIN, { args = args, env = env, stdio = { nil, nil, nil } }, function(c) done, code = true, c end)
  assert(h, pid)
  lib.observe(pid)
  return function(timeout_ms)
    lib.poll(function() return done end, timeout_ms or 60000, "orch " .. args[1])
    h:close()
    return code
  end, pid
end

local daemon_pid, events_pid
local ok, err = pcall(function()
  local f = assert(io.open(home .. "/ecosystem.config.lua", "w"))
  f:write("return { apps = { { name = 'idle', script = 'sleep', args = { '1000' } } } }\n")
  f:close()
  assert(run({ "start", home .. "/ecosystem.config.lua" })() == 0, "orch start failed")
  daemon_pid = tonumber((lib.read(home .. "/home/daemon.pid")))
  lib.observe(daemon_pid)
  local _, pid = run({ "events", "--json" })
  events_pid = pid
  -- connected and past its backlog: give it a moment, then measure
  uv.sleep(1000)
  local function ticks()
    local s = lib.stat(daemon_pid)
    return tonumber(s[12]) + tonumber(s[13])
  end
  local before = ticks()
  uv.sleep(IDLE_S * 1000)
  local used = ticks() - before
  print(string.format("daemon idle CPU with a subscriber connected: %d clock ticks in %d s", used, IDLE_S))
end)

if events_pid and lib.ours_alive(events_pid) then uv.kill(events_pid, "sigint") end
pcall(function() run({ "kill" })(30000) end)
lib.kill_observed()
os.execute("rm -rf '" .. home .. "'")
if not ok then error(err, 0) end
