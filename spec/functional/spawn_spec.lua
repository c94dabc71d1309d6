-- What a managed process gets from orch, and what orch keeps for itself:
-- descriptors, resource limits, environment, orphans, stop semantics.
local H = require("helpers")
local uv = require("luv")

describe("spawn", function()
  local dir, home
  H.each_test(function(d, h) dir, home = d, h end)

  describe("descriptors", function()
    it("gives an app 0-2 and its IPC channel only, whatever orch run inherited", function()
      -- The app's own `ls` lists the fds it got: after the app's exec and its
      -- startup by construction. Read from outside right after "online", a
      -- dynamically linked app may still hold its loader's fd (under load,
      -- `sleep` had 4 -> libc.so.6). A health check (a uv_spawn child) too.
      local file = H.ecosystem(dir, string.format([[
        { name = "fds", script = "sh",
          args = { "-c", "ls -l /proc/self/fd > %s/app.tmp && mv %s/app.tmp %s/app.fds; exec sleep 60" },
          health = { exec = { "sh", "-c", "ls /proc/self/fd > %s/check.tmp && mv %s/check.tmp %s/check.fds" }, interval = "1s" } },
      ]], dir, dir, dir, dir, dir, dir))
      -- orch run with fds 7 and 9 open and not close-on-exec
      local o = H.orch({ "-c", string.format('exec 7</etc/hostname 9>"%s/nine"; exec "%s" run "%s"',
        dir, H.bin, file) }, { home = home, program = "sh" })
      H.wait_until(function() return o:online("fds:0")[1] end, 10000,
        function() return "the app online; orch said:\n" .. o.err end)
      local app = H.wait_until(function() return H.read(dir .. "/app.fds") end, 10000, "the app's list of its fds")
      local own = H.numbers(app, "(%d+) %->")
      table.sort(own)
      assert.are.equal("0 1 2 3 4", table.concat(own, " "), app) -- 4: ls's own directory
      local check = H.wait_until(function() return H.read(dir .. "/check.fds") end, 10000, "the health check's fds")
      local listed = H.numbers(check, "(%d+)\n")
      table.sort(listed)
      assert.are.equal("0 1 2 3", table.concat(listed, " ")) -- 3: ls's own directory
    end)
    it("reports an exec error even when its pipe lands where the child's fds go", function()
      -- two free fds low down (the error pipe takes them), every extra fd
      -- above them, and enough extras that fds 3.. in the child cover them
      local script = H.write(dir .. "/clobber.lua", [[
        local core = require("orch.core")
        local function spawn(fds)
          local h, err = core.spawn({ file = "/nonexistent/program", argv = { "x" }, env = {}, fds = fds })
          return h and "spawned" or err
        end
        print(spawn({})) -- opens what spawn keeps open (/dev/null)
        local held = {}
        for i = 1, 40 do held[i] = assert(core.dup(0)) end
        local low = held[1]:fd()
        held[1]:close()
        held[2]:close()
        local extra = {}
        for i = 3, low + 2 do extra[#extra + 1] = held[i] end
        print(spawn(extra))
      ]])
      local code, out, err = H.orch_sync({ "lua", script }, { home = home })
      assert.are.equal(0, code, err)
      assert.are.equal(string.rep("ENOENT: no such file or directory\n", 2), out)
    end)
  end)

  describe("file descriptor limits", function()
    -- `orch ARGS` under `ulimit -Hn hard -Sn soft`
    local function orch_limited(soft, hard, args)
      local quoted = {}
      for i, a in ipairs(args) do quoted[i] = "'" .. a .. "'" end
      return H.orch({ "-c", string.format("ulimit -Sn %d && ulimit -Hn %d && exec '%s' %s", soft, hard, H.bin,
        table.concat(quoted, " ")) }, { home = home, cwd = dir, program = "sh" })
    end

    local function soft_hard(pid)
      local limits = H.read("/proc/" .. pid .. "/limits") or ""
      local soft, hard = limits:match("Max open files%s+(%d+)%s+(%d+)")
      return tonumber(soft), tonumber(hard)
    end

    it("runs with its soft limit raised to the hard one, and gives children the original", function()
      local file = H.ecosystem(dir, [[ { name = "nap", script = "sleep", args = { "60" } }, ]])
      local o = orch_limited(200, 4000, { "run", file })
      local pid = H.wait_until(function() return o:online("nap:0")[1] end, 10000,
        function() return "the app online; orch said:\n" .. o.err end).pid
      assert.are.same({ 4000, 4000 }, { soft_hard(o.pid) })
      assert.are.same({ 200, 4000 }, { soft_hard(pid) })
    end)

    it("errors the apps that do not fit, runs the others, and keeps answering", function()
      local apps = {}
      for i = 1, 30 do apps[i] = string.format('{ name = "a%d", script = "sleep", args = { "60" } },', i) end
      local file = H.ecosystem(dir, table.concat(apps, "\n"))
      local o = orch_limited(64, 64, { "start", file })
      o:wait_exit(30000)
      local list = H.wait_until(function() return H.json(home, { "list" }) end, 10000, "orch list to answer")
      local online, errored = 0, {}
      for _, p in ipairs(list) do
        if p.status == "online" then online = online + 1 end
        if p.status == "errored" then errored[#errored + 1] = p.name end
      end
      assert.are.equal(30, #list)
      assert.is_true(online >= 1, "some apps run")
      assert.are.equal(30, online + #errored)
      for _, name in ipairs(errored) do
        local d = H.json(home, { "describe", name })
        assert.matches("^EMFILE: too many open files: orch has %d+ of its 64 descriptors open", d[1].reason)
        assert.are_not.equal("number", type(d[1].pid))
      end
      -- nothing is stuck: orch kill stops every app and the daemon
      local daemon = tonumber(H.read(home .. "/daemon.pid"))
      local kcode, _, kerr = H.orch_sync({ "kill" }, { home = home, timeout = 20000 })
      assert.are.equal(0, kcode, kerr)
      H.wait_until(function() return not H.alive(daemon) end, 10000, "the daemon to exit")
    end)
  end)

  describe("environment", function()
    it("refuses an env value with a NUL byte at the spawn, naming the variable", function()
      local script = H.write(dir .. "/nul.lua", [[
        local core = require("orch.core")
        local function try(argv, env)
          local h, err, code = core.spawn({ file = "/bin/true", argv = argv, env = env })
          print(h and "spawned" or (err .. " " .. code))
        end
        try({ "true" }, { "PATH=/bin", "SECRET=abc\0def" })
        try({ "true", "a\0b" }, { "PATH=/bin" })
        try({ "true" }, { "PATH=/bin" })
      ]])
      local code, out, err = H.orch_sync({ "lua", script }, { home = home })
      assert.are.equal(0, code, err)
      assert.are.equal("EINVAL: environment variable SECRET contains a NUL byte EINVAL\n"
        .. "EINVAL: argument 1 contains a NUL byte EINVAL\nspawned\n", out)
    end)

    it("refuses an app whose env holds a NUL byte, naming the file, app and variable", function()
      local file = H.ecosystem(dir, [[ { name = "nul", script = "sleep", args = { "60" }, env = { TOKEN = "ab\0cd" } }, ]])
      local reply, code, err = H.json(home, { "start", file }, { cwd = dir })
      assert.are.equal(1, code, err)
      assert.is_nil(reply and reply[1])
      assert.matches("ecosystem.lua:2: app 'nul': option 'env': variable 'TOKEN': contains a NUL byte", err, 1, true)
      -- nothing was started
      assert.are.same({}, H.json(home, { "list" }))
    end)
  end)

  describe("notify sockets", function()
    it("are 0600 whatever the umask", function()
      local file = H.ecosystem(dir, [[ { name = "nap", script = "sleep", args = { "60" }, wait_ready = true }, ]])
      H.orch({ "-c", string.format('umask 0 && exec "%s" run "%s"', H.bin, file) }, { home = home, program = "sh" })
      local st = H.wait_until(function() return uv.fs_stat(home .. "/notify/0.sock") end, 10000, "the notify socket")
      assert.are.equal("socket", st.type)
      assert.are.equal("600", string.format("%o", st.mode % 4096))
    end)
  end)

  describe("orphans", function()
    it("reaps orphans beyond the first 1024 children", function()
      -- 1030 orphans that live on, then 20 that exit at once: these are at
      -- the end of orch's list of children
      local script = [[
        i=0; while [ $i -lt 1030 ]; do (sleep 120 &); i=$((i+1)); done
        i=0; while [ $i -lt 20 ]; do (sleep 0.2 & echo $! >> "$OUT/short.pids"); i=$((i+1)); done
        echo done > "$OUT/marker"; exec sleep 120
      ]]
      local file = H.ecosystem(dir, string.format([[
        { name = "forker", script = "sh", args = { "-c", %q }, env = { OUT = %q }, kill_signal = "SIGTERM" },
      ]], script, dir))
      local o = H.orch({ "run", file }, { home = home })
      H.wait_until(function() return H.read(dir .. "/marker") end, 60000,
        function() return "the orphans to be forked; orch said:\n" .. o.err end)
      local short = H.numbers(H.read(dir .. "/short.pids"), "(%d+)\n")
      assert.are.equal(20, #short)
      H.wait_until(function()
        for _, pid in ipairs(short) do
          if H.exists(pid) then return false end
        end
        return true
      end, 15000, function()
        local left = {}
        for _, pid in ipairs(short) do if H.exists(pid) then left[#left + 1] = pid end end
        return "the short-lived orphans to be reaped; left: " .. table.concat(left, " ")
      end)
    end)
  end)

  describe("stopping", function()
    it("does not wait for ever for a process of its group it may not signal (EPERM)", function()
      -- orch as nobody; its app starts a setuid-root program that becomes
      -- root entirely, in the app's process group: nobody can signal it.
      if uv.getuid() ~= 0 then return pending("needs root: makes a setuid-root program and runs orch as nobody") end
      local nobody = 65534
      assert(uv.fs_chmod(dir, tonumber("755", 8)))
      local run = dir .. "/run"
      assert(uv.fs_mkdir(run, tonumber("700", 8)))
      assert(uv.fs_chown(run, nobody, nobody))
      local suid = dir .. "/suid-setpriv"
      H.sh(string.format("cp /usr/bin/setpriv '%s' && chmod 4755 '%s'", suid, suid))
      local script = string.format([['%s' --reuid=0 --regid=0 --clear-groups sleep 120 & echo $! > "%s/root.pid"; wait]],
        suid, run)
      local file = H.ecosystem(dir, string.format([[
        { name = "su", script = "sh", args = { "-c", %q }, kill_signal = "SIGTERM", kill_timeout = 300 },
      ]], script))
      local o = H.orch({ "--reuid=" .. nobody, "--regid=" .. nobody, "--clear-groups", H.bin, "run", file },
        { home = run .. "/home", program = "setpriv" })
      local root_pid
      finally(function() if root_pid then pcall(uv.kill, root_pid, "sigkill") end end)
      root_pid = H.wait_until(function() return tonumber((H.read(run .. "/root.pid") or ""):match("^(%d+)\n")) end,
        10000, function() return "the root process; orch said:\n" .. o.err end)
      H.wait_until(function()
        local status = H.read("/proc/" .. root_pid .. "/status") or ""
        return status:match("\nUid:%s+0%s+0%s+0") and status:match("^Name:%s+sleep")
      end, 10000, "the setuid program to be a root sleep")
      o:kill("sigterm")
      assert.are.equal(1, o:wait_exit(15000)) -- not a clean stop: SIGKILL, and a process left
      assert.matches("su:0 stopped", o.err, 1, true)
      assert.matches("may not be signalled", o.err, 1, true)
      assert.is_true(H.alive(root_pid)) -- out of reach, and said so
    end)
  end)
end)
