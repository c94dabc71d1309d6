-- orch.scalecmd: the control command behind `orch scale NAME N|+N|-N`, as
-- PM2's scale: it counts every process of the name, whichever app (start
-- -f makes several of a name) it belongs to. orch.commands adds it to its
-- handlers; t holds what it shares with them (check, views).
local key_of = require("orch.targets").key

local M = {}

-- Their processes, oldest (lowest id) first.
local function procs_named(engine, keys)
  local procs = {}
  for _, key in ipairs(keys) do
    for _, p in ipairs(engine:procs_of(key)) do procs[#procs + 1] = p end
  end
  table.sort(procs, function(a, b) return a.id < b.id end)
  return procs
end

-- PM2's scale counts every process of the name, whichever app (start -f)
-- it belongs to: new processes are the first app's (PM2 copies the first
-- process), surplus ones the oldest of them all; an app left with none is
-- deleted, as PM2 deletes its processes. done() once every change is made.
local function scale_named(engine, keys, n, done)
  local procs = procs_named(engine, keys)
  if #keys == 1 or n >= #procs then
    local first = #engine:procs_of(keys[1])
    return engine:scale(keys[1], first + n - #procs, done)
  end
  local gone = {}
  for i = 1, #procs - n do
    local key = key_of(procs[i])
    gone[key] = (gone[key] or 0) + 1
  end
  local left = 1
  local function one()
    left = left - 1
    if left == 0 then done() end
  end
  for key, k in pairs(gone) do
    left = left + 1
    engine:scale(key, #engine:procs_of(key) - k, function(rest)
      if #rest == 0 then engine:forget(key) end
      one()
    end)
  end
  one()
end

function M.handlers(t)
  local H = {}

  function H.scale(engine, args, respond)
    local ok, err = t.check(args, { name = "string", instances = "number", delta = "number" }, { "name" })
    if not ok then return respond(nil, "EINVAL", err) end
    if (args.instances == nil) == (args.delta == nil) then
      return respond(nil, "EINVAL", "give exactly one of 'instances' and 'delta'")
    end
    local most = require("orch.ecosystem").MAX_INSTANCES
    local function bad(n)
      if n ~= math.floor(n) or n < 1 or n > most then
        return string.format("'instances' must be an integer from 1 to %d, got %s", most, tostring(n))
      end
    end
    if args.delta and args.delta ~= math.floor(args.delta) then
      return respond(nil, "EINVAL", string.format("'delta' must be an integer, got %s", tostring(args.delta)))
    end
    local why = args.instances and bad(args.instances)
    if why then return respond(nil, "EINVAL", why) end
    if #engine:keys_named(args.name) == 0 then
      local _, rerr = engine:resolve(args.name)
      return respond(nil, "ENOTFOUND", rerr or ("no app named '" .. args.name .. "'"))
    end
    local merge = args.instances and string.format("scale\0%s\0%d", args.name, args.instances)
    engine.ops:run(engine:keys_named(args.name), merge, function(finish)
      local keys = engine:keys_named(args.name)
      if #keys == 0 then
        return finish(nil, "ENOTFOUND", string.format("no app named '%s'", args.name))
      end
      local total = #procs_named(engine, keys)
      local n = args.instances or (total + args.delta)
      local nwhy = bad(n)
      if nwhy then return finish(nil, "EINVAL", nwhy .. " (" .. total .. " running, "
        .. string.format("%+d", args.delta) .. ")") end
      scale_named(engine, keys, n, function() finish(t.views(engine, procs_named(engine, keys))) end)
    end, respond)
  end

  return H
end

return M
