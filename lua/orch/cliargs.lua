-- orch.cliargs: a verb's command line → positional arguments, options and
-- the arguments after `--`, checked against the verb's spec; and the usage
-- line printed with a usage error.
local util = require("orch.util")

local M = {}

-- A spec's opts map a name to a kind: FLAG (no value), VALUE (takes one),
-- LIST (takes one, repeatable: a list of values), OPTLIST (repeatable, a
-- value only after '=', alone it adds true: PM2's --watch [paths]), INTLIST
-- (as LIST, and the integers after the value are values too: PM2's
-- --stop-exit-codes 0 3), { why = text } (refused, saying why), or for a
-- short alias, the name it stands for; or a function returning that table
-- (start's come from orch.schema, loaded only when start runs). spec.unknown(name),
-- if set, may say more about an unknown option than the nearest name.
M.FLAG, M.VALUE, M.LIST, M.OPTLIST, M.INTLIST = "flag", "value", "list", "optlist", "intlist"
local FLAG, VALUE, LIST, OPTLIST, INTLIST = M.FLAG, M.VALUE, M.LIST, M.OPTLIST, M.INTLIST
local KINDS = { [FLAG] = true, [VALUE] = true, [LIST] = true, [OPTLIST] = true, [INTLIST] = true }

-- spec's opts table (see above).
local function opts_of(spec)
  local o = spec.opts
  if type(o) == "function" then return o() end
  return o
end

-- The option names of spec (not the short aliases), sorted.
function M.names(spec)
  local names = {}
  for k, v in pairs(opts_of(spec)) do
    if type(v) == "table" or KINDS[v] then names[#names + 1] = k end
  end
  table.sort(names)
  return names
end

local function unknown(spec, a, name)
  local more = spec.unknown and spec.unknown(name)
  if more then return string.format("unknown option '%s': %s", a, more) end
  local hint = util.did_you_mean(name, M.names(spec))
  return string.format("unknown option '%s'%s", a, hint and (" (did you mean '--" .. hint .. "'?)") or "")
end

local function add(list, v)
  list = list or {}
  list[#list + 1] = v
  return list
end

-- Returns { positional = {...}, opts = {...}, rest = {...} } or nil, message.
function M.parse(spec, argv)
  local r = { positional = {}, opts = {}, rest = {} }
  local opts = opts_of(spec)
  local i = 1
  while i <= #argv do
    local a = argv[i]
    if a == "--" then
      if not spec.rest then return nil, "'--' is not accepted here" end
      for j = i + 1, #argv do r.rest[#r.rest + 1] = argv[j] end
      break
    elseif a:sub(1, 1) == "-" and #a > 1 and not tonumber(a) then
      local name, value = a:match("^%-%-?([^=]+)=(.*)$")
      name = name or a:gsub("^%-%-?", "")
      local kind = opts[name]
      if type(kind) == "string" and not KINDS[kind] then
        name, kind = kind, opts[kind] -- a short alias
      end
      if not kind then return nil, unknown(spec, a, name) end
      if type(kind) == "table" then
        return nil, string.format("option '--%s' is not available: %s", name, kind.why)
      end
      if kind == FLAG then
        if value then return nil, string.format("option '--%s' takes no value", name) end
        r.opts[name] = true
      elseif kind == OPTLIST then
        r.opts[name] = add(r.opts[name], value or true)
      else
        if not value then
          i = i + 1
          value = argv[i]
          if value == nil then return nil, string.format("option '--%s' needs a value", name) end
        end
        if kind == VALUE then
          r.opts[name] = value
        else
          r.opts[name] = add(r.opts[name], value)
          while kind == INTLIST and argv[i + 1] and argv[i + 1]:match("^%d+$") do
            i = i + 1
            r.opts[name] = add(r.opts[name], argv[i])
          end
        end
      end
    else
      r.positional[#r.positional + 1] = a
    end
    i = i + 1
  end
  if #r.positional < spec.min then return nil, "missing argument " .. spec.args end
  if #r.positional > spec.max then return nil, string.format("unexpected argument '%s'", r.positional[spec.max + 1]) end
  return r
end

-- A verb with many options shows [options] (orch help VERB lists them).
M.MAX_USAGE_FLAGS = 8

function M.usage_line(verb, spec)
  local flags, opts = {}, opts_of(spec)
  for _, k in ipairs(M.names(spec)) do
    local v = opts[k]
    if v == FLAG then flags[#flags + 1] = "[--" .. k .. "]"
    elseif v == OPTLIST then flags[#flags + 1] = "[--" .. k .. "[=X]]"
    elseif KINDS[v] then flags[#flags + 1] = "[--" .. k .. " X]" end
  end
  if #flags > M.MAX_USAGE_FLAGS then flags = { "[options]" } end
  -- options before `-- args...`, which ends a command line
  local args, rest = spec.args:match("^(.-)%s*(%[%-%- [^%]]*%])$")
  return (string.format("usage: orch %s %s %s %s", verb, args or spec.args, table.concat(flags, " "), rest or "")
    :gsub("%s+", " "):gsub(" $", ""))
end

return M
