-- Health checks in the daemon: liveness restarts, readiness (wait_healthy),
-- and each kind of check (http, tcp, exec, a Lua function).
local H = require("helpers")
local uv = require("luv")

local apps = H.root .. "/spec/fixtures/apps"
local server = apps .. "/healthy_server.py"

-- A port nothing listens on right now (the kernel's pick, on 127.0.0.1).
local free_port = H.free_port
H.need("python3")

describe("health checks", function()
  local dir, home
  H.each_test(function(d, h) dir, home = d, h end)

  local function orch(args)
    return H.orch_sync(args, { home = home, cwd = dir })
  end

  local function start(eco)
    H.write(dir .. "/ecosystem.lua", eco)
    local code, out, err = orch({ "start", dir .. "/ecosystem.lua" })
    assert(code == 0, out .. err)
  end

  local function describe_app(name)
    local list = H.json(home, { "describe", name })
    return list and list[1]
  end

  -- Polls `orch describe NAME` until cond(view) holds; returns the view.
  local function wait_describe(name, cond, what, timeout)
    local last
    return H.wait_until(function()
      last = describe_app(name)
      return last and cond(last) and last
    end, timeout or 10000, function()
      return (what or "a condition") .. "; last describe: " .. require("cjson").encode(last or {})
    end)
  end

  local function daemon_log()
    return H.read(home .. "/daemon.log") or ""
  end

  it("restarts a process whose HTTP check fails `retries` times in a row", function()
    local port = free_port()
    local flag = dir .. "/unhealthy"
    assert.are.equal(0, (orch({ "ping" })))
    assert.are.equal(0, (orch({ "eval",
      "seen = {} orch.on('health', function(p, ok, msg) seen[#seen + 1] = p.name .. ' ' .. tostring(ok) .. ' ' .. msg end)" })))
    start(string.format([[
      return { apps = { { name = "web", script = %q, env = { PORT = %d, HEALTH_FLAG = %q },
        health = { http = "http://127.0.0.1:%d/healthz", interval = 100, timeout = 1000, retries = 2,
                   start_period = "20s" } } } }
    ]], server, port, flag, port))
    local v = wait_describe("web", function(d) return d.status == "online" and d.health.status == "healthy" end,
      "web to be healthy")
    assert.are.same({ status = "healthy", failures = 0, last = "HTTP 200 OK",
                      check = "http http://127.0.0.1:" .. port .. "/healthz" }, v.health)
    assert.are.equal(0, v.restarts)
    local old = v.pid
    H.track(old)

    -- this server (by pid) turns unhealthy; the one started next is fine
    H.write(flag, tostring(old))
    v = wait_describe("web", function(d)
      return d.restarts == 1 and d.status == "online" and d.pid ~= old and d.health.status == "healthy"
    end, "web to be restarted and healthy again")
    H.track(v.pid)
    assert.is_false(H.alive(old))
    assert.truthy(daemon_log():find(
      "web:0 unhealthy: 2 checks failed in a row, last: HTTP 500 Internal Server Error; restarting", 1, true))
    local _, out = orch({ "eval", "table.concat(seen, ',')" })
    assert.are.equal('"web true HTTP 200 OK,web false HTTP 500 Internal Server Error,web true HTTP 200 OK"\n', out)
    -- the human describe shows it too
    local code, text = orch({ "describe", "web" })
    assert.are.equal(0, code)
    assert.matches("\n  health%s+healthy", text)
  end)

  it("keeps a wait_healthy process launching until its first good check", function()
    local port = free_port()
    start(string.format([[
      return { apps = { { name = "slow", script = %q, env = { PORT = %d, SLEEP_MS = 700 }, wait_healthy = true,
        health = { http = "http://127.0.0.1:%d/healthz", interval = 100, retries = 2, start_period = "20s" } } } }
    ]], server, port, port))
    local t0 = uv.now()
    local seen = {}
    local v = H.wait_until(function()
      local list = H.json(home, { "list" })
      local p = list and list[1]
      if p then
        uv.update_time()
        seen[#seen + 1] = { status = p.status, t = uv.now() - t0 }
      end
      return p and p.status ~= "launching" and p
    end, 10000, "slow to leave launching")
    assert.are.equal("online", v.status)
    assert.are.equal(0, v.restarts) -- failures within start_period did not count
    assert.are.equal("launching", seen[1].status)
    -- online only once the server listens (it sleeps 700 ms first)
    assert.is_true(seen[#seen].t >= 700, "online after " .. seen[#seen].t .. " ms")
    for i = 1, #seen - 1 do assert.are.equal("launching", seen[i].status) end
    local d = describe_app("slow")
    assert.are.equal("healthy", d.health.status)
    assert.matches("listening on 127.0.0.1:" .. port, H.read(d.out_log))
    assert.matches("slow:0 healthy: HTTP 200 OK", daemon_log())
  end)

  it("checks a TCP port", function()
    local port, closed = free_port(), free_port()
    start(string.format([[
      return { apps = {
        { name = "web", script = %q, env = { PORT = %d }, wait_healthy = true,
          health = { tcp = "127.0.0.1:%d", interval = 100, start_period = "20s" } },
        { name = "nap", script = "sleep", args = { "1000" },
          health = { tcp = %d, interval = 100, retries = 2 } },
      } }
    ]], server, port, port, closed))
    local v = wait_describe("web", function(d) return d.status == "online" end, "web to be online")
    assert.are.equal("connected to 127.0.0.1:" .. port, v.health.last)
    wait_describe("nap", function(d) return d.restarts >= 1 end, "nap to be restarted")
    assert.matches("nap:0 unhealthy: 2 checks failed in a row, last: connect 127.0.0.1:" .. closed
      .. ": ECONNREFUSED[^\n]*; restarting", daemon_log())
  end)

  it("runs an exec check, and kills one that outlives its timeout", function()
    local flag = dir .. "/flag"
    start(string.format([[
      return { apps = {
        { name = "nap", script = "sleep", args = { "1000" }, env = { FLAG = %q },
          health = { exec = { "sh", "-c", 'echo "checking $ORCH_APP_NAME"; test ! -e "$FLAG"' },
                     interval = 100, retries = 2 } },
        { name = "hang", script = "sleep", args = { "1000" },
          health = { exec = "sleep 7.125", interval = 50, timeout = 150, retries = 0 } },
      } }
    ]], flag))
    local v = wait_describe("nap", function(d) return d.health.status == "healthy" end, "nap to be healthy")
    assert.are.equal("exit code 0: checking nap", v.health.last)
    H.write(flag, "")
    wait_describe("nap", function(d) return d.restarts >= 1 end, "nap to be restarted")
    os.remove(flag)
    assert.truthy(daemon_log():find("nap:0 unhealthy: 2 checks failed in a row, last: exit code 1: checking nap; restarting",
      1, true))

    v = wait_describe("hang", function(d) return d.health.failures >= 3 end, "three timed out checks of hang")
    assert.are.equal("unhealthy", v.health.status)
    assert.are.equal("timed out after 150 ms", v.health.last)
    assert.are.equal(0, v.restarts) -- retries = 0: report only
    -- each timed-out check was killed: while three more time out, never
    -- more than the current one runs (checks run with the app's
    -- environment, so app_pids finds them)
    local max, seen = 0, 0
    H.wait_until(function()
      local n = 0
      for _, pid in ipairs(H.app_pids(home, "hang")) do
        if H.read("/proc/" .. pid .. "/cmdline") == "sleep\0007.125\0" then n = n + 1 end
      end
      max, seen = math.max(max, n), seen + (n > 0 and 1 or 0)
      local d = describe_app("hang")
      return seen > 0 and d.health.failures >= v.health.failures + 3
    end, 10000, "hang's checks to be seen running")
    assert.are.equal(1, max)
  end)

  it("runs a Lua check function; one that raises is logged and counts as a failure", function()
    start([[
      return { apps = {
        { name = "good", script = "sleep", args = { "1000" }, wait_healthy = true,
          health = { interval = 100, check = function(p, done) done(p.pid ~= nil, "pid " .. tostring(p.pid)) end } },
        { name = "bad", script = "sleep", args = { "1000" },
          health = { interval = 100, retries = 2, check = function(p, done) error("no luck for " .. p.name) end } },
      } }
    ]])
    local v = wait_describe("good", function(d) return d.status == "online" end, "good to be online")
    assert.are.equal("pid " .. v.pid, v.health.last)
    wait_describe("bad", function(d) return d.restarts >= 1 end, "bad to be restarted")
    local log = daemon_log()
    assert.matches("bad:0: health check function failed: [^\n]*no luck for bad\nstack traceback:", log)
    assert.matches("bad:0 unhealthy: 2 checks failed in a row, last: check function failed: [^\n]*no luck for bad; restarting",
      log)
  end)

  it("holds back an app that depends on another being healthy", function()
    local port = free_port()
    start(string.format([[
      return { apps = {
        { name = "api", script = "sleep", args = { "1000" }, depends_on = { web = "healthy" } },
        { name = "web", script = %q, env = { PORT = %d, SLEEP_MS = 500 },
          health = { http = "http://127.0.0.1:%d/healthz", interval = 100, start_period = "20s" } },
      } }
    ]], server, port, port))
    -- web is online at once (no wait_healthy) but not healthy before it listens
    local first = describe_app("api")
    assert.are.equal("blocked", first.status)
    local api = wait_describe("api", function(d) return d.status == "online" end, "api to start")
    local web = describe_app("web")
    assert.are.equal("healthy", web.health.status)
    assert.is_true(api.started_at >= web.started_at)
    assert.matches("listening on 127.0.0.1:" .. port, H.read(web.out_log))
  end)
end)
