-- The paths of log files: orch never follows a symlink it did not expect
-- (someone else may write the directory), and a log directory that went
-- away comes back.
local H = require("helpers")
local uv = require("luv")

describe("log paths", function()
  local dir, home
  H.each_test(function(d, h) dir, home = d, h end)

  local function logs() return home .. "/logs" end

  -- A file someone else cares about, and a symlink to it at path.
  local function plant(path)
    local target = H.write(dir .. "/precious", "precious\n")
    assert(uv.fs_symlink(target, path))
    return target
  end

  local function describe_app(name) return assert(H.json(home, { "describe", name }))[1] end

  -- orch ping creates the home and its logs directory.
  local function make_home() assert.are.equal(0, select(2, H.json(home, { "ping" }))) end

  it("does not append an app's output to a symlink planted at its log file's name", function()
    make_home()
    local target = plant(logs() .. "/app-out.log")
    local _, code = H.start_apps(dir, home,
      [[ { name = "app", script = "sh", args = { "-c", "echo hello; exec sleep 1000" } }, ]])
    assert.are.equal(0, code)
    local d = H.wait_until(function()
      local p = describe_app("app")
      return p.status == "errored" and p
    end, 10000, "app to be errored")
    assert.matches("app-out.log: a symlink", d.reason, 1, true)
    assert.are.equal("precious\n", H.read(target))
    -- an out_file the user set is the user's choice: followed
    local chosen = H.write(dir .. "/chosen", "")
    assert(uv.fs_symlink(chosen, dir .. "/chosen.log"))
    H.start_apps(dir, home, string.format([[
      { name = "mine", script = "sh", args = { "-c", "echo mine; exec sleep 1000" }, out_file = %q }, ]],
      dir .. "/chosen.log"))
    H.wait_until(function() return H.read(chosen) == "mine\n" end, 10000, "the output in the chosen file")
  end)

  it("orch flush does not truncate the target of a symlink planted at a log file's name", function()
    make_home()
    local target = plant(logs() .. "/app-error.log")
    H.start_apps(dir, home, [[ { name = "app", script = "sleep", args = { "1000" } }, ]])
    -- errored (its log refused), or online writing through the symlink before the fix
    H.wait_until(function()
      local status = describe_app("app").status
      return status == "errored" or status == "online"
    end, 10000, "app to be started")
    local _, code, err = H.json(home, { "flush", "app" })
    assert.are.equal(0, code, err)
    assert.are.equal("precious\n", H.read(target))
  end)

  it("gzips into a temporary file of its own, never through a planted symlink", function()
    make_home()
    local log = logs() .. "/app-out.log"
    local target = H.write(dir .. "/precious", "precious\n")
    for i = 0, 9 do assert(uv.fs_symlink(target, log .. ".gzip-" .. i .. ".part")) end
    H.start_apps(dir, home, [[ { name = "app", script = "sh", args = { "-c", "seq 1 50000; exec sleep 1000" },
      max_size = "64K", retain = 50, log_compress = true }, ]])
    H.wait_until(function() return uv.fs_stat(log .. ".3.gz") end, 20000, "three gzipped rotations")
    assert.is_true(H.read(target) == "precious\n", "the symlink's target was written")
    local d = describe_app("app")
    assert.are.equal(require("cjson").null, d.log_problems)
  end)

  it("recreates a deleted log directory (0700): running apps, reopen-logs and new apps write to it again", function()
    local tick = [[ { name = "%s", script = "sh",
      args = { "-c", "i=0; while :; do i=$((i+1)); echo tick $i; sleep 0.02; done" } }, ]]
    H.start_apps(dir, home, tick:format("tick"))
    local log = logs() .. "/tick-out.log"
    H.wait_until(function() return #H.ticks(H.read(log) or "") >= 5 end, 10000, "ticks in the log")
    assert.are.equal("", H.sh("rm -r '" .. logs() .. "' 2>&1"))
    -- a new app starts and logs
    local late = H.ecosystem(dir, tick:format("late"), "late.ecosystem.lua")
    local _, code, err = H.json(home, { "start", late }, { cwd = dir })
    assert.are.equal(0, code, err)
    H.wait_until(function() return describe_app("late").status == "online" end, 10000, "late to be online")
    H.wait_until(function() return #H.ticks(H.read(logs() .. "/late-out.log") or "") >= 5 end, 10000,
      "late's ticks in its log")
    assert.are.equal(tonumber("700", 8), uv.fs_stat(logs()).mode % 4096)
    -- the running app's output goes to a new file, not to the deleted one
    H.wait_until(function() return #H.ticks(H.read(log) or "") >= 5 end, 10000, "tick's ticks in a new log")
    assert.are.equal(0, select(2, H.json(home, { "reopen-logs" })))
    assert.matches("tick%-out%.log: deleted while open", describe_app("tick").log_problems)
  end)
end)

describe("log paths as PM2 takes them", function()
  local dir, home
  H.each_test(function(d, h) dir, home = d, h end)

  local function describe_app(name) return assert(H.json(home, { "describe", name }))[1] end

  it("discards what goes to NULL or /dev/null, making no file, and writes the other streams", function()
    H.started(dir, home, [[
      { name = "a", script = "sh", args = { "-c", "echo out-a; echo err-a >&2; exec sleep 1000" },
        out_file = "NULL", error_file = "a-err.log" },
      { name = "b", script = "sh", args = { "-c", "echo out-b; echo err-b >&2; exec sleep 1000" },
        out_file = "b-out.log", error_file = "NULL", log_file = "NULL", instances = 2 },
      { name = "c", script = "sh", args = { "-c", "echo out-c; echo err-c >&2; exec sleep 1000" },
        out_file = "/dev/null", error_file = "/dev/null", log_file = "c-all.log" },
    ]])
    H.wait_until(function() return H.read(dir .. "/a-err.log") == "err-a\n" end, 10000, "a's errors")
    H.wait_until(function()
      return H.read(dir .. "/b-out-0.log") == "out-b\n" and H.read(dir .. "/b-out-1.log") == "out-b\n"
    end, 10000, "b's output, per instance")
    H.wait_until(function()
      local all = H.read(dir .. "/c-all.log") or ""
      return all:find("out-c\n", 1, true) and all:find("err-c\n", 1, true)
    end, 10000, "c's combined log")
    for _, name in ipairs({ "NULL", "NULL-0.log", "NULL-1.log", "NULL-0", "NULL-1" }) do
      assert.is_nil(uv.fs_stat(dir .. "/" .. name), name .. " was made")
    end
    local made = H.sh("ls '" .. home .. "/logs'")
    assert.are.equal("", made:gsub("daemon[^\n]*\n", ""), "log files made in orch's logs directory")
    for _, name in ipairs({ "a", "b", "c" }) do
      local d = describe_app(name)
      assert.are.equal(require("cjson").null, d.log_problems, name)
    end
  end)

  it("writes log_file = true to NAME.log in orch's logs directory (PM2's default combined file)", function()
    H.started(dir, home, [[
      { name = "app", script = "sh", args = { "-c", "echo hello; sleep 0.2; echo oops >&2; exec sleep 1000" },
        log_file = true },
      { name = "two", script = "sh", args = { "-c", "echo two; exec sleep 1000" }, log_file = true, instances = 2 },
    ]])
    H.wait_until(function() return H.read(home .. "/logs/app.log") == "hello\noops\n" end, 10000,
      function() return "app.log: " .. tostring(H.read(home .. "/logs/app.log")) end)
    H.wait_until(function()
      return H.read(home .. "/logs/two-0.log") == "two\n" and H.read(home .. "/logs/two-1.log") == "two\n"
    end, 10000, "two's combined logs, one per instance")
    assert.are.equal("hello\n", H.read(home .. "/logs/app-out.log"))
  end)

  it("creates the missing directories of out_file, error_file and log_file (0750)", function()
    local deep = dir .. "/deep/er/logs"
    local _, code, err = H.start_apps(dir, home, string.format([[
      { name = "app", script = "sh", args = { "-c", "echo hello; echo oops >&2; exec sleep 1000" },
        out_file = %q, error_file = "rel/err/app.log", log_file = "all/app.log" }, ]], deep .. "/out.log"))
    assert.are.equal(0, code, err)
    H.wait_until(function() return H.read(deep .. "/out.log") == "hello\n" end, 10000, "the output in out_file")
    H.wait_until(function() return H.read(dir .. "/rel/err/app.log") == "oops\n" end, 10000, "the errors")
    H.wait_until(function() return (H.read(dir .. "/all/app.log") or ""):find("oops", 1, true) end, 10000,
      "the combined log")
    assert.are.equal("online", describe_app("app").status)
    for _, d in ipairs({ dir .. "/deep", dir .. "/deep/er", deep, dir .. "/rel", dir .. "/rel/err", dir .. "/all" }) do
      assert.are.equal(tonumber("750", 8), uv.fs_stat(d).mode % 4096, d)
    end
  end)
end)
