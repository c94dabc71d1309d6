/* harness.c: a libFuzzer target that hands every input to a Lua driver.
 *
 * The driver (fuzz/NAME.lua, compiled in as ORCH_FUZZ_DRIVER) runs once in
 * orch's own runtime (its loop, luv, cjson, orch.core and the embedded
 * modules, as in the daemon) and returns a function; that function is called
 * with each input as a string (a second function it may return gives a line
 * for the end of the run). A Lua error out of it, an error reported from
 * a callback (orch.core.on_error), ASan or UBSan is a finding: the process
 * aborts and libFuzzer saves the input.
 *
 * libFuzzer sees the C code's coverage by its instrumentation; the Lua
 * code's is given to it as extra 8-bit counters, one per (chunk, line)
 * bucket, bumped by a line hook (the JIT is off, so the hook sees every
 * line). */
#include <lauxlib.h>
#include <luajit.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "orch/runtime.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

void __sanitizer_cov_8bit_counters_init(uint8_t *start, uint8_t *stop);
void __sanitizer_cov_pcs_init(const uintptr_t *start, const uintptr_t *stop);

#define LUA_LINES (1 << 16)
static uint8_t lua_lines[LUA_LINES];
/* libFuzzer wants a (pc, flags) pair per counter; these pcs are made up */
static uintptr_t lua_pcs[2 * LUA_LINES];

__attribute__((constructor)) static void register_lua_lines(void) {
  for (uintptr_t i = 0; i < LUA_LINES; i++) lua_pcs[2 * i] = 0x10000 + i;
  __sanitizer_cov_8bit_counters_init(lua_lines, lua_lines + LUA_LINES);
  __sanitizer_cov_pcs_init(lua_pcs, lua_pcs + 2 * LUA_LINES);
}

static void on_line(lua_State *S, lua_Debug *ar) {
  if (!lua_getinfo(S, "S", ar)) return;
  /* chunk names are interned strings: their address names the chunk */
  uintptr_t h = (uintptr_t)ar->source * 31u + (uintptr_t)ar->currentline;
  h ^= h >> 16;
  lua_lines[h & (LUA_LINES - 1)]++;
}

static uv_loop_t loop;
static lua_State *L;
static int one_ref, summary_ref = LUA_NOREF;

/* At exit, the teardown of core/main.c: what is left then for LeakSanitizer
 * is a real leak, not the Lua heap of a state nobody closed. */
static void teardown(void) {
  if (summary_ref != LUA_NOREF) { /* the driver's own count, e.g. requests */
    lua_rawgeti(L, LUA_REGISTRYINDEX, summary_ref);
    if (lua_pcall(L, 0, 1, 0) == 0 && lua_isstring(L, -1))
      fprintf(stderr, "fuzz driver %s: %s\n", ORCH_FUZZ_DRIVER, lua_tostring(L, -1));
    lua_pop(L, 1);
  }
  if (orch_runtime_end(L)) uv_loop_close(&loop); /* else a request still runs: the loop stays */
}

static void die(const char *what) {
  fprintf(stderr, "fuzz driver %s: %s\n", ORCH_FUZZ_DRIVER, what ? what : "?");
  abort();
}

static int traceback(lua_State *S) {
  luaL_traceback(S, S, lua_tostring(S, 1), 1);
  return 1;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  signal(SIGPIPE, SIG_IGN); /* as orch does: a closed peer is an EPIPE */
  if (uv_loop_init(&loop) < 0) die("cannot initialise the loop");
  L = orch_runtime_new(&loop);
  if (!L) die("cannot create the Lua state");
  luaJIT_setmode(L, 0, LUAJIT_MODE_ENGINE | LUAJIT_MODE_OFF);
  lua_sethook(L, on_line, LUA_MASKLINE, 0);
  lua_pushcfunction(L, traceback);
  if (luaL_loadfile(L, ORCH_FUZZ_DRIVER) != 0) die(lua_tostring(L, -1));
  /* returns the function for one input, and optionally a summary function */
  if (lua_pcall(L, 0, 2, -2) != 0) die(lua_tostring(L, -1));
  if (lua_isfunction(L, -1)) summary_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  else lua_pop(L, 1);
  if (!lua_isfunction(L, -1)) die("does not return a function");
  one_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pop(L, 1);
  atexit(teardown);
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  lua_pushcfunction(L, traceback);
  lua_rawgeti(L, LUA_REGISTRYINDEX, one_ref);
  lua_pushlstring(L, (const char *)data, size);
  if (lua_pcall(L, 1, 0, -3) != 0) die(lua_tostring(L, -1));
  lua_pop(L, 1);
  return 0;
}
