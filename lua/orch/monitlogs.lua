-- orch.monitlogs: the log pane of `orch monit`: the last lines of the
-- selected process's files (orch.logview's tail), then what is appended,
-- read by `orch monit` itself as `orch logs` does (no log byte passes
-- through the daemon). Checked on each tick: a file that shrank (flush) or
-- was replaced (rotation) is read again from its start.
local uv = require("luv")
local cjson = require("cjson")
local logview = require("orch.logview")

local M = {}

M.KEEP = 500 -- lines kept for the pane
M.MAX_READ = 256 * 1024 -- bytes read per file per tick; past that, the newest

local Follower = {}
Follower.__index = Follower

-- entry: one element of the `logs` reply ({out_log, err_log, log_type}).
-- The files' last lines come first, the file written to last at the end
-- (lines of two files cannot be put in the order they were written).
function M.follow(entry, first_lines)
  local self = setmetatable({ lines = {}, count = 0, files = {}, json = entry.log_type == "json" }, Follower)
  local seen = {}
  for _, s in ipairs({ { "out", entry.out_log }, { "err", entry.err_log } }) do
    local path = s[2]
    if type(path) == "string" and path ~= "/dev/null" and not seen[path] then
      seen[path] = true
      local st = uv.fs_stat(path)
      self.files[#self.files + 1] = { path = path, stream = s[1], partial = "", ino = st and st.ino,
                                      mtime = st and (st.mtime.sec + st.mtime.nsec / 1e9) or 0 }
    end
  end
  local order = {}
  for i, f in ipairs(self.files) do order[i] = f end
  table.sort(order, function(a, b) return a.mtime < b.mtime end)
  for _, f in ipairs(order) do
    local tail, size = logview.tail(f.path, first_lines or 50)
    f.offset = size
    for _, line in ipairs(tail) do self:add(f.stream, line) end
  end
  return self
end

function Follower:add(stream, line)
  if self.json then
    local ok, rec = pcall(cjson.decode, line)
    if ok and type(rec) == "table" and type(rec.message) == "string" then line = rec.message:gsub("\n$", "") end
  end
  self.lines[#self.lines + 1] = { stream = stream, text = line }
  self.count = self.count + 1
  if #self.lines > M.KEEP * 2 then
    local keep = {}
    for k = #self.lines - M.KEEP + 1, #self.lines do keep[#keep + 1] = self.lines[k] end
    self.lines = keep
  end
end

-- Reads what was appended since the last look. Returns true when lines came.
function Follower:poll()
  local before = self.count
  for _, f in ipairs(self.files) do
    local st = uv.fs_stat(f.path)
    if st then
      if st.ino ~= f.ino or st.size < f.offset then f.ino, f.offset, f.partial = st.ino, 0, "" end
      if st.size - f.offset > M.MAX_READ then f.offset, f.partial = st.size - M.MAX_READ, "" end
      if st.size > f.offset then
        local fd = uv.fs_open(f.path, "r", 0)
        if fd then
          local data = uv.fs_read(fd, st.size - f.offset, f.offset) or ""
          uv.fs_close(fd)
          f.offset = f.offset + #data
          data = f.partial .. data
          for line in data:gmatch("([^\n]*)\n") do self:add(f.stream, line) end
          f.partial = data:match("([^\n]*)$") or ""
        end
      end
    end
  end
  return self.count ~= before
end

return M
