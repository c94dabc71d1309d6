-- Fuzz driver: the control socket. Each input is the byte stream of one
-- client connection to a real engine's socket (orch.engine serve): C's line
-- framing (core/ctl.c), then per line the request decode and the checks of
-- every command (lua/orch/engine.lua _request, commands.lua). The stream
-- ends with the client's EOF, and the daemon must close the connection
-- within 10 s, with no error raised anywhere.
local C = dofile(debug.getinfo(1, "S").source:match("^@(.*/)") .. "lib/common.lua")
local uv = require("luv")
local cjson = require("cjson")

local dir = C.tmpdir()
local paths = require("orch.paths").layout(dir .. "/home")
assert(uv.fs_mkdir(paths.home, tonumber("700", 8)))
assert(uv.fs_mkdir(paths.logs, tonumber("700", 8)))

local engine = require("orch.engine").new({
  paths = paths, echo = false, mode = "daemon", log = function() end, on_event = function() end,
})
assert(engine:serve())
engine.on_kill = function() end

-- eval runs the code it is given: under the fuzzer, its arguments are
-- checked as usual and the code becomes a harmless string constant.
local commands = require("orch.commands")
local eval = commands.handlers.eval
commands.handlers.eval = function(e, args, respond, conn)
  if type(args) == "table" and type(args.code) == "string" then args.code = string.format("%q", args.code) end
  return eval(e, args, respond, conn)
end

-- Between inputs, every app an input started is deleted.
local quiet = { closed = function() return false end, send = function() end }
local function reset()
  if #engine.sup:list() == 0 and next(engine.apps) == nil then return end
  local done = false
  engine:_request(commands, setmetatable({ send = function() done = true end }, { __index = quiet }),
    cjson.encode({ cmd = "delete", args = { target = "all" } }))
  C.run_until(function() return done end, 10000, "answer to delete all")
end

local requests = 0

return function(data)
  local _, lines = data:gsub("[^\n]*%S[^\n]*\n", "") -- the non-blank lines
  requests = requests + lines
  local client = uv.new_pipe(false)
  local eof, failed = false, nil
  client:connect(paths.sock, function(err)
    if err then failed = err return end
    client:read_start(function(rerr, chunk)
      if rerr or not chunk then eof = true end
    end)
    client:write(data)
    client:shutdown()
  end)
  C.run_until(function() return eof or failed ~= nil end, 10000, "end of the daemon's answers")
  client:close()
  assert(not failed, failed)
  reset()
end, function() return requests .. " request lines sent" end
