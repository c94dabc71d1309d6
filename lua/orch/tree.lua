-- orch.tree: what belongs to a managed process besides its process group,
-- so that descendants that daemonise (double fork + setsid: a session of
-- their own, re-parented to orch, the subreaper) stop with their app.
--
-- Two modes, said by `orch ping` and the daemon log:
--   cgroup  where a cgroup v2 subtree is delegated to orch (its own cgroup
--           writable, cgroup.kill present): each process runs in a cgroup
--           of its own, <own cgroup>/orch-<hash of ORCH_HOME>/<id>-<n>,
--           where it is born (core.spawn: clone3 CLONE_INTO_CGROUP), so its
--           whole tree is born there. A stop signals every member; SIGKILL
--           after kill_timeout is cgroup.kill; the cgroup is removed once
--           empty (cgroup.events: populated 0), in a batch (release).
--   marker  elsewhere: the marker in every process's environment
--           (ORCH_MARK=<id>@<home>, orch.launch.mark) tells which of orch's
--           orphans belong to the process being stopped. A program that
--           rewrites its environment area escapes it; a cgroup has no gap.
-- ORCH_TREE=marker (or cgroup, auto) in the daemon's environment chooses.
--
-- A run's scope, { mark, cgroup }, goes to core.pidfd_snapshot (what else
-- the tree holds) and core.spawn (the cgroup to join).
local uv = require("luv")
local bit = require("bit")
local launch = require("orch.launch")

local M = {}
local Tree = {}
Tree.__index = Tree

M.MODES = { auto = true, cgroup = true, marker = true }

-- FNV-1a, 32 bits, as 8 hex digits: one directory per ORCH_HOME, short.
function M.hash(s)
  local h = bit.tobit(0x811c9dc5)
  for i = 1, #s do
    h = bit.bxor(h, s:byte(i))
    -- h * 16777619 mod 2^32, exact in doubles: 16777619 = 2^24 + 403
    h = bit.tobit(bit.lshift(h, 24) + h * 403)
  end
  return bit.tohex(h)
end

