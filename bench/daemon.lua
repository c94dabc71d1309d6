-- bench/daemon.lua: the daemon and CLI figures of orch (list round trip with
-- 100 apps, start and stop of 100 through the CLI, the daemon's RSS and idle
-- CPU), next to PM2 and supervisord. From the repository:
-- build/orch lua bench/daemon.lua (ORCH_BIN=path picks another binary,
-- ORCH_BENCH_IDLE_S=30 shortens the idle window). docs/benchmarks.md says what
-- each figure means. Every daemon gets a fresh ORCH_HOME under /tmp; every run
-- ends with `orch kill`, then SIGKILL by pid to the daemon (daemon.pid) and to
-- every app pid seen in a list, also when a measurement fails. hyperfine and
-- strace are used when installed. `orch delete all` is only ever sent while
-- the apps run (see the bugs in docs/benchmarks.md).
local uv = require("luv")
local cjson = require("cjson")

local LIST_RUNS, OP_RUNS, APPS, STRACE_S = 50, 5, 100, 5
local IDLE_S = tonumber(os.getenv("ORCH_BENCH_IDLE_S")) or 60

local lib = dofile((arg[0]:match("^(.*)/") or ".") .. "/lib.lua")
local ROOT, BIN, PATH = lib.ROOT, lib.BIN, lib.PATH
local read, stat, observe, ours_alive, children = lib.read, lib.stat, lib.observe, lib.ours_alive, lib.children
local wait, cli, raw_client = lib.wait, lib.cli, lib.raw_client

local poll = lib.poll

