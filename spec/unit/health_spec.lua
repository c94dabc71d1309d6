-- orch.health: validation of the `health` option (through the ecosystem
-- loader, for the exact messages) and the checker on a real loop with a
-- stand-in engine.
local eco = require("orch.ecosystem")
local health = require("orch.health")
local H = require("helpers")
local uv = require("luv")

local tmp

before_each(function()
  tmp = H.tmpdir()
  H.write(tmp .. "/app.sh", "#!/bin/sh\nexit 0\n", tonumber("755", 8))
end)

after_each(function()
  H.rmdir(tmp)
end)

-- One app whose option `src` starts on line 6.
local function load(src, ext)
  local path = tmp .. "/eco." .. (ext or "lua")
  if ext == "json" then
    H.write(path, '{\n  "apps": [\n    {\n      "name": "web",\n      "script": "app.sh",\n      ' .. src .. "\n    }\n  ]\n}\n")
  else
    H.write(path, 'return {\n  apps = {\n    {\n      name = "web",\n      script = "app.sh",\n      ' .. src .. ",\n    },\n  },\n}\n")
  end
  return path, eco.load(path)
end

describe("the health option", function()
  local DEFAULTS = { interval = 10000, timeout = 5000, retries = 3, start_period = 0 }
  local function with_defaults(t)
    local out = {}
    for k, v in pairs(DEFAULTS) do out[k] = v end
    for k, v in pairs(t) do out[k] = v end
    return out
  end

  it("is absent by default, and wait_healthy false", function()
    local _, cfg = load('name = "web"')
    assert.is_nil(cfg.apps[1].health)
    assert.is_false(cfg.apps[1].wait_healthy)
  end)

  local good = {
    { 'health = { http = "http://127.0.0.1:8000/healthz" }',
      { kind = "http", http = "http://127.0.0.1:8000/healthz", host = "127.0.0.1", port = 8000, path = "/healthz" } },
    { 'health = { http = "http://localhost" }',
      { kind = "http", http = "http://localhost", host = "127.0.0.1", port = 80, path = "/" } },
    { 'health = { http = "HTTP://10.0.0.2:81?full=1#x" }',
      { kind = "http", http = "HTTP://10.0.0.2:81?full=1#x", host = "10.0.0.2", port = 81, path = "/?full=1" } },
    { 'health = { http = "http://[::1]:9000/a/b?c" }',
      { kind = "http", http = "http://[::1]:9000/a/b?c", host = "::1", port = 9000, path = "/a/b?c" } },
    { 'health = { tcp = "127.0.0.1:5432" }', { kind = "tcp", tcp = "127.0.0.1:5432", host = "127.0.0.1", port = 5432 } },
    { "health = { tcp = 6379 }", { kind = "tcp", tcp = "127.0.0.1:6379", host = "127.0.0.1", port = 6379 } },
    { 'health = { exec = { "curl", "-f", 5 } }', { kind = "exec", exec = { "curl", "-f", "5" } } },
    { [[health = { exec = "sh -c 'test -e /tmp/x'" }]], { kind = "exec", exec = { "sh", "-c", "test -e /tmp/x" } } },
    { 'health = { tcp = "127.0.0.1:1", interval = "2s", timeout = 300, retries = 0, start_period = "1m" }',
      { kind = "tcp", tcp = "127.0.0.1:1", host = "127.0.0.1", port = 1, interval = 2000, timeout = 300,
        retries = 0, start_period = 60000 } },
  }
  for _, c in ipairs(good) do
    it("accepts " .. c[1], function()
      local path, cfg, err = load(c[1])
      assert(cfg, err)
      assert.are.same(with_defaults(c[2]), cfg.apps[1].health, path)
    end)
  end

  it("accepts a check function in Lua, and wait_healthy with a check", function()
    local _, cfg, err = load("health = { check = function(p, done) done(true) end }, wait_healthy = true")
    assert(cfg, err)
    assert.are.equal("check", cfg.apps[1].health.kind)
    assert.is_function(cfg.apps[1].health.check)
    assert.is_true(cfg.apps[1].wait_healthy)
  end)

  it("accepts JSON", function()
    local _, cfg, err = load('"health": { "http": "http://127.0.0.1:3000/", "interval": "500ms", "retries": 2 }, "wait_healthy": true', "json")
    assert(cfg, err)
    assert.are.same(with_defaults({ kind = "http", http = "http://127.0.0.1:3000/", host = "127.0.0.1", port = 3000,
      path = "/", interval = 500, retries = 2 }), cfg.apps[1].health)
  end)

  local DURATION = 'a number of milliseconds or a string like "500ms", "2s", "1.5m", "1h"'
  local bad = {
    { 'health = "http://127.0.0.1/"', 'expected a table with one of http, tcp, exec or check, got string "http://127.0.0.1/"' },
    { "health = {}", "needs one of 'http', 'tcp', 'exec' or 'check'" },
    { "health = { interval = 100 }", "needs one of 'http', 'tcp', 'exec' or 'check'" },
    { 'health = { 1 }', "unexpected key number 1; fields are written as name = value" },
    { 'health = { tcp = 1, intervl = 5 }', "field 'intervl': unknown field (did you mean 'interval'?)" },
    { 'health = { tcp = 1, http = "http://127.0.0.1/" }', "field 'tcp': 'http' is given too; a health check has one kind" },
    { 'health = { http = "https://127.0.0.1/" }', "field 'http': https is not supported (orch's HTTP check has no TLS): check a plain-HTTP port, or use exec (e.g. curl)" },
    { 'health = { http = "127.0.0.1:80/x" }', 'field \'http\': expected a URL like "http://127.0.0.1:8000/healthz", got string "127.0.0.1:80/x"' },
    { 'health = { http = "http://example.com/" }', "field 'http': host 'example.com' is not an IP address (names are not resolved; use 127.0.0.1)" },
    { 'health = { http = "http://127.0.0.1:99999/" }', 'field \'http\': invalid port in "127.0.0.1:99999" (expected 1-65535)' },
    { 'health = { http = "http://300.0.0.1/" }', "field 'http': host '300.0.0.1' is not an IP address (names are not resolved; use 127.0.0.1)" },
    { 'health = { http = "http://127.0.0.1/a b" }', 'field \'http\': the path must not contain spaces or control characters: "http://127.0.0.1/a b"' },
    { 'health = { http = "http://u@127.0.0.1/" }', "field 'http': user information in the URL is not supported" },
    { 'health = { tcp = "127.0.0.1" }', 'field \'tcp\': no port in "127.0.0.1" (expected "HOST:PORT")' },
    { 'health = { tcp = ":80" }', "field 'tcp': no host (write 127.0.0.1:PORT)" },
    { "health = { tcp = 0 }", 'field \'tcp\': expected a port (1-65535) or "HOST:PORT", got number 0' },
    { "health = { tcp = true }", 'field \'tcp\': expected "HOST:PORT" (e.g. "127.0.0.1:8000") or a port, got boolean true' },
    { "health = { exec = {} }", "field 'exec': expected a command to run, got an empty argv" },
    { 'health = { exec = { "x", true } }', "field 'exec': item 2: expected a string, got boolean true" },
    { [[health = { exec = "sh -c 'x" }]], [[field 'exec': unterminated single quote in string "sh -c 'x"]] },
    { "health = { exec = 5 }", "field 'exec': expected a list of strings (the argv) or a command string, got number 5" },
    { 'health = { check = "return true" }', 'field \'check\': expected a function (Lua files only), got string "return true"' },
    { 'health = { tcp = 1, interval = 0 }', "field 'interval': expected a positive duration (" .. DURATION .. "), got number 0" },
    { 'health = { tcp = 1, timeout = "soon" }', "field 'timeout': expected a positive duration (" .. DURATION .. '), got string "soon"' },
    { 'health = { tcp = 1, start_period = -1 }', "field 'start_period': expected a duration (" .. DURATION .. "), got number -1" },
    { 'health = { tcp = 1, retries = 1.5 }', "field 'retries': expected a non-negative integer (0: never restart), got number 1.5" },
    { 'health = { tcp = 1, retries = "3" }', 'field \'retries\': expected a non-negative integer (0: never restart), got string "3"' },
  }
  for _, c in ipairs(bad) do
    it("rejects " .. c[1], function()
      local path, cfg, err = load(c[1])
      assert.is_nil(cfg)
      assert.are.equal(path .. ":6: app 'web': option 'health': " .. c[2], err)
    end)
  end

  it("points at the line of the offending field", function()
    local path, cfg, err = load('health = {\n        tcp = "127.0.0.1:80",\n        retries = -1,\n      }')
    assert.is_nil(cfg)
    assert.are.equal(path .. ":8: app 'web': option 'health': field 'retries': expected a non-negative integer (0: never restart), got number -1", err)
  end)

  it("rejects a check function in JSON and wait_healthy without a check", function()
    local path, cfg, err = load('"health": { "check": "x" }', "json")
    assert.is_nil(cfg)
    assert.are.equal(path .. ":6: app 'web': option 'health': field 'check': expected a function (Lua files only), got string \"x\"", err)
    path, cfg, err = load("wait_healthy = true")
    assert.is_nil(cfg)
    assert.are.equal(path .. ":6: app 'web': option 'wait_healthy': needs a health check (the 'health' option)", err)
    path, cfg, err = load('wait_healthy = "yes"')
    assert.is_nil(cfg)
    assert.are.equal(path .. ":6: app 'web': option 'wait_healthy': expected a boolean, got string \"yes\"", err)
  end)

  it("labels checks", function()
    assert.are.equal("http http://127.0.0.1/", health.label(health.validate({ http = "http://127.0.0.1/" })))
    assert.are.equal("tcp 127.0.0.1:80", health.label(health.validate({ tcp = 80 })))
    assert.are.equal("exec curl -f x", health.label(health.validate({ exec = "curl -f x" })))
    assert.are.equal("check function", health.label(health.validate({ check = print })))
  end)
end)

