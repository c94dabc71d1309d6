-- balance = "preload": servers that bind their port themselves share the
-- daemon's socket through liborch_preload.so.
local H = require("helpers")
local uv = require("luv")
local launch = require("orch.launch")

local apps = H.root .. "/spec/fixtures/apps"
local lib = H.bin:match("^(.*)/[^/]*$") .. "/liborch_preload.so"

local free_port = H.free_port
H.need("python3", "curl", "ss")

-- The answers of an http_probe.py run: pids, and lines that are not a pid.
local function parse(out)
  local pids, errors = {}, {}
  for line in out:gmatch("[^\n]+") do
    local pid = line:match("^(%d+)$")
    if pid then pids[#pids + 1] = tonumber(pid) else errors[#errors + 1] = line end
  end
  return pids, errors
end

local function probe(port, n)
  return parse(H.sh(string.format("python3 %s/http_probe.py %d %d", apps, port, n)))
end

-- Probes until every pid in `want` has answered; returns how many requests
-- each pid answered and every failed request.
local function until_all_answer(port, want, what)
  local seen, errors = {}, {}
  H.wait_until(function()
    local pids, errs = probe(port, 20)
    for _, e in ipairs(errs) do errors[#errors + 1] = e end
    for _, pid in ipairs(pids) do seen[pid] = (seen[pid] or 0) + 1 end
    for _, pid in ipairs(want) do if not seen[pid] then return false end end
    return true
  end, 20000, what)
  return seen, errors
end

-- n requests (one connection each) from a python client; once 20 answers are
-- in, during() runs while the rest go on. Returns the pids that answered and
-- the failed requests.
local function under_load(port, n, during)
  local out, done = "", false
  local stdout = uv.new_pipe(false)
  local client = uv.spawn("python3", { args = { apps .. "/http_probe.py", tostring(port), tostring(n) },
    stdio = { nil, stdout, nil } }, function() done = true end)
  stdout:read_start(function(_, data) if data then out = out .. data end end)
  H.wait_until(function() local _, k = out:gsub("\n", "") return k >= 20 end, 10000, "the first responses")
  during()
  H.wait_until(function() return done end, 60000, "the client to finish")
  H.wait_until(function() return not stdout:is_active() end, 5000, "the client's output")
  stdout:close()
  client:close()
  return parse(out)
end

local function pids_of(res)
  local pids = {}
  for _, p in ipairs(res.processes) do pids[#pids + 1] = p.pid end
  return pids
end

local function server(n, host, port, extra)
  return string.format([[ { name = "web", script = %q, args = { %q, "%d" }, instances = %d,
    listen = "tcp://127.0.0.1:%d", balance = "preload", %s }, ]],
    apps .. "/preload_server.py", host, port, n, port, extra or "")
end

describe("liborch_preload.so", function()
  it("hands a server's bind() the inherited socket, and leaves other binds alone", function()
    local out = H.sh(string.format("python3 %s/preload_check.py %q 2>&1", apps, lib))
    assert.is_nil(out:find("FAIL", 1, true), out)
    assert.matches("ok control", out)
    assert.matches("ok forked worker", out)
    assert.matches("\ndone\n$", out)
  end)
end)

describe("launch for balance = \"preload\"", function()
  local app = { name = "web", balance = "preload", listen = { { kind = "tcp", port = 1 } } }

  it("puts the library first in LD_PRELOAD", function()
    local exe = H.bin
    local env = launch.env_table(launch.environment(app, 0, 0, { LD_PRELOAD = "/x/a.so /x/b.so" }, exe))
    assert.are.equal(lib .. ":/x/a.so:/x/b.so", env.LD_PRELOAD)
    local with_app_env = { name = "web", balance = "preload", listen = app.listen, env = { LD_PRELOAD = lib } }
    assert.are.equal(lib, launch.env_table(launch.environment(with_app_env, 0, 0, {}, exe)).LD_PRELOAD)
    local shared = { name = "web", balance = "shared", listen = app.listen }
    assert.is_nil(launch.env_table(launch.environment(shared, 0, 0, {}, exe)).LD_PRELOAD)
    local nothing = { name = "web", balance = "preload", listen = {} }
    assert.is_nil(launch.env_table(launch.environment(nothing, 0, 0, {}, exe)).LD_PRELOAD)
  end)

  it("finds the library beside the binary or in ../lib", function()
    local function only(path) return function(p) return p == path end end
    assert.are.equal("/b/liborch_preload.so", launch.preload_library("/b/orch", only("/b/liborch_preload.so")))
    assert.are.equal("/usr/lib/liborch_preload.so",
      launch.preload_library("/usr/bin/orch", only("/usr/lib/liborch_preload.so")))
    assert.are.same({ nil, "/opt/lib/liborch_preload.so" }, { launch.preload_library("/opt/bin/orch", only("")) })
    assert.are.same({ nil, "/b/liborch_preload.so" }, { launch.preload_library("/b/orch", only("")) })
  end)
end)

describe("balance = \"preload\"", function()
  local dir, home
  H.each_test(function(d, h) dir, home = d, h end)

  local function start(body) return H.start_apps(dir, home, body) end

  it("serves from every instance of a server that binds the port itself", function()
    local port = free_port()
    -- 0.0.0.0 in the program; the daemon's 127.0.0.1 is what listens.
    local res, code, err = start(server(3, "0.0.0.0", port))
    assert.are.equal(0, code, err)
    local want = pids_of(res)
    local seen, errors = until_all_answer(port, want, "responses from the three instances")
    assert.are.same({}, errors)
    local instances = {}
    for _, pid in ipairs(want) do instances[pid] = true end
    for pid in pairs(seen) do assert.is_true(instances[pid], "a response from pid " .. pid) end
    -- Python's listen(5) did not shrink the daemon's queue.
    assert.matches("^LISTEN%s+%d+%s+511%s", H.sh("ss -ltnH src 127.0.0.1:" .. port))
  end)

  it("refuses no connection while an instance is SIGKILLed", function()
    local port = free_port()
    local res = start(server(2, "127.0.0.1", port, "min_uptime = 0"))
    local victim = res.processes[1].pid
    local pids, errors = under_load(port, 300, function() uv.kill(victim, "sigkill") end)
    assert.are.equal(300, #pids + #errors)
    -- The kernel queues connections on the daemon's socket while only one
    -- instance is left; the request the victim was serving dies with it.
    assert.is_true(#errors <= 1, "failed requests: " .. table.concat(errors, "; "))
    for _, e in ipairs(errors) do assert.is_nil(e:lower():find("refused"), e) end
    local list = H.json(home, { "list" })
    assert.are.equal(1, list[1].restarts + list[2].restarts)
    -- The replacement's own bind() got the socket too.
    local fresh = H.wait_until(function()
      for _, p in ipairs(H.json(home, { "list" })) do
        if p.id == res.processes[1].id and p.status == "online" and p.pid ~= victim then return p.pid end
      end
    end, 10000, "the replacement online")
    until_all_answer(port, { fresh }, "a response from the restarted instance")
  end)

  it("keeps the socket listening when an instance shuts it down", function()
    local port = free_port()
    start(server(2, "127.0.0.1", port))
    local _, errors = under_load(port, 200, function()
      H.sh(string.format("curl -s -m 5 http://127.0.0.1:%d/shutdown", port))
    end)
    -- Passed on, shutdown() would stop the socket listening for everyone:
    -- refused connections, and the other instance would never accept again.
    assert.are.same({}, errors)
    local list = H.wait_until(function()
      local l = H.json(home, { "list" })
      return l and l[1].restarts + l[2].restarts == 1 and l[1].status == "online"
        and l[2].status == "online" and l
    end, 10000, "the instance that left to be restarted")
    until_all_answer(port, { list[1].pid, list[2].pid }, "responses from both instances")
  end)

  it("is what lets the server run: without it, its bind() fails", function()
    local port = free_port()
    start(string.format([[ { name = "web", script = %q, args = { "127.0.0.1", "%d" }, autorestart = false,
      listen = "tcp://127.0.0.1:%d" }, ]], apps .. "/preload_server.py", port, port))
    H.wait_until(function()
      local list = H.json(home, { "list" })
      return list and (list[1].status == "stopped" or list[1].status == "errored")
    end, 10000, "the server to exit")
    local log = H.json(home, { "describe", "web" })[1].err_log
    assert.matches("Address already in use", H.read(log))
  end)

  it("makes the app errored, naming the library, when it is missing", function()
    local bin = dir .. "/bin"
    assert(uv.fs_mkdir(bin, tonumber("755", 8)))
    assert(uv.fs_copyfile(H.bin, bin .. "/orch"))
    assert(uv.fs_chmod(bin .. "/orch", tonumber("755", 8)))
    local real = H.bin
    H.bin = bin .. "/orch"
    local ok, problem = pcall(function()
      local res, code, err = start(server(1, "127.0.0.1", free_port()))
      assert.are.equal(0, code, err)
      assert.are.equal("errored", res.processes[1].status)
      local d = H.json(home, { "describe", "web" })[1]
      assert.are.equal('balance "preload" needs ' .. dir .. "/lib/liborch_preload.so, which is missing", d.reason)
    end)
    H.bin = real
    assert(ok, problem)
  end)

  it("runs the example: python3 -m http.server, four instances", function()
    local port = free_port()
    local res, code, err = H.json(home, { "start", H.root .. "/examples/preload/ecosystem.lua" },
      { env = { PORT = tostring(port) } })
    assert.are.equal(0, code, err)
    assert.are.equal(4, #res.processes)
    local logs = {}
    for _, d in ipairs(H.json(home, { "describe", "static" })) do logs[#logs + 1] = d.err_log end
    assert.are.equal(4, #logs)
    -- http.server logs each request on stderr: one file per instance.
    local failed = {}
    H.wait_until(function()
      local out = H.sh(string.format("python3 %s/http_probe.py %d 10", apps, port))
      for line in out:gmatch("[^\n]+") do
        if line:match("^ERR") then failed[#failed + 1] = line end
      end
      for _, log in ipairs(logs) do
        if not (H.read(log) or ""):find("\"GET / HTTP/1.1\" 200", 1, true) then return false end
      end
      return true
    end, 20000, "a request served by each of the four instances")
    assert.are.same({}, failed)
    assert.matches("balance = \"preload\"", H.sh(string.format("curl -s -m 5 http://127.0.0.1:%d/", port)))
  end)
end)
