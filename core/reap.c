/* reap.c: orphan reaping (as PID 1 or child subreaper) and process trees.
 *
 * Orphaned descendants of managed programs are re-parented to orch. They must
 * be reaped, but never with waitpid(-1): that would steal the exit status of
 * our own watched children and of libuv's uv_spawn children. So on SIGCHLD
 * the reaper peeks at a zombie (waitid with WNOWAIT, which reaps nothing) and
 * reaps it by pid if nobody else waits for it. waitid keeps showing the same
 * zombie until it is reaped, so one that is someone else's hides the rest:
 * - one of proc.c's watched processes: its pidfd watcher reaps it soon and
 *   then resumes the reaper (orch__reaper_resume), so stopping 1000 processes
 *   costs O(1) per exit. (Listing every child instead, as this file did,
 *   made a stop of N processes cost O(N) per SIGCHLD, O(N^2) in all.)
 * - one of libuv's uv_spawn children, which libuv reaps in its own SIGCHLD
 *   handler without telling us: then every child of ours is listed from
 *   /proc and those nobody waits for are reaped; O(children) per exit of such
 *   a child, which orch itself never starts.
 * A batch costs O(zombies reaped) plus one walk of libuv's handles, never a
 * product of them, and has no cap. The Lua callback runs only after a batch
 * that reaped something (a process group may be empty now). */
#include "orch/proc.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "orch/owners.h"

static uv_signal_t sigchld;
static uv_check_t resume; /* a batch after this loop turn's poll phase */
static int reaper_on;
static orch_reap_cb reap_cb;
static void *reap_data;
static orch_reap_stats_t stats;

/* A list of pids: bounded (cap) for callers with a fixed array, or grown
 * on the heap (grow) for the reaper, which must see every child. */
typedef struct {
  pid_t *v;
  int n, cap, grow;
  int short_of_memory; /* a grown list that could not hold every pid */
} pid_list_t;

static void pid_list_push(pid_list_t *l, pid_t pid) {
  if (l->n == l->cap) {
    if (!l->grow) return;
    int cap = l->cap ? l->cap * 2 : 256;
    pid_t *v = realloc(l->v, (size_t)cap * sizeof *v);
    if (!v) {
      l->short_of_memory = 1;
      return;
    }
    l->v = v;
    l->cap = cap;
  }
  l->v[l->n++] = pid;
}

/* Appends the pids in one children file; raw open/read because `orch list`
 * does this for every managed process. */
static void read_children(const char *path, pid_list_t *l) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return; /* the thread went away */
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
        pid_list_push(l, c);
        c = in_num = 0;
      }
    }
  }
  if (in_num) pid_list_push(l, c);
  close(fd);
}

/* Appends the pids listed in /proc/<pid>/task/<tid>/children for every thread
 * of pid. 0, or -errno if pid's task dir is unreadable. */
static int list_children(pid_t pid, pid_list_t *l) {
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
    read_children(cpath, l);
  }
  closedir(d);
  return 0;
}

static int children_of(pid_t pid, pid_t *out, int n, int cap) {
  pid_list_t l = {out, n, cap, 0, 0};
  int rc = list_children(pid, &l);
  return rc < 0 ? rc : l.n;
}

