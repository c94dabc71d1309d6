local util = require("orch.util")

describe("orch.util", function()
  describe("did_you_mean", function()
    local options = { "instances", "name", "script", "args", "env", "cwd", "kill_timeout", "watch" }
    local cases = {
      { "instnces", "instances" },     -- deletion
      { "isntances", "instances" },    -- transposition
      { "scirpt", "script" },
      { "INSTANCES", "instances" },    -- case-insensitive
      { "kil_timeout", "kill_timeout" },
      { "nmae", "name" },
      { "arsg", "args" },
      { "wacth", "watch" },
      { "xyz", nil },
      { "completely_unrelated", nil },
      { "", nil },
    }
    for _, c in ipairs(cases) do
      it(("%q -> %s"):format(c[1], tostring(c[2])), function()
        assert.are.equal(c[2], util.did_you_mean(c[1], options))
      end)
    end

    it("uses a threshold of max(2, #word/3)", function()
      -- 2 edits away, short word: still suggested
      assert.are.equal("env", util.did_you_mean("ev1", { "env" }))
      -- 3 edits on a 6-letter word: too far (threshold 2)
      assert.is_nil(util.did_you_mean("abcxyz", { "abcdef" }))
      -- 3 edits on a 9-letter word: threshold 3
      assert.are.equal("abcdefghi", util.did_you_mean("abcdefxyz", { "abcdefghi" }))
    end)

    it("accepts a set of candidates and picks the closest", function()
      assert.are.equal("apps", util.did_you_mean("aps", { apps = true, deploy = true }))
      assert.are.equal("bar", util.did_you_mean("baz", { "bat", "bar" }))
      assert.are.equal("abcd", util.did_you_mean("abce", { "abcd", "abcdef" }))
    end)

    it("returns nil for non-string input", function()
      assert.is_nil(util.did_you_mean(42, { "42" }))
      assert.is_nil(util.did_you_mean("x", nil))
    end)
  end)

  describe("parse_duration", function()
    local good = {
      { 500, 500 }, { 0, 0 }, { 2.4, 2 }, { "250", 250 }, { "500ms", 500 }, { "2s", 2000 },
      { "1.5m", 90000 }, { "1h", 3600000 }, { "1d", 86400000 }, { " 3 s ", 3000 },
      { "10S", 10000 }, { "0.5s", 500 }, { ".5s", 500 }, { "2min", 120000 },
    }
    for _, c in ipairs(good) do
      it(("%s -> %d"):format(util.describe(c[1]), c[2]), function()
        assert.are.equal(c[2], util.parse_duration(c[1]))
      end)
    end
    local bad = { "abc", "-1", -5, "2 weeks", "", "1.2.3", "s", {}, true, math.huge, 0 / 0 }
    for _, v in ipairs(bad) do
      it("rejects " .. util.describe(v), function()
        local ms, err = util.parse_duration(v)
        assert.is_nil(ms)
        assert.are.equal("invalid duration " .. util.describe(v)
          .. ' (expected a number of milliseconds or a string like "500ms", "2s", "1.5m", "1h")', err)
      end)
    end
  end)

  describe("parse_size", function()
    local good = {
      { 1024, 1024 }, { "2048", 2048 }, { "512K", 524288 }, { "200M", 209715200 },
      { "1G", 1073741824 }, { "100MB", 104857600 }, { "10kb", 10240 }, { "1.5G", 1610612736 },
      { "3 GiB", 3221225472 }, { "7B", 7 }, { 0, 0 },
    }
    for _, c in ipairs(good) do
      it(("%s -> %d"):format(util.describe(c[1]), c[2]), function()
        assert.are.equal(c[2], util.parse_size(c[1]))
      end)
    end
    local bad = { "lots", "-1M", "1X", "M", "", {}, -1, false }
    for _, v in ipairs(bad) do
      it("rejects " .. util.describe(v), function()
        local n, err = util.parse_size(v)
        assert.is_nil(n)
        assert.are.equal("invalid size " .. util.describe(v)
          .. ' (expected a number of bytes or a string like "512K", "200M", "1G")', err)
      end)
    end
  end)

  it("rejects sizes and durations past 2^50, which C could not take exactly", function()
    assert.are.equal(2 ^ 50, util.parse_size(2 ^ 50))
    for _, v in ipairs({ 1e308, "2000000T", 2 ^ 50 + 1 }) do
      local n, err = util.parse_size(v)
      assert.is_nil(n)
      assert.are.equal("invalid size " .. util.describe(v) .. " (too large: at most 2^50)", err)
    end
    assert.is_nil(util.parse_duration(1e308))
  end)

  describe("utf8_clean", function()
    local cases = {
      { "plain", "plain" }, { "h\195\169 \240\159\152\128", "h\195\169 \240\159\152\128" },
      { "\255x", "\239\191\189x" }, -- a byte that never starts a sequence
      { "\192\128", "\239\191\189\239\191\189" }, -- overlong NUL
      { "\237\160\128", "\239\191\189\239\191\189\239\191\189" }, -- a surrogate
      { "\244\144\128\128", "\239\191\189\239\191\189\239\191\189\239\191\189" }, -- past U+10FFFF
      { "a\226\130", "a\239\191\189\239\191\189" }, -- cut short
    }
    for i, c in ipairs(cases) do
      it("case " .. i, function() assert.are.equal(c[2], util.utf8_clean(c[1])) end)
    end
  end)

  describe("split_args", function()
    local good = {
      { "", {} },
      { "   ", {} },
      { "a b  c", { "a", "b", "c" } },
      { " -p 80\t--x\n", { "-p", "80", "--x" } },
      { [['a b' c]], { "a b", "c" } },
      { [["a b" c]], { "a b", "c" } },
      { [[x'y z'w]], { "xy zw" } },
      { [['$HOME' "$HOME" ~ *]], { "$HOME", "$HOME", "~", "*" } }, -- no expansion
      { [["a \"q\" \\ \$ \` \n"]], { [[a "q" \ $ ` \n]] } },          -- POSIX double-quote escapes
      { [['a\b' 'c\']], { [[a\b]], [[c\]] } },                          -- backslash is literal in '...'
      { [[a\ b \"c\" \\]], { "a b", [["c"]], [[\]] } },
      { [["" '' x]], { "", "", "x" } },                                  -- empty quoted words survive
      { "a\\\nb", { "ab" } },                                            -- line continuation
      { [["--title=my app" --name='x y']], { "--title=my app", "--name=x y" } },
    }
    for _, c in ipairs(good) do
      it(("splits %q"):format(c[1]), function()
        assert.are.same(c[2], util.split_args(c[1]))
      end)
    end
    local bad = {
      { [[a "b]], "unterminated double quote" },
      { [[a 'b]], "unterminated single quote" },
      { [["a\"]], "unterminated double quote" },
      { [[a\]], "trailing backslash" },
      { [['it\'s']], "unterminated single quote" },                    -- as in sh: 'it\' ends the quote
    }
    for _, c in ipairs(bad) do
      it(("rejects %q"):format(c[1]), function()
        local words, err = util.split_args(c[1])
        assert.is_nil(words)
        assert.are.equal(c[2], err)
      end)
    end
    it("rejects non-strings", function()
      local words, err = util.split_args(42)
      assert.is_nil(words)
      assert.are.equal("expected a string, got number 42", err)
    end)
  end)

  describe("signal_name / signal_number", function()
    local good = {
      { "SIGINT", "SIGINT", 2 }, { "INT", "SIGINT", 2 }, { "sigterm", "SIGTERM", 15 },
      { "term", "SIGTERM", 15 }, { 9, "SIGKILL", 9 }, { "9", "SIGKILL", 9 }, { "SIGUSR2", "SIGUSR2", 12 },
      { "SIGIOT", "SIGABRT", 6 }, { " hup ", "SIGHUP", 1 },
    }
    for _, c in ipairs(good) do
      it(util.describe(c[1]) .. " -> " .. c[2], function()
        assert.are.equal(c[2], util.signal_name(c[1]))
        assert.are.equal(c[3], util.signal_number(c[1]))
      end)
    end
    it("rejects unknown signals with a suggestion", function()
      assert.are.same({ nil, 'unknown signal "SIGTREM" (did you mean "SIGTERM"?)' },
        { util.signal_name("SIGTREM") })
      assert.are.same({ nil, 'unknown signal "frobnicate"' }, { util.signal_name("frobnicate") })
      assert.are.same({ nil, "unknown signal number 99" }, { util.signal_name(99) })
      assert.are.same({ nil, "unknown signal number 2.5" }, { util.signal_name(2.5) })
      assert.are.same({ nil, "expected a signal name or number, got table" }, { util.signal_name({ 1 }) })
    end)
  end)

  describe("describe", function()
    local cases = {
      { "ten", 'string "ten"' }, { 3, "number 3" }, { 2.5, "number 2.5" }, { true, "boolean true" },
      { nil, "nil" }, { {}, "empty table" }, { { 1 }, "table" }, { print, "function" },
      { "a\n\"b\"", [[string "a\n\"b\""]] },
      { string.rep("x", 50), 'string "' .. string.rep("x", 40) .. '..."' },
    }
    for _, c in ipairs(cases) do
      it(c[2], function() assert.are.equal(c[2], util.describe(c[1])) end)
    end
    it("renders JSON null", function()
      assert.are.equal("null", util.describe(require("cjson").null))
    end)
  end)

  describe("paths", function()
    it("normalises lexically", function()
      assert.are.equal("/a/c/d", util.normpath("/a/./b/../c//d/"))
      assert.are.equal("/", util.normpath("/../.."))
      assert.are.equal("../x", util.normpath("a/../../x"))
      assert.are.equal(".", util.normpath("a/.."))
    end)
    it("makes paths absolute against a base", function()
      assert.are.equal("/srv/app/x.js", util.abspath("x.js", "/srv/app"))
      assert.are.equal("/srv/x.js", util.abspath("../x.js", "/srv/app"))
      assert.are.equal("/etc/hosts", util.abspath("/etc/./hosts", "/srv"))
    end)
    it("splits dirname and basename", function()
      assert.are.equal("/a/b", util.dirname("/a/b/c.lua"))
      assert.are.equal("/", util.dirname("/c.lua"))
      assert.are.equal(".", util.dirname("c.lua"))
      assert.are.equal("c.lua", util.basename("/a/b/c.lua"))
      assert.are.equal("b", util.basename("/a/b/"))
    end)
    it("tells files from directories", function()
      assert.is_true(util.is_dir("/"))
      assert.is_true(util.is_dir("spec/unit"))
      assert.is_false(util.is_dir("spec/unit/util_spec.lua"))
      assert.is_true(util.is_file("spec/unit/util_spec.lua"))
      assert.is_false(util.is_file("spec/unit"))
      assert.is_false(util.is_file("spec/unit/no-such-file"))
      assert.is_false(util.is_dir("spec/unit/no-such-dir"))
    end)
    it("finds commands on a PATH", function()
      local sh = util.which("sh", "/nonexistent:/bin:/usr/bin")
      assert.is_truthy(sh and sh:match("^/.*/sh$"))
      assert.is_nil(util.which("sh", "/nonexistent"))
      assert.is_nil(util.which("sh", ":.:relative"))
      assert.is_nil(util.which("no-such-command-orch", "/bin:/usr/bin"))
    end)
    -- orch records the path it finds (PM2's pm_exec_path): it must be the
    -- one execvp would run, past a file it may not execute.
    it("skips a file it may not execute, as execvp's search does", function()
      local dir = os.tmpname()
      os.remove(dir)
      finally(function() os.execute("rm -rf '" .. dir .. "'") end)
      assert(os.execute(table.concat({ "mkdir -p '" .. dir .. "/a' '" .. dir .. "/b'", "echo > '" .. dir .. "/a/prog'",
        "echo > '" .. dir .. "/b/prog'", "chmod 644 '" .. dir .. "/a/prog'", "chmod 755 '" .. dir .. "/b/prog'" },
        " && ")) == 0)
      assert.are.equal(dir .. "/b/prog", util.which("prog", dir .. "/a:" .. dir .. "/b"))
      assert.is_nil(util.which("prog", dir .. "/a"))
    end)
  end)

  describe("cpu_count", function()
    it("returns a positive integer", function()
      local n = util.cpu_count()
      assert.is_true(util.is_integer(n) and n >= 1)
    end)

    it("falls back to /proc/cpuinfo without luv", function()
      local saved_loaded, saved_preload = package.loaded.luv, package.preload.luv
      package.loaded.luv = nil
      package.preload.luv = function() error("luv hidden by the spec") end
      local ok, n = pcall(util.cpu_count)
      package.loaded.luv, package.preload.luv = saved_loaded, saved_preload
      assert.is_true(ok)
      local f = io.open("/proc/cpuinfo")
      if f then
        local expected = 0
        for line in f:lines() do
          if line:match("^processor%s*:") then expected = expected + 1 end
        end
        f:close()
        assert.are.equal(math.max(1, expected), n)
      else
        assert.are.equal(1, n)
      end
    end)
  end)

  describe("deepcopy", function()
    it("copies every nested table and shares the rest", function()
      local f = function() end
      local v = { a = { b = { 1, 2 } }, s = "x", f = f }
      local c = util.deepcopy(v)
      assert.are.same(v, c)
      assert.are_not.equal(v.a, c.a)
      assert.are_not.equal(v.a.b, c.a.b)
      assert.are.equal(f, c.f)
      c.a.b[1] = 9
      assert.are.equal(1, v.a.b[1])
      assert.are.equal("x", util.deepcopy("x"))
    end)
  end)
end)
