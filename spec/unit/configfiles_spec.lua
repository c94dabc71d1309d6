-- Config files in PM2's formats: which names are config files
-- (orch.ecocli.is_config), PM2's relaxed JSON (orch.relaxjson), PM2's
-- top-level shapes (orch.ecosystem.shape).
local ecocli = require("orch.ecocli")
local relaxjson = require("orch.relaxjson")
local eco = require("orch.ecosystem")
local cjson = require("cjson")
local srcmap = require("orch.srcmap")

-- A scratch directory for each test of the describe it is called in
-- (removed after it): returns a table whose dir is that directory and
-- whose write(name, text) writes a file there and returns its path.
local function scratch()
  local t = {}
  before_each(function()
    t.dir = os.tmpname()
    os.remove(t.dir)
    assert(os.execute("mkdir -p '" .. t.dir .. "'") == 0)
  end)
  after_each(function() os.execute("rm -rf '" .. t.dir .. "'") end)
  function t.write(name, text)
    local f = assert(io.open(t.dir .. "/" .. name, "w"))
    f:write(text)
    f:close()
    return t.dir .. "/" .. name
  end
  return t
end

describe("orch.ecocli.is_config", function()
  it("knows PM2's config names and orch's Lua ones", function()
    for _, name in ipairs({ "ecosystem.config.js", "ecosystem.config.cjs", "ecosystem.config.mjs", "app.config.js",
        "/srv/x/ecosystem.json", "process.json", "all.json", "ecosystem.json5", "apps.yml", "apps.yaml",
        "ecosystem.js", "ecosystem-prod.mjs", "ecosystem.lua", "ecosystem.prod.lua", "app.config.lua", "bad.ecosystem.lua",
        "dir.d/APPS.YML" }) do
      assert.is_true(ecocli.is_config(name), name)
    end
  end)

  it("leaves scripts to be run", function()
    for _, name in ipairs({ "app.js", "server.mjs", "index.cjs", "worker.lua", "echo.py", "run.sh", "config.js",
        "/srv/ecosystem.d/app.js", "http", "./json", "app.json.d/app.js" }) do
      assert.is_false(ecocli.is_config(name), name)
    end
    assert.is_false(ecocli.is_config(nil))
  end)

  it("tells the language by the extension, else by the text", function()
    assert.are.equal("js", ecocli.kind("/a/ecosystem.config.mjs"))
    assert.are.equal("json", ecocli.kind("/a/x.json5"))
    assert.are.equal("yaml", ecocli.kind("/a/x.YML"))
    assert.are.equal("json", ecocli.kind("/a/ecosystem.config", " [ {} ]"))
    assert.are.equal("lua", ecocli.kind("/a/ecosystem.config", "return {}"))
  end)
end)

