-- Chaos: the daemon SIGKILLed at a random moment of a start of 50 apps, of
-- a cluster reload and of log rotation under a fast writer. After each
-- kill a new daemon (started by the next command) must leave nothing
-- unknown: every process carrying the home's environment marker belongs to
-- a process `orch list` shows, no app runs twice, and every app's desired
-- state is what the clients were told.
-- Short in CI; long by hand: ORCH_CHAOS_ROUNDS=200 (per scenario), and
-- ORCH_CHAOS_SEED=N to replay a failure (the seed is in every failure).
local H = require("helpers")
local uv = require("luv")

local ROUNDS = tonumber(os.getenv("ORCH_CHAOS_ROUNDS") or "") or 2
local SEED = tonumber(os.getenv("ORCH_CHAOS_SEED") or "") or (os.time() % 1000000) * 1000 + uv.os_getpid() % 1000
math.randomseed(SEED)

describe("orch SIGKILLed at random moments (seed " .. SEED .. ", ORCH_CHAOS_SEED to replay)", function()
  local dir, home
  H.each_test(function(d, h) dir, home = d, h end)

  -- pid -> parent pid, and pid -> environment, of every live process
  local function processes()
    local ppid, env = {}, {}
    for entry in uv.fs_scandir_next, uv.fs_scandir("/proc") do
      local pid = tonumber(entry)
      local stat = pid and H.read("/proc/" .. pid .. "/stat")
      local state, parent = (stat or ""):match("^%d+ %b() (%a) (%d+)")
      if state and state ~= "Z" and state ~= "X" then
        ppid[pid] = tonumber(parent)
        env[pid] = "\0" .. (H.read("/proc/" .. pid .. "/environ") or "")
      end
    end
    return ppid, env
  end

  -- Whether env is that of a process the orch of home spawned (or one of
  -- its descendants): orch's marker names the home; ORCH_ID with the
  -- ORCH_HOME the CLI passed on is the same for an orch that has no marker.
  local function marked(env)
    local id, home_var = false, false
    for entry in env:gmatch("[^%z]+") do
      local mark = entry:match("^ORCH_MARK=%d+@(.*)$")
      if mark then return mark == home end
      if entry:match("^ORCH_ID=") then id = true end
      if entry == "ORCH_HOME=" .. home then home_var = true end
    end
    return id and home_var
  end

  -- Marked processes outside the trees of the processes `list` shows.
  local function unsupervised(list)
    local ppid, env = processes()
    local supervised = {}
    for _, p in ipairs(list) do
      if type(p.pid) == "number" then supervised[p.pid] = true end
    end
    local out = {}
    for pid, e in pairs(env) do
      if marked(e) then
        local q, seen = pid, 0
        while q and q > 1 and not supervised[q] and seen < 64 do q, seen = ppid[q], seen + 1 end
        if not (q and supervised[q]) then out[#out + 1] = pid end
      end
    end
    table.sort(out)
    return out
  end

  local function daemon_pid()
    local pid = tonumber(H.read(home .. "/daemon.pid") or "")
    assert(pid and H.alive(pid), "no daemon running for " .. home)
    return pid
  end

  -- Runs the CLI with args, SIGKILLs the daemon after a random delay of at
  -- most max_ms, and waits for the CLI. Returns whether it was answered OK.
  local function kill_during(args, max_ms, round)
    local daemon = daemon_pid()
    local o = H.orch(args, { home = home, cwd = dir })
    local delay = math.random(0, max_ms)
    uv.sleep(delay) -- the chaos itself, not a synchronisation
    uv.kill(daemon, "sigkill")
    H.wait_until(function() return not H.alive(daemon) end, 10000, "the daemon to die")
    o:wait_exit(60000)
    return o.code == 0, string.format("round %d, seed %d: killed %d ms into 'orch %s' (its exit %s)",
      round, SEED, delay, table.concat(args, " "), tostring(o.code))
  end

  -- Starts a new daemon (its first command), waits until it has dealt with
  -- what the dead one left and its processes are up, and checks that no
  -- marked process is unsupervised and no process runs twice. Returns the
  -- processes by app name.
  local function recovered(what)
    local list, left
    H.wait_until(function()
      local pong = H.json(home, { "ping" })
      if not (pong and not pong.recovering) then return false end
      list = H.json(home, { "list" })
      if type(list) ~= "table" then return false end
      for _, p in ipairs(list) do
        if p.status ~= "online" and p.status ~= "stopped" then return false end
      end
      left = unsupervised(list)
      return #left == 0
    end, 30000, function()
      return string.format("%s: a settled list and no unsupervised process; unsupervised pids: %s; list: %s",
        what, table.concat(left or {}, " "), require("cjson").encode(list or {}))
    end)
    local by_name, seen = {}, {}
    for _, p in ipairs(list) do
      local key = p.name .. ":" .. p.instance
      assert.is_nil(seen[key], what .. ": " .. key .. " listed twice")
      seen[key] = true
      by_name[p.name] = by_name[p.name] or {}
      table.insert(by_name[p.name], p)
    end
    return by_name
  end

  local function expect_app(by_name, name, status, n, what)
    local procs = by_name[name]
    assert(procs, what .. ": app " .. name .. " is gone")
    assert.are.equal(n, #procs, what .. ": instances of " .. name)
    for _, p in ipairs(procs) do assert.are.equal(status, p.status, what .. ": " .. name .. ":" .. p.instance) end
  end

  -- An app that was running and one that was stopped before the chaos.
  local function bystanders()
    H.started(dir, home, [[
      { name = "keep", script = "sleep", args = { "1000" }, instances = 2 },
      { name = "off", script = "sleep", args = { "1000" } },
    ]])
    assert.are.equal(0, (H.orch_sync({ "stop", "off" }, { home = home })))
  end

  it("leaves nothing unknown when killed during a start of 50 apps", function()
    local apps = {}
    for i = 1, 50 do
      apps[#apps + 1] = string.format('{ name = "a%02d", script = "sleep", args = { "1000" } },', i)
    end
    local file = H.write(dir .. "/fifty.config.lua", "return { apps = {\n" .. table.concat(apps, "\n") .. "\n} }\n")
    for round = 1, ROUNDS do
      bystanders()
      local ok, what = kill_during({ "start", file }, 300, round)
      local by_name = recovered(what)
      expect_app(by_name, "keep", "online", 2, what)
      expect_app(by_name, "off", "stopped", 1, what)
      local present = 0
      for i = 1, 50 do
        local name = string.format("a%02d", i)
        if ok or by_name[name] then
          expect_app(by_name, name, "online", 1, what)
          present = present + 1
        end
      end
      assert(present == 0 or present == 50 or not ok, what)
      assert.are.equal(0, (H.orch_sync({ "delete", "all" }, { home = home })))
    end
  end)

  it("leaves nothing unknown when killed during a cluster reload", function()
    local port = H.free_port()
    H.ecosystem(dir, string.format([[
      { name = "web", script = %q, exec_mode = "cluster", instances = 4, min_uptime = 0,
        env = { PORT = "%d" } },]], H.root .. "/spec/fixtures/apps/cluster_lua.lua", port), "web.config.lua")
    for round = 1, ROUNDS do
      bystanders()
      local res, code, err = H.json(home, { "start", dir .. "/web.config.lua" }, { cwd = dir })
      assert.are.equal(0, code, err)
      assert.are.equal(4, #res.processes)
      H.wait_until(function()
        local list = H.json(home, { "list" }) or {}
        local n = 0
        for _, p in ipairs(list) do
          if p.name == "web" and p.status == "online" then n = n + 1 end
        end
        return n == 4
      end, 30000, "4 workers online")
      local _, what = kill_during({ "reload", "web" }, 800, round)
      local by_name = recovered(what)
      expect_app(by_name, "keep", "online", 2, what)
      expect_app(by_name, "off", "stopped", 1, what)
      expect_app(by_name, "web", "online", 4, what)
      assert.are.equal(0, (H.orch_sync({ "delete", "all" }, { home = home })))
    end
  end)

  it("leaves nothing unknown when killed during log rotation", function()
    -- 200 lines of 100 bytes every 10 ms: a rotation every few ms at 16K
    H.write(dir .. "/writer.lua", [[
      local uv = require("luv")
      local line = string.rep("x", 99) .. "\n"
      local chunk = string.rep(line, 200)
      local t = uv.new_timer()
      t:start(0, 10, function() io.stdout:write(chunk) io.stdout:flush() end)
      uv.new_signal():start("sigint", function() os.exit(0) end)
    ]])
    H.ecosystem(dir, string.format([[
      { name = "fast", script = %q, max_size = "16K", retain = 3, instances = 2 },]], dir .. "/writer.lua"),
      "fast.config.lua")
    for round = 1, ROUNDS do
      bystanders()
      os.remove(home .. "/logs/fast-out-0.log.1") -- a new one is a rotation of this round
      local _, code, err = H.json(home, { "start", dir .. "/fast.config.lua" }, { cwd = dir })
      assert.are.equal(0, code, err)
      H.wait_until(function() return uv.fs_stat(home .. "/logs/fast-out-0.log.1") end, 30000, function()
        return "a rotation; logs: " .. H.sh("ls -l '" .. home .. "/logs'; tail -c 600 '" .. home .. "/logs/fast-error-0.log'")
      end)
      local _, what = kill_during({ "list" }, 300, round)
      local by_name = recovered(what)
      expect_app(by_name, "keep", "online", 2, what)
      expect_app(by_name, "off", "stopped", 1, what)
      expect_app(by_name, "fast", "online", 2, what)
      assert.are.equal(0, (H.orch_sync({ "delete", "all" }, { home = home })))
    end
  end)
end)
