-- An orch ecosystem: `orch run examples/ecosystem.lua` (Ctrl-C stops it).
-- Paths are relative to this file. Every option is in docs/ecosystem.md.
return {
  apps = {
    -- A Lua app, run by orch's own LuaJIT runtime (no Lua install needed).
    {
      name = "clock",
      script = "apps/clock.lua",
      args = { "1000" },            -- tick every 1000 ms
      env = { CLOCK_LABEL = "tick" },
    },
    -- Two instances of a shell worker that crashes now and then; each
    -- instance gets NODE_APP_INSTANCE / ORCH_INSTANCE = 0, 1.
    {
      name = "worker",
      script = "apps/worker.sh",
      instances = 2,
      exp_backoff_restart_delay = 100,  -- 100 ms, 150 ms, 225 ms, ... up to 15 s
      kill_timeout = 2000,
      -- Policy in Lua: give up on an instance after its 5th restart.
      restart = function(proc, exit)
        if proc.restarts >= 5 then return "stop" end
        -- nil: the default policy (PM2's semantics) decides
      end,
    },
  },
}
