/* daemon.c: the pid-file lock, detached start, process title. */
#include "orch/daemon.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "orch/fds.h"
#include "orch/proc.h"
#include "orch/stats.h"

extern char **environ;

/* ---- pid file ---- */

int orch_pidfile_lock(const char *path, int *fd_out) {
  int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return -errno;
  /* flock, not fcntl locks: it belongs to the open file, so it lasts exactly
   * as long as the fd (and a fork that inherits nothing keeps nothing). */
  while (flock(fd, LOCK_EX | LOCK_NB) < 0) {
    if (errno == EINTR) continue;
    int err = errno;
    close(fd);
    return -err;
  }
  char buf[32];
  int n = snprintf(buf, sizeof buf, "%d\n", (int)getpid());
  ssize_t w = -1;
  if (ftruncate(fd, 0) == 0) {
    do w = pwrite(fd, buf, (size_t)n, 0);
    while (w < 0 && errno == EINTR);
  }
  if (w != n) {
    int err = w < 0 ? errno : EIO;
    close(fd);
    return -err;
  }
  *fd_out = fd;
  return 0;
}

int orch_pidfile_read(const char *path, pid_t *pid) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -errno;
  char buf[32];
  ssize_t n;
  do n = read(fd, buf, sizeof buf - 1);
  while (n < 0 && errno == EINTR);
  int err = errno;
  close(fd);
  if (n < 0) return -err;
  buf[n] = '\0';
  char *end;
  long v = strtol(buf, &end, 10);
  if (end == buf || v <= 0 || v > INT32_MAX || (*end && *end != '\n'))
    return -EINVAL;
  *pid = (pid_t)v;
  return 0;
}

/* ---- detached start ---- */

/* The daemon itself, between fork and exec: async-signal-safe calls only. */
static void detached_child(const orch_daemon_opts_t *o, int errfd, int devnull,
                           int logfd, int readyfd) {
  orch__child_reset_signals();
  /* The readiness pipe goes to fd o->ready_fd below: nothing that is still
   * needed may sit there (errfd, say, is written after the dup2). */
  if (readyfd >= 0) {
    int e = fcntl(errfd, F_DUPFD_CLOEXEC, o->ready_fd + 1);
    int r = fcntl(readyfd, F_DUPFD_CLOEXEC, o->ready_fd + 1);
    if (e < 0 || r < 0) orch__child_fail(e < 0 ? errfd : e, errno);
    errfd = e;
    readyfd = r;
  }
  if (setsid() < 0) orch__child_fail(errfd, errno);
  /* Sources above 2 first, so that no dup2 below overwrites one of them. */
  int in = fcntl(devnull, F_DUPFD_CLOEXEC, 3);
  int out = fcntl(logfd >= 0 ? logfd : devnull, F_DUPFD_CLOEXEC, 3);
  if (in < 0 || out < 0) orch__child_fail(errfd, errno);
  if (dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(out, 2) < 0)
    orch__child_fail(errfd, errno);
  if (chdir(o->cwd ? o->cwd : "/") < 0) orch__child_fail(errfd, errno);
  /* Whatever the CLI inherited without close-on-exec (a harness's pipe, say)
   * must not be held open by the daemon for its whole life. Best effort. */
  orch_fds_cloexec_from(3);
  /* dup2 clears close-on-exec: the one fd the daemon inherits */
  if (readyfd >= 0 && dup2(readyfd, o->ready_fd) < 0) orch__child_fail(errfd, errno);
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
  orch__child_fail(errfd, orch__child_exec(o->file, o->argv,
                                           o->envp ? o->envp : environ));
}

/* Double fork: the middle process forks the daemon and exits at once, so the
 * daemon is re-parented (to init or the nearest subreaper) and never becomes
 * a zombie of the CLI. Both write to one close-on-exec pipe: a value > 0 is a
 * child's errno (orch__child_fail), a value < 0 is minus the daemon's pid
 * (from the middle process). EOF: both are gone or exec'd. */
