-- orch monit: the real dashboard in a real terminal. Each test runs
-- `orch monit` in a tmux pane (tmux is the terminal emulator: keys are sent
-- with send-keys, the screen read back with capture-pane, the size changed
-- with resize-window), with the pane's output also copied raw to a file
-- (pipe-pane), and the tty's modes taken with `stty -g` before and after.
local H = require("helpers")
local uv = require("luv")
H.need("tmux")

-- a run of the rule's glyph (a Lua pattern repeats bytes, not characters)
local RULE = "[\226\148\128]+"

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

-- A tmux server of its own (socket in dir) with one pane running
-- fixture script run.sh: it waits for a line on the FIFO go (so pipe-pane
-- is attached first), records `stty -g`, runs `orch monit ARGS`, records
-- its status and `stty -g` again, then keeps the pane open.
local Pane = {}
Pane.__index = Pane

function Pane:tmux(...)
  local words = {}
  for i, a in ipairs({ ... }) do words[i] = q(a) end
  return H.sh(string.format("tmux -u -S %s %s 2>&1", q(self.sock), table.concat(words, " ")))
end

function Pane:screen()
  return self:tmux("capture-pane", "-p", "-t", "m")
end

-- Waits until the screen holds pattern (a Lua pattern, or a list of which
-- one will do); returns the screen.
function Pane:wait_screen(pattern, what)
  local last = ""
  local list = type(pattern) == "table" and pattern or { pattern }
  H.wait_until(function()
    last = self:screen()
    for _, one in ipairs(list) do
      if last:find(one) then return true end
    end
  end, 20000, function() return (what or list[1]) .. " on the screen; it shows:\n" .. last end)
  return last
end

-- Waits until the screen holds every one of checks (Lua patterns, or
-- functions of the screen) and none of absent; returns the screen. A frame
-- reaches the terminal in pieces: what one row shows says nothing yet of
-- the rows below it, so checks about several rows wait for all of them.
function Pane:wait_all(checks, what, absent)
  local last = ""
  H.wait_until(function()
    last = self:screen()
    for _, c in ipairs(checks) do
      if type(c) == "function" then
        if not c(last) then return false end
      elseif not last:find(c) then return false end
    end
    for _, a in ipairs(absent or {}) do
      if last:find(a) then return false end
    end
    return true
  end, 20000, function() return what .. " on the screen; it shows:\n" .. last end)
  return last
end

