-- A Lua HTTP worker: orch.worker.listen takes its connections from orch
-- (cluster mode: one by one, round-robin between the instances).
local worker = require("orch.worker")
local core = require("orch.core")
local port = tonumber(os.getenv("PORT") or "8001")

local function respond(conn, status, body)
  conn:write(string.format("HTTP/1.1 %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n"
    .. "Connection: close\r\n\r\n%s", status, #body, body))
  conn:shutdown(function() conn:close() end)
end

worker.listen({ port = port, host = "127.0.0.1" }, function(conn)
  local buf = ""
  conn:read_start(function(err, data)
    if err or not data then return conn:close() end
    buf = buf .. data
    if #buf > 65536 then conn:read_stop() return respond(conn, "413 Payload Too Large", "too large\n") end
    if buf:find("\r\n\r\n", 1, true) then
      conn:read_stop()
      respond(conn, "200 OK", "hello from Lua, pid " .. core.getpid() .. "\n")
    end
  end)
end)

-- `orch send lua-web '"stats"'` reaches here; the answer goes to the daemon
-- (the app's on_message hook below prints it in daemon.log).
worker.on_message(function(msg)
  if msg == "stats" then worker.send({ pid = core.getpid(), memory_kb = collectgarbage("count") }) end
end)
