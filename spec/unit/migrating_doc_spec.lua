-- docs/migrating-from-pm2.md must not drift from the code: every option of
-- orch.schema (PM2's names and aliases among them) and every verb and verb
-- alias of the CLI has a row (or a mention in backquotes) there.
local schema = require("orch.schema")

-- orch.cli's verb table is plain data, but the module loads the client,
-- which needs orch.core (C, in the binary only): a stand-in while it loads.
local cli
do
  local saved = package.loaded["orch.core"]
  package.loaded["orch.core"] = saved or {}
  cli = require("orch.cli")
  package.loaded["orch.core"] = saved
end

local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

local doc = read("docs/migrating-from-pm2.md")

-- `name` or `orch name...` in backquotes.
local function mentioned(name)
  return doc:find("`" .. name .. "`", 1, true) or doc:find("`orch " .. name .. "`", 1, true)
    or doc:find("`orch " .. name .. " ", 1, true) or doc:find("`" .. name .. " ", 1, true)
end

describe("docs/migrating-from-pm2.md", function()
  it("lists every option of orch.schema", function()
    local missing = {}
    for _, name in ipairs(schema.option_order) do
      if not mentioned(name) then missing[#missing + 1] = name end
    end
    assert.are.same({}, missing)
  end)

  it("lists every verb and verb alias of the CLI", function()
    local missing = {}
    for verb in pairs(cli.verbs) do
      if not mentioned(verb) then missing[#missing + 1] = verb end
    end
    for alias in pairs(cli.aliases) do
      if not mentioned(alias) then missing[#missing + 1] = alias end
    end
    table.sort(missing)
    assert.are.same({}, missing)
  end)

  it("gives every row of its tables a status", function()
    local statuses = { "same", "different", "n/a", "not yet", "orch only" }
    local bad = {}
    for line in doc:gmatch("[^\n]+") do
      local status = line:match("^|.*| ([^|]*) |$")
      if status and not line:match("^|%-") and not line:match("^| PM2") then
        local known = false
        for _, s in ipairs(statuses) do
          if status:sub(1, #s) == s then known = true end
        end
        if not known then bad[#bad + 1] = line end
      end
    end
    assert.are.same({}, bad)
  end)
end)
