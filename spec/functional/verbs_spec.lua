-- The verbs PM2's users and scripts know, against the real binary and real
-- processes: jlist / prettylist (PM2's shape, field by field), env, reset,
-- id, pid, sendSignal, trigger, cleardump, init, scale +N/-N,
-- startOrRestart / startOrReload, logs' PM2 flags and streaming.
local H = require("helpers")
local cjson = require("cjson")

local apps = H.root .. "/spec/fixtures/apps"

describe("PM2 verbs", function()
  local dir, home, _
  H.each_test(function(d, h) dir, home = d, h end)

  local function orch(args, env)
    return H.orch_sync(args, { home = home, cwd = dir, env = env })
  end

  local function jlist()
    local code, out, err = orch({ "jlist" })
    assert(code == 0, err)
    return cjson.decode(out)
  end

  local function sleeper_script()
    return H.write(dir .. "/sleep.sh", "#!/bin/sh\necho started $NODE_APP_INSTANCE\necho warn >&2\nexec sleep 1000\n",
      tonumber("755", 8))
  end

  local function online(name, n)
    return H.wait_until(function()
      local count = 0
      for _, p in ipairs(assert(H.json(home, { "list" }))) do
        if p.name == name and p.status == "online" then count = count + 1 end
      end
      return count == (n or 1)
    end, 30000, (n or 1) .. " online processes of " .. name)
  end

  describe("jlist", function()
    -- PM2's pm2-runtime.sh greps prettylist for watch: [ 'server', 'client' ]
    it("shows watch as PM2's: the configured paths, relative to cwd, and ignore_watch", function()
      H.sh(string.format("mkdir -p '%s/server' '%s/client'", dir, dir))
      local script = sleeper_script()
      H.started(dir, home, string.format([[
        { name = "w", script = %q, watch = { "server", "client" }, ignore_watch = { "node_modules", "client/img" } },
        { name = "d", script = %q, watch = true },
      ]], script, script))
      online("w", 1)
      online("d", 1)
      local by = {}
      for _, p in ipairs(jlist()) do by[p.name] = p.pm2_env end
      assert.are.same({ "server", "client" }, by.w.watch)
      assert.are.same({ "node_modules", "client/img" }, by.w.ignore_watch)
      assert.is_true(by.d.watch)
      assert.is_nil(by.d.ignore_watch)
    end)

    it("prints every process in PM2's shape, field by field", function()
      local script = sleeper_script()
      H.started(dir, home, string.format([[
        { name = "web", script = %q, instances = 2, args = { "-x" }, env = { GREETING = "hi" } },
        { name = "off", script = %q, autorestart = false, namespace = "tools" },
      ]], script, script))
      online("web", 2)
      assert.are.equal(0, (orch({ "stop", "off" })))
      local before = os.time() * 1000
      local code, out, err = orch({ "jlist" })
      assert.are.equal(0, code, err)
      local list = cjson.decode(out)
      assert.are.equal(3, #list)
      local by = {}
      for _, p in ipairs(list) do by[p.name .. ":" .. p.pm2_env.NODE_APP_INSTANCE] = p end
      local w, off = by["web:0"], by["off:0"]
      -- top level
      assert.are.equal("number", type(w.pid))
      assert.is_true(w.pid > 0)
      assert.are.equal(0, off.pid) -- not running: 0, as PM2's
      assert.are.equal(w.pm_id, w.pm2_env.pm_id)
      assert.are.equal("web", w.name)
      assert.are.equal("number", type(w.monit.memory)) -- bytes
      assert.is_true(w.monit.memory > 0)
      assert.are.equal("number", type(w.monit.cpu))
      assert.are.same({ memory = 0, cpu = 0 }, off.monit)
      -- pm2_env
      local e = w.pm2_env
      assert.are.equal("web", e.name)
      assert.are.equal("default", e.namespace)
      assert.are.equal("tools", off.pm2_env.namespace)
      assert.are.equal("online", e.status)
      assert.are.equal("stopped", off.pm2_env.status)
      assert.are.equal(0, e.restart_time)
      assert.are.equal(0, e.unstable_restarts)
      -- Unix milliseconds
      assert.is_true(e.pm_uptime > 1e12 and e.pm_uptime <= before + 60000, tostring(e.pm_uptime))
      assert.is_true(e.created_at > 1e12 and e.created_at <= e.pm_uptime + 1000, tostring(e.created_at))
      assert.are.equal("fork_mode", e.exec_mode)
      assert.are.equal(2, e.instances)
      assert.are.equal(script, e.pm_exec_path)
      assert.are.equal(dir, e.pm_cwd)
      assert.are.same({ "-x" }, e.args)
      assert.are.same({}, e.node_args)
      assert.matches('"node_args":%[%]', out) -- a list, never {}
      assert.is_nil(out:find("\\/", 1, true), "/ escaped as \\/") -- paths as PM2 prints them
      assert.matches('"pm_exec_path":"' .. script:gsub("%p", "%%%0") .. '"', out)
      assert.are.equal("hi", e.env.GREETING)
      assert.are.equal("hi", e.GREETING) -- PM2 copies the environment to the top too
      assert.are.equal("0", e.env.NODE_APP_INSTANCE)
      assert.matches("web%-out%-0%.log$", e.pm_out_log_path)
      assert.matches("web%-error%-0%.log$", e.pm_err_log_path)
      assert.is_nil(e.pm_log_path) -- no combined log: no key, as PM2's
      assert.are.equal(true, e.autorestart)
      assert.are.equal(false, off.pm2_env.autorestart)
      assert.are.same({}, e.axm_actions)
      assert.are.equal(cjson.null, e.versioning)
      -- prettylist: the same, in Node's notation, a field a line
      local pcode, pretty = orch({ "prettylist" })
      assert.are.equal(0, pcode)
      assert.matches("\n +pm_out_log_path: '" .. e.pm_out_log_path:gsub("%p", "%%%0") .. "',\n", pretty)
      assert.matches("\n +status: 'online',\n", pretty)
      assert.matches("\n +args: %[\n +'%-x'\n +%],\n", pretty)
    end)

    it("shows a restart in restart_time and reset sets it back to 0", function()
      H.started(dir, home, string.format("{ name = 'web', script = %q },", sleeper_script()))
      online("web")
      assert.are.equal(0, (orch({ "restart", "web" })))
      assert.are.equal(0, (orch({ "restart", "0" })))
      local list = jlist()
      assert.are.equal(2, list[1].pm2_env.restart_time)
      local created = list[1].pm2_env.created_at
      local code, _, err = orch({ "reset", "web" })
      assert.are.equal(0, code, err)
      list = jlist()
      assert.are.equal(0, list[1].pm2_env.restart_time)
      assert.is_true(list[1].pm2_env.created_at >= created)
      assert.are.equal("online", list[1].pm2_env.status)
      assert.are.equal(1, (orch({ "reset", "nosuch" })))
    end)
  end)

  it("prints a process's environment, its ids and its pids", function()
    H.started(dir, home, string.format("{ name = 'web', script = %q, instances = 2, env = { GREETING = 'hi' } },",
      sleeper_script()))
    online("web", 2)
    local code, out, err = orch({ "env", "1" })
    assert.are.equal(0, code, err)
    assert.matches("\nGREETING: hi\n", "\n" .. out, 1, true)
    assert.matches("\nNODE_APP_INSTANCE: 1\n", "\n" .. out, 1, true)
    assert.are.equal(1, (orch({ "env", "9" })))
    code, out = orch({ "id", "web" })
    assert.are.equal(0, code)
    assert.are.same({ 0, 1 }, cjson.decode(out))
    assert.are.equal("[]\n", select(2, orch({ "id", "nosuch" })))
    local list = assert(H.json(home, { "list" }))
    code, out = orch({ "pid", "web" })
    assert.are.equal(0, code)
    assert.are.equal(list[1].pid .. "\n" .. list[2].pid .. "\n", out)
    assert.are.equal(0, (orch({ "stop", "1" })))
    assert.are.equal(list[1].pid .. "\n0\n", select(2, orch({ "pid" })))
  end)

  it("sends a signal to the running processes of a target", function()
    H.write(dir .. "/trap.sh", "#!/bin/sh\ntrap 'echo got >> \"$OUT/usr2.$NODE_APP_INSTANCE\"' USR2\n"
      .. "while :; do sleep 0.2; done\n", tonumber("755", 8))
    H.started(dir, home, string.format("{ name = 't', script = %q, instances = 2, env = { OUT = %q } },",
      dir .. "/trap.sh", dir))
    online("t", 2)
    local code, _, err = orch({ "sendSignal", "SIGUSR2", "t" })
    assert.are.equal(0, code, err)
    H.wait_until(function() return H.read(dir .. "/usr2.0") and H.read(dir .. "/usr2.1") end, 30000, "the traps")
    -- a usage error, naming the argument (PM2's signal names and numbers)
    code, _, err = orch({ "sendSignal", "NOSIG", "t" })
    assert.are.equal(2, code)
    assert.matches("<signal>: unknown signal 'NOSIG'", err, 1, true)
    code, _, err = orch({ "sendSignal", "999", "t" })
    assert.are.equal(2, code)
    assert.matches("<signal>: unknown signal '999'", err, 1, true)
    assert.are.equal(0, (orch({ "stop", "t" })))
    code, _, err = orch({ "sendSignal", "USR2", "t" })
    assert.are.equal(1, code)
    assert.matches("no process of 't' is running", err, 1, true)
  end)

  it("triggers an action the app registered (@pm2/io's messages) and prints its replies", function()
    H.started(dir, home, string.format("{ name = 'act', script = %q, instances = 2 },", apps .. "/pm2_action.lua"))
    online("act", 2)
    H.wait_until(function()
      local list = jlist()
      return #list == 2 and #list[1].pm2_env.axm_actions == 1 and #list[2].pm2_env.axm_actions == 1
    end, 30000, "both processes to register their action")
    local code, out, err = orch({ "trigger", "act", "greet" })
    assert.are.equal(0, code, err)
    assert.matches('[act:0]="hi 0"\n', out, 1, true)
    assert.matches('[act:1]="hi 1"\n', out, 1, true)
    code, out, err = orch({ "trigger", "1", "greet", "wave" })
    assert.are.equal(0, code, err)
    assert.are.equal('[act:1]="hi 1 wave"\n', out)
    code, _, err = orch({ "trigger", "act", "nosuch" })
    assert.are.equal(1, code)
    assert.matches("registered action 'nosuch'", err, 1, true)
  end)

  it("empties the dump with cleardump", function()
    H.started(dir, home, string.format("{ name = 'web', script = %q },", sleeper_script()))
    assert.are.equal(0, (orch({ "save" })))
    assert.are.equal(1, #cjson.decode(H.read(home .. "/dump.json")).apps)
    local code, _, err = orch({ "cleardump" })
    assert.are.equal(0, code, err)
    assert.are.same({}, cjson.decode(H.read(home .. "/dump.json")).apps)
  end)

  it("keeps the dump when there is no app to save, unless --force, as PM2's dump", function()
    -- no dump and no app: an empty dump is written (PM2's clearDump), with a warning
    local code, out, err = orch({ "save" })
    assert.are.equal(0, code, err)
    assert.are.equal("", out)
    assert.matches("warning: no app to save: " .. home .. "/dump.json left as it was (orch save --force", err, 1, true)
    assert.are.same({}, cjson.decode(H.read(home .. "/dump.json")).apps)
    H.started(dir, home, string.format("{ name = 'web', script = %q },", sleeper_script()))
    assert.are.equal(0, (orch({ "save" })))
    local saved = H.read(home .. "/dump.json")
    assert.are.equal(1, #cjson.decode(saved).apps)
    assert.are.equal(0, (orch({ "delete", "all" })))
    -- no app: the dump stays, and so does its backup
    local bak = H.read(home .. "/dump.json.bak")
    code, _, err = orch({ "dump" })
    assert.are.equal(0, code, err)
    assert.matches("no app to save", err, 1, true)
    assert.are.equal(saved, H.read(home .. "/dump.json"))
    assert.are.equal(bak, H.read(home .. "/dump.json.bak"))
    local res = assert(H.json(home, { "save" }))
    assert.is_true(res.skipped)
    -- --force (-f) saves the empty list, the dump it replaces kept as the backup
    code, out, err = orch({ "save", "--force" })
    assert.are.equal(0, code, err)
    assert.matches("saved 0 app(s)", out, 1, true)
    assert.are.same({}, cjson.decode(H.read(home .. "/dump.json")).apps)
    assert.are.equal(saved, H.read(home .. "/dump.json.bak"))
    assert.are.equal(0, (orch({ "dump", "-f" })))
  end)

  it("create writes a sample project into ./SAMPLE/ and starts it, never over an existing directory", function()
    H.need("python3", "node")
    -- no sample: the list, as a usage error; a typo: the nearest
    local code, out, err = orch({ "create" })
    assert.are.equal(2, code, out)
    assert.matches("give the sample to create:\n  http-server ", err, 1, true)
    assert.matches("\n  python-app ", err, 1, true)
    assert.matches("usage: orch create [sample]", err, 1, true)
    code, _, err = orch({ "create", "pyton-app" })
    assert.are.equal(2, code)
    assert.matches("no sample 'pyton-app' (did you mean 'python-app'?)", err, 1, true)
    assert.is_nil(require("luv").fs_stat(dir .. "/pyton-app"))

    code, out, err = orch({ "create", "python-app" })
    assert.are.equal(0, code, err)
    assert.matches("sample python-app written in " .. dir .. "/python-app", err, 1, true)
    assert.matches("started: python-app\n", out, 1, true)
    assert.is_string(H.read(dir .. "/python-app/echo.py"))
    online("python-app", 1)
    H.wait_until(function()
      return (H.read(home .. "/logs/python-app-out.log") or ""):find("echo 1\n", 1, true)
    end, 30000, "the sample's first line")
    -- again: refused, nothing written nor started
    H.write(dir .. "/python-app/echo.py", "# mine\n")
    code, _, err = orch({ "create", "python-app" })
    assert.are.equal(1, code)
    assert.matches(dir .. "/python-app exists already: nothing written", err, 1, true)
    assert.are.equal("# mine\n", H.read(dir .. "/python-app/echo.py"))
    assert.are.equal(1, #jlist())

    -- the Node sample: 4 processes on one port (PORT from this shell, as its file says)
    local port = H.free_port()
    code, _, err = orch({ "create", "http-server" }, { PORT = tostring(port) })
    assert.are.equal(0, code, err)
    online("http-server", 4)
    local pids, errors = H.http_probe(port, 8)
    assert.are.same({}, errors)
    assert.are.equal(8, #pids)
  end)

  it("writes a starter ecosystem file with init, never over an existing one", function()
    local code, out, err = orch({ "init", "--lua" })
    assert.are.equal(0, code, err)
    assert.matches("ecosystem.lua generated", out, 1, true)
    local text = H.read(dir .. "/ecosystem.lua")
    assert.matches("env_production", text, 1, true)
    code, _, err = orch({ "ecosystem", "--lua" })
    assert.are.equal(1, code)
    assert.matches("exists already: not overwritten", err, 1, true)
    assert.are.equal(text, H.read(dir .. "/ecosystem.lua"))
    -- the file it writes is one orch loads (its app's script is missing)
    H.write(dir .. "/app.js", "setInterval(() => {}, 1000)\n")
    code, _, err = orch({ "start", "ecosystem.lua" })
    assert.are.equal(0, code, err)
    assert.are.equal(0, (orch({ "delete", "all" })))
    -- PM2's default name, which orch start without an argument starts, as PM2's
    code, _, err = orch({ "start" })
    assert.are.equal(1, code)
    assert.matches("no ecosystem.config.js in ", err, 1, true)
    code, _, err = orch({ "init" })
    assert.are.equal(0, code, err)
    assert.matches("module.exports", H.read(dir .. "/ecosystem.config.js"), 1, true)
    H.need("node")
    local res
    res, code, err = H.json(home, { "start" }, { cwd = dir })
    assert.are.equal(0, code, err)
    assert.are.same({ "app" }, res.changes.started)
  end)

  it("reload --update-env (-a) gives the replacements this shell's environment, as restart's", function()
    sleeper_script()
    local code, _, err = orch({ "start", "sleep.sh", "--name", "web" }, { FOO = "one" })
    assert.are.equal(0, code, err)
    online("web")
    local function foo() return ("\n" .. select(2, orch({ "env", "web" }))):match("\nFOO: (%w+)\n") end
    assert.are.equal(0, (orch({ "reload", "web" }, { FOO = "two" })))
    assert.are.equal("one", foo())
    code, _, err = orch({ "reload", "web", "--update-env" }, { FOO = "two" })
    assert.are.equal(0, code, err)
    assert.are.equal("two", foo())
    code, _, err = orch({ "reload", "web", "-a" }, { FOO = "three" })
    assert.are.equal(0, code, err)
    assert.are.equal("three", foo())
    code, _, err = orch({ "restart", "web", "-a" }, { FOO = "four" })
    assert.are.equal(0, code, err)
    assert.are.equal("four", foo())
  end)

  it("scales by +N and -N", function()
    H.started(dir, home, string.format("{ name = 'web', script = %q },", sleeper_script()))
    online("web")
    local code, _, err = orch({ "scale", "web", "+2" })
    assert.are.equal(0, code, err)
    online("web", 3)
    code, _, err = orch({ "scale", "web", "-1" })
    assert.are.equal(0, code, err)
    assert.are.equal(2, #assert(H.json(home, { "list" })))
    code, _, err = orch({ "scale", "web", "-2" })
    assert.are.equal(1, code)
    assert.matches("'instances' must be an integer from 1", err, 1, true)
    assert.are.equal(2, #assert(H.json(home, { "list" })))
  end)

  it("scales down by stopping the oldest processes (lowest ids), and up into the free instance numbers, as PM2",
      function()
    H.started(dir, home, string.format("{ name = 'web', script = %q, instances = 4 },", sleeper_script()))
    online("web", 4)
    local function shape()
      local list = assert(H.json(home, { "list" }))
      table.sort(list, function(a, b) return a.id < b.id end)
      local out = {}
      for _, p in ipairs(list) do out[#out + 1] = p.id .. ":" .. p.instance end
      return table.concat(out, " ")
    end
    assert.are.equal("0:0 1:1 2:2 3:3", shape())
    local code, _, err = orch({ "scale", "web", "2" })
    assert.are.equal(0, code, err)
    assert.are.equal("2:2 3:3", shape())
    code, _, err = orch({ "scale", "web", "+2" })
    assert.are.equal(0, code, err)
    assert.are.equal("2:2 3:3 4:0 5:1", shape())
    online("web", 4)
    code, _, err = orch({ "scale", "web", "-1" })
    assert.are.equal(0, code, err)
    assert.are.equal("3:3 4:0 5:1", shape())
    -- saved and resurrected with its count, though it has no instance 0 now
    assert.are.equal(0, (orch({ "save" })))
    assert.are.equal(0, (orch({ "delete", "all" })))
    assert.are.equal(0, (orch({ "resurrect" })))
    online("web", 3)
  end)

  it("startOrRestart starts what does not run and restarts the rest; startOrReload reloads", function()
    local script = sleeper_script()
    local eco = H.write(dir .. "/ecosystem.json", string.format([[
      { "apps": [ { "name": "a", "script": %q, "env": { "GREETING": "dev" }, "env_production": { "GREETING": "prod" } },
                  { "name": "b", "script": %q } ] }
    ]], script, script))
    local res, code, err = H.json(home, { "startOrRestart", eco }, { cwd = dir })
    assert.are.equal(0, code, err)
    assert.are.same({ "a", "b" }, res.changes.started)
    online("a")
    online("b")
    res, code, err = H.json(home, { "startOrRestart", "ecosystem.json", "--env", "production" }, { cwd = dir })
    assert.are.equal(0, code, err)
    assert.are.same({ "a", "b" }, res.changes.restarted)
    local list = jlist()
    assert.are.same({ 1, 1 }, { list[1].pm2_env.restart_time, list[2].pm2_env.restart_time })
    assert.are.equal("prod", list[1].pm2_env.env.GREETING)
    assert.are.equal(0, (orch({ "stop", "b" })))
    res, code, err = H.json(home, { "startOrReload", "ecosystem.json" }, { cwd = dir })
    assert.are.equal(0, code, err)
    assert.are.same({ "b" }, res.changes.started)
    assert.are.same({ "a" }, res.changes.reloaded)
    list = jlist()
    assert.are.equal(2, list[1].pm2_env.restart_time)
    assert.are.equal("dev", list[1].pm2_env.env.GREETING)
    code = orch({ "startOrGracefulReload", "nosuch.json" })
    assert.are.equal(1, code)
  end)

  describe("logs", function()
    local function app()
      H.started(dir, home, string.format("{ name = 'web', script = %q },", sleeper_script()))
      H.wait_until(function() return (H.read(home .. "/logs/web-error.log") or ""):find("warn") end, 30000)
    end

    it("prints and exits with --nostream; --raw drops the label; --out / --err / --lines choose", function()
      app()
      local code, out, err = orch({ "logs", "--nostream" })
      assert.are.equal(0, code, err)
      assert.are.equal("web:0 | started 0\n", out)
      assert.are.equal("web:0 | warn\n", err)
      code, out, err = orch({ "logs", "web", "--nostream", "--raw" })
      assert.are.equal(0, code, err)
      assert.are.same({ "started 0\n", "warn\n" }, { out, err })
      -- a script path as the target, from this directory
      code, out, err = orch({ "logs", "sleep.sh", "--nostream", "--out" })
      assert.are.same({ 0, "web:0 | started 0\n", "" }, { code, out, err })
      code, out, err = orch({ "logs", "--nostream", "--err" })
      assert.are.same({ 0, "", "web:0 | warn\n" }, { code, out, err })
      code, out, err = orch({ "logs", "--nostream", "--out", "--lines", "0" })
      assert.are.same({ 0, "", "" }, { code, out, err })
    end)

    it("streams by default, as PM2's does, until interrupted", function()
      app()
      local f = H.orch({ "logs", "web", "--out" }, { home = home })
      f:wait_output("web:0 | started 0\n", 30000)
      assert.are.equal(0, (orch({ "restart", "web" })))
      H.wait_until(function() return select(2, f.out:gsub("started 0", "")) == 2 end, 30000,
        function() return "the restart's line in the stream: " .. f.out end)
      assert.is_false(f:exited())
      f:kill("sigint")
      assert.are.equal(0, f:wait_exit(30000))
    end)
  end)
end)
