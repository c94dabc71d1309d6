-- Orphans and stops at scale, counted rather than timed (bench/scale.lua has
-- the times): orch is the subreaper of what its apps fork, and on SIGCHLD it
-- reaps the orphans without stealing its own children's exits; a stop
-- snapshots each process's tree, whose orphans are among orch's children.
-- core.reaper_stats() counts how often orch's children were listed and how
-- many pids that read, so a spec sees O(N) from O(N^2) without a clock.
local H = require("helpers")

local N = 80
-- a start or stop of N under ASan on a busy machine takes long
local SLOW = { timeout = 180000 }

describe("the orphan reaper", function()
  local dir, home
  H.each_test(function(d, h) dir, home = d, h end)

  local function eval(code)
    local rc, out, err = H.orch_sync({ "eval", code }, { home = home, timeout = SLOW.timeout })
    assert.are.equal(0, rc, err)
    return out
  end

  local function stats()
    local out = eval([[local s = require("orch.core").reaper_stats()
      return ("%d %d %d %d"):format(s.listed, s.reaped, s.callbacks, s.children_listed)]])
    local t = H.numbers(out, "(%d+)")
    return { listed = t[1], reaped = t[2], callbacks = t[3], children_listed = t[4] }
  end

  local function start_online(body, n)
    local _, code, err = H.json(home, { "start", H.ecosystem(dir, body) }, { cwd = dir, timeout = SLOW.timeout })
    assert.are.equal(0, code, err)
    H.wait_until(function()
      local k = 0
      for _, p in ipairs(H.json(home, { "list" }) or {}) do if p.status == "online" then k = k + 1 end end
      return k == n
    end, SLOW.timeout, n .. " processes online")
  end

  -- orch's children that are zombies, and how many children it has.
  local function zombies(daemon)
    local z, n = 0, 0
    for _, tid in ipairs(H.numbers(H.sh("ls /proc/" .. daemon .. "/task"), "(%d+)")) do
      for _, c in ipairs(H.numbers(H.read(("/proc/%d/task/%d/children"):format(daemon, tid)) or "", "(%d+)")) do
        n = n + 1
        if (H.read("/proc/" .. c .. "/stat") or ""):match("%) (%a)") == "Z" then z = z + 1 end
      end
    end
    return z, n
  end

  -- Each snapshot read all of orch's N children: N^2 pids for a stop of N
  -- (more with the last look). Now one listing serves a loop turn;
  -- even if every exit came in a turn of its own, the listings would read
  -- N + (N-1) + ... + 1 pids (children go as they are reaped).
  it("stops " .. N .. " processes listing orch's children once per loop turn, not once per process", function()
    start_online(([[{ name = "s", script = "sleep", args = { "1000" }, instances = %d },]]):format(N), N)
    local before = stats()
    local _, code, err = H.json(home, { "stop", "all" }, SLOW)
    assert.are.equal(0, code, err)
    local listed = stats().children_listed - before.children_listed
    assert.is_true(listed <= N * (N + 1) / 2 + N,
      ("%d children listed to stop %d processes"):format(listed, N))
  end)

  it("stops " .. N .. " processes, each leaving an orphan, without listing every child per exit", function()
    -- each instance's shell forks a sleep and execs another (kill_signal
    -- SIGTERM: a background job ignores SIGINT); the forked one becomes
    -- orch's orphan when the stop ends its parent first.
    start_online(([[
      { name = "w", script = "sh", args = { "-c", "sleep 1000 & exec sleep 1001" }, instances = %d,
        kill_signal = "SIGTERM" },
    ]]):format(N), N)
    local daemon = tonumber(H.read(home .. "/daemon.pid"))
    local before = stats()
    local _, code, err = H.json(home, { "stop", "all" }, SLOW)
    assert.are.equal(0, code, err)
    -- every orphan reaped: no zombie is left among orch's children, and no child
    H.wait_until(function()
      local z, n = zombies(daemon)
      return z == 0 and n == 0
    end, SLOW.timeout, "orch to have no child left, zombie or not")
    local after = stats()
    assert.is_true(after.reaped > before.reaped, "no orphan was reaped")
    assert.is_true(after.callbacks - before.callbacks <= after.reaped - before.reaped,
      "more callbacks into Lua than orphans reaped")
    -- a full listing per exit would be about N^2/2 pids; one listing at most is allowed
    local listed = after.listed - before.listed
    assert.is_true(listed <= 2 * N, ("the reaper listed %d children to stop %d processes"):format(listed, N))
  end)
end)
