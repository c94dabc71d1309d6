-- orch repl: through a pipe (a script) and through a pseudo-terminal (the
-- line editor, history, completion), driven by spec/fixtures/pty_drive.py.
local H = require("helpers")
local uv = require("luv")
local cjson = require("cjson")
H.need("python3")

local function env_list(home)
  local env = { "ORCH_HOME=" .. home, "PATH=" .. os.getenv("PATH"), "HOME=" .. (os.getenv("HOME") or "/") }
  if os.getenv("ORCH_LUA_DIR") then env[#env + 1] = "ORCH_LUA_DIR=" .. os.getenv("ORCH_LUA_DIR") end
  return env
end

-- Runs `orch repl` with input on its stdin (a pipe); returns code, stdout, stderr.
local function repl_pipe(home, input)
  local r = { out = "", err = "", eof = 0 }
  local stdin, stdout, stderr = uv.new_pipe(false), uv.new_pipe(false), uv.new_pipe(false)
  local handle, pid = uv.spawn(H.bin, { args = { "repl" }, env = env_list(home), stdio = { stdin, stdout, stderr } },
    function(code) r.code = code end)
  assert(handle, pid)
  for _, p in ipairs({ { stdout, "out" }, { stderr, "err" } }) do
    p[1]:read_start(function(_, data)
      if data then r[p[2]] = r[p[2]] .. data else r.eof = r.eof + 1 end
    end)
  end
  stdin:write(input)
  stdin:shutdown()
  local ok, e = pcall(H.wait_until, function() return r.code ~= nil and r.eof == 2 end, 15000,
    function() return "orch repl to finish; stderr so far:\n" .. r.err end)
  if not ok then uv.kill(pid, "sigkill") end
  for _, h in ipairs({ stdin, stdout, stderr, handle }) do if not h:is_closing() then h:close() end end
  uv.run("nowait")
  assert(ok, e)
  return r.code, r.out, r.err
end

-- Runs `orch repl` under a pseudo-terminal through the steps of
-- spec/fixtures/pty_drive.py; returns its report.
local function repl_pty(dir, home, steps)
  local env = {}
  for _, kv in ipairs(env_list(home)) do
    local k, v = kv:match("^([^=]+)=(.*)$")
    env[k] = v
  end
  env.TERM = "xterm"
  local script = H.write(dir .. "/pty.json", cjson.encode({
    argv = { H.bin, "repl" }, env = env, cols = 80, rows = 24, timeout_ms = 10000, steps = steps }))
  local out = H.sh(string.format("python3 '%s/spec/fixtures/pty_drive.py' '%s'", H.root, script))
  local ok, report = pcall(cjson.decode, out)
  assert(ok and type(report) == "table", "pty_drive.py said: " .. out)
  if not report.ok then
    error(string.format("step %s timed out; output:\n%s", cjson.encode(report.failed), report.output), 2)
  end
  return report
end

describe("orch repl", function()
  local dir, home
  H.each_test(function(d, h) dir, home = d, h end)

  it("runs a script piped to it, chunk by chunk, and goes on after an error", function()
    local code, out, err = repl_pipe(home, table.concat({
      "function double(x)",
      "  return x * 2",
      "end",
      "double(21)",
      "t = { name = 'x', list = { 1, 2 } }",
      "t",
      "t.self = t",
      "t.self",
      "error('boom')",
      "print('still here', double(2))",
      "deep = { { { { { { 1 } } } } } }",
      "deep",
      "local a = 1 return a, nil, 'z'",
      "",
    }, "\n"))
    assert.are.equal(1, code) -- a chunk failed
    assert.are.equal(table.concat({
      "42",
      '{\n  list = {\n    1,\n    2,\n  },\n  name = "x",\n}',
      '{\n  list = {\n    1,\n    2,\n  },\n  name = "x",\n  self = <cycle>,\n}',
      "still here\t4",
      "{\n  {\n    {\n      {\n        {...},\n      },\n    },\n  },\n}",
      '1\tnil\t"z"',
      "",
    }, "\n"), out)
    assert.matches("^orch repl: line 9: eval:1: boom\nstack traceback:\n", err)
    assert.is_nil(err:find("line 10", 1, true))
  end)

  it("shows the error of a user function that failed since the previous chunk", function()
    -- a timer set from the REPL fails on a later loop turn: one of the
    -- following chunks' replies carries it, once
    local lines = { "orch.timer(0, function() error('late bug') end)" }
    for i = 2, 200 do lines[i] = "n = " .. i end
    local code, _, err = repl_pipe(home, table.concat(lines, "\n") .. "\n")
    assert.are.equal(0, code) -- no chunk failed
    assert.matches("orch repl: timer callback failed: eval:1: late bug\nstack traceback:", err)
    assert.are.equal(1, select(2, err:gsub("late bug", "")))
  end)

  it("exits 0 after a clean script, 1 when the input ends inside a chunk", function()
    local code, out, err = repl_pipe(home, "x = 20\nx + 1\n")
    assert.are.equal(0, code)
    assert.are.equal("21\n", out)
    assert.are.equal("", err)
    -- the environment persists across sessions (it lives in the daemon)
    code, out, err = repl_pipe(home, "x\nfor i = 1, 2 do\n")
    assert.are.equal(1, code)
    assert.are.equal("20\n", out)
    assert.matches("^orch repl: line 2: eval:1: 'end' expected near '<eof>'", err)
    -- a table constructor across lines is one chunk; an error that is not at
    -- the end of the text does not wait for more
    code, out, err = repl_pipe(home, "{\n  a = 1,\n}\nreturn 1 end\n2\n")
    assert.are.equal(1, code)
    assert.are.equal("{\n  a = 1,\n}\n2\n", out)
    assert.are.equal("orch repl: line 4: eval:1: '<eof>' expected near 'end'\n", err)
  end)

  it("attaches to a foreground orch run", function()
    H.write(dir .. "/ecosystem.lua", 'return { apps = { { name = "nap", script = "sleep", args = { "1000" } } } }')
    local run = H.orch({ "run", dir .. "/ecosystem.lua" }, { home = home })
    run:wait_output("nap:0 online, pid %d+")
    local code, out = repl_pipe(home, "p = orch.get('nap')\np.status, p.pid == " ..
      run.err:match("nap:0 online, pid (%d+)") .. "\n")
    assert.are.equal(0, code)
    assert.are.equal('"online"\ttrue\n', out)
    run:kill()
    run:wait_exit(10000)
  end)

  it("edits lines on a terminal: multi-line chunks, values, errors, Ctrl-C, completion, history", function()
    assert.are.equal(0, (H.orch_sync({ "start", "sleep", "--name", "nap", "--", "1000" }, { home = home, cwd = dir })))
    local r = repl_pty(dir, home, {
      { "expect", "Ctrl-D leaves." }, { "expect", "orch> " },
      -- a function across lines
      { "send", "function double(x)\r" }, { "expect", ">> " },
      { "send", "  return x * 2\r" }, { "expect", ">> " },
      { "send", "end\r" }, { "expect", "orch> " },
      { "send", "double(21)\r" }, { "expect", "\n42\n" }, { "expect", "orch> " },
      -- a table
      { "send", "{ b = { 1, 2 }, a = 'x' }\r" },
      { "expect", '{\n  a = "x",\n  b = {\n    1,\n    2,\n  },\n}\n' }, { "expect", "orch> " },
      -- an error, and the session goes on
      { "send", "error('boom')\r" }, { "expect", "eval:1: boom\nstack traceback:" }, { "expect", "orch> " },
      { "send", "marker = 7\r" }, { "expect", "orch> " },
      -- Ctrl-C drops an unfinished chunk
      { "send", "if true then\r" }, { "expect", ">> " }, { "send", "\3" }, { "expect", "orch> " },
      -- editing: Ctrl-A, Ctrl-K, left arrow
      { "send", "xx1 + 1\1\11" }, { "send", "2 + 3\27[D\27[D\27[D\27[D4\r" }, { "expect", "\n27\n" },
      -- history: up recalls `24 + 3`, `if true then`, `marker = 7`
      { "send", "\27[A\27[A\27[A" }, { "expect", "orch> marker = 7" },
      { "send", "\21" },
      -- completion: one candidate, several, an app name
      { "send", "orch.li\t" }, { "expect", "orch> orch.list" },
      { "send", "()[1]\r" }, { "expect", "<process nap:0 id 0 online>" }, { "expect", "orch> " },
      { "send", "orch.s\t" }, { "expect", "orch.signal  orch.start   orch.stop\n" },
      { "send", "\21orch.get('n\t" }, { "expect", "orch> orch.get('nap" },
      { "send", "').status\r" }, { "expect", '"online"' }, { "expect", "orch> " },
      { "send", "\4" }, { "exit" },
    })
    assert.are.equal(0, r.code)
    assert.is_true(r.cooked) -- the terminal is back in its mode
    local st = assert(uv.fs_stat(home .. "/repl_history"))
    assert.are.equal(tonumber("600", 8), st.mode % 512)
    local hist = H.read(home .. "/repl_history")
    assert.matches("^function double%(x%)\n  return x %* 2\nend\ndouble%(21%)\n", hist)
    assert.truthy(hist:find("\nmarker = 7\n", 1, true))
    assert.truthy(hist:find("\n24 + 3\n", 1, true))
    local last = "\norch.get('nap').status\n"
    assert.are.equal(last, hist:sub(-#last))

    -- a new session starts with that history
    r = repl_pty(dir, home, {
      { "expect", "orch> " }, { "send", "\27[A" }, { "expect", "orch> orch.get('nap').status" },
      { "send", "\r" }, { "expect", '"online"' }, { "expect", "orch> " },
      { "send", "double(4)\r" }, { "expect", "\n8\n" }, -- the environment lives in the daemon
      { "send", "\4" }, { "exit" },
    })
    assert.are.equal(0, r.code)
    assert.is_true(r.cooked)
  end)

  it("puts the terminal back when it is ended by SIGTERM", function()
    local r = repl_pty(dir, home, {
      { "expect", "orch> " }, { "send", "half a li" }, { "expect", "orch> half a li" },
      { "signal", "TERM" }, { "exit" },
    })
    assert.are.equal(1, r.code)
    assert.is_true(r.cooked)
  end)
end)
