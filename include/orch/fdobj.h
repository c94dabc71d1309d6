/* fdobj.h: a kernel descriptor handed to Lua (a listening socket, a channel
 * end, the notify socket): a userdata that owns it, never a bare integer a
 * caller must remember to close. Its methods:
 *   f:fd()      the number (spawn's fd map, luv's poll), nil once closed
 *   f:close()   closes it; again: nothing (true either way)
 *   f:release() the number, and the ownership with it: for luv's
 *               handle:open(), which closes the descriptor itself from then
 *   __gc closes what is still owned; __tostring "orch.fd 7" / "orch.fd (closed)".
 * The object is made before the descriptor (orch_fdobj_new), so no error
 * can come between the descriptor's creation and its owner. */
#ifndef ORCH_FDOBJ_H
#define ORCH_FDOBJ_H

#include <lua.h>

#define ORCH_FDOBJ_MT "orch.fd"

/* Pushes a new fd object that owns nothing yet and returns its slot: store
 * the descriptor there as soon as it exists (a negative value: nothing). */
int *orch_fdobj_new(lua_State *L);

/* The descriptor at idx: an fd object's or a number's (a descriptor orch
 * did not hand out: 0-2, one inherited); -EBADF for a closed or released
 * fd object, -EINVAL for anything else. */
int orch_fdobj_to(lua_State *L, int idx);

/* The descriptor an argument names: an fd object's (an argument error once
 * it is closed) or a number (a descriptor orch did not hand out: 0-2, one
 * inherited). */
int orch_fdobj_arg(lua_State *L, int idx);

/* orch_fdobj_arg, and the descriptor becomes the caller's: an fd object
 * lets go of it (for a binding that closes what it is given). */
int orch_fdobj_take(lua_State *L, int idx);

#endif
