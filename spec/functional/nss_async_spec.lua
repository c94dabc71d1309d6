-- A slow user database (LDAP, sssd, NIS that stops answering) never stops
-- the daemon: the look-ups of an app's uid/gid run on threads of their own
-- (core/users.c, orch.runas.async), when a file is loaded and at each
-- launch. spec/support/nss_block.c, LD_PRELOADed into the daemon, holds
-- getpwnam_r of one user while a gate file exists.
local H = require("helpers")
local uv = require("luv")

local function present(path) return uv.fs_stat(path) ~= nil end

describe("a slow user database", function()
  local dir, home, gate, env, user, uid
  H.each_test(function(d, h)
    dir, home = d, h
    assert(uv.fs_chmod(dir, tonumber("755", 8))) -- the app's user must reach its cwd
    gate = dir .. "/gate"
    -- as root the app runs as nobody; otherwise as orch's own user (allowed)
    if uv.getuid() == 0 then
      user, uid = "nobody", 65534
    else
      user, uid = H.sh("id -un"):match("%S+"), uv.getuid()
    end
    local asan = os.getenv("ASAN_OPTIONS")
    env = {
      LD_PRELOAD = H.bin:match("^(.*)/[^/]*$") .. "/liborch_test_nss_block.so",
      ORCH_TEST_NSS_BLOCK = user .. ":" .. gate,
      -- an ASan daemon (./setup.sh --asan) accepts a library ahead of its runtime
      ASAN_OPTIONS = (asan and (asan .. ":") or "") .. "verify_asan_link_order=0",
    }
  end)

  local function uid_of(pid)
    return tonumber(H.read("/proc/" .. pid .. "/status"):match("\nUid:\t(%d+)"))
  end

  -- the pid of slow's process once it is not before's
  local function slow_again(before)
    return H.wait_until(function()
      local p = H.app_pids(home, "slow")[1]
      return p ~= before and p
    end, 10000, "slow running again")
  end

  local function start_daemon()
    local code, _, err = H.orch_sync({ "start", "/bin/sleep", "--name", "first", "--", "300" },
      { home = home, env = env })
    assert.are.equal(0, code, err)
  end

  it("answers and starts other apps while a file's user is looked up, then runs the app as that user", function()
    start_daemon()
    local file = H.ecosystem(dir, string.format('{ name = "slow", script = "/bin/sleep", args = "300", uid = %q },',
      user))
    H.write(gate, "")
    local starting = H.orch({ "start", file }, { home = home })
    H.wait_until(function() return present(gate .. ".waiting") end, 10000, "the look-up of " .. user .. " waiting")
    local code, out, err = H.orch_sync({ "ping" }, { home = home })
    assert.are.equal(0, code, err .. out)
    code, out, err = H.orch_sync({ "start", "/bin/sleep", "--name", "other", "--", "300" }, { home = home })
    assert.are.equal(0, code, err .. out)
    H.wait_until(function() return H.app_pids(home, "other")[1] end, 10000, "other running")
    assert.is_nil(starting.code) -- its reply waits for the look-up
    assert.are.same({}, H.app_pids(home, "slow"))
    os.remove(gate)
    starting:wait_exit(30000)
    assert.are.equal(0, starting.code, starting.err)
    local pid = H.wait_until(function() return H.app_pids(home, "slow")[1] end, 10000, "slow running")
    assert.are.equal(uid, uid_of(pid))
  end)

  it("answers while a launch waits for its user, and a stop meanwhile spawns nothing", function()
    start_daemon()
    local code, _, err = H.orch_sync({ "start", "/bin/sleep", "--name", "slow", "--uid", user, "--", "300" },
      { home = home })
    assert.are.equal(0, code, err)
    local pid = H.wait_until(function() return H.app_pids(home, "slow")[1] end, 10000, "slow running")
    assert.are.equal(uid, uid_of(pid))
    H.write(gate, "")
    code, _, err = H.orch_sync({ "restart", "slow" }, { home = home })
    assert.are.equal(0, code, err)
    H.wait_until(function() return present(gate .. ".waiting") end, 10000, "the look-up of " .. user .. " waiting")
    local list = H.json(home, { "list" })
    local slow
    for _, p in ipairs(list) do
      if p.name == "slow" then slow = p end
    end
    assert.are.equal("launching", slow.status)
    code, _, err = H.orch_sync({ "stop", "slow" }, { home = home })
    assert.are.equal(0, code, err)
    os.remove(gate)
    H.wait_until(function() return present(gate .. ".answered") end, 10000, "the look-up answered")
    -- a command after the answer: the daemon has seen it by then
    list = H.json(home, { "list" })
    for _, p in ipairs(list) do
      if p.name == "slow" then assert.are.equal("stopped", p.status) end
    end
    assert.are.same({}, H.app_pids(home, "slow"))
  end)

  it("answers while orch restart NAME --uid looks the user up, then restarts the app as that user", function()
    start_daemon()
    local code, _, err = H.orch_sync({ "start", "/bin/sleep", "--name", "slow", "--", "300" }, { home = home })
    assert.are.equal(0, code, err)
    local before = H.wait_until(function() return H.app_pids(home, "slow")[1] end, 10000, "slow running")
    H.write(gate, "")
    -- the new options are checked (the user looked up) before anything changes
    local restarting = H.orch({ "restart", "slow", "--uid", user }, { home = home })
    H.wait_until(function() return present(gate .. ".waiting") end, 10000, "the look-up of " .. user .. " waiting")
    local out
    code, out, err = H.orch_sync({ "ping" }, { home = home })
    assert.are.equal(0, code, err .. out)
    assert.is_nil(restarting.code) -- its reply waits for the look-up
    assert.are.same({ before }, H.app_pids(home, "slow"))
    os.remove(gate)
    restarting:wait_exit(30000)
    assert.are.equal(0, restarting.code, restarting.err)
    assert.are.equal(uid, uid_of(slow_again(before)))
  end)

  it("answers while an app that orch.start (Lua) started waits for its user, then runs it as that user", function()
    start_daemon()
    H.write(gate, "")
    local code, out, err = H.orch_sync({ "eval", string.format(
      "local ps, e = orch.start{ name = 'hooked', script = '/bin/sleep', args = { '300' }, uid = %q } "
      .. "return ps and #ps or e", user) }, { home = home })
    assert.are.equal(0, code, err .. out)
    assert.are.equal("1\n", out) -- its processes at once
    H.wait_until(function() return present(gate .. ".waiting") end, 10000, "the look-up of " .. user .. " waiting")
    code, out, err = H.orch_sync({ "ping" }, { home = home })
    assert.are.equal(0, code, err .. out)
    assert.are.same({}, H.app_pids(home, "hooked"))
    os.remove(gate)
    local pid = H.wait_until(function() return H.app_pids(home, "hooked")[1] end, 10000, "hooked running")
    assert.are.equal(uid, uid_of(pid))
    -- an unknown user: the processes come back, and their launch fails saying why
    code, out, err = H.orch_sync({ "eval",
      "local ps, e = orch.start{ name = 'nobody-here', script = '/bin/sleep', args = { '300' }, "
      .. "uid = 'no-such-user-orch' } return ps and #ps or e" }, { home = home })
    assert.are.equal(0, code, err .. out)
    assert.are.equal("1\n", out)
    local d = H.wait_until(function()
      local v = H.json(home, { "describe", "nobody-here" })
      return v and v[1].status == "errored" and v[1]
    end, 10000, "nobody-here errored")
    assert.matches("uid: no such user \"no%-such%-user%-orch\"", d.reason)
  end)

  it("serves at once when it restores an app with a user after a crash, and runs it when the user is found", function()
    start_daemon()
    local code, _, err = H.orch_sync({ "start", "/bin/sleep", "--name", "slow", "--uid", user, "--", "300" },
      { home = home })
    assert.are.equal(0, code, err)
    local before = H.wait_until(function() return H.app_pids(home, "slow")[1] end, 10000, "slow running")
    local daemon = tonumber(H.read(home .. "/daemon.pid"))
    H.write(gate, "")
    uv.kill(daemon, "sigkill")
    H.wait_until(function() return not H.alive(daemon) end, 10000, "the daemon gone")
    -- the next daemon restores slow (its user looked up as it launches)
    local out
    code, out, err = H.orch_sync({ "ping" }, { home = home, env = env })
    assert.are.equal(0, code, err .. out)
    H.wait_until(function() return present(gate .. ".waiting") end, 10000, "the look-up of " .. user .. " waiting")
    code, out, err = H.orch_sync({ "ping" }, { home = home })
    assert.are.equal(0, code, err .. out)
    os.remove(gate)
    assert.are.equal(uid, uid_of(slow_again(before)))
  end)

  it("ends at orch kill while a look-up never answers", function()
    start_daemon()
    local daemon = tonumber(H.read(home .. "/daemon.pid"))
    H.write(gate, "")
    -- its reply waits for the look-up
    local starting = H.orch({ "start", "/bin/sleep", "--name", "slow", "--uid", user, "--", "300" }, { home = home })
    H.wait_until(function() return present(gate .. ".waiting") end, 10000, "the look-up of " .. user .. " waiting")
    local code, _, err = H.orch_sync({ "kill" }, { home = home })
    assert.are.equal(0, code, err)
    H.wait_until(function() return not H.exists(daemon) end, 10000, "the daemon gone")
    starting:wait_exit(10000)
    assert.are_not.equal(0, starting.code)
    os.remove(gate)
  end)
end)
