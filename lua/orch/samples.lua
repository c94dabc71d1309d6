-- orch.samples: `orch create SAMPLE` (PM2's `pm2 create`): a small sample
-- project written into ./SAMPLE/ of the current directory (never over an
-- existing one), then started from its ecosystem file as `orch start FILE`.
-- PM2 asks which sample on its terminal; orch takes its name and, without
-- one, lists them.
local util = require("orch.util")

local M = {}

-- Each sample: its directory's name, what it is, its ecosystem file (started
-- once written) and its files, by name.
M.list = {
  { name = "http-server", about = "an HTTP server in Node.js, 4 processes in cluster mode on one port (needs node)",
    file = "ecosystem.config.js", files = {
      ["api.js"] = [[
// A small HTTP server. orch runs 4 of it in cluster mode: they share one
// port, and each answers with its pid and instance number.
const http = require('http');
const port = Number(process.env.PORT) || 8000;

http.createServer((req, res) => {
  res.writeHead(200, { 'Content-Type': 'text/plain' });
  res.end(`${process.pid} hello from instance ${process.env.NODE_APP_INSTANCE}\n`);
}).listen(port, () => console.log(`listening on port ${port}`));
]],
      ["ecosystem.config.js"] = [[
// orch (and PM2) ecosystem file. Start: orch start ecosystem.config.js
// (--env production for env_production); every option: orch help start.
module.exports = {
  apps: [{
    name: 'http-server',
    script: 'api.js',
    instances: 4,                // a Node script with instances: cluster mode
    max_memory_restart: '200M',  // restarted past this resident size
    env: {
      PORT: process.env.PORT || 8000, // evaluated when the file is started
      NODE_ENV: 'development',
    },
    env_production: {
      NODE_ENV: 'production',
    },
  }],
};
]],
    } },
  { name = "python-app", about = "a Python program that prints a line every second (needs python3)",
    file = "ecosystem.config.json", files = {
      ["echo.py"] = [[
# Prints a numbered line every second: orch logs python-app shows them.
import time

n = 0
while True:
    n += 1
    print("echo %d" % n, flush=True)
    time.sleep(1)
]],
      ["ecosystem.config.json"] = [[
{
  "apps": [{
    "name": "python-app",
    "script": "echo.py",
    "interpreter": "python3",
    "restart_delay": 1000
  }]
}
]],
    } },
}

local by_name = {}
for _, s in ipairs(M.list) do by_name[s.name] = s end

-- The samples as lines for a message.
local function choices()
  local lines = {}
  for _, s in ipairs(M.list) do lines[#lines + 1] = string.format("  %-12s %s", s.name, s.about) end
  return table.concat(lines, "\n")
end

-- Writes sample's files into dir, created here (an existing one is refused,
-- and nothing is written). Returns true or nil, message.
local function write(sample, dir)
  local uv = require("luv")
  local ok, err, code = uv.fs_mkdir(dir, tonumber("755", 8))
  if not ok then
    return nil, code == "EEXIST" and (dir .. " exists already: nothing written") or err
  end
  local names = {}
  for name in pairs(sample.files) do names[#names + 1] = name end
  table.sort(names)
  for _, name in ipairs(names) do
    local path = dir .. "/" .. name
    local fd, ferr = uv.fs_open(path, "wx", tonumber("644", 8))
    if not fd then return nil, ferr end
    local wrote, werr = uv.fs_write(fd, sample.files[name], 0)
    uv.fs_close(fd)
    if not wrote then return nil, string.format("cannot write %s: %s", path, werr) end
  end
  return true
end

-- create's request (an orch.cliverbs entry's): the sample written, then
-- "start" of its ecosystem file; or nil, message, usage?, status.
function M.request(p)
  local name = p.positional[1]
  if not name then
    return nil, "give the sample to create:\n" .. choices(), true
  end
  local sample = by_name[name]
  if not sample then
    local hint = util.did_you_mean(name, (function()
      local names = {}
      for _, s in ipairs(M.list) do names[#names + 1] = s.name end
      return names
    end)())
    return nil, string.format("no sample '%s'%s; the samples:\n%s", name,
      hint and (" (did you mean '" .. hint .. "'?)") or "", choices()), true
  end
  local cwd = util.getcwd()
  local dir = util.abspath(sample.name, cwd)
  local ok, err = write(sample, dir)
  if not ok then return nil, err, nil, 1 end
  io.stderr:write(string.format("sample %s written in %s: starting %s\n", sample.name, dir, sample.file))
  local req, rerr = require("orch.ecocli").request(dir .. "/" .. sample.file, { json = p.opts.json },
    require("orch.core").environ(), dir)
  if not req then return nil, rerr, nil, 1 end
  return "start", req
end

return M
