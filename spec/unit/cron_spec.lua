local cron = require("orch.cron")

-- Local times from a table, so the spec holds in any time zone.
local function at(y, mo, d, h, mi, s)
  return os.time({ year = y, month = mo, day = d, hour = h, min = mi, sec = s or 0 })
end

describe("orch.cron", function()
  local cases = {
    { "*/5 * * * *", at(2026, 1, 1, 10, 2, 30), at(2026, 1, 1, 10, 5) },
    { "0 3 * * *", at(2026, 1, 1, 3, 0, 0), at(2026, 1, 2, 3, 0) },
    { "30 * * * * *", at(2026, 1, 1, 10, 2, 30), at(2026, 1, 1, 10, 3, 30) },
    { "0 0 1 jan *", at(2026, 3, 1, 0, 0), at(2027, 1, 1, 0, 0) },
    { "0 9 * * mon-fri", at(2026, 11, 27, 9, 0), at(2026, 11, 30, 9, 0) }, -- Fri -> Mon
    { "0 0 13 * 5", at(2026, 11, 1, 0, 0), at(2026, 11, 6, 0, 0) },        -- the 13th or a Friday
    { "@hourly", at(2026, 1, 1, 10, 0, 0), at(2026, 1, 1, 11, 0) },
    { "0 12 * * 7", at(2026, 11, 25, 0, 0), at(2026, 11, 29, 12, 0) },     -- 7 is Sunday
    { "15,45 8-9 * * *", at(2026, 1, 1, 8, 45, 0), at(2026, 1, 1, 9, 15) },
  }
  for _, c in ipairs(cases) do
    it("finds the next time of '" .. c[1] .. "'", function()
      local s = assert(cron.parse(c[1]))
      assert.are.equal(os.date("%c", c[3]), os.date("%c", cron.next_after(s, c[2])))
    end)
  end

  it("finds no time for a date that never comes", function()
    assert.is_nil(cron.next_after(assert(cron.parse("0 0 31 2 *")), at(2026, 1, 1, 0, 0)))
  end)

  local bad = {
    { "* * * *", "expected 5 fields (or 6 with seconds), got 4" },
    { "61 * * * *", "minute: '61' is not a valid minute (0-59)" },
    { "* 24 * * *", "hour: '24' is not a valid hour (0-23)" },
    { "*/0 * * * *", "minute: step must be at least 1 in '*/0'" },
    { "* * * foo *", "month: 'foo' is not a valid month (1-12)" },
    { "5-1 * * * *", "minute: range '5-1' runs backwards" },
  }
  for _, c in ipairs(bad) do
    it("rejects '" .. c[1] .. "'", function()
      local s, err = cron.parse(c[1])
      assert.is_nil(s)
      assert.are.equal(c[2], err)
    end)
  end
end)
