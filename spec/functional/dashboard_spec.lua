-- The dashboard (orch.dashboard on the HTTP endpoint, docs/http.md) in a real
-- headless Chromium, driven through selenium by spec/fixtures/browser.py:
-- the table shows the apps, a click restarts one (orch jlist agrees), the
-- page follows a crash, the logs of a process show. It leaves a screenshot
-- of the page; with ORCH_SCREENSHOTS=1 in docs/dashboard.png (the README's).
local H = require("helpers")
local uv = require("luv")
local cjson = require("cjson")

local B = require("browser")

-- The table as the page shows it.
local ROWS = [[
  return [...document.querySelectorAll('#procs tr')].map((tr) => ({
    id: Number(tr.dataset.id),
    name: tr.querySelector('[data-k=name]').textContent,
    status: tr.querySelector('[data-k=status] .status').textContent,
    pid: tr.querySelector('[data-k=pid]').textContent,
    restarts: tr.querySelector('[data-k=restarts]').textContent,
  }))]]

local function row_of(rows, id)
  for _, r in ipairs(rows) do
    if r.id == id then return r end
  end
end

-- orch jlist: every process in PM2's shape (JSON without --json, as PM2's).
local function jlist(home)
  local code, out, err = H.orch_sync({ "jlist" }, { home = home })
  assert(code == 0, "orch jlist failed: " .. err)
  return cjson.decode(out)
end

local function jproc(home, id)
  for _, p in ipairs(jlist(home)) do
    if p.pm_id == id then return p end
  end
end