local function rows(screen)
  local list = {}
  for line in (screen .. "\n"):gmatch("([^\n]*)\n") do list[#list + 1] = line end
  return list
end

-- An event line in the events pane: a record of the daemon's event stream
-- ("12:00:01 restart     command, restart #1"), or from an orch without
-- one, a transition of describe's ("12:00:01 restart     online → stopping").
local function event(kind, transition)
  return { "\n%d%d:%d%d:%d%d " .. kind .. "[^\n]*\n", transition }
end

function Pane:keys(...)
  return self:tmux("send-keys", "-t", "m", ...)
end

function Pane:status()
  local s = H.read(self.dir .. "/status")
  return s and tonumber(s)
end

function Pane:wait_exit()
  H.wait_until(function() return self:status() end, 20000,
    function() return "orch monit to exit; screen:\n" .. self:screen() .. "\nstderr: " .. (H.read(self.dir .. "/stderr") or "") end)
  return self:status()
end

-- The command line that runs orch monit (its pid in monit.pid).
function Pane:command(args)
  return string.format("sh -c 'echo $$ > monit.pid; exec \"$@\"' sh %s monit %s 2> stderr", q(H.bin), args or "")
end

local function pane(dir, home, opts)
  opts = opts or {}
  local self = setmetatable({ dir = dir, sock = dir .. "/tmux" }, Pane)
  local env = { ORCH_HOME = home, PATH = os.getenv("PATH"), HOME = os.getenv("HOME") or "/",
                LANG = opts.lang or "C.UTF-8", HISTFILE = "" } -- an interactive bash keeps no history
  for _, k in ipairs({ "ORCH_LUA_DIR", "ASAN_OPTIONS", "LSAN_OPTIONS", "UBSAN_OPTIONS" }) do env[k] = os.getenv(k) end
  for k, v in pairs(opts.env or {}) do env[k] = v end
  local exports = {}
  for k, v in pairs(env) do exports[#exports + 1] = "export " .. k .. "=" .. q(v) end
  H.sh("mkfifo " .. q(dir .. "/go"))
  H.write(dir .. "/run.sh", table.concat({
    "# shellcheck shell=sh",
    table.concat(exports, "\n"),
    "unset LC_ALL LC_CTYPE",
    "cd " .. q(dir),
    "read -r _ < go",
    -- opts.interactive: an interactive bash (job control, as a user's),
    -- where the test types the commands
    opts.interactive and "exec bash --norc --noprofile -i" or "",
    "stty -g > before",
    self:command(opts.args),
    "echo $? > status.tmp",
    "stty -g > after",
    "mv status.tmp status",
    "exec sleep 600",
  }, "\n") .. "\n")
  self:tmux("-f", "/dev/null", "new-session", "-d", "-s", "m", "-x", tostring(opts.cols or 100),
    "-y", tostring(opts.rows or 30), "sh " .. dir .. "/run.sh")
  local server = tonumber(self:tmux("display", "-p", "-t", "m", "#{pid}"))
  local shell = tonumber(self:tmux("display", "-p", "-t", "m", "#{pane_pid}"))
  assert(server and shell, "tmux did not start: " .. self:tmux("display", "-p", "-t", "m", "#{pid}"))
  self.server, self.shell = server, shell
  H.track(server)
  H.track(shell)
  self:tmux("pipe-pane", "-o", "-t", "m", "cat >> " .. q(dir .. "/raw"))
  local f = assert(io.open(dir .. "/go", "w"))
  f:write("go\n")
  f:close()
  return self
end

function Pane:close()
  self:tmux("kill-server")
  for _, pid in ipairs({ self.shell, self.server }) do
    if pid and H.alive(pid) then pcall(uv.kill, pid, "sigkill") end
  end
  local monit = tonumber(H.read(self.dir .. "/monit.pid") or "")
  if monit and H.alive(monit) then pcall(uv.kill, monit, "sigkill") end
end

-- The terminal after monit: modes as before, alternate screen off, cursor
-- shown (tmux's own view of its terminal), and the last sequences monit
-- wrote leave the alternate screen and show the cursor.
-- Also: nothing on stderr but what the test expects (quiet: nothing at
-- all), in particular no handle left open at exit.
local function assert_restored(p, noisy)
  local err = H.read(p.dir .. "/stderr") or ""
  assert.is_nil(err:find("no owner closed", 1, true), err)
  if not noisy then assert.are.equal("", err) end
  local before, after = H.read(p.dir .. "/before"), H.read(p.dir .. "/after")
  assert.is_truthy(before and #before > 10, "no stty -g before")
  assert.are.equal(before, after)
  assert.are.equal("0 1\n", p:tmux("display", "-p", "-t", "m", "#{alternate_on} #{cursor_flag}"))
  local raw = H.read(p.dir .. "/raw") or ""
  local function last(s)
    local at, from = nil, 1
    while true do
      local i = raw:find(s, from, true)
      if not i then return at end
      at, from = i, i + 1
    end
  end
  assert.is_truthy(last("\27[?1049h"), "monit never entered the alternate screen")
  assert.is_truthy(last("\27[?1049l") and last("\27[?1049l") > last("\27[?1049h"), "alternate screen left on")
  assert.is_truthy(last("\27[?25h") and last("\27[?25h") > last("\27[?25l"), "cursor left hidden")
  assert.is_truthy(last("\27[?7h") and last("\27[?7h") > last("\27[?7l"), "autowrap left off")
end

local TICKER = [[
i=0
while true; do i=$((i+1)); echo "tick $i"; [ $((i % 4)) = 0 ] && echo "oops $i" >&2; sleep 0.2; done
]]

describe("orch monit", function()
  local dir, home, p
  H.each_test(function(d, h) dir, home, p = d, h, nil end)
  after_each(function()
    if p then p:close() end
  end)

  local function start_apps()
    H.write(dir .. "/ticker.sh", TICKER)
    H.started(dir, home, string.format([[
      { name = "alpha", script = %q },
      { name = "beta", script = %q },
      { name = "gamma", script = %q },
    ]], dir .. "/ticker.sh", dir .. "/ticker.sh", dir .. "/ticker.sh"))
    assert.are.equal(0, (H.orch_sync({ "stop", "gamma" }, { home = home })))
  end

  -- orch jlist (PM2's shape; it takes no --json)
  local function jlist()
    local code, out, err = H.orch_sync({ "jlist" }, { home = home })
    assert(code == 0, err)
    return require("cjson").decode(out)
  end

  local function restarts(name)
    for _, x in ipairs(jlist()) do
      if x.name == name then return x.pm2_env.restart_time end
    end
  end

  it("lists every process with status, restarts, cpu, memory; the selected one's logs and events", function()
    start_apps()
    p = pane(dir, home)
    -- a row: mark, id, name, status, restarts, cpu %, cpu history, memory, memory history, uptime, pid
    local s = p:wait_all({
      "\n▶%s+0 alpha%s+online%s+0%s+%d+%.%d%%%s+[▁-█]+%s+%d[%d.]*[kmg]?b%s+[▁-█]+%s+%d+[smhD]%s+%d+\n",
      "\n%s+1 beta%s+online%s+0%s",
      "\n%s+2 gamma%s+stopped%s+0%s+0%.0%%.-%s+%-%s+%-\n",
      "orch monit · 3 processes, 2 online",
    }, "the rows of alpha, beta and gamma")
    -- alpha's lines, stdout and stderr, and its events
    p:wait_screen("─ logs alpha:0 %(id 0%) " .. RULE .. "\n.*tick %d+\n.*─ events alpha:0", "alpha's log lines")
    p:wait_screen("oops %d+", "alpha's stderr lines")
    p:wait_screen("─ events alpha:0 %(id 0%) " .. RULE .. "\n%d%d:%d%d:%d%d %a", "alpha's events")
    p:wait_screen(event("online", "\n%d%d:%d%d:%d%d ready%s+launching → online\n"), "alpha online among its events")
    -- the history grows a sample a second
    local hist = s:match("\n▶%s+0 alpha%s+online%s+0%s+%S+%s+([▁-█]+)")
    p:wait_screen("\n▶%s+0 alpha%s+online%s+0%s+%S+%s+" .. ("[▁-█]"):rep(math.min(10, #hist / 3 + 1)),
      "a longer cpu history")
    p:keys("q")
    assert.are.equal(0, p:wait_exit())
    assert_restored(p)
  end)

  -- A worker that does three jobs, then crashes (restarted after 500 ms).
  local WORKER = [[
echo "worker $ORCH_INSTANCE started (pid $$)"
for j in 1 2 3; do sleep 0.4; echo "worker $ORCH_INSTANCE: job $j done"; done
echo "worker $ORCH_INSTANCE: simulated crash" >&2
exit 3
]]
  -- Busy about half the time.
  local CRUNCH = [[
while true; do i=0; while [ $i -lt 100000 ]; do i=$((i+1)); done; sleep 0.3; done
]]

  it("leaves a screenshot of its screen; with ORCH_SCREENSHOTS=1 in docs/monit.png (the README's)", function()
    H.write(dir .. "/ticker.sh", TICKER)
    H.write(dir .. "/worker.sh", WORKER)
    H.write(dir .. "/crunch.sh", CRUNCH)
    H.started(dir, home, string.format([[
      { name = "clock", script = %q },
      { name = "worker", script = %q, instances = 2, restart_delay = 500, min_uptime = 100 },
      { name = "web", script = "sleep", args = { "1000" }, instances = 2 },
      { name = "crunch", script = %q },
      { name = "backup", script = "sh", args = { "-c", "echo backup done" }, autorestart = false },
    ]], dir .. "/ticker.sh", dir .. "/worker.sh", dir .. "/crunch.sh"))
    p = pane(dir, home, { cols = 110, rows = 34 })
    p:wait_screen("backup%s+stopped")
    p:keys("j") -- worker:0
    -- its crash and restart among its events and logs, and some history
    p:wait_all({
      "\n▶%s+1 worker:0%s",
      "simulated crash",
      "\n%d%d:%d%d:%d%d restart%s+exit, code 3",
      function(screen) -- a history of some length: up 12 s
        local up = tonumber(screen:match("\n%s+0 clock%s+online%s.-%s(%d+)s%s+%d+\n"))
        return up and up >= 12
      end,
    }, "worker:0's crash and restart, and twelve seconds of history")
    local screen = p:tmux("capture-pane", "-e", "-p", "-t", "m")
    assert.matches("\27%[", screen, nil, "no colours captured")
    H.write(dir .. "/monit.ansi", screen)
    assert.are.equal("", H.sh(string.format("/usr/bin/python3 %s %s %s 'orch monit' 2>&1",
      q(H.root .. "/spec/fixtures/ansi_html.py"), q(dir .. "/monit.ansi"), q(dir .. "/monit.html"))))
    local browser = require("browser").start(dir)
    finally(function() browser:quit() end)
    browser:call({ cmd = "open", url = "file://" .. dir .. "/monit.html" })
    assert.matches("worker:0", browser:eval("return document.querySelector('#term').textContent"), 1, true)
    local shot = os.getenv("ORCH_SCREENSHOTS") == "1" and (H.root .. "/docs/monit.png") or (dir .. "/monit.png")
    assert.is_true(browser:call({ cmd = "screenshot", path = shot, css = "#term" }))
    local png = H.read(shot)
    assert.are.equal("\137PNG", png:sub(1, 4))
    -- IHDR: width and height, big-endian, at bytes 17 and 21
    local function u32(at)
      local a, b, c, d = png:byte(at, at + 3)
      return ((a * 256 + b) * 256 + c) * 256 + d
    end
    assert.is_true(u32(17) > 800 and u32(21) > 500, "a screenshot of " .. u32(17) .. "x" .. u32(21))
    p:keys("q")
    assert.are.equal(0, p:wait_exit())
  end)

  it("restarts, stops, starts and scales the selected app with its keys (orch jlist agrees)", function()
    start_apps()
    p = pane(dir, home)
    p:wait_screen("gamma%s+stopped")
    p:keys("j") -- beta
    p:wait_screen("\n▶%s+1 beta%s+online")
    p:wait_screen("─ logs beta:0 %(id 1%)")
    p:keys("r")
    H.wait_until(function() return restarts("beta") == 1 end, 20000,
      function() return "beta's restart_time to be 1 in orch jlist; the screen:\n" .. p:screen() end)
    assert.are.equal(0, restarts("alpha"))
    p:wait_screen("restarted beta %(id 1%)")
    p:wait_screen("\n▶%s+1 beta%s+online%s+1%s", "beta's restart count on the screen")
    p:wait_screen(event("restart%s+command", "\n%d%d:%d%d:%d%d restart%s+online → stopping\n"),
      "beta's restart among its events")
    p:keys("s")
    p:wait_screen("\n▶%s+1 beta%s+stopped%s")
    p:keys("S")
    p:wait_screen("\n▶%s+1 beta%s+online%s")
    p:keys("+")
    p:wait_screen("beta:1%s+online", "a second beta")
    local n = 0
    for _, x in ipairs(jlist()) do if x.name == "beta" then n = n + 1 end end
    assert.are.equal(2, n)
    p:keys("q")
    assert.are.equal(0, p:wait_exit())
  end)

  it("filters with / and with its argument", function()
    start_apps()
    p = pane(dir, home, { args = "gam" })
    p:wait_all({ "filter /gam %(1 shown%)", "\n▶%s+2 gamma%s+stopped" }, "gamma alone", { "alpha", "beta" })
    p:keys("/", "BSpace", "BSpace", "BSpace", "b", "e", "t", "Enter")
    p:wait_all({ "filter /bet %(1 shown%)", "\n▶%s+1 beta%s+online" }, "beta alone", { "alpha", "gamma" })
    p:keys("/", "Escape")
    p:wait_screen("orch monit · 3 processes, 2 online%s+%d")
    p:keys("q")
    assert.are.equal(0, p:wait_exit())
  end)

  it("redraws for the new size when the terminal is resized", function()
    start_apps()
    p = pane(dir, home, { cols = 100, rows = 30 })
    p:wait_all({ "gamma%s+stopped", "\n─ logs alpha:0 %(id 0%) " .. ("─"):rep(100 - 22) .. "\n" }, "the rule 100 wide")
    p:tmux("resize-window", "-t", "m", "-x", "60", "-y", "16")
    -- the rule as wide as the screen, the footer on the last of the 16
    -- rows, no history column at 60 columns
    p:wait_all({
      "\n─ logs alpha:0 %(id 0%) " .. ("─"):rep(60 - 22) .. "\n",
      function(s) return (rows(s)[16] or ""):match("^↑↓ select") end,
      "\n▶%s+0 alpha%s+online%s+0%s+%d+%.%d%%%s+%d[%d.]*[kmg]?b%s+%d",
    }, "the screen redrawn 60x16")
    p:tmux("resize-window", "-t", "m", "-x", "30", "-y", "8")
    p:wait_screen("terminal too small: 30x8")
    p:keys("q")
    assert.are.equal(0, p:wait_exit())
    assert_restored(p)
  end)

  it("falls back to ASCII outside a UTF-8 locale", function()
    start_apps()
    p = pane(dir, home, { lang = "C" })
    p:wait_all({ "gamma%s+stopped", "\n>%s+0 alpha%s+online%s+0%s+%d+%.%d%%%s+[_.,%-~=+#]+%s", "orch monit | 3 processes" },
      "the table in ASCII", { "[\128-\255]" })
    p:keys("q")
    assert.are.equal(0, p:wait_exit())
  end)

  for _, way in ipairs({
    { "Ctrl-C", function(pn) pn:keys("C-c") end, 0 },
    { "SIGTERM", function(pn) uv.kill(tonumber(H.read(pn.dir .. "/monit.pid")), "sigterm") end, 143 },
    { "SIGHUP", function(pn) uv.kill(tonumber(H.read(pn.dir .. "/monit.pid")), "sighup") end, 129 },
  }) do
    it("restores the terminal when it ends by " .. way[1], function()
      start_apps()
      p = pane(dir, home)
      p:wait_screen("gamma%s+stopped")
      way[2](p)
      assert.are.equal(way[3], p:wait_exit())
      assert_restored(p)
    end)
  end

  it("gives the terminal back to the shell on Ctrl-Z and takes it again on fg", function()
    start_apps()
    p = pane(dir, home, { interactive = true })
    local function screen_modes() return p:tmux("display", "-p", "-t", "m", "#{alternate_on} #{cursor_flag}") end
    p:keys("-l", p:command())
    p:keys("Enter")
    p:wait_screen("gamma%s+stopped")
    p:keys("C-z")
    local pid = tonumber(H.read(dir .. "/monit.pid"))
    H.wait_until(function() return (H.read("/proc/" .. pid .. "/stat") or ""):match("^%d+ %(.-%) T") end, 20000,
      "orch monit to be stopped")
    H.wait_until(function() return screen_modes() == "0 1\n" end, 20000, "the alternate screen off, the cursor shown")
    p:keys("-l", "fg")
    p:keys("Enter")
    p:wait_all({ "gamma%s+stopped", "\n▶%s+0 alpha%s+online", "\n↑↓ select" }, "the screen drawn again")
    assert.are.equal("1 0\n", screen_modes())
    p:keys("q")
    H.wait_until(function() return not H.alive(pid) end, 20000, "orch monit to exit")
    H.wait_until(function() return screen_modes() == "0 1\n" end, 20000, "the alternate screen off, the cursor shown")
  end)

  it("restores the terminal, then prints the traceback, when its own Lua code fails", function()
    start_apps()
    -- monitview.lua as built, failing on its fifth frame (inside a callback)
    local src = assert(H.read(H.root .. "/lua/orch/monitview.lua"))
    local n
    src, n = src:gsub("\nreturn M\n$", [[

local build, frames = M.build, 0
function M.build(...)
  frames = frames + 1
  if frames == 5 then error("injected failure") end
  return build(...)
end
return M
]])
    assert.are.equal(1, n)
    uv.fs_mkdir(dir .. "/lua", tonumber("755", 8))
    uv.fs_mkdir(dir .. "/lua/orch", tonumber("755", 8))
    H.write(dir .. "/lua/orch/monitview.lua", src)
    p = pane(dir, home, { env = { ORCH_LUA_DIR = dir .. "/lua" } })
    assert.are.equal(1, p:wait_exit())
    assert_restored(p, true)
    local err = H.read(dir .. "/stderr")
    assert.matches("^orch monit: .-injected failure\nstack traceback:\n", err)
  end)

  it("refuses to run without a terminal, saying so", function()
    local code, out, err = H.orch_sync({ "monit" }, { home = home })
    assert.are.equal(1, code)
    assert.are.equal("", out)
    assert.are.equal("orch monit: needs a terminal (stdin and stdout)\n", err)
  end)

  it("says so when the daemon goes away, and still quits cleanly", function()
    start_apps()
    p = pane(dir, home)
    p:wait_screen("gamma%s+stopped")
    assert.are.equal(0, (H.orch_sync({ "kill" }, { home = home })))
    p:wait_screen("orch is not reachable", "monit noticing the daemon is gone")
    p:keys("q")
    assert.are.equal(0, p:wait_exit())
    assert_restored(p)
  end)
end)
