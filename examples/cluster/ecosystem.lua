-- Cluster mode: `orch start examples/cluster/ecosystem.lua`, then
--   curl 127.0.0.1:8000   (answers alternate between the two Node pids)
--   curl 127.0.0.1:8001   (the Lua workers)
--   orch reload hello     (one instance at a time, no request fails)
--   orch scale hello 4
return {
  apps = {
    {
      name = "hello",
      script = "hello.js",          -- unmodified: its listen(8000) goes to orch
      exec_mode = "cluster",
      instances = 2,                -- or "max": one per core
      balance = "round-robin",      -- the default in cluster mode; or "shared"
      env = { PORT = 8000 },
    },
    {
      name = "lua-web",
      script = "worker.lua",
      exec_mode = "cluster",
      instances = 2,
      env = { PORT = 8001 },
      on_message = function(proc, msg)
        if type(msg) == "table" then
          print(string.format("%s:%d: pid %s uses %.0f kB of Lua memory", proc.name, proc.instance, msg.pid, msg.memory_kb))
        end
      end,
    },
  },
}
