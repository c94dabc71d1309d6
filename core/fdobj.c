/* fdobj.c: descriptors owned by Lua userdata (see fdobj.h). */
#include "orch/fdobj.h"

#include <errno.h>
#include <lauxlib.h>
#include <unistd.h>

#include "orch/binding.h"

static int *check(lua_State *L) { return luaL_checkudata(L, 1, ORCH_FDOBJ_MT); }

static int l_fd(lua_State *L) {
  int *fd = check(L);
  if (*fd < 0) return 0;
  lua_pushinteger(L, *fd);
  return 1;
}

/* close(2) releases the descriptor whatever it reports (Linux), so the
 * object owns nothing afterwards even on an error. */
static int l_close(lua_State *L) {
  int *fd = check(L);
  int rc = 0;
  if (*fd >= 0 && close(*fd) < 0 && errno != EINTR) rc = -errno;
  *fd = -1;
  return orch_lua_ok(L, rc);
}

static int l_release(lua_State *L) {
  int *fd = check(L);
  if (*fd < 0) return luaL_argerror(L, 1, "descriptor already closed or released");
  lua_pushinteger(L, *fd);
  *fd = -1;
  return 1;
}

static int l_gc(lua_State *L) {
  int *fd = check(L);
  if (*fd >= 0) close(*fd);
  *fd = -1;
  return 0;
}

static int l_tostring(lua_State *L) {
  int *fd = check(L);
  if (*fd < 0) lua_pushliteral(L, ORCH_FDOBJ_MT " (closed)");
  else lua_pushfstring(L, ORCH_FDOBJ_MT " %d", *fd);
  return 1;
}

static const luaL_Reg methods[] = {
    {"fd", l_fd}, {"close", l_close}, {"release", l_release}, {NULL, NULL}};

int *orch_fdobj_new(lua_State *L) {
  int *fd = lua_newuserdata(L, sizeof *fd);
  *fd = -1;
  /* The class is made on first use: no module has to register it first. */
  if (luaL_newmetatable(L, ORCH_FDOBJ_MT)) {
    lua_newtable(L);
    luaL_register(L, NULL, methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, l_tostring);
    lua_setfield(L, -2, "__tostring");
  }
  lua_setmetatable(L, -2);
  return fd;
}

int orch_fdobj_to(lua_State *L, int idx) {
  if (lua_type(L, idx) == LUA_TNUMBER) {
    lua_Integer n = lua_tointeger(L, idx);
    return n >= 0 && n <= 0x7fffffff ? (int)n : -EINVAL;
  }
  int *fd = luaL_testudata(L, idx, ORCH_FDOBJ_MT);
  if (!fd) return -EINVAL;
  return *fd >= 0 ? *fd : -EBADF;
}

int orch_fdobj_arg(lua_State *L, int idx) {
  int fd = orch_fdobj_to(L, idx);
  if (fd == -EBADF) return luaL_argerror(L, idx, "descriptor already closed or released");
  if (fd < 0) return luaL_typerror(L, idx, "descriptor (" ORCH_FDOBJ_MT " or number)");
  return fd;
}

int orch_fdobj_take(lua_State *L, int idx) {
  int fd = orch_fdobj_arg(L, idx);
  int *slot = luaL_testudata(L, idx, ORCH_FDOBJ_MT);
  if (slot) *slot = -1;
  return fd;
}
