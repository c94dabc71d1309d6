-- orch.targetcli: the CLI side of the verbs that act on targets (stop,
-- restart, delete, reload, reset), as PM2's: several targets in a row
-- (`orch stop a b c`: one after the other, the first that fails ends the
-- verb with status 1), each one an app name, id, namespace, /regex/, script
-- path (resolved by the daemon from this directory) or `all`, or an
-- ecosystem file: `stop`/`delete` act on the apps it names, `restart` /
-- `reload` are startOrRestart / startOrReload of it (with `--env NAME`).
local client = require("orch.client")
local util = require("orch.util")
local out = require("orch.cliout")

local M = {}

local function err(fmt, ...)
  io.stderr:write(string.format(fmt, ...), "\n")
end

-- The arguments of a request about an ecosystem file (file_apps,
-- start_or): its path, p's --env and --only, this environment and
-- directory; a JavaScript file evaluated here (orch.ecocli.prepare). Or
-- nil, message.
function M.file_args(file, p, cwd)
  return require("orch.ecocli").request(file, p.opts, require("orch.core").environ(), cwd)
end

-- One ecosystem file as the target of verb. Returns the processes acted on,
-- or nil, message.
local function on_file(c, verb, file, p, cwd)
  local args, aerr = M.file_args(file, p, cwd)
  if not args then return nil, aerr end
  if verb == "restart" or verb == "reload" then
    args.action = verb
    local result, rerr = client.request(c, "start_or", args)
    if not result then return nil, rerr.message end
    for _, w in ipairs(result.warnings or {}) do err("warning: %s", w) end
    return result.processes
  end
  local apps, rerr = client.request(c, "file_apps", args)
  if not apps then return nil, rerr.message end
  -- as PM2's: the file's apps that run are acted on, the others skipped
  local acted = {}
  for _, name in ipairs(apps.apps) do
    local result, nerr = client.request(c, verb, { target = name })
    if result then
      for _, v in ipairs(result) do acted[#acted + 1] = v end
    elseif nerr.code ~= "ENOTFOUND" then
      return nil, nerr.message
    end
  end
  return acted
end

-- Runs verb on each target of p.positional. opts.is_config(path): whether a
-- target is an ecosystem file; opts.args(p): more arguments of each
-- request (restart's update_env). Prints the processes acted on (or the
-- JSON list of them); returns the exit status.
function M.run(verb, p, opts)
  if p.opts.env and verb ~= "restart" and verb ~= "reload" then
    return out.fail(verb, p.opts.json, 2, "--env applies to restart and reload of an ecosystem file")
  end
  local cwd = util.getcwd()
  local files = 0
  for _, t in ipairs(p.positional) do
    if opts.is_config(t) then files = files + 1 end
  end
  if p.opts.env and files == 0 then
    -- PM2 refuses it too: without the file there is no env_NAME to apply
    return out.fail(verb, p.opts.json, 2, string.format(
      "--env NAME needs the ecosystem file as the target (orch %s ecosystem.config.js --env NAME)", verb))
  end
  if p.opts.only and files == 0 then
    return out.fail(verb, p.opts.json, 2, "--only applies to an ecosystem file")
  end
  local c, cerr, ccode = client.connect(true)
  if not c then return out.fail(verb, p.opts.json, 1, cerr, ccode) end
  local acted, at, failure, code = {}, {}, nil, nil
  -- a process named by two targets shows once, as the last one left it
  local function add(v)
    if not at[v.id] then
      acted[#acted + 1] = v
      at[v.id] = #acted
    end
    acted[at[v.id]] = v
  end
  for _, t in ipairs(p.positional) do
    local procs, why
    if opts.is_config(t) then
      procs, why = on_file(c, verb, t, p, cwd)
    else
      local args = opts.args and opts.args(p) or {}
      args.target, args.cwd = t, cwd
      local result, rerr = client.request(c, verb, args)
      procs, why, code = result, rerr and rerr.message, rerr and rerr.code
    end
    if not procs then
      failure = why
      break
    end
    for _, v in ipairs(procs) do add(v) end
  end
  c:close()
  if failure then
    -- what was done before the failure is shown, then the failure
    if not p.opts.json and #acted > 0 then out.procs(acted) end
    return out.fail(verb, p.opts.json, 1, failure, code)
  end
  if p.opts.json then out.json(acted) else out.procs(acted) end
  return 0
end

return M
