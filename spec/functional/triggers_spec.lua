-- Restarts from outside the process: memory, cron, watched files.
local H = require("helpers")
local uv = require("luv")

describe("restart triggers", function()
  local dir, home
  H.each_test(function(d, h) dir, home = d, h end)

  local function start(body) return H.started(dir, home, body) end

  local function restarts(name)
    local d = H.json(home, { "describe", name })
    return d and d[1].restarts, d and d[1].pid
  end

  it("restarts a process whose tree grows past max_memory_restart", function()
    H.write(dir .. "/hog.lua", [[
      local uv = require("luv")
      local keep = {}
      -- grow by 8 MiB every 50 ms, up to 200 MiB
      local t = uv.new_timer()
      t:start(0, 50, function()
        if #keep < 25 then keep[#keep + 1] = string.rep(string.char(#keep % 256), 8 * 1024 * 1024) end
      end)
    ]])
    start([[ { name = "hog", script = "hog.lua", max_memory_restart = "40M", min_uptime = 0 }, ]])
    H.wait_until(function() return (restarts("hog") or 0) >= 1 end, 10000, "hog to be restarted")
    assert.matches("hog:0: memory %d+ bytes over max_memory_restart 41943040, restarting",
      H.read(home .. "/daemon.log"))
  end)

  it("restarts on a cron schedule", function()
    local res = start([[ { name = "tick", script = "sleep", args = { "1000" }, cron_restart = "* * * * * *" }, ]])
    local first = res.processes[1].pid
    H.wait_until(function()
      local n, pid = restarts("tick")
      return n and n >= 1 and pid ~= first
    end, 5000, "a cron restart")
    assert.matches("tick:0: cron_restart '%* %* %* %* %* %*', restarting", H.read(home .. "/daemon.log"))
  end)

  it("starts a stopped app on its cron schedule, as PM2", function()
    start([[ { name = "tick", script = "sleep", args = { "1000" }, cron_restart = "* * * * * *" }, ]])
    assert.are.equal(0, (H.orch_sync({ "stop", "tick" }, { home = home })))
    H.wait_until(function()
      local d = H.json(home, { "describe", "tick" })
      return d and d[1].status == "online"
    end, 10000, "the cron schedule to start the stopped app")
  end)

  local function jlist_watch(name)
    local _, out = H.orch_sync({ "jlist" }, { home = home })
    for _, p in ipairs(require("cjson").decode(out)) do
      if p.name == name then return p.pm2_env.watch end
    end
  end

  it("stops watching an app that is stopped, until its options are given again (PM2's stop)", function()
    assert(uv.fs_mkdir(dir .. "/src", 493))
    local file = H.ecosystem(dir, [[ { name = "w", script = "sleep", args = { "1000" }, watch = { "src" },
                                      watch_delay = 100 }, ]])
    assert.are.equal(0, (H.orch_sync({ "start", file }, { home = home })))
    assert.are.same({ "src" }, jlist_watch("w")) -- the configured paths, as PM2's pm2_env.watch
    assert.are.equal(0, (H.orch_sync({ "stop", "w" }, { home = home })))
    assert.is_false(jlist_watch("w"))
    assert.are.equal(0, (H.orch_sync({ "start", "w" }, { home = home })))
    assert.is_false(jlist_watch("w"))
    -- a change restarts nothing now
    H.write(dir .. "/src/a.lua", "1")
    local settle = uv.now() + 1500
    H.wait_until(function() return uv.now() >= settle end, 3000)
    assert.are.equal(0, (restarts("w")))
    assert.is_nil((H.read(home .. "/daemon.log") or ""):find("a watched file changed", 1, true))
    -- the file's options again: watched again
    assert.are.equal(0, (H.orch_sync({ "restart", file }, { home = home })))
    assert.are.same({ "src" }, jlist_watch("w"))
    H.write(dir .. "/src/a.lua", "2")
    H.wait_until(function() return (restarts("w") or 0) >= 2 end, 10000, "a restart for the change")
  end)

  it("toggles watching with restart --watch (PM2's), its cwd for an app without watch", function()
    local file = H.ecosystem(dir, [[ { name = "t", script = "sleep", args = { "1000" }, watch_delay = 100 }, ]])
    assert.are.equal(0, (H.orch_sync({ "start", file }, { home = home })))
    assert.is_false(jlist_watch("t"))
    assert.are.equal(0, (H.orch_sync({ "restart", "t", "--watch" }, { home = home })))
    assert.is_true(jlist_watch("t"))
    H.wait_until(function() return restarts("t") == 1 end, 10000, "the restart")
    H.write(dir .. "/code.lua", "1")
    H.wait_until(function() return (restarts("t") or 0) >= 2 end, 10000, "a restart for the change in its cwd")
    assert.are.equal(0, (H.orch_sync({ "restart", "t", "--watch" }, { home = home })))
    assert.is_false(jlist_watch("t"))
    -- an ecosystem file sets watch itself
    local code, _, err = H.orch_sync({ "restart", file, "--watch" }, { home = home })
    assert.are.equal(2, code)
    assert.matches("--watch", err, 1, true)
    assert.is_false(jlist_watch("t"))
  end)

  it("restarts once for a burst of changes under a watched directory, not for ignored files", function()
    assert(uv.fs_mkdir(dir .. "/src", 493))
    assert(uv.fs_mkdir(dir .. "/src/sub", 493))
    start([[ { name = "w", script = "sleep", args = { "1000" }, watch = { "src" }, watch_delay = 300,
               ignore_watch = { "*.tmp" } }, ]])
    -- ignored files change nothing
    H.write(dir .. "/src/scratch.tmp", "x")
    -- a burst of three changes, one of them in a subdirectory
    H.write(dir .. "/src/a.lua", "1")
    H.write(dir .. "/src/sub/b.lua", "2")
    H.write(dir .. "/src/a.lua", "3")
    H.wait_until(function() return (restarts("w") or 0) >= 1 end, 5000, "a restart after the changes")
    -- and no second one once things are quiet
    local settle = uv.now() + 1000
    H.wait_until(function() return uv.now() >= settle end, 2000)
    assert.are.equal(1, (restarts("w")))
    local log = H.read(home .. "/daemon.log")
    local n = 0
    for _ in log:gmatch("a watched file changed") do n = n + 1 end
    assert.are.equal(1, n)
    assert.is_nil(log:find("scratch.tmp", 1, true))
  end)
end)

