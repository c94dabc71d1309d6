-- orch.targets alone: which processes each form of target names, in PM2's
-- order (all, /regex/, name or script path, namespace, id).
local targets = require("orch.targets")

describe("orch.targets", function()
  local function proc(id, name, script, namespace)
    return { id = id, name = name, app = { script = script, namespace = namespace } }
  end
  local procs = {
    proc(0, "api-1", "/srv/api.js", "back"), proc(1, "api-2", "/srv/api.js", "back"),
    proc(2, "web", "/srv/web.js"), proc(3, "web", "/srv/web.js"),
  }
  -- a stand-in for orch.core's regex_find: Lua patterns, an error for "("
  local function regex_find(re, names)
    if re:find("(", 1, true) then return nil, "EINVAL: unmatched ( or \\(" end
    local hits = {}
    for i, n in ipairs(names) do hits[i] = n:find(re) ~= nil end
    return hits
  end
  local function ids(target, cwd)
    local list, err, code = targets.resolve(procs, target, { cwd = cwd, regex_find = regex_find })
    if not list then return nil, err, code end
    local out = {}
    for i, p in ipairs(list) do out[i] = p.id end
    return out
  end

  it("resolves each form", function()
    assert.are.same({ 0, 1, 2, 3 }, ids("all"))
    assert.are.same({ 2, 3 }, ids("web"))
    assert.are.same({ 0, 1 }, ids("back"))
    assert.are.same({ 2, 3 }, ids("default"))
    assert.are.same({ 1 }, ids("1"))
    assert.are.same({ 0, 1 }, ids("/^api/"))
    assert.are.same({ 0, 1 }, ids("api.js", "/srv"))
    assert.are.same({ 0, 1 }, ids("/srv/api.js", "/elsewhere"))
  end)

  it("spells \\d out for POSIX regular expressions", function()
    local seen
    targets.resolve(procs, "/a\\d/", { regex_find = function(re, names) seen = re return regex_find("x", names) end })
    assert.are.equal("a[0-9]", seen)
  end)

  it("names what it did not find, with a hint", function()
    assert.are.same({ nil, "no app named 'wbe' (did you mean 'web'?)", "ENOTFOUND" }, { ids("wbe") })
    assert.are.same({ nil, "no process with id 9", "ENOTFOUND" }, { ids("9") })
    assert.are.same({ nil, "no app name matches /^zz/", "ENOTFOUND" }, { ids("/^zz/") })
    assert.are.same({ nil, "invalid regular expression /a(/: EINVAL: unmatched ( or \\(", "EINVAL" }, { ids("/a(/") })
    -- a script path only from a directory
    assert.are.same({ nil, "no app named 'api.js'", "ENOTFOUND" }, { ids("api.js") })
  end)

  it("gives all with no process as an empty list", function()
    assert.are.same({}, targets.resolve({}, "all", { regex_find = regex_find }))
  end)
end)
