-- The Lua API inside the daemon: hooks, orch.on, orch eval.
local H = require("helpers")
local uv = require("luv")

local apps = H.root .. "/spec/fixtures/apps"

describe("orch's Lua API", function()
  local dir, home
  H.each_test(function(d, h) dir, home = d, h end)

  local function orch(args)
    return H.orch_sync(args, { home = home, cwd = dir })
  end

  it("evaluates expressions and statements in one persistent environment", function()
    local code, out = orch({ "eval", "1 + 1" })
    assert.are.equal(0, code)
    assert.are.equal("2\n", out)
    assert.are.equal(0, (orch({ "eval", "counter = 41" })))
    code, out = orch({ "eval", "counter + 1, 'x'" })
    assert.are.same({ 0, '42\t"x"\n' }, { code, out })
    code, out = orch({ "eval", "print('hello', 3) return { b = 1, a = { 1, 2 } }" })
    assert.are.same({ 0, 'hello\t3\n{\n  a = {\n    1,\n    2,\n  },\n  b = 1,\n}\n' }, { code, out })
    -- a table that holds itself is printed once, the loop marked
    code, out = orch({ "eval", "local t = {} t.self = t return t" })
    assert.are.same({ 0, "{\n  self = <cycle>,\n}\n" }, { code, out })
  end)

  it("reports errors with exit status 1 and carries on", function()
    local code, _, err = orch({ "eval", "local t = nil return t.x" })
    assert.are.equal(1, code)
    assert.matches("eval:1: attempt to index local 't' %(a nil value%)\nstack traceback:\n\teval:1: in main chunk", err)
    code, _, err = orch({ "eval", "function f(" })
    assert.are.equal(1, code)
    assert.matches("eval:1: ", err)
    local t0 = uv.hrtime()
    code, _, err = orch({ "eval", "while true do end" })
    assert.are.equal(1, code)
    assert.matches("hook interrupted: ran longer than 2000 ms", err)
    assert.is_true((uv.hrtime() - t0) / 1e6 < 5000)
    assert.are.equal(0, (orch({ "ping" })))
  end)

  it("sees live processes and acts on them", function()
    assert.are.equal(0, (orch({ "start", "sleep", "--name", "nap", "-i", "2", "--", "1000" })))
    local code, out = orch({ "eval", "#orch.list(), orch.get('nap').status, orch.get('nap').pid > 0, orch.get('nope')" })
    assert.are.equal(0, code)
    assert.are.equal('2\t"online"\ttrue\tnil\n', out)
    code, out = orch({ "eval", "orch.get(1)" })
    assert.are.equal(0, code)
    assert.matches("^<process nap:1 id 1 online>", out)
    code, out = orch({ "eval", "orch.get('nap').memory > 0, orch.get('nap').config.script" })
    assert.are.same({ 0, 'true\t"sleep"\n' }, { code, out })
    -- stop through the API; the CLI sees it
    assert.are.equal(0, (orch({ "eval", "orch.stop('nap')" })))
    H.wait_until(function()
      local list = H.json(home, { "list" })
      return list and list[1].status == "stopped" and list[2].status == "stopped"
    end, 5000, "nap to be stopped")
    assert.are.equal(1, (orch({ "eval", "orch.get('nap').pid = 1" })))
  end)

  it("gives hooks and orch.on handlers the exit code and signal", function()
    H.write(dir .. "/ecosystem.lua", string.format([[
      return { apps = {
        { name = "fails", script = %q, min_uptime = 0, stop_exit_codes = { 1 },
          on_start = function(p) print("HOOK on_start " .. p.name .. " " .. p.pid) end,
          on_exit = function(p, code, signal) print("HOOK on_exit " .. p.name .. " " .. tostring(code) .. " " .. tostring(signal)) end },
        { name = "nap", script = "sleep", args = { "1000" },
          on_exit = function(p, code, signal) print("HOOK on_exit " .. p.name .. " " .. tostring(code) .. " " .. tostring(signal)) end },
      } }
    ]], apps .. "/fail.sh"))
    assert.are.equal(0, (orch({ "ping" })))
    assert.are.equal(0, (orch({ "eval",
      "seen = {} orch.on('exit', function(p, code, sig) seen[#seen + 1] = p.name .. ' ' .. tostring(code) .. ' ' .. tostring(sig) end)" })))
    assert.are.equal(0, (orch({ "start", dir .. "/ecosystem.lua" })))
    local nap = H.json(home, { "describe", "nap" })[1]
    uv.kill(nap.pid, "sigkill")
    local log = home .. "/daemon.log"
    H.wait_until(function()
      local s = H.read(log) or ""
      return s:find("HOOK on_exit nap nil SIGKILL", 1, true) and s:find("HOOK on_exit fails 1 nil", 1, true)
    end, 5000, "both on_exit hooks in the daemon log")
    assert.matches("HOOK on_start fails %d+", H.read(log))
    H.wait_until(function()
      local _, out = orch({ "eval", "table.concat(seen, ',')" })
      return out:find("nap nil SIGKILL", 1, true) and out:find("fails 1 nil", 1, true)
    end, 5000, "orch.on('exit') to have seen both exits")
  end)

  it("interrupts a hook that never returns and keeps serving", function()
    H.write(dir .. "/ecosystem.lua", [[
      return { apps = {
        { name = "loop", script = "sleep", args = { "1000" }, hook_deadline = 50,
          on_online = function() while true do end end },
      } }
    ]])
    assert.are.equal(0, (orch({ "start", dir .. "/ecosystem.lua" })))
    H.wait_until(function()
      return (H.read(home .. "/daemon.log") or ""):find("loop:0: on_online failed: hook interrupted: ran longer than 50 ms", 1, true)
    end, 5000, "the hook to be interrupted")
    local list = H.json(home, { "list" })
    assert.are.equal("online", list[1].status)
  end)
end)

describe("orch.start with Lua functions in its options", function()
  local home
  H.each_test(function(_, h) home = h end)

  it("keeps the state file current for every other app", function()
    assert.are.equal(0, (H.orch_sync({ "start", "sleep", "--name", "plain", "--", "1000" }, { home = home })))
    local code, _, err = H.orch_sync({ "eval",
      "return #orch.start({ name = 'hooked', script = 'sleep', args = { '1000' }, on_exit = function() end })" },
      { home = home })
    assert.are.equal(0, code, err)
    H.wait_until(function()
      local s = H.read(home .. "/state.json") or ""
      return s:find('"hooked"', 1, true) and s:find('"plain"', 1, true)
    end, 5000, "both apps in the state file")
    local log = H.read(home .. "/daemon.log")
    assert.matches("hooked: 1 Lua function%(s%) in its options cannot be saved", log)
    assert.is_nil(log:find("state file not written", 1, true))
  end)
end)
