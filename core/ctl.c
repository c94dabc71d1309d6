/* ctl.c: the control socket server: accept, peer check, line framing,
 * queued replies.
 *
 * Lifetimes: a server struct lives while its listener is open or any of its
 * connections exists (refs), so that its handlers stay valid for connections
 * that outlive server_close. A connection struct lives until its handle is
 * closed and, once handed to the owner, until the owner releases it. */
#include "orch/ctl.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

struct orch_ctl_server_s {
  uv_pipe_t pipe;
  orch_ctl_handlers_t h;
  int refs; /* 1 for the listener until its close callback, 1 per connection */
  int closed;
  dev_t dev; /* the socket file we created, so close removes only that one */
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
  char *buf; /* the unterminated tail of the input */
  size_t len, cap;
  pid_t pid;
  uid_t uid;
  unsigned handed : 1;   /* on_line was called: the owner knows it */
  unsigned closing : 1;  /* no more input, no more sends */
  unsigned closed : 1;   /* the handle's close callback has run */
  unsigned released : 1; /* the owner is done with it (or never had it) */
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

static void conn_free(orch_ctl_conn_t *c) {
  orch_ctl_server_t *s = c->srv;
  if (c->prev) c->prev->next = c->next;
  else s->conns = c->next;
  if (c->next) c->next->prev = c->prev;
  free(c->buf);
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

static void conn_close_now(orch_ctl_conn_t *c) {
  c->closing = 1;
  if (!uv_is_closing((uv_handle_t *)&c->pipe))
    uv_close((uv_handle_t *)&c->pipe, on_conn_closed);
}

static void on_shutdown(uv_shutdown_t *req, int status) {
  (void)status; /* written or not, the connection ends here */
  orch_ctl_conn_t *c = (orch_ctl_conn_t *)req->handle;
  free(req);
  conn_close_now(c);
}

static void on_written(uv_write_t *req, int status) {
  orch_ctl_conn_t *c = (orch_ctl_conn_t *)req->handle;
  free(req);
  /* A peer that went away mid-reply: close quietly, the daemon carries on. */
  if (status < 0 && status != UV_ECANCELED) conn_close_now(c);
}

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

/* Sends a last error line, then closes once it (and every reply queued
 * before it) is written. */
static void conn_refuse(orch_ctl_conn_t *c, const char *code, const char *msg) {
  char line[512];
  int n = snprintf(line, sizeof line,
                   "{\"id\":null,\"ok\":false,\"error\":{\"code\":\"%s\","
                   "\"message\":\"%s\"}}\n",
                   code, msg);
  c->closing = 1;
  uv_read_stop((uv_stream_t *)&c->pipe);
  if (n > 0 && (size_t)n < sizeof line) conn_write(c, line, (size_t)n);
  uv_shutdown_t *req = malloc(sizeof *req);
  if (!req || uv_shutdown(req, (uv_stream_t *)&c->pipe, on_shutdown) < 0) {
    free(req);
    conn_close_now(c);
  }
}

static void too_long(orch_ctl_conn_t *c) {
  char msg[80];
  snprintf(msg, sizeof msg, "request line longer than %zu bytes",
           c->srv->h.max_line);
  conn_refuse(c, "E2BIG", msg);
}

static int buf_append(orch_ctl_conn_t *c, const char *p, size_t n) {
  if (c->len + n > c->cap) {
    size_t cap = c->cap ? c->cap : 4096;
    while (cap < c->len + n) cap *= 2;
    char *nb = realloc(c->buf, cap);
    if (!nb) return -1;
    c->buf = nb;
    c->cap = cap;
  }
  memcpy(c->buf + c->len, p, n);
  c->len += n;
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

/* Splits input into lines. Complete lines are passed straight from the read
 * buffer; only a tail without '\n' is copied, and at most max_line + 1 bytes
 * of it (the +1 for a '\r' whose '\n' is still to come). */
static void feed(orch_ctl_conn_t *c, const char *p, size_t n) {
  size_t limit = c->srv->h.max_line + 1;
  while (n > 0 && !c->closing) {
    const char *nl = memchr(p, '\n', n);
    size_t seg = nl ? (size_t)(nl - p) : n;
    if (c->len + seg > limit) {
      too_long(c);
      return;
    }
    if (!nl) {
      if (buf_append(c, p, seg) < 0) conn_close_now(c);
      return;
    }
    if (c->len == 0) {
      dispatch(c, p, seg);
    } else {
      if (buf_append(c, p, seg) < 0) {
        conn_close_now(c);
        return;
      }
      dispatch(c, c->buf, c->len);
      c->len = 0;
    }
    p = nl + 1;
    n -= seg + 1;
  }
  if (c->len == 0 && c->cap > 65536) { /* an idle connection stays small */
    free(c->buf);
    c->buf = NULL;
    c->cap = 0;
  }
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
  if (n > 0 && !c->closing) feed(c, buf->base, (size_t)n);
  else if (n < 0) conn_close_now(c); /* EOF or error; a partial line is dropped */
  if (buf->base == read_buf) read_buf_busy = 0;
  else free(buf->base);
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
  int rc = uv_accept(ls, (uv_stream_t *)&c->pipe);
  if (rc < 0) {
    accept_error(rc);
    conn_close_now(c);
    return;
  }
  accept_failing = 0;

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
  rc = uv_read_start((uv_stream_t *)&c->pipe, on_alloc, on_read);
  if (rc < 0) conn_close_now(c);
}

/* ---- the server ---- */

static void on_listener_closed(uv_handle_t *h) { server_unref((orch_ctl_server_t *)h); }

/* bind() creates the file with 0777 & ~umask: a private umask for the
 * moment of the bind means it is never wider than 0600. The process is
 * single-threaded here (libuv's pool threads do not create files unasked). */
int orch_unix_bind_private(int fd, const char *path) {
  struct sockaddr_un sa;
  memset(&sa, 0, sizeof sa);
  sa.sun_family = AF_UNIX;
  if (strlen(path) >= sizeof sa.sun_path) return -ENAMETOOLONG;
  strcpy(sa.sun_path, path);
  struct stat st;
  if (lstat(path, &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) return -EEXIST;
    if (unlink(path) < 0 && errno != ENOENT) return -errno;
  }
  mode_t old = umask(0177);
  int rc = bind(fd, (struct sockaddr *)&sa, sizeof sa);
  int err = errno;
  umask(old);
  if (rc < 0) return -err;
  if (chmod(path, 0600) < 0) return -errno;
  return 0;
}

int orch_ctl_listen(uv_loop_t *loop, const char *path,
                    const orch_ctl_handlers_t *h, orch_ctl_server_t **out) {
  size_t plen = strlen(path);
  orch_ctl_server_t *s = calloc(1, sizeof *s + plen + 1);
  if (!s) return UV_ENOMEM;
  memcpy(s->path, path, plen + 1);
  s->h = *h;
  if (!s->h.max_line) s->h.max_line = ORCH_CTL_MAX_LINE_DEFAULT;

  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) {
    int err = errno;
    free(s);
    return -err;
  }
  int rc = orch_unix_bind_private(fd, path);
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
  s->refs = 1;
  s->next = servers;
  servers = s;
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
}

int orch_ctl_conn_send(orch_ctl_conn_t *c, const char *buf, size_t n) {
  if (c->closing) return UV_EPIPE;
  if (n == 0) return 0;
  return conn_write(c, buf, n);
}

void orch_ctl_conn_close(orch_ctl_conn_t *c) { conn_close_now(c); }
int orch_ctl_conn_closed(const orch_ctl_conn_t *c) { return c->closing; }

size_t orch_ctl_conn_pending(const orch_ctl_conn_t *c) {
  return c->closed ? 0 : uv_stream_get_write_queue_size((uv_stream_t *)&c->pipe);
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
