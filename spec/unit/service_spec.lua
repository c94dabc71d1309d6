-- orch.service's pure parts: the STATUS line and the watchdog's period.
local service
do
  -- orch.core is C, in the binary only: a stand-in while the module loads
  local saved = package.loaded["orch.core"]
  package.loaded["orch.core"] = saved or {}
  service = require("orch.service")
  package.loaded["orch.core"] = saved
end

describe("orch.service", function()
  it("sums the process table up in one line, in a fixed order, zeros left out", function()
    local procs = {}
    for _, s in ipairs({ "stopped", "online", "errored", "online", "launching", "online", "waiting restart" }) do
      procs[#procs + 1] = { status = s }
    end
    assert.are.equal("3 online, 1 launching, 1 waiting restart, 1 errored, 1 stopped", service.summary(procs))
    assert.are.equal("no processes", service.summary({}))
    assert.are.equal("1 online, 1 other", service.summary({ { status = "online" }, { status = "odd" } }))
  end)

  it("pings the watchdog at half of WATCHDOG_USEC, only when it is meant for this process", function()
    assert.are.equal(15000, service.watchdog_ms("30000000", nil, 42))
    assert.are.equal(15000, service.watchdog_ms("30000000", "42", 42))
    assert.is_nil(service.watchdog_ms("30000000", "43", 42))
    assert.are.equal(1, service.watchdog_ms("1", nil, 42))
    for _, bad in ipairs({ "", "0", "-5", "1.5", "soon" }) do
      assert.is_nil(service.watchdog_ms(bad, nil, 42), bad)
    end
    assert.is_nil(service.watchdog_ms(nil, nil, 42))
  end)
end)
