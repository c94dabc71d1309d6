-- PM2 7's end-to-end log scenarios (test/e2e/logs/*.sh) replayed against
-- orch: `pm2` becomes `orch`, the fixtures are spec/fixtures/pm2e2e (each
-- names the PM2 fixture it stands for), every `should`/`spec`/`ispec` of
-- the script is kept. PM2's default log directory (~/.pm2/logs) is
-- $ORCH_HOME/logs here.
local H = require("helpers")
local P = require("pm2e2e")
local cjson = require("cjson")

local online, restarts = P.status("online"), P.restarts

describe("PM2 e2e logs", function()
  local t = P.each_test()

  it("logs/log-create-not-exist-dir.sh: -o into a directory that does not exist creates it", function()
    local file = t.dir .. "/__log-create-not-exist-dir__/a-deep/path/which/should/cost/lots/of/time/to/create"
      .. "/the/directory/out-rel.log"
    P.ok(t, { "start", "echo.js", "-o", file })
    P.file_has(t, file, "echo.js")
  end)

  it("logs/log-custom.sh: --log-date-format prefixes lines; a format with odd text does not crash", function()
    local year = os.date("%Y")
    P.ok(t, { "start", "echo.js", "--log-date-format", "YYYY", "-o", "out-rel.log", "--merge-logs" })
    P.truncate(t, "out-rel.log")
    P.file_has(t, "out-rel.log", year)
    P.ok(t, { "delete", "all" })
    P.ok(t, { "start", "echo.js", "--log-date-format", "YYYY asdsd asd asd sad asd ", "-o", "out-rel.log",
      "--merge-logs" })
    P.should(t, "should has not restarted", restarts(0), 1, nil, 1000)
    P.ok(t, { "delete", "all" })
    P.ok(t, { "start", "echo.js", "--log-date-format", "YYYY", "-o", "out-rel.log", "--merge-logs", "-x" })
    P.truncate(t, "out-rel.log")
    P.file_has(t, "out-rel.log", year)
  end)

  -- log-entire.sh: out, err and (with -l) the combined log all get their lines.
  local function entire(combined)
    P.file_has(t, "out.log", "tick", 20000)
    P.file_has(t, "err.log", "Error", 20000)
    if combined then
      P.file_has(t, "entire.log", "tick")
      P.file_has(t, "entire.log", "Error")
    else
      assert.is_false(P.exists(t, "entire.log"))
    end
  end

  it("logs/log-entire.sh: -o -e -l in fork and cluster mode, with and without --merge-logs", function()
    P.ok(t, { "start", "throw-later.js", "-i", "1", "-o", "out.log", "-e", "err.log", "-l", "entire.log" })
    -- PM2's test takes NAME-0.log, or NAME.log when there is none (one instance)
    local function pick(name)
      H.wait_until(function() return P.exists(t, name .. "-0.log") or P.exists(t, name .. ".log") end, 20000, name)
      return P.exists(t, name .. "-0.log") and name .. "-0.log" or name .. ".log"
    end
    P.file_has(t, pick("out"), "tick", 20000)
    P.file_has(t, pick("err"), "Error", 20000)
    P.file_has(t, pick("entire"), "tick", 20000)
    P.file_has(t, pick("entire"), "Error", 20000)
    P.ok(t, { "kill" })
    H.sh("rm -f '" .. t.dir .. "'/out*.log '" .. t.dir .. "'/err*.log '" .. t.dir .. "'/entire*.log")
    P.ok(t, { "start", "throw-later.js", "-i", "1", "-o", "out.log", "-e", "err.log", "-l", "entire.log",
      "--merge-logs" })
    entire(true)
    P.ok(t, { "kill" })
    H.sh("rm -f '" .. t.dir .. "'/out.log '" .. t.dir .. "'/err.log '" .. t.dir .. "'/entire.log")
    P.ok(t, { "start", "throw-later.js", "-o", "out.log", "-e", "err.log", "--merge-logs" })
    entire(false)
  end)

  it("logs/log-entire.sh: reloadLogs, restart, reload and flush keep all three logs written", function()
    for _, verb in ipairs({ "reloadLogs", "restart", "reload", "flush" }) do
      P.ok(t, { "start", "throw-later.js", "-o", "out.log", "-e", "err.log", "-l", "entire.log", "--merge-logs" })
      P.ok(t, verb == "reloadLogs" and { verb } or { verb, "all" })
      entire(true)
      P.ok(t, { "kill" })
      H.sh("rm -f '" .. t.dir .. "'/out.log '" .. t.dir .. "'/err.log '" .. t.dir .. "'/entire.log")
    end
  end)

  it("logs/log-entire.sh: jlist has pm_log_path only with a combined log; a file's log_file", function()
    P.ok(t, { "start", "throw-later.js", "-o", "out.log", "-e", "err.log", "-l", "entire.log", "--merge-logs" })
    local list = cjson.decode((P.ok(t, { "jlist" })))
    assert.truthy(tostring(list[1].pm2_env.pm_log_path):find("entire.log", 1, true), "entire log path should exist")
    entire(true)
    P.ok(t, { "kill" })
    P.ok(t, { "start", "throw-later.js", "-o", "out.log", "-e", "err.log", "--merge-logs" })
    list = cjson.decode((P.ok(t, { "jlist" })))
    assert.is_nil(list[1].pm2_env.pm_log_path, "entire log path should not exist")
    P.ok(t, { "kill" })
    H.sh("rm -f '" .. t.dir .. "'/out.log '" .. t.dir .. "'/err.log '" .. t.dir .. "'/entire.log")
    P.ok(t, { "start", "throw-later.json" })
    entire(true)
    P.ok(t, { "kill" })
    H.sh("rm -f '" .. t.dir .. "'/out.log '" .. t.dir .. "'/err.log '" .. t.dir .. "'/entire.log")
    P.ok(t, { "start", "throw-later1.json" })
    entire(false)
  end)

  -- log-json.sh: output.log holds valid JSON records with PM2's fields.
  local function json_records(with_year)
    P.file_has(t, "log-json/output.log", "echo")
    local text = H.read(t.dir .. "/log-json/output.log")
    local n = 0
    for line in text:gmatch("[^\n]+") do
      local ok, rec = pcall(cjson.decode, line)
      assert.is_true(ok, "should have parsed valid json: " .. line)
      assert.truthy(tostring(rec.message):match("^echo"), line)
      assert.truthy(rec.timestamp and rec.type and rec.app_name, line)
      if with_year then assert.truthy(tostring(rec.timestamp):find(os.date("%Y"), 1, true), line) end
      n = n + 1
    end
    assert.is_true(n >= 1)
  end

  it("logs/log-json.sh: log_type json in fork and cluster mode, with and without log_date_format", function()
    t.cwd = t.dir .. "/log-json"
    for _, case in ipairs({ { "one-echo" }, { "one-echo-cluster", "-i", "2" }, { "one-echo-date", year = true },
                            { "one-echo-cluster-date", year = true } }) do
      H.sh("rm -f '" .. t.dir .. "/log-json/output.log'")
      local args = { "start", "ecosystem.json", "--only", case[1] }
      for i = 2, #case do args[#args + 1] = case[i] end
      P.ok(t, args)
      json_records(case.year)
      P.ok(t, { "delete", "all" })
    end
  end)

  it("logs/log-namespace.sh: logs NAMESPACE streams the apps' lines, also with --lines 0", function()
    P.ok(t, { "start", "echo.js", "--namespace", "e2e-test-log-namespace" })
    for _, extra in ipairs({ {}, { "--lines", "0" } }) do
      local args = { "logs", "e2e-test-log-namespace" }
      for _, a in ipairs(extra) do args[#args + 1] = a end
      local follower = H.orch(args, { home = t.home, cwd = t.dir })
      follower:wait_output("echo%.js\n", 15000)
      follower:kill()
      follower:wait_exit(10000)
    end
  end)

  -- log-null.sh: NULL and /dev/null discard a stream; nothing is written to
  -- the default log directory for it.
  for _, null in ipairs({ "NULL", "/dev/null" }) do
    for _, mode in ipairs({ "fork", "cluster" }) do
      it("logs/log-null.sh: -o/-e " .. null .. " in " .. mode .. " mode writes no file for that stream", function()
        local i = mode == "cluster" and { "-i", "1" } or {}
        local function start(o, e)
          local args = { "start", "echo.js", "-o", o, "-e", e, "--merge-logs" }
          for _, a in ipairs(i) do args[#args + 1] = a end
          P.ok(t, args)
          P.should(t, "online", online, 1)
        end
        local logs = t.home .. "/logs/"
        start("out.log", null)
        P.file_has(t, "out.log", "echo.js")
        assert.is_false(P.exists(t, logs .. "echo-error.log"), "err log shouldnt exist with " .. null)
        P.ok(t, { "delete", "all" })
        start(null, "err.log")
        P.file_has(t, "err.log", "echo.js-error")
        assert.is_false(P.exists(t, logs .. "echo-out.log"), "output log shouldnt exist with " .. null)
        P.ok(t, { "delete", "all" })
        start(null, null)
        assert.is_false(P.exists(t, logs .. "echo-out.log"), "out log shouldnt exist with " .. null)
        assert.is_false(P.exists(t, logs .. "echo-error.log"), "error log shouldnt exist with " .. null)
      end)
    end
  end

  it("logs/log-reload.sh: reloadLogs reopens log files that were removed", function()
    P.ok(t, { "start", "echo.js", "-o", "out-rel.log", "-e", "err-rel.log", "-x", "--merge-logs" })
    P.file_has(t, "out-rel.log", "echo.js")
    P.file_has(t, "err-rel.log", "echo.js-error")
    os.remove(t.dir .. "/out-rel.log")
    os.remove(t.dir .. "/err-rel.log")
    P.ok(t, { "reloadLogs" })
    P.file_has(t, "out-rel.log", "echo.js")
    P.file_has(t, "err-rel.log", "echo.js-error")
  end)

  it("misc/misc.sh: -o with -i writes one file per instance, --merge-logs one for all", function()
    P.ok(t, { "start", "echo.js", "-i", "4", "-o", "outmerge.log" })
    P.file_has(t, "outmerge-0.log", "echo.js")
    assert.is_false(P.exists(t, "outmerge.log"), "file outmerge.log should not exist")
    P.ok(t, { "kill" })
    H.sh("rm -f '" .. t.dir .. "'/outmerge*")
    P.ok(t, { "start", "echo.js", "-i", "4", "-o", "outmerge.log", "--merge-logs" })
    P.file_has(t, "outmerge.log", "echo.js")
    assert.is_false(P.exists(t, "outmerge-0.log"), "file outmerge-0.log should not exist")
  end)
end)
