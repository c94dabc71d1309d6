-- orch.cli: runs the verbs that talk to the daemon: parse the command line,
-- send one request, print the reply. The verbs themselves are entries of
-- the modules listed in MODULES (orch.cliverbs says what an entry holds).
-- Exit status: 0 done, 1 the operation failed, 2 usage error.
local client = require("orch.client")
local cliargs = require("orch.cliargs")
local out = require("orch.cliout")

local M = {}

-- Modules defining verbs, in the order `orch help` lists them. Each returns
-- a list of entries and may have an `aliases` table (alias → verb).
local MODULES = {
  "orch.cliverbs",
  "orch.pm2verbs",
}

M.verbs, M.aliases, M.order = {}, {}, {}
for _, name in ipairs(MODULES) do
  local list = require(name)
  for _, v in ipairs(list) do
    assert(not M.verbs[v.name], "verb defined twice: " .. v.name)
    M.verbs[v.name] = v
    M.order[#M.order + 1] = v.name
  end
  for alias, verb in pairs(list.aliases or {}) do M.aliases[alias] = verb end
end

M.wants_json, M.fail = out.wants_json, out.fail

local function run_verb(verb, spec, p)
  if spec.run then return spec.run(p) end
  local json = p.opts.json
  local cmd, args, known, status = spec.request(p)
  if not cmd then
    -- status: 1 when a file, not the command line, is wrong
    return M.fail(verb, json, status or 2, args, nil, known and cliargs.usage_line(verb, spec) or nil)
  end

  local c, cerr, code = client.connect(spec.autostart ~= false)
  if not c then
    if spec.not_running and code == "ENOTRUNNING" then return spec.not_running(p) end
    return M.fail(verb, json, 1, cerr, code)
  end
  if known and spec.prepare then
    local kargs, kerr, kstatus = spec.prepare(c, p, known)
    if kargs == nil then
      c:close()
      return M.fail(verb, json, kstatus or 2, kerr)
    end
    args = kargs or args
  end
  -- spec.json_text: --json prints the reply's result as the daemon wrote it
  local as_text = json and spec.json_text and not spec.after
  local result, rerr, printed = (as_text and client.print_result or client.request)(c, cmd, args)
  c:close()
  if not result then return M.fail(verb, json, 1, rerr.message, rerr.code) end
  if spec.after then
    local done, aerr = spec.after(result)
    if not done then return M.fail(verb, json, 1, aerr) end
  end
  if json then
    if not printed then out.json(result) end
    return 0
  end
  return spec.show(result, p) or 0, result
end

-- spec.attach(results, p): once the verb succeeded for every positional
-- (start --attach: follow the logs of what it started).
local function then_attach(spec, p, results)
  if spec.attach and p.opts.attach then return spec.attach(results, p) end
  return 0
end

function M.help(verb)
  verb = M.aliases[verb] or verb
  local spec = M.verbs[verb]
  if not spec then return nil end
  return cliargs.usage_line(verb, spec) .. "\n\n" .. spec.summary .. "\n" .. (spec.help and ("\n" .. spec.help()) or "")
end

function M.main(verb, argv)
  verb = M.aliases[verb] or verb
  local spec = M.verbs[verb]
  local p, perr = cliargs.parse(spec, argv)
  if not p then return M.fail(verb, M.wants_json(argv), 2, perr, "EUSAGE", cliargs.usage_line(verb, spec)) end
  -- several arguments for a verb that takes one at a time (orch start a.js
  -- b.js, as PM2's): the verb once for each, in order, until one fails;
  -- spec.each(p) refuses options that cannot apply to several
  if spec.each and #p.positional > 1 then
    local why = spec.each(p)
    if why then return M.fail(verb, p.opts.json, 2, why, "EUSAGE", cliargs.usage_line(verb, spec)) end
    local results = {}
    for _, one in ipairs(p.positional) do
      local status, result = run_verb(verb, spec, { positional = { one }, opts = p.opts, rest = p.rest })
      if status ~= 0 then return status end
      results[#results + 1] = result
    end
    return then_attach(spec, p, results)
  end
  local status, result = run_verb(verb, spec, p)
  if status ~= 0 then return status end
  return then_attach(spec, p, { result })
end

return M
