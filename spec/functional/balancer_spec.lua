-- Round-robin in C (core/balancer.c): how connections go to real Node
-- cluster workers: evenly, never to a worker that died, is being stopped,
-- or does not read its channel, and none lost on the way.
local H = require("helpers")
local uv = require("luv")

local apps = H.root .. "/spec/fixtures/apps"
H.need("node", "python3")

describe("round-robin balancer", function()
  local dir, home
  H.each_test(function(d, h) dir, home = d, h end)

  local function start(port, instances, extra)
    local res, code, err = H.start_apps(dir, home, string.format([[ { name = "web", script = %q,
      exec_mode = "cluster", instances = %d, min_uptime = 0, env = { PORT = "%d", HOST = "127.0.0.1" }, %s }, ]],
      apps .. "/cluster_node.js", instances, port, extra or ""))
    assert.are.equal(0, code, err)
    local pids = {}
    for _, p in ipairs(res.processes) do pids[#pids + 1] = p.pid end
    return res, pids
  end

  local function count(got)
    local n = {}
    for _, pid in ipairs(got) do n[pid] = (n[pid] or 0) + 1 end
    return n
  end

  -- Until every pid answered (each worker is serving).
  local function all_serving(port, pids)
    local seen = {}
    H.wait_until(function()
      for pid in pairs(count((H.http_probe(port, 6)))) do seen[pid] = true end
      for _, pid in ipairs(pids) do if not seen[pid] then return false end end
      return true
    end, 20000, "responses from every worker")
  end

  local function balancer()
    return H.json(home, { "describe", "web" })[1].cluster[1].balancer
  end

  -- n requests at once in the background; answers() -> lines so far, done() -> all ended.
  local function burst(port, n, timeout)
    local out, done = "", false
    local stdout = uv.new_pipe(false)
    local client = uv.spawn("python3", { args = { apps .. "/http_burst.py", tostring(port), tostring(n), tostring(timeout) },
      stdio = { nil, stdout, nil } }, function() done = true end)
    assert(client)
    stdout:read_start(function(_, data) if data then out = out .. data end end)
    local b = {}
    function b.lines()
      local pids, errors = {}, {}
      for line in out:gmatch("[^\n]+") do
        local pid = line:match("^(%d+) ")
        if pid then pids[#pids + 1] = tonumber(pid) else errors[#errors + 1] = line end
      end
      return pids, errors
    end
    function b.finish()
      H.wait_until(function() return done end, 60000, "the client to finish")
      H.wait_until(function() return not stdout:is_active() end, 5000, "the client's output")
      stdout:close()
      client:close()
      return b.lines()
    end
    return b
  end

  it("spreads connections evenly across 3 Node workers, by pid", function()
    local port = H.free_port()
    local _, pids = start(port, 3)
    all_serving(port, pids)
    local got, errors = H.http_probe(port, 30)
    assert.are.same({}, errors)
    local n = count(got)
    for _, pid in ipairs(pids) do assert.are.equal(10, n[pid], "answers from " .. pid) end
    -- and at once: every worker gets its share (a third, give or take what
    -- a worker busy at that moment passes on)
    local b = burst(port, 60, 20)
    got, errors = b.finish()
    assert.are.same({}, errors)
    assert.are.equal(60, #got)
    n = count(got)
    for _, pid in ipairs(pids) do assert.is_true((n[pid] or 0) >= 10, "answers from " .. pid .. ": " .. tostring(n[pid])) end
    local st = balancer()
    assert.are.equal(0, st.dropped)
    assert.are.equal(st.accepted, st.handed)
  end)

  it("skips a worker whose channel is full, and loses none of its connections", function()
    local port = H.free_port()
    local _, pids = start(port, 2)
    all_serving(port, pids)
    local stuck, other = pids[1], pids[2]
    -- stopped, the worker reads nothing: the connections written to its
    -- channel fill it (16 unacknowledged), then it is skipped
    assert(uv.kill(stuck, "sigstop"))
    local b = burst(port, 80, 30)
    H.wait_until(function() return #b.lines() >= 80 - 16 end, 20000, "the other worker's answers")
    local got = b.lines()
    for _, pid in ipairs(got) do assert.are.equal(other, pid) end
    -- the daemon itself is not held up
    local code = H.orch_sync({ "ping" }, { home = home })
    assert.are.equal(0, code)
    local st = balancer()
    assert.is_true(st.accepted - st.handed >= 1, "connections wait at the stopped worker")
    assert(uv.kill(stuck, "sigcont"))
    local errors
    got, errors = b.finish()
    assert.are.same({}, errors)
    assert.are.equal(80, #got)
    assert.is_true((count(got)[stuck] or 0) >= 1, "the stuck worker served what it was given")
    assert.are.equal(0, balancer().dropped)
  end)

  it("gives a worker that dies no more connections, and what it held goes to another", function()
    local port = H.free_port()
    local _, pids = start(port, 2)
    all_serving(port, pids)
    local victim, other = pids[1], pids[2]
    assert(uv.kill(victim, "sigstop")) -- what it is given stays unanswered until it dies
    local before = balancer().handed
    local b = burst(port, 30, 20)
    H.wait_until(function()
      local st = balancer()
      return st.accepted - st.handed >= 1 and #b.lines() >= 10
    end, 20000, "connections waiting at the stopped worker")
    assert(uv.kill(victim, "sigkill"))
    local got, errors = b.finish()
    assert.are.same({}, errors)
    assert.are.equal(30, #got)
    for _, pid in ipairs(got) do assert.are_not.equal(victim, pid) end
    assert.is_true((count(got)[other] or 0) >= 1)
    local st = balancer()
    assert.are.equal(0, st.dropped)
    assert.is_true(st.retried >= 1, "the victim's connections were given to another worker")
    assert.are.equal(before + 30, st.handed)
  end)

  it("gives a worker being stopped (draining) no connection", function()
    local port = H.free_port()
    local res, pids = start(port, 2, "kill_timeout = 30000")
    all_serving(port, pids)
    local draining, other = pids[1], pids[2]
    local id = res.processes[1].id
    -- stopped by SIGSTOP it cannot leave: it stays draining until SIGCONT
    assert(uv.kill(draining, "sigstop"))
    H.orch({ "stop", tostring(id) }, { home = home })
    H.wait_until(function() return balancer().members == 1 end, 10000, "the worker to be drained")
    local got, errors = H.http_probe(port, 20)
    assert.are.same({}, errors)
    for _, pid in ipairs(got) do assert.are.equal(other, pid) end
    assert(uv.kill(draining, "sigcont"))
    H.wait_until(function() return not H.alive(draining) end, 20000, "the drained worker to leave")
  end)
end)
