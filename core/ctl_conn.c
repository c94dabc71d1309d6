/* ctl_conn.c: a connection of the control socket (see ctl.h): line
 * framing, queued replies, refusals, and what the owner of a connection may
 * do with it. The server (accepting, limits over time) is in ctl.c.
 *
 * A connection struct lives until its handle is closed and, once handed to
 * the owner, until the owner releases it. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <stddef.h>
#include <string.h>

#include "orch/ctl_impl.h"

typedef struct {
  uv_write_t req;
  char data[];
} write_req_t;

/* Reads land here; a read that starts while a line is being dispatched (a
 * callback that runs the loop) gets its own buffer instead. */
static char read_buf[65536];
static int read_buf_busy;

/* Request bytes held by every connection (their buffers' capacity). */
static size_t buffered_total;

static void drop_input(orch_ctl_conn_t *c) {
  buffered_total -= c->cap;
  free(c->buf);
  c->buf = NULL;
  c->off = c->len = c->cap = c->tail = 0;
}

static void conn_free(orch_ctl_conn_t *c) {
  orch_ctl_server_t *s = c->srv;
  if (c->prev) c->prev->next = c->next;
  else s->conns = c->next;
  if (c->next) c->next->prev = c->prev;
  drop_input(c);
  free(c);
  orch__ctl_server_unref(s);
}

static void on_conn_closed(uv_handle_t *h) {
  orch_ctl_conn_t *c = (orch_ctl_conn_t *)h;
  if (c->handed && !c->released && c->srv->h.on_close)
    c->srv->h.on_close(c, c->srv->h.data); /* may release c */
  c->closed = 1;
  if (c->released || !c->handed) conn_free(c);
}

/* The descriptor goes at once (uv_close closes it before the callback), so
 * the count of live connections drops here. */
void orch__ctl_conn_close_now(orch_ctl_conn_t *c) {
  c->closing = 1;
  if (c->counted) {
    c->counted = 0;
    c->srv->live--;
  }
  drop_input(c);
  if (!uv_is_closing((uv_handle_t *)&c->pipe))
    uv_close((uv_handle_t *)&c->pipe, on_conn_closed);
}

static int error_line(char *line, size_t size, const char *code, const char *msg) {
  int n = snprintf(line, size,
                   "{\"id\":null,\"ok\":false,\"error\":{\"code\":\"%s\","
                   "\"message\":\"%s\"}}\n",
                   code, msg);
  return n > 0 && (size_t)n < size ? n : 0;
}

static int paused(const orch_ctl_conn_t *c) {
  return c->busy >= c->srv->h.max_busy || orch__ctl_queued(c) >= c->srv->h.max_queued;
}

static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf);
static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf);

/* Reads while requests may be taken (or a refused peer's input dropped). */
void orch__ctl_conn_set_reading(orch_ctl_conn_t *c) {
  if (uv_is_closing((uv_handle_t *)&c->pipe)) return;
  int want = c->lingering || (!c->closing && !paused(c));
  if (want == c->reading) return;
  if (!want) {
    uv_read_stop((uv_stream_t *)&c->pipe);
    c->reading = 0;
  } else if (uv_read_start((uv_stream_t *)&c->pipe, on_alloc, on_read) == 0) {
    c->reading = 1;
  } else {
    orch__ctl_conn_close_now(c);
  }
}

static void on_shutdown(uv_shutdown_t *req, int status) {
  (void)status; /* the linger (or EOF) ends the connection */
  free(req);
}

static void on_written(uv_write_t *req, int status);

static int conn_write(orch_ctl_conn_t *c, const char *buf, size_t n) {
  if (n > UINT_MAX) return UV_E2BIG; /* a uv_buf_t holds an unsigned length */
  write_req_t *w = malloc(sizeof *w + n);
  if (!w) return UV_ENOMEM;
  memcpy(w->data, buf, n);
  uv_buf_t b = uv_buf_init(w->data, (unsigned)n);
  int rc = uv_write(&w->req, (uv_stream_t *)&c->pipe, &b, 1, on_written);
  if (rc < 0) free(w);
  return rc;
}

/* Sends a last error line, shuts down the write side, and drops input until
 * the peer's EOF or the linger's end. */
void orch__ctl_conn_refuse(orch_ctl_conn_t *c, const char *code, const char *msg) {
  char line[512];
  int n = error_line(line, sizeof line, code, msg);
  c->closing = 1;
  c->lingering = 1;
  c->since = orch__ctl_now_ms(c);
  drop_input(c);
  if (n > 0) conn_write(c, line, (size_t)n);
  uv_shutdown_t *req = malloc(sizeof *req);
  if (!req || uv_shutdown(req, (uv_stream_t *)&c->pipe, on_shutdown) < 0) {
    free(req);
    orch__ctl_conn_close_now(c);
    return;
  }
  orch__ctl_conn_set_reading(c);
}

