-- orch.logfiles: the log files of the process table. A sink per path,
-- opened on first use and shared by restarts and merged instances, closed
-- once no process writes to it; what `orch describe` says about them, and
-- `orch flush` and `orch reopen-logs`. Methods of the supervisor
-- (orch.supervisor mixes them in): they read self.sinks, self.procs,
-- self.opts.logs_dir and self.log.
local core = require("orch.core")
local launch = require("orch.launch")
local colour = require("orch.colour")

local M = {}
local S = {} -- supervisor methods
M.methods = S

-- The log rotation defaults (launch.rotation_defaults), read once, and how
-- long an unfinished line is held (launch.line_hold).
function S:_rotation_defaults()
  if not self.rotation then
    local problems
    self.rotation, problems = launch.rotation_defaults()
    local hold, problem = launch.line_hold()
    core.log_line_hold(hold)
    problems[#problems + 1] = problem
    for _, p in ipairs(problems) do self.log("warn", p .. "; using the default") end
  end
  return self.rotation
end

-- A line from orch in a process's error log (plain logs only: a formatted
-- log holds the app's records), so that `orch logs` shows it.
function S:note(proc, text)
  local app = proc.app
  if app.log_type == "json" or launch.time_format(app) then return end
  local _, err_path = launch.log_paths(app, proc.instance, self.opts.logs_dir)
  local sink = self.sinks[err_path]
  if sink then sink:write("orch: " .. text .. "\n") end
end

-- Output sent there is discarded, without opening anything (PM2's "NULL"
-- becomes this path when an ecosystem is read).
M.DISCARD = "/dev/null"

-- The sink of a log file, opened on first use and shared by restarts and
-- every app writing to that path; its rotation settings are those of the
-- app launched last.
function S:_sink(path, app)
  local rotation = launch.log_rotation(app or {}, self:_rotation_defaults())
  local s = self.sinks[path]
  if s then
    s:rotation(rotation)
    return s
  end
  if path == M.DISCARD then
    s = core.sink_open(nil)
    self.sinks[path] = s
    return s
  end
  local err, code
  -- orch's own logs directory is made again if someone deleted it; the
  -- directories of a path the user named are made as needed (as PM2 does)
  local named = launch.log_path_named(app or {}, path)
  local mkdir = path:match("^(.*)/[^/]*$") == self.opts.logs_dir or (named and "parents")
  s, err, code = core.sink_open(path, rotation, named, mkdir)
  if code == "ELOOP" then
    err = "a symlink, which orch does not follow in the log file names it makes "
      .. "(set out_file, error_file or log_file to this path to follow it)"
  end
  if not s then return nil, string.format("cannot open log file %s: %s", path, err), code, err end
  self.sinks[path] = s
  return s
end

-- The sinks of proc's log files (out, err, and combined or nil), or nil and
-- the error of the first that cannot be opened, which is also a log
-- problem (opts.log_problem: orch.logproblems).
function S:_open_logs(proc, out_path, err_path, combined_path)
  local paths, sinks = { out_path, err_path, combined_path }, {}
  for i = 1, 3 do
    if paths[i] then
      local s, err, code, why = self:_sink(paths[i], proc.app)
      if not s then
        if self.opts.log_problem then
          self.opts.log_problem({ path = paths[i], problem = "open", error = code, message = why, count = 1 })
        end
        return nil, err
      end
      sinks[i] = s
    end
  end
  return sinks[1], sinks[2], sinks[3]
end

-- core.spawn's (and core.adopt's) stdout and stderr options for proc: its
-- sinks, the echo's prefixes (orch run), the records' format. nil, message
-- when a log file cannot be opened.
function S:_streams(proc)
  local app = proc.app
  local out_path, err_path, combined_path = launch.log_paths(app, proc.instance, self.opts.logs_dir)
  local out, errs, combined = self:_open_logs(proc, out_path, err_path, combined_path)
  if not out then return nil, errs end

  local prefix_out, prefix_err
  if self.opts.echo then
    -- padded outside the colour codes, so labels line up on a terminal too
    local label = self:label(proc)
    local rest = string.rep(" ", self.prefix_width - #label) .. " | "
    prefix_out = (self.colour_out and colour.label(label, proc.id, "out") or label) .. rest
    prefix_err = (self.colour_err and colour.label(label, proc.id, "err") or label) .. rest
  end
  return { sink = out, combined = combined, echo_fd = self.opts.echo and 1 or nil, prefix = prefix_out,
           format = launch.log_format(app, proc.id, "out") },
         { sink = errs, combined = combined, echo_fd = self.opts.echo and 2 or nil, prefix = prefix_err,
           format = launch.log_format(app, proc.id, "err") }
end

-- Opens every log file again by its path (after an external logrotate
-- renamed them). Returns the paths reopened and "PATH: error" for failures.
function S:reopen_logs()
  local paths, reopened, errors = {}, {}, {}
  for path in pairs(self.sinks) do paths[#paths + 1] = path end
  table.sort(paths)
  for _, path in ipairs(paths) do
    local ok, err = self.sinks[path]:reopen()
    if ok then reopened[#reopened + 1] = path else errors[#errors + 1] = path .. ": " .. err end
  end
  return reopened, errors
end

-- The stats of each open log file of proc, once per file (out and err may
-- share one): { path, st } in log_paths order.
function S:_log_files(proc)
  local files, seen = {}, {}
  for _, path in ipairs({ launch.log_paths(proc.app, proc.instance, self.opts.logs_dir) }) do
    local sink = self.sinks[path]
    if sink and not seen[path] and path ~= M.DISCARD then
      seen[path] = true
      files[#files + 1] = { path = path, st = sink:stats() }
    end
  end
  return files
end

-- What went wrong with the log files of proc, as one line, or nil: a failed
-- rotation (writing goes on to the current file) or failed writes.
function S:log_problems(proc)
  local problems = {}
  for _, f in ipairs(self:_log_files(proc)) do
    local path, st = f.path, f.st
    if st.rotate_error then
      problems[#problems + 1] = string.format("%s: rotation failed (%s), still writing to it", path, st.rotate_error)
    end
    if st.compress_error then
      problems[#problems + 1] = string.format("%s: gzip of %s.1 failed (%s), kept as it is", path, path,
        st.compress_error)
    end
    if st.dir_remade > 0 then
      problems[#problems + 1] = string.format("%s: its directory was gone; orch made it again", path)
    end
    if st.remade > 0 then
      problems[#problems + 1] = string.format("%s: deleted while open; orch writes to a new file at that path",
        path)
    end
    if st.stalled then
      problems[#problems + 1] = string.format("%s: %s, writing paused until %s", path, st.error,
        st.error == "EAGAIN" and "its reader takes more (the app waits)" or "there is space")
    elseif st.error then
      problems[#problems + 1] = string.format("%s: %s, %d bytes dropped", path, st.error, st.dropped)
    end
  end
  return #problems > 0 and table.concat(problems, "; ") or nil
end

-- Each log file of proc (shared ones too): { path, written, size,
-- rotations, dropped }, bytes since the daemon opened it.
function S:log_stats(proc)
  local out = {}
  for i, f in ipairs(self:_log_files(proc)) do
    out[i] = { path = f.path, written = f.st.written, size = f.st.size, rotations = f.st.rotations,
               dropped = f.st.dropped }
  end
  return out
end

-- The processes writing to the log file at path (in table order).
function S:writers(path)
  local out = {}
  for _, p in ipairs(self.procs) do
    local o, e, c = launch.log_paths(p.app, p.instance, self.opts.logs_dir)
    if o == path or e == path or c == path then out[#out + 1] = p end
  end
  return out
end

-- Empties a log file of app (orch flush) and deletes its rotated files;
-- writers go on at the new end. true if the file existed, or nil, err.
function S:flush_log(path, app)
  local sink, ok, err = self.sinks[path]
  if sink then
    ok, err = sink:truncate()
  else
    local code
    ok, err, code = core.truncate_log(path, launch.log_path_named(app, path))
    if code == "ENOENT" or code == "ELOOP" then return nil end -- nothing of ours to empty
  end
  core.remove_rotated(path, launch.log_rotation(app, self:_rotation_defaults()).retain)
  return ok, err
end

-- Whether orch writes the file at path: an open log file, one of its
-- rotated files (FILE.N, FILE.N.gz), a gzip's temporary file, or a
-- directory orch may have made for them. For watch.
function S:is_log_file(path)
  if self.sinks[path] then return true end
  local base = path:match("^(.*)%.%d+$") or path:match("^(.*)%.%d+%.gz$") or path:match("^(.*)%.gzip%-[^/]*%.part$")
  if base and self.sinks[base] then return true end
  local dir = path .. "/"
  for p in pairs(self.sinks) do
    if p:sub(1, #dir) == dir then return true end
  end
  return false
end

-- Closes the sinks no process in the table writes to any more.
function S:_close_unused_sinks()
  local used = {}
  for _, p in ipairs(self.procs) do
    local out, err, combined = launch.log_paths(p.app, p.instance, self.opts.logs_dir)
    used[out], used[err] = true, true
    if combined then used[combined] = true end
  end
  for path, sink in pairs(self.sinks) do
    if not used[path] then
      sink:close()
      self.sinks[path] = nil
    end
  end
end

return M
