-- orch.cliout: how the CLI prints the daemon's replies: JSON, the process
-- table of list/start/stop..., describe's page, durations and sizes.
-- cjson.null is what a JSON null decodes to (orch.client uses cjson)
local NULL = require("cjson").null

local M = {}

-- An empty table is an empty list in every reply the CLI prints as JSON
-- (cjson would print {}).
function M.json(v)
  local text = type(v) == "table" and next(v) == nil and "[]" or require("cjson").encode(v)
  io.stdout:write(text, "\n")
end

-- Whether argv asks for JSON (--json before a "--"), for errors found
-- before or without a parsed command line.
function M.wants_json(argv)
  for _, a in ipairs(argv) do
    if a == "--" then return false end
    if a == "--json" then return true end
  end
  return false
end

-- Reports a failure of verb and returns status: "orch VERB: message" (and
-- the usage line, if given) on stderr; with --json (json true), also
-- {"error": message, "code": code} on stdout, what a script reads (code:
-- the daemon's, e.g. "ENOTFOUND", the client's, or "EUSAGE" for a usage
-- error).
function M.fail(verb, json, status, message, code, usage)
  if json then M.json({ error = message, code = code or (status == 2 and "EUSAGE") or "EFAIL" }) end
  io.stderr:write(string.format("orch %s: %s%s\n", verb, message, usage and ("\n" .. usage) or ""))
  return status
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

