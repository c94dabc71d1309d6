-- orch.lineedit: a small line editor for `orch repl` on a terminal (in the
-- manner of linenoise): the terminal in raw mode through luv, one line shown
-- at a time (scrolled sideways when it is wider than the terminal), history,
-- and Tab completion through a callback. Keys:
--   printable         insert (UTF-8 is kept whole when moving and deleting)
--   Backspace, Ctrl-H delete before the cursor; Delete (and Ctrl-D on a
--                     non-empty line) under it
--   Left/Right, Ctrl-B/Ctrl-F, Alt-B/Alt-F (Ctrl-Left/Right: by word)
--   Home/End, Ctrl-A/Ctrl-E
--   Ctrl-U, Ctrl-K    delete to the start / to the end of the line
--   Ctrl-W            delete the word before the cursor
--   Up/Down, Ctrl-P/Ctrl-N  history
--   Tab               complete (a single candidate is inserted; several:
--                     their common start is inserted and they are listed)
--   Ctrl-L            clear the screen;  Ctrl-Z  suspend
--   Enter             the line;  Ctrl-C  abandon it;  Ctrl-D on an empty line: end
-- The terminal's mode is restored by close(), which the caller must reach
-- whatever happens (pcall), and on SIGTERM/SIGHUP (read() then returns nil,
-- "signal").
local uv = require("luv")

local M = {}

local Editor = {}
Editor.__index = Editor

local function is_cont(b) return b and b >= 128 and b < 192 end

-- Display width: one column per UTF-8 character.
local function width(s)
  local n = #s
  for i = 1, #s do
    if is_cont(s:byte(i)) then n = n - 1 end
  end
  return n
end

-- Byte offsets (0 = before the first byte) of the previous/next character.
local function prev_char(s, pos)
  if pos <= 0 then return 0 end
  local p = pos - 1
  while p > 0 and is_cont(s:byte(p + 1)) do p = p - 1 end
  return p
end

local function next_char(s, pos)
  if pos >= #s then return #s end
  local p = pos + 1
  while p < #s and is_cont(s:byte(p + 1)) do p = p + 1 end
  return p
end

local function is_word(c) return c ~= nil and c:match("[%w_\128-\255]") ~= nil end

local function prev_word(s, pos)
  while pos > 0 and not is_word(s:sub(pos, pos)) do pos = pos - 1 end
  while pos > 0 and is_word(s:sub(pos, pos)) do pos = pos - 1 end
  return pos
end

local function next_word(s, pos)
  while pos < #s and not is_word(s:sub(pos + 1, pos + 1)) do pos = pos + 1 end
  while pos < #s and is_word(s:sub(pos + 1, pos + 1)) do pos = pos + 1 end
  return pos
end

local CTRL = {
  [1] = "home", [2] = "left", [3] = "interrupt", [4] = "eof_or_delete", [5] = "end", [6] = "right",
  [8] = "backspace", [9] = "tab", [10] = "enter", [11] = "kill_end", [12] = "clear", [13] = "enter",
  [14] = "down", [16] = "up", [21] = "kill_start", [23] = "kill_word", [26] = "suspend", [127] = "backspace",
}
local CSI_FINAL = { A = "up", B = "down", C = "right", D = "left", H = "home", F = "end" }
local CSI_TILDE = { ["1"] = "home", ["7"] = "home", ["4"] = "end", ["8"] = "end", ["3"] = "delete" }

-- The first key of s: name (or a byte to insert), bytes used; nil when s
-- holds only the start of an escape sequence.
local function decode(s)
  local b = s:byte(1)
  if b ~= 27 then
    if CTRL[b] then return CTRL[b], 1 end
    if b < 32 then return "ignore", 1 end
    return s:sub(1, 1), 1
  end
  if #s == 1 then return nil end
  local c = s:sub(2, 2)
  if c == "[" then
    local params, final, after = s:match("^\27%[([0-9:;<=>?]*)[ -/]*([@-~])()")
    if not final then
      if s:match("^\27%[[0-9:;<=>?]*[ -/]*$") then return nil end
      return "ignore", 2
    end
    local key
    if final == "~" then key = CSI_TILDE[params:match("^%d*")]
    else key = CSI_FINAL[final] end
    if (key == "left" or key == "right") and params:find(";[35]") then key = "word_" .. key end
    return key or "ignore", after - 1
  elseif c == "O" then
    if #s < 3 then return nil end
    return CSI_FINAL[s:sub(3, 3)] or "ignore", 3
  elseif c == "b" then return "word_left", 2
  elseif c == "f" then return "word_right", 2
  elseif c == "\127" then return "kill_word", 2
  end
  return "ignore", 1
