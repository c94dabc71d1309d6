-- bench/scale.lua: how orch's daemon grows with the number of processes
-- (issue 16, "Scale"): the same steps with SMALL and LARGE processes (100 and
-- 1000 by default), as that many apps and as one app with that many
-- instances, and the ratio LARGE/SMALL of each; no step should grow worse
-- than linearly (ratio <= LARGE/SMALL). Steps: start until all are online,
-- `orch list --json`, the daemon's RSS, its CPU while idle, `orch restart` of
-- one process, `orch stop all`. Besides wall times it gives the daemon's CPU
-- time (every thread's schedstat), which other work on a shared machine moves
-- far less. From the repository:
--   build/orch lua bench/scale.lua
--   ORCH_SCALE_N=100,1000 ORCH_SCALE_SHAPES=apps,instances ORCH_SCALE_IDLE_S=5 ORCH_SCALE_CALLS=10
-- ORCH_SCALE_MD=file also writes the tables in Markdown there (bench/run).
-- ORCH_BIN=path picks another binary. Each run has a fresh ORCH_HOME under
-- /tmp, ends with `orch kill`, then SIGKILL by pid to whatever it saw alive.
local uv = require("luv")

local lib = dofile((arg[0]:match("^(.*)/") or ".") .. "/lib.lua")
local cli, poll, observe, ours_alive, cpu_ms, rss_kb = lib.cli, lib.poll, lib.observe, lib.ours_alive, lib.cpu_ms,
  lib.rss_kb
local list, median = lib.list, lib.median

local function list_of(s, sep)
  local t = {}
  for w in s:gmatch("[^" .. sep .. "]+") do t[#t + 1] = tonumber(w) or w end
  return t
end
local SIZES = list_of(os.getenv("ORCH_SCALE_N") or "100,1000", ",")
local SHAPES = list_of(os.getenv("ORCH_SCALE_SHAPES") or "apps,instances", ",")
local IDLE_S = tonumber(os.getenv("ORCH_SCALE_IDLE_S")) or 5
local CALLS = tonumber(os.getenv("ORCH_SCALE_CALLS")) or 10
local CHURN = tonumber(os.getenv("ORCH_SCALE_CHURN")) or 10
local MD = os.getenv("ORCH_SCALE_MD")
local START_TIMEOUT_MS = 120000

local homes, daemons = {}, {}

local function new_home(shape, n)
  local home = assert(uv.fs_mkdtemp("/tmp/orch-scale-XXXXXX"))
  homes[#homes + 1] = home
  local f = assert(io.open(home .. "/ecosystem.config.lua", "w"))
  if shape == "apps" then
    f:write(("local apps = {}\nfor i = 1, %d do apps[i] = { name = 'a' .. i, script = 'sleep', args = { '1000' } } end\n")
      :format(n), "return { apps = apps }\n")
  else
    f:write(("return { apps = { { name = 'a1', script = 'sleep', args = { '1000' }, instances = %d } } }\n"):format(n))
  end
  f:close()
  return home
end

local function count(procs, status)
  local n = 0
  for _, p in ipairs(procs) do if p.status == status then n = n + 1 end end
  return n
end

-- The daemon's user CPU in ms (all its threads: /proc/PID/stat's utime, in
-- clock ticks): Lua's own work, apart from the kernel's (fork, exec, cgroups).
local CLK_TCK = 100
do
  local f = io.popen("getconf CLK_TCK 2>/dev/null")
  CLK_TCK = tonumber(f and f:read("*l")) or CLK_TCK
  if f then f:close() end
end
local function user_ms(pid) return lib.stat(pid)[12] * 1000 / CLK_TCK end

local function load() return (lib.read("/proc/loadavg") or ""):match("^(%S+ %S+ %S+)") end

-- Every step for one shape and size; returns { step = value }.
local function measure(shape, n)
  local r = {}
  local home = new_home(shape, n)
  cli(home, { "ping" })
  local pid = assert(tonumber((lib.read(home .. "/daemon.pid"))), "no pid in daemon.pid")
  daemons[home] = pid
  observe(pid)
  r.rss0 = rss_kb(pid) / 1024

  -- start: the CLI's reply, then until list shows every process online
  local c0, u0, t0 = cpu_ms(pid), user_ms(pid), uv.hrtime()
  cli(home, { "start", home .. "/ecosystem.config.lua" }, START_TIMEOUT_MS)
  r.start_cpu, r.start_user = cpu_ms(pid) - c0, user_ms(pid) - u0
  local pids
  poll(function()
    local procs = list(home)
    if count(procs, "online") < n then uv.sleep(20); return false end
    pids = {}
    for i, p in ipairs(procs) do pids[i] = p.pid end
    return true
  end, START_TIMEOUT_MS, ("%d processes online"):format(n))
  r.start_ms = (uv.hrtime() - t0) / 1e6
  uv.sleep(1000)
  r.rss = rss_kb(pid) / 1024

  local walls
  c0 = cpu_ms(pid)
  walls = lib.cli_rounds(home, CALLS, { { "list", "--json" } })
  r.list_ms, r.list_cpu = median(walls), (cpu_ms(pid) - c0) / CALLS
  -- the daemon alone: over a connection of our own, no CLI to start
  local call, close = lib.raw_client(home)
  walls = {}
  for i = 1, CALLS * 5 do walls[i] = call("list") end
  close()
  r.raw_list_ms = median(walls)

  -- idle: once the list sampler (orch.views, 3 s after the last list) is off
  uv.sleep(4000)
  c0 = cpu_ms(pid)
  uv.sleep(IDLE_S * 1000)
  r.idle_cpu = (cpu_ms(pid) - c0) / IDLE_S

  -- one process restarted (the CLI replies once it runs again)
  local target = shape == "apps" and "a" .. math.floor(n / 2) or tostring(math.floor(n / 2))
  c0 = cpu_ms(pid)
  walls = lib.cli_rounds(home, CALLS, { { "restart", target } })
  r.restart_ms, r.restart_cpu = median(walls), (cpu_ms(pid) - c0) / CALLS
  for _, p in ipairs(list(home)) do pids[#pids + 1] = p.pid end

  c0, t0 = cpu_ms(pid), uv.hrtime()
  cli(home, { "stop", "all" }, START_TIMEOUT_MS)
  r.stop_ms, r.stop_cpu = (uv.hrtime() - t0) / 1e6, cpu_ms(pid) - c0
  for _, p in ipairs(pids) do
    if type(p) == "number" and ours_alive(p) then error(("pid %d alive after orch stop all"):format(p), 0) end
  end
  local stopped = count(list(home), "stopped")
  if stopped ~= n then error(("%d of %d stopped after orch stop all"):format(stopped, n), 0) end
  cli(home, { "kill" })
  poll(function() return not ours_alive(pid) end, 10000, "daemon exit after orch kill")
  r.load = load()
  return r
end

-- RSS with n apps running, fresh and after `rounds` rounds of start and
-- delete all (each start until all online).
local function churn(n, rounds)
  local home = new_home("apps", n)
  cli(home, { "ping" })
  local pid = assert(tonumber((lib.read(home .. "/daemon.pid"))), "no pid in daemon.pid")
  daemons[home] = pid
  observe(pid)
  local rss = {}
  for round = 0, rounds do
    cli(home, { "start", home .. "/ecosystem.config.lua" }, START_TIMEOUT_MS)
    poll(function()
      if count(list(home), "online") == n then return true end
      uv.sleep(20)
    end, START_TIMEOUT_MS, ("%d processes online"):format(n))
    if round == 0 or round == rounds then
      uv.sleep(3000) -- what the daemon does once things are quiet
      rss[#rss + 1] = rss_kb(pid) / 1024
    end
    if round < rounds then cli(home, { "delete", "all" }, START_TIMEOUT_MS) end
  end
  cli(home, { "kill" })
  poll(function() return not ours_alive(pid) end, 10000, "daemon exit after orch kill")
  return rss[1], rss[2]
end

local STEPS = {
  { "start_ms", "start until all online, ms" },
  { "start_cpu", "  start, daemon CPU ms" },
  { "start_user", "  start, daemon user CPU ms (no kernel)" },
  { "list_ms", "orch list --json, ms (median)" },
  { "list_cpu", "  list, daemon CPU ms per call" },
  { "raw_list_ms", "  list over the socket, no CLI, ms" },
  { "restart_ms", "orch restart of one, ms (median)" },
  { "restart_cpu", "  restart, daemon CPU ms per call" },
  { "stop_ms", "orch stop all, ms" },
  { "stop_cpu", "  stop all, daemon CPU ms" },
  { "rss", "daemon RSS, all running, MB" },
  { "rss0", "  daemon RSS, 0 processes, MB" },
  { "idle_cpu", "daemon CPU idle, ms per s" },
}

local function main()
  local small, large = SIZES[1], SIZES[#SIZES]
  local md = {}
  print(("orch at scale (%s, %d cores, load %s at the start)"):format(lib.BIN, #uv.cpu_info(), load()))
  for _, shape in ipairs(SHAPES) do
    local res = {}
    for i, n in ipairs(SIZES) do
      res[i] = measure(shape, n)
      io.stderr:write(("%s x%d done, load %s\n"):format(shape, n, res[i].load))
    end
    print()
    local head = { ("%-36s"):format(shape == "apps" and "N apps" or "1 app, N instances") }
    for _, n in ipairs(SIZES) do head[#head + 1] = ("%10s"):format("N=" .. n) end
    head[#head + 1] = ("  %-8s  %s"):format("ratio", ("(linear: <= %g)"):format(large / small))
    print(table.concat(head))
    local cols = {}
    for _, n in ipairs(SIZES) do cols[#cols + 1] = "N=" .. n end
    md[#md + 1] = ("| %s | %s | ratio %d/%d (linear: <= %g) |"):format(
      shape == "apps" and "N apps" or "1 app, N instances", table.concat(cols, " | "), large, small, large / small)
    md[#md + 1] = "|---|" .. ("---|"):rep(#SIZES + 1)
    for _, s in ipairs(STEPS) do
      local line, cells = { ("%-36s"):format(s[2]) }, {}
      for i = 1, #SIZES do
        line[#line + 1] = ("%10.2f"):format(res[i][s[1]])
        cells[i] = ("%.2f"):format(res[i][s[1]])
      end
      local a, b = res[1][s[1]], res[#SIZES][s[1]]
      local ratio = a > 0 and b / a or 0
      local verdict = (s[1] == "rss0" or s[1] == "idle_cpu") and "" or ratio <= large / small and ""
        or "WORSE THAN LINEAR"
      line[#line + 1] = ("  %-8s  %s"):format(("%.1f"):format(ratio), verdict)
      print(table.concat(line))
      md[#md + 1] = ("| %s | %s | %.1f%s |"):format(s[2]:gsub("^%s+", "↳ "), table.concat(cells, " | "), ratio,
        verdict ~= "" and " (worse than linear)" or "")
    end
    md[#md + 1] = ""
  end
  if CHURN > 0 then
    local fresh, churned = churn(small, CHURN)
    local line = ("daemon RSS, %d apps running: fresh %.2f MB, after %d rounds of start and delete all %.2f MB (load %s)")
      :format(small, fresh, CHURN, churned, load())
    print("\n" .. line)
    md[#md + 1] = line
  end
  if MD then
    local f = assert(io.open(MD, "w"))
    f:write(table.concat(md, "\n"), "\n")
    f:close()
  end
end

local function cleanup()
  for _, home in ipairs(homes) do
    local pid = daemons[home]
    if pid and ours_alive(pid) then
      pcall(list, home)
      for _, c in ipairs(lib.children(pid)) do observe(c) end
      pcall(cli, home, { "kill" }, 20000)
    end
  end
  lib.kill_observed()
  uv.run("nowait")
end

local ok, err = xpcall(main, debug.traceback)
cleanup()
if not ok then
  io.stderr:write("bench/scale.lua failed: ", tostring(err), "\nkept for inspection: ", table.concat(homes, " "), "\n")
  os.exit(1)
end
for _, h in ipairs(homes) do os.execute(("rm -rf '%s'"):format(h)) end
