-- orch.complete (what Tab offers in orch repl) and the key decoder of
-- orch.lineedit.
local complete = require("orch.complete")
local lineedit = require("orch.lineedit")

describe("orch.complete", function()
  local api = { list = function() end, log = function() end, get = function() end, stop = function() end,
                start = function() end, _dispatch = function() end, uv = { new_timer = function() end } }
  local env = setmetatable({ orch = api, counter = 1, config = { port = 80, ["not a name"] = 1 } }, { __index = _G })
  local apps = { "web", "worker", "db" }

  local function c(before)
    local word, list = complete.complete(env, before, apps)
    return word, list
  end

  it("completes global names from the REPL environment, _G and the keywords", function()
    assert.are.same({ "cou", { "counter" } }, { c("cou") })
    local _, list = c("x = pri")
    assert.are.same({ "print" }, list)
    _, list = c("if x the")
    assert.are.same({ "then" }, list)
    _, list = c("a .. co")
    assert.are.same({ "collectgarbage", "config", "coroutine", "counter" }, list)
  end)

  it("completes fields, methods and the API, hiding _names until _ is typed", function()
    assert.are.same({ "orch.li", { "orch.list" } }, { c("orch.li") })
    assert.are.same({ "orch.", { "orch.get", "orch.list", "orch.log", "orch.start", "orch.stop", "orch.uv" } },
      { c("orch.") })
    assert.are.same({ "orch._dispatch" }, select(2, c("orch._")))
    assert.are.same({ "orch.uv.new_timer" }, select(2, c("orch.uv.new")))
    assert.are.same({ "config.port" }, select(2, c("config.")))
    assert.are.same({ "string.format" }, select(2, c("string.form")))
    assert.are.same({ "s:format" }, select(2, complete.complete(setmetatable({ s = "x" }, { __index = _G }), "s:form")))
    assert.are.same({ "io.stdout:write" }, select(2, c("io.stdout:wri")))
  end)

  it("offers app names inside the quotes of orch.get/stop/...", function()
    assert.are.same({ "w", { "web", "worker" } }, { c('orch.get("w') })
    assert.are.same({ "", { "all", "db", "web", "worker" } }, { c("orch.stop('") })
    assert.are.same({ "we", {} }, { c("print('we") })
  end)

  it("offers nothing in comments, after expressions, for unknown bases", function()
    assert.are.same({}, select(2, c("-- orch.li")))
    assert.are.same({}, select(2, c("f().li")))
    assert.are.same({}, select(2, c("nothing.here")))
    assert.are.same({}, select(2, c("orch.list.x")))
    assert.are.same({}, select(2, c("x = [[orch.li")))
  end)
end)

describe("orch.lineedit's key decoder", function()
  local d = lineedit.decode

  it("reads control keys, escape sequences and waits for the rest of one", function()
    assert.are.same({ "a", 1 }, { d("abc") })
    assert.are.same({ "tab", 1 }, { d("\t") })
    assert.are.same({ "enter", 1 }, { d("\r") })
    assert.are.same({ "backspace", 1 }, { d("\127") })
    assert.are.same({ "kill_start", 1 }, { d("\21") })
    assert.are.same({ "up", 3 }, { d("\27[Ax") })
    assert.are.same({ "left", 3 }, { d("\27OD") })
    assert.are.same({ "delete", 4 }, { d("\27[3~") })
    assert.are.same({ "home", 4 }, { d("\27[1~") })
    assert.are.same({ "word_right", 6 }, { d("\27[1;5C") })
    assert.are.same({ "ignore", 6 }, { d("\27[200~pasted") })
    assert.is_nil(d("\27"))
    assert.is_nil(d("\27["))
    assert.is_nil(d("\27[1;5"))
  end)
end)