end
M.decode = decode -- for the specs

---------------------------------------------------------------------------
-- History: the last `max` lines, kept in a file (0600) that is appended to
-- line by line and trimmed when loaded.
---------------------------------------------------------------------------

local History = {}
History.__index = History

local MODE = tonumber("600", 8)

function M.history(path, max)
  local h = setmetatable({ lines = {}, path = path, max = max or 1000 }, History)
  if not path then return h end
  local f = io.open(path, "rb")
  if f then
    for l in f:lines() do
      if l ~= "" then h.lines[#h.lines + 1] = l end
    end
    f:close()
    uv.fs_chmod(path, MODE)
    if #h.lines > h.max then
      local keep = {}
      for i = #h.lines - h.max + 1, #h.lines do keep[#keep + 1] = h.lines[i] end
      h.lines = keep
      local tmp = path .. ".tmp"
      local fd = uv.fs_open(tmp, "w", MODE)
      if fd then
        local ok = uv.fs_write(fd, table.concat(keep, "\n") .. "\n", 0)
        uv.fs_close(fd)
        if ok then uv.fs_rename(tmp, path) else uv.fs_unlink(tmp) end
      end
    end
  end
  return h
end

function History:add(line)
  if line:match("^%s*$") or line:find("[\r\n]") or line == self.lines[#self.lines] then return end
  self.lines[#self.lines + 1] = line
  if #self.lines > self.max then table.remove(self.lines, 1) end
  if not self.path then return end
  local fd = uv.fs_open(self.path, "a", MODE)
  if fd then
    uv.fs_write(fd, line .. "\n", -1)
    uv.fs_close(fd)
  end
end

---------------------------------------------------------------------------
-- The editor
---------------------------------------------------------------------------

-- opts: history (from M.history), complete = function(before) -> word,
-- candidates (the end of `before` and what may replace it), out (a file,
-- default io.stdout). Returns the editor, or nil, message.
function M.open(opts)
  local tty, err = uv.new_tty(0, true)
  if not tty then return nil, err end
  local self = setmetatable({
    tty = tty, out = opts.out or io.stdout, history = opts.history or M.history(nil),
    complete = opts.complete, pending = "", signals = {},
  }, Editor)
  local ok, merr = tty:set_mode(1)
  if not ok then
    tty:close()
    return nil, merr
  end
  tty:read_start(function(rerr, data)
    if rerr or not data then self.eof = true
    else self.pending = self.pending .. data end
  end)
  for _, name in ipairs({ "sigterm", "sighup" }) do
    local h = uv.new_signal()
    h:start(name, function() self.signalled = name end)
    self.signals[#self.signals + 1] = h
  end
  return self
end

-- Puts the terminal back as it was. Safe to call more than once.
function Editor:close()
  if self.closed then return end
  self.closed = true
  pcall(self.tty.set_mode, self.tty, 0)
  pcall(uv.tty_reset_mode)
  pcall(function()
    self.tty:read_stop()
    self.tty:close()
    for _, h in ipairs(self.signals) do h:close() end
  end)
  pcall(uv.run, "nowait") -- lets the handles finish closing
end

function Editor:write(...)
  self.out:write(...)
  self.out:flush()
end

function Editor:cols()
  local w = self.tty:get_winsize()
  return (type(w) == "number" and w > 0) and w or 80
end

-- Draws the prompt and the line, the cursor where it belongs.
function Editor:refresh()
  local cols = self:cols()
  local buf, pos, pw = self.buf, self.pos, width(self.prompt)
  local first, last = 0, #buf
  while first < pos and pw + width(buf:sub(first + 1, pos)) >= cols do first = next_char(buf, first) end
  while last > pos and pw + width(buf:sub(first + 1, last)) >= cols do last = prev_char(buf, last) end
  local col = pw + width(buf:sub(first + 1, pos))
  self:write("\r", self.prompt, buf:sub(first + 1, last), "\27[K\r", col > 0 and ("\27[" .. col .. "C") or "")
end

function Editor:insert(s)
  self.buf = self.buf:sub(1, self.pos) .. s .. self.buf:sub(self.pos + 1)
  self.pos = self.pos + #s
end

function Editor:cut(from, to) -- removes bytes (from, to]
  self.buf = self.buf:sub(1, from) .. self.buf:sub(to + 1)
  self.pos = from
end

function Editor:show_candidates(list)
  local cols, w = self:cols(), 0
  for _, c in ipairs(list) do w = math.max(w, width(c) + 2) end
  local per_row = math.max(1, math.floor(cols / w))
  local rows = math.ceil(#list / per_row)
  local out = { "\r\n" }
  for r = 1, rows do
    local line = {}
    for k = 0, per_row - 1 do
      local c = list[r + k * rows]
      if c then line[#line + 1] = c .. string.rep(" ", w - width(c)) end
    end
    out[#out + 1] = table.concat(line):gsub("%s+$", "") .. "\r\n"
  end
  self:write(table.concat(out))
end

function Editor:tab()
  local before = self.buf:sub(1, self.pos)
  if before:match("^%s*$") then return self:insert("  ") end
  local word, list = nil, nil
  if self.complete then word, list = self.complete(before) end
  if type(list) ~= "table" or #list == 0 or type(word) ~= "string" then
    return self:write("\7")
  end
  local common = list[1]
  for i = 2, #list do
    local j = 0
    while j < #common and common:byte(j + 1) == list[i]:byte(j + 1) do j = j + 1 end
    common = common:sub(1, j)
  end
  if #common > #word and common:sub(1, #word) == word then
    self:cut(self.pos - #word, self.pos)
    self:insert(common)
  elseif #list == 1 then
    self:write("\7")
  end
  if #list > 1 then self:show_candidates(list) end
end

function Editor:suspend()
  self:write("\r\n")
  pcall(self.tty.set_mode, self.tty, 0)
  uv.kill(uv.os_getpid(), "sigtstp") -- stops here until SIGCONT
  self.tty:set_mode(1)
end

function Editor:history_move(delta)
  local lines = self.history.lines
  local i = self.hindex + delta
  if i < 1 or i > #lines + 1 then return self:write("\7") end
  if self.hindex == #lines + 1 then self.saved = self.buf end
  self.hindex = i
  self.buf = i == #lines + 1 and self.saved or lines[i]
  self.pos = #self.buf
end

-- Handles one key; returns "line", "eof", "interrupt" when reading ends.
function Editor:key(k)
  local buf, pos = self.buf, self.pos
  if k == "enter" then return "line"
  elseif k == "interrupt" then return "interrupt"
  elseif k == "eof_or_delete" then
    if buf == "" then return "eof" end
    if pos < #buf then self:cut(pos, next_char(buf, pos)) self.pos = pos end
  elseif k == "delete" then
    if pos < #buf then self:cut(pos, next_char(buf, pos)) self.pos = pos end
  elseif k == "backspace" then
    if pos > 0 then self:cut(prev_char(buf, pos), pos) end
  elseif k == "left" then self.pos = prev_char(buf, pos)
  elseif k == "right" then self.pos = next_char(buf, pos)
  elseif k == "word_left" then self.pos = prev_word(buf, pos)
  elseif k == "word_right" then self.pos = next_word(buf, pos)
  elseif k == "home" then self.pos = 0
  elseif k == "end" then self.pos = #buf
  elseif k == "kill_start" then self:cut(0, pos)
  elseif k == "kill_end" then self.buf = buf:sub(1, pos)
  elseif k == "kill_word" then self:cut(prev_word(buf, pos), pos)
  elseif k == "up" then self:history_move(-1)
  elseif k == "down" then self:history_move(1)
  elseif k == "tab" then self:tab()
  elseif k == "clear" then self:write("\27[H\27[2J")
  elseif k == "suspend" then self:suspend()
  elseif k ~= "ignore" then self:insert(k)
  end
end

-- Reads one line after showing prompt. Returns the line, or nil and why:
-- "eof" (Ctrl-D on an empty line, or the terminal went away), "interrupt"
-- (Ctrl-C), "signal" (SIGTERM or SIGHUP).
function Editor:read(prompt)
  self.prompt, self.buf, self.pos = prompt, "", 0
  self.hindex, self.saved = #self.history.lines + 1, ""
  self:refresh()
  while true do
    local done, keys = nil, 0
    while self.pending ~= "" and not done do
      local k, n = decode(self.pending)
      if not k then break end
      self.pending = self.pending:sub(n + 1)
      keys = keys + 1
      done = self:key(k)
    end
    if done == "line" then
      self.pos = #self.buf
      self:refresh()
      self:write("\r\n")
      return self.buf
    elseif done == "interrupt" then
      self:write("^C\r\n")
      return nil, "interrupt"
    elseif done == "eof" then
      self:write("\r\n")
      return nil, "eof"
    end
    if keys > 0 then self:refresh() end
    if self.signalled then
      self:write("\r\n")
      return nil, "signal"
    end
    if self.eof then
      self:write("\r\n")
      return nil, "eof"
    end
    uv.run("once")
  end
end

return M
