-- orch.relaxjson: PM2's JSON. PM2 evaluates a .json process file as a
-- JavaScript expression, so its users write JSON5-style files: comments,
-- unquoted keys, single-quoted strings, trailing commas. This reads that
-- literal subset (no expressions: nothing runs) and says where it stops:
-- decode(text) -> value, or nil, message, line, whether it stopped at an
-- expression.

local sub, find, char = string.sub, string.find, string.char
local concat = table.concat

local M = {}

-- A JSON null: distinct from "absent" while decoding (a list keeps its
-- length), stripped by the caller where null means "not given". cjson's,
-- so that a null reads the same from every JSON orch takes.
M.null = require("cjson").null

local MAX_DEPTH = 200

local ESCAPES = { b = "\b", f = "\f", n = "\n", r = "\r", t = "\t", v = "\v", ["0"] = "\0",
                  ['"'] = '"', ["'"] = "'", ["\\"] = "\\", ["/"] = "/" }

local function utf8(cp)
  if cp < 0x80 then return char(cp) end
  if cp < 0x800 then return char(0xC0 + math.floor(cp / 0x40), 0x80 + cp % 0x40) end
  if cp < 0x10000 then
    return char(0xE0 + math.floor(cp / 0x1000), 0x80 + math.floor(cp / 0x40) % 0x40, 0x80 + cp % 0x40)
  end
  return char(0xF0 + math.floor(cp / 0x40000), 0x80 + math.floor(cp / 0x1000) % 0x40,
    0x80 + math.floor(cp / 0x40) % 0x40, 0x80 + cp % 0x40)
end

-- Raised as a table so that only our own errors become messages.
local Fail = {}

