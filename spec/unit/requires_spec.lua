-- tools/requires: the require graph of lua/ has no cycle (a lazy require
-- inside a function counts), and the checker itself finds one.
local H = require("helpers")

-- Runs tools/requires on dir: its output and exit status.
local function requires(dir)
  local out = H.sh(string.format("luajit '%s/tools/requires' '%s' 2>&1; echo \"rc=$?\"", H.root, dir))
  local rc = tonumber(out:match("rc=(%d+)\n$"))
  return out:gsub("rc=%d+\n$", ""), rc
end

-- A tree of modules below a fresh directory: { ["orch/a.lua"] = "source" }.
local function tree(files)
  local dir = H.tmpdir()
  for path, src in pairs(files) do
    H.sh(string.format("mkdir -p '%s/%s'", dir, path:match("^(.*)/") or "."))
    H.write(dir .. "/" .. path, src)
  end
  return dir
end

describe("tools/requires", function()
  local dirs = {}
  after_each(function()
    for _, d in ipairs(dirs) do H.sh("rm -rf '" .. d .. "'") end
    dirs = {}
  end)
  local function make(files)
    local d = tree(files)
    dirs[#dirs + 1] = d
    return d
  end

  it("finds no cycle among orch's own modules", function()
    local out, rc = requires(H.root .. "/lua")
    assert.is_nil(out:find("cycle:", 1, true), out)
    assert.are.equal(0, rc, out)
    assert.truthy(out:find("\norch.engine -> ", 1, true), out)
    assert.truthy(out:find("\nno cycle\n$"), out)
  end)

  it("fails on a cycle made by a lazy require inside a function", function()
    local d = make({
      ["orch/a.lua"] = 'local b = require("orch.b")\nreturn { b = b }\n',
      ["orch/b.lua"] = 'local M = {}\nfunction M.f() return require "orch.a" end\nreturn M\n',
    })
    local out, rc = requires(d)
    assert.are.equal(1, rc, out)
    assert.truthy(out:find("cycle: orch.a -> orch.b -> orch.a", 1, true), out)
  end)

  it("follows pcall(require, ...), sub-folders and names kept for a later require", function()
    local d = make({
      ["orch/a.lua"] = 'local ok, b = pcall(require, "orch.sub.b")\nreturn {}\n',
      ["orch/sub/b.lua"] = 'local verbs = { x = { module = "orch.sub" } }\nreturn require(verbs.x.module)\n',
      ["orch/sub/init.lua"] = 'return require("orch.a")\n',
    })
    local out, rc = requires(d)
    assert.are.equal(1, rc, out)
    assert.truthy(out:find("orch.sub.b -> orch.sub  (1 dynamic require(s))", 1, true), out)
    assert.truthy(out:find("cycle: orch.a -> orch.sub.b -> orch.sub -> orch.a", 1, true), out)
  end)

  it("does not count a require in a comment or in a longer string", function()
    local d = make({
      ["orch/a.lua"] = 'local b = require("orch.b")\nreturn b\n',
      ["orch/b.lua"] = '-- require("orch.a")\n--[[ require("orch.a") ]]\n'
        .. 'local s = "see require(\'orch.a\')"\nreturn s\n',
    })
    local out, rc = requires(d)
    assert.are.equal(0, rc, out)
    assert.truthy(out:find("orch.b ->\n", 1, true), out)
  end)
end)
