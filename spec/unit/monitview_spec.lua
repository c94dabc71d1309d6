-- orch.monitview (what `orch monit` draws) and orch.monitterm's locale
-- check, without a terminal.
local view = require("orch.monitview")
local term = require("orch.monitterm")
local NULL = require("cjson").null

-- a line's width on the screen: SGR sequences take no columns
local function columns(line)
  return view.width((line:gsub("\27%[[0-9;]*m", "")))
end

local function state(n, opts)
  opts = opts or {}
  local procs = {}
  for i = 1, n do
    procs[i] = { id = i - 1, name = "app" .. i, instance = 0, status = i % 3 == 0 and "stopped" or "online",
                 restarts = i, cpu = i * 1.5, memory = i * 1048576, uptime_ms = i * 1000,
                 pid = i % 3 == 0 and NULL or 1000 + i }
  end
  local utf8 = opts.utf8 ~= false
  return { all = procs, procs = procs, sel = opts.sel or 1, history = { [0] = { cpu = { 0, 50, 100 }, mem = { 1, 2, 3 } } },
           filter = "", utf8 = utf8, glyphs = view.GLYPHS[utf8 and "utf8" or "ascii"], null = NULL, now = 0,
           colour = opts.colour ~= false,
           logs = { { stream = "out", text = "hello" }, { stream = "err", text = string.rep("é", 500) },
                    { stream = "out", text = "\27[2J\27[?1049l\27]0;title\7\27[31mred\r\n" } },
           events = { { kind = "restart", time = 0, cause = "exit", code = 3, delay = 100, restarts = 2 },
                      { event = "exit", from = "online", to = "online", at = 0, detail = "exit code 3" } } }
end

describe("orch.monitview", function()
  it("fits text to a width in characters, SGR taking none", function()
    assert.are.equal("ab  ", view.fit("ab", 4))
    assert.are.equal("abc", view.fit("abcdef", 3))
    assert.are.equal("éé", view.fit("ééé", 2))
    assert.are.equal("\27[31mab\27[0m", view.fit("\27[31mabc\27[0m", 2))
    assert.are.equal("\27[31mab\27[0m  ", view.fit("\27[31mab\27[0m", 4))
    assert.are.equal("", view.fit("abc", 0))
  end)

  it("makes an app's line harmless: no escape sequences or control characters", function()
    assert.are.equal("red  bold", view.clean("\27[31mred\27[0m  \27[1mbold"))
    assert.are.equal("title", view.clean("\27]0;evil\7title"))
    assert.are.equal("a    b?c?", view.clean("a\tb\rc\8"))
    assert.are.equal("x", view.clean("\27[2J\27[Hx"))
  end)

  it("draws a history from its lowest to its highest level, newest last", function()
    local g = view.GLYPHS.ascii.spark
    assert.are.equal("  _#", view.spark({ 0, 10 }, 4, g, 0, 10))
    assert.are.equal("_~#", view.spark({ 0, 5, 10 }, 3, g, 0, 10))
    assert.are.equal("~#", view.spark({ 0, 5, 10 }, 2, g, 0, 10)) -- the newest n
    assert.are.equal("__", view.spark({ 0, 0 }, 2, g, 0, 0)) -- nothing at all
    assert.are.equal("##", view.spark({ 7, 7 }, 2, g, 7, 7)) -- steady
  end)

  it("fills the screen with lines exactly as wide, whatever its size", function()
    for _, size in ipairs({ { 40, 10 }, { 72, 20 }, { 100, 30 }, { 200, 60 }, { 39, 30 }, { 80, 9 } }) do
      for _, utf8 in ipairs({ true, false }) do
        local lines = view.build(state(25, { utf8 = utf8 }), size[1], size[2])
        assert.are.equal(size[2], #lines)
        for r, line in ipairs(lines) do
          assert.are.equal(size[1], columns(line), string.format("row %d at %dx%d: %q", r, size[1], size[2], line))
          -- ASCII: an app's UTF-8 text too shows as '?', one per character
          if not utf8 then assert.is_nil(line:find("[\128-\255]"), line) end
          -- nothing from an app's output moves the cursor, clears or switches screens
          assert.is_nil(line:gsub("\27%[[0-9;]*m", ""):find("[%z\1-\31\127]"), line)
        end
      end
    end
    assert.matches("^terminal too small: 39x30", view.build(state(3), 39, 30)[1])
  end)

  it("keeps the selected process in view", function()
    local lines = view.build(state(100, { sel = 77, colour = false }), 100, 30)
    local text = table.concat(lines, "\n")
    assert.matches("\n\27%[7m▶%s+76 app77 ", text)
    assert.is_nil(text:find(" app1 ", 1, true))
  end)

  it("shows a record of the event stream and a transition of describe's", function()
    local v = state(1)
    assert.matches("^%d%d:%d%d:%d%d restart     exit, code 3, in 100 ms, restart #2$", view.event_line(v, v.events[1]))
    assert.matches("^%d%d:%d%d:%d%d exit        online → online  exit code 3$", view.event_line(v, v.events[2]))
    assert.matches("^%d%d:%d%d:%d%d scale       1 → 3 instances$", view.event_line(v, { kind = "scale", time = 0, from = 1, to = 3 }))
  end)
end)

describe("orch.monitterm", function()
  it("takes the locale as the C library does: LC_ALL, then LC_CTYPE, then LANG", function()
    local function env(t) return function(k) return t[k] end end
    assert.is_true(term.utf8_locale(env({ LANG = "en_US.UTF-8" })))
    assert.is_true(term.utf8_locale(env({ LC_CTYPE = "C.utf8", LANG = "C" })))
    assert.is_false(term.utf8_locale(env({ LC_ALL = "C", LANG = "en_US.UTF-8" })))
    assert.is_false(term.utf8_locale(env({ LANG = "" })))
    assert.is_false(term.utf8_locale(env({})))
  end)
end)
