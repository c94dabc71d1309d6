-- orch.appscript: what an app's `script` names, as PM2 reads it: a file
-- (relative to cwd), a bare program found on PATH, or a command string run
-- through the shell; and the app name derived from it when none is given.
-- orch.ecosystem asks while it normalises an app.
local util = require("orch.util")
local validate = require("orch.validate")

local expected = validate.expected

local M = {}

function M.derive_name(script)
  local base = util.basename(script)
  base = base:match("^(.+)%.[^.]*$") or base
  base = base:gsub("[^%w_%.%-]", "_")
  if base == "" or base == "all" then base = "app_" .. base end
  return base
end

-- A command string's app name (PM2 names the app after the command): its
-- words joined by '-', other characters dropped ("python3 -m http.server
-- 8123" is python3-m-http.server-8123).
function M.command_name(cmd)
  local base = cmd:gsub("[^%w_.]+", "-"):gsub("^%-+", ""):sub(1, 64):gsub("%-+$", "")
  if base == "" or base == "all" then base = "app_" .. base end
  return base
end

-- Whether `script` is a command string, which runs through the shell as
-- in PM2: it holds a space and names no file.
function M.is_command(v, cwd)
  if type(v) ~= "string" or not (v:find("%S") and v:find("%s")) then return false end
  local path = util.abspath(v, cwd)
  return not util.is_file(path) and not util.is_dir(path)
end

-- Words a command string may start with that are the shell's, not programs.
local SHELL_WORDS = {}
for w in ("cd exec source . export set eval ulimit umask trap test [ echo printf read true false time "
    .. "if while until for case { ( ! command builtin type wait kill unset alias let declare local"):gmatch("%S+") do
  SHELL_WORDS[w] = true
end

-- The first word of a command string when it names no program (no file,
-- nothing on PATH, nothing of the shell's), so that a mistyped file name
-- with a space is an error when the file loads rather than a crash loop.
function M.missing_program(cmd, ctx)
  local first = cmd:match("^%s*(%S+)")
  if not first or first:find("[=$`'\"\\(){};&|<>*?~%[]") or SHELL_WORDS[first] then return nil end
  if first:find("/", 1, true) then
    return not util.is_file(util.abspath(first, ctx.cwd)) and first or nil
  end
  return not util.which(first, ctx.path) and first or nil
end

-- Resolves `script` following PM2: a path relative to cwd, or a bare command
-- found on PATH when nothing would interpret it, recorded as the path found
-- (PM2's pm_exec_path: `pm2 start ls` runs /usr/bin/ls).
function M.resolve_script(v, ctx)
  if type(v) ~= "string" or v == "" then return expected("a non-empty string", v) end
  local full = util.abspath(v, ctx.cwd)
  if util.is_file(full) then return full end
  if util.is_dir(full) then return nil, "is a directory: " .. full end
  local found = not v:find("/", 1, true) and ctx.no_interpreter and util.which(v, ctx.path)
  if found then return found end
  return nil, "no such file: " .. full
end

return M
