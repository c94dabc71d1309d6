-- What cgroup mode (orch.tree, one cgroup v2 per process) costs a spawn:
-- the child is born in its cgroup (clone3 CLONE_INTO_CGROUP) instead of
-- moving itself in through cgroup.procs, a migration that waits for an RCU
-- grace period in the kernel (about 10 ms, the loop waiting with it:
-- docs/benchmarks.md, "Process trees").
local H = require("helpers")
local uv = require("luv")

describe("cgroup mode", function()
  local dir, home
  H.each_test(function(d, h) dir, home = d, h end)
  local env = { ORCH_TREE = "cgroup" }
  local function json(args) return H.json(home, args, { env = env, cwd = dir }) end

  -- The app's pid once it is online and not `old`.
  local function online(old)
    return H.wait_until(function()
      local p = (json({ "list" }) or {})[1]
      return p and p.status == "online" and p.pid and p.pid ~= old and p.pid
    end, 30000, "the app to be online")
  end

  -- Starts app s (sleep, restarted at once) and returns its pid and the
  -- daemon's, or nil where cgroup mode cannot run (pending).
  local function start()
    local file = H.ecosystem(dir, [[
      { name = "s", script = "sleep", args = { "1000" }, min_uptime = 0, restart_delay = 0 },
    ]])
    local _, code, err = json({ "start", file })
    assert.are.equal(0, code, err)
    local ping = json({ "ping" })
    if ping.trees.mode ~= "cgroup" then
      pending("no delegated cgroup v2 subtree here: " .. tostring(ping.trees.why))
      return nil
    end
    return online(), ping.pid
  end

  -- SIGKILLs pid with strace (options) on the daemon; returns the trace and
  -- the pid of the next run, checked to be in a cgroup of its own.
  -- settle(), when given, runs before strace detaches.
  local function restart_traced(pid, daemon, options, settle)
    local trace = dir .. "/trace"
    local detach_strace = H.strace_daemon(daemon, trace, options, function() json({ "list" }) end)
    local function detach()
      if detach_strace then detach_strace() end
      detach_strace = nil
    end
    finally(detach)
    assert(uv.kill(pid, "sigkill"))
    local next_pid = online(pid)
    if settle then settle() end
    detach()
    local own = (H.read("/proc/" .. next_pid .. "/cgroup") or ""):match("0::([^\n]*)")
    local base = H.cgroup_base(home)
    assert.truthy(own, "no cgroup v2 line for pid " .. next_pid)
    assert.truthy(uv.fs_stat(base .. own:match("/[^/]+$") .. "/cgroup.procs"),
      "pid " .. next_pid .. " is in " .. own .. ", not in a cgroup of " .. base)
    return H.read(trace) or ""
  end

  local procs_write = "[^\n]*cgroup%.procs\", O_WRONLY[^\n]*"

  it("spawns a restarted process straight into its cgroup, never through cgroup.procs", function()
    local pid, daemon = start()
    if not pid then return end
    local text = restart_traced(pid, daemon, { "-e", "trace=openat,clone3,write" })
    assert.is_nil(text:match(procs_write), "the restart moved the process through cgroup.procs")
    assert.truthy(text:find("CLONE_INTO_CGROUP", 1, true), "no clone3 into a cgroup in the trace")
  end)

  -- rmdir takes the kernel's cgroup_mutex, which a move of a process into
  -- a cgroup anywhere on the machine holds across an RCU grace period.
  it("removes the cgroup of a run that ended off the loop thread", function()
    local pid, daemon = start()
    if not pid then return end
    local old = H.cgroup_base(home) .. (H.read("/proc/" .. pid .. "/cgroup") or ""):match("0::[^\n]*(/[^/\n]+)")
    local text = restart_traced(pid, daemon, { "-e", "trace=openat,rmdir" }, function()
      H.wait_until(function() return not uv.fs_stat(old) end, 10000, old .. " to be removed")
    end)
    local removed_by = text:match("(%d+)%s+rmdir%(\"" .. old:gsub("%p", "%%%0") .. "\"")
    assert.truthy(removed_by, "no rmdir of " .. old .. " in the trace:\n" .. text)
    assert.are_not.equal(tostring(daemon), removed_by, "the loop thread removed " .. old)
  end)

  -- A mkdir of the subtree that finds it there is one more syscall per
  -- spawn that takes the lock of its parent (every cgroup made under that
  -- parent on the machine takes it).
  it("makes the cgroup subtree once, not before every spawn of a start", function()
    local pid, daemon = start() -- s runs: the subtree exists
    if not pid then return end
    local trace = dir .. "/trace"
    local detach_strace = H.strace_daemon(daemon, trace, { "-e", "trace=openat,mkdir" }, function() json({ "list" }) end)
    local function detach()
      if detach_strace then detach_strace() end
      detach_strace = nil
    end
    finally(detach)
    local file = H.ecosystem(dir, [[
      { name = "many", script = "sleep", args = { "1000" }, instances = 20 },
    ]], "many.config.lua")
    local _, code, err = json({ "start", file })
    assert.are.equal(0, code, err)
    detach()
    local text = H.read(trace) or ""
    local base = H.cgroup_base(home):gsub("%p", "%%%0")
    local _, subtree = text:gsub("mkdir%(\"" .. base .. "\"", "")
    local _, cgroups = text:gsub("mkdir%(\"" .. base .. "/[^\"]+\"", "")
    assert.are.equal(20, cgroups, "mkdir of a process cgroup in the trace:\n" .. text:gsub("[^\n]*openat[^\n]*\n", ""))
    assert.are.equal(0, subtree, "mkdir of the subtree " .. H.cgroup_base(home))
  end)

  -- clone3 answers ENOSYS under some seccomp filters (container runtimes):
  -- strace makes it so here.
  it("moves a child into its cgroup through cgroup.procs where clone3 is refused", function()
    local pid, daemon = start()
    if not pid then return end
    local text = restart_traced(pid, daemon, { "-e", "trace=openat,clone3,write", "-e", "inject=clone3:error=ENOSYS" })
    assert.truthy(text:find("ENOSYS", 1, true), "clone3 was not refused")
    assert.truthy(text:match(procs_write), "no move through cgroup.procs in the trace")
  end)
  -- The daemon's minor page faults so far (/proc/PID/stat, field 10).
  local function minflt(pid)
    local rest = (H.read("/proc/" .. pid .. "/stat") or ""):match("%) (.*)$")
    local fields = {}
    for f in rest:gmatch("%S+") do fields[#fields + 1] = f end
    return tonumber(fields[8])
  end

  -- A child that got a copy of orch's memory (fork, or clone3 without
  -- CLONE_VM) leaves every page of orch write-protected, and orch takes a
  -- page fault at its next write to each (the GC writes them all): about
  -- 80 to 125 per spawn here, against fewer than 10 when the child shares
  -- them as vfork's does. ASan builds copy (core/proc.c says why).
  it("spawns into cgroups without copying orch's memory (few page faults in the daemon)", function()
    if H.sh("ldd " .. H.bin):find("libasan", 1, true) then
      pending("an ASan build: its children get a copy of orch's memory")
      return
    end
    local ping = json({ "ping" })
    if ping.trees.mode ~= "cgroup" then
      pending("no delegated cgroup v2 subtree here: " .. tostring(ping.trees.why))
      return
    end
    json({ "list" }) -- what a first request costs is not counted
    local before = minflt(ping.pid)
    local file = H.ecosystem(dir, [[
      { name = "many", script = "sleep", args = { "1000" }, instances = 50 },
    ]])
    local _, code, err = json({ "start", file })
    assert.are.equal(0, code, err)
    local faults = minflt(ping.pid) - before
    assert.is_true(faults < 50 * 30, faults .. " page faults in the daemon for a start of 50 processes")
  end)
end)

