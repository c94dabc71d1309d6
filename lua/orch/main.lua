-- orch.main: argv → verb. Each verb lives in its own module and is required
-- only when used, so a short-lived CLI call loads little.
local M = {}

M.version = require("orch.version").version

-- Verbs served by their own module; the control-socket verbs live in
-- orch.cli and are listed from there.
local verbs = {
  run = { module = "orch.run", usage = "run FILE [--env NAME]",
          summary = "run an ecosystem in the foreground (like pm2-runtime)" },
  lua = { module = "orch.luarun", usage = "lua FILE [ARGS...]",
          summary = "run a Lua script with orch's runtime (LuaJIT, luv, cjson)" },
  repl = { module = "orch.repl", usage = "repl",
           summary = "an interactive Lua REPL inside the daemon" },
  daemon = { module = "orch.daemon", usage = "daemon [--ready-fd N]", summary = "run the daemon (the CLI starts it by itself; N: write a newline there once serving)" },
  version = { summary = "print orch's version" },
  help = { usage = "help [VERB]", summary = "show help" },
}
-- `orch help` lists orch.cli's verbs (in their order), then these.
local own_order = { "repl", "run", "lua", "daemon", "version", "help" }

local function order()
  local list = {}
  for _, n in ipairs(require("orch.cli").order) do list[#list + 1] = n end
  for _, n in ipairs(own_order) do list[#list + 1] = n end
  return list
end

-- What orch reads from its environment (docs/cli.md says more).
local environment = {
  { "ORCH_HOME", "orch's directory: socket, logs, state (default ~/.orch)" },
  { "ORCH_TREE=auto|cgroup|marker", "how the daemon finds a process's whole tree (orch ping says which)" },
}

local function usage(out)
  out:write("usage: orch <verb> [args]\n\nverbs:\n")
  local cli = require("orch.cli")
  for _, name in ipairs(order()) do
    local v = verbs[name]
    local line = v and (v.usage or name) or (name .. " " .. cli.verbs[name].args)
    out:write(string.format("  %-44s %s\n", line, v and v.summary or cli.verbs[name].summary))
  end
  out:write("\nenvironment:\n")
  for _, e in ipairs(environment) do out:write(string.format("  %-44s %s\n", e[1], e[2])) end
end

local function help(args)
  local name = args[1]
  if not name then usage(io.stdout) return 0 end
  local v = verbs[name]
  if not v then
    local text = require("orch.cli").help(name)
    if text then io.stdout:write(text) return 0 end
    io.stderr:write(string.format("orch help: unknown verb '%s'\n", name))
    return 2
  end
  if v.module then
    local mod = require(v.module)
    if mod.help then io.stdout:write(mod.help) return 0 end
  end
  io.stdout:write(string.format("usage: orch %s\n\n%s\n", v.usage or name, v.summary))
  return 0
end

-- argv[0] is the program, argv[1] the verb.
function M.main(argv)
  local verb = argv[1]
  local args = {}
  for i = 2, #argv do args[#args + 1] = argv[i] end
  if verb == nil or verb == "-h" or verb == "--help" then
    usage(verb and io.stdout or io.stderr)
    return verb and 0 or 2
  end
  if verb == "version" or verb == "--version" or verb == "-v" then
    io.stdout:write("orch ", M.version, "\n")
    return 0
  end
  if verb == "help" then return help(args) end
  local v = verbs[verb]
  local cli = require("orch.cli")
  if not v and (cli.verbs[verb] or cli.aliases[verb]) then return cli.main(verb, args) end
  if not v then
    local names = order()
    local hint = require("orch.util").did_you_mean(verb, names)
    io.stderr:write(string.format("orch: unknown verb '%s'%s\n", verb,
      hint and string.format(" (did you mean '%s'?)", hint) or ""))
    usage(io.stderr)
    return 2
  end
  return require(v.module).main(args, argv[0])
end

return M
