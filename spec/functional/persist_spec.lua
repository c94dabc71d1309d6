-- state.json and dump.json reach the disk: written to a new temporary file,
-- fsynced, renamed into place, the directory fsynced; a write that fails
-- (full disk) is reported to the client, never answered as if it were kept.
local H = require("helpers")
local uv = require("luv")

describe("persistence", function()
  local dir, home
  H.each_test(function(d, h) dir, home = d, h end)

  -- strace may still follow a daemon as it exits: H.traced_env
  local function json(args) return H.json(home, args, { cwd = dir, env = H.traced_env() }) end

  it("fsyncs the dump before renaming it into place, then its directory", function()
    assert.are.equal(0, select(2, json({ "start", "sleep", "--name", "nap", "--", "1000" })))
    local daemon = tonumber(H.read(home .. "/daemon.pid"))
    local trace = dir .. "/trace"
    -- detached before the daemon ends (finally runs before each_test's cleanup)
    finally(H.strace_daemon(daemon, trace, { "-e", "trace=openat,fsync,fdatasync,rename,renameat,renameat2" },
      function() json({ "list" }) end))
    local saved, code, err = json({ "save" })
    assert.are.equal(0, code, err)
    assert.are.equal(1, saved.apps)
    local text
    local dump = home .. "/dump.json"
    local tmp_fd, renamed, dir_fd, dir_synced, synced_tmp
    H.wait_until(function()
      text = H.read(trace) or ""
      tmp_fd, renamed, dir_fd, dir_synced, synced_tmp = nil, false, nil, false, false
      for line in text:gmatch("[^\n]+") do
        local fd = line:match('openat%(.-"' .. dump:gsub("%p", "%%%0") .. '[^"]+".-%) = (%d+)')
        if fd then tmp_fd = fd end
        if tmp_fd and not renamed and line:match("f%a*sync%(" .. tmp_fd .. "%)%s*= 0") then synced_tmp = true end
        if line:match("rename[at2]*%(.-dump%.json[^\"]+\".-dump%.json\".-= 0") then renamed = synced_tmp end
        fd = renamed and line:match('openat%(.-"' .. home:gsub("%p", "%%%0") .. '/?".-%) = (%d+)')
        if fd then dir_fd = fd end
        if dir_fd and line:match("fsync%(" .. dir_fd .. "%)%s*= 0") then dir_synced = true end
      end
      return dir_synced
    end, 10000, function() return "fsync, rename, fsync of the directory in the trace:\n" .. text end)
  end)

  -- A 2 MB tmpfs holding home, unmounted when the test ends (after its
  -- daemon and the pids leftovers() names are gone); nil, why where no
  -- tmpfs can be mounted.
  local function small_disk(leftovers)
    if H.sh("command -v mount") == "" then return nil, "no mount" end
    local mnt = dir .. "/small"
    H.sh("mkdir -p '" .. mnt .. "'")
    if H.sh("mount -t tmpfs -o size=2m orch-spec '" .. mnt .. "' 2>/dev/null && echo ok") ~= "ok\n" then
      return nil, "mounting a tmpfs needs root (CAP_SYS_ADMIN)"
    end
    home = mnt .. "/home"
    finally(function()
      H.daemon_cleanup(home)
      for _, pid in ipairs(leftovers and leftovers() or {}) do pcall(uv.kill, pid, "sigkill") end
      H.sh("umount '" .. mnt .. "' 2>/dev/null || umount -l '" .. mnt .. "'")
    end)
    return mnt
  end

  it("reports a state file that cannot be written (full disk) and carries on", function()
    local mnt, why = small_disk()
    if not mnt then return pending(why) end
    assert.are.equal(0, select(2, json({ "start", "sleep", "--name", "nap", "--", "1000" })))
    assert.are.equal(0, select(2, json({ "save" })))
    local before = H.read(home .. "/dump.json")
    -- the disk is full
    H.sh("dd if=/dev/zero of='" .. mnt .. "/filler' bs=4k 2>/dev/null")
    local code, out, err = H.orch_sync({ "stop", "nap" }, { home = home, cwd = dir })
    assert.are.equal(1, code, out)
    assert.matches("not saved", err)
    assert.matches("ENOSPC", err)
    code, out, err = H.orch_sync({ "save" }, { home = home, cwd = dir })
    assert.are.equal(1, code, out)
    assert.matches("ENOSPC", err)
    -- the previous dump is whole, nothing half-written is left
    assert.are.equal(before, H.read(home .. "/dump.json"))
    assert.is_nil(H.read(home .. "/dump.json.tmp"))
    assert.are.equal(0, (H.orch_sync({ "ping" }, { home = home })))
    -- with room again, the next change is kept
    H.sh("rm -f '" .. mnt .. "/filler'")
    local res, scode, serr = json({ "start", "nap" })
    assert.are.equal(0, scode, serr)
    assert.are.equal("online", res.processes[1].status)
    local st = require("cjson").decode(H.read(home .. "/state.json"))
    assert.are.equal(1, #st.procs)
  end)
  it("stops after a crash what a start that could not be saved (full disk) spawned", function()
    local mnt, why = small_disk(function() return H.app_pids(home, "lost") end)
    if not mnt then return pending(why) end
    assert.are.equal(0, select(2, json({ "start", "sleep", "--name", "kept", "--", "1000" })))
    H.sh("dd if=/dev/zero of='" .. mnt .. "/filler' bs=4k 2>/dev/null")
    local code, out, err = H.orch_sync({ "start", "sleep", "--name", "lost", "--", "1000" }, { home = home, cwd = dir })
    assert.are.equal(1, code, out)
    assert.matches("not saved", err)
    assert.matches("ENOSPC", err)
    local lost = H.app_pids(home, "lost")
    assert.are.equal(1, #lost)
    -- the daemon dies; the next one knows nothing of 'lost' but finds it
    local daemon = tonumber(H.read(home .. "/daemon.pid"))
    uv.kill(daemon, "sigkill")
    H.wait_until(function() return not H.alive(daemon) end, 10000, "the daemon to die")
    H.sh("rm -f '" .. mnt .. "/filler'")
    H.wait_until(function()
      local pong = json({ "ping" })
      return pong and not pong.recovering
    end, 30000, "a new daemon done recovering")
    H.wait_until(function() return not H.alive(lost[1]) end, 10000, "the unsaved process to be stopped")
    local list = json({ "list" })
    assert.are.equal(1, #list)
    assert.are.equal("kept", list[1].name)
    assert.are.equal(1, #H.app_pids(home, "kept"))
  end)
  it("never answers OK for a change the disk has not taken yet (an fsync that takes seconds)", function()
    H.need("strace")
    assert.are.equal(0, select(2, json({ "start", "sleep", "--name", "first", "--", "1000" })))
    local daemon = tonumber(H.read(home .. "/daemon.pid"))
    -- every fsync of the daemon (its durable writer's thread) waits 2.5 s
    finally(H.strace_daemon(daemon, dir .. "/trace", { "-e", "trace=openat,fsync,fdatasync",
      "-e", "inject=fsync,fdatasync:delay_enter=2500000" }, function() json({ "list" }) end))
    local code, out, err = H.orch_sync({ "start", "sleep", "--name", "slow", "--", "1000" }, { home = home, cwd = dir })
    local saved = (H.read(home .. "/state.json") or ""):find('"slow"', 1, true)
    if code == 0 then
      assert(saved, "'start' answered OK before state.json held the app: " .. out)
    else
      assert.are.equal(1, code, out)
      assert.matches("not saved", err)
    end
  end)
end)
