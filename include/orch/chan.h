/* chan.h: the daemon's end of a managed process's IPC channel (Node's
 * child_process format, docs/protocol.md "IPC channel"): one JSON value per
 * line, descriptors attached with SCM_RIGHTS to NODE_HANDLE messages.
 *
 * The channel owns the descriptor and every write to it: Lua's messages and
 * the balancer's (balancer.h) go through one queue, so two writers never
 * interleave inside a message. Reading splits lines; the per-connection
 * answers of a round-robin worker (NODE_HANDLE_ACK, the cluster ack of a
 * newconn) are consumed here, everything else goes to on_line. */
#ifndef ORCH_CHAN_H
#define ORCH_CHAN_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#define ORCH_CHAN_MAX_LINE (1024 * 1024)       /* a longer line closes the channel */
#define ORCH_CHAN_MAX_QUEUED (4 * 1024 * 1024) /* unread by the child: sends refused */
#define ORCH_CHAN_WINDOW 16 /* descriptors written and not yet acknowledged */

typedef struct orch_chan_s orch_chan_t;
struct orch_bconn_s; /* balancer.c's connection in flight */

typedef struct {
  /* a line that is not consumed here (len bytes, no '\n'), or, with line
   * NULL, a problem worth logging (the text) */
  void (*on_line)(orch_chan_t *ch, const char *line, size_t len, void *data);
  /* once, when the channel closes (EOF, error, over-long line, close) */
  void (*on_close)(orch_chan_t *ch, void *data);
  void *data;
} orch_chan_handlers_t;

/* Takes fd (a connected AF_UNIX stream socket; closed on failure too). The
 * channel holds one reference for its opener. 0 or -errno. */
int orch_chan_open(uv_loop_t *loop, int fd, const orch_chan_handlers_t *h, orch_chan_t **out);

/* Queues a message (text with its '\n'). 0, -EPIPE once closed, -ENOBUFS
 * over ORCH_CHAN_MAX_QUEUED. */
int orch_chan_send(orch_chan_t *ch, const char *text, size_t len);

/* Queues msg (one JSON value, no '\n') wrapped as Node's NODE_HANDLE with a
 * duplicate of fd, closed once the receiver acknowledged it (or it was
 * refused 3 times, or the channel closed). */
int orch_chan_send_fd(orch_chan_t *ch, const char *msg, size_t len, int fd);

/* An acknowledgement Lua decoded (formatting other than Node's): ack true
 * for NODE_HANDLE_ACK, false for NACK. */
void orch_chan_handle_reply(orch_chan_t *ch, int ack);

/* The cluster ack of a newconn (seq) that Lua decoded: 1 if it was one of
 * the balancer's, else 0. */
int orch_chan_cluster_ack(orch_chan_t *ch, uint64_t seq, int accepted);

/* For orch update, right before the daemon re-executes itself: the socket
 * (the new image reads on) and what was read of a line not complete yet
 * (*buf, *len: valid until the next read). -EAGAIN while anything is queued
 * or unacknowledged (it would be lost), -EPIPE once closed. */
int orch_chan_handover(const orch_chan_t *ch, const char **buf, size_t *len);
/* In the new image, before the first read: the bytes handed over (no '\n'
 * in them). 0, -EINVAL or -ENOMEM. */
int orch_chan_preload(orch_chan_t *ch, const char *buf, size_t len);

int orch_chan_closed(const orch_chan_t *ch);
size_t orch_chan_queued(const orch_chan_t *ch);
void orch_chan_close(orch_chan_t *ch);
void orch_chan_ref(orch_chan_t *ch);
void orch_chan_unref(orch_chan_t *ch); /* the last reference of a closed channel frees it */

/* ---- for balancer.c ---- */

/* Whether a connection sent now would be written at once: open, nothing
 * queued, room in the window. When not, the channel remembers to call
 * orch__balancer_wake() once it has room. */
int orch__chan_ready(orch_chan_t *ch);
/* Writes c's newconn (its text) with its descriptor: 0 (written, or the tail
 * queued), -EAGAIN (nothing written: not ready) or -errno. */
int orch__chan_send_conn(orch_chan_t *ch, struct orch_bconn_s *c);

#endif
