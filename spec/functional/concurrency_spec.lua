-- Two commands on one app at once (issue 12): every pair of the commands
-- that change an app, fired together from two connections of their own,
-- leaves no process that `orch list` does not show, every reply comes, and
-- after `orch kill` nothing is left and the daemon exits without a PANIC.
-- A fork app and a cluster app (a reload waits for the worker to listen).
-- ORCH_CONCURRENCY_ROUNDS=N runs every pair N times (a long run by hand);
-- ORCH_CONCURRENCY_SEED replays the delays of a failed run;
-- ORCH_CONCURRENCY_ONLY=PATTERN runs the pairs ("stop + reload") it matches.
local H = require("helpers")
local uv = require("luv")
local cjson = require("cjson")

local apps = H.root .. "/spec/fixtures/apps"
local ROUNDS = tonumber(os.getenv("ORCH_CONCURRENCY_ROUNDS") or "") or 1
local SEED = tonumber(os.getenv("ORCH_CONCURRENCY_SEED") or "") or os.time()
local ONLY = os.getenv("ORCH_CONCURRENCY_ONLY")

local function daemon_log(home)
  return (H.read(home .. "/daemon.log") or ""):sub(-2000)
end

-- Sends one request on a connection of its own, as a separate client
-- would; returns the slot its reply lands in (slot.reply, decoded). The
-- connection is closed once the reply is in (see await).
local function send(home, cmd, args)
  local pipe = uv.new_pipe(false)
  local slot = { cmd = cmd, args = args, pipe = pipe, buf = "" }
  local connected, cerr = false, nil
  pipe:connect(home .. "/orch.sock", function(err)
    connected, cerr = true, err
  end)
  H.wait_until(function() return connected end, 10000, "a connection to the daemon")
  if cerr then
    pipe:close()
    error(string.format("cannot connect to %s/orch.sock: %s; daemon.log ends:\n%s", home, cerr, daemon_log(home)), 2)
  end
  pipe:read_start(function(err, data)
    if err or not data then slot.eof = true return end
    slot.buf = slot.buf .. data
    local line = slot.buf:match("^([^\n]*)\n")
    if line then
      -- the daemon's own errors about the connection (EBUSY...) have no id
      local reply = cjson.decode(line)
      if reply.id == 1 then slot.reply = reply else slot.other = line end
    end
  end)
  pipe:write(cjson.encode({ id = 1, cmd = cmd, args = args or {} }) .. "\n")
  return slot
end

local function await(slot, what, home)
  H.wait_until(function() return slot.reply or slot.eof end, 30000, function()
    return string.format("the reply to %s %s; daemon.log ends:\n%s", what or slot.cmd, cjson.encode(slot.args or {}),
      daemon_log(home))
  end)
  if not slot.pipe:is_closing() then slot.pipe:close() end
  if not slot.reply then
    error(string.format("no reply to %s %s, the connection closed (%s); daemon.log ends:\n%s", what or slot.cmd,
      cjson.encode(slot.args or {}), slot.other or "no line", daemon_log(home)), 2)
  end
  return slot.reply
end

-- The parent of pid, or nil once it is gone.
local function ppid(pid)
  local stat = H.read("/proc/" .. pid .. "/stat")
  return stat and tonumber(stat:match("^%d+ %b() %a (%d+)"))
end