local homes, daemons = {}, {}
local function new_home()
  local home = assert(uv.fs_mkdtemp("/tmp/orch-bench-XXXXXX"))
  homes[#homes + 1] = home
  -- distinct names a1..a100; orch treats the file as an ecosystem by its name
  local f = assert(io.open(home .. "/ecosystem.config.lua", "w"))
  f:write(("local apps = {}\nfor i = 1, %d do apps[i] = { name = 'a' .. i, script = 'sleep', args = { '1000' } } end\n")
    :format(APPS), "return { apps = apps }\n")
  f:close()
  return home
end

-- `orch list --json` decoded; every app pid in it is remembered for cleanup.
local function list(home)
  local procs = lib.list(home)
  return procs, #procs
end

-- All APPS processes with distinct names in `status`; returns their pids.
local function expect(home, status)
  local procs, names, pids = list(home), {}, {}
  for _, p in ipairs(procs) do
    if p.status == status then names[p.name] = true; pids[#pids + 1] = p.pid end
  end
  local n = 0
  for _ in pairs(names) do n = n + 1 end
  if n ~= APPS or #procs ~= APPS then
    error(("%s: %d processes listed, %d distinct names %s, expected %d"):format(home, #procs, n, status, APPS), 0)
  end
  return pids
end

local function start_daemon(home)
  local ms = cli(home, { "ping" }).ms
  daemons[home] = assert(tonumber((read(home .. "/daemon.pid"))), "no pid in daemon.pid")
  observe(daemons[home])
  return ms
end

local function sh(cmd)
  local f = io.popen(cmd)
  local line = f:read("*l")
  f:close()
  return line
end
-- Calibration: 100 uv.spawn("sleep") in a row from this script, what libuv
-- alone takes to fork and exec them on this machine at this moment.
local function bare_start()
  local pids, exited, t0 = {}, 0, uv.hrtime()
  for i = 1, APPS do
    local h
    h, pids[i] = assert(uv.spawn("sleep", { args = { "1000" } }, function() h:close(); exited = exited + 1 end))
    observe(pids[i])
  end
  local t = (uv.hrtime() - t0) / 1e6
  for _, pid in ipairs(pids) do uv.kill(pid, "sigkill") end
  assert(wait(function() return exited == APPS end, 5000), "bare sleeps did not exit")
  return t
end

local CLK_TCK = tonumber(sh("getconf CLK_TCK 2>/dev/null")) or 100
local function cpu_s(pid) local f = stat(pid); return (f[12] + f[13]) / CLK_TCK end
local function rss_kb(pid) return tonumber(read("/proc/" .. pid .. "/status"):match("VmRSS:%s*(%d+)")) end

-- Syscalls of the daemon in STRACE_S idle seconds (strace -c); nil without strace.
local function idle_syscalls(home, pid)
  local strace, out, done = sh("command -v strace"), home .. "/strace.txt", false
  if not strace then return nil end
  local h, spid = assert(uv.spawn(strace, { args = { "-c", "-f", "-o", out, "-p", tostring(pid) } },
    function() done = true end))
  observe(spid)
  uv.sleep(STRACE_S * 1000)
  uv.kill(spid, "sigint")
  wait(function() return done end, 5000)
  h:close()
  -- strace writes nothing at all when there was no syscall
  return tonumber((read(out) or ""):match("\n[%d.]+%s+[%d.]+%s+%d+%s+(%d+)%s+%d*%s*total")) or 0
end

-- hyperfine's figures for list and ping (ms), or nil when it is not installed.
local function hyperfine(home)
  local hf = sh("command -v hyperfine")
  if not hf then return nil end
  local json, done = home .. "/hyperfine.json", false
  local null_fd = assert(uv.fs_open("/dev/null", "w", 0))
  local h, pid = assert(uv.spawn(hf, { args = { "-N", "--warmup", "5", "--runs", tostring(LIST_RUNS), "--style", "none",
      "--export-json", json, BIN .. " list --json", BIN .. " ping" }, stdio = { null_fd, null_fd, null_fd },
    env = { "ORCH_HOME=" .. home, "HOME=" .. home, "PATH=" .. PATH } }, function() done = true end))
  uv.fs_close(null_fd)
  observe(pid)
  wait(function() return done end, 120000)
  h:close()
  local r = cjson.decode((assert(read(json), "hyperfine wrote no " .. json))).results
  return { list = r[1], ping = r[2] }
end

local function sorted(t) local c = { unpack(t) }; table.sort(c); return c end
local median = lib.median
local function spread(t)
  local s = sorted(t)
  return ("min %.2f  median %.2f  p90 %.2f  max %.2f"):format(s[1], median(s), s[math.ceil(0.9 * #s)], s[#s])
end
local function ms(v) return ("%.1f ms"):format(v) end

local function main()
  local r = { exec = {}, version = {}, ping = {}, list = {}, raw_ping = {}, raw_list = {}, start_again = {}, start = {},
    stop = {}, stop_again = {}, restart_all = {}, delete = {}, bare = {} }

  -- 1, 4, 5: a daemon with 100 apps running
  local A = new_home()
  r.first_ping = start_daemon(A)
  r.first_start = cli(A, { "start", A .. "/ecosystem.config.lua" }).ms
  local pids = expect(A, "online")
  uv.sleep(1000)
  r.rss_start = rss_kb(daemons[A])
  -- interleaved, so that drift in the machine hits all three alike
  r.exec, r.version, r.ping, r.list = lib.cli_rounds(A, LIST_RUNS,
    { { exe = "/bin/true" }, { "version" }, { "ping" }, { "list", "--json" } })
  local call, close = raw_client(A)
  for i = 1, LIST_RUNS do
    r.raw_ping[i] = call("ping")
    local t, procs = call("list")
    r.raw_list[i] = t
    assert(#procs == APPS, "raw list: " .. #procs .. " processes")
  end
  close()
  r.hf = hyperfine(A)
  -- diagnostic: the ecosystem loaded and checked, 100 views, nothing spawned
  for i = 1, OP_RUNS do r.start_again[i] = cli(A, { "start", A .. "/ecosystem.config.lua" }).ms end
  expect(A, "online")
  uv.sleep(1000)
  r.rss_lists = rss_kb(daemons[A])
  local c0 = cpu_s(daemons[A])
  uv.sleep(IDLE_S * 1000)
  r.idle_cpu = cpu_s(daemons[A]) - c0
  r.syscalls = idle_syscalls(A, daemons[A])
  r.kill = cli(A, { "kill" }).ms
  poll(function()
    if ours_alive(daemons[A]) then return false end
    for _, p in ipairs(pids) do if ours_alive(p) then return false end end
    return true
  end, 5000, "daemon or apps alive after orch kill")

  -- 2, 3: start and stop of 100 with the daemon already running
  local B = new_home()
  start_daemon(B)
  for i = 1, OP_RUNS do
    r.bare[i] = bare_start()
    uv.sleep(200)
    r.start[i] = cli(B, { "start", B .. "/ecosystem.config.lua" }).ms
    local run = expect(B, "online")
    uv.sleep(200) -- let the daemon finish its bookkeeping (state.json)
    r.stop[i] = cli(B, { "stop", "all" }).ms
    for _, p in ipairs(run) do if ours_alive(p) then error("pid " .. p .. " alive after orch stop all", 0) end end
    expect(B, "stopped")
    r.stop_again[i] = cli(B, { "stop", "all" }).ms -- diagnostic: nothing to stop
    -- `orch delete all` hangs when the processes are stopped already (see
    -- docs/benchmarks.md): start them again and delete them running.
    r.restart_all[i] = cli(B, { "start", "all" }).ms
    run = expect(B, "online")
    r.delete[i] = cli(B, { "delete", "all" }).ms
    local _, left = list(B)
    if left ~= 0 then error(left .. " processes left after orch delete all", 0) end
    poll(function()
      for _, p in ipairs(run) do if ours_alive(p) then return false end end
      return true
    end, 2000, "apps alive after orch delete all")
    uv.sleep(200)
  end

  local function row(...) print(("%-42s%-12s%-28s%s"):format(...)) end
  local shown = BIN:find(ROOT .. "/", 1, true) == 1 and BIN:sub(#ROOT + 2) or BIN
  print(("orch daemon and CLI benchmarks (%s, %d cores)"):format(shown, #uv.cpu_info()))
  row("metric", "orch", "reference", "aim")
  row(("orch list --json, %d apps, median of %d"):format(APPS, LIST_RUNS), ms(median(r.list)),
    "pm2 jlist 116, supctl 158", "<= 2 ms")
  row("  orch ping (no /proc sampling)", ms(median(r.ping)), "-", "-")
  row("  orch version (no socket)", ms(median(r.version)), "-", "-")
  row("  /bin/true (spawn floor)", ms(median(r.exec)), "-", "-")
  row("  list over the socket, no CLI", ms(median(r.raw_list)), "-", "-")
  row("  ping over the socket, no CLI", ms(median(r.raw_ping)), "-", "-")
  if r.hf then
    for _, k in ipairs({ "list", "ping" }) do
      row(("  hyperfine %s (median)"):format(k), ms(r.hf[k].median * 1e3), "-", "-")
    end
  end
  local n = ("%d, median of %d"):format(APPS, OP_RUNS)
  row("orch start " .. n, ms(median(r.start)), "PM2 579 ms", "<= 100 ms")
  row("  bare uv.spawn of 100 sleeps, here", ms(median(r.bare)), "-", "-")
  row("orch stop all, " .. n, ms(median(r.stop)), "supervisord 1.2 s", "<= 20 ms")
  row(("daemon RSS, %d running"):format(APPS), ("%.1f MB"):format(r.rss_start / 1024), "PM2 60-70 MB", "<= 6 MB")
  row("  same, after the list rounds",
    ("%.1f MB"):format(r.rss_lists / 1024), "-", "-")
  row(("daemon CPU over %d idle s, %d running"):format(IDLE_S, APPS), ("%.2f s"):format(r.idle_cpu),
    ("PM2 %.2f s"):format(0.10 * IDLE_S / 60), "0")
  row(("daemon syscalls, %d idle s (strace)"):format(STRACE_S), tostring(r.syscalls or "n/a"), "-", "-")

  print("\ndetails (ms)")
  for _, l in ipairs({ { "orch list --json", r.list }, { "orch ping", r.ping }, { "orch version", r.version },
    { "/bin/true", r.exec },
    { "socket list", r.raw_list }, { "socket ping", r.raw_ping } }) do
    print(("  %-22s %s"):format(l[1], spread(l[2])))
  end
  if r.hf then
    for _, k in ipairs({ "list", "ping" }) do
      local h = r.hf[k]
      print(("  %-22s mean %.2f ± %.2f  min %.2f  median %.2f  max %.2f"):format("hyperfine " .. k,
        h.mean * 1e3, h.stddev * 1e3, h.min * 1e3, h.median * 1e3, h.max * 1e3))
    end
  end
  for _, l in ipairs({ { "start (1st creates logs)", r.start }, { "start, all running", r.start_again },
    { "bare uv, 100 spawned", r.bare },
    { "stop all", r.stop }, { "stop all, all stopped", r.stop_again },
    { "start all (stopped)", r.restart_all }, { "delete all (running)", r.delete } }) do
    local s = {}
    for i, v in ipairs(l[2]) do s[i] = ("%.1f"):format(v) end
    print(("  %-22s %s"):format(l[1], table.concat(s, " ")))
  end
  print(("  %-22s ping starting the daemon %.1f, first start %.1f, kill %.1f"):format("home A", r.first_ping,
    r.first_start, r.kill))
  print(("  %-22s after start %d, after lists %d"):format("daemon RSS (kB)", r.rss_start, r.rss_lists))
  local _, dirs = PATH:gsub("[^:]+", "")
  print(("  %-22s %d directories (the daemon searches them for 'sleep')"):format("PATH", dirs))
end

-- orch kill in every home whose daemon is still up, then SIGKILL whatever we
-- saw (daemons, apps, CLIs, tools) that is still alive.
local function cleanup()
  for _, home in ipairs(homes) do
    -- a daemon started by a CLI whose ping failed: known by its title
    local pid = daemons[home] or tonumber((read(home .. "/daemon.pid")))
    if pid and not daemons[home] and (read("/proc/" .. pid .. "/cmdline") or ""):find(home, 1, true) then
      daemons[home] = pid
      observe(pid)
    end
    if pid and ours_alive(pid) then
      pcall(list, home) -- remembers the app pids
      for _, c in ipairs(children(pid)) do observe(c) end
      pcall(cli, home, { "kill" }, 10000)
      pcall(poll, function() return not ours_alive(pid) end, 2000, "daemon exit")
    end
  end
  lib.kill_observed()
  uv.run("nowait")
end

local ok, err = xpcall(main, debug.traceback)
cleanup()
if not ok then
  io.stderr:write("bench/daemon.lua failed: ", tostring(err), "\nkept for inspection: ", table.concat(homes, " "), "\n")
  os.exit(1)
end
for _, h in ipairs(homes) do os.execute(("rm -rf '%s'"):format(h)) end
