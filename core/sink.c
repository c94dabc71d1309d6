/* sink.c: append-only log files, their rotation, and reports of their
 * troubles (see sink.h). The gzip of rotated files is in sink_gzip.c, the
 * pipes that feed sinks in outpipe.c. */
#include "orch/sink.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "orch/echo.h"
#include "orch/rotate.h"
#include "orch/sink_impl.h"


/* Non-blocking, so that a file that can make a writer wait (a FIFO, a pipe
 * or terminal as /dev/stdout) holds up its outpipes (EAGAIN: see outpipe.c,
 * "waiting for space or a reader"), never the loop; the description is orch's own,
 * as the file is opened anew. A FIFO is opened read-write: without a reader
 * it would refuse a non-blocking writer (ENXIO), and once its reader left,
 * every write would fail (EPIPE); this way the bytes wait in it for the next
 * reader, as they do for a slow one. follow: a symlink as the last component
 * is followed (the user named that path); else it is refused (ELOOP). */
static int open_append(const char *path, mode_t mode, int follow) {
  const int flags = O_APPEND | O_CLOEXEC | O_NONBLOCK | O_NOCTTY | (follow ? 0 : O_NOFOLLOW);
  struct stat st;
  int fd;
  do fd = open(path, O_WRONLY | O_CREAT | flags, mode);
  while (fd < 0 && errno == EINTR);
  if (fd >= 0 && fstat(fd, &st) == 0 && S_ISFIFO(st.st_mode)) {
    close(fd);
    fd = -1;
    errno = ENXIO;
  }
  if (fd < 0 && errno == ENXIO) {
    do fd = open(path, O_RDWR | flags);
    while (fd < 0 && errno == EINTR);
  }
  return fd < 0 ? -errno : fd;
}

/* Whether the file at path ends with a newline (or is empty); when in doubt,
 * yes: the answer only decides where a rotation may cut. */
static int ends_with_newline(const char *path, uint64_t size, int follow) {
  if (size == 0) return 1;
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY | (follow ? 0 : O_NOFOLLOW));
  if (fd < 0) return 1;
  char c = '\n';
  ssize_t r = pread(fd, &c, 1, (off_t)size - 1);
  close(fd);
  return r != 1 || c == '\n';
}

/* Makes fd (a fresh open of s->path) the sink's file. */
static void adopt(orch_sink_t *s, int fd) {
  struct stat st;
  if (s->fd >= 0) close(s->fd);
  s->fd = fd;
  s->regular = fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
  s->size = s->regular ? (uint64_t)st.st_size : 0;
  s->at_bol = s->regular ? ends_with_newline(s->path, s->size, s->follow) : 1;
  s->pending_open = 0;
  if (s->own_stdio) {
    dup2(fd, 1);
    dup2(fd, 2);
  }
}

/* Makes dir (a copy: it is cut and mended in place) and its missing parents,
 * mode 0750: 1 if it made any, 0 if all were there, -errno. */
static int make_parents(char *dir) {
  int made = 0;
  for (char *p = dir + 1;; p++) {
    if (*p != '/' && *p != '\0') continue;
    char c = *p;
    *p = '\0';
    int rc = mkdir(dir, 0750) == 0 ? 1 : errno == EEXIST ? 0 : -errno;
    *p = c;
    if (rc < 0) return rc;
    made |= rc;
    if (c == '\0') return made;
  }
}

/* Opens s->path; if its directory is missing and orch may make it (see
 * ORCH_SINK_MKDIR, ORCH_SINK_MKDIRS), makes it and opens the file in it; a
 * directory made again (orch's, or the user's for a file that was open) says so. These are metadata
 * system calls like open(O_CREAT) itself, taken once per missing directory. */
static int open_file(orch_sink_t *s, mode_t mode, int follow) {
  int fd = open_append(s->path, mode, follow);
  const char *slash = strrchr(s->path, '/');
  char dir[PATH_MAX];
  size_t n = slash ? (size_t)(slash - s->path) : 0;
  if (fd != -ENOENT || !(s->mkdir || s->mkdirs) || n == 0 || n >= sizeof dir) return fd;
  memcpy(dir, s->path, n);
  dir[n] = '\0';
  int made;
  if (s->mkdirs) {
    made = make_parents(dir);
    if (made < 0) return made; /* why the directory is missing says more */
  } else {
    made = mkdir(dir, 0700) == 0;
    if (!made && errno != EEXIST) return fd;
  }
  if (made && (s->mkdir || s->fd >= 0)) {
    s->dir_remade++;
    orch__sink_problem(s, ORCH_LOGP_DIR_REMADE, ENOENT, 0);
    orch__sink_report("warning", "%s: the log directory was gone; made it again (%s)", dir,
                      s->mkdirs ? "0750" : "0700");
  }
  return open_append(s->path, mode, follow);
}

/* A file deleted while open (by itself, or with its directory) takes bytes
 * nobody will ever read. So, at most once a second and only while writing,
 * a regular file's link count is looked at, and a deleted one is replaced by
 * a new file at its path; if that fails, writing goes on to the old one and
 * the next look tries again. */
