/* ctl.c: the control socket server: accept, peer check, line framing,
 * queued replies, and the limits that keep clients from making the daemon
 * hold unbounded memory or descriptors (see ctl.h).
 *
 * Lifetimes: a server struct lives while its handles (listener, sweep timer,
 * kick) are open or any of its connections exists (refs), so that its
 * handlers stay valid for connections that outlive server_close. A connection struct lives until its handle is
 * closed and, once handed to the owner, until the owner releases it. */
#include "orch/ctl.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "orch/owners.h"
#include "orch/unixsock.h"

struct orch_ctl_server_s {
  uv_pipe_t pipe;
  uv_timer_t sweep; /* idle and linger timeouts */
  uv_idle_t kick;   /* resumes connections whose requests waited */
  orch_ctl_handlers_t h;
  int refs; /* 1 per open handle of the server (until its close callback), 1 per connection */
  int closed;
  int kicking;
  unsigned live; /* connections holding a descriptor */
  dev_t dev;     /* the socket file we created, so close removes only that one */
  ino_t ino;
  struct orch_ctl_server_s *next; /* every server not yet freed */
  struct orch_ctl_conn_s *conns;
  char path[];
};

struct orch_ctl_conn_s {
  uv_pipe_t pipe;
  orch_ctl_server_t *srv;
  struct orch_ctl_conn_s *prev, *next; /* srv->conns */
  void *data;
  char *buf;        /* input not dispatched yet: buf[off, len) */
  size_t off, len, cap;
  size_t tail;      /* of it, the bytes after the last '\n' */
  size_t last_q;    /* write queue size at the last sweep */
  uint64_t active;  /* loop time of the last progress (bytes in, bytes out) */
  uint64_t since;   /* loop time of the refusal, for the linger */
  unsigned busy;    /* requests the owner works on */
  pid_t pid;
  uid_t uid;
  unsigned handed : 1;      /* on_line was called: the owner knows it */
  unsigned closing : 1;     /* no more input, no more sends */
  unsigned closed : 1;      /* the handle's close callback has run */
  unsigned released : 1;    /* the owner is done with it (or never had it) */
  unsigned reading : 1;     /* uv_read_start is in force */
  unsigned dispatching : 1; /* pump() is running for it */
  unsigned lingering : 1;   /* refused: input is read and dropped until EOF */
  unsigned counted : 1;     /* holds a descriptor, counted in srv->live */
  unsigned want_kick : 1;   /* held lines wait for the kick */
};

typedef struct {
  uv_write_t req;
  char data[];
} write_req_t;

static orch_ctl_server_t *servers;

/* Reads land here; a read that starts while a line is being dispatched (a
 * callback that runs the loop) gets its own buffer instead. */
static char read_buf[65536];
static int read_buf_busy;

/* Request bytes held by every connection (their buffers' capacity). */
static size_t buffered_total;

/* A refused connection's input is read and dropped this long, so that its
 * peer gets to read the error before the connection ends (a close with
 * unread input would reset it, and its send would fail with EPIPE). */
#define LINGER_MS 1000

/* Accept errors are logged once per run of failures, not once per attempt. */
static int accept_failing;

static void server_unref(orch_ctl_server_t *s) {
  if (--s->refs > 0) return;
  for (orch_ctl_server_t **pp = &servers; *pp; pp = &(*pp)->next)
    if (*pp == s) {
      *pp = s->next;
      break;
    }
  if (s->h.on_free) s->h.on_free(s->h.data);
  free(s);
}

/* ---- connections ---- */

static size_t queued(const orch_ctl_conn_t *c) {
  return uv_stream_get_write_queue_size((const uv_stream_t *)&c->pipe);
}

static uint64_t now_ms(const orch_ctl_conn_t *c) { return uv_now(c->pipe.loop); }

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
  server_unref(s);
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
static void conn_close_now(orch_ctl_conn_t *c) {
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
  return c->busy >= c->srv->h.max_busy || queued(c) >= c->srv->h.max_queued;
}

static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf);
static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf);

