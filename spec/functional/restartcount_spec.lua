-- Restart counting as PM2's: the count grows when a restart happens (the
-- process is launched again), not when the process exits; meanwhile,
-- during restart_delay, `orch list` shows `waiting restart`. Starting a
-- stopped process again is not a restart.
local H = require("helpers")

describe("restart count", function()
  local dir, home
  H.each_test(function(d, h) dir, home = d, h end)

  local function listed(name)
    for _, p in ipairs(assert(H.json(home, { "list" }))) do
      if p.name == name then return p end
    end
  end

  it("grows when the restart happens, and shows waiting restart during restart_delay", function()
    -- exits at once (code 1) the first time, runs on after
    H.started(dir, home, string.format([[
      { name = "crash", script = "sh", restart_delay = 3000,
        args = { "-c", "if [ -e %s ]; then exec sleep 1000; fi; touch %s; exit 1" } },
    ]], dir .. "/ran", dir .. "/ran"))
    local waiting = H.wait_until(function()
      local p = listed("crash")
      return p.status == "waiting restart" and p
    end, 15000, "crash to wait for its restart")
    assert.are.equal(0, waiting.restarts, "counted at the exit, before the restart")
    local d = assert(H.json(home, { "describe", "crash" }))[1]
    if d.status == "waiting restart" then assert.are.equal(0, d.restarts) end
    local back = H.wait_until(function()
      local p = listed("crash")
      return p.status == "online" and p
    end, 20000, "crash to be back online")
    assert.are.equal(1, back.restarts)
    -- a restart requested during the delay counts once, not twice
    assert.are.equal(0, select(2, H.json(home, { "stop", "crash" })))
    os.remove(dir .. "/ran")
    assert.are.equal(0, select(2, H.json(home, { "start", "crash" })))
    H.wait_until(function() return listed("crash").status == "waiting restart" end, 15000, "the second wait")
    assert.are.equal(1, listed("crash").restarts)
    assert.are.equal(0, select(2, H.json(home, { "restart", "crash" })))
    local again = H.wait_until(function()
      local p = listed("crash")
      return p.status == "online" and p
    end, 20000, "crash online after the restart")
    assert.are.equal(2, again.restarts)
  end)

  it("does not count a restart of a stopped process (PM2 starts it)", function()
    H.started(dir, home, [[ { name = "s", script = "sleep", args = { "1000" } }, ]])
    H.wait_until(function() return listed("s").status == "online" end, 10000, "s online")
    assert.are.equal(0, select(2, H.json(home, { "restart", "s" })))
    H.wait_until(function() return listed("s").status == "online" and listed("s").restarts == 1 end, 10000,
      "a counted restart of the running s")
    assert.are.equal(0, select(2, H.json(home, { "stop", "s" })))
    assert.are.equal(0, select(2, H.json(home, { "restart", "s" })))
    local p = H.wait_until(function()
      local q = listed("s")
      return q.status == "online" and q
    end, 10000, "s online again")
    assert.are.equal(1, p.restarts)
  end)
end)
