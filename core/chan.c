/* chan.c: the daemon's end of an IPC channel (see chan.h).
 *
 * One writer: every message is queued here, whole, in order; a descriptor
 * goes with the first byte of its message (sendmsg, SCM_RIGHTS), so the
 * receiver gets it with that message. Descriptors written wait in `sent`
 * (at most ORCH_CHAN_WINDOW) for the receiver's NODE_HANDLE_ACK or NACK,
 * which come back in order. A balancer's connection then waits in `pend`
 * for the worker's cluster ack (accepted or not). */
#include "orch/chan.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "orch/balancer.h"

#define READ_CHUNK 65536
#define MAX_FDS_IN 16 /* descriptors a child sends per read: closed, orch has no use */

typedef struct item_s {
  struct item_s *next;
  orch_bconn_t *conn; /* a balancer's connection: text and fd are its */
  int fd;             /* Lua's descriptor, closed here once acknowledged; -1: none */
  int tries;
  int fd_sent;
  size_t len, off;
  const char *buf; /* data, or the connection's text */
  char data[];
} item_t;

typedef struct {
  item_t *it;        /* Lua's descriptor */
  orch_bconn_t *conn; /* or a connection */
} sent_t;

struct orch_chan_s {
  uv_poll_t poll;
  int fd;
  int events;     /* the poll's now */
  int closed, poll_closed, refs;
  int full;       /* the socket said EAGAIN: POLLOUT clears it */
  int want_wake;  /* a balancer found it not ready */
  orch_chan_handlers_t h;
  item_t *wq, *wq_tail;
  size_t queued;
  sent_t sent[ORCH_CHAN_WINDOW];
  unsigned sent_head, nsent;
  orch_bconn_t *pend;
  char *rbuf;
  size_t rlen, rcap;
};

static void maybe_free(orch_chan_t *ch) {
  if (!ch->closed || !ch->poll_closed || ch->refs > 0) return;
  free(ch->rbuf);
  free(ch);
}

static void on_poll_closed(uv_handle_t *h) {
  orch_chan_t *ch = h->data;
  ch->poll_closed = 1;
  maybe_free(ch);
}

void orch_chan_ref(orch_chan_t *ch) { ch->refs++; }

void orch_chan_unref(orch_chan_t *ch) {
  ch->refs--;
  maybe_free(ch);
}

int orch_chan_closed(const orch_chan_t *ch) { return ch->closed; }
size_t orch_chan_queued(const orch_chan_t *ch) { return ch->queued; }

static void item_free(item_t *it) {
  if (it->fd >= 0) close(it->fd);
  free(it);
}

/* Sends len bytes with fd (if >= 0) attached: bytes written or -errno. */
static ssize_t write_some(int sock, const char *buf, size_t len, int fd) {
  struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
  struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
  union {
    struct cmsghdr align;
    char space[CMSG_SPACE(sizeof(int))];
  } cm;
  if (fd >= 0) {
    memset(&cm, 0, sizeof cm);
    mh.msg_control = cm.space;
    mh.msg_controllen = sizeof cm.space;
    struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &fd, sizeof fd);
  }
  ssize_t n;
  do n = sendmsg(sock, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
  while (n < 0 && errno == EINTR);
  return n < 0 ? -errno : n;
}

static void on_poll(uv_poll_t *p, int status, int events);

static void set_events(orch_chan_t *ch) {
  if (ch->closed) return;
  int ev = UV_READABLE;
  if (ch->full) ev |= UV_WRITABLE;
  if (ev != ch->events) {
    ch->events = ev;
    if (uv_poll_start(&ch->poll, ev, on_poll) < 0) orch_chan_close(ch);
  }
}

int orch__chan_ready(orch_chan_t *ch) {
  if (ch->closed) return 0;
  if (!ch->full && !ch->wq && ch->nsent < ORCH_CHAN_WINDOW) return 1;
  ch->want_wake = 1;
  return 0;
}

