-- orch.cliflags: `orch start`'s flags, from orch.schema's FLAGS: the
-- parser's table of them, the options of a new app they make (checked by
-- orch.validate, as an ecosystem file's values are), what an unknown flag
-- that names an option should say, and their help.
local schema = require("orch.schema")
local cliargs = require("orch.cliargs")

local M = {}

local FLAGS, OPTIONS = schema.FLAGS, schema.options

-- long name → entry
M.by_name = {}
for _, f in ipairs(FLAGS) do M.by_name[f[1]] = f end

-- Why a flag is refused (nil: it is taken): its entry's why, or the
-- option it would set is not orch's.
function M.refused(f)
  if f.why then return f.why end
  if f.option and not OPTIONS[f.option] then
    return "orch has no option '" .. f.option .. "' (a PM2 feature it does not have)"
  end
end

local function kind_of(f)
  local why = M.refused(f)
  if why then return { why = why } end
  if f.cli then return f.kind == "flag" and cliargs.FLAG or cliargs.VALUE end
  local k = f.kind or "value"
  if k == "flag" or k == "off" or k == "const" then return cliargs.FLAG end
  if k == "list" then
    return f.optional and cliargs.OPTLIST or f.variadic and cliargs.INTLIST or cliargs.LIST
  end
  return cliargs.VALUE
end

-- The parser's opts for start: every flag and short letter, plus extra
-- (a table of name → kind) for the CLI's own.
function M.opts(extra)
  local opts = {}
  for _, f in ipairs(FLAGS) do
    opts[f[1]] = kind_of(f)
    if f.short then opts[f.short] = f[1] end
  end
  for k, v in pairs(extra or {}) do opts[k] = v end
  return opts
end

-- The option a flag's entry sets, resolved from a PM2 alias to its option.
local function option_of(f)
  local o = OPTIONS[f.option]
  return o and o.alias_of or f.option, o
end

-- An unknown flag that names an option (--kill-retry-time, --depends-on,
-- --dependsOn): where to set it instead.
function M.unknown(name)
  local snake = name:gsub("%-", "_"):gsub("(%l)(%u)", function(a, b) return a .. "_" .. b:lower() end)
  local o = OPTIONS[snake]
  if not o or o.pattern then return nil end
  return string.format("option '%s' has no command-line form: set it in an ecosystem file", o.alias_of or snake)
end

local function flag_text(f)
  return "--" .. f[1]
end

