local hook = require("orch.hook")

describe("orch.hook.call", function()
  it("returns the function's results", function()
    assert.are.same({ true, 1, nil, 3 }, { hook.call(function(a) return a, nil, 3 end, 100, 1) })
  end)

  it("returns an error with its traceback", function()
    local ok, err = hook.call(function() error("boom") end, 100)
    assert.is_false(ok)
    assert.matches("boom", err)
    assert.matches("stack traceback", err)
  end)

  it("interrupts a function that runs past its deadline", function()
    local t0 = os.clock()
    local ok, err = hook.call(function() while true do end end, 50)
    assert.is_false(ok)
    assert.matches("^hook interrupted: ran longer than 50 ms", err)
    assert.is_true(os.clock() - t0 < 1)
  end)

  it("removes its count hook afterwards", function()
    hook.call(function() end, 10)
    assert.is_nil(debug.gethook())
  end)
end)

describe("orch.hook.call's deadline", function()
  local uv = require("luv")
  local function ms_since(t0) return (uv.hrtime() - t0) / 1e6 end
  -- Loops end by themselves after 3 s, so that a broken deadline fails the
  -- test instead of hanging it.
  local function spin_until(stop) while uv.hrtime() < stop do end end

  it("cannot be swallowed by a pcall in the function", function()
    local t0 = uv.hrtime()
    local stop = t0 + 3e9
    local ok, err = hook.call(function()
      while uv.hrtime() < stop do pcall(spin_until, stop) end
    end, 50)
    assert.is_false(ok)
    assert.matches("^hook interrupted: ran longer than 50 ms", err)
    assert.is_true(ms_since(t0) < 1000, ms_since(t0))
    assert.is_nil(debug.gethook())
  end)

  it("cannot be swallowed by an error handler (hook.xpcall, user code's) or an error loop", function()
    local t0 = uv.hrtime()
    local stop = t0 + 3e9
    local ok = hook.call(function()
      while uv.hrtime() < stop do
        hook.xpcall(spin_until, function() spin_until(stop) end, stop)
        pcall(error, "again")
      end
    end, 50)
    assert.is_false(ok)
    assert.is_true(ms_since(t0) < 1000, ms_since(t0))
  end)

  it("survives a nested call, which keeps the outer deadline", function()
    local t0 = uv.hrtime()
    local stop = t0 + 3e9
    local inner_ok
    local ok, err = hook.call(function()
      inner_ok = hook.call(function() return 1 end, 1000)
      spin_until(stop)
    end, 50)
    assert.is_true(inner_ok)
    assert.is_false(ok)
    assert.matches("^hook interrupted: ran longer than 50 ms", err)
    assert.is_true(ms_since(t0) < 1000, ms_since(t0))
    -- an inner call cannot outlive the outer deadline either
    t0 = uv.hrtime()
    stop = t0 + 3e9
    ok = hook.call(function()
      local iok = hook.call(spin_until, 5000, stop)
      assert(not iok)
      spin_until(stop)
    end, 50)
    assert.is_false(ok)
    assert.is_true(ms_since(t0) < 1000, ms_since(t0))
    assert.is_nil(debug.gethook())
  end)

  it("counts wall time, not CPU time", function()
    local t0 = uv.hrtime()
    local ok = hook.call(function()
      uv.sleep(400) -- no CPU time
      spin_until(uv.hrtime() + 3e9)
    end, 300)
    assert.is_false(ok)
    -- CPU time would let it spin 300 ms more after the sleep
    assert.is_true(ms_since(t0) < 650, ms_since(t0))
  end)

  it("reaches a function that user code loads, even once it is hot", function()
    local f = hook.load("local stop = ... while require_clock() < stop do end", "=loaded",
      { require_clock = uv.hrtime })
    for _ = 1, 200 do f(0) end -- hot: LuaJIT would have compiled its loop
    local t0 = uv.hrtime()
    local ok = hook.call(function() f(uv.hrtime() + 3e9) end, 50)
    assert.is_false(ok)
    assert.is_true(ms_since(t0) < 1000, ms_since(t0))
  end)

  it("loads text only", function()
    local fn, err = hook.load(string.dump(function() return 1 end), "=bytecode")
    assert.is_nil(fn)
    assert.matches("wrong mode", err)
  end)

  it("formats an error object whose __tostring never returns", function()
    local t0 = uv.hrtime()
    local obj = setmetatable({}, { __tostring = function() spin_until(uv.hrtime() + 3e9) return "x" end })
    local ok, err = hook.call(function() error(obj) end, 50)
    assert.is_false(ok)
    assert.is_string(err)
    assert.is_true(ms_since(t0) < 1000, ms_since(t0))
    assert.matches("^%(table value: __tostring failed%)$", hook.tostring(obj))
  end)
end)

describe("orch.hook.call, called many times", function()
  it("survives its count hook firing inside its own bookkeeping", function()
    -- functions of every length, so that the count hook fires at every
    -- point of enter() and leave() at some call
    for k = 1, 3000 do
      local ok = hook.call(function() for _ = 1, k % 1100 do end end, 1000)
      assert(ok == true, "call " .. k)
    end
    assert.is_nil(debug.gethook())
    assert.is_false(hook.active())
  end)
end)
