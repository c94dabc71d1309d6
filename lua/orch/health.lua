-- orch.health: health checks (docs/ecosystem.md, "Health checks").
--
-- validate() checks an app's `health` table for the ecosystem loader and
-- returns it normalised. new(opts) makes the checker the engine drives:
-- start(proc) when a process has been spawned, stop(proc) when it exits or
-- is stopped. Per running process, one check at a time: the first `interval`
-- after the start, the next `interval` after the previous one ended. Every
-- check is asynchronous (luv TCP, uv.spawn, or a user function that calls
-- done) and bounded by `timeout`; nothing here blocks the loop.
--
-- States: starting (no good check yet in this run), healthy, unhealthy,
-- in proc.health_state ({status, failures, last}); proc.healthy is true
-- while the process runs and is healthy (depends_on's "healthy" reads it).
-- A good check makes a process gated by wait_healthy online. Failures in
-- the first `start_period` ms of a run that has not been healthy yet do not
-- count; `retries` counted failures in a row restart the process (retries =
-- 0: never; the state only says unhealthy).
local util = require("orch.util")

local describe, quote = util.describe, util.quote

local M = {}

-- Docker's defaults are interval 30 s, timeout 30 s, retries 3, start
-- period 0; orch checks more often and gives up on a check sooner, as
-- Kubernetes does (period 10 s, timeout 1 s, failure threshold 3).
M.DEFAULTS = { interval = 10000, timeout = 5000, retries = 3, start_period = 0 }

M.KINDS = { "http", "tcp", "exec", "check" }
local FIELDS = { "http", "tcp", "exec", "check", "interval", "timeout", "retries", "start_period" }

-- The longest status line (and headers before it) an HTTP check reads.
M.MAX_STATUS_LINE = 4096

---------------------------------------------------------------------------
-- Validation
---------------------------------------------------------------------------

local function expected(what, v)
  return "expected " .. what .. ", got " .. describe(v)
end

local function field_error(name, msg)
  return nil, "field '" .. name .. "': " .. msg, name
end

local function parse_port(s)
  local n = tonumber(s)
  if s:match("^%d+$") and n and n >= 1 and n <= 65535 then return n end
  return nil
end

local function ipv4(host)
  local a, b, c, d = host:match("^(%d+)%.(%d+)%.(%d+)%.(%d+)$")
  if not a then return false end
  for _, x in ipairs({ a, b, c, d }) do
    if #x > 3 or tonumber(x) > 255 then return false end
  end
  return true
end

-- "HOST[:PORT]" -> host, port (port nil when absent), or nil, message.
-- Hosts are IP addresses (names are not resolved): IPv4, [IPv6], or
-- localhost, which means 127.0.0.1.
local function parse_authority(s)
  local host, rest = s:match("^%[([%x:%.]+)%](.*)$")
  if host then
    if not host:find(":", 1, true) then return nil, "invalid IPv6 address [" .. host .. "]" end
  else
    host, rest = s:match("^([^:]*)(.*)$")
    if host == "" then return nil, "no host (write 127.0.0.1:PORT)" end
    if host:lower() == "localhost" then
      host = "127.0.0.1"
    elseif not ipv4(host) then
      return nil, "host '" .. host .. "' is not an IP address (names are not resolved; use 127.0.0.1)"
    end
  end
  if rest == "" then return host, nil end
  local p = rest:match("^:(.*)$")
  local port = p and parse_port(p)
  if not port then return nil, "invalid port in " .. quote(s) .. " (expected 1-65535)" end
  return host, port
end

local function check_http(v)
  if type(v) ~= "string" or v == "" then return nil, expected('a URL like "http://127.0.0.1:8000/healthz"', v) end
  if v:lower():match("^https://") then
    return nil, "https is not supported (orch's HTTP check has no TLS): check a plain-HTTP port, or use exec (e.g. curl)"
  end
  local authority, path = v:match("^[hH][tT][tT][pP]://([^/?#]*)(.*)$")
  if not authority then return nil, expected('a URL like "http://127.0.0.1:8000/healthz"', v) end
  if authority:find("@", 1, true) then return nil, "user information in the URL is not supported" end
  if authority:find("[%s%c]") then return nil, "invalid host in " .. quote(v) end
  local host, port = parse_authority(authority)
  if not host then return nil, port end
  path = path:gsub("#.*$", "")
  if path:find("[%s%c]") then return nil, "the path must not contain spaces or control characters: " .. quote(v) end
  if path == "" then path = "/" end
  if path:sub(1, 1) == "?" then path = "/" .. path end
  return { http = v, host = host, port = port or 80, path = path }
end

local function check_tcp(v)
  if util.is_integer(v) then
    if v >= 1 and v <= 65535 then return { tcp = "127.0.0.1:" .. v, host = "127.0.0.1", port = v } end
    return nil, expected("a port (1-65535) or \"HOST:PORT\"", v)
  end
  if type(v) ~= "string" or v == "" then return nil, expected('"HOST:PORT" (e.g. "127.0.0.1:8000") or a port', v) end
  local host, port = parse_authority(v)
  if not host then return nil, port end
  if not port then return nil, "no port in " .. quote(v) .. ' (expected "HOST:PORT")' end
  return { tcp = v, host = host, port = port }
end

local function check_exec(v)
  local argv
  if type(v) == "string" then
    local err
    argv, err = util.split_args(v)
    if not argv then return nil, err .. " in " .. describe(v) end
  elseif type(v) == "table" then
    argv = {}
    local n = 0
    for _ in pairs(v) do n = n + 1 end
    for i = 1, n do
      local x = v[i]
      if type(x) == "string" then argv[i] = x
      elseif util.is_integer(x) then argv[i] = string.format("%d", x)
      elseif x == nil then return nil, expected("a list of strings (the argv)", v)
      else return nil, "item " .. i .. ": expected a string, got " .. describe(x) end
    end
  else
    return nil, expected("a list of strings (the argv) or a command string", v)
  end
  if #argv == 0 or argv[1] == "" then return nil, "expected a command to run, got an empty argv" end
  return { exec = argv }
end

local function check_fn(v)
  if type(v) == "function" then return { check = v } end
  return nil, expected("a function (Lua files only)", v)
end

local KIND_CHECK = { http = check_http, tcp = check_tcp, exec = check_exec, check = check_fn }

-- Validates an app's `health` value. Returns the normalised table, or nil,
-- message, field (for the message's line). The normalised table holds
-- kind ("http" | "tcp" | "exec" | "check"), the kind's own field as given
-- (exec: the argv list), host/port/path for http and tcp, and interval,
-- timeout, retries, start_period with defaults applied.
function M.validate(v)
  if type(v) ~= "table" then
    return nil, expected("a table with one of http, tcp, exec or check", v)
  end
  local known = {}
  for _, f in ipairs(FIELDS) do known[f] = true end
  local keys = {}
  for k in next, v do
    if type(k) ~= "string" then
      return nil, "unexpected key " .. describe(k) .. "; fields are written as name = value"
    end
    keys[#keys + 1] = k
  end
  table.sort(keys)
  for _, k in ipairs(keys) do
    if not known[k] then
      local guess = util.did_you_mean(k, FIELDS)
      return field_error(k, "unknown field" .. (guess and (" (did you mean '" .. guess .. "'?)") or ""))
    end
  end

  local kinds = {}
  for _, kind in ipairs(M.KINDS) do
    if rawget(v, kind) ~= nil then kinds[#kinds + 1] = kind end
  end
  if #kinds == 0 then return nil, "needs one of 'http', 'tcp', 'exec' or 'check'" end
  if #kinds > 1 then
    return field_error(kinds[2], "'" .. kinds[1] .. "' is given too; a health check has one kind")
  end
  local kind = kinds[1]
  local out, err = KIND_CHECK[kind](rawget(v, kind))
  if not out then return field_error(kind, err) end
  out.kind = kind

  for _, f in ipairs({ "interval", "timeout", "start_period" }) do
    local x = rawget(v, f)
    if x == nil then
      out[f] = M.DEFAULTS[f]
    else
      local ms = util.parse_duration(x)
      if not ms or (ms == 0 and f ~= "start_period") then
        return field_error(f, expected((f == "start_period" and "a duration (" or "a positive duration (")
          .. util.DURATION_HINT .. ")", x))
      end
      out[f] = ms
    end
  end
  local r = rawget(v, "retries")
  if r == nil then
    out.retries = M.DEFAULTS.retries
  elseif util.is_integer(r) and r >= 0 then
    out.retries = r
  else
    return field_error("retries", expected("a non-negative integer (0: never restart)", r))
  end
  return out
end

-- "http http://...", "tcp 127.0.0.1:8000", "exec curl -f ...", "check function".
function M.label(cfg)
  if cfg.kind == "exec" then return "exec " .. table.concat(cfg.exec, " ") end
  if cfg.kind == "check" then return "check function" end
  return cfg.kind .. " " .. cfg[cfg.kind]
end

---------------------------------------------------------------------------
-- The checker
---------------------------------------------------------------------------

local Checker = {}
Checker.__index = Checker

-- opts: log(level, msg), label(proc), maybe_online(proc) (online once every
-- readiness condition holds), emit(event, proc, info), api_get(id) (the
-- process object a check function gets), user_error(proc, what, err),
-- restart(proc, "health", why) (after the retries: an operation of its app), home
-- ($ORCH_HOME, for an exec check's environment).
function M.new(opts)
  return setmetatable({ opts = opts, log = opts.log, uv = require("luv"), hook = require("orch.hook"), runs = {} },
    Checker)
end

local function close(h)
  if h and not h:is_closing() then h:close() end
end

local function first_line(s)
  return (tostring(s):match("^[^\n]*"))
end

-- Supervisor events that end a run (the process is gone or going).
local STOPS = { exit = true, stopping = true, stopped = true, errored = true, waiting = true }

-- Called by the engine for every supervisor event.
function Checker:on_event(event, proc)
  if not proc then return end
  if event == "start" then self:start(proc)
  elseif STOPS[event] then self:stop(proc) end
end

function Checker:start(proc)
  self:stop(proc)
  local cfg = proc.app.health
  if not cfg then
    proc.health_state = nil
    return
  end
  local uv = self.uv
  local run = { proc = proc, cfg = cfg, started = uv.now(), timer = uv.new_timer() }
  proc.health_state = { status = "starting", failures = 0 }
  proc.healthy = false
  self.runs[proc] = run
  run.timer:start(cfg.interval, 0, function() self:_check(run) end)
end

-- Ends a process's checks: its timer, and the check in flight (socket
-- closed, exec'd check killed).
function Checker:stop(proc)
  local run = self.runs[proc]
  if not run then return end
  self.runs[proc] = nil
  run.stopped = true
  proc.healthy = false
  close(run.timer)
  if run.check then
    self:_cleanup(run.check)
    run.check = nil
  end
end

-- Stops every run (engine shutdown).
function Checker:close()
  local procs = {}
  for proc in pairs(self.runs) do procs[#procs + 1] = proc end
  for _, proc in ipairs(procs) do self:stop(proc) end
end

-- What describe shows: nil when the app has no health check. `null` stands
-- for "no check has ended yet in this run" (cjson.null for the protocol).
function Checker:describe(proc, null)
  local cfg = proc.app.health
  if not cfg then return nil end
  local st = proc.health_state or { status = "starting", failures = 0 }
  local last = st.last
  if last == nil then last = null end
  return { status = st.status, failures = st.failures, last = last, check = M.label(cfg) }
end

---------------------------------------------------------------------------
-- One check
---------------------------------------------------------------------------

local KIND = {}

function Checker:_check(run)
  if run.stopped then return end
  local uv = self.uv
  local check = { run = run, timer = uv.new_timer() }
  run.check = check
  -- report() settles the check once; the result is handled on the next loop
  -- turn, outside whatever callback (a user's, even) reported it.
  check.report = function(ok, msg)
    if check.settled or check.finished then return end
    check.settled, check.ok, check.msg = true, ok and true or false, msg
    check.timer:stop()
    check.timer:start(0, 0, function() self:_finish(check) end)
  end
  check.timer:start(run.cfg.timeout, 0, function()
    if not check.settled then
      check.settled, check.ok = true, false
      check.msg = string.format("timed out after %d ms", run.cfg.timeout)
    end
    self:_finish(check)
  end)
  local ok, err = pcall(KIND[run.cfg.kind], self, check, run.proc, run.cfg)
  if not ok then check.report(false, "check failed to start: " .. first_line(err)) end
end

function Checker:_cleanup(check)
  check.finished = true
  close(check.timer)
  close(check.tcp)
  for _, p in ipairs(check.pipes or {}) do close(p) end
  if check.pid and not check.exited then
    -- its own session and group: the whole tree goes; the exit callback
    -- closes the handle.
    self.uv.kill(-check.pid, "sigkill")
  end
end

function Checker:_finish(check)
  if check.finished then return end
  local run = check.run
  local msg = check.msg
  if type(msg) == "function" then msg = msg() end
  self:_cleanup(check)
  run.check = nil
  if run.stopped then return end
  self:_result(run, check.ok, tostring(msg or (check.ok and "ok" or "failed")))
  if not run.stopped then
    run.timer:start(run.cfg.interval, 0, function() self:_check(run) end)
  end
end

-- The process becomes healthy (true) or unhealthy: its state, a line of
-- the daemon's log ("NAME:I " .. line), the health event.
function Checker:_set(proc, healthy, msg, line)
  proc.health_state.status = healthy and "healthy" or "unhealthy"
  proc.healthy = healthy
  self.log(healthy and "info" or "warn", self.opts.label(proc) .. " " .. line)
  self.opts.emit("health", proc, { healthy = healthy, message = msg })
end

function Checker:_result(run, ok, msg)
  local proc, cfg = run.proc, run.cfg
  local st = proc.health_state
  st.last = msg
  if ok then
    st.failures = 0
    run.ever_healthy = true
    if st.status ~= "healthy" then self:_set(proc, true, msg, "healthy: " .. msg) end
    -- Ends the wait of a wait_healthy process (a no-op for others).
    if proc.status == "launching" then self.opts.maybe_online(proc) end
    return
  end
  if not run.ever_healthy and self.uv.now() - run.started < cfg.start_period then
    return -- start_period: failures do not count yet
  end
  st.failures = st.failures + 1
  if cfg.retries == 0 then
    if st.status ~= "unhealthy" then self:_set(proc, false, msg, "unhealthy: " .. msg) end
    return
  end
  if st.failures < cfg.retries then return end
  self:_set(proc, false, msg, string.format("unhealthy: %d check%s failed in a row, last: %s; restarting",
    st.failures, st.failures == 1 and "" or "s", msg))
  self:stop(proc)
  self.opts.restart(proc, "health", string.format("%d health check%s failed in a row, last: %s",
    st.failures, st.failures == 1 and "" or "s", msg))
end

---------------------------------------------------------------------------
-- Kinds. Each starts the check and calls check.report(ok, message) once
-- (later reports are ignored); handles go on `check` for _cleanup.
---------------------------------------------------------------------------

local function connect(self, check, host, port, on_connected)
  local tcp = self.uv.new_tcp()
  check.tcp = tcp
  local where = (host:find(":", 1, true) and ("[" .. host .. "]") or host) .. ":" .. port
  local ok, err = tcp:connect(host, port, function(cerr)
    if cerr then return check.report(false, "connect " .. where .. ": " .. cerr) end
    on_connected(tcp, where)
  end)
  if not ok then check.report(false, "connect " .. where .. ": " .. tostring(err)) end
end

function KIND.tcp(self, check, _, cfg)
  connect(self, check, cfg.host, cfg.port, function(_, where)
    check.report(true, "connected to " .. where)
  end)
end

function KIND.http(self, check, _, cfg)
  connect(self, check, cfg.host, cfg.port, function(tcp, where)
    local host = cfg.host:find(":", 1, true) and ("[" .. cfg.host .. "]") or cfg.host
    if cfg.port ~= 80 then host = host .. ":" .. cfg.port end
    tcp:write("GET " .. cfg.path .. " HTTP/1.1\r\nHost: " .. host
      .. "\r\nUser-Agent: orch-health\r\nAccept: */*\r\nConnection: close\r\n\r\n")
    local buf = ""
    tcp:read_start(function(err, data)
      if err then return check.report(false, "read from " .. where .. ": " .. err) end
      if not data then return check.report(false, "connection closed before an HTTP status line") end
      buf = buf .. data
      local line = buf:match("^([^\r\n]*)\r?\n")
      if not line then
        if #buf > M.MAX_STATUS_LINE then check.report(false, "no HTTP status line in the first bytes of the response") end
        return
      end
      local code, reason = line:match("^HTTP/%d%.%d (%d%d%d) ?(.*)$")
      code = tonumber(code)
      if not code then return check.report(false, "not an HTTP response: " .. quote(line:sub(1, 80))) end
      check.report(code >= 200 and code < 400, "HTTP " .. code .. (reason ~= "" and (" " .. reason) or ""))
    end)
  end)
end

-- The argv runs in the app's cwd and environment, as its user, group and
-- supplementary groups (orch.runas, looked up in the background when the
-- app names a user), in a group of its own (so a timeout kills what it
-- started too); its output is kept for the message (the first line of it,
-- up to 1 KiB read).
function KIND.exec(self, check, proc, cfg)
  local runas = require("orch.runas")
  if not runas.needs_lookup(proc.app) then return self:_exec(check, proc, cfg, runas.resolve(proc.app)) end
  runas.resolve_async(proc.app, function(as, aerr)
    if check.finished then return end -- timed out, or the check stopped meanwhile
    local ok, err = pcall(self._exec, self, check, proc, cfg, as, aerr)
    if not ok then check.report(false, "check failed to start: " .. first_line(err)) end
  end)
end

-- The check's process: libuv's spawn as orch's own user; core.spawn as
-- another (libuv's would drop the supplementary groups the app has).
-- Output goes to the pipes (read by the caller; out is opened here).
local function spawn_check(uv, argv, opts, pipes, on_exit)
  local out = pipes[1]
  if not opts.uid and not opts.gid then
    pipes[2] = uv.new_pipe(false)
    local handle, pid
    handle, pid = uv.spawn(argv[1], { args = { unpack(argv, 2) }, env = opts.env, cwd = opts.cwd,
      stdio = { nil, out, pipes[2] }, detached = true }, function(code, signal)
        close(handle)
        on_exit(code, signal ~= 0 and signal or nil)
      end)
    return handle, pid
  end
  local core = require("orch.core")
  local mine, theirs = core.socketpair()
  if not mine then return nil, theirs end
  out:open(mine:release())
  opts.file, opts.argv, opts.output = argv[1], argv, theirs
  opts.on_exit = function(code, signal) on_exit(code or 0, signal) end
  local handle, err = core.spawn(opts)
  theirs:close() -- the child has its copy
  if not handle then return nil, err end
  return handle, handle:pid()
end

function Checker:_exec(check, proc, cfg, as, aerr)
  if not as then return check.report(false, aerr) end
  local uv = self.uv
  check.pipes = { uv.new_pipe(false) }
  local output = ""
  local opts = as.spawn -- uid, gid, groups, umask, nice, oom_score_adj, limits: the app's
  opts.env = require("orch.launch").environment(proc.app, proc.instance, proc.id, proc.base_env, nil,
    self.opts.home, as.env)
  opts.cwd = proc.app.cwd
  local handle, pid = spawn_check(uv, cfg.exec, opts, check.pipes, function(code, signal)
    check.exited = true
    local how = signal and ("killed by signal " .. signal) or ("exit code " .. code)
    check.report(code == 0 and not signal, function()
      local text = output:match("^%s*([^\r\n]*)")
      if text and text ~= "" then return how .. ": " .. text:sub(1, 200) end
      return how
    end)
  end)
  if not handle then
    check.report(false, "cannot run " .. cfg.exec[1] .. ": " .. tostring(pid))
    return
  end
  check.pid = pid
  local function reader(rerr, data)
    if data and #output < 1024 then output = output .. data end
    if rerr then return end
  end
  for _, p in ipairs(check.pipes) do p:read_start(reader) end
end

-- check(proc, done): done(ok, message) now or later, or return ok, message.
-- Runs through orch.hook (protected, under the app's hook_deadline); an error
-- is logged and counts as a failure.
function KIND.check(self, check, proc, cfg)
  local function done(ok, msg)
    if msg == nil then msg = ok and "check passed" or "check failed" end
    check.report(ok, self.hook.tostring(msg))
  end
  local good, res, msg = self.hook.call(cfg.check, proc.app.hook_deadline, self.opts.api_get(proc.id), done)
  if not good then
    self.opts.user_error(proc, "health check function", res)
    return check.report(false, "check function failed: " .. first_line(res))
  end
  if res ~= nil then done(res, msg) end
end

return M
