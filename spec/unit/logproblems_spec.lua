-- orch.logproblems: the log files' problems as records, the first at once,
-- then one per interval summing up the rest; counted per app for /metrics.
local H = require("helpers")
local uv = require("luv")
local logproblems = require("orch.logproblems")

describe("orch.logproblems", function()
  local records, lines, lp
  local procs = {
    ["/l/web.log"] = { { name = "web", id = 0, instance = 0 } },
    ["/l/merged.log"] = { { name = "api", id = 1, instance = 0 }, { name = "api", id = 2, instance = 1 } },
  }
  before_each(function()
    records, lines = {}, {}
    lp = logproblems.new({
      interval_ms = 40,
      record = function(kind, proc, fields)
        local r = { kind = kind, id = proc and proc.id, app = proc and proc.name or fields.app }
        for k, v in pairs(fields) do r[k] = r[k] or v end
        records[#records + 1] = r
        return r
      end,
      writers = function(path) return procs[path] or {} end,
      log = function(level, msg) lines[#lines + 1] = level .. ": " .. msg end,
      text = function(r) return r.path .. " " .. r.problem end,
    })
  end)
  after_each(function()
    lp:close()
    uv.run("nowait") -- the timer's close completes
  end)

  local function rotate(n)
    return { path = "/l/web.log", problem = "rotate", error = "EISDIR", message = "is a directory", count = n }
  end

  it("makes a record at once, then one per interval with what came meanwhile, then none when quiet", function()
    lp:report(rotate(1))
    assert.are.equal(1, #records)
    assert.are.same({ "log_error", 0, "web", "rotate", "EISDIR", 1 },
      { records[1].kind, records[1].id, records[1].app, records[1].problem, records[1].error, records[1].count })
    assert.are.same({ "warn: /l/web.log rotate" }, lines)
    lp:report(rotate(2))
    lp:report(rotate(1))
    assert.are.equal(1, #records, "the rest waits for the interval's end")
    H.wait_until(function() return #records == 2 end, 2000, "the summary")
    assert.are.equal(3, records[2].count)
    -- a quiet interval ends the file's watch: the next problem is told at once
    H.wait_until(function() return lp.timer == nil end, 2000, "the timer gone once quiet")
    assert.are.equal(2, #records)
    lp:report(rotate(1))
    assert.are.equal(3, #records)
    assert.are.same({ web = { rotate = 5 } }, lp.totals)
  end)

  it("names the app of a shared file, a file of no process, and tells a resumed writer apart", function()
    lp:report({ path = "/l/merged.log", problem = "write", error = "EIO", message = "i/o error", count = 2, bytes = 10 })
    assert.are.same({ "log_error", nil, "api", 10, 2 },
      { records[1].kind, records[1].id, records[1].app, records[1].bytes, records[1].count })
    lp:report({ path = "/h/daemon.log", problem = "no_space", error = "ENOSPC", count = 1, bytes = 0 })
    assert.are.same({ "log_error", nil, "no_space" }, { records[2].kind, records[2].app, records[2].problem })
    lp:report({ path = "/l/web.log", problem = "resumed", count = 1, paused_ms = 1500 })
    assert.are.same({ "log_resumed", "web", 1500 }, { records[3].kind, records[3].app, records[3].paused_ms })
    assert.is_nil(records[3].problem)
    -- C logs these two itself; the write failure is logged here
    assert.are.equal(1, #lines)
    assert.are.same({ api = { write = 2 }, [""] = { no_space = 1 } }, lp.totals)
  end)
end)
