-- Small, dependency-free helpers shared by orch's Lua modules.
-- Everything here must stay cheap to require: the CLI loads it on its
-- start-up path, so heavier modules (luv) are only required lazily.

local util = {}

local floor, huge, min, max = math.floor, math.huge, math.min, math.max
local byte, sub, lower = string.byte, string.sub, string.lower

-- Values -------------------------------------------------------------------

local function is_integer(v)
  return type(v) == "number" and v == floor(v) and v > -huge and v < huge
end
util.is_integer = is_integer

local function quote(s, limit)
  limit = limit or 40
  local cut = #s > limit
  if cut then s = sub(s, 1, limit) end
  s = s:gsub('[%c"\\]', function(c)
    if c == "\n" then return "\\n" elseif c == "\t" then return "\\t"
    elseif c == '"' or c == "\\" then return "\\" .. c end
    return string.format("\\%03d", byte(c))
  end)
  return '"' .. s .. (cut and '..."' or '"')
end
util.quote = quote

-- A short "type value" rendering for error messages: `string "ten"`,
-- `number 2.5`, `boolean true`, `table`, `nil`.
function util.describe(v)
  local t = type(v)
  if t == "string" then
    return "string " .. quote(v)
  elseif t == "number" then
    if v ~= v then return "number nan" end
    if is_integer(v) and math.abs(v) < 2^53 then
      return string.format("number %d", v)
    end
    return "number " .. tostring(v)
  elseif t == "boolean" then
    return "boolean " .. tostring(v)
  elseif t == "userdata" and tostring(v) == "userdata: NULL" then
    -- cjson.null is a NULL lightuserdata; show it the way JSON wrote it.
    return "null"
  elseif t == "table" then
    if next(v) == nil then return "empty table" end
    return "table"
  end
  return t
end

