/* runtime.c: one LuaJIT state on orch's loop. */
#include "orch/runtime.h"

#include "orch/echo.h"
#include "orch/heap.h"
#include "orch/owners.h"

#include <errno.h>
#include <lauxlib.h>
#include <lualib.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <lua-cjson.h>
#include <luv/lhandle.h>
#include <luv/luv.h>

/* Generated at build time from the modules in lua/orch (CMakeLists.txt). */
typedef struct {
  const char *name;
  const unsigned char *code;
  size_t size;
} orch_embedded_t;
extern const orch_embedded_t orch_embedded[];

static const char LOOP_KEY[] = "orch.loop";

uv_loop_t *orch_runtime_loop(lua_State *L) {
  lua_getfield(L, LUA_REGISTRYINDEX, LOOP_KEY);
  uv_loop_t *loop = lua_touserdata(L, -1);
  lua_pop(L, 1);
  return loop;
}

static int traceback(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  if (!msg) msg = lua_pushfstring(L, "(error object is a %s value)",
                                  luaL_typename(L, 1));
  lua_getglobal(L, "debug");
  lua_getfield(L, -1, "traceback");
  lua_pushstring(L, msg);
  lua_pushinteger(L, 2);
  lua_call(L, 2, 1);
  return 1;
}

static void report(lua_State *L, const char *msg) {
  lua_getfield(L, LUA_REGISTRYINDEX, "orch.on_error");
  if (lua_isfunction(L, -1)) {
    lua_pushstring(L, msg);
    if (lua_pcall(L, 1, 0, 0) == 0) return;
    msg = lua_tostring(L, -1); /* the reporter itself failed */
  }
  fprintf(stderr, "orch: error in callback: %s\n", msg ? msg : "?");
  lua_pop(L, 1);
}

/* A Lua function whose environment is not the daemon's globals is user
 * code (ecosystem sandbox, REPL environment): orch.hook's rule. */
static int is_user_function(lua_State *L, int idx) {
  if (lua_type(L, idx) != LUA_TFUNCTION || lua_iscfunction(L, idx)) return 0;
  lua_getfenv(L, idx);
  int user = !lua_rawequal(L, -1, LUA_GLOBALSINDEX);
  lua_pop(L, 1);
  return user;
}

/* Set at exit once Lua has had its rounds of close callbacks (see
 * close_luv_handles): callbacks are dropped from then on. */
static int callbacks_off;

int orch_runtime_pcall(lua_State *L, int nargs, int nresults, int flags) {
  (void)flags; /* never exit, always trace: a user's error must not kill orch */
  int base = lua_gettop(L) - nargs;
  if (callbacks_off) {
    lua_settop(L, base - 1);
    return 0;
  }
  /* A user function given to luv (orch.uv) runs through orch.user_call
   * (lua/orch/api.lua): under a deadline, like every hook. */
  if (is_user_function(L, base)) {
    lua_getfield(L, LUA_REGISTRYINDEX, "orch.user_call");
    if (lua_isfunction(L, -1)) {
      lua_insert(L, base);
      nargs++;
    } else {
      lua_pop(L, 1);
    }
  }
  lua_pushcfunction(L, traceback);
  lua_insert(L, base);
  int rc = lua_pcall(L, nargs, nresults, base);
  if (rc != 0) {
    report(L, lua_tostring(L, -1));
    lua_settop(L, base - 1);
    return -rc;
  }
  lua_remove(L, base);
  return lua_gettop(L) - base + 1;
}

/* package.loaders entry for the modules compiled into the binary. */
static int load_embedded(lua_State *L) {
  const char *name = luaL_checkstring(L, 1);
  for (const orch_embedded_t *m = orch_embedded; m->name; m++) {
    if (strcmp(m->name, name) != 0) continue;
    if (luaL_loadbuffer(L, (const char *)m->code, m->size, name) != 0)
      return lua_error(L);
    return 1;
  }
  lua_pushfstring(L, "\n\tno module '%s' embedded in orch", name);
  return 1;
}

/* The embedded bytecode is read once, by luaL_loadbuffer, which copies it
 * into the Lua heap; its pages (read-only, backed by the binary) then stay
 * mapped and count in the daemon's RSS a second time: ~0.6 MB once the
 * daemon's modules are loaded. MADV_DONTNEED unmaps the whole pages inside
 * the bytecode's span; a later require faults in what it reads again. */
int orch_runtime_drop_bytecode(void) {
  uintptr_t lo = UINTPTR_MAX, hi = 0;
  for (const orch_embedded_t *m = orch_embedded; m->name; m++) {
    uintptr_t a = (uintptr_t)m->code;
    if (a < lo) lo = a;
    if (a + m->size > hi) hi = a + m->size;
  }
  long page = sysconf(_SC_PAGESIZE);
  if (page <= 0 || hi <= lo) return 0;
  lo = (lo + (uintptr_t)page - 1) & ~((uintptr_t)page - 1);
  hi &= ~((uintptr_t)page - 1);
  if (hi <= lo) return 0;
  return madvise((void *)lo, hi - lo, MADV_DONTNEED) == 0 ? 0 : -errno;
}