-- paint(r, c, text): the padded cell of row r (0: the header), column c,
-- as written (colour codes go around the padding, so columns line up).
local function table_out(rows, header, paint)
  local widths = {}
  for _, row in ipairs({ header, unpack(rows) }) do
    for c, cell in ipairs(row) do widths[c] = math.max(widths[c] or 0, #tostring(cell)) end
  end
  local out = {}
  for r, row in ipairs({ header, unpack(rows) }) do
    local cells = {}
    for c, cell in ipairs(row) do
      local text = tostring(cell)
      local pad = c < #row and string.rep(" ", widths[c] - #text) or ""
      cells[c] = (paint and paint(r - 1, c, text) or text) .. pad
    end
    out[#out + 1] = table.concat(cells, "  "):gsub("%s+$", "")
  end
  io.stdout:write(table.concat(out, "\n"), "\n")
end

-- A status's colour on a terminal (ANSI SGR): running green, on its way
-- yellow, failed red, stopped dim.
M.STATUS_COLOUR = { online = "32", launching = "33", stopping = "33", ["waiting restart"] = "33",
  blocked = "35", errored = "1;31", stopped = "2" }

-- Whether stdout gets colours: a terminal, and NO_COLOR unset or empty.
function M.colour()
  return require("orch.colour").enabled(1)
end

-- list --sort's fields (PM2's pm2-ls.js), each as the list's JSON field
-- (a function: its value) it sorts by. PM2 sorts uptime by the time the
-- process started, so ascending puts the longest running first.
M.SORT_FIELDS = { name = "name", namespace = "namespace", pid = "pid", id = "id", cpu = "cpu", memory = "memory",
  status = "status", uptime = function(p) return -(tonumber(p.uptime_ms) or 0) end }

-- PM2's --sort FIELD[:asc|desc] → { field, desc = true|false }, or nil,
-- message.
function M.sort_spec(text)
  local field, order, extra = (text .. ":"):lower():match("^([^:]*):([^:]*):?(.*)$")
  if not M.SORT_FIELDS[field] then
    local names = {}
    for k in pairs(M.SORT_FIELDS) do names[#names + 1] = k end
    table.sort(names)
    return nil, string.format("--sort: unknown field '%s' (one of %s, then :asc or :desc)", text,
      table.concat(names, ", "))
  end
  if extra ~= "" or (order ~= "" and order ~= "asc" and order ~= "desc") then
    return nil, string.format("--sort: '%s': the order after ':' is asc or desc", text)
  end
  return { field = field, desc = order == "desc" }
end

-- A value of p to compare: stopped processes have no pid (0, as PM2's).
local function sort_key(p, field)
  local f = M.SORT_FIELDS[field]
  local v = type(f) == "function" and f(p) or p[f]
  if v == nil or v == NULL then return 0 end
  return v
end

-- procs in sort's order (nil: by id); ties keep id order, as PM2's stable
-- sort of its id-ordered list does.
local function sorted_procs(procs, sort)
  local out = {}
  for i, p in ipairs(procs) do out[i] = p end
  table.sort(out, function(a, b)
    if sort then
      local x, y = sort_key(a, sort.field), sort_key(b, sort.field)
      if type(x) ~= type(y) then x, y = tostring(x), tostring(y) end
      if x ~= y then
        if sort.desc then return x > y end
        return x < y
      end
    end
    return a.id < b.id
  end)
  return out
end

-- The process table (list, and the replies of start, stop, restart...),
-- in id order or sort's (M.sort_spec), the status coloured on a terminal
-- (colour: true/false to decide, else M.colour()).
function M.procs(procs, colour, sort)
  if #procs == 0 then
    io.stdout:write("no processes\n")
    return
  end
  local sorted = sorted_procs(procs, sort)
  local rows = {}
  for _, p in ipairs(sorted) do
    -- a process failing its health check says so next to its status
    local status = p.health == "unhealthy" and (p.status .. " (unhealthy)") or p.status
    rows[#rows + 1] = { p.id, p.name, p.mode, p.pid == NULL and "-" or p.pid, status,
      p.restarts, p.status == "online" and M.duration(p.uptime_ms) or "-", string.format("%.1f%%", p.cpu),
      M.bytes(p.memory) }
  end
  if colour == nil then colour = M.colour() end
  local paint = colour and function(r, c, text)
    local code = r > 0 and c == 5 and (text:find("(unhealthy)", 1, true) and M.STATUS_COLOUR.errored
      or M.STATUS_COLOUR[text])
    return code and ("\27[" .. code .. "m" .. text .. "\27[0m") or text
  end
  table_out(rows, { "id", "name", "mode", "pid", "status", "restarts", "uptime", "cpu", "memory" }, paint)
end

-- A span of time for a reader: "850 ms", "1.6 s", "2m 05s", "3h 10m", "2d 4h".
function M.span(ms)
  ms = math.floor(tonumber(ms) or 0)
  if ms < 1000 then return ms .. " ms" end
  if ms < 60000 then return (string.format("%.1f", ms / 1000):gsub("%.0$", "")) .. " s" end
  local s = math.floor(ms / 1000)
  if s < 3600 then return string.format("%dm %02ds", math.floor(s / 60), s % 60) end
  if s < 86400 then return string.format("%dh %02dm", math.floor(s / 3600), math.floor(s / 60) % 60) end
  return string.format("%dd %dh", math.floor(s / 86400), math.floor(s / 3600) % 24)
end

-- A word as a shell would read it back: quoted when it holds anything but
-- plain characters.
function M.shell_word(w)
  w = tostring(w)
  if w ~= "" and not w:find("[^%w%-_./:=@%%+,]") then return w end
  return "'" .. w:gsub("'", "'\\''") .. "'"
end

function M.command_line(argv)
  local words = {}
  for i, w in ipairs(argv) do words[i] = M.shell_word(w) end
  return table.concat(words, " ")
end

local function clock(ms)
  return os.date("%Y-%m-%d %H:%M:%S", math.floor(ms / 1000)) .. string.format(".%03d", ms % 1000)
end

-- One line per transition, oldest first: when, event, from -> to, detail.
local function transitions_out(list, indent)
  local lines = {}
  for i, t in ipairs(list) do
    local detail = t.detail ~= NULL and t.detail ~= nil and ("  (" .. t.detail .. ")") or ""
    lines[i] = string.format("%s  %s: %s -> %s%s", clock(t.at), t.event, t.from, t.to, detail)
  end
  return table.concat(lines, "\n" .. string.rep(" ", indent))
end

local function given(v)
  return v ~= nil and v ~= NULL
end

-- describe's last restarts (the daemon keeps 5), newest first: when, and
-- why: "after exit code 3 (automatic, in 300 ms)", the trigger's words ("a
-- watched file changed (PATH)"), "requested (orch restart)".
local REQUESTED = { command = "requested (orch restart)", api = "requested (Lua API)",
  reload = "requested (a reload)" }

local function restarts_out(list, indent)
  local lines = {}
  for i = #list, 1, -1 do
    local r = list[i]
    local why
    if r.cause == "exit" or r.cause == "spawn_error" then
      local what = given(r.signal) and ("killed by " .. r.signal) or given(r.code) and ("exit code " .. r.code)
        or given(r.reason) and r.reason or "exit"
      why = string.format("after %s (automatic%s)", what,
        given(r.delay) and r.delay > 0 and (", in " .. M.span(r.delay)) or "")
    else
      why = REQUESTED[r.cause] or (given(r.reason) and r.reason) or tostring(r.cause)
    end
    lines[#lines + 1] = clock(r.time) .. "  " .. why
  end
  return table.concat(lines, "\n" .. string.rep(" ", indent))
end

-- Why the process last restarted, from its transitions (the last 10) and
-- the cause a trigger left: "2026-... after exit code 3 (automatic, in 400 ms)".
function M.last_restart(p)
  local list = given(p.transitions) and p.transitions or {}
  local cause = given(p.restart_cause) and p.restart_cause or nil
  for i = #list, 1, -1 do
    local t = list[i]
    if t.event == "policy_restart" then
      local exit = list[i - 1]
      local what = exit and exit.event == "exit" and given(exit.detail) and exit.detail or "exited"
      return string.format("%s  after %s (automatic%s)", clock(t.at), what,
        given(t.detail) and (", " .. t.detail) or "")
    elseif t.event == "restart" then
      -- a trigger fires its restart at once: a cause within a second is this one's
      local why = cause and math.abs(t.at - cause.at) < 1000 and cause.why
        or "requested (orch restart, a reload or the Lua API)"
      return string.format("%s  %s", clock(t.at), why)
    end
  end
  if cause then return string.format("%s  %s", clock(cause.at), cause.why) end
  return nil
end

local function last_exit(e)
  local how = given(e.signal) and ("killed by " .. e.signal) or given(e.code) and ("exit code " .. e.code)
    or given(e.error) and ("failed to start: " .. e.error) or "ended"
  return how .. (given(e.uptime_ms) and (" after " .. M.span(e.uptime_ms)) or "")
end

local function health(h)
  local parts = { h.status }
  if given(h.failures) and h.failures > 0 then parts[#parts + 1] = h.failures .. " failed in a row" end
  if given(h.check) then parts[#parts + 1] = h.check end
  if given(h.last) then parts[#parts + 1] = "last: " .. h.last end
  return table.concat(parts, "; ")
end

local function log_line(path, stats)
  for _, s in ipairs(given(stats) and stats or {}) do
    if s.path == path then
      local extra = {}
      extra[#extra + 1] = M.bytes(s.size)
      if s.rotations > 0 then extra[#extra + 1] = s.rotations .. " rotation(s)" end
      if s.dropped > 0 then extra[#extra + 1] = M.bytes(s.dropped) .. " dropped" end
      return path .. " (" .. table.concat(extra, ", ") .. ")"
    end
  end
  return path
end

local WIDTH = 19 -- the label column

-- orch describe's page for each process; env: with its environment.
function M.describe(procs, env)
  local out = {}
  local function line(label, value)
    if not given(value) or value == "" then value = "-" end
    out[#out + 1] = string.format("  %-" .. (WIDTH - 2) .. "s %s", label, tostring(value))
  end
  for i, p in ipairs(procs) do
    if i > 1 then out[#out + 1] = "" end
    out[#out + 1] = string.format("%s:%s (id %s)", p.name, tostring(p.instance), tostring(p.id))
    line("status", p.status .. (given(p.reason) and ("  (" .. p.reason .. ")") or ""))
    line("pid", p.pid)
    line("uptime", p.status == "online" and M.span(p.uptime_ms) or nil)
    line("started at", given(p.started_at) and os.date("%Y-%m-%d %H:%M:%S", p.started_at) or nil)
    line("restarts", p.restarts .. (given(p.unstable_restarts) and p.unstable_restarts > 0
      and string.format(" (%d unstable in a row)", p.unstable_restarts) or ""))
    if given(p.last_restarts) and #p.last_restarts > 0 then
      line("last restarts", restarts_out(p.last_restarts, WIDTH + 1))
    else
      line("last restart", M.last_restart(p))
    end
    line("last exit", given(p.last_exit) and last_exit(p.last_exit) or nil)
    line("cpu", string.format("%.1f%%", p.cpu or 0))
    line("memory", M.bytes(p.memory))
    line("mode", string.format("%s, %s instance(s)", tostring(p.mode), tostring(p.instances)))
    local o = given(p.options) and p.options or {}
    line("namespace", o.namespace)
    line("source", p.source)
    line("script", p.script)
    line("args", given(p.args) and M.command_line(p.args) or nil)
    line("command", given(p.exec) and M.command_line(p.exec) or nil)
    line("interpreter", p.interpreter)
    line("cwd", p.cwd)
    line("out log", given(p.out_log) and log_line(p.out_log, p.log_stats) or nil)
    line("err log", given(p.err_log) and log_line(p.err_log, p.log_stats) or nil)
    line("log problems", p.log_problems)
    line("autorestart", p.autorestart and string.format("yes: errored after %d unstable restarts (up less than %s)",
      p.max_restarts, M.span(p.min_uptime)) or "no")
    line("stop", string.format("%s, SIGKILL after %s", tostring(p.kill_signal), M.span(p.kill_timeout)))
    line("health", given(p.health) and health(p.health) or nil)
    if given(o.uid) or given(o.gid) then
      line("user", (given(o.uid) and tostring(o.uid) or "orch's") .. (given(o.gid) and (", group " .. o.gid) or ""))
    end
    local within = {}
    for _, k in ipairs({ "umask", "nice", "oom_score_adj" }) do
      if given(o[k]) then within[#within + 1] = k .. " " .. o[k] end
    end
    local limits = given(o.limits) and o.limits or {}
    local limit_names = {}
    for k in pairs(limits) do limit_names[#limit_names + 1] = k end
    table.sort(limit_names)
    for _, k in ipairs(limit_names) do
      local l = limits[k]
      within[#within + 1] = k .. " " .. (l.soft == l.hard and tostring(l.soft) or (l.soft .. "/" .. l.hard))
    end
    if #within > 0 then line("limits", table.concat(within, ", ")) end
    if given(p.listen) and #p.listen > 0 then
      line("listen", table.concat(p.listen, ", ") .. (given(p.balance) and ("  (balance " .. p.balance .. ")") or ""))
    end
    if given(p.last_user_error) then
      local ue = p.last_user_error
      line("last user error", string.format("%s failed at %s: %s", ue.what, os.date("%Y-%m-%d %H:%M:%S", ue.time),
        ue.message))
    end
    line("transitions", given(p.transitions) and transitions_out(p.transitions, WIDTH + 1) or nil)
    if env then
      local names = {}
      for k in pairs(given(p.env) and p.env or {}) do names[#names + 1] = k end
      table.sort(names)
      local lines = {}
      for j, k in ipairs(names) do lines[j] = k .. "=" .. M.shell_word(p.env[k]) end
      line("environment", table.concat(lines, "\n" .. string.rep(" ", WIDTH + 1)))
    else
      line("environment", "orch describe " .. M.shell_word(p.name) .. " --env-vars shows it")
    end
  end
  io.stdout:write(table.concat(out, "\n"), "\n")
end

return M
