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

  it("is off unless asked for, and ping says when ORCH_HTTP came too late", function()
    local r = ping({})
    assert.is_nil(r.http)
    assert.is_nil(uv.fs_stat(home .. "/http.token"))
    -- ORCH_HTTP given to a daemon that runs already changes nothing, and ping says so
    local code, _, err = H.orch_sync({ "ping" }, { home = home, env = { ORCH_HTTP = "127.0.0.1:0" } })
    assert.are.equal(0, code)
    assert.matches("ORCH_HTTP=127.0.0.1:0 is not in effect: this orch started without it", err, 1, true)
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

  it("does not pass ORCH_HTTP on to the apps, unless an app's env sets it", function()
    local port = daemon({ ORCH_HTTP = "127.0.0.1:" .. H.free_port() })
    local script = "env > \"$0.tmp\" && mv \"$0.tmp\" \"$0\"; exec sleep 1000" -- whole once there
    -- started with ORCH_HTTP in the CLI's environment too
    local _, code, err = H.json(home, { "start", H.ecosystem(dir, string.format([[
      { name = 'plain', script = 'sh', args = { '-c', %q, %q } },
      { name = 'own', script = 'sh', args = { '-c', %q, %q }, env = { ORCH_HTTP = '127.0.0.1:1' } },
    ]], script, dir .. "/plain.env", script, dir .. "/own.env")) }, { cwd = dir, env = { ORCH_HTTP = "127.0.0.1:" .. port } })
    assert(code == 0, err)
    H.wait_until(function() return H.read(dir .. "/own.env") and H.read(dir .. "/plain.env") end, 10000,
      "both apps' environments")
    local plain = H.read(dir .. "/plain.env")
    assert.matches("\nORCH_HOME=", "\n" .. plain)
    assert.not_matches("ORCH_HTTP=", plain, 1, true)
    assert.matches("\nORCH_HTTP=127.0.0.1:1\n", "\n" .. H.read(dir .. "/own.env"))
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

  it("streams the event ring as server-sent events, and counts restarts by cause", function()
    local port = daemon()
    start(string.format("{ name = 'a', script = %q, args = { '1000' } }, { name = 'b', script = %q, args = { '1000' } }",
      sleeper, sleeper))
    local c = C.connect(port)
    c:send("GET /events?app=a HTTP/1.1\r\n\r\n")
    H.wait_until(function() return c.buf:find("\r\n\r\n", 1, true) end, 10000, "the stream's head")
    assert.matches("^HTTP/1.1 200 OK\r\n", c.buf)
    assert.matches("Content%-Type: text/event%-stream\r\n", c.buf)
    assert.are.equal(0, (H.orch_sync({ "restart", "b" }, { home = home })))
    assert.are.equal(0, (H.orch_sync({ "restart", "a" }, { home = home })))
    -- the records of a, as id:/data: pairs; b's are filtered out
    local function records(buf)
      local out = {}
      for id, data in buf:gmatch("id: (%d+)\ndata: ([^\n]*)\n\n") do
        local r = require("cjson").decode(data)
        r.sse_id = tonumber(id)
        out[#out + 1] = r
      end
      return out
    end
    local restart
    H.wait_until(function()
      for _, r in ipairs(records(c.buf)) do
        assert.are.equal("a", r.app)
        if r.kind == "online" and restart then return true end
        if r.kind == "restart" then restart = r end
      end
    end, 15000, function() return "a's restart and online on the stream; got:\n" .. c.buf end)
    c:close()
    assert.are.equal("command", restart.cause)
    assert.are.equal(restart.seq, restart.sse_id)
    -- reconnecting with Last-Event-ID replays what came after it
    c = C.connect(port)
    c:send("GET /events?app=a HTTP/1.1\r\nLast-Event-ID: " .. (restart.seq - 1) .. "\r\n\r\n")
    H.wait_until(function() return #records(c.buf) > 0 end, 10000, "the replayed records")
    assert.are.equal(restart.seq, records(c.buf)[1].seq)
    c:close()
    local body = C.get(port, "/metrics").body
    assert.matches('orch_process_restarts_total{app="a",app_instance="0",id="0"} 1\n', body, 1, true)
    assert.matches('orch_process_restart_causes_total{app="a",app_instance="0",id="0",cause="command"} 1\n', body, 1, true)
    assert.not_matches('cause="exit"', body, 1, true)
    assert.matches('orch_daemon_events_total{kind="restart"} 2\n', body, 1, true)
  end)

  it("answers /readyz for every app that should run, or the apps named", function()
    local port = daemon()
    -- nothing should run (once a new daemon has looked for what a crashed one left)
    local r0
    H.wait_until(function()
      r0 = C.get(port, "/readyz")
      return r0.status == 200
    end, 15000, function() return "/readyz 200; last: " .. r0.status .. " " .. r0.body end)
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

  it("costs the daemon no CPU while nobody is connected", function()
    local port, pid = daemon()
    local function fds() return #H.sh("ls /proc/" .. pid .. "/fd"):gsub("[^\n]", "") end
    local c = C.connect(port)
    c:send("GET /metrics HTTP/1.1\r\n\r\n")
    assert.are.equal(200, c:response().status)
    local base = fds() -- with the connection
    c:close()
    H.wait_until(function() return fds() < base end, 10000, function()
      return "the server to close its side: " .. fds() .. " descriptors, " .. base .. " with the connection"
    end)
    local function stat()
      local f = {}
      for w in H.read("/proc/" .. pid .. "/stat"):match("%) (.*)"):gmatch("%S+") do f[#f + 1] = w end
      -- utime + stime in clock ticks; the loop thread's wake-ups (returns from epoll_wait)
      return tonumber(f[12]) + tonumber(f[13]),
        tonumber(H.read("/proc/" .. pid .. "/status"):match("\nvoluntary_ctxt_switches:%s*(%d+)"))
    end
    local cpu, wakes = stat()
    uv.sleep(5000) -- a window to measure, not a wait for something
    local cpu2, wakes2 = stat()
    -- at most one clock tick: the sweep's five wake-ups can cross a tick boundary (ASan makes each one
    -- dearer); a loop woken by HTTP would cost tens of ticks and show in the wake-ups below
    assert.is_true(cpu2 - cpu <= 1, (cpu2 - cpu) .. " ticks of CPU in 5 s")
    -- the control socket's sweep wakes it once a second (core/ctl.c); HTTP adds nothing
    assert.is_true(wakes2 - wakes <= 6, (wakes2 - wakes) .. " wake-ups in 5 s")
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
