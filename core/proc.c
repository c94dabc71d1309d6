/* proc.c: fork/exec, exit notification by pidfd, signalling. */
#include "orch/proc.h"

#include "orch/fds.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

/* The libuv handle comes first and handle->data stays NULL: callbacks find
 * their struct by cast, and luv's uv.walk skips handles whose data is NULL
 * (it would take ours for its own otherwise). Same in sink.c and ctl.c. */
struct orch_proc_s {
  uv_poll_t poll;
  pid_t pid;
  int pidfd;
  int exited;
  orch_proc_exit_cb cb;
  void *data;
  struct orch_proc_s *next; /* in its bucket of `watched` */
};

/* Every watched, not yet reaped process, by pid: the orphan reaper asks
 * about each child it finds, so this must not cost a walk. Chained; the
 * table doubles once it holds more than one process per bucket. */
static struct {
  orch_proc_t **b;
  size_t n, count; /* n buckets, a power of 2 */
} watched;

static size_t bucket_of(pid_t pid, size_t n) {
  return ((size_t)pid * 2654435761u) & (n - 1);
}

static int watched_grow(void) {
  size_t n = watched.n ? watched.n * 2 : 64;
  orch_proc_t **b = calloc(n, sizeof *b);
  if (!b) return -ENOMEM;
  for (size_t i = 0; i < watched.n; i++)
    for (orch_proc_t *q = watched.b[i], *next; q; q = next) {
      next = q->next;
      size_t k = bucket_of(q->pid, n);
      q->next = b[k];
      b[k] = q;
    }
  free(watched.b);
  watched.b = b;
  watched.n = n;
  return 0;
}

static int watched_add(orch_proc_t *p) {
  /* without memory to grow, longer chains: slower, still correct */
  if (watched.count >= watched.n && watched_grow() < 0 && !watched.n) return -ENOMEM;
  size_t k = bucket_of(p->pid, watched.n);
  p->next = watched.b[k];
  watched.b[k] = p;
  watched.count++;
  return 0;
}

static void watched_remove(orch_proc_t *p) {
  if (!watched.n) return;
  for (orch_proc_t **pp = &watched.b[bucket_of(p->pid, watched.n)]; *pp; pp = &(*pp)->next)
    if (*pp == p) {
      *pp = p->next;
      watched.count--;
      return;
    }
}

int orch_proc_is_watched(pid_t pid) {
  if (!watched.n) return 0;
  for (orch_proc_t *p = watched.b[bucket_of(pid, watched.n)]; p; p = p->next)
    if (p->pid == pid) return 1;
  return 0;
}

/* ---- the child side: only async-signal-safe calls from here to exec ---- */

void orch__child_fail_at(int errfd, int err, int step) {
  /* one write, so the parent reads both or neither (a pipe write of this
   * size is atomic) */
  int msg[2] = {err, step};
  ssize_t r;
  do r = write(errfd, msg, step ? sizeof msg : sizeof msg[0]);
  while (r < 0 && errno == EINTR);
  _exit(127);
}

void orch__child_fail(int errfd, int err) { orch__child_fail_at(errfd, err, 0); }

static const char *env_path(char *const *envp) {
  for (; envp && *envp; envp++)
    if (strncmp(*envp, "PATH=", 5) == 0) return *envp + 5;
  return "/usr/local/bin:/usr/bin:/bin";
}

/* execvpe without its shell fallback: a file that is not executable is an
 * error to report, never something to hand to /bin/sh. */
int orch__child_exec(const char *file, char *const *argv, char *const *envp) {
  if (strchr(file, '/')) {
    execve(file, argv, envp);
    return errno;
  }
  char buf[4096];
  size_t flen = strlen(file);
  int seen_eacces = 0;
  const char *p = env_path(envp);
  for (;;) {
    const char *end = strchr(p, ':');
    size_t dlen = end ? (size_t)(end - p) : strlen(p);
    if (dlen == 0) dlen = 1, p = "."; /* empty entry means the cwd */
    if (dlen + 1 + flen + 1 <= sizeof buf) {
      memcpy(buf, p, dlen);
      buf[dlen] = '/';
      memcpy(buf + dlen + 1, file, flen + 1);
      execve(buf, argv, envp);
      if (errno == EACCES) seen_eacces = 1;
      else if (errno != ENOENT && errno != ENOTDIR) return errno;
    }
    if (!end) break;
    p = end + 1;
  }
  return seen_eacces ? EACCES : ENOENT;
}

void orch__fork_block_signals(sigset_t *old) {
  sigset_t all;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, old);
}

void orch__child_reset_signals(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = SIG_DFL;
  for (int s = 1; s < NSIG; s++)
    if (s != SIGKILL && s != SIGSTOP) sigaction(s, &sa, NULL);
}

