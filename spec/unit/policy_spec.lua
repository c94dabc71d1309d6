local policy = require("orch.policy")

local function app(over)
  local a = { autorestart = true, min_uptime = 1000, max_restarts = 16, restart_delay = 0,
              exp_backoff_restart_delay = 0, stop_exit_codes = {} }
  for k, v in pairs(over or {}) do a[k] = v end
  return a
end

describe("orch.policy.decide", function()
  -- { what, app overrides, counters, exit, expected decision, expected counters }
  local cases = {
    { "restarts a stable exit at once", {}, { unstable = 0, backoff = 0 },
      { code = 1, uptime_ms = 5000 }, { action = "restart", delay = 0 }, { unstable = 0, backoff = 0 } },
    { "counts an exit before min_uptime as unstable", {}, { unstable = 2, backoff = 0 },
      { code = 1, uptime_ms = 999 }, { action = "restart", delay = 0 }, { unstable = 3, backoff = 0 } },
    { "resets the unstable count after a stable run", {}, { unstable = 5, backoff = 0 },
      { code = 0, uptime_ms = 1000 }, { action = "restart", delay = 0 }, { unstable = 0, backoff = 0 } },
    { "honours min_uptime", { min_uptime = 200 }, { unstable = 0, backoff = 0 },
      { code = 1, uptime_ms = 250 }, { action = "restart", delay = 0 }, { unstable = 0, backoff = 0 } },
    { "waits restart_delay", { restart_delay = 250 }, { unstable = 0, backoff = 0 },
      { signal = "SIGKILL", uptime_ms = 5000 }, { action = "restart", delay = 250 }, { unstable = 0, backoff = 0 } },
    { "starts the backoff at its base", { exp_backoff_restart_delay = 100, restart_delay = 999 },
      { unstable = 0, backoff = 0 }, { code = 1, uptime_ms = 10 },
      { action = "restart", delay = 100 }, { unstable = 1, backoff = 100 } },
    { "grows the backoff by 1.5", { exp_backoff_restart_delay = 100 }, { unstable = 1, backoff = 100 },
      { code = 1, uptime_ms = 10 }, { action = "restart", delay = 150 }, { unstable = 2, backoff = 150 } },
    { "caps the backoff at 15 s", { exp_backoff_restart_delay = 100 }, { unstable = 3, backoff = 12000 },
      { code = 1, uptime_ms = 10 }, { action = "restart", delay = 15000 }, { unstable = 4, backoff = 15000 } },
    { "resets the backoff after 30 s up", { exp_backoff_restart_delay = 100 }, { unstable = 0, backoff = 15000 },
      { code = 1, uptime_ms = 30000 }, { action = "restart", delay = 100 }, { unstable = 0, backoff = 100 } },
    { "keeps the backoff after a short stable run", { exp_backoff_restart_delay = 100 },
      { unstable = 0, backoff = 1000 }, { code = 1, uptime_ms = 5000 },
      { action = "restart", delay = 1500 }, { unstable = 0, backoff = 1500 } },
    { "errors after max_restarts unstable exits", { max_restarts = 3 }, { unstable = 2, backoff = 0 },
      { code = 1, uptime_ms = 10 },
      { action = "stop", status = "errored",
        reason = "3 unstable exits in a row (up less than min_uptime 1000 ms), last: exit code 1" },
      { unstable = 3, backoff = 0 } },
    { "errors at the first unstable exit with max_restarts 0", { max_restarts = 0 }, { unstable = 0, backoff = 0 },
      { signal = "SIGSEGV", uptime_ms = 10 },
      { action = "stop", status = "errored",
        reason = "1 unstable exit in a row (up less than min_uptime 1000 ms), last: killed by SIGSEGV" },
      { unstable = 1, backoff = 0 } },
    { "names the error of a start that failed, not an exit code", { max_restarts = 2 }, { unstable = 1, backoff = 0 },
      { uptime_ms = 0, error = "cannot exec sleep: EMFILE: too many open files" },
      { action = "stop", status = "errored",
        reason = "2 unstable exits in a row (up less than min_uptime 1000 ms), last: cannot exec sleep: EMFILE: too many open files" },
      { unstable = 2, backoff = 0 } },
    { "stops on a stop_exit_code", { stop_exit_codes = { 0, 3 } }, { unstable = 0, backoff = 0 },
      { code = 3, uptime_ms = 10 },
      { action = "stop", status = "stopped", reason = "exit code 3 is in stop_exit_codes" },
      { unstable = 0, backoff = 0 } },
    { "ignores stop_exit_codes for a signal", { stop_exit_codes = { 0 } }, { unstable = 0, backoff = 0 },
      { signal = "SIGTERM", uptime_ms = 5000 }, { action = "restart", delay = 0 }, { unstable = 0, backoff = 0 } },
    { "stops without autorestart", { autorestart = false }, { unstable = 4, backoff = 0 },
      { code = 1, uptime_ms = 10 },
      { action = "stop", status = "stopped", reason = "autorestart is off" }, { unstable = 4, backoff = 0 } },
  }
  for _, c in ipairs(cases) do
    it(c[1], function()
      local counters = c[3]
      local before = { unstable = counters.unstable, backoff = counters.backoff }
      local d, after = policy.decide(app(c[2]), counters, c[4])
      assert.are.same(c[5], d)
      assert.are.same(c[6], after)
      assert.are.same(before, counters) -- inputs are not modified
    end)
  end

  it("walks an app that always fails to errored in exactly max_restarts exits", function()
    local a, counters, restarts = app({ max_restarts = 16 }), { unstable = 0, backoff = 0 }, 0
    for exits = 1, 100 do
      local d
      d, counters = policy.decide(a, counters, { code = 1, uptime_ms = 1 })
      if d.action ~= "restart" then
        assert.are.equal("errored", d.status)
        assert.are.equal(16, exits)
        assert.are.equal(15, restarts)
        return
      end
      restarts = restarts + 1
    end
    error("never errored")
  end)
end)

describe("orch.policy.from_user", function()
  local good = {
    { true, { action = "restart", delay = 0 } },
    { "restart", { action = "restart", delay = 0 } },
    { 250, { action = "restart", delay = 250 } },
    { false, { action = "stop", status = "stopped", reason = "the restart function said stop" } },
    { "stop", { action = "stop", status = "stopped", reason = "the restart function said stop" } },
    { "errored", { action = "stop", status = "errored", reason = "the restart function said errored" } },
    { { action = "restart", delay = 10 }, { action = "restart", delay = 10 } },
    { { action = "stop", reason = "enough" }, { action = "stop", status = "stopped", reason = "enough" } },
  }
  for _, c in ipairs(good) do
    it("accepts " .. tostring(c[1]), function()
      assert.are.same(c[2], (policy.from_user(c[1])))
    end)
  end

  it("returns nil for nil: the default decides", function()
    local d, err = policy.from_user(nil)
    assert.is_nil(d)
    assert.is_nil(err)
  end)

  local bad = {
    { -1, "a delay must be a number >= 0, got -1" },
    { "later", 'unknown decision "later" (expected "restart", "stop" or "errored")' },
    { { action = "pause" }, "'action' must be \"restart\", \"stop\" or \"errored\", got pause" },
    { { action = "restart", delay = "soon" }, "'delay' must be a number >= 0, got soon" },
    { function() end, "expected nil, a boolean, a number, a string or a table, got function" },
  }
  for _, c in ipairs(bad) do
    it("rejects " .. tostring(c[1]) .. " with a reason", function()
      local d, err = policy.from_user(c[1])
      assert.is_nil(d)
      assert.are.equal(c[2], err)
    end)
  end
end)