-- s with every byte that is not part of a well-formed UTF-8 sequence
-- (RFC 3629: no overlong forms, no surrogates, nothing past U+10FFFF)
-- replaced by U+FFFD: for user input that goes into a JSON reply.
function util.utf8_clean(s)
  if not s:find("[\128-\255]") then return s end
  local out, i, n = {}, 1, #s
  while i <= n do
    local c = byte(s, i)
    local len, lo, hi = 0, 0x80, 0xBF -- sequence length, range of the 2nd byte
    if c < 0x80 then len = 1
    elseif c >= 0xC2 and c <= 0xDF then len = 2
    elseif c >= 0xE0 and c <= 0xEF then
      len = 3
      if c == 0xE0 then lo = 0xA0 elseif c == 0xED then hi = 0x9F end
    elseif c >= 0xF0 and c <= 0xF4 then
      len = 4
      if c == 0xF0 then lo = 0x90 elseif c == 0xF4 then hi = 0x8F end
    end
    local ok = len > 0 and i + len - 1 <= n
    for k = 1, len - 1 do
      if not ok then break end
      local b = byte(s, i + k)
      if k == 1 then ok = b >= lo and b <= hi else ok = b >= 0x80 and b <= 0xBF end
    end
    if ok then
      out[#out + 1] = sub(s, i, i + len - 1)
      i = i + len
    else
      out[#out + 1] = "\239\191\189"
      i = i + 1
    end
  end
  return table.concat(out)
end

-- Suggestions ----------------------------------------------------------------

-- Optimal string alignment distance (Levenshtein plus adjacent swaps), so
-- "isntances" is one edit away from "instances".
local function edit_distance(a, b)
  local la, lb = #a, #b
  if la == 0 then return lb end
  if lb == 0 then return la end
  local prev2, prev, cur = {}, {}, {}
  for j = 0, lb do prev[j] = j end
  for i = 1, la do
    cur[0] = i
    local ca = byte(a, i)
    for j = 1, lb do
      local cb = byte(b, j)
      local cost = (ca == cb) and 0 or 1
      local d = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
      if i > 1 and j > 1 and ca == byte(b, j - 1) and byte(a, i - 1) == cb then
        d = min(d, prev2[j - 2] + 1)
      end
      cur[j] = d
    end
    prev2, prev, cur = prev, cur, prev2
  end
  return prev[lb]
end
util.edit_distance = edit_distance

-- Best candidate close enough to `word` to be a plausible typo, or nil.
-- `candidates` is a list of strings or a set (string keys). Ties go to the
-- alphabetically first candidate so messages are stable.
function util.did_you_mean(word, candidates)
  if type(word) ~= "string" or type(candidates) ~= "table" then return nil end
  local list = {}
  if #candidates > 0 then
    for _, c in ipairs(candidates) do
      if type(c) == "string" then list[#list + 1] = c end
    end
  else
    for c in pairs(candidates) do
      if type(c) == "string" then list[#list + 1] = c end
    end
  end
  local w = lower(word)
  local limit = max(2, floor(#word / 3))
  local best, best_d
  for _, c in ipairs(list) do
    local d = edit_distance(w, lower(c))
    if d <= limit and (not best_d or d < best_d or (d == best_d and c < best)) then
      best, best_d = c, d
    end
  end
  return best
end

-- Units ---------------------------------------------------------------------

local function trim(s)
  return (s:gsub("^%s+", ""):gsub("%s+$", ""))
end
util.trim = trim

local DURATION_UNITS = {
  [""] = 1, ms = 1, s = 1000, sec = 1000, m = 60000, min = 60000,
  h = 3600000, d = 86400000,
}

local DURATION_HINT = 'a number of milliseconds or a string like "500ms", "2s", "1.5m", "1h"'
util.DURATION_HINT = DURATION_HINT

-- A number with an optional unit, scaled: a number as is, or a string like
-- "1.5m" whose unit is a key of units. Rounded to an integer, >= 0.
local function parse_scaled(v, units, what, hint)
  local n, unit
  if type(v) == "number" then
    n, unit = v, ""
  elseif type(v) == "string" then
    local num, u = trim(v):match("^(%d*%.?%d+)%s*(%a*)$")
    if num then n, unit = tonumber(num), lower(u) end
  end
  local scale = unit and units[unit]
  if not (n and scale) or n ~= n or n < 0 or n == huge then
    return nil, "invalid " .. what .. " " .. util.describe(v) .. " (expected " .. hint .. ")"
  end
  -- past 2^50 (a PiB, 35 000 years in ms) a value is a mistake, and no
  -- longer exact where C takes it as an integer
  if n * scale > 2 ^ 50 then
    return nil, "invalid " .. what .. " " .. util.describe(v) .. " (too large: at most 2^50)"
  end
  return floor(n * scale + 0.5)
end

-- Milliseconds from a number (already ms) or a string with an optional unit
-- (ms, s, m, h, d).
function util.parse_duration(v)
  return parse_scaled(v, DURATION_UNITS, "duration", DURATION_HINT)
end

local SIZE_UNITS = {
  [""] = 1, b = 1,
  k = 1024, kb = 1024, kib = 1024,
  m = 1024^2, mb = 1024^2, mib = 1024^2,
  g = 1024^3, gb = 1024^3, gib = 1024^3,
  t = 1024^4, tb = 1024^4, tib = 1024^4,
}

local SIZE_HINT = 'a number of bytes or a string like "512K", "200M", "1G"'
util.SIZE_HINT = SIZE_HINT

-- Bytes from a number (already bytes) or a string such as "200M", "1G",
-- "512K", "100MB". Units are binary (K = 1024), as in PM2.
function util.parse_size(v)
  return parse_scaled(v, SIZE_UNITS, "size", SIZE_HINT)
end

-- Shell-like word splitting ----------------------------------------------------

-- Splits like a POSIX shell would, minus every expansion: whitespace
-- separates words, '...' is literal, "..." honours \" \\ \$ \` and
-- backslash-newline, an unquoted backslash escapes the next character.
function util.split_args(str)
  if type(str) ~= "string" then
    return nil, "expected a string, got " .. util.describe(str)
  end
  local words, buf, in_word = {}, {}, false
  local i, n = 1, #str
  local function finish()
    if in_word then words[#words + 1] = table.concat(buf) end
    buf, in_word = {}, false
  end
  while i <= n do
    local c = sub(str, i, i)
    if c == " " or c == "\t" or c == "\n" or c == "\r" then
      finish()
      i = i + 1
    elseif c == "'" then
      local j = str:find("'", i + 1, true)
      if not j then return nil, "unterminated single quote" end
      buf[#buf + 1] = sub(str, i + 1, j - 1)
      in_word = true
      i = j + 1
    elseif c == '"' then
      in_word = true
      i = i + 1
      while true do
        if i > n then return nil, "unterminated double quote" end
        local d = sub(str, i, i)
        if d == '"' then i = i + 1; break end
        if d == "\\" and i < n then
          local e = sub(str, i + 1, i + 1)
          if e == '"' or e == "\\" or e == "$" or e == "`" then
            buf[#buf + 1] = e
          elseif e ~= "\n" then
            buf[#buf + 1] = "\\" .. e
          end
          i = i + 2
        else
          buf[#buf + 1] = d
          i = i + 1
        end
      end
    elseif c == "\\" then
      if i == n then return nil, "trailing backslash" end
      local e = sub(str, i + 1, i + 1)
      if e ~= "\n" then
        buf[#buf + 1] = e
        in_word = true
      end
      i = i + 2
    else
      buf[#buf + 1] = c
      in_word = true
      i = i + 1
    end
  end
  finish()
  return words
end

-- Signals ---------------------------------------------------------------------

-- Linux numbering (x86, ARM, RISC-V); the architectures orch builds for.
local SIGNALS = {
  SIGHUP = 1, SIGINT = 2, SIGQUIT = 3, SIGILL = 4, SIGTRAP = 5, SIGABRT = 6,
  SIGBUS = 7, SIGFPE = 8, SIGKILL = 9, SIGUSR1 = 10, SIGSEGV = 11,
  SIGUSR2 = 12, SIGPIPE = 13, SIGALRM = 14, SIGTERM = 15, SIGSTKFLT = 16,
  SIGCHLD = 17, SIGCONT = 18, SIGSTOP = 19, SIGTSTP = 20, SIGTTIN = 21,
  SIGTTOU = 22, SIGURG = 23, SIGXCPU = 24, SIGXFSZ = 25, SIGVTALRM = 26,
  SIGPROF = 27, SIGWINCH = 28, SIGIO = 29, SIGPWR = 30, SIGSYS = 31,
}
local SIGNAL_ALIASES = { SIGIOT = "SIGABRT", SIGPOLL = "SIGIO", SIGCLD = "SIGCHLD" }
local SIGNAL_NAMES = {}
for name, num in pairs(SIGNALS) do SIGNAL_NAMES[num] = name end
util.signals = SIGNALS

-- Canonical "SIGxxx" name from "SIGTERM", "term", "sigterm" or 15.
function util.signal_name(v)
  if type(v) == "number" then
    local name = is_integer(v) and SIGNAL_NAMES[v]
    if name then return name end
    return nil, "unknown signal number " .. tostring(v)
  elseif type(v) == "string" then
    local s = trim(v):upper()
    if s:match("^%d+$") then return util.signal_name(tonumber(s)) end
    if sub(s, 1, 3) ~= "SIG" then s = "SIG" .. s end
    s = SIGNAL_ALIASES[s] or s
    if SIGNALS[s] then return s end
    local guess = util.did_you_mean(s, SIGNALS)
    return nil, "unknown signal " .. quote(v) .. (guess and (' (did you mean "' .. guess .. '"?)') or "")
  end
  return nil, "expected a signal name or number, got " .. util.describe(v)
end

-- Signal number from anything util.signal_name accepts.
function util.signal_number(v)
  local name, err = util.signal_name(v)
  if not name then return nil, err end
  return SIGNALS[name]
end

-- Paths -------------------------------------------------------------------------

-- Lexically cleans a path: collapses "//", "/./" and "dir/..". Never touches
-- the file system, so symlinks are kept as written.
function util.normpath(p)
  local abs = sub(p, 1, 1) == "/"
  local parts = {}
  for part in p:gmatch("[^/]+") do
    if part == ".." then
      if #parts > 0 and parts[#parts] ~= ".." then
        parts[#parts] = nil
      elseif not abs then
        parts[#parts + 1] = ".."
      end
    elseif part ~= "." then
      parts[#parts + 1] = part
    end
  end
  local s = table.concat(parts, "/")
  if abs then return "/" .. s end
  return s == "" and "." or s
end

-- Absolute, normalised form of `p`, relative paths taken from `base`.
function util.abspath(p, base)
  if sub(p, 1, 1) ~= "/" then
    p = (base or util.getcwd() or "/") .. "/" .. p
  end
  return util.normpath(p)
end

function util.dirname(p)
  local d = p:match("^(.*)/[^/]*$")
  if d == nil then return "." end
  return d == "" and "/" or d
end

function util.basename(p)
  return p:match("([^/]*)/*$")
end

function util.getcwd()
  local ok, uv = pcall(require, "luv")
  if ok and type(uv) == "table" and uv.cwd then
    local cwd = uv.cwd()
    if cwd then return cwd end
  end
  return os.getenv("PWD")
end

-- "dir/." opens only when dir is a directory: a portable stat without lfs.
function util.is_dir(p)
  local f = io.open(p .. "/.", "r")
  if f then f:close(); return true end
  return false
end

-- True when `p` exists and is not a directory. An existing file we may not
-- read (EACCES) still counts: exec permissions are checked at spawn time.
function util.is_file(p)
  if util.is_dir(p) then return false end
  local f, _, code = io.open(p, "r")
  if f then f:close(); return true end
  return code ~= nil and code ~= 2 and code ~= 20 -- ENOENT, ENOTDIR
end

-- Whether `p` is a file this process may execute (what execvp's PATH
-- search takes: an entry it may not reach is skipped).
local function executable(p)
  if not util.is_file(p) then return false end
  local ok, uv = pcall(require, "luv")
  if not ok or type(uv) ~= "table" or not uv.fs_access then return true end
  return uv.fs_access(p, "X") == true
end

-- Full path of `cmd` found on `path` (a $PATH-style string), or nil.
-- Empty and relative PATH entries are skipped: they would be resolved
-- against the caller's directory, not the one the command will run in.
function util.which(cmd, path)
  if cmd:find("/", 1, true) then
    return util.is_file(cmd) and cmd or nil
  end
  path = path or os.getenv("PATH") or "/usr/local/bin:/usr/bin:/bin"
  for dir in path:gmatch("[^:]+") do
    if sub(dir, 1, 1) == "/" then
      local full = dir .. "/" .. cmd
      if executable(full) then return full end
    end
  end
  return nil
end

-- System -------------------------------------------------------------------------

function util.cpu_count()
  local ok, uv = pcall(require, "luv")
  if ok and type(uv) == "table" then
    local n
    if uv.available_parallelism then
      n = uv.available_parallelism()
    elseif uv.cpu_info then
      local info = uv.cpu_info()
      n = type(info) == "table" and #info or nil
    end
    if is_integer(n) and n >= 1 then return n end
  end
  local f = io.open("/proc/cpuinfo", "r")
  if f then
    local n = 0
    for line in f:lines() do
      if line:match("^processor%s*:") then n = n + 1 end
    end
    f:close()
    if n >= 1 then return n end
  end
  return 1
end

-- A copy of v whose tables are all new (values that are no table are shared).
function util.deepcopy(v)
  if type(v) ~= "table" then return v end
  local t = {}
  for k, x in pairs(v) do t[k] = util.deepcopy(x) end
  return t
end

-- Gives fd object f (orch.core) to luv handle h (a pipe or TCP handle):
-- h:open() takes the descriptor over only when it succeeds, so f lets go
-- of it then, and closes it otherwise. Returns what h:open() returned.
function util.open_handle(h, f)
  local ok, err, code = h:open(f:fd())
  if ok then f:release() else f:close() end
  return ok, err, code
end

return util