/* Calls the balancers back if one found the channel without room and it has
 * room again: half the window, not the first slot an ack frees. Under load
 * (wrk -c50, two workers, 16 each) the first slot resumed the balancer's
 * accepting for one connection, then it stopped again: once per 4
 * connections, each time 3 epoll_ctl (libuv's stop and start) and a wake-up
 * (docs/benchmarks.md, "Round-robin: the floor per connection"). */
#define WAKE_AT (ORCH_CHAN_WINDOW / 2)

static void wake_if_ready(orch_chan_t *ch) {
  if (ch->want_wake && !ch->closed && !ch->full && !ch->wq && ch->nsent <= WAKE_AT) {
    ch->want_wake = 0;
    orch__balancer_wake();
  }
}

static void push_sent(orch_chan_t *ch, item_t *it, orch_bconn_t *c) {
  sent_t *s = &ch->sent[(ch->sent_head + ch->nsent) % ORCH_CHAN_WINDOW];
  s->it = it;
  s->conn = c;
  ch->nsent++;
}

/* Writes what the queue holds until the socket or the window is full. */
static void flush(orch_chan_t *ch) {
  while (ch->wq && !ch->closed) {
    item_t *it = ch->wq;
    int fd = it->conn ? it->conn->fd : it->fd;
    int attach = fd >= 0 && !it->fd_sent;
    if (attach && ch->nsent >= ORCH_CHAN_WINDOW) break; /* an ack makes room */
    ssize_t n = write_some(ch->fd, it->buf + it->off, it->len - it->off, attach ? fd : -1);
    if (n < 0) {
      ch->full = 1; /* EAGAIN; any other error: POLLOUT reports it and the read sees the end */
      break;
    }
    if (attach) it->fd_sent = 1;
    it->off += (size_t)n;
    ch->queued -= (size_t)n;
    if (it->off < it->len) {
      ch->full = 1;
      break;
    }
    ch->wq = it->next;
    if (!ch->wq) ch->wq_tail = NULL;
    if (it->conn) {
      push_sent(ch, NULL, it->conn);
      free(it);
    } else if (it->fd >= 0) {
      push_sent(ch, it, NULL);
    } else {
      free(it);
    }
  }
  set_events(ch);
}

static void enqueue(orch_chan_t *ch, item_t *it) {
  it->next = NULL;
  if (ch->wq_tail) ch->wq_tail->next = it;
  else ch->wq = it;
  ch->wq_tail = it;
  ch->queued += it->len - it->off;
}

static item_t *item_new(const char *a, size_t alen, const char *b, size_t blen, const char *c, size_t clen) {
  item_t *it = malloc(sizeof *it + alen + blen + clen);
  if (!it) return NULL;
  memcpy(it->data, a, alen);
  if (blen) memcpy(it->data + alen, b, blen);
  if (clen) memcpy(it->data + alen + blen, c, clen);
  *it = (item_t){.fd = -1, .len = alen + blen + clen, .buf = it->data};
  return it;
}

int orch_chan_send(orch_chan_t *ch, const char *text, size_t len) {
  if (ch->closed) return -EPIPE;
  if (ch->queued + len > ORCH_CHAN_MAX_QUEUED) return -ENOBUFS;
  size_t off = 0;
  if (!ch->wq && !ch->full) { /* the common case: written now, nothing copied */
    ssize_t n = write_some(ch->fd, text, len, -1);
    if (n >= 0) off = (size_t)n;
    if (off == len) return 0;
    ch->full = 1;
  }
  item_t *it = item_new(text + off, len - off, NULL, 0, NULL, 0);
  if (!it) return -ENOMEM;
  enqueue(ch, it);
  set_events(ch);
  return 0;
}