describe("orch.relaxjson", function()
  local function ok(text)
    local v, msg, line = relaxjson.decode(text)
    assert(v ~= nil, tostring(msg) .. " at line " .. tostring(line))
    return v
  end
  local function bad(text)
    local v, msg, line = relaxjson.decode(text)
    assert.is_nil(v)
    return line .. ": " .. msg
  end

  it("reads strict JSON", function()
    assert.are.same({ apps = { { name = "a", n = 1.5, t = true, f = false, e = {}, l = { 1, "x" } } } },
      ok('{"apps": [{"name": "a", "n": 1.5, "t": true, "f": false, "e": {}, "l": [1, "x"]}]}'))
    assert.are.equal(cjson.null, ok("null"))
    assert.are.equal("é\n\"😀", ok('"\\u00e9\\n\\"\\ud83d\\ude00"'))
  end)

  it("reads what PM2's JavaScript-evaluated JSON files hold", function()
    local v = ok([[
// a comment
{
  /* a block
     comment */
  apps: [
    { name: 'api', $x: "y", 'quoted-key': 0x1F, n: -.5, p: +2, e: 1e3, u: undefined, },
  ],
}
]])
    assert.are.same({ apps = { { name = "api", ["$x"] = "y", ["quoted-key"] = 31, n = -0.5, p = 2, e = 1000,
      u = cjson.null } } }, v)
    assert.are.same({ 1, 2 }, ok("[1, 2,]"))
    assert.are.equal("a b", ok("'a \\\nb'"):gsub("\n", ""))
  end)

  it("says where it stops, and why", function()
    assert.are.equal("3: expected ',' or '}' after the value of 'a', found '\"'", bad('{\n "a": 1\n "b": 2\n}'))
    assert.are.equal("2: '[' on line 1 is never closed", bad('[1,\n2'))
    assert.are.equal("1: unterminated string (a newline in a string is written \\n)", bad('{"a": "x\n"}'))
    assert.are.equal("2: unterminated /* comment", bad('{\n /* x'))
    assert.are.equal("1: NaN is not a number orch accepts", bad('{a: NaN}'))
    assert.are.equal("1: unexpected 'x' after the value", bad('{} x'))
    assert.are.equal("1: a value is missing at the end of the file", bad(''))
    assert.are.equal("1: nested deeper than 200 levels", bad(("["):rep(1000)))
  end)

  it("refuses expressions, pointing to a JavaScript or Lua config", function()
    -- PM2's test/fixtures/configuration.json computes a script name
    assert.matches("^2: an expression %('%.' after a value%): orch reads literal values only.*%.config%.js or %.lua",
      bad('[{\n  script: [".", "/", "e", "cho.js"].join("")\n}]'))
    assert.matches("^1: expected a value, found 'process' %(orch reads literal values only",
      bad('{ a: process.env.X }'))
    -- the CLI has Node evaluate such a file, as PM2 does, when it is installed
    assert.is_true(select(4, relaxjson.decode('{ a: process.env.X }')))
    assert.is_true(select(4, relaxjson.decode('{ a: "x" + "y" }')))
    assert.is_falsy(select(4, relaxjson.decode('{ a: "x" "y" }')))
  end)
end)

describe("orch.ecosystem.shape", function()
  local app = { name = "a", script = "a.js" }
  it("takes PM2's shapes", function()
    assert.are.same({ apps = { app } }, eco.shape({ apps = { app } }))
    assert.are.same({ apps = { app }, deploy = {} }, eco.shape({ pm2 = { app }, deploy = {} }))
    assert.are.same({ apps = { app } }, eco.shape({ app }))
    assert.are.same({ apps = { app } }, eco.shape(app))
    assert.are.same({ apps = { app } }, eco.shape({ apps = app }))
  end)

  it("leaves other tables for normalize to explain", function()
    assert.are.same({ deploy = {} }, eco.shape({ deploy = {} }))
    assert.are.same({ apps = { web = app } }, eco.shape({ apps = { web = app } }))
    assert.are.same({}, eco.shape({}))
  end)
end)

describe("orch.srcmap.js_lines", function()
  it("finds the keys of the literal a JavaScript config exports", function()
    local map = srcmap.js_lines([[
const path = require('path'); // { not: [ "this" ] }
module.exports = {
  apps: [{
    name: 'api',
    script: path.join(__dirname, 'api.js'),
    env: { A: `x${1}`, B: 2 },
  }],
  deploy: {},
};
]], 1)
    assert.are.equal(3, map.keys.apps)
    assert.are.equal(8, map.keys.deploy)
    assert.are.equal(3, map.apps[1].line)
    assert.are.same({ name = 4, script = 5, env = 6 }, map.apps[1].keys)
    assert.are.same({ A = 6, B = 6 }, map.apps[1].subkeys.env)
  end)

  it("takes export default, a bare list, and a named list", function()
    assert.are.equal(2, srcmap.js_lines("export default [\n  { name: 'a' },\n  { name: 'b' }\n]\n", 2).apps[1].line)
    local map = srcmap.js_lines("const apps = [\n  {\n    name: 'a',\n  },\n];\nmodule.exports = { apps };\n", 1)
    assert.are.equal(3, map.apps[1].keys.name)
  end)

  it("gives no line rather than a wrong one", function()
    assert.is_nil(srcmap.js_lines("module.exports = { apps: [{ name: 'a' }] }\nconst x = { apps: [{}] }\n", 2))
    assert.is_nil(srcmap.js_lines("module.exports = { apps: makeApps() }\n", 2))
  end)
end)

