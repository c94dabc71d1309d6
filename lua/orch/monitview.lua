-- orch.monitview: what `orch monit` shows, as a list of screen lines made
-- from its state (orch.monit): a title, the process table with CPU and
-- memory histories (sparklines), the selected process's log lines and
-- events, and a line of keys or messages. Pure: no terminal, no daemon, so
-- the layout can be tried on any size.
local cliout = require("orch.cliout")

local M = {}

M.MIN_COLS, M.MIN_ROWS = 40, 10

-- Glyphs: UTF-8, or plain ASCII for terminals (or locales) without it.
M.GLYPHS = {
  utf8 = { spark = { "▁", "▂", "▃", "▄", "▅", "▆", "▇", "█" }, rule = "─", mark = "▶", dot = "·" },
  ascii = { spark = { "_", ".", ",", "-", "~", "=", "+", "#" }, rule = "-", mark = ">", dot = "|" },
}

-- Display width: one column per UTF-8 character (no wide characters in what
-- orch writes; an app's wide ones are cut at the margin, see orch.monitterm).
local function width(s)
  local _, cont = s:gsub("[\128-\191]", "")
  return #s - cont
end
M.width = width

-- An app's log line made harmless for the screen: escape sequences go,
-- tabs become spaces, other control characters show as '?'.
function M.clean(s)
  s = s:gsub("\27%[[0-?]*[ -/]*[@-~]", ""):gsub("\27%][^\7\27]*[\7]?", ""):gsub("\27.?", "")
  s = s:gsub("\t", "    "):gsub("[%z\1-\31\127]", "?")
  return s
end

-- s cut or padded to exactly w columns; SGR sequences in s take none.
function M.fit(s, w)
  if w <= 0 then return "" end
  local out, used, i, n = {}, 0, 1, #s
  local coloured = false
  while i <= n do
    local sgr = s:match("^\27%[[0-9;]*m", i)
    if sgr then
      out[#out + 1] = sgr
      coloured = true
      i = i + #sgr
    else
      local ch = s:match("^[%z\1-\127\192-\255][\128-\191]*", i) or s:sub(i, i)
      if used == w then break end
      out[#out + 1] = ch
      used = used + 1
      i = i + #ch
    end
  end
  if i <= n and coloured then out[#out + 1] = "\27[0m" end
  return table.concat(out) .. string.rep(" ", w - used)
end

-- text in SGR code (nil: plain), when colours are on.
local function paint(v, code, text)
  if not code or not v.colour then return text end
  return "\27[" .. code .. "m" .. text .. "\27[0m"
end

-- values (numbers, oldest first) as a sparkline of the last n: lo shows as
-- the lowest glyph, hi as the highest.
function M.spark(values, n, glyphs, lo, hi)
  local out = {}
  for k = 1, n - #values do out[k] = " " end
  for k = math.max(1, #values - n + 1), #values do
    local f = hi > lo and (values[k] - lo) / (hi - lo) or (hi > 0 and 1 or 0)
    local level = math.floor(f * (#glyphs - 1) + 0.5) + 1
    out[#out + 1] = glyphs[math.min(#glyphs, math.max(1, level))]
  end
  return table.concat(out)
end

-- The range a history is drawn on: CPU from 0 to 100 % (more for a tree
-- busy on several cores); memory from its lowest to its highest value, so
-- that growth shows, or from 0 when it hardly moves (a full bar: steady).
local function range(values, kind)
  local lo, hi = math.huge, 0
  for _, x in ipairs(values) do
    if x < lo then lo = x end
    if x > hi then hi = x end
  end
  if kind == "cpu" then return 0, math.max(100, hi) end
  if hi - lo <= hi * 0.02 then lo = 0 end
  return lo, hi
end

local function history(v, values, kind, n, code)
  local lo, hi = range(values, kind)
  return paint(v, code, M.spark(values, n, v.glyphs.spark, lo, hi))
end

local function pad_left(s, w)
  return string.rep(" ", w - width(s)) .. s
end

-- Columns of the table for cols columns: { name width, spark width }.
local function columns(cols)
  local spark = cols >= 110 and 16 or cols >= 90 and 10 or cols >= 72 and 6 or 0
  -- mark 2, id 4, status 11, restarts 4, cpu 7, mem 9, uptime 7, pid 8, gaps
  local fixed = 2 + 5 + 12 + 5 + 7 + 10 + 7 + 8 + (spark > 0 and 2 * (spark + 1) or 0)
  return math.max(8, cols - fixed), spark
end

local function header_row(v, cols)
  local name_w, spark = columns(cols)
  local h = "  " .. pad_left("id", 4) .. " " .. M.fit("name", name_w) .. " " .. M.fit("status", 11)
    .. " " .. pad_left("↺", 4) .. " " .. pad_left("cpu", 6) .. (spark > 0 and (" " .. M.fit("", spark)) or "")
    .. " " .. pad_left("memory", 9) .. (spark > 0 and (" " .. M.fit("", spark)) or "")
    .. " " .. pad_left("uptime", 6) .. " " .. pad_left("pid", 7)
  if not v.utf8 then h = h:gsub("↺", "r") end
  return paint(v, "1", M.fit(h, cols))
end

local function proc_row(v, p, selected, cols)
  local name_w, spark = columns(cols)
  local g = v.glyphs
  local hist = v.history[p.id] or { cpu = {}, mem = {} }
  local label = M.clean(p.label or p.name)
  local status = M.fit(p.status, 11)
  local row = (selected and g.mark or " ") .. " " .. pad_left(tostring(p.id), 4) .. " " .. M.fit(label, name_w)
    .. " " .. paint(v, cliout.STATUS_COLOUR[p.status], status)
    .. " " .. pad_left(tostring(p.restarts or 0), 4)
    .. " " .. pad_left(string.format("%.1f%%", p.cpu or 0), 6)
    .. (spark > 0 and (" " .. history(v, hist.cpu, "cpu", spark, "36")) or "")
    .. " " .. pad_left(cliout.bytes(p.memory), 9)
    .. (spark > 0 and (" " .. history(v, hist.mem, "mem", spark, "35")) or "")
    .. " " .. pad_left(p.status == "online" and cliout.duration(p.uptime_ms) or "-", 6)
    .. " " .. pad_left(p.pid == nil or p.pid == v.null and "-" or tostring(p.pid), 7)
  row = M.fit(row, cols)
  if selected then row = "\27[7m" .. row:gsub("\27%[0m", "\27[0;7m") .. "\27[0m" end
  return row
end

local function rule(v, title, cols)
  local g = v.glyphs
  local t = g.rule .. " " .. title .. " "
  return paint(v, "2", M.fit(t .. string.rep(g.rule, math.max(0, cols - width(t))), cols))
end

local function clock(ms)
  return os.date("%H:%M:%S", math.floor(ms / 1000))
end

local function given(v, x)
  return x ~= nil and x ~= v.null and x ~= ""
end

-- What a record of the event stream (docs/protocol.md, "Events") says
-- beyond its kind.
local function record_detail(v, r)
  local arrow = v.utf8 and " → " or " -> "
  local k, parts = r.kind, {}
  local function add(x) if given(v, x) then parts[#parts + 1] = tostring(x) end end
  if k == "exit" then
    add(given(v, r.signal) and ("killed by " .. tostring(r.signal)) or given(v, r.code) and ("code " .. tostring(r.code)))
    if given(v, r.uptime_ms) then add("after " .. cliout.span(r.uptime_ms)) end
  elseif k == "restart" then
    add(r.cause)
    add(given(v, r.signal) and tostring(r.signal) or given(v, r.code) and ("code " .. tostring(r.code)))
    add(r.reason)
    if given(v, r.delay) and r.delay > 0 then add("in " .. cliout.span(r.delay)) end
    if given(v, r.restarts) then add("restart #" .. tostring(r.restarts)) end
  elseif k == "start" then
    if given(v, r.pid) then add("pid " .. tostring(r.pid)) end
  elseif k == "stopping" then
    add(r.signal)
  elseif k == "health" then
    add(r.healthy == true and "healthy" or "unhealthy")
    add(r.message)
  elseif k == "reload" then
    add(r.step)
    if given(v, r.new_id) then add("new id " .. tostring(r.new_id)) end
    add(r.reason)
  elseif k == "scale" then
    add(tostring(r.from) .. arrow .. tostring(r.to) .. " instances")
  elseif k == "config" then
    add(r.change)
    add(r.source)
  elseif k == "spawn_error" then
    add(r.error)
  else
    add(r.reason)
  end
  return table.concat(parts, ", ")
end

-- An event as a line: "12:00:01  exit  online → errored  exit code 1"
-- (describe's transitions) or "12:00:01  restart  exit, code 1, in 100 ms"
-- (a record of the event stream).
function M.event_line(v, e)
  if e.kind then
    local name = tostring(e.kind)
    return M.clean(clock(tonumber(e.time) or 0) .. " " .. name .. string.rep(" ", 11 - #name) .. " "
      .. record_detail(v, e))
  end
  local arrow = v.utf8 and " → " or " -> "
  local name = tostring(e.event or "?")
  local parts = { clock(e.at or 0), " ", name .. string.rep(" ", 11 - #name) }
  if e.from and e.to and e.from ~= v.null and e.to ~= v.null then
    parts[#parts + 1] = " " .. e.from .. arrow .. e.to
  end
  if e.detail and e.detail ~= v.null and e.detail ~= "" then parts[#parts + 1] = "  " .. e.detail end
  return M.clean(table.concat(parts))
end

local function footer(v, cols)
  if v.filter_editing then
    return M.fit("filter: " .. v.filter .. (v.utf8 and "▏" or "_") .. "   (Enter keeps it, Esc clears it)", cols)
  end
  if v.message then return paint(v, v.message_error and "1;31" or "1", M.fit(v.message, cols)) end
  local keys = "↑↓ select  r restart  R reload  s stop  S start  +/- scale  / filter  q quit"
  if not v.utf8 then keys = keys:gsub("↑↓", "up/down") end
  return paint(v, "2", M.fit(keys, cols))
end

-- The screen for state v (orch.monit's) on cols x rows: a list of lines,
-- each exactly cols wide.
function M.build(v, cols, rows)
  if cols < M.MIN_COLS or rows < M.MIN_ROWS then
    local lines = { M.fit(string.format("terminal too small: %dx%d (at least %dx%d)", cols, rows,
      M.MIN_COLS, M.MIN_ROWS), cols) }
    for r = 2, rows do lines[r] = M.fit("", cols) end
    return lines
  end
  local g = v.glyphs
  local lines = {}
  local function add(s) lines[#lines + 1] = s end
  -- title
  local online = 0
  for _, p in ipairs(v.all) do if p.status == "online" then online = online + 1 end end
  local title = string.format(" orch monit %s %d process%s, %d online", g.dot, #v.all, #v.all == 1 and "" or "es", online)
  if v.filter ~= "" then title = title .. string.format(" %s filter /%s (%d shown)", g.dot, v.filter, #v.procs) end
  if v.problem then title = title .. " " .. g.dot .. " " .. v.problem end
  local right = clock(v.now) .. " "
  add(paint(v, "1", M.fit(M.fit(title, cols - #right) .. right, cols)))
  add(header_row(v, cols))
  -- the table: at most 40% of the rest, at least 3 rows
  local body = rows - 2 - 1 -- title, header, footer
  local table_rows = math.max(3, math.min(#v.procs, math.floor(body * 0.4)))
  if #v.procs == 0 then
    add(M.fit(v.filter ~= "" and "  no process matches the filter" or "  no processes (orch start ...)", cols))
    for _ = 2, table_rows do add(M.fit("", cols)) end
  else
    -- the first row shown keeps the selection in view
    local first = v.scroll or 1
    if v.sel < first then first = v.sel end
    if v.sel > first + table_rows - 1 then first = v.sel - table_rows + 1 end
    first = math.max(1, math.min(first, #v.procs - table_rows + 1))
    v.scroll = first
    for i = first, first + table_rows - 1 do
      local p = v.procs[i]
      add(p and proc_row(v, p, i == v.sel, cols) or M.fit("", cols))
    end
  end
  -- logs and events of the selected process
  local sel = v.procs[v.sel]
  local left = rows - #lines - 1
  local event_rows = math.max(1, math.min(8, math.floor((left - 2) / 3)))
  local log_rows = left - 2 - event_rows
  local who = sel and M.clean(string.format("%s:%s (id %s)", sel.name, tostring(sel.instance), tostring(sel.id))) or "-"
  add(rule(v, "logs " .. who, cols))
  local logs = v.logs or {}
  for k = math.max(1, #logs - log_rows + 1), #logs do
    local l = logs[k]
    local text = M.fit(M.clean(l.text), cols) -- an app's bytes never reach the terminal as sequences
    add(l.stream == "err" and paint(v, "31", text) or text)
  end
  for _ = #lines + 1, rows - 2 - event_rows do add(M.fit("", cols)) end
  add(rule(v, "events " .. who .. "", cols))
  local events = v.events or {}
  for k = #events, math.max(1, #events - event_rows + 1), -1 do add(M.fit(M.event_line(v, events[k]), cols)) end
  for _ = #lines + 1, rows - 1 do add(M.fit("", cols)) end
  add(footer(v, cols))
  if not v.utf8 then
    -- a terminal without UTF-8: an app's (or a name's) characters show as '?'
    for r, line in ipairs(lines) do lines[r] = line:gsub("[\192-\255][\128-\191]*", "?"):gsub("[\128-\255]", "?") end
  end
  return lines
end

return M