int orch_chan_send_fd(orch_chan_t *ch, const char *msg, size_t len, int fd) {
  static const char head[] = "{\"cmd\":\"NODE_HANDLE\",\"type\":\"net.Native\",\"msg\":";
  if (ch->closed) return -EPIPE;
  if (ch->queued + len + sizeof head > ORCH_CHAN_MAX_QUEUED) return -ENOBUFS;
  int dup = fcntl(fd, F_DUPFD_CLOEXEC, 3);
  if (dup < 0) return -errno;
  item_t *it = item_new(head, sizeof head - 1, msg, len, "}\n", 2);
  if (!it) {
    close(dup);
    return -ENOMEM;
  }
  it->fd = dup;
  enqueue(ch, it);
  flush(ch);
  return 0;
}

int orch__chan_send_conn(orch_chan_t *ch, orch_bconn_t *c) {
  if (!orch__chan_ready(ch)) return -EAGAIN;
  ssize_t n = write_some(ch->fd, c->text, c->len, c->fd);
  if (n <= 0) {
    ch->full = 1;
    ch->want_wake = 1;
    set_events(ch);
    return n < 0 ? (int)n : -EAGAIN;
  }
  if ((size_t)n < c->len) { /* the tail waits, the descriptor went with the head */
    item_t *it = malloc(sizeof *it);
    if (!it) { /* cannot happen in practice; the receiver will see a torn line */
      orch_chan_close(ch);
      return -ENOMEM;
    }
    *it = (item_t){.conn = c, .fd = -1, .fd_sent = 1, .len = c->len, .off = (size_t)n, .buf = c->text};
    enqueue(ch, it);
    ch->full = 1;
    set_events(ch);
    return 0;
  }
  push_sent(ch, NULL, c);
  return 0;
}

/* A connection's answers: the handle ack, and the cluster ack (accepted). */
static void conn_answered(orch_bconn_t *c, int answer) {
  if (answer == 1) orch__balancer_done(c);
  else orch__balancer_retry(c);
}

void orch_chan_handle_reply(orch_chan_t *ch, int ack) {
  if (!ch->nsent) return;
  sent_t s = ch->sent[ch->sent_head];
  ch->sent_head = (ch->sent_head + 1) % ORCH_CHAN_WINDOW;
  ch->nsent--;
  if (s.conn) {
    orch_bconn_t *c = s.conn;
    if (!ack) orch__balancer_retry(c);
    else if (c->answer) conn_answered(c, c->answer);
    else {
      c->next = ch->pend;
      ch->pend = c;
    }
  } else if (!ack && s.it->tries < 3) { /* Node's sender tries again too */
    s.it->tries++;
    s.it->off = 0;
    s.it->fd_sent = 0;
    enqueue(ch, s.it);
  } else {
    item_free(s.it);
  }
  flush(ch);
  wake_if_ready(ch);
}

int orch_chan_cluster_ack(orch_chan_t *ch, uint64_t seq, int accepted) {
  for (orch_bconn_t **pp = &ch->pend; *pp; pp = &(*pp)->next) {
    orch_bconn_t *c = *pp;
    if (c->seq != seq) continue;
    *pp = c->next;
    conn_answered(c, accepted ? 1 : 2);
    return 1;
  }
  for (unsigned i = 0; i < ch->nsent; i++) { /* before its handle ack: kept for then */
    orch_bconn_t *c = ch->sent[(ch->sent_head + i) % ORCH_CHAN_WINDOW].conn;
    if (c && c->seq == seq && !c->answer) {
      c->answer = accepted ? 1 : 2;
      return 1;
    }
  }
  return 0;
}

/* Node's own formatting of the per-connection answers, recognised without
 * a JSON parser; any other spelling goes to Lua, which calls back. */
static int parse_u64(const char **p, const char *end, uint64_t *out) {
  const char *s = *p;
  uint64_t v = 0;
  while (s < end && *s >= '0' && *s <= '9' && s - *p < 18) v = v * 10 + (uint64_t)(*s++ - '0');
  if (s == *p) return 0;
  *p = s;
  *out = v;
  return 1;
}

