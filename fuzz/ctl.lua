-- Fuzz driver: the control socket. Each input is the byte stream of one
-- client connection to a real engine's socket (orch.control serve): C's line
-- framing (core/ctl.c), then per line the request decode and the checks of
-- every command (lua/orch/control.lua request, commands.lua). The stream
-- ends with the client's EOF, and the daemon must close the connection
-- within 10 s, with no error raised anywhere.
local C = dofile(debug.getinfo(1, "S").source:match("^@(.*/)") .. "lib/common.lua")
local uv = require("luv")

local dir = C.tmpdir()
local paths = require("orch.paths").layout(dir .. "/home")
assert(uv.fs_mkdir(paths.home, tonumber("700", 8)))
assert(uv.fs_mkdir(paths.logs, tonumber("700", 8)))

local engine = require("orch.engine").new({
  paths = paths, echo = false, mode = "daemon", log = function() end, on_event = function() end,
})
assert(require("orch.control").serve(engine))
engine.on_kill = function() end

-- eval runs the code it is given: under the fuzzer, its arguments are
-- checked as usual and the code becomes a harmless string constant.
local commands = require("orch.commands")
local eval = commands.handlers.eval
commands.handlers.eval = function(e, args, respond, conn)
  if type(args) == "table" and type(args.code) == "string" then args.code = string.format("%q", args.code) end
  return eval(e, args, respond, conn)
end

-- Sends text on a new connection (then the client's EOF, when eof) and
-- returns once the daemon has closed it, or done(what came back) is true.
local function converse(text, eof, done, what)
  local client = uv.new_pipe(false)
  local got, closed, failed = "", false, nil
  client:connect(paths.sock, function(err)
    if err then failed = err return end
    client:read_start(function(rerr, chunk)
      if rerr or not chunk then closed = true else got = got .. chunk end
    end)
    client:write(text)
    if eof then client:shutdown() end
  end)
  C.run_until(function() return failed ~= nil or closed or (done and done(got)) end, 10000, what)
  client:close()
  assert(not failed, failed)
end

-- Between inputs, every app an input started is deleted.
local function reset()
  if #engine.sup:list() == 0 and next(engine.apps) == nil then return end
  converse('{"cmd":"delete","args":{"target":"all"}}\n', false, function(got) return got:find("\n") end,
    "answer to delete all")
end

local requests = 0

return function(data)
  local _, lines = data:gsub("[^\n]*%S[^\n]*\n", "") -- the non-blank lines
  requests = requests + lines
  converse(data, true, nil, "end of the daemon's answers")
  reset()
end, function() return requests .. " request lines sent" end
