-- What a managed process gets from orch, and what orch keeps for itself:
-- descriptors, resource limits, environment, orphans, stop semantics.
local H = require("helpers")
local uv = require("luv")

-- The open descriptors of a process, read from outside it: "0 1 2 3".
local function fds_of(pid)
  local fds = {}
  local scan = uv.fs_scandir("/proc/" .. pid .. "/fd")
  if not scan then return nil end
  for name in uv.fs_scandir_next, scan do fds[#fds + 1] = tonumber(name) end
  table.sort(fds)
  return table.concat(fds, " ")
end

describe("spawn", function()
  local dir, home
  H.each_test(function(d, h) dir, home = d, h end)

  describe("descriptors", function()
    it("gives an app 0-2 and its IPC channel only, whatever orch run inherited", function()
      -- and a health check (a uv_spawn child) says which fds it got
      local file = H.ecosystem(dir, string.format([[
        { name = "fds", script = "sleep", args = { "60" },
          health = { exec = { "sh", "-c", "ls /proc/self/fd > %s/check.tmp && mv %s/check.tmp %s/check.fds" }, interval = "1s" } },
      ]], dir, dir, dir))
      -- orch run with fds 7 and 9 open and not close-on-exec
      local o = H.orch({ "-c", string.format('exec 7</etc/hostname 9>"%s/nine"; exec "%s" run "%s"',
        dir, H.bin, file) }, { home = home, program = "sh" })
      local pid = H.wait_until(function() return o:online("fds:0")[1] end, 10000,
        function() return "the app online; orch said:\n" .. o.err end).pid
      assert.are.equal("0 1 2 3", fds_of(pid))
      local check = H.wait_until(function() return H.read(dir .. "/check.fds") end, 10000, "the health check's fds")
      local listed = H.numbers(check, "(%d+)\n")
      table.sort(listed)
      assert.are.equal("0 1 2 3", table.concat(listed, " ")) -- 3: ls's own directory
    end)
  end)
end)
