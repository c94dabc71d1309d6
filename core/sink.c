/* sink.c: append-only log files and the child pipes that feed them. */
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
#include "orch/owners.h"
#include "orch/rotate.h"

struct orch_sink_s {
  int fd; /* -1: discard */
  int refs;
  int last_err;
  uint64_t written, dropped;
  /* Rotation (orch_sink_rotation). */
  uint64_t max_size;  /* 0: never */
  int retain;
  int regular;        /* only a regular file rotates */
  int at_bol;         /* the file is empty or ends with a newline */
  int pending_open;   /* FILE was renamed away; opening the new one failed */
  int own_stdio;      /* fds 1 and 2 follow the file */
  int follow;         /* a symlink at path is followed (ORCH_SINK_FOLLOW) */
  int mkdir;          /* its directory is orch's: made again if gone */
  uint64_t check_at;  /* CLOCK_MONOTONIC ns: next look for a deleted file */
  uint64_t remade;    /* times the file was deleted while open, and made anew */
  uint64_t dir_remade; /* times its directory was gone and made again */
  uint64_t size;      /* of the file; refreshed with fstat near max_size */
  uint64_t retry_at;  /* CLOCK_MONOTONIC ns: no rotation attempt before */
  uint64_t rotations;
  int rotate_err;
  /* gzip of FILE.1 after each rotation (orch_sink_compress). */
  uv_loop_t *gz_loop;  /* NULL: off */
  struct gz_job_s *jobs; /* in flight */
  unsigned gen;        /* bumped by truncate: a job from before is dropped */
  int gz_err;
  /* Outpipes waiting for space (a full disk): they hold what they could not
   * write and read no more, so their apps block on their pipes. */
  int stalled;
  int stall_err;           /* ENOSPC, EDQUOT or EAGAIN while stalled */
  uv_poll_t *wpoll;        /* while stalled on EAGAIN: waits for writability */
  uint64_t stalled_since;  /* CLOCK_MONOTONIC ns */
  int writers;             /* outpipes writing to it as their own stream */
  char path[];
};

/* Lines longer than this are echoed in pieces rather than held back. */
#define ECHO_LINE_MAX 8192

/* What a sink refused (full disk), kept by the outpipe until it goes in. */
typedef struct {
  char *buf;
  size_t len, cap;
} held_t;

struct orch_outpipe_s {
  uv_poll_t poll;            /* readability of fd */
  uv_timer_t retry;          /* while stalled: the next try of the held bytes */
  int fd;                    /* the parent's end of the child's pipe */
  int open_handles;          /* freed when both handles have closed */
  struct orch_outpipe_s *next; /* every open outpipe, for shutdown */
  orch_sink_t *sink, *combined;
  orch_echo_t *echo;         /* NULL: no echo */
  int released, closing, eof, polling, grown;
  /* Stalled while any of these holds bytes: nothing is read meanwhile.
   * hold[0] goes to sink, hold[1] to combined; raw is input not yet
   * formatted (formatted mode stops at a refusal: records can be many times
   * the size of their input). */
  held_t hold[2], raw;
  int stall_on[2];           /* counted in that sink's stalled */
  size_t prefix_len, held;
  char *prefix;
  char *line;               /* ECHO_LINE_MAX: the unterminated tail of the echo */

  /* Formatted mode (framed != 0). */
  int framed, json;
  char *timestamp;          /* strftime format (+ %L, %:z); NULL: none */
  char *json_mid;           /* ","app":...,"message":" between time and text */
  size_t json_mid_len;
  char *part;               /* the unterminated tail of the log stream (also
                               in plain mode when the file is shared) */
  size_t part_len, part_cap;
};

/* Every outpipe reads into this buffer: read callbacks run one at a time and
 * consume the bytes before returning, so one buffer serves them all. Bigger
 * reads mean fewer system calls per byte; 256 KiB is where the gain levels
 * off (measured: bench/logs.lua), and the pages count against the daemon's
 * memory only once a fast writer has touched them. */
static char read_buf[262144];

/* Formatted records of one chunk are gathered here and written with one
 * write(2) per sink; shared for the same reason as read_buf. Grown to the
 * largest record seen, freed when the last outpipe closes. */
static struct {
  char *buf;
  size_t len, cap;
} rec;

static orch_outpipe_t *open_outpipes;

/* Non-blocking, so that a file that can make a writer wait (a FIFO, a pipe
 * or terminal as /dev/stdout) holds up its outpipes (EAGAIN: see "waiting
 * for space or a reader"), never the loop; the description is orch's own,
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

static void report(const char *level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
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

/* Opens s->path; if its directory is gone and is orch's (ORCH_SINK_MKDIR),
 * makes it again (0700, as orch made it) and says so. */