function M.decode(text)
  local pos, line, depth = 1, 1, 0

  local function fail(msg, at_line, expression)
    error(setmetatable({ msg = msg, line = at_line or line, expression = expression }, Fail), 0)
  end

  local function count_lines(i, j)
    local _, n = sub(text, i, j):gsub("\n", "")
    line = line + n
  end

  -- Skips blanks and comments; returns the next byte's character (or nil).
  local function skip()
    while true do
      local s, e = find(text, "^[ \t\r\n\f\v]+", pos)
      if s then count_lines(s, e) pos = e + 1 end
      local two = sub(text, pos, pos + 1)
      if two == "//" then
        local nl = find(text, "\n", pos, true)
        pos = nl or #text + 1
      elseif two == "/*" then
        local _, close = find(text, "*/", pos + 2, true)
        if not close then fail("unterminated /* comment") end
        count_lines(pos, close)
        pos = close + 1
      elseif sub(text, pos, pos + 2) == "\239\187\191" and pos == 1 then
        pos = 4 -- a UTF-8 byte order mark
      else
        return sub(text, pos, pos)
      end
    end
  end

  local function describe_at()
    local c = sub(text, pos, pos)
    if c == "" then return "the end of the file" end
    local word = text:match("^[%w_$]+", pos)
    return "'" .. (word or c) .. "'"
  end

  local function string_literal(quote)
    local start_line = line
    local parts, i = {}, pos + 1
    while true do
      local s = find(text, "[\\\n" .. quote .. "]", i)
      if not s then fail("unterminated string", start_line) end
      parts[#parts + 1] = sub(text, i, s - 1)
      local c = sub(text, s, s)
      if c == quote then pos = s + 1 break end
      if c == "\n" then fail("unterminated string (a newline in a string is written \\n)", start_line) end
      local e = sub(text, s + 1, s + 1)
      if ESCAPES[e] then
        parts[#parts + 1] = ESCAPES[e]
        i = s + 2
      elseif e == "u" then
        local hex = text:match("^%x%x%x%x", s + 2)
        if not hex then fail("invalid \\u escape (four hex digits expected)") end
        local cp = tonumber(hex, 16)
        i = s + 6
        local low = cp >= 0xD800 and cp <= 0xDBFF and text:match("^\\u(%x%x%x%x)", i)
        if low and tonumber(low, 16) >= 0xDC00 and tonumber(low, 16) <= 0xDFFF then
          cp = 0x10000 + (cp - 0xD800) * 0x400 + (tonumber(low, 16) - 0xDC00)
          i = i + 6
        end
        parts[#parts + 1] = utf8(cp)
      elseif e == "x" then
        local hex = text:match("^%x%x", s + 2)
        if not hex then fail("invalid \\x escape (two hex digits expected)") end
        parts[#parts + 1] = utf8(tonumber(hex, 16))
        i = s + 4
      elseif e == "\n" then
        line = line + 1 -- a line continuation
        i = s + 2
      elseif e == "\r" then
        i = s + 2
        if sub(text, i, i) == "\n" then line, i = line + 1, i + 1 end
      elseif e == "" then
        fail("unterminated string", start_line)
      else
        parts[#parts + 1] = e -- JavaScript: an unknown escape is the character itself
        i = s + 2
      end
    end
    return concat(parts)
  end

  local function number_literal()
    local sign, rest = text:match("^([%+%-]?)()", pos)
    local hex = text:match("^0[xX]%x+", rest)
    local literal = hex or text:match("^%d*%.?%d*[eE][%+%-]?%d+", rest) or text:match("^%d*%.?%d*", rest)
    if literal == "" or literal == "." then return nil end
    if text:match("^[%w_$]", rest + #literal) then return nil end
    pos = rest + #literal
    local n = tonumber(literal)
    if not n then fail("invalid number '" .. sign .. literal .. "'") end
    return sign == "-" and -n or n
  end

  local value

  local function key()
    local c = skip()
    if c == '"' or c == "'" then return string_literal(c) end
    local word = text:match("^[%a_$][%w_$]*", pos)
    if word then pos = pos + #word return word end
    local digits = text:match("^%d+", pos)
    if digits then pos = pos + #digits return digits end
    fail("expected a key (a name or a string), found " .. describe_at())
  end

  local function object()
    local obj, open_line = {}, line
    pos = pos + 1
    while true do
      local c = skip()
      if c == "}" then pos = pos + 1 return obj end
      if c == "" then fail("'{' on line " .. open_line .. " is never closed") end
      local k = key()
      if skip() ~= ":" then fail("expected ':' after key '" .. k .. "', found " .. describe_at()) end
      pos = pos + 1
      obj[k] = value()
      c = skip()
      if c == "," then pos = pos + 1
      elseif c == "" then fail("'{' on line " .. open_line .. " is never closed")
      elseif c ~= "}" then
        fail("expected ',' or '}' after the value of '" .. k .. "', found " .. describe_at())
      end
    end
  end

  local function array()
    local arr, n, open_line = {}, 0, line
    pos = pos + 1
    while true do
      local c = skip()
      if c == "]" then pos = pos + 1 return arr end
      if c == "" then fail("'[' on line " .. open_line .. " is never closed") end
      n = n + 1
      arr[n] = value()
      c = skip()
      if c == "," then pos = pos + 1
      elseif c == "" then fail("'[' on line " .. open_line .. " is never closed")
      elseif c ~= "]" then fail("expected ',' or ']' after item " .. n .. ", found " .. describe_at()) end
    end
  end

  local WORDS = { ["true"] = true, ["false"] = false, null = M.null, undefined = M.null }

  function value()
    local c = skip()
    depth = depth + 1
    if depth > MAX_DEPTH then fail("nested deeper than " .. MAX_DEPTH .. " levels") end
    local v
    if c == "{" then v = object()
    elseif c == "[" then v = array()
    elseif c == '"' or c == "'" then v = string_literal(c)
    elseif c == "" then fail("a value is missing at the end of the file")
    else
      local word = text:match("^[%a_$][%w_$]*", pos)
      if word and WORDS[word] ~= nil then
        pos = pos + #word
        v = WORDS[word]
      elseif word == "Infinity" or word == "NaN" then
        fail(word .. " is not a number orch accepts")
      else
        v = number_literal()
        if v == nil then
          fail("expected a value, found " .. describe_at() .. (word and
            " (orch reads literal values only, where PM2 evaluates a .json file as JavaScript; compute it in a "
            .. ".config.js or .lua file)" or ""), nil, word ~= nil)
        end
        if v ~= v or v == math.huge or v == -math.huge then fail("not a finite number") end
      end
    end
    -- A value followed by an operator is an expression (`"a" + b`, `[...].join("")`).
    local after = skip()
    if after ~= "" and find(".+-*/%?(|&<>=!", after, 1, true) then
      fail("an expression (" .. describe_at() .. " after a value): orch reads literal values only, where PM2 "
        .. "evaluates a .json file as JavaScript; compute it in a .config.js or .lua file", nil, true)
    end
    depth = depth - 1
    return v
  end

  local ok, result = pcall(function()
    local v = value()
    if skip() ~= "" then fail("unexpected " .. describe_at() .. " after the value") end
    return v
  end)
  if ok then return result end
  if getmetatable(result) == Fail then return nil, result.msg, result.line, result.expression end
  error(result, 0)
end

return M
