local eco = require("orch.ecosystem")
local util = require("orch.util")

local FIXTURES = util.abspath("spec/fixtures/ecosystem")

-- Per-test scratch directory holding an executable placeholder script.
local tmp

local function write(name, content)
  local path = tmp .. "/" .. name
  local dir = util.dirname(path)
  if not util.is_dir(dir) then assert(os.execute("mkdir -p '" .. dir .. "'") == 0) end
  local f = assert(io.open(path, "w"))
  f:write(content)
  f:close()
  return path
end

-- Replaces "$TMP" in every string of an expected value.
local function subst(v)
  if type(v) == "string" then return (v:gsub("%$TMP", tmp)) end
  if type(v) ~= "table" then return v end
  local t = {}
  for k, x in pairs(v) do t[k] = subst(x) end
  return t
end

-- One app with one extra option on line 6; the app table starts on line 3.
local function one_option(src)
  return write("eco.lua", table.concat({
    "return {",
    "  apps = {",
    "    {",
    '      name = "web",',
    '      script = "app.sh",',
    "      " .. src .. ",",
    "    },",
    "  },",
    "}",
  }, "\n") .. "\n")
end

local function load_ok(path, opts)
  local cfg, err = eco.load(path, opts)
  assert(cfg, err)
  return cfg
end

local function load_err(path, opts)
  local cfg, err = eco.load(path, opts)
  assert.is_nil(cfg)
  assert.is_string(err)
  return err
end

before_each(function()
  tmp = os.tmpname()
  os.remove(tmp)
  assert(os.execute("mkdir -p '" .. tmp .. "/sub'") == 0)
  write("app.sh", "#!/bin/sh\nexit 0\n")
  write("sub/app.sh", "#!/bin/sh\nexit 0\n")
end)

after_each(function()
  if tmp and tmp:match("^/tmp/") then os.execute("rm -rf '" .. tmp .. "'") end
end)

