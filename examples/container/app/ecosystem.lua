-- The apps of the example container (examples/container/README.md). orch
-- runs it as PID 1: `orch run /app/ecosystem.lua`. The HTTP endpoint
-- (ORCH_HTTP, set in the Dockerfile) answers /readyz once "web" passes its
-- health check, which is what the Kubernetes readiness probe asks.
return {
  apps = {
    {
      name = "web",
      script = "hello.lua",
      env = { PORT = "8080" },
      -- docker stop and the kubelet send SIGTERM to PID 1; orch passes
      -- each app its kill_signal, and SIGKILL after kill_timeout. Keep
      -- kill_timeout well inside the grace period (Kubernetes' default 30 s,
      -- docker stop's 10 s).
      kill_signal = "SIGTERM",
      kill_timeout = "5s",
      health = { http = "http://127.0.0.1:8080/", interval = "2s", timeout = "1s", retries = 3 },
      wait_healthy = true,
    },
    {
      name = "worker",
      script = "worker.sh",
      kill_timeout = "5s",
    },
  },
}
