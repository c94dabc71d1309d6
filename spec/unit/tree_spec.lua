-- orch.tree's pure parts: where our cgroup v2 is (mountinfo and
-- /proc/self/cgroup, read through a fake reader) and the subtree's name.
local tree = require("orch.tree")

local function reader(files)
  return function(path) return files[path] end
end

local HYBRID = table.concat({
  "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755",
  "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory",
  "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw",
}, "\n") .. "\n"

describe("orch.tree.own_cgroup", function()
  it("finds the cgroup2 mount and our path in it (hybrid layout, root cgroup)", function()
    assert.are.equal("/sys/fs/cgroup/unified", tree.own_cgroup(reader({
      ["/proc/self/cgroup"] = "4:memory:/x\n1:name=systemd:/\n0::/\n",
      ["/proc/self/mountinfo"] = HYBRID,
    })))
  end)

  it("joins a nested path, and takes a mount of a sub-tree (a container's) into account", function()
    assert.are.equal("/sys/fs/cgroup/unified/user.slice/orch.service", tree.own_cgroup(reader({
      ["/proc/self/cgroup"] = "0::/user.slice/orch.service\n",
      ["/proc/self/mountinfo"] = HYBRID,
    })))
    assert.are.equal("/sys/fs/my cgroup/sub", tree.own_cgroup(reader({
      ["/proc/self/cgroup"] = "0::/docker/abc/sub\n",
      ["/proc/self/mountinfo"] = "50 40 0:40 /docker/abc /sys/fs/my\\040cgroup rw - cgroup2 cgroup2 rw\n",
    })))
  end)

  it("says why when there is no cgroup v2 to use", function()
    local dir, why = tree.own_cgroup(reader({ ["/proc/self/cgroup"] = "4:memory:/x\n10:pids:/\n" }))
    assert.is_nil(dir)
    assert.are.equal("no cgroup v2 hierarchy in /proc/self/cgroup", why)
    dir, why = tree.own_cgroup(reader({
      ["/proc/self/cgroup"] = "0::/elsewhere\n",
      ["/proc/self/mountinfo"] = "50 40 0:40 /docker/abc /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n",
    }))
    assert.is_nil(dir)
    assert.are.equal("our cgroup /elsewhere is not under a cgroup2 mount", why)
  end)
end)

describe("orch.tree.hash", function()
  it("is FNV-1a 32 as 8 hex digits", function()
    assert.are.equal("811c9dc5", tree.hash(""))
    assert.are.equal("e40c292c", tree.hash("a"))
    assert.are.equal("bf9cf968", tree.hash("foobar"))
    assert.are_not.equal(tree.hash("/tmp/a/home"), tree.hash("/tmp/b/home"))
  end)
end)

describe("orch.tree.new", function()
  it("uses the marker when told to, and says so", function()
    local t = tree.new("/h", { mode = "marker" })
    assert.are.same({ mode = "marker", why = "ORCH_TREE=marker" }, t:describe())
    assert.are.same({ mark = "4@/h" }, t:enter({ id = 4 }))
  end)

  it("refuses an unknown mode with a warning naming ORCH_TREE, and goes on", function()
    local logged = {}
    local t = tree.new(nil, { mode = "cgroups", log = function(level, msg) logged[#logged + 1] = level .. ": " .. msg end })
    assert.are.same({ 'warn: ORCH_TREE: expected auto, cgroup or marker, got "cgroups"; using auto' }, logged)
    assert.are.equal("marker", t.mode)
  end)
end)
