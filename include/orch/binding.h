/* binding.h: what the Lua bindings of orch.core share (core_lua.c and the
 * *_lua.c files, binding.c), and the parts of orch.core that have no header
 * of their own. */
#ifndef ORCH_BINDING_H
#define ORCH_BINDING_H

#include <lauxlib.h>
#include <lua.h>
#include <uv.h>

/* The expected-failure return: nil, "ENOENT: no such file or directory",
 * "ENOENT" (luv's convention). err is a negative errno or UV_* code. */
static inline int orch_lua_fail(lua_State *L, int err) {
  lua_pushnil(L);
  lua_pushfstring(L, "%s: %s", uv_err_name(err), uv_strerror(err));
  lua_pushstring(L, uv_err_name(err));
  return 3;
}

/* true, or (rc < 0) the expected-failure return above. */
static inline int orch_lua_ok(lua_State *L, int rc) {
  if (rc < 0) return orch_lua_fail(L, rc);
  lua_pushboolean(L, 1);
  return 1;
}

/* For close and __gc of a userdata of class mt at idx whose first field is
 * its handle: takes the handle out (NULL if closed already), leaving NULL. */
static inline void *orch_lua_take(lua_State *L, int idx, const char *mt) {
  void **slot = luaL_checkudata(L, idx, mt);
  void *h = *slot;
  *slot = NULL;
  return h;
}

/* Registers a class: a metatable named name whose __index holds methods. */
static inline void orch_lua_class(lua_State *L, const char *name,
                                  const luaL_Reg *methods, lua_CFunction gc) {
  luaL_newmetatable(L, name);
  lua_newtable(L);
  luaL_register(L, NULL, methods);
  lua_setfield(L, -2, "__index");
  if (gc) {
    lua_pushcfunction(L, gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_pop(L, 1);
}

/* Makes registry[key] a value whose __gc is fn, once: Lua collects it only
 * in lua_close, so fn runs when the state goes (a module's last cleanup). */
static inline void orch_lua_on_state_close(lua_State *L, const char *key,
                                           lua_CFunction fn) {
  lua_getfield(L, LUA_REGISTRYINDEX, key);
  int have = !lua_isnil(L, -1);
  lua_pop(L, 1);
  if (have) return;
  lua_newuserdata(L, 1);
  lua_newtable(L);
  lua_pushcfunction(L, fn);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  lua_setfield(L, LUA_REGISTRYINDEX, key);
}

/* A Lua list of strings at idx as a NULL-terminated array, in a userdata
 * left on the stack (the GC frees it); the strings stay alive in the table.
 * Anything else raises "what: table expected" or "what[i]: string expected".
 * nul_at, if not NULL: the 1-based index of the first string holding a NUL
 * byte (a program would see it cut short there), or 0. */
char **orch_lua_string_list(lua_State *L, int idx, const char *what, int *nul_at);

/* Parts of orch.core (core_lua.c opens them): each adds its functions, and
 * registers its classes, to the table on the stack top. */
void orch_proc_lua_register(lua_State *L);   /* proc_lua.c: spawn, the proc class */
void orch_signal_lua_register(lua_State *L); /* signal_lua.c: signals, process groups */
void orch_sink_lua_register(lua_State *L);   /* sink_lua.c: log files, echo */
void orch_fd_lua_register(lua_State *L);     /* fd_lua.c: socketpair, close, dup */
void orch_regex_lua_register(lua_State *L);  /* regex_lua.c: POSIX regular expressions */
void orch_users_lua_register(lua_State *L);  /* users.c: user and group look-ups */
void orch_looplag_lua_register(lua_State *L); /* looplag.c: the loop's working time per turn */
void orch_pollclock_lua_register(lua_State *L); /* pollclock.c: when the latest poll began and returned */
void orch_chan_lua_register(lua_State *L);     /* chan_lua.c: the IPC channel */
void orch_balancer_lua_register(lua_State *L); /* balancer_lua.c: round-robin in C */
void orch_reexec_lua_register(lua_State *L); /* reexec.c: orch update's memfd, fd_adopt, open_exe, reexec */

/* chan_lua.c: the channel at idx (an argument error once collected). */
struct orch_chan_s *orch_lua_check_chan(lua_State *L, int idx);
/* sink_lua.c: the sink at idx (an argument error if closed). */
struct orch_sink_s *orch_lua_check_sink(lua_State *L, int idx);
/* signal_lua.c: a signal number, name ("SIGTERM") or short name ("term")
 * at idx (an argument error if unknown); a number's name, or NULL. */
int orch_lua_check_signal(lua_State *L, int idx);
const char *orch_signal_name(int num);

#endif
