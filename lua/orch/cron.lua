-- orch.cron: cron expressions for cron_restart. Five fields (minute hour
-- day-of-month month day-of-week) or six (seconds first), with *, lists,
-- ranges, steps, month and day names, and the @hourly/@daily/... macros.
-- Times are local, as in cron. When both day fields are restricted, a day
-- matching either one matches (cron's rule).
local M = {}

local MACROS = {
  ["@yearly"] = "0 0 1 1 *", ["@annually"] = "0 0 1 1 *", ["@monthly"] = "0 0 1 * *",
  ["@weekly"] = "0 0 * * 0", ["@daily"] = "0 0 * * *", ["@midnight"] = "0 0 * * *", ["@hourly"] = "0 * * * *",
}
local NAMES = {
  month = { jan = 1, feb = 2, mar = 3, apr = 4, may = 5, jun = 6, jul = 7, aug = 8, sep = 9, oct = 10, nov = 11, dec = 12 },
  dow = { sun = 0, mon = 1, tue = 2, wed = 3, thu = 4, fri = 5, sat = 6 },
}
local FIELDS = {
  { name = "second", min = 0, max = 59 },
  { name = "minute", min = 0, max = 59 },
  { name = "hour", min = 0, max = 23 },
  { name = "day of month", min = 1, max = 31 },
  { name = "month", min = 1, max = 12, names = NAMES.month },
  { name = "day of week", min = 0, max = 7, names = NAMES.dow }, -- 7 is Sunday too
}

local function value(s, f)
  local n = tonumber(s)
  if not n and f.names then n = f.names[s:lower()] end
  if not n or n ~= math.floor(n) or n < f.min or n > f.max then return nil end
  return n
end

-- A set {[n] = true} from one field, or nil, message.
local function field_set(text, f)
  local set, any = {}, text == "*" or text == "?"
  for part in text:gmatch("[^,]+") do
    local range, step = part:match("^([^/]+)/(%d+)$")
    range = range or part
    step = tonumber(step) or 1
    if step < 1 then return nil, "step must be at least 1 in '" .. part .. "'" end
    local lo, hi
    if range == "*" or range == "?" then
      lo, hi = f.min, f.max
    else
      local a, b = range:match("^([^-]+)-([^-]+)$")
      lo, hi = value(a or range, f), value(b or range, f)
      if not (lo and hi) then
        return nil, string.format("'%s' is not a valid %s (%d-%d)", part, f.name, f.min, f.max)
      end
      if a == nil and part:find("/") then hi = f.max end -- "5/15": from 5 on
    end
    if lo > hi then return nil, string.format("range '%s' runs backwards", part) end
    for n = lo, hi, step do set[n] = true end
  end
  if f.name == "day of week" and set[7] then set[0] = true end
  return set, any
end

-- Returns a schedule, or nil and a message saying what is wrong.
function M.parse(expr)
  if type(expr) ~= "string" then return nil, "expected a string" end
  local text = expr:match("^%s*(.-)%s*$")
  text = MACROS[text:lower()] or text
  local parts = {}
  for p in text:gmatch("%S+") do parts[#parts + 1] = p end
  if #parts == 5 then table.insert(parts, 1, "0") end
  if #parts ~= 6 then return nil, "expected 5 fields (or 6 with seconds), got " .. (#parts == 7 and 7 or #parts) end
  local sched = {}
  for i, f in ipairs(FIELDS) do
    local set, any_or_err = field_set(parts[i], f)
    if not set then return nil, f.name .. ": " .. any_or_err end
    sched[i] = set
    sched["any" .. i] = any_or_err
  end
  return sched
end

local function day_matches(s, t)
  local dom, dow = s[4][t.day], s[6][t.wday - 1]
  if s.any4 then return dow end
  if s.any6 then return dom end
  return dom or dow
end

-- The first time (seconds since the epoch, local calendar) strictly after
-- `after` that matches, or nil if none within 5 years (e.g. "0 0 31 2 *").
function M.next_after(s, after)
  local t = os.date("*t", math.floor(after) + 1)
  local limit = after + 5 * 366 * 86400
  while true do
    local now = os.time(t)
    if not now or now > limit then return nil end
    t = os.date("*t", now) -- normalise (month/day overflow, DST)
    if not s[5][t.month] then
      t.month, t.day, t.hour, t.min, t.sec = t.month + 1, 1, 0, 0, 0
    elseif not day_matches(s, t) then
      t.day, t.hour, t.min, t.sec = t.day + 1, 0, 0, 0
    elseif not s[3][t.hour] then
      t.hour, t.min, t.sec = t.hour + 1, 0, 0
    elseif not s[2][t.min] then
      t.min, t.sec = t.min + 1, 0
    elseif not s[1][t.sec] then
      t.sec = t.sec + 1
    else
      return os.time(t)
    end
  end
end

return M
