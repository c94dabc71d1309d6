local launch = require("orch.launch")

local function app(over)
  local a = { name = "web", script = "/srv/app.bin", args = {}, interpreter_args = {}, env = {}, instances = 1,
              cwd = "/srv" }
  for k, v in pairs(over or {}) do a[k] = v end
  return a
end

describe("orch.launch.command", function()
  local cases = {
    { "execs a file without a known extension", {},
      { file = "/srv/app.bin", argv = { "/srv/app.bin" } } },
    { "infers node for .js and keeps args in order", { script = "/srv/a.js", args = { "--port", "80" } },
      { file = "node", argv = { "node", "/srv/a.js", "--port", "80" } } },
    { "infers python3 for .py", { script = "/srv/a.py" }, { file = "python3", argv = { "python3", "/srv/a.py" } } },
    { "infers sh for .sh", { script = "/srv/a.sh" }, { file = "sh", argv = { "sh", "/srv/a.sh" } } },
    { "runs .lua under orch itself", { script = "/srv/a.lua", args = { "x" } },
      { file = "/usr/bin/orch", argv = { "/usr/bin/orch", "lua", "/srv/a.lua", "x" } } },
    { "uses an explicit interpreter with its args", { script = "/srv/a.js", interpreter = "/opt/node",
      interpreter_args = { "--max-old-space-size=64" } },
      { file = "/opt/node", argv = { "/opt/node", "--max-old-space-size=64", "/srv/a.js" } } },
    { "execs the script itself with interpreter none", { script = "/srv/a.sh", interpreter_none = true },
      { file = "/srv/a.sh", argv = { "/srv/a.sh" } } },
    { "keeps a bare command for PATH lookup", { script = "sleep", args = { "10" } },
      { file = "sleep", argv = { "sleep", "10" } } },
    { "runs a command string with its shell, args appended quoted",
      { script = "python3 -m http.server", shell = "/bin/bash", args = { "8000", "it's", "a b", "" } },
      { file = "/bin/bash", argv = { "/bin/bash", "-c", [[python3 -m http.server 8000 'it'\''s' 'a b' '']] } } },
  }
  for _, c in ipairs(cases) do
    it(c[1], function()
      assert.are.same(c[3], launch.command(app(c[2]), "/usr/bin/orch"))
    end)
  end
end)

describe("orch.launch.environment", function()
  -- PM2's variables for app() as process 7 (id), instance 2
  local PM2 = { "exec_mode=fork_mode", "instances=1", "name=web", "namespace=default", "pm_cwd=/srv",
                "pm_exec_path=/srv/app.bin", "pm_id=7" }
  local function with_pm2(list, id)
    for _, kv in ipairs(PM2) do list[#list + 1] = id and kv:gsub("^pm_id=7$", "pm_id=" .. id) or kv end
    table.sort(list)
    return list
  end

  it("merges the app's env over the base and adds the instance variables", function()
    local env = launch.environment(app({ env = { A = "app", N = 5 } }), 2, 7,
      { A = "base", B = "base", LISTEN_FDS = "3", NOTIFY_SOCKET = "/x", NODE_CHANNEL_FD = "4" })
    assert.are.same(with_pm2({ "A=app", "B=base", "N=5", "NODE_APP_INSTANCE=2", "ORCH_APP_NAME=web",
                               "ORCH_ID=7", "ORCH_INSTANCE=2" }), env)
  end)

  it("marks the process with its id and orch's home (ORCH_MARK, ORCH_HOME), and parses the marker back", function()
    local env = launch.environment(app(), 0, 12, {}, nil, "/h/a@b")
    assert.are.same(with_pm2({ "NODE_APP_INSTANCE=0", "ORCH_APP_NAME=web", "ORCH_HOME=/h/a@b", "ORCH_ID=12",
                               "ORCH_INSTANCE=0", "ORCH_MARK=12@/h/a@b" }, 12), env)
    assert.are.same({ 12, "/h/a@b" }, { launch.parse_mark("12@/h/a@b") })
    assert.is_nil(launch.parse_mark("x@/h"))
    assert.is_nil(launch.parse_mark("3@relative"))
    -- the app cannot set it: orch's own comes last
    env = launch.environment(app({ env = { ORCH_MARK = "1@/other" } }), 0, 4, { ORCH_MARK = "2@/x" }, nil, "/h")
    assert.are.equal("4@/h", launch.env_table(env).ORCH_MARK)
  end)

  it("sets PM2's variables over the starting environment, and the app's env over them", function()
    local a = app({ namespace = "api", exec_mode = "cluster", instances = 3, env = { name = "mine" } })
    local env = launch.env_table(launch.environment(a, 1, 9, { pm_id = "0", namespace = "theirs" }))
    assert.are.same({ "9", "mine", "api", "cluster_mode", "3", "/srv/app.bin", "/srv" },
      { env.pm_id, env.name, env.namespace, env.exec_mode, env.instances, env.pm_exec_path, env.pm_cwd })
  end)

  it("names the instance variable by instance_var", function()
    local env = launch.env_table(launch.environment(app({ instance_var = "INSTANCE_ID" }), 3, 1, {}))
    assert.are.equal("3", env.INSTANCE_ID)
    assert.are.equal("3", env.ORCH_INSTANCE)
    assert.is_nil(env.NODE_APP_INSTANCE)
  end)

  it("adds the instance number to increment_var's value (0 when unset or not an integer)", function()
    local a = app({ increment_var = "PORT", env = { PORT = 3000 } })
    assert.are.equal("3000", launch.env_table(launch.environment(a, 0, 1, {})).PORT)
    assert.are.equal("3002", launch.env_table(launch.environment(a, 2, 1, {})).PORT)
    a = app({ increment_var = "PORT" })
    assert.are.equal("4000", launch.env_table(launch.environment(a, 1, 1, { PORT = "3999" })).PORT)
    assert.are.equal("1", launch.env_table(launch.environment(a, 1, 1, { PORT = "x" })).PORT)
  end)

  it("leaves out what filter_env names of the starting environment, never the app's env", function()
    local base = { HOME = "/root", SECRET_KEY = "s", MY_SECRET = "t", PATH = "/bin" }
    local function env_of(filter)
      local t = launch.env_table(launch.environment(app({ filter_env = filter, env = { SECRET_APP = "ok" } }),
        0, 1, base))
      local names = {}
      for k in pairs(t) do if k:match("^[A-Z]") and not k:match("^ORCH_") and k ~= "NODE_APP_INSTANCE" then
        names[#names + 1] = k
      end end
      table.sort(names)
      return names
    end
    assert.are.same({ "HOME", "MY_SECRET", "PATH", "SECRET_APP", "SECRET_KEY" }, env_of(false))
    assert.are.same({ "SECRET_APP" }, env_of(true))
    assert.are.same({ "MY_SECRET", "PATH", "SECRET_APP", "SECRET_KEY" }, env_of({ name = "HOME" }))
    assert.are.same({ "HOME", "PATH", "SECRET_APP" }, env_of({ "SECRET" }))
  end)

  it("parses an environ list back", function()
    assert.are.same({ A = "1", B = "x=y", C = "" }, launch.env_table({ "A=1", "B=x=y", "C=", "junk" }))
  end)
end)

describe("orch.launch keepalive_drain", function()
  it("gives a cluster app's processes the drain module in NODE_OPTIONS, after the user's own", function()
    local uv = require("luv")
    local dir = assert(uv.fs_mkdtemp("/tmp/orch-spec-XXXXXX"))
    local f = assert(io.open(dir .. "/orch_drain.cjs", "w"))
    f:close()
    local shim = dir .. "/orch_drain.cjs"
    local function env_of(over, base)
      return launch.env_table(launch.environment(app(over), 0, 1, base or {}, dir .. "/orch"))
    end
    local env = env_of({ exec_mode = "cluster", script = "/srv/a.js" }, { NODE_OPTIONS = "--max-old-space-size=64" })
    assert.are.equal('--max-old-space-size=64 --require "' .. shim .. '"', env.NODE_OPTIONS)
    assert.are.equal("1200", env.ORCH_DRAIN_MS)
    env = env_of({ exec_mode = "cluster", kill_timeout = 10000, keepalive_drain = 3000 })
    assert.are.equal('--require "' .. shim .. '"', env.NODE_OPTIONS)
    assert.are.equal("3000", env.ORCH_DRAIN_MS)
    -- opted out, or not a cluster app: nothing
    env = env_of({ exec_mode = "cluster", keepalive_drain = false }, { NODE_OPTIONS = "-r x" })
    assert.are.same({ "-r x" }, { env.NODE_OPTIONS, env.ORCH_DRAIN_MS })
    env = env_of({ exec_mode = "fork" })
    assert.are.same({}, { env.NODE_OPTIONS, env.ORCH_DRAIN_MS })
    os.remove(shim)
    -- a missing module (a broken install): the app runs without it
    env = env_of({ exec_mode = "cluster" })
    assert.are.same({}, { env.NODE_OPTIONS, env.ORCH_DRAIN_MS })
    assert(uv.fs_rmdir(dir))
  end)

  it("quotes the module's path as Node splits NODE_OPTIONS, and adds it once", function()
    assert.are.equal([[--require "/a b/x\"y\\z.cjs"]], launch.node_options(nil, [[/a b/x"y\z.cjs]]))
    local once = launch.node_options("--inspect", "/o/orch_drain.cjs")
    assert.are.equal(once, launch.node_options(once, "/o/orch_drain.cjs"))
  end)

  it("drains for kill_timeout less a quarter, at most 500 ms less, by default", function()
    assert.are.equal(1200, launch.drain_ms({ exec_mode = "cluster", kill_timeout = 1600 }))
    assert.are.equal(9500, launch.drain_ms({ exec_mode = "cluster", kill_timeout = 10000 }))
    assert.are.equal(75, launch.drain_ms({ exec_mode = "cluster", kill_timeout = 100 }))
    assert.is_nil(launch.drain_ms({ exec_mode = "fork", kill_timeout = 1600 }))
  end)

  it("gives it to an app run as another user only where any user can read it", function()
    local modes = { ["/srv"] = 493, ["/srv/b"] = 493, ["/srv/b/orch_drain.cjs"] = 420, ["/home/me"] = 448,
      ["/home"] = 493, ["/home/me/orch_drain.cjs"] = 420 } -- 0755, 0644, 0700
    local function stat(p) return modes[p] end
    assert.is_true(launch.readable_by_all("/srv/b/orch_drain.cjs", stat))
    assert.is_false(launch.readable_by_all("/home/me/orch_drain.cjs", stat))
    modes["/srv/b/orch_drain.cjs"] = 384 -- 0600
    assert.is_false(launch.readable_by_all("/srv/b/orch_drain.cjs", stat))
    assert.is_false(launch.readable_by_all("/srv/b/missing.cjs", stat))
  end)

  it("finds the module next to the binary, or in share/orch of the installed prefix", function()
    local function only(path) return function(p) return p == path end end
    assert.are.equal("/b/orch_drain.cjs", launch.drain_shim("/b/orch", only("/b/orch_drain.cjs")))
    assert.are.equal("/usr/share/orch/orch_drain.cjs",
      launch.drain_shim("/usr/bin/orch", only("/usr/share/orch/orch_drain.cjs")))
    assert.are.same({ nil, "/opt/share/orch/orch_drain.cjs" }, { launch.drain_shim("/opt/bin/orch", only("")) })
  end)
end)

describe("orch.launch.log_paths", function()
  it("uses NAME-out.log and NAME-error.log in the logs dir", function()
    assert.are.same({ "/h/logs/web-out.log", "/h/logs/web-error.log" },
      { launch.log_paths(app(), 0, "/h/logs") })
  end)
  it("adds the instance for several unmerged instances", function()
    assert.are.same({ "/h/logs/web-out-1.log", "/h/logs/web-error-1.log" },
      { launch.log_paths(app({ instances = 2 }), 1, "/h/logs") })
  end)
  it("shares one file with merge_logs", function()
    assert.are.same({ "/h/logs/web-out.log", "/h/logs/web-error.log" },
      { launch.log_paths(app({ instances = 2, merge_logs = true }), 1, "/h/logs") })
  end)
  it("honours out_file and error_file, per instance", function()
    assert.are.same({ "/var/log/a-1.txt", "/dev/null" },
      { launch.log_paths(app({ instances = 3, out_file = "/var/log/a.txt", error_file = "/dev/null" }), 1, "/h") })
  end)
end)

describe("orch.launch.log_paths with log_file", function()
  it("returns the combined file third, per instance like the others", function()
    assert.are.same({ "/h/web-out.log", "/h/web-error.log", "/l/all.log" },
      { launch.log_paths(app({ log_file = "/l/all.log" }), 0, "/h") })
    assert.are.same({ "/h/web-out-1.log", "/h/web-error-1.log", "/l/all-1.log" },
      { launch.log_paths(app({ instances = 2, log_file = "/l/all.log" }), 1, "/h") })
  end)
  it("has no combined file with disable_logs", function()
    local _, _, combined = launch.log_paths(app({ log_file = "/l/all.log", disable_logs = true }), 0, "/h")
    assert.is_nil(combined)
  end)
end)

describe("orch.launch.moment_to_strftime", function()
  local cases = {
    { "YYYY-MM-DD HH:mm:ss Z", "%Y-%m-%d %H:%M:%S %:z" },
    { "YYYY-MM-DDTHH:mm:ss.SSS", "%Y-%m-%dT%H:%M:%S.%L" },
    { "YY/M/D h:m:s A ZZ", "%y/%-m/%-d %-I:%-M:%-S %p %z" },
    { "ddd, DD MMM YYYY", "%a, %d %b %Y" },
    { "dddd MMMM", "%A %B" },
    { "[at] HH [100%]", "at %H 100%%" },
    { "X", "%s" },
    { "100%", "100%%" },
  }
  for _, c in ipairs(cases) do
    it(c[1], function() assert.are.equal(c[2], launch.moment_to_strftime(c[1])) end)
  end
end)

describe("orch.launch.log_format", function()
  it("is nil for plain output", function()
    assert.is_nil(launch.log_format(app(), 0, "out"))
  end)
  it("translates a moment format, keeps a strftime one", function()
    assert.are.same({ timestamp = "%Y-%m-%d" }, launch.log_format(app({ log_date_format = "YYYY-MM-DD" }), 0, "out"))
    assert.are.same({ timestamp = "%F %T" }, launch.log_format(app({ log_date_format = "%F %T" }), 0, "out"))
  end)
  it("uses PM2's default for time = true, log_date_format first", function()
    assert.are.same({ timestamp = "%Y-%m-%dT%H:%M:%S" }, launch.log_format(app({ time = true }), 0, "err"))
    assert.are.same({ timestamp = "%H" }, launch.log_format(app({ time = true, log_date_format = "HH" }), 0, "err"))
  end)
  it("describes JSON records", function()
    assert.are.same({ json = { app = "web", id = 7, stream = "err" } },
      launch.log_format(app({ log_type = "json" }), 7, "err"))
    assert.are.same({ timestamp = "%s", json = { app = "web", id = 7, stream = "out" } },
      launch.log_format(app({ log_type = "json", log_date_format = "X" }), 7, "out"))
  end)
end)

describe("orch.launch log rotation", function()
  local function env(t) return function(k) return t[k] end end

  it("holds an unfinished line 1 s by default, or for ORCH_LOG_LINE_HOLD", function()
    assert.are.same({ 1000 }, { launch.line_hold(env({})) })
    assert.are.same({ 250 }, { launch.line_hold(env({ ORCH_LOG_LINE_HOLD = "250ms" })) })
    assert.are.same({ 3600000 }, { launch.line_hold(env({ ORCH_LOG_LINE_HOLD = "1h" })) })
    assert.are.same({ 1000, 'ORCH_LOG_LINE_HOLD: expected a duration from 1ms to 1h ("1s"), got "0"' },
      { launch.line_hold(env({ ORCH_LOG_LINE_HOLD = "0" })) })
  end)

  it("is bounded by default: 10 MiB, 5 rotated files", function()
    local d, problems = launch.rotation_defaults(env({}))
    assert.are.same({ max_size = 10 * 1024 * 1024, retain = 5, compress = false }, d)
    assert.are.same({}, problems)
  end)

  it("takes the defaults from ORCH_LOG_MAX_SIZE, ORCH_LOG_RETAIN and ORCH_LOG_COMPRESS", function()
    assert.are.same({ max_size = 1024 * 1024, retain = 20, compress = true },
      launch.rotation_defaults(env({ ORCH_LOG_MAX_SIZE = "1M", ORCH_LOG_RETAIN = "20", ORCH_LOG_COMPRESS = "1" })))
    assert.are.same({ max_size = 0, retain = 5, compress = false },
      launch.rotation_defaults(env({ ORCH_LOG_MAX_SIZE = "0", ORCH_LOG_COMPRESS = "false" })))
  end)

  it("ignores values it does not understand, saying so", function()
    local d, problems = launch.rotation_defaults(env({ ORCH_LOG_MAX_SIZE = "big", ORCH_LOG_RETAIN = "0",
                                                      ORCH_LOG_COMPRESS = "yes" }))
    assert.are.same({ max_size = 10 * 1024 * 1024, retain = 5, compress = false }, d)
    assert.are.same({ 'ORCH_LOG_MAX_SIZE: expected a size ("10M", 0 for none), got "big"',
                      'ORCH_LOG_RETAIN: expected 1 to 1000, got "0"',
                      'ORCH_LOG_COMPRESS: expected 1 or 0, got "yes"' }, problems)
  end)

  it("prefers the app's own max_size, retain and log_compress", function()
    local d = { max_size = 100, retain = 2, compress = true }
    assert.are.same({ max_size = 100, retain = 2, compress = true }, launch.log_rotation(app(), d))
    assert.are.same({ max_size = 0, retain = 9, compress = false },
      launch.log_rotation(app({ max_size = 0, retain = 9, log_compress = false }), d))
  end)
end)
