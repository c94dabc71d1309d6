-- orch.ecofile: an ecosystem file's text to a raw table: Lua run in a
-- sandbox under a deadline (orch.hook), PM2's relaxed JSON, YAML (a
-- JavaScript one is evaluated by Node in the CLI: orch.ecocli). What the
-- table means is orch.ecosystem's business.
local util = require("orch.util")
local srcmap = require("orch.srcmap")
local hook = require("orch.hook")
local bounds = require("orch.bounds")
local relaxjson = require("orch.relaxjson")
local yamlconf = require("orch.yamlconf")

local describe = util.describe
local sub, concat = string.sub, table.concat

local M = {}

-- "FILE:LINE: " (or what of it is known), the start of every message.
function M.location(file, line)
  if file and line then return file .. ":" .. line .. ": " end
  if file then return file .. ": " end
  if line then return "line " .. line .. ": " end
  return ""
end
local location = M.location

-- Keeps the innermost "FILE:LINE:" when an error was re-raised with another
-- position prepended, and adds "FILE: " to messages that carry none.
local function clean_error(msg, file)
  msg = tostring(msg)
  local prefix = file .. ":"
  if sub(msg, 1, #prefix) ~= prefix then return prefix .. " " .. msg end
  while true do
    local rest = msg:match("^[^\n]-:%d+: (.*)$")
    if rest and sub(rest, 1, #prefix) == prefix and sub(msg, 1, #prefix) == prefix then
      msg = rest
    else
      break
    end
  end
  return msg
end

local function env_lookup(base_env)
  if base_env then
    return function(k)
      local v = base_env[k]
      if v ~= nil then return tostring(v) end
    end
  end
  return os.getenv
end

local function env_snapshot(base_env)
  local snap = {}
  if base_env then
    for k, v in pairs(base_env) do snap[k] = tostring(v) end
    return snap
  end
  local ok, uv = pcall(require, "luv")
  if ok and type(uv) == "table" and uv.os_environ then
    for k, v in pairs(uv.os_environ()) do snap[k] = v end
  end
  return snap
end

local function shallow(t, skip)
  local c = {}
  for k, v in pairs(t) do if not (skip and skip[k]) then c[k] = v end end
  return c
end

-- A copy of the file's result made of plain tables (no metatables, cycles
-- kept): validation reads it after the deadline, where a user's __index or
-- __eq must not run.
local function plain(v, seen)
  if type(v) ~= "table" then return v end
  seen = seen or {}
  if seen[v] then return seen[v] end
  local c = {}
  seen[v] = c
  local k, x = next(v)
  while k ~= nil do
    rawset(c, plain(k, seen), plain(x, seen))
    k, x = next(v, k)
  end
  return c
end

-- The globals an ecosystem file sees: pure functions, copies of the
-- libraries (so the daemon's own can't be altered; string's bounded by
-- orch.bounds) and a read-only `env`. Its functions (hooks) see `orch` once
-- the file has loaded (opts.api, inside the daemon).
local function sandbox(opts)
  local lookup = env_lookup(opts.base_env)
  local env_pairs = {}
  local env = setmetatable({}, {
    __index = function(_, k) if type(k) == "string" then return lookup(k) end end,
    __newindex = function(_, k) error("env is read-only (tried to set " .. describe(k) .. ")", 2) end,
    __metatable = false,
  })
  env_pairs[env] = function()
    return next, env_snapshot(opts.base_env), nil
  end

  local G = {
    assert = assert, error = error, ipairs = ipairs, next = next, select = select,
    tonumber = tonumber, tostring = tostring, type = type, unpack = unpack,
    rawget = rawget, rawset = rawset, rawequal = rawequal,
    setmetatable = setmetatable, pcall = pcall, xpcall = hook.xpcall,
    getmetatable = function(v)
      -- The string metatable is shared with the daemon; keep it out of reach.
      if type(v) == "string" then return nil end
      return getmetatable(v)
    end,
    pairs = function(t)
      local p = env_pairs[t]
      if p then return p() end
      return pairs(t)
    end,
    print = function(...)
      local parts = {}
      for i = 1, select("#", ...) do parts[i] = tostring((select(i, ...))) end
      io.stderr:write(concat(parts, "\t"), "\n")
    end,
    math = shallow(math),
    string = bounds.string(),
    table = bounds.table(),
    os = { getenv = lookup, time = os.time, date = os.date, clock = os.clock },
    env = env,
  }
  G._G = G
  return G
end

M.EVAL_MESSAGE = "evaluation took longer than %d ms"

-- The table a Lua ecosystem file returns, made of plain tables; or nil, message.
function M.lua(src, file, opts)
  bounds.install()
  -- Text only: a binary chunk is LuaJIT bytecode, which is not checked.
  local fn, err = hook.load(src, srcmap.chunkname(file))
  if not fn then
    if err:find("wrong mode", 1, true) then err = "is a binary (bytecode) chunk; only Lua source is accepted" end
    return nil, clean_error(srcmap.expand(err), file)
  end
  local G = sandbox(opts)
  setfenv(fn, G)
  local ok, result = hook.run(fn, opts.deadline_ms or 2000, M.EVAL_MESSAGE)
  if not ok then
    return nil, clean_error(result:match("^(.-)\nstack traceback:") or result, file)
  end
  if type(result) ~= "table" then
    return nil, file .. ": expected the file to return a table with an 'apps' list, got " .. describe(result)
  end
  G.orch = opts.api
  return plain(result)
end

-- The table a JSON ecosystem file holds (PM2's relaxed JSON: comments,
-- unquoted keys, single quotes, trailing commas), nil, and the null it
-- decodes to; or nil, message.
function M.json(src, file)
  local value, msg, line = relaxjson.decode(src)
  if value == nil then return nil, location(file, line) .. "invalid JSON: " .. msg end
  if type(value) ~= "table" or value == relaxjson.null then
    return nil, file .. ": expected a JSON object with an \"apps\" list, got " .. describe(value)
  end
  return value, nil, relaxjson.null
end

-- The same for YAML (PM2's apps.yml).
function M.yaml(src, file)
  if not yamlconf.available() then
    return nil, file .. ": cannot read YAML: the lua-yaml package is not installed (apt-get install lua-yaml)"
  end
  local value, msg, null_or_line = yamlconf.decode(src)
  if msg then return nil, location(file, null_or_line) .. "invalid YAML: " .. msg end
  if type(value) ~= "table" or value == null_or_line then
    return nil, file .. ": expected a YAML mapping with an 'apps' list, got " .. describe(value)
  end
  return value, nil, null_or_line
end

return M
