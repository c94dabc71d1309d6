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
-- (its CPU % and resident bytes), restart(p) (a restart that is not a
-- command: an operation of its app, if p still runs then).
function M.new(opts)
  return setmetatable({ opts = opts, log = opts.log, apps = {} }, Triggers)
end

-- Restarts the running processes of an app, saying why.
function Triggers:_restart(name, why)
  for _, p in ipairs(self.opts.procs_of(name)) do
    if p.status == "online" or p.status == "launching" then
      self.log("info", string.format("%s:%d: %s, restarting", p.name, p.instance, why))
      self.opts.restart(p)
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
          self.log("info", string.format("%s:%d: memory %d bytes over max_memory_restart %d, restarting",
            p.name, p.instance, rss, limit))
          self.opts.restart(p)
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
    self:_restart(name, "cron_restart '" .. state.app.cron_restart .. "'")
    self:_cron_arm(name, state)
  end)
end

---------------------------------------------------------------------------
-- watch: inotify does not recurse, so every directory under a watched path
-- gets its own watcher; new directories are picked up on the next change.
---------------------------------------------------------------------------

-- A glob ("*.log", "node_modules", "**/tmp/*") as a Lua pattern on paths.
local function glob_pattern(g)
  local p = g:gsub("[%^%$%(%)%%%.%[%]%+%-]", "%%%0")
  p = p:gsub("%*%*/?", "\1"):gsub("%*", "[^/]*"):gsub("%?", "[^/]"):gsub("\1", ".*")
  return p
end

local function ignored(state, path)
  for _, pat in ipairs(state.ignore) do
    if path:find("/" .. pat .. "$") or path:find("/" .. pat .. "/") or path:find("^" .. pat .. "$") then
      return true
    end
  end
  return false
end

function Triggers:_watch_dir(name, state, dir)
  if state.watchers[dir] or state.ndirs >= M.WATCH_MAX_DIRS or ignored(state, dir) then return end
  local w = uv.new_fs_event()
  local ok = w:start(dir, {}, function(err, file)
    if err or not file then return end
    local path = dir .. "/" .. file
    if ignored(state, path) then return end
    local st = uv.fs_stat(path)
    if st and st.type == "directory" then self:_watch_tree(name, state, path) end
    -- debounce: one restart for a burst of changes (an editor's save, a build)
    state.debounce = state.debounce or uv.new_timer()
    state.debounce:stop()
    state.debounce:start(state.delay, 0, function()
      self:_restart(name, "a watched file changed (" .. path .. ")")
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

function Triggers:_clear(state)
  close(state.cron)
  close(state.debounce)
  for _, w in pairs(state.watchers or {}) do close(w) end
end

-- (Re)arms the triggers of an app after it was registered or replaced.
function Triggers:app_changed(app)
  self:app_removed(app.name)
  local state = { app = app, watchers = {}, ndirs = 0 }
  self.apps[app.name] = state
  if app.max_memory_restart then self:_memory_arm() end
  if app.cron_restart then self:_cron_arm(app.name, state) end
  if app.watch then
    state.delay = app.watch_delay or M.WATCH_DEBOUNCE_MS
    state.ignore = {}
    for _, g in ipairs(app.ignore_watch or {}) do state.ignore[#state.ignore + 1] = glob_pattern(g) end
    for _, path in ipairs(app.watch) do self:_watch_tree(app.name, state, path) end
  end
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