static int open_file(orch_sink_t *s, mode_t mode, int follow) {
  int fd = open_append(s->path, mode, follow);
  const char *slash = strrchr(s->path, '/');
  char dir[PATH_MAX];
  size_t n = slash ? (size_t)(slash - s->path) : 0;
  if (fd != -ENOENT || !s->mkdir || n == 0 || n >= sizeof dir) return fd;
  memcpy(dir, s->path, n);
  dir[n] = '\0';
  int made = mkdir(dir, 0700) == 0;
  if (!made && errno != EEXIST) return fd;
  if (made) {
    s->dir_remade++;
    report("warning", "%s: the log directory was gone; made it again (0700)", dir);
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
  uint64_t now = now_ns();
  if (now < s->check_at) return;
  s->check_at = now + 1000000000u;
  struct stat st;
  if (fstat(s->fd, &st) < 0 || st.st_nlink > 0) return;
  int fd = open_file(s, st.st_mode & 07777, s->follow);
  if (fd < 0) return;
  adopt(s, fd);
  s->remade++;
  report("warning", "%s: deleted while open; writing to a new file at that path", s->path);
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
    s->check_at = now_ns() + 1000000000u;
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

static void sink_unwatch(orch_sink_t *s);

void orch_sink_unref(orch_sink_t *s) {
  if (--s->refs > 0) return;
  sink_unwatch(s);
  if (s->fd >= 0) close(s->fd);
  free(s);
}

void orch_sink_rotation(orch_sink_t *s, uint64_t max_size, int retain) {
  s->max_size = max_size;
  s->retain = retain < 1 ? 1 : retain > ORCH_RETAIN_MAX ? ORCH_RETAIN_MAX : retain;
  s->retry_at = 0;
}

static void wake_stalled(orch_sink_t *s);

int orch_sink_reopen(orch_sink_t *s) {
  if (s->fd < 0) return 0;
  struct stat st;
  mode_t mode = fstat(s->fd, &st) == 0 ? st.st_mode & 07777 : 0640;
  int fd = open_file(s, mode, s->follow);
  if (fd < 0) return fd;
  /* The writability watch was on the old fd: the outpipes waiting on it try
   * the new file at once (and watch it if they must wait again). */
  sink_unwatch(s);
  adopt(s, fd);
  s->retry_at = 0;
  wake_stalled(s);
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

/* ---- gzip of the rotated file ---- */

/* A job compresses one rotated file, which may move on (FILE.1 -> FILE.2 ...)
 * while it runs: rotations do not wait. Its fds follow the file's inode; its
 * index follows the name, and its output goes to a temporary name that no
 * shift touches, renamed to FILE.<index>.gz at the end. */
typedef struct gz_job_s {
  uv_work_t req;
  struct gz_job_s *next;
  orch_sink_t *s; /* a reference: the sink outlives the job */
  int in, out, err, index;
  unsigned gen;
  char part[PATH_MAX];
} gz_job_t;

static void gz_work(uv_work_t *req) {
  gz_job_t *j = req->data;
  j->err = orch_gzip_fd(j->in, j->out);
}

/* On the loop thread: the temporary file becomes FILE.<index>.gz, then the
 * plain FILE.<index> goes. On any failure the plain file stays as it is;
 * nothing is lost. A file rotated past retain, or flushed, meanwhile is gone
 * already: its output is dropped. */
static void gz_done(uv_work_t *req, int status) {
  gz_job_t *j = req->data;
  orch_sink_t *s = j->s;
  for (gz_job_t **pp = &s->jobs; *pp; pp = &(*pp)->next)
    if (*pp == j) {
      *pp = j->next;
      break;
    }
  close(j->in);
  close(j->out);
  char src[PATH_MAX], gz[PATH_MAX];
  int err = status < 0 ? -status : j->err < 0 ? -j->err : 0;
  int gone = j->gen != s->gen || j->index > s->retain;
  if (err == 0 && !gone) {
    if (orch_rotate_name(src, sizeof src, s->path, j->index, 0) < 0 ||
        orch_rotate_name(gz, sizeof gz, s->path, j->index, 1) < 0)
      err = ENAMETOOLONG;
    else if (rename(j->part, gz) < 0)
      err = errno;
    else
      unlink(src);
  }
  if (err || gone) unlink(j->part);
  if (!gone) s->gz_err = err;
  free(j);
  orch_sink_unref(s);
}

/* Starts compressing FILE.1 (just rotated) in libuv's thread pool. */
static void gz_start(orch_sink_t *s, mode_t mode) {
  char src[PATH_MAX];
  gz_job_t *j = calloc(1, sizeof *j);
  int rc = j ? orch_rotate_name(src, sizeof src, s->path, 1, 0) : -ENOMEM;
  /* A name nobody can guess or plant first, created exclusively
   * (mkostemps: O_CREAT | O_EXCL, so a symlink there is never followed). */
  if (rc == 0 && snprintf(j->part, sizeof j->part, "%s.gzip-XXXXXX.part", s->path) >=
                     (int)sizeof j->part)
    rc = -ENAMETOOLONG;
  /* FILE.1 was ours an instant ago: not through a symlink, nor a FIFO that
   * would block the thread. */
  struct stat st;
  if (rc == 0 && (j->in = open(src, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY)) < 0)
    rc = -errno;
  else if (rc == 0 && (fstat(j->in, &st) < 0 || !S_ISREG(st.st_mode))) {
    rc = -EINVAL;
    close(j->in);
  }
  if (rc == 0 && ((j->out = mkostemps(j->part, 5, O_CLOEXEC)) < 0 || fchmod(j->out, mode) < 0)) {
    rc = -errno;
    if (j->out >= 0) {
      close(j->out);
      unlink(j->part);
    }
    close(j->in);
  }
  if (rc == 0) {
    j->req.data = j;
    j->s = s;
    j->gen = s->gen;
    j->index = 1;
    rc = uv_queue_work(s->gz_loop, &j->req, gz_work, gz_done);
    if (rc < 0) {
      close(j->in);
      close(j->out);
      unlink(j->part);
    } else {
      orch_sink_ref(s);
      j->next = s->jobs;
      s->jobs = j;
    }
  }
  if (rc < 0) {
    s->gz_err = -rc;
    free(j);
  }
}

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
      for (gz_job_t *j = s->jobs; j; j = j->next) j->index++;
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
      if (s->gz_loop) gz_start(s, mode);
    }
  }
  s->rotate_err = rc < 0 ? -rc : 0;
  s->retry_at = rc < 0 ? now_ns() + 1000000000u : 0;
}

