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

  it("cli/cli-actions-2.sh: a script whose name starts with digits", function()
    P.ok(t, { "start", "001-test.js" })
    P.should(t, "should app be online", online, 1)
    P.ok(t, { "stop", "001-test" })
    P.should(t, "should app be stopped", stopped, 1)
    P.ok(t, { "restart", "001-test" })
    P.should(t, "should app be online once restart called", online, 1)
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
