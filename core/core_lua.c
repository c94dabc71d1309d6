/* core_lua.c: opens the orch.core module, the Lua face of core/: its parts
 * (proc_lua.c, signal_lua.c, sink_lua.c, fd_lua.c, regex_lua.c, ctl_lua.c, stats_lua.c,
 * daemon_lua.c and the bindings at the end of listen.c, notify.c, fds.c,
 * durable.c, pidfd.c, marker.c), and what belongs to none of them: getpid, exe_path,
 * environ, on_error, heap_limit, heap, heap_trim.
 *
 * Handles are userdata; expected failures return nil, "ENOENT: message",
 * "ENOENT" (luv's convention); misuse raises an argument error. */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "orch/binding.h"
#include "orch/ctl.h"
#include "orch/daemon.h"
#include "orch/durable.h"
#include "orch/fds.h"
#include "orch/heap.h"
#include "orch/listen.h"
#include "orch/notify.h"
#include "orch/marker.h"
#include "orch/pidfd.h"
#include "orch/runtime.h"
#include "orch/stats.h"

static int l_getpid(lua_State *L) {
  lua_pushinteger(L, getpid());
  return 1;
}

static int l_exe_path(lua_State *L) {
  char buf[4096];
  ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n < 0) return orch_lua_fail(L, -errno);
  lua_pushlstring(L, buf, (size_t)n);
  return 1;
}

extern char **environ;

/* orch's environment as a table: the base of every child's, in `orch run`. */
static int l_environ(lua_State *L) {
  lua_newtable(L);
  for (char **e = environ; *e; e++) {
    const char *eq = strchr(*e, '=');
    if (!eq || eq == *e) continue;
    lua_pushlstring(L, *e, (size_t)(eq - *e));
    lua_pushstring(L, eq + 1);
    lua_rawset(L, -3);
  }
  return 1;
}

/* heap_limit(on): caps the Lua heap while user code runs (orch.hook). */
static int l_heap_limit(lua_State *L) {
  lua_pushboolean(L, orch_heap_limit(L, lua_toboolean(L, 1)) == 0);
  return 1;
}

/* heap(): bytes the Lua state holds, and the cap in force (0: none). */
static int l_heap(lua_State *L) {
  size_t used = 0, limit = 0;
  if (orch_heap_stats(L, &used, &limit) < 0) return 0;
  lua_pushnumber(L, (lua_Number)used);
  lua_pushnumber(L, (lua_Number)limit);
  return 2;
}

/* heap_trim(): malloc's free pages back to the system (true if some were),
 * and the pages of the embedded bytecode unmapped (orch_runtime_drop_bytecode). */
static int l_heap_trim(lua_State *L) {
  lua_pushboolean(L, orch_heap_trim());
  orch_runtime_drop_bytecode();
  return 1;
}

/* Where errors of protected callbacks go (default: stderr). */
static int l_on_error(lua_State *L) {
  if (!lua_isnil(L, 1)) luaL_checktype(L, 1, LUA_TFUNCTION);
  lua_pushvalue(L, 1);
  lua_setfield(L, LUA_REGISTRYINDEX, "orch.on_error");
  return 0;
}

static const luaL_Reg core_funcs[] = {
    {"getpid", l_getpid}, {"exe_path", l_exe_path}, {"environ", l_environ},
    {"on_error", l_on_error}, {"heap_limit", l_heap_limit}, {"heap", l_heap},
    {"heap_trim", l_heap_trim}, {NULL, NULL}};

int luaopen_orch_core(lua_State *L) {
  lua_newtable(L);
  luaL_register(L, NULL, core_funcs);
  orch_proc_lua_register(L);
  orch_signal_lua_register(L);
  orch_sink_lua_register(L);
  orch_fd_lua_register(L);
  orch_regex_lua_register(L);
  orch_ctl_lua_register(L);
  orch_stats_lua_register(L);
  orch_daemon_lua_register(L);
  orch_listen_lua_register(L);
  orch_notify_lua_register(L);
  orch_fds_lua_register(L);
  orch_durable_lua_register(L);
  orch_pidfd_lua_register(L);
  orch_marker_lua_register(L);
  orch_looplag_lua_register(L);
  orch_pollclock_lua_register(L);
  orch_users_lua_register(L);
  orch_chan_lua_register(L);
  orch_balancer_lua_register(L);
  orch_reexec_lua_register(L);
  return 1;
}
