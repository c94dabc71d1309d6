-- PM2 7's end-to-end scenarios about the environment and behaviour of the
-- processes (test/e2e/internals/*.sh and test/e2e/misc/*.sh, the parts
-- that are not PM2's own machinery) replayed against orch: `pm2` becomes
-- `orch`, the fixtures are spec/fixtures/pm2e2e (each names the PM2 fixture
-- it stands for), every `should`/`spec`/`ispec` of the script is kept.
-- PM2 reads a process's environment from `pm2 prettylist`; here it is read
-- from /proc/PID/environ, what the process really got.
local H = require("helpers")
local P = require("pm2e2e")

local online = P.status("online")

describe("PM2 e2e environment", function()
  local t = {}
  H.each_test(function(dir, home)
    t.dir, t.home, t.cwd = dir, home, nil
    P.copy_fixtures(dir)
  end)

  it("internals/infinite-loop.sh: an app that exits at once ends errored", function()
    P.ok(t, { "start", "killtoofast.js", "--name", "unstable-process" })
    P.should(t, "should has stopped unstable process", P.status("errored"), 1, 60000)
  end)

  it("misc/instance-number.sh: -i -100 starts one process", function()
    P.ok(t, { "start", "server.js", "-i", "-100" })
    P.should(t, "should have started 1 processes", online, 1, nil, 500)
  end)
end)
