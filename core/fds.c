/* fds.c: the descriptor budget (see fds.h). */
#include "orch/fds.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "orch/binding.h"

static struct rlimit child_limit; /* the soft limit orch started with */
static int limit_raised;

/* Calls fn(fd, arg) for every open fd >= first, read from /proc/self/fd
 * with raw getdents64: no malloc, so usable in a vforked child. Returns
 * -errno when /proc is not there. fn may close fds: closing shifts the
 * directory, so a pass that acted on some is followed by another. */
static int each_fd(int first, int (*fn)(int fd, void *arg), void *arg) {
  int dfd = open("/proc/self/fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) return -errno;
  char buf[4096] __attribute__((aligned(8)));
  for (int acted = 1; acted;) {
    acted = 0;
    if (lseek(dfd, 0, SEEK_SET) < 0) break;
    long n;
    while ((n = syscall(SYS_getdents64, dfd, buf, sizeof buf)) > 0) {
      for (long off = 0; off < n;) {
        struct dirent64 *e = (struct dirent64 *)(buf + off);
        off += e->d_reclen;
        int fd = 0;
        const char *c = e->d_name;
        if (*c < '0' || *c > '9') continue;
        for (; *c >= '0' && *c <= '9'; c++) fd = fd * 10 + (*c - '0');
        if (fd >= first && fd != dfd) acted |= fn(fd, arg);
      }
    }
  }
  close(dfd);
  return 0;
}

static int set_cloexec(int fd, void *arg) {
  (void)arg;
  int fl = fcntl(fd, F_GETFD);
  if (fl >= 0 && !(fl & FD_CLOEXEC)) fcntl(fd, F_SETFD, fl | FD_CLOEXEC);
  return 0; /* nothing moves */
}

int orch_fds_cloexec_from(int first) {
  /* CLOSE_RANGE_CLOEXEC: Linux 5.11; before that, one fcntl per open fd */
  if (close_range((unsigned)first, ~0U, CLOSE_RANGE_CLOEXEC) == 0) return 0;
  return each_fd(first, set_cloexec, NULL);
}

int orch_fds_raise_limit(void) {
  if (limit_raised) return 0;
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) < 0) return -errno;
  child_limit = rl;
  limit_raised = 1;
  if (rl.rlim_cur == rl.rlim_max) return 0;
  rl.rlim_cur = rl.rlim_max;
  if (setrlimit(RLIMIT_NOFILE, &rl) < 0) return -errno;
  return 0;
}

static int count_one(int fd, void *arg) {
  (void)fd;
  ++*(int *)arg;
  return 0;
}

int orch_fds_count(int *open_out, int *limit_out) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) < 0) return -errno;
  int n = 0;
  int rc = each_fd(0, count_one, &n);
  if (rc < 0) return rc;
  *open_out = n;
  *limit_out = rl.rlim_cur > 0x7fffffff ? 0x7fffffff : (int)rl.rlim_cur;
  return 0;
}

/* ---- child side ---- */

static int close_unless(int fd, void *arg) {
  if (fd == *(int *)arg) return 0;
  close(fd);
  return 1;
}

int orch__child_fds_close_from(int first, int keep) {
  unsigned f = (unsigned)first, k = (unsigned)keep;
  int rc = 0;
  if (keep < first) {
    rc = close_range(f, ~0U, 0);
  } else {
    if (k > f) rc = close_range(f, k - 1, 0);
    if (rc == 0) rc = close_range(k + 1, ~0U, 0);
  }
  if (rc == 0) return 0;
  if (errno != ENOSYS) return -errno;
  return each_fd(first, close_unless, &keep); /* kernels before 5.9 */
}

int orch__child_fds_restore_limit(void) {
  if (!limit_raised || setrlimit(RLIMIT_NOFILE, &child_limit) == 0) return 0;
  return -errno;
}

/* ---- Lua ---- */

static int l_raise_fd_limit(lua_State *L) {
  int rc = orch_fds_raise_limit();
  return orch_lua_ok(L, rc);
}

/* fd_count() -> open, limit | nil, message, code */
static int l_fd_count(lua_State *L) {
  int open_fds, limit;
  int rc = orch_fds_count(&open_fds, &limit);
  if (rc < 0) return orch_lua_fail(L, rc);
  lua_pushinteger(L, open_fds);
  lua_pushinteger(L, limit);
  return 2;
}

static const luaL_Reg funcs[] = {
    {"raise_fd_limit", l_raise_fd_limit}, {"fd_count", l_fd_count}, {NULL, NULL}};

void orch_fds_lua_register(lua_State *L) {
  luaL_register(L, NULL, funcs);
}