describe("the dashboard", function()
  local dir, home, orch, browser, url, port

  lazy_setup(function()
    dir = H.tmpdir()
    home = dir .. "/home"
    local app = H.write(dir .. "/app.sh", [[
#!/bin/sh
echo "$ORCH_APP_NAME:$ORCH_INSTANCE up, pid $$"
exec sleep 1000
]], 493)
    local file = H.ecosystem(dir, string.format([[
      { name = "api", script = %q, instances = 2, restart_delay = 0 },
      { name = "worker", script = %q, restart_delay = 0 },
      { name = "migrate", script = "true", autorestart = false },
    ]], app, app))
    orch = H.orch({ "run", file, "--http", "127.0.0.1:0" }, { home = home })
    for _, label in ipairs({ "api:0", "api:1", "worker:0" }) do orch:wait_output(label .. " online", 20000) end
    orch:wait_output("migrate:0 stopped", 20000)
    local ping = H.json(home, { "ping" })
    assert(ping and ping.http and ping.http.address, "orch ping shows no HTTP address:\n" .. orch.err)
    url = "http://" .. ping.http.address .. "/"
    port = tonumber(ping.http.address:match(":(%d+)$"))
    browser = B.start(dir)
    browser:call({ cmd = "open", url = url })
  end)

  lazy_teardown(function()
    if browser then browser:quit() end
    H.cleanup()
    H.rmdir(dir)
  end)

  it("serves a process's log from an offset with the token only (GET /api/logs)", function()
    local C = require("httpclient")
    local token = assert(H.read(home .. "/http.token")):match("%x+")
    local auth = { "Authorization: Bearer " .. token }
    local function logs(query, headers)
      local r = C.request(port, "GET", "/api/logs?" .. query, headers)
      local ok, v = pcall(cjson.decode, r.body)
      return r.status, ok and v or r.body
    end
    assert.are.equal(401, (logs("id=0")))
    local status, v = logs("id=0&stream=out", auth)
    assert.are.equal(200, status)
    local first = v.result
    assert.matches("api:0 up, pid %d+\n$", first.text)
    assert.are.equal(home .. "/logs/api-out-0.log", first.path)
    assert.are.equal(#H.read(first.path), first.size)
    -- from the end: nothing new; from 0: the whole file; past the end (flushed): from its start again
    assert.are.equal("", select(2, logs("id=0&from=" .. first.size, auth)).result.text)
    assert.are.equal(H.read(first.path), select(2, logs("id=0&from=0", auth)).result.text)
    local past = select(2, logs("id=0&from=" .. (first.size + 100), auth)).result
    assert.is_true(past.reset)
    assert.are.equal(H.read(first.path), past.text)
    assert.are.equal(0, select(2, logs("id=0&stream=err", auth)).result.size)
    assert.are.equal(404, (logs("id=42", auth)))
    local bad_status, bad = logs("id=0&stream=both", auth)
    assert.are.equal(400, bad_status)
    assert.matches("stream must be out or err", bad.error.message, 1, true)
    assert.are.equal(400, (logs("id=0&from=-1", auth)))
  end)

  it("shows every process with its status, pid and restarts, and goes live", function()
    browser:wait("return document.querySelector('#live').textContent === 'live'", 20000, "the event stream")
    local rows = browser:wait("const r = (() => {" .. ROWS .. "})(); return r.length === 4 && r", 20000,
      "four rows")
    local procs = jlist(home)
    assert.are.equal(4, #procs)
    for _, p in ipairs(procs) do
      local r = row_of(rows, p.pm_id)
      assert.is_table(r, "no row for id " .. p.pm_id)
      assert.are.equal(p.name .. ":" .. p.pm2_env.NODE_APP_INSTANCE, r.name)
      if p.name == "migrate" then
        assert.are.equal("stopped", r.status)
        assert.are.equal("–", r.pid)
      else
        assert.are.equal("online", r.status)
        assert.are.equal(tostring(p.pid), r.pid)
      end
      assert.are.equal(tostring(p.pm2_env.restart_time), r.restarts)
    end
  end)

  it("restarts a process when its Restart button is clicked, asking for the token once", function()
    local before = jproc(home, 2)
    assert.are.equal("worker", before.name)
    browser:click('tr[data-id="2"] button[data-action="restart"]')
    -- no token in this tab yet: the dialog asks for it
    browser:wait("return document.querySelector('#token-dialog').open", 10000, "the token dialog")
    browser:call({ cmd = "type", css = "#token-input", text = assert(H.read(home .. "/http.token")):match("%x+") })
    browser:click("#token-save")
    local after = H.wait_until(function()
      local p = jproc(home, 2)
      return p and p.pm2_env.restart_time == before.pm2_env.restart_time + 1 and p.pid ~= before.pid
        and p.pm2_env.status == "online" and p
    end, 20000, "orch jlist to show worker restarted")
    -- the page follows: the new pid, one restart
    browser:wait(string.format([[const r = document.querySelector('tr[data-id="2"]');
      return r.querySelector('[data-k=pid]').textContent === '%d' && r.querySelector('[data-k=restarts]').textContent === '1'
        && r.querySelector('.status').textContent === 'online']], after.pid), 20000, "the row to show the new pid")
    assert.is_true(browser:eval("return sessionStorage.getItem('orch.token') !== null"))
    -- a second click needs no token: kept in sessionStorage
    browser:click('tr[data-id="2"] button[data-action="restart"]')
    H.wait_until(function()
      local p = jproc(home, 2)
      return p and p.pm2_env.restart_time == before.pm2_env.restart_time + 2 and p.pm2_env.status == "online"
    end, 20000, "a second restart")
    assert.is_false(browser:eval("return document.querySelector('#token-dialog').open"))
  end)

  it("follows a crash: the exit in the events, the new pid and the restart in the table", function()
    local before = jproc(home, 0)
    assert.are.equal("api", before.name)
    uv.kill(before.pid, "sigkill")
    local after = H.wait_until(function()
      local p = jproc(home, 0)
      return p and p.pid ~= before.pid and p.pm2_env.status == "online" and p
    end, 20000, "api:0 to be restarted")
    browser:wait(string.format([[const r = document.querySelector('tr[data-id="0"]');
      return r.querySelector('[data-k=pid]').textContent === '%d' && r.querySelector('[data-k=restarts]').textContent === '%d']],
      after.pid, after.pm2_env.restart_time), 20000, "the row to show the restarted api:0")
    local feed = browser:wait([[return [...document.querySelectorAll('#events li')]
      .map((li) => li.textContent).find((t) => t.includes('api:0') && t.includes('killed by SIGKILL'))]], 20000,
      "the crash in the events")
    assert.matches("exit", feed)
  end)

  it("shows the logs of the process clicked, and stops one with its Stop button", function()
    browser:click('tr[data-id="1"] td[data-k="name"]')
    local text = browser:wait([[const t = document.querySelector('#log').textContent;
      return t.includes('api:1 up') && t]], 20000, "api:1's log")
    assert.matches("api:1 up, pid %d+", text)
    assert.matches("api:1", browser:eval("return document.querySelector('#log-title').textContent"))
    browser:click('tr[data-id="3"] td[data-k="name"]') -- a screenshot with the events of a stop
    browser:click('tr[data-id="1"] button[data-action="stop"]')
    H.wait_until(function()
      local p = jproc(home, 1)
      return p and p.pm2_env.status == "stopped"
    end, 20000, "api:1 to be stopped")
    browser:wait([[return document.querySelector('tr[data-id="1"] .status').textContent === 'stopped']], 20000)
    browser:click('tr[data-id="0"] td[data-k="name"]')
    browser:wait("return document.querySelector('#log').textContent.includes('api:0 up')", 20000, "api:0's log")
    local shot = os.getenv("ORCH_SCREENSHOTS") == "1" and (H.root .. "/docs/dashboard.png") or (dir .. "/dashboard.png")
    browser:eval("document.querySelector('#toast').classList.remove('show')") -- the stop's "done"
    browser:wait("return getComputedStyle(document.querySelector('#toast')).opacity === '0'", 5000)
    assert.is_true(browser:call({ cmd = "screenshot", path = shot }))
    assert.are.equal("\137PNG", H.read(shot):sub(1, 4))
  end)
end)