describe("orch.jsconfig", function()
  local jsconfig = require("orch.jsconfig")
  before_each(function()
    assert(os.execute("command -v node >/dev/null") == 0, "node is not installed: run ./setup.sh")
  end)
  local tmp = scratch()
  local write = tmp.write

  it("evaluates a CommonJS config with the given environment, dropping functions", function()
    local file = write("ecosystem.config.js", "module.exports = { apps: [{ name: 'a', script: require('path')"
      .. ".join(__dirname, 'a.js'), env: { X: process.env.X || 'none' }, f() {} }] }\n")
    local value, dropped = jsconfig.evaluate(file, { env = { X = "given", PATH = os.getenv("PATH") } })
    assert.are.same({ apps = { { name = "a", script = tmp.dir .. "/a.js", env = { X = "given" } } } }, value)
    assert.are.same({ "apps[0].f" }, dropped)
  end)

  it("names the file and line of Node's errors, and what JSON cannot carry", function()
    local file = write("a.config.js", "module.exports = {\n  apps: [\n    { name: 'a' script: 'x' }\n  ]\n}\n")
    assert.are.same({ nil, file .. ":3: SyntaxError: Unexpected identifier 'script'" }, { jsconfig.evaluate(file) })
    file = write("b.config.mjs", "export default {\n  apps: [ { port: 0 / 0 } ] }\n")
    assert.are.same({ nil, file .. ": apps[0].port is NaN, which JSON cannot carry" }, { jsconfig.evaluate(file) })
  end)

  it("kills a config that never finishes", function()
    local file = write("loop.config.js", "while (true) {}\n")
    local t0 = os.time()
    local value, err = jsconfig.evaluate(file, { timeout_ms = 300 })
    assert.is_nil(value)
    assert.are.equal(file .. ": Node did not finish evaluating the file within 300 ms (does it wait for something, "
      .. "or loop?)", err)
    assert.is_true(os.time() - t0 < 20)
  end)
end)

describe("deploy.<env>.env", function()
  -- PM2's env-refresh.sh: with --env production, deploy.production.env
  -- reaches every app, under the app's env and env_production.
  it("is merged under the apps' env and env_<env> with --env", function()
    local tbl = { apps = {
      { name = "a", script = "sh", env = { A = "app" }, env_production = { B = "overlay" } },
      { name = "b", script = "sh" },
    }, deploy = { production = { user = "node", env = { A = "deploy", B = "deploy", C = 3 } } } }
    local cfg = assert(eco.normalize(tbl, { env_name = "production", dir = "/" }))
    assert.are.equal("app", cfg.apps[1].env.A)
    assert.are.equal("overlay", cfg.apps[1].env.B)
    assert.are.equal("3", cfg.apps[1].env.C)
    assert.are.equal("deploy", cfg.apps[2].env.A)
    assert.are.same({}, cfg.warnings)
    cfg = assert(eco.normalize(tbl, { dir = "/" }))
    assert.is_nil(cfg.apps[2].env.A)
  end)

  it("is checked like env", function()
    local _, err = eco.normalize({ apps = { { script = "sh" } }, deploy = { prod = { env = { X = {} } } } },
      { env_name = "prod", dir = "/", file = "eco.json" })
    assert.are.equal("eco.json: top-level key 'deploy': prod.env: variable 'X': expected a string, number or "
      .. "boolean, got empty table", err)
  end)
end)

