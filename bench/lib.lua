-- bench/lib.lua: what the benchmark scripts share: where orch is, /proc
-- reading, and the pids they started (kept with their start time, so that
-- cleanup never kills a process that merely reused a pid of theirs).
-- Loaded with dofile from the scripts' own directory.
local uv = require("luv")
local cjson = require("cjson")

local M = {}

local function abs(p) return p:sub(1, 1) == "/" and p or uv.cwd() .. "/" .. p end

M.ROOT = assert(uv.fs_realpath(abs((arg[0]:match("^(.*)/") or ".") .. "/..")))
M.BIN = abs(os.getenv("ORCH_BIN") or (M.ROOT .. "/build/orch"))
assert(uv.fs_access(M.BIN, "X"), "no executable orch at " .. M.BIN .. " (run ./setup.sh)")
M.PATH = os.getenv("PATH") or "/usr/bin:/bin"

function M.read(path)
  local f = io.open(path, "rb")
  local s = f and f:read("*a")
  return s, f and f:close()
end

-- Fields of /proc/PID/stat after "(comm)", which may itself hold spaces:
-- f[1] is field 3 (state), so field N is f[N - 2].
function M.stat(pid)
  local s, f = M.read("/proc/" .. pid .. "/stat"), {}
  for w in (s and s:match("%) (.*)") or ""):gmatch("%S+") do f[#f + 1] = w end
  return s and f
end

local observed = {}
function M.observe(pid) local f = M.stat(pid); if f then observed[pid] = f[20] end end
function M.ours_alive(pid) local f = M.stat(pid); return f and f[20] == observed[pid] and f[1] ~= "Z" end
-- SIGKILL to every observed pid that is still the process we saw.
function M.kill_observed()
  for pid in pairs(observed) do if M.ours_alive(pid) then uv.kill(pid, "sigkill") end end
end

-- Polls cond every 1 ms, running the loop so that exit callbacks fire,
-- until it returns a true value (returned); an error after timeout_ms.
function M.poll(cond, timeout_ms, what)
  local deadline = uv.hrtime() + timeout_ms * 1e6
  while true do
    uv.run("nowait")
    local v = cond()
    if v then return v end
    if uv.hrtime() > deadline then error(what .. ": nothing after " .. timeout_ms .. " ms", 0) end
    uv.sleep(1)
  end
end

-- Blocks in the loop (no polling) until cond() is true or timeout_ms passed.
function M.wait(cond, timeout_ms)
  local timer, late = uv.new_timer(), false
  timer:start(timeout_ms, 0, function() late = true end)
  while not cond() and not late do uv.run("once") end
  timer:close()
  return cond()
end

local function collect(pipe, into, r, key)
  pipe:read_start(function(_, data)
    if data then into[#into + 1] = data else r[key] = true; pipe:close() end
  end)
end

local CLI_TIMEOUT_MS = 30000

-- One CLI process (or exe) in home: ns from before uv.spawn to its exit
-- callback, its stdout. A non-zero exit or a CLI still running after
-- timeout_ms is an error.
function M.cli(home, args, timeout_ms, exe)
  local out, err, r, o, e = uv.new_pipe(false), uv.new_pipe(false), {}, {}, {}
  local null_fd = assert(uv.fs_open("/dev/null", "r", 0))
  local t0 = uv.hrtime()
  local h, pid = uv.spawn(exe or M.BIN, { args = args, cwd = home, stdio = { null_fd, out, err },
    env = { "ORCH_HOME=" .. home, "HOME=" .. home, "PATH=" .. M.PATH },
  }, function(code, sig) r.ns, r.code, r.sig = uv.hrtime() - t0, code, sig end)
  uv.fs_close(null_fd)
  assert(h, "cannot spawn " .. M.BIN .. ": " .. tostring(pid))
  M.observe(pid)
  collect(out, o, r, "out_eof")
  collect(err, e, r, "err_eof")
  local what = "orch " .. table.concat(args, " ")
  if not M.wait(function() return r.ns and r.out_eof and r.err_eof end, timeout_ms or CLI_TIMEOUT_MS) then
    if not r.ns then uv.kill(pid, "sigkill") end
    M.wait(function() return r.ns end, 2000)
    for _, p in ipairs({ out, err }) do if not p:is_closing() then p:close() end end
    h:close()
    error(("%s: still running after %d ms (%s)"):format(what, timeout_ms or CLI_TIMEOUT_MS, home), 0)
  end
  h:close()
  r.out, r.err, r.ms = table.concat(o), table.concat(e), r.ns / 1e6
  if r.code ~= 0 then error(("%s: exit %d: %s"):format(what, r.code, r.err), 0) end
  return r
end

-- `orch list --json` in home, decoded; every app pid in it is observed (for
-- cleanup).
function M.list(home)
  local procs = cjson.decode(M.cli(home, { "list", "--json" }).out)
  for _, p in ipairs(procs) do if type(p.pid) == "number" then M.observe(p.pid) end end
  return procs
end

-- The CLI timing loop: n rounds, each running every command of cmds (lists
-- of CLI arguments, or { exe = path } for another program) in turn, so that
-- drift in the machine hits them all alike. Returns one list of ms per
-- command, in the order of cmds.
function M.cli_rounds(home, n, cmds)
  local ms = {}
  for c = 1, #cmds do ms[c] = {} end
  for i = 1, n do
    for c, args in ipairs(cmds) do ms[c][i] = M.cli(home, args.exe and {} or args, nil, args.exe).ms end
  end
  return unpack(ms)
end

function M.median(t)
  local s = { unpack(t) }
  table.sort(s)
  return (s[math.floor((#s + 1) / 2)] + s[math.ceil((#s + 1) / 2)]) / 2
end

-- A connection of our own to the control socket: what the daemon alone costs.
-- Returns call(cmd) -> ms, result, and close().
function M.raw_client(home)
  local c, buf, lines, connected = uv.new_pipe(false), "", {}, nil
  c:connect(home .. "/orch.sock", function(err) connected = err or true end)
  assert(M.wait(function() return connected end, 2000) == true, "cannot connect to " .. home .. "/orch.sock")
  c:read_start(function(_, data)
    buf = buf .. (data or "")
    local nl = buf:find("\n", 1, true)
    while nl do
      lines[#lines + 1], buf = buf:sub(1, nl - 1), buf:sub(nl + 1)
      nl = buf:find("\n", 1, true)
    end
  end)
  local id = 0
  return function(cmd)
    id, lines = id + 1, {}
    local t0 = uv.hrtime()
    c:write(cjson.encode({ id = id, cmd = cmd }) .. "\n")
    assert(M.wait(function() return lines[1] end, 5000), "no reply to " .. cmd)
    local ms, reply = (uv.hrtime() - t0) / 1e6, cjson.decode(lines[1])
    assert(reply.ok and reply.id == id, "bad reply: " .. lines[1])
    return ms, reply.result
  end, function() c:close() end
end

-- CPU ms a process has used, all its threads (schedstat: ns, not ticks).
-- A port free now on 127.0.0.1 (the kernel's pick).
function M.free_port()
  local t = uv.new_tcp()
  assert(t:bind("127.0.0.1", 0))
  local port = t:getsockname().port
  t:close()
  return port
end

function M.cpu_ms(pid)
  local total, req = 0, uv.fs_scandir("/proc/" .. pid .. "/task")
  local tid = req and uv.fs_scandir_next(req)
  while tid do
    local s = M.read(("/proc/%d/task/%s/schedstat"):format(pid, tid))
    total = total + (tonumber(s and s:match("^%d+")) or 0) -- a thread that ended: 0
    tid = uv.fs_scandir_next(req)
  end
  return total / 1e6
end

function M.rss_kb(pid)
  return tonumber((M.read("/proc/" .. pid .. "/status") or ""):match("VmRSS:%s*(%d+)"))
end

function M.children(pid)
  local out, req = {}, uv.fs_scandir("/proc/" .. pid .. "/task")
  local tid = req and uv.fs_scandir_next(req)
  while tid do
    local list = M.read(("/proc/%d/task/%s/children"):format(pid, tid)) or ""
    for c in list:gmatch("%d+") do out[#out + 1] = tonumber(c) end
    tid = uv.fs_scandir_next(req)
  end
  return out
end

return M
