-- Every form of target PM2's verbs take, against the real binary: several
-- targets, a script path, /regex/, a namespace, all, an id or a name made of
-- digits, an ecosystem file (with --env); and PM2's exit statuses.
local H = require("helpers")

describe("targets", function()
  local dir, home
  H.each_test(function(d, h) dir, home = d, h end)

  local function orch(args)
    return H.orch_sync(args, { home = home, cwd = dir })
  end

  -- status by name:instance from orch list
  local function statuses()
    local s = {}
    for _, p in ipairs(assert(H.json(home, { "list" }))) do s[p.name .. ":" .. p.instance] = p.status end
    return s
  end

  local function wait_status(label, status)
    H.wait_until(function() return statuses()[label] == status end, 30000,
      function() return label .. " " .. status .. ": " .. require("cjson").encode(statuses()) end)
  end

  -- n apps named names..., each running a copy of a sleeping script
  local function sleepers(names, script)
    script = script or "sleep.sh"
    H.write(dir .. "/" .. script, "#!/bin/sh\nexec sleep 1000\n", tonumber("755", 8))
    local body = {}
    for _, n in ipairs(names) do
      body[#body + 1] = string.format("{ name = %q, script = %q },", n, dir .. "/" .. script)
    end
    -- a file per script: starting one file again deletes the apps gone from it
    local res, code, err = H.json(home, { "start", H.ecosystem(dir, table.concat(body, "\n"), "ecosystem-" .. script .. ".lua") },
      { cwd = dir })
    assert(code == 0 and res, err)
    for _, n in ipairs(names) do wait_status(n .. ":0", "online") end
  end

  it("stops, restarts and deletes several targets in one command", function()
    sleepers({ "a", "b", "c" })
    local code, _, err = orch({ "stop", "a", "b" })
    assert.are.equal(0, code, err)
    local s = statuses()
    assert.are.same({ "stopped", "stopped", "online" }, { s["a:0"], s["b:0"], s["c:0"] })
    local res, rcode, rerr = H.json(home, { "restart", "a", "c" }, { cwd = dir })
    assert.are.equal(0, rcode, rerr)
    assert.are.same({ "a", "c" }, { res[1].name, res[2].name })
    code, _, err = orch({ "delete", "b", "c" })
    assert.are.equal(0, code, err)
    local left = assert(H.json(home, { "list" }))
    assert.are.equal(1, #left)
    assert.are.equal("a", left[1].name)
  end)

  it("starts several scripts in one command, one after the other (PM2's multiparam.sh)", function()
    for _, n in ipairs({ "child", "echo", "server" }) do
      H.write(dir .. "/" .. n .. ".sh", "#!/bin/sh\nexec sleep 1000\n", tonumber("755", 8))
    end
    local code, _, err = orch({ "start", "child.sh", "echo.sh", "server.sh" })
    assert.are.equal(0, code, err)
    for _, n in ipairs({ "child", "echo", "server" }) do wait_status(n .. ":0", "online") end
    code, _, err = orch({ "restart", "child", "echo", "server" })
    assert.are.equal(0, code, err)
    for _, p in ipairs(assert(H.json(home, { "list" }))) do assert.are.equal(1, p.restarts, p.name) end
    -- one --name for several scripts is refused, nothing started
    code, _, err = orch({ "start", "a.sh", "b.sh", "--name", "x" })
    assert.are.equal(2, code)
    assert.matches("--name names one app", err, 1, true)
    assert.are.equal(3, #assert(H.json(home, { "list" })))
  end)

  it("stops at the first unknown target with status 1, after the targets before it", function()
    sleepers({ "a", "b" })
    local code, _, err = orch({ "stop", "a", "nosuch", "b" })
    assert.are.equal(1, code)
    assert.matches("no app named 'nosuch'", err, 1, true)
    local s = statuses()
    assert.are.same({ "stopped", "online" }, { s["a:0"], s["b:0"] })
  end)

  it("takes a script path as the apps that run that file", function()
    sleepers({ "api-1", "api-2" }, "api.sh")
    sleepers({ "other" }, "other.sh")
    local code, _, err = orch({ "stop", "api.sh" })
    assert.are.equal(0, code, err)
    local s = statuses()
    assert.are.same({ "stopped", "stopped", "online" }, { s["api-1:0"], s["api-2:0"], s["other:0"] })
    -- an absolute path too
    code, _, err = orch({ "stop", dir .. "/other.sh" })
    assert.are.equal(0, code, err)
    assert.are.equal("stopped", statuses()["other:0"])
  end)

  it("takes /regex/ as the apps whose name matches", function()
    sleepers({ "echo-1", "echo-2", "echo-3" })
    local code, _, err = orch({ "stop", "/echo-[1,2]/" })
    assert.are.equal(0, code, err)
    local s = statuses()
    assert.are.same({ "stopped", "stopped", "online" }, { s["echo-1:0"], s["echo-2:0"], s["echo-3:0"] })
    code, _, err = orch({ "restart", "/^echo-\\d$/" })
    assert.are.equal(0, code, err)
    s = statuses()
    assert.are.same({ "online", "online", "online" }, { s["echo-1:0"], s["echo-2:0"], s["echo-3:0"] })
    code, _, err = orch({ "stop", "/nomatch/" })
    assert.are.equal(1, code)
    assert.matches("no app name matches /nomatch/", err, 1, true)
    code, _, err = orch({ "stop", "/echo-(/" })
    assert.are.equal(1, code)
    assert.matches("invalid regular expression /echo-(/", err, 1, true)
    assert.are.equal("online", statuses()["echo-1:0"])
  end)

  it("takes a namespace as its apps, after app names", function()
    H.write(dir .. "/sleep.sh", "#!/bin/sh\nexec sleep 1000\n", tonumber("755", 8))
    local script = dir .. "/sleep.sh"
    H.started(dir, home, string.format([[
      { name = "a", script = %q, namespace = "back" },
      { name = "b", script = %q, namespace = "back", instances = 2 },
      { name = "c", script = %q },
      { name = "front", script = %q, namespace = "front-ns" },
    ]], script, script, script, script))
    wait_status("front:0", "online")
    local code, _, err = orch({ "stop", "back" })
    assert.are.equal(0, code, err)
    local s = statuses()
    assert.are.same({ "stopped", "stopped", "stopped", "online", "online" },
      { s["a:0"], s["b:0"], s["b:1"], s["c:0"], s["front:0"] })
    -- "default" is the namespace of apps without one
    code, _, err = orch({ "stop", "default" })
    assert.are.equal(0, code, err)
    assert.are.same({ "stopped", "online" }, { statuses()["c:0"], statuses()["front:0"] })
  end)

  it("takes a number as an id", function()
    sleepers({ "first", "second" })
    local code, _, err = orch({ "stop", "1" })
    assert.are.equal(0, code, err)
    assert.are.same({ "online", "stopped" }, { statuses()["first:0"], statuses()["second:0"] })
    code, _, err = orch({ "stop", "7" })
    assert.are.equal(1, code)
    assert.matches("no process with id 7", err, 1, true)
  end)

  it("takes an all-digit target as an app of that name first, else as an id (PM2's _operate)", function()
    H.write(dir .. "/sleep.sh", "#!/bin/sh\nexec sleep 1000\n", tonumber("755", 8))
    local code, _, err = orch({ "start", "sleep.sh", "--name", "455" })
    assert.are.equal(0, code, err)
    code, _, err = orch({ "start", "sleep.sh", "--name", "0" })
    assert.are.equal(0, code, err)
    wait_status("455:0", "online")
    wait_status("0:0", "online")
    -- "0" is the app named 0 (id 1), not the process with id 0
    code, _, err = orch({ "stop", "0" })
    assert.are.equal(0, code, err)
    assert.are.same({ "online", "stopped" }, { statuses()["455:0"], statuses()["0:0"] })
    -- no app is named 1: the process with id 1
    code, _, err = orch({ "restart", "1" })
    assert.are.equal(0, code, err)
    wait_status("0:0", "online")
    code, _, err = orch({ "stop", "455" })
    assert.are.equal(0, code, err)
    assert.are.equal("stopped", statuses()["455:0"])
  end)

  it("fails with status 1 on all when there is nothing to act on, as PM2 does", function()
    for _, verb in ipairs({ "stop", "restart", "delete", "reload" }) do
      local code, _, err = orch({ verb, "all" })
      assert.are.equal(1, code, verb)
      assert.matches("orch " .. verb .. ": no processes", err, 1, true)
    end
    local code = orch({ "restart", "nosuch" })
    assert.are.equal(1, code)
    code = orch({ "delete", "10" })
    assert.are.equal(1, code)
  end)

  it("acts on the apps of an ecosystem file: stop, delete, and restart/reload with --env", function()
    H.write(dir .. "/sleep.sh", "#!/bin/sh\nexec sleep 1000\n", tonumber("755", 8))
    local eco = H.write(dir .. "/apps.json", string.format([[
      { "apps": [ { "name": "w1", "script": %q, "env": { "A": "dev" }, "env_production": { "A": "prod" } },
                  { "name": "w2", "script": %q } ] }
    ]], dir .. "/sleep.sh", dir .. "/sleep.sh"))
    sleepers({ "other" })
    assert.are.equal(0, (orch({ "start", "apps.json" })))
    wait_status("w1:0", "online")
    local code, _, err = orch({ "stop", "apps.json" })
    assert.are.equal(0, code, err)
    local s = statuses()
    assert.are.same({ "stopped", "stopped", "online" }, { s["w1:0"], s["w2:0"], s["other:0"] })
    -- restart FILE --env: the apps start again with env_production
    code, _, err = orch({ "restart", eco, "--env", "production" })
    assert.are.equal(0, code, err)
    wait_status("w1:0", "online")
    local env = select(2, orch({ "env", "w1" }))
    assert.matches("\nA: prod\n", "\n" .. env, 1, true)
    -- reload FILE: the running apps are replaced, their restart count grows
    local before = assert(H.json(home, { "describe", "w2" }))[1].restarts
    code, _, err = orch({ "reload", "apps.json" })
    assert.are.equal(0, code, err)
    assert.are.equal(before + 1, assert(H.json(home, { "describe", "w2" }))[1].restarts)
    code, _, err = orch({ "delete", "apps.json" })
    assert.are.equal(0, code, err)
    local left = assert(H.json(home, { "list" }))
    assert.are.equal(1, #left)
    assert.are.equal("other", left[1].name)
    -- --env without the file is refused, as PM2 refuses it
    code, _, err = orch({ "restart", "other", "--env", "production" })
    assert.are.equal(2, code)
    assert.matches("--env NAME needs the ecosystem file", err, 1, true)
  end)
end)