/* Reads while requests may be taken (or a refused peer's input dropped). */
static void set_reading(orch_ctl_conn_t *c) {
  if (uv_is_closing((uv_handle_t *)&c->pipe)) return;
  int want = c->lingering || (!c->closing && !paused(c));
  if (want == c->reading) return;
  if (!want) {
    uv_read_stop((uv_stream_t *)&c->pipe);
    c->reading = 0;
  } else if (uv_read_start((uv_stream_t *)&c->pipe, on_alloc, on_read) == 0) {
    c->reading = 1;
  } else {
    conn_close_now(c);
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
static void conn_refuse(orch_ctl_conn_t *c, const char *code, const char *msg) {
  char line[512];
  int n = error_line(line, sizeof line, code, msg);
  c->closing = 1;
  c->lingering = 1;
  c->since = now_ms(c);
  drop_input(c);
  if (n > 0) conn_write(c, line, (size_t)n);
  uv_shutdown_t *req = malloc(sizeof *req);
  if (!req || uv_shutdown(req, (uv_stream_t *)&c->pipe, on_shutdown) < 0) {
    free(req);
    conn_close_now(c);
    return;
  }
  set_reading(c);
}

/* Sends an error line if the socket takes it now, and closes at once: to
 * give back a descriptor or memory without waiting for the peer. */
static void conn_refuse_now(orch_ctl_conn_t *c, const char *code, const char *msg) {
  char line[512];
  int n = error_line(line, sizeof line, code, msg);
  if (n > 0 && queued(c) == 0) {
    uv_buf_t b = uv_buf_init(line, (unsigned)n);
    (void)uv_try_write((uv_stream_t *)&c->pipe, &b, 1); /* best effort */
  }
  conn_close_now(c);
}

static void too_long(orch_ctl_conn_t *c) {
  char msg[80];
  snprintf(msg, sizeof msg, "request line longer than %zu bytes",
           c->srv->h.max_line);
  conn_refuse(c, "E2BIG", msg);
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
      conn_refuse_now(c, "EBUSY", msg);
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
  c->active = now_ms(c);
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
  set_reading(c);
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
  if (n < 0) conn_close_now(c); /* EOF or error; a partial line is dropped */
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
    set_reading(c);
  }
}

/* Held lines are dispatched from the loop, not from the caller (who may be
 * in the middle of answering another request). */
static void kick(orch_ctl_conn_t *c) {
  orch_ctl_server_t *s = c->srv;
  if (c->closing) return;
  if (c->off == c->len || s->closed) {
    set_reading(c);
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
    if (status != UV_ECANCELED) conn_close_now(c);
    return;
  }
  c->active = now_ms(c);
  if (!c->closing && !c->reading && !paused(c)) kick(c);
}

/* ---- limits over time ---- */

static void on_sweep(uv_timer_t *t) {
  orch_ctl_server_t *s = (orch_ctl_server_t *)((char *)t - offsetof(orch_ctl_server_t, sweep));
  for (orch_ctl_conn_t *c = s->conns, *next; c; c = next) {
    next = c->next;
    if (uv_is_closing((uv_handle_t *)&c->pipe)) continue;
    uint64_t now = now_ms(c);
    if (c->lingering) {
      if (now - c->since >= LINGER_MS) conn_close_now(c);
      continue;
    }
    size_t q = queued(c);
    if (q < c->last_q) c->active = now;
    c->last_q = q;
    if (now - c->active < s->h.idle_ms) continue;
    char msg[128];
    if (q > 0) {
      fprintf(stderr,
              "orch: control socket: closing the connection of pid %ld: "
              "%zu reply bytes unread for %u ms\n",
              (long)c->pid, q, s->h.idle_ms);
      conn_close_now(c);
    } else if (c->busy == 0 && (!c->handed || c->len > c->off)) {
      snprintf(msg, sizeof msg, "no complete request line within %u ms",
               s->h.idle_ms);
      conn_refuse_now(c, "ETIMEDOUT", msg);
    }
  }
}

static unsigned conn_limit(const orch_ctl_server_t *s) {
  if (s->h.max_conns) return s->h.max_conns;
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur == RLIM_INFINITY) return 1024;
  rlim_t n = rl.rlim_cur / 4;
  return n < 8 ? 8 : n > 1024 ? 1024 : (unsigned)n;
}

/* Makes room for one more connection: closes the least recently active one
 * that has no request in progress. 0, or -1 when every one is busy. */
static int make_room(orch_ctl_server_t *s, orch_ctl_conn_t *except) {
  orch_ctl_conn_t *victim = NULL;
  for (orch_ctl_conn_t *c = s->conns; c; c = c->next) {
    if (c == except || !c->counted || c->busy > 0) continue;
    if (c->lingering) { /* already on its way out */
      victim = c;
      break;
    }
    if (!victim || c->active < victim->active) victim = c;
  }
  if (!victim) return -1;
  if (victim->lingering) {
    conn_close_now(victim);
    return 0;
  }
  char msg[128];
  snprintf(msg, sizeof msg,
           "closed to make room for a new connection (at most %u)",
           conn_limit(s));
  conn_refuse_now(victim, "EBUSY", msg);
  return 0;
}

