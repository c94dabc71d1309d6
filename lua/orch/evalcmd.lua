-- orch.evalcmd: the control commands that run Lua in the daemon: eval
-- (orch eval, each line of orch repl) and complete (the REPL's tab
-- completion). orch.commands registers them with its argument check and
-- list marker: handlers(check, list).
local M = {}

function M.handlers(check, list)
  local H = {}

  -- Runs Lua in the daemon, in one environment kept across calls (the REPL's):
  -- `orch` is the API, everything else is the daemon's globals. An expression
  -- returns its values; print() output is sent back too.
  local EVAL_DEADLINE_MS = 2000

  local function repl_env(engine)
    if not engine.repl_env then
      local hook = require("orch.hook")
      local env = { orch = engine.api, inspect = require("orch.inspect").inspect, string = require("orch.bounds").string(),
                    table = require("orch.bounds").table(),
                    xpcall = hook.xpcall }
      -- Code the REPL loads is text only, runs with the JIT off (so the
      -- deadline reaches it) and sees the REPL's environment.
      function env.loadstring(s, name) return hook.load(s, name, env) end
      function env.load(chunk, name, mode)
        if mode ~= nil and mode ~= "t" then error("load: only text chunks (mode \"t\") may be loaded", 2) end
        return hook.load(chunk, name, env)
      end
      function env.loadfile(path)
        local f, err = io.open(path or "/dev/stdin", "rb")
        if not f then return nil, err end
        local src = f:read("*a")
        f:close()
        return hook.load(src, "@" .. tostring(path), env)
      end
      function env.dofile(path)
        local fn, err = env.loadfile(path)
        if not fn then error(err, 2) end
        return fn()
      end
      engine.repl_env = setmetatable(env, { __index = _G })
    end
    return engine.repl_env
  end

  function H.eval(engine, args, respond)
    local ok, err = check(args, { code = "string" }, { "code" })
    if not ok then return respond(nil, "EINVAL", err) end
    local inspect = require("orch.inspect")
    local output = {}
    local env = repl_env(engine)
    -- An expression first: passed through a function, so that a call in it is
    -- not a tail call (error("x") keeps its position and traceback).
    local hook = require("orch.hook")
    local chunk, cerr = hook.load("return (...)(" .. args.code .. "\n)", "=eval", env)
    if not chunk then chunk, cerr = hook.load(args.code, "=eval", env) end
    if not chunk then
      -- Incomplete when the parser ran out of text (lua.c's test), as a
      -- statement or as an expression (a table constructor across lines).
      local function at_eof(msg) return msg ~= nil and msg:sub(-7) == "'<eof>'" end
      local incomplete = at_eof(cerr) or at_eof(select(2, hook.load("return " .. args.code, "=eval")))
      return respond(nil, incomplete and "EINCOMPLETE" or "ESYNTAX", cerr)
    end
    rawset(env, "print", function(...)
      local parts = {}
      for i = 1, select("#", ...) do parts[i] = tostring((select(i, ...))) end
      output[#output + 1] = table.concat(parts, "\t")
    end)
    local function pack(...) return { n = select("#", ...), ... } end
    local res = pack(hook.call(chunk, EVAL_DEADLINE_MS, function(...) return ... end))
    rawset(env, "print", nil)
    if not res[1] then return respond(nil, "EEVAL", tostring(res[2])) end
    local n = res.n - 1
    local values = ""
    if n > 0 then
      -- Showing a value may run its metamethods (__tostring): under the deadline too.
      local shown, text = hook.call(inspect.values, EVAL_DEADLINE_MS, n, unpack(res, 2, n + 1))
      if not shown then return respond(nil, "EEVAL", "cannot show the result: " .. text) end
      values = text
    end
    -- Errors of user functions since the last eval (a timer or hook set up
    -- from the REPL fails later): the REPL shows them.
    local errors, seq = engine:user_errors_since(engine.repl_errors_seen or 0)
    engine.repl_errors_seen = seq
    local shown_errors = {}
    for i, e in ipairs(errors) do
      shown_errors[i] = string.format("%s%s failed: %s", e.process and (e.process .. ": ") or "", e.what, e.message)
    end
    respond({ output = table.concat(output, "\n"), values = values, count = n,
              errors = #shown_errors > 0 and list(shown_errors) or nil })
  end

  -- Tab completion for `orch repl` ({prefix}: the text before the cursor):
  -- the word being completed and the names that may replace it (orch.complete).
  function H.complete(engine, args, respond)
    local ok, err = check(args, { prefix = "string" }, { "prefix" })
    if not ok then return respond(nil, "EINVAL", err) end
    local names, seen = {}, {}
    for _, p in ipairs(engine.sup:list()) do
      if not seen[p.name] then seen[p.name], names[#names + 1] = true, p.name end
    end
    local word, candidates = require("orch.complete").complete(repl_env(engine), args.prefix, names)
    respond({ word = word, candidates = #candidates > 0 and list(candidates) or nil })
  end

  return H
end

return M
