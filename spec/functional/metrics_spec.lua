-- /metrics as Prometheus takes it: promtool's linter passes on what orch
-- serves, and a real Prometheus (Debian's package, on a temporary
-- directory and a port of 127.0.0.1) scrapes orch and answers queries for
-- its series.
local H = require("helpers")
local C = require("httpclient")
local uv = require("luv")
local cjson = require("cjson")

local installed = H.sh("command -v prometheus promtool") ~= ""
-- Skipped only where Debian's package cannot be had; ./setup.sh installs it.
local installable = installed or H.sh("apt-cache show prometheus 2>/dev/null | head -1") ~= ""

describe("/metrics", function()
  if not installed and not installable then
    pending("prometheus cannot be installed here (no Debian package 'prometheus'): these specs need it")
    return
  end
  H.need("prometheus", "promtool", "curl")
  local dir, home
  H.each_test(function(d, h) dir, home = d, h end)

  local function daemon()
    local r, code, err = H.json(home, { "ping" }, { env = { ORCH_HTTP = "127.0.0.1:0" } })
    assert(code == 0, err)
    return tonumber(r.http.address:match(":(%d+)$")), r.pid
  end

  local function apps()
    -- a log path with what Prometheus' text format escapes
    H.started(dir, home, string.format([[
      { name = "web", script = "/bin/sleep", args = { "1000" }, instances = 2,
        health = { exec = { "true" }, interval = 200, start_period = 100 } },
      { name = "talker", script = "/bin/sh", args = { "-c", "echo hello; exec sleep 1000" }, out_file = %q },
      { name = "quitter", script = "/bin/sh", args = { "-c", "exit 3" }, max_restarts = 2, min_uptime = 5000 },
    ]], dir .. '/say "hi"\\.log'))
    H.wait_until(function()
      for _, p in ipairs(H.json(home, { "list" })) do
        if p.name == "web" and p.status ~= "online" then return false end
        if p.name == "quitter" and p.status ~= "errored" then return false end
      end
      return true
    end, 15000, "web online and quitter errored")
  end

  it("passes promtool check metrics", function()
    local port = daemon()
    apps()
    local want = 'orch_log_written_bytes_total{app="talker",path="' .. dir .. '/say \\"hi\\"\\\\.log"} 6'
    local r
    H.wait_until(function()
      r = C.get(port, "/metrics")
      return r.body:find(want, 1, true)
    end, 10000, function() return want .. " in:\n" .. r.body end)
    assert.are.equal(200, r.status)
    assert.are.equal("text/plain; version=0.0.4; charset=utf-8", r.headers["content-type"])
    H.write(dir .. "/metrics.txt", r.body)
    local out = H.sh("promtool check metrics < " .. dir .. "/metrics.txt 2>&1; echo rc=$?")
    assert.are.equal("rc=0\n", out)
  end)

  it("shows how long the daemon's loop was busy at most since the previous scrape", function()
    local port = daemon()
    local function lag()
      local body = C.get(port, "/metrics").body
      return tonumber(body:match("\norch_daemon_loop_lag_seconds (%S+)")),
        tonumber(body:match("\norch_daemon_loop_busy_seconds_total (%S+)"))
    end
    lag()
    -- a Lua chunk that holds the loop for 1 s
    assert.are.equal(0, (H.orch_sync({ "eval", "local t = require('luv').hrtime() "
      .. "while require('luv').hrtime() - t < 1e9 do end" }, { home = home })))
    local worst, busy = lag()
    assert.is_true(worst >= 0.99 and worst < 30, "lag " .. tostring(worst))
    assert.is_true(busy >= 0.99, "busy " .. tostring(busy))
    -- since the previous scrape: the long turn is behind
    assert.is_true(lag() < 0.99)
  end)

  it("is scraped by a real Prometheus, which has the series", function()
    local port = daemon()
    apps()
    local pport = H.free_port()
    H.write(dir .. "/prometheus.yml", string.format([[
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: orch
    static_configs:
      - targets: ["127.0.0.1:%d"]
]], port))
    local stderr = uv.new_pipe(false)
    local log = ""
    local handle, pid = uv.spawn("prometheus", {
      args = { "--config.file=" .. dir .. "/prometheus.yml", "--storage.tsdb.path=" .. dir .. "/tsdb",
               "--web.listen-address=127.0.0.1:" .. pport, "--log.level=warn" },
      stdio = { nil, nil, stderr }, detached = true,
    }, function() end)
    assert(handle, pid)
    H.track(pid)
    stderr:read_start(function(_, data) if data then log = log .. data end end)
    finally(function()
      uv.kill(pid, "sigterm")
      H.wait_until(function() return not H.alive(pid) end, 10000, "prometheus to exit")
      stderr:close()
      handle:close()
    end)
    -- query(promql) -> the result vector, {metric, value = {t, "v"}}...
    local function query(q)
      local body = H.sh(string.format("curl -s --max-time 5 -G http://127.0.0.1:%d/api/v1/query --data-urlencode %s",
        pport, "'query=" .. q .. "'"))
      local ok, r = pcall(cjson.decode, body)
      return ok and type(r) == "table" and r.status == "success" and r.data.result or {}
    end
    local function value(q)
      local res = query(q)
      return #res > 0 and tonumber(res[1].value[2]) or nil
    end
    H.wait_until(function() return value('up{job="orch"}') == 1 end, 30000,
      function() return "Prometheus to scrape orch; its log:\n" .. log end)
    H.wait_until(function() return value('count(orch_process_status{app="web",status="online"} == 1)') == 2 end,
      15000, "both web instances online in Prometheus")
    assert.are.equal(1, value('orch_process_status{app="quitter",status="errored"}'))
    local quitter
    for _, p in ipairs(H.json(home, { "list" })) do if p.name == "quitter" then quitter = p end end
    assert.is_true(quitter.restarts >= 1)
    assert.are.equal(quitter.restarts, value('orch_process_restarts_total{app="quitter"}'))
    assert.are.equal(quitter.restarts, value('orch_process_restart_causes_total{app="quitter",cause="exit"}'))
    assert.are.equal(1, value('orch_process_health_status{app="web",app_instance="1",status="healthy"}'))
    assert.is_true(value('orch_process_resident_memory_bytes{app="web",app_instance="0"}') > 0)
    assert.is_true(value('orch_process_uptime_seconds{app="web",app_instance="0"}') > 0)
    assert.are.equal(6, value('orch_log_written_bytes_total{app="talker",path=~".*say .hi.[\\\\\\\\].log"}'))
    assert.is_true(value("orch_daemon_resident_memory_bytes") > 0)
    assert.is_true(value("orch_daemon_cpu_seconds_total") > 0)
    assert.are.equal(1, value('orch_info{mode="daemon"}'))
  end)
end)
