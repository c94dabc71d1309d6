/* ctl_lua.c: orch.core.ctl_listen and orch.core.ctl_connect.
 *
 * A connection becomes a Lua object only with its first line: peers that are
 * refused, or that connect and leave, never reach Lua. While its connection is
 * open the object is pinned in the registry (so every line of a connection
 * comes with the same object); after on_close it is an ordinary value that
 * answers closed() == true and refuses send(). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "orch/binding.h"
#include "orch/ctl.h"
#include "orch/runtime.h"

#define SERVER_MT "orch.ctl_server"
#define CONN_MT "orch.ctl_conn"
#define CLIENT_MT "orch.ctl_client"

/* Cleared when the Lua state closes (see on_state_close): C may still close
 * handles afterwards, and must not call into a state that is gone. orch has
 * one Lua state per process. */
static int lua_up;

typedef struct {
  lua_State *L;
  int line_ref, close_ref;
} hooks_t;

typedef struct {
  orch_ctl_server_t *s; /* NULL once closed */
  int self_ref;         /* pins the object while it listens */
  char path[];
} lserver_t;

typedef struct {
  orch_ctl_conn_t *c; /* NULL once closed */
  int self_ref;
  pid_t pid;
  uid_t uid;
} lconn_t;

typedef struct {
  orch_ctl_client_t *c; /* NULL once closed */
} lclient_t;

/* ---- callbacks from ctl.c ---- */

static void on_line(orch_ctl_conn_t *c, const char *line, size_t len, void *data) {
  hooks_t *h = data;
  if (!lua_up) return;
  lua_State *L = h->L;
  lua_rawgeti(L, LUA_REGISTRYINDEX, h->line_ref);
  lconn_t *u = orch_ctl_conn_data(c);
  if (u) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, u->self_ref);
  } else {
    u = lua_newuserdata(L, sizeof *u);
    u->c = c;
    orch_ctl_conn_peer(c, &u->pid, &u->uid);
    luaL_getmetatable(L, CONN_MT);
    lua_setmetatable(L, -2);
    lua_pushvalue(L, -1);
    u->self_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    orch_ctl_conn_set_data(c, u);
  }
  lua_pushlstring(L, line, len);
  int n = orch_runtime_pcall(L, 2, 0, 0);
  if (n > 0) lua_pop(L, n);
}

static void on_close(orch_ctl_conn_t *c, void *data) {
  hooks_t *h = data;
  lconn_t *u = orch_ctl_conn_data(c);
  orch_ctl_conn_set_data(c, NULL);
  orch_ctl_conn_release(c);
  if (!u || !lua_up) return;
  lua_State *L = h->L;
  u->c = NULL;
  int self = u->self_ref;
  u->self_ref = LUA_NOREF;
  if (h->close_ref != LUA_NOREF) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, h->close_ref);
    lua_rawgeti(L, LUA_REGISTRYINDEX, self);
    int n = orch_runtime_pcall(L, 1, 0, 0);
    if (n > 0) lua_pop(L, n);
  }
  luaL_unref(L, LUA_REGISTRYINDEX, self); /* may let the object be collected */
}

static void on_free(void *data) {
  hooks_t *h = data;
  if (lua_up) {
    luaL_unref(h->L, LUA_REGISTRYINDEX, h->line_ref);
    luaL_unref(h->L, LUA_REGISTRYINDEX, h->close_ref);
  }
  free(h);
}

/* ---- server ---- */

/* Reads the optional positive integer opts[name] (opts is argument 2) into
 * *out, 0 (the default) when absent; raises on anything else. */
static void opt_limit(lua_State *L, const char *name, size_t *out) {
  lua_getfield(L, 2, name);
  *out = 0;
  if (!lua_isnil(L, -1)) {
    lua_Number v = lua_isnumber(L, -1) ? lua_tonumber(L, -1) : 0;
    if (!(v >= 1 && v <= 4e9 && v == (lua_Number)(size_t)v)) {
      lua_pushfstring(L, "%s: positive integer expected", name);
      luaL_argerror(L, 2, lua_tostring(L, -1));
    }
    *out = (size_t)v;
  }
  lua_pop(L, 1);
}

