-- orch.core's C primitives, driven through `orch lua` scripts: the control
-- socket (server and client), /proc statistics, the pid-file lock, detached
-- start and the process title. The spec's own clients are luv pipes.
local H = require("helpers")
local uv = require("luv")
local cjson = require("cjson")

-- The test server: one command per line, "CMD ARG".
--   echo ARG   -> ARG          hex ARG  -> "<#ARG> <hex of ARG>"
--   peer       -> "pid uid"    big NAME -> an 8 MiB reply, then "queued NAME <pending>" on stdout
--   quit       -> closes the listener and every connection
--   mark NAME  -> "mark NAME" on stdout     flood NAME -> 1 MiB every 5 ms until a send fails,
--   hold NAME  -> conn:busy(1), "held NAME"                       then "flood NAME <code>" on stdout
--   release NAME -> busy(-1) on the connection held as NAME
-- stdout: "ready", "line <n>" for every line Lua sees, "closed <name> <code of a send after close>".
-- arg: socket path, max_line, other limits of ctl_listen as JSON.
local SERVER = [[
io.stdout:setvbuf("line")
local core = require("orch.core")
local uv = require("luv") -- `orch lua` runs the loop after the chunk only once luv is loaded
local path, max_line = arg[1], tonumber(arg[2])
local opts = arg[3] and require("cjson").decode(arg[3]) or {}
local open, names, seen, held = {}, {}, 0, {}
local srv
opts.max_line = max_line ~= 0 and max_line or nil
opts.on_line = function(conn, line)
    seen = seen + 1
    print("line " .. seen)
    open[conn] = true
    local sp = line:find(" ", 1, true)
    local cmd, rest = sp and line:sub(1, sp - 1) or line, sp and line:sub(sp + 1) or ""
    if cmd == "echo" then
      assert(conn:send(rest .. "\n"))
    elseif cmd == "hex" then
      assert(conn:send(#rest .. " " .. rest:gsub(".", function(c) return string.format("%02x", c:byte()) end) .. "\n"))
    elseif cmd == "peer" then
      local pid, uid = conn:peer()
      assert(conn:send(pid .. " " .. uid .. "\n"))
    elseif cmd == "big" then
      names[conn] = rest
      assert(conn:send(string.rep("x", 8 * 1024 * 1024) .. "\n"))
      print("queued " .. rest .. " " .. conn:pending())
    elseif cmd == "quit" then
      srv:close()
      for c in pairs(open) do c:close() end
    elseif cmd == "mark" then
      print("mark " .. rest)
    elseif cmd == "flood" then
      local t, chunk = uv.new_timer(), string.rep("f", 1024 * 1024) .. "\n"
      t:start(5, 5, function()
        local ok, _, code = conn:send(chunk)
        if not ok then
          t:close()
          print("flood " .. rest .. " " .. code)
        end
      end)
    elseif cmd == "hold" then
      held[rest] = conn
      conn:busy(1)
      print("held " .. rest)
    elseif cmd == "release" then
      held[rest]:busy(-1)
    end
  end
opts.on_close = function(conn)
    open[conn] = nil
    local ok, _, code = conn:send("late\n")
    print("closed " .. (names[conn] or "-") .. " " .. tostring(ok or code))
  end
srv = assert(core.ctl_listen(path, opts))
print("ready")
]]

-- A connection the server dropped must be an EPIPE for the spec's client,
-- not a signal that ends busted.
local sigpipe = uv.new_signal()
sigpipe:start("sigpipe", function() end)
sigpipe:unref()

describe("orch.core", function()
  local dir, pipes

  before_each(function()
    dir = H.tmpdir()
    pipes = {}
  end)

  after_each(function()
    for _, p in ipairs(pipes) do
      if not p:is_closing() then p:close() end
    end
    H.cleanup()
    H.rmdir(dir)
  end)

  local function script(name, body, mode)
    return H.write(dir .. "/" .. name, body, mode)
  end

  local function run(name, body, args)
    local file = script(name, body)
    local argv = { "lua", file }
    for _, a in ipairs(args or {}) do argv[#argv + 1] = a end
    local code, out, err = H.orch_sync(argv, { home = dir .. "/home" })
    assert.are.equal(0, code, err)
    return out, err
  end

  local function start_server(sock, max_line, limits)
    local file = script("server.lua", SERVER)
    local o = H.orch({ "lua", file, sock, tostring(max_line or 0), limits and cjson.encode(limits) or nil },
      { home = dir .. "/home" })
    o:wait_output("ready\n")
    return o
  end

  -- A client of our own, on the spec's loop: collects what it reads
  -- (with deaf, nothing until c.listen()).
  local function client(path, first, deaf)
    local c = { data = "", eof = false }
    local pipe = uv.new_pipe(false)
    pipes[#pipes + 1] = pipe
    c.pipe = pipe
    function c.listen()
      pipe:read_start(function(rerr, chunk)
        if chunk then c.data = c.data .. chunk else c.eof, c.rerr = true, rerr end
      end)
    end
    pipe:connect(path, function(err)
      if err then
        c.err, c.eof = err, true
        return
      end
      c.connected = true
      if not deaf then c.listen() end
      if first then pipe:write(first) end
    end)
    return c
  end

  local function lines(c)
    local out = {}
    for l in c.data:gmatch("([^\n]*)\n") do out[#out + 1] = l end
    return out
  end

  local function wait_line(c, n, what)
    H.wait_until(function() return #lines(c) >= (n or 1) end, 5000, what or "a reply")
    return lines(c)[n or 1]
  end

  describe("control socket", function()
    it("round-trips a request in one script, over a 0600 socket, and reports the peer and the close", function()
      local out = run("roundtrip.lua", [[
        local core = require("orch.core")
        local uv = require("luv")
        local cjson = require("cjson")
        local path = arg[1]
        local r = { closes = 0 }
        local server = assert(core.ctl_listen(path, {
          on_line = function(conn, line)
            r.line = line
            r.peer_pid, r.peer_uid = conn:peer()
            assert(conn:send('{"id":1,"ok":true,"result":"pong"}\n'))
            r.pending = conn:pending()
            r.conn = conn
          end,
          on_close = function(conn)
            r.closes = r.closes + 1
            r.same = conn == r.conn
            r.closed = conn:closed()
            local ok, err, code = conn:send("x")
            r.late = code
          end,
        }))
        r.path = server:path()
        r.mode = uv.fs_stat(path).mode % 512
        local c = assert(core.ctl_connect(path))
        r.fd = c:fd()
        assert(c:send('{"id":1,"cmd":"ping"}\r\n'))
        -- client and server share this process: poll the blocking client
        -- without blocking the loop the server needs
        local t = uv.new_timer()
        local deadline = uv.now() + 5000
        t:start(1, 1, function()
          if not r.reply then
            local line, err, code = c:read_line(0)
            if line then
              r.reply = line
              c:close()
            elseif code ~= "ETIMEDOUT" or uv.now() > deadline then
              r.reply_err = err
              c:close()
            end
          elseif r.closes > 0 or uv.now() > deadline then
            t:close()
            server:close()
            r.conn = nil
            r.unlinked = uv.fs_stat(path) == nil
            r.me, r.uid = core.getpid(), uv.getuid()
            print(cjson.encode(r))
          end
        end)
      ]], { dir .. "/rt.sock" })
      local r = cjson.decode(out)
      assert.are.equal(dir .. "/rt.sock", r.path)
      assert.are.equal(tonumber("600", 8), r.mode)
      assert.are.equal('{"id":1,"cmd":"ping"}', r.line) -- '\r' stripped
      assert.are.equal('{"id":1,"ok":true,"result":"pong"}', r.reply)
      assert.are.equal(r.me, r.peer_pid)
      assert.are.equal(r.uid, r.peer_uid)
      assert.are.equal(0, r.pending)
      assert.are.equal(1, r.closes)
      assert.is_true(r.same)
      assert.is_true(r.closed)
      assert.are.equal("EPIPE", r.late)
      assert.is_true(r.unlinked)
      assert.is_true(r.fd > 2)
    end)

    it("reports connect errors, timeouts and EOF to a client", function()
      local out = run("client_errors.lua", [[
        local core = require("orch.core")
        local uv = require("luv")
        local r = {}
        r[1] = select(3, core.ctl_connect(arg[1] .. "/missing.sock"))
        -- a socket file nobody listens on (renamed away from the pipe that
        -- would remove it on close)
        local s = uv.new_pipe(false); assert(s:bind(arg[1] .. "/bound.sock"))
        assert(uv.fs_rename(arg[1] .. "/bound.sock", arg[1] .. "/stale.sock")); s:close()
        r[2] = select(3, core.ctl_connect(arg[1] .. "/stale.sock"))
        -- a listener that never answers, then one that hangs up
        local l = uv.new_pipe(false); assert(l:bind(arg[1] .. "/mute.sock")); l:listen(8, function() end)
        local c = assert(core.ctl_connect(arg[1] .. "/mute.sock"))
        local t0 = uv.hrtime()
        r[3] = select(3, c:read_line(50))
        r.waited = (uv.hrtime() - t0) / 1e6
        c:close()
        l:close()
        print(table.concat(r, " ", 1, 3) .. " " .. (r.waited >= 45 and "waited" or ("early " .. r.waited)))
      ]], { dir })
      assert.are.equal("ENOENT ECONNREFUSED ETIMEDOUT waited\n", out)
      local eof = run("client_eof.lua", [[
        local core = require("orch.core")
        local server = assert(core.ctl_listen(arg[1], { on_line = function(conn, line)
          conn:send("last words")  -- no newline: a partial line, then EOF
          conn:close()
        end }))
        local c = assert(core.ctl_connect(arg[1]))
        c:send("bye\n")
        local uv = require("luv")
        local t = uv.new_timer()
        local got = {}
        t:start(1, 1, function()
          local line, err, code = c:read_line(0)
          if line then got[#got + 1] = line elseif code ~= "ETIMEDOUT" then
            got[#got + 1] = code
            t:close(); c:close(); server:close()
            print(table.concat(got, "|"))
          end
        end)
      ]], { dir .. "/eof.sock" })
      assert.are.equal("last words|EOF\n", eof)
    end)

    it("answers a line over max_line with E2BIG and closes that connection only", function()
      local sock = dir .. "/big.sock"
      local srv = start_server(sock, 1000)
      -- exactly the limit (and the limit plus "\r") is fine
      local fits = client(sock, "echo " .. string.rep("a", 995) .. "\necho " .. string.rep("b", 995) .. "\r\n")
      assert.are.equal(string.rep("a", 995), wait_line(fits, 1))
      assert.are.equal(string.rep("b", 995), wait_line(fits, 2))
      -- over it, without a newline yet: refused as soon as the limit is passed
      local big = client(sock, string.rep("x", 600))
      H.wait_until(function() return big.connected end)
      big.pipe:write(string.rep("y", 600))
      local line = cjson.decode(wait_line(big, 1, "the E2BIG line"))
      assert.are.same({ code = "E2BIG", message = "request line longer than 1000 bytes" }, line.error)
      assert.are.equal(cjson.null, line.id)
      assert.is_false(line.ok)
      H.wait_until(function() return big.eof end, 5000, "the oversized connection to be closed")
      -- a complete over-long line, too
      local big2 = client(sock, "echo " .. string.rep("z", 1000) .. "\n")
      assert.matches('"code":"E2BIG"', wait_line(big2, 1))
      H.wait_until(function() return big2.eof end)
      -- the other connection still works, and Lua never saw the long lines
      fits.pipe:write("echo still here\n")
      assert.are.equal("still here", wait_line(fits, 3))
      srv:wait_output("line 3\n")
      assert.is_nil(srv.out:match("line 4"))
    end)

    it("passes binary and malformed UTF-8 through untouched", function()
      local sock = dir .. "/bin.sock"
      start_server(sock)
      local bytes = "\255\254\0\1\127\192\128 \237\160\128{\"x\r"
      local c = client(sock, "hex " .. bytes .. "\nhex \n\n\r\n" .. "echo after\n")
      local sent = bytes:sub(1, -2) -- the "\r" before "\n" is stripped
      local want = #sent .. " " .. sent:gsub(".", function(ch) return string.format("%02x", ch:byte()) end)
      assert.are.equal(want, wait_line(c, 1))
      assert.are.equal("0 ", wait_line(c, 2))
      assert.are.equal("after", wait_line(c, 3)) -- empty lines reach Lua as "" (and get no reply here)
    end)

    it("survives a client that disconnects before its reply, and keeps serving", function()
      local sock = dir .. "/rude.sock"
      local srv = start_server(sock)
      -- an 8 MiB reply to a client that never reads: it stays queued
      local rude = client(sock, "big rude\n")
      local pending = tonumber(srv:wait_output("queued rude (%d+)"))
      assert.is_true(pending > 0, "the reply is queued, not written in full: " .. pending)
      rude.pipe:close()
      -- the write fails, the connection closes quietly, a late send says EPIPE
      srv:wait_output("closed rude EPIPE")
      local polite = client(sock, "echo hello\n")
      assert.are.equal("hello", wait_line(polite, 1))
      assert.is_nil(srv.code)
      assert.are.equal("", srv.err)
    end)

    it("serves 200 concurrent connections", function()
      local sock = dir .. "/many.sock"
      local srv = start_server(sock)
      local cs = {}
      for i = 1, 200 do cs[i] = client(sock, "echo " .. i .. "\n") end
      H.wait_until(function()
        for _, c in ipairs(cs) do if #lines(c) < 1 then return false end end
        return true
      end, 10000, "200 replies")
      for i, c in ipairs(cs) do assert.are.equal(tostring(i), lines(c)[1]) end
      for _, c in ipairs(cs) do c.pipe:close() end
      H.wait_until(function()
        local n = 0
        for _ in srv.out:gmatch("closed %- EPIPE") do n = n + 1 end
        return n == 200 or nil
      end, 10000, "200 closes")
      -- every close was reported as such (a send after close fails) and no more
      local n = 0
      for _ in srv.out:gmatch("closed ") do n = n + 1 end
      assert.are.equal(200, n)
    end)

    it("does not spin or die when it runs out of file descriptors", function()
      local sock = dir .. "/emfile.sock"
      local file = script("server_emfile.lua", [[
        local ffi = require("ffi")
        ffi.cdef("struct orch_rlimit { unsigned long cur, max; };" ..
          "int setrlimit(int resource, const struct orch_rlimit *rl);")
        assert(ffi.C.setrlimit(7, ffi.new("struct orch_rlimit", 32, 32)) == 0) -- RLIMIT_NOFILE
      ]] .. SERVER)
      -- no cap on connections below the descriptors: this is about running out
      local srv = H.orch({ "lua", file, sock, "0", '{"max_conns":1000}' }, { home = dir .. "/home" })
      srv:wait_output("ready\n")
      local cs = {}
      for i = 1, 100 do cs[i] = client(sock, "echo " .. i .. "\n") end
      -- each one is either served or dropped; none hangs
      H.wait_until(function()
        for _, c in ipairs(cs) do if #lines(c) < 1 and not c.eof then return false end end
        return true
      end, 10000, "every client to be served or dropped")
      local served, open = 0, {}
      for _, c in ipairs(cs) do
        if #lines(c) == 1 then
          served = served + 1
          open[#open + 1] = c
        end
      end
      assert.is_true(served > 0 and served < 100, "served " .. served)
      -- out of descriptors, newcomers are turned away at once...
      local late = {}
      for i = 1, 20 do late[i] = client(sock, "echo late\n") end
      H.wait_until(function()
        for _, c in ipairs(late) do if not c.eof then return false end end
        return true
      end, 10000, "the newcomers to be turned away")
      -- ...while the connections it holds are served as before
      open[1].pipe:write("echo still\n")
      assert.are.equal("still", wait_line(open[1], 2))
      local stat = H.read("/proc/" .. srv.pid .. "/stat"):match("%) (.*)$")
      local f = {}
      for x in stat:gmatch("%S+") do f[#f + 1] = tonumber(x) or x end
      assert.is_true(f[12] + f[13] < 200, "no busy loop: " .. (f[12] + f[13]) .. " ticks of CPU")
      for _, c in ipairs(cs) do c.pipe:close() end
      -- once the descriptors are back, it serves again
      H.wait_until(function()
        local n = 0
        for _ in srv.out:gmatch("closed ") do n = n + 1 end
        return n == served
      end, 10000, "the served connections to close")
      local after = client(sock, "echo again\n")
      assert.are.equal("again", wait_line(after, 1))
      assert.is_nil(srv.code)
    end)

    it("reads no request from a client that leaves its replies unread, or has max_busy in progress", function()
      local sock = dir .. "/bp.sock"
      local srv = start_server(sock, nil, { max_queued = 65536, max_busy = 2 })
      -- the first request's 8 MiB reply is not read: the next request waits
      local slow = client(sock, "big slow\nmark after\n", true)
      srv:wait_output("queued slow %d+")
      local other = client(sock, "mark barrier\n") -- served meanwhile, in order on stdout
      srv:wait_output("mark barrier\n")
      assert.is_nil(srv.out:match("mark after"))
      slow.listen()
      srv:wait_output("mark after\n")
      -- two requests in progress: the third waits until one is done
      other.pipe:write("hold x\nhold y\nmark third\n")
      srv:wait_output("held y\n")
      client(sock, "mark barrier2\n")
      srv:wait_output("mark barrier2\n")
      assert.is_nil(srv.out:match("mark third"))
      slow.pipe:write("release x\n")
      srv:wait_output("mark third\n")
      assert.is_nil(srv.code)
    end)

    it("closes a connection whose unread replies pass max_queued_hard, and says so", function()
      local sock = dir .. "/hard.sock"
      local srv = start_server(sock, nil, { max_queued_hard = 2 * 1024 * 1024 })
      client(sock, "flood f\n", true)
      assert.are.equal("ENOBUFS", srv:wait_output("flood f (%u+)\n"))
      srv:wait_output("closed %- EPIPE")
      assert.matches("orch: control socket: closing the connection of pid %d+: %d+ reply bytes unread\n", srv.err)
      assert.are.equal("on", wait_line(client(sock, "echo on\n"), 1))
    end)

    it("holds at most max_buffered bytes of unfinished requests across connections", function()
      local sock = dir .. "/buffered.sock"
      local srv = start_server(sock, 100000, { max_buffered = 300000 })
      -- 90 000 bytes without a newline each: about 128 KiB of buffer apiece
      local cs = {}
      for i = 1, 5 do cs[i] = client(sock, string.rep("p", 90000)) end
      local refused
      H.wait_until(function()
        refused = 0
        for _, c in ipairs(cs) do if c.eof then refused = refused + 1 end end
        return refused >= 2
      end, 10000, "connections to be refused")
      for _, c in ipairs(cs) do
        if c.eof then
          local e = cjson.decode(lines(c)[1]).error
          assert.are.equal("EBUSY", e.code)
          assert.matches("bytes of unfinished requests, its limit; try again", e.message)
        end
      end
      -- a request that comes whole needs no buffer
      assert.are.equal("fits", wait_line(client(sock, "echo fits\n"), 1))
      -- the lines held go on once finished (some may still be refused: at
      -- least one fits)
      for _, c in ipairs(cs) do
        if not c.eof then c.pipe:write("\n") end
      end
      srv:wait_output("line 2\n")
      assert.is_nil(srv.code)
    end)

    it("takes a connection past max_conns in place of the least recently active idle one", function()
      local sock = dir .. "/conns.sock"
      local srv = start_server(sock, nil, { max_conns = 3 })
      local cs = {}
      for _, name in ipairs({ "a", "b", "c", "d" }) do
        cs[name] = client(sock, "echo " .. name .. "\n")
        assert.are.equal(name, wait_line(cs[name], 1))
      end
      -- a made room for d
      H.wait_until(function() return cs.a.eof end, 5000, "the oldest connection to be closed")
      assert.are.same({ code = "EBUSY", message = "closed to make room for a new connection (at most 3)" },
        cjson.decode(lines(cs.a)[2]).error)
      cs.b.pipe:write("echo b2\n")
      assert.are.equal("b2", wait_line(cs.b, 2))
      -- with a request in progress on each, a newcomer is refused
      for _, name in ipairs({ "b", "c", "d" }) do
        cs[name].pipe:write("hold " .. name .. "\n")
        srv:wait_output("held " .. name .. "\n")
      end
      local e = client(sock, "echo e\n")
      H.wait_until(function() return e.eof end, 5000, "the newcomer to be refused")
      assert.are.same({ code = "EBUSY", message = "too many connections (3), each with a request in progress" },
        cjson.decode(lines(e)[1]).error)
      -- once b is done, it is the one to go
      cs.b.pipe:write("release b\n")
      srv:wait_output("line 9\n")
      assert.are.equal("f", wait_line(client(sock, "echo f\n"), 1))
      H.wait_until(function() return cs.b.eof end, 5000, "b to make room")
      assert.is_false(cs.c.eof or cs.d.eof)
    end)

    it("closes a connection that sends no complete request within idle_ms, and no other", function()
      local sock = dir .. "/idle.sock"
      local srv = start_server(sock, nil, { idle_ms = 300 })
      local kept = client(sock, "echo kept\n")
      assert.are.equal("kept", wait_line(kept, 1))
      local working = client(sock, "hold w\n")
      srv:wait_output("held w\n")
      local mute = client(sock)
      local partial = client(sock, "echo no newline")
      H.wait_until(function() return mute.eof and partial.eof end, 10000, "the idle connections to be closed")
      for _, c in ipairs({ mute, partial }) do
        assert.are.same({ code = "ETIMEDOUT", message = "no complete request line within 300 ms" },
          cjson.decode(lines(c)[1]).error)
      end
      -- idle since their last request, or with one in progress: still here
      kept.pipe:write("echo still\n")
      assert.are.equal("still", wait_line(kept, 2))
      working.pipe:write("echo working\n")
      assert.are.equal("working", wait_line(working, 1))
      assert.is_nil(srv.code)
    end)

    it("refuses a peer of another uid before Lua sees it", function()
      if uv.getuid() ~= 0 then
        pending("needs root, to run a client as uid 65534")
        return
      end
      -- only this test opens the way to the socket for another uid
      assert(uv.fs_chmod(dir, tonumber("711", 8)))
      local sock = dir .. "/other.sock"
      local srv = start_server(sock)
      local other = script("other.lua", [[
        local c, err, code = require("orch.core").ctl_connect(arg[1])
        if not c then print(code) return end
        c:send("echo hi\n") -- may fail: the refusal can come first
        print(c:read_line(5000))
        print(select(3, c:read_line(5000)))
      ]], tonumber("644", 8))
      local function as_nobody()
        return H.sh(string.format("setpriv --reuid=65534 --regid=65534 --clear-groups %s lua %s %s 2>&1",
          H.bin, other, sock))
      end
      -- 0600: the file system already keeps it out
      assert.are.equal("EACCES\n", as_nobody())
      -- opened up: the daemon's own check stands
      assert(uv.fs_chmod(sock, tonumber("666", 8)))
      local out = as_nobody()
      local reply, after = out:match("^([^\n]*)\n([^\n]*)\n$")
      assert.is_string(reply, out)
      assert.are.same({ id = cjson.null, ok = false,
        error = { code = "EPERM", message = "uid 65534 may not use this orch (owner uid 0)" } }, cjson.decode(reply))
      -- then the end: EOF, or ECONNRESET when its request was still unread
      assert.is_truthy(after == "EOF" or after == "ECONNRESET", after)
      assert.is_nil(srv.out:match("line "))
      -- and the owner is still served
      assert.are.equal("ok", wait_line(client(sock, "echo ok\n"), 1))
    end)
  end)

  describe("process statistics", function()
    local function spawn_tree(cmd)
      local handle, pid = uv.spawn("sh", { args = { "-c", cmd }, detached = true }, function() end)
      assert(handle, pid)
      H.track(pid) -- its own process group: cleanup kills the whole tree
      pipes[#pipes + 1] = handle
      return pid
    end

    it("sums a process tree: sh with two sleeps", function()
      local pid = spawn_tree("sleep 1000 & sleep 1000 & wait")
      -- two sleeps, every process past exec (an exec'd image has no resident
      -- pages until it runs)
      local function resident(p)
        local statm = H.read("/proc/" .. p .. "/statm")
        return statm and tonumber(statm:match("^%d+ (%d+)")) or 0
      end
      H.wait_until(function()
        local kids = {}
        for k in H.sh("ps -o pid= --ppid " .. pid):gmatch("%d+") do kids[#kids + 1] = k end
        return #kids == 2 and resident(pid) > 0 and resident(kids[1]) > 0 and resident(kids[2]) > 0
      end, 5000, "two sleeps")
      local out = run("stats.lua", [[
        local core = require("orch.core")
        local pid = tonumber(arg[1])
        local s = core.proc_stats(pid)
        print(require("cjson").encode({ s = s, start = core.proc_starttime(pid), ticks = core.clock_ticks() }))
      ]], { tostring(pid) })
      local r = cjson.decode(out)
      assert.are.equal(3, r.s.procs)
      assert.is_true(r.s.rss > 0)
      assert.is_true(r.s.cpu >= 0)
      local stat = H.read("/proc/" .. pid .. "/stat"):match("%) (.*)$")
      local fields = {}
      for f in stat:gmatch("%S+") do fields[#fields + 1] = f end
      assert.are.equal(tonumber(fields[20]), r.s.starttime) -- field 22
      assert.are.equal(r.s.starttime, r.start)
      assert.are.equal(tonumber(H.sh("getconf CLK_TCK")), r.ticks)
      -- the tree's RSS is at least that of the three processes' statm
      local sum = 0
      local pids = { pid }
      for p in H.sh("ps -o pid= --ppid " .. pid):gmatch("%d+") do pids[#pids + 1] = p end
      for _, p in ipairs(pids) do
        sum = sum + tonumber(H.read("/proc/" .. p .. "/statm"):match("^%d+ (%d+)")) * tonumber(H.sh("getconf PAGESIZE"))
      end
      assert.is_true(math.abs(sum - r.s.rss) <= sum * 0.5, "rss " .. r.s.rss .. " vs statm " .. sum)
    end)

    it("parses a comm with spaces and parentheses", function()
      local out = run("comm.lua", [[
        local core = require("orch.core")
        local uv = require("luv")
        -- sh under the name ") 1 2 (x", kept alive beside its sleep
        assert(uv.fs_symlink("/bin/sh", arg[1] .. "/) 1 2 (x"))
        local p = assert(core.spawn({ file = arg[1] .. "/) 1 2 (x", argv = { "x", "-c", "sleep 1000; :" },
          env = { "PATH=/usr/bin:/bin" } }))
        local pid = p:pid()
        local function resident(q)
          local f = io.open("/proc/" .. q .. "/statm")
          local n = f and tonumber(f:read("*a"):match("^%d+ (%d+)"))
          if f then f:close() end
          return n or 0
        end
        local t = uv.new_timer()
        t:start(1, 2, function()
          local kids = core.descendants(pid)
          if #kids < 1 or resident(pid) == 0 or resident(kids[1]) == 0 then return end
          t:close()
          local s = core.proc_stats(pid)
          local f = io.open("/proc/" .. pid .. "/stat")
          local stat = f:read("*a")
          f:close()
          print(require("cjson").encode({ stat = stat, s = s, start = core.proc_starttime(pid) }))
          core.kill(-pid, "SIGKILL")
        end)
      ]], { dir })
      local r = cjson.decode(out)
      assert.is_truthy(r.stat:find(" () 1 2 (x) ", 1, true), r.stat)
      local f = {}
      for x in r.stat:match("^.*%) (.*)$"):gmatch("%S+") do f[#f + 1] = tonumber(x) or x end
      assert.are.equal(2, r.s.procs)
      assert.is_true(r.s.rss >= f[22] * tonumber(H.sh("getconf PAGESIZE")), "rss of sh and sleep")
      assert.are.equal(f[20], r.s.starttime)
      assert.are.equal(f[20], r.start)
    end)

    it("returns nil for a pid that is gone", function()
      local done = false
      local handle, pid = uv.spawn("true", {}, function() done = true end)
      pipes[#pipes + 1] = handle
      H.wait_until(function() return done end, 5000, "true to exit")
      local out = run("dead.lua", [[
        local core = require("orch.core")
        local pid = tonumber(arg[1])
        print(core.proc_stats(pid), core.proc_starttime(pid), core.proc_stats(2 ^ 22 + 1))
      ]], { tostring(pid) })
      assert.are.equal("nil\tnil\tnil\n", out)
    end)
  end)

  describe("daemon support", function()
    it("lets one process hold the pid-file lock; the next gets EWOULDBLOCK until it is released", function()
      local pidfile = dir .. "/daemon.pid"
      local holder = script("holder.lua", [[
        io.stdout:setvbuf("line")
        local core = require("orch.core")
        local uv = require("luv")
        local lock = assert(core.lock_pidfile(arg[1]))
        print("locked")
        local t = uv.new_timer()
        t:start(2, 2, function()
          if uv.fs_stat(arg[2]) then lock:release(); lock:release(); t:close(); print("released") end
        end)
      ]])
      local try = [[
        local core = require("orch.core")
        local lock, err, code = core.lock_pidfile(arg[1])
        print(lock and "locked" or code, err, core.read_pidfile(arg[1]))
        if lock then lock:release() end
      ]]
      local h = H.orch({ "lua", holder, pidfile, dir .. "/go" }, { home = dir })
      h:wait_output("locked\n")
      assert.are.equal(tostring(h.pid) .. "\n", H.read(pidfile))
      assert.are.equal(tonumber("600", 8), uv.fs_stat(pidfile).mode % 512)
      local out = run("try.lua", try, { pidfile })
      assert.are.equal("EWOULDBLOCK\tEWOULDBLOCK: " .. pidfile .. " is locked by pid " .. h.pid .. "\t" .. h.pid .. "\n", out)
      H.write(dir .. "/go", "")
      h:wait_output("released\n")
      h:wait_exit()
      out = run("try2.lua", try, { pidfile })
      assert.matches("^locked\tnil\t%d+\n$", out)
      -- a holder that is killed drops the lock with its fd
      os.remove(dir .. "/go")
      local h2 = H.orch({ "lua", holder, pidfile, dir .. "/go" }, { home = dir })
      h2:wait_output("locked\n")
      assert.matches("^EWOULDBLOCK", run("try3.lua", try, { pidfile }))
      h2:kill("sigkill")
      h2:wait_exit()
      assert.matches("^locked", run("try4.lua", try, { pidfile }))
      assert.are.equal("ENOENT\tENOENT: no such file or directory\tnil\n",
        run("nolock.lua", try, { dir .. "/no/such/dir/daemon.pid" }))
    end)

    it("starts a detached process: own session, log, /dev/null stdin, default signals, exec errors", function()
      local log = dir .. "/daemon.log"
      local out = run("detach.lua", [[
        local core = require("orch.core")
        local cjson = require("cjson")
        local r = { me = core.getpid() }
        r.pid, r.err = core.spawn_detached({ file = "sh", argv = { "sh", "-c", "echo started $$ $FOO; echo oops >&2; exec sleep 1000" },
          env = { "FOO=bar", "PATH=/usr/bin:/bin" }, log = arg[1] })
        r.e1 = select(3, core.spawn_detached({ file = "/nonexistent/program", argv = { "x" } }))
        r.e2 = select(3, core.spawn_detached({ file = "no-such-program-anywhere", argv = { "x" }, env = { "PATH=/usr/bin:/bin" } }))
        r.e3 = select(3, core.spawn_detached({ file = "true", cwd = "/nonexistent" }))
        r.e4 = select(3, core.spawn_detached({ file = "true", log = "/nonexistent/log" }))
        print(cjson.encode(r))
      ]], { log })
      local r = cjson.decode(out)
      assert.is_number(r.pid, r.err)
      H.track(r.pid)
      H.wait_until(function()
        local text = H.read(log)
        return text and text:find("oops\n", 1, true)
      end, 5000, "the log to fill")
      assert.are.equal("started " .. r.pid .. " bar\noops\n", H.read(log))
      assert.are.equal(tonumber("600", 8), uv.fs_stat(log).mode % 512)
      assert.are.equal("ENOENT", r.e1)
      assert.are.equal("ENOENT", r.e2)
      assert.are.equal("ENOENT", r.e3)
      assert.are.equal("ENOENT", r.e4)

      local stat = H.read("/proc/" .. r.pid .. "/stat"):match("%) (.*)$")
      local f = {}
      for x in stat:gmatch("%S+") do f[#f + 1] = x end
      assert.are_not.equal(tostring(r.me), f[2]) -- ppid: not the starter's child
      assert.are.equal(tostring(r.pid), f[3]) -- process group
      assert.are.equal(tostring(r.pid), f[4]) -- session
      assert.are.equal("/dev/null", uv.fs_readlink("/proc/" .. r.pid .. "/fd/0"))
      assert.are.equal("/", uv.fs_readlink("/proc/" .. r.pid .. "/cwd"))
      local status = H.read("/proc/" .. r.pid .. "/status")
      assert.are.equal("0000000000000000", status:match("SigBlk:%s*(%x+)"))
      assert.are.equal("0000000000000000", status:match("SigIgn:%s*(%x+)"))
      -- nothing but 0, 1, 2 came along
      assert.are.equal("0\n1\n2\n", H.sh("ls /proc/" .. r.pid .. "/fd | sort -n"))
      uv.kill(r.pid, "sigkill")
      H.wait_until(function() return not H.alive(r.pid) end, 5000, "the detached process to die")
    end)

    it("sets the process title, longer than the command line", function()
      -- longer than orch's whole command line: it runs on into the space of
      -- the environment strings
      local title = "orch: daemon (" .. dir .. "/" .. string.rep("x", 120) .. ")"
      local out = run("title.lua", [[
        local core = require("orch.core")
        local title = "orch: daemon (" .. arg[1] .. "/" .. string.rep("x", 120) .. ")"
        assert(core.set_title(title))
        local long = io.open("/proc/self/cmdline"):read("*a")
        local comm = io.open("/proc/self/comm"):read("*a")
        assert(core.set_title("short"))
        local short = io.open("/proc/self/cmdline"):read("*a")
        print(require("cjson").encode({ long = long, comm = comm, short = short, home = os.getenv("ORCH_HOME") }))
      ]], { dir })
      local r = cjson.decode(out)
      assert.are.equal(title, (r.long:gsub("%z+$", "")))
      assert.are.equal(title:sub(1, 15) .. "\n", r.comm)
      assert.are.equal("short", (r.short:gsub("%z+$", "")))
      assert.are.equal(dir .. "/home", r.home) -- the environment survived the move
    end)
  end)
end)
