-- orch.complete: what Tab offers in `orch repl`, computed in the daemon
-- (the control command `complete`), where the values live. Given the text
-- before the cursor, it finds the word being typed and the names that can
-- replace it:
--   foo            globals of the REPL environment, _G's, Lua's keywords
--   a.b.c  a.b:m   fields of a table (also through an __index table, so a
--                  luv handle's methods), methods after ':'; strings offer
--                  the string library
--   orch.get("w    app names inside the quotes of orch.get/stop/restart/
--                  delete/signal
-- Nothing runs user code: fields are read with rawget, metatables with
-- debug.getmetatable, so completing never calls an __index function.
local M = {}

M.MAX = 200 -- candidates returned at most

local KEYWORDS = { "and", "break", "do", "else", "elseif", "end", "false", "for", "function", "goto", "if", "in",
                   "local", "nil", "not", "or", "repeat", "return", "then", "true", "until", "while" }
local is_keyword = {}
for _, k in ipairs(KEYWORDS) do is_keyword[k] = true end

-- Functions of the API whose first argument is a target.
local TARGET_FUNCS = { get = true, stop = true, restart = true, delete = true, signal = true }

-- Where the text ends: nil (code), "comment", or the quote character and the
-- position where that string's contents begin.
local function scan(s)
  local i, n = 1, #s
  while i <= n do
    local c = s:sub(i, i)
    if c == "-" and s:sub(i + 1, i + 1) == "-" then
      local eq = s:match("^%[(=*)%[", i + 2)
      if not eq then return "comment" end
      local close = s:find("]" .. eq .. "]", i + 4 + #eq, true)
      if not close then return "comment" end
      i = close + #eq + 2
    elseif c == "[" and s:match("^%[=*%[", i) then
      local eq = s:match("^%[(=*)%[", i)
      local close = s:find("]" .. eq .. "]", i + 2 + #eq, true)
      if not close then return "[", i + 2 + #eq end
      i = close + #eq + 2
    elseif c == '"' or c == "'" then
      local j = i + 1
      while true do
        local d = s:sub(j, j)
        if d == "" then return c, i + 1 end
        if d == "\\" then j = j + 2
        elseif d == c then break
        else j = j + 1 end
      end
      i = j + 1
    else
      i = i + 1
    end
  end
  return nil
end

-- A table's field names, following __index tables (not functions).
local function fields(v, methods_only)
  if type(v) == "string" then v = string end
  local names, seen = {}, {}
  local depth = 0
  while v ~= nil and depth < 8 do
    if type(v) == "table" then
      for k, val in next, v do
        if type(k) == "string" and k:match("^[%a_][%w_]*$") and not is_keyword[k] and not seen[k]
           and (not methods_only or type(val) == "function") then
          seen[k] = true
          names[#names + 1] = k
        end
      end
    end
    local mt = debug.getmetatable(v)
    local index = type(mt) == "table" and rawget(mt, "__index") or nil
    v = type(index) == "table" and index or nil
    depth = depth + 1
  end
  return names
end

local function field(v, k)
  if type(v) == "string" then v = string end
  for _ = 1, 8 do
    if type(v) ~= "table" and type(v) ~= "userdata" then return nil end
    local got = type(v) == "table" and rawget(v, k) or nil
    if got ~= nil then return got end
    local mt = debug.getmetatable(v)
    local index = type(mt) == "table" and rawget(mt, "__index") or nil
    if type(index) ~= "table" then return nil end
    v = index
  end
  return nil
end

-- Names starting with "_" (orch._dispatch, _G) only once "_" is typed.
local function finish(word, names, start)
  local out, seen = {}, {}
  local hidden = word:sub(#start + 1, #start + 1) ~= "_"
  for _, n in ipairs(names) do
    local full = start .. n
    if full:sub(1, #word) == word and not seen[full] and not (hidden and n:sub(1, 1) == "_") then
      seen[full] = true
      out[#out + 1] = full
    end
  end
  table.sort(out)
  while #out > M.MAX do out[#out] = nil end
  return word, out
end

-- Returns the word being completed (the end of `before`) and the sorted
-- candidates that replace it. env: the REPL's environment (its __index is
-- _G); app_names: list of the engine's app names.
function M.complete(env, before, app_names)
  local state, from = scan(before)
  if state == "comment" then return "", {} end
  if state then
    if state == "[" then return "", {} end
    local word = before:sub(from)
    local fn = before:sub(1, from - 2):match("orch%s*[.:]%s*([%a_][%w_]*)%s*%(%s*$")
    if not (fn and TARGET_FUNCS[fn]) then return word, {} end
    local names = {}
    for _, n in ipairs(app_names or {}) do names[#names + 1] = n end
    if fn ~= "get" then names[#names + 1] = "all" end
    return finish(word, names, "")
  end

  local i = #before
  while i >= 1 and before:sub(i, i):match("[%w_.:]") do i = i - 1 end
  local word = before:sub(i + 1)
  word = word:match("^.*%.%.+(.-)$") or word -- after a concatenation
  local lead = word:sub(1, 1)
  if word ~= "" and not lead:match("[%a_]") then return word, {} end

  local base, sep = word:match("^(.-)([.:])[%w_]*$")
  if not base then
    -- a global name
    local names = {}
    for k in next, env do names[#names + 1] = k end
    for k in next, _G do names[#names + 1] = k end
    local ok = {}
    for _, k in ipairs(names) do
      if type(k) == "string" and k:match("^[%a_][%w_]*$") then ok[#ok + 1] = k end
    end
    for _, k in ipairs(KEYWORDS) do ok[#ok + 1] = k end
    return finish(word, ok, "")
  end
  local v
  for seg in (base .. "."):gmatch("([^.]*)%.") do
    if not seg:match("^[%a_][%w_]*$") then return word, {} end
    if v == nil then
      v = rawget(env, seg)
      if v == nil then v = rawget(_G, seg) end
    else
      v = field(v, seg)
    end
    if v == nil then return word, {} end
  end
  return finish(word, fields(v, sep == ":"), base .. sep)
end

return M