/* Decimal digits of n (by hand: no stdio between vfork and exec); returns
 * their length. buf holds at least 12 bytes. */
static int child_itoa(long n, char *buf) {
  char tmp[24];
  int len = 0, neg = n < 0;
  unsigned long u = neg ? 0UL - (unsigned long)n : (unsigned long)n;
  do tmp[len++] = (char)('0' + u % 10);
  while ((u /= 10) > 0 && len < 20);
  int out = 0;
  if (neg) buf[out++] = '-';
  while (len > 0) buf[out++] = tmp[--len];
  return out;
}

/* The app's credentials and limits (orch.runas), in an order that works:
 * what needs orch's privileges (a lower oom_score_adj or nice value, a
 * higher hard limit) before the ids drop them; groups before the gid
 * before the uid. Raw system calls for the ids: glibc's setuid & co. make
 * every thread of the process change too (its setxid broadcast), and a
 * vfork child shares the daemon's memory, where it would find the
 * daemon's threads. */
static void child_credentials(const orch_spawn_opts_t *o, int errfd) {
  if (o->set_oom_score_adj) {
    int fd = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
    if (fd < 0) orch__child_fail_at(errfd, errno, ORCH_SPAWN_STEP_OOM_SCORE_ADJ);
    char buf[16];
    int len = child_itoa(o->oom_score_adj, buf);
    if (write(fd, buf, (size_t)len) != len) orch__child_fail_at(errfd, errno, ORCH_SPAWN_STEP_OOM_SCORE_ADJ);
    close(fd);
  }
  if (o->set_nice && setpriority(PRIO_PROCESS, 0, o->nice) < 0)
    orch__child_fail_at(errfd, errno, ORCH_SPAWN_STEP_NICE);
  for (int i = 0; i < o->n_limits; i++) {
    struct rlimit rl = {o->limits[i].soft, o->limits[i].hard};
    if (setrlimit(o->limits[i].resource, &rl) < 0)
      orch__child_fail_at(errfd, errno, ORCH_SPAWN_STEP_LIMIT + i);
  }
  if (o->set_groups && syscall(SYS_setgroups, (size_t)o->n_groups, o->groups) < 0)
    orch__child_fail_at(errfd, errno, ORCH_SPAWN_STEP_GROUPS);
  if (o->set_gid && syscall(SYS_setresgid, o->gid, o->gid, o->gid) < 0)
    orch__child_fail_at(errfd, errno, ORCH_SPAWN_STEP_GID);
  if (o->set_uid && syscall(SYS_setresuid, o->uid, o->uid, o->uid) < 0)
    orch__child_fail_at(errfd, errno, ORCH_SPAWN_STEP_UID);
  if (o->set_umask) umask(o->umask);
}

/* procs_fd >= 0: the cgroup's cgroup.procs, where clone3 is refused (see
 * orch_spawn). */
static void child_run(const orch_spawn_opts_t *o, int errfd, int devnull, int procs_fd) {
  /* Default dispositions, then an empty mask: the parent blocked everything
   * around fork so that no orch handler runs in the child. */
  orch__child_reset_signals();
  sigset_t none;
  sigemptyset(&none);

  if (setpgid(0, 0) < 0) orch__child_fail(errfd, errno);
  /* Into its own cgroup first, before its fd may be clobbered below and
   * before it can fork: its whole tree is born there. */
  if (procs_fd >= 0 && write(procs_fd, "0", 1) != 1) orch__child_fail(errfd, errno);

  /* Move every source fd above the targets first, so that dup2 onto 0..N
   * never clobbers a source that happens to sit there. */
  int n = o->n_extra_fds;
  int src[3 + 64];
  if (n > 64) orch__child_fail(errfd, EMFILE);
  /* The error pipe too: it may sit where fd 3 + i goes. */
  int hi_err = fcntl(errfd, F_DUPFD_CLOEXEC, 3 + n);
  if (hi_err < 0) orch__child_fail(errfd, errno);
  errfd = hi_err;
  src[0] = devnull;
  src[1] = o->stdout_fd >= 0 ? o->stdout_fd : devnull;
  src[2] = o->stderr_fd >= 0 ? o->stderr_fd : devnull;
  for (int i = 0; i < n; i++) src[3 + i] = o->extra_fds[i];
  for (int i = 0; i < 3 + n; i++) {
    int hi = fcntl(src[i], F_DUPFD_CLOEXEC, 3 + n);
    if (hi < 0) orch__child_fail(errfd, errno);
    src[i] = hi;
  }
  for (int i = 0; i < 3 + n; i++)
    if (dup2(src[i], i) < 0) orch__child_fail(errfd, errno); /* dup2 clears CLOEXEC */
  /* Nothing else: not what orch inherited, not orch's own fds (those are
   * close-on-exec, but a vfork child must not rely on every opener). */
  int rc = orch__child_fds_close_from(3 + n, errfd);
  if (rc == 0) rc = orch__child_fds_restore_limit();
  if (rc < 0) orch__child_fail(errfd, -rc);
  child_credentials(o, errfd);

  /* as the app's user: a directory it may not enter is its error */
  if (o->cwd && chdir(o->cwd) < 0) orch__child_fail_at(errfd, errno, ORCH_SPAWN_STEP_CWD);
  if (o->pid_env) {
    /* by hand: no stdio between vfork and exec */
    char *d = o->pid_env + 11; /* after "LISTEN_PID=" */
    d[child_itoa(getpid(), d)] = '\0';
  }
  sigprocmask(SIG_SETMASK, &none, NULL);
  orch__child_fail(errfd, orch__child_exec(o->file, o->argv, o->envp));
}