/* Whether writing n more bytes must rotate first. */
static int rotation_due(orch_sink_t *s, size_t n) {
  if (s->max_size == 0 || !s->regular || s->size + n <= s->max_size) return 0;
  if (s->retry_at && now_ns() < s->retry_at) return 0;
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

/* orch_sink_write; hold: bytes that a full disk refused are returned (their
 * count: the tail of buf) for the caller to offer again, rather than dropped. */
static size_t sink_put(orch_sink_t *s, const char *buf, size_t n, int hold) {
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
      s->last_err = err;
      s->dropped += left + (n - take);
      return 0;
    }
    if (rot) rotate(s);
    buf += take;
    n -= take;
  }
  return 0;
}

void orch_sink_write(orch_sink_t *s, const char *buf, size_t n) { (void)sink_put(s, buf, n, 0); }

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

/* ---- records (formatted mode) ---- */

/* Makes room for n more bytes in rec; 0 or -ENOMEM. */
/* Makes *buf (of *cap bytes) hold at least need, doubling from first;
 * -ENOMEM leaves it as it was. The growable buffers here all use it. */
static int reserve(char **buf, size_t *cap, size_t need, size_t first) {
  if (need <= *cap) return 0;
  size_t c = *cap ? *cap : first;
  while (c < need) c *= 2;
  char *b = realloc(*buf, c);
  if (!b) return -ENOMEM;
  *buf = b;
  *cap = c;
  return 0;
}

static int rec_reserve(size_t n) { return reserve(&rec.buf, &rec.cap, rec.len + n, 65536); }

/* Only called after rec_reserve made room. */
static void rec_put(const char *s, size_t n) {
  memcpy(rec.buf + rec.len, s, n);
  rec.len += n;
}

/* ---- writing for an outpipe: what a full disk refuses is held ---- */

/* Whether a sink refuses bytes (they are held); see "waiting for disk space". */
static int refused(const orch_outpipe_t *o) { return o->hold[0].len > 0 || o->hold[1].len > 0; }
static int stalled(const orch_outpipe_t *o) { return refused(o) || o->raw.len > 0; }

static int held_append(held_t *h, const char *buf, size_t n) {
  if (reserve(&h->buf, &h->cap, h->len + n, 65536) < 0) return -ENOMEM;
  memcpy(h->buf + h->len, buf, n);
  h->len += n;
  return 0;
}

/* Writes buf to o's sink (i = 0) or combined sink (i = 1). Once the sink
 * refuses bytes for lack of space, they and everything after them for that
 * sink are held in order; the outpipe then stops reading (see pump). */
static void put(orch_outpipe_t *o, int i, const char *buf, size_t n) {
  orch_sink_t *s = i ? o->combined : o->sink;
  held_t *h = &o->hold[i];
  if (h->len == 0) {
    size_t left = sink_put(s, buf, n, 1);
    buf += n - left;
    n = left;
  }
  if (n > 0 && held_append(h, buf, n) < 0) {
    s->dropped += n;
    s->last_err = ENOMEM;
  }
}

static void out(orch_outpipe_t *o, const char *buf, size_t n) {
  put(o, 0, buf, n);
  if (o->combined) put(o, 1, buf, n);
}

/* Input that formatted mode did not get to: kept raw until the sinks take
 * bytes again. */
static void stash(orch_outpipe_t *o, const char *buf, size_t n) {
  if (held_append(&o->raw, buf, n) == 0) return;
  o->sink->dropped += n;
  o->sink->last_err = ENOMEM;
}

static void rec_flush(orch_outpipe_t *o) {
  if (rec.len == 0) return;
  out(o, rec.buf, rec.len);
  rec.len = 0;
}

/* Length of the valid UTF-8 sequence at s (1-4), or 0 if the bytes there are
 * not one (stray continuation, overlong form, surrogate, beyond U+10FFFF,
 * truncated). */
