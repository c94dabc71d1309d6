/* stats_lua.c: orch.core.proc_stats, proc_starttime, clock_ticks. */
#include "orch/binding.h"
#include "orch/stats.h"

static pid_t check_pid(lua_State *L) {
  lua_Integer pid = luaL_checkinteger(L, 1);
  if (pid <= 0) luaL_argerror(L, 1, "pid must be positive");
  return (pid_t)pid;
}

/* { rss = bytes, cpu = seconds, procs = n, starttime = ticks } or nil when
 * the process is gone. */
static int l_proc_stats(lua_State *L) {
  orch_proc_stats_t s;
  if (orch_proc_stats(check_pid(L), &s) < 0) {
    lua_pushnil(L);
    return 1;
  }
  lua_createtable(L, 0, 4);
  lua_pushnumber(L, (lua_Number)s.rss);
  lua_setfield(L, -2, "rss");
  lua_pushnumber(L, (lua_Number)s.cpu_ticks / (lua_Number)orch_clock_ticks());
  lua_setfield(L, -2, "cpu");
  lua_pushinteger(L, s.procs);
  lua_setfield(L, -2, "procs");
  lua_pushnumber(L, (lua_Number)s.starttime);
  lua_setfield(L, -2, "starttime");
  return 1;
}

static int l_proc_starttime(lua_State *L) {
  uint64_t t;
  if (orch_proc_starttime(check_pid(L), &t) < 0) {
    lua_pushnil(L);
    return 1;
  }
  lua_pushnumber(L, (lua_Number)t);
  return 1;
}

static int l_clock_ticks(lua_State *L) {
  lua_pushinteger(L, orch_clock_ticks());
  return 1;
}

static const luaL_Reg funcs[] = {
    {"proc_stats", l_proc_stats}, {"proc_starttime", l_proc_starttime},
    {"clock_ticks", l_clock_ticks}, {NULL, NULL}};

void orch_stats_lua_register(lua_State *L) {
  luaL_register(L, NULL, funcs);
}
