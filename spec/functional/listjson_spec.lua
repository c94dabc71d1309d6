-- orch list --json against the real daemon: its reply is made of pieces
-- each process keeps (orch.views.list_json), so after each change of a
-- process it must show the new values, the same as describe (which builds
-- a table per process).
local H = require("helpers")
local cjson = require("cjson")

describe("orch list --json", function()
  local dir, home
  H.each_test(function(d, h) dir, home = d, h end)

  local FIELDS = { "id", "name", "instance", "pid", "status", "restarts", "mode", "namespace" }

  local function ok(args)
    local code, _, err = H.orch_sync(args, { home = home, cwd = dir })
    assert.are.equal(0, code, err)
  end

  -- list's entry of the one process, checked against describe's
  local function listed()
    local list = assert(H.json(home, { "list" }))
    assert.are.equal(1, #list)
    local d = assert(H.json(home, { "describe", tostring(list[1].id) }))[1]
    for _, k in ipairs(FIELDS) do assert.are.equal(d[k], list[1][k], k) end
    return list[1]
  end

  it("shows each change of a process: restart, stop, new options on restart, rename", function()
    ok({ "start", "sleep", "--name", "a", "--", "600" }) -- from the command line: restart may change its options
    local p = listed()
    assert.are.same({ "a", "online", "default", "fork" }, { p.name, p.status, p.namespace, p.mode })
    local pid, restarts = p.pid, p.restarts
    ok({ "restart", "a" })
    p = listed()
    assert.are_not.equal(pid, p.pid)
    assert.are.equal(restarts + 1, p.restarts)
    ok({ "stop", "a" })
    p = listed()
    assert.are.same({ "stopped", cjson.null, 0, 0 }, { p.status, p.pid, p.cpu, p.memory })
    ok({ "restart", "a", "--namespace", "back" })
    p = listed()
    assert.are.same({ "online", "back" }, { p.status, p.namespace })
    assert.is_number(p.pid)
    ok({ "restart", "a", "--name", "b" })
    p = listed()
    assert.are.same({ "b", "back" }, { p.name, p.namespace })
    ok({ "reset", "b" })
    assert.are.equal(0, listed().restarts)
  end)
end)
