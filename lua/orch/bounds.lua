-- orch.bounds: how much work one call into C may do for user code.
--
-- The count hook that enforces a deadline (orch.hook) cannot interrupt a C
-- function, so the string functions whose cost user code controls refuse,
-- while user code runs, the calls whose worst case is too large: a pattern
-- search costs up to the subject's length to the power of its backtracking
-- quantifiers (times the start positions when unanchored), string.rep makes
-- its whole result at once. The daemon's own calls are not limited.
-- `string.dump` is left out: user code never gets bytecode.
local hook = require("orch.hook")

local M = {}

M.MATCH_BUDGET = 2e7          -- worst-case steps of one pattern search (~0.3 s)
M.MAX_REP = 64 * 1024 * 1024  -- bytes string.rep may make
M.PLAIN_BUDGET = 1e10         -- bytes a plain search may compare (LuaJIT's is naive: ~0.2 s)
M.SORT_BUDGET = 1e7           -- n log2 n of a table.sort without a Lua comparator (~0.2 s)

local find, match, gmatch, gsub, rep, byte = string.find, string.match, string.gmatch, string.gsub,
  string.rep, string.byte

local SPECIALS = "[%^%$%*%+%-%?%.%[%]%(%)%%]"
local QUANT = { [42] = true, [43] = true, [45] = true } -- * + -

-- Worst-case cost of searching a subject of n bytes for pattern p: each
-- quantifier that something after it can make backtrack multiplies by n, and
-- so does every start position of an unanchored search; `?` doubles.
local function cost(n, p, anchorable)
  local i, len = 1, #p
  local total = 1
  if anchorable and byte(p, 1) == 94 then i = 2 else total = n + 1 end
  while i <= len do
    local c = byte(p, i)
    local item_end
    if c == 37 then -- %x, %bxy, %f[set]
      local d = byte(p, i + 1)
      if d == 98 then
        item_end = i + 3
        total = total * (n + 1) -- %b scans ahead
      elseif d == 102 then
        local close = find(p, "]", i + 4, true)
        item_end = close or len
      else
        item_end = i + 1
      end
    elseif c == 91 then -- [set]
      local j = i + 1
      if byte(p, j) == 94 then j = j + 1 end
      if byte(p, j) == 93 then j = j + 1 end
      while j <= len and byte(p, j) ~= 93 do
        if byte(p, j) == 37 then j = j + 1 end
        j = j + 1
      end
      item_end = j
    else
      item_end = i
    end
    local q = byte(p, item_end + 1)
    if q and QUANT[q] then
      -- The last item (or one before only `)`) never backtracks.
      if find(p, "[^%)]", item_end + 2) then total = total * (n + 1) end
      item_end = item_end + 1
    elseif q == 63 then
      total = total * 2
      item_end = item_end + 1
    end
    if total > M.MATCH_BUDGET then return total end
    i = item_end + 1
  end
  return total
end
M.cost = cost

local function check_pattern(fname, s, p, plain, anchorable)
  if not hook.active() or type(s) ~= "string" or type(p) ~= "string" then return end
  if plain or not find(p, SPECIALS) then
    -- a plain search compares up to the needle's length at every position
    local c = math.max(0, #s - #p + 1) * #p
    if c > M.PLAIN_BUDGET then
      error(string.format("%s: searching %d bytes for %d is too costly (worst case %.3g byte comparisons, limit %.3g)",
        fname, #s, #p, c, M.PLAIN_BUDGET), 3)
    end
    return
  end
  local c = cost(#s, p, anchorable)
  if c > M.MATCH_BUDGET then
    error(string.format("%s: pattern '%s' on a subject of %d bytes is too costly (worst case %.3g steps, limit %.3g)",
      fname, #p > 40 and p:sub(1, 40) .. "..." or p, #s, c, M.MATCH_BUDGET), 3)
  end
end

local bounded = {}
for k, v in pairs(string) do bounded[k] = v end
bounded.dump = nil

function bounded.find(s, p, init, plain)
  check_pattern("string.find", s, p, plain, true)
  return find(s, p, init, plain)
end

function bounded.match(s, p, init)
  check_pattern("string.match", s, p, false, true)
  return match(s, p, init)
end

function bounded.gmatch(s, p)
  check_pattern("string.gmatch", s, p, false, false)
  return gmatch(s, p)
end

function bounded.gsub(s, p, r, n)
  check_pattern("string.gsub", s, p, false, true)
  return gsub(s, p, r, n)
end

function bounded.rep(s, n, sep)
  if hook.active() and type(s) == "string" and type(n) == "number" and n > 0 then
    local size = (#s + (type(sep) == "string" and #sep or 0)) * n
    if size > M.MAX_REP then
      error(string.format("string.rep: a result of %.0f bytes is over the limit of %d", size, M.MAX_REP), 2)
    end
  end
  return rep(s, n, sep)
end

local sort = table.sort

-- table.sort runs in C; only a Lua comparator gives the count hook a chance.
local function bounded_sort(t, cmp)
  if hook.active() and type(t) == "table" and not (type(cmp) == "function" and debug.getinfo(cmp, "S").what ~= "C") then
    local n = #t
    local c = n * math.log(math.max(n, 2)) / math.log(2)
    if c > M.SORT_BUDGET then
      error(string.format("table.sort: %d elements without a Lua comparator are too costly (limit %.3g for n log2 n)",
        n, M.SORT_BUDGET), 2)
    end
  end
  return sort(t, cmp)
end

-- The table library user code sees (a copy).
function M.table()
  local t = {}
  for k, v in pairs(table) do t[k] = v end
  t.sort = bounded_sort
  return t
end

-- The string library user code sees (a copy: user code may change it).
function M.string()
  local t = {}
  for k, v in pairs(bounded) do t[k] = v end
  return t
end

-- luv for user code (`orch.uv`): the calls that would block the daemon's
-- loop (a synchronous fs call waits for ever on a FIFO; DNS; a nested
-- uv.run; a thread join) are refused while user code runs, with the way out.
local BLOCKING = { sleep = "blocks the daemon's loop: use a timer", run = "would run the daemon's loop inside a hook",
  stop = "would stop the daemon's loop", loop_close = "would close the daemon's loop", walk = "is orch's",
  loop_configure = "is orch's", new_thread = "threads are not for hooks", thread_join = "threads are not for hooks" }

local function has_function(...)
  for i = 1, select("#", ...) do
    if type((select(i, ...))) == "function" then return true end
  end
  return false
end

function M.uv(uv)
  local proxy = {}
  for k, v in pairs(uv) do
    if type(v) == "function" and BLOCKING[k] then
      proxy[k] = function(...)
        if hook.active() then error("orch.uv." .. k .. ": refused: it " .. BLOCKING[k], 2) end
        return v(...)
      end
    elseif type(v) == "function" and ((k:match("^fs_") and not k:match("^fs_event") and not k:match("^fs_poll")
        and k ~= "fs_scandir_next") or k == "getaddrinfo" or k == "getnameinfo") then
      proxy[k] = function(...)
        if hook.active() and not has_function(...) then
          error("orch.uv." .. k .. ": pass a callback: the synchronous form would block the daemon's loop", 2)
        end
        return v(...)
      end
    else
      proxy[k] = v
    end
  end
  return proxy
end

-- Methods on string values (`s:find(...)`) go through the one string
-- metatable the whole state shares: point it at the bounded functions.
function M.install()
  local mt = getmetatable("")
  if mt.__index ~= bounded then mt.__index = bounded end
end

return M
