/* notify.c: a Unix datagram socket at NOTIFY_SOCKET (see notify.h), and
 * the sending side, for the daemon's own service manager (notify_send).
 *
 * Senders are identified by the kernel (SO_PASSCRED: every datagram comes
 * with the sender's pid), never by what they write, so a process can only
 * speak for itself. Lua polls the fd (luv) and drains it with notify_recv. */
#include "orch/notify.h"

#include <errno.h>
#include <lauxlib.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "orch/binding.h"
#include "orch/fdobj.h"
#include "orch/unixsock.h"

/* sd_notify messages are small: a few KEY=VALUE lines. Longer datagrams
 * are cut here (MSG_TRUNC tells). */
#define NOTIFY_MAX 4096

/* notify_socket(path) -> fd object (fdobj.h): bound, non-blocking, close-on-exec, mode 0600
 * whatever orch's umask (unixsock.h). */
static int l_notify_socket(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  int *slot = orch_fdobj_new(L);
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return orch_lua_fail(L, -errno);
  int one = 1;
  int rc = setsockopt(fd, SOL_SOCKET, SO_PASSCRED, &one, sizeof one) < 0 ? -errno : 0;
  if (rc == 0) rc = orch_unix_bind(fd, path, ORCH_UNIX_REPLACE | ORCH_UNIX_PRIVATE);
  if (rc < 0) {
    close(fd);
    return orch_lua_fail(L, rc);
  }
  *slot = fd;
  return 1;
}

/* notify_recv(f) -> pid, text | nil (nothing more to read) | nil, message.
 * Descriptors passed along (FDSTORE) are closed: orch keeps none. */
static int l_notify_recv(lua_State *L) {
  int fd = orch_fdobj_arg(L, 1);
  char buf[NOTIFY_MAX];
  union {
    struct cmsghdr align;
    char space[CMSG_SPACE(sizeof(struct ucred)) + CMSG_SPACE(sizeof(int) * 16)];
  } ctl;
  struct iovec iov = {buf, sizeof buf};
  struct msghdr mh;
  memset(&mh, 0, sizeof mh);
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  mh.msg_control = ctl.space;
  mh.msg_controllen = sizeof ctl.space;
  ssize_t n;
  do {
    n = recvmsg(fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
    return orch_lua_fail(L, -errno);
  }
  pid_t pid = 0;
  for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
    if (c->cmsg_level != SOL_SOCKET) continue;
    if (c->cmsg_type == SCM_CREDENTIALS) {
      struct ucred cred;
      memcpy(&cred, CMSG_DATA(c), sizeof cred);
      pid = cred.pid;
    } else if (c->cmsg_type == SCM_RIGHTS) {
      size_t nfds = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (size_t i = 0; i < nfds; i++) {
        int passed;
        memcpy(&passed, CMSG_DATA(c) + i * sizeof(int), sizeof passed);
        close(passed);
      }
    }
  }
  lua_pushinteger(L, pid);
  lua_pushlstring(L, buf, (size_t)n);
  return 2;
}

/* notify_send(address, text) -> true | nil, message: one datagram to the
 * NOTIFY_SOCKET a service manager gave orch (sd_notify's client side).
 * A leading '@' names an abstract socket. Never blocks: a manager whose
 * queue is full costs this message (EAGAIN), not the loop. A socket per
 * message: they are rare (STATUS is rate-limited, WATCHDOG a few a
 * minute), and a manager restarted meanwhile is found again. */
static int l_notify_send(lua_State *L) {
  size_t alen, tlen;
  const char *addr = luaL_checklstring(L, 1, &alen);
  const char *text = luaL_checklstring(L, 2, &tlen);
  struct sockaddr_un sa;
  memset(&sa, 0, sizeof sa);
  sa.sun_family = AF_UNIX;
  if (alen < 2 || alen >= sizeof sa.sun_path || (addr[0] != '/' && addr[0] != '@'))
    return orch_lua_fail(L, -EINVAL);
  memcpy(sa.sun_path, addr, alen);
  if (addr[0] == '@') sa.sun_path[0] = '\0'; /* abstract: the name is the bytes after NUL */
  socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + alen);
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return orch_lua_fail(L, -errno);
  ssize_t n;
  do {
    n = sendto(fd, text, tlen, MSG_DONTWAIT | MSG_NOSIGNAL, (struct sockaddr *)&sa, len);
  } while (n < 0 && errno == EINTR);
  int rc = n < 0 ? -errno : 0;
  close(fd);
  return orch_lua_ok(L, rc);
}

static const luaL_Reg funcs[] = {{"notify_socket", l_notify_socket},
                                 {"notify_recv", l_notify_recv},
                                 {"notify_send", l_notify_send},
                                 {NULL, NULL}};

void orch_notify_lua_register(lua_State *L) {
  luaL_register(L, NULL, funcs);
}
