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

  local function start(body)
    local res, code, err = H.start_apps(dir, home, body)
    assert.are.equal(0, code, err)
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
end)
