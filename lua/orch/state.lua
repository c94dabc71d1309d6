-- orch.state: JSON files in $ORCH_HOME written durably and atomically
-- (core/durable.c: a new temporary file, fsynced, renamed over the old one,
-- then the directory fsynced): a crash, a power loss or a full disk leaves
-- the old file or the new one, never half a file. The dump of `orch save`,
-- and the state file a restarted daemon reads.
local cjson = require("cjson").new()
local core = require("orch.core")

local M = {}

local function encode(path, value)
  local ok, text = pcall(cjson.encode, value)
  if not ok then return nil, "cannot encode " .. path .. ": " .. tostring(text) end
  return text .. "\n"
end

-- Blocking; for an orch on its way out (final: later queued writes of path
-- are dropped, so nothing older lands after this one). true | nil, message.
function M.write_json(path, value, final)
  local text, err = encode(path, value)
  if not text then return nil, err end
  if final then core.durable_seal(path) end
  return core.durable_write(path, text)
end

-- A writer of one file off the loop thread (fsync can take seconds; the
-- loop must not wait). write(value, done) queues value: one write at a time,
-- and a value queued while one is in progress replaces any other still
-- waiting. done(ok, message) once the write of this value (or of a newer
-- one) has ended. flush(done): done(ok, message) once the last queued value
-- is written, at once (true) when nothing is queued or in progress.
function M.writer(path)
  local w = {}
  local current, waiting, waiting_done -- dones of the write in progress; the next text and its dones
  local function run(text, dones)
    current = dones
    local function finished(ok, err)
      local ds = current
      current = nil
      if waiting then
        local t, wd = waiting, waiting_done
        waiting, waiting_done = nil, nil
        run(t, wd)
      end
      for _, d in ipairs(ds) do d(ok, err) end
    end
    local queued, qerr = core.durable_write(path, text, finished)
    if not queued then finished(nil, "cannot write " .. path .. ": " .. tostring(qerr)) end
  end
  function w.write(value, done)
    local text, err = encode(path, value)
    if not text then
      if done then done(nil, err) end
      return
    end
    if current then
      waiting, waiting_done = text, waiting_done or {}
      if done then waiting_done[#waiting_done + 1] = done end
    else
      run(text, { done })
    end
  end
  function w.flush(done)
    if waiting then
      waiting_done[#waiting_done + 1] = done
    elseif current then
      current[#current + 1] = done
    else
      done(true)
    end
  end
  return w
end

-- Returns the decoded value, or nil plus "ENOENT" when the file is absent,
-- or nil plus a message when it cannot be read or parsed.
function M.read_json(path)
  local f = io.open(path, "rb")
  if not f then return nil, "ENOENT" end
  local text = f:read("*a")
  f:close()
  local ok, value = pcall(cjson.decode, text)
  if not ok then return nil, path .. ": " .. tostring(value) end
  return value
end

return M
