/* looplag.c: how long the loop works between two waits in the kernel, for
 * the HTTP endpoint's /metrics (orch_daemon_loop_lag_seconds). libuv's idle
 * time (UV_METRICS_IDLE_TIME) is the time spent blocked in epoll; a prepare
 * handle runs once per turn, just before that wait, so a turn's work is the
 * time since the previous prepare minus the idle time in between: what an
 * event arriving at the worst moment of that turn waited. Started only when
 * the endpoint is on; costs two clock reads per turn, and nothing while the
 * loop sleeps (the handle is unreferenced and wakes nobody). */
#include <stdint.h>

#include "orch/binding.h"
#include "orch/owners.h"
#include "orch/runtime.h"

static uv_prepare_t prep;
static int started;
static uint64_t last_ns, last_idle_ns; /* at the previous prepare */
static uint64_t busy_ns, max_ns, turns;

static void on_prepare(uv_prepare_t *h) {
  uint64_t now = uv_hrtime(), idle = uv_metrics_idle_time(h->loop);
  uint64_t span = now - last_ns, slept = idle - last_idle_ns;
  uint64_t work = span > slept ? span - slept : 0;
  busy_ns += work;
  if (work > max_ns) max_ns = work;
  turns++;
  last_ns = now;
  last_idle_ns = idle;
}

static void looplag_stop(void) {
  if (!started) return;
  started = 0;
  uv_close((uv_handle_t *)&prep, NULL);
}

static int looplag_start(uv_loop_t *loop) {
  if (started) return 0;
  int rc = uv_loop_configure(loop, UV_METRICS_IDLE_TIME);
  if (rc == 0) rc = uv_prepare_init(loop, &prep);
  if (rc < 0) return rc;
  rc = uv_prepare_start(&prep, on_prepare);
  if (rc < 0) {
    uv_close((uv_handle_t *)&prep, NULL);
    return rc;
  }
  uv_unref((uv_handle_t *)&prep); /* measuring alone does not keep orch up */
  last_ns = uv_hrtime();
  last_idle_ns = uv_metrics_idle_time(loop);
  started = 1;
  static orch_owner_t owner = {"the loop-lag meter", looplag_stop, NULL, 0};
  orch_owner_add(&owner);
  return 0;
}

/* loop_lag() -> { busy = seconds worked in all, max = the longest turn since
 * the previous call (seconds; then reset), turns = n }; started on the first
 * call (the first figures cover the time since). nil, message, code when the
 * loop cannot measure. */
static int l_loop_lag(lua_State *L) {
  int rc = looplag_start(orch_runtime_loop(L));
  if (rc < 0) return orch_lua_fail(L, rc);
  lua_createtable(L, 0, 3);
  lua_pushnumber(L, (lua_Number)busy_ns / 1e9);
  lua_setfield(L, -2, "busy");
  lua_pushnumber(L, (lua_Number)max_ns / 1e9);
  lua_setfield(L, -2, "max");
  lua_pushnumber(L, (lua_Number)turns);
  lua_setfield(L, -2, "turns");
  max_ns = 0;
  return 1;
}

static const luaL_Reg funcs[] = {{"loop_lag", l_loop_lag}, {NULL, NULL}};

void orch_looplag_lua_register(lua_State *L) {
  luaL_register(L, NULL, funcs);
}