---------------------------------------------------------------------------
-- The checker, with a stand-in for the engine.
---------------------------------------------------------------------------

describe("the health checker", function()
  local engine, checker, handles_before

  local function count_handles()
    local n = 0
    uv.walk(function(h) if not h:is_closing() then n = n + 1 end end)
    return n
  end

  before_each(function()
    uv.run("nowait")
    handles_before = count_handles()
    engine = { logs = {}, events = {}, restarts = 0 }
    engine.log = function(level, msg) engine.logs[#engine.logs + 1] = level .. ": " .. msg end
    function engine.user_error(self, p, what, err)
      self.log("error", self.sup:label(p) .. ": " .. what .. " failed: " .. err)
    end
    engine.sup = {
      label = function(_, p) return p.name .. ":" .. p.instance end,
      set_online = function(_, p)
        if p.status ~= "launching" then return false end
        p.status = "online"
        return true
      end,
      restart = function(_, p) engine.restarts = engine.restarts + 1 p.restarted = true end,
    }
    engine.api = { get = function(id) return { id = id } end }
    -- the real engine also waits for 'ready' (wait_ready); here health alone decides
    function engine:maybe_online(p) return self.sup:set_online(p) end
    function engine:_event(event, _, info) self.events[#self.events + 1] = { event, info.healthy, info.message } end
    checker = health.new({
      log = engine.log, label = function(p) return engine.sup:label(p) end,
      maybe_online = function(p) return engine:maybe_online(p) end,
      emit = function(event, p, info) engine:_event(event, p, info) end,
      api_get = engine.api.get, user_error = function(p, what, err) engine:user_error(p, what, err) end,
      restart = function(p) engine.sup:restart(p) end, -- the engine's goes through orch.ops
    })
  end)

  after_each(function()
    checker:close()
    for _ = 1, 5 do uv.run("nowait") end
    -- every timer, socket, pipe and process handle is gone
    H.wait_until(function() uv.run("nowait") return count_handles() <= handles_before end, 2000, "handles to be closed")
  end)

  local function proc(cfg, status)
    local spec = assert(health.validate(cfg))
    return { id = 7, name = "t", instance = 0, status = status or "online", base_env = { PATH = os.getenv("PATH") },
             app = { name = "t", health = spec, hook_deadline = 100, cwd = tmp, env = {} } }
  end

  local function wait_state(p, fn, what)
    return H.wait_until(function() return fn(p.health_state or {}) end, 5000, function()
      return (what or "a health state") .. "; now " .. require("orch.inspect")(p.health_state)
    end)
  end

  it("makes a gated process online at its first good check, and says healthy once", function()
    local n = 0
    local p = proc({ interval = 20, check = function(_, done) n = n + 1 done(true, "fine " .. n) end }, "launching")
    checker:start(p)
    assert.are.equal("starting", p.health_state.status)
    assert.is_false(p.healthy)
    wait_state(p, function(s) return s.status == "healthy" end)
    assert.is_true(p.healthy)
    assert.are.equal("online", p.status)
    wait_state(p, function() return n >= 3 end)
    assert.are.same({ { "health", true, "fine 1" } }, engine.events)
    assert.are.same({ "info: t:0 healthy: fine 1" }, engine.logs)
    assert.are.equal(0, p.health_state.failures)
  end)

  it("takes a result returned by the function, and done called later", function()
    local p = proc({ interval = 20, check = function() return false, "nope" end })
    checker:start(p)
    wait_state(p, function(s) return s.failures == 2 end)
    assert.are.equal("nope", p.health_state.last)
    checker:stop(p)
    local report
    p = proc({ interval = 20, check = function(_, done) report = done end })
    checker:start(p)
    H.wait_until(function() return report end)
    assert.is_nil(p.health_state.last)
    report(true, "later")
    report(false, "twice")   -- only the first report counts
    wait_state(p, function(s) return s.status == "healthy" end)
    assert.are.equal("later", p.health_state.last)
  end)

  it("restarts after retries failures in a row, counting none in start_period", function()
    local t0 = uv.now()
    local p = proc({ interval = 20, retries = 2, start_period = 300, check = function() return false, "down" end })
    checker:start(p)
    H.wait_until(function() return p.restarted end, 5000, "a restart")
    assert.is_true(uv.now() - t0 >= 300)
    assert.are.equal(1, engine.restarts)
    assert.is_false(p.healthy)
    assert.are.equal("unhealthy", p.health_state.status)
    assert.are.equal(2, p.health_state.failures)
    assert.are.same({ { "health", false, "down" } }, engine.events)
    assert.are.same({ "warn: t:0 unhealthy: 2 checks failed in a row, last: down; restarting" }, engine.logs)
    assert.is_nil(checker.runs[p]) -- stopped; the engine starts it again on "start"
  end)

  it("counts failures once healthy even within start_period", function()
    local n = 0
    local p = proc({ interval = 20, retries = 2, start_period = 60000,
                     check = function() n = n + 1 return n == 1, "n=" .. n end })
    checker:start(p)
    H.wait_until(function() return p.restarted end, 5000, "a restart")
    assert.are.same({ { "health", true, "n=1" }, { "health", false, "n=3" } }, engine.events)
  end)

  it("with retries = 0 only reports", function()
    local n = 0
    local p = proc({ interval = 20, retries = 0, check = function() n = n + 1 return n > 3, "n=" .. n end })
    checker:start(p)
    wait_state(p, function(s) return s.status == "healthy" end)
    assert.is_true(p.healthy)
    assert.are.equal(0, engine.restarts)
    assert.are.same({ { "health", false, "n=1" }, { "health", true, "n=4" } }, engine.events)
  end)

  it("fails a check that raises, logging the error, or that never reports", function()
    local p = proc({ interval = 20, retries = 0, check = function() error("boom") end })
    checker:start(p)
    wait_state(p, function(s) return s.status == "unhealthy" end)
    assert.matches("^check function failed: .*boom$", p.health_state.last)
    assert.matches("^error: t:0: health check function failed: .*boom\nstack traceback:", engine.logs[1])
    checker:stop(p)
    p = proc({ interval = 20, timeout = 50, retries = 0, check = function() end })
    checker:start(p)
    wait_state(p, function(s) return s.status == "unhealthy" end)
    assert.are.equal("timed out after 50 ms", p.health_state.last)
    checker:stop(p)
    p = proc({ interval = 20, timeout = 50, retries = 0, check = function() while true do end end })
    checker:start(p)
    wait_state(p, function(s) return s.status == "unhealthy" end)
    assert.matches("^check function failed: hook interrupted: ran longer than 100 ms", p.health_state.last)
  end)

  it("stops: no check runs after stop, and a late done is ignored", function()
    local report, n = nil, 0
    local p = proc({ interval = 10, check = function(_, done) n = n + 1 report = done end })
    checker:start(p)
    H.wait_until(function() return report end)
    checker:stop(p)
    report(true, "too late")
    local t = uv.now()
    H.wait_until(function() return uv.now() - t > 100 end)
    assert.are.equal(1, n)
    assert.are.equal("starting", p.health_state.status)
  end)

  it("checks TCP and HTTP against a local server", function()
    local server = uv.new_tcp()
    assert(server:bind("127.0.0.1", 0))
    local port = server:getsockname().port
    local status = "200 OK"
    local requests = {}
    server:listen(16, function()
      local c = uv.new_tcp()
      server:accept(c)
      local buf = ""
      c:read_start(function(_, data)
        if not data then c:close() return end
        buf = buf .. data
        if buf:find("\r\n\r\n", 1, true) then
          requests[#requests + 1] = buf
          c:write("HTTP/1.1 " .. status .. "\r\nContent-Length: 0\r\n\r\n", function() c:close() end)
        end
      end)
    end)
    local p = proc({ tcp = port, interval = 20, retries = 0 })
    checker:start(p)
    wait_state(p, function(s) return s.status == "healthy" end)
    assert.are.equal("connected to 127.0.0.1:" .. port, p.health_state.last)
    checker:stop(p)
    p = proc({ http = "http://127.0.0.1:" .. port .. "/healthz?x=1", interval = 20, retries = 0 })
    checker:start(p)
    wait_state(p, function(s) return s.status == "healthy" end)
    assert.are.equal("HTTP 200 OK", p.health_state.last)
    assert.are.equal("GET /healthz?x=1 HTTP/1.1\r\nHost: 127.0.0.1:" .. port
      .. "\r\nUser-Agent: orch-health\r\nAccept: */*\r\nConnection: close\r\n\r\n", requests[1])
    status = "302 Found"
    wait_state(p, function(s) return s.last == "HTTP 302 Found" end)
    assert.are.equal("healthy", p.health_state.status)
    status = "503 Service Unavailable"
    wait_state(p, function(s) return s.status == "unhealthy" end)
    assert.are.equal("HTTP 503 Service Unavailable", p.health_state.last)
    checker:stop(p)
    server:close()
    -- nothing listens any more
    p = proc({ http = "http://127.0.0.1:" .. port .. "/", interval = 20, retries = 0 })
    checker:start(p)
    wait_state(p, function(s) return s.status == "unhealthy" end)
    assert.matches("^connect 127.0.0.1:" .. port .. ": ECONNREFUSED", p.health_state.last)
  end)

  it("fails an HTTP check whose server does not answer in time", function()
    local server = uv.new_tcp()
    assert(server:bind("127.0.0.1", 0))
    local port = server:getsockname().port
    local conns = {}
    server:listen(16, function()
      local c = uv.new_tcp()
      server:accept(c)
      conns[#conns + 1] = c
    end)
    local p = proc({ http = "http://127.0.0.1:" .. port .. "/", interval = 20, timeout = 100, retries = 0 })
    checker:start(p)
    wait_state(p, function(s) return s.status == "unhealthy" end)
    assert.are.equal("timed out after 100 ms", p.health_state.last)
    checker:stop(p)
    for _, c in ipairs(conns) do c:close() end
    server:close()
  end)

  it("runs exec checks in the app's cwd and environment, and kills one that times out", function()
    local p = proc({ exec = { "sh", "-c", 'echo "in $(pwd) as $ORCH_APP_NAME"; exit 3' }, interval = 20, retries = 0 })
    checker:start(p)
    wait_state(p, function(s) return s.status == "unhealthy" end)
    assert.are.equal("exit code 3: in " .. tmp .. " as t", p.health_state.last)
    checker:stop(p)
    p = proc({ exec = { "true" }, interval = 20, retries = 0 })
    checker:start(p)
    wait_state(p, function(s) return s.status == "healthy" end)
    assert.are.equal("exit code 0", p.health_state.last)
    checker:stop(p)
    p = proc({ exec = { "/nonexistent/check" }, interval = 20, retries = 0 })
    checker:start(p)
    wait_state(p, function(s) return s.status == "unhealthy" end)
    assert.matches("^cannot run /nonexistent/check: ENOENT", p.health_state.last)
    checker:stop(p)
    -- a check that starts a child and hangs: both are killed at the timeout
    local marker = tmp .. "/child.pid"
    p = proc({ exec = { "sh", "-c", "sleep 30 & echo $! > " .. marker .. "; wait" }, interval = 1000, timeout = 100, retries = 0 })
    checker:start(p)
    wait_state(p, function(s) return s.status == "unhealthy" end)
    assert.are.equal("timed out after 100 ms", p.health_state.last)
    local child = tonumber(H.read(marker))
    assert.is_number(child)
    H.wait_until(function() return not H.alive(child) end, 2000, "the check's child to be killed")
  end)
end)