static void preload(lua_State *L, const char *name, lua_CFunction f) {
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "preload");
  lua_pushcfunction(L, f);
  lua_setfield(L, -2, name);
  lua_pop(L, 2);
}

/* Embedded modules come right after package.preload, ahead of package.path,
 * so a stray ./orch/x.lua cannot shadow them. ORCH_LUA_DIR (development)
 * puts that directory's sources first instead. */
static void install_loader(lua_State *L) {
  const char *dir = getenv("ORCH_LUA_DIR");
  lua_getglobal(L, "package");
  if (dir && *dir) {
    lua_getfield(L, -1, "path");
    lua_pushfstring(L, "%s/?.lua;%s", dir, lua_tostring(L, -1));
    lua_setfield(L, -3, "path");
    lua_pop(L, 1);
  }
  lua_getglobal(L, "table");
  lua_getfield(L, -1, "insert");
  lua_getfield(L, -3, "loaders");
  lua_pushinteger(L, dir && *dir ? 3 : 2);
  lua_pushcfunction(L, load_embedded);
  lua_call(L, 3, 0);
  lua_pop(L, 2);
}

/* os.exit([status[, close]]) closes the Lua state before exit(), whatever
 * `close` says: finalizers run (what Lua holds is flushed and closed), and
 * LuaJIT's memory goes back rather than being left to the OS, where
 * LeakSanitizer reports a block LuaJIT keeps no plain pointer to. LuaJIT's
 * own os.exit(status, true) closes the state this way from inside a call;
 * the loop is not run again (libuv's uv_run is not reentrant), so luv's
 * close callbacks are skipped, as exit() skips them anyway. */
static int os_exit(lua_State *L) {
  int status = EXIT_SUCCESS;
  if (lua_isboolean(L, 1))
    status = lua_toboolean(L, 1) ? EXIT_SUCCESS : EXIT_FAILURE;
  else
    status = (int)luaL_optinteger(L, 1, EXIT_SUCCESS);
  orch_heap_close(L);
  exit(status);
}

lua_State *orch_runtime_new(uv_loop_t *loop) {
  lua_State *L = orch_heap_newstate();
  if (!L) return NULL;
  luaL_openlibs(L);
  lua_getglobal(L, "os");
  lua_pushcfunction(L, os_exit);
  lua_setfield(L, -2, "exit");
  lua_pop(L, 1);
  lua_pushlightuserdata(L, loop);
  lua_setfield(L, LUA_REGISTRYINDEX, LOOP_KEY);
  luv_set_loop(L, loop);
  luv_set_callback(L, orch_runtime_pcall);
  preload(L, "luv", luaopen_luv);
  preload(L, "cjson", luaopen_cjson);
  preload(L, "orch.core", luaopen_orch_core);
  install_loader(L);
  return L;
}

/* The registry refs of luv's open handles, and in *held how many handles
 * luv holds in all (closing ones too). luv keeps every handle it made in
 * the registry (a userdata holding the handle's address, with one of the
 * metatables listed in registry.uv_handle) until its close callback has
 * run, so that is where luv's handles are found: a handle of the loop is
 * never taken for luv's because its data is set (orch's C handles set data
 * too), and orch's own are registered apart (owners.h). */
