/* chan_lua.c: orch.core.chan_open, the IPC channel (chan.h) as a Lua
 * object. While open it is pinned in the registry, so every callback comes
 * with the same object; after on_close it answers closed() and refuses
 * sends, and its memory goes with the last holder (a balancer may hold it
 * a moment longer). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "orch/binding.h"
#include "orch/chan.h"
#include "orch/fdobj.h"
#include "orch/runtime.h"

#define CHAN_MT "orch.chan"

static int lua_up; /* cleared when the state closes: no callbacks then */

typedef struct {
  orch_chan_t *ch; /* our reference; NULL after __gc */
} lchan_t;

typedef struct {
  lua_State *L;
  int line_ref, close_ref, self_ref;
} hooks_t;

static void on_line(orch_chan_t *ch, const char *line, size_t len, void *data) {
  (void)ch;
  hooks_t *h = data;
  if (!lua_up) return;
  lua_State *L = h->L;
  lua_rawgeti(L, LUA_REGISTRYINDEX, h->line_ref);
  if (line) lua_pushlstring(L, line, len);
  else lua_pushnil(L); /* over ORCH_CHAN_MAX_LINE: it closes next */
  int n = orch_runtime_pcall(L, 1, 0, 0);
  if (n > 0) lua_pop(L, n);
}

static void on_close(orch_chan_t *ch, void *data) {
  (void)ch;
  hooks_t *h = data;
  if (lua_up) {
    lua_State *L = h->L;
    lua_rawgeti(L, LUA_REGISTRYINDEX, h->close_ref);
    int n = orch_runtime_pcall(L, 0, 0, 0);
    if (n > 0) lua_pop(L, n);
    luaL_unref(L, LUA_REGISTRYINDEX, h->line_ref);
    luaL_unref(L, LUA_REGISTRYINDEX, h->close_ref);
    luaL_unref(L, LUA_REGISTRYINDEX, h->self_ref); /* may let the object be collected */
  }
  free(h);
}

/* chan_open(fd, on_line(line | nil: over-long), on_close()[, buffered]) ->
 * chan: takes the fd object's descriptor (closed on failure too); buffered:
 * the start of a line an earlier image read (orch update). */
static int l_chan_open(lua_State *L) {
  luaL_checktype(L, 2, LUA_TFUNCTION);
  luaL_checktype(L, 3, LUA_TFUNCTION);
  size_t blen = 0;
  const char *buffered = luaL_optlstring(L, 4, "", &blen);
  if (blen > ORCH_CHAN_MAX_LINE || memchr(buffered, '\n', blen))
    return luaL_argerror(L, 4, "the start of one line expected");
  int fd = orch_fdobj_take(L, 1);
  lchan_t *u = lua_newuserdata(L, sizeof *u);
  u->ch = NULL;
  luaL_getmetatable(L, CHAN_MT);
  lua_setmetatable(L, -2);
  hooks_t *h = malloc(sizeof *h);
  if (!h) return orch_lua_fail(L, -ENOMEM);
  orch_chan_handlers_t hs = {.on_line = on_line, .on_close = on_close, .data = h};
  int rc = orch_chan_open(orch_runtime_loop(L), fd, &hs, &u->ch);
  if (rc < 0) {
    free(h);
    return orch_lua_fail(L, rc);
  }
  h->L = L;
  lua_pushvalue(L, 2);
  h->line_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pushvalue(L, 3);
  h->close_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pushvalue(L, -1);
  h->self_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  rc = orch_chan_preload(u->ch, buffered, blen);
  if (rc < 0) {
    orch_chan_close(u->ch); /* its on_close runs, as for any channel that ends */
    return orch_lua_fail(L, rc);
  }
  return 1;
}

orch_chan_t *orch_lua_check_chan(lua_State *L, int idx) {
  lchan_t *u = luaL_checkudata(L, idx, CHAN_MT);
  if (!u->ch) luaL_argerror(L, idx, "a collected channel");
  return u->ch;
}

static int l_send(lua_State *L) {
  orch_chan_t *ch = orch_lua_check_chan(L, 1);
  size_t n;
  const char *s = luaL_checklstring(L, 2, &n);
  return orch_lua_ok(L, orch_chan_send(ch, s, n));
}

/* send_fd(msg_json, fd): msg wrapped as NODE_HANDLE with a duplicate of fd */
static int l_send_fd(lua_State *L) {
  orch_chan_t *ch = orch_lua_check_chan(L, 1);
  size_t n;
  const char *s = luaL_checklstring(L, 2, &n);
  return orch_lua_ok(L, orch_chan_send_fd(ch, s, n, orch_fdobj_arg(L, 3)));
}

static int l_handle_reply(lua_State *L) {
  orch_chan_handle_reply(orch_lua_check_chan(L, 1), lua_toboolean(L, 2));
  return 0;
}

static int l_cluster_ack(lua_State *L) {
  orch_chan_t *ch = orch_lua_check_chan(L, 1);
  lua_Number seq = luaL_checknumber(L, 2);
  int ok = seq >= 1 && seq < 9e15 && orch_chan_cluster_ack(ch, (uint64_t)seq, lua_toboolean(L, 3));
  lua_pushboolean(L, ok);
  return 1;
}

static int l_closed(lua_State *L) {
  lua_pushboolean(L, orch_chan_closed(orch_lua_check_chan(L, 1)));
  return 1;
}

static int l_queued(lua_State *L) {
  lua_pushnumber(L, (lua_Number)orch_chan_queued(orch_lua_check_chan(L, 1)));
  return 1;
}

/* handover() -> fd, buffered | nil, message, code (orch_chan_handover) */
static int l_handover(lua_State *L) {
  const char *buf;
  size_t len;
  int fd = orch_chan_handover(orch_lua_check_chan(L, 1), &buf, &len);
  if (fd == -EAGAIN) {
    lua_pushnil(L);
    lua_pushliteral(L, "EAGAIN: messages or descriptors on the channel are not taken or acknowledged yet");
    lua_pushliteral(L, "EAGAIN");
    return 3;
  }
  if (fd < 0) return orch_lua_fail(L, fd);
  lua_pushinteger(L, fd);
  lua_pushlstring(L, buf, len);
  return 2;
}

static int l_close(lua_State *L) {
  orch_chan_close(orch_lua_check_chan(L, 1));
  return 0;
}

static int l_gc(lua_State *L) {
  lchan_t *u = luaL_checkudata(L, 1, CHAN_MT);
  if (u->ch) {
    orch_chan_close(u->ch);
    orch_chan_unref(u->ch);
    u->ch = NULL;
  }
  return 0;
}

static int on_state_close(lua_State *L) {
  (void)L;
  lua_up = 0;
  return 0;
}

static const luaL_Reg methods[] = {
    {"send", l_send},       {"send_fd", l_send_fd}, {"handle_reply", l_handle_reply},
    {"cluster_ack", l_cluster_ack}, {"closed", l_closed}, {"queued", l_queued},
    {"close", l_close},     {"handover", l_handover}, {NULL, NULL}};

static const luaL_Reg funcs[] = {{"chan_open", l_chan_open}, {NULL, NULL}};

void orch_chan_lua_register(lua_State *L) {
  orch_lua_class(L, CHAN_MT, methods, l_gc);
  orch_lua_on_state_close(L, "orch.chan_state", on_state_close);
  lua_up = 1;
  luaL_register(L, NULL, funcs);
}
