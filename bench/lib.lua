-- bench/lib.lua: what the benchmark scripts share: where orch is, /proc
-- reading, and the pids they started (kept with their start time, so that
-- cleanup never kills a process that merely reused a pid of theirs).
-- Loaded with dofile from the scripts' own directory.
local uv = require("luv")

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
