-- Prints a line every N ms (arg 1) until stopped; SIGINT ends it cleanly.
local uv = require("luv")
local period = tonumber(arg[1]) or 1000
local label = os.getenv("CLOCK_LABEL") or "tick"
local n = 0
local timer = uv.new_timer()
timer:start(0, period, function()
  n = n + 1
  io.stdout:write(string.format("%s %d at %s\n", label, n, os.date("%H:%M:%S")))
  io.stdout:flush()
end)
local sig = uv.new_signal()
sig:start("sigint", function()
  io.stdout:write("clock: SIGINT, bye\n")
  timer:close()
  sig:close()
end)
