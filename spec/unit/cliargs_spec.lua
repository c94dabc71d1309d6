-- orch.cliargs: a verb's command line against its spec; orch.cliflags:
-- start's flags from orch.schema's FLAGS.
local cliargs = require("orch.cliargs")
local cliflags = require("orch.cliflags")
local schema = require("orch.schema")

local F, V = cliargs.FLAG, cliargs.VALUE

local function spec(opts, more)
  local s = { args = "<x>", min = 0, max = 1, opts = opts }
  for k, v in pairs(more or {}) do s[k] = v end
  return s
end

describe("orch.cliargs", function()
  it("reads flags, values (separate or after '='), short aliases and '--' args", function()
    local s = spec({ name = V, n = "name", watch = F }, { rest = true })
    local p = assert(cliargs.parse(s, { "app.js", "-n", "web", "--watch", "--", "-x", "y" }))
    assert.are.same({ "app.js" }, p.positional)
    assert.are.same({ name = "web", watch = true }, p.opts)
    assert.are.same({ "-x", "y" }, p.rest)
    p = assert(cliargs.parse(s, { "--name=a=b" }))
    assert.are.equal("a=b", p.opts.name)
  end)

  it("collects repeated list values, optional values only after '=', integers after an integer list", function()
    local s = spec({ ign = cliargs.LIST, watch = cliargs.OPTLIST, codes = cliargs.INTLIST }, { max = 2 })
    local p = assert(cliargs.parse(s, { "--ign", "a", "--ign=b", "--watch", "--watch=src", "--codes", "0", "3",
      "7", "app", "--codes=9", "12" }))
    assert.are.same({ "a", "b" }, p.opts.ign)
    assert.are.same({ true, "src" }, p.opts.watch)
    assert.are.same({ "0", "3", "7", "9", "12" }, p.opts.codes)
    assert.are.same({ "app" }, p.positional)
    -- a word after an optional-value flag is an argument, not its value
    p = assert(cliargs.parse(s, { "--watch", "app" }))
    assert.are.same({ true }, p.opts.watch)
    assert.are.same({ "app" }, p.positional)
  end)

  it("names what is wrong: unknown option (nearest name), refused option, value missing or extra", function()
    local s = spec({ name = V, watch = F, force = { why = "names are unique" } })
    local _, err = cliargs.parse(s, { "--nmae", "x" })
    assert.are.equal("unknown option '--nmae' (did you mean '--name'?)", err)
    _, err = cliargs.parse(s, { "-f" })
    assert.are.equal("unknown option '-f'", err)
    _, err = cliargs.parse(s, { "--force" })
    assert.are.equal("option '--force' is not available: names are unique", err)
    _, err = cliargs.parse(s, { "--name" })
    assert.are.equal("option '--name' needs a value", err)
    _, err = cliargs.parse(s, { "--watch=1" })
    assert.are.equal("option '--watch' takes no value", err)
    _, err = cliargs.parse(s, { "a", "b" })
    assert.are.equal("unexpected argument 'b'", err)
    _, err = cliargs.parse(spec({}, { min = 1 }), {})
    assert.are.equal("missing argument <x>", err)
    _, err = cliargs.parse(spec({}, { unknown = function(n) return n == "deps" and "set it in a file" end }), { "--deps" })
    assert.are.equal("unknown option '--deps': set it in a file", err)
  end)

  it("shows few options in the usage line, [options] for many, before '-- args'", function()
    assert.are.equal("usage: orch v <x> [--name X] [--watch]", cliargs.usage_line("v", spec({ name = V, watch = F })))
    local many = {}
    for i = 1, cliargs.MAX_USAGE_FLAGS + 1 do many["o" .. i] = F end
    assert.are.equal("usage: orch v <x> [options] [-- args...]",
      cliargs.usage_line("v", spec(many, { args = "<x> [-- args...]" })))
  end)
end)

