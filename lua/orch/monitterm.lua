-- orch.monitterm: the terminal for `orch monit`: raw mode (through luv, as
-- orch.lineedit does for the REPL), the alternate screen, and frames drawn
-- as whole lines, only those that changed. Plain VT100/ANSI sequences every
-- terminal and ssh session understands (no terminfo): cursor position,
-- erase to end of line, SGR, the alternate screen (xterm's 1049, which
-- terminals without it ignore), cursor visibility and autowrap.
--
-- restore() puts everything back (alternate screen off, cursor shown,
-- autowrap on, the tty's modes as they were); the caller must reach it on
-- every way out, and may call it more than once.
local uv = require("luv")

local M = {}

local ENTER = "\27[?1049h\27[?25l\27[?7l\27[H\27[2J"
-- autowrap off: a line that is wider than counted (wide characters) is cut
-- at the margin instead of pushing the screen up
local LEAVE = "\27[0m\27[?7h\27[?25h\27[?1049l"
M.ENTER, M.LEAVE = ENTER, LEAVE

local Term = {}
Term.__index = Term

-- Whether s names a UTF-8 locale (LC_ALL, then LC_CTYPE, then LANG, the
-- order in which the C library takes them).
function M.utf8_locale(env)
  env = env or os.getenv
  for _, name in ipairs({ "LC_ALL", "LC_CTYPE", "LANG" }) do
    local v = env(name)
    if v and v ~= "" then return v:lower():gsub("-", ""):find("utf8", 1, true) ~= nil end
  end
  return false
end

-- Opens the terminal on fds 0 and 1. on_input(bytes) gets what is typed.
-- Returns the terminal, or nil, message.
function M.open(on_input)
  local core = require("orch.core")
  if not (core.isatty(0) and core.isatty(1)) then return nil, "needs a terminal (stdin and stdout)" end
  local tty, err = uv.new_tty(0, true)
  if not tty then return nil, err end
  local self = setmetatable({ tty = tty, prev = {}, out = io.stdout }, Term)
  local ok, merr = tty:set_mode(1)
  if not ok then
    tty:close()
    return nil, merr
  end
  self.raw = true
  self:write(ENTER)
  tty:read_start(function(rerr, data)
    if rerr or not data then return on_input(nil) end
    on_input(data)
  end)
  return self
end

function Term:write(s)
  self.out:write(s)
  self.out:flush()
end

-- Columns, rows.
function Term:size()
  local w, h = self.tty:get_winsize()
  if type(w) ~= "number" or w <= 0 then w = 80 end
  if type(h) ~= "number" or h <= 0 then h = 24 end
  return w, h
end

-- The next frame is drawn whole (after a resize, Ctrl-L, a suspend).
function Term:invalidate()
  self.prev = {}
  self.clear = true
end

-- Draws lines (each exactly as wide as the screen): only the rows that differ
-- from the previous frame, in one write.
function Term:draw(lines)
  local out = {}
  if self.clear then
    out[1] = "\27[0m\27[H\27[2J"
    self.clear = false
  end
  for row, line in ipairs(lines) do
    if self.prev[row] ~= line then
      -- no erase to the end: lines are as wide as the screen, and with
      -- autowrap off the cursor stays on the last column, which it would erase
      out[#out + 1] = "\27[" .. row .. ";1H" .. line .. "\27[0m"
    end
  end
  for row = #lines + 1, #self.prev do out[#out + 1] = "\27[" .. row .. ";1H\27[K" end
  self.prev = lines
  if #out > 0 then self:write(table.concat(out)) end
end

-- Leaves raw mode and the alternate screen for a while (Ctrl-Z), then comes
-- back.
function Term:suspend()
  self:restore_modes()
  uv.kill(uv.os_getpid(), "sigtstp") -- stops here until SIGCONT
  self.tty:set_mode(1)
  self.raw = true
  self:write(ENTER)
  self:invalidate()
end

function Term:restore_modes()
  pcall(self.write, self, LEAVE)
  if self.raw then
    pcall(self.tty.set_mode, self.tty, 0)
    self.raw = false
  end
  pcall(uv.tty_reset_mode)
end

-- Puts the terminal back as it was. Safe to call more than once.
function Term:restore()
  if self.closed then return end
  self.closed = true
  self:restore_modes()
  pcall(function()
    self.tty:read_stop()
    self.tty:close()
  end)
end

return M