-- The live descendants of pid carrying the marker of the orch of home
-- (ORCH_MARK=<id>@<home>) and app `name`. While the daemon runs, every
-- process it spawned is below it (it is their subreaper), and walking its
-- tree costs far less than reading the environment of every process on the
-- machine (H.marked, after the daemon is gone).
local function marked_below(pid, home, name)
  local found, todo = {}, { pid }
  local marks = { "@" .. home .. "\0", "\0ORCH_APP_NAME=" .. name .. "\0" }
  while #todo > 0 do
    local p = table.remove(todo)
    local tasks = uv.fs_scandir("/proc/" .. p .. "/task") -- nil: gone
    for task in function() return tasks and uv.fs_scandir_next(tasks) end do
      for child in (H.read("/proc/" .. p .. "/task/" .. task .. "/children") or ""):gmatch("%d+") do
        child = tonumber(child)
        todo[#todo + 1] = child
        local env = H.read("/proc/" .. child .. "/environ")
        env = env and "\0" .. env
        local mark = env and env:match("%zORCH_MARK=%d+(@[^%z]*%z)")
        if mark == marks[1] and env:find(marks[2], 1, true) and H.alive(child) then
          found[#found + 1] = child
        end
      end
    end
  end
  return found
end

local function set_of(list)
  local s = {}
  for _, v in ipairs(list) do s[v] = true end
  return s
end

describe("concurrent commands on one app", function()
  local dir, home, slots
  H.each_test(function(d, h) dir, home = d, h end)
  after_each(function()
    for _, slot in ipairs(slots or {}) do
      if not slot.pipe:is_closing() then slot.pipe:close() end
    end
    slots = nil
    uv.run("nowait") -- the close callbacks, while the handles' owner is alive
    -- strays of a failed round outlive the daemon: by pid, from their marker
    H.kill_marked(home)
  end)

  local kinds = {
    fork = function(gen)
      return string.format([[ { name = "ra", script = %q, kill_signal = "SIGTERM", instances = 2,
        min_uptime = 0, env = { GEN = "%d" } }, ]], apps .. "/slow_stop.sh", gen)
    end,
    cluster = function(gen, port)
      return string.format([[ { name = "ra", script = %q, exec_mode = "cluster", instances = 2,
        min_uptime = 0, env = { PORT = "%d", GEN = "%d" } }, ]], apps .. "/cluster_lua.lua", port, gen)
    end,
  }

  local function request(cmd, args)
    local slot = send(home, cmd, args)
    slots[#slots + 1] = slot
    return slot
  end

  local last_round -- what the round before replied, for a failure's message
  local function ok(cmd, args)
    local reply = await(request(cmd, args), nil, home)
    if not reply.ok then
      error(string.format("%s: %s; the round before: %s; daemon.log ends:\n%s", cmd, cjson.encode(reply),
        last_round or "none", (H.read(home .. "/daemon.log") or ""):sub(-1500)), 2)
    end
    return reply.result
  end

  local function procs()
    local out = {}
    for _, p in ipairs(ok("list")) do
      if p.name == "ra" then out[#out + 1] = p end
    end
    return out
  end

  -- Every live process of the app (by the marker in its environment) is
  -- one `orch list` shows or in the tree of one, list shows no process in a
  -- state of its own making and never two of one instance number. A stray
  -- one never goes: waited for, then failed.
  local STATES = set_of({ "launching", "online", "stopping", "stopped", "waiting restart", "blocked", "errored" })
  local daemon
  local function assert_owned(where)
    local last
    H.wait_until(function()
      local listed, instances = {}, {}
      local ps = procs()
      for _, p in ipairs(ps) do
        assert(STATES[p.status], where .. ": orch list shows a process " .. tostring(p.status))
        assert(not instances[p.instance], where .. ": two processes of instance " .. tostring(p.instance)
          .. ": " .. cjson.encode(ps))
        instances[p.instance] = true
        if type(p.pid) == "number" then listed[p.pid] = true end
      end
      local strays = {}
      for _, pid in ipairs(marked_below(daemon, home, "ra")) do
        local up = pid
        while up and up > 1 and not listed[up] do up = ppid(up) end
        if not (up and listed[up]) then strays[#strays + 1] = pid end
      end
      last = strays
      return #strays == 0
    end, 15000, function()
      return string.format("no process of ra outside orch list after %s; unlisted: %s; list: %s", where,
        table.concat(last or {}, " "), cjson.encode(procs()))
    end)
  end

  -- The environment the CLI would send (the apps inherit it).
  local function env(extra)
    local e = { PATH = os.getenv("PATH") }
    for k, v in pairs(extra or {}) do e[k] = v end
    return e
  end

  -- The app as each round starts: registered, 2 instances, all online.
  local eco
  local function baseline()
    if #procs() == 0 then ok("start", { file = eco, cwd = dir, env = env() }) end
    if #procs() ~= 2 then ok("scale", { name = "ra", instances = 2 }) end
    ok("start", { target = "ra" })
    H.wait_until(function()
      local ps = procs()
      if #ps ~= 2 then return false end
      for _, p in ipairs(ps) do
        if p.status ~= "online" then return false end
      end
      return true
    end, 20000, function() return "ra back to 2 online processes: " .. cjson.encode(procs()) end)
  end

  -- Each operation: { name, fire }; fire() starts it and returns the slot
  -- of its reply (nil for a crash, which is no command).
  local gen = 0
  local ops = {
    { "start", function() return request("start", { target = "ra" }) end },
    { "stop", function() return request("stop", { target = "ra" }) end },
    { "restart", function() return request("restart", { target = "ra" }) end },
    { "reload", function() return request("reload", { target = "ra" }) end },
    { "scale up", function() return request("scale", { name = "ra", instances = 3 }) end },
    { "scale down", function() return request("scale", { name = "ra", instances = 1 }) end },
    { "delete", function() return request("delete", { target = "ra" }) end },
    { "config change", function() return request("start", { file = eco, cwd = dir, env = env() }) end },
    { "restart --update-env", function()
      return request("restart", { target = "ra", update_env = true, env = env({ GEN = tostring(gen) }) })
    end },
    { "crash", function()
      -- the app dies by itself: a restart by policy
      local ps = procs()
      local victim = ps[math.random(#ps)]
      if victim and type(victim.pid) == "number" then uv.kill(victim.pid, "sigkill") end
      return nil
    end },
  }

  local verbose = os.getenv("ORCH_CONCURRENCY_VERBOSE")

  -- Fires ops i and j at once (in either order, at times a little apart),
  -- waits for both replies, a ping's meanwhile, and checks the process table.
  local function round(i, j, where)
    local first, second = ops[i][2], ops[j][2]
    if math.random(2) == 2 then first, second = second, first end
    local a = first()
    local gap = math.random(0, 3) * 10
    if gap > 0 then
      local t0 = uv.hrtime()
      H.wait_until(function() return (uv.hrtime() - t0) / 1e6 >= gap end, 1000)
    end
    local b = second()
    -- the daemon answers whatever else it is doing
    local pong = await(request("ping"), where .. ": ping", home)
    assert.is_true(pong.ok)
    -- Replies that say a command did not apply, not that orch failed: the
    -- app was deleted before it; a reload whose replacement crashed.
    local pair = { [ops[i][1]] = true, [ops[j][1]] = true }
    last_round = where
    for _, slot in pairs({ a, b }) do -- a crash has no reply: nil
      local r = await(slot, where .. ": " .. slot.cmd, home)
      last_round = last_round .. "; " .. slot.cmd .. " " .. cjson.encode(slot.args) .. " -> " .. cjson.encode(r)
      local code = not r.ok and r.error.code
      if code and not (code == "ENOTFOUND" and pair.delete) and not (code == "ERELOAD" and pair.crash) then
        error(where .. ": " .. slot.cmd .. " failed: " .. cjson.encode(r))
      end
    end
    assert_owned(where)
  end

  for kind, body in pairs(kinds) do
    it(string.format("leaves no process unsupervised: every pair of commands at once on a %s app", kind), function()
      math.randomseed(SEED)
      slots = {}
      local port = H.free_port()
      local function write(g) eco = H.ecosystem(dir, body(g, port)) end
      write(0)
      local reply = H.json(home, { "ping" })
      assert.is_truthy(reply and reply.pid, "a daemon")
      daemon = reply.pid
      for i = 1, #ops do
        for j = i, #ops do
          local pair = ops[i][1] .. " + " .. ops[j][1]
          for n = 1, (ONLY and not pair:find(ONLY)) and 0 or ROUNDS do
            local t0 = uv.hrtime()
            gen = gen + 1
            baseline()
            write(gen) -- the config change: the file gives the app another env now
            local where = string.format("%s (%s app, round %d, ORCH_CONCURRENCY_SEED=%d)", pair, kind, n, SEED)
            round(i, j, where)
            slots = {}
            if verbose then io.stderr:write(string.format("%s: %.0f ms\n", where, (uv.hrtime() - t0) / 1e6)) end
          end
        end
      end
      -- orch kill: nothing of the app left, a clean exit
      local code, _, err = H.orch_sync({ "kill" }, { home = home })
      assert.are.equal(0, code, err)
      -- (a zombie until its parent, init, reaps it)
      H.wait_until(function() return not H.alive(daemon) end, 10000, "the daemon to exit")
      assert.are.same({}, H.marked(home))
      local log = H.read(home .. "/daemon.log") or ""
      assert.is_nil(log:find("PANIC", 1, true), log)
      assert.is_nil(log:find("command '[^']*' failed"), log)
      assert.is_nil(log:find("operation '[^']*' on [^\n]* failed"), log)
    end)
  end

  -- A command waits only for those before it on the same app: a stop that
  -- takes its kill_timeout holds a restart of that app (which replies once
  -- it ran), never a restart of another app, nor a ping.
  it("never makes a command on one app wait for another app's, and queues one on the same app", function()
    slots = {}
    H.started(dir, home, string.format([[
      { name = "slow", script = "/bin/sh", args = { "-c", "trap '' TERM; exec sleep 1000" },
        kill_signal = "SIGTERM", kill_timeout = 3000 },
      { name = "ra", script = %q, kill_signal = "SIGTERM" }, ]], apps .. "/slow_stop.sh"))
    daemon = H.json(home, { "ping" }).pid
    local stop = request("stop", { target = "slow" })
    H.wait_until(function()
      for _, p in ipairs(ok("list")) do
        if p.name == "slow" then return p.status == "stopping" end
      end
    end, 20000, "slow stopping")
    local again = request("restart", { target = "slow" })
    local other = await(request("restart", { target = "ra" }), "restart ra", home)
    assert.is_true(other.ok, cjson.encode(other))
    assert.is_true(await(request("ping"), "ping", home).ok)
    -- slow's stop (SIGKILL after 3 s) is still going on, its restart waits
    assert.is_nil(stop.reply)
    assert.is_nil(again.reply)
    local stopped = await(stop, "stop slow", home)
    assert.is_true(stopped.ok, cjson.encode(stopped))
    assert.are.equal("stopped", stopped.result[1].status)
    local restarted = await(again, "restart slow", home)
    assert.is_true(restarted.ok, cjson.encode(restarted))
    assert.are.equal("online", restarted.result[1].status)
  end)
end)
