/* heap.h: the allocator of orch's Lua state, which counts the bytes the
 * state holds and, while user Lua runs, refuses to go past a cap (the
 * allocation fails, LuaJIT raises "not enough memory" in the user's code,
 * and the daemon carries on). */
#ifndef ORCH_HEAP_H
#define ORCH_HEAP_H

#include <lua.h>
#include <stddef.h>

/* Total bytes user code may take the heap to (unless the daemon alone is
 * already near it: then ORCH_HEAP_HEADROOM more than it holds). */
#define ORCH_HEAP_CAP ((size_t)256 << 20)
#define ORCH_HEAP_HEADROOM ((size_t)32 << 20)

/* A new Lua state using the counting allocator, or NULL. */
lua_State *orch_heap_newstate(void);
/* Frees the state and its allocator's bookkeeping. */
void orch_heap_close(lua_State *L);
/* Turns the cap on (user code starts) or off. 0, or -EINVAL when L does not
 * use this allocator. */
int orch_heap_limit(lua_State *L, int on);
/* Bytes the state holds now, and its limit while capped (0 when off). */
int orch_heap_stats(lua_State *L, size_t *used, size_t *limit);
/* Returns malloc's free pages to the system; 1 if some were released. */
int orch_heap_trim(void);

#endif
