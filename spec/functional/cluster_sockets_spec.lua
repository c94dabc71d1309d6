-- The sockets orch binds for cluster workers: closed once no app uses them,
-- and bounded in number and in where they may be.
local H = require("helpers")
local uv = require("luv")

local apps = H.root .. "/spec/fixtures/apps"

-- "ok" when a TCP connection to 127.0.0.1:port is established (a listening
-- socket's backlog takes it even when nobody accepts), "pending" when it is
-- neither taken nor refused within 2 s, else the error name.
local function connect(port)
  local t, res = uv.new_tcp(), nil
  t:connect("127.0.0.1", port, function(err) res = err or "ok" end)
  pcall(H.wait_until, function() return res end, 2000)
  t:close()
  return res or "pending"
end

describe("cluster sockets", function()
  local dir, home
  H.each_test(function(d, h) dir, home = d, h end)

  -- orch apply: the app restarts only when its options change
  local function start(body)
    local res, code, err = H.json(home, { "apply", H.ecosystem(dir, body) }, { cwd = dir })
    assert(code == 0, err)
    return res
  end

  local function serving(port)
    H.wait_until(function() return #H.http_probe(port, 1) == 1 end, 20000, "an answer on port " .. port)
  end

  local cases = {
    { "PORT, round-robin", [[ env = { PORT = "%d", HOST = "127.0.0.1" } ]] },
    { "PORT, shared", [[ env = { PORT = "%d", HOST = "127.0.0.1" }, balance = "shared" ]] },
    { "listen", [[ env = { PORT = "%d" }, listen = "tcp://127.0.0.1:%d" ]] },
  }
  for _, case in ipairs(cases) do
    it("closes the old port when an app moves to another (" .. case[1] .. ")", function()
      H.need("node")
      local a, b = H.free_port(), H.free_port()
      local function app(port)
        return string.format([[ { name = "web", script = %q, exec_mode = "cluster", instances = 2, min_uptime = 0, ]]
          .. case[2] .. " }, ", apps .. "/cluster_node.js", port, port)
      end
      start(app(a))
      serving(a)
      local res = start(app(b))
      assert.are.same({ "web" }, res.changes.restarted)
      serving(b)
      H.wait_until(function() return connect(a) == "ECONNREFUSED" end, 10000,
        function() return "port " .. a .. " to be closed; connect: " .. connect(a) end)
      serving(b)
    end)
  end

  it("keeps the port of an app whose other options change: no connection refused", function()
    H.need("node", "python3")
    local port = H.free_port()
    local function app(x)
      return string.format([[ { name = "web", script = %q, exec_mode = "cluster", instances = 2, min_uptime = 0,
        env = { PORT = "%d", HOST = "127.0.0.1", X = "%s" } }, ]], apps .. "/cluster_node.js", port, x)
    end
    start(app("1"))
    serving(port)
    local n, errors, res = H.under_load(port, 200, function() return start(app("2")) end)
    assert.are.same({ "web" }, res.changes.restarted)
    assert.are.equal(200, n)
    for _, e in ipairs(errors) do assert.is_nil(e:lower():find("refused"), e) end
    serving(port)
    assert.are.equal("ok", connect(port))
  end)
  for _, cap in ipairs({ 16, 4 }) do
    it("binds at most cluster_max_sockets per app (" .. cap .. "), and Unix paths only where the app is", function()
      local out = dir .. "/replies"
      local stray = "/127.0.0.1"
      local existed = uv.fs_lstat(stray) ~= nil
      finally(function()
        local st = not existed and uv.fs_lstat(stray)
        if st and st.type == "socket" then os.remove(stray) end
      end)
      local res = start(string.format([[ { name = "greedy", script = %q, exec_mode = "cluster", cwd = %q,
        env = { OUT = %q }, %s }, ]], apps .. "/cluster_greedy.lua", dir, out,
        cap == 16 and "" or "cluster_max_sockets = " .. cap))
      local daemon = tonumber(H.read(home .. "/daemon.pid"))
      local replies
      H.wait_until(function()
        replies = {}
        for line in (H.read(out) or ""):gmatch("[^\n]+") do
          local r = require("cjson").decode(line)
          if r.ack then replies[r.ack] = r end
        end
        local n = 0
        for _ in pairs(replies) do n = n + 1 end
        return n == 102
      end, 20000, function() return "102 replies in " .. out .. ":\n" .. (H.read(out) or "") end)
      -- the relative path is the app's, never the daemon's (cwd /)
      assert.are.equal(0, replies[1].errno)
      assert.are.equal("socket", (uv.fs_lstat(dir .. "/127.0.0.1") or {}).type)
      if not existed then assert.is_nil(uv.fs_lstat(stray)) end
      assert.are_not.equal(0, replies[2].errno)
      local ok, refused = 0, 0
      for i = 3, 102 do
        if replies[i].errno == 0 then ok = ok + 1 else refused = refused + 1 end
      end
      -- cap sockets for the app (16 unless set): the Unix one and cap - 1 TCP ones
      assert.are.equal(cap - 1, ok)
      assert.are.equal(100 - (cap - 1), refused)
      local listening = 0
      for line in H.sh("ss -Hltnp"):gmatch("[^\n]+") do
        if line:find("pid=" .. daemon .. ",", 1, true) then listening = listening + 1 end
      end
      assert.is_true(listening <= cap - 1, listening .. " TCP sockets held by the daemon")
      assert.matches("greedy:0: cannot listen", H.read(home .. "/daemon.log"))
      assert.are.equal("online", H.json(home, { "list" })[1].status)
      assert.are.equal(1, #res.processes)
    end)
  end
end)
