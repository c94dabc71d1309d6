/* balancer.c: round-robin of a cluster socket's connections (see balancer.h).
 *
 * Per connection: accept4, a pick, one sendmsg, and later the worker's two
 * answers read by chan.c and a close: no Lua, no handle object. */
#include "orch/balancer.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define ACCEPTS_PER_TURN 64 /* then other handles get their turn */
#define RETRY_MS 100        /* after EMFILE and the like: the loop must not spin */
#define SPARE_MAX 64        /* connection records kept for reuse */
#define SEQ_DIGITS 20       /* of a uint64_t */

typedef struct {
  orch_chan_t *ch;
  int weight;
} member_t;

struct orch_balancer_s {
  orch_balancer_t *prev, *next; /* the open balancers, for wake */
  uv_poll_t poll;
  uv_timer_t timer;
  int lfd;
  int polling, closed, handles_open;
  int paused; /* orch update: accepts nothing, gives out what it has */
  unsigned inflight; /* connections out with a worker: they come back here */
  member_t *m;
  unsigned n, cap, cur, credit;
  orch_bconn_t *held_head, *held_tail;
  unsigned nheld;
  orch_balancer_stats_t st;
  /* Per connection no malloc and no printf (2-3 % of the daemon's CPU under
   * round-robin load, perf): records are reused, and a newconn is its
   * head, made once, the seq's digits, and "}}\n". */
  orch_bconn_t *spare;
  unsigned nspare;
  size_t head_len;
  char head[]; /* {"cmd":"NODE_HANDLE",...,"key":KEY,"seq": */
};

static orch_balancer_t *open_list;
static uint64_t next_seq;

static const char HEAD1[] = "{\"cmd\":\"NODE_HANDLE\",\"type\":\"net.Native\",\"msg\":{\"cmd\":\"NODE_CLUSTER\","
                            "\"act\":\"newconn\",\"key\":",
                  HEAD2[] = ",\"seq\":", TAIL[] = "}}\n";

static void maybe_free(orch_balancer_t *b) {
  if (b->closed && !b->handles_open && !b->inflight) {
    while (b->spare) {
      orch_bconn_t *c = b->spare;
      b->spare = c->next;
      free(c);
    }
    free(b->m);
    free(b);
  }
}

static orch_bconn_t *conn_new(orch_balancer_t *b, int fd) {
  orch_bconn_t *c = b->spare;
  if (c) {
    b->spare = c->next;
    b->nspare--;
  } else if (!(c = malloc(sizeof *c + b->head_len + SEQ_DIGITS + sizeof TAIL))) {
    return NULL;
  }
  *c = (orch_bconn_t){.bal = b, .fd = fd};
  return c;
}

/* Closes c's descriptor and keeps c for the next connection (or frees it). */
static void conn_end(orch_bconn_t *c) {
  orch_balancer_t *b = c->bal;
  close(c->fd);
  if (b->closed || b->nspare >= SPARE_MAX) {
    free(c);
    return;
  }
  c->next = b->spare;
  b->spare = c;
  b->nspare++;
}

static void on_handle_closed(uv_handle_t *h) {
  orch_balancer_t *b = h->data;
  b->handles_open--;
  maybe_free(b);
}

static void drop(orch_bconn_t *c) {
  orch_balancer_t *b = c->bal;
  conn_end(c);
  b->st.dropped++;
  b->inflight--;
  maybe_free(b);
}

void orch__balancer_done(orch_bconn_t *c) {
  orch_balancer_t *b = c->bal;
  conn_end(c);
  b->st.handed++;
  b->inflight--;
  maybe_free(b);
}

/* The next member with room, weight turns in a row each, or NULL. */
static orch_chan_t *pick(orch_balancer_t *b) {
  for (unsigned k = 0; k < b->n; k++) {
    if (b->cur >= b->n) b->cur = 0;
    member_t *m = &b->m[b->cur];
    if (orch__chan_ready(m->ch)) {
      if (++b->credit >= (unsigned)m->weight) {
        b->credit = 0;
        b->cur++;
      }
      return m->ch;
    }
    b->credit = 0;
    b->cur++;
  }
  return NULL;
}

