-- Reading logs: `orch logs` following across rotations and restarts,
-- --timestamps for each way a log is written, the JSON log's messages, and
-- coloured labels on a terminal (for `orch run`'s echo too).
local H = require("helpers")
local cjson = require("cjson")
local uv = require("luv")

local ESC = "\27"

local on_tty = H.on_tty

describe("orch logs", function()
  local dir, home
  H.each_test(function(d, h) dir, home = d, h end)

  local ticks, consecutive = H.ticks, H.consecutive

  it("-f shows lines written after it attached, across rotations and a restart", function()
    H.write(dir .. "/tick.sh",
      "echo \"hello from $$\"; i=0; while true; do i=$((i+1)); echo \"tick $i\"; sleep 0.02; done\n")
    local _, code, err = H.start_apps(dir, home,
      string.format("{ name = 'app', script = %q, max_size = 200, retain = 2 }", dir .. "/tick.sh"))
    assert.are.equal(0, code, err)
    local out = home .. "/logs/app-out.log"
    H.wait_until(function() return #ticks(H.read(out) or "") >= 1 end, 5000, "a first tick")
    local f = H.orch({ "logs", "app", "-f", "--out", "--lines", "0" }, { home = home })
    local function seen() return ticks((f.out:gsub("app:0 | ", ""))) end
    -- about 20 ticks per file: 60 of them span two rotations at least
    H.wait_until(function() return #seen() >= 60 end, 15000, function() return "60 ticks; got:\n" .. f.out end)
    assert.is_not_nil(uv.fs_stat(out .. ".1"), "the file rotated")
    assert.is_true(consecutive(seen()), f.out)

    local restarted = assert(H.json(home, { "restart", "app" }))
    local pid = restarted[1].pid
    f:wait_output("app:0 | hello from " .. pid .. "\napp:0 | tick 1\napp:0 | tick 2\n", 10000)
    local before = f.out:sub(1, f.out:find("app:0 | hello from " .. pid, 1, true) - 1)
    assert.is_true(consecutive(ticks((before:gsub("app:0 | ", "")))), "nothing lost before the restart")

    uv.kill(f.pid, "sigint")
    assert.are.equal(0, f:wait_exit(5000))
  end)

  describe("--timestamps", function()
    -- Three apps that print and exit: a JSON log, a log_date_format log, a plain one.
    local function three_apps()
      H.write(dir .. "/j.sh", "echo hello; echo oops >&2\n")
      H.write(dir .. "/d.sh", "echo dated\n")
      H.write(dir .. "/p.sh", "echo plain\n")
      local _, code, err = H.start_apps(dir, home, string.format([[
        { name = 'j', script = %q, autorestart = false, log_type = 'json' },
        { name = 'd', script = %q, autorestart = false, log_date_format = 'YYYY-MM-DD HH:mm:ss.SSS' },
        { name = 'p', script = %q, autorestart = false },
      ]], dir .. "/j.sh", dir .. "/d.sh", dir .. "/p.sh"))
      assert.are.equal(0, code, err)
      local logs = home .. "/logs/"
      H.wait_until(function()
        return (H.read(logs .. "j-error.log") or ""):find("\n") and (H.read(logs .. "d-out.log") or ""):find("\n")
          and H.read(logs .. "p-out.log") == "plain\n"
      end, 5000, "the apps' output")
      local function first(path) return (H.read(logs .. path):match("^[^\n]*")) end
      return cjson.decode(first("j-out.log")), cjson.decode(first("j-error.log")), first("d-out.log")
    end

    -- orch logs ARGS with TZ at +02:30: stdout, stderr, and the minutes it
    -- ran in, as "YYYY-MM-DDTHH:MM" in that zone.
    local function logs(args)
      local t0 = os.time()
      local code, out, err = H.orch_sync(args, { home = home, env = { TZ = "ORC-02:30" } })
      assert.are.equal(0, code, err)
      local minutes = {}
      for t = t0, os.time() + 1 do minutes[os.date("!%Y-%m-%dT%H:%M", t + 9000)] = true end
      return out, err, minutes
    end

    local function read_time(stamp, minutes)
      assert.matches("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%d%+02:30$", stamp)
      assert.is_true(minutes[stamp:sub(1, 16)], stamp .. " is when orch logs ran")
    end

    it("takes a JSON record's, keeps a log_date_format line's, gives others the time they were read", function()
      local record, err_record, dated = three_apps()
      local out, err, minutes = logs({ "logs", "--nostream", "--timestamps" })
      assert.matches("j:0 | " .. record.timestamp .. ": hello\n", out, 1, true)
      assert.matches("j:0 | " .. err_record.timestamp .. ": oops\n", err, 1, true)
      assert.matches("d:0 | " .. dated .. "\n", out, 1, true)
      assert.matches("^%d%d%d%d%-%d%d%-%d%d %d%d:%d%d:%d%d%.%d%d%d: dated$", dated)
      read_time(assert(out:match("p:0 | (%S+): plain\n")), minutes)

      -- PM2's name for it works too
      assert.matches("p:0 | %S+: plain\n", (logs({ "logs", "--nostream", "p", "--timestamp" })))
    end)

    it("shows a JSON log's messages, and a line that is not JSON as it is", function()
      local record = three_apps()
      local f = assert(io.open(home .. "/logs/j-out.log", "ab"))
      f:write("not json\n")
      f:close()

      local out, err = logs({ "logs", "--nostream", "j" })
      assert.are.equal("j:0 | hello\nj:0 | not json\n", out)
      assert.are.equal("j:0 | oops\n", err)

      local stamped, _, minutes = logs({ "logs", "--nostream", "j", "--out", "--timestamps" })
      local lines = {}
      for l in stamped:gmatch("[^\n]+") do lines[#lines + 1] = l end
      assert.are.equal("j:0 | " .. record.timestamp .. ": hello", lines[1])
      read_time(assert(lines[2]:match("^j:0 | (%S+): not json$")), minutes)

      -- --json: one object a line, the message as line, the record's timestamp
      local objs = {}
      for l in (logs({ "logs", "--nostream", "--json", "--out" })):gmatch("[^\n]+") do
        local o = cjson.decode(l)
        objs[o.name .. "/" .. o.line] = o
      end
      assert.are.equal(record.timestamp, objs["j/hello"].timestamp)
      assert.is_nil(objs["j/not json"].timestamp)
      assert.is_nil(objs["p/plain"].timestamp)
      for l in (logs({ "logs", "--nostream", "p", "--json", "--out", "--timestamps" })):gmatch("[^\n]+") do
        read_time(cjson.decode(l).timestamp, minutes)
      end
    end)
  end)

  describe("colour", function()
    local function apps()
      H.write(dir .. "/a.sh", "echo hello; echo oops >&2\n")
      H.write(dir .. "/b.sh", "echo hi\n")
      local _, code, err = H.start_apps(dir, home, string.format([[
        { name = 'a', script = %q, autorestart = false },
        { name = 'b', script = %q, autorestart = false },
      ]], dir .. "/a.sh", dir .. "/b.sh"))
      assert.are.equal(0, code, err)
      H.wait_until(function()
        return H.read(home .. "/logs/a-error.log") == "oops\n" and H.read(home .. "/logs/b-out.log") == "hi\n"
      end, 5000, "the apps' output")
    end

    -- The colour code of label's line with text, or nil when it is plain.
    local function colour_of(out, label, text)
      return out:match(ESC .. "%[([%d;]+)m" .. label .. ESC .. "%[0m | " .. text .. "\n")
    end

    it("colours labels on a terminal, one colour per app, stderr in red", function()
      apps()
      local code, out = on_tty(home, { "logs", "--nostream" }, { NO_COLOR = "" }) -- empty: colour stays
      assert.are.equal(0, code, out)
      local a, b, e = colour_of(out, "a:0", "hello"), colour_of(out, "b:0", "hi"), colour_of(out, "a:0", "oops")
      assert.is_string(a, out)
      assert.is_string(b, out)
      assert.are_not.equal(a, b)
      assert.are.equal("1;31", e)
    end)

    it("writes plain text with NO_COLOR set or into a pipe", function()
      apps()
      local code, out = on_tty(home, { "logs", "--nostream" }, { NO_COLOR = "1" })
      assert.are.equal(0, code, out)
      assert.matches("a:0 | hello\n", out, 1, true)
      assert.is_nil(out:find(ESC, 1, true))
      local code2, out2, err2 = H.orch_sync({ "logs", "--nostream" }, { home = home })
      assert.are.equal(0, code2, err2)
      assert.matches("b:0 | hi\n", out2, 1, true)
      assert.matches("a:0 | oops\n", err2, 1, true)
      assert.is_nil((out2 .. err2):find(ESC, 1, true))
    end)

    it("colours orch run's echo on a terminal, and only there", function()
      H.write(dir .. "/a.sh", "echo hello; echo oops >&2\n")
      H.ecosystem(dir, string.format("{ name = 'a', script = %q, autorestart = false },\n" ..
        "{ name = 'long', script = %q, autorestart = false },", dir .. "/a.sh", dir .. "/a.sh"))
      local file = dir .. "/ecosystem.lua"
      local code, out = on_tty(home, { "run", file })
      assert.are.equal(0, code, out)
      -- padded to the longest label outside the colour codes
      assert.matches(ESC .. "%[[%d;]+ma:0" .. ESC .. "%[0m    | hello\n", out)
      assert.matches(ESC .. "%[1;31ma:0" .. ESC .. "%[0m    | oops\n", out)
      assert.are_not.equal(out:match(ESC .. "%[([%d;]+)ma:0" .. ESC .. "%[0m    | hello"),
        out:match(ESC .. "%[([%d;]+)mlong:0" .. ESC .. "%[0m | hello"))

      code, out = on_tty(home, { "run", file }, { NO_COLOR = "1" })
      assert.are.equal(0, code, out)
      assert.matches("a:0    | hello\n", out, 1, true)
      assert.is_nil(out:find(ESC, 1, true))

      local o = H.orch({ "run", file }, { home = home })
      assert.are.equal(0, o:wait_exit(10000), o.err)
      assert.matches("a:0    | hello\n", o.out, 1, true)
      assert.matches("a:0    | oops\n", o.err, 1, true)
      assert.is_nil((o.out .. o.err):find(ESC, 1, true))
    end)
  end)
end)
