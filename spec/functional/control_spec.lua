-- The daemon's control socket under misuse: clients that never read, that
-- hold partial lines or idle connections, requests with odd ids and
-- wrong-typed arguments, a client of another uid. The limits themselves are
-- covered with small values in core_spec; here the daemon's defaults.
local H = require("helpers")
local uv = require("luv")
local cjson = require("cjson")

-- A refused connection must be an EPIPE for the spec's writes, not a signal
-- that ends busted.
local sigpipe = uv.new_signal()
sigpipe:start("sigpipe", function() end)
sigpipe:unref()

describe("orch control socket", function()
  local dir, home
  H.each_test(function(d, h) dir, home = d, h end)

  local pipes = {}
  after_each(function()
    for _, p in ipairs(pipes) do
      if not p:is_closing() then p:close() end
    end
    pipes = {}
    uv.run("nowait") -- their close callbacks, before the next test or the exit
  end)

  local function daemon_pid()
    return assert(tonumber(H.read(home .. "/daemon.pid")))
  end

  local function rss_kb(pid)
    return assert(tonumber(H.read("/proc/" .. pid .. "/status"):match("VmRSS:%s*(%d+) kB")))
  end

  -- The daemon's growth stays under bound (kB). Not under ASan: its
  -- quarantine keeps freed memory resident by design.
  local asan = H.read(H.bin):find("__asan_init", 1, true)
  local function assert_grown_less(before, pid, bound)
    local grown = rss_kb(pid) - before
    if not asan then assert.is_true(grown < bound, "the daemon grew by " .. grown .. " kB") end
  end

  -- A client on the spec's loop: c.data collects what it reads; c.written
  -- is set once its first write is done (or failed: c.werr).
  local function client(first)
    local c = { data = "", eof = false }
    local pipe = uv.new_pipe(false)
    pipes[#pipes + 1] = pipe
    c.pipe = pipe
    pipe:connect(home .. "/orch.sock", function(err)
      if err then
        c.err, c.eof = err, true
        return
      end
      c.connected = true
      pipe:read_start(function(_, chunk)
        if chunk then c.data = c.data .. chunk else c.eof = true end
      end)
      if first then
        pipe:write(first, function(werr) c.written, c.werr = true, werr end)
      end
    end)
    return c
  end

  local function lines(c)
    local out = {}
    for l in c.data:gmatch("([^\n]*)\n") do out[#out + 1] = l end
    return out
  end

  -- Sends each line on one connection and returns the raw reply lines.
  local function ask(...)
    local c = client(table.concat({ ... }, "\n") .. "\n")
    local n = select("#", ...)
    H.wait_until(function() return #lines(c) >= n end, 20000, "the replies")
    c.pipe:close()
    return lines(c)
  end

  it("stays bounded in memory behind a client that pipelines requests and reads no reply", function()
    -- describe replies of about 100 kB each: an app with a long argument
    local long = string.rep("a", 50000)
    local _, code, err = H.json(home, { "start", "sh", "--name", "big", "--", "-c", "exec sleep 1000", "x", long })
    assert.are.equal(0, code, err)
    local pid = daemon_pid()
    local before = rss_kb(pid)
    local req = {}
    for i = 1, 2000 do req[i] = string.format('{"id":%d,"cmd":"describe","args":{"target":"big"}}\n', i) end
    local flood = client(table.concat(req))
    H.wait_until(function() return flood.connected end)
    flood.pipe:read_stop()
    -- meanwhile another client is served
    local pong = H.json(home, { "ping" })
    assert.are.equal("daemon", pong.mode)
    assert.are.equal(0, (H.orch_sync({ "ping" }, { home = home })))
    assert_grown_less(before, pid, 64 * 1024)
  end)

  it("stays bounded in memory with many connections that each hold most of a 1 MiB line", function()
    assert.are.equal(0, (H.orch_sync({ "ping" }, { home = home })))
    local pid = daemon_pid()
    local before = rss_kb(pid)
    local part = string.rep("x", 1024 * 1024 - 16)
    local cs = {}
    for i = 1, 150 do cs[i] = client(part) end
    -- every line was taken in by the daemon, or its connection refused
    H.wait_until(function()
      for _, c in ipairs(cs) do if not (c.written or c.eof) then return false end end
      return true
    end, 60000, "the partial lines to be sent")
    local refused = 0
    for _, c in ipairs(cs) do
      if c.eof then
        refused = refused + 1
        assert.are.equal("EBUSY", cjson.decode(lines(c)[1]).error.code)
      end
    end
    assert.are.equal(0, (H.orch_sync({ "ping" }, { home = home })))
    assert_grown_less(before, pid, 64 * 1024)
    assert.is_true(refused > 0, "no connection was refused")
  end)

  it("keeps answering and restarting apps with more idle connections than descriptors", function()
    -- a daemon with 128 descriptors
    local out = H.sh(string.format("ORCH_HOME=%s prlimit --nofile=128:128 %s ping 2>&1", home, H.bin))
    assert.matches("daemon", out)
    local file = H.ecosystem(dir, [[
      { name = "flap", script = "sh", args = { "-c", "sleep 0.2" }, min_uptime = 50, restart_delay = 20,
        max_restarts = 100000 },
    ]])
    local _, code, err = H.json(home, { "start", file }, { cwd = dir })
    assert.are.equal(0, code, err)
    local idle = {}
    for i = 1, 200 do idle[i] = client() end
    H.wait_until(function()
      for _, c in ipairs(idle) do if not (c.connected or c.eof) then return false end end
      return true
    end, 20000, "the idle connections")
    local pong, pcode, perr = H.json(home, { "ping" })
    assert.are.equal(0, pcode, perr)
    assert.are.equal("daemon", pong.mode)
    -- the app goes on restarting: descriptors are left for it
    local first = H.json(home, { "list" })[1].restarts
    H.wait_until(function()
      local p = H.json(home, { "list" })[1]
      assert.are_not.equal("errored", p.status)
      return p.restarts >= first + 3
    end, 20000, "three more restarts")
  end)
end)
