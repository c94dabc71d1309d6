-- Log capture: timestamps, JSON records, line framing, the combined log_file.
-- Driven through `orch run` with apps that exit by themselves.
local H = require("helpers")
local cjson = require("cjson")
local uv = require("luv")

describe("orch logs capture", function()
  local dir, home

  before_each(function()
    dir = H.tmpdir()
    home = dir .. "/home"
  end)

  after_each(function()
    H.cleanup()
    H.rmdir(dir)
  end)

  -- Runs one app (a shell script) to its end under `orch run`.
  local function run(script, options)
    H.write(dir .. "/app.sh", script)
    H.write(dir .. "/ecosystem.lua", string.format(
      "return { apps = { { name = 'app', script = %q, autorestart = false, %s } } }\n",
      dir .. "/app.sh", options or ""))
    -- the pieces of a line come further apart than the default hold of an
    -- unfinished line (1 s) on a busy machine: held for as long as it takes
    local o = H.orch({ "run", dir .. "/ecosystem.lua" }, { home = home, env = { ORCH_LOG_LINE_HOLD = "1h" } })
    o:wait_exit(10000)
    assert.are.equal(0, o.code, o.err)
  end

  local function lines(path)
    local s = assert(H.read(path), path)
    assert.are.equal("\n", s:sub(-1), "every record ends with a newline")
    local t = {}
    for l in s:gmatch("([^\n]*)\n") do t[#t + 1] = l end
    return t
  end

  -- Shell text that returns once orch has read all the app wrote so far:
  -- what the app writes next comes in a later read.
  local drained = "python3 '" .. H.root .. "/spec/fixtures/apps/drained.py'; "
  local pieces = "printf 'a'; " .. drained .. "printf 'b\\n'; printf 'c\\nd'; " .. drained .. "printf 'e\\nno end'\n"

  it("prefixes every line with a log_date_format timestamp, a line written in pieces staying one", function()
    run(pieces .. "echo oops >&2\n", 'log_date_format = "YYYY-MM-DD HH:mm:ss.SSS Z"')
    local out = lines(home .. "/logs/app-out.log")
    local ts = "^%d%d%d%d%-%d%d%-%d%d %d%d:%d%d:%d%d%.%d%d%d [+-]%d%d:%d%d: "
    assert.are.equal(4, #out)
    for i, text in ipairs({ "ab", "c", "de", "no end" }) do
      assert.matches(ts, out[i])
      assert.are.equal(text, out[i]:gsub(ts, ""))
    end
    local err = lines(home .. "/logs/app-error.log")
    assert.are.equal(1, #err)
    assert.matches(ts .. "oops$", err[1])
  end)

  it("uses a strftime format as is, and PM2's default for time = true", function()
    run("echo one\n", 'log_date_format = "%s|"')
    assert.matches("^%d+|: one$", lines(home .. "/logs/app-out.log")[1])
    run("echo two\n", "time = true")
    local out = lines(home .. "/logs/app-out.log")
    assert.matches("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d: two$", out[2])
  end)

  it("writes one JSON object per line with log_type = 'json', PM2's fields", function()
    run(pieces .. "printf 'q\"\\\\\\351\\001\\t\\303\\251\\n'; echo oops >&2\n", 'log_type = "json"')
    local out = lines(home .. "/logs/app-out.log")
    local texts = {}
    for i, l in ipairs(out) do
      -- PM2's fields, in PM2's order; its toISOString() time (UTC) without log_date_format
      assert.matches('^{"message":".*","timestamp":"[^"]*","type":"out","process_id":0,"app_name":"app"}$', l)
      local rec = cjson.decode(l)
      assert.matches("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%dZ$", rec.timestamp)
      texts[i] = rec.message
    end
    -- the invalid UTF-8 byte \351 comes back as U+00E9, valid UTF-8 (\303\251) as is; a message is
    -- what the app wrote, its newline included (as PM2's)
    assert.are.same({ "ab\n", "c\n", "de\n", "no endq\"\\\195\169\1\t\195\169\n" }, texts)
    local err = lines(home .. "/logs/app-error.log")
    local rec = cjson.decode(err[1])
    assert.are.same({ type = "err", message = "oops\n", process_id = 0, app_name = "app" },
      { type = rec.type, message = rec.message, process_id = rec.process_id, app_name = rec.app_name })
  end)

  it("stamps JSON records with log_date_format (local time) when it is set", function()
    run("echo one\n", 'log_type = "json", log_date_format = "YYYY-MM-DD HH:mm Z"')
    local rec = cjson.decode(lines(home .. "/logs/app-out.log")[1])
    assert.matches("^%d%d%d%d%-%d%d%-%d%d %d%d:%d%d [+-]%d%d:%d%d$", rec.timestamp)
    assert.are.equal(os.date("%Y"), rec.timestamp:sub(1, 4))
  end)

  it("writes a line longer than 64 KiB in formatted mode as two records", function()
    run("head -c 70000 /dev/zero | tr '\\0' x; echo\n", 'log_date_format = "[T]"')
    local out = lines(home .. "/logs/app-out.log")
    assert.are.same({ 65536 + 3, 70000 - 65536 + 3 }, { #out[1], #out[2] })
    assert.matches("^T: x+$", out[2])
  end)

  it("also writes both streams to log_file", function()
    run("echo out1; " .. drained .. "echo err1 >&2; " .. drained .. "echo out2\n", 'log_file = "all.log"')
    assert.are.equal("out1\nout2\n", H.read(home .. "/logs/app-out.log"))
    assert.are.equal("err1\n", H.read(home .. "/logs/app-error.log"))
    assert.are.equal("out1\nerr1\nout2\n", H.read(dir .. "/all.log"))
  end)

  it("keeps a line written in pieces whole in log_file, where both streams meet (plain)", function()
    run("printf out; " .. drained .. "echo err1 >&2; " .. drained .. "printf '1\\nout2'; " .. drained ..
      "echo ' end'; printf tail\n",
      'log_file = "all.log"')
    assert.are.equal("out1\nout2 end\ntail", H.read(home .. "/logs/app-out.log"))
    -- err1 came while "out" waited for the rest of its line
    assert.are.equal("err1\nout1\nout2 end\ntail", H.read(dir .. "/all.log"))
  end)

  it("formats log_file records like the others", function()
    run("echo out1; " .. drained .. "echo err1 >&2\n", 'log_file = "all.log", log_type = "json"')
    local all = lines(dir .. "/all.log")
    assert.are.equal(2, #all)
    assert.are.same({ "out", "out1\n" }, { cjson.decode(all[1]).type, cjson.decode(all[1]).message })
    assert.are.same({ "err", "err1\n" }, { cjson.decode(all[2]).type, cjson.decode(all[2]).message })
  end)
end)

-- Rotation (core/sink.c, core/rotate.c): FILE -> FILE.1 -> ... at max_size.
describe("orch log rotation", function()
  local dir, home
  H.each_test(function(d, h) dir, home = d, h end)

  local function exists(path) return uv.fs_stat(path) ~= nil end

  -- The rotated files of path, oldest first, then path itself.
  local function files_of(path)
    local list, i = {}, 1
    while exists(path .. "." .. i) do i = i + 1 end
    for j = i - 1, 1, -1 do list[#list + 1] = path .. "." .. j end
    list[#list + 1] = path
    return list
  end

  local function concat(list)
    local parts = {}
    for _, f in ipairs(list) do parts[#parts + 1] = assert(H.read(f), f) end
    return table.concat(parts)
  end

  -- Lines of varied length, as the awk program below writes them.
  local PAD = string.rep("abcdefghij", 15)
  local function numbered(n)
    local t = {}
    for i = 1, n do t[i] = string.format("line %05d %s", i, PAD:sub(1, (i * 37) % 150)) end
    return t
  end
  -- awk writes in 4 KiB blocks: lines are cut across the pipe's chunks.
  local AWK = "awk -v pad=" .. PAD .. [[ 'BEGIN { for (i = 1; i <= @N@; i++) printf "line %05d %s\n", i, substr(pad, 1, (i * 37) % 150) }'
]]

  local function run(script, options, env)
    H.write(dir .. "/app.sh", script)
    H.write(dir .. "/ecosystem.lua", string.format(
      "return { apps = { { name = 'app', script = %q, autorestart = false, %s } } }\n",
      dir .. "/app.sh", options or ""))
    local o = H.orch({ "run", dir .. "/ecosystem.lua" }, { home = home, env = env })
    o:wait_exit(30000)
    assert.are.equal(0, o.code, o.err)
  end

  local function each_file_ends_whole(list, limit)
    for _, f in ipairs(list) do
      local s = H.read(f)
      assert.are.equal("\n", s:sub(-1), f .. " ends with a whole line")
      if limit then assert.is_true(#s <= limit, f .. " is " .. #s .. " bytes") end
    end
  end

  it("keeps 20000 lines whole and in order across many rotations (plain)", function()
    run(AWK:gsub("@N@", "20000"), 'max_size = "64K", retain = 50')
    local out = home .. "/logs/app-out.log"
    local list = files_of(out)
    assert.is_true(#list > 20, #list .. " files")
    assert.is_false(exists(out .. ".51"))
    assert.are.equal(table.concat(numbered(20000), "\n") .. "\n", concat(list))
    -- every cut is right after a newline, at most one line past max_size
    each_file_ends_whole(list, 65536 + 200)
  end)

  it("keeps 20000 records whole and in order across many rotations (json)", function()
    -- records are about twice as long as the lines: twice the size for as many files
    run(AWK:gsub("@N@", "20000"), 'max_size = "128K", retain = 50, log_type = "json"')
    local list = files_of(home .. "/logs/app-out.log")
    assert.is_true(#list > 20, #list .. " files")
    each_file_ends_whole(list, 131072)
    local messages = {}
    for _, f in ipairs(list) do
      for l in H.read(f):gmatch("([^\n]*)\n") do
        messages[#messages + 1] = cjson.decode(l).message:match("^(.*)\n$")
      end
    end
    assert.are.same(numbered(20000), messages)
  end)

  it("gzips rotated files with log_compress, the lines whole and in order", function()
    run(AWK:gsub("@N@", "20000"), 'max_size = "64K", retain = 50, log_compress = true')
    local out = home .. "/logs/app-out.log"
    assert.is_false(exists(out .. ".1"), "no rotated file is left uncompressed")
    local parts, n = {}, 0
    while exists(out .. "." .. (n + 1) .. ".gz") do n = n + 1 end
    assert.is_true(n > 10, n .. " compressed files")
    for i = n, 1, -1 do
      local gz = out .. "." .. i .. ".gz"
      assert.is_true(uv.fs_stat(gz).size < 20000, gz .. " is compressed")
      parts[#parts + 1] = H.sh("gzip -dc '" .. gz .. "'")
    end
    parts[#parts + 1] = H.read(out)
    assert.are.equal(table.concat(numbered(20000), "\n") .. "\n", table.concat(parts))
    assert.are.equal("", H.sh("ls '" .. home .. "/logs' | grep part || true"))
  end)

  it("keeps retain rotated files, the newest lines", function()
    run(AWK:gsub("@N@", "5000"), 'max_size = "4K", retain = 3')
    local out = home .. "/logs/app-out.log"
    local list = files_of(out)
    assert.are.equal(4, #list)
    assert.is_false(exists(out .. ".4"))
    local all = table.concat(numbered(5000), "\n") .. "\n"
    local kept = concat(list)
    assert.are.equal(all:sub(-#kept), kept)
    assert.are.equal("\n", all:sub(-#kept - 1, -#kept - 1), "the oldest kept file starts a line")
  end)

  it("rotates by default at $ORCH_LOG_MAX_SIZE, never with max_size = 0", function()
    run(AWK:gsub("@N@", "300"), nil, { ORCH_LOG_MAX_SIZE = "8K", ORCH_LOG_RETAIN = "2" })
    local out = home .. "/logs/app-out.log"
    assert.are.equal(3, #files_of(out))
    assert.is_false(exists(out .. ".3"))
    run(AWK:gsub("@N@", "300"), "max_size = 0", { ORCH_LOG_MAX_SIZE = "8K" })
    assert.is_true(#H.read(out) > 20000)
  end)

  -- A daemon running one app that writes "tick N" every 20 ms.
  local function ticking(options)
    H.write(dir .. "/tick.sh", "i=0; while true; do i=$((i+1)); echo \"tick $i\"; sleep 0.02; done\n")
    H.write(dir .. "/ecosystem.lua", string.format(
      "return { apps = { { name = 'app', script = %q, %s } } }\n", dir .. "/tick.sh", options or ""))
    local started, code, err = H.json(home, { "start", dir .. "/ecosystem.lua" })
    assert.are.equal(0, code, err)
    return home .. "/logs/app-out.log", started
  end

  local ticks, consecutive = H.ticks, H.consecutive

  it("flush empties the file, deletes the rotated ones, and logging goes on", function()
    local out = ticking('max_size = 200, retain = 3')
    H.wait_until(function() return exists(out .. ".3") end, 10000, "three rotations")
    local flushed = assert(H.json(home, { "flush", "app" }))
    assert.are.same({ out, home .. "/logs/app-error.log" }, flushed.flushed)
    assert.is_false(exists(out .. ".2") or exists(out .. ".3"), "rotated files are deleted")
    assert.is_true(#H.read(out) < 200)
    H.wait_until(function() return #ticks(H.read(out) or "") >= 3 or exists(out .. ".1") end, 5000, "new lines")
    -- what follows the flush, in order
    local after = ticks(concat(files_of(out)))
    assert.is_true(consecutive(after))
  end)

  it("reopen-logs after an external rename writes to a new file, losing nothing", function()
    local out = ticking()
    H.wait_until(function() return #ticks(H.read(out) or "") >= 2 end, 5000, "ticks")
    assert(os.rename(out, out .. ".moved"))
    H.wait_until(function() return #ticks(H.read(out .. ".moved")) >= 5 end, 5000, "ticks in the moved file")
    assert.is_false(exists(out))
    local res, code, err = H.json(home, { "reopen-logs" })
    assert.are.equal(0, code, err)
    assert.is_truthy(table.concat(res.reopened, " "):find(out, 1, true))
    H.wait_until(function() return #ticks(H.read(out) or "") >= 3 end, 5000, "ticks in the new file")
    local moved = H.read(out .. ".moved")
    -- three more ticks reach the new file meanwhile
    local n = #ticks(H.read(out))
    H.wait_until(function() return #ticks(H.read(out) or "") >= n + 3 end, 5000, "more ticks in the new file")
    assert.are.equal(moved, H.read(out .. ".moved"), "the moved file is no longer written")
    assert.is_true(consecutive(ticks(moved .. H.read(out))))

    -- SIGUSR2 does the same, the daemon's own log included
    local daemon = tonumber(H.read(home .. "/daemon.pid"))
    assert(os.rename(out, out .. ".moved2"))
    assert(os.rename(home .. "/daemon.log", home .. "/daemon.log.moved"))
    uv.kill(daemon, "sigusr2")
    H.wait_until(function() return #ticks(H.read(out) or "") >= 2 end, 5000, "ticks after SIGUSR2")
    H.wait_until(function() return (H.read(home .. "/daemon.log") or ""):find("received SIGUSR2, reopened") end,
      5000, "the daemon's log reopened")
    assert.is_true(consecutive(ticks(moved .. H.read(out .. ".moved2") .. H.read(out))))
  end)

  it("shows a failed rotation in describe, writes on, and rotates once it can", function()
    -- the oldest rotated file cannot be deleted: a directory in the way
    H.sh("mkdir -p '" .. home .. "/logs/app-out.log.2/in-the-way'")
    local out = ticking('max_size = 100, retain = 2')
    local function problems()
      local d = assert(H.json(home, { "describe", "app" }))
      return d[1].log_problems
    end
    H.wait_until(function() return type(problems()) == "string" end, 5000, "a problem reported")
    assert.matches("app%-out%.log: rotation failed %(EISDIR%), still writing to it", problems())
    H.wait_until(function() return #H.read(out) > 200 end, 5000, "the file past max_size")
    H.sh("rm -rf '" .. out .. ".2'")
    H.wait_until(function() return problems() == cjson.null end, 5000, "the problem gone")
    assert.is_true(exists(out .. ".1"))
    assert.is_true(consecutive(ticks(concat(files_of(out)))))
  end)

  it("orch logs -f follows a file across rotations, losing no line", function()
    local out = ticking('max_size = 200, retain = 2')
    H.wait_until(function() return #ticks(H.read(out) or "") >= 1 end, 5000, "a first tick")
    local f = H.orch({ "logs", "app", "-f", "--out", "--lines", "0" }, { home = home })
    local function seen() return ticks((f.out:gsub("app:0 | ", ""))) end
    -- about 25 ticks per file: 80 of them span three rotations
    H.wait_until(function() return #seen() >= 80 end, 15000, function() return "80 ticks; got:\n" .. f.out end)
    assert.is_true(consecutive(seen()))
  end)

  it("orch run reopens its log files on SIGUSR2", function()
    H.write(dir .. "/tick.sh", "i=0; while true; do i=$((i+1)); echo \"tick $i\"; sleep 0.02; done\n")
    H.write(dir .. "/ecosystem.lua", string.format("return { apps = { { name = 'app', script = %q } } }\n",
      dir .. "/tick.sh"))
    local o = H.orch({ "run", dir .. "/ecosystem.lua" }, { home = home })
    local out = home .. "/logs/app-out.log"
    H.wait_until(function() return #ticks(H.read(out) or "") >= 2 end, 5000, "ticks")
    assert(os.rename(out, out .. ".moved"))
    uv.kill(o.pid, "sigusr2")
    o:wait_output("received SIGUSR2, reopened 2 log file%(s%)")
    H.wait_until(function() return #ticks(H.read(out) or "") >= 2 end, 5000, "ticks in the new file")
    assert.is_true(consecutive(ticks(H.read(out .. ".moved") .. H.read(out))))
  end)

  it("rotates the daemon's own log at start and while it runs", function()
    assert(uv.fs_mkdir(home, tonumber("700", 8)))
    local old = string.rep("an old line of the daemon's log\n", 100)
    H.write(home .. "/daemon.log", old, tonumber("600", 8))
    local env = { ORCH_LOG_MAX_SIZE = "2K", ORCH_LOG_RETAIN = "2" }
    local code, _, err = H.orch_sync({ "ping" }, { home = home, env = env })
    assert.are.equal(0, code, err)
    assert.are.equal(old, H.read(home .. "/daemon.log.1"))
    assert.matches("daemon started", H.read(home .. "/daemon.log"))
    code, _, err = H.orch_sync({ "eval", "for i = 1, 100 do orch.log('info', ('x'):rep(60) .. i) end" ..
      " io.stderr:write('stray output\\n')" }, { home = home })
    assert.are.equal(0, code, err)
    local list = files_of(home .. "/daemon.log")
    assert.are.equal(3, #list)
    each_file_ends_whole(list, 2048)
    assert.matches("x100\nstray output\n$", H.read(home .. "/daemon.log"))
    local st = assert(uv.fs_stat(home .. "/daemon.log"))
    assert.are.equal(tonumber("600", 8), st.mode % 4096)
  end)
end)

-- The sink itself, driven from Lua (`orch lua`): where cuts fall, failures.
describe("orch log sink rotation", function()
  local dir, home
  H.each_test(function(d, h) dir, home = d, h end)

  -- Runs a Lua script with orch.core; returns its stdout.
  local function lua(body)
    H.write(dir .. "/t.lua", "local core = require('orch.core')\nlocal uv = require('luv')\nlocal F = " ..
      string.format("%q", dir .. "/f.log") .. "\n" .. body)
    local code, out, err = H.orch_sync({ "lua", dir .. "/t.lua" }, { home = home })
    assert.are.equal(0, code, err)
    return out
  end

  it("lets an unfinished line finish before the cut, up to 64 KiB past max_size", function()
    lua([[
      local s = core.sink_open(F, { max_size = 100, retain = 5 })
      s:write(("a"):rep(94) .. "\n")
      s:write("abc")            -- fits
      s:write("defgh")          -- past max_size, no newline: the line goes on
      s:write("ij\nnext\n")     -- the cut comes after "ij\n"
    ]])
    assert.are.equal(("a"):rep(94) .. "\nabcdefghij\n", H.read(dir .. "/f.log.1"))
    assert.are.equal("next\n", H.read(dir .. "/f.log"))
  end)

  it("cuts a line with no newline for more than 64 KiB past max_size at a write", function()
    lua([[
      local s = core.sink_open(F, { max_size = 100, retain = 5 })
      s:write(("a"):rep(50))
      s:write(("b"):rep(70000))
      s:write("c\n")
    ]])
    assert.are.equal(("a"):rep(50), H.read(dir .. "/f.log.2"))
    assert.are.equal(("b"):rep(70000) .. "c\n", H.read(dir .. "/f.log.1"))
    assert.are.equal("", H.read(dir .. "/f.log"))
  end)

  it("writes on to the old file when a rotation fails, and rotates once it can", function()
    H.sh("mkdir -p '" .. dir .. "/f.log.1/x'")
    local out = lua([[
      local s = core.sink_open(F, { max_size = 50, retain = 1 })
      for i = 1, 20 do s:write(string.format("line %04d\n", i)) end
      local st = s:stats()
      print(st.rotations, st.rotate_error, st.dropped, st.size)
      os.execute("rm -rf " .. F .. ".1")
      s:write("not yet\n") -- retried a second after the failure
      print(s:stats().rotations)
      uv.sleep(1100)
      s:write("now\n")
      st = s:stats()
      print(st.rotations, st.rotate_error)
    ]])
    assert.are.equal("0\tEISDIR\t0\t200\n0\n1\tnil\n", out)
    local lines = {}
    for i = 1, 20 do lines[i] = string.format("line %04d", i) end
    assert.are.equal(table.concat(lines, "\n") .. "\nnot yet\n", H.read(dir .. "/f.log.1"))
    assert.are.equal("now\n", H.read(dir .. "/f.log"))
  end)

  local function names()
    local t = {}
    for name in uv.fs_scandir_next, uv.fs_scandir(dir) do t[#t + 1] = name end
    table.sort(t)
    return t
  end

  it("compresses rotated files in the background, wherever they have moved by then", function()
    lua([[
      local s = core.sink_open(F, { max_size = 10, retain = 3, compress = true })
      -- four rotations before any job is done (they finish on the loop, later)
      for i = 1, 5 do s:write(("%07d\n"):format(i)) end
      assert(s:stats().rotations == 4)
    ]])
    -- the oldest went past retain before its job was done: dropped
    assert.are.same({ "f.log", "f.log.1.gz", "f.log.2.gz", "f.log.3.gz", "t.lua" }, names())
    for i = 1, 3 do
      assert.are.equal(("%07d\n"):format(5 - i), H.sh("gzip -dc " .. dir .. "/f.log." .. i .. ".gz"))
    end
    assert.are.equal("0000005\n", H.read(dir .. "/f.log"))
  end)

  it("drops a compression in flight when the file is flushed", function()
    lua([[
      local s = core.sink_open(F, { max_size = 10, retain = 3, compress = true })
      s:write("1234567\n")
      s:write("abcdefg\n")   -- rotates: FILE.1 is being compressed
      s:truncate()
      core.remove_rotated(F, 3)
    ]])
    assert.are.same({ "f.log", "t.lua" }, names())
    assert.are.equal("", H.read(dir .. "/f.log"))
  end)

  it("reopens by path, truncates, and leaves non-regular files alone", function()
    local out = lua([[
      local s = core.sink_open(F, { max_size = 0 })
      s:write("one\n")
      os.rename(F, F .. ".old")
      s:write("two\n")
      print(s:reopen())
      s:write("three\n")
      s:write("four\n")
      print(s:truncate())
      s:write("five\n")
      local null = core.sink_open("/dev/null", { max_size = 1, retain = 1 })
      null:write("x\ny\n")
      null:write("z\n")
      print(null:stats().rotations, null:stats().rotate_error)
      local d = core.sink_open(F .. ".d", { max_size = 5, retain = 2 })
      for i = 1, 4 do d:write("1234\n") end
      print(core.remove_rotated(F .. ".d", 2))
    ]])
    assert.are.equal("true\ntrue\n0\tnil\ntrue\n", out)
    assert.are.equal("one\ntwo\n", H.read(dir .. "/f.log.old"))
    assert.are.equal("five\n", H.read(dir .. "/f.log"))
    assert.are.equal("1234\n", H.read(dir .. "/f.log.d"))
    assert.is_nil(H.read(dir .. "/f.log.d.1"))
  end)
end)

-- Back-pressure (core/sink.c): the daemon reads a pipe only as fast as the
-- file takes the bytes, so a fast writer waits on its own pipe, and a full
-- disk pauses the writers of the files on it, losing nothing.
describe("orch log back-pressure", function()
  local dir, home
  H.each_test(function(d, h) dir, home = d, h end)

  local function rss_kb(pid) return tonumber((H.read("/proc/" .. pid .. "/status") or ""):match("VmRSS:%s*(%d+)")) end
  -- asleep in a write to a full pipe ("pipe_write", "anon_pipe_write")
  local function blocked_on_pipe(pid) return (H.read("/proc/" .. pid .. "/wchan") or ""):find("pipe_write") ~= nil end

  local function start(body)
    local procs, code, err = H.start_apps(dir, home, body)
    assert.are.equal(0, code, err)
    local pids = {}
    for _, p in ipairs(procs.processes) do pids[p.name] = p.pid end
    return pids, assert(tonumber(H.read(home .. "/daemon.pid")))
  end

  local numbers = H.numbers

  it("makes a writer faster than the daemon wait on its pipe; the daemon keeps answering", function()
    local pids, daemon = start([[
      { name = 'yes', script = 'yes', args = { 'a line written as fast as the pipe takes it' },
        max_size = '1M', retain = 2 },
      { name = 'seq', script = 'seq', args = { '1', 'inf' }, max_size = '1M', retain = 2 },
    ]])
    local rss0, peak = rss_kb(daemon), 0
    local function sample() peak = math.max(peak, rss_kb(daemon)); return peak end
    H.wait_until(function() sample(); return blocked_on_pipe(pids.yes) end, 10000, "yes waiting on its pipe")
    -- a daemon stuck behind the pipes would not answer (H.json times out);
    -- how fast it answers is bench/'s business, not a spec's
    for _ = 1, 5 do
      local procs, code, err = H.json(home, { "list" })
      assert.are.equal(0, code, err)
      assert.are.equal(2, #procs)
      sample()
    end
    local out = home .. "/logs/seq-out.log"
    H.wait_until(function() sample(); return uv.fs_stat(out .. ".2") and uv.fs_stat(home .. "/logs/yes-out.log.2") end,
      20000, "both logs rotated twice")
    -- the daemon holds no more than a read's worth per pipe
    assert.is_true(peak - rss0 < 16384, ("RSS %d kB, then %d kB"):format(rss0, peak))

    local _, code, err = H.json(home, { "stop", "seq" })
    assert.are.equal(0, code, err)
    local t = numbers(H.read(out .. ".2") .. H.read(out .. ".1") .. H.read(out))
    assert.is_true(#t > 100000, #t .. " lines")
    for i = 2, #t do
      if t[i] ~= t[i - 1] + 1 then error(("line %d: %d after %d"):format(i, t[i], t[i - 1])) end
    end
    for _, p in ipairs(assert(H.json(home, { "describe", "all" }))) do
      assert.are.equal(cjson.null, p.log_problems, p.name)
    end
  end)

  it("captures a fast writer's binary output byte for byte, and its lines whole across rotations", function()
    local bin, text = dir .. "/random.bin", dir .. "/lines.txt"
    H.sh(("head -c 33554432 /dev/urandom > '%s'"):format(bin))
    H.sh(("awk 'BEGIN { for (i = 1; i <= 250000; i++) printf \"%%07d %%s\\n\", i, substr(\"%s\", 1, i %% 150) }' > '%s'")
      :format(string.rep("0123456789", 15), text))
    start(string.format([[
      { name = 'bin', script = 'sh', args = { '-c', 'cat %s; echo done >&2; exec sleep 1000' }, max_size = false },
      { name = 'text', script = 'sh', args = { '-c', 'cat %s; echo done >&2; exec sleep 1000' },
        max_size = '2M', retain = 100 },
    ]], bin, text))
    for _, name in ipairs({ "bin", "text" }) do
      H.wait_until(function() return H.read(home .. "/logs/" .. name .. "-error.log") == "done\n" end, 20000,
        name .. " to finish")
    end
    local want = H.read(bin)
    H.wait_until(function() return #H.read(home .. "/logs/bin-out.log") >= #want end, 10000, "all of bin's bytes")
    assert.is_true(H.read(home .. "/logs/bin-out.log") == want, "bin's log differs from what it wrote")
    local d = assert(H.json(home, { "describe", "bin" }))[1]
    local st = d.log_stats[1]
    assert.are.equal(home .. "/logs/bin-out.log", st.path)
    assert.are.equal(#want, st.written)
    assert.are.equal(#want, st.size)
    assert.are.equal(0, st.dropped)

    local out = home .. "/logs/text-out.log"
    local list, i = {}, 1
    while uv.fs_stat(out .. "." .. i) do i = i + 1 end
    for j = i - 1, 1, -1 do list[#list + 1] = H.read(out .. "." .. j) end
    list[#list + 1] = H.read(out)
    assert.is_true(#list >= 8, #list .. " files")
    for k, f in ipairs(list) do
      assert.are.equal("\n", f:sub(-1), "file " .. k .. " ends with a whole line")
      assert.is_true(#f <= 2 * 1024 * 1024 + 200, "file " .. k .. " is " .. #f .. " bytes")
    end
    assert.is_true(table.concat(list) == H.read(text), "the rotated files put together differ from the source")
  end)

  it("pauses the writers of a full disk, says so, and resumes them losing nothing once there is space", function()
    local mnt = dir .. "/small"
    assert(uv.fs_mkdir(mnt, tonumber("755", 8)))
    if H.sh("mount -t tmpfs -o size=64m orch-spec '" .. mnt .. "' 2>/dev/null && echo ok") ~= "ok\n" then
      return pending("mounting a tmpfs needs root (CAP_SYS_ADMIN)")
    end
    finally(function()
      if os.getenv("ORCH_SPEC_KEEP") then return end
      H.daemon_cleanup(home)
      H.sh("umount '" .. mnt .. "' 2>/dev/null || umount -l '" .. mnt .. "'")
    end)
    -- all but 64 KiB taken; 64 MiB is room for both logs once the filler goes
    -- (the JSON one is some 35 MB)
    H.sh(("head -c %d /dev/zero > '%s/filler'"):format((65536 - 64) * 1024, mnt))
    -- 2.9 MB each: more than the file system's room, a grown pipe and what
    -- the daemon holds, so both apps have to wait
    local writer = "'seq 1 400000; echo done >&2; exec sleep 1000'"
    start(string.format([[
      { name = 'plain', script = 'sh', args = { '-c', %s }, out_file = %q, autorestart = false, max_size = false },
      { name = 'json', script = 'sh', args = { '-c', %s }, out_file = %q, autorestart = false, log_type = 'json',
        max_size = false },
      { name = 'tick', script = 'sh', args = { '-c', 'i=0; while true; do i=$((i+1)); echo "tick $i"; sleep 0.02; done' } },
    ]], writer, mnt .. "/plain.log", writer, mnt .. "/json.log"))
    local function daemon_log() return H.read(home .. "/daemon.log") or "" end
    H.wait_until(function() return daemon_log():find("plain.log: ENOSPC", 1, true) end, 10000,
      function() return "the full disk in daemon.log:\n" .. daemon_log() end)
    H.wait_until(function() return daemon_log():find("json.log: ENOSPC", 1, true) end, 10000, "json.log paused")
    assert.matches("writing paused until there is space; the app blocks on its output, nothing is dropped", daemon_log())
    local d = assert(H.json(home, { "describe", "plain" }))
    assert.matches("plain.log: ENOSPC, writing paused until there is space", d[1].log_problems, 1, true)
    -- the others go on meanwhile; the writers wait
    local tick = home .. "/logs/tick-out.log"
    local ticks = #H.read(tick)
    H.wait_until(function() return #H.read(tick) > ticks + 200 end, 10000, "tick to go on")
    assert.are.equal("", H.read(home .. "/logs/plain-error.log"))
    assert.are.equal("", H.read(home .. "/logs/json-error.log"))
    assert.are.equal(3, #assert(H.json(home, { "list" })))

    assert(os.remove(mnt .. "/filler"))
    local done = { plain = "^done\n$", json = '"message":"done\\n"' }
    for _, name in ipairs({ "plain", "json" }) do
      H.wait_until(function() return H.read(home .. "/logs/" .. name .. "-error.log"):find(done[name]) end, 10000,
        name .. " to finish")
      H.wait_until(function() return daemon_log():find(name .. ".log: writing again after", 1, true) end, 5000,
        name .. " resumed in daemon.log")
    end
    local want = {}
    for i = 1, 400000 do want[i] = i end
    assert.are.same(want, numbers(H.read(mnt .. "/plain.log")))
    local messages = {}
    for l in H.read(mnt .. "/json.log"):gmatch("([^\n]*)\n") do messages[#messages + 1] = tonumber(cjson.decode(l).message) end
    assert.are.same(want, messages)
    for _, name in ipairs({ "plain", "json" }) do
      assert.are.equal(cjson.null, assert(H.json(home, { "describe", name }))[1].log_problems)
    end
  end)
end)

-- A line without its newline (a progress bar) is not held back for long:
-- the app writes a piece, then waits on a FIFO the spec controls.
describe("orch logs, unfinished lines", function()
  local dir, home
  H.each_test(function(d, h) dir, home = d, h end)

  local function fifo(name)
    local path = dir .. "/" .. name
    assert.are.equal("", H.sh("mkfifo '" .. path .. "' 2>&1"))
    return path
  end

  -- Lets the app past `read x < path`.
  local function release(path)
    local f = assert(io.open(path, "w"))
    f:write("go\n")
    f:close()
  end

  it("reach the process's own file at once and a shared log_file within a second", function()
    local go1, go2 = fifo("go1"), fifo("go2")
    H.started(dir, home, string.format([[
      { name = "bar", script = "sh", log_file = "all.log",
        args = { "-c", "printf 'progress 10%%%%'; read x < %s; echo warn >&2; read x < %s; " ..
                       "printf '\\r100%%%%\\n'; exec sleep 1000" } },
    ]], go1, go2))
    local out, all = home .. "/logs/bar-out.log", dir .. "/all.log"
    local seen = {}
    H.wait_until(function()
      for _, f in ipairs({ out, all }) do
        if not seen[f] and H.read(f) == "progress 10%" then seen[f] = uv.now() end
      end
      return seen[all]
    end, 10000, "the unfinished line in all.log")
    assert.is_truthy(seen[out], "the process's own file had it no later than all.log")
    -- another writer's line does not go into the unfinished one
    release(go1)
    H.wait_until(function() return H.read(home .. "/logs/bar-error.log") == "warn\n" end, 10000, "the warning")
    H.wait_until(function() return H.read(all) == "progress 10%\nwarn\n" end, 10000,
      function() return "all.log: " .. tostring(H.read(all)) end)
    release(go2)
    H.wait_until(function() return H.read(out) == "progress 10%\r100%\n" end, 10000, "the line's end")
    H.wait_until(function() return H.read(all) == "progress 10%\nwarn\n\r100%\n" end, 10000,
      function() return "all.log: " .. tostring(H.read(all)) end)
  end)

  it("becomes a record within a second with log_type = 'json'", function()
    local go = fifo("go")
    H.started(dir, home, string.format([[
      { name = "bar", script = "sh", log_type = "json",
        args = { "-c", "printf 'progress 10%%%%'; read x < %s; printf ' 100%%%%\\n'; exec sleep 1000" } },
    ]], go))
    local out = home .. "/logs/bar-out.log"
    local rec = H.wait_until(function()
      local l = (H.read(out) or ""):match("^([^\n]*)\n")
      return l and cjson.decode(l)
    end, 10000, "a record of the unfinished line")
    assert.are.equal("progress 10%", rec.message)
    release(go)
    H.wait_until(function() return select(2, (H.read(out) or ""):gsub("\n", "")) == 2 end, 10000, "the second record")
    local l2 = H.read(out):match("\n([^\n]*)\n$")
    assert.are.equal(" 100%\n", cjson.decode(l2).message)
  end)
end)
