-- PM2's log flags: `orch start --attach` (start, then follow the started
-- processes' logs until Ctrl-C, the apps running on), `orch logs --format`
-- (PM2's key=value lines) and `--highlight VALUE`.
local H = require("helpers")
local uv = require("luv")

local ESC = "\27"

describe("PM2's log flags", function()
  local dir, home
  H.each_test(function(d, h) dir, home = d, h end)

  local function orch(args)
    return H.orch_sync(args, { home = home, cwd = dir })
  end

  -- A script that prints a first line, waits for dir/NAME.go (the spec's
  -- hand-over), then prints that it saw it, and sleeps.
  local function waiter(name)
    return H.write(dir .. "/" .. name .. ".sh", string.format(
      "#!/bin/sh\necho \"first from %s\"\necho \"warn from %s\" >&2\n"
      .. "while [ ! -e %q ]; do sleep 0.02; done\necho \"after go %s\"\nexec sleep 1000\n",
      name, name, dir .. "/" .. name .. ".go", name), tonumber("755", 8))
  end

  local function go(name) H.write(dir .. "/" .. name .. ".go", "") end

  local function procs()
    local by = {}
    for _, p in ipairs(assert(H.json(home, { "list" }))) do by[p.name] = p end
    return by
  end

  describe("start --attach", function()
    it("follows the logs of what it started, until Ctrl-C, and the apps run on", function()
      local a, b = waiter("a"), waiter("b")
      local o = H.orch({ "start", a, b, "--attach" }, { home = home, cwd = dir })
      o:wait_output("following the logs of process%(es%) 0, 1: Ctrl%-C stops following", 20000)
      -- what they wrote before the CLI followed is shown, stdout and stderr
      o:wait_output("a:0 | first from a\n", 10000)
      o:wait_output("b:0 | first from b\n", 10000)
      o:wait_output("a:0 | warn from a\n", 10000)
      -- and what they write after
      go("a")
      go("b")
      o:wait_output("a:0 | after go a\n", 10000)
      o:wait_output("b:0 | after go b\n", 10000)
      assert.is_nil(o.code, "still following")
      local before = procs()
      uv.kill(o.pid, "sigint")
      assert.are.equal(0, o:wait_exit(10000), o.err)
      -- the table was printed first, as without --attach
      assert.matches("started: a\n", o.out, 1, true)
      local after = procs()
      for _, name in ipairs({ "a", "b" }) do
        assert.are.equal("online", after[name].status)
        assert.are.equal(before[name].pid, after[name].pid)
        assert.is_true(H.alive(after[name].pid))
      end
    end)

    it("follows a known app that start restarts, and only the processes started", function()
      local a, b = waiter("a"), waiter("b")
      assert.are.equal(0, (orch({ "start", a })))
      assert.are.equal(0, (orch({ "start", b })))
      go("b")
      local o = H.orch({ "start", "a", "--attach" }, { home = home, cwd = dir })
      o:wait_output("following the logs of process%(es%) 0:", 20000)
      o:wait_output("restarted: a\n", 10000)
      go("a")
      o:wait_output("a:0 | after go a\n", 10000)
      H.wait_until(function()
        return (H.read(home .. "/logs/b-out.log") or ""):find("after go b", 1, true)
      end, 10000, "b's line")
      assert.is_nil((o.out .. o.err):find("b:0", 1, true), "b is not followed")
      uv.kill(o.pid, "sigint")
      assert.are.equal(0, o:wait_exit(10000), o.err)
      assert.are.equal("online", procs().a.status)
    end)

    it("is refused with --json and by restart, and follows nothing when the start fails", function()
      local a = waiter("a")
      local code, _, err = orch({ "start", a, "--attach", "--json" })
      assert.are.equal(2, code)
      assert.matches("--attach follows logs on the terminal: not with --json", err, 1, true)
      code, _, err = orch({ "restart", "a", "--attach" })
      assert.are.equal(2, code)
      assert.matches("option '--attach' is not available: orch start NAME --attach restarts a known app", err, 1,
        true)
      assert.are.same({}, assert(H.json(home, { "list" })), "nothing started")
      -- a start that fails (the app runs already) ends without following
      assert.are.equal(0, (orch({ "start", a })))
      local out
      code, out, err = orch({ "start", a, "--attach" })
      assert.are.equal(1, code)
      assert.matches("already running", err, 1, true)
      assert.is_nil((out .. err):find("following", 1, true))
    end)
  end)

  describe("logs", function()
    local function printed()
      local a = waiter("a")
      assert.are.equal(0, (orch({ "start", a })))
      H.wait_until(function()
        return (H.read(home .. "/logs/a-error.log") or ""):find("\n")
          and (H.read(home .. "/logs/a-out.log") or ""):find("\n")
      end, 10000, "a's lines")
    end

    it("--format prints PM2's key=value lines, stderr's as type=error, on stdout", function()
      printed()
      local code, out, err = orch({ "logs", "a", "--nostream", "--format" })
      assert.are.equal(0, code, err)
      local stamp = "%d%d%d%d%-%d%d%-%d%d%-%d%d:%d%d:%d%d[+-]%d%d%d%d"
      assert.matches("^timestamp=" .. stamp .. " app=a id=0 type=out message=first from a\n", out)
      assert.matches("\ntimestamp=" .. stamp .. " app=a id=0 type=error message=warn from a\n$", out)
      assert.are.equal("", err)
      -- --out / --err choose as without --format; streaming goes on in that form
      code, out = orch({ "logs", "a", "--nostream", "--format", "--err" })
      assert.are.equal(0, code)
      assert.matches("^timestamp=%S+ app=a id=0 type=error message=warn from a\n$", out)
      -- following: the line written after its tail
      local f = H.orch({ "logs", "a", "--format", "--out" }, { home = home, cwd = dir })
      f:wait_output("type=out message=first from a\n", 10000)
      go("a")
      f:wait_output("app=a id=0 type=out message=after go a\n", 10000)
      uv.kill(f.pid, "sigint")
      assert.are.equal(0, f:wait_exit(10000), f.err)
    end)

    it("--json carries PM2's field names beside orch's", function()
      printed()
      local code, out, err = orch({ "logs", "a", "--nostream", "--json" })
      assert.are.equal(0, code, err)
      local recs = {}
      for l in out:gmatch("[^\n]+") do recs[#recs + 1] = require("cjson").decode(l) end
      assert.are.equal(2, #recs, out)
      assert.are.same({ "first from a", "out", 0, "a" },
        { recs[1].message, recs[1].type, recs[1].process_id, recs[1].app_name })
      assert.are.same({ "first from a", "out", 0, "a", 0 },
        { recs[1].line, recs[1].stream, recs[1].id, recs[1].name, recs[1].instance })
      assert.are.same({ "warn from a", "err" }, { recs[2].message, recs[2].type })
    end)

    it("--highlight VALUE marks every occurrence on a terminal, in each form of line", function()
      printed()
      local code, out = H.on_tty(home, { "logs", "a", "--nostream", "--highlight", "from" }, { NO_COLOR = "" })
      assert.are.equal(0, code, out)
      local marked = ESC .. "[100mfrom" .. ESC .. "[49m"
      assert.matches("a:0" .. ESC .. "[0m | first " .. marked .. " a\n", out, 1, true)
      assert.matches("a:0" .. ESC .. "[0m | warn " .. marked .. " a\n", out, 1, true)
      code, out = H.on_tty(home, { "logs", "a", "--nostream", "--raw", "--highlight", "a" }, { NO_COLOR = "" })
      assert.are.equal(0, code, out)
      local a = ESC .. "[100ma" .. ESC .. "[49m"
      assert.matches("\nw" .. a .. "rn from " .. a .. "\n", "\n" .. out, 1, true)
      code, out = H.on_tty(home, { "logs", "a", "--nostream", "--format", "--highlight", "first" }, { NO_COLOR = "" })
      assert.are.equal(0, code, out)
      assert.matches("type=out message=" .. ESC .. "[100mfirst" .. ESC .. "[49m from a\n", out, 1, true)
      -- a pattern character is a character
      code, out = H.on_tty(home, { "logs", "a", "--nostream", "--highlight", "." }, { NO_COLOR = "" })
      assert.are.equal(0, code, out)
      assert.is_nil(out:find(ESC .. "[100m", 1, true))
      -- no colour: the lines as they are
      code, out = H.on_tty(home, { "logs", "a", "--nostream", "--highlight", "from" }, { NO_COLOR = "1" })
      assert.are.equal(0, code, out)
      assert.matches("a:0 | first from a\n", out, 1, true)
      local err
      code, out, err = orch({ "logs", "a", "--nostream", "--highlight", "from" })
      assert.are.equal(0, code, err)
      assert.are.equal("a:0 | first from a\n", out)
    end)

    it("refuses two shapes of line at once, and --highlight without its value", function()
      printed()
      for _, pair in ipairs({ { "--json", "--format" }, { "--format", "--raw" }, { "--json", "--raw" } }) do
        local code, out, err = orch({ "logs", "a", "--nostream", pair[1], pair[2] })
        assert.are.equal(2, code, out)
        assert.matches("exclude each other", err, 1, true)
      end
      local code, _, err = orch({ "logs", "a", "--nostream", "--highlight" })
      assert.are.equal(2, code)
      assert.matches("option '--highlight' needs a value", err, 1, true)
    end)
  end)
end)
