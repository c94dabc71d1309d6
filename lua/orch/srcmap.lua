-- orch.srcmap: where the keys of a literal ecosystem table sit in its
-- source, so that errors can name a line.
--
-- Lua tables carry no line information, so we tokenize the source and find
-- the literal `apps = { {...}, ... }` (or JSON `"apps": [ {...} ]`) whose
-- element count equals the number of apps actually produced. Anything less
-- certain yields no line rather than a wrong one.

local sub = string.sub

local KEYWORD_OPEN = { ["function"] = true, ["do"] = true, ["if"] = true, ["repeat"] = true }
local KEYWORD_CLOSE = { ["end"] = true, ["until"] = true }
local BRACKET_OPEN = { ["{"] = true, ["["] = true, ["("] = true }
local BRACKET_CLOSE = { ["}"] = true, ["]"] = true, [")"] = true }

local function count_newlines(s, i, j)
  local n = 0
  for _ in sub(s, i, j):gmatch("\n") do n = n + 1 end
  return n
end

local ESCAPES = { n = "\n", t = "\t", r = "\r", a = "\a", b = "\b", f = "\f", v = "\v" }

local function unescape(s)
  return (s:gsub("\\(%d%d?%d?)", function(d) return string.char(tonumber(d) % 256) end)
           :gsub("\\(.)", function(c) return ESCAPES[c] or c end))
end