static void check_deleted(orch_sink_t *s) {
  if (!s->regular) return;
  uint64_t now = orch__now_ns();
  if (now < s->check_at) return;
  s->check_at = now + 1000000000u;
  struct stat st;
  if (fstat(s->fd, &st) < 0 || st.st_nlink > 0) return;
  int fd = open_file(s, st.st_mode & 07777, s->follow);
  if (fd < 0) return;
  adopt(s, fd);
  s->remade++;
  orch__sink_problem(s, ORCH_LOGP_REMADE, 0, 0);
  orch__sink_report("warning", "%s: deleted while open; writing to a new file at that path", s->path);
}

int orch_sink_open(const char *path, unsigned flags, orch_sink_t **out) {
  size_t len = path ? strlen(path) : 0;
  orch_sink_t *s = calloc(1, sizeof *s + len + 1);
  if (!s) return -ENOMEM;
  s->refs = 1;
  s->fd = -1;
  s->at_bol = 1;
  if (path) {
    memcpy(s->path, path, len + 1);
    s->follow = (flags & ORCH_SINK_FOLLOW) != 0;
    s->mkdir = (flags & ORCH_SINK_MKDIR) != 0;
    s->mkdirs = (flags & ORCH_SINK_MKDIRS) != 0;
    s->check_at = orch__now_ns() + 1000000000u;
    int fd = open_file(s, 0640, s->follow);
    if (fd < 0) {
      free(s);
      return fd;
    }
    adopt(s, fd);
  }
  *out = s;
  return 0;
}

void orch_sink_ref(orch_sink_t *s) { s->refs++; }

void orch_sink_unref(orch_sink_t *s) {
  if (--s->refs > 0) return;
  orch__sink_unwatch(s);
  if (s->fd >= 0) close(s->fd);
  free(s);
}

void orch_sink_rotation(orch_sink_t *s, uint64_t max_size, int retain) {
  s->max_size = max_size;
  s->retain = retain < 1 ? 1 : retain > ORCH_RETAIN_MAX ? ORCH_RETAIN_MAX : retain;
  s->retry_at = 0;
}

int orch_sink_reopen(orch_sink_t *s) {
  if (s->fd < 0) return 0;
  struct stat st;
  mode_t mode = fstat(s->fd, &st) == 0 ? st.st_mode & 07777 : 0640;
  int fd = open_file(s, mode, s->follow);
  if (fd < 0) return fd;
  /* The writability watch was on the old fd: the outpipes waiting on it try
   * the new file at once (and watch it if they must wait again). */
  orch__sink_unwatch(s);
  adopt(s, fd);
  s->retry_at = 0;
  orch__outpipes_wake(s);
  return 0;
}

int orch_sink_truncate(orch_sink_t *s) {
  s->gen++;
  if (s->fd < 0 || !s->regular) return 0;
  /* The fd may still be on FILE.1 after a failed rotation: FILE is meant. */
  if (s->pending_open) orch_sink_reopen(s);
  if (ftruncate(s->fd, 0) < 0) return -errno;
  s->size = 0;
  s->at_bol = 1;
  return 0;
}

int orch_sink_truncate_path(const char *path, int follow) {
  int fd;
  do fd = open(path, O_WRONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY | (follow ? 0 : O_NOFOLLOW));
  while (fd < 0 && errno == EINTR);
  if (fd < 0) return -errno;
  struct stat st;
  int rc = fstat(fd, &st) < 0 ? -errno : S_ISREG(st.st_mode) && ftruncate(fd, 0) < 0 ? -errno : 0;
  close(fd);
  return rc;
}

int orch_sink_own_stdio(orch_sink_t *s) {
  if (s->fd < 0) return -EBADF;
  s->own_stdio = 1;
  if (dup2(s->fd, 1) < 0 || dup2(s->fd, 2) < 0) return -errno;
  return 0;
}

void orch_sink_compress(orch_sink_t *s, uv_loop_t *loop) { s->gz_loop = loop; }

/* FILE -> FILE.1 (and older ones up), then a new FILE. Any failure leaves
 * the current fd in place, so nothing written is lost; the next attempt
 * waits a second. */
static void rotate(orch_sink_t *s) {
  int rc = 0;
  struct stat st;
  mode_t mode = fstat(s->fd, &st) == 0 ? st.st_mode & 07777 : 0640;
  if (!s->pending_open) {
    rc = orch_rotate_shift(s->path, s->retain);
    if (rc == 0) {
      s->pending_open = 1;
      orch__sink_gzip_shifted(s);
    }
  }
  if (s->pending_open) {
    /* FILE was just renamed away: whatever is there now, a symlink
     * included, someone else put there. */
    rc = open_file(s, mode, 0);
    if (rc >= 0) {
      adopt(s, rc);
      s->rotations++;
      rc = 0;
      if (s->gz_loop) orch__sink_gzip_start(s, mode);
    }
  }
  s->rotate_err = rc < 0 ? -rc : 0;
  if (rc < 0) orch__sink_problem(s, ORCH_LOGP_ROTATE, -rc, 0);
  s->retry_at = rc < 0 ? orch__now_ns() + 1000000000u : 0;
}