/* ---- the parent side ---- */

static int devnull_fd(void) {
  static int fd = -1;
  if (fd < 0) fd = open("/dev/null", O_RDWR | O_CLOEXEC);
  return fd;
}

/* A child born in a cgroup (clone3 CLONE_INTO_CGROUP, Linux 5.7). Moving a
 * process there afterwards (a write to cgroup.procs) takes the kernel's
 * cgroup_threadgroup_rwsem for writing, which waits for an RCU grace
 * period: about 10 ms, during which a vfork parent (the loop) waits too
 * (docs/benchmarks.md, "Process trees"). */
#if (defined(__x86_64__) || defined(__aarch64__)) && !defined(__SANITIZE_ADDRESS__)
/* clone3 as vfork is (CLONE_VM | CLONE_VFORK, no stack of its own: the
 * child runs on ours until it execs), as in orch_spawn, and for the same
 * reason: no copy of orch's page tables, whose cost comes back as a page
 * fault on each page orch writes afterwards (the GC writes them all: 125
 * faults per spawn). It returns twice, like vfork; -errno on failure. In
 * assembly because on x86_64 the return address sits on the stack that the
 * child shares and overwrites with its first call: it is kept in a
 * register, and the child jumps back instead of returning, as glibc's
 * vfork does. On aarch64 it is in a register already. */
long orch__clone3_vfork(struct clone_args *args, size_t size) __attribute__((returns_twice));
#if defined(__x86_64__)
__asm__(".text\n"
        ".globl orch__clone3_vfork\n"
        ".hidden orch__clone3_vfork\n"
        ".type orch__clone3_vfork, @function\n"
        "orch__clone3_vfork:\n"
        "  popq %rdx\n"
        "  movl $435, %eax\n" /* SYS_clone3 */
        "  syscall\n"
        "  testq %rax, %rax\n"
        "  jz 1f\n"
        "  pushq %rdx\n"
        "  ret\n"
        "1:\n"
        "  jmp *%rdx\n"
        ".size orch__clone3_vfork, .-orch__clone3_vfork\n");
#else
__asm__(".text\n"
        ".globl orch__clone3_vfork\n"
        ".hidden orch__clone3_vfork\n"
        ".type orch__clone3_vfork, %function\n"
        "orch__clone3_vfork:\n"
        "  mov x8, #435\n" /* SYS_clone3 */
        "  svc #0\n"
        "  ret\n"
        ".size orch__clone3_vfork, .-orch__clone3_vfork\n");
#endif
#define CLONE_SHARES_VM CLONE_VM
#else
/* Elsewhere, and under ASan (whose vfork interceptor cleans the stack the
 * child used; this one would not): without CLONE_VM, the child has a copy
 * of orch's memory, as after fork, and returns from here like fork's
 * child. CLONE_VFORK: the parent waits until the exec, as with vfork. */
static long orch__clone3_vfork(struct clone_args *args, size_t size) {
  long r = syscall(SYS_clone3, args, size);
  return r < 0 ? -errno : r;
}
#define CLONE_SHARES_VM 0
#endif

/* clone3 answered ENOSYS once (a seccomp filter, as container runtimes
 * install): every later child moves itself in through cgroup.procs. */
static int clone3_refused;

