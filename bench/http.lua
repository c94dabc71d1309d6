-- bench/http.lua: what the HTTP endpoint costs (docs/benchmarks.md, "HTTP
-- endpoint"): orch run with 100 apps and --http, then orch's CPU over 10 s
-- with nobody connected, and per /metrics scrape the wall time and orch's
-- CPU, both for scrapes a second apart (each one reads /proc for every
-- process tree) and back to back (the per-process samples are cached for a
-- second). From the repository: build/orch lua bench/http.lua. Fresh
-- ORCH_HOME under /tmp; orch is ended by pid (SIGTERM, then SIGKILL), also
-- when a measurement fails.
local uv = require("luv")

local APPS, IDLE_S, SPACED, BURST = 100, 10, 20, 200

local lib = dofile((arg[0]:match("^(.*)/") or ".") .. "/lib.lua")
local BIN, PATH, stat = lib.BIN, lib.PATH, lib.stat

local TICK = tonumber(io.popen("getconf CLK_TCK"):read("*l")) or 100

local function cpu_s(pid)
  local f = assert(stat(pid), "orch is gone")
  return (tonumber(f[12]) + tonumber(f[13])) / TICK
end


-- One GET on a kept-alive connection: the body. conn = {tcp, buf}.
local function get(conn, path)
  conn.tcp:write("GET " .. path .. " HTTP/1.1\r\nHost: x\r\n\r\n")
  local body
  lib.poll(function()
    local s, e = conn.buf:find("\r\n\r\n", 1, true)
    if not s then return false end
    local len = tonumber(conn.buf:sub(1, s):match("Content%-Length: (%d+)"))
    if #conn.buf - e < len then return false end
    body = conn.buf:sub(e + 1, e + len)
    conn.buf = conn.buf:sub(e + len + 1)
    return true
  end, 10000, "a response to GET " .. path)
  return body
end

local function connect(port)
  local conn = { tcp = uv.new_tcp(), buf = "" }
  local done
  conn.tcp:connect("127.0.0.1", port, function(err) done = err or true end)
  lib.poll(function() return done end, 5000, "a connection")
  assert(done == true, tostring(done))
  conn.tcp:read_start(function(_, data) if data then conn.buf = conn.buf .. data end end)
  return conn
end

local function median(t)
  table.sort(t)
  return t[math.floor((#t + 1) / 2)]
end

local dir = assert(uv.fs_mkdtemp("/tmp/orch-bench-http-XXXXXX"))
local eco = dir .. "/ecosystem.lua"
local f = assert(io.open(eco, "w"))
f:write(string.format('return { apps = { { name = "s", script = "sleep", args = { "1000" }, instances = %d } } }\n',
  APPS))
f:close()
local port = lib.free_port()
local orch_pid
local ok, err = pcall(function()
  local handle, pid = uv.spawn(BIN, {
    args = { "run", eco, "--http", "127.0.0.1:" .. port },
    env = { "ORCH_HOME=" .. dir .. "/home", "PATH=" .. PATH }, stdio = { nil, nil, nil },
  }, function() end)
  assert(handle, pid)
  orch_pid = pid
  lib.observe(pid)
  local conn
  lib.poll(function()
    local ok_c, c = pcall(connect, port)
    if not ok_c then return false end
    conn = c
    local body = get(conn, "/metrics")
    local _, online = body:gsub('status="online"} 1', "")
    return online == APPS
  end, 60000, APPS .. " apps online")
  conn.tcp:close()
  uv.sleep(500)

  -- idle: the endpoint on, nobody connected
  local c0 = cpu_s(pid)
  uv.sleep(IDLE_S * 1000)
  local idle = cpu_s(pid) - c0

  conn = connect(port)
  local size = #get(conn, "/metrics")
  -- a second apart: each scrape samples /proc for all 100 trees
  local walls, c1 = {}, cpu_s(pid)
  for i = 1, SPACED do
    uv.sleep(1100)
    local t = uv.hrtime()
    get(conn, "/metrics")
    walls[i] = (uv.hrtime() - t) / 1e6
  end
  local spaced_cpu = (cpu_s(pid) - c1) / SPACED * 1000
  -- back to back (samples cached)
  local bwalls, c2 = {}, cpu_s(pid)
  local t0 = uv.hrtime()
  for i = 1, BURST do
    local t = uv.hrtime()
    get(conn, "/metrics")
    bwalls[i] = (uv.hrtime() - t) / 1e6
  end
  local burst_s = (uv.hrtime() - t0) / 1e9
  local burst_cpu = (cpu_s(pid) - c2) / BURST * 1000
  conn.tcp:close()

  print(string.format("apps: %d; /metrics: %d bytes", APPS, size))
  print(string.format("idle CPU over %d s, endpoint on, nobody connected: %.2f s", IDLE_S, idle))
  print(string.format("scrapes 1.1 s apart (%d): wall median %.2f ms, max %.2f ms; orch CPU %.2f ms per scrape",
    SPACED, median(walls), walls[#walls], spaced_cpu))
  print(string.format("back to back (%d, keep-alive): wall median %.2f ms; orch CPU %.2f ms per scrape; %.0f scrapes/s",
    BURST, median(bwalls), burst_cpu, BURST / burst_s))
end)
if orch_pid then
  uv.kill(orch_pid, "sigterm")
  pcall(lib.poll, function() return not lib.ours_alive(orch_pid) end, 15000, "orch to exit")
  lib.kill_observed()
end
if ok then os.execute("rm -rf '" .. dir .. "'") else error(err .. " (kept " .. dir .. ")", 0) end