static int luv_handle_refs(lua_State *L, int **out, int *held) {
  int n = 0, cap = 0, *refs = NULL;
  *held = 0;
  *out = NULL;
  lua_getfield(L, LUA_REGISTRYINDEX, "uv_handle");
  if (!lua_istable(L, -1)) {
    lua_pop(L, 1);
    return 0;
  }
  lua_pushnil(L);
  while (lua_next(L, LUA_REGISTRYINDEX)) {
    /* registry.uv_handle, key, value */
    uv_handle_t **ud = lua_type(L, -2) == LUA_TNUMBER ? lua_touserdata(L, -1) : NULL;
    int luv = ud && lua_type(L, -1) == LUA_TUSERDATA && lua_getmetatable(L, -1);
    if (luv) {
      lua_rawget(L, -4);
      luv = lua_toboolean(L, -1);
      lua_pop(L, 1);
    }
    /* The handle's own record must name this registry slot: it is luv's. */
    uv_handle_t *h = luv ? *ud : NULL;
    const luv_handle_t *d = h ? h->data : NULL;
    if (d && d->ref == (int)lua_tointeger(L, -2)) {
      (*held)++;
      if (!uv_is_closing(h)) {
        if (n == cap) {
          int c = cap ? cap * 2 : 16, *grown = realloc(refs, (size_t)c * sizeof *grown);
          if (!grown) {
            lua_pop(L, 2);
            break;
          }
          refs = grown;
          cap = c;
        }
        refs[n++] = d->ref;
      }
    }
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  *out = refs;
  return n;
}

/* handle:close(), run protected: nothing here may raise outside a pcall. */
static int close_one(lua_State *L) {
  lua_getfield(L, 1, "close");
  lua_pushvalue(L, 1);
  lua_call(L, 1, 0);
  return 0;
}

/* Rounds of close callbacks Lua gets at exit; a callback may make new
 * handles, which the next round closes. */
#define CLOSE_ROUNDS 16

/* Closes luv's handles through their own :close() and runs the loop until
 * luv holds none, closing ones included: luv's __gc closes a handle still
 * open with a callback that runs on the freed state, and frees a closing
 * one that libuv still holds. luv's uv.walk cannot do it: it asserts on
 * handles it does not own. The refs are gathered first: closing must not
 * change the registry under lua_next. Lua that keeps making handles gets
 * CLOSE_ROUNDS rounds; then its callbacks stop and the rest close without
 * them. */
static void close_luv_handles(lua_State *L) {
  uv_loop_t *loop = orch_runtime_loop(L);
  for (int round = 0;; round++) {
    int *refs, held;
    int n = luv_handle_refs(L, &refs, &held);
    if (held == 0) {
      free(refs);
      return;
    }
    if (round == CLOSE_ROUNDS) {
      fputs("orch: exit: Lua made libuv handles while closing them; the rest close without their callbacks\n",
            stderr);
      callbacks_off = 1;
    }
    for (int i = 0; i < n; i++) {
      lua_pushcfunction(L, close_one);
      lua_rawgeti(L, LUA_REGISTRYINDEX, refs[i]);
      if (lua_pcall(L, 1, 0, 0) != 0) {
        report(L, lua_tostring(L, -1));
        lua_pop(L, 1);
      }
    }
    free(refs);
    if (round > CLOSE_ROUNDS + 1) {
      /* a close callback is run in the loop turn after uv_close: never here */
      fprintf(stderr, "orch: exit: %d of luv's libuv handles do not finish closing\n", held);
      return;
    }
    uv_run(loop, UV_RUN_NOWAIT);
  }
}


/* How long the exit waits for requests on libuv's thread pool (an rmdir of
 * a cgroup, a file read for the dashboard, a gzip) before it ends without
 * them. */
#define REQ_WAIT_MS 2000

static void on_req_wait_over(uv_timer_t *t) {
  *(int *)t->data = 1;
  uv_stop(t->loop);
}

/* Runs the loop for at most REQ_WAIT_MS: until no request is out
 * (reqs_only), or until nothing keeps it alive. 1 if no request is out
 * then. A luv request finishing calls back into the Lua state, which must
 * live then: with a request still out, it was freed under the callback (an
 * rmdir's error message written into freed memory, ASan in CI). */
static int run_bounded(uv_loop_t *loop, int reqs_only) {
  if (reqs_only && loop->active_reqs.count == 0) return 1;
  uv_timer_t t;
  int over = 0;
  if (uv_timer_init(loop, &t) != 0) return loop->active_reqs.count == 0;
  t.data = &over;
  if (uv_timer_start(&t, on_req_wait_over, REQ_WAIT_MS, 0) == 0) {
    if (!reqs_only) uv_run(loop, UV_RUN_DEFAULT);
    while (reqs_only && loop->active_reqs.count > 0 && !over) uv_run(loop, UV_RUN_ONCE);
  }
  uv_close((uv_handle_t *)&t, NULL);
  uv_run(loop, UV_RUN_NOWAIT); /* t's close, before the stack it lives on goes */
  return loop->active_reqs.count == 0;
}

/* By owner (owners.h). Order matters: luv's close callbacks reach into
 * luv's context, which lives in the Lua state. So luv's handles are closed
 * and their callbacks run while the state lives, and so do the requests
 * still out; then the state goes, and with it what Lua objects own; what C
 * modules own goes last (log pipes flush into the echo, whose readers get a
 * second). Anything left is a bug. A request that never finishes (a read
 * from a FIFO nobody opens) keeps the state, whose callbacks it may still
 * reach, and the exit goes on without it. */
int orch_runtime_end(lua_State *L) {
  uv_loop_t *loop = orch_runtime_loop(L);
  close_luv_handles(L);
  int drained = run_bounded(loop, 1);
  if (drained) orch_heap_close(L);
  else fprintf(stderr, "orch: exit: %u request(s) still running after %d ms; ending without them\n",
               loop->active_reqs.count, REQ_WAIT_MS);
  orch_owners_close_all();
  orch_echo_finish(1000);
  orch_owners_strays(loop);
  if (drained) {
    uv_run(loop, UV_RUN_DEFAULT);
    return 1;
  }
  run_bounded(loop, 0); /* the loop stays alive while a request is out */
  return 0;
}
