-- PM2 7's end-to-end scenarios about the environment and behaviour of the
-- processes (test/e2e/internals/*.sh and test/e2e/misc/*.sh, the parts
-- that are not PM2's own machinery) replayed against orch: `pm2` becomes
-- `orch`, the fixtures are spec/fixtures/pm2e2e (each names the PM2 fixture
-- it stands for), every `should`/`spec`/`ispec` of the script is kept.
-- PM2 reads a process's environment from `pm2 prettylist`; here it is read
-- from /proc/PID/environ, what the process really got.
local H = require("helpers")
local P = require("pm2e2e")

local online, restarts = P.status("online"), P.restarts

describe("PM2 e2e environment", function()
  local t = P.each_test()

  -- The values of variable var in the online processes' environments.
  local function values(var)
    local seen = {}
    for _, p in ipairs(P.list(t)) do
      if p.status == "online" then
        local v = P.environ(p.pid)[var]
        if v then seen[#seen + 1] = v end
      end
    end
    table.sort(seen)
    return table.concat(seen, ",")
  end

  local function should_values(var, want)
    local ok = pcall(H.wait_until, function() return values(var) == want end, 15000)
    if not ok then error(string.format("%s: expected %s, got %s", var, want, values(var)), 2) end
  end

  for _, mode in ipairs({ "", "-fork" }) do
    it("internals/increment-var.sh: NODE_APP_INSTANCE per instance, kept by scale" .. (mode == "" and " (cluster)"
        or " (fork)"), function()
      t.cwd = t.dir .. "/increment-var"
      P.ok(t, { "start", "ecosystem.json", "--only", "sample-normal" .. mode })
      P.should(t, "start 2 processes", online, 2)
      should_values("NODE_APP_INSTANCE", "0,1")
      P.ok(t, { "scale", "sample-normal" .. mode, "4" })
      P.should(t, "start 2 more processes", online, 4)
      should_values("NODE_APP_INSTANCE", "0,1,2,3")
      P.ok(t, { "scale", "sample-normal" .. mode, "2" })
      P.should(t, "deleted 2 processes", online, 2)
      should_values("NODE_APP_INSTANCE", "2,3")
      P.ok(t, { "scale", "sample-normal" .. mode, "4" })
      P.should(t, "start 2 more processes", online, 4)
      should_values("NODE_APP_INSTANCE", "0,1,2,3") -- should reuse old numbers
    end)
  end

  for _, mode in ipairs({ "", "-fork" }) do
    it("internals/increment-var.sh: instance_var and increment_var" .. (mode == "" and " (cluster)" or " (fork)"),
        function()
      t.cwd = t.dir .. "/increment-var"
      P.ok(t, { "start", "ecosystem.json", "--only", "sample-other-instance" .. mode })
      P.should(t, "start 2 processes", online, 2)
      should_values("APP_ID", "0,1")
      should_values("NODE_APP_INSTANCE", "")
      P.ok(t, { "delete", "all" })
      P.ok(t, { "start", "ecosystem.json", "--only", "sample-increment" .. mode })
      P.should(t, "start 2 processes", online, 2)
      should_values("NODE_APP_INSTANCE", "0,1")
      should_values("PORT", "3000,3001")
    end)
  end

  it("internals/wait-ready-event.sh: --wait-ready holds launching until the app sends ready", function()
    t.cwd = t.dir .. "/wait-ready"
    for _, i in ipairs({ {}, { "-i", "1" } }) do
      for _, wait in ipairs({ false, true }) do
        local args = { "start", "http-wait-start.js" }
        for _, a in ipairs(i) do args[#args + 1] = a end
        if wait then args[#args + 1] = "--wait-ready" end
        P.ok(t, args)
        P.should(t, "should have started 1 app", online, 1)
        P.ok(t, { "delete", "all" })
      end
      -- no ready message: launching until listen_timeout
      local args = { "start", "http-wait-start_nocb.js", "--wait-ready", "--listen-timeout=8000" }
      for _, a in ipairs(i) do args[#args + 1] = a end
      local starting = H.orch(args, { home = t.home, cwd = t.cwd })
      P.should(t, "should be 1 app launching, waiting for ready", P.status("launching"), 1, nil, 1500)
      P.ok(t, { "delete", "all" })
      starting:wait_exit(20000)
    end
  end)

  it("internals/signal.sh: sendSignal by name and by id", function()
    P.ok(t, { "start", "signal.js", "-i", "2" })
    P.should(t, "online", online, 2)
    local out_log = P.describe(t, "0")[1].out_log
    P.file_has(t, out_log, "ok") -- the app runs: its handler is set
    P.truncate(t, out_log)
    P.ok(t, { "sendSignal", "SIGUSR2", "signal" })
    P.file_has(t, out_log, "SIGUSR2")
    assert.are.equal(1, P.count(t, out_log, "SIGUSR2"), "Signal not received by the process name")
    P.ok(t, { "delete", "all" })
    P.ok(t, { "start", "signal.js" })
    P.should(t, "online", online, 1)
    local p = P.list(t)[1]
    out_log = P.describe(t, tostring(p.id))[1].out_log
    P.file_has(t, out_log, "ok")
    P.truncate(t, out_log)
    P.ok(t, { "sendSignal", "SIGUSR2", tostring(p.id) })
    P.file_has(t, out_log, "SIGUSR2")
    assert.are.equal(1, P.count(t, out_log, "SIGUSR2"), "Signal not received by the process id")
  end)

  it("internals/listen-timeout.sh: reload of a --wait-ready app that is ready", function()
    t.cwd = t.dir .. "/wait-ready"
    P.ok(t, { "start", "http-wait-start.js", "-i", "1", "--wait-ready", "--listen-timeout", "5000" })
    P.should(t, "online", online, 1)
    P.ok(t, { "reload", "all" })
    P.should(t, "should have started 1 clustered app", online, 1)
    P.should(t, "should have been reloaded once", restarts(1), 1)
  end)

  it("internals/wrapped-fork.sh: a node script sees itself as it does when run by node directly", function()
    local direct = H.sh("cd '" .. t.dir .. "' && node path-check.js")
    P.ok(t, { "start", "path-check.js", "--no-autorestart", "-o", "path-check2.txt" })
    P.file_has(t, "path-check2.txt", "true\n")
    assert.are.equal(direct, H.read(t.dir .. "/path-check2.txt"))
  end)

  it("internals/infinite-loop.sh: an app that exits at once ends errored", function()
    P.ok(t, { "start", "killtoofast.js", "--name", "unstable-process" })
    P.should(t, "should has stopped unstable process", P.status("errored"), 1, 60000)
  end)

  it("misc/instance-number.sh: -i -100 starts one process", function()
    P.ok(t, { "start", "server.js", "-i", "-100" })
    P.should(t, "should have started 1 processes", online, 1, nil, 500)
  end)

  it("misc/misc.sh: an app named push; --max-memory-restart and max_memory_restart", function()
    P.ok(t, { "start", "push.json" })
    P.ok(t, { "stop", "push.json" })
    P.ok(t, { "delete", "all" })
    P.ok(t, { "start", "json-reload/big-array.js", "--max-memory-restart=20M" })
    P.should(t, "process should have been restarted", restarts(0), 0, 30000)
    P.ok(t, { "delete", "all" })
    P.ok(t, { "start", "json-reload/max-mem.json" })
    P.should(t, "process should been restarted", restarts(0), 0, 30000)
  end)

  it("misc/misc.sh: env of a process file reaches the app, none without it", function()
    P.ok(t, { "start", "env.js" })
    P.should(t, "online", online, 1)
    local out_log = P.describe(t, "env")[1].out_log
    P.file_has(t, out_log, "undefined") -- environment variable not defined
    P.ok(t, { "delete", "all" })
    P.ok(t, { "start", "env.json" })
    P.file_has(t, "out-env.log", "YES") -- environment variable successfully defined
  end)

  it("misc/port-release.sh: reload of a cluster started from a single-app file", function()
    P.ok(t, { "start", "cluster-pm2.json" })
    P.should(t, "should have started 4 processes", online, 4)
    P.ok(t, { "reload", "cluster-pm2.json" })
    P.should(t, "should have started 4 processes", online, 4)
  end)

  it("misc/cron-system.sh: -c restarts on a cron pattern (also a stopped app), 0 disables it", function()
    P.fails(t, { "start", "cron.js", "-c", "* * * asdasd" }) -- Cron should throw error when pattern invalid
    P.should(t, "nothing started", P.any(), 0)
    P.ok(t, { "start", "cron.js", "-c", "*/2 * * * * *", "--no-vizion" })
    P.should(t, "should app been restarted", function(p) return p.restarts > 0 end, 1, 15000)
    P.ok(t, { "restart", "cron" })
    P.ok(t, { "reset", "all" })
    P.should(t, "should app been restarted after restart", function(p) return p.restarts > 0 end, 1, 15000)
    P.ok(t, { "reset", "cron" })
    P.ok(t, { "stop", "cron" })
    P.should(t, "should app be started again", online, 1, 15000)
    P.ok(t, { "delete", "cron" })
    P.should(t, "should app not be started again", P.any(), 0, nil, 3000)
    P.ok(t, { "start", "cron.js", "-i", "1", "-c", "*/2 * * * * *" })
    P.should(t, "should app been restarted", function(p) return p.restarts > 0 end, 1, 15000)
    P.ok(t, { "delete", "all" })
    P.ok(t, { "start", "cron.js", "-c", "* * * * * *" })
    P.should(t, "should app been restarted", function(p) return p.restarts > 0 end, 1, 15000)
    P.ok(t, { "restart", "cron", "--cron-restart", "0" })
    P.ok(t, { "reset", "all" })
    P.should(t, "app stop be restarted", restarts(0), 1, nil, 2500)
  end)
  it("misc/inside-pm2.sh: an app that runs orch restart acts on the daemon that runs it", function()
    P.ok(t, { "start", "echo.js" })
    P.should(t, "online", online, 1)
    P.ok(t, { "start", "inside/inner_restart.sh", "--no-autorestart" }, { env = { ORCH_PATH = H.bin } })
    P.should(t, "restarted status should be three", P.both(P.named("echo"), restarts(3)), 1)
  end)
end)
