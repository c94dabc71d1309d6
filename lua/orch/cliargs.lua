-- orch.cliargs: a verb's command line → positional arguments, options and
-- the arguments after `--`, checked against the verb's spec; and the usage
-- line printed with a usage error.
local util = require("orch.util")

local M = {}

-- A spec's opts map a name to FLAG (no value), VALUE (takes one) or, for a
-- short alias, the name it stands for.
M.FLAG, M.VALUE = "flag", "value"
local FLAG, VALUE = M.FLAG, M.VALUE

-- Returns { positional = {...}, opts = {...}, rest = {...} } or nil, message.
function M.parse(spec, argv)
  local r = { positional = {}, opts = {}, rest = {} }
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
      local kind = spec.opts[name]
      if type(kind) == "string" and kind ~= FLAG and kind ~= VALUE then
        name, kind = kind, spec.opts[kind] -- a short alias
      end
      if not kind then
        local names = {}
        for k, v in pairs(spec.opts) do if v == FLAG or v == VALUE then names[#names + 1] = k end end
        local hint = util.did_you_mean(name, names)
        return nil, string.format("unknown option '%s'%s", a, hint and (" (did you mean '--" .. hint .. "'?)") or "")
      end
      if kind == FLAG then
        if value then return nil, string.format("option '--%s' takes no value", name) end
        r.opts[name] = true
      else
        if not value then
          i = i + 1
          value = argv[i]
          if value == nil then return nil, string.format("option '--%s' needs a value", name) end
        end
        r.opts[name] = value
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

function M.usage_line(verb, spec)
  local flags = {}
  for k, v in pairs(spec.opts) do
    if v == FLAG then flags[#flags + 1] = "[--" .. k .. "]"
    elseif v == VALUE then flags[#flags + 1] = "[--" .. k .. " X]" end
  end
  table.sort(flags)
  return (string.format("usage: orch %s %s %s", verb, spec.args, table.concat(flags, " ")):gsub("%s+$", ""))
end

return M
