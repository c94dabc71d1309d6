-- `orch run FILE` as a container's init: PID 1 of a fresh PID namespace
-- (unshare --pid --fork --mount-proc; the specs run as root), signalled from
-- outside it as `docker stop` and the kubelet do.
local H = require("helpers")
local uv = require("luv")

local apps = H.root .. "/spec/fixtures/apps"

-- The namespace a process is in (nil once it is gone).
local function pid_ns(pid)
  return uv.fs_readlink("/proc/" .. pid .. "/ns/pid")
end

-- Every process of namespace ns: { outer = pid here, inner = pid there, state = "S" }.
local function members(ns)
  local found = {}
  for entry in uv.fs_scandir_next, uv.fs_scandir("/proc") do
    local pid = tonumber(entry)
    if pid and pid_ns(pid) == ns then
      local status = H.read("/proc/" .. pid .. "/status") or ""
      local inner = tonumber(status:match("NSpid:%s+%d+%s+(%d+)"))
      local state = status:match("State:%s+(%a)")
      if inner and state then found[#found + 1] = { outer = pid, inner = inner, state = state } end
    end
  end
  return found
end

local function outer_pid(ns, inner)
  for _, m in ipairs(members(ns)) do
    if m.inner == inner then return m.outer end
  end
end

local function zombies(ns)
  local z = {}
  for _, m in ipairs(members(ns)) do
    if m.state == "Z" then z[#z + 1] = m.inner end
  end
  return z
end

describe("orch run as PID 1", function()
  local dir, home, out, init

  before_each(function()
    dir = H.tmpdir()
    home = dir .. "/home"
    out = dir .. "/out"
    uv.fs_mkdir(out, 493)
    init = nil
  end)

  after_each(function()
    -- SIGKILL to PID 1 ends the whole namespace (the kernel kills the rest);
    -- --kill-child does the same if unshare goes first.
    if init and H.exists(init) then pcall(uv.kill, init, "sigkill") end
    H.cleanup()
    H.rmdir(dir)
  end)

  -- Starts orch run FILE as PID 1 of a new namespace. Returns the unshare
  -- process (its exit status is orch's) and orch's pid as seen from here.
  -- opts.net: in a network namespace of its own too (only its loopback, up),
  -- where fixed ports collide with nothing; nsenter reaches it.
  local function run_as_init(file, env, opts)
    local args = { "--pid", "--kill-child", "--mount-proc", H.bin, "run", file }
    if opts and opts.net then
      args = { "--pid", "--kill-child", "--mount-proc", "--net", "sh", "-c",
               'ip link set lo up && exec "$0" run "$1"', H.bin, file }
    end
    local o = H.orch(args, { program = "unshare", home = home, env = env })
    init = H.wait_until(function()
      local kids = H.read("/proc/" .. o.pid .. "/task/" .. o.pid .. "/children") or ""
      local pid = tonumber(kids:match("%d+"))
      -- unshare's child, once it is orch (exec'd) in its own namespace
      return pid and pid_ns(pid) ~= pid_ns(o.pid) and (H.read("/proc/" .. pid .. "/comm") or ""):match("^orch")
        and pid
    end, 10000, "orch to start as PID 1")
    local status = H.read("/proc/" .. init .. "/status")
    assert.matches("NSpid:%s+" .. init .. "%s+1\n", status)
    return o, init
  end

  local function ecosystem(body) return H.ecosystem(dir, body) end

  it("reaps the orphans re-parented to it: no zombie is left in the namespace", function()
    local file = ecosystem(string.format([[
      { name = "leaver", script = %q, env = { OUT = %q } },
    ]], apps .. "/pid1_orphan.sh", out))
    assert(H.sh("mkfifo " .. out .. "/release") == "")
    local o, pid1 = run_as_init(file)
    o:wait_output("leaver:0 online")
    local ns = pid_ns(pid1)
    local inner = H.wait_until(function()
      local s = H.read(out .. "/orphan.pid")
      return s and tonumber(s:match("%d+"))
    end, 10000, "the orphan's pid")
    local orphan = outer_pid(ns, inner)
    assert.is_number(orphan)
    -- its parent (the subshell) is gone: the orphan is orch's now
    H.wait_until(function()
      local st = H.read("/proc/" .. orphan .. "/status") or ""
      return st:match("PPid:%s+(%d+)") == tostring(pid1)
    end, 10000, "the orphan to be re-parented to PID 1")
    -- let it exit (the FIFO's reader is there: a non-blocking open succeeds)
    local fd = H.wait_until(function() return uv.fs_open(out .. "/release", "w", 0) end, 10000, "the FIFO's reader")
    uv.fs_write(fd, "go\n")
    uv.fs_close(fd)
    H.wait_until(function() return not H.exists(orphan) end, 10000, "the orphan to be reaped")
    assert.are.same({}, zombies(ns))
    assert.is_true(H.alive(pid1))
  end)

  it("stops every app gracefully on SIGTERM and exits 0 within the grace period", function()
    local file = ecosystem(string.format([[
      { name = "web", script = %q, instances = 2, kill_signal = "SIGTERM", kill_timeout = 20000,
        env = { OUT = %q } },
      { name = "worker", script = %q, kill_timeout = 20000, env = { OUT = %q .. "/w" } },
    ]], apps .. "/graceful.sh", out, apps .. "/graceful.sh", out))
    uv.fs_mkdir(out .. "/w", 493)
    local o, pid1 = run_as_init(file)
    for _, label in ipairs({ "web:0", "web:1", "worker:0" }) do o:wait_output(label .. " online") end
    -- each writes its pid once its traps are set
    for _, f in ipairs({ "/pid.0", "/pid.1", "/w/pid.0" }) do
      H.wait_until(function() return H.read(out .. f) end, 10000, out .. f)
    end
    local t0 = uv.hrtime()
    uv.kill(pid1, "sigterm") -- from outside the namespace, as docker stop does
    assert.are.equal(0, o:wait_exit(15000))
    local elapsed = (uv.hrtime() - t0) / 1e6
    -- each app got its kill_signal and exited by itself: no SIGKILL, long before kill_timeout
    assert.are.equal("TERM\n", H.read(out .. "/stopped.0"))
    assert.are.equal("TERM\n", H.read(out .. "/stopped.1"))
    assert.are.equal("INT\n", H.read(out .. "/w/stopped.0")) -- kill_signal's default, as PM2's
    assert.is_nil(o.err:find("sending SIGKILL", 1, true), o.err)
    assert.is_true(elapsed < 15000, "orch took " .. elapsed .. " ms")
    assert.matches("received SIGTERM, stopping all apps", o.err)
  end)

  it("exits non-zero when an app had to be killed after kill_timeout", function()
    local file = ecosystem(string.format([[
      { name = "ok", script = %q, kill_signal = "SIGTERM", env = { OUT = %q } },
      { name = "stubborn", script = %q, kill_signal = "SIGTERM", kill_timeout = 500, env = { OUT = %q } },
    ]], apps .. "/graceful.sh", out, apps .. "/stubborn.sh", out))
    local o, pid1 = run_as_init(file)
    o:wait_output("ok:0 online")
    o:wait_output("stubborn:0 online")
    H.wait_until(function() return H.read(out .. "/stubborn.pid") end, 10000, "the stubborn app's pid")
    H.wait_until(function() return H.read(out .. "/pid.0") end, 10000, "the graceful app's pid")
    local t0 = uv.hrtime()
    uv.kill(pid1, "sigterm")
    assert.are.equal(1, o:wait_exit(15000))
    local elapsed = (uv.hrtime() - t0) / 1e6
    assert.is_true(elapsed >= 450, "orch exited after " .. elapsed .. " ms, before kill_timeout")
    assert.matches("stubborn:0: still running after kill_timeout 500 ms, sending SIGKILL", o.err, 1, true)
    assert.matches("stubborn:0 stopped: killed by SIGKILL", o.err, 1, true)
    assert.matches("stubborn:0 did not stop by itself (SIGKILL after kill_timeout), exit status 1", o.err, 1, true)
    assert.are.equal("TERM\n", H.read(out .. "/stopped.0"))
  end)

  it("acts on a SIGTERM that arrives while the ecosystem file is still being read", function()
    H.need("node")
    -- A JavaScript config is evaluated by node before anything starts; this
    -- one says it has begun, then waits for the FIFO $OUT/release.
    assert(H.sh("mkfifo " .. out .. "/release") == "")
    local file = H.write(dir .. "/ecosystem.config.js", string.format([[
      const fs = require("fs");
      fs.writeFileSync(%q, "");
      fs.readFileSync(%q);
      module.exports = { apps: [{ name: "never", script: %q, env: { OUT: %q } }] };
    ]], out .. "/loading", out .. "/release", apps .. "/graceful.sh", out))
    local o, pid1 = run_as_init(file)
    H.wait_until(function() return H.read(out .. "/loading") end, 15000, "node to evaluate the config")
    uv.kill(pid1, "sigterm")
    -- (the kernel queues the signal now, or drops it now: PID 1 gets only
    -- the signals it has a handler for)
    local fd = H.wait_until(function() return uv.fs_open(out .. "/release", "w", 0) end, 10000, "node to read the FIFO")
    uv.fs_close(fd)
    assert.are.equal(0, o:wait_exit(15000))
    assert.matches("received SIGTERM", o.err, 1, true)
    assert.is_nil(o.err:find("never:0 online", 1, true), o.err)
  end)

  it("runs examples/container's ecosystem: its app and the probes answer inside the namespace, SIGTERM stops all",
    function()
    H.need("nsenter", "curl")
    -- the image's ORCH_HTTP (its Dockerfile), the manifest's probe paths
    local addr = H.read(H.root .. "/examples/container/Dockerfile"):match("\nENV ORCH_HTTP=(%S+)")
    local port = assert(tonumber(addr:match(":(%d+)$")))
    local o, pid1 = run_as_init(H.root .. "/examples/container/app/ecosystem.lua", { ORCH_HTTP = addr }, { net = true })
    local function get(path)
      -- status, then body
      local answer = H.sh(string.format("nsenter -t %d -n curl -sS --max-time 10 -w '\n%%{http_code}' http://127.0.0.1:%d%s",
        pid1, port, path))
      local body, status = answer:match("^(.*)\n(%d+)$")
      return tonumber(status), body
    end
    o:wait_output("HTTP endpoint on", 20000)
    local status, body = get("/healthz")
    assert.are.equal(200, status, body)
    -- ready once web passed its first health check (wait_healthy) and worker runs
    H.wait_until(function() return get("/readyz") == 200 end, 20000, "/readyz to answer 200")
    o:wait_output("web:0 online")
    body = H.sh(string.format("nsenter -t %d -n curl -fsS --max-time 10 http://127.0.0.1:8080/", pid1))
    assert.matches("^hello from .+, instance 0\n$", body)
    -- an app down: not ready (the Service sends no traffic), still alive
    local pid = tonumber(o.err:match("web:0 online, pid (%d+)"))
    uv.kill(outer_pid(pid_ns(pid1), pid), "sigkill")
    H.wait_until(function() return get("/readyz") == 503 end, 20000, "/readyz to answer 503")
    assert.are.equal(200, (get("/healthz")))
    H.wait_until(function() return get("/readyz") == 200 end, 20000, "/readyz to answer 200 again")
    uv.kill(pid1, "sigterm")
    assert.are.equal(0, o:wait_exit(15000))
    assert.matches("web:0 stopped", o.err, 1, true)
    assert.matches("worker:0 stopped", o.err, 1, true)
    assert.is_nil(o.err:find("sending SIGKILL", 1, true), o.err)
  end)
end)

-- The files of examples/container, checked where Docker and Kubernetes are
-- not at hand: the Dockerfile's instructions, the manifest as YAML, and
-- that both name the same port and paths.
describe("examples/container", function()
  local base = H.root .. "/examples/container/"

  -- The Dockerfile's instructions: { { op = "FROM", arg = "debian:12 AS build" }, ... }
  local function dockerfile()
    local text = assert(H.read(base .. "Dockerfile")):gsub("\\\n", " ")
    local list = {}
    for line in text:gmatch("[^\n]+") do
      local op, arg = line:match("^(%u+)%s+(.-)%s*$")
      if op then list[#list + 1] = { op = op, arg = arg } end
    end
    return list
  end

  local function all(list, op)
    local found = {}
    for _, i in ipairs(list) do
      if i.op == op then found[#found + 1] = i.arg end
    end
    return found
  end

  local function orch_http(list)
    for _, env in ipairs(all(list, "ENV")) do
      local v = env:match("^ORCH_HTTP=(%S+)$")
      if v then return v end
    end
  end

  it("has a Dockerfile on Debian 12 that runs orch run as PID 1 and stops it with SIGTERM", function()
    local list = dockerfile()
    local froms = all(list, "FROM")
    assert.are.equal("debian:12 AS build", froms[1])
    assert.matches("^debian:12", froms[#froms])
    -- exec form: orch itself is PID 1, no shell in between
    assert.are.same({ "orch", "run" }, require("cjson").decode(all(list, "ENTRYPOINT")[1]))
    local cmd = require("cjson").decode(all(list, "CMD")[#all(list, "CMD")])
    assert.are.same({ "/app/ecosystem.lua" }, cmd)
    assert.are.same({ "SIGTERM" }, all(list, "STOPSIGNAL"))
    assert.truthy(orch_http(list):match("^0%.0%.0%.0:%d+$"), "ORCH_HTTP must listen where the kubelet reaches it")
    -- what it copies exists; /app is examples/container/app
    for _, c in ipairs(all(list, "COPY")) do
      if not c:match("^%-%-from=") then
        local src = c:match("^(%S+)")
        assert.truthy(uv.fs_stat(H.root .. "/" .. src), "COPY " .. src)
      end
    end
    assert.truthy(uv.fs_stat(base .. "app/ecosystem.lua"))
    -- the build stage installs setup.sh's packages (a subset: not the test suite's)
    local setup = assert(H.read(H.root .. "/setup.sh"))
    local known = {}
    for p in setup:match('PACKAGES="([^"]*)"'):gmatch("%S+") do known[p] = true end
    local build_run = all(list, "RUN")[1]
    local pkgs = build_run:match("%-%-no%-install%-recommends%s+(.-)%s*&&")
    assert.truthy(pkgs, build_run)
    for p in pkgs:gmatch("%S+") do assert.truthy(known[p], p .. " is not in setup.sh's list") end
  end)

  it("has a Kubernetes manifest whose probes ask /healthz and /readyz on the port ORCH_HTTP names", function()
    local lyaml = require("lyaml")
    local docs = lyaml.load(assert(H.read(base .. "deployment.yaml")), { all = true })
    local deployment
    for _, d in ipairs(docs) do
      if d.kind == "Deployment" then deployment = d end
    end
    assert.truthy(deployment, "a Deployment")
    local pod = deployment.spec.template.spec
    local c = pod.containers[1]
    local env = {}
    for _, e in ipairs(c.env or {}) do env[e.name] = e.value end
    local addr = orch_http(dockerfile())
    assert.are.equal(addr, env.ORCH_HTTP)
    local port = tonumber(addr:match(":(%d+)$"))
    local named = {}
    for _, p in ipairs(c.ports) do named[p.name] = p.containerPort end
    assert.are.equal("/healthz", c.livenessProbe.httpGet.path)
    assert.are.equal("/readyz", c.readinessProbe.httpGet.path)
    for _, probe in ipairs({ c.livenessProbe, c.readinessProbe, c.startupProbe }) do
      local p = probe.httpGet.port
      assert.are.equal(port, type(p) == "number" and p or named[p])
    end
    -- the grace period leaves room for every app's kill_timeout
    local eco = dofile(base .. "app/ecosystem.lua")
    for _, app in ipairs(eco.apps) do
      local secs = tonumber(tostring(app.kill_timeout or "1.6s"):match("^([%d.]+)s$"))
      assert.truthy(secs and secs + 5 <= pod.terminationGracePeriodSeconds, app.name)
    end
    -- and the README says the same
    local readme = assert(H.read(base .. "README.md"))
    assert.truthy(readme:find(addr, 1, true), "README names " .. addr)
    assert.truthy(readme:find("/healthz", 1, true) and readme:find("/readyz", 1, true))
  end)
end)