static int eat(const char **p, const char *end, const char *lit) {
  size_t n = strlen(lit);
  if ((size_t)(end - *p) < n || memcmp(*p, lit, n) != 0) return 0;
  *p += n;
  return 1;
}

static int fast_line(orch_chan_t *ch, const char *line, size_t len) {
  static const char ack[] = "{\"cmd\":\"NODE_HANDLE_ACK\"}", nack[] = "{\"cmd\":\"NODE_HANDLE_NACK\"}";
  if (len == sizeof ack - 1 && memcmp(line, ack, len) == 0) {
    orch_chan_handle_reply(ch, 1);
    return 1;
  }
  if (len == sizeof nack - 1 && memcmp(line, nack, len) == 0) {
    orch_chan_handle_reply(ch, 0);
    return 1;
  }
  const char *p = line, *end = line + len;
  uint64_t seq, their;
  int accepted;
  if (!eat(&p, end, "{\"cmd\":\"NODE_CLUSTER\",\"ack\":") || !parse_u64(&p, end, &seq)) return 0;
  if (eat(&p, end, ",\"accepted\":true")) accepted = 1;
  else if (eat(&p, end, ",\"accepted\":false")) accepted = 0;
  else return 0;
  if (!eat(&p, end, ",\"seq\":") || !parse_u64(&p, end, &their) || !eat(&p, end, "}") || p != end)
    return 0;
  return orch_chan_cluster_ack(ch, seq, accepted);
}

/* Handles the complete lines of buf; returns the bytes they took (the rest
 * is a line's beginning), or stops when a callback closed the channel. */
static size_t scan(orch_chan_t *ch, const char *buf, size_t n) {
  size_t start = 0;
  while (!ch->closed) {
    const char *nl = memchr(buf + start, '\n', n - start);
    if (!nl) break;
    size_t len = (size_t)(nl - (buf + start));
    const char *line = buf + start;
    start += len + 1;
    if (len && !fast_line(ch, line, len)) ch->h.on_line(ch, line, len, ch->h.data);
  }
  return start;
}

/* What one read brought: lines straight from it; only a line's beginning
 * is kept (rbuf), so an idle channel holds no buffer. */
static void consume(orch_chan_t *ch, const char *data, size_t n) {
  if (!ch->rlen) {
    size_t used = scan(ch, data, n);
    if (ch->closed || used == n) return;
    data += used;
    n -= used;
  }
  if (ch->rcap - ch->rlen < n) {
    size_t cap = ch->rcap * 2;
    if (cap < ch->rlen + n) cap = ch->rlen + n + 256;
    char *b = realloc(ch->rbuf, cap);
    if (!b) return orch_chan_close(ch);
    ch->rbuf = b;
    ch->rcap = cap;
  }
  memcpy(ch->rbuf + ch->rlen, data, n);
  size_t had = ch->rlen;
  ch->rlen += n;
  if (had && memchr(data, '\n', n)) { /* the kept beginning ends here */
    size_t used = scan(ch, ch->rbuf, ch->rlen);
    if (ch->closed) return;
    memmove(ch->rbuf, ch->rbuf + used, ch->rlen - used);
    ch->rlen -= used;
  }
  if (ch->rlen > ORCH_CHAN_MAX_LINE) {
    ch->h.on_line(ch, NULL, 0, ch->h.data); /* over-long */
    orch_chan_close(ch);
  } else if (!ch->rlen) {
    free(ch->rbuf);
    ch->rbuf = NULL;
    ch->rcap = 0;
  }
}

