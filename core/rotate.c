/* rotate.c: moving a log file's numbered names (see rotate.h). */
#include "orch/rotate.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <unistd.h>

int orch_rotate_name(char *buf, size_t cap, const char *path, int n, int gz) {
  int len = snprintf(buf, cap, "%s.%d%s", path, n, gz ? ".gz" : "");
  if (len < 0 || (size_t)len >= cap) return -ENAMETOOLONG;
  return 0;
}

/* Removes FILE.n and FILE.n.gz: 1 if either existed, 0 if none did, or
 * -errno. */
static int remove_index(const char *path, int n) {
  char name[PATH_MAX];
  int found = 0;
  for (int gz = 0; gz < 2; gz++) {
    int rc = orch_rotate_name(name, sizeof name, path, n, gz);
    if (rc < 0) return rc;
    if (unlink(name) == 0) found = 1;
    else if (errno != ENOENT) return -errno;
  }
  return found;
}

/* FILE.from(.gz) -> FILE.to(.gz); a missing source is no error. */
static int move_index(const char *path, int from, int to) {
  char a[PATH_MAX], b[PATH_MAX];
  for (int gz = 0; gz < 2; gz++) {
    int rc = orch_rotate_name(a, sizeof a, path, from, gz);
    if (rc == 0) rc = orch_rotate_name(b, sizeof b, path, to, gz);
    if (rc < 0) return rc;
    if (rename(a, b) < 0 && errno != ENOENT) return -errno;
  }
  return 0;
}

int orch_rotate_shift(const char *path, int retain) {
  if (retain < 1) retain = 1;
  if (retain > ORCH_RETAIN_MAX) retain = ORCH_RETAIN_MAX;
  char first[PATH_MAX];
  int rc = orch_rotate_name(first, sizeof first, path, 1, 0);
  if (rc < 0) return rc;
  /* The oldest goes first: FILE.retain-1 then lands on a free name, and a
   * compressed oldest never survives next to a plain newer one. */
  rc = remove_index(path, retain);
  if (rc < 0) return rc;
  for (int i = retain - 1; i >= 1; i--) {
    rc = move_index(path, i, i + 1);
    if (rc < 0) return rc;
  }
  if (rename(path, first) < 0) return -errno;
  /* Leftovers of a larger retain: gone up to the first gap. Failing here
   * loses nothing, so it is not an error. */
  for (int i = retain + 1; i <= ORCH_RETAIN_MAX + 1 && remove_index(path, i) == 1; i++) {
  }
  return 0;
}

int orch_rotate_remove(const char *path, int retain) {
  int err = 0;
  for (int i = 1; i <= ORCH_RETAIN_MAX + 1; i++) {
    int rc = remove_index(path, i);
    if (rc < 0 && err == 0) err = rc;
    if (rc == 0 && i >= retain) break;
  }
  return err;
}