-- A flag's value as the option takes it: numbers for integer options,
-- PM2's seconds for --watch-delay.
local function convert(f, raw)
  local k = f.kind or "value"
  if k == "flag" then return true end
  if k == "off" then return false end
  if k == "const" then return f.value end
  if k == "list" then
    local list = {}
    for _, v in ipairs(raw) do
      if v == true then return true end -- --watch alone: the app's directory
      if f.variadic then
        for w in v:gmatch("[^,%s]+") do list[#list + 1] = w end
      else
        list[#list + 1] = v
      end
    end
    return list
  end
  if f.seconds and raw:match("^%s*%d*%.?%d+%s*$") then return tonumber(raw) * 1000 end
  local _, o = option_of(f)
  if o and o.type and o.type:find("integer", 1, true) and raw:match("^%-?%d+$") then return tonumber(raw) end
  return raw
end

-- The flags given among opts that set options: a list of entries, in
-- FLAGS's order.
function M.given(opts)
  local list = {}
  for _, f in ipairs(FLAGS) do
    if f.option and opts[f[1]] ~= nil then list[#list + 1] = f end
  end
  return list
end

-- The options of a new app from the flags among opts, each value checked
-- as in an ecosystem file (cwd: where relative paths start). Returns
-- { option = value } or nil, message naming the flag.
function M.options(opts, cwd)
  local check = require("orch.validate").CHECK
  local ctx = { cwd = cwd, cpus = function() return 1 end }
  local out = {}
  for _, f in ipairs(M.given(opts)) do
    local _, o = option_of(f)
    if not o then return nil, string.format("option '%s' is not available: %s", flag_text(f), M.refused(f)) end
    local v = convert(f, opts[f[1]])
    local fn = check[f.option]
    if fn and v ~= nil then
      local good, err = fn(v, ctx)
      if good == nil and err then
        local shown = type(opts[f[1]]) == "table" and table.concat(opts[f[1]], " ", 1, #opts[f[1]]) or opts[f[1]]
        if type(shown) ~= "string" then shown = nil end
        return nil, string.format("%s%s: option '%s': %s", flag_text(f), shown and (" " .. shown) or "", f.option, err)
      end
    end
    out[f.option] = v -- a PM2 alias stays one: the app's normalisation merges it as in a file
  end
  return out
end

-- With an ecosystem file, PM2's _startJson takes -i over its apps'
-- instances and ignores -f (a warning here); any other flag that sets an
-- option is an error naming the option to set in the file. Returns
-- { instances = N|nil }, or nil, message.
function M.for_file(opts, cwd)
  for _, f in ipairs(M.given(opts)) do
    if f.option == "force" then
      io.stderr:write("warning: --force has no effect on an ecosystem file (PM2 ignores it there too)\n")
    elseif f.option ~= "instances" then
      return nil, string.format("--%s applies to a script, not to an ecosystem file: set option '%s' in the file",
        f[1], f.option)
    end
  end
  if not opts.instances then return {} end
  local spec, err = M.options({ instances = opts.instances }, cwd)
  if not spec then return nil, err end
  return { instances = spec.instances }
end

-- What a flag does, for orch help start and docs/cli.md: the option it
-- sets ("autorestart = false", or nil) and the option's doc.
function M.describe(f)
  local why = M.refused(f)
  if why then return nil, why .. "." end
  if f.cli then return nil, f.cli end
  local name = option_of(f)
  local doc = OPTIONS[name].doc
  if f.seconds then doc = doc .. " A bare number counts seconds, as in PM2." end
  local k = f.kind or "value"
  return k == "off" and (name .. " = false") or k == "const" and (name .. ' = "' .. f.value .. '"')
    or k == "flag" and (name .. " = true") or name, doc
end

-- The flag as written in help: "-o, --output X".
function M.synopsis(f)
  local k = kind_of(f)
  local arg = (k == cliargs.VALUE or k == cliargs.LIST or k == cliargs.INTLIST) and " X"
    or k == cliargs.OPTLIST and "[=X]" or ""
  if type(k) == "table" then arg = "" end
  return (f.short and ("-" .. f.short .. ", ") or "    ") .. "--" .. f[1] .. arg
end

-- text wrapped to width columns, every line after the first indented.
local function wrap(text, indent, width)
  local lines, line = {}, ""
  for word in text:gmatch("%S+") do
    if line ~= "" and #line + 1 + #word > width - indent then
      lines[#lines + 1] = line
      line = word
    else
      line = line == "" and word or (line .. " " .. word)
    end
  end
  lines[#lines + 1] = line
  return table.concat(lines, "\n" .. string.rep(" ", indent))
end

local HELP_COLUMN = 34

-- orch help start's list of flags: those that set an option (and which),
-- the CLI's own, then PM2's that orch does not take, and why.
function M.help()
  local taken, refused = {}, {}
  for _, f in ipairs(FLAGS) do
    local set, doc = M.describe(f)
    local text = set and (set .. ": " .. doc) or doc
    local synopsis = M.synopsis(f)
    -- a synopsis too long for its column has its text on the next line
    local sep = #synopsis > HELP_COLUMN - 4 and ("\n" .. string.rep(" ", HELP_COLUMN)) or " "
    local line = string.format("  %-" .. (HELP_COLUMN - 3) .. "s%s%s", synopsis, sep, wrap(text, HELP_COLUMN, 100))
    if M.refused(f) then refused[#refused + 1] = line else taken[#taken + 1] = line end
  end
  return "options (for a script; an ecosystem file sets them in the file, --env, --only and -i apply to it):\n"
    .. table.concat(taken, "\n") .. "\n"
    .. string.format("  %-" .. (HELP_COLUMN - 3) .. "s %s\n", "    --json", "Print the reply as JSON.")
    .. "\nPM2 flags orch does not take:\n" .. table.concat(refused, "\n") .. "\n"
end

-- docs/cli.md's table of the flags, between these markers (tools/clidoc
-- writes it; spec/unit/cliargs_spec.lua fails while the docs differ).
M.DOC_BEGIN = "<!-- start flags: generated by tools/clidoc from orch.schema's FLAGS, do not edit -->"
M.DOC_END = "<!-- end of start flags -->"

function M.markdown()
  local rows = { "| flag | option | what it does |", "|---|---|---|" }
  for _, f in ipairs(FLAGS) do
    local set, doc = M.describe(f)
    local flag = (f.short and ("`-" .. f.short .. "`, ") or "") .. "`--" .. f[1] .. "`"
    local option = M.refused(f) and "not available" or set and ("`" .. set .. "`") or "(the CLI's)"
    rows[#rows + 1] = string.format("| %s | %s | %s |", flag, option, (doc:gsub("|", "\\|")))
  end
  return M.DOC_BEGIN .. "\n" .. table.concat(rows, "\n") .. "\n" .. M.DOC_END
end

return M