local function read(path)
  local fd = uv.fs_open(path, "r", 0)
  if not fd then return nil end
  local chunks = {}
  repeat
    local data = uv.fs_read(fd, 65536)
    if data and data ~= "" then chunks[#chunks + 1] = data end
  until not data or data == ""
  uv.fs_close(fd)
  return table.concat(chunks)
end

local function write(path, data)
  local fd, err, code = uv.fs_open(path, "w", 0)
  if not fd then return nil, err, code end
  local ok
  ok, err, code = uv.fs_write(fd, data)
  uv.fs_close(fd)
  return ok, err, code
end

-- mountinfo escapes space, tab, newline and backslash as \ooo.
local function unescape(s)
  return (s:gsub("\\(%d%d%d)", function(o) return string.char(tonumber(o, 8)) end))
end

-- The directory of our own cgroup v2: the cgroup2 mount (mountinfo) and
-- our path in it (/proc/self/cgroup, "0::/path"). nil and why otherwise.
-- reader(path) -> content, for tests.
function M.own_cgroup(reader)
  reader = reader or read
  local own = ("\n" .. (reader("/proc/self/cgroup") or "")):match("\n0::([^\n]*)")
  if not own then return nil, "no cgroup v2 hierarchy in /proc/self/cgroup" end
  for line in (reader("/proc/self/mountinfo") or ""):gmatch("[^\n]+") do
    local pre, fstype = line:match("^(.-) %- (%S+)")
    if fstype == "cgroup2" then
      local root, point = pre:match("^%S+ %S+ %S+ (%S+) (%S+)")
      root, point = unescape(root), unescape(point)
      local rel
      if root == "/" then rel = own
      elseif own == root or own:sub(1, #root + 1) == root .. "/" then rel = own:sub(#root + 1)
      end
      if rel then return (point .. rel):gsub("/+$", "") end
    end
  end
  return nil, "our cgroup " .. own .. " is not under a cgroup2 mount"
end

-- Whether cgroup mode can run: our cgroup writable (moving a process between
-- two cgroups takes write access to their common ancestor's cgroup.procs),
-- and cgroup.kill (Linux 5.14) in the subtree made for home. Returns the
-- subtree, or nil and why. The subtree exists only while it holds a
-- process's cgroup (made again for the next), so an orch that never
-- reaches its exit (SIGKILL) with nothing running leaves nothing behind.
local function probe(home)
  local own, why = M.own_cgroup()
  if not own then return nil, why end
  if not uv.fs_access(own .. "/cgroup.procs", "w") then
    return nil, own .. "/cgroup.procs is not writable (no delegated cgroup v2 subtree)"
  end
  local base = own .. "/orch-" .. M.hash(home)
  local ok, err, code = uv.fs_mkdir(base, tonumber("755", 8))
  if not ok and code ~= "EEXIST" then return nil, "cannot create " .. base .. ": " .. tostring(err) end
  local usable = uv.fs_stat(base .. "/cgroup.kill")
  uv.fs_rmdir(base) -- fails (EBUSY) where a crashed orch left cgroups: they are swept
  if not usable then return nil, "no cgroup.kill in " .. base .. " (Linux 5.14 or later needed)" end
  return base
end

-- opts: mode ("auto", "cgroup", "marker"; default $ORCH_TREE, else auto),
-- log(level, msg).
function M.new(home, opts)
  opts = opts or {}
  local self = setmetatable({ home = home, log = opts.log or function() end, cgroups = {}, watches = {},
    removing = {}, batch = {}, seq = 0 }, Tree)
  local want = opts.mode or os.getenv("ORCH_TREE") or ""
  if want == "" then want = "auto" end
  if not M.MODES[want] then
    self.log("warn", "ORCH_TREE: expected auto, cgroup or marker, got \"" .. want .. "\"; using auto")
    want = "auto"
  end
  self.mode = "marker"
  if want == "marker" then
    self.why = "ORCH_TREE=marker"
  elseif home then
    local base, why = probe(home)
    if base then
      self.mode, self.base = "cgroup", base
      self:_adopt_stale()
    else
      self.why = why
      if want == "cgroup" then self.log("warn", "ORCH_TREE=cgroup, but " .. why .. "; using the marker") end
    end
  end
  return self
end

-- For orch ping: { mode, cgroup (the subtree), why (no cgroup) }.
function Tree:describe()
  return { mode = self.mode, cgroup = self.base, why = self.why }
end

-- A sentence for the daemon log.
function Tree:summary()
  if self.mode == "cgroup" then return "process trees: one cgroup v2 per process, under " .. self.base end
  return "process trees: by their environment marker (" .. tostring(self.why) .. ")"
end

-- Cgroups a crashed orch of this home left: their processes are stopped by
-- recovery (they carry its marker); sweep() ends what is left in them.
function Tree:_adopt_stale()
  local dir = uv.fs_scandir(self.base)
  if not dir then return end
  for name, kind in uv.fs_scandir_next, dir do
    if kind == "directory" then self.cgroups[self.base .. "/" .. name] = "stale" end
  end
end

-- The scope of a new run of proc: its marker, and in cgroup mode a new
-- cgroup (a failure to make one is logged; the marker then serves). The
-- mkdir stays on the loop: the spawn that follows takes cgroup_mutex too
-- (clone3 into the cgroup), and both cost tens of microseconds. The subtree
-- is made once (self.made), not before every cgroup: a mkdir that finds the
-- directory there is one more syscall per spawn that takes the lock of its
-- parent, which every cgroup made under that parent on the machine takes.
function Tree:enter(proc)
  local scope = { mark = self.home and launch.mark(self.home, proc.id) }
  if self.mode ~= "cgroup" then return scope end
  for _ = 1, 100 do
    local ok, err, code
    if not self.made then
      ok, err, code = uv.fs_mkdir(self.base, tonumber("755", 8))
      if not ok and code ~= "EEXIST" then
        self.log("warn", string.format("cannot create %s (%s); %s:%d is followed by its marker", self.base, err,
          proc.name, proc.instance))
        return scope
      end
      self.made = true
    end
    self.seq = self.seq + 1
    local dir = self.base .. "/" .. proc.id .. "-" .. self.seq
    ok, err, code = uv.fs_mkdir(dir, tonumber("755", 8))
    if ok then
      self.cgroups[dir] = true
      scope.cgroup = dir
      return scope
    end
    -- ENOENT: the subtree is gone (its removal by _removed came first)
    if code == "ENOENT" then self.made = false end
    if code ~= "EEXIST" and code ~= "ENOENT" then
      self.log("warn", string.format("cannot create the cgroup %s (%s); its tree is followed by its marker", dir, err))
      return scope
    end
  end
  return scope
end

-- SIGKILL to everything in scope's cgroup, at once and without a race with
-- forks (cgroup.kill). false when there is no cgroup.
function Tree:kill(scope)
  if not (scope and scope.cgroup) then return false end
  local ok, err = write(scope.cgroup .. "/cgroup.kill", "1")
  if not ok and not err:match("^ENOENT") then self.log("warn", "cannot kill " .. scope.cgroup .. ": " .. err) end
  return ok ~= nil
end

-- Whether scope's cgroup still holds a live process (false without one).
function Tree:populated(scope)
  if not (scope and scope.cgroup) then return false end
  local events = read(scope.cgroup .. "/cgroup.events")
  return events ~= nil and events:match("populated 1") ~= nil
end

-- How long released cgroups wait, to be removed together.
M.BATCH_MS = 50

-- scope's run is over: its cgroup goes once empty. Not at once: with the
-- others released within BATCH_MS, once the work that released them (a
-- stop of 100 processes, a restart) is done.
function Tree:release(scope)
  local dir = scope and scope.cgroup
  if not dir or not self.cgroups[dir] then return end
  self.batch[dir] = true
  if self.timer then return end
  self.timer = uv.new_timer()
  self.timer:start(M.BATCH_MS, 0, function()
    self.timer:close()
    self.timer = nil
    local dirs = self.batch
    self.batch = {}
    for d in pairs(dirs) do self:_remove(d) end
  end)
  self.timer:unref() -- cgroups to remove alone do not keep orch running: close removes them
end

function Tree:_unwatch(dir)
  local w = self.watches[dir]
  if w and not w:is_closing() then w:close() end
  self.watches[dir] = nil
end

-- rmdir on libuv's thread pool, never on the loop: removing a cgroup takes
-- the kernel's cgroup_mutex, which a move of a process between cgroups
-- anywhere on the machine holds across an RCU grace period (a rmdir waited
-- 6 to 20 ms: docs/benchmarks.md, "Process trees"). One at a time per
-- directory; a change seen meanwhile tries again once it is done.
function Tree:_remove(dir)
  if self.removing[dir] then
    self.removing[dir] = "again"
    return
  end
  self.removing[dir] = true
  uv.fs_rmdir(dir, function(err)
    local again = self.removing[dir] == "again"
    self.removing[dir] = nil
    self:_removed(dir, err and err:match("^(%u+)"), again)
  end)
end

-- The last cgroup gone: the subtree goes too (enter makes it again; a
-- rmdir of it that comes too late fails, EBUSY).
function Tree:_removed(dir, code, again)
  if not self.cgroups[dir] then return end -- closed meanwhile
  if not code or code == "ENOENT" then
    self.cgroups[dir] = nil
    self:_unwatch(dir)
    if next(self.cgroups) == nil then
      self.made = false
      uv.fs_rmdir(self.base, function() end)
    end
  elseif code ~= "EBUSY" then
    self.log("warn", "cannot remove the cgroup " .. dir .. ": " .. code)
    self.cgroups[dir] = nil
    self:_unwatch(dir)
  elseif not self.watches[dir] then
    -- cgroup.events changes (a "modified" event) when it empties; the watch
    -- is set before the next try, so that no change falls in between.
    local w = uv.new_fs_event()
    self.watches[dir] = w
    w:start(dir .. "/cgroup.events", {}, function() self:_remove(dir) end)
    w:unref() -- an emptying cgroup alone does not keep orch running
    self:_remove(dir)
  elseif again then
    self:_remove(dir)
  end
end

-- Ends what the cgroups of a crashed orch still hold (once recovery has
-- stopped what carries its marker) and removes them.
function Tree:sweep()
  for dir, how in pairs(self.cgroups) do
    if how == "stale" then
      self:kill({ cgroup = dir })
      self.cgroups[dir] = true
      self:_remove(dir)
    end
  end
end

-- orch is exiting: every cgroup left (a leftover still being killed) gets
-- cgroup.kill, and is removed once empty, waited for at most wait_ms (a
-- killed process is gone within milliseconds); then the subtree itself.
function Tree:close(wait_ms)
  if self.mode ~= "cgroup" then return end
  if self.timer then
    self.timer:close()
    self.timer = nil
  end
  for dir in pairs(self.cgroups) do
    self:_unwatch(dir)
    self:kill({ cgroup = dir })
  end
  local deadline = uv.hrtime() + (wait_ms or 1000) * 1e6
  repeat
    for dir in pairs(self.cgroups) do
      local ok, _, code = uv.fs_rmdir(dir)
      if ok or code ~= "EBUSY" then self.cgroups[dir] = nil end
    end
    if next(self.cgroups) == nil then break end
    uv.sleep(5) -- at exit only: nothing else runs any more
  until uv.hrtime() > deadline
  for dir in pairs(self.cgroups) do self.log("warn", "cannot remove the cgroup " .. dir .. ": still populated") end
  local ok, _, code = uv.fs_rmdir(self.base)
  if not ok and code ~= "ENOENT" then self.log("warn", "cannot remove " .. self.base .. ": " .. tostring(code)) end
end

return M
