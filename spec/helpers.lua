-- spec/helpers.lua: what functional specs share: a private ORCH_HOME per
-- test, the real orch binary started with luv, polling instead of sleeping,
-- and cleanup of every process a test started, by pid.
local uv = require("luv")

local H = {}

H.bin = os.getenv("ORCH_BIN") or "build/orch"
if H.bin:sub(1, 1) ~= "/" then H.bin = uv.cwd() .. "/" .. H.bin end
H.root = uv.cwd()

local started = {} -- every orch we spawned, for cleanup
local pgroups = {} -- process groups of apps seen online

function H.sh(cmd)
  local f = assert(io.popen(cmd))
  local out = f:read("*a")
  f:close()
  return out
end

function H.tmpdir()
  local dir = assert(uv.fs_mkdtemp("/tmp/orch-spec-XXXXXX"))
  return dir
end

function H.write(path, content, mode)
  local f = assert(io.open(path, "wb"))
  f:write(content)
  f:close()
  if mode then assert(uv.fs_chmod(path, mode)) end
  return path
end

function H.read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

-- The environment of a running process, from /proc, as a table (empty
-- once it is gone).
function H.environ(pid)
  local env = {}
  for k, v in (H.read("/proc/" .. pid .. "/environ") or ""):gmatch("([^=%z]+)=([^%z]*)%z") do env[k] = v end
  return env
end

function H.alive(pid)
  -- A zombie still answers kill(0); /proc tells them apart.
  local stat = H.read("/proc/" .. pid .. "/stat")
  if not stat then return false end
  -- comm may hold unbalanced parentheses (the daemon's title, cut to 15
  -- bytes: "orch: daemon (/"): the state follows the last ") "
  local state = stat:match("^%d+ .*%) (%a)")
  if state ~= "Z" and state ~= "X" then return true end
  -- A thread group's leader shows Z once its own thread has ended, while its
  -- other threads (the daemon's writer threads, libuv's pool) may still be
  -- exiting, holding the process's files: its listening socket took a
  -- connection and reset it (lifecycle_spec's ping after a SIGKILL got
  -- ECONNRESET). Alive until it is the last of its group.
  local dir = uv.fs_scandir("/proc/" .. pid .. "/task")
  while dir do
    local tid = uv.fs_scandir_next(dir)
    if not tid then break end
    if tid ~= tostring(pid) then return true end
  end
  return false
end

function H.exists(pid)
  return uv.fs_stat("/proc/" .. pid) ~= nil
end

-- Polls cond() (running the loop in between) until it returns a truthy value
-- or timeout_ms passes, then fails with what was awaited.
function H.wait_until(cond, timeout_ms, what)
  -- uv.now() is the loop's cached time: stale after a long stretch of the
  -- spec's own work, which would eat into the timeout
  uv.update_time()
  local deadline = uv.now() + (timeout_ms or 5000)
  while true do
    local v = cond()
    if v then return v end
    if uv.now() >= deadline then
      if type(what) == "function" then what = what() end
      error("timed out waiting for " .. (what or "a condition"), 2)
    end
    uv.sleep(5)
    uv.update_time()
    uv.run("nowait")
  end
end

local Orch = {}
Orch.__index = Orch

