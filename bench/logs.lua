-- bench/logs.lua: how fast orch gets an app's output into its log file, next
-- to the same bytes copied without orch and PM2's figure. From the repository:
-- build/orch lua bench/logs.lua (ORCH_BIN=path picks another binary,
-- ORCH_BENCH_DIRS="/tmp /dev/shm" picks where the log files go, ORCH_BENCH_RUNS
-- the number of runs). docs/benchmarks.md says what each figure means.
--
-- The source is a 500 MiB file of 100-byte numbered lines, made once in /tmp
-- and read into the page cache before every run. An app `cat`s it; the time is
-- from the app's own start stamp (written just before `exec cat`) until the
-- log file holds every byte, then the file is compared with the source. Every
-- daemon gets a fresh ORCH_HOME in the measured directory, ended with `orch
-- kill`, then SIGKILL by pid to whatever we saw of it that is still alive.
local uv = require("luv")

local MIB = 1024 * 1024
local SIZE, LINE = 500 * MIB, 100
local LINES = SIZE / LINE
local SRC = "/tmp/orch-bench-logs-500m.txt"
local RUNS = tonumber(os.getenv("ORCH_BENCH_RUNS")) or 3
local TIMEOUT_MS = 120000
-- "YYYY-MM-DD HH:mm:ss.SSS" is 23 characters, and ": " follows it
local TS_FORMAT, TS_LEN = "YYYY-MM-DD HH:mm:ss.SSS", 25

local lib = dofile((arg[0]:match("^(.*)/") or ".") .. "/lib.lua")
local ROOT, BIN, PATH = lib.ROOT, lib.BIN, lib.PATH
local read, stat, observe = lib.read, lib.stat, lib.observe

local function sh(cmd)
  local f = io.popen(cmd)
  local out = f:read("*a")
  f:close()
  return (out:gsub("\n$", ""))
end

local CLK_TCK = tonumber(sh("getconf CLK_TCK 2>/dev/null")) or 100
local function cpu_s(pid) local f = stat(pid); return (f[12] + f[13]) / CLK_TCK end
local function status_kb(pid, key) return tonumber(read("/proc/" .. pid .. "/status"):match(key .. ":%s*(%d+)")) end

-- Wall clock in ns from a base second (exact in a double), to compare with
-- the apps' `date +%s%N` stamps.
local BASE_S = uv.gettimeofday() - 60
local function wall_ns() local s, us = uv.gettimeofday(); return (s - BASE_S) * 1e9 + us * 1e3 end
local function stamp_ns(d)
  d = assert(d and d:match("^(%d+)\n?$"), "bad stamp")
  return (tonumber(d:sub(1, -10)) - BASE_S) * 1e9 + tonumber(d:sub(-9))
end

local function size(path) local st = uv.fs_stat(path); return st and st.size or -1 end

-- Polls every 1 ms (a stat costs microseconds: the copy runs on).
local function poll(cond, what) return lib.poll(cond, TIMEOUT_MS, what) end

