-- The binary embeds every module below lua/orch/ under the name require
-- gives it (lua/orch/a/b.lua: orch.a.b), so the installed orch needs no
-- source tree.
local H = require("helpers")

describe("embedded modules", function()
  it("are every module of lua/orch/, by its require name", function()
    local names = {}
    local find = io.popen("cd '" .. H.root .. "/lua' && find orch -name '*.lua' -type f | LC_ALL=C sort")
    for path in find:lines() do
      names[#names + 1] = (path:gsub("/init%.lua$", ""):gsub("%.lua$", ""):gsub("/", "."))
    end
    find:close()
    assert.is_true(#names > 30, #names .. " modules found")
    local dir = H.tmpdir()
    -- the embedded loader alone, not the source tree: package.loaders[2],
    -- or [3] behind ORCH_LUA_DIR's path (core/runtime.c install_loader)
    local script = H.write(dir .. "/probe.lua", [[
      local embedded = package.loaders[(os.getenv("ORCH_LUA_DIR") or "") ~= "" and 3 or 2]
      local missing = {}
      for _, name in ipairs({ ... }) do
        if type(embedded(name)) ~= "function" then missing[#missing + 1] = name end
      end
      io.write(#missing == 0 and "all embedded" or ("not embedded: " .. table.concat(missing, " ")))
    ]])
    local args = { "lua", script }
    for _, n in ipairs(names) do args[#args + 1] = n end
    local code, out, err = H.orch_sync(args, { home = dir })
    H.sh("rm -rf '" .. dir .. "'")
    assert.are.equal(0, code, err)
    assert.are.equal("all embedded", out)
  end)
end)
