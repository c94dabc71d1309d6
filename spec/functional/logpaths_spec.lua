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
end)
