-- orch.updatecli: the CLI's side of `orch update`. The daemon answers
-- before it re-executes itself (orch.handover); the CLI then asks `ping`
-- until the next generation answers, or until the daemon says this attempt
-- failed (the new binary could not take over and the old one went on).
local client = require("orch.client")
local core = require("orch.core")
local uv = require("luv")

local M = {}

M.TIMEOUT_MS = 60000

-- Waits for the outcome of the update the reply `result` announced; on
-- success adds ms (from the reply to the new daemon's answer) and the
-- new daemon's ping to result. Returns true, or nil and why.
function M.await(result, started_ns)
  local t0 = started_ns or uv.hrtime()
  while (uv.hrtime() - t0) / 1e6 < M.TIMEOUT_MS do
    local c = client.connect(false)
    local ping = c and client.request(c, "ping", {}, M.TIMEOUT_MS)
    if c then c:close() end
    local u = type(ping) == "table" and ping.update
    if type(u) == "table" then
      if type(u.failed) == "table" and u.failed.attempt == result.attempt then
        return nil, "the new binary did not take over: " .. tostring(u.failed.message) .. "; the daemon goes on as it was"
      end
      if u.generation > result.generation then
        result.ms = math.floor((uv.hrtime() - t0) / 1e6 + 0.5)
        result.version, result.processes, result.pid_now = ping.version, ping.processes, ping.pid
        return true
      end
    end
    core.sleep_ms(10)
  end
  return nil, string.format("no answer from the updated daemon within %d ms", M.TIMEOUT_MS)
end

return M
