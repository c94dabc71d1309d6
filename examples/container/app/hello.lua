-- A small HTTP server on $PORT (default 8080), run by orch's own LuaJIT
-- runtime: every request gets "hello from <host>, instance <n>". SIGTERM
-- (the ecosystem's kill_signal) closes the listener and ends it cleanly.
local uv = require("luv")
io.stdout:setvbuf("line") -- a pipe to orch: each line as it is written
local port = tonumber(os.getenv("PORT")) or 8080
local instance = os.getenv("ORCH_INSTANCE") or "0"
local host = uv.os_gethostname()

local server = uv.new_tcp()
assert(server:bind("0.0.0.0", port))
assert(server:listen(128, function(err)
  if err then return end
  local client = uv.new_tcp()
  server:accept(client)
  local buf = ""
  client:read_start(function(rerr, data)
    if rerr or not data then return client:close() end
    buf = buf .. data
    if not buf:find("\r\n\r\n", 1, true) then return end
    local body = string.format("hello from %s, instance %s\n", host, instance)
    client:write(string.format("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n"
      .. "Connection: close\r\n\r\n%s", #body, body), function() client:close() end)
  end)
end))
print(string.format("listening on port %d", port))

local sig = uv.new_signal()
sig:start("sigterm", function()
  print("SIGTERM: closing the listener, bye")
  sig:close()
  server:close()
  uv.walk(function(h) if not h:is_closing() then h:close() end end)
end)
