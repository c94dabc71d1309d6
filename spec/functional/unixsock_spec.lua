-- Unix sockets orch binds at a path (the control socket, notify sockets, an
-- app's listen sockets) go through one bind (core/unixsock.c): a socket file
-- left behind is replaced, anything else there is refused and kept.
-- Driven through an `orch lua` script.
local H = require("helpers")

describe("orch.core Unix socket binds", function()
  local dir, home
  H.each_test(function(d, h) dir, home = d, h end)

  it("replace a socket file left behind, never a regular file; listen_unix's keep mode replaces nothing", function()
    local script = H.write(dir .. "/t.lua", string.format([[
      local core = require("orch.core")
      local dir = %q
      local function left_behind(p) assert(core.listen_unix(p)):close() end -- the file stays
      local made = {
        listen_unix = function(p) return core.listen_unix(p) end,
        notify_socket = function(p) return core.notify_socket(p) end,
        ctl_listen = function(p) return core.ctl_listen(p, { on_line = function() end }) end,
      }
      for _, name in ipairs({ "listen_unix", "notify_socket", "ctl_listen" }) do
        local p = dir .. "/" .. name
        left_behind(p)
        local s, err = made[name](p)
        print(name, "left behind", s and "bound" or err)
        s:close()
        os.remove(p)
        local f = assert(io.open(p, "w"))
        f:write("data")
        f:close()
        print(name, "regular file", select(3, made[name](p)), assert(io.open(p)):read("*a"))
      end
      left_behind(dir .. "/keep")
      print("keep", select(3, core.listen_unix(dir .. "/keep", 16, true)))
    ]], dir))
    local code, out, err = H.orch_sync({ "lua", script }, { home = home })
    assert.are.equal(0, code, err)
    assert.are.equal(table.concat({
      "listen_unix\tleft behind\tbound",
      "listen_unix\tregular file\tEEXIST\tdata",
      "notify_socket\tleft behind\tbound",
      "notify_socket\tregular file\tEEXIST\tdata",
      "ctl_listen\tleft behind\tbound",
      "ctl_listen\tregular file\tEEXIST\tdata",
      "keep\tEADDRINUSE",
      "",
    }, "\n"), out)
  end)
end)
