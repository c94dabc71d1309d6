-- orch.fdbudget: whether the daemon has the descriptors for one more
-- launch. A launch holds up to PER_LAUNCH at its peak (log files, pipes, IPC
-- channel, exec-error pipe, pidfd), and KEPT stay free for everything else
-- (control connections, log rotation, health checks), so that running out
-- fails the app that does not fit, never the daemon.
--
-- Counting the open descriptors (/proc/self/fd) costs O(open fds), as much
-- as a spawn with a thousand open: a count is reused, plus PER_LAUNCH per
-- launch since, until that estimate comes near the limit or is a second old.
local uv = require("luv")
local core = require("orch.core")

local M = {}

M.PER_LAUNCH, M.KEPT = 12, 16

-- A budget to ask for each launch.
function M.new() return { count = nil } end

-- Takes one launch's share of budget b: nil when it fits (or the count is
-- unknown), else the EMFILE message for the app that does not fit.
function M.take(b)
  local c, now = b.count, uv.hrtime() / 1e6
  if not c or c.open + M.PER_LAUNCH + M.KEPT > c.limit or now - c.at > 1000 then
    local open, limit = core.fd_count()
    if not open then return nil end
    c = { open = open, limit = limit, at = now }
    b.count = c
  end
  local open = c.open
  c.open = c.open + M.PER_LAUNCH
  if open + M.PER_LAUNCH + M.KEPT <= c.limit then return nil end
  return string.format("EMFILE: too many open files: orch has %d of its %d descriptors open, a launch needs up "
    .. "to %d and %d stay free for the daemon (raise the hard limit: ulimit -Hn, LimitNOFILE=)", open, c.limit,
    M.PER_LAUNCH, M.KEPT)
end

return M
