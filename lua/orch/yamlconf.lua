-- orch.yamlconf: YAML ecosystem files (PM2's apps.yml) through Debian's
-- lua-yaml (lyaml over libyaml): the value, and an outline of where keys
-- sit (orch.srcmap's shape) from libyaml's events, so errors name lines.

local M = {}

local function libs()
  local ok, lyaml = pcall(require, "lyaml")
  local ok2, yaml = pcall(require, "yaml")
  if not (ok and ok2) then return nil end
  return lyaml, yaml
end

-- The first problem libyaml reports, with its line: lyaml's own message
-- carries the position of the last good event instead.
local function first_error(yaml, text)
  local ok, next_event = pcall(yaml.parser, text)
  if not ok then return nil end
  for _ = 1, #text + 10 do
    local good, ev = pcall(next_event)
    if not good then
      local msg = tostring(ev)
      local problem, line = msg:match("^(.-) at document: %d+, line: (%d+)")
      if not problem then problem, line = msg:match("^(.-) at line: (%d+)") end
      local context = msg:match("\n(while [^\n]-) at line: %d+")
      return (problem or msg:gsub("\n.*", "")) .. (context and (" (" .. context .. ")") or ""), tonumber(line)
    end
    if not ev or ev.type == "STREAM_END" then return nil end
  end
end

function M.available() return libs() ~= nil end

-- value, nil, the null it decodes to; or nil, message, line.
function M.decode(text)
  local lyaml, yaml = libs()
  if not lyaml then return nil, "the lua-yaml package (lyaml) is not installed" end
  local ok, value = pcall(lyaml.load, text)
  if ok then return value, nil, lyaml.null end
  local msg, line = first_error(yaml, text)
  if not msg then
    msg = tostring(value)
    local l, rest = msg:match("^(%d+):%d+: (.*)$")
    line, msg = tonumber(l), rest or msg
  end
  return nil, msg, line
end

-- The outline of the first document: { line, list, keys = {k -> {line,
-- node}}, items = {{line, node}} }, as orch.srcmap makes for JSON.
function M.outline(text)
  local _, yaml = libs()
  if not yaml then return nil end
  local next_event = yaml.parser(text)
  local root
  local stack = {} -- frames: { node, want = "key"|"value", key, key_line }
  -- A finished value (node: a collection's outline, or nil for a scalar),
  -- given to the frame that holds it.
  local function place(line, node)
    local f = stack[#stack]
    if not f then root = root or node return end
    if f.node.list then
      f.node.items[#f.node.items + 1] = { line = line, node = node }
    elseif f.want == "key" then
      f.want = "value" -- a collection as a key: it names nothing (f.key stays nil)
    else
      if f.key ~= nil then f.node.keys[f.key] = { line = f.key_line, node = node } end
      f.want, f.key = "key", nil
    end
  end
  for _ = 1, #text + 10 do
    local ev = next_event()
    if not ev or ev.type == "STREAM_END" or ev.type == "DOCUMENT_END" then break end
    local line = ev.start_mark and ev.start_mark.line + 1
    local f = stack[#stack]
    if ev.type == "MAPPING_START" or ev.type == "SEQUENCE_START" then
      stack[#stack + 1] = { node = { line = line, keys = {}, items = {}, list = ev.type == "SEQUENCE_START" },
                            want = "key", line = line }
    elseif ev.type == "MAPPING_END" or ev.type == "SEQUENCE_END" then
      local done = table.remove(stack)
      place(done.line, done.node)
    elseif ev.type == "SCALAR" or ev.type == "ALIAS" then
      if f and not f.node.list and f.want == "key" then
        f.key, f.key_line, f.want = ev.type == "SCALAR" and ev.value or nil, line, "value"
      else
        place(line, nil)
      end
    end
  end
  return root
end

return M
