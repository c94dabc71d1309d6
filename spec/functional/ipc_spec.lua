-- The IPC channel: Node's child_process protocol at fd 3 of every process.
local H = require("helpers")
local uv = require("luv")

local apps = H.root .. "/spec/fixtures/apps"
H.need("node", "python3")

describe("the IPC channel", function()
  local dir, home
  H.each_test(function(d, h) dir, home = d, h end)

  local function start(body) return H.started(dir, home, body) end

  local function status(name)
    local d = H.json(home, { "describe", name })
    return d and d[1].status
  end

  it("round-trips messages with an unmodified Node program; wait_ready holds online until 'ready'", function()
    local res = start(string.format([[
      { name = "n", script = %q, wait_ready = true, listen_timeout = 10000, env = { READY_AFTER_MS = "400" },
        on_message = function(p, m) print("HOOK message " .. p.name .. " pong=" .. tostring(type(m) == "table" and m.pong)) end },
    ]], apps .. "/ipc_node.js"))
    assert.are.equal("launching", res.processes[1].status)
    H.wait_until(function() return status("n") == "online" end, 5000, "n to be online after 'ready'")
    assert.are.equal(0, (H.orch_sync({ "eval", "got = {} orch.on('message', function(p, m) got[#got + 1] = m end)" },
      { home = home })))
    local code, out = H.orch_sync({ "send", "n", '{"ping":42}' }, { home = home })
    assert.are.equal(0, code)
    assert.matches("sent to 1 process", out)
    H.wait_until(function()
      return (H.read(home .. "/daemon.log") or ""):find("HOOK message n pong=42", 1, true)
    end, 5000, "the on_message hook to see the reply")
    H.wait_until(function()
      local _, o = H.orch_sync({ "eval", "got[#got] and got[#got].pong" }, { home = home })
      return o == "42\n"
    end, 5000, "orch.on('message') to see the reply")
    -- proc:send from Lua, too
    assert.are.equal(0, (H.orch_sync({ "eval", "assert(orch.get('n'):send({ ping = 7 }))" }, { home = home })))
    H.wait_until(function()
      local _, o = H.orch_sync({ "eval", "got[#got].pong" }, { home = home })
      return o == "7\n"
    end, 5000, "the reply to proc:send")
  end)

  for _, from_child in ipairs({ false, true }) do
    it("takes READY=1 on NOTIFY_SOCKET as ready (sd_notify)" .. (from_child and ", from a child" or ""), function()
      local go = dir .. "/go" -- the app says READY=1 once this exists
      local res = start(string.format([[
        { name = "sd", script = %q, wait_ready = true, listen_timeout = 20000,
          env = { READY_WHEN = %q, NOTIFY_FROM_CHILD = %q } },
      ]], apps .. "/notify_ready.py", go, from_child and "1" or ""))
      assert.are.equal("launching", res.processes[1].status)
      -- a stranger's READY=1 (this test is no process of orch's) changes nothing
      assert.are.equal("sent\n", H.sh(string.format(
        [[python3 -c 'import socket; s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); s.sendto(b"READY=1", %q)' && echo sent]],
        home .. "/notify/" .. res.processes[1].id .. ".sock")))
      -- two round trips on the control socket: the daemon's loop has
      -- turned since the datagram arrived
      status("sd")
      assert.are.equal("launching", status("sd"))
      H.write(go, "")
      H.wait_until(function() return status("sd") == "online" end, 30000, "online after READY=1")
      local d = H.json(home, { "describe", "sd" })[1]
      assert.are.equal("serving", d.notify_status)
    end)
  end

  -- systemd-notify's case: the sender is gone before orch reads its datagram
  -- (the daemon is stopped meanwhile), so its pid leads nowhere.
  it("takes READY=1 from a child that exited before orch read it", function()
    local mark = dir .. "/notified"
    local res = start(string.format([[
      { name = "sd", script = %q, wait_ready = true, listen_timeout = 20000,
        env = { READY_AFTER_MS = "1000", NOTIFY_FROM_CHILD = "1", NOTIFIED_MARK = %q } },
    ]], apps .. "/notify_ready.py", mark))
    assert.are.equal("launching", res.processes[1].status)
    local daemon = assert(tonumber(H.read(home .. "/daemon.pid")))
    assert(uv.kill(daemon, "sigstop"))
    local ok, err = pcall(H.wait_until, function() return uv.fs_stat(mark) ~= nil end, 10000, "the child to have sent and gone")
    assert(uv.kill(daemon, "sigcont"))
    assert(ok, err)
    H.wait_until(function() return status("sd") == "online" end, 10000, "online after READY=1")
    assert.are.equal("serving", H.json(home, { "describe", "sd" })[1].notify_status)
  end)

  it("declares a wait_ready process online after listen_timeout when it never says ready", function()
    -- the start reply comes before listen_timeout can pass, however slow the machine
    local res = start(string.format([[ { name = "mute", script = %q, wait_ready = true, listen_timeout = 300 }, ]],
      apps .. "/ipc_node.js"))
    assert.are.equal("launching", res.processes[1].status)
    H.wait_until(function() return status("mute") == "online" end, 5000, "online after listen_timeout")
    assert.matches("mute:0 sent no 'ready' within listen_timeout 300 ms; online anyway", H.read(home .. "/daemon.log"))
  end)

  it("stops with a 'shutdown' message under shutdown_with_message", function()
    start(string.format([[ { name = "polite", script = %q, shutdown_with_message = true }, ]], apps .. "/ipc_node.js"))
    local stopped = H.json(home, { "stop", "polite" })
    assert.are.equal("stopped", stopped[1].status)
    local d = H.json(home, { "describe", "polite" })[1]
    assert.are.equal(0, d.last_exit.code) -- left by itself on the message, not by SIGINT (exit 3)
    assert.matches("got shutdown, leaving cleanly", H.read(home .. "/logs/polite-out.log"))
  end)

  it("speaks the same protocol with a Lua program, and refuses to send to a stopped one", function()
    start(string.format([[ { name = "l", script = %q, wait_ready = true }, ]], apps .. "/ipc_lua.lua"))
    H.wait_until(function() return status("l") == "online" end, 5000, "the Lua program to be ready")
    assert.are.equal(0, (H.orch_sync({ "eval", "seen = nil orch.on('message', function(p, m) seen = m end)" },
      { home = home })))
    assert.are.equal(0, (H.orch_sync({ "send", "l", "hello" }, { home = home })))
    H.wait_until(function()
      local _, o = H.orch_sync({ "eval", "seen and seen.echo, seen and seen.lang" }, { home = home })
      return o == '"hello"\t"lua"\n'
    end, 5000, "the Lua program's echo")
    H.json(home, { "stop", "l" })
    local code, _, err = H.orch_sync({ "send", "l", "{}" }, { home = home })
    assert.are.equal(1, code)
    assert.matches("l:0 is not running", err)
  end)
end)
