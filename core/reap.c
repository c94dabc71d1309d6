/* reap.c: orphan reaping (as PID 1 or child subreaper) and process trees.
 *
 * Orphaned descendants of managed programs are re-parented to orch. They must
 * be reaped, but never with waitpid(-1): that would steal the exit status of
 * our own watched children and of libuv's uv_spawn children. So on SIGCHLD
 * the reaper lists our children from /proc and waits only for the ones that
 * nobody else is waiting for. */
#include "orch/proc.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

static uv_signal_t sigchld;
static int reaper_on;
static orch_reap_cb reap_cb;
static void *reap_data;

/* Appends the pids in one children file; raw open/read because `orch list`
 * does this for every managed process. */
static int read_children(const char *path, pid_t *out, int n, int cap) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return n; /* the thread went away */
  char buf[4096];
  int c = 0, in_num = 0;
  for (;;) {
    ssize_t r = read(fd, buf, sizeof buf);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    for (ssize_t i = 0; i < r; i++) {
      if (buf[i] >= '0' && buf[i] <= '9') {
        c = c * 10 + (buf[i] - '0');
        in_num = 1;
      } else if (in_num) {
        if (n < cap) out[n++] = c;
        c = in_num = 0;
      }
    }
  }
  if (in_num && n < cap) out[n++] = c;
  close(fd);
  return n;
}

/* Appends the pids listed in /proc/<pid>/task/<tid>/children for every thread
 * of pid. Returns the new count, or -errno if pid's task dir is unreadable. */
static int children_of(pid_t pid, pid_t *out, int n, int cap) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/task", (int)pid);
  DIR *d = opendir(path);
  if (!d) return -errno;
  struct dirent *e;
  while ((e = readdir(d))) {
    if (e->d_name[0] == '.') continue;
    char cpath[320];
    snprintf(cpath, sizeof cpath, "/proc/%d/task/%s/children", (int)pid,
             e->d_name);
    n = read_children(cpath, out, n, cap);
  }
  closedir(d);
  return n;
}

int orch_proc_children(pid_t pid, int nthreads, pid_t *out, int n, int cap) {
  if (nthreads != 1) return children_of(pid, out, n, cap);
  /* One thread: its children file is the process's; skip listing tasks. */
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/task/%d/children", (int)pid, (int)pid);
  return read_children(path, out, n, cap);
}

int orch_proc_descendants(pid_t pid, pid_t *out, int cap) {
  int n = children_of(pid, out, 0, cap);
  if (n < 0) return n;
  /* out doubles as the breadth-first queue */
  for (int i = 0; i < n; i++) {
    int m = children_of(out[i], out, n, cap);
    if (m >= 0) n = m;
  }
  return n;
}

struct pid_query {
  pid_t pid;
  int found;
};

static void find_process_handle(uv_handle_t *h, void *arg) {
  struct pid_query *q = arg;
  if (h->type == UV_PROCESS && ((uv_process_t *)h)->pid == q->pid) q->found = 1;
}

/* uv_spawn children are reaped by libuv's own SIGCHLD handling. */
static int is_libuv_child(uv_loop_t *loop, pid_t pid) {
  struct pid_query q = {pid, 0};
  uv_walk(loop, find_process_handle, &q);
  return q.found;
}

static void on_sigchld(uv_signal_t *h, int signum) {
  (void)signum;
  pid_t kids[1024];
  int n = children_of(getpid(), kids, 0, 1024);
  for (int i = 0; i < n; i++) {
    if (orch_proc_is_watched(kids[i]) || is_libuv_child(h->loop, kids[i]))
      continue;
    int st;
    while (waitpid(kids[i], &st, WNOHANG) < 0 && errno == EINTR) {
    }
  }
  if (reap_cb) reap_cb(reap_data);
}

int orch_reaper_start(uv_loop_t *loop, orch_reap_cb cb, void *data) {
  reap_cb = cb;
  reap_data = data;
  if (reaper_on) return 0;
  /* PID 1 reaps orphans by definition; anywhere else ask to become the
   * reaper of our own subtree, so that nothing an app forks escapes us. */
  if (getpid() != 1 && prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) < 0)
    return -errno;
  int rc = uv_signal_init(loop, &sigchld);
  if (rc < 0) return rc;
  rc = uv_signal_start(&sigchld, on_sigchld, SIGCHLD);
  if (rc < 0) {
    uv_close((uv_handle_t *)&sigchld, NULL);
    return rc;
  }
  uv_unref((uv_handle_t *)&sigchld); /* reaping alone does not keep orch up */
  reaper_on = 1;
  return 0;
}

void orch_reaper_stop(void) {
  if (!reaper_on) return;
  reaper_on = 0;
  reap_cb = NULL;
  uv_close((uv_handle_t *)&sigchld, NULL);
}