/* Sends an error line if the socket takes it now, and closes at once: to
 * give back a descriptor or memory without waiting for the peer. */
void orch__ctl_conn_refuse_now(orch_ctl_conn_t *c, const char *code, const char *msg) {
  char line[512];
  int n = error_line(line, sizeof line, code, msg);
  if (n > 0 && orch__ctl_queued(c) == 0) {
    uv_buf_t b = uv_buf_init(line, (unsigned)n);
    (void)uv_try_write((uv_stream_t *)&c->pipe, &b, 1); /* best effort */
  }
  orch__ctl_conn_close_now(c);
}

static void too_long(orch_ctl_conn_t *c) {
  char msg[80];
  snprintf(msg, sizeof msg, "request line longer than %zu bytes",
           c->srv->h.max_line);
  orch__ctl_conn_refuse(c, "E2BIG", msg);
}

/* Holds p[0, n) after the input not dispatched yet. Fails (and refuses the
 * connection) when the unfinished line passes max_line, or when the bytes
 * held across all connections would pass max_buffered. */
static int hold(orch_ctl_conn_t *c, const char *p, size_t n) {
  const orch_ctl_handlers_t *h = &c->srv->h;
  const char *first = memchr(p, '\n', n);
  if (c->tail + (first ? (size_t)(first - p) : n) > h->max_line + 1) {
    too_long(c);
    return -1;
  }
  const char *last = first ? memrchr(p, '\n', n) : NULL;
  size_t tail = last ? n - (size_t)(last - p) - 1 : c->tail + n;
  if (tail > h->max_line + 1) {
    too_long(c);
    return -1;
  }
  if (c->off > 0) {
    memmove(c->buf, c->buf + c->off, c->len - c->off);
    c->len -= c->off;
    c->off = 0;
  }
  if (c->len + n > c->cap) {
    size_t cap = c->cap ? c->cap : 4096;
    while (cap < c->len + n) cap *= 2;
    char *nb = NULL;
    if (buffered_total - c->cap + cap <= h->max_buffered) nb = realloc(c->buf, cap);
    if (!nb) {
      char msg[128];
      snprintf(msg, sizeof msg,
               "the daemon holds %zu bytes of unfinished requests, its limit; "
               "try again",
               buffered_total);
      orch__ctl_conn_refuse_now(c, "EBUSY", msg);
      return -1;
    }
    buffered_total += cap - c->cap;
    c->buf = nb;
    c->cap = cap;
  }
  memcpy(c->buf + c->len, p, n);
  c->len += n;
  c->tail = tail;
  return 0;
}

static void dispatch(orch_ctl_conn_t *c, const char *line, size_t len) {
  if (len > 0 && line[len - 1] == '\r') len--;
  if (len > c->srv->h.max_line) {
    too_long(c);
    return;
  }
  if (!c->handed) { /* from now on the owner has it, until it releases it */
    c->handed = 1;
    c->released = 0;
  }
  c->srv->h.on_line(c, line, len, c->srv->h.data);
}

/* Dispatches the held complete lines while the connection takes requests.
 * A line is passed from buf; a read during the call (a callback that runs
 * the loop) only appends to buf, and the loop below sees it. */
static void pump(orch_ctl_conn_t *c) {
  if (c->dispatching) return;
  c->dispatching = 1;
  while (!c->closing && c->off < c->len && !paused(c)) {
    char *p = c->buf + c->off;
    char *nl = memchr(p, '\n', c->len - c->off - c->tail);
    if (!nl) break;
    c->off += (size_t)(nl - p) + 1;
    dispatch(c, p, (size_t)(nl - p));
  }
  c->dispatching = 0;
  if (c->off == c->len && c->cap > 65536) drop_input(c); /* an idle connection stays small */
  else if (c->off == c->len) c->off = c->len = 0;
}

/* Splits input into lines. Complete lines are passed straight from the read
 * buffer while nothing is held; the rest (a tail without '\n', or lines that
 * must wait) is held. */
static void feed(orch_ctl_conn_t *c, const char *p, size_t n) {
  c->active = orch__ctl_now_ms(c);
  if (c->off == c->len && !c->dispatching) {
    c->dispatching = 1;
    while (n > 0 && !c->closing && !paused(c)) {
      const char *nl = memchr(p, '\n', n);
      if (!nl) break;
      size_t seg = (size_t)(nl - p);
      p = nl + 1;
      n -= seg + 1;
      dispatch(c, nl - seg, seg);
    }
    c->dispatching = 0;
  }
  if (n > 0 && !c->closing && hold(c, p, n) < 0) return;
  pump(c);
  orch__ctl_conn_set_reading(c);
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  (void)h;
  (void)hint;
  if (!read_buf_busy) {
    read_buf_busy = 1;
    *buf = uv_buf_init(read_buf, sizeof read_buf);
    return;
  }
  char *p = malloc(sizeof read_buf);
  *buf = uv_buf_init(p, p ? sizeof read_buf : 0); /* 0: libuv reports ENOBUFS */
}

