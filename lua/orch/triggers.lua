-- orch.triggers: restarts that come from outside the process's own exit:
-- memory over max_memory_restart (whole tree), a cron_restart schedule, and
-- changes under watched paths (debounced). Nothing here runs unless an app
-- asks for it: an orch without these options keeps no timer at all.
local uv = require("luv")
local cron = require("orch.cron")

local M = {}
local Triggers = {}
Triggers.__index = Triggers

M.MEMORY_CHECK_MS = 1000
M.WATCH_DEBOUNCE_MS = 500
M.WATCH_MAX_DIRS = 2000

local function close(h)
  if h and not h:is_closing() then h:close() end
end

-- opts: log(level, msg), list() (every process), procs_of(name), stats(p)
-- (its CPU % and resident bytes), restart(p, cause, why) (a restart that is
-- not a command: an operation of its app, if p still runs then, or for
-- "cron" whatever its status; cause is "memory", "cron" or "watch",
-- orch.events' restart causes); for watch:
-- home (orch's home, never watched), log_file(path) (whether orch writes
-- the file at path: a log file, rotated or not).
function M.new(opts)
  return setmetatable({ opts = opts, log = opts.log, apps = {} }, Triggers)
end

-- Keeps why p is restarted, and when (Unix ms), for `orch describe`.
local function cause(p, why)
  local sec, usec = uv.gettimeofday()
  p.restart_cause = { why = why, at = sec * 1000 + math.floor(usec / 1000) }
end

-- Whether p is watched (PM2's per-process pm2_env.watch): its app's watch
-- option, until a stop turns it off or restart --watch toggles it. The
-- setting holds for the app table it was made with: the app's options given
-- again (its file started or restarted) start over from them, as in PM2.
function M.watching(p)
  if p.watching ~= nil and p.watching_app == p.app then return p.watching end
  return p.app.watch and true or false
end

-- Sets whether each of procs is watched: on, false, or "toggle" (PM2's
-- restart --watch). Watchers run only while a process of the app is.
function Triggers:set_watching(procs, on)
  local apps = {}
  for _, p in ipairs(procs) do
    local want = on
    if on == "toggle" then want = not M.watching(p) end
    if want ~= M.watching(p) then apps[p.app.key or p.name] = p.app end
    p.watching, p.watching_app = want, p.app
  end
  for name, app in pairs(apps) do
    local state = self.apps[name]
    if state and state.app == app then self:_watch_arm(name, state) end
  end
end

-- Restarts the running processes of an app, saying why (kind: the cause);
-- for a watched file only the watched ones, for cron_restart every process
-- whatever its status (a stopped one starts, as PM2's cron).
function Triggers:_restart(name, why, kind)
  local any, watched = kind == "cron", kind == "watch"
  for _, p in ipairs(self.opts.procs_of(name)) do
    if (any or p.status == "online" or p.status == "launching") and not (watched and not M.watching(p)) then
      self.log("info", string.format("%s:%d: %s, restarting", p.name, p.instance, why))
      cause(p, why)
      self.opts.restart(p, kind, why)
    end
  end
end

---------------------------------------------------------------------------
-- max_memory_restart: one timer for all apps that set it, only while any does.
---------------------------------------------------------------------------

function Triggers:_memory_check()
  local any = false
  for _, p in ipairs(self.opts.list()) do
    local limit = p.app.max_memory_restart
    if limit then
      any = true
      if p.status == "online" and p.pid then
        local _, rss = self.opts.stats(p)
        if rss > limit then
          local why = string.format("memory %d bytes over max_memory_restart %d", rss, limit)
          self.log("info", string.format("%s:%d: %s, restarting", p.name, p.instance, why))
          cause(p, why)
          self.opts.restart(p, "memory", why)
        end
      end
    end
  end
  if not any then
    close(self.memory_timer)
    self.memory_timer = nil
  end
end

function Triggers:_memory_arm()
  if self.memory_timer then return end
  self.memory_timer = uv.new_timer()
  self.memory_timer:start(M.MEMORY_CHECK_MS, M.MEMORY_CHECK_MS, function() self:_memory_check() end)
end

---------------------------------------------------------------------------
-- cron_restart
---------------------------------------------------------------------------

function Triggers:_cron_arm(name, state)
  local sched = cron.parse(state.app.cron_restart)
  local next_t = sched and cron.next_after(sched, os.time())
  if not next_t then return end
  local ms = math.max(0, (next_t - os.time()) * 1000)
  state.cron = state.cron or uv.new_timer()
  state.cron:start(ms, 0, function()
    -- PM2 restarts the process whatever its status: a stopped app starts
    self:_restart(name, "cron_restart '" .. state.app.cron_restart .. "'", "cron")
    self:_cron_arm(name, state)
  end)
end

---------------------------------------------------------------------------
-- watch: inotify does not recurse, so every directory under a watched path
-- gets its own watcher; new directories are picked up on the next change.
---------------------------------------------------------------------------

-- What is never watched, whatever ignore_watch says: dependencies and
-- version control (PM2's default ignores node_modules; orch keeps that even
-- when ignore_watch is set). Without ignore_watch, PM2 also ignores every
-- dot-file and dot-directory, and so does orch.
M.ALWAYS_IGNORED = { "node_modules", ".git" }

-- The globs of one pattern with its braces expanded: "*.{js,ts}" gives
-- "*.js" and "*.ts" (no nesting).
local function expand_braces(g)
  local pre, alts, post = g:match("^(.-){([^{}]*)}(.*)$")
  if not pre or not alts:find(",", 1, true) then return { g } end
  local out = {}
  for alt in (alts .. ","):gmatch("([^,]*),") do
    for _, rest in ipairs(expand_braces(post)) do out[#out + 1] = pre .. alt .. rest end
  end
  return out
end

-- A glob as a Lua pattern on paths: "*" within a path component, "**" across
-- them, "?" one character, "[abc]" / "[!abc]" a class, "\x" x itself
-- (PM2's ignore_watch entries are often written as regular expressions:
-- "\.git" is ".git").
local function glob_pattern(g)
  local out, i = {}, 1
  while i <= #g do
    local c = g:sub(i, i)
    if c == "\\" and i < #g then
      local x = g:sub(i + 1, i + 1)
      out[#out + 1] = x:match("%w") and x or "%" .. x
      i = i + 2
    elseif c == "*" and g:sub(i + 1, i + 1) == "*" then
      out[#out + 1] = ".*"
      i = i + (g:sub(i + 2, i + 2) == "/" and 3 or 2)
    elseif c == "*" then
      out[#out + 1] = "[^/]*"
      i = i + 1
    elseif c == "?" then
      out[#out + 1] = "[^/]"
      i = i + 1
    elseif c == "[" and g:find("]", i + 2, true) then
      local last = g:find("]", i + 2, true)
      local body = g:sub(i + 1, last - 1):gsub("^!", "^"):gsub("%%", "%%%%")
      out[#out + 1] = "[" .. body .. "]"
      i = last + 1
    else
      out[#out + 1] = c:match("%w") and c or "%" .. c
      i = i + 1
    end
  end
  return table.concat(out)
end

-- The patterns of ignore_watch entries: { pat, absolute }, where a relative
-- one is matched against the path below the watched path.
local function ignore_patterns(list)
  local pats = {}
  for _, g in ipairs(list) do
    g = g:gsub("^%./", ""):gsub("/+$", "")
    for _, one in ipairs(expand_braces(g)) do
      pats[#pats + 1] = { pat = glob_pattern(one), absolute = one:sub(1, 1) == "/" }
    end
  end
  return pats
end

-- Sets what state watches (roots: absolute paths) and ignores (the
-- ignore_watch list): see Triggers:_ignored.
function M.watch_filter(state, roots, ignore_watch)
  local user = ignore_watch or {}
  local list = {}
  for _, g in ipairs(M.ALWAYS_IGNORED) do list[#list + 1] = g end
  for _, g in ipairs(user) do list[#list + 1] = g end
  state.ignore, state.ignore_dots = ignore_patterns(list), #user == 0
  state.roots = {}
  for _, path in ipairs(roots) do state.roots[#state.roots + 1] = path end
  return state
end

-- The path below the watched path (a root) that holds path, or nil when
-- none does (a sibling of a watched single file).
local function below_root(state, path)
  for _, root in ipairs(state.roots) do
    if path == root then return "" end
    if path:sub(1, #root + 1) == root .. "/" then return path:sub(#root + 2) end
    if root == "/" then return path:sub(2) end
  end
  return nil
end

-- Whether a change at path is to be ignored: orch's own files (its home,
-- every log file it writes, rotated ones too), ALWAYS_IGNORED, the dot-files
-- (without ignore_watch), and ignore_watch. A relative pattern matches a run
-- of whole components of the path below the watched path, anywhere in it
-- ("node_modules", "logs/*.log", "*.tmp"), and so the contents of what it
-- names; an absolute one the path from its start.
function Triggers:_ignored(state, path)
  local home = self.opts.home
  if home and (path == home or path:sub(1, #home + 1) == home .. "/") then return true end
  local rel = below_root(state, path)
  if not rel then return true end
  -- a watched path itself is watched, though log files are somewhere below
  -- it (log_file counts their directories as orch's once they are open)
  if rel == "" then return false end
  if self.opts.log_file and self.opts.log_file(path) then return true end
  local slashed = "/" .. rel
  for _, p in ipairs(state.ignore) do
    if p.absolute then
      if path:find("^" .. p.pat .. "$") or path:find("^" .. p.pat .. "/") then return true end
    elseif slashed:find("/" .. p.pat .. "$") or slashed:find("/" .. p.pat .. "/") then
      return true
    end
  end
  if state.ignore_dots and (rel:find("^%.") or rel:find("/%.")) then return true end
  return false
end

function Triggers:_watch_dir(name, state, dir)
  if state.watchers[dir] or state.ndirs >= M.WATCH_MAX_DIRS or self:_ignored(state, dir) then return end
  local w = uv.new_fs_event()
  local ok = w:start(dir, {}, function(err, file)
    if err or not file then return end
    local path = dir == "/" and "/" .. file or dir .. "/" .. file
    if self:_ignored(state, path) then return end
    local st = uv.fs_stat(path)
    if st and st.type == "directory" then self:_watch_tree(name, state, path) end
    -- debounce: one restart for a burst of changes (an editor's save, a build)
    state.debounce = state.debounce or uv.new_timer()
    state.debounce:stop()
    state.debounce:start(state.delay, 0, function()
      self:_restart(name, "a watched file changed (" .. path .. ")", "watch")
    end)
  end)
  if not ok then
    close(w)
    return
  end
  state.watchers[dir] = w
  state.ndirs = state.ndirs + 1
end

function Triggers:_watch_tree(name, state, path)
  local st = uv.fs_stat(path)
  if not st then return end
  if st.type ~= "directory" then
    -- a single file: watch its directory, changes to siblings are filtered
    return self:_watch_dir(name, state, path:match("^(.*)/") or "/")
  end
  self:_watch_dir(name, state, path)
  local req = uv.fs_scandir(path)
  while req do
    local entry, kind = uv.fs_scandir_next(req)
    if not entry then break end
    if kind == "directory" then self:_watch_tree(name, state, path .. "/" .. entry) end
  end
end

---------------------------------------------------------------------------

local function unwatch(state)
  close(state.debounce)
  state.debounce = nil
  for _, w in pairs(state.watchers or {}) do close(w) end
  state.watchers, state.ndirs = {}, 0
end

function Triggers:_clear(state)
  close(state.cron)
  unwatch(state)
end

-- Watches the app's paths (its watch option, else its cwd: PM2's restart
-- --watch on an app without one) while any of its processes is watched.
function Triggers:_watch_arm(name, state)
  local app, any = state.app, false
  for _, p in ipairs(self.opts.procs_of(name)) do
    if M.watching(p) then any = true end
  end
  if not any then return unwatch(state) end
  if state.ndirs > 0 then return end
  local paths = type(app.watch) == "table" and app.watch or { app.cwd }
  state.delay = app.watch_delay or M.WATCH_DEBOUNCE_MS
  M.watch_filter(state, paths, app.ignore_watch)
  for _, path in ipairs(paths) do self:_watch_tree(name, state, path) end
end

-- (Re)arms the triggers of an app after it was registered or replaced.
-- key: the app's key for procs_of (its name, unless a second app of it).
function Triggers:app_changed(app, key)
  key = key or app.name
  self:app_removed(key)
  local state = { app = app, watchers = {}, ndirs = 0 }
  self.apps[key] = state
  if app.max_memory_restart then self:_memory_arm() end
  if app.cron_restart then self:_cron_arm(key, state) end
  self:_watch_arm(key, state)
end

function Triggers:app_removed(name)
  local state = self.apps[name]
  if state then self:_clear(state) end
  self.apps[name] = nil
end

function Triggers:close()
  for name in pairs(self.apps) do self:app_removed(name) end
  close(self.memory_timer)
  self.memory_timer = nil
end

M.glob_pattern = glob_pattern

return M
