-- orch.state: JSON files in $ORCH_HOME written durably and atomically
-- (core/durable.c: a new temporary file, fsynced, renamed over the old one,
-- then the directory fsynced): a crash, a power loss or a full disk leaves
-- the old file or the new one, never half a file. The dump of `orch save`,
-- and the state file a restarted daemon reads.
local cjson = require("cjson").new()
local core = require("orch.core")

local M = {}

-- value: a string is JSON already.
local function encode(path, value)
  if type(value) == "string" then return value .. "\n" end
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
-- waiting. value may be a function that returns it: called (and its result
-- encoded) only when its write begins, so that changes made during a write
-- cost one encoding after it, not one each. done(ok, message) once the
-- write of this value (or of a newer one) has ended. flush(done): done(ok,
-- message) once the last queued value is written, at once (true) when
-- nothing is queued or in progress. encoded(): how many values it encoded.
function M.writer(path)
  local w = {}
  local current, waiting, waiting_done -- dones of the write in progress; the next value and its dones
  local encodings = 0
  local run
  local function begin(value, dones)
    local text, err
    if type(value) == "function" then
      -- a builder that raises fails its write like a value that cannot be
      -- encoded: the dones (a flush, the write just finished) still hear
      local ok, v = pcall(value)
      if ok then value = v else err = "cannot encode " .. path .. ": " .. tostring(v) end
    end
    encodings = encodings + 1
    if not err then text, err = encode(path, value) end
    if not text then
      for _, d in ipairs(dones) do d(nil, err) end
      return
    end
    run(text, dones)
  end
  function run(text, dones)
    current = dones
    local function finished(ok, err)
      local ds = current
      current = nil
      if waiting then
        local v, wd = waiting, waiting_done
        waiting, waiting_done = nil, nil
        begin(v, wd)
      end
      for _, d in ipairs(ds) do d(ok, err) end
    end
    local queued, qerr = core.durable_write(path, text, finished)
    if not queued then finished(nil, "cannot write " .. path .. ": " .. tostring(qerr)) end
  end
  function w.write(value, done)
    if current then
      waiting, waiting_done = value, waiting_done or {}
      if done then waiting_done[#waiting_done + 1] = done end
    else
      begin(value, { done })
    end
  end
  function w.encoded() return encodings end
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
