/* sink_lua.c: orch.core's log files: the sink class (sink_open), truncate_log,
 * remove_rotated, on_log_problem, and the terminal echo of orch run (echo,
 * echo_stats). */
#include <string.h>

#include "orch/binding.h"
#include "orch/echo.h"
#include "orch/outpipe.h"
#include "orch/rotate.h"
#include "orch/runtime.h"
#include "orch/sink.h"

#define SINK_MT "orch.sink"

typedef struct {
  orch_sink_t *s;
} lsink_t;

orch_sink_t *orch_lua_check_sink(lua_State *L, int idx) {
  lsink_t *u = luaL_checkudata(L, idx, SINK_MT);
  if (!u->s) luaL_argerror(L, idx, "sink is closed");
  return u->s;
}

/* Applies {max_size = bytes (0: never), retain = n, compress = bool} at idx,
 * if a table. */
static void sink_rotation_opts(lua_State *L, int idx, orch_sink_t *s) {
  if (lua_isnoneornil(L, idx)) return;
  luaL_checktype(L, idx, LUA_TTABLE);
  lua_getfield(L, idx, "max_size");
  lua_Number max = luaL_optnumber(L, -1, 0);
  lua_getfield(L, idx, "retain");
  lua_Integer retain = luaL_optinteger(L, -1, 5);
  lua_getfield(L, idx, "compress");
  int compress = lua_toboolean(L, -1);
  lua_pop(L, 3);
  if (!(max >= 0 && max < 9.0e15)) luaL_argerror(L, idx, "max_size: expected bytes >= 0");
  if (retain < 1 || retain > ORCH_RETAIN_MAX) luaL_argerror(L, idx, "retain: expected 1 to 1000");
  orch_sink_rotation(s, (uint64_t)max, (int)retain);
  orch_sink_compress(s, compress ? orch_runtime_loop(L) : NULL);
}

/* core.sink_open(path|nil [, {max_size =, retain =}] [, follow [, mkdir]]):
 * follow, a path the user named: a symlink there is followed; mkdir true, its
 * directory is orch's, made again if gone; "parents", its missing
 * directories are made (orch_sink_open). */
static int l_sink_open(lua_State *L) {
  const char *path = luaL_optstring(L, 1, NULL);
  if (!lua_isnoneornil(L, 2)) luaL_checktype(L, 2, LUA_TTABLE);
  lua_settop(L, 4); /* the sink goes above the arguments, never at 2 */
  unsigned flags = lua_toboolean(L, 3) ? ORCH_SINK_FOLLOW : 0;
  if (lua_type(L, 4) == LUA_TSTRING) {
    if (strcmp(lua_tostring(L, 4), "parents") != 0) return luaL_argerror(L, 4, "expected true or \"parents\"");
    flags |= ORCH_SINK_MKDIRS;
  } else if (lua_toboolean(L, 4)) {
    flags |= ORCH_SINK_MKDIR;
  }
  lsink_t *u = lua_newuserdata(L, sizeof *u);
  u->s = NULL;
  luaL_getmetatable(L, SINK_MT);
  lua_setmetatable(L, -2);
  int rc = orch_sink_open(path, flags, &u->s);
  if (rc < 0) return orch_lua_fail(L, rc);
  sink_rotation_opts(L, 2, u->s);
  return 1;
}

/* core.log_line_hold(ms): how long an unfinished line waits for its end in a
 * file that others write too (orch_outpipe_line_hold). */
static int l_log_line_hold(lua_State *L) {
  lua_Integer ms = luaL_checkinteger(L, 1);
  luaL_argcheck(L, ms >= 1 && ms <= 3600000, 1, "expected 1 to 3600000 ms");
  orch_outpipe_line_hold((unsigned)ms);
  return 0;
}

static int l_sink_write(lua_State *L) {
  orch_sink_t *s = orch_lua_check_sink(L, 1);
  size_t n;
  const char *buf = luaL_checklstring(L, 2, &n);
  orch_sink_write(s, buf, n);
  return 0;
}