int orch_daemon_spawn(const orch_daemon_opts_t *o, pid_t *pid_out,
                      int *ready_out) {
  if (o->ready_fd >= 0 && (o->ready_fd < 3 || o->ready_fd > 1000)) return -EINVAL;
  int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
  if (devnull < 0) return -errno;
  int logfd = -1;
  int ep[2] = {-1, -1}, rp[2] = {-1, -1};
  int err = 0;
  if (o->log) {
    logfd = open(o->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (logfd < 0) err = errno;
  }
  if (!err && pipe2(ep, O_CLOEXEC) < 0) err = errno;
  if (!err && o->ready_fd >= 0 && pipe2(rp, O_CLOEXEC) < 0) err = errno;
  if (err) {
    int fds[] = {devnull, logfd, ep[0], ep[1]};
    for (size_t i = 0; i < sizeof fds / sizeof fds[0]; i++)
      if (fds[i] >= 0) close(fds[i]);
    return -err;
  }

  /* No handler of ours may run in the children: block everything around
   * fork; the daemon unblocks once its dispositions are back to default. */
  sigset_t old;
  orch__fork_block_signals(&old);
  pid_t mid = fork();
  if (mid == 0) {
    close(ep[0]);
    pid_t pid = fork();
    if (pid < 0) orch__child_fail(ep[1], errno);
    if (pid == 0) detached_child(o, ep[1], devnull, logfd, rp[1]);
    int msg = -(int)pid;
    ssize_t r;
    do r = write(ep[1], &msg, sizeof msg);
    while (r < 0 && errno == EINTR);
    _exit(0);
  }
  int fork_err = errno;
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  close(ep[1]);
  close(devnull);
  if (logfd >= 0) close(logfd);
  /* Only the daemon may hold the write end: EOF then means it is gone. */
  if (rp[1] >= 0) close(rp[1]);
  if (mid < 0) {
    close(ep[0]);
    if (rp[0] >= 0) close(rp[0]);
    return -fork_err;
  }

  pid_t pid = 0;
  int child_err = 0, v;
  for (;;) {
    ssize_t r = read(ep[0], &v, sizeof v);
    if (r < 0 && errno == EINTR) continue;
    if (r != (ssize_t)sizeof v) break; /* EOF (writes of 4 bytes are atomic) */
    if (v < 0) pid = -v;
    else child_err = v;
  }
  close(ep[0]);
  int st;
  while (waitpid(mid, &st, 0) < 0 && errno == EINTR) {
  }
  if (child_err || pid <= 0) {
    if (rp[0] >= 0) close(rp[0]);
    /* pid <= 0: the middle process died without a word */
    return child_err ? -child_err : -ECHILD;
  }
  *pid_out = pid;
  if (ready_out) *ready_out = rp[0];
  else if (rp[0] >= 0) close(rp[0]);
  return 0;
}

int orch_daemon_ready_wait(int fd, int timeout_ms) {
  struct timespec t0;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (;;) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    long left = timeout_ms - ((now.tv_sec - t0.tv_sec) * 1000 +
                              (now.tv_nsec - t0.tv_nsec) / 1000000);
    if (left <= 0) return -ETIMEDOUT;
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int n = poll(&p, 1, (int)left);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return -errno;
    if (n == 0) return -ETIMEDOUT;
    char c;
    ssize_t r = read(fd, &c, 1);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return -errno;
    return r == 1 ? 0x100 | (unsigned char)c : 0;
  }
}

/* ---- serialised starts ---- */

int orch_start_lock(const char *dir, int *fd_out) {
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return -errno;
  while (flock(fd, LOCK_EX) < 0) {
    if (errno == EINTR) continue;
    int err = errno;
    close(fd);
    return -err;
  }
  *fd_out = fd;
  return 0;
}

/* ---- process title ---- */

static char *argv_start, *argv_end; /* the original argv strings */
static char *title_area;            /* argv + environ strings, once ours */
static size_t title_cap;            /* bytes usable there, before a final NUL */

void orch_title_init(int argc, char **argv) {
  if (argc <= 0) return;
  argv_start = argv[0];
  argv_end = argv[argc - 1] + strlen(argv[argc - 1]) + 1;
}

/* Makes [arg_start, env_end) ours: copies every environment string that
 * lives there to the heap. The kernel shows a title that runs past argv's end
 * into that space as long as argv's last byte is not NUL. Checked against
 * /proc/self/stat so that nothing but the real argv/environ block (not, say,
 * valgrind's copy) is ever written. */
static int take_environ_space(void) {
  static const int which[] = {48, 49, 50, 51}; /* arg_start .. env_end */
  uint64_t v[4];
  if (!argv_start || orch_proc_stat_fields(0, which, 4, v) < 0) return -ENOSYS;
  if ((uintptr_t)v[0] != (uintptr_t)argv_start ||
      (uintptr_t)v[1] != (uintptr_t)argv_end || v[2] != v[1] || v[3] <= v[2])
    return -ENOSYS;
  char *env_start = (char *)(uintptr_t)v[2], *env_end = (char *)(uintptr_t)v[3];
  for (char **e = environ; *e; e++) {
    if (*e < env_start || *e >= env_end) continue; /* setenv'd: on the heap */
    char *copy = strdup(*e);
    if (!copy) return -ENOMEM;
    *e = copy; /* stays reachable through environ for the process's life */
  }
  title_area = argv_start;
  title_cap = (size_t)(env_end - argv_start) - 1;
  return 0;
}

int orch_title_set(const char *title) {
  int rc = uv_set_process_title(title); /* fits it into argv's space */
  if (rc < 0) return rc;
  char comm[16];
  snprintf(comm, sizeof comm, "%s", title);
  if (prctl(PR_SET_NAME, comm, 0, 0, 0) < 0) return -errno;
  size_t len = strlen(title);
  if (!title_area && argv_start && len >= (size_t)(argv_end - argv_start))
    take_environ_space(); /* if not possible, the title stays cut short */
  if (title_area) {
    size_t n = len < title_cap ? len : title_cap;
    memcpy(title_area, title, n);
    memset(title_area + n, 0, title_cap + 1 - n);
  }
  return 0;
}