static void on_accept(uv_poll_t *p, int status, int events);

static void stop_accepting(orch_balancer_t *b) {
  if (!b->polling) return;
  b->polling = 0;
  uv_poll_stop(&b->poll);
}

static void hold(orch_balancer_t *b, orch_bconn_t *c) {
  if (b->closed || b->nheld >= ORCH_BALANCER_MAX_HELD) return drop(c);
  c->next = NULL;
  if (b->held_tail) b->held_tail->next = c;
  else b->held_head = c;
  b->held_tail = c;
  b->nheld++;
  stop_accepting(b); /* no worker has room: the rest wait in the kernel's queue */
}

/* Gives c to the next worker with room (0), or returns -EAGAIN: none. */
static int give(orch_balancer_t *b, orch_bconn_t *c) {
  orch_chan_t *ch;
  while ((ch = pick(b))) {
    c->seq = ++next_seq;
    c->answer = 0;
    char digits[SEQ_DIGITS], *d = digits + SEQ_DIGITS;
    uint64_t v = c->seq;
    do *--d = (char)('0' + v % 10);
    while (v /= 10);
    size_t nd = (size_t)(digits + SEQ_DIGITS - d);
    memcpy(c->text, b->head, b->head_len);
    memcpy(c->text + b->head_len, d, nd);
    memcpy(c->text + b->head_len + nd, TAIL, sizeof TAIL - 1);
    c->len = b->head_len + nd + sizeof TAIL - 1;
    if (orch__chan_send_conn(ch, c) == 0) {
      c->tries++;
      return 0;
    }
    /* that channel is marked full now: pick goes past it */
  }
  return -EAGAIN;
}

void orch__balancer_retry(orch_bconn_t *c) {
  orch_balancer_t *b = c->bal;
  if (b->closed || c->tries >= ORCH_BALANCER_MAX_TRIES) return drop(c);
  b->st.retried++;
  if (give(b, c) < 0) hold(b, c);
}

static void start_accepting(orch_balancer_t *b) {
  if (b->polling || b->closed || b->paused || uv_is_active((uv_handle_t *)&b->timer)) return;
  if (uv_poll_start(&b->poll, UV_READABLE, on_accept) == 0) b->polling = 1;
}

/* Held connections first, then accepting again if some worker has room. */
static void kick(orch_balancer_t *b) {
  while (b->held_head) {
    orch_bconn_t *c = b->held_head;
    if (!b->n || give(b, c) < 0) return;
    b->held_head = c->next;
    if (!b->held_head) b->held_tail = NULL;
    b->nheld--;
  }
  for (unsigned i = 0; i < b->n; i++) {
    if (orch__chan_ready(b->m[i].ch)) return start_accepting(b);
  }
}

void orch__balancer_wake(void) {
  for (orch_balancer_t *b = open_list; b; b = b->next) {
    if (!b->polling || b->held_head) kick(b);
  }
}

static void on_timer(uv_timer_t *t) { kick(t->data); }

static void on_accept(uv_poll_t *p, int status, int events) {
  (void)events;
  orch_balancer_t *b = p->data;
  if (status < 0) return;
  for (int i = 0; i < ACCEPTS_PER_TURN && b->polling; i++) {
    int fd = accept4(b->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) { /* EMFILE, ENOBUFS...: later */
        stop_accepting(b);
        uv_timer_start(&b->timer, on_timer, RETRY_MS, 0);
      }
      return;
    }
    orch_bconn_t *c = conn_new(b, fd);
    if (!c) {
      close(fd);
      b->st.dropped++;
      continue;
    }
    b->inflight++;
    b->st.accepted++;
    if (give(b, c) < 0) hold(b, c); /* and stops accepting */
  }
}

