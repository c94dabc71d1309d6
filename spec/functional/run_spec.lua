-- `orch run FILE`: the real binary supervising real processes.
local H = require("helpers")
local uv = require("luv")

local apps = H.root .. "/spec/fixtures/apps"

describe("orch run", function()
  local dir, home, out

  before_each(function()
    dir = H.tmpdir()
    home = dir .. "/home"
    out = dir .. "/out"
    uv.fs_mkdir(out, 493)
  end)

  after_each(function()
    H.cleanup()
    H.rmdir(dir)
  end)

  local function ecosystem(body) return H.ecosystem(dir, body) end

  local function pid_file(i)
    local s = H.read(out .. "/pid." .. i)
    if not s then return nil end
    local pid, node_instance, orch_instance, greeting = s:match("^(%d+) (%S*) (%S*) ?(%S*)")
    if not pid then return nil end -- being written
    return { pid = tonumber(pid), node = node_instance, orch = orch_instance, greeting = greeting }
  end

  it("starts N instances with distinct pids and instance ids", function()
    local file = ecosystem(string.format([[
      { name = "web", script = %q, instances = 3, env = { OUT = %q, GREETING = "hi" } },
    ]], apps .. "/sleeper.sh", out))
    local o = H.orch({ "run", file }, { home = home })
    local seen = H.wait_until(function()
      local a, b, c = pid_file(0), pid_file(1), pid_file(2)
      return a and b and c and { a, b, c } -- all three ({nil, x, y} may have length 3)
    end, 5000, "three pid files")
    local pids = {}
    for i = 0, 2 do
      local p = seen[i + 1]
      assert.are.equal(tostring(i), p.node)
      assert.are.equal(tostring(i), p.orch)
      assert.are.equal("hi", p.greeting)
      assert.is_nil(pids[p.pid], "pids must be distinct")
      pids[p.pid] = true
      assert.is_true(H.alive(p.pid))
      o:wait_output("web:" .. i .. " online, pid " .. p.pid)
    end
  end)

  it("replaces an instance killed with SIGKILL and leaves the others alone", function()
    local file = ecosystem(string.format([[
      { name = "web", script = %q, instances = 3, restart_delay = 0, env = { OUT = %q } },
    ]], apps .. "/sleeper.sh", out))
    local o = H.orch({ "run", file }, { home = home })
    local before = H.wait_until(function()
      local a, b, c = pid_file(0), pid_file(1), pid_file(2)
      return a and b and c and { a, b, c } -- all three ({nil, x, y} may have length 3)
    end, 5000, "three pid files")
    for i = 0, 2 do o:wait_output("web:" .. i .. " online, pid " .. before[i + 1].pid) end

    uv.kill(before[2].pid, "sigkill")
    local after = H.wait_until(function()
      local p = pid_file(1)
      return p and p.pid ~= before[2].pid and p
    end, 5000, "a new pid for web:1")
    o:wait_output("web:1 online, pid " .. after.pid .. ", restarts 1")
    assert.is_true(H.alive(after.pid))
    assert.matches("web:1 %(pid " .. before[2].pid .. "%) killed by SIGKILL", o.err)
    -- the others: same pids, still alive, never restarted
    for _, i in ipairs({ 0, 2 }) do
      assert.are.equal(before[i + 1].pid, pid_file(i).pid)
      assert.is_true(H.alive(before[i + 1].pid))
      assert.are.equal(1, #o:online("web:" .. i))
    end
  end)

  it("marks an app that keeps failing at once errored after max_restarts", function()
    local file = ecosystem(string.format([[
      { name = "bad", script = %q, max_restarts = 3, min_uptime = 1000 },
    ]], apps .. "/fail.sh"))
    local o = H.orch({ "run", file }, { home = home })
    assert.are.equal(1, o:wait_exit(10000)) -- nothing left running, one app errored
    local runs = o:online("bad:0")
    assert.are.equal(3, #runs)
    assert.are.same({ 0, 1, 2 }, { runs[1].restarts, runs[2].restarts, runs[3].restarts })
    assert.matches("bad:0 errored: 3 unstable exits in a row", o.err)
    -- what the app wrote reached its error log, once per run
    local log = H.read(home .. "/logs/bad-error.log")
    local n = 0
    for _ in log:gmatch("failing run %d+\n") do n = n + 1 end
    assert.are.equal(3, n)
  end)

  it("lets an app's restart function decide, and falls back to the default when it fails", function()
    local file = ecosystem(string.format([[
      { name = "thrice", script = %q, min_uptime = 0,
        restart = function(proc, exit)
          if proc.restarts >= 2 then return { action = "stop", reason = "third exit, code " .. exit.code } end
          return 10
        end },
      { name = "broken", script = %q, stop_exit_codes = { 1 },
        restart = function(proc, exit) error("policy bug") end },
    ]], apps .. "/fail.sh", apps .. "/fail.sh"))
    local o = H.orch({ "run", file }, { home = home })
    assert.are.equal(0, o:wait_exit(10000)) -- both end stopped, none errored
    assert.are.equal(3, #o:online("thrice:0"))
    assert.matches("thrice:0 restarting in 10 ms %(restart 1%)", o.err)
    assert.matches("thrice:0 stopped: third exit, code 1", o.err)
    -- the failing function: logged with its traceback, the default policy applies
    assert.matches("broken:0: restart function failed, using the default policy: [^\n]*policy bug\nstack traceback", o.err)
    assert.matches("broken:0 stopped: exit code 1 is in stop_exit_codes", o.err)
  end)

  it("reports an exec failure with the errno text", function()
    local plain = H.write(dir .. "/not-executable", "#!/bin/sh\necho hi\n", tonumber("644", 8))
    local file = ecosystem(string.format([[
      { name = "noexec", script = %q },
      { name = "nointerp", script = %q, interpreter = %q },
    ]], plain, apps .. "/sleeper.sh", dir .. "/no/such/interpreter"))
    local o = H.orch({ "run", file }, { home = home })
    assert.are.equal(1, o:wait_exit(5000))
    assert.matches("noexec:0 failed to start: cannot exec " .. plain:gsub("%p", "%%%0")
      .. ": EACCES: permission denied", o.err)
    assert.matches("nointerp:0 failed to start: cannot exec " .. (dir .. "/no/such/interpreter"):gsub("%p", "%%%0")
      .. ": ENOENT: no such file or directory", o.err)
    assert.matches("noexec:0 errored", o.err)
    assert.are.equal(0, #o:online("noexec:0"))
  end)

  it("on SIGTERM kills a grandchild that ignores SIGINT once kill_timeout has passed", function()
    local file = ecosystem(string.format([[
      { name = "tree", script = %q, kill_timeout = 600, env = { OUT = %q } },
    ]], apps .. "/grandchild.sh", out))
    local o = H.orch({ "run", file }, { home = home })
    local gc = H.wait_until(function()
      local s = H.read(out .. "/grandchild.pid")
      return s and tonumber(s:match("%d+"))
    end, 5000, "the grandchild's pid")
    H.track(gc)
    o:wait_output("tree:0 online")
    local t0 = uv.hrtime()
    o:kill("sigterm")
    assert.are.equal(1, o:wait_exit(5000)) -- a stop that needed SIGKILL was not clean
    local elapsed = (uv.hrtime() - t0) / 1e6
    assert.is_true(elapsed >= 550, "orch exited after " .. elapsed .. " ms, before kill_timeout")
    assert.matches("still running after kill_timeout 600 ms, sending SIGKILL", o.err)
    H.wait_until(function() return not H.exists(gc) end, 2000, "the grandchild to be gone")
  end)

  it("writes exactly the bytes an app wrote to its log files", function()
    local file = ecosystem(string.format([[
      { name = "bytes", script = %q, autorestart = false, env = { OUT = %q } },
    ]], apps .. "/bytes.sh", out))
    local o = H.orch({ "run", file }, { home = home })
    assert.are.equal(0, o:wait_exit(10000))
    local expected = H.read(out .. "/expected.out")
    assert.are.equal(300000, #expected)
    local got = H.read(home .. "/logs/bytes-out.log")
    assert.is_true(got == expected, "out log differs: " .. #got .. " bytes")
    assert.are.equal("first\nsecond\nno newline at the end", H.read(home .. "/logs/bytes-error.log"))
    -- and on the terminal, line by line with the prefix
    assert.matches("bytes:0 | first\nbytes:0 | second\nbytes:0 | no newline at the end\n", o.err, 1, true)
  end)

  it("reaps orphans it inherits: no zombie is left", function()
    local file = ecosystem(string.format([[
      { name = "orphans", script = %q, env = { OUT = %q } },
    ]], apps .. "/orphan.sh", out))
    local o = H.orch({ "run", file }, { home = home })
    local orphan = H.wait_until(function()
      local s = H.read(out .. "/orphan.pid")
      return s and tonumber(s:match("%d+"))
    end, 5000, "the orphan's pid")
    -- it was re-parented to orch, exits after 0.3 s, and must then be reaped
    H.wait_until(function() return not H.exists(orphan) end, 5000, "the orphan to be reaped")
    local zombies = H.sh("ps -o pid=,stat= --ppid " .. o.pid .. " | awk '$2 ~ /^Z/'")
    assert.are.equal("", zombies)
  end)

  it("runs a Lua app with orch's own runtime and a JSON ecosystem", function()
    H.write(dir .. "/app.lua", [[
      local uv = require("luv")
      local out = os.getenv("OUT")
      local f = assert(io.open(out .. "/lua.txt", "w"))
      f:write(arg[1], " ", os.getenv("ORCH_INSTANCE"), "\n")
      f:close()
      local t = uv.new_timer()
      t:start(100000, 0, function() end)
    ]])
    local file = H.write(dir .. "/ecosystem.json", string.format([[
      {"apps": [{"name": "luaapp", "script": "app.lua", "args": ["hello"], "env": {"OUT": %q}}]}
    ]], out))
    local o = H.orch({ "run", file }, { home = home })
    -- the whole line: the file exists, empty, from the app's open to its write
    H.wait_until(function() return (H.read(out .. "/lua.txt") or ""):find("\n") end, 5000, "the Lua app's output")
    assert.are.equal("hello 0\n", H.read(out .. "/lua.txt"))
    o:wait_output("luaapp:0 online")
    o:kill("sigint")
    assert.are.equal(0, o:wait_exit(5000))
    assert.matches("luaapp:0 stopped", o.err)
  end)

  -- pm2-runtime's form (pm2-runtime app.js -i 4): a script with start's
  -- options rather than a config file.
  it("runs a script with start's options in the foreground, and ends when it has ended", function()
    H.write(dir .. "/job.sh", '#!/bin/sh\necho "args:$1 i:$ORCH_INSTANCE"\nsleep 0.3\n', tonumber("755", 8))
    local o = H.orch({ "run", "job.sh", "-i", "2", "--name", "jobs", "--no-autorestart", "--", "hello" },
      { home = home, cwd = dir })
    o:wait_output("jobs:0 | args:hello i:0", 15000)
    o:wait_output("jobs:1 | args:hello i:1", 15000)
    assert.are.equal(0, o:wait_exit(20000))
    -- a flag that is no start option still says which it meant
    local code, _, err = H.orch_sync({ "run", "job.sh", "--max-memory-restat", "1G" }, { home = home, cwd = dir })
    assert.are.equal(2, code)
    assert.matches("did you mean '%-%-max%-memory%-restart'", err)
  end)

  it("refuses a bad ecosystem with FILE:LINE and exit status 2, starting nothing", function()
    local file = ecosystem(string.format([[
      { name = "ok", script = %q, env = { OUT = %q } },
      { name = "web", script = %q,
        instnces = 2 },
    ]], apps .. "/sleeper.sh", out, apps .. "/sleeper.sh"))
    local code, _, err = H.orch_sync({ "run", file }, { home = home })
    assert.are.equal(2, code)
    assert.matches(file:gsub("%p", "%%%0") .. ":4: app 'web': option 'instnces': unknown option %(did you mean 'instances'%?%)", err)
    assert.is_nil(H.read(out .. "/pid.0"))
  end)

  it("rejects unknown verbs and options with a suggestion and status 2", function()
    local code, _, err = H.orch_sync({ "rnu", "x" }, { home = home })
    assert.are.equal(2, code)
    assert.matches("unknown verb 'rnu' %(did you mean 'run'%?%)", err)
    code, _, err = H.orch_sync({ "run", "--evn", "prod", "x.lua" }, { home = home })
    assert.are.equal(2, code)
    assert.matches("unknown option '%-%-evn' %(did you mean '%-%-env'%?%)", err)
  end)
end)
