/* fd_lua.c: orch.core's descriptors that are not sockets bound for an app:
 * the IPC channel's socketpair, duplicates, isatty. What is made here comes
 * back as fd objects (fdobj.h). */
#include <errno.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "orch/binding.h"
#include "orch/fdobj.h"

/* A connected AF_UNIX stream pair, both ends close-on-exec, as two fd
 * objects: the IPC channel of a managed process (the child's end becomes
 * its fd 3 through spawn's `fds`, which clears close-on-exec there). */
static int l_socketpair(lua_State *L) {
  int *ours = orch_fdobj_new(L), *theirs = orch_fdobj_new(L);
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) return orch_lua_fail(L, -errno);
  *ours = sv[0];
  *theirs = sv[1];
  return 2;
}

/* dup(f) -> fd object: a second descriptor for a socket (an fd object or a
 * number), which a luv handle will own (and close) while the first stays. */
static int l_dup(lua_State *L) {
  int old = orch_fdobj_arg(L, 1);
  int *slot = orch_fdobj_new(L);
  int fd = fcntl(old, F_DUPFD_CLOEXEC, 3);
  if (fd < 0) return orch_lua_fail(L, -errno);
  *slot = fd;
  return 1;
}

static int l_isatty(lua_State *L) {
  lua_pushboolean(L, isatty((int)luaL_checkinteger(L, 1)));
  return 1;
}

static const luaL_Reg funcs[] = {
    {"socketpair", l_socketpair}, {"dup", l_dup}, {"isatty", l_isatty}, {NULL, NULL}};

void orch_fd_lua_register(lua_State *L) { luaL_register(L, NULL, funcs); }
