-- Apps run as another user, within limits: uid/gid, umask, nice,
-- oom_score_adj, limits (orch.runas, core/proc.c's child set-up), read back
-- from /proc; log files apps cannot read; the errors of a user orch may not
-- switch to, a limit name it does not know and a limit it cannot set.
local H = require("helpers")
local uv = require("luv")

local NOBODY = 65534

-- The pid of app `name`'s process, once it runs.
local function pid_of(home, name)
  return H.wait_until(function() return H.app_pids(home, name)[1] end, 10000, "a process of " .. name)
end

local function field(status, name)
  return status:match("\n" .. name .. ":\t([^\n]*)")
end

describe("apps run as another user", function()
  local dir, home
  H.each_test(function(d, h)
    dir, home = d, h
    -- the user the apps run as must reach their cwd
    assert(uv.fs_chmod(dir, tonumber("755", 8)))
  end)

  local function need_root()
    if uv.getuid() ~= 0 then
      pending("needs root: switching users")
      return false
    end
    return true
  end

  it("runs an app as nobody with its groups, HOME, USER, LOGNAME, umask, nice, oom_score_adj and limits", function()
    if not need_root() then return end
    local pid_file = dir .. "/run/web.pid"
    H.started(dir, home, string.format([[
      { name = "web", script = "/bin/sleep", args = "300", uid = "nobody", umask = "0027", nice = 7,
        oom_score_adj = 345, pid_file = %q,
        limits = { nofile = 4096, core = 0, nproc = { 100, 200 }, as = "2G", stack = "infinity" } },
    ]], pid_file))
    local pid = pid_of(home, "web")
    local status = H.read("/proc/" .. pid .. "/status")
    assert.are.equal("65534\t65534\t65534\t65534", field(status, "Uid"))
    assert.are.equal("65534\t65534\t65534\t65534", field(status, "Gid"))
    -- initgroups' list: nobody's groups, none of root's
    assert.are.equal("65534", (field(status, "Groups"):gsub("%s+$", "")))
    assert.are.equal("0027", field(status, "Umask"))
    local stat = H.read("/proc/" .. pid .. "/stat"):match("^%d+ .*%) (.*)$")
    local fields = {}
    for w in stat:gmatch("%S+") do fields[#fields + 1] = w end
    assert.are.equal("7", fields[17]) -- nice: the 19th field, 17th after pid and comm
    assert.are.equal("345\n", H.read("/proc/" .. pid .. "/oom_score_adj"))
    local limits = H.read("/proc/" .. pid .. "/limits")
    local function limit(name) return limits:match("\n" .. name .. "%s+(%S+)%s+(%S+)") end
    assert.are.same({ "4096", "4096" }, { limit("Max open files") })
    assert.are.same({ "0", "0" }, { limit("Max core file size") })
    assert.are.same({ "100", "200" }, { limit("Max processes") })
    assert.are.same({ "2147483648", "2147483648" }, { limit("Max address space") })
    assert.are.same({ "unlimited", "unlimited" }, { limit("Max stack size") })
    local env = "\0" .. H.read("/proc/" .. pid .. "/environ")
    assert.matches("%zHOME=/nonexistent%z", env)
    assert.matches("%zUSER=nobody%z", env)
    assert.matches("%zLOGNAME=nobody%z", env)
    -- orch describe says what it runs as
    local code, out = H.orch_sync({ "describe", "web" }, { home = home })
    assert.are.equal(0, code)
    assert.matches("\n  user +nobody\n", out)
    assert.matches("\n  limits +umask 0027, nice 7, oom_score_adj 345, as 2147483648, core 0, nofile 4096, "
      .. "nproc 100/200, stack infinity\n", out)
    -- PM2's pid_file: written by orch, removed once the process is gone
    local written = dir .. "/run/web-0.pid"
    H.wait_until(function() return H.read(written) == tostring(pid) end, 5000, "the pid file")
    assert.are.equal(0, (H.orch_sync({ "stop", "web" }, { home = home })))
    H.wait_until(function() return not H.exists(pid) and not uv.fs_stat(written) end, 10000,
      "the process gone and its pid file removed")
  end)

  it("lets the app's env override HOME, and gid choose the group", function()
    if not need_root() then return end
    H.started(dir, home, [[
      { name = "web", script = "/bin/sleep", args = "300", user = "nobody", group = "daemon",
        env = { HOME = "/srv/web" } },
    ]])
    local pid = pid_of(home, "web")
    local status = H.read("/proc/" .. pid .. "/status")
    local daemon_gid = H.sh("getent group daemon | cut -d: -f3"):match("%d+")
    assert.are.equal(string.format("%s\t%s\t%s\t%s", daemon_gid, daemon_gid, daemon_gid, daemon_gid),
      field(status, "Gid"))
    assert.matches("%zHOME=/srv/web%z", "\0" .. H.read("/proc/" .. pid .. "/environ"))
  end)

  it("runs an exec health check as the app's user", function()
    if not need_root() then return end
    H.started(dir, home, [[
      { name = "web", script = "/bin/sleep", args = "300", uid = "nobody", wait_healthy = true,
        health = { exec = { "sh", "-c", "id -u; test \"$(id -u):$HOME\" = 65534:/nonexistent" }, interval = "100ms" } },
    ]])
    H.wait_until(function()
      local d = H.json(home, { "describe", "web" })
      return d and d[1].status == "online"
    end, 10000, "web online: healthy")
  end)

  it("runs an exec health check with the supplementary groups of the app's user", function()
    if not need_root() then return end
    -- a user that is a member of a group other than its own, from this
    -- machine's database (a spec must not add users)
    local user, gid
    for line in H.sh("getent group"):gmatch("[^\n]+") do
      local g, members = line:match("^[^:]*:[^:]*:(%d+):(.+)$")
      for m in (members or ""):gmatch("[^,]+") do
        local entry = H.sh("getent passwd " .. m)
        local primary = entry:match("^[^:]*:[^:]*:%d+:(%d+):")
        if not user and primary and primary ~= g then user, gid = m, g end
      end
    end
    if not user then return pending("no user here is a member of a group other than its own") end
    H.started(dir, home, string.format([[
      { name = "web", script = "/bin/sleep", args = "300", uid = %q, wait_healthy = true,
        health = { exec = { "sh", "-c", "id -G; id -G | grep -qw %s" }, interval = "100ms" } },
    ]], user, gid))
    local pid = pid_of(home, "web")
    assert.matches("%f[%d]" .. gid .. "%f[%D]", field(H.read("/proc/" .. pid .. "/status"), "Groups"))
    H.wait_until(function()
      local d = H.json(home, { "describe", "web" })
      return d and d[1].status == "online"
    end, 10000, "web online: healthy, " .. user .. " in group " .. gid)
  end)

  it("creates log files an app of another user cannot read", function()
    if not need_root() then return end
    -- a directory anyone may enter: only the files' own modes stand
    local logs = dir .. "/logs"
    assert(uv.fs_mkdir(logs, tonumber("755", 8)))
    local secret = logs .. "/secret-out.log"
    H.started(dir, home, string.format([[
      { name = "secret", script = "sh", args = { "-c", "echo the-secret; exec sleep 300" }, out_file = %q },
      { name = "reader", script = "sh", uid = "nobody", out_file = %q, autorestart = false,
        args = { "-c", "cat %s; echo \"cat exited $?\"" }, depends_on = { secret = "online" } },
    ]], secret, logs .. "/reader-out.log", secret))
    H.wait_until(function() return (H.read(secret) or ""):find("the-secret", 1, true) end, 10000, "the secret")
    local out = H.wait_until(function()
      local s = H.read(logs .. "/reader-out.log") or ""
      return s:find("cat exited", 1, true) and s
    end, 10000, "the reader's attempt")
    assert.matches("cat exited 1", out, 1, true)
    assert.is_nil(out:find("the-secret", 1, true))
    local st = assert(uv.fs_stat(secret))
    assert.are.equal(0, st.uid)
    assert.are.equal(tonumber("640", 8), st.mode % 512)
    local err = H.read(home .. "/logs/reader-error.log") or ""
    assert.matches("Permission denied", err, 1, true)
  end)

  it("makes an app whose limit cannot be set errored, naming the limit", function()
    if not need_root() then return end
    local nr_open = tonumber(H.read("/proc/sys/fs/nr_open"))
    H.started(dir, home, string.format([[
      { name = "big", script = "/bin/sleep", args = "300", limits = { nofile = { 1024, %d } } },
    ]], nr_open + 1))
    local p = H.wait_until(function()
      local d = H.json(home, { "describe", "big" })
      return d and d[1].status == "errored" and d[1]
    end, 10000, "big errored")
    assert.are.equal(string.format("EPERM: cannot set limits.nofile (soft 1024, hard %d): operation not permitted",
      nr_open + 1), p.reason)
    assert.are.same({}, H.app_pids(home, "big"))
  end)

  it("makes an app errored whose cwd its user may not enter, naming the directory", function()
    if not need_root() then return end
    local private = dir .. "/private"
    assert(uv.fs_mkdir(private, tonumber("700", 8)))
    H.started(dir, home, string.format([[
      { name = "web", script = "/bin/sleep", args = "300", uid = "nobody", cwd = %q },
    ]], private))
    local p = H.wait_until(function()
      local d = H.json(home, { "describe", "web" })
      return d and d[1].status == "errored" and d[1]
    end, 10000, "web errored")
    assert.are.equal("EACCES: cannot enter cwd " .. private .. ": permission denied", p.reason)
  end)

  it("refuses a limit it does not know and a user that does not exist, starting nothing", function()
    local file = H.ecosystem(dir, [[
      { name = "web", script = "/bin/sleep", args = "300", limits = { nofiles = 10 } },
    ]])
    local code, _, err = H.orch_sync({ "start", file }, { home = home, cwd = dir })
    assert.are.equal(1, code)
    assert.matches(file .. ":2: app 'web': option 'limits': unknown limit \"nofiles\" (did you mean \"nofile\"?)",
      err, 1, true)
    file = H.ecosystem(dir, [[
      { name = "web", script = "/bin/sleep", args = "300", uid = "no-such-user-here" },
    ]])
    code, _, err = H.orch_sync({ "start", file }, { home = home, cwd = dir })
    assert.are.equal(1, code)
    assert.matches(file .. ":2: app 'web': option 'uid': no such user \"no-such-user-here\"", err, 1, true)
    code, _, err = H.orch_sync({ "start", "/bin/sleep", "--uid", "no-such-user-here", "--", "300" },
      { home = home, cwd = dir })
    assert.are.equal(2, code)
    assert.matches("--uid no-such-user-here: option 'uid': no such user \"no-such-user-here\"", err, 1, true)
    local list = H.json(home, { "list" })
    assert.are.same({}, list)
  end)

  it("as another user than root, refuses uid and gid with the reason, before anything starts", function()
    if not need_root() then return end
    -- orch as nobody, in a home and with a binary it owns or may run
    local run = dir .. "/run"
    assert(uv.fs_mkdir(run, tonumber("700", 8)))
    assert(uv.fs_chown(run, NOBODY, NOBODY))
    local bin = dir .. "/orch"
    assert(uv.fs_copyfile(H.bin, bin))
    assert(uv.fs_chmod(bin, tonumber("755", 8)))
    local nb_home = run .. "/home"
    local file = H.ecosystem(dir, [[
      { name = "ok", script = "/bin/sleep", args = "300" },
      { name = "web", script = "/bin/sleep", args = "300", uid = "root" },
    ]])
    assert(uv.fs_chmod(file, tonumber("644", 8)))
    local function as_nobody(...)
      local o = H.orch({ "--reuid=" .. NOBODY, "--regid=" .. NOBODY, "--clear-groups", bin, ... },
        { home = nb_home, program = "setpriv", cwd = dir })
      o:wait_exit(30000)
      return o.code, o.err
    end
    finally(function() H.daemon_cleanup(nb_home) end)
    local code, err = as_nobody("start", file)
    assert.are.equal(1, code, err)
    assert.matches(file .. ":3: app 'web': option 'uid': running the app as user \"root\" needs orch to run as "
      .. "root (only root may start a process as another user), and orch runs as uid 65534 (nobody)", err, 1, true)
    code, err = as_nobody("start", "/bin/sleep", "--gid", "root", "--", "300")
    assert.are.equal(2, code, err)
    assert.matches("--gid root: option 'gid': running the app as group \"root\" needs orch to run as root", err,
      1, true)
    -- its own user is no switch: allowed
    code, err = as_nobody("start", "/bin/sleep", "--name", "mine", "--uid", "nobody", "--", "300")
    assert.are.equal(0, code, err)
    local pid = pid_of(nb_home, "mine")
    assert.are.equal("65534\t65534\t65534\t65534", field(H.read("/proc/" .. pid .. "/status"), "Uid"))
    -- nothing of the refused ones started
    assert.are.same({}, H.app_pids(nb_home, "web"))
    assert.are.same({}, H.app_pids(nb_home, "ok"))
  end)
end)
