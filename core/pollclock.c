/* pollclock.c: when the loop's latest poll began, whether it could wait at
 * all, and when it returned, for the run time of an exit the supervisor
 * reports (lua/orch/pacing.lua, S:_run_time). A prepare handle runs just
 * before each poll, a check handle just after it: once per loop turn, which
 * under round-robin load is once per connection or more. Lua callbacks there
 * (as pacing.lua had) cost a few µs of every turn (two pcalls, an hrtime,
 * luv's dispatch; docs/benchmarks.md, "Round-robin: the floor per
 * connection"); these two clock reads cost next to nothing, and Lua reads the
 * figures only when a process exits. Both handles are unreferenced: they
 * never keep orch running. */
#include <stdint.h>

#include "orch/binding.h"
#include "orch/owners.h"
#include "orch/runtime.h"

static uv_prepare_t prep;
static uv_check_t check;
static int started, polled, returned; /* a poll began, one returned */
static uint64_t began_ns;  /* uv_hrtime() as the poll began */
static int nowait;         /* that poll could not wait: launches were queued */
static int launches_queued; /* poll_clock_nowait(): Lua's launcher (an idle handle) is active */
static uint64_t returned_ms; /* uv_now() as it returned: the loop's time, not advanced by callbacks */

static void on_prepare(uv_prepare_t *h) {
  (void)h;
  began_ns = uv_hrtime();
  /* Not uv_backend_timeout(): it answers 0 whenever handles started since
   * the last poll wait for their epoll_ctl, which the poll then makes and
   * waits after all; an exit it reported would have been timed from the
   * previous turn (events_spec's 'shows a crash's exit...' saw 30 ms for a
   * process of 200). */
  nowait = launches_queued;
  polled = 1;
}

static void on_check(uv_check_t *h) {
  returned_ms = uv_now(h->loop);
  returned = 1;
}

static void pollclock_stop(void) {
  if (!started) return;
  started = 0;
  uv_close((uv_handle_t *)&prep, NULL);
  uv_close((uv_handle_t *)&check, NULL);
}

static int pollclock_start(uv_loop_t *loop) {
  if (started) return 0;
  int rc = uv_prepare_init(loop, &prep);
  if (rc < 0) return rc;
  rc = uv_check_init(loop, &check);
  if (rc < 0) {
    uv_close((uv_handle_t *)&prep, NULL);
    return rc;
  }
  if ((rc = uv_prepare_start(&prep, on_prepare)) < 0 || (rc = uv_check_start(&check, on_check)) < 0) {
    uv_close((uv_handle_t *)&prep, NULL);
    uv_close((uv_handle_t *)&check, NULL);
    return rc;
  }
  uv_unref((uv_handle_t *)&prep);
  uv_unref((uv_handle_t *)&check);
  started = 1;
  static orch_owner_t owner = {"the poll clock", pollclock_stop, NULL, 0};
  orch_owner_add(&owner);
  return 0;
}

/* poll_clock() -> began (ms, hrtime's clock), nowait (boolean), returned (ms,
 * uv.now()'s clock); started on the first call, so until a poll began nil
 * (and returned nil until one returned). nil, message, code when it cannot
 * start. */
static int l_poll_clock(lua_State *L) {
  int rc = pollclock_start(orch_runtime_loop(L));
  if (rc < 0) return orch_lua_fail(L, rc);
  if (!polled) {
    lua_pushnil(L);
    lua_pushboolean(L, 0);
    lua_pushnil(L);
    return 3;
  }
  lua_pushnumber(L, (lua_Number)began_ns / 1e6);
  lua_pushboolean(L, nowait);
  if (returned) lua_pushnumber(L, (lua_Number)returned_ms);
  else lua_pushnil(L);
  return 3;
}

/* poll_clock_nowait(queued): whether launches are queued (orch.pacing's idle
 * handle runs), which keeps the next polls from waiting. */
static int l_poll_clock_nowait(lua_State *L) {
  launches_queued = lua_toboolean(L, 1);
  return 0;
}

static const luaL_Reg funcs[] = {{"poll_clock", l_poll_clock}, {"poll_clock_nowait", l_poll_clock_nowait}, {NULL, NULL}};

void orch_pollclock_lua_register(lua_State *L) {
  luaL_register(L, NULL, funcs);
}
