-- The supervisor's Lua runs without LuaJIT's trace compiler. Debian 12's
-- LuaJIT (2.1.0-beta3, GC64) miscompiles a trace that calls lj_vm_next
-- (pairs/next): the register shuffle after the call is a 32-bit xchg that
-- leaves the low half of a pointer in BASE, and the daemon died of SIGSEGV
-- in compiled code. Seen with ORCH_CONCURRENCY_ONLY='reload %+ delete'
-- ORCH_CONCURRENCY_ROUNDS=25 on concurrency_spec under build-asan: 4 of 10
-- runs crashed, every core at that xchg; none in 10 with the JIT off.
local H = require("helpers")

local apps = H.root .. "/spec/fixtures/apps"

-- The number of traces the daemon holds, read by `orch eval` (user code
-- runs with the JIT off, but jit.util sees every trace).
local COUNT = [[
local traceinfo, n = require("jit.util").traceinfo, 0
for i = 1, 10000 do if traceinfo(i) then n = n + 1 end end
return n]]

describe("the daemon's Lua", function()
  local dir, home
  H.each_test(function(d, h) dir, home = d, h end)

  it("runs without the JIT compiler: no trace, after starting and listing apps", function()
    local eco = H.ecosystem(dir, string.format([[ { name = "a", script = %q, instances = 3 }, ]],
      apps .. "/slow_stop.sh"))
    local code, _, err = H.orch_sync({ "start", eco }, { home = home, cwd = dir })
    assert.are.equal(0, code, err)
    -- work the daemon's loops over its tables (hot enough for a trace)
    for _ = 1, 20 do
      local list = H.json(home, { "list" })
      assert.are.equal(3, #list)
    end
    local out
    code, out, err = H.orch_sync({ "eval", COUNT }, { home = home })
    assert.are.equal(0, code, err)
    assert.are.equal("0", out:match("^%s*(.-)%s*$"), "traces in the daemon")
  end)
end)