describe("orch.cliflags", function()
  local function parse(argv)
    local p = assert(cliargs.parse({ args = "", min = 0, max = 1, rest = true, opts = cliflags.opts() }, argv))
    return p.opts
  end

  it("turns flags into options: values, numbers, switches, PM2's --no-X, -x, seconds, lists", function()
    local o = assert(cliflags.options(parse({ "-n", "web", "-i", "4", "--no-autorestart", "--time", "-x",
      "--watch-delay", "2", "--stop-exit-codes", "0", "3", "--kill-timeout", "3s", "--node-args", "--a b",
      "--watch", "-o", "out.log" }), "/srv"))
    assert.are.same({ name = "web", instances = 4, autorestart = false, time = true, exec_mode = "fork",
      watch_delay = 2000, stop_exit_codes = { "0", "3" }, kill_timeout = "3s", node_args = "--a b",
      watch = true, out_file = "out.log" }, o)
    o = assert(cliflags.options(parse({ "--watch=src", "--watch=lib", "--watch-delay", "1500ms" }), "/srv"))
    assert.are.same({ watch = { "src", "lib" }, watch_delay = "1500ms" }, o)
  end)

  it("checks values as orch.validate does for a file, naming the flag", function()
    local check = require("orch.validate").CHECK
    local _, file_err = check.max_memory_restart("10X", {})
    local o, err = cliflags.options(parse({ "--max-memory-restart", "10X" }), "/srv")
    assert.is_nil(o)
    assert.are.equal("--max-memory-restart 10X: option 'max_memory_restart': " .. file_err, err)
    _, err = cliflags.options(parse({ "--stop-exit-codes", "0", "--stop-exit-codes", "300" }), "/srv")
    assert.matches("^%-%-stop%-exit%-codes 0 300: option 'stop_exit_codes': item 2", err)
  end)

  it("says where to set an option that has no flag", function()
    assert.are.equal("option 'max_size' has no command-line form: set it in an ecosystem file",
      cliflags.unknown("max-size"))
    assert.are.equal("option 'depends_on' has no command-line form: set it in an ecosystem file",
      cliflags.unknown("dependsOn"))
    assert.is_nil(cliflags.unknown("nothing-like-it"))
  end)

  it("maps each flag to an option of the schema, or says why not", function()
    for _, f in ipairs(schema.FLAGS) do
      assert.is_true(f.option ~= nil or f.cli ~= nil or f.why ~= nil, f[1])
      local set, doc = cliflags.describe(f)
      assert.is_string(doc, f[1])
      if set then assert.truthy(schema.options[f.option], f[1]) end
    end
  end)
end)

describe("docs/cli.md", function()
  it("holds the table of start's flags as tools/clidoc prints it", function()
    local f = assert(io.open("docs/cli.md", "rb"))
    local text = f:read("*a")
    f:close()
    local a = text:find(cliflags.DOC_BEGIN, 1, true)
    local _, b = text:find(cliflags.DOC_END, 1, true)
    assert.is_not_nil(a, "no flag table markers in docs/cli.md")
    assert.are.equal(cliflags.markdown(), text:sub(a, b),
      "docs/cli.md differs from the flags: run tools/clidoc --write docs/cli.md")
  end)
end)

describe("orch.cliout", function()
  local cliout = require("orch.cliout")

  -- What f writes to io.stdout.
  local function captured(f)
    local real, text = io.stdout, {}
    -- luacheck: push ignore 122 (io.stdout is replaced for the call)
    io.stdout = { write = function(_, ...) for _, s in ipairs({ ... }) do text[#text + 1] = tostring(s) end end }
    local ok, err = pcall(f)
    io.stdout = real
    -- luacheck: pop
    assert(ok, err)
    return table.concat(text)
  end

  local function proc(id, name, status)
    return { id = id, name = name, mode = "fork", pid = 100 + id, status = status, restarts = 0, uptime_ms = 0,
      cpu = 0, memory = 0 }
  end

  it("lists processes in id order, whatever order the reply has", function()
    local text = captured(function()
      cliout.procs({ proc(2, "c", "online"), proc(0, "a", "stopped"), proc(1, "b", "errored") }, false)
    end)
    local ids = {}
    for id in text:gmatch("\n(%d+) ") do ids[#ids + 1] = tonumber(id) end
    assert.are.same({ 0, 1, 2 }, ids)
  end)

  it("colours the status alone, keeping the columns lined up", function()
    local text = captured(function() cliout.procs({ proc(0, "a", "online"), proc(1, "b", "errored") }, true) end)
    assert.truthy(text:find("\27[32monline\27[0m   ", 1, true), text)
    assert.truthy(text:find("\27[1;31merrored\27[0m  ", 1, true), text)
    local plain = captured(function() cliout.procs({ proc(0, "a", "online"), proc(1, "b", "errored") }, false) end)
    assert.are.equal(plain, (text:gsub("\27%[[%d;]*m", "")))
  end)

  it("writes spans of time and command lines for a reader", function()
    assert.are.equal("850 ms", cliout.span(850))
    assert.are.equal("1.6 s", cliout.span(1600))
    assert.are.equal("2 s", cliout.span(2000))
    assert.are.equal("2m 05s", cliout.span(125000))
    assert.are.equal("3h 10m", cliout.span((3 * 3600 + 600) * 1000))
    assert.are.equal("2d 4h", cliout.span((2 * 86400 + 4 * 3600) * 1000))
    assert.are.equal("node --port=80 'a b' 'it'\\''s' ''", cliout.command_line({ "node", "--port=80", "a b", "it's", "" }))
  end)
end)
