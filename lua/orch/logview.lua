-- orch.logview: `orch logs`. The daemon only says where the files are; the
-- CLI reads their last lines itself and then, as PM2's does unless
-- --nostream, follows them (inotify via luv), so following many apps costs
-- the daemon nothing.
local client = require("orch.client")

local M = {}

local CHUNK = 65536

-- The last n lines of a file (a trailing partial line counts as one).
local function tail(path, n)
  local f = io.open(path, "rb")
  if not f then return {}, 0 end
  local size = f:seek("end")
  local pos, buf = size, ""
  local _, count
  while pos > 0 do
    local step = math.min(CHUNK, pos)
    pos = pos - step
    f:seek("set", pos)
    buf = f:read(step) .. buf
    _, count = buf:gsub("\n", "")
    if count > n then break end
  end
  f:close()
  local lines = {}
  for line in buf:gmatch("([^\n]*)\n") do lines[#lines + 1] = line end
  local rest = buf:match("([^\n]+)$")
  if rest then lines[#lines + 1] = rest end
  local first = math.max(1, #lines - n + 1)
  local out = {}
  for i = first, #lines do out[#out + 1] = lines[i] end
  return out, size
end
M.tail = tail -- orch monit's log pane

-- Now as ISO 8601 local time with milliseconds and offset, like the
-- timestamps orch writes in JSON records by default.
local function now_iso()
  local sec, usec = require("luv").gettimeofday()
  local z = os.date("%z", sec)
  return string.format("%s.%03d%s:%s", os.date("%Y-%m-%dT%H:%M:%S", sec), math.floor(usec / 1000), z:sub(1, 3), z:sub(4))
end

-- PM2's --highlight: every occurrence of value in text on a background
-- colour (PM2's bgBlackBright), on a terminal only, as PM2's colours.
local function highlighter(value, coloured)
  if not value or value == "" or not coloured then return function(text) return text end end
  local pattern = value:gsub("%p", "%%%0")
  local shown = "\27[100m" .. value:gsub("%%", "%%%%") .. "\27[49m"
  return function(text) return (text:gsub(pattern, shown)) end
end

-- Returns emit(file, line). A JSON log's record shows as its message (and
-- its own timestamp); a line that is not such a record shows as it is.
-- --timestamps stamps other lines with the time they are read, as orch cannot
-- know when they were written, except lines that start with their own
-- (log_date_format). --format: PM2's key=value lines, stamped the same way
-- (in PM2's format, YYYY-MM-DD-HH:mm:ssZZ).
local function emitter(o)
  local cjson = require("cjson")
  local colour = require("orch.colour")
  local coloured = { out = not o.json and colour.enabled(1), err = not o.json and colour.enabled(2) }
  local mark = { out = highlighter(o.highlight, coloured.out), err = highlighter(o.highlight, coloured.err) }
  return function(file, line)
    local text, stamp = line, nil
    if file.json then
      local ok, rec = pcall(cjson.decode, line)
      if ok and type(rec) == "table" and type(rec.message) == "string" then
        text = rec.message:gsub("\n$", "") -- a whole line's message holds its newline (PM2's records)
        if type(rec.timestamp) == "string" then stamp = rec.timestamp end
      end
    end
    if o.json then
      if o.timestamps and not stamp and not file.stamped then stamp = now_iso() end
      -- orch's fields, and PM2's (its jsonStream's) for the parsers written for it
      io.stdout:write(cjson.encode({ id = file.id, name = file.name, instance = file.instance,
                                     stream = file.stream, line = text, timestamp = stamp,
                                     message = text, type = file.stream, process_id = file.id,
                                     app_name = file.name }), "\n")
      return
    end
    if o.format then
      -- PM2's formatStream: everything on stdout, stderr's lines as type=error
      io.stdout:write("timestamp=", stamp or os.date("%Y-%m-%d-%H:%M:%S%z"), " app=", file.name, " id=", file.id,
        " type=", file.stream == "err" and "error" or "out", " message=", mark.out(text), "\n")
      return
    end
    if o.timestamps and not stamp and not file.stamped then stamp = now_iso() end
    text = mark[file.stream](text)
    local label = coloured[file.stream] and colour.label(file.label, file.id, file.stream) or file.label
    local out = file.stream == "err" and io.stderr or io.stdout
    if o.raw then
      -- PM2's --raw: the lines as the app wrote them, no label
      out:write(o.timestamps and stamp and (stamp .. ": ") or "", text, "\n")
    elseif o.timestamps and stamp then
      out:write(label, " | ", stamp, ": ", text, "\n")
    else
      out:write(label, " | ", text, "\n")
    end
  end
end

-- Follows every file. Each is read through an fd of its own, so a file that
-- rotation (orch's or logrotate's) renamed is read to its end before the new
-- file by that name is taken up from its start; a file that shrank on the same
-- inode was flushed: read again from the start. Changes are noticed by
-- watching the files' directories (a watch on the file itself would stay on
-- the renamed one), with a poll every second as a safety net.
local function follow(files, emit, keep)
  local uv = require("luv")
  local function read_rest(file)
    while true do
      local data = uv.fs_read(file.fd, CHUNK, file.offset)
      if not data or #data == 0 then return end
      file.offset = file.offset + #data
      data = file.partial .. data
      for line in data:gmatch("([^\n]*)\n") do emit(file, line) end
      file.partial = data:match("([^\n]*)$") or ""
    end
  end
  local function pump(file)
    if file.fd then
      local st = uv.fs_fstat(file.fd)
      if st and st.size < file.offset then file.offset, file.partial = 0, "" end
      read_rest(file)
    end
    local st = uv.fs_stat(file.path)
    if not st or (file.fd and st.ino == file.ino) then return end
    -- a new file by that name: the old one is read to its end (above); what
    -- it left unfinished goes on in the new one, where rotation cut it
    if file.fd then uv.fs_close(file.fd) end
    file.fd, file.offset = uv.fs_open(file.path, "r", 0), 0
    if not file.fd then return end
    file.ino = st.ino
    read_rest(file)
  end
  local function pump_all()
    for _, file in ipairs(files) do pump(file) end
    io.stdout:flush()
  end
  local dirs = {}
  for _, file in ipairs(files) do
    file.partial = ""
    file.fd = uv.fs_open(file.path, "r", 0)
    local st = file.fd and uv.fs_fstat(file.fd)
    if st then
      file.ino = st.ino
      -- rotated between the tail and now: the new file from its start
      if st.size < file.offset then file.offset = 0 end
    end
    dirs[file.path:match("^(.*)/") or "."] = true
  end
  for d in pairs(dirs) do
    local w = uv.new_fs_event()
    w:start(d, {}, pump_all)
  end
  local poll = uv.new_timer()
  poll:start(1000, 1000, pump_all)
  pump_all()
  if #files == 0 and not keep then return 0 end
  local sig = uv.new_signal()
  sig:start("sigint", function() uv.stop() end)
  uv.run()
  return 0
end

-- --events: orch's own lines about the processes (orch.events' records),
-- "web:0 | orch: exited with code 1 after 2.0 s", among their lines.
local function event_printer(o)
  local cjson = require("cjson")
  local eventlog = require("orch.eventlog")
  local colour = require("orch.colour")
  local coloured = not o.json and colour.enabled(1)
  return function(r)
    local what = eventlog.what(r)
    if o.json then
      local ms = math.floor(r.time)
      local z = os.date("%z", math.floor(ms / 1000))
      local stamp = string.format("%s.%03d%s:%s", os.date("%Y-%m-%dT%H:%M:%S", math.floor(ms / 1000)), ms % 1000,
        z:sub(1, 3), z:sub(4))
      io.stdout:write(cjson.encode({ id = r.id, name = r.app, instance = r.instance, stream = "orch", line = what,
                                     timestamp = stamp }), "\n")
    else
      local label = eventlog.who(r)
      if coloured and r.id then label = colour.label(label, r.id, "out") end
      io.stdout:write(label, " | orch: ", o.timestamps and (eventlog.clock(r) .. ": ") or "", what, "\n")
    end
    io.stdout:flush()
  end
end

-- Subscribes to the events of target (the last n first); follow: go on
-- with the new ones. Without follow, returns once the backlog is printed.
local function events(target, n, follow_on, o)
  local uv = require("luv")
  local eventview = require("orch.eventview")
  local args = eventview.args(target, nil, n)
  args.follow = follow_on
  local pipe, err = eventview.stream(args, event_printer(o), function(msg)
    if msg then io.stderr:write("orch logs: events: ", msg, "\n") end
    if not follow_on then uv.stop() end
  end)
  if not pipe then
    io.stderr:write("orch logs: events: ", err, "\n")
    return nil
  end
  if not follow_on then uv.run() end
  return true
end

-- The log files of the processes that targets name (a list of targets;
-- empty: every process), each once, /dev/null left out: a list, or nil,
-- message.
local function files_of(targets, o)
  local c, err = client.connect(true)
  if not c then return nil, err end
  local want_out, want_err = o.out or not o.err, o.err or not o.out
  local files, seen = {}, {}
  local cwd = require("orch.util").getcwd()
  for i = 1, math.max(#targets, 1) do
    local result, rerr = client.request(c, "logs", { target = targets[i], cwd = cwd })
    if not result then
      c:close()
      return nil, rerr.message
    end
    for _, e in ipairs(result) do
      for _, s in ipairs({ { "out", e.out_log, want_out }, { "err", e.err_log, want_err } }) do
        local stream, path, wanted = s[1], s[2], s[3]
        if wanted and path ~= "/dev/null" and not seen[path] then
          seen[path] = true
          files[#files + 1] = { path = path, stream = stream, id = e.id, name = e.name, instance = e.instance,
                                label = e.name .. ":" .. e.instance, json = e.log_type == "json",
                                stamped = e.log_type ~= "json" and type(e.log_date_format) == "string" }
        end
      end
    end
  end
  c:close()
  return files
end

-- The last n lines of each file, then (following) what comes.
local function show(files, o, n, following, keep)
  local emit = emitter(o)
  for _, file in ipairs(files) do
    local lines, size = tail(file.path, n)
    file.offset = size
    for _, line in ipairs(lines) do emit(file, line) end
  end
  io.stdout:flush()
  if following then return follow(files, emit, keep) end
  return 0
end

function M.main(p)
  local o = p.opts
  local target = p.positional[1]
  local files, err = files_of({ target }, o)
  if not files then
    io.stderr:write("orch logs: ", err, "\n")
    return 1
  end
  if #files == 0 and not o.events then
    io.stderr:write("orch logs: no processes\n")
    return target and 1 or 0
  end
  local n = tonumber(o.lines) or 15
  local following = o.follow or not o.nostream
  if o.events and not events(target, n, following, o) then return 1 end
  -- PM2's default: the tail, then what comes (Ctrl-C ends it)
  return show(files, o, n, following, o.events)
end

-- orch start --attach (PM2's): the logs of the processes just started or
-- restarted (ids), their last lines as orch logs shows them (so what an app
-- printed before this follows is not lost), then what comes, until Ctrl-C;
-- the apps run on.
function M.attach(ids)
  if #ids == 0 then return 0 end
  local files, err = files_of(ids, {})
  if not files then
    io.stderr:write("orch start: --attach: ", err, "\n")
    return 1
  end
  local shown = {}
  for i, id in ipairs(ids) do shown[i] = tostring(id) end
  io.stderr:write(string.format("following the logs of process(es) %s: Ctrl-C stops following, the apps run on\n",
    table.concat(shown, ", ")))
  if #files == 0 then return 0 end
  return show(files, {}, 15, true)
end

return M