-- PM2 ignores keys it does not know (its own fixtures hold "max": "10"); in
-- PM2's formats orch ignores them too, with a warning, while an orch Lua
-- ecosystem keeps refusing them.
describe("unknown keys in PM2's formats", function()
  local write = scratch().write
  before_each(function() write("app.js", "") end)

  it("are ignored with a warning naming the file, line, app and option, and the nearest option", function()
    local path = write("eco.json", '{\n  "apps": [{\n    "name": "web",\n    "script": "app.js",\n'
      .. '    "max": "10",\n    "instnces": 2\n  }],\n  "depoly": {}\n}\n')
    local cfg, err = eco.load(path)
    assert(cfg, err)
    assert.are.equal(1, cfg.apps[1].instances)
    assert.is_nil(cfg.apps[1].max)
    assert.are.same({
      path .. ":8: top-level key 'depoly' is unknown, ignored (did you mean 'deploy'?)",
      path .. ":5: app 'web': option 'max' is no option of orch's or PM2's, ignored (did you mean 'pmx'?)",
      path .. ":6: app 'web': option 'instnces' is no option of orch's or PM2's, ignored (did you mean 'instances'?)",
    }, cfg.warnings)
  end)

  it("are ignored in YAML and in an evaluated JavaScript config, refused in Lua", function()
    if require("orch.yamlconf").available() then
      local path = write("apps.yml", "apps:\n  - name: web\n    script: app.js\n    frobnicate: 1\n")
      local cfg, err = eco.load(path)
      assert(cfg, err)
      assert.are.same({ path .. ":4: app 'web': option 'frobnicate' is no option of orch's or PM2's, ignored" },
        cfg.warnings)
    end
    local path = write("ecosystem.config.js", "module.exports = { apps: [{ script: 'app.js', max: '10' }] }\n")
    local cfg, err = eco.load(path, { evaluated = { apps = { { script = "app.js", max = "10" } } } })
    assert(cfg, err)
    assert.are.equal(1, #cfg.warnings)
    assert.truthy(cfg.warnings[1]:find(":1: app 'app': option 'max' is no option", 1, true), cfg.warnings[1])
    path = write("eco.lua", 'return { apps = { { script = "app.js", max = "10" } } }\n')
    cfg, err = eco.load(path)
    assert.is_nil(cfg)
    assert.are.equal(path .. ":1: app 'app': option 'max': unknown option (did you mean 'pmx'?)", err)
  end)

  it("still leave a file without apps an error that names the misspelt key", function()
    local path = write("eco.json", '{\n  "aps": [{ "script": "app.js" }]\n}\n')
    local cfg, err = eco.load(path)
    assert.is_nil(cfg)
    assert.are.equal(path .. ":2: top-level key 'aps': unknown key (did you mean 'apps'?)", err)
  end)
end)

-- PM2 passes an object or array env value JSON-encoded (its env-refresh.sh:
-- TEST_VARIABLE: { HEYYYY: true } reaches the app as {"HEYYYY":true}).
describe("an object as an env value in PM2's formats", function()
  it("is passed JSON-encoded, as PM2 does; a Lua ecosystem still refuses it", function()
    local tbl = { apps = { { script = "sh", env = { T = { HEYYYY = true }, L = { 1, "a/b" } },
                             env_production = { P = { x = 1 } } } },
                  deploy = { production = { env = { D = { y = "z" } } } } }
    local cfg = assert(eco.normalize(tbl, { dir = "/", pm2 = true, env_name = "production" }))
    assert.are.equal('{"HEYYYY":true}', cfg.apps[1].env.T)
    assert.are.equal('[1,"a/b"]', cfg.apps[1].env.L)
    assert.are.equal('{"x":1}', cfg.apps[1].env.P)
    assert.are.equal('{"y":"z"}', cfg.apps[1].env.D)
    local _, err = eco.normalize({ apps = { { script = "sh", env = { T = { HEYYYY = true } } } } },
      { dir = "/", file = "eco.lua" })
    assert.are.equal("eco.lua: app 'sh': option 'env': variable 'T': expected a string, number or boolean, got "
      .. "table", err)
  end)
end)
