-- A headless Chromium for specs (spec/fixtures/browser.py: Debian's
-- chromium, chromium-driver and python3-selenium), one JSON command a line:
-- B.start(dir) -> browser with :call(req), :eval(js), :click(css),
-- :wait(js), :quit(). dir holds Chromium's profile.
local H = require("helpers")
local uv = require("luv")
local cjson = require("cjson")

local B = {}

local PYTHON = "/usr/bin/python3" -- Debian's, where python3-selenium is

-- The browser: one JSON command a line, one answer a line.
local Browser = {}
Browser.__index = Browser

function B.start(dir)
  H.need(PYTHON, "/usr/bin/chromium", "/usr/bin/chromedriver")
  local self = setmetatable({ buf = "", lines = {}, err = "" }, Browser)
  self.stdin, self.stdout, self.stderr = uv.new_pipe(false), uv.new_pipe(false), uv.new_pipe(false)
  local handle, pid = uv.spawn(PYTHON, {
    args = { H.root .. "/spec/fixtures/browser.py", dir .. "/chromium" },
    stdio = { self.stdin, self.stdout, self.stderr },
    detached = true, -- a group of its own: chromedriver and chromium go with it (H.track)
  }, function(code) self.code = code end)
  assert(handle, pid)
  self.handle, self.pid = handle, pid
  H.track(pid)
  self.stdout:read_start(function(_, data)
    if not data then return end
    self.buf = self.buf .. data
    for line in self.buf:gmatch("([^\n]*)\n") do self.lines[#self.lines + 1] = line end
    self.buf = self.buf:match("([^\n]*)$")
  end)
  self.stderr:read_start(function(_, data) if data then self.err = (self.err .. data):sub(-4000) end end)
  self:answer(90000) -- "ready": Chromium is up
  return self
end

function Browser:answer(timeout)
  local line = H.wait_until(function() return table.remove(self.lines, 1) end, timeout or 30000,
    function() return "the browser to answer; its stderr:\n" .. self.err end)
  local reply = cjson.decode(line)
  if not reply.ok then error("browser: " .. tostring(reply.error), 3) end
  return reply.value
end

function Browser:call(req, timeout)
  self.stdin:write(cjson.encode(req) .. "\n")
  return self:answer(timeout)
end

function Browser:eval(js) return self:call({ cmd = "eval", js = js }) end
function Browser:click(css) return self:call({ cmd = "click", css = css }) end

-- Polls the page until js returns a truthy value, which is returned.
function Browser:wait(js, timeout, what)
  return H.wait_until(function()
    local v = self:eval(js)
    return v ~= cjson.null and v or nil
  end, timeout or 20000, what or js)
end

function Browser:quit()
  if self.code == nil then
    pcall(function() self:call({ cmd = "quit" }, 20000) end)
    pcall(H.wait_until, function() return self.code ~= nil end, 20000)
  end
  if self.code == nil then pcall(uv.kill, -self.pid, "sigkill") end
  for _, h in ipairs({ self.stdin, self.stdout, self.stderr, self.handle }) do
    if not h:is_closing() then h:close() end
  end
end

return B
