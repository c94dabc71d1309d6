-- spec/pm2e2e.lua: what the specs that replay PM2's end-to-end scenarios
-- (spec/functional/pm2e2e_*_spec.lua) share. PM2's test/e2e/include.sh
-- checks state with `should MSG TEXT N` (TEXT appears N times in `pm2
-- prettylist`) after a fixed sleep; here the same checks poll `orch list
-- --json` until they hold, so they are robust on a loaded machine.
local H = require("helpers")
local uv = require("luv")

local P = {}

P.fixtures = H.root .. "/spec/fixtures/pm2e2e"

-- Copies the fixtures into dir (PM2's scenarios write logs next to the
-- apps, and some edit files).
function P.copy_fixtures(dir)
  H.sh(string.format("cp -R '%s/.' '%s/'", P.fixtures, dir))
end

local function opts(t, o)
  o = o or {}
  return { home = t.home, cwd = o.cwd or t.cwd or t.dir, env = o.env, timeout = o.timeout }
end

-- A test's context t: t.dir (the fixtures' copy), t.home; t.cwd (default
-- t.dir) is where the verbs run, as PM2's scripts `cd` first.

-- Call in a describe block: each test gets a fresh directory holding a copy
-- of the fixtures and its own ORCH_HOME, both removed after it (with the
-- daemon and every process it started). Returns the context t.
function P.each_test()
  local t = {}
  -- H.each_test finds busted's before_each/after_each in its caller's
  -- environment: the spec file's, so call it from a function that has it.
  local register = setfenv(function(set) H.each_test(set) end, getfenv(2))
  register(function(dir, home)
    t.dir, t.home, t.cwd = dir, home, nil
    P.copy_fixtures(dir)
  end)
  return t
end

-- Runs `orch ARGS...`: code, stdout, stderr.
function P.run(t, args, o)
  return H.orch_sync(args, opts(t, o))
end

-- Runs `orch ARGS...` and fails (with its output) unless it exits 0.
function P.ok(t, args, o)
  local code, out, err = P.run(t, args, o)
  if code ~= 0 then
    error(string.format("orch %s exited %s\nstdout: %s\nstderr: %s", table.concat(args, " "), tostring(code),
      out, err), 2)
  end
  return out, err
end

-- Runs `orch ARGS...` and fails unless it exits with a failure status
-- (PM2's `ispec`).
function P.fails(t, args, o)
  local code, out, err = P.run(t, args, o)
  if code == 0 then
    error(string.format("orch %s exited 0, expected a failure\nstdout: %s\nstderr: %s", table.concat(args, " "),
      out, err), 2)
  end
  return code, out, err
end

-- Runs a shell command line (a pipe into orch, an environment variable set
-- for one verb): `orch` in it is the binary under test. code, out, err.
function P.shell(t, line, o)
  o = o or {}
  local oo = opts(t, o)
  oo.program = "/bin/sh"
  local env = {}
  for k, v in pairs(o.env or {}) do env[k] = v end
  env.ORCH = H.bin
  oo.env = env
  local run = H.orch({ "-c", 'orch() { "$ORCH" "$@"; }; ' .. line }, oo)
  run:wait_exit(oo.timeout or 30000)
  return run.code, run.out, run.err
end

function P.list(t)
  local procs, code, err = H.json(t.home, { "list" }, { cwd = t.dir })
  if type(procs) ~= "table" then error("orch list --json failed (" .. tostring(code) .. "): " .. tostring(err), 2) end
  return procs
end

local function show(procs)
  local lines = {}
  for _, p in ipairs(procs) do
    lines[#lines + 1] = string.format("  id %s %s %s restarts %s mode %s", tostring(p.id), tostring(p.name),
      tostring(p.status), tostring(p.restarts), tostring(p.mode))
  end
  return #lines > 0 and table.concat(lines, "\n") or "  (no processes)"
end

-- Predicates on one process of `orch list --json`.
function P.status(s) return function(p) return p.status == s end end
function P.restarts(n) return function(p) return p.restarts == n end end
function P.named(n) return function(p) return p.name == n end end
function P.mode(m) return function(p) return p.mode == m end end
function P.any() return function() return true end end
function P.both(a, b) return function(p) return a(p) and b(p) end end

-- PM2's `should MSG TEXT N`: polls until exactly n processes match pred
-- (and, with settle_ms, still do that long after: a count that must not
-- grow, as "not restarted"). Fails naming msg and showing the list.
function P.should(t, msg, pred, n, timeout_ms, settle_ms)
  local last, polled = {}, false
  local function holds()
    -- each poll runs an orch: a breath between them spares a busy machine
    if polled then uv.sleep(40) end
    polled = true
    last = P.list(t)
    local k = 0
    for _, p in ipairs(last) do if pred(p) then k = k + 1 end end
    return k == n
  end
  local ok, err = pcall(H.wait_until, holds, timeout_ms or 20000)
  if not ok then
    error(string.format("%s: expected %d matching processes; timed out (%s)\n%s", msg, n, tostring(err), show(last)), 2)
  end
  if settle_ms then
    local t0 = uv.hrtime()
    while (uv.hrtime() - t0) / 1e6 < settle_ms do
      uv.sleep(50)
      if not holds() then error(string.format("%s: no longer %d matching processes\n%s", msg, n, show(last)), 2) end
    end
  end
end

-- Polls until file (relative to t.dir) contains the plain text.
function P.file_has(t, file, text, timeout_ms)
  local path = file:sub(1, 1) == "/" and file or t.dir .. "/" .. file
  local ok, err = pcall(H.wait_until, function()
    local s = H.read(path)
    return s and s:find(text, 1, true)
  end, timeout_ms or 15000)
  if not ok then
    local s = H.read(path)
    error(string.format("%s should contain '%s' (%s); it holds: %s", file, text, tostring(err),
      s and ("'" .. s:sub(-600) .. "'") or "(no such file)"), 2)
  end
end

-- Counts plain-text occurrences of text in a file (0 when there is none).
function P.count(t, file, text)
  local s = H.read(file:sub(1, 1) == "/" and file or t.dir .. "/" .. file) or ""
  local n, i = 0, 1
  while true do
    local a, b = s:find(text, i, true)
    if not a then return n end
    n, i = n + 1, b + 1
  end
end

function P.exists(t, file)
  return uv.fs_stat(file:sub(1, 1) == "/" and file or t.dir .. "/" .. file) ~= nil
end

-- Empties a file, as PM2's scripts do with `> file`.
function P.truncate(t, file)
  H.write(file:sub(1, 1) == "/" and file or t.dir .. "/" .. file, "")
end

-- The environment of a live process, as a table.
function P.environ(pid)
  local raw = H.read("/proc/" .. pid .. "/environ") or ""
  local env = {}
  for k, v in raw:gmatch("([^%z=]+)=([^%z]*)") do env[k] = v end
  return env
end

-- The decoded `orch describe TARGET --json`.
function P.describe(t, target)
  local procs, code, err = H.json(t.home, { "describe", target }, { cwd = t.dir })
  if type(procs) ~= "table" then error("orch describe failed (" .. tostring(code) .. "): " .. tostring(err), 2) end
  return procs
end

return P