/* Whether writing n more bytes must rotate first. */
static int rotation_due(orch_sink_t *s, size_t n) {
  if (s->max_size == 0 || !s->regular || s->size + n <= s->max_size) return 0;
  if (s->retry_at && orch__now_ns() < s->retry_at) return 0;
  /* Others may have written or truncated the file (orch flush, the daemon's
   * stray stderr): ask the file. */
  struct stat st;
  if (fstat(s->fd, &st) == 0) {
    s->size = (uint64_t)st.st_size;
    if (s->size == 0) s->at_bol = 1;
  }
  return s->size + n > s->max_size;
}

/* How much of buf (n bytes, more than fit under max_size) goes to the
 * current file; *rot: rotate after it (see sink.h for the rules). */
static size_t cut(const orch_sink_t *s, const char *buf, size_t n, int *rot) {
  size_t room = s->max_size > s->size ? (size_t)(s->max_size - s->size) : 0;
  *rot = 1;
  if (room > 0) {
    const char *nl = memrchr(buf, '\n', room < n ? room : n);
    if (nl) return (size_t)(nl - buf) + 1;
  }
  if (s->size > 0 && s->at_bol) return 0;
  const char *nl = memchr(buf, '\n', n);
  if (nl) return (size_t)(nl - buf) + 1;
  if (s->size == 0 || s->size + n <= s->max_size + ORCH_ROTATE_SLACK) {
    *rot = 0; /* an unfinished line goes on */
    return n;
  }
  return 0;
}

/* Writes buf whole; returns how many bytes could not be written, with the
 * error in *err. */
static size_t write_bytes(orch_sink_t *s, const char *buf, size_t n, int *err) {
  while (n > 0) {
    ssize_t w = write(s->fd, buf, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      *err = w == 0 ? ENOSPC : errno == EWOULDBLOCK ? EAGAIN : errno;
      return n;
    }
    s->written += (uint64_t)w;
    s->size += (uint64_t)w;
    s->at_bol = buf[w - 1] == '\n';
    buf += w;
    n -= (size_t)w;
  }
  return 0;
}

/* Whether a failed write may succeed later without anyone's help but the
 * file system's or the reader's: worth holding the bytes for. */
static int space_err(int err) { return err == ENOSPC || err == EDQUOT || err == EAGAIN; }

size_t orch__sink_put(orch_sink_t *s, const char *buf, size_t n, int hold) {
  if (s->fd < 0) return 0;
  check_deleted(s);
  int empty_cuts = 0;
  while (n > 0) {
    size_t take = n;
    int rot = 0;
    if (rotation_due(s, n)) {
      take = cut(s, buf, n, &rot);
      /* A cut before anything is written, twice in a row, means the new
       * file was not empty either (someone else writes it): stop cutting. */
      if (take == 0 && ++empty_cuts > 1) {
        take = n;
        rot = 0;
      }
    }
    int err = 0;
    size_t left = take ? write_bytes(s, buf, take, &err) : 0;
    if (left > 0) {
      if (hold && space_err(err)) {
        s->stall_err = err;
        return left + (n - take);
      }
      /* An I/O error, or a write that nobody can wait for: the bytes are
       * counted and the error kept for reporting; orch must not die. */
      orch__sink_dropped(s, left + (n - take), err);
      return 0;
    }
    if (rot) rotate(s);
    buf += take;
    n -= take;
  }
  return 0;
}

void orch_sink_write(orch_sink_t *s, const char *buf, size_t n) { (void)orch__sink_put(s, buf, n, 0); }

const char *orch_sink_path(const orch_sink_t *s) { return s->path; }

void orch_sink_stats(const orch_sink_t *s, orch_sink_stats_t *st) {
  st->written = s->written;
  st->dropped = s->dropped;
  st->last_err = s->stalled && s->stall_err ? s->stall_err : s->last_err;
  st->stalled = s->stalled > 0;
  st->size = s->size;
  st->rotations = s->rotations;
  st->rotate_err = s->rotate_err;
  st->compress_err = s->gz_err;
  st->remade = s->remade;
  st->dir_remade = s->dir_remade;
}

/* One line for whoever watches orch, on stderr (the daemon's log, or orch
 * run's terminal through its echo writer), in the daemon log's own format. */
void orch__sink_report(const char *level, const char *fmt, ...) {
  char msg[PATH_MAX + 256], line[sizeof msg + 64];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  time_t t = time(NULL);
  struct tm tm;
  size_t n = localtime_r(&t, &tm) ? strftime(line, sizeof line, "%Y-%m-%dT%H:%M:%S ", &tm) : 0;
  int m = snprintf(line + n, sizeof line - n, "%s: %s\n", level, msg);
  if (m > 0) n += (size_t)m < sizeof line - n ? (size_t)m : sizeof line - n - 1;
  /* orch run: in turn with the echo, never blocking behind its terminal. */
  orch_echo_t *e = orch_echo_find(2);
  if (e) {
    orch_echo_line(e, line, n, NULL, 0, NULL, 0, NULL, 0);
    return;
  }
  /* One write, so the line stays whole; nowhere to report its failure. */
  if (write(2, line, n) < 0) return;
}
