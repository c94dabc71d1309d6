-- The CLI's shape, through the real binary: start's flags (orch.schema's
-- FLAGS) and what a user sees when a command line is wrong.
local H = require("helpers")
local schema = require("orch.schema")

describe("orch start's flags", function()
  local dir, home
  H.each_test(function(d, h) dir, home = d, h end)

  local function orch(args)
    return H.orch_sync(args, { home = home, cwd = dir })
  end

  -- flags → { option = value as describe --json shows it }, one app per
  -- group (a group's options do not collide)
  local me, my_group = H.sh("id -un"):match("%S+"), H.sh("id -gn"):match("%S+")
  local my_uid = tonumber(H.sh("id -u"):match("%d+"))

  local function groups()
    return {
      { flags = { "-n", "g1", "-i", "2", "--interpreter-args", "-e", "--node-args", "-u", "--interpreter", "sh",
          "--cwd", dir, "--exec-mode", "fork", "-o", "o.log", "-e", "e.log", "-l", "all.log", "--log-type", "json",
          "--log-date-format", "%Y", "--merge-logs", "--no-autorestart", "--restart-delay", "250",
          "--exp-backoff-restart-delay", "100", "--max-restarts", "3", "--min-uptime", "2s", "--stop-exit-codes", "0",
          "3", "-k", "900", "--kill-signal", "TERM", "--shutdown-with-message", "--wait-ready", "--listen-timeout",
          "5000", "--max-memory-restart", "100M", "-c", "0 3 * * *", "--watch=" .. dir, "--ignore-watch", "tmp",
          "--watch-delay", "2" },
        script = "s.sh",
        want = { name = "g1", instances = 2, interpreter = "sh", interpreter_args = { "-e", "-u" }, cwd = dir,
          exec_mode = "fork", out_file = dir .. "/o.log", error_file = dir .. "/e.log", log_file = dir .. "/all.log",
          log_type = "json", log_date_format = "%Y", merge_logs = true, autorestart = false, restart_delay = 250,
          exp_backoff_restart_delay = 100, max_restarts = 3, min_uptime = 2000, stop_exit_codes = { 0, 3 },
          kill_timeout = 900, kill_signal = "SIGTERM", shutdown_with_message = true, wait_ready = true,
          listen_timeout = 5000, max_memory_restart = 100 * 1024 * 1024, cron_restart = "0 3 * * *",
          watch = { dir }, ignore_watch = { "tmp" }, watch_delay = 2000 },
        covers = { "name", "instances", "interpreter-args", "node-args", "interpreter", "cwd", "exec-mode", "output",
          "error", "log", "log-type", "log-date-format", "merge-logs", "no-autorestart", "restart-delay",
          "exp-backoff-restart-delay", "max-restarts", "min-uptime", "stop-exit-codes", "kill-timeout", "kill-signal",
          "shutdown-with-message", "wait-ready", "listen-timeout", "max-memory-restart", "cron", "watch",
          "ignore-watch", "watch-delay" } },
      { flags = { "--name", "g2", "-x", "--time", "--disable-logs", "--cron-restart", "*/5 * * * *", "--watch",
          "--namespace", "ns1", "--instance-var", "INST", "--increment-var", "PORT", "--filter-env=AWS",
          "--filter-env=X" },
        script = "s.sh",
        want = { name = "g2", exec_mode = "fork", time = true, disable_logs = true, cron_restart = "*/5 * * * *",
          watch = { dir }, namespace = "ns1", instance_var = "INST", increment_var = "PORT", filter_env = { "AWS", "X" } },
        covers = { "execute-command", "time", "disable-logs", "cron-restart", "namespace", "instance-var",
          "increment-var", "filter-env" } },
      { flags = { "--name", "g3", "--no-autostart", "-f", "-p", "pid.txt", "--no-treekill", "--source-map-support" },
        script = "s.sh",
        want = { name = "g3", autostart = false, force = true, pid_file = dir .. "/pid.txt", treekill = false,
          source_map_support = true },
        covers = { "no-autostart", "force", "pid", "no-treekill", "source-map-support" } },
      { flags = { "--name", "g4", "--disable-source-map-support" }, script = "s.sh",
        want = { name = "g4", disable_source_map_support = true }, covers = { "disable-source-map-support" } },
      -- orch's own user and group: no root needed
      { flags = { "--name", "g5", "--uid", me, "--gid", my_group }, script = "s.sh",
        want = { name = "g5", uid = me, gid = my_group }, covers = { "uid", "gid" } },
      { flags = { "--name", "g6", "-u", tostring(my_uid) }, script = "s.sh",
        want = { name = "g6", uid = my_uid }, covers = { "user" } },
    }
  end

  it("sets each flag's option, as orch describe --json reads it back", function()
    H.write(dir .. "/s.sh", "exec sleep 1000\n")
    local covered = {}
    for _, g in ipairs(groups()) do
      local args = { "start", g.script }
      for _, a in ipairs(g.flags) do args[#args + 1] = a end
      local code, _, err = orch(args)
      assert.are.equal(0, code, err)
      local d = assert(H.json(home, { "describe", g.want.name }))
      for option, value in pairs(g.want) do
        assert.are.same(value, d[1].options[option], option)
      end
      for _, f in ipairs(g.covers) do covered[f] = true end
    end
    -- every flag that sets one of orch's own options is among them
    -- (PM2's compatibility options are the options' business)
    for _, f in ipairs(schema.FLAGS) do
      local o = f.option and schema.options[f.option]
      if o and not o.compat then assert.is_true(covered[f[1]], "flag --" .. f[1] .. " is not covered") end
    end
  end)

  it("checks a flag's value as an ecosystem file's, naming the flag, and starts nothing", function()
    H.write(dir .. "/bad.json", '{"apps": [{"name": "a", "script": "sleep", "max_memory_restart": "10X"}]}')
    local code, _, file_err = orch({ "start", "bad.json" })
    assert.are.equal(1, code)
    local why = file_err:match("option 'max_memory_restart': ([^\n]+)")
    assert.truthy(why, file_err)
    local err
    code, _, err = orch({ "start", "sleep", "--max-memory-restart", "10X", "--", "100" })
    assert.are.equal(2, code)
    assert.are.equal("orch start: --max-memory-restart 10X: option 'max_memory_restart': " .. why, err:match("^[^\n]+"))
    assert.are.same({}, H.json(home, { "list" }))
  end)

  it("suggests the nearest flag for a typo, and says where an option without a flag is set", function()
    local code, _, err = orch({ "start", "sleep", "--max-memory-restat", "1G" })
    assert.are.equal(2, code)
    assert.matches("unknown option '%-%-max%-memory%-restat' %(did you mean '%-%-max%-memory%-restart'%?%)", err)
    code, _, err = orch({ "start", "sleep", "--max-size", "10M" })
    assert.are.equal(2, code)
    assert.matches("option 'max_size' has no command%-line form: set it in an ecosystem file", err)
  end)

  it("refuses PM2 flags it does not take, saying why", function()
    local code, _, err = orch({ "start", "sleep", "--parallel" })
    assert.are.equal(2, code)
    assert.matches("option '%-%-parallel' is not available: orch restarts and reloads every process", err)
    code, _, err = orch({ "start", "sleep", "--no-daemon" })
    assert.are.equal(2, code)
    assert.matches("orch run FILE", err)
  end)

  it("refuses a script's flags with an ecosystem file, naming the option to set there", function()
    H.write(dir .. "/eco.json", '{"apps": [{"name": "a", "script": "sleep", "args": "100"}]}')
    local code, _, err = orch({ "start", "eco.json", "--max-restarts", "3" })
    assert.are.equal(2, code)
    assert.matches("%-%-max%-restarts applies to a script, not to an ecosystem file: set option 'max_restarts'", err)
    assert.are.same({}, H.json(home, { "list" }))
  end)

  it("describes every flag in orch help start, with its option's doc", function()
    local code, out = orch({ "help", "start" })
    assert.are.equal(0, code)
    local flat = out:gsub("%s+", " ")
    for _, f in ipairs(schema.FLAGS) do
      assert.truthy(flat:find("--" .. f[1], 1, true), f[1])
      local o = f.option and schema.options[f.option]
      if o and not f.why then
        local doc = (schema.options[o.alias_of] or o).doc
        assert.truthy(flat:find(doc:gsub("%s+", " "), 1, true), f[1] .. ": " .. doc)
      end
    end
  end)
end)

describe("orch's help and output", function()
  local dir, home
  H.each_test(function(d, h) dir, home = d, h end)
  local cjson = require("cjson")

  local function orch(args, env)
    return H.orch_sync(args, { home = home, cwd = dir, env = env })
  end

  local function lines(s)
    local n = 0
    for _ in s:gmatch("[^\n]*\n") do n = n + 1 end
    return n
  end

  it("answers a typo'd verb with its did-you-mean and the usage line, not the whole help", function()
    local code, out, err = orch({ "strat", "app.js" })
    assert.are.equal(2, code)
    assert.are.equal("", out)
    assert.are.equal("orch: unknown verb 'strat' (did you mean 'start'?)\n"
      .. "usage: orch <verb> [args] (orch help lists the verbs)\n", err)
    code, out, err = orch({ "help", "strat" })
    assert.are.equal(2, code)
    assert.are.equal("", out)
    assert.matches("^orch help: unknown verb 'strat' %(did you mean 'start'%?%)\n", err)
    assert.are.equal(2, lines(err))
    -- an alias is a verb too
    local _, _, aerr = orch({ "lsit" })
    assert.matches("did you mean 'list'%?", aerr)
  end)

  it("prints a verb's help for orch VERB --help or -h, without starting a daemon", function()
    local code, out = orch({ "stop", "--help" })
    assert.are.equal(0, code)
    assert.matches("^usage: orch stop [^\n]*%[%-%-json%][^\n]*\n\nstop processes", out)
    code, out = orch({ "start", "app.js", "-h" })
    assert.are.equal(0, code)
    assert.truthy(out:find("--max-memory-restart X", 1, true), out)
    code, out = orch({ "run", "--help" })
    assert.are.equal(0, code)
    assert.matches("^usage: orch run FILE", out)
    assert.is_nil(io.open(home .. "/orch.sock"))
    -- after "--", --help is the app's argument
    code = orch({ "start", "sleep", "--name", "s", "--", "--help" })
    assert.are.equal(0, code)
    assert.are.same({ "--help" }, H.json(home, { "describe", "s" })[1].args)
  end)

  it("answers errors in JSON on stdout with --json, keeping the exit status and stderr's message", function()
    local code, out, err = orch({ "stop", "nope", "--json" })
    assert.are.equal(1, code)
    assert.are.equal("orch stop: no app named 'nope'\n", err)
    assert.are.same({ error = "no app named 'nope'", code = "ENOTFOUND" }, cjson.decode(out))
    code, out, err = orch({ "stop", "--json" })
    assert.are.equal(2, code)
    assert.matches("^orch stop: missing argument", err)
    local e = cjson.decode(out)
    assert.are.equal("EUSAGE", e.code)
    assert.matches("^missing argument <name|id|", e.error)
    code, out = orch({ "start", "sleep", "--max-memory-restart", "10X", "--json" })
    assert.are.equal(2, code)
    assert.matches("^%-%-max%-memory%-restart 10X: option 'max_memory_restart'", cjson.decode(out).error)
    code, out = orch({ "strat", "--json" })
    assert.are.equal(2, code)
    assert.are.same({ error = "unknown verb 'strat'", code = "EUSAGE" }, cjson.decode(out))
  end)

  it("describes a process as a readable page: command lines, human units, why it restarted", function()
    local code, _, err = orch({ "start", "sh", "--name", "crash", "--min-uptime", "90s", "--kill-timeout", "2500",
      "--", "-c", "sleep 0.3; exit 3", "it's a/b" }, { GREETING = "hello there" })
    assert.are.equal(0, code, err)
    H.wait_until(function() return H.json(home, { "describe", "crash" })[1].restarts >= 1 end, 20000, "a restart")
    local out
    code, out = orch({ "describe", "crash" })
    assert.are.equal(0, code)
    assert.is_nil(out:find("\\/", 1, true), out)
    assert.matches("\n  args%s+%-c 'sleep 0%.3; exit 3' 'it'\\''s a/b'\n", out)
    assert.matches("\n  command%s+/%S*/sh %-c 'sleep 0%.3; exit 3' 'it'\\''s a/b'\n", out)
    assert.matches("\n  last restarts%s+[%d%- :.]+  after exit code 3 %(automatic", out)
    assert.matches("\n  last exit%s+exit code 3 after [%d.]+ m?s\n", out)
    assert.matches("up less than 1m 30s", out)
    assert.matches("\n  stop%s+SIGINT, SIGKILL after 2%.5 s\n", out)
    assert.matches("\n  memory%s+[%d.]+[kmg]?b\n", out)
    assert.matches("\n  out log%s+/%S+crash%-out%.log %([%d.]+[kmg]?b%)\n", out)
    -- the environment only on request
    assert.is_nil(out:find("GREETING", 1, true))
    code, out = orch({ "describe", "crash", "--env-vars" })
    assert.are.equal(0, code)
    assert.matches("%sGREETING='hello there'\n", out)
  end)

  it("says which trigger restarted a process", function()
    local code, _, err = orch({ "start", "sleep", "--name", "w", "--watch=" .. dir, "--watch-delay", "100ms",
      "--", "1000" })
    assert.are.equal(0, code, err)
    H.wait_until(function() return H.json(home, { "describe", "w" })[1].status == "online" end, 20000, "online")
    H.write(dir .. "/changed.txt", "x")
    H.wait_until(function() return H.json(home, { "describe", "w" })[1].restarts >= 1 end, 20000, "a restart")
    local out
    code, out = orch({ "describe", "w" })
    assert.are.equal(0, code)
    assert.matches("\n  last restarts%s+[%d%- :.]+  a watched file changed %([^\n]*changed%.txt%)\n", out)
  end)

  local function pty(args, env, expect)
    local full = { ORCH_HOME = home, PATH = os.getenv("PATH"), HOME = os.getenv("HOME") or "/", TERM = "xterm" }
    if os.getenv("ORCH_LUA_DIR") then full.ORCH_LUA_DIR = os.getenv("ORCH_LUA_DIR") end
    for k, v in pairs(env or {}) do full[k] = v end
    local argv = { H.bin }
    for _, a in ipairs(args) do argv[#argv + 1] = a end
    local script = H.write(dir .. "/pty.json", cjson.encode({ argv = argv, env = full, cols = 120, rows = 24,
      timeout_ms = 20000, steps = { { "expect", expect }, { "exit" } } }))
    local out = H.sh(string.format("python3 '%s/spec/fixtures/pty_drive.py' '%s'", H.root, script))
    local ok, report = pcall(cjson.decode, out)
    assert(ok and type(report) == "table" and report.ok, "pty_drive.py said: " .. out)
    return report.raw
  end

  it("sorts list by --sort FIELD[:asc|desc] as PM2 (ps too), and refuses an unknown field or order", function()
    for _, n in ipairs({ "b", "a", "c" }) do
      assert.are.equal(0, (orch({ "start", "sleep", "--name", n, "--", "1000" })))
    end
    local function names(args)
      local code, out, err = orch(args)
      assert.are.equal(0, code, err)
      local seen = {}
      for n in out:gmatch("\n%d+%s+(%a)%s") do seen[#seen + 1] = n end
      return table.concat(seen)
    end
    assert.are.equal("bac", names({ "list" }))
    assert.are.equal("abc", names({ "list", "--sort", "name" }))
    assert.are.equal("abc", names({ "list", "--sort=name:asc" }))
    assert.are.equal("cba", names({ "list", "--sort=name:desc" }))
    assert.are.equal("bac", names({ "list", "--sort=id" }))
    assert.are.equal("cab", names({ "ls", "--sort=id:desc" }))
    assert.are.equal("abc", names({ "ps", "--sort=name" }))
    assert.are.equal("bac", names({ "list", "--sort=status" })) -- ties keep id order
    for _, bad in ipairs({ "size", "name:up", "name:desc:x" }) do
      local code, _, err = orch({ "list", "--sort", bad })
      assert.are.equal(2, code)
      assert.matches("--sort", err, 1, true)
      assert.matches(bad, err, 1, true)
    end
  end)

  it("colours list's statuses on a terminal only, and not with NO_COLOR or --no-color", function()
    H.need("python3")
    assert.are.equal(0, (orch({ "start", "sleep", "--name", "up", "--", "1000" })))
    local raw = pty({ "list" }, {}, "up")
    assert.truthy(raw:find("\27[32monline\27[0m", 1, true), raw)
    raw = pty({ "list" }, { NO_COLOR = "1" }, "up")
    assert.is_nil(raw:find("\27[", 1, true), raw)
    raw = pty({ "list", "--no-color" }, {}, "up")
    assert.is_nil(raw:find("\27[", 1, true), raw)
    local _, out = orch({ "list" })
    assert.is_nil(out:find("\27", 1, true), out)
  end)
end)