-- A stop looks among orch's children for what left the app's group (a
-- daemonised descendant, found by its marker): one children file, the main
-- thread's, not one per thread of orch (libuv's pool adds four).
describe("a stop", function()
  local dir, home
  H.each_test(function(d, h) dir, home = d, h end)

  it("reads only the main thread's children file of orch, whatever threads orch runs", function()
    H.started(dir, home, [[ { name = "s", script = "sleep", args = { "1000" }, instances = 5 }, ]])
    local daemon = H.json(home, { "ping" }).pid
    local threads = 0
    for _ in uv.fs_scandir_next, uv.fs_scandir("/proc/" .. daemon .. "/task") do threads = threads + 1 end
    assert.is_true(threads > 1, "the daemon runs one thread: nothing to tell apart")
    local trace = dir .. "/trace"
    local detach_strace = H.strace_daemon(daemon, trace, { "-e", "trace=openat" },
      function() H.json(home, { "list" }) end)
    local function detach()
      if detach_strace then detach_strace() end
      detach_strace = nil
    end
    finally(detach)
    local _, code, err = H.json(home, { "stop", "all" })
    assert.are.equal(0, code, err)
    detach()
    local text = H.read(trace) or ""
    local own = "/proc/" .. daemon .. "/task/" .. daemon .. "/children"
    assert.truthy(text:find(own, 1, true), "no read of " .. own .. " in the trace")
    local others = {}
    for path in text:gmatch("\"(/proc/" .. daemon .. "/task[^\"]*)\"") do
      if path ~= own then others[#others + 1] = path end
    end
    assert.are.same({}, others)
  end)
end)
