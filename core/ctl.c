/* ctl.c: the control socket server (see ctl.h): accept, peer check, and
 * the limits over time that keep clients from making the daemon hold
 * unbounded memory or descriptors. A connection's line framing and queued
 * replies are in ctl_conn.c.
 *
 * Lifetimes: a server struct lives while its handles (listener, sweep timer,
 * kick) are open or any of its connections exists (refs), so that its
 * handlers stay valid for connections that outlive server_close. */
#include "orch/ctl.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "orch/ctl_impl.h"
#include "orch/owners.h"
#include "orch/unixsock.h"

static orch_ctl_server_t *servers;

/* A refused connection's input is read and dropped this long, so that its
 * peer gets to read the error before the connection ends (a close with
 * unread input would reset it, and its send would fail with EPIPE). */
#define LINGER_MS 1000

/* Accept errors are logged once per run of failures, not once per attempt. */
static int accept_failing;

void orch__ctl_server_unref(orch_ctl_server_t *s) {
  if (--s->refs > 0) return;
  for (orch_ctl_server_t **pp = &servers; *pp; pp = &(*pp)->next)
    if (*pp == s) {
      *pp = s->next;
      break;
    }
  if (s->h.on_free) s->h.on_free(s->h.data);
  free(s);
}

/* ---- limits over time ---- */

static void on_sweep(uv_timer_t *t) {
  orch_ctl_server_t *s = (orch_ctl_server_t *)((char *)t - offsetof(orch_ctl_server_t, sweep));
  for (orch_ctl_conn_t *c = s->conns, *next; c; c = next) {
    next = c->next;
    if (uv_is_closing((uv_handle_t *)&c->pipe)) continue;
    uint64_t now = orch__ctl_now_ms(c);
    if (c->lingering) {
      if (now - c->since >= LINGER_MS) orch__ctl_conn_close_now(c);
      continue;
    }
    size_t q = orch__ctl_queued(c);
    if (q < c->last_q) c->active = now;
    c->last_q = q;
    if (now - c->active < s->h.idle_ms) continue;
    char msg[128];
    if (q > 0) {
      fprintf(stderr,
              "orch: control socket: closing the connection of pid %ld: "
              "%zu reply bytes unread for %u ms\n",
              (long)c->pid, q, s->h.idle_ms);
      orch__ctl_conn_close_now(c);
    } else if (c->busy == 0 && (!c->handed || c->len > c->off)) {
      snprintf(msg, sizeof msg, "no complete request line within %u ms",
               s->h.idle_ms);
      orch__ctl_conn_refuse_now(c, "ETIMEDOUT", msg);
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
    orch__ctl_conn_close_now(victim);
    return 0;
  }
  char msg[128];
  snprintf(msg, sizeof msg,
           "closed to make room for a new connection (at most %u)",
           conn_limit(s));
  orch__ctl_conn_refuse_now(victim, "EBUSY", msg);
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
  c->active = orch__ctl_now_ms(c);
  int rc = uv_accept(ls, (uv_stream_t *)&c->pipe);
  if (rc < 0) {
    accept_error(rc);
    orch__ctl_conn_close_now(c);
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
    orch__ctl_conn_close_now(c); /* a peer we cannot identify is not let in */
    return;
  }
  c->pid = cred.pid;
  c->uid = cred.uid;
  uid_t me = geteuid();
  if (cred.uid != me && cred.uid != 0) {
    char msg[128];
    snprintf(msg, sizeof msg, "uid %u may not use this orch (owner uid %u)",
             (unsigned)cred.uid, (unsigned)me);
    orch__ctl_conn_refuse(c, "EPERM", msg);
    return;
  }
  if (s->live > conn_limit(s) && make_room(s, c) < 0) {
    char msg[128];
    snprintf(msg, sizeof msg,
             "too many connections (%u), each with a request in progress",
             conn_limit(s));
    orch__ctl_conn_refuse_now(c, "EBUSY", msg);
    return;
  }
  orch__ctl_conn_set_reading(c);
}

/* ---- the server ---- */

static void on_listener_closed(uv_handle_t *h) { orch__ctl_server_unref((orch_ctl_server_t *)h); }

static void on_sweep_closed(uv_handle_t *h) {
  orch__ctl_server_unref((orch_ctl_server_t *)((char *)h - offsetof(orch_ctl_server_t, sweep)));
}

static void on_kick_closed(uv_handle_t *h) {
  orch__ctl_server_unref((orch_ctl_server_t *)((char *)h - offsetof(orch_ctl_server_t, kick)));
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

  int fd = h->fd > 0 ? h->fd : socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) {
    int err = errno;
    free(s);
    return -err;
  }
  int rc = h->fd > 0 ? 0 : orch_unix_bind(fd, path, ORCH_UNIX_REPLACE | ORCH_UNIX_PRIVATE);
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

int orch_ctl_server_fd(const orch_ctl_server_t *s) {
  uv_os_fd_t fd;
  if (s->closed || uv_fileno((const uv_handle_t *)&s->pipe, &fd) < 0) return -EBADF;
  return fd;
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

void orch_ctl_close_all(void) {
  for (orch_ctl_server_t *s = servers; s; s = s->next) {
    for (orch_ctl_conn_t *c = s->conns; c; c = c->next) {
      /* A closed one that awaits its owner's release is the owner's to
       * free; every other one is closed without telling anyone. */
      if (c->closed) continue;
      c->released = 1;
      orch__ctl_conn_close_now(c);
    }
    orch_ctl_server_close(s);
  }
}
