/* runtime.h: the LuaJIT state: standard libraries, luv on orch's loop,
 * cjson, orch.core and the Lua modules embedded in the binary. */
#ifndef ORCH_RUNTIME_H
#define ORCH_RUNTIME_H

#include <lua.h>
#include <uv.h>

lua_State *orch_runtime_new(uv_loop_t *loop);

/* orch's exit: closes every handle on the loop through its owner, the Lua
 * state among them, and runs the loop until they are closed (then the
 * caller closes the loop): 1. 0 when a request on libuv's thread pool
 * never finished: the caller must end with _exit(), since exit() runs
 * libuv's clean-up, which waits for the pool's threads. */
int orch_runtime_end(lua_State *L);

/* lua_pcall with a traceback; on error reports it (see orch.core.on_error)
 * and returns the negative status, else the number of results (luv's
 * callback contract, so luv callbacks share it). */
int orch_runtime_pcall(lua_State *L, int nargs, int nresults, int flags);

/* Fetches the loop stored in L's registry. */
uv_loop_t *orch_runtime_loop(lua_State *L);
/* Unmaps the pages of the Lua bytecode compiled into orch (already copied
 * into the Lua heap by every require): 0 or a negative errno. */
int orch_runtime_drop_bytecode(void);

int luaopen_orch_core(lua_State *L);

#endif
