/* balancer.h: round-robin balancing of a cluster socket in C (Node's
 * cluster round-robin, orch as the primary; docs/protocol.md "Cluster
 * protocol"). Lua says which workers' channels take connections (add,
 * remove: a worker listening, draining, gone) and never sees a connection:
 * the balancer accepts (accept4, non-blocking, close-on-exec), hands each
 * connection to the next worker whose channel has room (newconn with the
 * descriptor by SCM_RIGHTS), and closes its copy once the worker accepted
 * it. A worker that refuses it (its server closed), a NACK, or a channel
 * that closes first: the connection goes to the next worker, at most
 * ORCH_BALANCER_MAX_TRIES times. While no worker has room nothing is
 * accepted: connections wait in the kernel's queue (at most
 * ORCH_BALANCER_MAX_HELD given back by workers wait here). */
#ifndef ORCH_BALANCER_H
#define ORCH_BALANCER_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "orch/chan.h"

#define ORCH_BALANCER_MAX_TRIES 8
#define ORCH_BALANCER_MAX_HELD 1024
#define ORCH_BALANCER_MAX_WEIGHT 1000

typedef struct orch_balancer_s orch_balancer_t;

/* A connection in flight: the channel's queues hold it (chan.c) while the
 * balancer owns its descriptor. */
typedef struct orch_bconn_s {
  struct orch_bconn_s *next;
  orch_balancer_t *bal;
  uint64_t seq;  /* of the newconn now in flight */
  int fd;
  int tries;     /* workers it was given to */
  int answer;    /* a cluster ack before the handle ack: 1 accepted, 2 refused */
  size_t len;    /* of text */
  char text[];   /* the newconn message, '\n' included */
} orch_bconn_t;

typedef struct {
  uint64_t accepted; /* connections accepted from the socket */
  uint64_t handed;   /* taken by a worker (its accepted = true) */
  uint64_t retried;  /* given to another worker (refused, NACK, channel closed) */
  uint64_t dropped;  /* closed: too many tries, too many held, balancer closed */
  unsigned members, held;
  unsigned inflight; /* accepted, not yet taken by a worker nor dropped */
} orch_balancer_stats_t;

/* A balancer on a duplicate of listen_fd (made non-blocking), for the
 * socket Node's workers know as key (key_json: its JSON string). 0 or
 * -errno. Nothing is accepted before a member is added. */
int orch_balancer_new(uv_loop_t *loop, int listen_fd, const char *key_json, size_t key_len,
                      orch_balancer_t **out);
/* ch takes connections, weight (1..ORCH_BALANCER_MAX_WEIGHT) in a row;
 * again: the new weight. 0 or -EINVAL. */
int orch_balancer_add(orch_balancer_t *b, orch_chan_t *ch, int weight);
/* ch takes no more (draining, gone); those it has are still its own. */
void orch_balancer_remove(orch_balancer_t *b, orch_chan_t *ch);
void orch_balancer_stats(const orch_balancer_t *b, orch_balancer_stats_t *out);
/* paused: nothing more is accepted (connections wait in the kernel's
 * queue) while those accepted still go to workers, so that nothing is in
 * flight (orch update waits for inflight 0); not paused: accepting again. */
void orch_balancer_pause(orch_balancer_t *b, int paused);
/* Stops accepting, closes held connections; the balancer is freed once its
 * connections in flight came back. */
void orch_balancer_close(orch_balancer_t *b);

/* ---- for chan.c ---- */

/* Some channel has room again: every balancer with connections waiting or
 * not accepting tries again. */
void orch__balancer_wake(void);
/* The worker took c: its descriptor closes. */
void orch__balancer_done(orch_bconn_t *c);
/* c came back (refused, NACK, channel closed): the next worker. */
void orch__balancer_retry(orch_bconn_t *c);

#endif