static int l_ctl_listen(lua_State *L) {
  size_t plen;
  const char *path = luaL_checklstring(L, 1, &plen);
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_getfield(L, 2, "on_line");
  if (!lua_isfunction(L, -1)) return luaL_argerror(L, 2, "on_line: function expected");
  lua_getfield(L, 2, "on_close");
  if (!lua_isnil(L, -1) && !lua_isfunction(L, -1))
    return luaL_argerror(L, 2, "on_close: function expected");
  orch_ctl_handlers_t handlers = {.on_line = on_line, .on_close = on_close, .on_free = on_free};
  opt_limit(L, "max_line", &handlers.max_line);
  opt_limit(L, "max_queued", &handlers.max_queued);
  opt_limit(L, "max_queued_hard", &handlers.max_queued_hard);
  opt_limit(L, "max_buffered", &handlers.max_buffered);
  size_t n;
  opt_limit(L, "max_conns", &n);
  handlers.max_conns = (unsigned)n;
  opt_limit(L, "max_busy", &n);
  handlers.max_busy = (unsigned)n;
  opt_limit(L, "idle_ms", &n);
  handlers.idle_ms = (unsigned)n;
  /* fd: a listening socket handed over by orch update's previous image */
  opt_limit(L, "fd", &n);
  handlers.fd = (int)n;

  lserver_t *u = lua_newuserdata(L, sizeof *u + plen + 1);
  u->s = NULL;
  u->self_ref = LUA_NOREF;
  memcpy(u->path, path, plen + 1);
  luaL_getmetatable(L, SERVER_MT);
  lua_setmetatable(L, -2);

  hooks_t *h = malloc(sizeof *h);
  if (!h) return orch_lua_fail(L, UV_ENOMEM);
  h->L = L;
  h->close_ref = LUA_NOREF;
  lua_pushvalue(L, 3);
  h->line_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  if (lua_isfunction(L, 4)) {
    lua_pushvalue(L, 4);
    h->close_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  handlers.data = h;
  int rc = orch_ctl_listen(orch_runtime_loop(L), path, &handlers, &u->s);
  if (rc < 0) {
    on_free(h); /* on failure the hooks stay ours */
    return orch_lua_fail(L, rc);
  }
  lua_pushvalue(L, -1);
  u->self_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  return 1;
}

static int l_server_close(lua_State *L) {
  lserver_t *u = luaL_checkudata(L, 1, SERVER_MT);
  if (u->s) {
    orch_ctl_server_close(u->s);
    u->s = NULL;
    luaL_unref(L, LUA_REGISTRYINDEX, u->self_ref);
    u->self_ref = LUA_NOREF;
  }
  return 0;
}

static int l_server_path(lua_State *L) {
  lserver_t *u = luaL_checkudata(L, 1, SERVER_MT);
  lua_pushstring(L, u->path);
  return 1;
}

/* server:fd() -> the listening descriptor, nil once closed. */
static int l_server_fd(lua_State *L) {
  lserver_t *u = luaL_checkudata(L, 1, SERVER_MT);
  int fd = u->s ? orch_ctl_server_fd(u->s) : -EBADF;
  if (fd < 0) return 0;
  lua_pushinteger(L, fd);
  return 1;
}

/* Reached with the server open only when the state closes. */
static int l_server_gc(lua_State *L) {
  orch_ctl_server_t *s = orch_lua_take(L, 1, SERVER_MT);
  if (s) orch_ctl_server_close(s);
  return 0;
}

/* ---- connections ---- */

static lconn_t *check_conn(lua_State *L) { return luaL_checkudata(L, 1, CONN_MT); }

static int l_conn_send(lua_State *L) {
  lconn_t *u = check_conn(L);
  size_t n;
  const char *s = luaL_checklstring(L, 2, &n);
  int rc = u->c ? orch_ctl_conn_send(u->c, s, n) : UV_EPIPE;
  return orch_lua_ok(L, rc);
}

static int l_conn_close(lua_State *L) {
  lconn_t *u = check_conn(L);
  if (u->c) orch_ctl_conn_close(u->c); /* on_close follows from the loop */
  return 0;
}

/* conn:finish(): closed once its queued lines are written. */
static int l_conn_finish(lua_State *L) {
  lconn_t *u = check_conn(L);
  if (u->c) orch_ctl_conn_finish(u->c); /* on_close follows from the loop */
  return 0;
}

static int l_conn_closed(lua_State *L) {
  lconn_t *u = check_conn(L);
  lua_pushboolean(L, !u->c || orch_ctl_conn_closed(u->c));
  return 1;
}

static int l_conn_pending(lua_State *L) {
  lconn_t *u = check_conn(L);
  lua_pushnumber(L, u->c ? (lua_Number)orch_ctl_conn_pending(u->c) : 0);
  return 1;
}

/* conn:busy(delta): the owner starts (1) or finishes (-1) a request. */
static int l_conn_busy(lua_State *L) {
  lconn_t *u = check_conn(L);
  int delta = (int)luaL_checkinteger(L, 2);
  if (u->c) orch_ctl_conn_busy(u->c, delta);
  return 0;
}

static int l_conn_peer(lua_State *L) {
  lconn_t *u = check_conn(L);
  lua_pushinteger(L, u->pid);
  lua_pushnumber(L, u->uid);
  return 2;
}

/* Reached with the connection open only when the state closes. */
static int l_conn_gc(lua_State *L) {
  lconn_t *u = check_conn(L);
  if (u->c) {
    orch_ctl_conn_set_data(u->c, NULL);
    orch_ctl_conn_release(u->c);
    u->c = NULL;
  }
  return 0;
}

/* ---- client ---- */

static lclient_t *check_client(lua_State *L) {
  return luaL_checkudata(L, 1, CLIENT_MT);
}

static int l_ctl_connect(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  lclient_t *u = lua_newuserdata(L, sizeof *u);
  u->c = NULL;
  luaL_getmetatable(L, CLIENT_MT);
  lua_setmetatable(L, -2);
  int rc = orch_ctl_connect(path, &u->c);
  if (rc < 0) return orch_lua_fail(L, rc);
  return 1;
}

static int l_client_send(lua_State *L) {
  lclient_t *u = check_client(L);
  size_t n;
  const char *s = luaL_checklstring(L, 2, &n);
  int rc = u->c ? orch_ctl_client_send(u->c, s, n) : -EBADF;
  return orch_lua_ok(L, rc);
}

/* The timeout argument at idx in ms (nil or < 0: none). */
static int timeout_arg(lua_State *L, int idx) {
  lua_Number t = luaL_optnumber(L, idx, -1);
  return t < 0 ? -1 : t > 2e9 ? 2000000000 : (int)t;
}

static int l_client_read_line(lua_State *L) {
  lclient_t *u = check_client(L);
  int timeout = timeout_arg(L, 2);
  const char *line;
  size_t len;
  int rc = u->c ? orch_ctl_client_read_line(u->c, timeout, &line, &len) : -EBADF;
  if (rc < 0) return orch_lua_fail(L, rc);
  lua_pushlstring(L, line, len);
  return 1;
}

/* c:pass_line(timeout_ms, head, fd) → true[, the write's error message]
 * (the result went to fd), or the line as read_line returns it
 * (orch_ctl_client_pass_line). */
static int l_client_pass_line(lua_State *L) {
  lclient_t *u = check_client(L);
  int timeout = timeout_arg(L, 2);
  size_t head_len;
  const char *head = luaL_checklstring(L, 3, &head_len);
  int fd = (int)luaL_checkinteger(L, 4);
  const char *line;
  size_t len;
  int werr = 0;
  int rc = u->c ? orch_ctl_client_pass_line(u->c, timeout, head, head_len, fd, &line, &len, &werr)
                : -EBADF;
  if (rc < 0) return orch_lua_fail(L, rc);
  if (rc == 0) {
    lua_pushlstring(L, line, len);
    return 1;
  }
  lua_pushboolean(L, 1);
  if (werr == 0) return 1;
  lua_pushfstring(L, "%s: %s", uv_err_name(werr), uv_strerror(werr));
  return 2;
}

static int l_client_fd(lua_State *L) {
  lclient_t *u = check_client(L);
  if (!u->c) return 0;
  lua_pushinteger(L, orch_ctl_client_fd(u->c));
  return 1;
}

static int l_client_close(lua_State *L) {
  orch_ctl_client_t *c = orch_lua_take(L, 1, CLIENT_MT);
  if (c) orch_ctl_client_close(c);
  return 0;
}

/* ---- registration ---- */

static int on_state_close(lua_State *L) {
  (void)L;
  lua_up = 0;
  orch_ctl_close_all();
  return 0;
}

static const luaL_Reg server_methods[] = {
    {"close", l_server_close}, {"path", l_server_path}, {"fd", l_server_fd}, {NULL, NULL}};

static const luaL_Reg conn_methods[] = {
    {"send", l_conn_send},       {"close", l_conn_close}, {"closed", l_conn_closed},
    {"finish", l_conn_finish},
    {"pending", l_conn_pending}, {"peer", l_conn_peer},   {"busy", l_conn_busy},
    {NULL, NULL}};

static const luaL_Reg client_methods[] = {{"send", l_client_send},
                                          {"read_line", l_client_read_line},
                                          {"pass_line", l_client_pass_line},
                                          {"fd", l_client_fd},
                                          {"close", l_client_close},
                                          {NULL, NULL}};

static const luaL_Reg funcs[] = {
    {"ctl_listen", l_ctl_listen}, {"ctl_connect", l_ctl_connect}, {NULL, NULL}};

void orch_ctl_lua_register(lua_State *L) {
  orch_lua_class(L, SERVER_MT, server_methods, l_server_gc);
  orch_lua_class(L, CONN_MT, conn_methods, l_conn_gc);
  orch_lua_class(L, CLIENT_MT, client_methods, l_client_close);
  orch_lua_on_state_close(L, "orch.ctl_state", on_state_close);
  lua_up = 1;
  luaL_register(L, NULL, funcs);
}
