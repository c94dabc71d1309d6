-- orch.runas: who an app's processes run as and within what: uid/gid (PM2's
-- names; user/group too), umask, nice, oom_score_adj and resource limits.
-- The checks of those options (orch.validate's CHECK: the value as the user
-- wrote it, normalised) and, at each launch, what core.spawn takes: numeric
-- ids, the supplementary groups, the limits as setrlimit takes them, and the
-- user's HOME, USER and LOGNAME. Names are looked up here, in the daemon:
-- the child, between vfork and exec, may only make system calls. The
-- daemon asks in the background (M.async: a thread per look-up, see
-- core/users.c), so that a slow user database (LDAP, sssd, NIS) never stops
-- its loop.
local util = require("orch.util")

local describe, quote, is_integer = util.describe, util.quote, util.is_integer

local M = {}

-- The user and group databases: orch.core's look-ups (user, group,
-- user_groups, ids); a unit spec sets its own.
M.db = nil
local function db()
  return M.db or require("orch.core")
end

-- setrlimit's resources, by the names of systemd's Limit*= settings
-- (LimitNOFILE= is nofile); those counted in bytes take sizes ("1G").
M.LIMITS = {
  as = "bytes", core = "bytes", cpu = "seconds", data = "bytes", fsize = "bytes", locks = "count",
  memlock = "bytes", msgqueue = "bytes", nice = "count", nofile = "count", nproc = "count", rss = "bytes",
  rtprio = "count", rttime = "microseconds", sigpending = "count", stack = "bytes",
}
local LIMIT_NAMES = {}
for name in pairs(M.LIMITS) do LIMIT_NAMES[#LIMIT_NAMES + 1] = name end
table.sort(LIMIT_NAMES)
M.LIMIT_NAMES = LIMIT_NAMES

local function who(d, uid)
  local u = d.user(uid)
  return u and string.format("uid %d (%s)", uid, u.name) or string.format("uid %d", uid)
end

-- A user or group: a number is an id, a name is looked up; a name of
-- digits that names nobody is an id too (as chown takes it). Returns the
-- entry and the value normalised (the name, or the id as a number), or
-- nil and why not.
local function lookup(d, v, kind)
  local find = kind == "user" and d.user or d.group
  local n = is_integer(v) and v or nil
  if type(v) == "string" then
    if v == "" or v:find("[%z:]") then return nil, "expected a " .. kind .. " name or id, got " .. describe(v) end
    local found = find(v)
    if found then return found, v end
    n = v:match("^%d+$") and tonumber(v) or nil
    if not n then return nil, "no such " .. kind .. " " .. quote(v) end
  end
  if not (n and n >= 0 and n < 4294967295) then
    return nil, "expected a " .. kind .. " name or id, got " .. describe(v)
  end
  local found = find(n)
  if not found then
    return nil, "no " .. kind .. " of id " .. n .. " (the " .. kind .. " database has no entry for it"
      .. (kind == "user" and ", which orch needs for its group and home)" or ")")
  end
  return found, n
end

-- Only root may run a process as someone else: said when the file loads,
-- before anything starts, rather than as a failed exec.
local function not_root(d, what, asked)
  local euid = d.ids()
  return string.format("running the app as %s %s needs orch to run as root (only root may start a process as "
    .. "another %s), and orch runs as %s: start orch as root, or remove this option to run the app as %s",
    what, asked, what, who(d, euid), who(d, euid))
end

-- check_uid(v [, d]), check_gid(v [, d]): d, the databases to ask
-- (M.async's, in the daemon).
function M.check_uid(v, d)
  d = type(d) == "table" and d.user and d or db()
  local u, value = lookup(d, v, "user")
  if not u then return nil, value end
  local euid = d.ids()
  if euid ~= 0 and u.uid ~= euid then return nil, not_root(d, "user", quote(u.name)) end
  return value
end

function M.check_gid(v, d)
  d = type(d) == "table" and d.group and d or db()
  local g, value = lookup(d, v, "group")
  if not g then return nil, value end
  local euid, egid = d.ids()
  if euid ~= 0 and g.gid ~= egid then return nil, not_root(d, "group", quote(g.name)) end
  return value
end

-- The syntax of a user or group (a name, or an id) alone: what the daemon
-- checks while it reads a file, the look-up coming after (M.async).
function M.check_user_syntax(v, kind)
  if type(v) == "string" and v ~= "" and not v:find("[%z:]") then return v end
  if is_integer(v) and v >= 0 and v < 4294967295 then return v end
  return nil, "expected a " .. kind .. " name or id, got " .. describe(v)
end

-- umask: octal digits, as umask(1) and systemd's UMask= take it: a string
-- ("0027"), or a number whose digits are read the same way (027 in Lua is
-- 27, taken as 0027). Normalised to the four-digit string.
function M.check_umask(v)
  local digits = (type(v) == "string" and v:match("^0?[oO]?([0-7]+)$"))
    or (is_integer(v) and v >= 0 and tostring(v):match("^[0-7]+$"))
  local n = digits and #digits <= 4 and tonumber(digits, 8)
  if not n or n > 511 then
    return nil, "expected octal digits from 0000 to 0777 (\"0027\"), got " .. describe(v)
  end
  return string.format("%04o", n)
end

local function integer_in(lo, hi, what)
  return function(v)
    local n = is_integer(v) and v or (type(v) == "string" and v:match("^%s*%-?%d+%s*$") and tonumber(v))
    if n and n >= lo and n <= hi then return n end
    return nil, "expected " .. what .. ", got " .. describe(v)
  end
end
M.check_nice = integer_in(-20, 19, "a nice value from -20 (first) to 19 (last)")
M.check_oom_score_adj = integer_in(-1000, 1000, "an integer from -1000 (never killed) to 1000 (killed first)")

-- One limit's value: a number, "infinity" (systemd's) or "unlimited"
-- (ulimit's), a size for those in bytes.
local function limit_value(name, v)
  if v == "infinity" or v == "unlimited" then return "infinity" end
  local n = is_integer(v) and v >= 0 and v
  if not n and M.LIMITS[name] == "bytes" then n = util.parse_size(v) end
  if n then return n end
  return nil, "expected a non-negative integer" .. (M.LIMITS[name] == "bytes" and " or a size" or "")
    .. ", \"infinity\", or { soft, hard } of those, got " .. describe(v)
end

-- limits = { nofile = 65536, core = 0, nproc = { 512, 1024 }, as = "2G" }:
-- a value sets both the soft and the hard limit (systemd's Limit*=), a
-- pair { soft, hard } (or { soft = , hard = }) each. Normalised to
-- { name = { soft = , hard = } }. Returns that, or nil, message, name.
function M.check_limits(v)
  if type(v) ~= "table" then
    return nil, "expected a table of name = value (" .. table.concat(LIMIT_NAMES, ", ") .. "), got " .. describe(v)
  end
  local names = {}
  for k in pairs(v) do
    if type(k) ~= "string" then return nil, "expected limit names as keys, got key " .. describe(k) end
    names[#names + 1] = k
  end
  table.sort(names)
  local out = {}
  for _, name in ipairs(names) do
    if not M.LIMITS[name] then
      local guess = util.did_you_mean(name, LIMIT_NAMES)
      return nil, "unknown limit " .. quote(name) .. (guess and (" (did you mean " .. quote(guess) .. "?)") or "")
        .. "; the limits are " .. table.concat(LIMIT_NAMES, ", "), name
    end
    local x = v[name]
    local soft, hard, err
    if type(x) == "table" then
      local s, h = x.soft or x[1], x.hard or x[2]
      if s == nil or h == nil then
        return nil, "limit " .. quote(name) .. ": expected { soft, hard }, got " .. describe(x), name
      end
      soft, err = limit_value(name, s)
      if soft then hard, err = limit_value(name, h) end
    else
      soft, err = limit_value(name, x)
      hard = soft
    end
    if err then return nil, "limit " .. quote(name) .. ": " .. err, name end
    if hard ~= "infinity" and (soft == "infinity" or soft > hard) then
      return nil, string.format("limit %s: the soft limit (%s) is above the hard one (%s)", quote(name), soft, hard),
        name
    end
    out[name] = { soft = soft, hard = hard }
  end
  return out
end

-- What core.spawn takes for app (uid, gid, groups, umask, nice,
-- oom_score_adj, limits), and the variables the user's login sets (HOME,
-- USER, LOGNAME: the app's env wins over them), looked up again at each
-- launch: the databases may have changed since the file was loaded.
-- Returns { spawn = {...}, env = {...} }, or nil and why not.
function M.resolve(app, d)
  if not d and M.needs_lookup(app) then d = db() end
  local spawn, env = {}, {}
  local euid, egid
  if app.uid ~= nil or app.gid ~= nil then euid, egid = d.ids() end
  local user, group, err
  if app.uid ~= nil then
    user, err = lookup(d, app.uid, "user")
    if not user then return nil, "uid: " .. err end
    if euid ~= 0 and user.uid ~= euid then return nil, "uid: " .. not_root(d, "user", quote(user.name)) end
    env.HOME, env.USER, env.LOGNAME = user.home, user.name, user.name
  end
  if app.gid ~= nil then
    group, err = lookup(d, app.gid, "group")
    if not group then return nil, "gid: " .. err end
    if euid ~= 0 and group.gid ~= egid then return nil, "gid: " .. not_root(d, "group", quote(group.name)) end
  end
  if euid == 0 and (user or group) then
    -- initgroups' semantics: the user's groups, with the primary group
    -- that applies (gid's, else the user's); gid alone keeps orch's user
    -- and drops every supplementary group but that one.
    local gid = group and group.gid or user.gid
    if user then
      local groups, gerr = d.user_groups(user.name, gid)
      if not groups then return nil, "uid: the groups of " .. quote(user.name) .. ": " .. tostring(gerr) end
      spawn.groups, spawn.uid = groups, user.uid
    else
      spawn.groups = { gid }
    end
    spawn.gid = gid
  end
  if app.umask then spawn.umask = tonumber(app.umask, 8) end
  spawn.nice, spawn.oom_score_adj = app.nice, app.oom_score_adj
  if app.limits then
    local list = {}
    for _, name in ipairs(LIMIT_NAMES) do
      local l = app.limits[name]
      if l then list[#list + 1] = { name = name, soft = l.soft, hard = l.hard } end
    end
    spawn.limits = list
  end
  return { spawn = spawn, env = env }
end

-- Whether app needs the user databases at launch (M.resolve_async).
function M.needs_lookup(app)
  return app.uid ~= nil or app.gid ~= nil
end

-- Look-ups in flight: at most MAX_ASKING threads, the others wait here, so
-- that a database that never answers costs a few threads, not one per
-- launch.
M.MAX_ASKING = 4
local asking, waiting = 0, {}

local function ask(what, args, answer)
  if asking >= M.MAX_ASKING then
    waiting[#waiting + 1] = { what, args, answer }
    return
  end
  asking = asking + 1
  local function back(...)
    asking = asking - 1
    local nxt = table.remove(waiting, 1)
    if nxt then ask(nxt[1], nxt[2], nxt[3]) end
    return answer(...)
  end
  local n = #args
  args[n + 1] = back
  local ok, err, code = db()[what](unpack(args, 1, n + 1))
  if not ok then back(nil, err, code) end -- not queued (the answer comes now)
end

-- Runs fn(d, ...) where d answers as the databases do but each look-up
-- waits for its thread without stopping the loop (fn runs in a
-- coroutine); done(fn's results) on the loop. A unit spec's M.db answers
-- at once.
function M.async(fn, done, ...)
  if M.db then return done(fn(M.db, ...)) end
  local co
  local d = { ids = db().ids }
  for _, what in ipairs({ "user", "group", "user_groups" }) do
    d[what] = function(...) return coroutine.yield(what, { ... }) end
  end
  local function step(...)
    local res = { coroutine.resume(co, ...) }
    if not res[1] then error(res[2], 0) end
    if coroutine.status(co) == "dead" then return done(unpack(res, 2, table.maxn(res))) end
    ask(res[2], res[3], step)
  end
  co = coroutine.create(fn)
  step(d, ...)
end

-- resolve(app) in the background: done(as) or done(nil, why).
function M.resolve_async(app, done)
  M.async(function(d) return M.resolve(app, d) end, done)
end

-- The uid and gid options a config file names, which orch.ecosystem left
-- unresolved (defer_users: cfg.users, { app, option, value, where } each),
-- looked up in the background: done(cfg) with each resolved into its app,
-- or done(nil, why), why naming the file, app and option.
function M.resolve_config(cfg, done)
  local users = cfg.users or {}
  cfg.users = nil
  M.async(function(d)
    for _, u in ipairs(users) do
      local val, e = (u.option == "uid" and M.check_uid or M.check_gid)(u.value, d)
      if val == nil then return nil, u.where .. e end
      u.app[u.option] = val
    end
    return cfg
  end, done)
end

return M