static int l_sink_path(lua_State *L) {
  orch_sink_t *s = orch_lua_check_sink(L, 1);
  const char *p = orch_sink_path(s);
  if (*p) lua_pushstring(L, p);
  else lua_pushnil(L);
  return 1;
}

/* sink:rotation{max_size =, retain =}: changes the settings of an open sink. */
static int l_sink_rotation(lua_State *L) {
  orch_sink_t *s = orch_lua_check_sink(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  sink_rotation_opts(L, 2, s);
  return 0;
}

static int l_sink_reopen(lua_State *L) { return orch_lua_ok(L, orch_sink_reopen(orch_lua_check_sink(L, 1))); }
static int l_sink_truncate(lua_State *L) { return orch_lua_ok(L, orch_sink_truncate(orch_lua_check_sink(L, 1))); }
static int l_sink_own_stdio(lua_State *L) { return orch_lua_ok(L, orch_sink_own_stdio(orch_lua_check_sink(L, 1))); }

static int l_sink_close(lua_State *L) {
  orch_sink_t *s = orch_lua_take(L, 1, SINK_MT);
  if (s) orch_sink_unref(s);
  return 0;
}

static int l_sink_stats(lua_State *L) {
  orch_sink_t *s = orch_lua_check_sink(L, 1);
  orch_sink_stats_t st;
  orch_sink_stats(s, &st);
  lua_createtable(L, 0, 6);
  lua_pushnumber(L, (lua_Number)st.written);
  lua_setfield(L, -2, "written");
  lua_pushnumber(L, (lua_Number)st.dropped);
  lua_setfield(L, -2, "dropped");
  lua_pushnumber(L, (lua_Number)st.size);
  lua_setfield(L, -2, "size");
  lua_pushnumber(L, (lua_Number)st.rotations);
  lua_setfield(L, -2, "rotations");
  if (st.last_err) {
    lua_pushstring(L, uv_err_name(-st.last_err));
    lua_setfield(L, -2, "error");
  }
  lua_pushboolean(L, st.stalled);
  lua_setfield(L, -2, "stalled");
  if (st.rotate_err) {
    lua_pushstring(L, uv_err_name(-st.rotate_err));
    lua_setfield(L, -2, "rotate_error");
  }
  if (st.compress_err) {
    lua_pushstring(L, uv_err_name(-st.compress_err));
    lua_setfield(L, -2, "compress_error");
  }
  lua_pushnumber(L, (lua_Number)st.remade);
  lua_setfield(L, -2, "remade");
  lua_pushnumber(L, (lua_Number)st.dir_remade);
  lua_setfield(L, -2, "dir_remade");
  return 1;
}

/* core.truncate_log(path [, follow]): empties an existing log file no sink
 * has open (orch_sink_truncate_path). */
static int l_truncate_log(lua_State *L) {
  return orch_lua_ok(L, orch_sink_truncate_path(luaL_checkstring(L, 1), lua_toboolean(L, 2)));
}

/* core.remove_rotated(path, retain): deletes path.1 ... (and .gz). */
static int l_remove_rotated(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  int retain = (int)luaL_optinteger(L, 2, 1);
  return orch_lua_ok(L, orch_rotate_remove(path, retain));
}

/* core.echo(fd, text): text (whole lines) to orch run's terminal through
 * the echo's writer (core/echo.c), never blocking; dropped, counted, when the
 * reader is behind. false if fd has no writer (then nothing was written). */
static int l_echo(lua_State *L) {
  int fd = (int)luaL_checkinteger(L, 1);
  size_t n;
  const char *s = luaL_checklstring(L, 2, &n);
  orch_echo_t *e = fd >= 0 ? orch_echo_get(fd) : NULL;
  if (e) orch_echo_line(e, s, n, NULL, 0, NULL, 0, NULL, 0);
  lua_pushboolean(L, e != NULL);
  return 1;
}

/* core.echo_stats(): { lines =, bytes = } not echoed (readers behind). */
static int l_echo_stats(lua_State *L) {
  orch_echo_stats_t st;
  orch_echo_stats(&st);
  lua_createtable(L, 0, 2);
  lua_pushnumber(L, (lua_Number)st.lines);
  lua_setfield(L, -2, "lines");
  lua_pushnumber(L, (lua_Number)st.bytes);
  lua_setfield(L, -2, "bytes");
  return 1;
}

/* The listener of log files' problems (orch_sink_on_problem): a function in
 * the registry, called with one table per problem. An anchor userdata in the
 * registry takes the listener away when the Lua state closes, so that no
 * report reaches a closed state. */
#define PROBLEM_ANCHOR "orch.log_problem_anchor"
static int problem_ref = LUA_NOREF;

static void on_problem(const orch_log_problem_t *p, void *data) {
  lua_State *L = data;
  if (problem_ref == LUA_NOREF) return;
  lua_rawgeti(L, LUA_REGISTRYINDEX, problem_ref);
  lua_createtable(L, 0, 6);
  lua_pushstring(L, p->path);
  lua_setfield(L, -2, "path");
  lua_pushstring(L, orch_log_problem_name(p->kind));
  lua_setfield(L, -2, "problem");
  if (p->err) {
    lua_pushstring(L, uv_err_name(-p->err));
    lua_setfield(L, -2, "error");
    lua_pushstring(L, uv_strerror(-p->err));
    lua_setfield(L, -2, "message");
  }
  lua_pushnumber(L, (lua_Number)p->count);
  lua_setfield(L, -2, "count");
  lua_pushnumber(L, (lua_Number)p->bytes);
  lua_setfield(L, -2, p->kind == ORCH_LOGP_RESUMED ? "paused_ms" : "bytes");
  int n = orch_runtime_pcall(L, 1, 0, 0);
  if (n > 0) lua_pop(L, n);
}

static int l_problem_anchor_gc(lua_State *L) {
  (void)L;
  orch_sink_on_problem(NULL, NULL, NULL);
  problem_ref = LUA_NOREF;
  return 0;
}

/* core.on_log_problem(fn | nil): fn({path, problem, error, message, count,
 * bytes | paused_ms}) for the problems of every log file, from the loop, at
 * most once a second (sink.h); nil: no more. */
static int l_on_log_problem(lua_State *L) {
  if (!lua_isnoneornil(L, 1)) luaL_checktype(L, 1, LUA_TFUNCTION);
  luaL_unref(L, LUA_REGISTRYINDEX, problem_ref);
  problem_ref = LUA_NOREF;
  if (lua_isnoneornil(L, 1)) return orch_lua_ok(L, orch_sink_on_problem(NULL, NULL, NULL));
  lua_getfield(L, LUA_REGISTRYINDEX, PROBLEM_ANCHOR);
  if (lua_isnil(L, -1)) {
    lua_newuserdata(L, 1);
    lua_newtable(L);
    lua_pushcfunction(L, l_problem_anchor_gc);
    lua_setfield(L, -2, "__gc");
    lua_setmetatable(L, -2);
    lua_setfield(L, LUA_REGISTRYINDEX, PROBLEM_ANCHOR);
  }
  lua_pop(L, 1);
  lua_pushvalue(L, 1);
  problem_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  return orch_lua_ok(L, orch_sink_on_problem(orch_runtime_loop(L), on_problem, L));
}

static const luaL_Reg funcs[] = {
    {"sink_open", l_sink_open}, {"on_log_problem", l_on_log_problem}, {"truncate_log", l_truncate_log}, {"log_line_hold", l_log_line_hold},
    {"remove_rotated", l_remove_rotated}, {"echo", l_echo}, {"echo_stats", l_echo_stats},
    {NULL, NULL}};

static const luaL_Reg sink_methods[] = {
    {"write", l_sink_write}, {"path", l_sink_path}, {"stats", l_sink_stats},
    {"rotation", l_sink_rotation}, {"reopen", l_sink_reopen}, {"truncate", l_sink_truncate},
    {"own_stdio", l_sink_own_stdio}, {"close", l_sink_close}, {NULL, NULL}};

void orch_sink_lua_register(lua_State *L) {
  orch_lua_class(L, SINK_MT, sink_methods, l_sink_close);
  luaL_register(L, NULL, funcs);
}
