-- Cluster mode: orch as the primary of Node's cluster protocol, for
-- unmodified Node workers and Lua workers (orch.worker), round-robin and
-- shared.
local H = require("helpers")
local uv = require("luv")

local apps = H.root .. "/spec/fixtures/apps"
local free_port, probe, under_load = H.free_port, H.http_probe, H.under_load
H.need("node", "python3")

describe("cluster", function()
  local dir, home
  H.each_test(function(d, h) dir, home = d, h end)

  local function start(body) return H.start_apps(dir, home, body) end

  -- An app of `instances` workers on port; extra: more option text.
  local function cluster_app(script, port, extra)
    return string.format([[ { name = "web", script = %q, exec_mode = "cluster", instances = 2,
      min_uptime = 0, env = { PORT = "%d", HOST = "127.0.0.1" }, %s }, ]], script, port, extra or "")
  end

  -- Requests until every pid of pids answered; returns what answered.
  local function answers_from_all(port, pids)
    local seen = {}
    H.wait_until(function()
      local got = probe(port, 10)
      for _, pid in ipairs(got) do seen[pid] = true end
      for _, pid in ipairs(pids) do
        if not seen[pid] then return false end
      end
      return true
    end, 20000, "responses from every instance")
    return seen
  end

  local function pids_of(res)
    local pids = {}
    for _, p in ipairs(res.processes) do pids[#pids + 1] = p.pid end
    return pids
  end

  for _, balance in ipairs({ "round-robin", "shared" }) do
    it("serves from every unmodified Node worker (" .. balance .. ")", function()
      local port = free_port()
      local res, code, err = start(cluster_app(apps .. "/cluster_node.js", port,
        string.format("balance = %q", balance)))
      assert.are.equal(0, code, err)
      local pids = pids_of(res)
      local seen = answers_from_all(port, pids)
      for pid in pairs(seen) do
        assert.is_truthy(pid == pids[1] or pid == pids[2], "a response from pid " .. pid)
      end
      local d = H.json(home, { "describe", "web" })[1]
      assert.are.equal("cluster", d.exec_mode)
      assert.are.equal(balance, d.balance)
    end)

    it("serves from every Lua worker (" .. balance .. ")", function()
      local port = free_port()
      local res, code, err = start(cluster_app(apps .. "/cluster_lua.lua", port,
        string.format("balance = %q", balance)))
      assert.are.equal(0, code, err)
      answers_from_all(port, pids_of(res))
    end)
  end

  it("round-robin alternates between the workers", function()
    local port = free_port()
    local res = start(cluster_app(apps .. "/cluster_node.js", port))
    answers_from_all(port, pids_of(res)) -- both are serving
    local got, errors = probe(port, 20)
    assert.are.same({}, errors)
    local count = {}
    for _, pid in ipairs(got) do count[pid] = (count[pid] or 0) + 1 end
    for _, pid in ipairs(pids_of(res)) do assert.are.equal(10, count[pid]) end
  end)

  it("uses the app's listen socket for a worker's listen(port)", function()
    local port = free_port()
    -- HOST empty: the worker asks for any address; orch's socket is on 127.0.0.1
    local res = start(string.format([[ { name = "web", script = %q, exec_mode = "cluster", instances = 2,
      env = { PORT = "%d" }, listen = "tcp://127.0.0.1:%d" }, ]], apps .. "/cluster_node.js", port, port))
    answers_from_all(port, pids_of(res))
  end)

  it("refuses no connection while a worker is SIGKILLed under load", function()
    local port = free_port()
    local res = start(cluster_app(apps .. "/cluster_node.js", port))
    answers_from_all(port, pids_of(res))
    local victim = res.processes[1].pid
    local n, errors = under_load(port, 300, function() uv.kill(victim, "sigkill") end)
    assert.are.equal(300, n)
    -- The daemon accepts and hands over: a connection the victim held when
    -- it died may fail, none is refused.
    assert.is_true(#errors <= 1, "failed requests: " .. table.concat(errors, "; "))
    for _, e in ipairs(errors) do assert.is_nil(e:lower():find("refused"), e) end
    H.wait_until(function()
      local list = H.json(home, { "list" })
      return list[1].restarts + list[2].restarts == 1 and list[1].status == "online"
    end, 10000, "the victim's restart")
  end)

  for _, script in ipairs({ "cluster_node.js", "cluster_lua.lua" }) do
    it("reloads " .. script .. " workers without a failed request", function()
      local port = free_port()
      local res = start(cluster_app(apps .. "/" .. script, port))
      answers_from_all(port, pids_of(res))
      local before = {}
      for _, p in ipairs(res.processes) do before[p.id] = p.pid end
      local n, errors, reloaded, code, err = under_load(port, 400, function()
        return H.json(home, { "reload", "web" })
      end)
      assert.are.equal(0, code, err)
      assert.are.equal(400, n)
      assert.are.same({}, errors)
      for _, p in ipairs(reloaded) do
        assert.are_not.equal(before[p.id], p.pid)
        assert.is_false(H.alive(before[p.id]))
        assert.are.equal("online", p.status)
      end
      answers_from_all(port, pids_of({ processes = reloaded }))
    end)
  end

  it("scales a cluster up and down", function()
    local port = free_port()
    start(cluster_app(apps .. "/cluster_node.js", port))
    local up, code = H.json(home, { "scale", "web", "3" })
    assert.are.equal(0, code)
    answers_from_all(port, pids_of({ processes = up }))
    local down = H.json(home, { "scale", "web", "1" })
    assert.are.equal(1, #down)
    assert.are.equal(up[3].id, down[1].id) -- the oldest go, as PM2's scale
    H.wait_until(function() return not H.alive(up[1].pid) and not H.alive(up[2].pid) end, 5000,
      "the surplus workers to stop")
    local got, errors = probe(port, 10)
    assert.are.same({}, errors)
    for _, pid in ipairs(got) do assert.are.equal(down[1].pid, pid) end
  end)

  -- PM2's workers share a server by its address whichever app they are of;
  -- orch's by the app's name, which a second app of a name (start -f) has.
  for _, balance in ipairs({ "round-robin", "shared" }) do
    it("keeps a name's sockets open while a second app of it (start -f) runs (" .. balance .. ")", function()
      local port = free_port()
      local first = start(cluster_app(apps .. "/cluster_node.js", port, string.format("balance = %q", balance)))
      local second, code, err = H.json(home, { "start", apps .. "/cluster_node.js", "--name", "web", "-f", "-i", "1" },
        { env = { PORT = tostring(port), HOST = "127.0.0.1" } })
      assert.are.equal(0, code, err)
      local all = pids_of(first)
      all[#all + 1] = second.processes[1].pid
      answers_from_all(port, all)
      -- the first app deleted (by ids): the second serves on, nothing refused
      for _, p in ipairs(first.processes) do assert.are.equal(0, (H.orch_sync({ "delete", tostring(p.id) },
        { home = home }))) end
      local got, errors = probe(port, 10)
      assert.are.same({}, errors)
      assert.are.equal(10, #got)
      for _, pid in ipairs(got) do assert.are.equal(second.processes[1].pid, pid) end
      -- restarted, its worker asks for the socket again and gets it
      assert.are.equal(0, (H.orch_sync({ "restart", "web" }, { home = home })))
      local now = assert(H.json(home, { "list" }))
      answers_from_all(port, { now[1].pid })
      -- its last app gone, the name's socket closes: the port is free
      assert.are.equal(0, (H.orch_sync({ "delete", "web" }, { home = home })))
      H.wait_until(function()
        local t = uv.new_tcp()
        local ok = t:bind("127.0.0.1", port) and t:listen(1, function() end)
        t:close()
        return ok
      end, 5000, "port " .. port .. " to be free")
    end)
  end

  it("exchanges messages with a Lua worker through orch.worker", function()
    local port = free_port()
    start(cluster_app(apps .. "/cluster_lua.lua", port, [[on_message = function(p, m)
      print("HOOK echo " .. tostring(type(m) == "table" and m.echo and m.echo.n)) end]]))
    local code, out = H.orch_sync({ "send", "web", '{"n":7}' }, { home = home })
    assert.are.equal(0, code)
    assert.matches("sent to 2 process", out)
    H.wait_until(function()
      local _, k = (H.read(home .. "/daemon.log") or ""):gsub("HOOK echo 7", "")
      return k == 2
    end, 5000, "both workers' echoes")
  end)

  it("reports a port orch cannot bind to the worker", function()
    local port = free_port()
    local holder = uv.new_tcp()
    assert(holder:bind("127.0.0.1", port))
    assert(holder:listen(16, function() end))
    start(cluster_app(apps .. "/cluster_node.js", port))
    H.wait_until(function()
      local log = H.read(home .. "/daemon.log") or ""
      return log:find("cannot listen on 127.0.0.1:" .. port .. " for the cluster: EADDRINUSE", 1, true) ~= nil
    end, 5000, "the bind error in the daemon's log")
    holder:close()
  end)
end)
