-- orch startup / unstartup (a systemd unit for this orch) and the daemon it
-- runs at boot: `orch daemon --resurrect` speaking sd_notify to a test
-- NOTIFY_SOCKET (spec/fixtures/notify_sink.py stands for systemd). Nothing
-- here writes outside the spec's directory: --unit-dir, or a HOME of its own.
local H = require("helpers")
local uv = require("luv")

local apps = H.root .. "/spec/fixtures/apps"

-- The processes a spec started besides orch (the notify sink), by pid.
local spawned = {}
local function spawn(file, args)
  local handle, pid = uv.spawn(file, { args = args }, function() end)
  assert(handle, pid)
  spawned[#spawned + 1] = { handle = handle, pid = pid }
  return pid
end

-- Unit file lines KEY=VALUE -> list of values per key.
local function unit_keys(text)
  local keys = {}
  for line in text:gmatch("[^\n]+") do
    local k, v = line:match("^(%a+)=(.*)$")
    if k then
      keys[k] = keys[k] or {}
      table.insert(keys[k], v)
    end
  end
  return keys
end

-- The datagrams the sink has received so far (a list of their texts).
local function datagrams(path)
  local list = {}
  for d in (H.read(path) or ""):gmatch("(.-)\n%-%-\n") do list[#list + 1] = d end
  return list
end

local function find(list, pattern)
  for i, d in ipairs(list) do
    if d:find(pattern) then return i, d end
  end
end

describe("orch startup", function()
  local dir, home
  H.each_test(function(d, h) dir, home = d, h end)
  after_each(function()
    for _, s in ipairs(spawned) do
      pcall(uv.kill, s.pid, "sigkill")
      if not s.handle:is_closing() then s.handle:close() end
    end
    spawned = {}
    uv.run("nowait")
  end)

  local function orch(args, opts)
    opts = opts or {}
    opts.home = opts.home or home
    opts.cwd = opts.cwd or dir
    return H.orch_sync(args, opts)
  end

  -- code, stderr (a command whose stdout does not matter)
  -- `orch daemon --resurrect` telling a manager listening at a socket path
  -- (not an abstract one), once READY=1 has come: the daemon and the file
  -- of datagrams received.
  local function daemon_with_path_sink()
    H.need("python3")
    local address, sink = dir .. "/notify.sock", dir .. "/notified"
    spawn("python3", { H.root .. "/spec/fixtures/notify_sink.py", address, sink })
    H.wait_until(function() return uv.fs_stat(sink) end, 10000, "the notify sink to bind")
    local daemon = H.orch({ "daemon", "--resurrect" }, { home = home, env = { NOTIFY_SOCKET = address } })
    H.wait_until(function() return find(datagrams(sink), "^READY=1\n") end, 20000, "READY=1")
    return daemon, sink
  end

  local function failed(args, opts)
    local code, _, err = orch(args, opts)
    return code, err
  end

  it("--print prints a unit that systemd-analyze verify accepts, for the system and for --user", function()
    H.need("systemd-analyze")
    local code, out, err = orch({ "startup", "--print" })
    assert.are.equal(0, code, err)
    local keys = unit_keys(out)
    assert.are.same({ "notify" }, keys.Type)
    assert.are.same({ "mixed" }, keys.KillMode)
    assert.are.same({ H.bin .. " daemon --resurrect" }, keys.ExecStart)
    assert.are.same({ H.bin .. " reload all" }, keys.ExecReload)
    assert.are.same({ uv.os_get_passwd().username }, keys.User)
    assert.truthy(find(keys.Environment, '^"ORCH_HOME=' .. home:gsub("%p", "%%%0") .. '"$'), out)
    assert.are.same({ "multi-user.target" }, keys.WantedBy)
    -- verify wants the unit's name to end in .service; a warning (an unknown
    -- key) is not an error to it, so its output must be empty too
    local unit = H.write(dir .. "/orch-spec.service", out)
    local res = H.sh("systemd-analyze verify " .. unit .. " 2>&1; echo \"exit $?\"")
    assert.are.equal("exit 0\n", res)

    code, out, err = orch({ "startup", "--user", "--print", "--wait-ip" })
    assert.are.equal(0, code, err)
    keys = unit_keys(out)
    assert.is_nil(keys.User)
    assert.are.same({ "default.target" }, keys.WantedBy)
    assert.are.same({ "network-online.target" }, keys.After)
    unit = H.write(dir .. "/orch.service", out)
    -- a user manager's verify needs a runtime directory, nothing more
    res = H.sh("XDG_RUNTIME_DIR=" .. dir .. " systemd-analyze --user verify " .. unit .. " 2>&1; echo \"exit $?\"")
    assert.are.equal("exit 0\n", res)
  end)

  it("quotes an ORCH_HOME with spaces, quotes and % so that systemd reads it back", function()
    H.need("systemd-analyze")
    local odd = dir .. '/my "home" 100%'
    local code, out, err = orch({ "startup", "--print" }, { home = odd })
    assert.are.equal(0, code, err)
    assert.truthy(out:find('Environment="ORCH_HOME=' .. dir .. '/my \\"home\\" 100%%"', 1, true), out)
    local unit = H.write(dir .. "/orch-odd.service", out)
    assert.are.equal("exit 0\n", H.sh("systemd-analyze verify " .. unit .. " 2>&1; echo \"exit $?\""))
  end)

  it("writes the unit to --unit-dir, says the command left, and unstartup removes it", function()
    local units = dir .. "/units"
    assert(uv.fs_mkdir(units, tonumber("755", 8)))
    local code, out, err = orch({ "startup", "systemd", "--unit-dir", units, "--service-name", "orch-spec.service" })
    assert.are.equal(0, code, err)
    local file = units .. "/orch-spec.service"
    assert.truthy(out:find("wrote " .. file, 1, true), out)
    assert.truthy(out:find("systemctl enable " .. file, 1, true), out)
    assert.are.same({ H.bin .. " daemon --resurrect" }, unit_keys(H.read(file)).ExecStart)
    assert.are.equal(tonumber("644", 8), uv.fs_stat(file).mode % 4096)
    -- again: the same text
    code, out = orch({ "startup", "--unit-dir", units, "--service-name", "orch-spec" })
    assert.are.equal(0, code)
    assert.truthy(out:find("unchanged " .. file, 1, true), out)

    code, out, err = orch({ "unstartup", "--unit-dir", units, "--service-name", "orch-spec" })
    assert.are.equal(0, code, err)
    assert.truthy(out:find("removed " .. file, 1, true), out)
    assert.is_nil(uv.fs_stat(file))
    code, err = failed({ "unstartup", "--unit-dir", units, "--service-name", "orch-spec" })
    assert.are.equal(1, code)
    assert.truthy(err:find("no unit at " .. file, 1, true), err)

    -- a file orch did not write is neither replaced nor removed
    local other = H.write(units .. "/other.service", "[Service]\nExecStart=/bin/true\n")
    code, err = failed({ "startup", "--unit-dir", units, "--service-name", "other" })
    assert.are.equal(1, code)
    assert.truthy(err:find(other .. " exists and was not written by orch startup", 1, true), err)
    code, err = failed({ "unstartup", "--unit-dir", units, "--service-name", "other" })
    assert.are.equal(1, code)
    assert.truthy(err:find("was not written by orch startup: left alone", 1, true), err)
    assert.are.equal("[Service]\nExecStart=/bin/true\n", H.read(other))
  end)

  it("refuses what it cannot do, naming the argument", function()
    local code, err = failed({ "startup", "upstart" })
    assert.are.equal(1, code)
    assert.truthy(err:find("'upstart' is not supported: orch writes systemd units only", 1, true), err)
    code, err = failed({ "startup", "--user", "-u", "root" })
    assert.are.equal(1, code)
    assert.truthy(err:find("-u names the user of a system unit", 1, true), err)
    code, err = failed({ "startup", "-u", "no-such-user-here" })
    assert.are.equal(1, code)
    assert.truthy(err:find("-u: no user 'no-such-user-here'", 1, true), err)
    code, err = failed({ "startup", "--service-name", "a b" })
    assert.are.equal(1, code)
    assert.truthy(err:find("--service-name: 'a b' is not a unit name", 1, true), err)
    code, err = failed({ "unstartup", "--print" })
    assert.are.equal(1, code)
    assert.truthy(err:find("option '--print' is not available", 1, true), err)
  end)

  it("as a user other than root, writes nothing and prints the sudo command", function()
    local args = { "startup" }
    local program
    if uv.getuid() == 0 then
      H.need("setpriv")
      -- through setpriv, as nobody: a wrapper that execs orch
      program = H.write(dir .. "/as_nobody.sh", "#!/bin/sh\nexec setpriv --reuid=nobody --regid=nogroup "
        .. "--clear-groups " .. H.bin .. " \"$@\"\n", tonumber("755", 8))
    end
    local code, out, err = orch(args, { program = program, home = dir .. "/nobody-home" })
    local me = program and "nobody" or uv.os_get_passwd().username
    assert.are.equal(1, code, err)
    assert.are.equal("", out)
    assert.truthy(err:find("writing /etc/systemd/system/orch-" .. me .. ".service needs root; run:\n  sudo env "
      .. 'PATH="$PATH" ORCH_HOME=' .. dir .. "/nobody-home " .. H.bin .. " startup systemd -u " .. me, 1, true), err)
    assert.is_nil(uv.fs_stat("/etc/systemd/system/orch-" .. me .. ".service"))
    code, err = failed({ "unstartup" }, { program = program, home = dir .. "/nobody-home" })
    assert.are.equal(1, code)
    assert.truthy(err:find("removing /etc/systemd/system/orch-" .. me .. ".service needs root", 1, true), err)
  end)

  it("--user writes under $XDG_CONFIG_HOME/systemd/user and says what is left: enable, linger", function()
    if uv.fs_stat("/run/systemd/system") then
      pending("systemd runs here: orch startup --user would enable the unit in the real user manager")
      return
    end
    local code, out, err = orch({ "startup", "--user" }, { env = { XDG_CONFIG_HOME = dir .. "/.config" } })
    assert.are.equal(0, code, err)
    local file = dir .. "/.config/systemd/user/orch.service"
    assert.truthy(out:find("wrote " .. file, 1, true), out)
    assert.truthy(out:find("not enabled: systemd is not running on this machine (no /run/systemd/system).\n"
      .. "the one command left to run (once systemd runs):\n  systemctl --user enable orch\n", 1, true), out)
    assert.truthy(out:find("loginctl enable-linger", 1, true), out)
    assert.truthy(H.read(file):find("ExecStart=" .. H.bin .. " daemon --resurrect", 1, true))
    code, out, err = orch({ "unstartup", "--user" }, { env = { XDG_CONFIG_HOME = dir .. "/.config" } })
    assert.are.equal(0, code, err)
    assert.truthy(out:find("removed " .. file, 1, true), out)
  end)

  it("its ExecStart says READY=1 only once the saved apps are online, then STATUS, WATCHDOG, "
    .. "RELOADING and, on SIGTERM, STOPPING after stopping every app gracefully", function()
    H.need("python3")
    local gate = dir .. "/gate"
    H.write(gate, "")
    assert(uv.fs_mkdir(dir .. "/fast", tonumber("755", 8)))
    assert(uv.fs_mkdir(dir .. "/off", tonumber("755", 8)))
    H.started(dir, home, string.format([[
      { name = "fast", script = %q, env = { OUT = %q } },
      { name = "slow", script = %q, wait_ready = true, listen_timeout = 120000, env = { READY_WHEN = %q } },
      { name = "off", script = %q, env = { OUT = %q } },
    ]], apps .. "/graceful.sh", dir .. "/fast", apps .. "/notify_ready.py", gate, apps .. "/graceful.sh",
      dir .. "/off"))
    assert.are.equal(0, (orch({ "stop", "off" })))
    assert.are.equal(0, (orch({ "save" })))
    assert.are.equal(0, (orch({ "kill" })))
    os.remove(gate) -- from now on, slow is not ready until the spec says so

    -- the unit's command line, as systemd would run it
    local code, unit, err = orch({ "startup", "--print" })
    assert.are.equal(0, code, err)
    local keys = unit_keys(unit)
    assert.truthy(find(keys.Environment, '^"ORCH_HOME=' .. home:gsub("%p", "%%%0") .. '"$'), unit)
    local argv = {}
    for w in keys.ExecStart[1]:gmatch("%S+") do argv[#argv + 1] = w end
    assert.are.equal(H.bin, table.remove(argv, 1))

    -- an abstract socket (systemd's own form: '@' for the leading NUL)
    local address, sink = string.format("@orch-spec-%d-%d", uv.os_getpid(), uv.hrtime() % 1e9), dir .. "/notified"
    spawn("python3", { H.root .. "/spec/fixtures/notify_sink.py", address, sink })
    H.wait_until(function() return uv.fs_stat(sink) end, 10000, "the notify sink to bind")
    local daemon = H.orch(argv, { home = home, env = { NOTIFY_SOCKET = address, WATCHDOG_USEC = "200000" } })

    local function status_of(name)
      local list = H.json(home, { "list" })
      for _, p in ipairs(list or {}) do
        if p.name == name then return p.status, p.pid end
      end
    end
    H.wait_until(function() return uv.fs_stat(home .. "/orch.sock") end, 10000, "the control socket")
    H.wait_until(function()
      return status_of("fast") == "online" and status_of("slow") == "launching"
    end, 20000, "fast online and slow launching")
    -- the daemon has told the manager how things stand, and not that it is ready
    H.wait_until(function() return find(datagrams(sink), "STATUS=1 online, 1 launching, 1 stopped") end, 10000,
      function() return "a STATUS; received:\n" .. (H.read(sink) or "") end)
    assert.is_nil(find(datagrams(sink), "READY=1"), H.read(sink))

    H.write(gate, "")
    H.wait_until(function() return find(datagrams(sink), "READY=1") end, 20000, "READY=1")
    local ready = select(2, find(datagrams(sink), "READY=1"))
    -- sent with the process table as it was then: the saved apps up, off still stopped
    assert.are.equal("READY=1\nSTATUS=2 online, 1 stopped", ready)
    assert.are.equal("online", status_of("slow"))
    assert.are.equal("stopped", status_of("off"))

    -- the watchdog, every 100 ms (half of WATCHDOG_USEC)
    H.wait_until(function()
      local n = 0
      for _, d in ipairs(datagrams(sink)) do if d == "WATCHDOG=1" then n = n + 1 end end
      return n >= 2
    end, 10000, "two WATCHDOG=1")

    -- none of it reaches the apps: slow has orch's own NOTIFY_SOCKET (wait_ready)
    local _, fast_pid = status_of("fast")
    local _, slow_pid = status_of("slow")
    local fast_env = "\0" .. H.read("/proc/" .. fast_pid .. "/environ")
    assert.is_nil(fast_env:find("\0NOTIFY_SOCKET=", 1, true))
    assert.is_nil(fast_env:find("\0WATCHDOG_USEC=", 1, true))
    local slow_env = "\0" .. H.read("/proc/" .. slow_pid .. "/environ")
    assert.is_nil(slow_env:find("\0NOTIFY_SOCKET=" .. address, 1, true))
    assert.is_nil(slow_env:find("\0WATCHDOG_USEC=", 1, true))

    -- systemctl reload: RELOADING=1, then READY=1 once every process is replaced
    local before = #datagrams(sink)
    code, err = failed({ "reload", "all" })
    assert.are.equal(0, code, err)
    local reloading = H.wait_until(function()
      local list = datagrams(sink)
      for i = before + 1, #list do
        if list[i]:find("^RELOADING=1\nMONOTONIC_USEC=%d+\n") then return i end
      end
    end, 10000, "RELOADING=1")
    H.wait_until(function()
      local list = datagrams(sink)
      for i = reloading + 1, #list do
        if list[i]:find("^READY=1\n") then return true end
      end
    end, 10000, "READY=1 after the reload")

    -- systemctl stop: SIGTERM to orch alone; it stops every app itself
    H.wait_until(function() return not H.alive(fast_pid) end, 10000, "the reloaded fast to be gone")
    os.remove(dir .. "/fast/stopped.0")
    local pids = H.app_pids(home)
    assert.is_true(#pids >= 3) -- 3 apps, and what they started
    daemon:kill("sigterm")
    assert.are.equal(0, daemon:wait_exit(30000))
    assert.truthy(find(datagrams(sink), "^STOPPING=1\n"), H.read(sink))
    assert.are.equal("INT\n", H.read(dir .. "/fast/stopped.0"))
    for _, pid in ipairs(pids) do assert.is_false(H.alive(pid)) end
  end)

  it("tells a manager at a socket path too, READY=1 with nothing saved, STOPPING=1 on SIGTERM", function()
    local daemon, sink = daemon_with_path_sink()
    assert.are.equal("READY=1\nSTATUS=no processes", select(2, find(datagrams(sink), "^READY=1\n")))
    daemon:kill("sigterm")
    assert.are.equal(0, daemon:wait_exit(30000))
    assert.truthy(find(datagrams(sink), "^STOPPING=1\n"), H.read(sink))
    assert.truthy(daemon.err:find("nothing saved", 1, true), daemon.err)
  end)

  it("says STOPPING=1 as orch kill begins, while an app is still stopping", function()
    local daemon, sink = daemon_with_path_sink()
    -- it ignores SIGINT, and orch waits kill_timeout before its SIGKILL
    H.started(dir, home, string.format([[
      { name = "stubborn", script = "sh", args = { "-c", "trap '' INT; echo up > %s/up; exec sleep 300" },
        kill_timeout = 120000 },
    ]], dir))
    H.wait_until(function() return uv.fs_stat(dir .. "/up") end, 10000, "stubborn up")
    local pid = H.app_pids(home, "stubborn")[1]
    local killing = H.orch({ "kill" }, { home = home })
    H.wait_until(function() return find(datagrams(sink), "^STOPPING=1\n") end, 10000,
      function() return "STOPPING=1 while stubborn stops; received:\n" .. (H.read(sink) or "") end)
    assert.is_true(H.alive(pid))
    assert.is_nil(killing.code)
    uv.kill(pid, "sigkill")
    assert.are.equal(0, killing:wait_exit(30000), killing.err)
    assert.are.equal(0, daemon:wait_exit(30000))
  end)

  it("--resurrect starts the dump after a clean stop, and a crashed daemon's own apps after a crash", function()
    -- each app from a file of its own: the dump and the state file name their source
    local function start(name)
      local file = H.ecosystem(dir, string.format('{ name = %q, script = "/bin/sleep", args = { "1000" } }', name),
        name .. ".config.lua")
      assert.are.equal(0, (orch({ "start", file })))
    end
    start("saved")
    assert.are.equal(0, (orch({ "save" })))
    assert.are.equal(0, (orch({ "delete", "saved" })))
    start("later")
    local function names()
      local list = H.json(home, { "list" }) or {}
      local t = {}
      for _, p in ipairs(list) do t[#t + 1] = p.name .. ":" .. p.status end
      table.sort(t)
      return table.concat(t, " ")
    end
    local function boot()
      local d = H.orch({ "daemon", "--resurrect" }, { home = home })
      H.wait_until(function() return uv.fs_stat(home .. "/orch.sock") and (H.read(home .. "/daemon.pid") or "")
        :match("^" .. d.pid .. "%s") end, 10000, "the daemon to serve")
      return d
    end

    -- a crash: the state file (later) is newer than the dump (saved)
    local pid = tonumber(H.read(home .. "/daemon.pid"))
    assert(uv.kill(pid, "sigkill"))
    H.wait_until(function() return not H.alive(pid) end, 10000, "the daemon to die")
    local d = boot()
    H.wait_until(function() return names() == "later:online" end, 20000,
      function() return "later alone, not " .. names() end)
    -- a clean stop (systemctl stop, a shutdown): the next boot brings the dump back
    d:kill("sigterm")
    assert.are.equal(0, d:wait_exit(30000))
    boot() -- (ended with the test, as every orch it started)
    H.wait_until(function() return names() == "saved:online" end, 20000,
      function() return "saved alone, not " .. names() end)
  end)

  it("--resurrect fails, saying why, when another orch has the home", function()
    assert.are.equal(0, (orch({ "ping" })))
    local code, _, err = orch({ "daemon", "--resurrect" })
    assert.are.equal(1, code)
    assert.truthy(err:find("another orch already runs in " .. home, 1, true), err)
  end)
end)