static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf) {
  orch_ctl_conn_t *c = (orch_ctl_conn_t *)st;
  if (n < 0) orch__ctl_conn_close_now(c); /* EOF or error; a partial line is dropped */
  else if (n > 0 && !c->closing) feed(c, buf->base, (size_t)n);
  if (buf->base == read_buf) read_buf_busy = 0;
  else free(buf->base);
}

static void on_kick(uv_idle_t *h) {
  orch_ctl_server_t *s = (orch_ctl_server_t *)((char *)h - offsetof(orch_ctl_server_t, kick));
  uv_idle_stop(h);
  s->kicking = 0;
  for (orch_ctl_conn_t *c = s->conns, *next; c; c = next) {
    next = c->next;
    if (!c->want_kick) continue;
    c->want_kick = 0;
    if (c->closing) continue;
    pump(c);
    orch__ctl_conn_set_reading(c);
  }
}

/* Held lines are dispatched from the loop, not from the caller (who may be
 * in the middle of answering another request). */
static void kick(orch_ctl_conn_t *c) {
  orch_ctl_server_t *s = c->srv;
  if (c->closing) return;
  if (c->off == c->len || s->closed) {
    orch__ctl_conn_set_reading(c);
    return;
  }
  c->want_kick = 1;
  if (!s->kicking && uv_idle_start(&s->kick, on_kick) == 0) s->kicking = 1;
}

static void on_written(uv_write_t *req, int status) {
  orch_ctl_conn_t *c = (orch_ctl_conn_t *)req->handle;
  free(req);
  /* A peer that went away mid-reply: close quietly, the daemon carries on. */
  if (status < 0) {
    if (status != UV_ECANCELED) orch__ctl_conn_close_now(c);
    return;
  }
  c->active = orch__ctl_now_ms(c);
  if (!c->closing && !c->reading && !paused(c)) kick(c);
}

int orch_ctl_conn_send(orch_ctl_conn_t *c, const char *buf, size_t n) {
  if (c->closing) return UV_EPIPE;
  if (n == 0) return 0;
  int rc = conn_write(c, buf, n);
  if (rc < 0) return rc;
  size_t q = orch__ctl_queued(c);
  if (q > c->srv->h.max_queued_hard) {
    fprintf(stderr,
            "orch: control socket: closing the connection of pid %ld: "
            "%zu reply bytes unread\n",
            (long)c->pid, q);
    orch__ctl_conn_close_now(c);
    return UV_ENOBUFS;
  }
  if (c->reading && paused(c)) orch__ctl_conn_set_reading(c);
  return 0;
}

void orch_ctl_conn_busy(orch_ctl_conn_t *c, int delta) {
  if (delta < 0 && (unsigned)-delta > c->busy) c->busy = 0;
  else c->busy += (unsigned)delta;
  if (c->closing) return;
  if (delta < 0) kick(c);
  else if (c->reading && paused(c)) orch__ctl_conn_set_reading(c);
}

void orch_ctl_conn_close(orch_ctl_conn_t *c) { orch__ctl_conn_close_now(c); }

/* The queue is written (or the peer went away): the connection goes. A
 * cancel comes from a close already under way. */
static void on_finished(uv_shutdown_t *req, int status) {
  orch_ctl_conn_t *c = (orch_ctl_conn_t *)req->handle;
  free(req);
  if (status != UV_ECANCELED) orch__ctl_conn_close_now(c);
}

void orch_ctl_conn_finish(orch_ctl_conn_t *c) {
  if (c->closing) return;
  c->closing = 1;
  drop_input(c);
  orch__ctl_conn_set_reading(c); /* stops: closing */
  uv_shutdown_t *req = malloc(sizeof *req);
  if (!req || uv_shutdown(req, (uv_stream_t *)&c->pipe, on_finished) < 0) {
    free(req);
    orch__ctl_conn_close_now(c);
  }
}
int orch_ctl_conn_closed(const orch_ctl_conn_t *c) { return c->closing; }

size_t orch_ctl_conn_pending(const orch_ctl_conn_t *c) {
  return c->closed ? 0 : orch__ctl_queued(c);
}

void orch_ctl_conn_peer(const orch_ctl_conn_t *c, pid_t *pid, uid_t *uid) {
  *pid = c->pid;
  *uid = c->uid;
}

void orch_ctl_conn_set_data(orch_ctl_conn_t *c, void *data) { c->data = data; }
void *orch_ctl_conn_data(const orch_ctl_conn_t *c) { return c->data; }

void orch_ctl_conn_release(orch_ctl_conn_t *c) {
  if (c->released) return;
  c->released = 1;
  if (c->closed) conn_free(c);
  else orch__ctl_conn_close_now(c);
}
