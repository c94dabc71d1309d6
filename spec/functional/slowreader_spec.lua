-- Readers that do not keep up (a pipe nobody reads, a paused terminal, a
-- FIFO): the app behind them waits or its echo is dropped, orch itself never
-- stops supervising or answering.
local H = require("helpers")
local uv = require("luv")

local O_RDONLY_NONBLOCK = 2048 -- O_RDONLY | O_NONBLOCK

local function status_of(home, name)
  for _, p in ipairs(H.json(home, { "list" }) or {}) do
    if p.name == name then return p.status end
  end
end

describe("slow readers", function()
  local dir, home
  H.each_test(function(d, h) dir, home = d, h end)

  it("orch run keeps supervising behind a stdout reader that never reads", function()
    local p, reader = assert(uv.pipe()), nil
    finally(function()
      if reader then reader:close() else uv.fs_close(p.read) end
    end)
    -- 300000 numbered lines (about 2 MB, far more than a pipe and the echo's
    -- memory hold), then quiet; "devout" writes its log to orch's stdout too.
    H.write(dir .. "/chatty.sh", "seq 1 300000\nexec sleep 1000\n")
    local file = H.ecosystem(dir, string.format([[
      { name = "chatty", script = %q },
      { name = "devout", script = "yes", args = { "to /dev/stdout" }, out_file = "/dev/stdout" },
      { name = "other", script = "sleep", args = { "1000" } },
    ]], dir .. "/chatty.sh"))
    local o = H.orch({ "run", file }, { home = home, cwd = dir, stdout = p.write })
    uv.fs_close(p.write)
    o:wait_output("other:0 online", 10000)
    -- the log file gets every line although nobody reads the echo
    local log = home .. "/logs/chatty-out.log"
    H.wait_until(function() return (H.read(log) or ""):find("\n300000\n$") end, 30000,
      function() return "all 300000 lines in the log; it has " .. #(H.read(log) or "") .. " bytes" end)
    assert.is_true(H.consecutive(H.numbers(H.read(log))))
    -- the control socket answers, and a stop is acted on at once
    local ping, code = H.json(home, { "ping" })
    assert.are.equal(0, code)
    assert.are.equal("run", ping.mode)
    assert.is_true(ping.echo_dropped > 0, "echo_dropped " .. tostring(ping.echo_dropped))
    local t0 = uv.hrtime()
    assert.are.equal(0, select(2, H.json(home, { "stop", "other" })))
    assert.are.equal("stopped", status_of(home, "other"))
    assert.is_true((uv.hrtime() - t0) / 1e6 < 5000)
    -- once someone reads, the echo goes on and marks its gap
    local found, tail = false, ""
    reader = uv.new_pipe(false)
    reader:open(p.read)
    reader:read_start(function(_, data)
      if not data or found then return end
      local chunk = tail .. data
      found = chunk:find("lines of output were not echoed here: the reader fell behind", 1, true) ~= nil
      tail = chunk:sub(-80)
    end)
    H.wait_until(function() return found end, 20000, "the echo's mark of its gap")
    reader:read_stop()
    -- SIGTERM: everything stops and orch exits, saying what it did not echo
    o:kill("sigterm")
    assert.are.equal(0, o:wait_exit(10000))
    assert.matches("orch | %d+ lines of output were not echoed", o.err)
  end)

  it("a FIFO out_file nobody reads stalls that app only: other apps, ping and stop go on", function()
    assert.are.equal("", H.sh("mkfifo '" .. dir .. "/opened.fifo' '" .. dir .. "/unopened.fifo' 2>&1"))
    -- a reader that opens the FIFO and never reads
    local reader = assert(uv.fs_open(dir .. "/opened.fifo", O_RDONLY_NONBLOCK, 0))
    finally(function() uv.fs_close(reader) end)
    local file = H.ecosystem(dir, string.format([[
      { name = "opened", script = "yes", args = { "to a fifo" }, out_file = %q },
      { name = "unopened", script = "yes", args = { "to a fifo" }, out_file = %q },
      { name = "tick", script = "sh", args = { "-c", "i=0; while :; do i=$((i+1)); echo tick $i; sleep 0.02; done" } },
    ]], dir .. "/opened.fifo", dir .. "/unopened.fifo"))
    local _, code, err = H.json(home, { "start", file }, { cwd = dir })
    assert.are.equal(0, code, err)
    -- the other app's log goes on, the socket answers, stops are prompt
    local ticks = home .. "/logs/tick-out.log"
    H.wait_until(function() return #H.ticks(H.read(ticks) or "") >= 25 end, 20000, "25 ticks in the log")
    assert.are.equal(0, select(2, H.json(home, { "ping" })))
    for _, name in ipairs({ "opened", "unopened", "tick" }) do
      assert.are.equal(0, select(2, H.json(home, { "stop", name })))
      assert.are.equal("stopped", status_of(home, name))
    end
    assert.is_true(H.consecutive(H.ticks(H.read(ticks))))
  end)
end)
