-- The opt-in HTTP endpoint (docs/http.md): off by default, where ORCH_HTTP
-- or --http says, the token for what changes state, the probes, and the
-- server's limits (a bad or slow client never hurts the daemon).
local H = require("helpers")
local C = require("httpclient")
local uv = require("luv")

local sleeper = "/bin/sleep"

describe("the HTTP endpoint", function()
  local dir, home
  H.each_test(function(d, h) dir, home = d, h end)

  local ENV = { ORCH_HTTP = "127.0.0.1:0" }

  -- orch ping (--json) with env; its result.
  local function ping(env)
    local r, code, err = H.json(home, { "ping" }, { env = env })
    assert(code == 0, err)
    return r
  end

  -- Starts a daemon listening on a port the kernel picks; its port and pid.
  local function daemon(env)
    local r = ping(env or ENV)
    assert(r.http, "ping shows no http endpoint")
    return tonumber(r.http.address:match(":(%d+)$")), r.pid
  end

  local function start(body)
    return H.started(dir, home, body)
  end

  local function token() return (H.read(home .. "/http.token") or ""):match("%x+") end

  it("is off unless asked for", function()
    local r = ping({})
    assert.is_nil(r.http)
    assert.is_nil(uv.fs_stat(home .. "/http.token"))
  end)

  it("listens where ORCH_HTTP says; orch ping shows where; the token file is 0600", function()
    local port = H.free_port()
    local code, out, err = H.orch_sync({ "ping" }, { home = home, env = { ORCH_HTTP = "127.0.0.1:" .. port } })
    assert(code == 0, err)
    assert.matches("http: http://127.0.0.1:" .. port .. "/ %(token in " .. home:gsub("%p", "%%%0")
      .. "/http.token%)", out)
    local st = uv.fs_stat(home .. "/http.token")
    assert.are.equal(384, st.mode % 512)
    assert.are.equal(64, #token())
    local r = C.get(port, "/healthz")
    assert.are.equal(200, r.status)
    assert.are.equal("ok\n", r.body)
  end)

  it("listens where --http says, on orch daemon and orch run", function()
    local port = H.free_port()
    local d = H.orch({ "daemon", "--http", "127.0.0.1:" .. port }, { home = home })
    H.wait_until(function()
      local r = C.get(port, "/healthz")
      return r and r.status == 200
    end, 10000, "the daemon's endpoint")
    assert.are.equal("127.0.0.1:" .. port, ping({}).http.address)
    H.orch_sync({ "kill" }, { home = home })
    d:wait_exit(10000)
    H.ecosystem(dir, string.format("{ name = 'a', script = %q, args = { '1000' } }", sleeper))
    local run_port = H.free_port()
    -- --http wins over ORCH_HTTP
    local run = H.orch({ "run", dir .. "/ecosystem.lua", "--http=127.0.0.1:" .. run_port },
      { home = home, cwd = dir, env = { ORCH_HTTP = "127.0.0.1:1" } })
    H.wait_until(function()
      local r = C.get(run_port, "/readyz")
      return r and r.status == 200
    end, 15000, "orch run's /readyz to answer 200")
    uv.kill(run.pid, "sigterm")
    assert.are.equal(0, run:wait_exit(15000))
  end)

  it("refuses a bad address, naming it, and starts nothing", function()
    local code, _, err = H.orch_sync({ "ping" }, { home = home, env = { ORCH_HTTP = "web:80" } })
    assert.are_not.equal(0, code)
    assert.matches("ORCH_HTTP: 'web:80': 'web' is not an IP address", err)
    code, _, err = H.orch_sync({ "run", "x.lua", "--http", "127.0.0.1:99999" }, { home = home })
    assert.are.equal(2, code)
    assert.matches("orch run: %-%-http: '127.0.0.1:99999': port 99999 is out of range", err)
    local busy = daemon() -- a port in use
    code, _, err = H.orch_sync({ "daemon", "--http", "127.0.0.1:" .. busy }, { home = dir .. "/other" })
    assert.are.equal(1, code)
    assert.matches("cannot listen on 127.0.0.1:" .. busy .. ": EADDRINUSE", err)
  end)

  it("needs the token for what changes state; reads are open", function()
    local port = daemon()
    start(string.format("{ name = 'a', script = %q, args = { '1000' } }", sleeper))
    local before = H.json(home, { "list" })[1]
    assert.are.equal(401, C.request(port, "POST", "/api/restart?target=a").status)
    assert.are.equal(401, C.request(port, "POST", "/api/restart?target=a",
      { "Authorization: Bearer " .. ("0"):rep(64) }).status)
    assert.are.equal(401, C.request(port, "POST", "/api/restart?target=a",
      { "Authorization: Bearer " .. token():sub(1, 63) }).status)
    assert.are.equal(before.pid, H.json(home, { "list" })[1].pid)
    local r = C.request(port, "POST", "/api/restart?target=a", { "Authorization: Bearer " .. token() })
    assert.are.equal(200, r.status, r.body)
    local after = require("cjson").decode(r.body).result[1]
    assert.are.equal(1, after.restarts)
    assert.are_not.equal(before.pid, after.pid)
    r = C.request(port, "POST", "/api/stop", { "Authorization: Bearer " .. token() }, '{"target":"nope"}')
    assert.are.equal(404, r.status)
    assert.are.equal(200, C.get(port, "/api/processes").status)
    assert.are.equal(200, C.get(port, "/metrics").status)
  end)

  it("answers /readyz for every app that should run, or the apps named", function()
    local port = daemon()
    assert.are.equal(200, C.get(port, "/readyz").status) -- nothing should run
    start(string.format([[
      { name = 'up', script = %q, args = { '1000' } },
      { name = 'down', script = %q, args = { '1000' } },
      { name = 'ill', script = %q, args = { '1000' },
        health = { exec = { 'false' }, interval = 100, timeout = 2000, retries = 1000, start_period = 100 } },
    ]], sleeper, sleeper, sleeper))
    assert.are.equal(0, (H.orch_sync({ "stop", "down" }, { home = home })))
    local r = C.get(port, "/readyz")
    assert.are.equal(503, r.status)
    assert.matches("ill:0 is not healthy yet", r.body)
    assert.not_matches("down", r.body) -- stopped: need not run
    assert.are.equal(200, C.get(port, "/readyz?app=up").status)
    r = C.get(port, "/readyz?app=up&app=down&app=nope")
    assert.are.equal(503, r.status)
    assert.matches("down:0 is stopped", r.body)
    assert.matches("no app named 'nope'", r.body)
    assert.are.equal(0, (H.orch_sync({ "delete", "ill" }, { home = home })))
    assert.are.equal(200, C.get(port, "/readyz").status)
  end)

  it("answers a malformed request with 400 and carries on", function()
    local port, pid = daemon()
    for _, bad in ipairs({ "hello\r\n\r\n", "GET\r\n\r\n", "GET / HTTP/1.1\r\nno colon\r\n\r\n",
                           "GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", "\0\1\2\r\n\r\n",
                           "GET http://x/ HTTP/1.1\r\n\r\n" }) do
      local r = C.raw(port, bad)
      assert.are.equal(400, r.status, bad)
    end
    assert.are.equal(501, C.raw(port, "POST /api/stop HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n").status)
    assert.are.equal(413, C.raw(port, "POST /api/stop HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n").status)
    assert.are.equal(431, C.raw(port, "GET / HTTP/1.1\r\nX: " .. ("a"):rep(10000) .. "\r\n\r\n").status)
    assert.are.equal(404, C.get(port, "/nope").status)
    assert.are.equal(405, C.request(port, "DELETE", "/metrics").status)
    assert.are.equal(pid, ping({}).pid)
    -- keep-alive: two requests on one connection, pipelined
    local c = C.connect(port)
    c:send("GET /healthz HTTP/1.1\r\n\r\nGET /readyz HTTP/1.1\r\n\r\n")
    assert.are.equal("ok\n", c:response().body)
    assert.are.equal("ready\n", c:response().body)
    c:close()
  end)

  it("times slow and idle clients out", function()
    local port = daemon()
    assert.are.equal(0, (H.orch_sync({ "eval",
      "local h = require('orch.http') h.REQUEST_TIMEOUT_MS = 300 h.IDLE_TIMEOUT_MS = 300" }, { home = home })))
    local slow = C.connect(port)
    slow:send("GET /healthz HTTP/1.1\r\nX: ") -- never finished
    local idle = C.connect(port)
    local r = slow:response(5000)
    assert.are.equal(408, r.status)
    slow:wait_closed(5000)
    idle:wait_closed(5000)
    slow:close()
    idle:close()
  end)

  it("holds its connections to a bound, and still answers", function()
    local port, pid = daemon()
    local function fds() return #H.sh("ls /proc/" .. pid .. "/fd"):gsub("[^\n]", "") end
    local base = fds()
    local conns = {}
    for i = 1, 300 do conns[i] = C.connect(port) end
    local r = C.get(port, "/healthz")
    assert.are.equal(200, r.status)
    -- at most max_conns (an eighth of the fd limit, 8 to 256) stay open
    assert.is_true(fds() - base <= 257, "open descriptors: " .. fds() .. " (from " .. base .. ")")
    local closed = 0
    H.wait_until(function()
      closed = 0
      for _, c in ipairs(conns) do if c.eof then closed = closed + 1 end end
      return closed >= 300 - 256
    end, 10000, "the oldest connections to be closed")
    for _, c in ipairs(conns) do c:close() end
    assert.are.equal(pid, ping({}).pid)
  end)
end)
