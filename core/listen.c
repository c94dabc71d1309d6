/* listen.c: listening sockets held by the daemon (see listen.h). */
#include "orch/listen.h"

#include <arpa/inet.h>
#include <errno.h>
#include <lauxlib.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "orch/binding.h"
#include "orch/fdobj.h"
#include "orch/unixsock.h"

static int bind_listen(int fd, const struct sockaddr *sa, socklen_t len, int backlog) {
  if (bind(fd, sa, len) < 0 || listen(fd, backlog) < 0) {
    int err = errno;
    close(fd);
    return -err;
  }
  return fd;
}

int orch_listen_tcp(const char *host, int port, int backlog) {
  struct sockaddr_storage ss;
  memset(&ss, 0, sizeof ss);
  socklen_t len;
  struct sockaddr_in *in4 = (struct sockaddr_in *)&ss;
  struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
  if (port < 0 || port > 65535) return -EINVAL;
  if (inet_pton(AF_INET, host, &in4->sin_addr) == 1) {
    in4->sin_family = AF_INET;
    in4->sin_port = htons((uint16_t)port);
    len = sizeof *in4;
  } else if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons((uint16_t)port);
    len = sizeof *in6;
  } else {
    return -EINVAL; /* names are not looked up: the address is the config */
  }
  int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
  int one = 1;
  /* a restarted daemon must be able to bind again while old connections
   * sit in TIME_WAIT */
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0) {
    int err = errno;
    close(fd);
    return -err;
  }
  return bind_listen(fd, (struct sockaddr *)&ss, len, backlog);
}

int orch_listen_unix(const char *path, int backlog, int replace) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
  int rc = orch_unix_bind(fd, path, replace ? ORCH_UNIX_REPLACE : 0);
  if (rc == 0 && listen(fd, backlog) < 0) rc = -errno;
  if (rc < 0) {
    close(fd);
    return rc;
  }
  return fd;
}

/* listen_tcp(host, port[, backlog]) -> fd object (fdobj.h) */
static int l_listen_tcp(lua_State *L) {
  const char *host = luaL_checkstring(L, 1);
  int port = (int)luaL_checkinteger(L, 2), backlog = (int)luaL_optinteger(L, 3, 511);
  int *slot = orch_fdobj_new(L);
  int fd = orch_listen_tcp(host, port, backlog);
  if (fd < 0) return orch_lua_fail(L, fd);
  *slot = fd;
  return 1;
}

/* listen_unix(path[, backlog[, keep]]) -> fd object: keep: never replace an existing
 * socket file (a cluster worker's request, not the app's configuration). */
static int l_listen_unix(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  int backlog = (int)luaL_optinteger(L, 2, 511), replace = !lua_toboolean(L, 3);
  int *slot = orch_fdobj_new(L);
  int fd = orch_listen_unix(path, backlog, replace);
  if (fd < 0) return orch_lua_fail(L, fd);
  *slot = fd;
  return 1;
}

/* The port a socket (fd object or number) is bound to (for port 0: the
 * kernel's choice). */
static int l_sockport(lua_State *L) {
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  if (getsockname(orch_fdobj_arg(L, 1), (struct sockaddr *)&ss, &len) < 0)
    return orch_lua_fail(L, -errno);
  int port = ss.ss_family == AF_INET ? ntohs(((struct sockaddr_in *)&ss)->sin_port)
             : ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                                        : 0;
  lua_pushinteger(L, port);
  return 1;
}

static const luaL_Reg funcs[] = {
    {"listen_tcp", l_listen_tcp}, {"listen_unix", l_listen_unix}, {"sockport", l_sockport},
    {NULL, NULL}};

void orch_listen_lua_register(lua_State *L) {
  luaL_register(L, NULL, funcs);
}
