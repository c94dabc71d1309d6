-- orch.pm2verbs: the verbs PM2's users and scripts know, as orch.cli entries
-- (orch.cliverbs says what an entry holds): startOrRestart, startOrReload,
-- startOrGracefulReload, jlist, prettylist, env, reset, id, pid, sendSignal,
-- trigger, cleardump, create, init (ecosystem). Their daemon side is orch.pm2cmds.
local client = require("orch.client")
local util = require("orch.util")
local args_ = require("orch.cliargs")
local out = require("orch.cliout")

local FLAG, VALUE = args_.FLAG, args_.VALUE
local JSON = { json = FLAG }

local function err(fmt, ...)
  io.stderr:write(string.format(fmt, ...), "\n")
end

-- Empty lists decode as empty tables, which cjson writes as {}: in PM2's
-- shape these fields are lists.
local LISTS = { args = true, node_args = true, axm_actions = true }
local EMPTY = "\1orch-empty-list\1"

local function mark_lists(v, key)
  if type(v) ~= "table" then return v end
  if next(v) == nil then return LISTS[key] and EMPTY or v end
  local t = {}
  for k, x in pairs(v) do t[k] = mark_lists(x, k) end
  return t
end

local function jlist_text(procs)
  if #procs == 0 then return "[]" end
  local text = require("cjson").encode(mark_lists(procs))
  text = text:gsub('"\\u0001orch%-empty%-list\\u0001"', "[]")
  -- cjson writes / as \/ (valid, but not what PM2 prints): a backslash
  -- run of odd length before / ends in that escape
  return (text:gsub("(\\+)/", function(run) return #run % 2 == 1 and (run:sub(2) .. "/") or nil end))
end

-- Node's util.inspect notation (what `pm2 prettylist` prints), one field per
-- line: `key: 'value',`, keys sorted.
local function inspect(v, indent, key)
  local cjson = require("cjson")
  if v == cjson.null then return "null" end
  if type(v) == "string" then
    return "'" .. v:gsub("\\", "\\\\"):gsub("'", "\\'"):gsub("\n", "\\n") .. "'"
  end
  if type(v) ~= "table" then return tostring(v) end
  local pad = string.rep("  ", indent + 1)
  if next(v) == nil then return LISTS[key] and "[]" or "{}" end
  local lines = {}
  if #v > 0 then
    for _, x in ipairs(v) do lines[#lines + 1] = pad .. inspect(x, indent + 1) end
    return "[\n" .. table.concat(lines, ",\n") .. "\n" .. string.rep("  ", indent) .. "]"
  end
  local keys = {}
  for k in pairs(v) do keys[#keys + 1] = k end
  table.sort(keys)
  for _, k in ipairs(keys) do
    local name = k:match("^[%a_$][%w_$]*$") and k or ("'" .. k .. "'")
    lines[#lines + 1] = pad .. name .. ": " .. inspect(v[k], indent + 1, k)
  end
  return "{\n" .. table.concat(lines, ",\n") .. "\n" .. string.rep("  ", indent) .. "}"
end

local function file_request(action)
  return function(p)
    local req, rerr = require("orch.targetcli").file_args(p.positional[1], p, util.getcwd())
    if not req then return nil, rerr, nil, 1 end
    req.action = action
    return "start_or", req
  end
end

local function show_changes(result)
  for _, w in ipairs(result.warnings or {}) do err("warning: %s", w) end
  for _, kind in ipairs({ "started", "restarted", "reloaded" }) do
    local names = result.changes[kind]
    if names and #names > 0 then io.stdout:write(kind, ": ", table.concat(names, ", "), "\n") end
  end
  out.procs(result.processes)
  for _, v in ipairs(result.processes) do
    if v.status == "errored" then return 1 end
  end
end

local FILE_OPTS = { env = VALUE, only = VALUE, json = FLAG }

-- The processes PM2's `id`/`pid` select: by name, or (id) by script path.
local function jlist_of(p, pred)
  local c, cerr = client.connect(true)
  if not c then
    err("orch %s: %s", p.verb, cerr)
    return nil
  end
  local procs, rerr = client.request(c, "jlist", {})
  c:close()
  if not procs then
    err("orch %s: %s", p.verb, rerr.message)
    return nil
  end
  local out_ = {}
  for _, x in ipairs(procs) do
    if pred(x) then out_[#out_ + 1] = x end
  end
  return out_
end

-- orch init: a commented starter file, as `pm2 init` writes one.
local TEMPLATES = {
  js = { file = "ecosystem.config.js", text = [[
// orch (and PM2) ecosystem file: `orch start ecosystem.config.js`.
// Every option: `orch help start`, docs/ecosystem.md. Evaluated with Node.
module.exports = {
  apps: [{
    name: "app",              // the name orch list shows; targets use it
    script: "./app.js",       // the program, relative to this file's directory
    // args: ["--port", "3000"],
    // instances: 2,          // or "max"; with a Node script: cluster mode
    // exec_mode: "fork",
    // watch: false,
    // max_memory_restart: "200M",
    env: {                    // the environment of every start
      NODE_ENV: "development",
    },
    env_production: {         // added by `--env production`
      NODE_ENV: "production",
    },
  }],
};
]] },
  lua = { file = "ecosystem.lua", text = [[
-- orch ecosystem file: `orch start ecosystem.lua`.
-- Every option: `orch help start`, docs/ecosystem.md.
return {
  apps = {
    {
      name = "app",              -- the name orch list shows; targets use it
      script = "./app.js",       -- the program, relative to this file's directory
      -- args = { "--port", "3000" },
      -- instances = 2,
      -- watch = false,
      -- max_memory_restart = "200M",
      env = {                    -- the environment of every start
        NODE_ENV = "development",
      },
      env_production = {         -- added by `--env production`
        NODE_ENV = "production",
      },
    },
  },
}
]] },
}

local function init(p)
  local t = p.opts.lua and TEMPLATES.lua or TEMPLATES.js
  local path = util.abspath(t.file, util.getcwd())
  -- created exclusively: never over an existing file (nor through a symlink)
  local uv = require("luv")
  local fd, ferr, code = uv.fs_open(path, "wx", tonumber("644", 8))
  if not fd then
    err("orch %s: %s", p.verb, code == "EEXIST" and (path .. " exists already: not overwritten") or ferr)
    return 1
  end
  local wrote, werr = uv.fs_write(fd, t.text, 0)
  uv.fs_close(fd)
  if not wrote then
    err("orch %s: cannot write %s: %s", p.verb, path, werr)
    return 1
  end
  io.stdout:write("File ", path, " generated\n")
  return 0
end

local verbs = {
  { name = "startOrRestart", args = "<ecosystem>", min = 1, max = 1, opts = FILE_OPTS,
    summary = "start the file's apps that do not run, restart the others with the file's options (--env NAME)",
    request = file_request("restart"), show = show_changes },
  { name = "startOrReload", args = "<ecosystem>", min = 1, max = 1, opts = FILE_OPTS,
    summary = "start the file's apps that do not run, reload the others (zero-downtime) with the file's options",
    request = file_request("reload"), show = show_changes },
  { name = "startOrGracefulReload", args = "<ecosystem>", min = 1, max = 1, opts = FILE_OPTS,
    summary = "the same as startOrReload (orch's reloads are graceful)",
    request = file_request("reload"), show = show_changes },
  { name = "jlist", args = "", min = 0, max = 0, opts = {},
    summary = "every process as JSON, in PM2's shape (pm_id, name, pid, monit, pm2_env...)",
    request = function() return "jlist", {} end,
    show = function(result) io.stdout:write(jlist_text(result), "\n") end },
  { name = "prettylist", args = "", min = 0, max = 0, opts = {},
    summary = "jlist, one field per line (Node's notation, as PM2 prints it)",
    request = function() return "jlist", {} end,
    show = function(result) io.stdout:write(inspect(result, 0), "\n") end },
  { name = "env", args = "<id|name>", min = 1, max = 1, opts = JSON,
    summary = "the environment of a process (KEY: value lines)",
    request = function(p) return "env", { target = p.positional[1], cwd = util.getcwd() } end,
    show = function(result)
      for i, e in ipairs(result) do
        if #result > 1 then io.stdout:write(i > 1 and "\n" or "", "# ", e.name, ":", e.instance, " (id ", e.id, ")\n") end
        local keys = {}
        for k in pairs(e.env) do keys[#keys + 1] = k end
        table.sort(keys)
        for _, k in ipairs(keys) do io.stdout:write(k, ": ", e.env[k], "\n") end
      end
    end },
  { name = "reset", args = "<name|id|namespace|/regex/|all>", min = 1, max = 1, opts = JSON,
    summary = "set the restart counters of processes back to 0",
    request = function(p) return "reset", { target = p.positional[1], cwd = util.getcwd() } end,
    show = function(result) out.procs(result) end },
  { name = "id", args = "<name|script>", min = 1, max = 1, opts = {},
    summary = "the ids of an app's processes, as a JSON list (an unknown name: [])",
    run = function(p)
      p.verb = "id"
      local path = util.abspath(p.positional[1], util.getcwd())
      local procs = jlist_of(p, function(x) return x.name == p.positional[1] or x.pm2_env.pm_exec_path == path end)
      if not procs then return 1 end
      local ids = {}
      for _, x in ipairs(procs) do ids[#ids + 1] = tostring(x.pm_id) end
      -- as Node prints a list (console.log), which is JSON too
      io.stdout:write(#ids == 0 and "[]" or ("[ " .. table.concat(ids, ", ") .. " ]"), "\n")
      return 0
    end },
  { name = "pid", args = "[name]", min = 0, max = 1, opts = {},
    summary = "the pids of an app's processes (all without a name), one a line; 0 for one not running",
    run = function(p)
      p.verb = "pid"
      local name = p.positional[1]
      local procs = jlist_of(p, function(x) return name == nil or x.name == name end)
      if not procs then return 1 end
      for _, x in ipairs(procs) do io.stdout:write(tostring(x.pid), "\n") end
      return 0
    end },
  { name = "sendSignal", args = "<signal> <name|id|namespace|/regex/|all>", min = 2, max = 2, opts = JSON,
    summary = "send a signal (SIGUSR2, HUP, 10...) to the main process of each running process",
    request = function(p)
      local sig = tonumber(p.positional[1]) or p.positional[1]
      local core = require("orch.core")
      if not (type(sig) == "number" and sig == math.floor(sig) and core.signame(sig) or core.signum(tostring(sig))) then
        return nil, string.format("<signal>: unknown signal '%s' (a name as SIGUSR2 or USR2, or a number)",
          p.positional[1]), true
      end
      return "signal", { signal = sig, target = p.positional[2], cwd = util.getcwd() }
    end,
    show = function(result)
      io.stdout:write(string.format("sent %s to process(es) %s\n", result.signal, table.concat(result.signalled, ", ")))
      for _, e in ipairs(result.errors) do err("orch sendSignal: %s", e) end
    end },
  { name = "trigger", args = "<name|id|namespace|all> <action> [param]", min = 2, max = 3,
    opts = { json = FLAG, timeout = VALUE },
    summary = "run a custom action the app registered (PM2's @pm2/io actions) and print its replies",
    request = function(p)
      local timeout = p.opts.timeout and tonumber(p.opts.timeout)
      if p.opts.timeout and not (timeout and timeout > 0) then
        return nil, string.format("option '--timeout': expected milliseconds, got '%s'", p.opts.timeout), true
      end
      return "trigger", { target = p.positional[1], action = p.positional[2], param = p.positional[3],
                          timeout_ms = timeout, cwd = util.getcwd() }
    end,
    show = function(result)
      local cjson = require("cjson")
      for _, r in ipairs(result.replies) do
        local good, text = pcall(cjson.encode, r.value)
        io.stdout:write(string.format("[%s:%d]=%s\n", r.name, r.id, good and text or tostring(r.value)))
      end
      if #result.missing > 0 then
        err("orch trigger: no reply from process(es) %s", table.concat(result.missing, ", "))
        return 1
      end
    end },
  { name = "cleardump", args = "", min = 0, max = 0, opts = JSON,
    summary = "empty the dump (resurrect then brings nothing back)",
    request = function() return "cleardump", {} end,
    show = function(result) io.stdout:write("emptied ", result.file, "\n") end },
  { name = "create", args = "[sample]", min = 0, max = 1, opts = JSON,
    summary = "write a sample project (http-server, python-app) into ./SAMPLE/ and start it; never over an "
      .. "existing directory",
    request = function(p) return require("orch.samples").request(p) end, show = show_changes },
  { name = "init", args = "", min = 0, max = 0, opts = { lua = FLAG },
    summary = "write a commented ecosystem.config.js here (--lua: ecosystem.lua); never over an existing file",
    run = function(p) p.verb = "init" return init(p) end },
}

verbs.aliases = { ecosystem = "init", info = "describe" }

return verbs
