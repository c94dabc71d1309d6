/* fd_lua.c: orch.core's plain descriptors: socketpair, close, dup, isatty. */
#include <errno.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "orch/binding.h"

/* A connected AF_UNIX stream pair, both ends close-on-exec: the IPC channel
 * of a managed process (the child's end becomes its fd 3 through spawn's
 * `fds`, which clears close-on-exec there). */
static int l_socketpair(lua_State *L) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) return orch_lua_fail(L, -errno);
  lua_pushinteger(L, sv[0]);
  lua_pushinteger(L, sv[1]);
  return 2;
}

static int l_close(lua_State *L) {
  if (close((int)luaL_checkinteger(L, 1)) < 0) return orch_lua_fail(L, -errno);
  lua_pushboolean(L, 1);
  return 1;
}

/* A second descriptor for a socket that a luv handle will own (and close)
 * while orch keeps the first. */
static int l_dup(lua_State *L) {
  int fd = fcntl((int)luaL_checkinteger(L, 1), F_DUPFD_CLOEXEC, 3);
  if (fd < 0) return orch_lua_fail(L, -errno);
  lua_pushinteger(L, fd);
  return 1;
}

static int l_isatty(lua_State *L) {
  lua_pushboolean(L, isatty((int)luaL_checkinteger(L, 1)));
  return 1;
}

static const luaL_Reg funcs[] = {{"socketpair", l_socketpair},
                                 {"close", l_close},
                                 {"dup", l_dup},
                                 {"isatty", l_isatty},
                                 {NULL, NULL}};

void orch_fd_lua_register(lua_State *L) { luaL_register(L, NULL, funcs); }
