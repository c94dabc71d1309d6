-- tools/deadsyms: no global function of orch's C objects is left that
-- nothing uses, and the checker itself finds one.
local H = require("helpers")

-- Runs tools/deadsyms on a build and a source tree: its output and status.
local function deadsyms(build, src)
  local out = H.sh(string.format("sh '%s/tools/deadsyms' '%s' '%s' 2>&1; echo \"rc=$?\"", H.root, build, src))
  local rc = tonumber(out:match("rc=(%d+)\n$"))
  return out:gsub("rc=%d+\n$", ""), rc
end

describe("tools/deadsyms", function()
  local dir
  after_each(function()
    if dir then H.sh("rm -rf '" .. dir .. "'") end
    dir = nil
  end)

  it("finds no dead function in orch's own objects", function()
    local out, rc = deadsyms(H.bin:match("^(.*)/[^/]*$"), H.root)
    assert.are.equal("no dead functions\n", out)
    assert.are.equal(0, rc)
  end)

  it("lists a function nothing calls, and none that another object, its own file or Lua calls", function()
    dir = H.tmpdir()
    local files = {
      ["core/a.c"] = "int dead_fn(void) { return 2; }\n"
        .. "int local_fn(void) { return 1; }\n"
        .. "int cross_fn(void) { return local_fn(); }\n"
        .. "int ffi_fn(void) { return 3; }\n",
      ["core/b.c"] = "int cross_fn(void);\nint main(void) { return cross_fn(); }\n",
      ["lua/x.lua"] = 'local ffi = require("ffi")\nffi.cdef("int ffi_fn(void);")\nreturn ffi.C.ffi_fn()\n',
    }
    for path, text in pairs(files) do
      H.sh(string.format("mkdir -p '%s/src/%s'", dir, path:match("^(.*)/")))
      H.write(dir .. "/src/" .. path, text)
    end
    local objs = dir .. "/build/CMakeFiles/t.dir"
    H.sh(string.format("mkdir -p '%s' && cd '%s/src' && cc -c core/a.c -o '%s/a.c.o' && cc -c core/b.c -o '%s/b.c.o'",
      objs, dir, objs, objs))
    local out, rc = deadsyms(dir .. "/build", dir .. "/src")
    assert.are.equal("dead: dead_fn (core/a.c)\n", out)
    assert.are.equal(1, rc)
  end)
end)
