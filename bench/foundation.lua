-- bench/foundation.lua: the foundation figures of orch's engine (restart
-- latency, start/stop of 100 instances, RSS, idle CPU), next to PM2 7 and a
-- bare fork/exec loop. From the repository: build/orch lua bench/foundation.lua
-- (ORCH_BIN=path picks another binary). Written for orch's own runtime so it
-- needs nothing installed; docs/benchmarks.md says what each figure means.
-- Every run gets a fresh ORCH_HOME under /tmp, and every process started here
-- is ended by pid, also when a measurement fails.
local uv = require("luv")

local RESTART_ROUNDS, START_RUNS, INSTANCES, IDLE_S, STRACE_S = 20, 5, 100, 10, 5

local lib = dofile((arg[0]:match("^(.*)/") or ".") .. "/lib.lua")
local ROOT, BIN, PATH = lib.ROOT, lib.BIN, lib.PATH
local read, stat, observe, ours_alive, children = lib.read, lib.stat, lib.observe, lib.ours_alive, lib.children
local STAMP = ROOT .. "/bench/apps/stamp.sh"


local function comm(pid) return (read("/proc/" .. pid .. "/comm") or ""):gsub("\n", "") end



-- Wall clock (to compare with the apps' own stamps) in ns from a base second,
-- so that it stays exact in a double.
local BASE_S = uv.gettimeofday() - 60
local function wall_ns() local s, us = uv.gettimeofday(); return (s - BASE_S) * 1e9 + us * 1e3 end
local function stamp_ns(d) return (tonumber(d:sub(1, -10)) - BASE_S) * 1e9 + tonumber(d:sub(-9)) end

local poll = lib.poll

local homes, orchs, bare_stopping = {}, {}, false
local function new_home()
  homes[#homes + 1] = assert(uv.fs_mkdtemp("/tmp/orch-bench-XXXXXX"))
  return homes[#homes]
end

-- `orch run` on a one-app ecosystem (app(home) gives the app's table) in a
-- fresh ORCH_HOME, stderr to HOME/orch.stderr; only PATH comes from us.
local function start_orch(app)
  local home = new_home()
  local f = assert(io.open(home .. "/ecosystem.lua", "w"))
  f:write("return { apps = { " .. app(home) .. " } }\n")
  f:close()
  local err_fd, null_fd = assert(uv.fs_open(home .. "/orch.stderr", "w", 420)), assert(uv.fs_open("/dev/null", "r", 0))
  local o = { home = home, t0 = uv.hrtime() }
  o.handle, o.pid = uv.spawn(BIN, {
    args = { "run", home .. "/ecosystem.lua" }, cwd = home, stdio = { null_fd, err_fd, err_fd },
    env = { "ORCH_HOME=" .. home, "HOME=" .. home, "PATH=" .. PATH },
  }, function(code, sig) o.exit_ns, o.code, o.sig = uv.hrtime(), code, sig; o.handle:close() end)
  uv.fs_close(err_fd)
  uv.fs_close(null_fd)
  assert(o.handle, "cannot spawn " .. BIN .. ": " .. tostring(o.pid))
  orchs[#orchs + 1] = o
  observe(o.pid)
  return o
end

local function check_alive(o)
  if not o.exit_ns then return end
  error(("orch exited early (code %s, signal %s); see %s/orch.stderr"):format(o.code, o.sig, o.home), 0)
end

-- Blocks in the loop instead of polling, so the exit time is taken as soon as
-- libuv reaps orch.
local function wait_exit(o, timeout_ms)
  local timer, late = uv.new_timer(), false
  timer:start(timeout_ms, 0, function() late = true end)
  while not o.exit_ns and not late do uv.run("once") end
  timer:close()
  if not o.exit_ns then error(("orch pid %d did not exit within %d ms"):format(o.pid, timeout_ms), 0) end
end

-- SIGTERM, then insist that none of the apps we saw under orch survived it.
local function stop_orch(o, pids)
  uv.kill(o.pid, "sigterm")
  wait_exit(o, 5000)
  poll(function()
    for _, p in ipairs(pids) do if ours_alive(p) then return false end end
    return true
  end, 2000, "apps still alive after orch exited")
  if o.code ~= 0 then io.stderr:write(("warning: orch exited with status %d on SIGTERM\n"):format(o.code)) end
end

-- 1. Restart latency: SIGKILL the app, read its replacement's own start stamp
-- from HOME/stamp. A kill waits until the app is sleep (steady) and its
-- supervisor has had 50 ms to settle, so every round starts from idle.
local function kill_rounds(home, check, after_kill)
  local function next_stamp(old)
    return poll(function()
      check()
      local pid, ns = (read(home .. "/stamp") or ""):match("^(%d+) (%d+)")
      pid = tonumber(pid)
      return pid and pid ~= old and comm(pid) == "sleep" and { pid = pid, ns = stamp_ns(ns) }
    end, 5000, "restarted app")
  end
  local samples, cur = {}, next_stamp(nil)
  for i = 1, RESTART_ROUNDS do
    observe(cur.pid)
    uv.sleep(50)
    local kill_ns = wall_ns()
    uv.kill(cur.pid, "sigkill")
    if after_kill then after_kill() end
    cur = next_stamp(cur.pid)
    samples[i] = (cur.ns - kill_ns) / 1e6
  end
  observe(cur.pid)
  return samples, cur.pid
end

local function restart_latency(script, interpreter)
  local o = start_orch(function(home)
    return ("{ name = 'stamp', script = %q, interpreter = %s, min_uptime = 0, restart_delay = 0, env = { OUT = %q } }")
      :format(script, interpreter and ("%q"):format(interpreter) or "nil", home)
  end)
  local samples, last = kill_rounds(o.home, function() check_alive(o) end)
  stop_orch(o, { last })
  return samples
end

-- Calibration ("bare uv, here"): this script supervises the same app itself,
-- uv.spawn (fork, exec, wait for the exec, like orch) from the exit callback,
-- blocking in the loop meanwhile. What libuv alone achieves on this machine.
local function bare_restart()
  local home, respawned = new_home(), false
  local function spawn()
    local h, pid
    h, pid = assert(uv.spawn("sh", { args = { STAMP }, env = { "OUT=" .. home, "PATH=" .. PATH } },
      function() h:close(); if not bare_stopping then respawned = true; spawn() end end))
    observe(pid)
  end
  spawn()
  local samples, last = kill_rounds(home, function() end, function()
    respawned = false
    while not respawned do uv.run("once") end
  end)
  bare_stopping = true
  uv.kill(last, "sigkill")
  poll(function() return not ours_alive(last) end, 2000, "bare app exit")
  return samples
end

local function bare_start()
  local pids, exited, t0 = {}, 0, uv.hrtime()
  for i = 1, INSTANCES do
    local h
    h, pids[i] = assert(uv.spawn("sleep", { args = { "1000" } }, function() h:close(); exited = exited + 1 end))
    observe(pids[i])
  end
  local t = (uv.hrtime() - t0) / 1e6
  for _, pid in ipairs(pids) do uv.kill(pid, "sigkill") end
  poll(function() return exited == INSTANCES end, 5000, "bare sleeps exit")
  return t
end

-- Calibration: on a first start orch creates two log files per instance; this
-- is what creating as many in a fresh directory under /tmp costs here.
local function bare_creates()
  local dir, fds, t0 = new_home(), {}, uv.hrtime()
  for i = 1, 2 * INSTANCES do fds[i] = assert(uv.fs_open(("%s/%d.log"):format(dir, i), "a", 416)) end
  local t = (uv.hrtime() - t0) / 1e6
  for _, fd in ipairs(fds) do uv.fs_close(fd) end
  return t
end

local CLK_TCK = tonumber((io.popen("getconf CLK_TCK 2>/dev/null"):read("*l"))) or 100
local function cpu_s(pid) local f = stat(pid); return (f[12] + f[13]) / CLK_TCK end

-- Syscalls orch makes while idle, counted by strace -c; nil without strace.
local function idle_syscalls(o)
  local strace, out, done = io.popen("command -v strace"):read("*l"), o.home .. "/strace.txt", false
  if not strace then return nil end
  local h, pid = assert(uv.spawn(strace, { args = { "-c", "-f", "-o", out, "-p", tostring(o.pid) } },
    function() done = true end))
  observe(pid)
  uv.sleep(STRACE_S * 1000)
  uv.kill(pid, "sigint")
  poll(function() return done end, 5000, "strace exit")
  h:close()
  -- strace writes nothing at all when there was no syscall
  return tonumber((read(out) or ""):match("\n[%d.]+%s+[%d.]+%s+%d+%s+(%d+)%s+%d*%s*total")) or 0
end

-- 2-5. From spawning `orch run` to the last of INSTANCES sleeps exec'd, orch's
-- RSS once they run, idle CPU and syscalls (if asked), then the stop. extra
-- adds options to the app.
local function start_stop(measure_idle, extra)
  local o = start_orch(function()
    return ("{ name = 's', script = 'sleep', args = { '1000' }, instances = %d%s }"):format(INSTANCES, extra or "")
  end)
  local r, sleeps, pids = {}, {}, {}
  poll(function()
    check_alive(o)
    for _, c in ipairs(children(o.pid)) do
      -- a forked child is still "orch" until its exec: count only sleeps
      if not sleeps[c] and comm(c) == "sleep" then sleeps[c] = true; pids[#pids + 1] = c; observe(c) end
    end
    r.first = r.first or (#pids > 0 and (uv.hrtime() - o.t0) / 1e6)
    return #pids >= INSTANCES
  end, 20000, INSTANCES .. " sleep instances")
  r.start = (uv.hrtime() - o.t0) / 1e6
  uv.sleep(500) -- let orch finish its "online" bookkeeping before sampling
  check_alive(o)
  r.rss_kb = tonumber(read("/proc/" .. o.pid .. "/status"):match("VmRSS:%s*(%d+)"))
  if measure_idle then
    local c0 = cpu_s(o.pid)
    uv.sleep(IDLE_S * 1000)
    r.idle_cpu, r.syscalls = cpu_s(o.pid) - c0, idle_syscalls(o)
  end
  local t1 = uv.hrtime()
  stop_orch(o, pids)
  r.stop = (o.exit_ns - t1) / 1e6
  return r
end

local function sorted(t) local c = { unpack(t) }; table.sort(c); return c end
local function median(t)
  local s, n = sorted(t), #t
  return (s[math.floor((n + 1) / 2)] + s[math.ceil((n + 1) / 2)]) / 2
end
local function ms(v) return ("%.1f ms"):format(v) end

local function main()
  local lat, lat_bash, lat_bare = restart_latency(STAMP), restart_latency(ROOT .. "/bench/apps/stamp.bash", "bash"),
    bare_restart()
  -- orch and the calibration alternate, so drift in the machine hits both
  -- disable_logs (no log files to create) tells orch's own cost from the file system's
  local c, idle = { first = {}, start = {}, rss_kb = {}, stop = {}, bare = {}, creates = {}, nolog = {} }, nil
  for i = 1, START_RUNS do
    local r = start_stop(i == 1)
    for _, k in ipairs({ "first", "start", "rss_kb", "stop" }) do c[k][i] = r[k] end
    c.bare[i], c.creates[i], idle = bare_start(), bare_creates(), idle or r
    c.nolog[i] = start_stop(false, ", disable_logs = true").start
  end

  local function row(...) print(("%-36s%-12s%-14s%-23s%-15s%s"):format(...)) end
  local shown = BIN:find(ROOT .. "/", 1, true) == 1 and BIN:sub(#ROOT + 2) or BIN
  print(("orch foundation benchmarks (%s, %d cores)"):format(shown, #uv.cpu_info()))
  row("metric", "orch", "PM2 7 (ref)", "bare fork/exec (ref)", "bare uv, here", "aim")
  row("restart latency, median of " .. RESTART_ROUNDS, ms(median(lat)), "8.3 ms", "2.5 ms", ms(median(lat_bare)),
    "<= 3.5 ms")
  row("  same, stamped by bash, no date", ms(median(lat_bash)), "-", "-", "-", "-")
  local n = ("%d, median of %d"):format(INSTANCES, START_RUNS)
  row("start " .. n, ms(median(c.start)), "579 ms", "39 ms", ms(median(c.bare)), "<= 80 ms")
  row("  same, disable_logs = true", ms(median(c.nolog)), "-", "-", "-", "-")
  row(("RSS, %d running, median of %d"):format(INSTANCES, START_RUNS), ("%.1f MB"):format(median(c.rss_kb) / 1024), "60-70 MB", "-", "-", "<= 6 MB")
  row("stop " .. n, ms(median(c.stop)), "-", "-", "-", "-")
  row(("idle CPU over %d s, %d running"):format(IDLE_S, INSTANCES), ("%.2f s"):format(idle.idle_cpu), "-", "-", "-", "-")
  row(("syscalls while idle, %d s (strace)"):format(STRACE_S), tostring(idle.syscalls or "n/a"), "-", "-", "-", "-")

  print("\ndetails (ms unless noted)")
  for _, l in ipairs({ { "restart, date stamp", lat }, { "restart, bash stamp", lat_bash }, { "bare uv restart", lat_bare } }) do
    local s = sorted(l[2])
    print(("  %-22s min %.2f  median %.2f  p90 %.2f  max %.2f"):format(l[1], s[1], median(s), s[math.ceil(0.9 * #s)], s[#s]))
  end
  for _, l in ipairs({ { "first sleep running", c.first }, { "all 100 running", c.start },
    { "same, disable_logs", c.nolog }, { "bare uv, 100 spawned", c.bare }, { 2 * INSTANCES .. " files created", c.creates }, { "RSS (kB)", c.rss_kb },
    { "stop 100", c.stop } }) do
    local s = {}
    for i, v in ipairs(l[2]) do s[i] = ("%.1f"):format(v):gsub("%.0$", "") end
    print(("  %-22s %s"):format(l[1], table.concat(s, " ")))
  end
end

-- SIGTERM every orch still up (it stops its apps), then SIGKILL whatever we
-- saw that is still alive.
local function cleanup()
  bare_stopping = true
  for _, o in ipairs(orchs) do
    if not o.exit_ns then
      for _, ch in ipairs(children(o.pid)) do observe(ch) end
      uv.kill(o.pid, "sigterm")
      pcall(wait_exit, o, 3000)
    end
  end
  lib.kill_observed()
  uv.run("nowait")
end

local ok, err = xpcall(main, debug.traceback)
cleanup()
if not ok then
  io.stderr:write("bench/foundation.lua failed: ", tostring(err), "\nkept for inspection: ", table.concat(homes, " "), "\n")
  os.exit(1)
end
for _, h in ipairs(homes) do os.execute(("rm -rf '%s'"):format(h)) end
