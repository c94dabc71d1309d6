-- start and restart as PM2 7's (lib/API.js): start on a known app's name or
-- id restarts it (_startScript's restartExistingProcessName/Id), start on a
-- process file restarts its running apps (_startJson with restartProcessId),
-- and options given to restart (or to start of a known app) change the app
-- (_operate's _handleAttributeUpdate): --node-args, --name, -- args.
local H = require("helpers")

describe("start and restart as PM2's", function()
  local dir, home
  H.each_test(function(d, h) dir, home = d, h end)

  local function orch(args)
    return H.orch_sync(args, { home = home, cwd = dir })
  end

  local function json(args)
    return H.json(home, args, { cwd = dir })
  end

  local function by_name()
    local out = {}
    for _, p in ipairs(assert(json({ "list" }))) do out[p.name .. ":" .. p.instance] = p end
    return out
  end

  local function wait(label, status, restarts)
    H.wait_until(function()
      local p = by_name()[label]
      return p and p.status == status and (restarts == nil or p.restarts == restarts)
    end, 30000, function()
      return string.format("%s %s (restarts %s): %s", label, status, tostring(restarts),
        require("cjson").encode(by_name()))
    end)
  end

  local function sleeper(name)
    return H.write(dir .. "/" .. (name or "sleep") .. ".sh", "#!/bin/sh\nexec sleep 1000\n", tonumber("755", 8))
  end

  it("start NAME or ID restarts a running app and starts a stopped one", function()
    sleeper()
    assert.are.equal(0, (orch({ "start", "sleep.sh", "--name", "nap" })))
    wait("nap:0", "online", 0)
    local pid = by_name()["nap:0"].pid
    local code, _, err = orch({ "start", "nap" })
    assert.are.equal(0, code, err)
    wait("nap:0", "online", 1)
    assert.are_not.equal(pid, by_name()["nap:0"].pid)
    assert.are.equal(0, (orch({ "stop", "nap" })))
    code, _, err = orch({ "start", "nap" })
    assert.are.equal(0, code, err)
    wait("nap:0", "online", 1) -- a start of a stopped app is no restart
    code, _, err = orch({ "start", tostring(by_name()["nap:0"].id) })
    assert.are.equal(0, code, err)
    wait("nap:0", "online", 2)
  end)

  it("start FILE restarts the file's running apps and starts the others; apps gone from it stay", function()
    local script = sleeper()
    local file = dir .. "/apps.json"
    H.write(file, string.format([[{ "apps": [ { "name": "a", "script": %q }, { "name": "b", "script": %q },
      { "name": "c", "script": %q } ] }]], script, script, script))
    assert.are.equal(0, (orch({ "start", "apps.json" })))
    wait("a:0", "online", 0)
    wait("c:0", "online", 0)
    assert.are.equal(0, (orch({ "stop", "b" })))
    H.write(file, string.format([[{ "apps": [ { "name": "a", "script": %q }, { "name": "b", "script": %q } ] }]],
      script, script))
    local res, code, err = json({ "start", "apps.json" })
    assert.are.equal(0, code, err)
    assert.are.same({ "a" }, res.changes.restarted)
    assert.are.same({ "b" }, res.changes.started)
    wait("a:0", "online", 1)
    wait("b:0", "online", 0)
    wait("c:0", "online", 0) -- PM2 leaves an app its file no longer has alone
  end)

  it("restart and start of a known app take --node-args, -- args and --name", function()
    sleeper()
    local function exec(name)
      return table.concat(assert(json({ "describe", name }))[1].exec, " ")
    end
    assert.are.equal(0, (orch({ "start", "sleep.sh", "--interpreter", "sh" })))
    wait("sleep:0", "online", 0)
    local code, _, err = orch({ "restart", "sleep.sh", "--interpreter-args=-e" })
    assert.are.equal(0, code, err)
    wait("sleep:0", "online", 1)
    assert.matches("^sh %-e " .. (dir .. "/sleep.sh"):gsub("%p", "%%%0") .. "$", exec("sleep"))
    code, _, err = orch({ "start", "sleep", "--", "x", "y" })
    assert.are.equal(0, code, err)
    wait("sleep:0", "online", 2)
    assert.matches(" x y$", exec("sleep"))
    -- --name renames: the same process (id), counted as a restart
    local id = by_name()["sleep:0"].id
    code, _, err = orch({ "restart", tostring(id), "--name=nap" })
    assert.are.equal(0, code, err)
    wait("nap:0", "online", 3)
    assert.are.equal(id, by_name()["nap:0"].id)
    assert.is_nil(by_name()["sleep:0"])
    code, _, err = orch({ "start", tostring(id), "--name", "doze" })
    assert.are.equal(0, code, err)
    wait("doze:0", "online", 4)
    assert.matches(" x y$", exec("doze")) -- the other options stay
    -- a name that another app has is refused, nothing changes
    assert.are.equal(0, (orch({ "start", "sleep.sh", "--name", "other" })))
    code, _, err = orch({ "restart", "doze", "--name", "other" })
    assert.are.equal(1, code)
    assert.matches("an app named 'other' exists", err, 1, true)
    wait("doze:0", "online", 4)
  end)

  it("refuses options on restart for an app of a process file, saying where to set them", function()
    local script = sleeper()
    H.write(dir .. "/apps.json", string.format([[{ "apps": [ { "name": "a", "script": %q } ] }]], script))
    assert.are.equal(0, (orch({ "start", "apps.json" })))
    wait("a:0", "online", 0)
    local code, _, err = orch({ "restart", "a", "--kill-timeout", "500" })
    assert.are.equal(1, code)
    assert.matches("app 'a' comes from " .. (dir .. "/apps.json"):gsub("%p", "%%%0")
      .. ": set kill_timeout there and orch restart", err)
    wait("a:0", "online", 0)
  end)

  it("start SCRIPT -f while its app runs starts a second app of that name (PM2's names are not unique)", function()
    sleeper()
    assert.are.equal(0, (orch({ "start", "sleep.sh", "--name", "nap" })))
    local code, _, err = orch({ "start", "sleep.sh", "--name", "nap", "-f", "-i", "2", "--", "x" })
    assert.are.equal(0, code, err)
    local function naps(status)
      local n = 0
      for _, p in ipairs(assert(json({ "list" }))) do
        if p.name == "nap" and p.status == status then n = n + 1 end
      end
      return n
    end
    H.wait_until(function() return naps("online") == 3 end, 30000, "3 processes named nap online")
    -- the first app runs on as it was
    local first = assert(json({ "describe", "0" }))[1]
    assert.are.equal("online", first.status)
    assert.are.same({}, first.args)
    -- an id is one process, the name all of them
    assert.are.equal(0, (orch({ "stop", "0" })))
    assert.are.equal(1, naps("stopped"))
    assert.are.equal(0, (orch({ "stop", "nap" })))
    assert.are.equal(3, naps("stopped"))
    assert.are.equal(0, (orch({ "restart", "nap" })))
    H.wait_until(function() return naps("online") == 3 end, 30000, "3 processes named nap online again")
    -- both apps survive a save, kill and resurrect
    assert.are.equal(0, (orch({ "save" })))
    assert.are.equal(0, (orch({ "kill" })))
    code, _, err = orch({ "resurrect" })
    assert.are.equal(0, code, err)
    H.wait_until(function() return naps("online") == 3 end, 30000, "3 processes named nap resurrected")
    local args = {}
    for _, d in ipairs(assert(json({ "describe", "nap" }))) do args[#args + 1] = table.concat(d.args, " ") end
    table.sort(args)
    assert.are.same({ "", "x", "x" }, args)
    -- delete by name deletes every app of that name
    assert.are.equal(0, (orch({ "delete", "nap" })))
    assert.are.same({}, assert(json({ "list" })))
  end)
end)
