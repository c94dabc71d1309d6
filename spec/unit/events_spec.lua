-- orch.events: the ring of event records and its subscribers.
local events = require("orch.events")

describe("orch.events", function()
  local function kinds(list)
    local out = {}
    for i, r in ipairs(list) do out[i] = r.kind .. r.seq end
    return out
  end

  it("numbers records from 1, stamps them with Unix ms, and keeps only the newest CAPACITY", function()
    local ring = events.new({ capacity = 3 })
    assert.are.same({ 1, 0 }, { ring:bounds() })
    local r = ring:emit("start", { app = "web" })
    assert.are.equal(1, r.seq)
    assert.are.equal("start", r.kind)
    assert.is_true(math.abs(r.time - os.time() * 1000) < 5000)
    for _ = 1, 4 do ring:emit("exit", { app = "web" }) end
    assert.are.same({ 3, 5 }, { ring:bounds() })
    assert.are.same({ "exit3", "exit4", "exit5" }, kinds(ring:since(0)))
    -- after a seq: only newer ones; before the oldest kept: what is kept
    assert.are.same({ "exit5" }, kinds(ring:since(4)))
    assert.are.same({}, kinds(ring:since(5)))
    assert.are.same({ "exit3", "exit4", "exit5" }, kinds(ring:since(1)))
    assert.are.same({ start = 1, exit = 4 }, ring.counts)
  end)

  it("keeps its memory bounded over many records", function()
    local ring = events.new({ capacity = 100 })
    for i = 1, 10000 do
      ring:emit("exit", { app = "a", n = i })
      if i % 150 == 0 then ring:compact() end
    end
    local n = 0
    for _ in pairs(ring.buf) do n = n + 1 end
    assert.are.equal(100, n)
    local kept = ring:since(0)
    assert.are.equal(100, #kept)
    assert.are.equal(9901, kept[1].n)
    assert.are.equal(10000, kept[100].n)
  end)

  it("gives back each record as it was emitted: fractions, odd strings, a field JSON cannot hold", function()
    local ring = events.new({ capacity = 10 })
    local odd = { app = "a\0b\"\n\226\130\172", uptime_ms = 3482.7815340001234, third = 1 / 3, neg = -0.1,
                  big = 2 ^ 60, ok = false, yes = true, time = 1796401181655 }
    local expect = {}
    for k, v in pairs(odd) do expect[k] = v end
    ring:emit("exit", odd)
    local with_table = ring:emit("config", { list = { 1, 2 } })
    ring:compact()
    assert.are.equal("string", type(ring.buf[1]))
    local kept = ring:since(0)
    expect.seq, expect.kind = 1, "exit"
    assert.are.same(expect, kept[1])
    assert.are.equal(with_table, kept[2]) -- kept as it is
  end)

  it("returns records since a time", function()
    local ring = events.new()
    ring:emit("start", { time = 1000 })
    ring:emit("online", { time = 2000 })
    ring:emit("exit", { time = 3000 })
    assert.are.same({ "online2", "exit3" }, kinds(ring:since({ time = 2000 })))
    assert.are.same({}, kinds(ring:since({ time = 3001 })))
  end)

  it("filters by kind, app, id and instance, each a value or a list", function()
    local ring = events.new()
    ring:emit("start", { app = "web", id = 0, instance = 0 })
    ring:emit("exit", { app = "web", id = 1, instance = 1 })
    ring:emit("exit", { app = "api", id = 2, instance = 0 })
    ring:emit("scale", { app = "api" })
    assert.are.same({ "exit2", "exit3" }, kinds(ring:since(0, { kind = "exit" })))
    assert.are.same({ "start1", "exit2" }, kinds(ring:since(0, { app = "web" })))
    assert.are.same({ "exit3", "scale4" }, kinds(ring:since(0, { app = { "api" } })))
    assert.are.same({ "exit2" }, kinds(ring:since(0, { app = "web", kind = { "exit", "restart" } })))
    assert.are.same({ "start1", "exit3" }, kinds(ring:since(0, { id = { 0, 2 } })))
    assert.are.same({ "exit2" }, kinds(ring:since(0, { instance = 1 })))
    assert.are.same({ "scale4" }, kinds(ring:since(0, function(r) return r.kind == "scale" end)))
  end)

  it("hands each new record to the subscribers whose filter it matches, until they unsubscribe", function()
    local ring = events.new()
    local all, exits = {}, {}
    local un_all = ring:subscribe(function(r) all[#all + 1] = r.kind end)
    local un_exits = ring:subscribe(function(r) exits[#exits + 1] = r.app end, { kind = "exit" })
    assert.are.equal(2, ring:subscribers())
    ring:emit("start", { app = "a" })
    ring:emit("exit", { app = "a" })
    un_exits()
    un_exits() -- twice is harmless
    ring:emit("exit", { app = "b" })
    assert.are.same({ "start", "exit", "exit" }, all)
    assert.are.same({ "a" }, exits)
    un_all()
    ring:emit("exit", { app = "c" })
    assert.are.equal(3, #all)
    assert.are.equal(0, ring:subscribers())
  end)

  it("removes a subscriber that raises, logs it, and goes on with the others", function()
    local logged = {}
    local ring = events.new({ log = function(level, msg) logged[#logged + 1] = level .. ": " .. msg end })
    local got = {}
    ring:subscribe(function() error("boom") end)
    ring:subscribe(function(r) got[#got + 1] = r.seq end)
    ring:emit("start", {})
    ring:emit("start", {})
    assert.are.same({ 1, 2 }, got)
    assert.are.equal(1, #logged)
    assert.truthy(logged[1]:find("boom", 1, true))
    assert.are.equal(1, ring:subscribers())
  end)

  it("lets a subscriber unsubscribe another while a record is handed out", function()
    local ring = events.new()
    local second_got = 0
    local un_second
    ring:subscribe(function() un_second() end)
    un_second = ring:subscribe(function() second_got = second_got + 1 end)
    ring:emit("start", {})
    ring:emit("start", {})
    assert.are.equal(0, second_got)
  end)

  describe("from_engine", function()
    local p = { id = 3, name = "web", instance = 1, pid = 4242, restarts = 2,
                app = { kill_signal = "SIGINT", kill_timeout = 1600 } }

    it("makes records of the supervisor's transitions, with the process's fields", function()
      local kind, r = events.from_engine("exit", p, { code = 3, uptime_ms = 120 })
      assert.are.equal("exit", kind)
      assert.are.same({ id = 3, app = "web", instance = 1, pid = 4242, code = 3, uptime_ms = 120 }, r)
      kind, r = events.from_engine("stopping", p)
      assert.are.same({ "stopping", "SIGINT", 1600 }, { kind, r.signal, r.kill_timeout })
      kind, r = events.from_engine("health", p, { healthy = false, message = "refused" })
      assert.are.same({ "health", false, "refused" }, { kind, r.healthy, r.message })
    end)

    it("gives a policy restart the exit as its cause, and a requested one its cause", function()
      local q = setmetatable({ last_exit = { code = 1, uptime_ms = 5 } }, { __index = p })
      local kind, r = events.from_engine("waiting", q, { delay = 250 })
      assert.are.same({ "restart", "exit", 250, 3, 1 }, { kind, r.cause, r.delay, r.restarts, r.code })
      q.last_exit = { uptime_ms = 0, error = "cannot exec x: EAGAIN" }
      kind, r = events.from_engine("restart", q, { delay = 0 })
      assert.are.same({ "restart", "spawn_error", "cannot exec x: EAGAIN" }, { kind, r.cause, r.reason })
      kind, r = events.from_engine("restarting", p, { cause = "memory", reason = "memory 10 bytes over 5" })
      assert.are.same({ "restart", "memory", "memory 10 bytes over 5", 0 }, { kind, r.cause, r.reason, r.delay })
    end)

    it("makes none of app messages and idle", function()
      assert.is_nil(events.from_engine("message", p, { message = "x" }))
      assert.is_nil(events.from_engine("idle"))
    end)
  end)
end)
