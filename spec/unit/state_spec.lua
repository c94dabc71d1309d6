-- orch.state's writer: the state file is written off the loop thread, one
-- write at a time. A value given as a function is built and encoded when
-- its write begins, so that any number of changes during a write cost one
-- encoding after it (per change, a start of N processes encoded the whole
-- table N times: quadratic).
local state

local writes -- the writes core.durable_write was given: { text, done }
setup(function()
  package.loaded["orch.core"] = {
    durable_write = function(_, text, done) writes[#writes + 1] = { text = text, done = done } return true end,
  }
  package.loaded["orch.state"] = nil
  state = require("orch.state")
end)
teardown(function()
  package.loaded["orch.core"] = nil
  package.loaded["orch.state"] = nil
end)
before_each(function() writes = {} end)

describe("orch.state writer", function()
  it("builds a value queued during a write once, when that write has ended", function()
    local w, built, results = state.writer("/x/state.json"), 0, {}
    local n = 0
    local function value()
      built = built + 1
      return { n = n }
    end
    w.write(value, function(ok) results[#results + 1] = ok end)
    assert.are.equal(1, built)
    for i = 1, 100 do
      n = i
      w.write(value, function(ok) results[#results + 1] = ok end)
    end
    assert.are.equal(1, built) -- nothing built while the first write runs
    assert.are.equal(1, w.encoded())
    local flushed = false
    w.flush(function() flushed = true end)
    writes[1].done(true)
    assert.are.equal(2, built) -- the newest state, once
    assert.are.equal(2, #writes)
    assert.are.equal('{"n":100}\n', writes[2].text)
    assert.are.equal(1, #results)
    assert.is_false(flushed)
    writes[2].done(true)
    assert.are.equal(101, #results)
    assert.is_true(flushed)
    assert.are.equal(2, w.encoded())
  end)

  it("tells each waiting write when its value cannot be encoded", function()
    local w, errs = state.writer("/x/state.json"), {}
    w.write({ ok = true })
    w.write(function() return { f = function() end } end, function(ok, err) errs[#errs + 1] = { ok, err } end)
    writes[1].done(true)
    assert.are.equal(1, #errs)
    assert.is_nil(errs[1][1])
    assert.matches("cannot encode /x/state.json", errs[1][2], 1, true)
    local flushed
    w.flush(function(ok) flushed = ok end)
    assert.is_true(flushed) -- nothing in progress any more
  end)

  -- orch.persist's builder encodes the state itself: an error it raises
  -- left the finished write's dones and a flush waiting forever
  it("fails the write of a builder that raises, and tells every waiting done", function()
    local w, results = state.writer("/x/state.json"), {}
    w.write({ ok = true }, function(ok) results.first = { ok } end)
    w.write(function() error("boom") end, function(ok, err) results.second = { ok, err } end)
    w.flush(function(ok, err) results.flush = { ok, err } end)
    local ok = pcall(writes[1].done, true)
    assert.is_true(ok)
    assert.are.same({ true }, results.first)
    assert.is_nil(results.second[1])
    assert.matches("cannot encode /x/state.json: .*boom", results.second[2])
    assert.is_nil(results.flush[1])
    -- the writer goes on: the next value is written
    w.write({ n = 1 })
    assert.are.equal(2, #writes)
    assert.are.equal('{"n":1}\n', writes[2].text)
  end)
end)
