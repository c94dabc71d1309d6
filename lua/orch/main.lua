-- orch.main: argv → verb. Each verb lives in its own module and is required
-- only when used, so a short-lived CLI call loads little.
local M = {}

M.version = require("orch.version").version

-- Verbs served by their own module; the control-socket verbs live in
-- orch.cli and are listed from there.
local verbs = {
  run = { module = "orch.run", usage = "run FILE|SCRIPT [options]",
          summary = "run an ecosystem, or a script with start's options, in the foreground (like pm2-runtime)" },
  lua = { module = "orch.luarun", usage = "lua FILE [ARGS...]",
          summary = "run a Lua script with orch's runtime (LuaJIT, luv, cjson)" },
  repl = { module = "orch.repl", usage = "repl",
           summary = "an interactive Lua REPL inside the daemon" },
  daemon = { module = "orch.daemon", usage = "daemon [--ready-fd N] [--resurrect]", summary = "run the daemon (the CLI starts it by itself; N: write a newline there once serving; --resurrect: the saved apps, for a service manager)" },
  startup = { module = "orch.startup", usage = "startup [systemd] [--user] [--print]",
              summary = "start orch at boot with the saved apps: write and enable a systemd unit" },
  unstartup = { module = "orch.startup", entry = "unstartup", usage = "unstartup [systemd] [--user]",
                summary = "disable and remove the unit orch startup wrote" },
  version = { summary = "print orch's version" },
  help = { usage = "help [VERB]", summary = "show help" },
}
-- `orch help` lists orch.cli's verbs (in their order), then these.
local own_order = { "repl", "run", "lua", "daemon", "startup", "unstartup", "version", "help" }

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

-- "orch: unknown verb 'strat' (did you mean 'start'?)" and the usage
-- line, to stderr: short, so the hint stays on screen.
local function unknown_verb(who, verb)
  local names = order()
  for alias in pairs(require("orch.cli").aliases) do names[#names + 1] = alias end
  local hint = require("orch.util").did_you_mean(verb, names)
  io.stderr:write(string.format("%s: unknown verb '%s'%s\nusage: orch <verb> [args] (orch help lists the verbs)\n",
    who, verb, hint and string.format(" (did you mean '%s'?)", hint) or ""))
  return 2
end

local function help(args)
  local name = args[1]
  if not name then usage(io.stdout) return 0 end
  local v = verbs[name]
  if not v then
    local text = require("orch.cli").help(name)
    if text then io.stdout:write(text) return 0 end
    return unknown_verb("orch help", name)
  end
  if v.module then
    local mod = require(v.module)
    local text = mod[(v.entry and (v.entry .. "_") or "") .. "help"]
    if text then io.stdout:write(text, text:sub(-1) == "\n" and "" or "\n") return 0 end
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
  -- orch update runs the new binary so first: can it take over? Loading
  -- the takeover's modules is part of the answer.
  if verb == "--handover-check" then
    require("orch.takeover")
    return require("orch.handover").check_main(args)
  end
  local v = verbs[verb]
  -- the daemon and orch run load none of the CLI's verbs
  local cli = not v and require("orch.cli")
  if cli and not (cli.verbs[verb] or cli.aliases[verb]) then
    if cli.wants_json(args) then require("orch.cliout").json({ error = "unknown verb '" .. verb .. "'", code = "EUSAGE" }) end
    return unknown_verb("orch", verb)
  end
  -- orch VERB --help (or -h), anywhere before a "--" that ends the options
  -- (orch lua FILE's arguments are the script's: only before FILE)
  for i, a in ipairs(args) do
    if a == "--" or (verb == "lua" and i > 1) then break end
    if a == "--help" or a == "-h" then return help({ verb }) end
  end
  if not v then return cli.main(verb, args) end
  return require(v.module)[v.entry or "main"](args, argv[0])
end

return M
