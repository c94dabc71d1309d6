-- PM2's per-app options as PM2 7 users rely on them, with real processes:
-- namespace, cluster mode inferred for Node, PM2's environment per process,
-- increment_var/instance_var, command strings through the shell, and the
-- PM2 options orch implements or warns about.
local H = require("helpers")

local apps = H.root .. "/spec/fixtures/apps"

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
      local env = H.environ(p.pid)
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

  it("writes pid_file (PM2's name-ID.pid) while a process runs and removes it when it exits", function()
    local res = H.started(dir, home, '{ name = "web", script = "sleep", args = "600", pid_file = "run/web.pid" },')
    local p = res.processes[1]
    local file = dir .. "/run/web-" .. p.id .. ".pid"
    H.wait_until(function() return H.read(file) == tostring(p.pid) end, 10000, "the pid in " .. file)
    assert.are.equal(0, (H.orch_sync({ "stop", "web" }, { home = home })))
    H.wait_until(function() return H.read(file) == nil end, 10000, file .. " removed")
  end)

  it("with treekill = false sends kill_signal to the main process only, and kills what is left after kill_timeout", function()
    -- a parent and a child that both note kill_signal (TERM: a background
    -- job of sh ignores INT)
    H.write(dir .. "/tree.sh", [[
sh -c 'echo $$ > child.pid; trap "echo child >> got; exit 0" TERM; while :; do sleep 0.1; done' &
trap 'echo parent >> got; exit 0' TERM
while :; do sleep 0.1; done
]])
    for _, treekill in ipairs({ "true", "false" }) do
      os.remove(dir .. "/got")
      os.remove(dir .. "/child.pid")
      H.started(dir, home, string.format([[{ name = "t%s", script = "tree.sh", kill_signal = "SIGTERM",
        kill_timeout = 1000, treekill = %s },]], treekill, treekill))
      local child
      H.wait_until(function()
        child = tonumber((H.read(dir .. "/child.pid") or ""):match("^(%d+)\n"))
        return child
      end, 10000, "the child's pid")
      local code, _, err = H.orch_sync({ "stop", "t" .. treekill }, { home = home, timeout = 30000 })
      assert.are.equal(0, code, err)
      assert.is_false(H.alive(child), "the child is gone once stop returns")
      local got = {}
      for w in (H.read(dir .. "/got") or ""):gmatch("%a+") do got[#got + 1] = w end
      table.sort(got)
      assert.are.same(treekill == "true" and { "child", "parent" } or { "parent" }, got, "treekill = " .. treekill)
    end
  end)

  it("adds an autostart = false app stopped, for orch start NAME", function()
    local res = H.started(dir, home, '{ name = "later", script = "sleep", args = "600", autostart = false },')
    assert.are.equal("stopped", res.processes[1].status)
    local code, _, err = H.orch_sync({ "start", "later" }, { home = home })
    assert.are.equal(0, code, err)
    assert.are.equal("online", H.json(home, { "describe", "later" })[1].status)
  end)

  it("starts a second app of a running name with -f (force), as PM2; refuses without it", function()
    local res = H.json(home, { "start", "sleep", "--name", "s", "--", "600" }, { cwd = dir })
    local old = res.processes[1].pid
    local _, code = H.json(home, { "start", "sleep", "--name", "s", "--", "700" }, { cwd = dir })
    assert.are_not.equal(0, code, "refused without -f")
    local res2, code2, err2 = H.json(home, { "start", "sleep", "--name", "s", "-f", "--", "700" }, { cwd = dir })
    assert.are.equal(0, code2, err2)
    assert.are.equal(1, #res2.processes)
    local d = H.json(home, { "describe", "s" })
    assert.are.equal(2, #d)
    local sleep = require("orch.util").which("sleep")
    assert.are.same({ sleep, "600" }, d[1].exec)
    assert.are.same({ sleep, "700" }, d[2].exec)
    assert.are.equal(old, d[1].pid)
    assert.is_true(H.alive(old))
  end)

  it("appends --env's name to the app's name with append_env_to_name", function()
    local path = H.ecosystem(dir, '{ name = "web", script = "sleep", args = "600", append_env_to_name = true, env_staging = { A = "1" } },')
    local res, code, err = H.json(home, { "start", path, "--env", "staging" }, { cwd = dir })
    assert.are.equal(0, code, err)
    assert.are.equal("web-staging", res.processes[1].name)
  end)

  it("keeps what filter_env names of the CLI's environment from the processes", function()
    local res, code, err = H.json(home, { "start", H.ecosystem(dir,
      '{ name = "f", script = "sleep", args = "600", filter_env = { "SECRET" }, env = { APP_SECRET_OK = "1" } },') },
      { cwd = dir, env = { MY_SECRET = "s", KEEP_ME = "k" } })
    assert.are.equal(0, code, err)
    local env = H.environ(res.processes[1].pid)
    assert.are.same({ "k", "1" }, { env.KEEP_ME, env.APP_SECRET_OK })
    assert.is_nil(env.MY_SECRET)
  end)

  it("warns, naming the option and why, about PM2 options that have no effect", function()
    local path = H.ecosystem(dir, '{ name = "w", script = "sleep", args = "600",\n  vizion = true,\n  username = "someone" },')
    local code, _, err = H.orch_sync({ "start", path }, { home = home, cwd = dir })
    assert.are.equal(0, code, err)
    assert.is_truthy(err:find(path .. ":3: app 'w': option 'vizion' has no effect: orch collects no version-control metadata", 1, true), err)
    assert.is_truthy(err:find(path .. ":4: app 'w': option 'username' has no effect: PM2 records there the user", 1, true), err)
  end)
end)
