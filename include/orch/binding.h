/* binding.h: what the Lua bindings of orch.core share (core_lua.c,
 * ctl_lua.c, stats_lua.c, daemon_lua.c). */
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

#endif
