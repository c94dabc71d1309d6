-- orch.amend: options given to `orch restart` (or to `orch start` of a
-- known app) change the app before it restarts, as PM2's restart does with
-- the flags it is given (API._operate → _handleAttributeUpdate):
-- `--node-args`, `--kill-timeout`, `-- args`, `--name NEW` (a rename: the
-- same processes, ids and counts, under the new name)... An app started
-- from the command line is normalised again from its command line with
-- the change; an app of a process file takes its options from the file
-- (`orch restart FILE`), so a change for one is refused, saying so.
-- Everything is checked before anything changes.
local schema = require("orch.schema")
local key_of = require("orch.targets").key
local util = require("orch.util")

local M = {}

-- The option a key sets (a PM2 alias is its option).
local function canonical(key)
  local o = schema.options[key]
  return o and o.alias_of or key
end

-- The apps of procs (their keys), in order, without repeats.
local function keys_of(procs)
  local keys, seen = {}, {}
  for _, p in ipairs(procs) do
    if not seen[key_of(p)] then
      seen[key_of(p)] = true
      keys[#keys + 1] = key_of(p)
    end
  end
  return keys
end

-- Whether any process is named name.
local function named(engine, name)
  for _, p in ipairs(engine.sup:list()) do
    if p.name == name then return true end
  end
  return engine.apps[name] ~= nil
end

-- options: { option = value } (orch.cliflags.options, checked there);
-- args: the script's arguments, or nil. done(plan) for apply(), or done(nil,
-- code, message). The users and groups the new options name are looked up
-- in the background (orch.runas.async): a slow user database does not stop
-- the loop. The checks against other apps run once every app is loaded, in
-- the same turn of the loop as the caller's apply().
function M.plan(engine, procs, options, args, done)
  local keys = keys_of(procs)
  local loaded = {}
  local function check()
    local plan = {}
    for i, key in ipairs(keys) do
      local entry, cfg, source = engine.apps[key], loaded[i].cfg, loaded[i].source
      local name = entry and entry.app.name or key
      if not entry then return done(nil, "ENOTFOUND", string.format("no app named '%s'", name)) end
      local app = cfg.apps[1]
      -- the count it runs now (orch scale changes it, not the command line)
      app.instances = entry.app.instances
      if app.name ~= name then
        if #keys > 1 then
          return done(nil, "EINVAL", string.format("--name names one app, the target names %d", #keys))
        end
        if named(engine, app.name) then
          return done(nil, "EEXIST", string.format("an app named '%s' exists already", app.name))
        end
      else
        app.key = entry.app.key -- a second app of its name stays one
      end
      plan[#plan + 1] = { key = key, app = app, source = source }
    end
    return done(plan)
  end
  local function load(i)
    local key = keys[i]
    if not key then return check() end
    local entry = engine.apps[key]
    local name = entry and entry.app.name or key
    if not entry then return done(nil, "ENOTFOUND", string.format("no app named '%s'", name)) end
    if not entry.source.spec then
      local given = {}
      for k in pairs(options) do given[#given + 1] = k end
      if args then given[#given + 1] = "args" end
      table.sort(given)
      return done(nil, "EINVAL", string.format("app '%s' comes from %s: set %s there and orch restart %s", name,
        tostring(entry.source.file), table.concat(given, ", "), tostring(entry.source.file)))
    end
    local raw = util.deepcopy(entry.source.spec)
    for k, v in pairs(options) do
      -- a PM2 alias and its option are one: the new value replaces both
      for old in pairs(raw) do
        if canonical(old) == canonical(k) then raw[old] = nil end
      end
      raw[k] = util.deepcopy(v)
    end
    if args then raw.args = util.deepcopy(args) end
    local source = {}
    for k, v in pairs(entry.source) do source[k] = v end
    source.spec = raw
    engine:load(source, function(cfg, err)
      if not cfg then return done(nil, "ECONFIG", err) end
      loaded[i] = { cfg = cfg, source = source }
      return load(i + 1)
    end)
  end
  return load(1)
end

-- Makes the changes of plan: each app takes its new options (under its new
-- name), its processes keep their ids. The caller restarts them.
function M.apply(engine, plan)
  for _, step in ipairs(plan) do
    local new = step.app.name
    if not step.app.key and new ~= step.key then
      -- renamed: keyed by its new name from now on
      for _, p in ipairs(engine:procs_of(step.key)) do
        engine.sup.index:rekey(p, function() p.name, p.app = new, step.app end)
      end
      engine.apps[new], engine.apps[step.key] = engine.apps[step.key], nil
      engine.triggers:app_removed(step.key)
      engine.sockets:unbind(step.key)
    end
    engine:register(step.app, step.source)
  end
  engine:save_state_soon()
end

return M