/* ---- accepting ---- */

/* Used to take a connection off libuv's hands when no memory is left for a
 * real one: an accepted-but-unclaimed connection stops the listener. */
static uv_pipe_t spare;
static int spare_busy;

static void on_spare_closed(uv_handle_t *h) {
  (void)h;
  spare_busy = 0;
}

static void accept_error(int err) {
  if (accept_failing) return;
  accept_failing = 1;
  fprintf(stderr,
          "orch: control socket: accept: %s (connections are dropped; "
          "logged once until one succeeds)\n",
          uv_strerror(err));
}

static void on_connection(uv_stream_t *ls, int status) {
  orch_ctl_server_t *s = (orch_ctl_server_t *)ls;
  if (status < 0) {
    /* EMFILE and friends: libuv has already dropped the pending
     * connections (its spare-fd trick), so this cannot spin. */
    accept_error(status);
    return;
  }
  orch_ctl_conn_t *c = calloc(1, sizeof *c);
  if (!c) {
    accept_error(UV_ENOMEM);
    if (!spare_busy && uv_pipe_init(ls->loop, &spare, 0) == 0) {
      spare_busy = 1;
      uv_accept(ls, (uv_stream_t *)&spare);
      uv_close((uv_handle_t *)&spare, on_spare_closed);
    }
    return;
  }
  c->srv = s;
  c->released = 1; /* nobody owns it until it is handed over */
  s->refs++;
  c->next = s->conns;
  if (s->conns) s->conns->prev = c;
  s->conns = c;
  uv_pipe_init(ls->loop, &c->pipe, 0); /* cannot fail for ipc = 0 */
  c->active = now_ms(c);
  int rc = uv_accept(ls, (uv_stream_t *)&c->pipe);
  if (rc < 0) {
    accept_error(rc);
    conn_close_now(c);
    return;
  }
  accept_failing = 0;
  c->counted = 1;
  s->live++;

  int fd;
  struct ucred cred;
  socklen_t len = sizeof cred;
  if (uv_fileno((uv_handle_t *)&c->pipe, &fd) < 0 ||
      getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
    conn_close_now(c); /* a peer we cannot identify is not let in */
    return;
  }
  c->pid = cred.pid;
  c->uid = cred.uid;
  uid_t me = geteuid();
  if (cred.uid != me && cred.uid != 0) {
    char msg[128];
    snprintf(msg, sizeof msg, "uid %u may not use this orch (owner uid %u)",
             (unsigned)cred.uid, (unsigned)me);
    conn_refuse(c, "EPERM", msg);
    return;
  }
  if (s->live > conn_limit(s) && make_room(s, c) < 0) {
    char msg[128];
    snprintf(msg, sizeof msg,
             "too many connections (%u), each with a request in progress",
             conn_limit(s));
    conn_refuse_now(c, "EBUSY", msg);
    return;
  }
  set_reading(c);
}

/* ---- the server ---- */

static void on_listener_closed(uv_handle_t *h) { server_unref((orch_ctl_server_t *)h); }

static void on_sweep_closed(uv_handle_t *h) {
  server_unref((orch_ctl_server_t *)((char *)h - offsetof(orch_ctl_server_t, sweep)));
}

static void on_kick_closed(uv_handle_t *h) {
  server_unref((orch_ctl_server_t *)((char *)h - offsetof(orch_ctl_server_t, kick)));
}

