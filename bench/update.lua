-- bench/update.lua: what `orch update` costs with 100 apps running: the
-- CLI's time from the command to the new daemon's answer, and how long the
-- control socket went unanswered meanwhile (a pinger on the same loop sends
-- `ping` on a new connection as soon as the previous reply is in; the
-- longest gap between two replies during the update). With ORCH_BENCH_CLUSTER=1
-- (needs node and wrk) a cluster app (bench/apps/hello.js, 2 workers,
-- round-robin) runs too, under two wrk loads through every round (kept-alive
-- connections, and Connection: close), and the failed requests are counted
-- (non-2xx responses and wrk's socket errors). From the repository:
-- build/orch lua bench/update.lua (ORCH_BIN=path picks another binary). The
-- daemon runs from a copy of the binary in a fresh ORCH_HOME under /tmp,
-- which each round replaces by rename, as an install does; the run ends
-- with `orch kill`, then SIGKILL by pid to what is left.
local uv = require("luv")
local cjson = require("cjson")

local APPS, ROUNDS = 100, tonumber(os.getenv("ORCH_BENCH_ROUNDS")) or 5

local lib = dofile((arg[0]:match("^(.*)/") or ".") .. "/lib.lua")
local cli, observe = lib.cli, lib.observe

local home = assert(uv.fs_mkdtemp("/tmp/orch-bench-XXXXXX"))
local exe = home .. "/orch"
local function install()
  assert(os.execute(("cp '%s' '%s.new' && mv '%s.new' '%s'"):format(lib.BIN, exe, exe, exe)) == 0)
end
install()
local CLUSTER = os.getenv("ORCH_BENCH_CLUSTER") == "1"
local WORKERS = CLUSTER and 2 or 0

local port = CLUSTER and lib.free_port() -- for the cluster app

local f = assert(io.open(home .. "/ecosystem.config.lua", "w"))
f:write(("local apps = {}\nfor i = 1, %d do apps[i] = { name = 'a' .. i, script = 'sleep', args = { '1000' } } end\n")
  :format(APPS))
if CLUSTER then
  local hello = lib.ROOT .. "/bench/apps/hello.js"
  f:write(("apps[#apps + 1] = { name = 'web', script = %q, exec_mode = 'cluster', instances = %d, "
    .. "balance = 'round-robin', env = { PORT = '%d', HOST = '127.0.0.1' } }\n"):format(hello, WORKERS, port))
end
f:write("return { apps = apps }\n")
f:close()

-- wrk on the cluster app until stop(): its report (SIGINT makes wrk print it).
local function wrk(close)
  local out, args = uv.new_pipe(false), { "-t1", "-c8", "-d600s" }
  if close then for _, a in ipairs({ "-H", "Connection: close" }) do args[#args + 1] = a end end
  args[#args + 1] = ("http://127.0.0.1:%d/"):format(port)
  local text, r = {}, {}
  local h, pid = uv.spawn("wrk", { args = args, stdio = { nil, out, 2 } }, function() r.exited = true end)
  assert(h, "cannot run wrk: " .. tostring(pid))
  observe(pid)
  out:read_start(function(_, data) if data then text[#text + 1] = data else r.eof = true end end)
  return function()
    uv.kill(pid, "sigint")
    lib.wait(function() return r.exited and r.eof end, 10000)
    out:close()
    h:close()
    local report = table.concat(text)
    local reqs = tonumber(report:match("(%d+) requests in"))
    assert(reqs, "wrk: " .. report)
    local failed = tonumber(report:match("Non%-2xx or 3xx responses: (%d+)")) or 0
    local c, rd, w, t = report:match("connect (%d+), read (%d+), write (%d+), timeout (%d+)")
    if c then failed = failed + c + rd + w + t end
    return reqs, failed
  end
end

-- Pings back to back, each on a connection of its own (the exec closes the
-- old ones), noting when each reply came. stop() ends it.
local function pinger()
  local replies, running = {}, true
  local function one()
    if not running then return end
    local c, buf = uv.new_pipe(false), ""
    c:connect(home .. "/orch.sock", function(err)
      if err then c:close() return one() end
      c:read_start(function(_, data)
        if data then
          buf = buf .. data
          if buf:find("\n", 1, true) then
            replies[#replies + 1] = uv.hrtime()
            c:close()
            one()
          end
        else
          c:close()
          one()
        end
      end)
      c:write('{"id":1,"cmd":"ping"}\n')
    end)
  end
  one()
  return replies, function() running = false end
end

local function median(t)
  table.sort(t)
  return t[math.ceil(#t / 2)]
end

local ok, err = pcall(function()
  cli(home, { "start", "ecosystem.config.lua" }, 60000, exe)
  lib.poll(function()
    local procs = cjson.decode(cli(home, { "list", "--json" }, nil, exe).out)
    local up = 0
    for _, p in ipairs(procs) do
      if p.status == "online" then up = up + 1 end
      if type(p.pid) == "number" then observe(p.pid) end
    end
    return up == APPS + WORKERS
  end, 60000, APPS .. " apps online")
  local daemon = tonumber((lib.read(home .. "/daemon.pid")))
  observe(daemon)
  local totals, gaps, reported = {}, {}, {}
  local function web_pids()
    local t = {}
    for _, p in ipairs(cjson.decode(cli(home, { "list", "--json" }, nil, exe).out)) do
      if p.name == "web" then t[#t + 1] = p.pid .. "/" .. p.restarts end
    end
    return table.concat(t, " ")
  end
  if CLUSTER then
    lib.poll(function()
      local v = cjson.decode(cli(home, { "describe", "web", "--json" }, nil, exe).out)
      local c = (v[1] or v).cluster
      return c and c[1] and c[1].workers == WORKERS
    end, 30000, "the cluster workers listening")
  end
  local workers_before = web_pids()
  local loads = {}
  if CLUSTER then
    loads = { wrk(false), wrk(true) }
    lib.wait(function() return false end, 1000) -- wrk under way
  end
  for round = 1, ROUNDS do
    install()
    local replies, stop = pinger()
    lib.wait(function() return #replies >= 20 end, 5000)
    local t0 = uv.hrtime()
    local r = cli(home, { "update", "--json" }, 60000, exe)
    local t1 = uv.hrtime()
    lib.wait(function() return replies[#replies] and replies[#replies] > t1 end, 5000)
    stop()
    local gap, prev = 0, nil
    for _, at in ipairs(replies) do
      if prev and at > t0 and prev < t1 then gap = math.max(gap, at - prev) end
      prev = at
    end
    local res = cjson.decode(r.out)
    assert(res.pid_now == daemon and res.processes == APPS + WORKERS, "round " .. round .. ": " .. r.out)
    totals[#totals + 1], gaps[#gaps + 1], reported[#reported + 1] = r.ms, gap / 1e6, res.ms
    print(("round %d: orch update %.1f ms (CLI, start to exit), %d ms (reply to the new daemon's answer), "
      .. "control socket unanswered for at most %.1f ms, %d pings answered"):format(round, r.ms, res.ms, gap / 1e6,
      #replies))
  end
  print(("median of %d: orch update %.1f ms, unanswered %.1f ms (max %.1f ms), %d apps, pid unchanged")
    :format(ROUNDS, median(totals), median(gaps), math.max(unpack(gaps)), APPS))
  local settles = {}
  for ms in (lib.read(home .. "/daemon.log") or ""):gmatch("nothing in flight after (%d+) ms") do
    settles[#settles + 1] = ms
  end
  print("waits for nothing in flight before each exec (daemon.log), ms: " .. table.concat(settles, ", "))
  assert(web_pids() == workers_before, "the cluster workers changed: " .. workers_before .. " then " .. web_pids())
  for i, stop in ipairs(loads) do
    local reqs, failed = stop()
    print(("cluster app (%d round-robin workers), wrk -t1 -c8 %s through the %d updates: %d requests, %d failed")
      :format(WORKERS, i == 1 and "kept-alive" or "Connection: close", ROUNDS, reqs, failed))
  end
end)
pcall(cli, home, { "kill" }, 30000, exe)
lib.kill_observed()
os.execute("rm -rf '" .. home .. "'")
if not ok then
  io.stderr:write("bench/update.lua: ", tostring(err), "\n")
  os.exit(1)
end
