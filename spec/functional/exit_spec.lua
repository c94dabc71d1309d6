-- How orch ends: cleanly, with every log flushed, whatever its apps left
-- behind (here a process that escaped with setsid and still holds the pipe).
local H = require("helpers")

describe("orch exiting", function()
  local dir, home
  H.each_test(function(d, h) dir, home = d, h end)

  -- "esc" leaves a setsid'd process holding its stdout (it waits until the
  -- process is out of its group, which orch would stop with it) and ends
  -- with an unterminated line, which only the last flush at exit can write
  -- (the timestamp makes it a held record); "keep" keeps orch running.
  local function ecosystem()
    return H.ecosystem(dir, string.format([[
      { name = "esc", script = "sh", autorestart = false, log_date_format = "%%s",
        out_file = %q,
        args = { "-c", "setsid sh -c 'echo $$ > %s/escaped.pid; exec sleep 60' & "
          .. "while [ ! -s %s/escaped.pid ]; do sleep 0.01; done; printf 'last words'" } },
      { name = "keep", script = "sleep", args = { "1000" } },
    ]], dir .. "/esc.log", dir, dir))
  end

  -- The escaped process, killed by pid at cleanup.
  local function escaped()
    local pid = H.wait_until(function() return tonumber(H.read(dir .. "/escaped.pid") or "") end, 10000,
      "the escaped process's pid")
    H.track(pid)
    return pid
  end

  it("orch run: Ctrl-C after an app left a process behind exits 0 and flushes the log", function()
    local o = H.orch({ "run", ecosystem() }, { home = home, cwd = dir })
    escaped()
    o:wait_output("esc:0 stopped", 10000)
    o:wait_output("keep:0 online", 10000)
    o:kill("sigint")
    o:wait_exit(10000)
    assert.is_nil(o.err:find("PANIC", 1, true), o.err)
    assert.is_nil(o.err:find("no owner closed", 1, true), o.err) -- owners.h: every handle has one
    assert.are.equal(0, o.code, o.err)
    assert.matches("^%d+: last words\n$", H.read(dir .. "/esc.log"))
  end)

  it("daemon: orch kill after an app left a process behind ends cleanly and flushes the log", function()
    local _, code, err = H.json(home, { "start", ecosystem() }, { cwd = dir })
    assert.are.equal(0, code, err)
    escaped()
    H.wait_until(function()
      for _, p in ipairs(H.json(home, { "list" }) or {}) do
        if p.name == "esc" then return p.status == "stopped" end
      end
    end, 10000, "esc to be stopped")
    local daemon = tonumber(H.read(home .. "/daemon.pid"))
    assert.are.equal(0, (H.orch_sync({ "kill" }, { home = home })))
    H.wait_until(function() return not H.exists(daemon) end, 10000, "the daemon to be gone")
    local log = H.read(home .. "/daemon.log") or ""
    assert.is_nil(log:find("PANIC", 1, true), log)
    assert.is_nil(log:find("no owner closed", 1, true), log)
    assert.matches("^%d+: last words\n$", H.read(dir .. "/esc.log"))
  end)

  -- luv's handles must all be gone before the Lua state is: one still open
  -- then is closed by luv's __gc, whose callback runs on a freed state.
  -- Returns the exit code (a signal fails), stdout, stderr.
  local function orch_lua(script)
    local o = H.orch({ "lua", script }, { home = home })
    o:wait_exit(30000)
    assert.are.equal(0, o.signal, "orch lua ended by signal " .. tostring(o.signal) .. "; stderr:\n" .. o.err)
    return o.code, o.out, o.err
  end

  it("orch lua: a handle a close callback makes while orch exits is closed before the Lua state", function()
    local script = H.write(dir .. "/late.lua", [[
      local uv = require("luv")
      local s, r = uv.new_timer(), uv.new_timer()
      s:start(10, 0, function()
        -- a close whose callback closes another, whose callback (run while
        -- orch exits) makes a new handle and closes one more: five rounds
        local function chain(n)
          local open = uv.new_timer()
          open:start(100000, 0, function() end)
          if n > 0 then uv.new_timer():close(function() chain(n - 1) end) end
        end
        local p = uv.new_timer()
        p:close(function() r:close(function() chain(5) end) end)
        uv.stop()
      end)
    ]])
    local code, out, err = orch_lua(script)
    assert.are.equal(0, code, err)
    assert.are.equal("", out .. err)
  end)

  -- A request on libuv's thread pool still out as the daemon exits (an
  -- rmdir of a cgroup did this in CI: its error message was written into the
  -- freed Lua state, ASan). Here an open of a FIFO, which waits for a writer.
  local function open_fifo_then_kill(fifo, writer_after_s)
    assert.are.equal(0, os.execute("mkfifo '" .. fifo .. "'"))
    local code, out, err = H.orch_sync({ "eval", string.format(
      "orch.uv.fs_open(%q, 'r', 0, function(e, fd) orch.log('fifo opened: ' .. tostring(fd and 'fd' or e)) end) "
      .. "return 1", fifo) }, { home = home })
    assert.are.equal(0, code, err .. out)
    local daemon = tonumber(H.read(home .. "/daemon.pid"))
    if writer_after_s then
      -- the writer comes once the daemon is exiting
      local handle, pid = require("luv").spawn("sh", { detached = true,
        args = { "-c", string.format("sleep %s; exec 3> '%s'", writer_after_s, fifo) } }, function() end)
      assert(handle, pid)
      H.track(pid)
    end
    code, out, err = H.orch_sync({ "kill" }, { home = home })
    assert.are.equal(0, code, err .. out)
    H.wait_until(function() return not H.exists(daemon) end, 15000, "the daemon to be gone")
    return H.read(home .. "/daemon.log") or ""
  end

  it("daemon: a request that finishes while it exits calls back into a live Lua state", function()
    local log = open_fifo_then_kill(dir .. "/fifo", "0.3")
    assert.matches("fifo opened: fd", log)
  end)

  it("daemon: a request that never finishes does not keep it from ending", function()
    local fifo = dir .. "/fifo"
    local log = open_fifo_then_kill(fifo)
    assert.matches("orch: exit: 1 request%(s%) still running after %d+ ms; ending without them", log)
    -- the pool's thread waited in open() until the exit: nothing is left to let go
    assert.is_nil(log:find("fifo opened", 1, true))
  end)

  it("orch lua: a script that makes handles in every close callback still ends, without a crash", function()
    local script = H.write(dir .. "/forever.lua", [[
      local uv = require("luv")
      local function again()
        local t = uv.new_timer()
        t:start(100000, 0, function() end)
        local c = uv.new_idle()
        c:close(again)
      end
      local s = uv.new_timer()
      s:start(10, 0, function() again() uv.stop() end)
    ]])
    local code, out, err = orch_lua(script)
    assert.are.equal(0, code, err)
    assert.are.equal("", out)
    assert.matches("orch: exit: Lua made libuv handles while closing them", err)
  end)

  -- LuaJIT's os.exit leaves the state to the OS unless told to close it:
  -- finalizers never run, and LeakSanitizer (CI's ASan stage) reports the
  -- LuaJIT block it cannot trace (2048 bytes from heap_alloc, chaos_spec's
  -- writer.lua on SIGINT). orch's os.exit closes the state first.
  it("orch lua: os.exit inside a callback closes the Lua state (finalizers run), keeps its status and output", function()
    local marker = dir .. "/finalized"
    local script = H.write(dir .. "/quit.lua", string.format([[
      local uv = require("luv")
      local ffi = require("ffi")
      -- a finalizer that only a closing state runs
      _G.keep = ffi.gc(ffi.new("int[1]"), function() io.open(%q, "w"):close() end)
      local t = uv.new_timer()
      uv.new_timer():start(100000, 0, function() end) -- a handle still open
      t:start(10, 0, function()
        io.stdout:write("buffered, no newline")
        os.exit(3)
      end)
    ]], marker))
    local code, out, err = orch_lua(script)
    assert.are.equal(3, code, err)
    assert.are.equal("buffered, no newline", out)
    assert.is_not_nil(H.read(marker), "the finalizer did not run: os.exit left the Lua state open; stderr:\n" .. err)
    -- a boolean status, as Lua 5.2's os.exit takes it
    H.write(script, "os.exit(false)")
    local code2, _, err2 = orch_lua(script)
    assert.are.equal(1, code2, err2)
  end)
end)