describe("orch.ecosystem", function()
  describe("defaults", function()
    it("fills every option of a minimal app", function()
      local cfg = load_ok(write("eco.lua", 'return { apps = { { script = "app.sh" } } }\n'))
      assert.are.equal(tmp .. "/eco.lua", cfg.file)
      assert.are.equal(tmp, cfg.dir)
      assert.are.same({}, cfg.warnings)
      assert.are.same({
        name = "app", namespace = "default", script = tmp .. "/app.sh", args = {}, interpreter_none = false,
        instance_var = "NODE_APP_INSTANCE", filter_env = false, autostart = true, execute_command = false,
        disable_source_map_support = false, force = false, append_env_to_name = false, treekill = true,
        interpreter_args = {}, cwd = tmp, env = {}, instances = 1, exec_mode = "fork",
        autorestart = true, max_restarts = 16, min_uptime = 1000, restart_delay = 0,
        exp_backoff_restart_delay = 0, stop_exit_codes = {}, kill_timeout = 1600, hook_deadline = 100,
        kill_signal = "SIGINT", listen_timeout = 3000, wait_ready = false, wait_healthy = false,
        shutdown_with_message = false, merge_logs = false, time = false, log_type = "raw",
        disable_logs = false, watch = false, ignore_watch = {}, watch_delay = 500, depends_on = {}, listen = {}, balance = "shared", config_line = 1,
      }, cfg.apps[1])
    end)
  end)

  describe("good option values", function()
    local cases = {
      { 'args = "-p 80 --title \'a b\'"', { args = { "-p", "80", "--title", "a b" } } },
      { 'args = { "x", 2, 1.5 }', { args = { "x", "2", "1.5" } } },
      { "args = {}", { args = {} } },
      { 'interpreter = "python3"', { interpreter = "python3", interpreter_none = false } },
      { 'interpreter = "none"', { interpreter_none = true } },
      { 'interpreter = "./venv/bin/python"', { interpreter = "$TMP/venv/bin/python" } },
      { 'exec_interpreter = "bash"', { interpreter = "bash" } },
      { 'interpreter_args = "--harmony -x"', { interpreter_args = { "--harmony", "-x" } } },
      { 'node_args = { "--inspect" }', { interpreter_args = { "--inspect" } } },
      { 'interpreter_args = "-a", node_args = "-b"', { interpreter_args = { "-a", "-b" } } },
      { 'cwd = "sub"', { cwd = "$TMP/sub", script = "$TMP/sub/app.sh" } },
      { 'cwd = "$TMP/sub/"', { cwd = "$TMP/sub" } },
      { 'env = { A = "x", N = 3000, F = 1.5, B = false }', { env = { A = "x", N = "3000", F = "1.5", B = "false" } } },
      { "instances = 3", { instances = 3 } },
      { 'instances = "4"', { instances = 4 } },
      { 'instances = "max"', { instances = 6 } },
      { "instances = 0", { instances = 6 } },
      { "instances = -1", { instances = 5 } },
      { "instances = -10", { instances = 1 } },
      { 'exec_mode = "cluster"', { exec_mode = "cluster" } },
      { 'exec_mode = "cluster_mode"', { exec_mode = "cluster" } },
      { 'exec_mode = "fork_mode"', { exec_mode = "fork" } },
      { 'exec_mode = "cluster"', { exec_mode = "cluster", balance = "round-robin" } },
      { 'exec_mode = "cluster", balance = "shared"', { exec_mode = "cluster", balance = "shared" } },
      { "autorestart = false", { autorestart = false } },
      { "max_restarts = 0", { max_restarts = 0 } },
      { 'max_restarts = "5"', { max_restarts = 5 } },
      { 'min_uptime = "2s"', { min_uptime = 2000 } },
      { "min_uptime = 500", { min_uptime = 500 } },
      { 'restart_delay = "1.5m"', { restart_delay = 90000 } },
      { 'exp_backoff_restart_delay = "100ms"', { exp_backoff_restart_delay = 100 } },
      { "stop_exit_codes = 0", { stop_exit_codes = { 0 } } },
      { "stop_exit_codes = { 1, 2, 255 }", { stop_exit_codes = { 1, 2, 255 } } },
      { 'kill_timeout = "5s"', { kill_timeout = 5000 } },
      { 'kill_signal = "term"', { kill_signal = "SIGTERM" } },
      { 'kill_signal = "SIGUSR2"', { kill_signal = "SIGUSR2" } },
      { "kill_signal = 9", { kill_signal = "SIGKILL" } },
      { "listen_timeout = 8000", { listen_timeout = 8000 } },
      { "wait_ready = true", { wait_ready = true } },
      { "shutdown_with_message = true", { shutdown_with_message = true } },
      { 'out_file = "logs/out.log"', { out_file = "$TMP/logs/out.log" } },
      { 'error_file = "/var/log/web.err"', { error_file = "/var/log/web.err" } },
      { 'log_file = "all.log"', { log_file = "$TMP/all.log" } },
      { "log_file = false", {} },
      { "log_file = true", { log_file = true } }, -- PM2's default combined file, NAME.log
      { 'output = "o.log"', { out_file = "$TMP/o.log" } },
      { 'err_file = "e.log"', { error_file = "$TMP/e.log" } },
      { "merge_logs = true", { merge_logs = true } },
      { "combine_logs = true", { merge_logs = true } },
      { 'log_date_format = "YYYY-MM-DD HH:mm"', { log_date_format = "YYYY-MM-DD HH:mm" } },
      { "time = true", { time = true } },
      { 'log_type = "json"', { log_type = "json" } },
      { 'log_date_format = "%Y-%m-%d %H:%M:%S.%L"', { log_date_format = "%Y-%m-%d %H:%M:%S.%L" } },
      { 'disable_logs = true, out_file = "x.log"', { disable_logs = true, out_file = "/dev/null", error_file = "/dev/null" } },
      { "watch = false", { watch = false } },
      { "watch = true", { watch = { "$TMP" } } },
      { 'watch = "src"', { watch = { "$TMP/src" } } },
      { 'watch = { "src", "/etc/app" }', { watch = { "$TMP/src", "/etc/app" } } },
      { "watch = {}", { watch = false } },
      { 'ignore_watch = "node_modules"', { ignore_watch = { "node_modules" } } },
      { 'ignore_watch = { "a", "b" }', { ignore_watch = { "a", "b" } } },
      { 'max_size = "64K", retain = 50', { max_size = 65536, retain = 50 } },
      { 'max_size = 0, retain = "3"', { max_size = 0, retain = 3 } },
      { "max_size = false", { max_size = 0 } },
      { "log_compress = true", { log_compress = true } },
      { 'max_memory_restart = "200M"', { max_memory_restart = 209715200 } },
      { "max_memory_restart = 1024", { max_memory_restart = 1024 } },
      { 'cron_restart = "0 3 * * *"', { cron_restart = "0 3 * * *" } },
      { 'cron_restart = "*/5 0 3 * * MON-FRI"', { cron_restart = "*/5 0 3 * * MON-FRI" } },
      { 'cron = "@daily"', { cron_restart = "@daily" } },
      { "port = 8080", { env = { PORT = "8080" } } },
      { 'port = 8080, env = { PORT = "1" }', { env = { PORT = "8080" } } },
      { 'namespace = "prod"', { namespace = "prod" } },
      { 'vizion = false, treekill = false, pmx = false, instance_var = "ID"', { instance_var = "ID", treekill = false } },
      { 'filter_env = { "SECRET" }, post_update = { "npm i" }, force = true, autodump = true',
        { filter_env = { "SECRET" }, force = true } },
      { 'pid_file = "run/web.pid"', { pid_file = "$TMP/run/web.pid" } },
      { 'pid = "/run/web.pid"', { pid_file = "/run/web.pid" } },
      { 'interpreterArgs = "-u"', { interpreter_args = { "-u" } } },
      { "autostart = false", { autostart = false } },
      { 'exec_mode = "cluster", execute_command = true', { exec_mode = "fork", execute_command = true } },
      { "filter_env = true", { filter_env = true } },
      { 'filter_env = "HOME"', { filter_env = { name = "HOME" } } },
      { "filter_env = {}", { filter_env = false } },
      { "source_map_support = true, automation = false, append_env_to_name = true", { source_map_support = true } },
      { 'increment_var = "PORT", kill_retry_time = 100', { increment_var = "PORT" } },
    }
    for _, c in ipairs(cases) do
      it(c[1], function()
        local cfg = load_ok(one_option(c[1]:gsub("%$TMP", tmp)), { cpus = 6 })
        local app = cfg.apps[1]
        for field, want in pairs(subst(c[2])) do
          assert.are.same(want, app[field], field)
        end
        -- compatibility-only options never leak into the app
        for _, k in ipairs({ "vizion", "pmx", "port", "pid", "interpreterArgs", "autodump", "post_update", "combine_logs", "output",
                             "cron", "node_args", "exec_interpreter" }) do
          assert.is_nil(app[k], k)
        end
      end)
    end

    it("takes cron_restart = 0 or \"0\" as off, as PM2 does", function()
      assert.is_nil(load_ok(one_option("cron_restart = 0")).apps[1].cron_restart)
      assert.is_nil(load_ok(one_option('cron_restart = "0"')).apps[1].cron_restart)
    end)

    it("keeps a restart function (Lua only)", function()
      local cfg = load_ok(one_option("restart = function(proc, exit) return exit.code ~= 0 and 100 or 'stop' end"))
      local restart = cfg.apps[1].restart
      assert.is_function(restart)
      assert.are.equal(100, restart({}, { code = 1 }))
      assert.are.equal("stop", restart({}, { code = 0 }))
    end)
  end)

  describe("bad option values", function()
    local cases = {
      { "args = 42", "args", "expected a string or a list of strings, got number 42" },
      { 'args = "a \\"b"', "args", [[unterminated double quote in string "a \"b"]] },
      { 'args = { "a", {} }', "args", "item 2: expected a string or number, got empty table" },
      { "args = { x = 1 }", "args", "expected a string or a list of strings, got table" },
      { "interpreter = true", "interpreter", "expected a non-empty string, got boolean true" },
      { 'interpreter = ""', "interpreter", 'expected a non-empty string, got string ""' },
      { "interpreter_args = { true }", "interpreter_args", "item 1: expected a string or number, got boolean true" },
      { "node_args = 5", "node_args", "expected a string or a list of strings, got number 5" },
      { 'env = "A=1"', "env", 'expected a table of NAME = value, got string "A=1"' },
      { "env = { A = { 1 } }", "env", "variable 'A': expected a string, number or boolean, got table" },
      { "env = { 1, 2 }", "env", "expected variable names as keys, got key number 1" },
      { 'env = { A = "x\\0y" }', "env", "variable 'A': contains a NUL byte, which an environment cannot hold" },
      { 'env_production = { SECRET = "a\\0" }', "env_production", "variable 'SECRET': contains a NUL byte, which an environment cannot hold" },
      { 'env = { ["A=B"] = "x" }', "env", 'invalid variable name "A=B"' },
      { "env_production = { X = print }", "env_production", "variable 'X': expected a string, number or boolean, got function" },
      { 'env_staging = "x"', "env_staging", 'expected a table of NAME = value, got string "x"' },
      { 'instances = "lots"', "instances", 'expected a positive integer, 0 or "max" (one per CPU), or -N (CPUs minus N), got string "lots"' },
      { "instances = 2.5", "instances", 'expected a positive integer, 0 or "max" (one per CPU), or -N (CPUs minus N), got number 2.5' },
      { 'exec_mode = "clustr"', "exec_mode", 'expected "fork" or "cluster", got string "clustr" (did you mean "cluster"?)' },
      { "exec_mode = 1", "exec_mode", 'expected "fork" or "cluster", got number 1' },
      { 'balance = "rr"', "balance", 'expected "shared", "round-robin" or "preload", got string "rr"' },
      { 'balance = "preload"', "balance", "is \"preload\", which needs the sockets to hand over (the 'listen' option)" },
      { 'autorestart = "yes"', "autorestart", 'expected a boolean, got string "yes"' },
      { 'max_restarts = "ten"', "max_restarts", 'expected a non-negative integer, got string "ten"' },
      { "max_restarts = -1", "max_restarts", "expected a non-negative integer, got number -1" },
      { "max_restarts = 1.5", "max_restarts", "expected a non-negative integer, got number 1.5" },
      { "cluster_max_sockets = 0", "cluster_max_sockets", "expected an integer from 1 to 1024, got number 0" },
      { "cluster_max_sockets = 2000", "cluster_max_sockets", "expected an integer from 1 to 1024, got number 2000" },
      { 'min_uptime = "soon"', "min_uptime", 'expected a duration (a number of milliseconds or a string like "500ms", "2s", "1.5m", "1h"), got string "soon"' },
      { "restart_delay = -5", "restart_delay", 'expected a duration (a number of milliseconds or a string like "500ms", "2s", "1.5m", "1h"), got number -5' },
      { "exp_backoff_restart_delay = true", "exp_backoff_restart_delay", 'expected a duration (a number of milliseconds or a string like "500ms", "2s", "1.5m", "1h"), got boolean true' },
      { 'kill_timeout = "5 years"', "kill_timeout", 'expected a duration (a number of milliseconds or a string like "500ms", "2s", "1.5m", "1h"), got string "5 years"' },
      { "listen_timeout = {}", "listen_timeout", 'expected a duration (a number of milliseconds or a string like "500ms", "2s", "1.5m", "1h"), got empty table' },
      { "stop_exit_codes = 300", "stop_exit_codes", "expected an exit code (integer 0-255) or a list of them, got number 300" },
      { 'stop_exit_codes = { 1, "x" }', "stop_exit_codes", 'item 2: expected an exit code (integer 0-255), got string "x"' },
      { 'kill_signal = "SIGTREM"', "kill_signal", 'unknown signal "SIGTREM" (did you mean "SIGTERM"?)' },
      { "kill_signal = 99", "kill_signal", "unknown signal number 99" },
      { "kill_signal = {}", "kill_signal", "expected a signal name or number, got empty table" },
      { "wait_ready = 1", "wait_ready", "expected a boolean, got number 1" },
      { 'shutdown_with_message = "true"', "shutdown_with_message", 'expected a boolean, got string "true"' },
      { "out_file = false", "out_file", "expected a file path (non-empty string), got boolean false" },
      { 'error_file = ""', "error_file", 'expected a file path (non-empty string), got string ""' },
      { "out = 1", "out", "expected a file path (non-empty string), got number 1" },
      { "merge_logs = 0", "merge_logs", "expected a boolean, got number 0" },
      { "combine_logs = 0", "combine_logs", "expected a boolean, got number 0" },
      { "log_date_format = 5", "log_date_format", "expected a non-empty string, got number 5" },
      { 'log_date_format = string.rep("Y", 101)', "log_date_format", "expected a format of at most 100 characters, got 101" },
      { 'log_type = "jsonl"', "log_type", 'expected "raw" or "json", got string "jsonl"' },
      { 'time = "yes"', "time", 'expected a boolean, got string "yes"' },
      { "disable_logs = 1", "disable_logs", "expected a boolean, got number 1" },
      { "watch = 5", "watch", "expected a boolean, a path or a list of paths, got number 5" },
      { 'watch = { "a", false }', "watch", "item 2: expected a string, got boolean false" },
      { "ignore_watch = { 1 }", "ignore_watch", "item 1: expected a string, got number 1" },
      { 'max_size = "10 parsecs"', "max_size", 'expected a size (a number of bytes or a string like "512K", "200M", "1G"), 0 for no rotation, got string "10 parsecs"' },
      { "max_size = true", "max_size", 'expected a size (a number of bytes or a string like "512K", "200M", "1G"), 0 for no rotation, got boolean true' },
      { "log_compress = 1", "log_compress", "expected a boolean, got number 1" },
      { "retain = 0", "retain", "expected a number of files from 1 to 1000, got number 0" },
      { "retain = 1001", "retain", "expected a number of files from 1 to 1000, got number 1001" },
      { "retain = 2.5", "retain", "expected a number of files from 1 to 1000, got number 2.5" },
      { 'max_memory_restart = "lots"', "max_memory_restart", 'expected a size (a number of bytes or a string like "512K", "200M", "1G"), got string "lots"' },
      { 'cron_restart = "every day"', "cron_restart", 'invalid cron expression "every day": expected 5 fields (or 6 with seconds), got 2' },
      { 'cron_restart = "* * * * * * *"', "cron_restart", 'invalid cron expression "* * * * * * *": expected 5 fields (or 6 with seconds), got 7' },
      { 'cron_restart = "0 25 * * *"', "cron_restart", 'invalid cron expression "0 25 * * *": hour: \'25\' is not a valid hour (0-23)' },
      { 'restart = "always"', "restart", 'expected a function, got string "always"' },
      { "port = 70000", "port", "expected a port number (integer 0-65535), got number 70000" },
      { "namespace = 5", "namespace", "expected a non-empty string of letters, digits, '_', '.' and '-', got number 5" },
      { 'namespace = "all"', "namespace", 'must not be "all" (commands take it to mean every app)' },
      { 'namespace = "/api/"', "namespace", [[expected a non-empty string of letters, digits, '_', '.' and '-', got string "/api/"]] },
      { 'treekill = "no"', "treekill", 'expected a boolean, got string "no"' },
      { "filter_env = 5", "filter_env", "expected a boolean, a variable name or a list of strings, got number 5" },
      { 'instance_var = "A=B"', "instance_var", [[expected a variable name (a non-empty string without '='), got string "A=B"]] },
      { "increment_var = true", "increment_var", "expected a variable name (a non-empty string without '='), got boolean true" },
      { 'out = "a", out_file = "b"', "out", "same as 'out_file', which is already set" },
      { "instnces = 2", "instnces", "unknown option (did you mean 'instances'?)" },
      { "autorestrat = false", "autorestrat", "unknown option (did you mean 'autorestart'?)" },
      { "frobnicate = 1", "frobnicate", "unknown option" },
    }
    for _, c in ipairs(cases) do
      it(c[1], function()
        local path = one_option(c[1])
        local err = load_err(path)
        assert.are.equal(path .. ":6: app 'web': option '" .. c[2] .. "': " .. c[3], err)
      end)
    end
  end)

  describe("name", function()
    it("defaults to the script name without extension", function()
      write("my.worker.py", "")
      local cfg = load_ok(write("eco.lua", 'return { apps = { { script = "my.worker.py" }, { script = "sleep" } } }'))
      assert.are.equal("my.worker", cfg.apps[1].name)
      assert.are.equal("sleep", cfg.apps[2].name)
    end)

    it("sanitises a derived name", function()
      write("my app.sh", "")
      write("42.sh", "")
      write("all.sh", "")
      local cfg = load_ok(write("eco.lua",
        'return { apps = { { script = "my app.sh" }, { script = "42.sh" }, { script = "all.sh" } } }'))
      assert.are.equal("my_app", cfg.apps[1].name)
      assert.are.equal("42", cfg.apps[2].name) -- all digits is a name, as in PM2
      assert.are.equal("app_all", cfg.apps[3].name)
    end)

    local bad = {
      { '"my app"', [[expected a non-empty string of letters, digits, '_', '.' and '-', got string "my app"]] },
      { '""', [[expected a non-empty string of letters, digits, '_', '.' and '-', got string ""]] },
      { "5", [[expected a non-empty string of letters, digits, '_', '.' and '-', got number 5]] },
      { '"all"', 'must not be "all" (commands take it to mean every app)' },
    }
    for _, c in ipairs(bad) do
      it("rejects " .. c[1] .. " and labels the app by index", function()
        local path = write("eco.lua", 'return {\n  apps = {\n    { script = "app.sh", name = "ok" },\n'
          .. '    {\n      name = ' .. c[1] .. ',\n      script = "app.sh",\n    },\n  },\n}\n')
        assert.are.equal(path .. ":5: app #2: option 'name': " .. c[2], load_err(path))
      end)
    end

    it("must be unique", function()
      local path = write("eco.lua", table.concat({
        "return { apps = {",
        '  { name = "web", script = "app.sh" },',
        '  { name = "api", script = "app.sh" },',
        '  { name = "web", script = "sleep" },',
        "} }",
      }, "\n"))
      assert.are.equal(path .. ":4: app 'web': option 'name': duplicate name 'web' (also used by app #1)",
        load_err(path))
    end)

    it("must be unique when derived", function()
      local path = write("eco.lua", 'return { apps = {\n  { script = "app.sh" },\n  { script = "sub/app.sh" },\n} }')
      assert.are.equal(path .. ":3: app 'app': option 'script': duplicate name 'app' (also used by app #1)",
        load_err(path))
    end)
  end)

  describe("command strings", function()
    local bash = util.which("bash")
    it("run a script with a space that names no file through bash -c, named after the command", function()
      local cfg = load_ok(write("eco.lua", 'return { apps = { { script = "python3 -m http.server 8123", instances = 2 } } }'))
      local app = cfg.apps[1]
      assert.are.same({ "python3 -m http.server 8123", bash, "python3-m-http.server-8123", "fork" },
        { app.script, app.shell, app.name, app.exec_mode })
    end)

    it("take cmd and command as aliases of script", function()
      local cfg = load_ok(write("eco.lua", 'return { apps = { { cmd = "sleep 5", name = "a" }, { command = "app.sh" } } }'))
      assert.are.same({ "sleep 5", bash }, { cfg.apps[1].script, cfg.apps[1].shell })
      assert.are.same({ tmp .. "/app.sh", "app" }, { cfg.apps[2].script, cfg.apps[2].name })
      assert.is_nil(cfg.apps[2].shell)
    end)

    it("are an error when their program is no file nor command on PATH (a mistyped file name)", function()
      local path = write("eco.lua", 'return { apps = {\n  { script = "my ap.sh" },\n} }')
      assert.are.equal(path .. ":2: app 'my-ap.sh': option 'script': no such file: " .. tmp .. "/my ap.sh; as a "
        .. "command string (it holds a space) it runs 'my', which is no file nor command on PATH", load_err(path))
      path = write("eco2.lua", 'return { apps = {\n  { name = "x", script = "./nope --port 1" },\n} }')
      assert.is_truthy(load_err(path):find("it runs './nope', which is no file nor command on PATH", 1, true))
      -- the shell's own words and variables are the shell's business
      local cfg = load_ok(write("eco3.lua", [[return { apps = {
        { name = "a", script = "cd sub && ./app.sh" },
        { name = "b", script = "FOO=1 ./app.sh" },
        { name = "c", script = "exec sleep 5" },
        { name = "d", script = "sub/app.sh --x" } } }]]))
      assert.are.equal(4, #cfg.apps)
    end)

    it("keep a file whose name has a space a file", function()
      write("my app.sh", "")
      local app = load_ok(write("eco.lua", 'return { apps = { { script = "my app.sh" } } }')).apps[1]
      assert.are.same({ tmp .. "/my app.sh", "my_app" }, { app.script, app.name })
      assert.is_nil(app.shell)
    end)

    for _, o in ipairs({ 'interpreter = "node"', 'node_args = "--inspect"', 'interpreter_args = { "-u" }' }) do
      it("refuse " .. o, function()
        local path = write("eco.lua", 'return { apps = {\n  { name = "a",\n    cmd = "npm start",\n    ' .. o .. ' },\n} }')
        assert.are.equal(path .. ":4: app 'a': option '" .. o:match("^[%w_]+") .. "': does not apply to a command "
          .. "string (cmd = string \"npm start\"), which runs through the shell: put the program in the command",
          load_err(path))
      end)
    end
  end)

  describe("PM2's source maps and append_env_to_name", function()
    it("run a Node app with --enable-source-maps for source_map_support or disable_source_map_support = false", function()
      write("app.js", "")
      local cfg = load_ok(write("eco.lua", [[return { apps = {
        { name = "a", script = "app.js", source_map_support = true, node_args = "--inspect" },
        { name = "b", script = "app.js", disable_source_map_support = false },
        { name = "c", script = "app.js", disable_source_map_support = true },
        { name = "d", script = "app.js", source_map_support = false } } }]]))
      assert.are.same({ "--enable-source-maps", "--inspect" }, cfg.apps[1].interpreter_args)
      assert.are.same({ "--enable-source-maps" }, cfg.apps[2].interpreter_args)
      assert.are.same({}, cfg.apps[3].interpreter_args)
      assert.are.same({}, cfg.apps[4].interpreter_args)
      assert.are.same({}, cfg.warnings)
    end)

    it("sets PORT from port over env's, under the --env overlay's (PM2's order)", function()
      local path = write("eco.lua", [[return { apps = {
        { name = "a", script = "app.sh", port = 3000, env = { PORT = 1 }, env_production = { PORT = 4000 } } } }]])
      assert.are.equal("3000", load_ok(path).apps[1].env.PORT)
      assert.are.equal("4000", load_ok(path, { env_name = "production" }).apps[1].env.PORT)
    end)

    it("append --env's name to the app's name with append_env_to_name", function()
      local path = write("eco.lua", [[return { apps = {
        { name = "a", script = "app.sh", append_env_to_name = true, env_production = {} },
        { name = "b", script = "app.sh" } } }]])
      local cfg = load_ok(path, { env_name = "production" })
      assert.are.same({ "a-production", "b" }, { cfg.apps[1].name, cfg.apps[2].name })
      assert.are.equal("a", load_ok(path).apps[1].name)
    end)
  end)

  describe("exec_mode inferred as PM2 does", function()
    local cases = {
      { 'script = "app.js", instances = 4', "cluster" },
      { 'script = "app.mjs", instances = "max"', "cluster" },
      { 'script = "app.js", instances = 1', "cluster" },
      { 'script = "app.js"', "fork" },
      { 'script = "app.js", instances = 4, exec_mode = "fork"', "fork" },
      { 'script = "app.sh", instances = 4, interpreter = "/usr/local/bin/node"', "cluster" },
      { 'script = "app.sh", instances = 2, interpreter = "bun"', "cluster" },
      { 'script = "app.sh", instances = 4', "fork" },
      { 'script = "app.js", instances = 4, interpreter = "python3"', "fork" },
      { 'script = "app.js", instances = 4, interpreter = "none"', "fork" },
    }
    for _, c in ipairs(cases) do
      it(c[1] .. " -> " .. c[2], function()
        write("app.js", "")
        write("app.mjs", "")
        local cfg = load_ok(write("eco.lua", "return { apps = { { " .. c[1] .. " } } }"), { cpus = 2 })
        assert.are.equal(c[2], cfg.apps[1].exec_mode)
        assert.are.equal(c[2] == "cluster" and "round-robin" or "shared", cfg.apps[1].balance)
      end)
    end
  end)

  describe("script and cwd", function()
    it("is required", function()
      local path = write("eco.lua", 'return { apps = {\n  { script = "app.sh" },\n  { script = "app.sh", name = "b" },\n  { name = "c" },\n} }')
      assert.are.equal(path .. ":4: app 'c': option 'script': required", load_err(path))
      path = write("eco2.lua", 'return { apps = {\n  { script = "app.sh" },\n  { script = "app.sh", name = "b" },\n  { instances = 2 },\n} }')
      assert.are.equal(path .. ":4: app #3: option 'script': required", load_err(path))
    end)

    it("must exist", function()
      local path = write("eco.lua", 'return { apps = {\n  { name = "web", cwd = "sub",\n    exec = "missing.js" },\n} }')
      assert.are.equal(path .. ":3: app 'web': option 'exec': no such file: " .. tmp .. "/sub/missing.js",
        load_err(path))
      path = write("eco.lua", 'return { apps = {\n  { name = "x", script = "./nope/app.js" },\n} }')
      assert.are.equal(path .. ":2: app 'x': option 'script': no such file: " .. tmp .. "/nope/app.js",
        load_err(path))
    end)

    it("must not be a directory", function()
      local path = write("eco.lua", 'return { apps = { { name = "x", script = "sub" } } }')
      assert.are.equal(path .. ":1: app 'x': option 'script': is a directory: " .. tmp .. "/sub", load_err(path))
    end)

    it("must be a non-empty string", function()
      local path = write("eco.lua", 'return { apps = { { name = "x", script = 5 } } }')
      assert.are.equal(path .. ":1: app 'x': option 'script': expected a non-empty string, got number 5", load_err(path))
    end)

    -- PM2's cli/binary.sh: `pm2 start ls` records /usr/bin/ls (pm_exec_path).
    it("may be a bare command found on PATH when there is no interpreter, recorded as its path as PM2 does", function()
      local path = write("eco.lua", 'return { apps = { { script = "sh", args = "-c true" }, '
        .. '{ name = "n", script = "sh", interpreter = "none" } } }')
      local cfg = load_ok(path, { base_env = { PATH = "/nonexistent:/usr/bin:/bin" } })
      local sh = util.is_file("/usr/bin/sh") and "/usr/bin/sh" or "/bin/sh"
      assert.are.equal(sh, cfg.apps[1].script)
      assert.are.equal(sh, cfg.apps[2].script)
    end)

    it("uses the caller's PATH from base_env", function()
      local path = write("eco.lua", 'return { apps = { { name = "x", script = "sh" } } }')
      assert.are.equal(path .. ":1: app 'x': option 'script': no such file: " .. tmp .. "/sh",
        load_err(path, { base_env = { PATH = "/nonexistent" } }))
    end)

    it("is a file, not a PATH command, when an interpreter is set", function()
      local path = write("eco.lua", 'return { apps = { { name = "x", script = "sh", interpreter = "python3" } } }')
      assert.are.equal(path .. ":1: app 'x': option 'script': no such file: " .. tmp .. "/sh",
        load_err(path, { base_env = { PATH = "/usr/bin:/bin" } }))
    end)

    it("prefers a file in cwd over PATH", function()
      write("sh", "")
      local cfg = load_ok(write("eco.lua", 'return { apps = { { script = "sh" } } }'))
      assert.are.equal(tmp .. "/sh", cfg.apps[1].script)
    end)

    it("rejects a missing or non-directory cwd", function()
      local path = one_option('cwd = "nowhere"')
      assert.are.equal(path .. ":6: app 'web': option 'cwd': no such directory: " .. tmp .. "/nowhere", load_err(path))
      path = one_option('cwd = "app.sh"')
      assert.are.equal(path .. ":6: app 'web': option 'cwd': not a directory: " .. tmp .. "/app.sh", load_err(path))
      path = one_option("cwd = false")
      assert.are.equal(path .. ":6: app 'web': option 'cwd': expected a directory path (non-empty string), got boolean false",
        load_err(path))
    end)
  end)

  describe("top level", function()
    it("rejects unknown keys with a suggestion", function()
      local path = write("eco.lua", 'return {\n  apps = { { script = "app.sh" } },\n  aps = {},\n}\n')
      assert.are.equal(path .. ":3: top-level key 'aps': unknown key (did you mean 'apps'?)", load_err(path))
      path = write("eco2.lua", 'return {\n  apps = { { script = "app.sh" } },\n  deplyo = {},\n}\n')
      assert.are.equal(path .. ":3: top-level key 'deplyo': unknown key (did you mean 'deploy'?)", load_err(path))
    end)

    it("ignores deploy", function()
      local cfg = load_ok(write("eco.lua", 'return { apps = { { script = "app.sh" } }, deploy = { prod = {} } }'))
      assert.are.equal(1, #cfg.apps)
      assert.is_nil(cfg.deploy)
    end)

    it("requires apps", function()
      local path = write("eco.lua", "return { deploy = {} }")
      assert.are.equal(path .. ": top-level key 'apps': required", load_err(path))
      path = write("eco3.lua", "return {\n  apps = {},\n}")
      assert.are.equal(path .. ":2: top-level key 'apps': expected a non-empty list of app tables, got empty table",
        load_err(path))
      path = write("eco4.lua", 'return {\n  apps = { web = { script = "app.sh" } },\n}')
      assert.are.equal(path .. ": top-level key 'apps': expected a list of app tables, got table", load_err(path))
    end)

    it("requires each app to be a table", function()
      local path = write("eco.lua", 'return {\n  apps = {\n    { script = "app.sh" },\n    "web",\n  },\n}')
      assert.are.equal(path .. ':4: app #2: expected a table of options, got string "web"', load_err(path))
    end)

    it("rejects list items inside an app", function()
      local path = write("eco.lua", 'return { apps = {\n  { "web", script = "app.sh" },\n} }')
      assert.are.equal(path .. ':2: app \'app\': unexpected list item [1] = string "web"; options are written as key = value',
        load_err(path))
    end)

    it("requires the chunk to return a table", function()
      local path = write("eco.lua", "local x = 1")
      assert.are.equal(path .. ": expected the file to return a table with an 'apps' list, got nil", load_err(path))
    end)
  end)

  describe("env_<name>", function()
    local src = table.concat({
      "return { apps = {",
      '  { script = "app.sh", env = { A = "base", B = "base" },',
      '    env_production = { B = "prod", C = 1 }, env_dev = { B = "dev" }, port = 80 },',
      "} }",
    }, "\n")

    it("merges the selected overlay over env", function()
      local cfg = load_ok(write("eco.lua", src), { env_name = "production" })
      assert.are.same({ A = "base", B = "prod", C = "1", PORT = "80" }, cfg.apps[1].env)
      assert.are.same({}, cfg.warnings)
      assert.is_nil(cfg.apps[1].env_production)
    end)

    it("leaves env alone without env_name", function()
      local cfg = load_ok(write("eco.lua", src))
      assert.are.same({ A = "base", B = "base", PORT = "80" }, cfg.apps[1].env)
    end)

    it("warns when no app has the requested overlay", function()
      local path = write("eco.lua", src)
      local cfg = load_ok(path, { env_name = "staging" })
      assert.are.same({ A = "base", B = "base", PORT = "80" }, cfg.apps[1].env)
      assert.are.same({ path .. ": no app defines 'env_staging', so the environment 'staging' changes nothing" },
        cfg.warnings)
    end)

    it("reports bad overlay values at the variable's line", function()
      local path = write("eco.lua", table.concat({
        "return { apps = { {",
        '  script = "app.sh",',
        "  env_production = {",
        '    GOOD = "x",',
        "    BAD = { 1 },",
        "  },",
        "} } }",
      }, "\n"))
      assert.are.equal(path .. ":5: app 'app': option 'env_production': variable 'BAD': expected a string, number or boolean, got table",
        load_err(path, { env_name = "production" }))
    end)
  end)

  describe("instances with opts.cpus", function()
    for _, c in ipairs({ { '"max"', 8, 8 }, { "0", 8, 8 }, { "-1", 8, 7 }, { "-1", 1, 1 }, { '"-2"', 4, 2 } }) do
      it(c[1] .. " on " .. c[2] .. " CPUs -> " .. c[3], function()
        local cfg = load_ok(one_option("instances = " .. c[1]), { cpus = c[2] })
        assert.are.equal(c[3], cfg.apps[1].instances)
      end)
    end
    it("falls back to util.cpu_count()", function()
      local cfg = load_ok(one_option('instances = "max"'))
      assert.are.equal(util.cpu_count(), cfg.apps[1].instances)
    end)
  end)

  describe("warnings", function()
    it("flags PM2 options without effect at their line, saying why, and nothing for implemented ones", function()
      local path = write("eco.lua", table.concat({
        "return { apps = { {",
        '  name = "web", script = "app.sh",',
        "  watch = true,",
        '  ignore_watch = "node_modules",',
        '  max_memory_restart = "1G",',
        '  cron = "0 3 * * *",',
        '  pid_file = "web.pid", treekill = false, force = true, filter_env = true,',
        '  username = "someone",',
        "  vizion = true,",
        "  kill_retry_time = 100,",
        "  source_map_support = true,",
        "} } }",
      }, "\n"))
      local cfg = load_ok(path)
      local w = {}
      for _, s in ipairs(cfg.warnings) do w[#w + 1] = s end
      table.sort(w)
      assert.are.same({
        path .. ":10: app 'web': option 'kill_retry_time' has no effect: orch learns of an exit at once (a pidfd per process) instead of polling for it",
        path .. ":11: app 'web': option 'source_map_support' has no effect: source maps are Node's (the app does not run under node)",
        path .. ":8: app 'web': option 'username' has no effect: PM2 records there the user who started the app; uid sets the user an app runs as",
        path .. ":9: app 'web': option 'vizion' has no effect: orch collects no version-control metadata",
      }, w)
    end)

    it("stays quiet for values that ask for what orch does anyway", function()
      local cfg = load_ok(one_option("vizion = false, pmx = false, automation = false, trace = false, "
        .. "disable_trace = true, deep_monitoring = false, v8 = false, event_loop_inspector = false"))
      assert.are.same({}, cfg.warnings)
    end)

    it("stays quiet for default values", function()
      local cfg = load_ok(one_option('watch = false, ignore_watch = {}, max_memory_restart = 0, cron_restart = false, namespace = "x"'))
      assert.are.same({}, cfg.warnings)
    end)
  end)

  describe("Lua files", function()
    it("load the good fixture", function()
      local cfg = load_ok(FIXTURES .. "/good.lua", { cpus = 3, env_name = "production" })
      local web, sleep = cfg.apps[1], cfg.apps[2]
      assert.are.equal("web", web.name)
      assert.are.equal(FIXTURES .. "/worker.sh", web.script)
      assert.are.same({ "--port", "8080", "--title", "my web" }, web.args)
      assert.are.equal(3, web.instances)
      assert.are.equal("cluster", web.exec_mode)
      assert.are.same({ LOG_LEVEL = "warn", NODE_ENV = "production" }, web.env)
      assert.are.equal(2000, web.min_uptime)
      assert.are.equal("SIGTERM", web.kill_signal)
      assert.are.equal(6, web.config_line)
      assert.is_function(web.restart)
      assert.are.equal("stop", web.restart({}, { code = 0 }))
      assert.are.equal(500, web.restart({}, { code = 1 }))
      assert.are.equal("sleep", sleep.name)
      assert.are.equal(util.which("sleep"), sleep.script)
      assert.are.same({ "infinity" }, sleep.args)
      assert.is_false(sleep.autorestart)
      assert.are.equal(21, sleep.config_line)
    end)

    it("resolve a relative path against opts.cwd", function()
      local cfg = load_ok("good.lua", { cwd = FIXTURES, cpus = 1 })
      assert.are.equal(FIXTURES .. "/good.lua", cfg.file)
    end)

    it("report syntax errors as FILE:LINE", function()
      local path = FIXTURES .. "/syntax_error.lua"
      assert.are.equal(path .. ":4: '}' expected (to close '{' at line 2) near '{'", load_err(path))
    end)

    it("report runtime errors as FILE:LINE", function()
      local path = FIXTURES .. "/runtime_error.lua"
      assert.are.equal(path .. ":5: attempt to index local 'ports' (a nil value)", load_err(path))
      path = write("eco.lua", 'local x = 1\nerror("no apps today")\n')
      assert.are.equal(path .. ":2: no apps today", load_err(path))
      path = write("eco2.lua", 'error("plain", 0)')
      assert.are.equal(path .. ": plain", load_err(path))
    end)

    it("report FILE:LINE exactly for a path of any length", function()
      -- LuaJIT cuts chunk names to 60 bytes in its messages.
      local deep = ("a-rather-long-directory-name/"):rep(7) .. "ecosystem.lua"
      local path = write(deep, 'local x = 1\nerror("no apps today")\n')
      assert.is_true(#path > 200)
      assert.are.equal(path .. ":2: no apps today", load_err(path))
      path = write(deep, "local t = nil\nreturn t.x\n")
      assert.are.equal(path .. ":2: attempt to index local 't' (a nil value)", load_err(path))
      path = write(deep, "return {\n  apps = {\n")
      assert.are.equal(path .. ":3: unexpected symbol near '<eof>'", load_err(path))
      -- a function of the file keeps the long name in its errors
      path = write(deep, "return { apps = { { script = 'sleep', restart = function() error('later') end } } }\n")
      local cfg = load_ok(path)
      local ok, err = require("orch.hook").call(cfg.apps[1].restart, 100)
      assert.is_false(ok)
      assert.are.equal(path .. ":1: later", err:match("^[^\n]*"))
    end)

    it("refuse a binary (bytecode) chunk", function()
      local path = write("eco.lua", string.dump(function() return { apps = { { script = "app.sh" } } } end))
      assert.are.equal(path .. ": is a binary (bytecode) chunk; only Lua source is accepted", load_err(path))
    end)

    -- Runs fn with a hook of our own that raises after 5 s: code that hangs
    -- fails the test instead of blocking it (orch.hook restores this hook).
    local function guarded(fn)
      local stop = require("luv").hrtime() + 5e9
      debug.sethook(function()
        if require("luv").hrtime() > stop then error("still running after 5 s") end
      end, "", 1000)
      local ok, res = pcall(fn)
      debug.sethook()
      assert(ok, res)
      return res
    end

    it("turn an error object whose __tostring never returns into a message", function()
      local path = write("eco.lua", "error(setmetatable({}, { __tostring = function() while true do end end }))\n")
      local t0 = require("luv").hrtime()
      local err = guarded(function() return load_err(path, { deadline_ms = 200 }) end)
      assert.are.equal(path .. ": (error object is a table value)", err)
      assert.is_true((require("luv").hrtime() - t0) / 1e6 < 3000)
    end)

    it("validate a result whose tables have metamethods without running them", function()
      local path = write("eco.lua", [[
        local spin = function() while true do end end
        local app = setmetatable({ script = "app.sh" }, { __index = spin, __newindex = spin, __eq = spin })
        return setmetatable({ apps = { app } }, { __index = spin })
      ]])
      local cfg = guarded(function() return load_ok(path) end)
      assert.matches("/app%.sh$", cfg.apps[1].script)
    end)

    it("refuse a pattern search too costly for one uninterruptible C call", function()
      local path = write("eco.lua", 'local s = ("a"):rep(1200)\nlocal i = s:find(".-.-b")\nreturn { apps = { { script = "app.sh" } } }\n')
      local t0 = require("luv").hrtime()
      local err = load_err(path)
      assert.matches("^" .. path:gsub("%p", "%%%0") .. ":2: string.find: pattern '.%-.%-b' on a subject of 1200 bytes is too costly", err)
      assert.is_true((require("luv").hrtime() - t0) / 1e6 < 1000)
      -- the same through the library table, and cheap searches still work
      path = write("eco.lua", 'local s = ("a"):rep(1200)\nlocal i = string.match(s, "(a*)(a*)b")\n')
      assert.matches(":2: string.match: pattern", load_err(path))
      path = write("eco.lua", 'local s = ("a=b\\n"):rep(1000)\nlocal n = 0\n'
        .. 'for k, v in s:gmatch("([^\\n=]+)=([^\\n]+)") do n = n + 1 end\nassert(n == 1000 and s:find("a=b", 1, true))\n'
        .. 'return { apps = { { script = "app.sh" } } }\n')
      load_ok(path)
    end)

    it("refuse a plain search or a sort too costly for one uninterruptible C call", function()
      local path = write("eco.lua", 'local s = ("a"):rep(1000000)\nlocal i = s:find(("a"):rep(200000) .. "b", 1, true)\n')
      local t0 = require("luv").hrtime()
      assert.matches(":2: string.find: searching 1000000 bytes for 200001 is too costly", load_err(path))
      path = write("eco.lua", 'local t = {}\nfor i = 1, 3000000 do t[i] = -i end\ntable.sort(t)\n')
      assert.matches(":3: table.sort: 3000000 elements without a Lua comparator are too costly", load_err(path))
      assert.is_true((require("luv").hrtime() - t0) / 1e6 < 2500)
      -- small ones, and sorts with a Lua comparator (interruptible), work
      load_ok(write("eco.lua", 'local t = { 3, 1, 2 }\ntable.sort(t)\nassert(t[1] == 1 and ("abc"):find("b", 1, true) == 2)\n'
        .. 'local u = {}\nfor i = 1, 20000 do u[i] = -i end\ntable.sort(u, function(a, b) return a < b end)\n'
        .. 'return { apps = { { script = "app.sh" } } }\n'))
    end)

    it("refuse a string.rep result over its limit", function()
      local path = write("eco.lua", 'local s = ("x"):rep(100 * 1024 * 1024)\n')
      assert.matches(":1: string.rep: a result of 104857600 bytes is over the limit of", load_err(path))
    end)

    it("keep the innermost position of a re-raised error", function()
      local path = write("eco.lua", 'local ok, e = pcall(function()\n  error("deep")\nend)\nerror(e)\n')
      assert.are.equal(path .. ":2: deep", load_err(path))
    end)

    it("stop an infinite loop at the deadline", function()
      local path = FIXTURES .. "/infinite_loop.lua"
      local t0 = require("luv").hrtime()
      local err = load_err(path, { deadline_ms = 200 })
      local elapsed_ms = (require("luv").hrtime() - t0) / 1e6
      assert.is_true(elapsed_ms >= 150 and elapsed_ms < 3000, elapsed_ms)
      assert.are.equal(path, err:sub(1, #path))
      assert.is_truthy(err:match("^.-:[234]: evaluation took longer than 200 ms$"), err)
      assert.is_nil(debug.gethook())
    end)

    it("stop a loop that swallows errors with pcall", function()
      local path = write("eco.lua", "while true do\n  pcall(function() while true do end end)\nend\n")
      local t0 = require("luv").hrtime()
      local err = load_err(path, { deadline_ms = 200 })
      assert.is_true((require("luv").hrtime() - t0) / 1e6 < 3000)
      assert.is_truthy(err:match("evaluation took longer than 200 ms$"), err)
      assert.is_nil(debug.gethook())
    end)

    it("restore a hook the caller had installed", function()
      local calls = 0
      local function mine() calls = calls + 1 end
      debug.sethook(mine, "", 1000000)
      load_err(write("eco.lua", "error('x')"))
      local h, mask, count = debug.gethook()
      debug.sethook()
      assert.are.equal(mine, h)
      assert.are.equal("", mask)
      assert.are.equal(1000000, count)
    end)

    describe("sandbox", function()
      local forbidden = {
        "io", "require", "dofile", "loadfile", "load", "loadstring", "debug", "module",
        "package", "collectgarbage", "coroutine", "jit", "newproxy", "setfenv", "getfenv",
        "os.execute", "os.remove", "os.rename", "os.exit", "os.tmpname", "string.dump", "(\"\").dump",
      }
      for _, name in ipairs(forbidden) do
        it("has no " .. name, function()
          local expr = name:gsub("^(%w+)%.(%w+)$", "%1[\"%2\"]")
          local path = write("eco.lua", ("assert(%s == nil, 'leaked')\n"
            .. "return { apps = { { script = 'app.sh' } } }"):format(expr))
          load_ok(path)
        end)
      end

      it("cannot call io even indirectly", function()
        local path = write("eco.lua", 'io.open("/etc/passwd")')
        assert.are.equal(path .. ":1: attempt to index global 'io' (a nil value)", load_err(path))
      end)

      it("offers the safe globals", function()
        local path = write("eco.lua", [[
          local t = setmetatable({}, { __index = function() return 7 end })
          assert(t.x == 7 and rawget(t, "x") == nil)
          assert(select("#", 1, 2) == 2 and tonumber("3") == 3 and tostring(4) == "4")
          assert(type(unpack) == "function" and type(next) == "function" and rawequal(t, t))
          assert(math.max(1, 2) == 2 and string.format("%d", 5) == "5" and table.concat({ "a" }) == "a")
          assert(("x"):upper() == "X")
          assert(type(os.time()) == "number" and type(os.date()) == "string" and type(os.clock()) == "number")
          assert(pcall(error, "x") == false and xpcall(function() return 1 end, print))
          assert(_G.math == math)
          return { apps = { { script = "app.sh" } } }
        ]])
        load_ok(path)
      end)

      it("cannot alter the daemon's libraries", function()
        local path = write("eco.lua", [[
          string.upper = nil
          math.floor = nil
          table.insert = nil
          assert(getmetatable("") == nil)
          return { apps = { { script = "app.sh" } } }
        ]])
        load_ok(path)
        assert.are.equal("X", ("x"):upper())
        assert.is_function(math.floor)
        assert.is_function(table.insert)
      end)

      it("does not leak globals", function()
        load_ok(write("eco.lua", "leaked_global = 1\nreturn { apps = { { script = 'app.sh' } } }"))
        assert.is_nil(rawget(_G, "leaked_global"))
      end)

      it("exposes base_env read-only through env and os.getenv", function()
        local path = write("eco.lua", [[
          local seen = {}
          for k, v in pairs(env) do seen[#seen + 1] = k .. "=" .. v end
          table.sort(seen)
          return { apps = { {
            script = "app.sh",
            env = { FROM_ENV = env.STAGE, FROM_GETENV = os.getenv("STAGE"), ALL = table.concat(seen, ","),
                    MISSING = tostring(env.HOME) },
          } } }
        ]])
        local cfg = load_ok(path, { base_env = { STAGE = "prod", X = "1" } })
        assert.are.same({ FROM_ENV = "prod", FROM_GETENV = "prod", ALL = "STAGE=prod,X=1", MISSING = "nil" },
          cfg.apps[1].env)

        path = write("eco2.lua", 'env.STAGE = "dev"\n')
        assert.are.equal(path .. ':1: env is read-only (tried to set string "STAGE")', load_err(path))
      end)

      it("falls back to the process environment without base_env", function()
        local path = write("eco.lua", "return { apps = { { script = 'app.sh', env = { H = env.HOME, P = os.getenv('HOME') } } } }")
        local cfg = load_ok(path)
        assert.are.same({ H = os.getenv("HOME"), P = os.getenv("HOME") }, cfg.apps[1].env)
      end)

      it("sends print to stderr", function()
        local written = {}
        local real = io.stderr
        -- luacheck: push ignore 122 (the point: catch what print writes)
        io.stderr = { write = function(_, ...) for _, s in ipairs({ ... }) do written[#written + 1] = s end end }
        local ok, cfg = pcall(eco.load, write("eco.lua", "print('hello', 42)\nreturn { apps = { { script = 'app.sh' } } }"))
        io.stderr = real
        -- luacheck: pop
        assert.is_true(ok)
        assert.is_table(cfg)
        assert.are.equal("hello\t42\n", table.concat(written))
      end)
    end)
  end)

  describe("line numbers", function()
    it("are absent for apps built by a loop", function()
      local path = FIXTURES .. "/loop.lua"
      assert.are.equal(path .. ": app 'worker-2': option 'max_restarts': expected a non-negative integer, got string \"ten\"",
        load_err(path))
    end)

    it("are absent, never wrong, when the literal count does not match", function()
      local path = write("eco.lua", table.concat({
        "local apps = {",
        '  { name = "a", script = "app.sh" },',
        "}",
        "for i = 1, 2 do",
        '  apps[#apps + 1] = { name = "b" .. i, script = "app.sh", instnces = 1 }',
        "end",
        "return { apps = apps }",
      }, "\n"))
      local cfg, err = eco.load(path)
      assert.is_nil(cfg)
      assert.are.equal(path .. ": app 'b1': option 'instnces': unknown option (did you mean 'instances'?)", err)
    end)

    it("are absent when apps were inserted before the literal ones", function()
      local path = write("eco.lua", table.concat({
        "local apps = {",
        '  { name = "a", script = "app.sh" },',
        "}",
        'table.insert(apps, 1, { name = "z", script = "app.sh", max_restarts = "x" })',
        "return { apps = apps }",
      }, "\n"))
      assert.are.equal(path .. ": app 'z': option 'max_restarts': expected a non-negative integer, got string \"x\"",
        load_err(path))
    end)

    it("are absent when two literals could be the apps list", function()
      local path = write("eco.lua", table.concat({
        'local dev = { apps = { { name = "a", script = "app.sh" } } }',
        'local prod = { apps = { { name = "a", script = "app.sh", bogus = 1 } } }',
        "return prod",
      }, "\n"))
      assert.are.equal(path .. ": app 'a': option 'bogus': unknown option", load_err(path))
    end)

    it("map by index when some apps are built by calls", function()
      local path = write("eco.lua", table.concat({
        "local function app(name)",
        '  return { name = name, script = "app.sh" }',
        "end",
        "return {",
        "  apps = {",
        '    app("a"),',
        "    {",
        '      name = "b",',
        '      script = "app.sh",',
        "      max_restarts = -1,",
        "    },",
        "  },",
        "}",
      }, "\n"))
      assert.are.equal(path .. ":10: app 'b': option 'max_restarts': expected a non-negative integer, got number -1",
        load_err(path))
      path = write("eco2.lua", 'local function app(n) return { name = n, script = "app.sh", port = -1 } end\n'
        .. "return {\n  apps = {\n    app('a'),\n  },\n}\n")
      assert.are.equal(path .. ":4: app 'a': option 'port': expected a port number (integer 0-65535), got number -1",
        load_err(path))
    end)

    it("see through comments, strings, long strings and functions", function()
      local path = write("eco.lua", table.concat({
        "-- apps = { {}, {} }",
        "--[==[ apps = {",
        "  {} } ]==]",
        'local s = "apps = { {} }" .. [[',
        "apps = { {} }]]",
        "return {",
        '  ["apps"] = {',
        "    {",
        '      name = "web", script = "app.sh",',
        "      restart = function(info)",
        "        if info.code == 1 then return true, 10 end",
        "        local t = { a = 1; b = 2 }",
        "        return false",
        "      end,",
        "      -- instances = 3,",
        '      ["kill_signal"] = "SIGWHATEVER",',
        "    },",
        "  },",
        "}",
      }, "\n"))
      assert.are.equal(path .. ":16: app 'web': option 'kill_signal': unknown signal \"SIGWHATEVER\"", load_err(path))
    end)

    it("point at the app table when the option key is not literal", function()
      local path = write("eco.lua", table.concat({
        "local base = { max_restarts = 'ten' }",
        "local function with(t) return setmetatable(t, { __index = base }) end",
        "local a = { name = 'x', script = 'app.sh' }",
        "a.max_restarts = base.max_restarts",
        "return {",
        "  apps = {",
        "    a,",
        "  },",
        "}",
      }, "\n"))
      assert.are.equal(path .. ":7: app 'x': option 'max_restarts': expected a non-negative integer, got string \"ten\"",
        load_err(path))
    end)
  end)

  describe("JSON files", function()
    it("load the good fixture", function()
      local cfg = load_ok(FIXTURES .. "/good.json", { env_name = "production" })
      local api = cfg.apps[1]
      assert.are.equal("api", api.name)
      assert.are.equal(FIXTURES .. "/worker.sh", api.script)
      assert.are.same({ "--port", "3000" }, api.args)
      assert.are.equal(2, api.instances)
      assert.are.equal("cluster", api.exec_mode)
      assert.are.same({ PORT = "3000", DEBUG = "false", NODE_ENV = "production" }, api.env)
      assert.are.equal(200 * 1024 * 1024, api.max_memory_restart)
      assert.are.equal(FIXTURES .. "/logs/api.out", api.out_file)
      assert.is_true(api.merge_logs)
      assert.is_nil(api.log_date_format) -- null means absent
      assert.are.same({ "--max-old-space-size=128" }, api.interpreter_args)
      assert.are.equal(3, api.config_line)
      assert.are.equal("round-robin", api.balance) -- cluster mode's default
      assert.are.same({}, cfg.warnings)
    end)

    it("report invalid JSON with the line", function()
      local path = FIXTURES .. "/invalid.json"
      assert.are.equal(path .. ":5: invalid JSON: expected ',' or '}' after the value of 'name', found '\"'",
        load_err(path))
      path = write("eco.json", '{\n  "apps": [\n    { "script": "app.sh" }\n  ]\n\n  "x": 1\n}\n')
      assert.is_truthy(load_err(path):match("^" .. path:gsub("%p", "%%%0") .. ":6: invalid JSON: "))
      path = write("eco2.json", '{ "apps": [ { "script": NaN } ] }')
      assert.is_truthy(load_err(path):match(":1: invalid JSON: "))
    end)

    it("report option errors at the key's line", function()
      local path = FIXTURES .. "/bad_option.json"
      assert.are.equal(path .. ":10: app 'jobs': option 'max_restarts': expected a non-negative integer, got string \"ten\"",
        load_err(path))
      path = write("eco.json", '{\n  "apps": [\n    {\n      "name": "api",\n      "script": "api.js"\n    }\n  ]\n}\n')
      assert.are.equal(path .. ":5: app 'api': option 'script': no such file: " .. tmp .. "/api.js", load_err(path))
      path = write("eco2.json", '{\n  "apps": [{\n    "script": "app.sh",\n    "env": {\n      "A": "1",\n      "B=C": 1\n    }\n  }]\n}\n')
      assert.are.equal(path .. ":6: app 'app': option 'env': invalid variable name \"B=C\"", load_err(path))
    end)

    it("warn about unknown top-level keys at their line, which PM2 ignores", function()
      local path = write("eco.json", '{\n  "apps": [{ "script": "app.sh" }],\n  "depoly": {}\n}\n')
      assert.are.same({ path .. ":3: top-level key 'depoly' is unknown, ignored (did you mean 'deploy'?)" },
        load_ok(path).warnings)
    end)

    it("report null list items", function()
      local path = write("eco.json", '{ "apps": [ { "script": "app.sh", "args": ["a", null] } ] }')
      assert.are.equal(path .. ":1: app 'app': option 'args': item 2: expected a string or number, got null", load_err(path))
    end)

    it("cannot hold a restart function", function()
      local path = write("eco.json", '{ "apps": [ { "script": "app.sh", "restart": "always" } ] }')
      assert.are.equal(path .. ":1: app 'app': option 'restart': expected a function, got string \"always\"", load_err(path))
    end)

    it("require an object or a list", function()
      local path = write("eco2.json", '"x"')
      assert.are.equal(path .. ': expected a JSON object with an "apps" list, got string "x"', load_err(path))
    end)

    it("are detected by content under another extension", function()
      local cfg = load_ok(write("ecosystem.config", '\n  { "apps": [ { "name": "j", "script": "app.sh" } ] }'))
      assert.are.equal("j", cfg.apps[1].name)
      assert.are.equal(2, cfg.apps[1].config_line)
    end)
  end)

  describe("other files", function()
    -- The daemon never runs Node: the CLI evaluates the file and sends its value.
    it("take JavaScript evaluated by the CLI, and refuse to evaluate it themselves", function()
      local path = FIXTURES .. "/ecosystem.config.js"
      assert.are.equal(path .. ": a JavaScript config is evaluated with Node by the orch CLI (orch start FILE), not here",
        load_err(path))
      local cfg = load_ok(path, { evaluated = { apps = { { name = "web", script = "worker.sh" } } } })
      assert.are.equal("web", cfg.apps[1].name)
      assert.are.equal(1, cfg.apps[1].config_line) -- found in the file's text
    end)

    it("report missing files and directories", function()
      assert.are.equal(tmp .. "/none.lua: No such file or directory", load_err(tmp .. "/none.lua"))
      assert.are.equal(tmp .. "/sub: is a directory", load_err(tmp .. "/sub"))
    end)

    it("validate their arguments", function()
      assert.are.equal("ecosystem path must be a non-empty string, got nil", load_err(nil))
      assert.are.equal("deadline_ms must be a positive number, got number 0",
        load_err(FIXTURES .. "/good.lua", { deadline_ms = 0 }))
    end)
  end)

  describe("normalize", function()
    it("validates a table that did not come from a file", function()
      local cfg, err = eco.normalize({ apps = { { script = "app.sh", name = "x", args = "a 'b c'" } } },
        { dir = tmp, cpus = 2 })
      assert(cfg, err)
      assert.are.same({ "a", "b c" }, cfg.apps[1].args)
      assert.are.equal(tmp .. "/app.sh", cfg.apps[1].script)
      assert.are.equal(tmp, cfg.dir)
      assert.is_nil(cfg.file)
      assert.is_nil(cfg.apps[1].config_line)
      assert.are.same({}, cfg.warnings)
    end)

    it("formats errors with the label and no line", function()
      local cfg, err = eco.normalize({ apps = { { script = "app.sh", instnces = 2 } } },
        { dir = tmp, file = "<command line>" })
      assert.is_nil(cfg)
      assert.are.equal("<command line>: app 'app': option 'instnces': unknown option (did you mean 'instances'?)", err)
      cfg, err = eco.normalize({ apps = { { script = "app.sh", autorestart = "no" } } }, { dir = tmp })
      assert.is_nil(cfg)
      assert.are.equal("app 'app': option 'autorestart': expected a boolean, got string \"no\"", err)
    end)

    it("refuses a keepalive_drain that kill_timeout would cut short", function()
      local cfg, err = eco.normalize({ apps = { { script = "app.sh", exec_mode = "cluster", kill_timeout = "2s",
        keepalive_drain = "5s" } } }, { dir = tmp })
      assert.is_nil(cfg)
      assert.are.equal("app 'app': option 'keepalive_drain': is 5000 ms, not below kill_timeout (2000 ms): "
        .. "the worker would be killed while it drains", err)
      cfg = assert(eco.normalize({ apps = { { script = "app.sh", exec_mode = "cluster", kill_timeout = "6s",
        keepalive_drain = "5s" } } }, { dir = tmp }))
      assert.are.equal(5000, cfg.apps[1].keepalive_drain)
    end)

    it("uses a given line map", function()
      local cfg, err = eco.normalize({ apps = { { script = "app.sh", time = 1 } } }, {
        dir = tmp, file = "eco.lua",
        lines = { keys = { apps = 1 }, apps = { { line = 3, keys = { time = 7 } } } },
      })
      assert.is_nil(cfg)
      assert.are.equal("eco.lua:7: app 'app': option 'time': expected a boolean, got number 1", err)
    end)

    it("does not modify its input", function()
      local env = { A = 1 }
      local input = { apps = { { script = "app.sh", env = env, combine_logs = true } } }
      local cfg = assert(eco.normalize(input, { dir = tmp }))
      assert.are.same({ A = 1 }, env)
      assert.is_true(input.apps[1].combine_logs)
      assert.are_not.equal(env, cfg.apps[1].env)
    end)

    it("stops at the first error", function()
      local cfg, err = eco.normalize({ apps = {
        { script = "app.sh", name = "a", max_restarts = "x" },
        { script = "app.sh", name = "b", max_restarts = "y" },
      } }, { dir = tmp })
      assert.is_nil(cfg)
      assert.are.equal("app 'a': option 'max_restarts': expected a non-negative integer, got string \"x\"", err)
    end)
  end)

  describe("options schema", function()
    it("describes every option", function()
      assert.are.equal(#eco.option_order, (function()
        local n = 0
        for _ in pairs(eco.options) do n = n + 1 end
        return n
      end)())
      for name, spec in pairs(eco.options) do
        assert.is_string(spec.type, name)
        assert.is_string(spec.doc, name)
        assert.is_number(spec.order, name)
        if spec.alias_of then assert.is_table(eco.options[spec.alias_of], name) end
      end
      assert.are.equal(16, eco.options.max_restarts.default)
      assert.are.equal("SIGINT", eco.options.kill_signal.default)
    end)

    it("is documented in docs/ecosystem.md", function()
      local f = assert(io.open("docs/ecosystem.md"))
      local doc = f:read("*a")
      f:close()
      for name in pairs(eco.options) do
        assert.is_truthy(doc:find("`" .. name .. "`", 1, true), "docs/ecosystem.md does not mention `" .. name .. "`")
      end
    end)
  end)
end)

describe("orch.ecosystem depends_on", function()
  local function load_src(src)
    local base = os.tmpname() -- creates the file: removed too
    local path = base .. ".lua"
    local f = assert(io.open(path, "w"))
    f:write(src)
    f:close()
    local cfg, err = eco.load(path)
    os.remove(path)
    os.remove(base)
    return cfg, err and err:gsub("^[^:]+:", "FILE:")
  end

  it("normalises a map and a list of names", function()
    local cfg = assert(load_src([[return { apps = {
      { name = "db", script = "sleep" },
      { name = "web", script = "sleep", depends_on = { db = "healthy", "mig" } },
      { name = "mig", script = "sleep", depends_on = { "db" } },
    } }]]))
    assert.are.same({ db = "healthy", mig = "online" }, cfg.apps[2].depends_on)
    assert.are.same({ db = "online" }, cfg.apps[3].depends_on)
  end)

  it("names the line and the cycle", function()
    local _, err = load_src([[return { apps = {
      { name = "a", script = "sleep", depends_on = { "b" } },
      { name = "b", script = "sleep",
        depends_on = { "a" } },
    } }]])
    assert.are.equal("FILE:2: app 'a': option 'depends_on': dependency cycle a -> b -> a", err)
  end)

  it("refuses a dependency on itself, an unknown app and an unknown condition", function()
    local _, err = load_src([[return { apps = { { name = "a", script = "sleep", depends_on = { "a" } } } }]])
    assert.are.equal("FILE:1: app 'a': option 'depends_on': dependency cycle a -> a", err)
    _, err = load_src([[return { apps = { { name = "web", script = "sleep", depends_on = { "dbb" } },
      { name = "db", script = "sleep" } } }]])
    assert.are.equal("FILE:1: app 'web': option 'depends_on': no app named 'dbb' in this file (did you mean 'db'?)", err)
    _, err = load_src([[return { apps = { { name = "web", script = "sleep", depends_on = { db = "ready" } },
      { name = "db", script = "sleep" } } }]])
    assert.are.equal([[FILE:1: app 'web': option 'depends_on': condition for 'db' must be "started", "online", "healthy" or "completed", got string "ready"]], err)
  end)
end)
