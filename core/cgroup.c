/* cgroup.c: reading and joining a process's cgroup v2 (see cgroup.h).
 * Files of cgroupfs answer from the kernel's memory: no I/O to wait for. */
#include "orch/cgroup.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* dir/name into buf, NUL-terminated. Length or -errno. */
static int read_file(const char *dir, const char *name, char *buf, size_t cap) {
  char path[4096];
  if (snprintf(path, sizeof path, "%s/%s", dir, name) >= (int)sizeof path) return -ENAMETOOLONG;
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) return -errno;
  size_t len = 0;
  int rc = 0;
  while (len < cap - 1) {
    ssize_t n = read(fd, buf + len, cap - 1 - len);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      rc = -errno;
      break;
    }
    if (n == 0) break;
    len += (size_t)n;
  }
  close(fd);
  buf[len] = '\0';
  return rc < 0 ? rc : (int)len;
}

int orch_cgroup_pids(const char *dir, pid_t *out, int cap) {
  /* a pid is at most 8 characters and a newline: room for cap of them */
  size_t size = (size_t)cap * 9 + 1;
  char *buf = malloc(size);
  if (!buf) return -ENOMEM;
  int rc = read_file(dir, "cgroup.procs", buf, size);
  int n = 0;
  for (char *p = buf; rc >= 0 && *p && n < cap;) {
    char *end;
    long pid = strtol(p, &end, 10);
    if (end == p) break;
    if (pid > 0) out[n++] = (pid_t)pid;
    p = end;
    while (*p == '\n') p++;
  }
  free(buf);
  return rc < 0 ? rc : n;
}

int orch_cgroup_open(const char *dir) {
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  return fd < 0 ? -errno : fd;
}
