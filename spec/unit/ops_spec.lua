-- orch.ops: one operation at a time per app, alone (no loop, no process):
-- an operation's finish is called by the spec when it chooses.
local ops = require("orch.ops")

describe("orch.ops", function()
  local q, log
  before_each(function()
    log = {}
    q = ops.new({ log = function(level, msg) log[#log + 1] = level .. ": " .. msg end })
  end)

  -- An operation that records when it runs and keeps its finish.
  local function op(trace, name)
    local o = {}
    o.fn = function(finish)
      trace[#trace + 1] = name
      o.finish = finish
    end
    o.done = function(...) o.reply = { ... } end
    return o
  end

  it("runs an operation at once on an idle app", function()
    local trace = {}
    local a = op(trace, "a")
    q:run({ "web" }, nil, a.fn, a.done)
    assert.are.same({ "a" }, trace)
    assert.is_true(q:busy("web"))
    a.finish("ok")
    assert.are.same({ "ok" }, a.reply)
    assert.is_false(q:busy("web"))
  end)

  it("runs the operations of one app one after another, in their order", function()
    local trace = {}
    local a, b, c = op(trace, "a"), op(trace, "b"), op(trace, "c")
    q:run({ "web" }, nil, a.fn, a.done)
    q:run({ "web" }, nil, b.fn, b.done)
    q:run({ "web" }, nil, c.fn, c.done)
    assert.are.same({ "a" }, trace)
    a.finish(1)
    assert.are.same({ "a", "b" }, trace)
    assert.is_nil(c.reply)
    b.finish(2)
    c.finish(3)
    assert.are.same({ "a", "b", "c" }, trace)
    assert.are.same({ { 1 }, { 2 }, { 3 } }, { a.reply, b.reply, c.reply })
  end)

  it("never makes an app wait for another app's operation", function()
    local trace = {}
    local a, b = op(trace, "a"), op(trace, "b")
    q:run({ "web" }, nil, a.fn, a.done)
    q:run({ "db" }, nil, b.fn, b.done)
    assert.are.same({ "a", "b" }, trace)
    b.finish()
    assert.is_false(q:busy("db"))
    assert.is_true(q:busy("web"))
  end)

  it("runs an operation on several apps once it is first on each, and holds each meanwhile", function()
    local trace = {}
    local a, b, all, c = op(trace, "a"), op(trace, "b"), op(trace, "all"), op(trace, "c")
    q:run({ "web" }, nil, a.fn, a.done)
    q:run({ "db" }, nil, b.fn, b.done)
    q:run({ "web", "db" }, nil, all.fn, all.done)
    q:run({ "db" }, nil, c.fn, c.done)
    b.finish()
    assert.are.same({ "a", "b" }, trace) -- web is still a's
    a.finish()
    assert.are.same({ "a", "b", "all" }, trace)
    all.finish()
    assert.are.same({ "a", "b", "all", "c" }, trace)
  end)

  it("never deadlocks on operations naming the same apps in another order", function()
    local trace = {}
    local x, y = op(trace, "x"), op(trace, "y")
    local hold = op(trace, "hold")
    q:run({ "b" }, nil, hold.fn, hold.done)
    q:run({ "a", "b" }, nil, x.fn, x.done)
    q:run({ "b", "a" }, nil, y.fn, y.done)
    hold.finish()
    assert.are.same({ "hold", "x" }, trace)
    x.finish()
    assert.are.same({ "hold", "x", "y" }, trace)
  end)

  it("merges an equal operation that has not begun: it runs once, every caller gets its reply", function()
    local trace = {}
    local a, b, c, d = op(trace, "a"), op(trace, "b"), op(trace, "c"), op(trace, "d")
    q:run({ "web" }, "restart", a.fn, a.done) -- running: not joined
    q:run({ "web" }, "restart", b.fn, b.done)
    local joined = q:run({ "web" }, "restart", c.fn, c.done)
    q:run({ "web" }, "stop", d.fn, d.done)
    assert.are.equal(1, joined.merged)
    a.finish("first")
    assert.are.same({ "a", "b" }, trace)
    b.finish("second")
    assert.are.same({ "second" }, b.reply)
    assert.are.same({ "second" }, c.reply)
    assert.are.same({ "a", "b", "d" }, trace)
  end)

  it("does not merge equal operations on other apps, nor operations without a merge string", function()
    local trace = {}
    local a, b, c, d = op(trace, "a"), op(trace, "b"), op(trace, "c"), op(trace, "d")
    q:run({ "web" }, nil, a.fn, a.done)
    q:run({ "web", "db" }, "restart", b.fn, b.done)
    q:run({ "web" }, "restart", c.fn, c.done)
    q:run({ "web" }, nil, d.fn, d.done)
    a.finish()
    b.finish()
    c.finish()
    assert.are.same({ "a", "b", "c", "d" }, trace)
  end)

  it("ends an operation once, whatever calls finish again", function()
    local trace = {}
    local a, b = op(trace, "a"), op(trace, "b")
    local replies = 0
    q:run({ "web" }, nil, a.fn, function() replies = replies + 1 end)
    q:run({ "web" }, nil, b.fn, b.done)
    a.finish()
    a.finish()
    assert.are.equal(1, replies)
    assert.are.same({ "a", "b" }, trace)
    assert.is_true(q:busy("web")) -- b's, which a's second finish did not end
  end)

  it("goes on after an operation that raises, which replies EINTERNAL", function()
    local trace = {}
    local b = op(trace, "b")
    local reply
    q:run({ "web" }, "x", function() error("boom") end, function(...) reply = { ... } end)
    q:run({ "web" }, nil, b.fn, b.done)
    assert.are.equal("EINTERNAL", reply[2])
    assert.matches("boom", reply[3])
    assert.are.same({ "b" }, trace)
    assert.matches("operation 'x' on web failed: .*boom", log[1])
  end)

  it("goes on after a caller's reply raises", function()
    local trace = {}
    local b = op(trace, "b")
    q:run({ "web" }, nil, function(finish) finish() end, function() error("reply broke") end)
    q:run({ "web" }, nil, b.fn, b.done)
    assert.are.same({ "b" }, trace)
    assert.matches("reply broke", log[1])
  end)

  it("runs a long queue of operations that finish at once without growing the stack", function()
    local n, ran = 20000, 0
    local hold = op({}, "hold")
    q:run({ "web" }, nil, hold.fn, hold.done)
    for _ = 1, n do
      q:run({ "web" }, nil, function(finish)
        ran = ran + 1
        finish()
      end)
    end
    hold.finish()
    assert.are.equal(n, ran)
    assert.is_false(q:busy("web"))
  end)

  it("each: runs fn for the processes the table still holds when it runs, then done", function()
    local held = { [1] = true, [2] = true }
    q = ops.new({ holds = function(p) return held[p.id] end })
    local hold = op({}, "hold")
    q:run({ "web" }, nil, hold.fn, hold.done)
    local seen, pending, finished = {}, {}, false
    q:each({ { id = 1, name = "web" }, { id = 2, name = "web" } }, nil, function(p, done)
      seen[#seen + 1] = p.id
      pending[#pending + 1] = done
    end, function() finished = true end)
    held[2] = nil -- deleted by the operation before it
    hold.finish()
    assert.are.same({ 1 }, seen)
    assert.is_false(finished)
    pending[1]()
    assert.is_true(finished)
    assert.is_false(q:busy("web"))
  end)

  it("runs an operation on no app at once", function()
    local ran = false
    q:run({}, nil, function(finish) ran = true finish() end)
    assert.is_true(ran)
  end)
end)
