-- The event stream: every transition of a real process as a record, with
-- the cause of each restart; `orch events` (the subscribe request) follows
-- it; a subscriber that does not read is dropped without slowing anything.
local H = require("helpers")
local uv = require("luv")
local cjson = require("cjson")

describe("orch events", function()
  local dir, home
  H.each_test(function(d, h) dir, home = d, h end)

  -- a refused connection is an EPIPE for the spec's writes
  local pipes = H.closed_after_each()

  -- The records an `orch events --json` has printed so far.
  local function records(o)
    local out = {}
    for line in o.out:gmatch("([^\n]*)\n") do
      local ok, r = pcall(cjson.decode, line)
      if ok and type(r) == "table" then out[#out + 1] = r end
    end
    return out
  end

  local function find(o, pred)
    for _, r in ipairs(records(o)) do
      if pred(r) then return r end
    end
  end

  local function stop(o)
    if not o.code then uv.kill(o.pid, "sigint") end
    H.wait_until(function() return o.code ~= nil end, 20000, "orch events to end")
  end

  it("shows a crash's exit with its code and the restart with its cause, then follows live", function()
    H.started(dir, home, [[
      { name = "crash", script = "sh", args = { "-c", "sleep 0.2; exit 3" }, restart_delay = 300, max_restarts = 3 },
    ]])
    local ev = H.orch({ "events", "crash", "--json" }, { home = home, cwd = dir })
    local restart = H.wait_until(function()
      return find(ev, function(r) return r.kind == "restart" and r.restarts == 2 end)
    end, 20000, function() return "a second restart in: " .. ev.out .. ev.err end)
    assert.are.equal("exit", restart.cause)
    assert.are.equal(3, restart.code)
    assert.are.equal(300, restart.delay)
    assert.are.equal("crash", restart.app)
    assert.are.equal(0, restart.instance)
    local exit = find(ev, function(r) return r.kind == "exit" end)
    assert.are.equal(3, exit.code)
    assert.is_true(exit.pid > 0)
    assert.is_true(exit.uptime_ms >= 150, "uptime " .. exit.uptime_ms)
    -- records come in order, numbered, stamped
    local list = records(ev)
    for i = 2, #list do assert.is_true(list[i].seq > list[i - 1].seq) end
    assert.is_true(math.abs(list[1].time / 1000 - os.time()) < 120)
    -- the errored one at the end: max_restarts unstable exits
    H.wait_until(function() return find(ev, function(r) return r.kind == "errored" end) end, 20000,
      function() return "errored in: " .. ev.out end)
    -- Ctrl-C ends it cleanly
    stop(ev)
    assert.are.equal(0, ev.code, ev.err)
    assert.are.equal("", ev.err)
    -- as text, since a time: the same events
    local text = H.orch({ "events", "--since", "10m" }, { home = home, cwd = dir })
    H.wait_until(function() return text.out:find("errored") end, 20000, function() return "errored in: " .. text.out end)
    stop(text)
    assert.matches("crash:0 %(pid %d+%) exited with code 3 after", text.out)
    assert.matches("crash:0 restarting in 300 ms %(restart 1, cause: exit, exit code 3%)", text.out)
  end)

  it("names each restart's cause: a command, memory, a health check, cron, a watched file", function()
    local watched = dir .. "/w"
    assert(uv.fs_mkdir(watched, 448))
    H.started(dir, home, string.format([[
      { name = "cmd", script = "sleep", args = { "1000" } },
      { name = "mem", script = "sleep", args = { "1000" }, max_memory_restart = "1K" },
      { name = "hc", script = "sleep", args = { "1000" },
        health = { exec = "false", interval = 100, retries = 2, start_period = 0 } },
      { name = "cr", script = "sleep", args = { "1000" }, cron_restart = "* * * * * *" },
      { name = "wt", script = "sleep", args = { "1000" }, cwd = %q, watch = { %q } },
    ]], watched, watched))
    local ev = H.orch({ "events", "--json" }, { home = home, cwd = dir })
    H.wait_until(function() return find(ev, function(r) return r.app == "wt" and r.kind == "online" end) end,
      20000, "wt online")
    assert.are.equal(0, (H.orch_sync({ "restart", "cmd" }, { home = home, cwd = dir })))
    local want = { cmd = "command", mem = "memory", hc = "health", cr = "cron", wt = "watch" }
    local written = 0
    H.wait_until(function()
      -- a change, then quiet for longer than watch_delay (changes are debounced)
      if uv.now() - written > 2000 then
        H.write(watched .. "/f.txt", tostring(uv.hrtime()))
        written = uv.now()
      end
      for app, cause in pairs(want) do
        if not find(ev, function(r) return r.kind == "restart" and r.app == app and r.cause == cause end) then
          return false
        end
      end
      return true
    end, 30000, function() return "every cause in: " .. ev.out end)
    local mem = find(ev, function(r) return r.kind == "restart" and r.app == "mem" end)
    assert.matches("over max_memory_restart", mem.reason)
    local hc = find(ev, function(r) return r.kind == "restart" and r.app == "hc" end)
    assert.matches("health check", hc.reason)
    assert.is_truthy(find(ev, function(r) return r.kind == "health" and r.app == "hc" and r.healthy == false end))
    stop(ev)
  end)

  it("records every kind the issue names: start, online, a stop, each reload step, a scale, a config change", function()
    local eco = H.ecosystem(dir, [[ { name = "web", script = "sleep", args = { "1000" }, env = { V = "1" } }, ]])
    assert.are.equal(0, (H.orch_sync({ "apply", eco }, { home = home, cwd = dir })))
    local ev = H.orch({ "events", "--json", "--since", "10m" }, { home = home, cwd = dir })
    local function has(pred, what)
      return H.wait_until(function() return find(ev, pred) end, 20000,
        function() return what .. " in:\n" .. ev.out .. ev.err end)
    end
    has(function(r) return r.kind == "config" and r.app == "web" and r.change == "started" and r.source == eco end,
      "config started")
    has(function(r) return r.kind == "start" and r.app == "web" and r.pid end, "start")
    has(function(r) return r.kind == "online" and r.app == "web" end, "online")
    assert.are.equal(0, (H.orch_sync({ "scale", "web", "2" }, { home = home, cwd = dir })))
    local scale = has(function(r) return r.kind == "scale" end, "scale")
    assert.are.same({ "web", 1, 2 }, { scale.app, scale.from, scale.to })
    assert.is_nil(scale.id)
    assert.are.equal(0, (H.orch_sync({ "reload", "web" }, { home = home, cwd = dir })))
    for _, step in ipairs({ "begin", "switch", "done" }) do
      has(function(r) return r.kind == "reload" and r.step == step end, "reload " .. step)
    end
    local begin = find(ev, function(r) return r.kind == "reload" and r.step == "begin" end)
    assert.is_number(begin.new_id)
    assert.is_truthy(find(ev, function(r) return r.kind == "restart" and r.cause == "reload" end))
    -- the file changed: applying it again restarts the app
    H.ecosystem(dir, [[ { name = "web", script = "sleep", args = { "1000" }, env = { V = "2" } }, ]])
    assert.are.equal(0, (H.orch_sync({ "apply", eco }, { home = home, cwd = dir })))
    has(function(r) return r.kind == "config" and r.change == "restarted" end, "config restarted")
    assert.are.equal(0, (H.orch_sync({ "stop", "web" }, { home = home, cwd = dir })))
    local stopping = has(function(r) return r.kind == "stopping" end, "stopping")
    assert.are.same({ "SIGINT", 1600 }, { stopping.signal, stopping.kill_timeout })
    has(function(r) return r.kind == "stopped" and r.app == "web" end, "stopped")
    local exit = has(function(r) return r.kind == "exit" and r.signal end, "an exit by a signal")
    assert.are.equal("SIGINT", exit.signal)
    stop(ev)
  end)

  it("drops a subscriber that never reads; ping answers at once and other subscribers keep receiving", function()
    local body = {}
    for i = 1, 4 do
      body[i] = string.format('{ name = "flap%d", script = "sh", args = { "-c", "exit 1" }, restart_delay = 0, '
        .. 'min_uptime = 0, max_restarts = 1000000 },', i)
    end
    H.started(dir, home, table.concat(body, "\n"))
    -- a raw subscriber that never reads, with a small bound
    local sub = uv.new_pipe(false)
    pipes[#pipes + 1] = sub
    local connected
    sub:connect(home .. "/orch.sock", function(err)
      assert(not err, err)
      sub:write(cjson.encode({ id = 9, cmd = "subscribe", args = { max_queued = 4096 } }) .. "\n")
      connected = true
    end)
    H.wait_until(function() return connected end, 10000, "the subscriber to connect")
    local reader = H.orch({ "events", "--json" }, { home = home, cwd = dir })
    local log = home .. "/daemon.log"
    local worst = 0
    H.wait_until(function()
      local t0 = uv.hrtime()
      assert.are.equal(0, (H.orch_sync({ "ping" }, { home = home })))
      worst = math.max(worst, (uv.hrtime() - t0) / 1e6)
      return (H.read(log) or ""):find("event subscriber %(pid %d+%) dropped")
    end, 60000, "the silent subscriber to be dropped")
    -- ping is a CLI start plus one request: seconds only if the loop stalled
    assert.is_true(worst < 3000, "ping took " .. worst .. " ms")
    -- the reader goes on receiving
    local n = #records(reader)
    H.wait_until(function() return #records(reader) > n + 20 end, 20000, "more events for the reader")
    -- the dropped one finds its events, then the last line, then EOF
    local data, eof = "", false
    sub:read_start(function(_, chunk)
      if chunk then data = data .. chunk else eof = true end
    end)
    H.wait_until(function() return eof end, 30000, "EOF on the dropped subscriber")
    local last = data:match("([^\n]+)\n$")
    local msg = cjson.decode(last)
    assert.are.equal(9, msg.id)
    assert.is_false(msg.ok)
    assert.are.equal("EDROPPED", msg.error.code)
    local first = cjson.decode(data:match("^[^\n]*"))
    assert.are.same({ id = 9, ok = true, result = { subscribed = true } }, first)
    assert.matches('{"id":9,"event":{', data, 1, true)
    stop(reader)
  end)

  it("shows the last restarts with their causes and the last exit in describe, and orch's lines in logs --events",
    function()
    H.started(dir, home, [[
      { name = "crash", script = "sh", args = { "-c", "echo hello; sleep 0.2; exit 3" }, restart_delay = 100,
        max_restarts = 3 },
    ]])
    H.wait_until(function() return H.json(home, { "list" })[1].status == "errored" end, 20000, "errored")
    local d = H.json(home, { "describe", "crash" })[1]
    assert.are.equal(2, #d.last_restarts)
    for _, r in ipairs(d.last_restarts) do
      assert.are.same({ "exit", 3, 100 }, { r.cause, r.code, r.delay })
    end
    assert.are.equal(3, d.last_exit.code)
    local code, out = H.orch_sync({ "describe", "crash" }, { home = home })
    assert.are.equal(0, code)
    assert.matches("last restarts%s+%d+%-%d+%-%d+ [%d:.]+  after exit code 3 %(automatic, in 100 ms%)\n%s+%d+%-", out)
    assert.matches("last exit%s+exit code 3 after", out)
    -- logs --events: the app's lines and orch's, then (--nostream) the end
    local lcode, lout, lerr = H.orch_sync({ "logs", "crash", "--events", "--nostream" }, { home = home })
    assert.are.equal(0, lcode, lerr)
    assert.matches("crash:0 | hello", lout, 1, true)
    assert.matches("crash:0 | orch: %(pid %d+%) exited with code 3 after", lout)
    assert.matches("crash:0 | orch: restarting in 100 ms (restart 1, cause: exit, exit code 3)", lout, 1, true)
    assert.matches("crash:0 | orch: errored: ", lout, 1, true)
  end)

  it("marks in orch list a process failing its health check", function()
    H.started(dir, home, [[
      { name = "sick", script = "sleep", args = { "1000" }, health = { exec = "false", interval = 100, retries = 0 } },
      { name = "fine", script = "sleep", args = { "1000" }, health = { exec = "true", interval = 100 } },
      { name = "plain", script = "sleep", args = { "1000" } },
    ]])
    local by
    H.wait_until(function()
      by = {}
      for _, p in ipairs(H.json(home, { "list" })) do by[p.name] = p end
      return by.sick.health == "unhealthy" and by.fine.health == "healthy"
    end, 20000, "the checks to settle")
    assert.is_nil(by.plain.health)
    local code, out = H.orch_sync({ "list" }, { home = home })
    assert.are.equal(0, code)
    assert.matches("sick%s+fork%s+%d+%s+online %(unhealthy%)", out)
    assert.matches("fine%s+fork%s+%d+%s+online%s", out)
  end)

  it("refuses a bad argument and a target that names nothing", function()
    local code, _, err = H.orch_sync({ "events", "--since", "soon" }, { home = home, cwd = dir })
    assert.are.equal(2, code)
    assert.matches("orch events: option '%-%-since'", err)
    code, _, err = H.orch_sync({ "events", "nope" }, { home = home, cwd = dir, timeout = 10000 })
    assert.are.equal(1, code)
    assert.matches("nope", err)
  end)
end)