int orch_balancer_new(uv_loop_t *loop, int listen_fd, const char *key_json, size_t key_len,
                      orch_balancer_t **out) {
  orch_balancer_t *b = calloc(1, sizeof *b + sizeof HEAD1 + key_len + sizeof HEAD2);
  if (!b) return -ENOMEM;
  char *h = b->head;
  memcpy(h, HEAD1, sizeof HEAD1 - 1);
  h += sizeof HEAD1 - 1;
  memcpy(h, key_json, key_len);
  h += key_len;
  memcpy(h, HEAD2, sizeof HEAD2 - 1);
  b->head_len = sizeof HEAD1 - 1 + key_len + sizeof HEAD2 - 1;
  b->lfd = fcntl(listen_fd, F_DUPFD_CLOEXEC, 3);
  int rc = b->lfd < 0 ? -errno : 0;
  int fl = rc == 0 ? fcntl(b->lfd, F_GETFL) : 0;
  if (rc == 0 && (fl < 0 || fcntl(b->lfd, F_SETFL, fl | O_NONBLOCK) < 0)) rc = -errno;
  if (rc == 0) rc = uv_poll_init_socket(loop, &b->poll, b->lfd);
  if (rc < 0) {
    if (b->lfd >= 0) close(b->lfd);
    free(b);
    return rc;
  }
  uv_timer_init(loop, &b->timer);
  b->poll.data = b->timer.data = b;
  b->handles_open = 2;
  b->next = open_list;
  if (open_list) open_list->prev = b;
  open_list = b;
  *out = b;
  return 0;
}

int orch_balancer_add(orch_balancer_t *b, orch_chan_t *ch, int weight) {
  if (b->closed || weight < 1 || weight > ORCH_BALANCER_MAX_WEIGHT) return -EINVAL;
  for (unsigned i = 0; i < b->n; i++) {
    if (b->m[i].ch == ch) {
      b->m[i].weight = weight;
      return 0;
    }
  }
  if (b->n == b->cap) {
    unsigned cap = b->cap ? b->cap * 2 : 8;
    member_t *m = realloc(b->m, cap * sizeof *m);
    if (!m) return -ENOMEM;
    b->m = m;
    b->cap = cap;
  }
  orch_chan_ref(ch);
  b->m[b->n++] = (member_t){.ch = ch, .weight = weight};
  kick(b);
  return 0;
}

void orch_balancer_remove(orch_balancer_t *b, orch_chan_t *ch) {
  for (unsigned i = 0; i < b->n; i++) {
    if (b->m[i].ch != ch) continue;
    memmove(&b->m[i], &b->m[i + 1], (b->n - i - 1) * sizeof *b->m);
    b->n--;
    if (b->cur > i) b->cur--;
    b->credit = 0;
    if (!b->n) stop_accepting(b);
    orch_chan_unref(ch);
    return;
  }
}

void orch_balancer_stats(const orch_balancer_t *b, orch_balancer_stats_t *out) {
  *out = b->st;
  out->members = b->n;
  out->held = b->nheld;
  out->inflight = b->inflight;
}

void orch_balancer_pause(orch_balancer_t *b, int paused) {
  b->paused = paused;
  if (paused) stop_accepting(b);
  else kick(b);
}

void orch_balancer_close(orch_balancer_t *b) {
  if (b->closed) return;
  stop_accepting(b);
  b->closed = 1;
  if (b->prev) b->prev->next = b->next;
  else open_list = b->next;
  if (b->next) b->next->prev = b->prev;
  while (b->held_head) {
    orch_bconn_t *c = b->held_head;
    b->held_head = c->next;
    b->nheld--;
    conn_end(c); /* closed: freed */
    b->st.dropped++;
    b->inflight--;
  }
  b->held_tail = NULL;
  for (unsigned i = 0; i < b->n; i++) orch_chan_unref(b->m[i].ch);
  b->n = 0;
  uv_close((uv_handle_t *)&b->poll, on_handle_closed);
  uv_close((uv_handle_t *)&b->timer, on_handle_closed);
  close(b->lfd);
}
