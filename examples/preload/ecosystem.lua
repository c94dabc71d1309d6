-- Python's http.server, unmodified, as four instances on one port:
--
--   orch run examples/preload/ecosystem.lua      (PORT=9000 to change the port)
--   curl http://127.0.0.1:8080/
--
-- http.server binds its port itself, so a second copy would fail with
-- EADDRINUSE. With balance = "preload", orch binds the `listen` address once,
-- in the daemon, and LD_PRELOADs liborch_preload.so into every instance: each
-- one's bind() on that port gets the daemon's socket instead, and the kernel
-- hands every connection to one of the four. An instance that crashes or is
-- restarted costs no refused connection: the socket stays open in the daemon
-- and connections wait in its queue. Each instance logs its requests to its
-- own file (static-error-0.log ... static-error-3.log in $ORCH_HOME/logs), so
-- `orch logs static` shows the spread. Limits: docs/ecosystem.md, "balance".
local port = os.getenv("PORT") or "8080"

return {
  apps = {
    {
      name = "static",
      script = "python3",
      args = { "-m", "http.server", port, "--bind", "127.0.0.1", "--directory", "public" },
      instances = 4,
      listen = "tcp://127.0.0.1:" .. port,
      balance = "preload",
      env = { PYTHONUNBUFFERED = "1" },
    },
  },
}