-- Tokens {kind = "name"|"string"|"number"|"op", value, line}. Works for Lua,
-- and with `js` for JSON, PM2's JSON5-style JSON and JavaScript (comments
-- `//` and `/* */`, template strings); the source is known to be
-- well-formed by the time we run.
local function tokenize(src, js)
  local toks, i, n, line = {}, 1, #src, 1
  local function push(kind, value, l) toks[#toks + 1] = { kind = kind, value = value, line = l } end
  while i <= n do
    local c = sub(src, i, i)
    if c == "\n" then
      line, i = line + 1, i + 1
    elseif c:match("%s") then
      i = i + 1
    elseif js and c == "/" and sub(src, i + 1, i + 1) == "/" then
      i = src:find("\n", i, true) or n + 1
    elseif js and c == "/" and sub(src, i + 1, i + 1) == "*" then
      local _, stop = src:find("*/", i + 2, true)
      stop = stop or n
      line = line + count_newlines(src, i, stop)
      i = stop + 1
    elseif js and c == "`" then
      local stop = src:find("`", i + 1, true) or n
      push("string", sub(src, i + 1, stop - 1), line)
      line = line + count_newlines(src, i, stop)
      i = stop + 1
    elseif not js and c == "-" and sub(src, i + 1, i + 1) == "-" then
      local level = src:match("^%[(=*)%[", i + 2)
      if level then
        local close = "]" .. level .. "]"
        local _, stop = src:find(close, i + 4 + #level, true)
        stop = stop or n
        line = line + count_newlines(src, i, stop)
        i = stop + 1
      else
        i = src:find("\n", i, true) or n + 1
      end
    elseif not js and c == "[" and src:match("^%[=*%[", i) then
      local level = src:match("^%[(=*)%[", i)
      local open_end = i + #level + 1
      local close = "]" .. level .. "]"
      local s, stop = src:find(close, open_end + 1, true)
      s, stop = s or n + 1, stop or n
      local body = sub(src, open_end + 1, s - 1):gsub("^\r?\n", "")
      push("string", body, line)
      line = line + count_newlines(src, i, stop)
      i = stop + 1
    elseif c == '"' or c == "'" then
      local j = i + 1
      while j <= n do
        local d = sub(src, j, j)
        if d == "\\" then j = j + 2
        elseif d == c or d == "\n" then break
        else j = j + 1 end
      end
      push("string", unescape(sub(src, i + 1, j - 1)), line)
      line = line + count_newlines(src, i, j - 1)
      i = j + 1
    elseif c:match("[%a_]") or (js and c == "$") then
      local word = src:match(js and "^[%w_$]+" or "^[%w_]+", i)
      push("name", word, line)
      i = i + #word
    elseif c:match("%d") or (c == "." and sub(src, i + 1, i + 1):match("%d")) then
      local num = src:match("^%.?[%w%.]+", i)
      if num:match("[eEpP]$") then num = num .. (src:match("^[%+%-]%d+", i + #num) or "") end
      push("number", num, line)
      i = i + #num
    else
      local op = src:match("^%.%.%.", i) or src:match("^[=~<>]=", i) or src:match("^%.%.", i)
        or src:match("^::", i) or c
      push("op", op, line)
      i = i + #op
    end
  end
  return toks
end

-- match[i]: closing token of an opening bracket or block keyword at i;
-- parent[i]: innermost open bracket/keyword enclosing token i.
local function structure(toks)
  local match, parent, stack = {}, {}, {}
  for i, t in ipairs(toks) do
    parent[i] = stack[#stack]
    local v = t.value
    if (t.kind == "op" and BRACKET_OPEN[v]) or (t.kind == "name" and KEYWORD_OPEN[v]) then
      stack[#stack + 1] = i
    elseif (t.kind == "op" and BRACKET_CLOSE[v]) or (t.kind == "name" and KEYWORD_CLOSE[v]) then
      local o = stack[#stack]
      if not o then return nil end
      stack[#stack] = nil
      match[o] = i
    end
  end
  if #stack > 0 then return nil end
  return match, parent
end

local function is_op(t, v) return t and t.kind == "op" and t.value == v end

-- Outline of the table constructor (Lua `{`, JSON `{`/`[`) at token o:
-- { line, keys = {key -> {line, node}}, items = {{line, node}} }, where node
-- is the outline of a value that is itself exactly one constructor.
local function outline(toks, match, o, json)
  local node = { line = toks[o].line, keys = {}, items = {}, list = is_op(toks[o], "[") }
  local close = match[o]
  local j = o + 1
  while j < close do
    local s, e = j, j
    while e < close do
      local t = toks[e]
      if is_op(t, ",") or is_op(t, ";") then break end
      e = match[e] and match[e] + 1 or e + 1
    end
    if e > s then
      local key, keyed, vstart
      local t = toks[s]
      if json then
        -- JSON5 and JavaScript write keys as names too (`apps: [...]`).
        if (t.kind == "string" or t.kind == "name") and is_op(toks[s + 1], ":") then
          key, keyed, vstart = t.value, true, s + 2
        end
      elseif t.kind == "name" and is_op(toks[s + 1], "=") then
        key, keyed, vstart = t.value, true, s + 2
      elseif is_op(t, "[") and is_op(toks[match[s] + 1], "=") then
        keyed, vstart = true, match[s] + 2
        if match[s] == s + 2 and toks[s + 1].kind == "string" then key = toks[s + 1].value end
      end
      vstart = vstart or s
      local child
      local v = toks[vstart]
      if v and (is_op(v, "{") or (json and is_op(v, "["))) and match[vstart] == e - 1 then
        child = outline(toks, match, vstart, json)
      end
      if key then
        node.keys[key] = { line = t.line, node = child }
      elseif not keyed then
        node.items[#node.items + 1] = { line = t.line, node = child }
      end
    end
    j = e + 1
  end
  return node
end

-- The plain line map normalize() takes as opts.lines.
local function line_map(list_node, top_node)
  local map = { keys = {}, apps = {} }
  if top_node then
    for k, v in pairs(top_node.keys) do map.keys[k] = v.line end
  end
  for i, item in ipairs(list_node.items) do
    local app = { line = item.line, keys = {}, subkeys = {} }
    if item.node then
      app.line = item.node.line
      for k, v in pairs(item.node.keys) do
        app.keys[k] = v.line
        if v.node then
          local subs = {}
          for sk, sv in pairs(v.node.keys) do subs[sk] = sv.line end
          app.subkeys[k] = subs
        end
      end
    end
    map.apps[i] = app
  end
  return map
end

local function lua_lines(src, napps)
  local toks = tokenize(src)
  local match, parent = structure(toks)
  if not match then return nil end
  local found
  for i, t in ipairs(toks) do
    local list
    if t.kind == "name" and t.value == "apps" and is_op(toks[i + 1], "=") and is_op(toks[i + 2], "{") then
      list = i + 2
    elseif is_op(t, "[") and toks[i + 1] and toks[i + 1].kind == "string" and toks[i + 1].value == "apps"
        and is_op(toks[i + 2], "]") and is_op(toks[i + 3], "=") and is_op(toks[i + 4], "{") then
      list = i + 4
    end
    local list_node = list and outline(toks, match, list, false)
    if list_node and #list_node.items == napps then
      if found then return nil end -- two plausible literals: refuse to guess
      -- The enclosing constructor, when `apps` is one of its fields, holds
      -- the other top-level keys.
      local top_node
      local p, prev = parent[i], toks[i - 1]
      if p and is_op(toks[p], "{") and (is_op(prev, "{") or is_op(prev, ",") or is_op(prev, ";")) then
        top_node = outline(toks, match, p, false)
      end
      found = line_map(list_node, top_node)
    end
  end
  return found
end

-- The line map of a file's top-level value (an outline), in each of PM2's
-- shapes: { apps: [...] } or { pm2: [...] }, a bare list of apps, one app.
local function shaped(top, napps)
  if top.list then return #top.items == napps and line_map(top) or nil end
  local apps = top.keys.apps or top.keys.pm2
  local list = apps and apps.node
  if list and list.list and #list.items == napps then return line_map(list, top) end
  if list and not list.list and napps == 1 then
    return line_map({ items = { { line = apps.line, node = list } } }, top)
  end
  if not apps and napps == 1 and #top.items == 0 and next(top.keys) then -- ({ apps } is not an app)
    return line_map({ items = { { line = top.line, node = top } } })
  end
  return line_map({ items = {} }, top) -- top-level keys only
end

local function json_lines(src, napps)
  local toks = tokenize(src, true)
  local match = structure(toks)
  if not match or not (is_op(toks[1], "{") or is_op(toks[1], "[")) then return nil end
  return shaped(outline(toks, match, 1, true), napps)
end

-- A JavaScript config: the literal after `module.exports =` or `export
-- default`, or else the one `apps: [...]` (or `pm2:`, or `apps = [...]`)
-- list with as many items as the file produced apps. Computed parts have
-- no line.
local function js_lines(src, napps)
  local toks = tokenize(src, true)
  local match, parent = structure(toks)
  if not match then return nil end
  for i, t in ipairs(toks) do
    local o
    if t.kind == "name" and t.value == "module" and is_op(toks[i + 1], ".") and toks[i + 2]
        and toks[i + 2].value == "exports" and is_op(toks[i + 3], "=") then
      o = i + 4
    elseif t.kind == "name" and t.value == "export" and toks[i + 1] and toks[i + 1].value == "default" then
      o = i + 2
    end
    if o and toks[o] and (is_op(toks[o], "{") or is_op(toks[o], "[")) then
      local map = shaped(outline(toks, match, o, true), napps)
      if map and #map.apps == napps then return map end
    end
  end
  local found
  for i, t in ipairs(toks) do
    -- `apps: [...]` in an object, or `const apps = [...]` exported by name
    if (t.kind == "name" or t.kind == "string") and (t.value == "apps" or t.value == "pm2")
        and (is_op(toks[i + 1], ":") or is_op(toks[i + 1], "=")) and is_op(toks[i + 2], "[") then
      local list = outline(toks, match, i + 2, true)
      if #list.items == napps then
        if found then return nil end -- two plausible literals: refuse to guess
        local p = parent[i]
        found = line_map(list, p and is_op(toks[p], "{") and outline(toks, match, p, true) or nil)
      end
    end
  end
  return found
end

-- Chunk names. LuaJIT cuts a chunk name to 60 bytes in messages
-- ("...api/ecosystem.lua:2:"), so a file is loaded under a short name and
-- the name is put back in the messages it produces.
local names, paths = {}, {}

local function chunkname(path)
  local name = names[path]
  if not name then
    paths[#paths + 1] = path
    name = "[lua#" .. #paths .. "]"
    names[path] = name
  end
  return "=" .. name
end

-- text with each short chunk name replaced by its file's path.
local function expand(text)
  if type(text) ~= "string" or not text:find("[lua#", 1, true) then return text end
  return (text:gsub("%[lua#(%d+)%]", function(i) return paths[tonumber(i)] end))
end

return { lua_lines = lua_lines, json_lines = json_lines, js_lines = js_lines, shaped = shaped,
         count_newlines = count_newlines, chunkname = chunkname, expand = expand }
