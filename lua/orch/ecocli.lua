-- orch.ecocli: the CLI's side of config files, kept small (the CLI loads
-- no ecosystem code): which names are config files rather than scripts,
-- their language, and prepare(), which has Node evaluate a JavaScript file
-- (orch.jsconfig) before the request goes to the daemon.

local M = {}

-- Whether `orch start|run|reload|... PATH` names a config file rather than
-- a script, by its name, as PM2 decides (Common.isConfigFile: .json, .yml,
-- .yaml, .config.js/.cjs/.mjs) and besides: .json5, *ecosystem*.js|cjs|mjs,
-- and orch's Lua ones (*ecosystem*.lua, *.config.lua).
function M.is_config(path)
  if type(path) ~= "string" then return false end
  if path == "-" then return true end -- PM2's `pm2 start -`: a process file on stdin
  local base = (path:match("[^/]*$") or ""):lower()
  local ext = base:match("%.([^.]+)$")
  if ext == "json" or ext == "json5" or ext == "yml" or ext == "yaml" then return true end
  if ext == "js" or ext == "cjs" or ext == "mjs" or ext == "lua" then
    return base:find("ecosystem", 1, true) ~= nil or base:match(".%.config%.[^.]+$") ~= nil
  end
  return false
end

local KINDS = { lua = "lua", json = "json", json5 = "json", yml = "yaml", yaml = "yaml",
                js = "js", cjs = "js", mjs = "js" }

-- The language of a config file: by its extension, else by its text (JSON
-- starts with '{' or '['; anything else is Lua).
function M.kind(file, src)
  local ext = file:lower():match("%.([^./]+)$")
  if KINDS[ext] then return KINDS[ext] end
  if src and src:match("^%s*[{%[]") then return "json" end
  return "lua"
end

-- For the CLI (where blocking is fine), before it sends a start request
-- {file = ABSOLUTE, cwd, env}: a JavaScript file (or a .json file holding
-- an expression) is evaluated here, with Node, and its value goes in
-- req.evaluated (the daemon runs no Node).
-- Functions in it are dropped, with a warning. true, or nil, message.
function M.prepare(req)
  local kind, expression = M.kind(req.file), false
  local jsconfig = require("orch.jsconfig")
  if kind == "json" and jsconfig.node_path(req.env) then
    -- A .json file with an expression in it, which PM2 evaluates as
    -- JavaScript: Node evaluates it too, when it is installed.
    local f = io.open(req.file, "rb")
    local src = f and f:read("*a")
    if f then f:close() end
    expression = src and select(4, require("orch.relaxjson").decode(src))
  end
  if kind ~= "js" and not expression then return true end
  local value, dropped = jsconfig.evaluate(req.file, { env = req.env, cwd = req.cwd, expression = expression })
  if value == nil then return nil, dropped end
  for _, at in ipairs(dropped) do
    io.stderr:write(req.file, ": warning: ", at, " is a function, which orch cannot take from a JavaScript "
      .. "config (a Lua ecosystem can hold functions); ignored\n")
  end
  req.evaluated = value
  return true
end

M.STDIN_MAX = 512 * 1024 -- within a request line (the control socket takes 1 MiB)

-- The request about a config file named on the command line (start, and
-- the verbs on targets): { file = ABSOLUTE } or, for "-", { stdin = TEXT }
-- (PM2's `pm2 start -` / `pm2 delete -`: a JSON process file on stdin),
-- with o's --env and --only, env (the CLI's environment) and cwd; a
-- JavaScript file evaluated here (prepare). Or nil, message.
function M.request(target, o, env, cwd)
  local only
  if o.only then
    only = {}
    for n in o.only:gmatch("[^,%s]+") do only[#only + 1] = n end
  end
  local req = { env_name = o.env, only = only, env = env, cwd = cwd }
  if target == "-" then
    local text = io.stdin:read(M.STDIN_MAX + 1)
    if not text or not text:find("%S") then
      return nil, "<stdin>: expected a process file (JSON) on standard input, got nothing"
    end
    if #text > M.STDIN_MAX then
      return nil, string.format("<stdin>: a process file of more than %d KiB: give it as a file", M.STDIN_MAX / 1024)
    end
    req.stdin = text
    return req
  end
  req.file = require("orch.util").abspath(target, cwd)
  local ok, perr = M.prepare(req)
  if not ok then return nil, perr end
  return req
end

return M
