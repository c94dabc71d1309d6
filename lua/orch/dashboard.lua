-- orch.dashboard: the web dashboard on orch's HTTP endpoint (docs/http.md,
-- "Dashboard"): the page (orch.dashboard_page) and the tail of a process's
-- log files. The process list, the event stream (/events) and the actions
-- are orch.httproutes'. Nothing here runs while no page is open; an open
-- page's log view costs one asynchronous read a second.
local uv = require("luv")
local cjson = require("cjson").new()
local launch = require("orch.launch")

local M = {}

M.LOG_BYTES = 65536   -- bytes of a log file one answer carries at most

local JSON = { ["Content-Type"] = "application/json" }

local function reply(res, status, value)
  res:send(status, cjson.encode(value), JSON)
end

local function fail(res, status, code, message)
  reply(res, status, { ok = false, error = { code = code, message = message } })
end

-- The process of id `id`, or nil.
local function proc_by_id(engine, id)
  for _, p in ipairs(engine.sup:list()) do
    if p.id == id then return p end
  end
end

-- Reads path from offset `from` (nil: its last LOG_BYTES) without blocking
-- the loop; done(answer) or done(nil, err). A `from` past the end (the file
-- was rotated or flushed) starts again from its beginning: answer.reset.
local function read_log(path, from, done)
  uv.fs_open(path, "r", 0, function(oerr, fd)
    if not fd then return done(nil, oerr) end
    uv.fs_fstat(fd, function(serr, st)
      if not st then
        uv.fs_close(fd, function() end)
        return done(nil, serr)
      end
      local size, reset = st.size, false
      if from and from > size then from, reset = 0, true end
      local start = from or math.max(0, size - M.LOG_BYTES)
      local skipped = 0
      if size - start > M.LOG_BYTES then
        skipped = size - M.LOG_BYTES - start
        start = size - M.LOG_BYTES
      end
      local function answer(text)
        uv.fs_close(fd, function() end)
        -- a tail that starts inside a line shows from the next one
        if start > 0 and (from == nil or skipped > 0) then
          local cut = text:find("\n", 1, true)
          if cut then
            start = start + cut
            text = text:sub(cut + 1)
          end
        end
        done({ path = path, size = size, from = start, text = text, reset = reset, skipped = skipped })
      end
      if size <= start then return answer("") end
      uv.fs_read(fd, size - start, start, function(rerr, data)
        if rerr then
          uv.fs_close(fd, function() end)
          return done(nil, rerr)
        end
        answer(data or "")
      end)
    end)
  end)
end

-- GET /api/logs?id=N&stream=out|err[&from=OFFSET] (token): the end of the
-- process's stdout or stderr log file, or what was written after OFFSET
-- (the `size` of the previous answer): {ok, result = {path, size, from,
-- text, reset, skipped}}. Logs may hold secrets, so unlike the list they
-- need the token.
local function logs(engine, req, res)
  local id = tonumber(req:param("id") or "")
  local p = id and proc_by_id(engine, id)
  if not p then return fail(res, 404, "ENOTFOUND", "no process with id " .. tostring(req:param("id"))) end
  local which = req:param("stream") or "out"
  if which ~= "out" and which ~= "err" then
    return fail(res, 400, "EINVAL", "stream must be out or err, not '" .. which .. "'")
  end
  local from = req:param("from")
  if from ~= nil then
    from = tonumber(from)
    if not (from and from >= 0 and from == math.floor(from)) then
      return fail(res, 400, "EINVAL", "from must be a byte offset (an integer >= 0)")
    end
  end
  local out, err = launch.log_paths(p.app, p.instance, engine.paths.logs)
  local path = which == "out" and out or err
  if path == "/dev/null" then
    return reply(res, 200, { ok = true, result = { path = path, size = 0, from = 0, text = "", reset = false,
                                                    skipped = 0 } })
  end
  read_log(path, from, function(result, rerr)
    if res:gone() then return end
    if not result then
      -- no file yet: nothing was written
      if tostring(rerr):match("^ENOENT") then
        result = { path = path, size = 0, from = 0, text = "", reset = from ~= nil and from > 0, skipped = 0 }
      else
        return fail(res, 500, "EIO", string.format("cannot read %s: %s", path, tostring(rerr)))
      end
    end
    reply(res, 200, { ok = true, result = result })
  end)
end

local function page(_, res)
  res:send(200, require("orch.dashboard_page"), { ["Content-Type"] = "text/html; charset=utf-8" })
end

function M.routes(engine)
  return {
    { "GET", "/", page },
    { "GET", "/dashboard", page },
    { "GET", "/api/logs", function(req, res) logs(engine, req, res) end, { auth = true } },
  }
end

return M