int orch_spawn(const orch_spawn_opts_t *o, pid_t *pid_out) {
  int devnull = devnull_fd();
  if (devnull < 0) return -errno;
  int procs_fd = -1;
  if (o->cgroup_fd > 0 && clone3_refused) {
    procs_fd = openat(o->cgroup_fd, "cgroup.procs", O_WRONLY | O_CLOEXEC | O_NOCTTY);
    if (procs_fd < 0) return -errno;
  }
  int ep[2];
  if (pipe2(ep, O_CLOEXEC) < 0) {
    int err = errno;
    if (procs_fd >= 0) close(procs_fd);
    return -err;
  }

  struct clone_args ca;
  memset(&ca, 0, sizeof ca);
  ca.flags = CLONE_SHARES_VM | CLONE_VFORK | CLONE_INTO_CGROUP;
  ca.exit_signal = SIGCHLD;
  ca.cgroup = (uint64_t)o->cgroup_fd;
  int into = o->cgroup_fd > 0 && procs_fd < 0;

  sigset_t old;
  orch__fork_block_signals(&old);
  /* vfork: no copy of orch's page tables, the parent waits until the exec
   * anyway. Safe here because the child only makes system calls on its own
   * stack frame and never returns: it execs or _exits. */
  long forked = into ? orch__clone3_vfork(&ca, sizeof ca) : vfork();
  if (forked == 0) {
    close(ep[0]);
    child_run(o, ep[1], devnull, procs_fd);
  }
  int fork_err = into ? (int)-forked : errno;
  pid_t pid = forked < 0 ? -1 : (pid_t)forked;
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  close(ep[1]);
  if (procs_fd >= 0) close(procs_fd);
  if (pid < 0) {
    close(ep[0]);
    if (fork_err == ENOSYS && o->cgroup_fd > 0 && !clone3_refused) {
      clone3_refused = 1;
      return orch_spawn(o, pid_out);
    }
    return -fork_err;
  }

  /* EOF means exec succeeded (the pipe was close-on-exec); four bytes are the
   * child's errno (eight: and the setup step that failed), after which it
   * exits 127 at once and is reaped here. */
  int msg[2] = {0, 0};
  ssize_t r;
  do r = read(ep[0], msg, sizeof msg);
  while (r < 0 && errno == EINTR);
  close(ep[0]);
  if (r >= (ssize_t)sizeof msg[0]) {
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    if (o->failed_step) *o->failed_step = r == (ssize_t)sizeof msg ? msg[1] : ORCH_SPAWN_STEP_EXEC;
    return -msg[0];
  }
  *pid_out = pid;
  return 0;
}

static void proc_reap(orch_proc_t *p) {
  int st, code = -1, sig = 0;
  pid_t r;
  do r = waitpid(p->pid, &st, WNOHANG);
  while (r < 0 && errno == EINTR);
  if (r == 0) return; /* pidfd readable only on exit; nothing to do yet */
  if (r > 0) {
    if (WIFEXITED(st)) code = WEXITSTATUS(st);
    else if (WIFSIGNALED(st)) sig = WTERMSIG(st);
  }
  /* r < 0 (ECHILD): someone reaped it behind our back; report an unknown exit
   * rather than never reporting one. */
  p->exited = 1;
  watched_remove(p);
  uv_poll_stop(&p->poll);
  orch__reaper_resume();
  if (p->cb) p->cb(p, code, sig);
}

static void on_pidfd(uv_poll_t *h, int status, int events) {
  (void)status;
  (void)events;
  proc_reap((orch_proc_t *)h);
}

static void on_proc_closed(uv_handle_t *h) {
  orch_proc_t *p = (orch_proc_t *)h;
  if (p->pidfd >= 0) close(p->pidfd);
  free(p);
}

int orch_proc_watch(uv_loop_t *loop, pid_t pid, orch_proc_exit_cb cb,
                    void *data, orch_proc_t **out) {
  orch_proc_t *p = calloc(1, sizeof *p);
  if (!p) return -ENOMEM;
  p->pid = pid;
  p->cb = cb;
  p->data = data;
  p->pidfd = pidfd_open(pid, 0); /* O_CLOEXEC by definition */
  if (p->pidfd < 0) {
    int err = errno;
    free(p);
    return -err;
  }
  int rc = uv_poll_init(loop, &p->poll, p->pidfd);
  if (rc < 0) {
    close(p->pidfd);
    free(p);
    return rc;
  }
  rc = uv_poll_start(&p->poll, UV_READABLE, on_pidfd);
  if (rc == 0) rc = watched_add(p);
  if (rc < 0) {
    p->exited = 1; /* not in the table */
    uv_close((uv_handle_t *)&p->poll, on_proc_closed);
    return rc;
  }
  *out = p;
  return 0;
}

void *orch_proc_data(const orch_proc_t *p) { return p->data; }

int orch_proc_signal(orch_proc_t *p, int sig) {
  if (p->exited) return -ESRCH;
  return pidfd_send_signal(p->pidfd, sig, NULL, 0) < 0 ? -errno : 0;
}

void orch_proc_release(orch_proc_t *p) {
  p->cb = NULL;
  if (!p->exited) {
    watched_remove(p);
    orch__reaper_resume(); /* now an orphan to reap, if it is a zombie */
  }
  uv_close((uv_handle_t *)&p->poll, on_proc_closed);
}

int orch_pgroup_alive(pid_t pgid) {
  if (pgid <= 1) return 0;
  if (kill(-pgid, 0) == 0) return 1;
  return errno == EPERM ? -EPERM : 0;
}
