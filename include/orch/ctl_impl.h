/* ctl_impl.h: the control socket's insides, shared by ctl.c (the server:
 * accepting, limits over time) and ctl_conn.c (a connection: line framing,
 * queued replies, refusals); nothing else uses them. */
#ifndef ORCH_CTL_IMPL_H
#define ORCH_CTL_IMPL_H

#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

#include "orch/ctl.h"

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

static inline size_t orch__ctl_queued(const orch_ctl_conn_t *c) {
  return uv_stream_get_write_queue_size((const uv_stream_t *)&c->pipe);
}

static inline uint64_t orch__ctl_now_ms(const orch_ctl_conn_t *c) { return uv_now(c->pipe.loop); }

/* ctl.c: drops one reference (an open handle, a connection); frees the
 * server at the last. */
void orch__ctl_server_unref(orch_ctl_server_t *s);

/* ctl_conn.c */
/* Closes at once: the descriptor goes now, the struct when the handle's
 * close callback has run and the owner has released it. */
void orch__ctl_conn_close_now(orch_ctl_conn_t *c);
/* Sends a last error line, shuts down the write side, and drops input until
 * the peer's EOF or the linger's end (ctl.c's sweep). */
void orch__ctl_conn_refuse(orch_ctl_conn_t *c, const char *code, const char *msg);
/* Sends an error line if the socket takes it now, and closes at once. */
void orch__ctl_conn_refuse_now(orch_ctl_conn_t *c, const char *code, const char *msg);
/* Reads while requests may be taken (or a refused peer's input dropped). */
void orch__ctl_conn_set_reading(orch_ctl_conn_t *c);

#endif