static size_t utf8_len(const unsigned char *s, size_t n) {
  unsigned c = s[0];
  size_t len;
  unsigned lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
  if (c < 0x80) return 1;
  if (c >= 0xC2 && c <= 0xDF) len = 2;
  else if (c >= 0xE0 && c <= 0xEF) {
    len = 3;
    if (c == 0xE0) lo = 0xA0;      /* overlong */
    else if (c == 0xED) hi = 0x9F; /* surrogates */
  } else if (c >= 0xF0 && c <= 0xF4) {
    len = 4;
    if (c == 0xF0) lo = 0x90;      /* overlong */
    else if (c == 0xF4) hi = 0x8F; /* beyond U+10FFFF */
  } else
    return 0;
  if (n < len || s[1] < lo || s[1] > hi) return 0;
  for (size_t i = 2; i < len; i++)
    if (s[i] < 0x80 || s[i] > 0xBF) return 0;
  return len;
}

/* Appends s as the inside of a JSON string. Worst case 6 bytes per input
 * byte (\u00XX), which the caller reserved. */
static void rec_put_json(const char *str, size_t n) {
  static const char hex[] = "0123456789abcdef";
  const unsigned char *s = (const unsigned char *)str;
  char *d = rec.buf + rec.len;
  size_t i = 0;
  while (i < n) {
    unsigned c = s[i];
    size_t len = c < 0x80 ? 1 : utf8_len(s + i, n - i);
    if (len > 1) {
      memcpy(d, s + i, len);
      d += len;
      i += len;
      continue;
    }
    i++;
    if (c == '"' || c == '\\') {
      *d++ = '\\';
      *d++ = (char)c;
    } else if (c == '\n') {
      *d++ = '\\';
      *d++ = 'n';
    } else if (c == '\r') {
      *d++ = '\\';
      *d++ = 'r';
    } else if (c == '\t') {
      *d++ = '\\';
      *d++ = 't';
    } else if (c < 0x20 || len == 0) {
      /* Control characters, and bytes that are not UTF-8: the code point of
       * the same value, so the byte survives (read as Latin-1). */
      memcpy(d, "\\u00", 4);
      d[4] = hex[c >> 4];
      d[5] = hex[c & 15];
      d += 6;
    } else {
      *d++ = (char)c;
    }
  }
  rec.len = (size_t)(d - rec.buf);
}

/* Formats now with fmt (see orch_line_format_t) into out; returns the length
 * (0 when it does not fit, or on a clock error: the record goes out without a
 * time rather than not at all). */
static size_t format_time(const char *fmt, char *out, size_t cap) {
  struct timespec ts;
  struct tm tm;
  if (clock_gettime(CLOCK_REALTIME, &ts) < 0 || !localtime_r(&ts.tv_sec, &tm))
    return 0;
  /* strftime knows neither %L nor %:z: substitute them first, escaping
   * nothing since digits, '+', '-' and ':' mean nothing to strftime. */
  char f[512];
  size_t j = 0;
  for (const char *p = fmt; *p && j + 8 < sizeof f; p++) {
    if (p[0] == '%' && p[1] == 'L') {
      j += (size_t)snprintf(f + j, sizeof f - j, "%03ld", ts.tv_nsec / 1000000);
      p++;
    } else if (p[0] == '%' && p[1] == ':' && p[2] == 'z') {
      long off = tm.tm_gmtoff;
      char sign = off < 0 ? '-' : '+';
      if (off < 0) off = -off;
      j += (size_t)snprintf(f + j, sizeof f - j, "%c%02ld:%02ld", sign,
                            off / 3600, off / 60 % 60);
      p += 2;
    } else if (p[0] == '%' && p[1]) {
      f[j++] = *p++; /* keeps "%%" and "%L"-lookalikes such as "%%L" intact */
      f[j++] = *p;
    } else {
      f[j++] = *p;
    }
  }
  f[j] = '\0';
  return strftime(out, cap, f, &tm);
}

/* Appends one record for the line a+b (without its newline). */
static void emit(orch_outpipe_t *o, const char *ts, size_t ts_len, const char *a,
                 size_t alen, const char *b, size_t blen) {
  size_t need = o->json ? 16 + 6 * ts_len + o->json_mid_len + 6 * (alen + blen) + 3
                        : ts_len + 2 + alen + blen + 1;
  if (rec_reserve(need) < 0) {
    /* No memory for the record: lose this line, visibly. */
    o->sink->dropped += alen + blen;
    o->sink->last_err = ENOMEM;
    return;
  }
  if (o->json) {
    rec_put("{\"timestamp\":\"", 14);
    rec_put_json(ts, ts_len);
    rec_put(o->json_mid, o->json_mid_len);
    rec_put_json(a, alen);
    rec_put_json(b, blen);
    rec_put("\"}\n", 3);
  } else {
    if (ts_len) {
      rec_put(ts, ts_len);
      rec_put(": ", 2);
    }
    rec_put(a, alen);
    rec_put(b, blen);
    rec_put("\n", 1);
  }
  /* Records stay whole in one write; keep the buffer about one read's size. */
  if (rec.len >= sizeof read_buf) rec_flush(o);
}

