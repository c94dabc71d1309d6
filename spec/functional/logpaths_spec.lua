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
