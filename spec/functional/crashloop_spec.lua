-- The crash-loop breaker under load: many apps that die at once must each be
-- judged by how long they really ran, not by how late a busy daemon noticed.
local H = require("helpers")
local uv = require("luv")

-- CPU seconds the process has used (utime + stime; 100 ticks a second on Linux).
local function cpu_seconds(pid)
  local stat = assert(H.read("/proc/" .. pid .. "/stat"), "no /proc entry for " .. pid)
  local fields = {}
  for f in stat:match("%) (.*)$"):gmatch("%S+") do fields[#fields + 1] = f end
  return (tonumber(fields[12]) + tonumber(fields[13])) / 100
end

describe("the crash-loop breaker", function()
  local dir, home
  H.each_test(function(d, h) dir, home = d, h end)

  -- With 1000 apps the exits were noticed ~4 s late, counted as stable runs,
  -- and the breaker never tripped (restarts for ever, 100 % CPU). Here 200
  -- apps whose restart function takes 5 ms (of CPU: longer on a busy
  -- machine) make one round of restarts take the daemon over a second, more
  -- than min_uptime, on any machine.
  it("trips for every app of 200 crash-looping ones, and the daemon goes idle", function()
    local n, max = 200, 5
    local file = H.write(dir .. "/many.config.lua", string.format([[
      local function slow_policy()
        local t = os.clock()
        while os.clock() - t < 0.005 do end
      end
      local apps = {}
      for i = 1, %d do
        apps[i] = { name = "crash" .. i, script = "sh", args = { "-c", "exit 1" },
                    min_uptime = 1000, max_restarts = %d, restart = slow_policy }
      end
      return { apps = apps } ]], n, max))
    local started, code, err = H.json(home, { "start", file }, { cwd = dir })
    assert.are.equal(0, code, err)
    assert.are.equal(n, #started.processes)
    local daemon = assert(tonumber(H.read(home .. "/daemon.pid")))
    -- the daemon's log, not `orch list`, tells when they are all done:
    -- a list of 300 processes every few ms would be load of its own
    local count, read_at = 0, 0
    local function errored()
      if uv.now() - read_at >= 200 then -- the log grows large: not every 5 ms
        read_at = uv.now()
        count = select(2, (H.read(home .. "/daemon.log") or ""):gsub("crash%d+:0 errored", ""))
      end
      return count
    end
    H.wait_until(function() return errored() >= n end, 90000,
      function() return "every app to be errored (" .. errored() .. " of " .. n .. " so far)" end)
    local list = H.json(home, { "list" })
    local counts = {}
    for _, p in ipairs(list) do counts[p.status] = (counts[p.status] or 0) + 1 end
    assert.are.same({ errored = n }, counts)
    for _, p in ipairs(list) do
      assert.is_true(p.restarts <= max, p.name .. " restarted " .. p.restarts .. " times")
    end
    local d = H.json(home, { "describe", "crash1" })[1]
    assert.matches("unstable exits in a row", d.reason)
    -- nothing left to do: the daemon's CPU use drops to (nearly) nothing
    local c0, t0 = cpu_seconds(daemon), uv.hrtime()
    H.wait_until(function() return uv.hrtime() - t0 > 2e9 end, 5000)
    local used = cpu_seconds(daemon) - c0
    assert.is_true(used < 0.3, string.format("the daemon used %.2f s of CPU in 2 s after every app errored", used))
  end)
end)
