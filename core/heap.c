/* heap.c: a counting allocator for the Lua state, with a cap for user code. */
#include "orch/heap.h"

#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct {
  size_t used;
  size_t limit; /* 0: no cap */
} orch_heap_t;

static void *heap_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  orch_heap_t *h = ud;
  if (!ptr) osize = 0; /* a new block: osize may hold a type tag */
  if (nsize == 0) {
    free(ptr);
    h->used -= osize;
    return NULL;
  }
  if (h->limit && nsize > osize && h->used + (nsize - osize) > h->limit)
    return NULL; /* LuaJIT raises LUA_ERRMEM */
  void *p = realloc(ptr, nsize);
  if (!p) return NULL;
  h->used = h->used - osize + nsize;
  return p;
}

static int panic(lua_State *L) {
  const char *msg = lua_tostring(L, -1);
  fprintf(stderr, "PANIC: unprotected error in call to Lua API (%s)\n", msg ? msg : "?");
  return 0;
}

lua_State *orch_heap_newstate(void) {
  orch_heap_t *h = calloc(1, sizeof *h);
  if (!h) return NULL;
  lua_State *L = lua_newstate(heap_alloc, h);
  if (!L) {
    free(h);
    return NULL;
  }
  lua_atpanic(L, panic);
  return L;
}

static orch_heap_t *heap_of(lua_State *L) {
  void *ud = NULL;
  return lua_getallocf(L, &ud) == heap_alloc ? ud : NULL;
}

void orch_heap_close(lua_State *L) {
  orch_heap_t *h = heap_of(L);
  lua_close(L);
  free(h);
}

int orch_heap_limit(lua_State *L, int on) {
  orch_heap_t *h = heap_of(L);
  if (!h) return -EINVAL;
  if (!on) {
    h->limit = 0;
  } else {
    size_t floor = h->used + ORCH_HEAP_HEADROOM;
    h->limit = floor > ORCH_HEAP_CAP ? floor : ORCH_HEAP_CAP;
  }
  return 0;
}

int orch_heap_stats(lua_State *L, size_t *used, size_t *limit) {
  orch_heap_t *h = heap_of(L);
  if (!h) return -EINVAL;
  *used = h->used;
  *limit = h->limit;
  return 0;
}

/* The Lua heap lives in malloc's arena, where what a burst of work freed
 * stays mapped (glibc gives back only the top of the heap by itself):
 * malloc_trim(0) returns every free page. 1 if some memory was released. */
int orch_heap_trim(void) { return malloc_trim(0); }