int orch_proc_children(pid_t pid, int nthreads, pid_t *out, int n, int cap) {
  if (nthreads != 1) return children_of(pid, out, n, cap);
  /* One thread: its children file is the process's; skip listing tasks. */
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/task/%d/children", (int)pid, (int)pid);
  pid_list_t l = {out, n, cap, 0, 0};
  read_children(path, &l);
  return l.n;
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

/* One SIGCHLD batch: libuv's uv_spawn children (reaped by libuv itself),
 * collected on first need by one walk of the loop's handles, sorted. */
typedef struct {
  uv_loop_t *loop;
  pid_list_t libuv;
  int collected;
} batch_t;

static void collect_process(uv_handle_t *h, void *arg) {
  if (h->type == UV_PROCESS) pid_list_push(arg, ((uv_process_t *)h)->pid);
}

static int cmp_pid(const void *a, const void *b) {
  pid_t x = *(const pid_t *)a, y = *(const pid_t *)b;
  return (x > y) - (x < y);
}

static int nobody_waits_for(batch_t *b, pid_t pid) {
  if (orch_proc_is_watched(pid)) return 0;
  if (!b->collected) {
    uv_walk(b->loop, collect_process, &b->libuv);
    if (b->libuv.n > 1) qsort(b->libuv.v, (size_t)b->libuv.n, sizeof(pid_t), cmp_pid);
    b->collected = 1;
  }
  /* A list cut short proves nothing: then leave every child alone (the
   * next SIGCHLD tries again). */
  if (b->libuv.short_of_memory) return 0;
  return b->libuv.n == 0 || !bsearch(&pid, b->libuv.v, (size_t)b->libuv.n, sizeof(pid_t), cmp_pid);
}

/* 1 if pid was reaped. */
static int reap(pid_t pid) {
  int st;
  pid_t r;
  do r = waitpid(pid, &st, WNOHANG);
  while (r < 0 && errno == EINTR);
  return r == pid;
}

/* The exited child waitid reports next, without reaping it; 0 if none. */
static pid_t peek_zombie(void) {
  siginfo_t si;
  for (;;) {
    memset(&si, 0, sizeof si);
    if (waitid(P_ALL, 0, &si, WEXITED | WNOHANG | WNOWAIT) == 0) return si.si_pid;
    if (errno != EINTR) return 0; /* ECHILD: no children at all */
  }
}

static void reap_batch(uv_loop_t *loop) {
  batch_t b = {loop, {NULL, 0, 0, 1, 0}, 0};
  pid_t z;
  int reaped = 0;
  stats.batches++;
  /* Orphans one by one while the zombie in view is one. */
  while ((z = peek_zombie()) > 0) {
    /* Its watcher reaps it and resumes us: nothing to list. */
    if (orch_proc_is_watched(z)) {
      z = 0;
      break;
    }
    if (!nobody_waits_for(&b, z) || !reap(z)) break;
    reaped++;
  }
  /* A uv_spawn child (or, oddly, one that cannot be reaped) hides the rest:
   * every child is looked at. */
  if (z > 0) {
    pid_list_t kids = {NULL, 0, 0, 1, 0};
    list_children(getpid(), &kids);
    stats.scans++;
    stats.listed += (unsigned long)kids.n;
    for (int i = 0; i < kids.n; i++)
      if (nobody_waits_for(&b, kids.v[i]) && reap(kids.v[i])) reaped++;
    free(kids.v);
  }
  free(b.libuv.v);
  stats.reaped += (unsigned long)reaped;
  if (reaped && reap_cb) {
    stats.callbacks++;
    reap_cb(reap_data);
  }
}

static void on_sigchld(uv_signal_t *h, int signum) {
  (void)signum;
  reap_batch(h->loop);
}

static void on_resume(uv_check_t *h) {
  uv_check_stop(h);
  reap_batch(h->loop);
}

/* Deferred to the check phase, so that no Lua callback runs inside the one
 * that released or reaped a process. */
void orch__reaper_resume(void) {
  if (reaper_on && !uv_is_active((uv_handle_t *)&resume)) uv_check_start(&resume, on_resume);
}

orch_reap_stats_t orch_reaper_stats(void) { return stats; }

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
  if (rc == 0) rc = uv_check_init(loop, &resume);
  if (rc < 0) {
    uv_close((uv_handle_t *)&sigchld, NULL);
    return rc;
  }
  uv_unref((uv_handle_t *)&sigchld); /* reaping alone does not keep orch up */
  uv_unref((uv_handle_t *)&resume);
  reaper_on = 1;
  static orch_owner_t owner = {"the orphan reaper", orch_reaper_stop, NULL, 0};
  orch_owner_add(&owner);
  return 0;
}

void orch_reaper_stop(void) {
  if (!reaper_on) return;
  reaper_on = 0;
  reap_cb = NULL;
  uv_close((uv_handle_t *)&sigchld, NULL);
  uv_close((uv_handle_t *)&resume, NULL);
}
