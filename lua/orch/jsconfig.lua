-- orch.jsconfig: a JavaScript ecosystem file (PM2's ecosystem.config.js,
-- CommonJS or ESM) evaluated the way PM2 does, by Node: a child `node`
-- imports the file and hands back its value as JSON on fd 3 (the file's own
-- console.log goes to stderr, never into the result). This blocks its
-- caller, so only the CLI (and `orch run` before it supervises anything)
-- calls it; the daemon receives the evaluated table and runs no Node.

local uv = require("luv")
local cjson = require("cjson")
local util = require("orch.util")

local M = {}

M.TIMEOUT_MS = 10000

-- Imports the file (import() takes CommonJS, .mjs and "type": "module"
-- alike), or evaluates it as one expression (PM2's way with .json files),
-- makes its value plain JSON data, and writes it to fd 3.
-- Functions are dropped and listed (PM2 sends apps as JSON too); a value
-- JSON cannot carry is an error naming where it is.
local LOADER = [[
const fs = require('fs');
const file = process.argv[1];
const dropped = [];
function refuse(at, what) {
  process.stderr.write('orch-config-error: ' + (at || 'the exported value') + ' is ' + what
    + ', which JSON cannot carry\n');
  process.exit(3);
}
function plain(v, at, seen) {
  if (v === null || typeof v === 'string' || typeof v === 'boolean') return v;
  if (typeof v === 'number') return Number.isFinite(v) ? v : refuse(at, String(v));
  if (typeof v === 'undefined') return undefined;
  if (typeof v === 'function') { dropped.push(at); return undefined; }
  if (typeof v !== 'object') return refuse(at, 'a ' + typeof v);
  if (typeof v.toJSON === 'function') return plain(v.toJSON(), at, seen);
  if (seen.has(v)) return refuse(at, 'a reference to an enclosing value (a cycle)');
  seen.add(v);
  let out;
  if (Array.isArray(v)) {
    out = v.map((x, i) => { const y = plain(x, at + '[' + i + ']', seen); return y === undefined ? null : y; });
  } else {
    out = {};
    for (const k of Object.keys(v)) {
      const y = plain(v[k], at ? at + '.' + k : k, seen);
      if (y !== undefined) out[k] = y;
    }
  }
  seen.delete(v);
  return out;
}
// "expression": a .json file PM2 would evaluate as a JavaScript expression.
const load = process.argv[2] === 'expression'
  ? Promise.resolve().then(() => ({ default: require('vm').runInThisContext(
      '(' + fs.readFileSync(file, 'utf8') + ')', { filename: file }) }))
  : import(require('url').pathToFileURL(file).href);
load.then(async (ns) => {
  let v = ns.default !== undefined ? ns.default : ns;
  if (v && typeof v.then === 'function') v = await v;
  const text = Buffer.from(JSON.stringify({ config: plain(v, '', new Set()), dropped: dropped }));
  let off = 0;
  while (off < text.length) {
    try { off += fs.writeSync(3, text, off); } catch (e) { if (e.code !== 'EAGAIN') throw e; }
  }
  process.exit(0);
});
]]

function M.node_path(env)
  local path = env and env.PATH or os.getenv("PATH") or "/usr/local/bin:/usr/bin:/bin"
  return util.which("node", path) or util.which("nodejs", path)
end

function M.no_node_message(file)
  local base = util.basename(file)
  return file .. ": a JavaScript config is evaluated with Node.js (as PM2 does), and node is not on PATH: "
    .. "install Node.js, or convert the file once where Node is installed: node -e "
    .. "'console.log(JSON.stringify(require(\"./" .. base .. "\"), null, 2))' > ecosystem.json "
    .. "(or write ecosystem.lua)"
end

-- "FILE:LINE: SyntaxError: ..." from what Node printed about an uncaught
-- error: its header names the line ("/path/f.js:3" or "file:///path/f.js:3"),
-- a stack frame otherwise.
local function node_error(file, text)
  local line
  for l in text:gmatch("[^\n]+") do
    local where, n = l:match("^(.-):(%d+)$")
    if where and (where == file or where:match("^file://") and where:sub(-#util.basename(file)) == util.basename(file)) then
      line = tonumber(n)
      break
    end
  end
  if not line then
    local plain_file = file:gsub("%p", "%%%0")
    line = tonumber(text:match(plain_file .. ":(%d+):%d+"))
  end
  local message = text:match("\n(%w*Error[^\n]*)") or text:match("^(%w*Error[^\n]*)")
    or text:match("\n(Uncaught [^\n]*)") or text:match("([^\n]+)%s*$") or "node failed"
  return (line and (file .. ":" .. line .. ": ") or (file .. ": ")) .. message
end

-- The file's exported value as Lua data (JSON's null is cjson.null), and
-- the paths of the functions dropped from it; or nil, message.
-- opts: env (a name -> value map: the environment Node sees; default
-- orch's own), cwd, timeout_ms, expression (the file is one JavaScript
-- expression, not a module).
function M.evaluate(file, opts)
  opts = opts or {}
  local node = M.node_path(opts.env)
  if not node then return nil, M.no_node_message(file) end
  local env
  if opts.env then
    env = {}
    for k, v in pairs(opts.env) do env[#env + 1] = k .. "=" .. v end
  end
  local errp, result = uv.new_pipe(false), uv.new_pipe(false)
  local out, errs = {}, {}
  local code, signal, eofs, timed_out = nil, nil, 0, false
  local proc, pid = uv.spawn(node, {
    args = { "-e", LOADER, file, opts.expression and "expression" or "module" }, env = env, cwd = opts.cwd,
    stdio = { nil, 2, errp, result }, -- the file's stdout goes to orch's stderr
  }, function(c, s) code, signal = c, s end)
  if not proc then
    errp:close()
    result:close()
    return nil, file .. ": cannot run " .. node .. ": " .. tostring(pid)
  end
  local function reader(into)
    return function(_, data)
      if data then into[#into + 1] = data else eofs = eofs + 1 end
    end
  end
  errp:read_start(reader(errs))
  result:read_start(reader(out))
  local timer = uv.new_timer()
  timer:start(opts.timeout_ms or M.TIMEOUT_MS, 0, function()
    timed_out = true
    uv.kill(pid, "sigkill")
  end)
  while code == nil or eofs < 2 do uv.run("once") end
  timer:close()
  proc:close()
  errp:close()
  result:close()
  uv.run("nowait") -- the close callbacks
  local stderr = table.concat(errs)

  if timed_out then
    return nil, string.format("%s: Node did not finish evaluating the file within %d ms (does it wait for "
      .. "something, or loop?)", file, opts.timeout_ms or M.TIMEOUT_MS)
  end
  local refused = stderr:match("orch%-config%-error: ([^\n]*)")
  if refused then return nil, file .. ": " .. refused end
  if code ~= 0 or signal ~= 0 then
    if stderr:match("%S") then return nil, node_error(file, stderr) end
    return nil, string.format("%s: node exited with status %d%s and said nothing", file, code,
      signal ~= 0 and (" (signal " .. signal .. ")") or "")
  end
  if stderr ~= "" then io.stderr:write(stderr) end -- the file's own output
  local ok, decoded = pcall(cjson.decode, table.concat(out))
  if not ok or type(decoded) ~= "table" then
    return nil, file .. ": Node gave no result (did the file exit the process itself?)"
  end
  return decoded.config, decoded.dropped or {}
end

return M
