-- PM2's per-app options as PM2 7 users rely on them, with real processes:
-- namespace, cluster mode inferred for Node, PM2's environment per process,
-- increment_var/instance_var, command strings through the shell, and the
-- PM2 options orch implements or warns about.
local H = require("helpers")

local apps = H.root .. "/spec/fixtures/apps"

-- The environment of a running process, as a table.
local function environ(pid)
  local t = {}
  for kv in (H.read("/proc/" .. pid .. "/environ") or ""):gmatch("[^%z]+") do
    local k, v = kv:match("^([^=]+)=(.*)$")
    if k then t[k] = v end
  end
  return t
end

-- The HTTP status of GET http://127.0.0.1:port/path, or nil.
local function http_status(port, path)
  local out = H.sh(string.format("python3 -c 'import sys, urllib.request\n"
    .. "try: print(urllib.request.urlopen(\"http://127.0.0.1:%d%s\", timeout=5).status)\n"
    .. "except Exception as e: print(getattr(e, \"code\", \"none\"))'", port, path))
  return tonumber(out:match("%d+"))
end

describe("PM2 options", function()
  local dir, home
  H.each_test(function(d, h) dir, home = d, h end)

  it("keeps an app's namespace, \"default\" unless set, in list and describe", function()
    H.started(dir, home, [[
      { name = "a", script = "sleep", args = "600", namespace = "backend" },
      { name = "b", script = "sleep", args = "600" },
    ]])
    local list = H.json(home, { "list" })
    local ns = {}
    for _, p in ipairs(list) do ns[p.name] = p.namespace end
    assert.are.same({ a = "backend", b = "default" }, ns)
    assert.are.equal("backend", H.json(home, { "describe", "a" })[1].namespace)
  end)

  it("refuses an app named all, naming the file, line and option", function()
    local path = H.ecosystem(dir, '{ name = "all", script = "sleep", args = "600" },')
    local code, _, err = H.orch_sync({ "start", path }, { home = home, cwd = dir })
    assert.are_not.equal(0, code)
    assert.is_truthy(err:find(path .. ":2: app #1: option 'name': must not be \"all\"", 1, true), err)
    assert.are.same({}, H.json(home, { "list" }))
  end)

  it("runs orch start app.js -i 2 in cluster mode when node runs it (PM2's rule), serving from both", function()
    H.need("node", "python3")
    local port = H.free_port()
    local res, code, err = H.json(home, { "start", apps .. "/cluster_node.js", "-i", "2" },
      { cwd = dir, env = { PORT = tostring(port), HOST = "127.0.0.1" } })
    assert.are.equal(0, code, err)
    local d = H.json(home, { "describe", "cluster_node" })
    assert.are.equal("cluster", d[1].exec_mode)
    assert.are.equal("cluster", d[2].exec_mode)
    local seen = {}
    H.wait_until(function()
      for _, pid in ipairs(H.http_probe(port, 6)) do seen[pid] = true end
      return seen[res.processes[1].pid] and seen[res.processes[2].pid]
    end, 20000, "answers from both workers")
  end)

  it("gives each process PM2's variables, instance_var and increment_var: each instance listens on its port", function()
    H.need("python3")
    local p1, p2 = H.free_port(), H.free_port()
    assert.are.equal(p1 + 1, p2, "two consecutive free ports")
    local res = H.started(dir, home, string.format([[
      { name = "web", script = %q, instances = 2, namespace = "shop", increment_var = "PORT",
        instance_var = "INSTANCE_ID", env = { PORT = %d } },
    ]], apps .. "/healthy_server.py", p1))
    for _, port in ipairs({ p1, p2 }) do
      H.wait_until(function() return http_status(port, "/healthz") == 200 end, 20000, "a server on port " .. port)
    end
    for _, p in ipairs(res.processes) do
      local env = environ(p.pid)
      assert.are.same({ pm_id = tostring(p.id), name = "web", namespace = "shop", INSTANCE_ID = tostring(p.instance),
                        PORT = tostring(p1 + p.instance), exec_mode = "fork_mode", instances = "2" },
        { pm_id = env.pm_id, name = env.name, namespace = env.namespace, INSTANCE_ID = env.INSTANCE_ID,
          PORT = env.PORT, exec_mode = env.exec_mode, instances = env.instances })
      assert.is_nil(env.NODE_APP_INSTANCE)
    end
  end)

  it("starts a command string through the shell, from the CLI and as an ecosystem's cmd, named after it", function()
    H.need("python3")
    local p1, p2 = H.free_port(), H.free_port()
    local cmd = "python3 -m http.server --bind 127.0.0.1 " .. p1
    local res, code, err = H.json(home, { "start", cmd }, { cwd = dir })
    assert.are.equal(0, code, err)
    local name = "python3-m-http.server-bind-127.0.0.1-" .. p1
    assert.are.equal(name, res.processes[1].name)
    H.started(dir, home, string.format('{ name = "served", cmd = "python3 -m http.server --bind 127.0.0.1", args = { "%d" } },', p2))
    for _, port in ipairs({ p1, p2 }) do
      H.wait_until(function() return http_status(port, "/") == 200 end, 20000, "http.server on port " .. port)
    end
    local d = H.json(home, { "describe", "served" })[1]
    assert.are.equal("-c", d.exec[2])
    assert.are.equal("python3 -m http.server --bind 127.0.0.1 " .. p2, d.exec[3])
  end)
end)
