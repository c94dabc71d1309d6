/* sink.c: append-only log files and the child pipes that feed them. */
#include "orch/sink.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

struct orch_sink_s {
  int fd; /* -1: discard */
  int refs;
  int last_err;
  uint64_t written, dropped;
  char path[];
};

/* Lines longer than this are echoed in pieces rather than held back. */
#define ECHO_LINE_MAX 8192

struct orch_outpipe_s {
  uv_pipe_t pipe;
  struct orch_outpipe_s *next; /* every open outpipe, for shutdown */
  orch_sink_t *sink;
  int echo_fd;
  int released, closing;
  size_t prefix_len, held;
  char *prefix;
  char line[ECHO_LINE_MAX]; /* the unterminated tail of the echo stream */
};

/* Every outpipe reads into this buffer: read callbacks run one at a time and
 * copy the bytes out before returning, so one buffer serves them all. */
static char read_buf[65536];

static orch_outpipe_t *open_outpipes;

int orch_sink_open(const char *path, orch_sink_t **out) {
  size_t len = path ? strlen(path) : 0;
  orch_sink_t *s = calloc(1, sizeof *s + len + 1);
  if (!s) return -ENOMEM;
  s->refs = 1;
  s->fd = -1;
  if (path) {
    memcpy(s->path, path, len + 1);
    s->fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    if (s->fd < 0) {
      int err = errno;
      free(s);
      return -err;
    }
  }
  *out = s;
  return 0;
}

void orch_sink_ref(orch_sink_t *s) { s->refs++; }

void orch_sink_unref(orch_sink_t *s) {
  if (--s->refs > 0) return;
  if (s->fd >= 0) close(s->fd);
  free(s);
}

void orch_sink_write(orch_sink_t *s, const char *buf, size_t n) {
  if (s->fd < 0) return;
  while (n > 0) {
    ssize_t w = write(s->fd, buf, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      /* Full disk or I/O error: the child must not block and orch must not
       * die, so the bytes are counted and the error kept for reporting. */
      s->last_err = w < 0 ? errno : ENOSPC;
      s->dropped += n;
      return;
    }
    s->written += (uint64_t)w;
    buf += w;
    n -= (size_t)w;
  }
}

const char *orch_sink_path(const orch_sink_t *s) { return s->path; }

void orch_sink_stats(const orch_sink_t *s, uint64_t *written, uint64_t *dropped,
                     int *last_err) {
  *written = s->written;
  *dropped = s->dropped;
  *last_err = s->last_err;
}

/* ---- outpipes ---- */

static void write_all(int fd, struct iovec *iov, int cnt) {
  while (cnt > 0) {
    ssize_t w = writev(fd, iov, cnt);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) return; /* a closed terminal is not the app's problem */
    while (cnt > 0 && (size_t)w >= iov->iov_len) {
      w -= (ssize_t)iov->iov_len;
      iov++;
      cnt--;
    }
    if (cnt > 0) {
      iov->iov_base = (char *)iov->iov_base + w;
      iov->iov_len -= (size_t)w;
    }
  }
}

static void echo_line(orch_outpipe_t *o, const char *a, size_t alen,
                      const char *b, size_t blen) {
  struct iovec iov[4] = {{o->prefix, o->prefix_len},
                         {(void *)a, alen},
                         {(void *)b, blen},
                         {"\n", 1}};
  int last = blen > 0 && b[blen - 1] == '\n';
  if (!last && alen > 0 && blen == 0 && a[alen - 1] == '\n') last = 1;
  write_all(o->echo_fd, iov, last ? 3 : 4);
}

/* Echoes whole lines, each in one write so that lines of different processes
 * never interleave; the unterminated tail waits for the next chunk. */
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

static void echo_flush(orch_outpipe_t *o) {
  if (o->echo_fd >= 0 && o->held > 0) echo_line(o, o->line, o->held, "", 0);
  o->held = 0;
}

static void consume(orch_outpipe_t *o, const char *buf, size_t n) {
  orch_sink_write(o->sink, buf, n);
  if (o->echo_fd >= 0) echo(o, buf, n);
}

static void on_outpipe_closed(uv_handle_t *h) {
  orch_outpipe_t *o = (orch_outpipe_t *)h;
  for (orch_outpipe_t **pp = &open_outpipes; *pp; pp = &(*pp)->next)
    if (*pp == o) {
      *pp = o->next;
      break;
    }
  orch_sink_unref(o->sink);
  free(o->prefix);
  free(o);
}

static void outpipe_close(orch_outpipe_t *o) {
  if (o->closing) return;
  o->closing = 1;
  echo_flush(o);
  uv_close((uv_handle_t *)&o->pipe, on_outpipe_closed);
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  (void)h;
  (void)hint;
  *buf = uv_buf_init(read_buf, sizeof read_buf);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
  orch_outpipe_t *o = (orch_outpipe_t *)s;
  if (n > 0) consume(o, buf->base, (size_t)n);
  else if (n < 0) {
    /* EOF: every writer is gone. Until released, the owner may still drain. */
    uv_read_stop(s);
    if (o->released) outpipe_close(o);
    else echo_flush(o);
  }
}

int orch_outpipe_start(uv_loop_t *loop, int fd, orch_sink_t *sink, int echo_fd,
                       const char *prefix, orch_outpipe_t **out) {
  orch_outpipe_t *o = calloc(1, sizeof *o);
  if (!o) return -ENOMEM;
  o->prefix = strdup(prefix ? prefix : "");
  if (!o->prefix) {
    free(o);
    return -ENOMEM;
  }
  o->prefix_len = strlen(o->prefix);
  o->echo_fd = echo_fd;
  int rc = uv_pipe_init(loop, &o->pipe, 0);
  if (rc == 0) rc = uv_pipe_open(&o->pipe, fd);
  if (rc < 0) {
    free(o->prefix);
    free(o);
    return rc;
  }
  o->next = open_outpipes;
  open_outpipes = o;
  o->sink = sink;
  orch_sink_ref(sink);
  rc = uv_read_start((uv_stream_t *)&o->pipe, on_alloc, on_read);
  if (rc < 0) {
    outpipe_close(o);
    return rc;
  }
  *out = o;
  return 0;
}

void orch_outpipe_drain(orch_outpipe_t *o) {
  if (o->closing) return;
  int fd;
  if (uv_fileno((uv_handle_t *)&o->pipe, &fd) < 0) return;
  for (;;) {
    ssize_t n = read(fd, read_buf, sizeof read_buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break; /* EAGAIN: the rest, if any, comes by event */
    consume(o, read_buf, (size_t)n);
  }
}

void orch_outpipe_release(orch_outpipe_t *o) {
  o->released = 1;
  if (!uv_is_active((uv_handle_t *)&o->pipe)) outpipe_close(o);
}

void orch_outpipes_close_all(void) {
  for (orch_outpipe_t *o = open_outpipes; o; o = o->next) outpipe_close(o);
}
