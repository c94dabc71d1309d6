-- orch.targets: which processes a command's target names. PM2's forms, in
-- PM2's order (its API's _operate): `all`; `/regex/` on app names; an app
-- name or a script path (`orch stop api.js`: the apps whose script is that
-- file, resolved from the CLI's directory); a namespace; a numeric id (a
-- name or namespace made of digits wins, as in PM2). Pure: the process list
-- and the regex matcher come from the caller.
local util = require("orch.util")

local M = {}

-- An app's namespace: its `namespace` option, PM2's "default" without one.
function M.namespace(app)
  local ns = type(app) == "table" and app.namespace
  return type(ns) == "string" and ns ~= "" and ns or "default"
end

-- Which app a process belongs to: its app's name, or for a second app of
-- the same name (orch start -f, as PM2's) the key orch gave it
-- ("NAME#2": '#' is in no name). orch.engine's apps are keyed by it.
function M.key(p)
  return p.app and p.app.key or p.name
end

function M.is_regex(target)
  return #target > 2 and target:sub(1, 1) == "/" and target:sub(-1) == "/"
end

-- PM2 takes the text between the slashes as a JavaScript regex; POSIX
-- extended syntax covers the common forms once \d (and \D) are spelled out.
local function posix(re)
  return (re:gsub("\\([dD])", function(c) return c == "d" and "[0-9]" or "[^0-9]" end))
end

local function copy(list)
  local out = {}
  for i, p in ipairs(list) do out[i] = p end
  return out
end

local function where(procs, pred)
  local out = {}
  for _, p in ipairs(procs) do
    if pred(p) then out[#out + 1] = p end
  end
  return out
end

-- procs: every process (in id order); opts.cwd: the directory a script
-- path is relative to (no script match without it); opts.regex_find:
-- orch.core's. Returns the processes (a new list: callers remove from the
-- table while they walk it), or nil, message, code ("EINVAL" for a bad
-- regex, "ENOTFOUND" for nothing named so). `all` with no processes is an
-- empty list: the caller decides whether that is an error.
function M.resolve(procs, target, opts)
  opts = opts or {}
  target = tostring(target)
  if target == "all" then return copy(procs) end
  if M.is_regex(target) then
    local names = {}
    for i, p in ipairs(procs) do names[i] = p.name end
    local hits, err = opts.regex_find(posix(target:sub(2, -2)), names)
    if not hits then return nil, string.format("invalid regular expression %s: %s", target, err), "EINVAL" end
    local out = {}
    for i, p in ipairs(procs) do
      if hits[i] then out[#out + 1] = p end
    end
    if #out == 0 then return nil, string.format("no app name matches %s", target), "ENOTFOUND" end
    return out
  end
  local path = opts.cwd and target:find("%.") and util.abspath(target, opts.cwd)
  local named = where(procs, function(p) return p.name == target or (path and p.app.script == path) end)
  if #named > 0 then return named end
  local spaced = where(procs, function(p) return M.namespace(p.app) == target end)
  if #spaced > 0 then return spaced end
  local id = tonumber(target)
  if id and tostring(math.floor(id)) == target then
    local byid = where(procs, function(p) return p.id == id end)
    if #byid > 0 then return byid end
    return nil, string.format("no process with id %s", target), "ENOTFOUND"
  end
  local names, seen = {}, {}
  for _, p in ipairs(procs) do
    if not seen[p.name] then
      seen[p.name] = true
      names[#names + 1] = p.name
    end
  end
  local hint = util.did_you_mean(target, names)
  return nil, string.format("no app named '%s'%s", target,
    hint and (" (did you mean '" .. hint .. "'?)") or ""), "ENOTFOUND"
end

return M