-- The source, made once: line i (from 0) is "%09d " and 89 letters.
local function make_source()
  local first = ("%09d %s\n"):format(0, ("abcdefghij"):rep(9):sub(1, 89))
  local f = io.open(SRC, "rb")
  if f and f:seek("end") == SIZE and (f:seek("set", 0) and f:read(LINE)) == first then f:close(); return end
  if f then f:close() end
  io.stderr:write("making ", SRC, " (once)\n")
  local tail = ("abcdefghij"):rep(9):sub(1, 89)
  f = assert(io.open(SRC .. ".part", "wb"))
  local block = {}
  for i = 0, LINES - 1 do
    block[#block + 1] = ("%09d %s\n"):format(i, tail)
    if #block == 10000 then f:write(table.concat(block)); block = {} end
  end
  f:write(table.concat(block))
  f:close()
  assert(os.rename(SRC .. ".part", SRC))
end

-- Reads the source through once, so every run reads it from memory.
local function warm_source()
  local fd = assert(uv.fs_open(SRC, "r", 0))
  local off = 0
  while true do
    local data = assert(uv.fs_read(fd, 4 * MIB, off))
    if #data == 0 then break end
    off = off + #data
  end
  uv.fs_close(fd)
end

local dirs, daemons = {}, {} -- every directory made here, removed at the end; daemons by home
local function new_dir(base)
  dirs[#dirs + 1] = assert(uv.fs_mkdtemp(base .. "/orch-bench-logs-XXXXXX"))
  return dirs[#dirs]
end
local function rm(dir) os.execute(("rm -rf '%s'"):format(dir)) end

-- Direct copies, without orch: n at once, each with `how`.
local function direct(base, how, n)
  local dir = new_dir(base)
  local left, t0 = n, uv.hrtime()
  for i = 1, n do
    local out = ("%s/out%d"):format(dir, i)
    local cmd = how == "cfr" and ("exec cat '%s' > '%s'"):format(SRC, out)
      or how == "rw" and ("exec dd if='%s' of='%s' bs=128K status=none"):format(SRC, out)
      or ("cat '%s' | cat > '%s'"):format(SRC, out)
    local h, pid
    h, pid = uv.spawn("sh", { args = { "-c", cmd }, env = { "PATH=" .. PATH } }, function(code)
      assert(code == 0, cmd .. " failed")
      left = left - 1
      h:close()
    end)
    assert(h, pid)
    observe(pid)
  end
  poll(function() return left == 0 end, "direct copies")
  local t = (uv.hrtime() - t0) / 1e9
  for i = 1, n do assert(size(("%s/out%d"):format(dir, i)) == SIZE, "direct copy incomplete") end
  rm(dir)
  return { time = t }
end

-- An orch: `orch run` (stdout to /dev/null) or a daemon, in a fresh home in
-- base, running n apps that each cat the source; opts adds app options.
local function capture(base, mode, n, opts)
  local home = new_dir(base)
  local apps = {}
  for i = 1, n do
    apps[i] = ([[{ name = 'cat%d', script = 'sh', args = { '-c', 'date +%%s%%N > "$0"; exec cat "$1"', %q, %q },
      autorestart = false, max_size = 0, %s }]]):format(i, home .. "/stamp" .. i, SRC, opts or "")
  end
  local eco = home .. "/ecosystem.config.lua"
  local f = assert(io.open(eco, "w"))
  f:write("return { apps = {\n", table.concat(apps, ",\n"), "\n} }\n")
  f:close()
  local env = { "ORCH_HOME=" .. home, "HOME=" .. home, "PATH=" .. PATH }
  local logs, r, pid, run = {}, {}
  for i = 1, n do logs[i] = ("%s/logs/cat%d-out.log"):format(home, i) end
  if mode == "daemon" then
    assert(sh(("ORCH_HOME='%s' '%s' ping >/dev/null && echo ok"):format(home, BIN)) == "ok", "orch ping failed")
    pid = assert(tonumber((read(home .. "/daemon.pid"))), "no daemon.pid")
    observe(pid)
    daemons[home] = pid
    r.rss0, r.cpu0 = status_kb(pid, "VmRSS"), cpu_s(pid)
    assert(sh(("ORCH_HOME='%s' '%s' start '%s' >/dev/null && echo ok"):format(home, BIN, eco)) == "ok",
      "orch start failed")
  else
    local null_fd = assert(uv.fs_open("/dev/null", "w", 0))
    local err_fd = assert(uv.fs_open(home .. "/orch.stderr", "w", 420))
    run = {}
    run.h, pid = uv.spawn(BIN, { args = { "run", eco }, cwd = home, env = env, stdio = { nil, null_fd, err_fd } },
      function(code) run.code = code end)
    uv.fs_close(null_fd)
    uv.fs_close(err_fd)
    assert(run.h, pid)
    observe(pid)
    r.rss0, r.cpu0 = 0, 0
  end
  -- done once every byte is in (a timestamped line is TS_LEN longer)
  local want = opts and opts:find("log_date_format") and SIZE + LINES * TS_LEN or SIZE
  poll(function()
    for _, log in ipairs(logs) do if size(log) < want then return false end end
    return true
  end, "the log files to be complete")
  local t1 = wall_ns()
  local t0 = math.huge
  for i = 1, n do t0 = math.min(t0, stamp_ns((read(home .. "/stamp" .. i)))) end
  r.time = (t1 - t0) / 1e9
  if mode == "daemon" then
    r.cpu, r.hwm = cpu_s(pid) - r.cpu0, status_kb(pid, "VmHWM")
    sh(("ORCH_HOME='%s' '%s' kill >/dev/null 2>&1"):format(home, BIN))
    daemons[home] = nil
  else
    r.cpu = cpu_s(pid)
    r.hwm = status_kb(pid, "VmHWM")
    poll(function() return run.code end, "orch run to exit")
    run.h:close()
  end
  for _, log in ipairs(logs) do
    assert(size(log) == want, log .. " has " .. size(log) .. " bytes, not " .. want)
    local cmp = want == SIZE and ("cmp -s '%s' '%s'"):format(log, SRC)
      or ("cut -c%d- '%s' | cmp -s - '%s'"):format(TS_LEN + 1, log, SRC)
    assert(os.execute(cmp) == 0, log .. " differs from the source: " .. cmp)
  end
  rm(home)
  return r
end

-- Rotation at the default 10 MiB, retain 60 so that every file is kept: the
-- files, oldest first, must make up the source.
local function rotating(base)
  local home = new_dir(base)
  local eco = home .. "/ecosystem.config.lua"
  local f = assert(io.open(eco, "w"))
  f:write(([[return { apps = { { name = 'cat1', script = 'sh', autorestart = false, max_size = '10M', retain = 60,
    args = { '-c', 'date +%%s%%N > "$0"; exec cat "$1"', %q, %q } } } }
]]):format(home .. "/stamp1", SRC))
  f:close()
  assert(sh(("ORCH_HOME='%s' '%s' ping >/dev/null && echo ok"):format(home, BIN)) == "ok", "orch ping failed")
  local pid = assert(tonumber((read(home .. "/daemon.pid"))))
  observe(pid)
  daemons[home] = pid
  local cpu0 = cpu_s(pid)
  assert(sh(("ORCH_HOME='%s' '%s' start '%s' >/dev/null && echo ok"):format(home, BIN, eco)) == "ok")
  local log = home .. "/logs/cat1-out.log"
  local function files()
    local list, i = {}, 1
    while size(log .. "." .. i) >= 0 do i = i + 1 end
    for j = i - 1, 1, -1 do list[#list + 1] = log .. "." .. j end
    list[#list + 1] = log
    return list
  end
  local total
  poll(function()
    total = 0
    for _, p in ipairs(files()) do total = total + math.max(size(p), 0) end
    return total >= SIZE
  end, "the rotated files to be complete")
  local r = { time = (wall_ns() - stamp_ns((read(home .. "/stamp1")))) / 1e9 }
  r.cpu, r.hwm = cpu_s(pid) - cpu0, status_kb(pid, "VmHWM")
  sh(("ORCH_HOME='%s' '%s' kill >/dev/null 2>&1"):format(home, BIN))
  daemons[home] = nil
  local list = files()
  r.files = #list
  local parts = {}
  for _, p in ipairs(list) do parts[#parts + 1] = "'" .. p .. "'" end
  assert(os.execute(("cat %s | cmp -s - '%s'"):format(table.concat(parts, " "), SRC)) == 0,
    "the rotated files do not make up the source")
  for _, p in ipairs(list) do
    assert(sh(("tail -c 1 '%s' | od -An -c"):format(p)):match("\\n"), p .. " does not end with a newline")
  end
  rm(home)
  return r
end

local function median(t)
  local s = { unpack(t) }
  table.sort(s)
  local n = #s
  return (s[math.floor((n + 1) / 2)] + s[math.ceil((n + 1) / 2)]) / 2
end

local CASES = {
  { key = "cfr", label = "direct: cat file > out", f = function(d) return direct(d, "cfr", 1) end },
  { key = "rw", label = "direct: dd bs=128K (read+write)", f = function(d) return direct(d, "rw", 1) end },
  { key = "pipe", label = "direct: cat file | cat > out", f = function(d) return direct(d, "pipe", 1) end },
  { key = "a", label = "(a) orch daemon, 1 app", f = function(d) return capture(d, "daemon", 1) end },
  { key = "run", label = "(a) orch run, echo to /dev/null", f = function(d) return capture(d, "run", 1) end },
  { key = "cfr4", label = "direct: 4 x cat file > out at once", f = function(d) return direct(d, "cfr", 4) end },
  { key = "b", label = "(b) orch daemon, 4 apps at once", f = function(d) return capture(d, "daemon", 4) end },
  { key = "c", label = "(c) orch daemon, log_date_format", f = function(d)
    return capture(d, "daemon", 1, ("log_date_format = %q"):format(TS_FORMAT)) end },
  { key = "d", label = "(d) orch daemon, max_size 10M", f = function(d) return rotating(d) end },
}

local function fs_type(dir) return sh(("df --output=fstype '%s' | tail -n 1"):format(dir)) end

local function main()
  make_source()
  local bases = {}
  for d in (os.getenv("ORCH_BENCH_DIRS") or "/tmp /dev/shm"):gmatch("%S+") do bases[#bases + 1] = d end
  local shown = BIN:find(ROOT .. "/", 1, true) == 1 and BIN:sub(#ROOT + 2) or BIN
  print(("orch log capture (%s, %d cores): %d MiB of %d-byte lines, median of %d"):format(shown, #uv.cpu_info(),
    SIZE / MIB, LINE, RUNS))
  for _, base in ipairs(bases) do
    local res = {}
    for _, c in ipairs(CASES) do res[c.key] = {} end
    -- the cases alternate, so that drift in the machine hits all of them
    for run = 1, RUNS do
      for _, c in ipairs(CASES) do
        warm_source()
        res[c.key][run] = c.f(base)
      end
    end
    print(("\nlog files in %s (%s)"):format(base, fs_type(base)))
    local function row(...) print(("%-37s %-8s %-6s %-9s %-8s %-13s %s"):format(...)) end
    row("case", "time", "MiB/s", "vs direct", "orch CPU", "orch peak RSS", "ref")
    local direct_t = median((function() local t = {} for i, r in ipairs(res.cfr) do t[i] = r.time end return t end)())
    local direct4 = median((function() local t = {} for i, r in ipairs(res.cfr4) do t[i] = r.time end return t end)())
    for _, c in ipairs(CASES) do
      local t, cpu, hwm = {}, {}, {}
      for i, r in ipairs(res[c.key]) do t[i], cpu[i], hwm[i] = r.time, r.cpu, r.hwm end
      local mt = median(t)
      local n = (c.key == "b" or c.key == "cfr4") and 4 or 1
      local vs = (c.key == "b" or c.key == "cfr4") and direct4 / mt or direct_t / mt
      row(c.label, ("%.2f s"):format(mt), ("%.0f"):format(n * SIZE / MIB / mt), ("%.0f%%"):format(100 * vs),
        cpu[1] and ("%.2f s"):format(median(cpu)) or "-", hwm[1] and ("%.1f MiB"):format(median(hwm) / 1024) or "-",
        c.key == "a" and "2.20 s" or c.key == "cfr" and "0.19 s" or "-")
    end
    print("details (s):")
    for _, c in ipairs(CASES) do
      local t = {}
      for i, r in ipairs(res[c.key]) do t[i] = ("%.3f"):format(r.time) end
      print(("  %-36s %s%s"):format(c.label, table.concat(t, " "),
        res[c.key][1].files and ("  (" .. res[c.key][1].files .. " files)") or ""))
    end
  end
end

local ok, err = xpcall(main, debug.traceback)
-- a daemon left by a failure stops its apps itself; SIGKILL for the rest
for home, pid in pairs(daemons) do
  if lib.ours_alive(pid) then sh(("ORCH_HOME='%s' timeout 10 '%s' kill >/dev/null 2>&1"):format(home, BIN)) end
end
lib.kill_observed()
for _, d in ipairs(dirs) do rm(d) end
if not ok then
  io.stderr:write("bench/logs.lua failed: ", tostring(err), "\n")
  os.exit(1)
end
