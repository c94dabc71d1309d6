-- orch.inspect: a readable rendering of any Lua value, for `orch eval` and
-- the REPL. Tables are printed with sorted keys, cycles as <cycle>, nesting
-- beyond a depth as {...}, long tables cut with "...".
local M = {}

local MAX_DEPTH, MAX_ITEMS, INDENT = 4, 100, "  "

local function key_order(a, b)
  local ta, tb = type(a), type(b)
  if ta ~= tb then return ta < tb end
  if ta == "number" or ta == "string" then return a < b end
  return tostring(a) < tostring(b)
end

local function render_key(k)
  if type(k) == "string" and k:match("^[%a_][%w_]*$") then return k end
  if type(k) == "string" then return "[" .. string.format("%q", k) .. "]" end
  return "[" .. tostring(k) .. "]"
end

local function render(v, depth, seen, out, pad)
  local t = type(v)
  if t == "string" then
    out[#out + 1] = string.format("%q", v):gsub("\\\n", "\\n")
  elseif t ~= "table" then
    out[#out + 1] = tostring(v)
  elseif next(v) == nil and getmetatable(v) and getmetatable(v).__tostring then
    out[#out + 1] = tostring(v) -- an object (e.g. a process) shows its own face
  elseif seen[v] then
    out[#out + 1] = "<cycle>"
  elseif depth >= MAX_DEPTH then
    out[#out + 1] = next(v) == nil and "{}" or "{...}"
  elseif next(v) == nil then
    out[#out + 1] = "{}"
  else
    seen[v] = true
    local n, keys = #v, {}
    for k in pairs(v) do
      if not (type(k) == "number" and k >= 1 and k <= n and k == math.floor(k)) then keys[#keys + 1] = k end
    end
    table.sort(keys, key_order)
    local inner = pad .. INDENT
    out[#out + 1] = "{\n"
    local count = 0
    local function item(prefix, value)
      count = count + 1
      if count > MAX_ITEMS then return false end
      out[#out + 1] = inner .. prefix
      render(value, depth + 1, seen, out, inner)
      out[#out + 1] = ",\n"
      return true
    end
    local more = false
    for i = 1, n do
      if not item("", v[i]) then more = true break end
    end
    if not more then
      for _, k in ipairs(keys) do
        if not item(render_key(k) .. " = ", v[k]) then more = true break end
      end
    end
    if more then out[#out + 1] = inner .. "...\n" end
    out[#out + 1] = pad .. "}"
    seen[v] = nil
  end
end

function M.inspect(v)
  local out = {}
  render(v, 0, {}, out, "")
  return table.concat(out)
end

-- Several values (as returned by a chunk), separated by tabs like print.
function M.values(n, ...)
  local parts = {}
  for i = 1, n do parts[i] = M.inspect((select(i, ...))) end
  return table.concat(parts, "\t")
end

return M
