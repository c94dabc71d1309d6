-- The daemon's control socket under misuse: clients that never read, that
-- hold partial lines or idle connections, requests with odd ids and
-- wrong-typed arguments, a client of another uid. The limits themselves are
-- covered with small values in core_spec; here the daemon's defaults.
local H = require("helpers")
local uv = require("luv")
local cjson = require("cjson")

describe("orch control socket", function()
  local dir, home
  H.each_test(function(d, h) dir, home = d, h end)

  -- a refused connection is an EPIPE for the spec's writes
  local pipes = H.closed_after_each()

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

  it("echoes ids exactly, integers up to 2^53 and strings", function()
    assert.are.equal(0, (H.orch_sync({ "ping" }, { home = home })))
    local r = ask('{"id":123456789012345,"cmd":"ping"}', '{"id":9007199254740991,"cmd":"ping"}',
      '{"id":"req-7","cmd":"ping"}', '{"id":-42,"cmd":"nope"}', '{"id":9007199254740993,"cmd":"ping"}')
    assert.matches('^{"id":123456789012345,', r[1])
    assert.matches('^{"id":9007199254740991,', r[2])
    assert.matches('^{"id":"req%-7",', r[3])
    assert.matches('^{"id":%-42,', r[4])
    for i = 1, 3 do assert.is_true(cjson.decode(r[i]).ok) end
    assert.are.equal("ENOCMD", cjson.decode(r[4]).error.code)
    local e = cjson.decode(r[5])
    assert.are.equal(cjson.null, e.id)
    assert.are.equal("EINVAL", e.error.code)
  end)

  it("quotes invalid UTF-8 from a request as U+FFFD in its error message", function()
    assert.are.equal(0, (H.orch_sync({ "ping" }, { home = home })))
    local r = ask('{"id":1,"cmd":"stop","args":{"target":"w\255\254"}}', '{"id":2,"cmd":"st\192op"}')
    for _, line in ipairs(r) do
      assert.are.equal(line, require("orch.util").utf8_clean(line))
    end
    assert.are.equal("no app named 'w\239\191\189\239\191\189'", cjson.decode(r[1]).error.message)
    assert.matches("^unknown command 'st\239\191\189op'", cjson.decode(r[2]).error.message)
  end)

  it("answers every wrong-typed argument of every command with an error, never EINTERNAL", function()
    local _, code, err = H.json(home, { "start", "sleep", "--name", "s", "--", "1000" })
    assert.are.equal(0, code, err)
    local spec = '"spec":{"script":"sleep","args":["1000"],"name":"t"}'
    -- the reviewer's two, answered: an empty `only` is refused, a null is an absent argument
    local r = ask('{"id":1,"cmd":"start","args":{' .. spec .. ',"only":[]}}',
      '{"id":2,"cmd":"start","args":{' .. spec .. ',"cwd":null}}')
    assert.are.same({ code = "EINVAL", message = "argument 'only' must not be an empty list" },
      cjson.decode(r[1]).error)
    assert.is_true(cjson.decode(r[2]).ok, r[2])
    local values = { '1', '1.5', '-1', '0', '""', '"x"', 'true', 'false', 'null', '[]', '{}', '[1]', '["a"]',
                     '{"a":1}', '{"a":"b"}', '"\\u0000"', '1e308', '[[]]', '[{}]', '[null]' }
    local commands = {
      ping = {}, list = {}, save = {}, reopen_logs = {}, describe = { "target" }, logs = { "target" },
      flush = { "target" }, reload = { "target" }, restart = { "target", "update_env", "env" },
      start = { "file", "spec", "target", "env", "cwd", "env_name", "only" }, scale = { "name", "instances" },
      send = { "target", "message" }, eval = { "code" }, complete = { "prefix" }, stop = { "x" },
      delete = { "x" },
    }
    -- options whose extreme values once broke a start half-way or hung the daemon
    local reqs = { '{"cmd":"kill","args":{"bogus":1}}' }
    for i, opt in ipairs({ '"instances":1e308', '"max_size":1e308', '"watch":"\\u0000"', '"restart_delay":1e308',
                           '"kill_timeout":1e308', '"max_memory_restart":1e308' }) do
      reqs[#reqs + 1] = '{"cmd":"start","args":{"spec":{"script":"sleep","args":["1000"],"name":"o' .. i .. '",'
        .. opt .. '}}}'
    end
    for cmd, fields in pairs(commands) do
      reqs[#reqs + 1] = string.format('{"cmd":"%s","args":{"bogus":1}}', cmd)
      for _, f in ipairs(fields) do
        for _, v in ipairs(values) do
          local args = string.format('"%s":%s', f, v)
          if cmd == "start" and f ~= "spec" and f ~= "file" and f ~= "target" then args = spec .. "," .. args end
          if cmd == "scale" and f ~= "name" then args = '"name":"s",' .. args end
          reqs[#reqs + 1] = string.format('{"cmd":"%s","args":{%s}}', cmd, args)
        end
      end
    end
    -- one at a time, on one connection
    local c = client()
    for i, req in ipairs(reqs) do
      c.pipe:write(req .. "\n")
      H.wait_until(function() return #lines(c) >= i end, 20000, function() return "a reply to " .. req end)
      local line = lines(c)[i]
      local reply = cjson.decode(line)
      assert.is_false(not reply.ok and reply.error.code == "EINTERNAL", req .. " => " .. line)
      if i == 1 then assert.are.same({ code = "EINVAL", message = "unknown argument 'bogus'" }, reply.error) end
    end
    assert.are.equal("daemon", H.json(home, { "ping" }).mode)
    assert.are.equal("online", H.json(home, { "describe", "s" })[1].status)
  end)

  it("tells a CLI of another uid that it may not use this orch, whatever the size of its request", function()
    if uv.getuid() ~= 0 then
      pending("needs root, to run the CLI as uid 65534")
      return
    end
    assert.are.equal(0, (H.orch_sync({ "ping" }, { home = home })))
    -- open the way to the socket (root's daemon, socket reachable) so that
    -- only the daemon's own check stands
    assert(uv.fs_chmod(dir, tonumber("711", 8)))
    assert(uv.fs_chmod(home, tonumber("711", 8)))
    assert(uv.fs_chmod(home .. "/orch.sock", tonumber("666", 8)))
    -- a copy of the binary uid 65534 can run, wherever the checkout is
    local bin = dir .. "/orch"
    assert(uv.fs_copyfile(H.bin, bin))
    assert(uv.fs_chmod(bin, tonumber("755", 8)))
    -- the CLI as uid 65534: exit status and stderr
    local function as_nobody(env, ...)
      local out, code, eof = "", nil, false
      local stderr = uv.new_pipe(false)
      pipes[#pipes + 1] = stderr
      env[#env + 1] = "ORCH_HOME=" .. home
      env[#env + 1] = "PATH=/usr/bin:/bin"
      local handle = assert(uv.spawn("setpriv", {
        args = { "--reuid=65534", "--regid=65534", "--clear-groups", bin, ... },
        env = env, cwd = "/", stdio = { nil, nil, stderr },
      }, function(status) code = status end))
      pipes[#pipes + 1] = handle
      stderr:read_start(function(_, chunk) if chunk then out = out .. chunk else eof = true end end)
      H.wait_until(function() return code ~= nil and eof end, 20000, "the CLI to exit")
      return code, out
    end
    local want = "uid 65534 may not use this orch %(owner uid 0%)\n$"
    local code, out = as_nobody({}, "ping")
    assert.are.equal(1, code, out)
    assert.matches("^orch ping: " .. want, out)
    -- a request larger than the socket's buffers: the CLI is still writing
    -- it when the daemon refuses the connection
    local big = {}
    for i = 1, 8 do big[i] = string.format("BIG%d=%s", i, string.rep("b", 100000)) end
    code, out = as_nobody(big, "start", "sleep", "--name", "x", "--", "1")
    assert.are.equal(1, code, out:sub(1, 300))
    assert.matches("^orch start: " .. want, out)
  end)
end)
