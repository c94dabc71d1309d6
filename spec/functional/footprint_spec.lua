-- What a CLI call and the daemon load, counted rather than timed (bench/run's
-- "CLI round trip" and "daemon RSS" rows): every CLI call starts a LuaJIT
-- state and loads its modules, so orch ping or orch list loads none of what
-- only start or a config file needs, and the daemon loads none of the CLI's
-- verbs. A stub tree in ORCH_LUA_DIR logs each module as it is loaded.
local H = require("helpers")

-- An ORCH_LUA_DIR tree below dir: every module of lua/orch as a stub that
-- appends its name to log, then runs the module's source.
local function logging_tree(dir, log)
  local root = dir .. "/lua"
  local n = 0
  for file in H.sh("cd '" .. H.root .. "/lua' && find orch -name '*.lua'"):gmatch("[^\n]+") do
    local name = file:gsub("%.lua$", ""):gsub("/init$", ""):gsub("/", ".")
    H.sh("mkdir -p '" .. root .. "/" .. file:match("^(.*)/") .. "'")
    H.write(root .. "/" .. file, string.format(
      "local f = assert(io.open(%q, 'a')) f:write(%q, '\\n') f:close()\nreturn assert(loadfile(%q))(...)\n",
      log, name, H.root .. "/lua/" .. file))
    n = n + 1
  end
  assert(n > 10, "no modules found in " .. H.root .. "/lua")
  return root
end

-- The modules `orch ARGS` loads (a set), the daemon of home already running.
local function loaded_by(dir, home, args)
  local log = dir .. "/loaded-" .. #args .. "-" .. tostring(args[1])
  local tree = logging_tree(dir, log)
  local code, _, err = H.orch_sync(args, { home = home, env = { ORCH_LUA_DIR = tree } })
  assert.are.equal(0, code, err)
  local set = {}
  for name in (H.read(log) or ""):gmatch("[^\n]+") do set[name] = true end
  return set
end

-- Modules that only start (its flags, from orch.schema) or config files need.
local START_ONLY = { "orch.cliflags", "orch.schema", "orch.validate", "orch.ecocli", "orch.ecosystem", "orch.jsconfig" }

describe("what orch loads", function()
  local dir, home
  H.each_test(function(d, h) dir, home = d, h end)

  it("loads for orch ping and orch list none of the modules only start and config files need", function()
    local code, _, err = H.orch_sync({ "ping" }, { home = home })
    assert.are.equal(0, code, err)
    for _, args in ipairs({ { "ping" }, { "list" }, { "list", "--json" } }) do
      local set = loaded_by(dir, home, args)
      assert.is_true(set["orch.cli"], "the stub tree logs what the CLI loads")
      for _, m in ipairs(START_ONLY) do
        assert.is_nil(set[m], "orch " .. table.concat(args, " ") .. " loaded " .. m)
      end
    end
    -- start's flags are there when asked for
    local set = loaded_by(dir, home, { "help", "start" })
    assert.is_true(set["orch.cliflags"])
  end)

  it("loads none of the CLI's verbs in the daemon", function()
    local code, out, err = H.orch_sync({ "eval", [[
      local t = {}
      for name in pairs(package.loaded) do
        if name:match("^orch%.cli") or name == "orch.pm2verbs" then t[#t + 1] = name end
      end
      table.sort(t)
      return "loaded: " .. table.concat(t, " ")]] }, { home = home })
    assert.are.equal(0, code, err)
    assert.are.equal('"loaded: "', out:match("^%s*(.-)%s*$"))
  end)

  -- An idle daemon's Lua heap holds the modules it loaded: those of config
  -- files (until the first start), of the HTTP endpoint (without --http or
  -- ORCH_HTTP) and of orch update's takeover (unless handed over) wait.
  it("loads in an idle daemon none of the config, HTTP or update modules", function()
    local lazy = { "orch.ecosystem", "orch.schema", "orch.validate", "orch.ecofile", "orch.srcmap",
                   "orch.http", "orch.httpserve", "orch.takeover", "orch.handover" }
    local probe = "local t = {} for _, m in ipairs({'" .. table.concat(lazy, "','") .. "'}) do "
      .. "if package.loaded[m] then t[#t + 1] = m end end return 'loaded: ' .. table.concat(t, ' ')"
    local code, out, err = H.orch_sync({ "eval", probe }, { home = home })
    assert.are.equal(0, code, err)
    assert.are.equal('"loaded: "', out:match("^%s*(.-)%s*$"))
    -- the first start loads what it needs
    H.started(dir, home, [[{ name = "one", script = "sleep", args = { "1000" } },]])
    code, out, err = H.orch_sync({ "eval", "return package.loaded['orch.ecosystem'] ~= nil" }, { home = home })
    assert.are.equal(0, code, err)
    assert.are.equal("true", out:match("^%s*(.-)%s*$"))
  end)
end)