int orch_ctl_listen(uv_loop_t *loop, const char *path,
                    const orch_ctl_handlers_t *h, orch_ctl_server_t **out) {
  size_t plen = strlen(path);
  orch_ctl_server_t *s = calloc(1, sizeof *s + plen + 1);
  if (!s) return UV_ENOMEM;
  memcpy(s->path, path, plen + 1);
  s->h = *h;
  if (!s->h.max_line) s->h.max_line = ORCH_CTL_MAX_LINE_DEFAULT;
  if (!s->h.max_queued) s->h.max_queued = ORCH_CTL_MAX_QUEUED_DEFAULT;
  if (!s->h.max_queued_hard) s->h.max_queued_hard = ORCH_CTL_MAX_QUEUED_HARD_DEFAULT;
  if (!s->h.max_buffered) s->h.max_buffered = ORCH_CTL_MAX_BUFFERED_DEFAULT;
  if (!s->h.max_busy) s->h.max_busy = ORCH_CTL_MAX_BUSY_DEFAULT;
  if (!s->h.idle_ms) s->h.idle_ms = ORCH_CTL_IDLE_MS_DEFAULT;

  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) {
    int err = errno;
    free(s);
    return -err;
  }
  int rc = orch_unix_bind(fd, path, ORCH_UNIX_REPLACE | ORCH_UNIX_PRIVATE);
  struct stat st;
  if (rc == 0) rc = stat(path, &st) < 0 ? -errno : 0;
  if (rc < 0) {
    close(fd);
    free(s);
    return rc;
  }
  s->dev = st.st_dev;
  s->ino = st.st_ino;
  uv_pipe_init(loop, &s->pipe, 0);
  uv_timer_init(loop, &s->sweep);
  uv_idle_init(loop, &s->kick);
  s->refs = 3;
  s->next = servers;
  servers = s;
  static orch_owner_t owner = {"control sockets", orch_ctl_close_all, NULL, 0};
  orch_owner_add(&owner);
  /* Timeouts are checked at a tenth of the idle time (at least every 10 ms,
   * at most every second); the timer alone keeps no loop alive. */
  uint64_t every = s->h.idle_ms / 10;
  every = every < 10 ? 10 : every > 1000 ? 1000 : every;
  uv_timer_start(&s->sweep, on_sweep, every, every);
  uv_unref((uv_handle_t *)&s->sweep);
  rc = uv_pipe_open(&s->pipe, fd);
  if (rc < 0) close(fd); /* not the pipe's yet */
  if (rc == 0) rc = uv_listen((uv_stream_t *)&s->pipe, 511, on_connection);
  if (rc < 0) {
    s->h.on_free = NULL; /* the caller keeps its data on failure */
    orch_ctl_server_close(s);
    return rc;
  }
  *out = s;
  return 0;
}

void orch_ctl_server_close(orch_ctl_server_t *s) {
  if (s->closed) return;
  s->closed = 1;
  /* Remove the file only if it is still the one we bound: a newer daemon
   * may already have replaced it. */
  struct stat st;
  if (lstat(s->path, &st) == 0 && st.st_dev == s->dev && st.st_ino == s->ino)
    unlink(s->path);
  uv_close((uv_handle_t *)&s->pipe, on_listener_closed);
  uv_close((uv_handle_t *)&s->sweep, on_sweep_closed);
  uv_close((uv_handle_t *)&s->kick, on_kick_closed);
}

int orch_ctl_conn_send(orch_ctl_conn_t *c, const char *buf, size_t n) {
  if (c->closing) return UV_EPIPE;
  if (n == 0) return 0;
  int rc = conn_write(c, buf, n);
  if (rc < 0) return rc;
  size_t q = queued(c);
  if (q > c->srv->h.max_queued_hard) {
    fprintf(stderr,
            "orch: control socket: closing the connection of pid %ld: "
            "%zu reply bytes unread\n",
            (long)c->pid, q);
    conn_close_now(c);
    return UV_ENOBUFS;
  }
  if (c->reading && paused(c)) set_reading(c);
  return 0;
}

void orch_ctl_conn_busy(orch_ctl_conn_t *c, int delta) {
  if (delta < 0 && (unsigned)-delta > c->busy) c->busy = 0;
  else c->busy += (unsigned)delta;
  if (c->closing) return;
  if (delta < 0) kick(c);
  else if (c->reading && paused(c)) set_reading(c);
}

void orch_ctl_conn_close(orch_ctl_conn_t *c) { conn_close_now(c); }
int orch_ctl_conn_closed(const orch_ctl_conn_t *c) { return c->closing; }

size_t orch_ctl_conn_pending(const orch_ctl_conn_t *c) {
  return c->closed ? 0 : queued(c);
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
  else conn_close_now(c);
}

void orch_ctl_close_all(void) {
  for (orch_ctl_server_t *s = servers; s; s = s->next) {
    for (orch_ctl_conn_t *c = s->conns; c; c = c->next) {
      /* A closed one that awaits its owner's release is the owner's to
       * free; every other one is closed without telling anyone. */
      if (c->closed) continue;
      c->released = 1;
      conn_close_now(c);
    }
    orch_ctl_server_close(s);
  }
}
