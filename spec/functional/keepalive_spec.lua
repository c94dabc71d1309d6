-- Reloads of an unmodified Node cluster app under a keep-alive load (50
-- connections, each sending its next request as soon as a response arrives,
-- as wrk does) lose no request: the stopping worker answers each kept-alive
-- connection's next request with `Connection: close` instead of cutting it
-- (node/orch_drain.cjs, loaded into every Node cluster worker).
local H = require("helpers")
local uv = require("luv")

local apps = H.root .. "/spec/fixtures/apps"
H.need("node")

-- The load against port: ka_client.js, until stop() closes its stdin.
local function load(port)
  local c = { out = "" }
  local stdin, stdout = uv.new_pipe(false), uv.new_pipe(false)
  c.handle, c.pid = uv.spawn("node", { args = { apps .. "/ka_client.js", tostring(port), "50" },
    stdio = { stdin, stdout, 2 } }, function(code) c.code = code end)
  assert(c.handle, c.pid)
  stdout:read_start(function(_, data) if data then c.out = c.out .. data end end)
  function c.answers()
    local n = 0
    for k in c.out:gmatch("ok (%d+)\n") do n = tonumber(k) end
    return n
  end
  -- waits for more answers than now, so each step happens under load
  function c.more(k)
    local want = c.answers() + k
    H.wait_until(function() return c.answers() >= want end, 30000,
      function() return "answers past " .. want .. " (client: " .. c.out:sub(-300) .. ")" end)
  end
  function c.stop()
    stdin:close()
    H.wait_until(function() return c.code ~= nil end, 30000, "the client to finish")
    local ok, failed = c.out:match("done ok (%d+) failed (%d+)")
    return tonumber(ok), tonumber(failed), c.out:match("done ok %d+ failed %d+\n(.*)$")
  end
  function c.close()
    if c.code == nil then pcall(uv.kill, c.pid, "sigkill") end
    H.wait_until(function() return c.code ~= nil end, 5000, "the client's exit")
    for _, h in ipairs({ stdin, stdout, c.handle }) do
      if not h:is_closing() then h:close() end
    end
  end
  return c
end