-- An app watching its own directory (watch = true), which also holds its
-- log files and orch's home: none of those restart it, nor node_modules or
-- .git; a change to its code does.
describe("watch = true", function()
  local dir, home
  H.each_test(function(d, h) dir, home = d, h end)

  local function restarts(name)
    local d = H.json(home, { "describe", name })
    return d and d[1].restarts
  end

  it("never restarts for its own log files, orch's home, node_modules or .git", function()
    assert(uv.fs_mkdir(dir .. "/node_modules", 493))
    assert(uv.fs_mkdir(dir .. "/node_modules/dep", 493))
    assert(uv.fs_mkdir(dir .. "/.git", 493))
    H.write(dir .. "/app.js", "1")
    H.started(dir, home, [[
      { name = "w", script = "sh", watch = true, watch_delay = 100, out_file = "out.log",
        error_file = "logs/err.log", log_file = "all.log", max_size = "1K", retain = 2,
        args = { "-c", "while :; do for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do " ..
          "echo tick $i; echo err $i >&2; done; sleep 0.4; done" } },
    ]])
    -- its logs grow (and rotate) in bursts, quiet for longer than watch_delay in between;
    -- orch's home changes (the daemon's log, state)
    H.wait_until(function() return uv.fs_stat(dir .. "/out.log.1") end, 15000, "out.log to rotate")
    H.write(dir .. "/node_modules/dep/index.js", "x")
    H.write(dir .. "/.git/HEAD", "ref")
    H.write(home .. "/stray", "x")
    -- more than watch_delay later, and past another rotation of its logs
    local seen = #assert(H.read(dir .. "/all.log"))
    H.wait_until(function() return uv.fs_stat(dir .. "/all.log.2") and #(H.read(dir .. "/all.log") or "") ~= seen end, 15000,
      "all.log to rotate twice")
    assert.are.equal(0, restarts("w"), H.read(home .. "/daemon.log"))
    -- its code changes: a restart
    H.write(dir .. "/app.js", "2")
    H.wait_until(function() return (restarts("w") or 0) >= 1 end, 10000, "a restart after app.js changed")
    assert.matches("a watched file changed %(.*app%.js%)", H.read(home .. "/daemon.log"))
  end)
end)

