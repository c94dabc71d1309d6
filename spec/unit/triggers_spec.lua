-- What a watch ignores (orch.triggers): orch's own files, node_modules and
-- .git always, dot-files unless ignore_watch is set (PM2's defaults), and
-- ignore_watch's globs.
local triggers = require("orch.triggers")

describe("watch ignores", function()
  local t = triggers.new({ log = function() end, home = "/srv/app/home",
    log_file = function(p) return p == "/srv/app/out.log" or p == "/srv/app/logs" end })

  local function ignored(roots, ignore_watch, path)
    return t:_ignored(triggers.watch_filter({}, roots, ignore_watch), path)
  end

  local function check(roots, ignore_watch, cases)
    for path, want in pairs(cases) do
      assert.are.equal(want, ignored(roots, ignore_watch, path), path .. " with " .. table.concat(ignore_watch or {}, " "))
    end
  end

  it("ignores orch's home and log files, node_modules and .git always, dot-files by default", function()
    check({ "/srv/app" }, nil, {
      ["/srv/app/app.js"] = false, ["/srv/app/lib/x.js"] = false,
      ["/srv/app/home/state.json"] = true, ["/srv/app/home"] = true, ["/srv/app/out.log"] = true,
      ["/srv/app/logs"] = true,
      ["/srv/app/node_modules/dep/index.js"] = true, ["/srv/app/lib/node_modules"] = true,
      ["/srv/app/.git/HEAD"] = true, ["/srv/app/.env"] = true, ["/srv/app/lib/.cache/x"] = true,
    })
    -- with ignore_watch, dot-files are watched again (PM2), .git still is not
    check({ "/srv/app" }, { "*.tmp" }, {
      ["/srv/app/.env"] = false, ["/srv/app/.git/index"] = true, ["/srv/app/node_modules/a"] = true,
    })
  end)

  it("matches ignore_watch's globs against the path below the watched one", function()
    check({ "/tmp/x" }, { "tmp", "*.log", "./build", "dist/**", "*.{swp,bak}", "\\.cache", "[ab].js",
                           "/tmp/x/secret", "conf/*.json", "?.txt" }, {
      ["/tmp/x/app.js"] = false, -- "tmp" is not matched against the watched path itself
      ["/tmp/x/tmp/a"] = true, ["/tmp/x/sub/tmp"] = true,
      ["/tmp/x/a.log"] = true, ["/tmp/x/sub/b.log"] = true, ["/tmp/x/a.log.js"] = false,
      ["/tmp/x/build/out.js"] = true, ["/tmp/x/rebuild"] = false,
      ["/tmp/x/dist/a/b.js"] = true,
      ["/tmp/x/f.swp"] = true, ["/tmp/x/f.bak"] = true, ["/tmp/x/f.swx"] = false,
      ["/tmp/x/.cache/a"] = true, ["/tmp/x/xcache"] = false,
      ["/tmp/x/a.js"] = true, ["/tmp/x/c.js"] = false,
      ["/tmp/x/secret"] = true, ["/tmp/x/secret/key"] = true, ["/tmp/x/secrets"] = false,
      ["/tmp/x/conf/a.json"] = true, ["/tmp/x/conf/sub/a.json"] = false,
      ["/tmp/x/a.txt"] = true, ["/tmp/x/ab.txt"] = false,
    })
  end)

  it("does not ignore everything when the watched path holds a dot-directory", function()
    check({ "/home/u/.apps/web" }, nil, { ["/home/u/.apps/web/app.js"] = false })
  end)

  it("watches only the file itself when a single file is watched", function()
    check({ "/srv/app/app.js" }, nil, { ["/srv/app/app.js"] = false, ["/srv/app/other.js"] = true })
  end)
end)
