-- orch.paths: $ORCH_HOME and what lives in it. The directory is private to
-- its owner (0700): it holds the control socket, logs and state.
local M = {}

-- Everything that lives in $ORCH_HOME, by name.
function M.layout(home)
  return {
    home = home,
    logs = home .. "/logs",
    sock = home .. "/orch.sock",
    notify = home .. "/notify", -- ID.sock: NOTIFY_SOCKET of wait_ready process ID
    pid = home .. "/daemon.pid",
    daemon_log = home .. "/daemon.log",
    state = home .. "/state.json",
    dump = home .. "/dump.json",
  }
end

-- Absolute (a relative ORCH_HOME is taken from the current directory): the
-- marker of spawned processes names it (orch.launch.mark).
function M.home()
  local home = os.getenv("ORCH_HOME")
  if home and home ~= "" then
    return home:sub(1, 1) == "/" and home or require("orch.util").abspath(home)
  end
  local user_home = os.getenv("HOME")
  if not user_home or user_home == "" then return nil, "neither ORCH_HOME nor HOME is set" end
  return user_home .. "/.orch"
end

local function mkdir_private(path)
  local uv = require("luv") -- not on the CLI's fast path: only when creating
  local ok, err, code = uv.fs_mkdir(path, tonumber("700", 8))
  if not ok and code ~= "EEXIST" then return nil, string.format("cannot create %s: %s", path, err) end
  local st, serr = uv.fs_stat(path)
  if not st then return nil, string.format("cannot stat %s: %s", path, serr) end
  if st.type ~= "directory" then return nil, path .. " exists and is not a directory" end
  return st
end

-- Creates $ORCH_HOME (0700) and its logs/ directory and returns its layout.
-- An existing home owned by someone else is refused; a wider mode on our own
-- is narrowed.
function M.ensure_home()
  local uv = require("luv")
  local home, err = M.home()
  if not home then return nil, err end
  local st, serr = mkdir_private(home)
  if not st then return nil, serr end
  if st.uid ~= uv.getuid() then
    return nil, string.format("%s belongs to uid %d, not to us (uid %d)", home, st.uid, uv.getuid())
  end
  if st.mode % 512 ~= tonumber("700", 8) then
    local ok, cerr = uv.fs_chmod(home, tonumber("700", 8))
    if not ok then return nil, string.format("cannot chmod 0700 %s: %s", home, cerr) end
  end
  local layout = M.layout(home)
  local lst, lerr = mkdir_private(layout.logs)
  if not lst then return nil, lerr end
  return layout
end

-- ensure_home for the main of `orch VERB` (daemon, run): the layout, or nil
-- once the reason is on stderr.
function M.ensure_home_for(verb)
  local layout, err = M.ensure_home()
  if not layout then io.stderr:write("orch ", verb, ": ", err, "\n") end
  return layout
end

return M