/* Room in o->part for n more bytes; -1: no memory. */
static int part_reserve(orch_outpipe_t *o, size_t n) {
  return reserve(&o->part, &o->part_cap, o->part_len + n, 256);
}

/* Cuts buf into lines, prefixing the held tail to the first one. */
static void frame(orch_outpipe_t *o, const char *buf, size_t n) {
  char ts[256];
  size_t ts_len = 0;
  int have_ts = 0;
  while (n > 0) {
    if (refused(o)) {
      stash(o, buf, n);
      break;
    }
    const char *nl = memchr(buf, '\n', n);
    size_t take = nl ? (size_t)(nl - buf) : n;
    size_t fit = take;
    int whole = nl != NULL;
    if (o->part_len + take > ORCH_LINE_MAX) {
      fit = ORCH_LINE_MAX - o->part_len; /* a line of its own, cut here */
      whole = 1;
    }
    /* Cannot hold it back (no memory): write it as a line now instead. */
    if (!whole && part_reserve(o, n) < 0) whole = 1;
    if (!whole) {
      memcpy(o->part + o->part_len, buf, n);
      o->part_len += n;
      break;
    }
    if (!have_ts && o->timestamp) {
      ts_len = format_time(o->timestamp, ts, sizeof ts);
      have_ts = 1;
    }
    emit(o, ts, ts_len, o->part, o->part_len, buf, fit);
    o->part_len = 0;
    size_t used = fit + (fit == take && nl ? 1 : 0);
    buf += used;
    n -= used;
  }
  rec_flush(o);
}

/* Plain mode, for a file that others write too (instances with merge_logs,
 * both streams in log_file): whole lines only, so that a line written in
 * pieces is not split by another writer's bytes. The unterminated tail is
 * held up to ORCH_LINE_MAX, like formatted mode's. The bytes are unchanged. */
static void plain_lines(orch_outpipe_t *o, const char *buf, size_t n) {
  const char *nl = memrchr(buf, '\n', n);
  size_t lines = nl ? (size_t)(nl - buf) + 1 : 0;
  if (lines > 0 || o->part_len + n > ORCH_LINE_MAX) {
    if (o->part_len > 0) out(o, o->part, o->part_len);
    o->part_len = 0;
    if (lines == 0) lines = n; /* too long a line: this piece goes as is */
    out(o, buf, lines);
    buf += lines;
    n -= lines;
  }
  if (n == 0) return;
  if (n <= ORCH_LINE_MAX && part_reserve(o, n) == 0) {
    memcpy(o->part + o->part_len, buf, n);
    o->part_len += n;
  } else {
    out(o, buf, n);
  }
}

/* Writes the held tail as a line (EOF: nothing will complete it). */
static void part_flush(orch_outpipe_t *o) {
  if (o->part_len == 0) return;
  if (!o->framed) {
    out(o, o->part, o->part_len);
    o->part_len = 0;
    return;
  }
  char ts[256];
  size_t ts_len = o->timestamp ? format_time(o->timestamp, ts, sizeof ts) : 0;
  emit(o, ts, ts_len, o->part, o->part_len, "", 0);
  o->part_len = 0;
  rec_flush(o);
}

/* ---- outpipes ---- */

/* Bytes one outpipe reads per turn of the loop before the other pipes and the
 * control socket get theirs: a flat-out writer cannot starve them. */
#define TURN_BYTES (1u << 20)
/* A read this large found a default-sized pipe (64 KiB) full: the app writes
 * faster than one wake-up per pipeful, so its pipe grows to PIPE_BIG (or
 * /proc/sys/fs/pipe-max-size if smaller). Only such pipes grow: a pipe's
 * size counts against its user's pipe-user-pages quota even while empty. */
#define PIPE_FULL 65536
#define PIPE_BIG (1 << 20)
/* How often an outpipe waiting for disk space tries again. */
#define RETRY_MS 500

static void (*reporter)(const char *level, const char *msg, void *ud);
static void *reporter_ud;

void orch_sink_set_reporter(void (*fn)(const char *level, const char *msg, void *ud), void *ud) {
  reporter = fn;
  reporter_ud = ud;
}

/* One line for whoever watches orch: the reporter, else stderr (the daemon's
 * log, or orch run's terminal through its echo writer), in the daemon log's
 * own format. */
