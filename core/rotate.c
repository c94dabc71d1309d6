/* rotate.c: moving a log file's numbered names (see rotate.h). */
#include "orch/rotate.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <zlib.h>

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

static int write_full(int fd, const unsigned char *buf, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, buf, n);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) return -errno;
    if (w == 0) return -ENOSPC;
    buf += w;
    n -= (size_t)w;
  }
  return 0;
}

int orch_gzip_fd(int in, int out) {
  enum { CHUNK = 65536 };
  z_stream z = {0};
  /* windowBits 15 + 16: a gzip header and trailer rather than zlib's. */
  if (deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
    return -ENOMEM;
  unsigned char *ibuf = malloc(CHUNK), *obuf = malloc(CHUNK);
  int rc = ibuf && obuf ? 0 : -ENOMEM, flush = Z_NO_FLUSH;
  while (rc == 0 && flush != Z_FINISH) {
    ssize_t n;
    do n = read(in, ibuf, CHUNK);
    while (n < 0 && errno == EINTR);
    if (n < 0) {
      rc = -errno;
      break;
    }
    flush = n == 0 ? Z_FINISH : Z_NO_FLUSH;
    z.next_in = ibuf;
    z.avail_in = (uInt)n;
    do {
      z.next_out = obuf;
      z.avail_out = CHUNK;
      deflate(&z, flush); /* cannot fail with a valid stream and buffers */
      rc = write_full(out, obuf, CHUNK - z.avail_out);
    } while (rc == 0 && z.avail_out == 0);
  }
  deflateEnd(&z);
  free(ibuf);
  free(obuf);
  if (rc == 0 && fsync(out) < 0) rc = -errno;
  return rc;
}
