/* balancer_lua.c: orch.core.balancer, round-robin in C (balancer.h), as a
 * Lua object that cluster.lua configures: which channels take connections
 * and how many in a row. */
#include "orch/balancer.h"
#include "orch/binding.h"
#include "orch/fdobj.h"
#include "orch/runtime.h"

#define BAL_MT "orch.balancer"

/* balancer(listen_fd, key_json) -> balancer | nil, message, code */
static int l_balancer(lua_State *L) {
  int fd = orch_fdobj_arg(L, 1);
  size_t n;
  const char *key = luaL_checklstring(L, 2, &n);
  orch_balancer_t **u = lua_newuserdata(L, sizeof *u);
  *u = NULL;
  luaL_getmetatable(L, BAL_MT);
  lua_setmetatable(L, -2);
  int rc = orch_balancer_new(orch_runtime_loop(L), fd, key, n, u);
  if (rc < 0) return orch_lua_fail(L, rc);
  return 1;
}

static orch_balancer_t *check(lua_State *L) {
  orch_balancer_t **u = luaL_checkudata(L, 1, BAL_MT);
  if (!*u) luaL_argerror(L, 1, "a closed balancer");
  return *u;
}

/* add(chan[, weight]) -> true | nil, message, code */
static int l_add(lua_State *L) {
  orch_balancer_t *b = check(L);
  orch_chan_t *ch = orch_lua_check_chan(L, 2);
  lua_Integer w = luaL_optinteger(L, 3, 1);
  if (w < 1 || w > ORCH_BALANCER_MAX_WEIGHT) return luaL_argerror(L, 3, "weight: 1 to 1000 expected");
  return orch_lua_ok(L, orch_balancer_add(b, ch, (int)w));
}

static int l_remove(lua_State *L) {
  orch_balancer_remove(check(L), orch_lua_check_chan(L, 2));
  return 0;
}

static int l_stats(lua_State *L) {
  orch_balancer_stats_t st;
  orch_balancer_stats(check(L), &st);
  lua_createtable(L, 0, 7);
  lua_pushnumber(L, (lua_Number)st.accepted);
  lua_setfield(L, -2, "accepted");
  lua_pushnumber(L, (lua_Number)st.handed);
  lua_setfield(L, -2, "handed");
  lua_pushnumber(L, (lua_Number)st.retried);
  lua_setfield(L, -2, "retried");
  lua_pushnumber(L, (lua_Number)st.dropped);
  lua_setfield(L, -2, "dropped");
  lua_pushinteger(L, st.members);
  lua_setfield(L, -2, "members");
  lua_pushinteger(L, st.held);
  lua_setfield(L, -2, "held");
  lua_pushinteger(L, st.inflight);
  lua_setfield(L, -2, "inflight");
  return 1;
}

/* pause(bool): orch_balancer_pause */
static int l_pause(lua_State *L) {
  orch_balancer_pause(check(L), lua_toboolean(L, 2));
  return 0;
}

static int l_close(lua_State *L) {
  orch_balancer_t *b = orch_lua_take(L, 1, BAL_MT);
  if (b) orch_balancer_close(b);
  return 0;
}

static const luaL_Reg methods[] = {
    {"add", l_add}, {"remove", l_remove}, {"stats", l_stats}, {"pause", l_pause}, {"close", l_close}, {NULL, NULL}};

static const luaL_Reg funcs[] = {{"balancer", l_balancer}, {NULL, NULL}};

void orch_balancer_lua_register(lua_State *L) {
  orch_lua_class(L, BAL_MT, methods, l_close);
  luaL_register(L, NULL, funcs);
}
