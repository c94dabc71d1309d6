-- orch.sources: a source (where an app comes from, in a form that survives
-- a restart of orch) loaded into a validated config (orch.ecosystem).
local runas = require("orch.runas")

local M = {}

-- Sources: where apps come from, in a form that survives a restart of orch.
--   { file = "/abs/eco.lua" | stdin = "JSON text" (orch start -), env_name = "prod"|nil, only = {names}|nil,
--     env = {...}, cwd = "/dir",
--     evaluated = {...}|nil (a JavaScript file's value, evaluated by the CLI),
--     instances = N|nil (start's -i, over every app's instances, as PM2's _startJson) }
--   { spec = { raw app table }, env = {...}, cwd = "/dir" }

local function load_now(source, api, defer_users)
  local ecosystem = require("orch.ecosystem") -- here: an idle daemon does without its ~100 KB
  local cfg, err
  if source.file or source.stdin then
    cfg, err = ecosystem.load(source.file or "<stdin>", { env_name = source.env_name, base_env = source.env,
                                             cwd = source.cwd, text = source.stdin,
                                             api = api, evaluated = source.evaluated,
                                             instances = source.instances, defer_users = defer_users })
  else
    cfg, err = ecosystem.normalize({ apps = { source.spec } },
      { file = "command line", dir = source.cwd, base_env = source.env, env_name = source.env_name,
        defer_users = defer_users })
  end
  if not cfg then return nil, err end
  if source.only then
    local keep, by_name = {}, {}
    for _, app in ipairs(cfg.apps) do by_name[app.name] = app end
    for _, name in ipairs(source.only) do
      if not by_name[name] then
        return nil, string.format("%s: --only: no app named '%s'", cfg.file or "ecosystem", name)
      end
      keep[#keep + 1] = by_name[name]
    end
    cfg.apps = keep
  end
  return cfg
end

-- The config with its users and groups left as the source names them
-- (their syntax checked): each launch looks them up in the background
-- (orch.runas.resolve_async), and an unknown one makes that launch fail
-- with the reason. For a caller that must answer now (a user's
-- orch.start), where a look-up on the loop could hang the daemon.
function M.load_unresolved(source, api)
  local cfg, err = load_now(source, api, true)
  if cfg then cfg.users = nil end
  return cfg, err
end

-- load(source, api): the config, or nil and why. load(source, api, done): the same
-- to done(cfg) or done(nil, why), the users and groups it names looked up
-- in the background (orch.runas.async): a slow user database does not stop
-- the loop, and its error still names the file, app and option.
function M.load(source, api, done)
  local cfg, err = load_now(source, api, done ~= nil)
  if not done then return cfg, err end
  if not cfg then return done(nil, err) end
  runas.resolve_config(cfg, done)
end

return M