-- Starts `orch ARGS...` with ORCH_HOME=home; stdout and stderr are collected.
-- opts.program: run that instead (a wrapper that ends by exec'ing H.bin).
function H.orch(args, opts)
  opts = opts or {}
  local env = { "ORCH_HOME=" .. opts.home, "PATH=" .. os.getenv("PATH"), "HOME=" .. (os.getenv("HOME") or "/") }
  -- development: run the Lua sources instead of the embedded modules
  -- passed on: another Lua tree, and the sanitizers' settings (./setup.sh --asan, ORCH_BIN)
  -- (opts.env wins over them: the first of two entries is the one getenv finds)
  local given = opts.env or {}
  for _, k in ipairs({ "ORCH_LUA_DIR", "ASAN_OPTIONS", "LSAN_OPTIONS", "UBSAN_OPTIONS" }) do
    if os.getenv(k) and given[k] == nil then env[#env + 1] = k .. "=" .. os.getenv(k) end
  end
  for k, v in pairs(given) do env[#env + 1] = k .. "=" .. v end
  local self = setmetatable({ out = "", err = "", args = args }, Orch)
  -- opts.stdout: an fd for orch's stdout instead of a pipe read here
  local stdout, stderr = opts.stdout == nil and uv.new_pipe(false) or nil, uv.new_pipe(false)
  local handle, pid = uv.spawn(opts.program or H.bin, {
    args = args, env = env, cwd = opts.cwd, stdio = { nil, stdout or opts.stdout, stderr },
  }, function(code, signal)
    self.code, self.signal = code, signal
  end)
  assert(handle, pid)
  self.handle, self.pid = handle, pid
  self.eof = stdout and 0 or 1
  if stdout then
    stdout:read_start(function(_, data)
      if data then self.out = self.out .. data else self.eof = self.eof + 1 end
    end)
  end
  stderr:read_start(function(_, data)
    if not data then self.eof = self.eof + 1 end
    if data then
      self.err = self.err .. data
      for g in data:gmatch("online, pid (%d+)") do pgroups[tonumber(g)] = true end
    end
  end)
  self.pipes = { stderr, stdout }
  started[#started + 1] = self
  return self
end

-- Runs orch to completion (for short verbs). Returns code, stdout, stderr.
function H.orch_sync(args, opts)
  local o = H.orch(args, opts)
  -- generous: a verb takes milliseconds, but on a machine loaded many times
  -- over its cores a CLI can wait seconds for a time slice
  o:wait_exit(opts and opts.timeout or 30000)
  return o.code, o.out, o.err
end

function Orch:exited()
  return self.code ~= nil
end

function Orch:wait_exit(timeout_ms)
  H.wait_until(function()
    -- The exit, and EOF on both pipes: then all output is in.
    return self.code ~= nil and self.eof == 2
  end, timeout_ms or 10000, function()
    return "orch " .. table.concat(self.args, " ") .. " (pid " .. self.pid .. ") to exit; stderr so far:\n" .. self.err
  end)
  -- every handle on orch's loop has an owner that closes it at exit (core/owners.h)
  assert(not self.err:find("no owner closed", 1, true), "orch exited with a handle no owner closed:\n" .. self.err)
  return self.code
end

function Orch:kill(sig)
  if self.code == nil then uv.kill(self.pid, sig or "sigterm") end
end

-- pids from "NAME:I online, pid P, restarts R" lines: list of {pid, restarts}
function Orch:online(label)
  local seen = {}
  for pid, restarts in self.err:gmatch(label:gsub("%p", "%%%0") .. " online, pid (%d+), restarts (%d+)") do
    seen[#seen + 1] = { pid = tonumber(pid), restarts = tonumber(restarts) }
  end
  return seen
end

function Orch:wait_output(pattern, timeout_ms)
  return H.wait_until(function() return self.err:match(pattern) or self.out:match(pattern) end,
    timeout_ms, function() return "output matching '" .. pattern .. "'; stderr so far:\n" .. self.err end)
end

-- Kills every orch and every app process group a test started.
function H.cleanup()
  -- Gracefully first: orch then stops (and reaps) what it started.
  for _, o in ipairs(started) do
    if o.code == nil then pcall(uv.kill, o.pid, "sigterm") end
  end
  for _, o in ipairs(started) do
    if o.code == nil then pcall(function() o:wait_exit(5000) end) end
    if o.code == nil then pcall(uv.kill, o.pid, "sigkill") end
  end
  for pgid in pairs(pgroups) do pcall(uv.kill, -pgid, "sigkill") end
  for _, o in ipairs(started) do
    pcall(function() o:wait_exit(2000) end)
    for _, p in ipairs(o.pipes) do if not p:is_closing() then p:close() end end
    if not o.handle:is_closing() then o.handle:close() end
  end
  uv.run("nowait")
  started, pgroups = {}, {}
end

-- Runs `orch ARGS...` against home and decodes its --json output.
function H.json(home, args, opts)
  -- --json goes before a "--" (after it, it would be an app argument)
  local full, placed = {}, false
  for _, a in ipairs(args) do
    if a == "--" and not placed then full[#full + 1], placed = "--json", true end
    full[#full + 1] = a
  end
  if not placed then full[#full + 1] = "--json" end
  local code, out, err = H.orch_sync(full, { home = home, cwd = opts and opts.cwd, env = opts and opts.env,
    timeout = opts and opts.timeout })
  local ok, v = pcall(require("cjson").decode, out)
  return ok and v or nil, code, err, out
end

-- Attaches strace to a running daemon (every thread: -f) with the options
-- given (they must trace openat), writing to trace. Returns a function that
-- detaches it (SIGINT) and waits for it: the caller passes it to finally().
-- Returns once the trace shows the daemon's syscalls: poke() makes some (an
-- `orch list` reads /proc).
function H.strace_daemon(daemon, trace, options, poke)
  H.need("strace")
  local args = { "-f", "-qq" }
  for _, a in ipairs(options) do args[#args + 1] = a end
  for _, a in ipairs({ "-o", trace, "-p", tostring(daemon) }) do args[#args + 1] = a end
  local exited = false
  local handle, pid = uv.spawn("strace", { args = args }, function() exited = true end)
  assert(handle, pid)
  local function detach()
    pcall(uv.kill, pid, "sigint")
    pcall(H.wait_until, function() return exited end, 10000)
    if not exited then pcall(uv.kill, pid, "sigkill") end
    handle:close()
  end
  local ok, err = pcall(H.wait_until, function()
    poke()
    return (H.read(trace) or ""):find("/proc/", 1, true)
  end, 10000, "strace to attach")
  if not ok then
    detach()
    error(err, 0)
  end
  return detach
end

-- The environment for a daemon that strace follows until it exits: under
-- the sanitizers (./setup.sh --asan), LeakSanitizer cannot examine a traced
-- process and reports a fatal error instead of leaks, so it is off for that
-- daemon only (ASAN_OPTIONS: the last of two settings wins).
function H.traced_env()
  local asan = os.getenv("ASAN_OPTIONS")
  return asan and { ASAN_OPTIONS = asan .. ":detect_leaks=0" } or nil
end

-- Ends a daemon and everything it runs: `orch kill`, then SIGKILL by pid of
-- whatever is left (the daemon from its pid file, apps from their groups).
function H.daemon_cleanup(home)
  local daemon = tonumber(H.read(home .. "/daemon.pid") or "")
  if not (daemon and H.alive(daemon)) then return H.kill_marked(home) end
  -- A daemon that does not answer is still ended (below): list may raise.
  local ok, procs = pcall(H.json, home, { "list" })
  if ok and type(procs) == "table" then
    for _, p in ipairs(procs) do
      if type(p.pid) == "number" then pgroups[p.pid] = true end
    end
  end
  pcall(H.orch_sync, { "kill" }, { home = home, timeout = 10000 })
  if H.exists(daemon) then
    pcall(uv.kill, daemon, "sigkill")
    -- its apps, which nobody stops now: found by their environment
    for _, pid in ipairs(H.app_pids(home)) do pcall(uv.kill, pid, "sigkill") end
  end
  H.kill_marked(home)
end

-- The processes the orch of `home` spawned, and what they started, wherever
-- they are in the process tree (daemonised ones too): those whose
-- environment carries its marker, ORCH_MARK=<id>@<home> (orch.launch.mark).
-- A list of { pid = , id = }; a live process is one that is not a zombie.
function H.marked(home)
  local found = {}
  for entry in uv.fs_scandir_next, uv.fs_scandir("/proc") do
    local pid = tonumber(entry)
    local env = pid and H.read("/proc/" .. pid .. "/environ")
    local mark = env and ("\0" .. env):match("%zORCH_MARK=([^%z]*)")
    local id, mark_home = (mark or ""):match("^(%d+)@(.*)$")
    if mark_home == home and H.alive(pid) then found[#found + 1] = { pid = pid, id = tonumber(id) } end
  end
  return found
end

function H.count_marked(home)
  return #H.marked(home)
end

-- SIGKILL, by pid, to every live process marked with home's marker, and
-- the cgroups a daemon of home left (one SIGKILLed by a spec) emptied
-- (cgroup.kill) and removed.
function H.kill_marked(home)
  for _, p in ipairs(H.marked(home)) do pcall(uv.kill, p.pid, "sigkill") end
  local base = H.cgroup_base(home)
  local dir = base and uv.fs_scandir(base)
  if not dir then return end
  for name, kind in uv.fs_scandir_next, dir do
    if kind == "directory" then
      local cg = base .. "/" .. name
      pcall(H.write, cg .. "/cgroup.kill", "1")
      H.wait_until(function() return uv.fs_rmdir(cg) or not uv.fs_stat(cg) end, 10000, "cgroup " .. cg .. " to empty")
    end
  end
  uv.fs_rmdir(base)
end

-- The cgroup v2 subtree a daemon of home uses in cgroup mode (orch.tree),
-- or nil where there is no cgroup v2.
function H.cgroup_base(home)
  local tree = require("orch.tree")
  local own = tree.own_cgroup()
  return own and own .. "/orch-" .. tree.hash(home)
end

-- Live processes started for app `name` (any app when nil) by the orch of
-- `home` (their environment says so), wherever they are in the process tree.
function H.app_pids(home, name)
  local pids = {}
  for entry in uv.fs_scandir_next, uv.fs_scandir("/proc") do
    local pid = tonumber(entry)
    if pid then
      local env = H.read("/proc/" .. pid .. "/environ")
      env = env and "\0" .. env
      if env and env:find("\0ORCH_HOME=" .. home .. "\0", 1, true)
         and (not name or env:find("\0ORCH_APP_NAME=" .. name .. "\0", 1, true))
         and H.alive(pid) then
        pids[#pids + 1] = pid
      end
    end
  end
  return pids
end

local function quote(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

-- Runs `orch ARGS...` to its end under a pseudo-terminal (util-linux script),
-- stdout and stderr both on it. Returns the exit status and the output, with
-- the terminal's \r\n back to \n.
function H.on_tty(home, args, env)
  local words = { quote(H.bin) }
  for _, a in ipairs(args) do words[#words + 1] = quote(a) end
  local vars = { "ORCH_HOME=" .. home, "PATH=" .. os.getenv("PATH"), "HOME=" .. (os.getenv("HOME") or "/") }
  if os.getenv("ORCH_LUA_DIR") then vars[#vars + 1] = "ORCH_LUA_DIR=" .. os.getenv("ORCH_LUA_DIR") end
  for k, v in pairs(env or {}) do vars[#vars + 1] = k .. "=" .. v end
  local out, code, eof = "", nil, false
  local stdout = uv.new_pipe(false)
  local handle = assert(uv.spawn("script", {
    args = { "-qfec", table.concat(words, " "), "/dev/null" }, env = vars, stdio = { nil, stdout, nil },
  }, function(c) code = c end))
  stdout:read_start(function(_, data)
    if data then out = out .. data else eof = true end
  end)
  H.wait_until(function() return code ~= nil and eof end, 15000,
    function() return "orch " .. table.concat(args, " ") .. " on a terminal; so far:\n" .. out end)
  stdout:close()
  handle:close()
  return code, (out:gsub("\r\n", "\n"))
end

-- Writes dir/name (default ecosystem.lua) holding { apps = { body } }.
function H.ecosystem(dir, body, name)
  return H.write(dir .. "/" .. (name or "ecosystem.lua"), "return { apps = {\n" .. body .. "\n} }\n")
end

-- Writes that ecosystem and starts it through the CLI: the decoded reply,
-- the exit status, stderr.
function H.start_apps(dir, home, body)
  return H.json(home, { "start", H.ecosystem(dir, body) }, { cwd = dir })
end

-- The same, for a start that must succeed: the decoded reply.
function H.started(dir, home, body)
  local res, code, err = H.start_apps(dir, home, body)
  if code ~= 0 then error(string.format("orch start exited %s: %s", tostring(code), err), 2) end
  return res
end

-- Gives every test of the enclosing describe a fresh directory and
-- ORCH_HOME (set(dir, home) before each), and ends after each what it
-- started: the daemon of that home, every orch and app, the directory.
function H.each_test(set)
  -- busted's before_each/after_each live in the calling spec's environment
  local spec_env = getfenv(2)
  local before_each, after_each = spec_env.before_each, spec_env.after_each
  local dir, home
  before_each(function()
    dir = H.tmpdir()
    home = dir .. "/home"
    set(dir, home)
  end)
  after_each(function()
    H.daemon_cleanup(home)
    H.cleanup()
    H.rmdir(dir)
  end)
end

-- Handles a spec opens to the daemon's socket (luv pipes, processes): a
-- list the caller fills, closed after each test of the calling describe;
-- and SIGPIPE ignored, so that a write to a connection the daemon closed is
-- an EPIPE, not the end of busted.
function H.closed_after_each()
  if not H.sigpipe then
    H.sigpipe = uv.new_signal()
    H.sigpipe:start("sigpipe", function() end)
    H.sigpipe:unref()
  end
  local list = {}
  getfenv(2).after_each(function()
    for i = #list, 1, -1 do
      if not list[i]:is_closing() then list[i]:close() end
      list[i] = nil
    end
    uv.run("nowait") -- their close callbacks, before the next test or the exit
  end)
  return list
end

-- The numbers of s's lines that match pattern (one capture), in order.
function H.numbers(s, pattern)
  local t = {}
  for n in s:gmatch(pattern or "(%d+)\n") do t[#t + 1] = tonumber(n) end
  return t
end

-- The "tick N" lines' numbers (spec apps that tick).
function H.ticks(s) return H.numbers(s, "tick (%d+)\n") end

-- Whether t is a non-empty run of consecutive numbers; else false, where not.
function H.consecutive(t)
  for i = 2, #t do
    if t[i] ~= t[i - 1] + 1 then return false, t[i - 1] .. " then " .. t[i] end
  end
  return #t > 0
end

-- Remembers a pid (written by a fixture) to be killed at cleanup.
function H.track(pid)
  pgroups[pid] = true
end

function H.rmdir(dir)
  if dir and dir:match("^/tmp/orch%-spec%-") then H.sh("rm -rf '" .. dir .. "'") end
end

-- Ports for servers that orch or an app binds (the spec cannot hold the
-- socket for them). Binding port 0 and closing would hand out a port from
-- the kernel's ephemeral range, which any outgoing connection (a probe's, a
-- parallel spec's) may take before the server binds it. Instead each busted
-- process owns a block of PORT_BLOCK ports below that range, claimed with an
-- flock on a file per block (released by the kernel when the process ends),
-- and hands them out in turn, each checked to be free.
local PORT_BASE, PORT_BLOCK, PORT_BLOCKS = 20000, 100, 100
local port_block, port_next

local ffi = require("ffi")
pcall(ffi.cdef, [[
int open(const char *path, int flags, int mode);
int flock(int fd, int op);
int close(int fd);
]]) -- pcall: another chunk may have declared them
local O_RDWR, O_CREAT, O_CLOEXEC, LOCK_EX, LOCK_NB = 2, 64, 524288, 2, 4

local function claim_port_block()
  local dir = "/tmp/orch-spec-ports"
  uv.fs_mkdir(dir, tonumber("1777", 8)) -- EEXIST is fine
  uv.fs_chmod(dir, tonumber("1777", 8))
  for b = 0, PORT_BLOCKS - 1 do
    local fd = ffi.C.open(dir .. "/block." .. b, O_RDWR + O_CREAT + O_CLOEXEC, tonumber("666", 8))
    if fd >= 0 then
      -- kept open (and locked) for the life of this process
      if ffi.C.flock(fd, LOCK_EX + LOCK_NB) == 0 then return PORT_BASE + b * PORT_BLOCK end
      ffi.C.close(fd)
    end
  end
  error("no free block of spec ports: " .. PORT_BLOCKS .. " spec processes hold one each", 2)
end

-- Whether a TCP listener could take port on 127.0.0.1 now (libuv reports a
-- bind's EADDRINUSE at listen).
local function port_free(port)
  local s = uv.new_tcp()
  local ok = s:bind("127.0.0.1", port) and s:listen(1, function() end)
  s:close()
  uv.run("nowait")
  return ok and true or false
end

-- A port on 127.0.0.1 that nothing listens on and that no other spec
-- process hands out.
function H.free_port()
  if not port_block then port_block, port_next = claim_port_block(), 0 end
  for _ = 1, PORT_BLOCK do
    local port = port_block + port_next
    port_next = (port_next + 1) % PORT_BLOCK
    if port_free(port) then return port end
  end
  error("every port of " .. port_block .. "-" .. (port_block + PORT_BLOCK - 1) .. " is in use", 2)
end

-- Fails at once, naming what is missing, when a spec needs a program that
-- ./setup.sh installs (instead of timing out on a server that never starts).
function H.need(...)
  for _, cmd in ipairs({ ... }) do
    if H.sh("command -v '" .. cmd .. "'") == "" then
      error(cmd .. " is not installed: run ./setup.sh", 2)
    end
  end
end

function H.http_probe(port, n)
  local out = H.sh(string.format("python3 %s/http_probe.py %d %d", H.root .. "/spec/fixtures/apps", port, n))
  local pids, errors = {}, {}
  for line in out:gmatch("[^\n]+") do
    local pid = line:match("^(%d+) ")
    if pid then pids[#pids + 1] = tonumber(pid) else errors[#errors + 1] = line end
  end
  return pids, errors, out
end

-- HTTP on 127.0.0.1: python clients (spec/fixtures/apps/http_probe.py) whose
-- servers answer "PID ...". n requests (a connection each) from a python client; once 20 answers are
-- in, during() runs (a kill, a reload) while the rest go on. Returns the
-- number of answers and the failed requests.
function H.under_load(port, n, during)
  local out, done = "", false
  local stdout = uv.new_pipe(false)
  local client = uv.spawn("python3", { args = { H.root .. "/spec/fixtures/apps/http_probe.py", tostring(port), tostring(n) },
    stdio = { nil, stdout, nil } }, function() done = true end)
  stdout:read_start(function(_, data) if data then out = out .. data end end)
  H.wait_until(function() local _, k = out:gsub("\n", "") return k >= 20 end, 10000, "the first responses")
  local result = { during() }
  H.wait_until(function() return done end, 60000, "the client to finish")
  H.wait_until(function() return not stdout:is_active() end, 5000, "the client's output")
  stdout:close()
  client:close()
  local errors, answers = {}, 0
  for line in out:gmatch("[^\n]+") do
    answers = answers + 1
    if not line:match("^%d+ ") then errors[#errors + 1] = line end
  end
  return answers, errors, unpack(result)
end

return H
