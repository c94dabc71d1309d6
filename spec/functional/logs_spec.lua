-- Log capture: timestamps, JSON records, line framing, the combined log_file.
-- Driven through `orch run` with apps that exit by themselves.
local H = require("helpers")
local cjson = require("cjson")

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
    local o = H.orch({ "run", dir .. "/ecosystem.lua" }, { home = home })
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

  local pieces = "printf 'a'; sleep 0.1; printf 'b\\n'; printf 'c\\nd'; sleep 0.1; printf 'e\\nno end'\n"

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

  it("writes one JSON object per line with log_type = 'json'", function()
    run(pieces .. "printf 'q\"\\\\\\351\\001\\t\\303\\251\\n'; echo oops >&2\n", 'log_type = "json"')
    local out = lines(home .. "/logs/app-out.log")
    local texts = {}
    for i, l in ipairs(out) do
      local rec = cjson.decode(l)
      assert.are.equal("app", rec.app)
      assert.are.equal(0, rec.id)
      assert.are.equal("out", rec.stream)
      assert.matches("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%d[+-]%d%d:%d%d$", rec.timestamp)
      texts[i] = rec.message
    end
    -- the invalid UTF-8 byte \351 comes back as U+00E9, valid UTF-8 (\303\251) as is
    assert.are.same({ "ab", "c", "de", "no endq\"\\\195\169\1\t\195\169" }, texts)
    local err = lines(home .. "/logs/app-error.log")
    assert.are.same({ stream = "err", message = "oops" },
      { stream = cjson.decode(err[1]).stream, message = cjson.decode(err[1]).message })
  end)

  it("writes a line longer than 64 KiB in formatted mode as two records", function()
    run("head -c 70000 /dev/zero | tr '\\0' x; echo\n", 'log_date_format = "[T]"')
    local out = lines(home .. "/logs/app-out.log")
    assert.are.same({ 65536 + 3, 70000 - 65536 + 3 }, { #out[1], #out[2] })
    assert.matches("^T: x+$", out[2])
  end)

  it("also writes both streams to log_file", function()
    run("echo out1; sleep 0.05; echo err1 >&2; sleep 0.05; echo out2\n", 'log_file = "all.log"')
    assert.are.equal("out1\nout2\n", H.read(home .. "/logs/app-out.log"))
    assert.are.equal("err1\n", H.read(home .. "/logs/app-error.log"))
    assert.are.equal("out1\nerr1\nout2\n", H.read(dir .. "/all.log"))
  end)

  it("formats log_file records like the others", function()
    run("echo out1; sleep 0.05; echo err1 >&2\n", 'log_file = "all.log", log_type = "json"')
    local all = lines(dir .. "/all.log")
    assert.are.equal(2, #all)
    assert.are.same({ "out", "out1" }, { cjson.decode(all[1]).stream, cjson.decode(all[1]).message })
    assert.are.same({ "err", "err1" }, { cjson.decode(all[2]).stream, cjson.decode(all[2]).message })
  end)
end)