/* One read: 1 more to read, 0 not now, -1 the channel ended. */
static int read_once(orch_chan_t *ch) {
  char buf[READ_CHUNK];
  struct iovec iov = {.iov_base = buf, .iov_len = sizeof buf};
  union {
    struct cmsghdr align;
    char space[CMSG_SPACE(sizeof(int) * MAX_FDS_IN)];
  } cm;
  struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cm.space,
                      .msg_controllen = sizeof cm.space};
  ssize_t n;
  do n = recvmsg(ch->fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
  while (n < 0 && errno == EINTR);
  if (n < 0) return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
  for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < k; i++) {
      int fd;
      memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
      close(fd);
    }
  }
  if (n == 0) return -1;
  consume(ch, buf, (size_t)n);
  return (size_t)n == sizeof buf;
}

static void on_poll(uv_poll_t *p, int status, int events) {
  orch_chan_t *ch = p->data;
  orch_chan_ref(ch); /* a callback may drop the last other reference */
  if (status < 0) {
    orch_chan_close(ch);
  } else {
    if (events & UV_WRITABLE) {
      ch->full = 0;
      flush(ch);
      wake_if_ready(ch);
    }
    if ((events & (UV_READABLE | UV_DISCONNECT)) && !ch->closed) {
      int r;
      for (int i = 0; i < 8 && (r = read_once(ch)) == 1 && !ch->closed; i++) continue;
      if (r < 0) orch_chan_close(ch);
    }
  }
  orch_chan_unref(ch);
}

int orch_chan_open(uv_loop_t *loop, int fd, const orch_chan_handlers_t *h, orch_chan_t **out) {
  orch_chan_t *ch = calloc(1, sizeof *ch);
  if (!ch) {
    close(fd);
    return -ENOMEM;
  }
  ch->fd = fd;
  ch->h = *h;
  ch->refs = 1;
  int rc = uv_poll_init_socket(loop, &ch->poll, fd);
  if (rc == 0) rc = uv_poll_start(&ch->poll, UV_READABLE, on_poll);
  if (rc < 0) {
    close(fd);
    free(ch);
    return rc;
  }
  ch->events = UV_READABLE;
  ch->poll.data = ch;
  *out = ch;
  return 0;
}

int orch_chan_handover(const orch_chan_t *ch, const char **buf, size_t *len) {
  if (ch->closed) return -EPIPE;
  if (ch->wq || ch->nsent || ch->pend) return -EAGAIN;
  *buf = ch->rbuf;
  *len = ch->rlen;
  return ch->fd;
}

int orch_chan_preload(orch_chan_t *ch, const char *buf, size_t len) {
  if (len == 0) return 0;
  if (len > ORCH_CHAN_MAX_LINE || memchr(buf, '\n', len)) return -EINVAL;
  char *b = realloc(ch->rbuf, len + READ_CHUNK);
  if (!b) return -ENOMEM;
  ch->rbuf = b;
  ch->rcap = len + READ_CHUNK;
  memcpy(ch->rbuf, buf, len);
  ch->rlen = len;
  return 0;
}

void orch_chan_close(orch_chan_t *ch) {
  if (ch->closed) return;
  ch->closed = 1;
  orch_chan_ref(ch);
  uv_close((uv_handle_t *)&ch->poll, on_poll_closed);
  close(ch->fd);
  ch->fd = -1;
  /* what the worker had not answered goes to another one */
  while (ch->wq) {
    item_t *it = ch->wq;
    ch->wq = it->next;
    if (it->conn) {
      orch__balancer_retry(it->conn);
      free(it);
    } else {
      item_free(it);
    }
  }
  ch->wq_tail = NULL;
  ch->queued = 0;
  while (ch->nsent) {
    sent_t s = ch->sent[ch->sent_head];
    ch->sent_head = (ch->sent_head + 1) % ORCH_CHAN_WINDOW;
    ch->nsent--;
    if (s.conn) orch__balancer_retry(s.conn);
    else item_free(s.it);
  }
  while (ch->pend) {
    orch_bconn_t *c = ch->pend;
    ch->pend = c->next;
    orch__balancer_retry(c);
  }
  if (ch->h.on_close) ch->h.on_close(ch, ch->h.data);
  orch_chan_unref(ch);
}
