/* stats.c: /proc/<pid>/stat reading for process trees. */
#include "orch/stats.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "orch/proc.h"

/* Field numbers of proc(5). */
enum { F_UTIME = 14, F_STIME = 15, F_THREADS = 20, F_STARTTIME = 22, F_RSS = 24 };

#define MAX_TREE 4096

/* Reads /proc/<pid>/stat (NUL-terminated) into buf. Returns its length or
 * -errno. The line is far below 1 KiB in practice; 4 KiB leaves room for 52
 * fields of 20 digits and the longest comm. */
static int read_stat(pid_t pid, char *buf, size_t cap) {
  char path[32];
  if (pid > 0) snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
  else strcpy(path, "/proc/self/stat");
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno == ENOENT ? -ESRCH : -errno;
  size_t len = 0;
  while (len < cap - 1) {
    ssize_t n = read(fd, buf + len, cap - 1 - len);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int err = errno;
      close(fd);
      return err == ESRCH ? -ESRCH : -err; /* exited between open and read */
    }
    if (n == 0) break;
    len += (size_t)n;
  }
  close(fd);
  buf[len] = '\0';
  return (int)len;
}

/* Parses the wanted fields. comm (field 2) may hold spaces and parentheses,
 * so counting starts after the last ')'. which[] need not be sorted. */
static int parse_fields(const char *buf, const int *which, int n, uint64_t *out) {
  const char *p = strrchr(buf, ')');
  if (!p) return -EINVAL;
  p++;
  int found = 0;
  for (int field = 3; *p && found < n; field++) {
    while (*p == ' ') p++;
    if (!*p || *p == '\n') break;
    const char *tok = p;
    while (*p && *p != ' ' && *p != '\n') p++;
    for (int i = 0; i < n; i++) {
      if (which[i] != field) continue;
      uint64_t v = 0;
      const char *q = tok;
      int neg = *q == '-';
      if (neg) q++;
      for (; q < p && *q >= '0' && *q <= '9'; q++) v = v * 10 + (uint64_t)(*q - '0');
      out[i] = neg ? 0 : v; /* a negative value (priority) is of no use here */
      found++;
    }
  }
  return found == n ? 0 : -EINVAL;
}

int orch_proc_stat_fields(pid_t pid, const int *which, int n, uint64_t *out) {
  char buf[4096];
  int len = read_stat(pid, buf, sizeof buf);
  if (len < 0) return len;
  return parse_fields(buf, which, n, out);
}

long orch_clock_ticks(void) {
  static long ticks;
  if (!ticks) {
    ticks = sysconf(_SC_CLK_TCK);
    if (ticks <= 0) ticks = 100; /* what Linux has used everywhere */
  }
  return ticks;
}

static uint64_t page_size(void) {
  static uint64_t size;
  if (!size) {
    long s = sysconf(_SC_PAGESIZE);
    size = s > 0 ? (uint64_t)s : 4096;
  }
  return size;
}

/* Field 24 (rss, pages) is the same counter statm's "resident" shows, and
 * comes with utime/stime in the one read; the thread count tells whether the
 * children can be read from one file. */
static const int tree_fields[] = {F_UTIME, F_STIME, F_STARTTIME, F_RSS, F_THREADS};

/* Walks the tree breadth-first, reading each process's stat once: `orch list`
 * does this for every managed process, so syscalls per process count. */
int orch_proc_stats(pid_t pid, orch_proc_stats_t *out) {
  uint64_t v[5];
  int rc = orch_proc_stat_fields(pid, tree_fields, 5, v);
  if (rc < 0) return rc;
  memset(out, 0, sizeof *out);
  out->starttime = v[2];
  pid_t tree[MAX_TREE];
  int n = 1;
  tree[0] = pid;
  for (int i = 0; i < n; i++) {
    if (i > 0 && orch_proc_stat_fields(tree[i], tree_fields, 5, v) < 0) continue;
    out->cpu_ticks += v[0] + v[1];
    out->rss += v[3] * page_size();
    out->procs++;
    int m = orch_proc_children(tree[i], (int)v[4], tree, n, MAX_TREE);
    if (m > n) n = m;
  }
  return 0;
}

int orch_proc_starttime(pid_t pid, uint64_t *out) {
  static const int which[] = {F_STARTTIME};
  return orch_proc_stat_fields(pid, which, 1, out);
}
