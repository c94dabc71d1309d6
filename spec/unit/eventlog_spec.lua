-- orch.eventlog: one formatter for the daemon's log and orch run's terminal.
local eventlog = require("orch.eventlog")

describe("orch.eventlog", function()
  local p = { name = "web", instance = 1, pid = 4242, restarts = 3,
              app = { kill_signal = "SIGTERM", kill_timeout = 1600 } }

  it("writes the lines both the daemon and orch run show", function()
    assert.are.equal("web:1 online, pid 4242, restarts 3", eventlog.line("online", p))
    assert.are.equal("web:1 failed to start: cannot exec /x: ENOENT",
      eventlog.line("spawn_error", p, { error = "cannot exec /x: ENOENT" }))
    assert.are.equal("web:1 (pid 4242) exited with code 2 after 250 ms",
      eventlog.line("exit", p, { code = 2, uptime_ms = 250.7 }))
    assert.are.equal("web:1 (pid 4242) killed by SIGKILL after 2.5 s",
      eventlog.line("exit", p, { signal = "SIGKILL", uptime_ms = 2500 }))
    -- the restart to come: restarts counts those done (PM2's restart_time)
    assert.are.equal("web:1 restarting in 100 ms (restart 4)", eventlog.line("waiting", p, { delay = 100 }))
    assert.are.equal("web:1 stopping: SIGTERM, SIGKILL after 1.6 s", eventlog.line("stopping", p))
    assert.are.equal("web:1 stopped: exit code 1 is in stop_exit_codes",
      eventlog.line("stopped", p, { reason = "exit code 1 is in stop_exit_codes" }))
    assert.are.equal("web:1 stopped", eventlog.line("stopped", p))
    assert.are.equal("web:1 errored: 16 unstable exits in a row",
      eventlog.line("errored", p, { reason = "16 unstable exits in a row" }))
  end)

  it("makes no line for other events", function()
    for _, e in ipairs({ "start", "health", "listening", "message", "idle" }) do
      assert.is_nil(eventlog.line(e, p, {}))
    end
  end)

  it("writes an event record (orch.events) as orch events shows it", function()
    local function r(t)
      t.app, t.instance, t.pid = t.app or "web", t.instance == nil and 1 or t.instance, t.pid or 4242
      return t
    end
    assert.are.equal("web:1 (pid 4242) exited with code 3 after 250 ms",
      eventlog.text(r({ kind = "exit", code = 3, uptime_ms = 250 })))
    assert.are.equal("web:1 restarting in 300 ms (restart 2, cause: exit, killed by SIGSEGV)",
      eventlog.text(r({ kind = "restart", cause = "exit", signal = "SIGSEGV", delay = 300, restarts = 2 })))
    assert.are.equal("web:1 restarting (restart 5, cause: memory, memory 9 bytes over max_memory_restart 1)",
      eventlog.text(r({ kind = "restart", cause = "memory", reason = "memory 9 bytes over max_memory_restart 1",
                        delay = 0, restarts = 5 })))
    assert.are.equal("web:1 unhealthy: refused", eventlog.text(r({ kind = "health", healthy = false, message = "refused" })))
    assert.are.equal("web scaled from 1 to 3 instance(s)", eventlog.text({ kind = "scale", app = "web", from = 1, to = 3 }))
    assert.are.equal("web:1 online, pid 4242", eventlog.text(r({ kind = "online" })))
    assert.are.equal("1970-01-01", eventlog.clock({ time = 43200123 }):sub(1, 10))
    assert.are.equal(".123", eventlog.clock({ time = 43200123 }):sub(-4))
  end)
end)
