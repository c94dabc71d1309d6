-- PM2 7's end-to-end process file scenarios (test/e2e/process-file/*.sh)
-- replayed against orch: `pm2` becomes `orch`, the fixtures are
-- spec/fixtures/pm2e2e (each names the PM2 fixture it stands for), every
-- `should`/`spec`/`ispec` of the script is kept.
local H = require("helpers")
local P = require("pm2e2e")

local online = P.status("online")

describe("PM2 e2e process-file", function()
  local t = {}
  H.each_test(function(dir, home)
    t.dir, t.home, t.cwd = dir, home, nil
    P.copy_fixtures(dir)
  end)

  it("process-file/append-env-to-name.sh: append_env_to_name suffixes the app's name with --env", function()
    P.ok(t, { "start", "append-env-to-name.json", "--env", "dev" })
    P.should(t, "have started app with name web-dev", P.named("web-dev"), 1)
    P.ok(t, { "start", "append-env-to-name.json", "--env", "prod" })
    P.should(t, "have started same app with name : web-prod", P.named("web-prod"), 1)
  end)

  it("process-file/js-configuration.sh: an ecosystem.config.js starts", function()
    t.cwd = t.dir .. "/js-configuration"
    P.ok(t, { "start", "ecosystem.config.js" })
    -- the config's app, not the config file run as a script
    P.should(t, "should have started 1 processes", P.both(P.named("API"), online), 1, nil, 1000)
    P.should(t, "should have started 1 processes", online, 1)
  end)
end)
