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
    assert.matches("^%d+: last words\n$", H.read(dir .. "/esc.log"))
  end)
end)
