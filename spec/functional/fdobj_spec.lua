-- Descriptors orch.core hands to Lua (listening, notify and channel
-- sockets, duplicates) are fd objects that own them: dropped, they close;
-- closed twice, nothing happens. Driven through `orch lua` scripts.
local H = require("helpers")

describe("orch.core descriptors", function()
  local dir, home
  H.each_test(function(d, h) dir, home = d, h end)

  local function run(body)
    local script = H.write(dir .. "/t.lua", "local core = require('orch.core')\n" .. body)
    local code, out, err = H.orch_sync({ "lua", script }, { home = home })
    assert.are.equal(0, code, err)
    return out
  end

  it("closes what a binding returned once the result is dropped (no fd leaks before hand-off)", function()
    local out = run(string.format([[
      local dir = %q
      local function open_fds()
        collectgarbage()
        collectgarbage()
        return (assert(core.fd_count()))
      end
      local made = {
        listen_tcp = function() return core.listen_tcp("127.0.0.1", 0) end,
        listen_unix = function(i) return core.listen_unix(dir .. "/s" .. i) end,
        notify_socket = function(i) return core.notify_socket(dir .. "/n" .. i) end,
        socketpair = function() return core.socketpair() end,
        dup = function() return core.dup(0) end,
      }
      for _, name in ipairs({ "listen_tcp", "listen_unix", "notify_socket", "socketpair", "dup" }) do
        made[name](0) -- whatever a first call opens for good (none expected)
        local before = open_fds()
        -- an error between creation and hand-off: the result goes nowhere
        for i = 1, 10 do
          pcall(function()
            assert(made[name](i))
            error("the caller fails before it keeps the descriptor")
          end)
        end
        print(name .. " " .. (open_fds() - before))
      end
    ]], dir))
    assert.are.equal("listen_tcp 0\nlisten_unix 0\nnotify_socket 0\nsocketpair 0\ndup 0\n", out)
  end)

  it("reads, closes once, releases and names a descriptor", function()
    local out = run([[
      local f = assert(core.listen_tcp("127.0.0.1", 0))
      local n = f:fd()
      print(type(n), tostring(f) == "orch.fd " .. n, core.sockport(f) > 0, core.sockport(n) == core.sockport(f))
      print(f:close(), f:close(), f:fd(), tostring(f))
      print(select(2, pcall(core.sockport, f)):match("descriptor already closed or released") ~= nil)
      local g = assert(core.listen_unix(]] .. string.format("%q", dir .. "/r") .. [[))
      local m = g:release()
      print(type(m), g:fd(), pcall(g.release, g) == false)
      g = nil
      collectgarbage()
      -- released: still open (a Unix socket, port 0), the caller's to close
      print(core.sockport(m) == 0)
      print(select(2, pcall(core.sockport, "x")):match("descriptor %(orch.fd or number%) expected") ~= nil)
    ]])
    assert.are.equal("number\ttrue\ttrue\ttrue\ntrue\ttrue\tnil\torch.fd (closed)\ntrue\n"
      .. "number\tnil\ttrue\ntrue\ntrue\n", out)
  end)

  it("spawn takes fd objects in its fd map and refuses a closed one, naming it", function()
    local out = run([[
      local a, b = assert(core.socketpair())
      local function spawn(fds)
        return core.spawn({ file = "/bin/sh", argv = { "sh", "-c", "echo hi >&3" }, env = {}, fds = fds,
          on_exit = function() end })
      end
      assert(spawn({ b }))
      b:close()
      local pipe = require("luv").new_pipe(false)
      assert(require("orch.util").open_handle(pipe, a))
      print(tostring(a))
      pipe:read_start(function(_, data)
        if data then io.write(data) end
        pipe:close()
      end)
      print(select(2, pcall(spawn, { b })):match("fds%[1%]: descriptor already closed or released") ~= nil)
    ]])
    assert.are.equal("orch.fd (closed)\ntrue\nhi\n", out)
  end)
end)
