-- orch.repl: `orch repl`, a Lua REPL attached to the daemon (or to a
-- foreground `orch run`). One connection is kept for the session; each
-- chunk is sent as an `eval` (so it runs in the daemon's one REPL
-- environment, docs/lua-api.md) and a chunk the daemon calls incomplete
-- (EINCOMPLETE) is continued on the next line.
--
-- On a terminal (stdin and stdout both TTYs): prompts, the line editor
-- (orch.lineedit), history in $ORCH_HOME/repl_history, Tab completion (the
-- `complete` command); Ctrl-D leaves (status 0), Ctrl-C drops the line or
-- chunk being typed. Otherwise the lines of stdin are run as they come, with
-- no prompt and no echo: results on stdout, errors on stderr as
-- "orch repl: line N: message"; the session goes on after an error, and the
-- exit status is 1 when any chunk failed (or the input ended inside one).
local client = require("orch.client")

local M = {}

M.help = [[
usage: orch repl

An interactive Lua REPL inside the daemon (started if needed), or inside a
foreground `orch run`. Each line runs in a persistent environment that sees
the `orch` API and the live processes (docs/lua-api.md): expressions print
their values, statements run, an incomplete chunk continues on the next line
(prompt ">> "), an error prints its message and traceback and the session
goes on. Globals persist between lines; locals last one chunk.

On a terminal: line editing (Ctrl-A/E, Ctrl-U/K/W, arrows), history kept in
$ORCH_HOME/repl_history, Tab completes names and fields. Ctrl-C drops the
current line, Ctrl-D on an empty line leaves.

Without a terminal it reads stdin line by line, prints no prompt and only the
results (errors on stderr), so a script can be piped in; the exit status is 1
if any chunk failed.
]]

M.PROMPT, M.MORE = "orch> ", ">> "
M.HISTORY_MAX = 1000

local function fatal(e)
  return e.code == "EIO" or e.code == "EPROTO"
end

-- A session: lines in, results out. out(text) and fail(message, first_line)
-- print, note(message) shows an error of a user function that ran since the
-- previous chunk (a hook, a timer); line(text) returns "more" (the chunk goes on), true (ran), false (it
-- failed), or nil, message when the connection is lost.
local function session(c, out, fail, note)
  local s = { line_no = 0 }

  function s.line(text)
    s.line_no = s.line_no + 1
    if s.chunk then
      s.chunk = s.chunk .. "\n" .. text
    else
      if text:match("^%s*$") then return true end
      s.chunk, s.first = text, s.line_no
    end
    local res, e = client.request(c, "eval", { code = s.chunk })
    if not res and e.code == "EINCOMPLETE" then
      s.incomplete = e.message
      return "more"
    end
    s.chunk = nil
    if not res then
      if fatal(e) then return nil, e.message end
      fail(e.message, s.first)
      return false
    end
    if res.output ~= "" then out(res.output .. "\n") end
    if res.count > 0 then out(res.values .. "\n") end
    for _, msg in ipairs(res.errors or {}) do note(msg) end
    return true
  end

  function s.reset()
    s.chunk = nil
  end

  return s
end

local function stdout(text)
  io.stdout:write(text)
  io.stdout:flush()
end

local function stderr(text)
  io.stdout:flush()
  io.stderr:write(text)
end

local function piped(c)
  local failed = false
  local s = session(c, stdout, function(msg, first)
    stderr(string.format("orch repl: line %d: %s\n", first, msg))
    failed = true
  end, function(msg) stderr("orch repl: " .. msg .. "\n") end)
  for text in io.stdin:lines() do
    local r, lost = s.line((text:gsub("\r$", "")))
    if r == nil then
      stderr("orch repl: " .. lost .. "\n")
      return 1
    end
  end
  if s.chunk then
    stderr(string.format("orch repl: line %d: %s\n", s.first, s.incomplete or "incomplete chunk at end of input"))
    failed = true
  end
  return failed and 1 or 0
end

local function interactive(c, home)
  local lineedit = require("orch.lineedit")
  local history = lineedit.history(home and (home .. "/repl_history"), M.HISTORY_MAX)
  local ed, err = lineedit.open({
    history = history,
    complete = function(before)
      local r = client.request(c, "complete", { prefix = before }, 5000)
      if type(r) == "table" then return r.word, r.candidates or {} end
    end,
  })
  if not ed then
    stderr("orch repl: cannot use the terminal: " .. tostring(err) .. "\n")
    return 1
  end
  local ok, status = pcall(function()
    local info = client.request(c, "ping")
    if info then
      stdout(string.format("orch %s repl: %s pid %d in %s. Ctrl-D leaves.\n", info.version,
        info.mode == "run" and "orch run" or "daemon", info.pid, info.home))
    end
    local s = session(c, stdout, function(msg) stderr(msg .. "\n") end, function(msg) stderr(msg .. "\n") end)
    while true do
      local text, why = ed:read(s.chunk and M.MORE or M.PROMPT)
      if why == "eof" then return 0 end
      if why == "signal" then return 1 end
      if why == "interrupt" then
        s.reset()
      else
        history:add(text)
        local r, lost = s.line(text)
        if r == nil then
          stderr("orch repl: " .. lost .. "\n")
          return 1
        end
      end
    end
  end)
  ed:close()
  if not ok then
    stderr("orch repl: " .. tostring(status) .. "\n")
    return 1
  end
  return status
end

function M.main(args)
  if #args > 0 then
    io.stderr:write(string.format("orch repl: unexpected argument '%s'\nusage: orch repl\n", args[1]))
    return 2
  end
  local c, err = client.connect(true)
  if not c then
    io.stderr:write("orch repl: ", err, "\n")
    return 1
  end
  local uv = require("luv")
  local code
  if uv.guess_handle(0) == "tty" and uv.guess_handle(1) == "tty" then
    code = interactive(c, require("orch.paths").home())
  else
    code = piped(c)
  end
  c:close()
  return code
end

return M