describe("orch start on an ecosystem that is already loaded", function()
  local dir, home
  H.each_test(function(d, h) dir, home = d, h end)

  local function pids()
    local out = {}
    for _, p in ipairs(H.json(home, { "list" })) do out[p.name] = p.pid end
    return out
  end

  it("applies only the differences with orch apply, and nothing from a file with an error", function()
    local file = dir .. "/ecosystem.lua"
    H.write(file, [[
      return { apps = {
        { name = "a", script = "sleep", args = { "1000" } },
        { name = "b", script = "sleep", args = { "1001" }, on_exit = function() end },
        { name = "c", script = "sleep", args = { "1002" } },
      } }
    ]])
    assert.are.equal(0, select(2, H.json(home, { "start", file }, { cwd = dir })))
    local before = pids()
    -- a moves down a line (unchanged), b gets new args, c goes, d comes
    H.write(file, [[
      return { apps = {

        { name = "a", script = "sleep", args = { "1000" } },
        { name = "b", script = "sleep", args = { "1005" }, on_exit = function() end },
        { name = "d", script = "sleep", args = { "1003" } },
      } }
    ]])
    local res, code = H.json(home, { "apply", file }, { cwd = dir })
    assert.are.equal(0, code)
    assert.are.same({ started = { "d" }, restarted = { "b" }, deleted = { "c" }, unchanged = { "a" } }, res.changes)
    local after = pids()
    assert.are.equal(before.a, after.a)
    assert.are_not.equal(before.b, after.b)
    assert.is_nil(after.c)
    assert.is_false(H.alive(before.c))
    assert.is_number(after.d)
    assert.are.same({ "1005" }, H.json(home, { "describe", "b" })[1].args)

    -- an error anywhere in the file: nothing changes
    H.write(file, [[
      return { apps = {
        { name = "a", script = "sleep", args = { "1000" } },
        { name = "e", script = "sleep", instances = "many" },
      } }
    ]])
    local _, code2, err = H.json(home, { "apply", file }, { cwd = dir })
    assert.are.equal(1, code2)
    assert.matches("app 'e': option 'instances'", err)
    assert.are.same(after, pids())
  end)
end)

describe("depends_on", function()
  local dir, home
  H.each_test(function(d, h) dir, home = d, h end)

  it("starts apps in dependency order and stops them in reverse", function()
    -- migrate must complete before web starts; web needs db online
    H.write(dir .. "/migrate.sh", "#!/bin/sh\nsleep 0.3\necho migrated\n", tonumber("755", 8))
    local file = H.write(dir .. "/ecosystem.lua", [[
      return { apps = {
        { name = "web", script = "sleep", args = { "1000" }, depends_on = { db = "online", migrate = "completed" } },
        { name = "db", script = "sleep", args = { "1000" } },
        { name = "migrate", script = "migrate.sh", autorestart = false },
      } }
    ]])
    local res, code = H.json(home, { "start", file }, { cwd = dir })
    assert.are.equal(0, code)
    local status = {}
    for _, p in ipairs(res.processes) do status[p.name] = p.status end
    assert.are.equal("blocked", status.web)
    assert.are.equal("online", status.db)
    H.wait_until(function()
      local d = H.json(home, { "describe", "web" })
      return d and d[1].status == "online"
    end, 5000, "web to start once migrate completed")
    local log = H.read(home .. "/daemon.log")
    assert.matches("web:0 waits for db %(online%)", log)
    -- web started after migrate exited with 0
    local exit_at = log:find("migrate:0 %(pid %d+%) exited with code 0")
    local web_at = log:find("web:0 online")
    assert.is_truthy(exit_at and web_at and exit_at < web_at)

    assert.are.equal(0, (H.orch_sync({ "stop", "all" }, { home = home })))
    log = H.read(home .. "/daemon.log")
    local web_stopped = log:find("web:0 stopped")
    local db_stopped = log:find("db:0 stopped")
    assert.is_truthy(web_stopped and db_stopped and web_stopped < db_stopped, "web must stop before db")
  end)

  it("refuses a dependency cycle, naming it, and starts nothing", function()
    local file = H.write(dir .. "/ecosystem.lua", [[
      return { apps = {
        { name = "a", script = "sleep", args = { "1000" }, depends_on = { "b" } },
        { name = "b", script = "sleep", args = { "1000" }, depends_on = { c = "started" } },
        { name = "c", script = "sleep", args = { "1000" }, depends_on = { a = "healthy" } },
      } }
    ]])
    local code, _, err = H.orch_sync({ "start", file }, { home = home, cwd = dir })
    assert.are.equal(1, code)
    assert.matches("ecosystem%.lua:2: app 'a': option 'depends_on': dependency cycle a %-> b %-> c %-> a", err)
    assert.are.same({}, H.json(home, { "list" }))
  end)
end)
