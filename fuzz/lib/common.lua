-- What the fuzz drivers share. Loaded by each driver before anything else:
-- an error reported from a callback (orch.core.on_error) becomes a finding,
-- and nothing a fuzzed input asks for reaches outside this process: no
-- program is started, no signal sent, no socket bound, no file written
-- outside the driver's directory.
local uv = require("luv")
local core = require("orch.core")

local C = {}

local failure
core.on_error(function(msg) failure = failure or msg end)

-- Raises what a callback reported while the last input ran.
function C.check()
  if failure then
    local f = failure
    failure = nil
    error("error reported from a callback: " .. f, 0)
  end
end

local function refused() return nil, "EPERM: not under the fuzzer", "EPERM" end
core.spawn, core.spawn_detached, uv.spawn = refused, refused, refused
core.kill, uv.kill = refused, refused
core.listen_tcp, core.listen_unix = refused, refused
os.execute = function() return 1 end -- luacheck: ignore 122 (the point: no shell)
io.popen = function() return nil, "no shell under the fuzzer" end -- luacheck: ignore 122

-- Files are written only under the driver's own directory (an input may
-- name any log file; a flush would truncate it).
function C.tmpdir()
  local dir = assert(uv.fs_mkdtemp((os.getenv("TMPDIR") or "/tmp") .. "/orch-fuzz-XXXXXX"))
  local function inside(path)
    return type(path) == "string" and path:sub(1, #dir + 1) == dir .. "/" and not path:find("/../", 1, true)
  end
  local sink_open, remove_rotated, open = core.sink_open, core.remove_rotated, io.open
  core.sink_open = function(path, ...)
    if not inside(path) then return refused() end
    return sink_open(path, ...)
  end
  core.remove_rotated = function(path, ...)
    if not inside(path) then return refused() end
    return remove_rotated(path, ...)
  end
  io.open = function(path, mode) -- luacheck: ignore 122
    if mode and mode ~= "r" and mode ~= "rb" and not inside(path) then
      return nil, tostring(path) .. ": not under the fuzzer", 1
    end
    return open(path, mode)
  end
  return dir
end

-- Runs the loop until done() is true; a finding if that takes over ms.
function C.run_until(done, ms, what)
  local timer = uv.new_timer()
  local late = false
  timer:start(ms, 0, function() late = true end)
  while not done() and not late do uv.run("once") end
  timer:close()
  if late and not done() then error(string.format("no %s within %d ms", what, ms), 0) end
  C.check()
end

return C
