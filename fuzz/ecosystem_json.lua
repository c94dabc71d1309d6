-- Fuzz driver: ecosystem files in JSON (lua/orch/ecosystem.lua load: PM2's
-- relaxed JSON (orch.relaxjson), the line map of srcmap.json_lines, normalize and every
-- option's check). Each input is the file's text. load must return the
-- configuration, or nil and a message that begins with the file's path.
local C = dofile(debug.getinfo(1, "S").source:match("^@(.*/)") .. "lib/common.lua")
local ecosystem = require("orch.ecosystem")

local dir = C.tmpdir()
local path = dir .. "/ecosystem.json"

return function(data)
  local f = assert(io.open(path, "wb"))
  f:write(data)
  f:close()
  local cfg, err = ecosystem.load(path, { cwd = dir, cpus = 2 })
  if cfg then
    assert(type(cfg) == "table" and type(cfg.apps) == "table", "load returns a configuration")
  else
    assert(type(err) == "string", "load's error is a string")
    assert(err:sub(1, #path) == path, "the error names the file first: " .. err)
  end
  C.check()
end