-- One keep-alive connection to port, driven a request at a time.
local function connection(port)
  local c = { buf = "", tcp = uv.new_tcp() }
  c.tcp:connect("127.0.0.1", port, function(err)
    c.connected = err or true
    if err then return end
    c.tcp:read_start(function(rerr, data)
      if data then c.buf = c.buf .. data else c.eof = rerr or true end
    end)
  end)
  H.wait_until(function() return c.connected end, 5000, "the connection")
  assert(c.connected == true, tostring(c.connected))
  -- The next response: status, headers (lower-case names), body; or nil
  -- when the connection ended first.
  function c.response()
    local res
    H.wait_until(function()
      local head = c.buf:find("\r\n\r\n", 1, true)
      if head then
        local h = {}
        for k, v in c.buf:sub(1, head + 1):gmatch("([%w-]+): ([^\r]*)\r\n") do h[k:lower()] = v end
        local len = tonumber(h["content-length"])
        if len and #c.buf >= head + 3 + len then
          res = { status = tonumber(c.buf:match("^HTTP/1%.1 (%d+)")), headers = h,
            body = c.buf:sub(head + 4, head + 3 + len) }
          c.buf = c.buf:sub(head + 4 + len)
          return true
        end
      end
      return c.eof
    end, 10000, "a response or the end of the connection")
    return res
  end
  function c.get()
    c.tcp:write("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    return c.response()
  end
  function c.close()
    if not c.tcp:is_closing() then c.tcp:close() end
  end
  return c
end

describe("a stopping Node cluster worker", function()
  local dir, home
  H.each_test(function(d, h) dir, home = d, h end)

  local function start(port, extra)
    local res = H.started(dir, home, string.format([[ { name = "web", script = %q, instances = 1,
      exec_mode = "cluster", env = { PORT = "%d", HOST = "127.0.0.1" }, %s }, ]],
      apps .. "/cluster_node.js", port, extra or ""))
    H.wait_until(function()
      local cl = H.json(home, { "describe", "web" })[1].cluster[1]
      return cl and cl.workers == 1
    end, 10000, "the worker to listen")
    return res.processes[1].pid
  end

  it("answers each kept-alive connection's next request with Connection: close, and closes the idle ones " ..
      "after keepalive_drain", function()
    local port = H.free_port()
    local pid = start(port, 'keepalive_drain = "1s", kill_timeout = 20000')
    local busy, idle = connection(port), connection(port)
    finally(function() busy.close() idle.close() end)
    for _, c in ipairs({ busy, idle }) do
      local res = c.get()
      assert.are.equal(pid .. " node\n", res.body)
      assert.are.equal("keep-alive", res.headers.connection)
    end
    local stop = H.orch({ "stop", "web" }, { home = home })
    -- the busy one asks again and again: each request is answered, by the
    -- same worker, until one answer says close; then the connection ends
    local last
    H.wait_until(function()
      last = busy.get()
      assert.is_truthy(last, "the connection was cut with a request unanswered")
      assert.are.equal(200, last.status)
      assert.are.equal(pid .. " node\n", last.body)
      return last.headers.connection == "close"
    end, 10000, "a response with Connection: close")
    H.wait_until(function() return busy.eof end, 5000, "the end of the busy connection")
    -- the idle one is closed by the worker, which then exits by itself
    H.wait_until(function() return idle.eof end, 10000, "the end of the idle connection")
    stop:wait_exit(20000)
    assert.are.equal(0, stop.code, stop.err)
    assert.is_false(H.alive(pid))
    assert.is_nil((H.read(home .. "/daemon.log") or ""):find("SIGKILL"), "the worker was killed")
  end)

  it("keeps the app's NODE_OPTIONS, and leaves the module out with keepalive_drain = false", function()
    local port = H.free_port()
    local pid = start(port, 'env = { PORT = "' .. port .. '", HOST = "127.0.0.1", NODE_OPTIONS = "--no-warnings" }')
    local env = H.environ(pid)
    assert.are.equal('--no-warnings --require "' .. H.bin:match("^(.*)/") .. '/orch_drain.cjs"', env.NODE_OPTIONS)
    assert.are.equal("1200", env.ORCH_DRAIN_MS)
    assert.are.equal(0, select(2, H.json(home, { "delete", "web" })))
    pid = start(port, 'keepalive_drain = false')
    env = H.environ(pid)
    assert.is_nil(env.NODE_OPTIONS)
    assert.is_nil(env.ORCH_DRAIN_MS)
  end)
end)

describe("reload under keep-alive load", function()
  local dir, home
  H.each_test(function(d, h) dir, home = d, h end)

  for _, balance in ipairs({ "round-robin", "shared" }) do
    it("loses no request in 3 reloads of an unmodified Node server (" .. balance .. ")", function()
      local port = H.free_port()
      local res = H.started(dir, home, string.format([[ { name = "web", script = %q, instances = 2,
        exec_mode = "cluster", balance = %q, env = { PORT = "%d", HOST = "127.0.0.1" } }, ]],
        apps .. "/cluster_node.js", balance, port))
      local pids = {}
      for _, p in ipairs(res.processes) do pids[#pids + 1] = p.pid end
      H.wait_until(function()
        return H.json(home, { "describe", "web" })[1].cluster[1]
      end, 10000, "the workers to listen")
      local c = load(port)
      finally(c.close)
      c.more(300)
      for _ = 1, 3 do
        local reloaded, code, err = H.json(home, { "reload", "web" })
        assert.are.equal(0, code, err)
        for _, p in ipairs(reloaded) do
          assert.are.equal("online", p.status)
          pids[#pids + 1] = p.pid
        end
        c.more(300)
      end
      local ok, failed, failures = c.stop()
      assert.is_truthy(ok, c.out:sub(-500))
      assert.are.equal(0, failed, failures)
      assert.is_true(ok >= 1200)
      -- every worker of before the last reload is gone: the reloads happened
      for i = 1, #pids - 2 do assert.is_false(H.alive(pids[i]), "pid " .. pids[i] .. " still runs") end
    end)
  end
end)
