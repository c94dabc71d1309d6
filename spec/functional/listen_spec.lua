-- Listening sockets held by the daemon, shared by instances (socket activation).
local H = require("helpers")
local uv = require("luv")

local apps = H.root .. "/spec/fixtures/apps"

local free_port, probe, under_load = H.free_port, H.http_probe, H.under_load
H.need("python3")

describe("listen", function()
  local dir, home
  H.each_test(function(d, h) dir, home = d, h end)

  local function start(body) return H.start_apps(dir, home, body) end

  it("shares one port between instances by socket activation", function()
    local port = free_port()
    local res, code, err = start(string.format(
      [[ { name = "web", script = %q, instances = 2, listen = { http = "tcp://127.0.0.1:%d" } }, ]],
      apps .. "/activated_server.py", port))
    assert.are.equal(0, code, err)
    local instances = {}
    for _, p in ipairs(res.processes) do instances[p.pid] = true end
    local seen = {}
    H.wait_until(function()
      local pids = probe(port, 20)
      for _, pid in ipairs(pids) do seen[pid] = true end
      return seen[res.processes[1].pid] and seen[res.processes[2].pid]
    end, 20000, "responses from both instances")
    for pid in pairs(seen) do assert.is_true(instances[pid], "a response from pid " .. pid) end
    assert.matches("^%d+ http\n$", H.sh(string.format("python3 %s/http_probe.py %d 1", apps, port)))
  end)

  it("refuses no connection while an instance is killed and restarted", function()
    local port = free_port()
    local res = start(string.format([[ { name = "web", script = %q, instances = 2, min_uptime = 0,
      listen = "tcp://127.0.0.1:%d" }, ]], apps .. "/activated_server.py", port))
    local victim = res.processes[1].pid
    local n, errors = under_load(port, 300, function() uv.kill(victim, "sigkill") end)
    assert.are.equal(300, n)
    -- No connection is refused: the socket lives in the daemon. The request
    -- the victim was serving when it was SIGKILLed dies with it (nothing can
    -- save that one), so at most one fails, and not by refusal.
    assert.is_true(#errors <= 1, "failed requests: " .. table.concat(errors, "; "))
    for _, e in ipairs(errors) do assert.is_nil(e:lower():find("refused"), e) end
    local list = H.json(home, { "list" })
    assert.are.equal(1, list[1].restarts + list[2].restarts)
  end)

  it("scales up and down, serving from every instance", function()
    local port = free_port()
    start(string.format([[ { name = "web", script = %q, listen = "tcp://127.0.0.1:%d" }, ]],
      apps .. "/activated_server.py", port))
    local up, code = H.json(home, { "scale", "web", "3" })
    assert.are.equal(0, code)
    assert.are.same({ 0, 1, 2 }, { up[1].instance, up[2].instance, up[3].instance })
    local seen, n = {}, 0
    H.wait_until(function()
      for _, pid in ipairs((probe(port, 20))) do
        if not seen[pid] then seen[pid], n = true, n + 1 end
      end
      return n == 3
    end, 20000, "responses from three instances")
    local down = H.json(home, { "scale", "web", "1" })
    assert.are.equal(1, #down)
    assert.are.equal(up[3].pid, down[1].pid) -- the oldest go, as PM2's scale
    assert.is_false(H.alive(up[1].pid))
    assert.is_false(H.alive(up[2].pid))
    local pids, errors = probe(port, 10)
    assert.are.same({}, errors)
    for _, pid in ipairs(pids) do assert.are.equal(up[3].pid, pid) end
    local code2, _, err = H.orch_sync({ "scale", "web", "0" }, { home = home })
    assert.are.equal(1, code2)
    assert.matches("'instances' must be an integer from 1 to 1024, got 0", err)
  end)

  it("reloads without a failed request, keeping the ids", function()
    local port = free_port()
    local res = start(string.format([[ { name = "web", script = %q, instances = 2,
      listen = "tcp://127.0.0.1:%d" }, ]], apps .. "/activated_server.py", port))
    local before = {}
    for _, p in ipairs(res.processes) do before[p.id] = p.pid end
    local n, errors, reloaded, code, err = under_load(port, 400, function()
      return H.json(home, { "reload", "web" })
    end)
    assert.are.equal(0, code, err)
    assert.are.equal(400, n)
    assert.are.same({}, errors)
    assert.are.equal(2, #reloaded)
    for _, p in ipairs(reloaded) do
      assert.is_not_nil(before[p.id], "same ids after the reload")
      assert.are_not.equal(before[p.id], p.pid)
      assert.is_false(H.alive(before[p.id]))
      assert.are.equal("online", p.status)
      assert.are.equal(1, p.restarts)
    end
  end)

  it("makes the app errored when its port is taken", function()
    local port = free_port()
    local holder = uv.new_tcp()
    assert(holder:bind("127.0.0.1", port))
    assert(holder:listen(16, function() end))
    local res = start(string.format([[ { name = "web", script = "sleep", args = { "1000" },
      listen = "tcp://127.0.0.1:%d" }, ]], port))
    holder:close()
    assert.are.equal("errored", res.processes[1].status)
    local d = H.json(home, { "describe", "web" })[1]
    assert.matches("cannot listen on tcp://127%.0%.0%.1:%d+: EADDRINUSE", d.reason)
  end)
end)
