-- orch.runas against a fake user database: the checks of uid, gid, umask,
-- nice, oom_score_adj and limits, and what a launch gets from them.
local runas = require("orch.runas")

-- A database of two users and three groups; ids() is orch's own user.
local function fake_db(euid, egid)
  local users = {
    { name = "root", uid = 0, gid = 0, home = "/root" },
    { name = "web", uid = 1001, gid = 1001, home = "/srv/web" },
  }
  local groups = { { name = "root", gid = 0 }, { name = "web", gid = 1001 }, { name = "ssl", gid = 1002 } }
  local function find(list, key, v)
    for _, e in ipairs(list) do
      if (type(v) == "number" and e[key] == v) or e.name == v then return e end
    end
    return nil, "no such entry"
  end
  return {
    user = function(v) return find(users, "uid", v) end,
    group = function(v) return find(groups, "gid", v) end,
    user_groups = function(name, gid) return name == "web" and { gid, 1002 } or { gid } end,
    ids = function() return euid, egid end,
  }
end

describe("orch.runas", function()
  after_each(function() runas.db = nil end)

  describe("uid and gid", function()
    it("takes names and ids, keeping a name as written and an id as a number", function()
      runas.db = fake_db(0, 0)
      assert.are.equal("web", runas.check_uid("web"))
      assert.are.equal(1001, runas.check_uid(1001))
      assert.are.equal(1001, runas.check_uid("1001")) -- digits naming nobody: an id, as chown takes them
      assert.are.equal("ssl", runas.check_gid("ssl"))
    end)

    it("refuses users and groups the database does not know", function()
      runas.db = fake_db(0, 0)
      assert.are.same({ nil, 'no such user "nobody-here"' }, { runas.check_uid("nobody-here") })
      assert.are.same({ nil, "no user of id 4242 (the user database has no entry for it, which orch needs for its "
        .. "group and home)" }, { runas.check_uid(4242) })
      assert.are.same({ nil, 'no such group "wheel"' }, { runas.check_gid("wheel") })
      assert.are.same({ nil, "expected a user name or id, got number -1" }, { runas.check_uid(-1) })
    end)

    it("says why another user is refused when orch is not root, and takes its own", function()
      runas.db = fake_db(1001, 1001)
      local v, err = runas.check_uid("root")
      assert.is_nil(v)
      assert.are.equal('running the app as user "root" needs orch to run as root (only root may start a process '
        .. "as another user), and orch runs as uid 1001 (web): start orch as root, or remove this option to run "
        .. "the app as uid 1001 (web)", err)
      assert.matches('^running the app as group "ssl" needs orch to run as root', select(2, runas.check_gid("ssl")))
      assert.are.equal("web", runas.check_uid("web"))
      assert.are.equal(1001, runas.check_gid(1001))
    end)
  end)

  describe("umask, nice, oom_score_adj", function()
    it("reads umask as octal digits, from a string or a number", function()
      assert.are.equal("0027", runas.check_umask("0027"))
      assert.are.equal("0027", runas.check_umask("027"))
      assert.are.equal("0022", runas.check_umask(22))
      assert.are.equal("0077", runas.check_umask("0o077"))
      for _, bad in ipairs({ "0999", 28, "1777", -1, "u=rwx", true }) do
        assert.is_nil(runas.check_umask(bad), tostring(bad))
      end
    end)

    it("bounds nice and oom_score_adj", function()
      assert.are.equal(-20, runas.check_nice(-20))
      assert.are.equal(19, runas.check_nice("19"))
      assert.is_nil(runas.check_nice(20))
      assert.are.equal(-1000, runas.check_oom_score_adj(-1000))
      assert.is_nil(runas.check_oom_score_adj(1001))
    end)
  end)

  describe("limits", function()
    it("takes a value for both limits, a pair, infinity and sizes", function()
      assert.are.same({
        nofile = { soft = 65536, hard = 65536 },
        nproc = { soft = 512, hard = 1024 },
        core = { soft = 0, hard = "infinity" },
        as = { soft = 2 * 1024 ^ 3, hard = 2 * 1024 ^ 3 },
        stack = { soft = "infinity", hard = "infinity" },
      }, runas.check_limits({ nofile = 65536, nproc = { 512, 1024 }, core = { soft = 0, hard = "unlimited" },
        as = "2G", stack = "infinity" }))
    end)

    it("names the limit that is wrong", function()
      assert.are.same({ nil, 'unknown limit "nofiles" (did you mean "nofile"?); the limits are as, core, cpu, '
        .. "data, fsize, locks, memlock, msgqueue, nice, nofile, nproc, rss, rtprio, rttime, sigpending, stack",
        "nofiles" }, { runas.check_limits({ nofiles = 1 }) })
      assert.are.same({ nil, 'limit "nproc": the soft limit (10) is above the hard one (5)', "nproc" },
        { runas.check_limits({ nproc = { 10, 5 } }) })
      assert.are.same({ nil, 'limit "nofile": expected a non-negative integer, "infinity", or { soft, hard } of '
        .. 'those, got string "1G"', "nofile" }, { runas.check_limits({ nofile = "1G" }) })
      assert.are.same({ nil, 'limit "core": expected { soft, hard }, got table', "core" },
        { runas.check_limits({ core = { 1 } }) })
    end)
  end)

  describe("resolve", function()
    it("gives a launch the user's ids, groups and login variables, as root", function()
      runas.db = fake_db(0, 0)
      local r = assert(runas.resolve({ uid = "web", umask = "0027", nice = 5, oom_score_adj = 100,
        limits = { nofile = { soft = 10, hard = 20 }, core = { soft = 0, hard = 0 } } }))
      assert.are.same({ HOME = "/srv/web", USER = "web", LOGNAME = "web" }, r.env)
      assert.are.same({ uid = 1001, gid = 1001, groups = { 1001, 1002 }, umask = 23, nice = 5, oom_score_adj = 100,
        limits = { { name = "core", soft = 0, hard = 0 }, { name = "nofile", soft = 10, hard = 20 } } }, r.spawn)
    end)

    it("takes gid as the primary group, and gid alone drops the supplementary groups", function()
      runas.db = fake_db(0, 0)
      assert.are.same({ uid = 1001, gid = 1002, groups = { 1002, 1002 } },
        assert(runas.resolve({ uid = "web", gid = "ssl" })).spawn)
      assert.are.same({ gid = 1002, groups = { 1002 } }, assert(runas.resolve({ gid = "ssl" })).spawn)
    end)

    it("switches nothing when not root and the user is orch's own", function()
      runas.db = fake_db(1001, 1001)
      local r = assert(runas.resolve({ uid = "web" }))
      assert.are.same({}, r.spawn)
      assert.are.equal("/srv/web", r.env.HOME)
      assert.matches('^uid: running the app as user "root"', select(2, runas.resolve({ uid = "root" })))
    end)
  end)
end)
