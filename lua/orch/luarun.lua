-- orch.luarun: `orch lua FILE [ARGS...]` runs a Lua script with orch's
-- runtime (LuaJIT, luv on orch's loop, cjson), so an app written in Lua needs
-- nothing installed but orch. After the script returns, the loop runs until
-- no handle is left (luv's or orch.core's), as in luvit.
local M = {}

M.help = [[
usage: orch lua FILE [ARGS...]

Runs FILE with orch's LuaJIT runtime: `require("luv")` and `require("cjson")`
work, `arg` holds the arguments, and after the main chunk returns the libuv
loop runs until nothing is left to do. Apps whose script ends in .lua are
started this way.
]]

function M.main(args)
  local file = args[1]
  if not file then
    io.stderr:write("usage: orch lua FILE [ARGS...]\n")
    return 2
  end
  local script_args = { [0] = file }
  for i = 2, #args do script_args[i - 1] = args[i] end
  _G.arg = script_args -- the convention every standalone Lua interpreter follows
  local chunk, err = loadfile(file)
  if not chunk then
    io.stderr:write("orch lua: ", err, "\n")
    return 1
  end
  local ok, res = xpcall(chunk, debug.traceback, unpack(script_args, 1, #script_args))
  -- orch.core handles (servers, processes) live on the same loop as luv's
  if ok then ok, res = xpcall(require("luv").run, debug.traceback) end
  if not ok then
    io.stderr:write("orch lua: ", tostring(res), "\n")
    return 1
  end
  return 0
end

return M
