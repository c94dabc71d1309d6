-- orch.startup: `orch startup` and `orch unstartup` (PM2's verbs): a
-- systemd unit that runs this user's daemon at boot (`orch daemon
-- --resurrect`: the apps of `orch save` come back, stopped ones stay
-- stopped), and its removal. The unit is a system unit with User= (root
-- writes it; anyone else is told the command to run), or with --user one
-- for the user's own systemd. Nothing here talks to a daemon.
local uv = require("luv")
local cliargs = require("orch.cliargs")
local util = require("orch.util")

local M = {}

M.SYSTEM_DIR = "/etc/systemd/system"
M.MARK = "# Written by `orch startup`"

local FLAG, VALUE = cliargs.FLAG, cliargs.VALUE
local NOT_FOR = "orch unstartup needs no such option"
local SPEC = {
  args = "[systemd]", min = 0, max = 1,
  opts = { user = FLAG, print = FLAG, ["service-name"] = VALUE, u = VALUE, hp = VALUE, ["wait-ip"] = FLAG,
           ["unit-dir"] = VALUE },
}
local UNSPEC = {
  args = "[systemd]", min = 0, max = 1,
  opts = { user = FLAG, ["service-name"] = VALUE, u = VALUE, ["unit-dir"] = VALUE,
           print = { why = NOT_FOR }, hp = { why = NOT_FOR }, ["wait-ip"] = { why = NOT_FOR } },
}

M.help = [[
usage: orch startup [systemd] [--user] [--print] [--service-name NAME]
                    [-u USER] [--hp DIR] [--wait-ip] [--unit-dir DIR]

Writes a systemd unit that starts orch's daemon at boot with the apps saved
by `orch save` (orch daemon --resurrect: stopped apps stay stopped), and
enables it when it can (as root, with systemd running); otherwise it says
the one command left to run. Type=notify: systemd knows orch is up once the
saved apps are; `systemctl reload` runs orch reload all; `systemctl stop`
stops every app as orch kill does (docs/production.md).

  systemd             the only init system orch writes for (the default)
  --user              a unit of your own user's systemd (~/.config/systemd/user),
                      no root needed; `loginctl enable-linger` starts it at boot
  --print             print the unit, write nothing
  --service-name NAME the unit's name (default orch-USER, with --user orch)
  -u USER             the user orch runs as (default: you); as root, for
                      another user
  --hp DIR            that user's home: ORCH_HOME is DIR/.orch (default:
                      $ORCH_HOME, else the user's home/.orch)
  --wait-ip           start once the network is online (network-online.target)
  --unit-dir DIR      write the unit there instead (systemctl is then left to you)
]]

M.unstartup_help = [[
usage: orch unstartup [systemd] [--user] [--service-name NAME] [-u USER]
                      [--unit-dir DIR]

Disables and removes the unit `orch startup` wrote (the same options find
it). A file orch did not write is left alone. The daemon and its apps keep
running.
]]

local function fail(verb, fmt, ...)
  io.stderr:write("orch ", verb, ": ", string.format(fmt, ...), "\n")
  return 1
end

-- A word for a shell command line (what we print for the user to run).
local function shell_word(s)
  if s:match("^[%w%%+,./:=@_-]+$") then return s end
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

-- systemd's unit file syntax: specifiers (%) everywhere; in a command line
-- also variables ($), and quotes around a word with spaces.
local function specifiers(s) return (s:gsub("%%", "%%%%")) end
local function exec_word(s)
  s = specifiers(s):gsub("%$", "$$")
  if s:match("^[%w%%$+,./:=@_-]+$") then return s end
  return '"' .. s:gsub('[\\"]', "\\%0") .. '"'
end
local function env_line(k, v)
  return 'Environment="' .. specifiers(k .. "=" .. v):gsub('[\\"]', "\\%0") .. '"'
end

-- The unit's text. o: exe, home (ORCH_HOME), path (PATH), user (system
-- unit only), wait_ip, system (bool).
function M.unit(o)
  local lines = {}
  local function add(s) lines[#lines + 1] = s end
  add(M.MARK .. " (orch " .. require("orch.version").version .. "); `orch unstartup` removes it.")
  add("# orch's daemon with the apps of `orch save` (" .. o.home .. "/dump.json).")
  add("[Unit]")
  add("Description=" .. specifiers("orch process manager (" .. (o.user and (o.user .. ", ") or "") .. o.home .. ")"))
  if o.wait_ip then add("Wants=network-online.target") end
  add(o.wait_ip and "After=network-online.target" or "After=network.target")
  add("")
  add("[Service]")
  -- READY=1 once the control socket serves and the saved apps have settled
  add("Type=notify")
  add("NotifyAccess=main")
  if o.user then add("User=" .. o.user) end
  add(env_line("ORCH_HOME", o.home))
  add(env_line("PATH", o.path))
  add("ExecStart=" .. exec_word(o.exe) .. " daemon --resurrect")
  add("ExecReload=" .. exec_word(o.exe) .. " reload all")
  add("# SIGTERM to orch alone, which stops every app as `orch kill` does (kill_signal,")
  add("# kill_timeout, dependents first); SIGKILL to what is left after that, or after")
  add("# TimeoutStopSec. Each app's kill_timeout must fit in it.")
  add("KillMode=mixed")
  add("TimeoutStopSec=90")
  add("Restart=on-failure")
  add("# the cgroup is orch's to divide: one per process (orch ping: process trees)")
  add("Delegate=yes")
  add("# orch pings from its event loop when set (WATCHDOG=1 every half of it):")
  add("#WatchdogSec=30")
  add("")
  add("[Install]")
  add("WantedBy=" .. (o.system and "multi-user.target" or "default.target"))
  local text = table.concat(lines, "\n") .. "\n"
  for _, v in ipairs({ o.exe, o.home, o.path, o.user or "" }) do
    if v:find("[%c]") then return nil, string.format("%s: a control character cannot go in a unit", util.quote(v)) end
  end
  return text
end

-- name, uid, home of a user (a name or a number), from the user database.
local function lookup(who)
  if not who:match("^[%w._-]+$") then return nil end
  local f = io.popen("getent passwd " .. who .. " 2>/dev/null")
  local line = f and f:read("*l")
  if f then f:close() end
  local name, uid, home = (line or ""):match("^([^:]*):[^:]*:(%d+):%d+:[^:]*:([^:]*):")
  if not name then return nil end
  return name, tonumber(uid), home
end

-- What both verbs work out from the command line: unit, path, user,
-- home... or nil, message.
local function settings(verb, p)
  local platform = p.positional[1]
  if platform and platform ~= "systemd" then
    return nil, string.format("'%s' is not supported: orch writes systemd units only (orch %s systemd)", platform, verb)
  end
  local o = p.opts
  local me = uv.os_get_passwd()
  local s = { system = not o.user, root = uv.getuid() == 0, me = me.username, wait_ip = o["wait-ip"] }
  if o.user and o.u then
    return nil, "-u names the user of a system unit; --user writes a unit of your own user's systemd"
  end
  s.user, s.user_home = me.username, me.homedir
  if o.u then
    local name, _, home = lookup(o.u)
    if not name then return nil, string.format("-u: no user '%s' (getent passwd)", o.u) end
    s.user, s.user_home = name, home
  end
  s.name = o["service-name"] or (s.system and ("orch-" .. s.user) or "orch")
  s.name = s.name:gsub("%.service$", "")
  if not s.name:match("^[%w:_.@-]+$") then
    return nil, string.format("--service-name: '%s' is not a unit name (letters, digits, :_.@-)", s.name)
  end
  if o.hp then
    s.home = util.abspath(o.hp) .. "/.orch"
  elseif os.getenv("ORCH_HOME") and os.getenv("ORCH_HOME") ~= "" then
    s.home = require("orch.paths").home()
  elseif s.user ~= me.username then
    s.home = s.user_home .. "/.orch"
  else
    local herr
    s.home, herr = require("orch.paths").home()
    if not s.home then return nil, herr end
  end
  if o["unit-dir"] then
    s.dir = util.abspath(o["unit-dir"])
  elseif s.system then
    s.dir = M.SYSTEM_DIR
  else
    local config = os.getenv("XDG_CONFIG_HOME")
    -- where the user's systemd looks ($XDG_CONFIG_HOME, else $HOME/.config)
    local home = os.getenv("HOME")
    home = home and home:sub(1, 1) == "/" and home or me.homedir
    s.dir = (config and config:sub(1, 1) == "/" and config or (home .. "/.config")) .. "/systemd/user"
    s.default_user_dir = true
  end
  s.file = s.dir .. "/" .. s.name .. ".service"
  s.custom_dir = o["unit-dir"] ~= nil
  return s
end

-- The command for a non-root user to run (PM2 prints the same kind).
local function sudo_line(verb, exe, s)
  local words = { "sudo", "env", 'PATH="$PATH"', "ORCH_HOME=" .. shell_word(s.home), shell_word(exe), verb,
                  "systemd", "-u", shell_word(s.user) }
  if s.name ~= "orch-" .. s.user then words[#words + 1] = "--service-name " .. shell_word(s.name) end
  if s.wait_ip then words[#words + 1] = "--wait-ip" end
  return table.concat(words, " ")
end

local function systemctl_words(s, ...)
  local words = { "systemctl" }
  if not s.system then words[#words + 1] = "--user" end
  for _, w in ipairs({ ... }) do words[#words + 1] = w end
  return table.concat(words, " ")
end

-- Runs systemctl (as sd_booted() tells whether systemd runs: its runtime
-- directory). true, or nil and why it did not run or failed.
local function systemctl(s, ...)
  if not uv.fs_stat("/run/systemd/system") then
    return nil, "systemd is not running on this machine (no /run/systemd/system)"
  end
  local cmd = systemctl_words(s, ...)
  local f = io.popen(cmd .. " 2>&1; echo \"exit $?\"")
  local out = f and f:read("*a") or ""
  if f then f:close() end
  local text, rc = out:match("^(.-)\n?exit (%d+)\n?$")
  if rc == "0" then return true end
  return nil, string.format("%s failed: %s", cmd, util.trim(text or out))
end

local function write_file(path, text)
  local tmp = path .. ".orch-tmp"
  local f, err = io.open(tmp, "wb")
  if not f then return nil, err end
  local ok, werr = f:write(text)
  local closed, cerr = f:close()
  if not (ok and closed) then
    os.remove(tmp)
    return nil, werr or cerr
  end
  uv.fs_chmod(tmp, tonumber("644", 8))
  local renamed, rerr = os.rename(tmp, path)
  if not renamed then
    os.remove(tmp)
    return nil, rerr
  end
  return true
end

-- Whether the file at path is one `orch startup` wrote: true, false (it is
-- another's), or nil (there is none); and its text.
local function ours(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local text = f:read("*a") or ""
  f:close()
  return text:sub(1, #M.MARK) == M.MARK, text
end

-- mkdir -p (~/.config/systemd/user may not be there yet).
local function mkdir_p(dir)
  local at = ""
  for part in dir:gmatch("[^/]+") do
    at = at .. "/" .. part
    local ok, err, code = uv.fs_mkdir(at, tonumber("755", 8))
    if not ok and code ~= "EEXIST" then return nil, err end
  end
  return true
end

function M.main(args, _)
  local p, perr = cliargs.parse(SPEC, args)
  if not p then return fail("startup", "%s\n%s", perr, M.help:match("^(.-)\n\n")) end
  local s, err = settings("startup", p)
  if not s then return fail("startup", "%s", err) end
  local exe = assert(require("orch.core").exe_path())
  local text, terr = M.unit({ exe = exe, home = s.home, path = os.getenv("PATH") or "/usr/bin:/bin",
                              user = s.system and s.user or nil, wait_ip = s.wait_ip, system = s.system })
  if not text then return fail("startup", "%s", terr) end
  if p.opts.print then
    io.stdout:write(text)
    return 0
  end
  if s.system and not s.root and not s.custom_dir then
    return fail("startup", "writing %s needs root; run:\n  %s\n(or orch startup --user: a unit of your own "
      .. "user's systemd, no root needed)", s.file, sudo_line("startup", exe, s))
  end
  if s.user ~= s.me and not s.root then
    return fail("startup", "orch runs as %s, not %s: only root can write a unit for another user", s.me, s.user)
  end
  if s.default_user_dir then
    local ok, merr = mkdir_p(s.dir)
    if not ok then return fail("startup", "cannot create %s: %s", s.dir, merr) end
  end
  local mine, old = ours(s.file)
  if mine == false then
    return fail("startup", "%s exists and was not written by orch startup: remove it first, or give "
      .. "--service-name another name", s.file)
  end
  local ok, werr = write_file(s.file, text)
  if not ok then return fail("startup", "cannot write %s: %s", s.file, tostring(werr)) end
  local out = io.stdout
  out:write(string.format("%s %s: orch daemon --resurrect%s, ORCH_HOME=%s\n", old == text and "unchanged" or "wrote",
    s.file, s.system and (" as " .. s.user) or "", s.home))
  local enable = systemctl_words(s, "enable", s.custom_dir and s.file or s.name)
  local enabled, why
  if s.custom_dir then
    why = "the unit is outside systemd's directories (--unit-dir)"
  else
    enabled, why = systemctl(s, "daemon-reload")
    if enabled then enabled, why = systemctl(s, "enable", s.name) end
  end
  if enabled then
    out:write("enabled: ", enable, "\n")
  else
    out:write(string.format("not enabled: %s.\nthe one command left to run (once systemd runs):\n  %s\n", why, enable))
  end
  out:write(string.format("at boot it starts the apps saved by orch save (%s/dump.json); run orch save "
    .. "after changing them.\nto have systemd run this orch now: orch save && orch kill && %s\n", s.home,
    systemctl_words(s, "start", s.name)))
  if not s.system then
    out:write(string.format("to start it at boot without logging in: loginctl enable-linger %s\n", s.me))
  end
  return 0
end

function M.unstartup(args, _)
  local p, perr = cliargs.parse(UNSPEC, args)
  if not p then return fail("unstartup", "%s\n%s", perr, M.unstartup_help:match("^(.-)\n\n")) end
  local s, err = settings("unstartup", p)
  if not s then return fail("unstartup", "%s", err) end
  if s.system and not s.root and not s.custom_dir then
    return fail("unstartup", "removing %s needs root; run:\n  %s", s.file,
      sudo_line("unstartup", assert(require("orch.core").exe_path()), s))
  end
  local mine = ours(s.file)
  if mine == nil then return fail("unstartup", "no unit at %s (orch startup writes it)", s.file) end
  if not mine then return fail("unstartup", "%s was not written by orch startup: left alone", s.file) end
  local out = io.stdout
  local disabled, why
  if s.custom_dir then
    why = "the unit is outside systemd's directories (--unit-dir)"
  else
    disabled, why = systemctl(s, "disable", s.name)
  end
  local ok, rerr = os.remove(s.file)
  if not ok then return fail("unstartup", "cannot remove %s: %s", s.file, tostring(rerr)) end
  out:write("removed ", s.file, "\n")
  if disabled then
    systemctl(s, "daemon-reload")
    out:write("disabled: ", systemctl_words(s, "disable", s.name), "\n")
  else
    out:write(string.format("not disabled: %s; if it was enabled: %s\n", why,
      systemctl_words(s, "disable", s.custom_dir and s.file or s.name)))
  end
  return 0
end

return M
