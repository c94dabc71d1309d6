-- PM2's config files (spec/fixtures/pm2/, modelled on PM2's own test
-- fixtures) start unchanged: JavaScript evaluated by Node in the CLI, PM2's
-- relaxed JSON in its every shape, YAML. The apps run with the environment
-- --env selects.
local H = require("helpers")

local FIXTURES = H.root .. "/spec/fixtures/pm2"

-- name -> pid of the processes a start reply lists (every one online).
local function started(res)
  local pids = {}
  for _, p in ipairs(res.processes) do
    assert.are.equal("online", p.status, p.name)
    H.track(p.pid)
    pids[p.name] = p.pid
  end
  return pids
end

describe("PM2 config files", function()
  local dir, home
  H.each_test(function(d, h) dir, home = d, h end)

  -- `orch start ecosystem.config.js` (what `pm2 init` writes) used to run
  -- the config file itself as an app, which crash-looped into errored.
  it("start the apps of an ecosystem.config.js, not the file as an app, with --env's environment", function()
    H.need("node")
    local file = FIXTURES .. "/js-configuration/ecosystem.config.js"
    local res, code, err = H.json(home, { "start", file, "--env", "production" },
      { cwd = dir, env = { PM2_FIXTURE_VALUE = "from-the-shell" } })
    assert.are.equal(0, code, err)
    assert.are.equal(1, #res.processes)
    local pids = started(res)
    assert.is_not_nil(pids.API, "no app named API: " .. require("cjson").encode(res))
    local env = H.environ(pids.API)
    assert.are.equal("true", env.COMMON_VARIABLE)
    assert.are.equal("production", env.NODE_ENV)
    assert.are.equal("from-the-shell", env.FROM_SHELL)
  end)

  -- Each PM2 shape and language, from spec/fixtures/pm2 (modelled on PM2's
  -- test/fixtures): the apps it names run; those with env_production got it.
  local FORMATS = {
    { "ecosystem.json", { "API", "WEB" }, "API" },                 -- comments, unquoted keys
    { "ecosystem.json5", { "API", "WEB" }, "API" },                -- JSON5: quotes, trailing commas
    { "all.json", { "echo", "child", "api-2" }, "echo" },          -- a bare list
    { "pm2-ecosystem.json", { "echo", "child" }, "echo" },         -- { "pm2": [...] }
    { "process.json", { "echo" }, "echo" },                        -- one app
    { "yaml-configuration/apps.yml", { "test", "PythonApp" }, "test" },
    { "yaml-configuration/apps.yaml", { "test", "PythonApp" }, "test" },
    { "mjs/ecosystem.config.mjs", { "Test-es6-modules" }, "Test-es6-modules", "node" }, -- export default
    { "esm/ecosystem.config.js", { "esm" }, "esm", "node" },       -- "type": "module"
    { "configuration.json", { "echo", "child" }, "echo", "node" }, -- an expression: Node evaluates it
  }
  for _, case in ipairs(FORMATS) do
    local file, names, with_env, needs = case[1], case[2], case[3], case[4]
    it("start " .. file .. " unchanged, with --env production", function()
      if needs then H.need(needs) end
      local res, code, err = H.json(home, { "start", FIXTURES .. "/" .. file, "--env", "production" }, { cwd = dir })
      assert.are.equal(0, code, err)
      local pids = started(res)
      for _, name in ipairs(names) do assert.is_not_nil(pids[name], name .. " in " .. err) end
      assert.are.equal(#names, #res.processes)
      assert.are.equal("production", H.environ(pids[with_env]).NODE_ENV)
    end)
  end

  it("give the environment of the file's env block without --env", function()
    local res, code, err = H.json(home, { "start", FIXTURES .. "/yaml-configuration/apps.yaml" }, { cwd = dir })
    assert.are.equal(0, code, err)
    local pids = started(res)
    assert.are.equal("PYTHONENV", H.environ(pids.PythonApp).DEFAULT_STR)
    assert.is_nil(H.environ(pids.test).NODE_ENV)
  end)

  it("run a JavaScript config in the foreground with orch run", function()
    H.need("node")
    local o = H.orch({ "run", FIXTURES .. "/js-configuration/ecosystem.config.js", "--env", "production" },
      { home = home, cwd = dir })
    o:wait_output("API:0 online, pid %d+", 30000)
    local pid = o:online("API:0")[1].pid
    H.track(pid)
    assert.are.equal("production", H.environ(pid).NODE_ENV)
    o:kill("sigterm")
    o:wait_exit(30000)
  end)

  -- Errors in these files keep orch's FILE:LINE: app 'NAME': option 'X' form.
  it("name the file and line of a JavaScript syntax error, and of a bad option", function()
    H.need("node")
    local file = H.write(dir .. "/ecosystem.config.js",
      "module.exports = {\n  apps: [\n    { name: 'a' script: 'x.js' }\n  ]\n}\n")
    local code, _, err = H.orch_sync({ "start", file }, { home = home, cwd = dir })
    assert.are.equal(1, code)
    assert.are.equal(file .. ":3: SyntaxError: Unexpected identifier 'script'", err:match("[^\n]*SyntaxError[^\n]*"):gsub("^orch[^:]*: ", ""))
    H.write(dir .. "/app.js", "")
    file = H.write(dir .. "/bad.config.js", "const path = require('path');\nmodule.exports = {\n  apps: [{\n"
      .. "    name: 'api',\n    script: path.join(__dirname, 'app.js'),\n    max_restarts: 'ten',\n  }],\n};\n")
    code, _, err = H.orch_sync({ "start", file }, { home = home, cwd = dir })
    assert.are.equal(1, code)
    assert.truthy(err:find(file .. ":6: app 'api': option 'max_restarts': expected a non-negative integer, "
      .. 'got string "ten"', 1, true), err)
    file = H.write(dir .. "/apps.yml", "apps:\n  - name: y\n    script: app.js\n    max_restarts: ten\n")
    code, _, err = H.orch_sync({ "start", file }, { home = home, cwd = dir })
    assert.are.equal(1, code)
    assert.truthy(err:find(file .. ":4: app 'y': option 'max_restarts': ", 1, true), err)
    file = H.write(dir .. "/apps.json", "[\n  { name: 'j',\n    script: 'app.js',\n    max_restarts: 'ten', },\n]\n")
    code, _, err = H.orch_sync({ "start", file }, { home = home, cwd = dir })
    assert.are.equal(1, code)
    assert.truthy(err:find(file .. ":4: app 'j': option 'max_restarts': ", 1, true), err)
  end)

  it("say that Node is needed for a JavaScript config, and how to convert it", function()
    local bin = H.bin:sub(1, 1) == "/" and H.bin or H.root .. "/" .. H.bin
    local out = H.sh(string.format("cd '%s' && PATH=/nonexistent ORCH_HOME='%s' '%s' start '%s' 2>&1; echo status $?",
      dir, home, bin, FIXTURES .. "/js-configuration/ecosystem.config.js"))
    assert.matches("status 1", out)
    assert.truthy(out:find("ecosystem.config.js: a JavaScript config is evaluated with Node.js (as PM2 does), and "
      .. "node is not on PATH", 1, true), out)
    assert.truthy(out:find("> ecosystem.json", 1, true), out)
    -- a .json file with an expression, without Node: what to do instead
    out = H.sh(string.format("cd '%s' && PATH=/nonexistent ORCH_HOME='%s' '%s' start '%s' 2>&1; echo status $?",
      dir, home, bin, FIXTURES .. "/configuration.json"))
    assert.matches("status 1", out)
    assert.truthy(out:find("configuration.json:6: invalid JSON: an expression ('.' after a value): orch reads "
      .. "literal values only, where PM2 evaluates a .json file as JavaScript", 1, true), out)
  end)

  -- PM2's _startJson takes -i N over the file's instances (logs/log-json.sh:
  -- pm2 start ecosystem.json --only X -i 2); -f changes nothing for a file.
  it("run -i N instances of a file's apps over its instances, and take -f with a warning", function()
    H.write(dir .. "/eco.json", '{ "apps": [{ "name": "a", "script": "sleep", "args": "600", "instances": 1 },\n'
      .. '  { "name": "b", "script": "sleep", "args": "600" }] }\n')
    local res, code, err = H.json(home, { "start", "eco.json", "--only", "a", "-i", "3", "-f" }, { cwd = dir })
    assert.are.equal(0, code, err)
    started(res)
    assert.are.equal(3, #res.processes)
    assert.matches("warning: %-%-force has no effect on an ecosystem file", err)
    local _
    _, code, err = H.json(home, { "start", "eco.json", "-i", "x" }, { cwd = dir })
    assert.are.equal(2, code)
    assert.matches("%-%-instances x: option 'instances': expected", err)
  end)

  -- PM2's cli/piped-config.sh: cat ecosystem.json | pm2 start - (and delete -).
  it("start and delete the apps of a process file read from stdin with -, naming <stdin> in errors", function()
    local function piped(verb, file)
      local o = H.orch({ "-c", 'exec "$ORCH" ' .. verb .. ' - --json < ' .. file },
        { home = home, cwd = dir, program = "/bin/sh", env = { ORCH = H.bin } })
      o:wait_exit(30000)
      return o.code, o.out, o.err
    end
    H.write(dir .. "/eco.json", '{ "apps": [{ "name": "a", "script": "sleep", "args": "600" }] }\n')
    H.write(dir .. "/other.json", '{ "apps": [{ "name": "b", "script": "sleep", "args": "600" }] }\n')
    local _
    local code, out, err = piped("start", "eco.json")
    assert.are.equal(0, code, err)
    local res = require("cjson").decode(out)
    started(res)
    assert.are.equal("a", res.processes[1].name)
    assert.are.equal("<stdin>", H.json(home, { "describe", "a" })[1].source)
    -- another file on stdin adds its apps: a's are not deleted as gone from "the" file
    code, _, err = piped("start", "other.json")
    assert.are.equal(0, code, err)
    assert.are.equal(2, #H.json(home, { "list" }))
    H.write(dir .. "/bad.json", '{ "apps": [\n  { "script": "sleep" ]\n}\n')
    code, _, err = piped("start", "bad.json")
    assert.are.equal(1, code)
    assert.matches("<stdin>:2: invalid JSON", err)
    code, _, err = piped("delete", "eco.json")
    assert.are.equal(0, code, err)
    local list = H.json(home, { "list" })
    assert.are.equal(1, #list)
    assert.are.equal("b", list[1].name)
  end)
end)
