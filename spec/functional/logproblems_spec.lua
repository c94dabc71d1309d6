-- The problems of log files as events: a full disk, a failed rotation, a
-- file that cannot be opened each make a `log_error` record (and a full
-- disk's end a `log_resumed` one) in `orch events`, /events and /metrics,
-- rate-limited; the daemon goes on answering meanwhile.
local H = require("helpers")
local C = require("httpclient")
local uv = require("luv")
local cjson = require("cjson")

describe("log problems as events", function()
  local dir, home
  H.each_test(function(d, h) dir, home = d, h end)

  -- Starts the daemon with its HTTP endpoint; the port.
  local function daemon()
    local port = H.free_port()
    local r, code, err = H.json(home, { "ping" }, { env = { ORCH_HTTP = "127.0.0.1:" .. port } })
    assert(code == 0, err)
    assert(r.http, "no http endpoint")
    return port
  end

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

  local function count(o, pred)
    local n = 0
    for _, r in ipairs(records(o)) do
      if pred(r) then n = n + 1 end
    end
    return n
  end

  local function stop(o)
    if not o.code then uv.kill(o.pid, "sigint") end
    H.wait_until(function() return o.code ~= nil end, 20000, "orch events to end")
  end

  -- ten lines every 10 ms: a tmpfs page (4 KiB) fills in some 0.1 s
  local ticker = "'i=0; while true; do for j in 0 1 2 3 4 5 6 7 8 9; do i=$((i+1)); echo \"tick $i\"; done; "
    .. "sleep 0.01; done'"

  it("a full disk: orch events and /events show it, ping answers, and once there is space logging resumes",
    function()
    local mnt = dir .. "/small"
    assert(uv.fs_mkdir(mnt, tonumber("755", 8)))
    if H.sh("mount -t tmpfs -o size=64k orch-spec '" .. mnt .. "' 2>/dev/null && echo ok") ~= "ok\n" then
      return pending("mounting a tmpfs needs root (CAP_SYS_ADMIN)")
    end
    finally(function()
      if os.getenv("ORCH_SPEC_KEEP") then return end
      H.daemon_cleanup(home)
      H.sh("umount '" .. mnt .. "' 2>/dev/null || umount -l '" .. mnt .. "'")
    end)
    local port = daemon()
    local log = mnt .. "/app.log"
    H.started(dir, home, string.format("{ name = 'app', script = 'sh', args = { '-c', %s }, out_file = %q },",
      ticker, log))
    H.wait_until(function() return #H.ticks(H.read(log) or "") > 0 end, 10000, "a first tick")
    local ev = H.orch({ "events", "--json", "--since", "10m" }, { home = home })
    local sse = C.connect(port)
    sse:send("GET /events?app=app HTTP/1.1\r\n\r\n")
    -- the rest of the file system taken (head stops at ENOSPC)
    H.sh("head -c 1048576 /dev/zero > '" .. mnt .. "/filler' 2>/dev/null")
    local full = H.wait_until(function()
      return find(ev, function(r) return r.kind == "log_error" end)
    end, 20000, function() return "a log_error record in:\n" .. ev.out .. ev.err end)
    assert.are.same({ "app", 0, 0, "no_space", log, "ENOSPC", 1 },
      { full.app, full.id, full.instance, full.problem, full.path, full.error, full.count })
    assert.is_true(full.pid > 0)
    -- the daemon answers meanwhile
    assert.are.equal(0, (H.orch_sync({ "ping" }, { home = home })))
    H.wait_until(function() return sse.buf:find('"kind":"log_error"', 1, true) end, 10000,
      function() return "log_error on /events; got:\n" .. sse.buf end)
    sse:close()
    assert.matches('orch_log_problems_total{app="app",problem="no_space"} 1\n', C.get(port, "/metrics").body, 1, true)
    -- and as text
    local t = H.orch({ "events", "app", "--since", "10m" }, { home = home })
    H.wait_until(function() return t.out:find("ENOSPC", 1, true) end, 10000, "the text form")
    stop(t)
    local text = t.out
    assert.matches("app:0 log " .. log:gsub("%p", "%%%0") .. ": ENOSPC %(no space left on device%), writing paused",
      text)
    local ticks = #H.ticks(H.read(log))
    -- space again: writers go on, with every line
    assert(os.remove(mnt .. "/filler"))
    local resumed = H.wait_until(function()
      return find(ev, function(r) return r.kind == "log_resumed" end)
    end, 10000, function() return "a log_resumed record in:\n" .. ev.out end)
    assert.are.same({ "app", log }, { resumed.app, resumed.path })
    assert.is_true(resumed.paused_ms > 0)
    H.wait_until(function() return #H.ticks(H.read(log)) > ticks + 20 end, 10000, "more ticks in the file")
    assert.is_true(H.consecutive(H.ticks(H.read(log))))
    stop(ev)
  end)

  it("a failed rotation: one record, not one per retry, and every retry counted in /metrics", function()
    -- the oldest rotated file cannot be deleted: a directory in the way
    H.sh("mkdir -p '" .. home .. "/logs/app-out.log.2/in-the-way'")
    local port = daemon()
    H.started(dir, home, string.format("{ name = 'app', script = 'sh', args = { '-c', %s }, max_size = 100, retain = 2 },",
      ticker))
    -- a retry a second, reported at most once a second: three of them take some seconds
    H.wait_until(function()
      local n = C.get(port, "/metrics").body:match('orch_log_problems_total{app="app",problem="rotate"} (%d+)\n')
      return n and tonumber(n) >= 3
    end, 20000, "three failed rotations counted")
    local ev = H.orch({ "events", "--json", "--since", "10m" }, { home = home })
    local r = H.wait_until(function()
      return find(ev, function(x) return x.kind == "log_error" end)
    end, 10000, "the record")
    stop(ev)
    assert.are.same({ "app", "rotate", home .. "/logs/app-out.log", "EISDIR", 1 },
      { r.app, r.problem, r.path, r.error, r.count })
    assert.are.equal(1, count(ev, function(x) return x.kind == "log_error" end), ev.out)
    local _, lines = (H.read(home .. "/daemon.log") or ""):gsub("rotation failed", "")
    assert.are.equal(1, lines, "one line in daemon.log")
  end)

  it("a log file that cannot be opened: a record naming it and the error", function()
    local target = dir .. "/adir"
    assert(uv.fs_mkdir(target, tonumber("755", 8)))
    H.started(dir, home, string.format("{ name = 'app', script = 'sleep', args = { '1000' }, out_file = %q },", target))
    local ev = H.orch({ "events", "--json", "--since", "10m" }, { home = home })
    local r = H.wait_until(function()
      return find(ev, function(x) return x.kind == "log_error" end)
    end, 10000, function() return "the record in:\n" .. ev.out end)
    stop(ev)
    assert.are.same({ "app", 0, "open", target, "EISDIR" }, { r.app, r.id, r.problem, r.path, r.error })
    assert.matches("^EISDIR: ", r.message)
  end)
end)
