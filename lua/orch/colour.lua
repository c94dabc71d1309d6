-- orch.colour: the `name:instance` label in front of app output, coloured on
-- a terminal. `orch logs` and `orch run`'s echo both use it, so an app has
-- the same colour in either.
local M = {}

-- ANSI foreground colours, one per process id in turn. Red is not among
-- them: it marks stderr.
local PALETTE = { "36", "33", "32", "35", "34", "96", "93", "92", "95", "94" }
local ERR = "1;31"

-- Whether output to fd may be coloured: it is a terminal and NO_COLOR is
-- unset or empty (https://no-color.org).
function M.enabled(fd)
  local no = os.getenv("NO_COLOR")
  return (no == nil or no == "") and require("orch.core").isatty(fd)
end

-- text (a label) coloured for process id on stream "out" or "err".
function M.label(text, id, stream)
  local code = stream == "err" and ERR or PALETTE[(tonumber(id) or 0) % #PALETTE + 1]
  return "\27[" .. code .. "m" .. text .. "\27[0m"
end

return M
