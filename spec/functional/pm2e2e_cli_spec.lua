-- PM2 7's end-to-end CLI scenarios (test/e2e/cli/*.sh) replayed against
-- orch: `pm2` becomes `orch`, the fixtures are spec/fixtures/pm2e2e (each
-- names the PM2 fixture it stands for), every `should`/`spec`/`ispec` of
-- the script is kept. Each `it` names the PM2 script it ports.
local H = require("helpers")
local P = require("pm2e2e")

local online, stopped, restarts = P.status("online"), P.status("stopped"), P.restarts

describe("PM2 e2e cli", function()
  local t = {}
  H.each_test(function(dir, home)
    t.dir, t.home, t.cwd = dir, home, nil
    P.copy_fixtures(dir)
  end)

  it("cli/right-exit-code.sh: verbs on unknown processes, or on all with none, exit with an error", function()
    P.ok(t, { "ping" })
    P.fails(t, { "restart", "BULLSHIT" })
    P.fails(t, { "restart", "666" })
    P.fails(t, { "restart", "all" })
    P.fails(t, { "stop", "all" })
    P.fails(t, { "delete", "10" })
    P.fails(t, { "delete", "toto" })
  end)

  it("cli/start-app.sh: a command string runs through the shell; --update-env refreshes its environment", function()
    t.cwd = t.dir .. "/start-app"
    P.ok(t, { "start", "node -e 'setTimeout(function() {}, 100000); console.log(process.env.TEST)'",
      "-l", "test.log", "--merge-logs" })
    P.should(t, "should have started command", online, 1)
    P.should(t, "should have not been restarted", restarts(0), 1)
    P.file_has(t, "start-app/test.log", "undefined")
    P.ok(t, { "restart", "0", "--update-env" }, { env = { TEST = "ok" } })
    P.file_has(t, "start-app/test.log", "ok")
    P.should(t, "should have started command", online, 1)
    P.should(t, "should have been restarted once", restarts(1), 1)
    -- the command as `cmd` in a config file
    P.ok(t, { "delete", "all" })
    P.ok(t, { "start", "ecosystem.config.js" })
    P.should(t, "should have started command", online, 1)
    P.should(t, "should have not been restarted", restarts(0), 1)
    P.file_has(t, "start-app/test-conf.log", "test_val")
    -- a compound command: compile a C program, then run it
    t.cwd = t.dir .. "/c-compile"
    P.ok(t, { "start", "cc hello.c; ./a.out", "-l", "c-log.log", "--merge-logs" })
    P.file_has(t, "c-compile/c-log.log", "Hello World")
  end)

  it("cli/reset.sh: --restart-delay holds the restart of a crashing app", function()
    P.ok(t, { "start", "killtoofast.js", "--restart-delay", "5000" })
    P.should(t, "should process not have been restarted yet", restarts(0), 1, nil, 1500)
  end)

  it("cli/cli-actions-1.sh: -p writes a pid file per process, removed once stopped", function()
    P.ok(t, { "start", "echo.js", "-p", "echo.pid" })
    H.wait_until(function() return P.exists(t, "echo-0.pid") end, 15000, "echo-0.pid")
    P.ok(t, { "stop", "all" })
    H.wait_until(function() return not P.exists(t, "echo-0.pid") end, 15000, "echo-0.pid to be deleted")
    P.ok(t, { "kill" })
    P.ok(t, { "start", "echo.js", "-p", "echo.pid", "-i", "1" })
    H.wait_until(function() return P.exists(t, "echo-0.pid") end, 15000, "echo-0.pid")
    P.ok(t, { "stop", "all" })
    H.wait_until(function() return not P.exists(t, "echo-0.pid") end, 15000, "echo-0.pid to be deleted")
  end)

  it("cli/cli-actions-2.sh: a script whose name starts with digits", function()
    P.ok(t, { "start", "001-test.js" })
    P.should(t, "should app be online", online, 1)
    P.ok(t, { "stop", "001-test" })
    P.should(t, "should app be stopped", stopped, 1)
    P.ok(t, { "restart", "001-test" })
    P.should(t, "should app be online once restart called", online, 1)
  end)

  it("cli/cli-actions-2.sh: a crash's stack trace reaches the combined log", function()
    P.ok(t, { "start", "throw-string.js", "-l", "err-string.log", "--merge-logs", "--no-automation" })
    P.file_has(t, "err-string.log", "throw-string.js")
  end)

  it("cli/cli-actions-2.sh: start, stop, restart by --name; a running script is not started twice", function()
    P.ok(t, { "start", "echo.js", "--name", "gege" })
    P.should(t, "should app be online", online, 1)
    P.ok(t, { "stop", "gege" })
    P.should(t, "should app be stopped", stopped, 1)
    P.ok(t, { "restart", "gege" })
    P.should(t, "should app be online once restart called", online, 1)
    P.ok(t, { "delete", "all" })
    P.ok(t, { "start", "echo.js" })
    P.fails(t, { "start", "echo.js" }) -- Should not re start app
  end)

  it("cli/cli-actions-2.sh: -o and -e with -i get one file per instance", function()
    P.ok(t, { "start", "echo.js", "-o", "outech.log", "-e", "errech.log", "--name", "gmail", "-i", "2" })
    P.file_has(t, "outech-0.log", "echo.js")
    P.file_has(t, "errech-0.log", "echo.js-error")
  end)

  it("cli/cli-actions-2.sh: stdout and stderr writes, with and without newline, reach the combined log", function()
    P.ok(t, { "start", "stdout-stderr.js", "-l", "stdout-stderr.log", "--merge-logs" })
    for _, s in ipairs({ "outwrite", "outcb", "errwrite", "errcb" }) do P.file_has(t, "stdout-stderr.log", s) end
  end)

  it("cli/cli-actions-2.sh: killing the daemon ends the apps (python too)", function()
    P.ok(t, { "start", "python-script.py" })
    P.ok(t, { "start", "echo.js" })
    P.should(t, "should app be online", online, 2)
    local pids = {}
    for _, p in ipairs(P.list(t)) do pids[#pids + 1] = p.pid end
    local daemon = tonumber(H.read(t.home .. "/daemon.pid"))
    require("luv").kill(daemon, "sigterm")
    H.wait_until(function()
      for _, pid in ipairs(pids) do if H.alive(pid) then return false end end
      return not H.alive(daemon)
    end, 20000, "the daemon and its apps to end")
  end)

  it("cli/reload.sh: reload in cluster mode sends SIGINT to each old process once", function()
    P.ok(t, { "start", "delayed_exit.js", "-i", "2" })
    P.should(t, "should start processes", online, 2)
    P.should(t, "should app be in cluster mode", P.mode("cluster"), 2)
    local out_log = P.describe(t, "0")[1].out_log
    P.truncate(t, out_log)
    P.ok(t, { "reload", "delayed_exit" })
    P.file_has(t, out_log, "SIGINT")
    assert.are.equal(1, P.count(t, out_log, "SIGINT"), "Signal not received by the process name")
  end)

  it("cli/reload.sh: --no-autorestart and autorestart: false", function()
    P.ok(t, { "start", "killtoofast.js", "--no-autorestart" })
    P.should(t, "should not restart", P.both(restarts(0), stopped), 1, nil, 500)
    P.ok(t, { "delete", "all" })
    P.ok(t, { "start", "no-restart.json" })
    P.should(t, "should not restart", P.both(restarts(0), stopped), 1, nil, 500)
  end)

  it("cli/reload.sh: --stop-exit-codes and stop_exit_codes", function()
    P.ok(t, { "start", "exitcode42.js", "--stop-exit-codes", "42" })
    P.should(t, "should not restart", P.both(restarts(0), stopped), 1, nil, 500)
    P.ok(t, { "delete", "all" })
    P.ok(t, { "start", "exitcode42.js", "--stop-exit-codes", "34" })
    P.should(t, "should restart", function(p) return p.restarts > 0 end, 1)
    P.ok(t, { "delete", "all" })
    P.ok(t, { "start", "stop-exit-codes.json" })
    P.should(t, "should not restart", P.both(restarts(0), stopped), 1, nil, 500)
  end)

  it("cli/env-refresh.sh: restart --update-env takes the shell's environment, restart alone keeps it", function()
    P.ok(t, { "start", "env.js", "-o", "out-env.log", "--merge-logs", "--name", "env" },
      { env = { TEST_VARIABLE = "hello1" } })
    P.file_has(t, "out-env.log", "hello1")
    P.ok(t, { "restart", "env", "--update-env" }, { env = { TEST_VARIABLE = "89hello89" } })
    P.file_has(t, "out-env.log", "89hello89")
    P.ok(t, { "restart", "env" }, { env = { TEST_VARIABLE = "CLUNEWSTER" } })
    P.truncate(t, "out-env.log")
    P.file_has(t, "out-env.log", "89hello89") -- should not change environment
    assert.are.equal(0, P.count(t, "out-env.log", "CLUNEWSTER"))
  end)

  it("cli/python-support.sh: python apps run in fork mode, from a config file and from the CLI", function()
    t.cwd = t.dir .. "/extra-lang"
    P.ok(t, { "start", "app-python.config.js", "--only", "echo-python-1" })
    P.should(t, "should mode be fork", P.mode("fork"), 1)
    P.should(t, "should have started 1 apps", online, 1)
    P.ok(t, { "delete", "all" })
    P.ok(t, { "start", "app-python.config.js", "--only", "echo-python-max" })
    P.should(t, "should mode be fork", P.mode("fork"), 4)
    P.should(t, "should have started 4 apps", online, 4)
    P.ok(t, { "restart", "all" })
    P.should(t, "should have restarted processes", restarts(1), 4)
    P.should(t, "should mode be fork", P.mode("fork"), 4)
    P.ok(t, { "delete", "all" })
    P.ok(t, { "start", "echo.py" })
    P.should(t, "should mode be fork", P.both(P.mode("fork"), online), 1)
    P.ok(t, { "delete", "all" })
    P.ok(t, { "start", "echo.py", "-i", "4" })
    P.should(t, "should mode be fork", P.both(P.mode("fork"), online), 4)
    P.ok(t, { "restart", "all" })
    P.should(t, "should have restarted processes", restarts(1), 4)
  end)

  it("cli/mjs.sh: an ES module with --node-args, in fork and cluster mode", function()
    t.cwd = t.dir .. "/mjs"
    P.ok(t, { "start", "--node-args=--experimental-modules", "index.mjs", "-o", "outech.log", "-e", "errech.log" })
    P.should(t, "should app be online in fork mode with MJS support", online, 1, nil, 1000)
    P.ok(t, { "delete", "all" })
    P.ok(t, { "start", "--node-args=--experimental-modules", "-i", "2", "index.mjs" })
    P.should(t, "should app be online in cluster mode with MJS support", online, 2, nil, 1000)
  end)

  it("cli/dump.sh: save keeps the dump it replaces as dump.json.bak (PM2: dump.pm2.bak)", function()
    P.ok(t, { "start", "echo.js", "-i", "4" })
    P.should(t, "should have 4 apps started", online, 4)
    P.ok(t, { "save" })
    assert.is_truthy(P.exists(t, t.home .. "/dump.json"), "dump file should exist")
    assert.is_false(P.exists(t, t.home .. "/dump.json.bak"), "dump backup file should not exist")
    P.ok(t, { "save" })
    assert.is_truthy(P.exists(t, t.home .. "/dump.json"), "dump file should exist")
    assert.is_truthy(P.exists(t, t.home .. "/dump.json.bak"), "dump backup file should exist")
  end)

  it("cli/resurrect.sh: save and resurrect keep 4 instances, also from the backup of a broken dump", function()
    P.ok(t, { "start", "echo.js", "-i", "4" })
    P.should(t, "should have 4 apps started", online, 4)
    P.ok(t, { "save" })
    P.ok(t, { "resurrect" })
    P.should(t, "should have still 4 apps started", online, 4)
    P.ok(t, { "save" })
    P.ok(t, { "delete", "all" })
    H.write(t.home .. "/dump.json", "[{\n")
    local out = P.ok(t, { "resurrect" }) -- should resurrect from backup if dump is broken
    assert.truthy(out:find("dump.json.bak", 1, true), out)
    P.should(t, "should have still 4 apps started", online, 4)
    P.ok(t, { "delete", "all" })
    os.remove(t.home .. "/dump.json")
    P.ok(t, { "resurrect" }) -- should resurrect from backup if dump is missing
    P.should(t, "should have still 4 apps started", online, 4)
  end)
  it("esmodule.sh: ES modules (.mjs, package.json type module) start and restart, in fork and cluster mode", function()
    for _, i in ipairs({ {}, { "-i", "4" } }) do
      local n = #i > 0 and 4 or 1
      for _, case in ipairs({ { "esmodules/mjs", "index.mjs" }, { "esmodules/packagemodule", "index.js" } }) do
        t.cwd = t.dir .. "/" .. case[1]
        local args = { "start", case[2] }
        for _, a in ipairs(i) do args[#args + 1] = a end
        P.ok(t, args)
        P.should(t, "should have detected es module and started " .. n .. " app(s)", online, n)
        P.should(t, "should have application in stable state", restarts(0), n, nil, 300)
        P.ok(t, { "restart", "index" })
        P.should(t, "should have detected es module and started " .. n .. " app(s)", online, n)
        P.should(t, "should have application in stable state", restarts(1), n, nil, 300)
        P.ok(t, { "delete", "all" })
      end
    end
  end)
end)