static void report(const char *level, const char *fmt, ...) {
  char msg[PATH_MAX + 256], line[sizeof msg + 64];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (reporter) {
    reporter(level, msg, reporter_ud);
    return;
  }
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

static int pipe_big(void) {
  static int big;
  if (big) return big;
  big = PIPE_BIG;
  int fd = open("/proc/sys/fs/pipe-max-size", O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    char num[32];
    ssize_t n = read(fd, num, sizeof num - 1);
    close(fd);
    if (n > 0) {
      num[n] = '\0';
      long max = strtol(num, NULL, 10);
      if (max >= 4096 && max < big) big = (int)max;
    }
  }
  return big;
}

static void grow_pipe(orch_outpipe_t *o) {
  o->grown = 1;
  int want = pipe_big(), cur = fcntl(o->fd, F_GETPIPE_SZ);
  /* Failure (EPERM: the user's pipe quota is used up) only costs speed. */
  if (cur >= 0 && cur < want) (void)fcntl(o->fd, F_SETPIPE_SZ, want);
}

/* The line a+b, prefixed, with a newline added if it lacks one; queued for
 * the echo's writer (core/echo.c), or dropped there if the reader is behind. */
static void echo_line(orch_outpipe_t *o, const char *a, size_t alen,
                      const char *b, size_t blen) {
  int last = blen > 0 && b[blen - 1] == '\n';
  if (!last && alen > 0 && blen == 0 && a[alen - 1] == '\n') last = 1;
  orch_echo_line(o->echo, o->prefix, o->prefix_len, a, alen, b, blen, "\n", last ? 0 : 1);
}

/* Echoes whole lines; the unterminated tail waits for the next chunk. */
static void echo(orch_outpipe_t *o, const char *buf, size_t n) {
  while (n > 0) {
    const char *nl = memchr(buf, '\n', n);
    if (!nl) {
      if (o->held + n > ECHO_LINE_MAX) {
        echo_line(o, o->line, o->held, buf, n);
        o->held = 0;
      } else {
        memcpy(o->line + o->held, buf, n);
        o->held += n;
      }
      return;
    }
    size_t len = (size_t)(nl - buf) + 1;
    echo_line(o, o->line, o->held, buf, len);
    o->held = 0;
    buf += len;
    n -= len;
  }
}

/* EOF or close: nothing will complete the held tails. */
static void tails_flush(orch_outpipe_t *o) {
  if (o->echo && o->held > 0) echo_line(o, o->line, o->held, "", 0);
  o->held = 0;
  part_flush(o);
}

static void consume(orch_outpipe_t *o, const char *buf, size_t n) {
  /* The echo first: what the log files cannot take yet is not echoed again. */
  if (o->echo) echo(o, buf, n);
  if (o->framed) frame(o, buf, n);
  else if (o->part_len > 0 || o->combined || o->sink->writers > 1) plain_lines(o, buf, n);
  else out(o, buf, n);
}

/* ---- waiting for space or a reader ----
 *
 * A sink that refuses bytes for lack of space (ENOSPC, EDQUOT), or because
 * its reader does not keep up (EAGAIN: a FIFO, a pipe or terminal), makes the
 * outpipe hold them and stop reading: the app blocks on its full pipe, as it
 * would on a slow disk, and loses nothing. What the outpipe holds is at most
 * about one read: the refused bytes, and in formatted mode the input it had
 * not formatted yet. The held bytes are offered again every RETRY_MS for a
 * full disk, and as soon as the file is writable for a slow reader (the sink
 * watches its fd while anyone waits); once they are in, reading resumes.
 * Other outpipes are not affected unless their files are on the same full
 * file system. The first outpipe to stall on a full disk, and the last to get
 * going again, say so in the daemon log; a slow reader is ordinary
 * back-pressure and only shows in the sink's stats (orch describe). */

/* Counts o as stalled on sink i (or not); quiet: no report (closing). */
static void stall_count(orch_outpipe_t *o, int i, int on, int quiet) {
  orch_sink_t *s = i ? o->combined : o->sink;
  if (!s || on == o->stall_on[i]) return;
  o->stall_on[i] = on;
  if (on && s->stalled++ == 0) {
    s->stalled_since = now_ns();
    if (s->stall_err != EAGAIN)
      report("warning", "%s: %s (%s): writing paused until there is space; the app blocks on its output, "
             "nothing is dropped", s->path, s->stall_err == EDQUOT ? "EDQUOT" : "ENOSPC",
             strerror(s->stall_err ? s->stall_err : ENOSPC));
  } else if (!on && --s->stalled == 0) {
    sink_unwatch(s);
    if (!quiet && s->stall_err != EAGAIN)
      report("info", "%s: writing again after %.1f s", s->path,
             (double)(now_ns() - s->stalled_since) / 1e9);
    s->stall_err = 0;
  }
}

static void stop_polling(orch_outpipe_t *o) {
  if (o->polling) uv_poll_stop(&o->poll);
  o->polling = 0;
}

static void on_retry(uv_timer_t *t);
static void retry_now(orch_outpipe_t *o);

static void wpoll_closed(uv_handle_t *h) { free(h); }

static void sink_unwatch(orch_sink_t *s) {
  if (!s->wpoll) return;
  uv_close((uv_handle_t *)s->wpoll, wpoll_closed);
  s->wpoll = NULL;
}

/* Retries every outpipe that holds bytes for s. */
static void wake_stalled(orch_sink_t *s) {
  for (orch_outpipe_t *o = open_outpipes; o; o = o->next)
    if (!o->closing && ((o->stall_on[0] && o->sink == s) || (o->stall_on[1] && o->combined == s)))
      retry_now(o);
}

static void on_writable(uv_poll_t *h, int status, int events) {
  (void)status; /* an error: the retry's write finds it */
  (void)events;
  uv_poll_stop(h);
  wake_stalled(h->data);
}

/* Watches s's fd until it is writable; 0, or -errno (then a timer must do). */
static int sink_watch(orch_sink_t *s, uv_loop_t *loop) {
  if (!s->wpoll) {
    uv_poll_t *p = malloc(sizeof *p);
    if (!p) return -ENOMEM;
    int rc = uv_poll_init(loop, p, s->fd);
    if (rc < 0) {
      free(p);
      return rc;
    }
    p->data = s;
    s->wpoll = p;
  }
  return uv_poll_start(s->wpoll, UV_WRITABLE, on_writable);
}

static void stall(orch_outpipe_t *o) {
  stop_polling(o);
  int timer = 0;
  for (int i = 0; i < 2; i++) {
    orch_sink_t *s = i ? o->combined : o->sink;
    stall_count(o, i, o->hold[i].len > 0, 0);
    if (o->hold[i].len > 0 && (s->stall_err != EAGAIN || sink_watch(s, o->poll.loop) < 0)) timer = 1;
  }
  if (timer && !uv_is_active((uv_handle_t *)&o->retry)) uv_timer_start(&o->retry, on_retry, RETRY_MS, 0);
}

/* Offers the held bytes again; last (closing): what is still refused is
 * dropped, counted. */
static void retry_held(orch_outpipe_t *o, int last) {
  for (int i = 0; i < 2; i++) {
    held_t *h = &o->hold[i];
    orch_sink_t *s = i ? o->combined : o->sink;
    if (h->len == 0) continue;
    size_t left = sink_put(s, h->buf, h->len, 1);
    if (left > 0 && last) {
      s->dropped += left;
      s->last_err = s->stall_err ? s->stall_err : ENOSPC;
      left = 0;
    }
    memmove(h->buf, h->buf + h->len - left, left);
    h->len = left;
    if (left == 0) {
      free(h->buf);
      *h = (held_t){0};
    }
  }
}

/* Formats the input kept raw, now that the sinks take bytes (it may be kept
 * again, in part, if they refuse some). */
static void replay_raw(orch_outpipe_t *o) {
  held_t r = o->raw;
  o->raw = (held_t){0};
  frame(o, r.buf, r.len);
  free(r.buf);
}

static void outpipe_close(orch_outpipe_t *o);
static void on_poll(uv_poll_t *h, int status, int events);

static void start_polling(orch_outpipe_t *o) {
  if (o->polling || o->eof || o->closing) return;
  if (uv_poll_start(&o->poll, UV_READABLE, on_poll) == 0) o->polling = 1;
  else outpipe_close(o); /* cannot happen with a valid handle */
}

static void on_retry(uv_timer_t *t) { retry_now(t->data); }

static void retry_now(orch_outpipe_t *o) {
  retry_held(o, 0);
  if (!refused(o) && o->raw.len > 0) replay_raw(o);
  /* At EOF, the unfinished line waited for the input before it. */
  if (!stalled(o) && o->eof) tails_flush(o);
  if (stalled(o)) {
    stall(o);
    return;
  }
  for (int i = 0; i < 2; i++) stall_count(o, i, 0, 0);
  if (!o->eof) start_polling(o);
  else if (o->released) outpipe_close(o);
}

/* ---- reading ---- */

static void at_eof(orch_outpipe_t *o) {
  o->eof = 1;
  stop_polling(o);
  tails_flush(o);
  if (stalled(o)) stall(o);
  else if (o->released) outpipe_close(o);
}

/* Reads and consumes up to budget bytes, less at EAGAIN, EOF or a stall. */
static void pump(orch_outpipe_t *o, size_t budget) {
  size_t got = 0;
  while (!o->eof && !o->closing && !stalled(o) && got < budget) {
    ssize_t n = read(o->fd, read_buf, sizeof read_buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) break;
    if (n <= 0) {
      at_eof(o); /* EOF; any other error ends the stream as well */
      return;
    }
    if (n >= PIPE_FULL && !o->grown) grow_pipe(o);
    consume(o, read_buf, (size_t)n);
    got += (size_t)n;
    /* A short read emptied the pipe: spare the read that says EAGAIN. */
    if ((size_t)n < sizeof read_buf) break;
  }
  if (stalled(o)) stall(o);
}

static void on_poll(uv_poll_t *h, int status, int events) {
  (void)events;
  orch_outpipe_t *o = (orch_outpipe_t *)h;
  if (status < 0) at_eof(o);
  else pump(o, TURN_BYTES);
}

static void outpipe_free(orch_outpipe_t *o) {
  if (o->sink) {
    o->sink->writers--;
    orch_sink_unref(o->sink);
  }
  if (o->combined) orch_sink_unref(o->combined);
  if (o->fd >= 0) close(o->fd);
  free(o->hold[0].buf);
  free(o->hold[1].buf);
  free(o->raw.buf);
  free(o->prefix);
  free(o->line);
  free(o->timestamp);
  free(o->json_mid);
  free(o->part);
  free(o);
}

static void on_handle_closed(uv_handle_t *h) {
  orch_outpipe_t *o = h->data;
  if (--o->open_handles > 0) return;
  for (orch_outpipe_t **pp = &open_outpipes; *pp; pp = &(*pp)->next)
    if (*pp == o) {
      *pp = o->next;
      break;
    }
  outpipe_free(o);
  if (!open_outpipes) {
    free(rec.buf);
    rec.buf = NULL;
    rec.len = rec.cap = 0;
  }
}

static void outpipe_close(orch_outpipe_t *o) {
  if (o->closing) return;
  o->closing = 1;
  stop_polling(o);
  /* A last chance for what waits for space; then it is dropped, counted. */
  retry_held(o, 1);
  if (o->raw.len > 0) {
    replay_raw(o);
    retry_held(o, 1);
    if (o->raw.len > 0) {
      o->sink->dropped += o->raw.len;
      o->sink->last_err = o->sink->stall_err ? o->sink->stall_err : ENOSPC;
      free(o->raw.buf);
      o->raw = (held_t){0};
    }
  }
  tails_flush(o);
  retry_held(o, 1);
  for (int i = 0; i < 2; i++) stall_count(o, i, 0, 1);
  uv_close((uv_handle_t *)&o->poll, on_handle_closed);
  uv_close((uv_handle_t *)&o->retry, on_handle_closed);
}

/* The constant middle of a JSON record: ","app":"NAME","id":N,"stream":"S","message":" */
static char *json_mid(const orch_line_format_t *f, size_t *len) {
  const char *app = f->json_app, *stream = f->json_stream ? f->json_stream : "";
  size_t alen = strlen(app), slen = strlen(stream);
  size_t cap = 64 + 6 * (alen + slen);
  size_t saved = rec.len;
  /* Borrow rec's escaping; rec holds no pending record between chunks. */
  if (rec_reserve(cap) < 0) return NULL;
  char num[24];
  int nlen = snprintf(num, sizeof num, "%d", f->json_id);
  rec_put("\",\"app\":\"", 9);
  rec_put_json(app, alen);
  rec_put("\",\"id\":", 7);
  rec_put(num, (size_t)nlen);
  rec_put(",\"stream\":\"", 11);
  rec_put_json(stream, slen);
  rec_put("\",\"message\":\"", 13);
  *len = rec.len - saved;
  char *m = malloc(*len);
  if (m) memcpy(m, rec.buf + saved, *len);
  rec.len = saved;
  return m;
}

static int outpipe_format(orch_outpipe_t *o, const orch_line_format_t *f) {
  if (!f || (!f->timestamp && !f->json_app)) return 0;
  o->framed = 1;
  const char *ts = f->timestamp;
  if (f->json_app) {
    o->json = 1;
    if (!ts) ts = ORCH_TIME_ISO8601;
    o->json_mid = json_mid(f, &o->json_mid_len);
    if (!o->json_mid) return -ENOMEM;
  }
  if (ts && !(o->timestamp = strdup(ts))) return -ENOMEM;
  return 0;
}

int orch_outpipe_start(uv_loop_t *loop, int fd, const orch_outpipe_opts_t *opts,
                       orch_outpipe_t **out) {
  orch_outpipe_t *o = calloc(1, sizeof *o);
  if (!o) {
    close(fd);
    return -ENOMEM;
  }
  o->fd = fd; /* closed by outpipe_free from here on */
  int rc = 0;
  /* No writer (no memory, no thread): no echo; the logs are what matter. */
  if (opts->echo_fd >= 0) o->echo = orch_echo_get(opts->echo_fd);
  o->prefix = strdup(opts->prefix ? opts->prefix : "");
  /* Only echoing outpipes (orch run) need it: 8 KiB each adds up. */
  if (o->echo) o->line = malloc(ECHO_LINE_MAX);
  if (!o->prefix || (o->echo && !o->line)) rc = -ENOMEM;
  if (rc == 0) rc = outpipe_format(o, opts->format);
  /* Also makes fd non-blocking. */
  if (rc == 0) rc = uv_poll_init(loop, &o->poll, fd);
  if (rc < 0) {
    outpipe_free(o);
    return rc;
  }
  uv_timer_init(loop, &o->retry);
  o->poll.data = o->retry.data = o;
  o->open_handles = 2;
  o->prefix_len = strlen(o->prefix);
  o->sink = opts->sink;
  orch_sink_ref(o->sink);
  o->sink->writers++;
  if (opts->combined) {
    o->combined = opts->combined;
    orch_sink_ref(o->combined);
  }
  /* From here on the handles are in the loop: only uv_close may free them. */
  o->next = open_outpipes;
  open_outpipes = o;
  static orch_owner_t owner = {"log pipes", orch_outpipes_close_all, NULL, 0};
  orch_owner_add(&owner);
  start_polling(o);
  if (o->closing) return -EIO;
  *out = o;
  return 0;
}

void orch_outpipe_drain(orch_outpipe_t *o) {
  /* Bounded: a grandchild that holds the pipe may write on forever. */
  pump(o, 4 * (size_t)pipe_big());
}

void orch_outpipe_release(orch_outpipe_t *o) {
  o->released = 1;
  if (o->eof && !stalled(o)) outpipe_close(o);
}

void orch_outpipes_close_all(void) {
  for (orch_outpipe_t *o = open_outpipes; o; o = o->next) outpipe_close(o);
}
