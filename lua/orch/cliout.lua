-- orch.cliout: how the CLI prints the daemon's replies: JSON, the process
-- table of list/start/stop..., describe's page, durations and sizes.
local client = require("orch.client")

local M = {}

-- An empty table is an empty list in every reply the CLI prints as JSON
-- (cjson would print {}).
function M.json(v)
  local text = type(v) == "table" and next(v) == nil and "[]" or require("cjson").encode(v)
  io.stdout:write(text, "\n")
end

function M.duration(ms)
  local s = math.floor((ms or 0) / 1000)
  if s < 60 then return s .. "s" end
  if s < 3600 then return math.floor(s / 60) .. "m" end
  if s < 86400 then return math.floor(s / 3600) .. "h" end
  return math.floor(s / 86400) .. "D"
end

function M.bytes(n)
  n = n or 0
  if n < 1024 then return n .. "b" end
  if n < 1024 * 1024 then return string.format("%.1fkb", n / 1024) end
  if n < 1024 ^ 3 then return string.format("%.1fmb", n / 1024 / 1024) end
  return string.format("%.1fgb", n / 1024 ^ 3)
end

local function table_out(rows, header)
  local widths = {}
  for _, row in ipairs({ header, unpack(rows) }) do
    for c, cell in ipairs(row) do widths[c] = math.max(widths[c] or 0, #tostring(cell)) end
  end
  local out = {}
  for _, row in ipairs({ header, unpack(rows) }) do
    local cells = {}
    for c, cell in ipairs(row) do cells[c] = string.format("%-" .. widths[c] .. "s", tostring(cell)) end
    out[#out + 1] = table.concat(cells, "  "):gsub("%s+$", "")
  end
  io.stdout:write(table.concat(out, "\n"), "\n")
end

-- The process table (list, and the replies of start, stop, restart...).
function M.procs(procs)
  if #procs == 0 then
    io.stdout:write("no processes\n")
    return
  end
  local rows = {}
  for _, p in ipairs(procs) do
    rows[#rows + 1] = { p.id, p.name, p.mode, p.pid == client.null and "-" or p.pid, p.status,
      p.restarts, p.status == "online" and M.duration(p.uptime_ms) or "-", string.format("%.1f%%", p.cpu),
      M.bytes(p.memory) }
  end
  table_out(rows, { "id", "name", "mode", "pid", "status", "restarts", "uptime", "cpu", "memory" })
end

-- One line per transition, oldest first: when, event, from -> to, detail.
local function transitions_out(list)
  local lines = {}
  for i, t in ipairs(list) do
    local detail = t.detail ~= client.null and t.detail ~= nil and ("  (" .. t.detail .. ")") or ""
    lines[i] = string.format("%s.%03d  %s: %s -> %s%s", os.date("%Y-%m-%d %H:%M:%S", math.floor(t.at / 1000)),
      t.at % 1000, t.event, t.from, t.to, detail)
  end
  return table.concat(lines, "\n" .. string.rep(" ", 19))
end

function M.describe(procs)
  local keys = { "id", "name", "instance", "status", "pid", "restarts", "unstable_restarts", "uptime_ms", "cpu",
    "memory", "mode", "source", "script", "args", "exec", "interpreter", "cwd", "instances", "balance", "listen",
    "cluster", "out_log", "err_log",
    "log_problems", "log_stats", "started_at", "last_exit", "reason", "autorestart", "max_restarts", "min_uptime", "kill_signal", "kill_timeout", "health",
    "last_user_error", "transitions" }
  for i, p in ipairs(procs) do
    if i > 1 then io.stdout:write("\n") end
    for _, k in ipairs(keys) do
      local v = p[k]
      if v == client.null or v == nil then v = "-"
      elseif k == "last_user_error" then
        v = string.format("%s failed at %s: %s", v.what, os.date("%Y-%m-%d %H:%M:%S", v.time), v.message)
      elseif k == "transitions" then
        v = transitions_out(v)
      elseif type(v) == "table" then v = require("cjson").encode(v)
      elseif k == "started_at" then v = os.date("%Y-%m-%d %H:%M:%S", v)
      elseif k == "memory" then v = M.bytes(v) end
      io.stdout:write(string.format("%-18s %s\n", k, tostring(v)))
    end
  end
end

return M
