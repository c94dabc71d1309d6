/* ctl.h: the control socket, both ends.
 *
 * Server (the daemon, on the loop): a Unix stream socket, mode 0600, whose
 * peers are checked with SO_PEERCRED (only our euid and root get in). Bytes
 * are split into lines in C; the owner sees whole lines only, and only from
 * peers that passed the check. A line over the limit gets an E2BIG error line
 * and the connection is closed; no Lua runs per accepted connection.
 *
 * Memory and descriptors are bounded whatever clients do (docs/protocol.md,
 * "Limits"): a connection whose replies are not read, or that has max_busy
 * requests in progress, is not read from (back-pressure), and is closed once
 * its replies pass max_queued_hard; partial request lines share max_buffered
 * bytes; past max_conns connections a newcomer takes the place of the least
 * recently active idle one; a connection that sends no complete line, or
 * reads none of its replies, for idle_ms is closed.
 *
 * Client (the CLI): plain blocking calls, no libuv, so a verb costs little
 * more than process start-up. */
#ifndef ORCH_CTL_H
#define ORCH_CTL_H

#include <stddef.h>
#include <sys/types.h>
#include <uv.h>

typedef struct orch_ctl_server_s orch_ctl_server_t;
typedef struct orch_ctl_conn_s orch_ctl_conn_t;
typedef struct orch_ctl_client_s orch_ctl_client_t;

#define ORCH_CTL_MAX_LINE_DEFAULT (1024 * 1024)
#define ORCH_CTL_MAX_QUEUED_DEFAULT (1024 * 1024)
#define ORCH_CTL_MAX_QUEUED_HARD_DEFAULT (64 * 1024 * 1024)
#define ORCH_CTL_MAX_BUFFERED_DEFAULT (32 * 1024 * 1024)
#define ORCH_CTL_MAX_BUSY_DEFAULT 16
#define ORCH_CTL_IDLE_MS_DEFAULT 30000

typedef struct {
  /* A complete line without its '\n' (and without a '\r' before it). line is
   * valid during the call only. The first call hands the connection to the
   * owner, who from then on gets on_close and must call
   * orch_ctl_conn_release. */
  void (*on_line)(orch_ctl_conn_t *c, const char *line, size_t len, void *data);
  /* The connection is closed (EOF, error, orch_ctl_conn_close): called once
   * per handed connection. Sends fail from here on. */
  void (*on_close)(orch_ctl_conn_t *c, void *data);
  /* Nothing will call back with data again: the listener is closed and its
   * last connection is gone. May be NULL. */
  void (*on_free)(void *data);
  void *data;
  /* Limits; 0 means the default. */
  size_t max_line;        /* bytes of one request line */
  size_t max_queued;      /* reply bytes queued before requests wait */
  size_t max_queued_hard; /* reply bytes queued before the connection is closed */
  size_t max_buffered;    /* request bytes held, across every connection */
  unsigned max_conns;     /* default: RLIMIT_NOFILE / 4, from 8 to 1024 */
  unsigned max_busy;      /* requests in progress (orch_ctl_conn_busy) per connection */
  unsigned idle_ms;       /* see above */
  /* > 0: a socket already bound at path and listening (carried across
   * orch update's re-exec), used instead of binding a new one. */
  int fd;
} orch_ctl_handlers_t;

/* Listens on path: a stale socket file there is removed first (the caller
 * holds the daemon lock), the new one is created 0600. 0 or a negative errno
 * (EEXIST when path exists and is not a socket). */
int orch_ctl_listen(uv_loop_t *loop, const char *path,
                    const orch_ctl_handlers_t *h, orch_ctl_server_t **out);
/* The listening descriptor (orch update hands it on), or -EBADF once closed. */
int orch_ctl_server_fd(const orch_ctl_server_t *s);
/* Stops accepting and removes the socket file (if it is still ours). Open
 * connections stay until they close. s must not be used afterwards. */
void orch_ctl_server_close(orch_ctl_server_t *s);

/* Queues a copy of buf for writing; never blocks. 0, or UV_EPIPE when the
 * connection is closed, UV_ENOBUFS when the peer has left more than
 * max_queued_hard bytes unread (the connection is then closed), or another
 * negative errno. */
int orch_ctl_conn_send(orch_ctl_conn_t *c, const char *buf, size_t n);
/* Closes now; queued writes may be dropped. Idempotent. */
void orch_ctl_conn_close(orch_ctl_conn_t *c);
/* Closes c once what is queued on it is written (a last line, then EOF):
 * nothing more is sent or read. A peer that never reads is closed by the
 * time-without-progress limit. */
void orch_ctl_conn_finish(orch_ctl_conn_t *c);
int orch_ctl_conn_closed(const orch_ctl_conn_t *c);
/* Bytes queued and not yet written to the socket. */
size_t orch_ctl_conn_pending(const orch_ctl_conn_t *c);
void orch_ctl_conn_peer(const orch_ctl_conn_t *c, pid_t *pid, uid_t *uid);
void orch_ctl_conn_set_data(orch_ctl_conn_t *c, void *data);
void *orch_ctl_conn_data(const orch_ctl_conn_t *c);
/* The owner starts (delta 1) or finishes (delta -1) work on a request of c.
 * A connection with max_busy requests in progress is not read from, and one
 * with any is never closed as idle. */
void orch_ctl_conn_busy(orch_ctl_conn_t *c, int delta);
/* The owner is done with c (closing it if still open); no on_close follows. */
void orch_ctl_conn_release(orch_ctl_conn_t *c);

/* Teardown: closes every server and connection; none calls back any more
 * except on_free, once its handles are closed. */
void orch_ctl_close_all(void);

/* ---- client ---- */

/* Connects (blocking). 0 or a negative errno: -ENOENT (no socket),
 * -ECONNREFUSED (stale socket), -EACCES ... */
int orch_ctl_connect(const char *path, orch_ctl_client_t **out);
/* Writes all of buf. 0 or a negative errno (-EPIPE when the peer is gone). */
int orch_ctl_client_send(orch_ctl_client_t *c, const char *buf, size_t n);
/* Reads the next line (without '\n'); *line points into c's buffer and is
 * valid until the next call. timeout_ms < 0: no limit. Returns 0, -ETIMEDOUT,
 * UV_EOF (the peer closed and no partial line is left; a partial line at EOF
 * is returned as a line first), or another negative errno. */
int orch_ctl_client_read_line(orch_ctl_client_t *c, int timeout_ms,
                              const char **line, size_t *len);
/* read_line, for a reply to print (orch list --json): a line that is head,
 * then X, then '}' has X and a newline written to fd (blocking, all of it;
 * *write_err: 0 or the write's negative errno) and returns 1, never copied
 * out of c's buffer (160 KB for 1000 processes); any other line returns 0
 * as read_line returns it. A negative errno as read_line. */
int orch_ctl_client_pass_line(orch_ctl_client_t *c, int timeout_ms, const char *head,
                              size_t head_len, int fd, const char **line, size_t *len,
                              int *write_err);
int orch_ctl_client_fd(const orch_ctl_client_t *c);
void orch_ctl_client_close(orch_ctl_client_t *c);

struct lua_State;
/* Adds ctl_listen and ctl_connect to the table on the stack top. */
void orch_ctl_lua_register(struct lua_State *L);

#endif
