-- orch.stoptree's SIGCHLD handling, counted: orphans were reaped, so a
-- stopping process whose main process is gone may have an empty tree now.
-- Only those processes are looked at; a walk of every process per SIGCHLD
-- made a stop of N processes cost O(N^2).
package.loaded["orch.core"] = package.loaded["orch.core"] or {} -- no C core needed here
local core = require("orch.core")
local stoptree = require("orch.stoptree")
local uv = require("luv")

local function supervisor()
  local sup = setmetatable({ procs = {}, tree_waits = {}, opts = {}, fired = {} }, { __index = stoptree.methods })
  function sup:fire(proc, event) self.fired[#self.fired + 1] = { proc, event } end
  function sup:label(proc) return proc.name end
  return sup
end

describe("orch.stoptree on SIGCHLD", function()
  local saved
  before_each(function() saved = { core.pgroup_alive, core.pidfd_snapshot } end)
  after_each(function()
    core.pgroup_alive, core.pidfd_snapshot = saved[1], saved[2]
    uv.run("nowait") -- the recheck timer, closed, is gone before busted ends
  end)

  it("looks only at the stopping processes waiting for their tree, not at every process", function()
    local sup, reads = supervisor(), 0
    -- 1000 running processes that count every look at their status
    for i = 1, 1000 do
      sup.procs[i] = setmetatable({ handle = true }, { __index = function(_, k)
        if k == "status" then reads = reads + 1; return "online" end
      end })
    end
    local waiting = { name = "w:0", status = "stopping", pid = 4242, looked = true, snapshot = {}, app = {} }
    local alive = true
    core.pgroup_alive = function(pgid)
      assert.are.equal(4242, pgid)
      return alive
    end
    core.pidfd_snapshot = function() return {} end -- nothing new in its tree
    sup.procs[#sup.procs + 1] = waiting
    -- its group still has a member: it waits (a recheck timer is armed)
    sup:_check_stopped(waiting)
    assert.is_true(sup.tree_waits[waiting])
    if waiting.recheck then waiting.recheck:close(); waiting.recheck = nil end
    reads = 0
    -- the last member was an orphan, now reaped
    alive = false
    sup:_on_sigchld()
    assert.are.equal(0, reads, "statuses read of processes that do not wait for their tree")
    assert.are.same({ { waiting, "group_gone" } }, sup.fired)
    -- once stopped it is forgotten
    waiting.status = "stopped"
    sup:_on_sigchld()
    assert.is_nil(sup.tree_waits[waiting])
    assert.are.equal(1, #sup.fired)
  end)
end)
