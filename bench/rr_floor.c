/* rr_floor.c: the floor of round-robin balancing on this machine.
 *
 * What orch's balancer must do per connection, and nothing else: accept it,
 * pass its descriptor to a worker process over a Unix stream socket with
 * SCM_RIGHTS (one byte of payload), close it. The workers (forked here) are
 * trivial HTTP servers: read the request, write a fixed answer, close. The
 * process that passes is the one measured (bench/rr_floor.sh reads its
 * /proc/PID/task/x/schedstat around a wrk run; it also prints getrusage at
 * exit), so that the µs of CPU per connection can be set beside orch's.
 *
 *   rr_floor MODE PORT [WORKERS]     (SIGTERM or SIGINT: print totals, exit)
 *   MODE  epoll  as orch's loop does: epoll_wait, accept4 until EAGAIN, and
 *                per connection sendmsg and close (blocking channel)
 *         ack    epoll, and the protocol orch speaks: the worker answers each
 *                descriptor on receipt (one byte here; Node's NODE_HANDLE_ACK
 *                and cluster ack, one line each), and the passer closes its
 *                copy once that answer is read (so that it could give the
 *                connection to another worker if refused)
 *         block  no poll at all: blocking accept4, sendmsg, close (the fewest
 *                plain system calls, but a loop thread cannot block)
 *         uring  io_uring through raw system calls: one multishot accept,
 *                per connection a sendmsg linked to a close, everything
 *                submitted and reaped in one io_uring_enter per batch
 *   WORKERS      default 2, as bench/run's cluster rows
 *   RR_LINGER_US=N  batching of wake-ups (default 0: none). epoll: after a
 *                turn that accepted something, sleep N µs before the next
 *                epoll_wait. uring: wait for RR_BATCH completions (default
 *                16) for at most N µs (io_uring's min_wait, Linux 6.12),
 *                then for one.
 *
 * Built by bench/rr_floor.sh (cc -std=c11 -O2 -Wall -Wextra -Werror); a bench
 * tool only, no part of orch. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/io_uring.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_WORKERS 16
#define ACCEPTS_PER_TURN 64 /* as core/balancer.c */
#define RING_ENTRIES 256
#define SLOTS 1024 /* connections between their accept and their sendmsg's completion */

static volatile sig_atomic_t stop;
static int acking; /* mode ack: the workers answer each descriptor */
static unsigned linger_us, batch = 16;
static unsigned long long wakes; /* waits that returned */
static int chans[MAX_WORKERS], nworkers, cur;
static unsigned long long conns, failures;

static void on_signal(int sig) {
  (void)sig;
  stop = 1;
}

static void die(const char *what) {
  perror(what);
  exit(1);
}

/* --- the workers ---------------------------------------------------------- */

static const char ANSWER[] = "HTTP/1.1 200 OK\r\nContent-Length: 6\r\nConnection: close\r\n\r\nhello\n";

static void answer(int ep, int fd, int waited) {
  char buf[4096];
  ssize_t n = read(fd, buf, sizeof buf);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) && !waited) {
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) == 0) return;
  }
  if (n > 0 && write(fd, ANSWER, sizeof ANSWER - 1) < 0) failures++;
  close(fd); /* also leaves the epoll set */
}

/* The next descriptor on the channel, -EAGAIN, or 0 at its end. */
static int recv_fd(int ch) {
  char byte, cbuf[CMSG_SPACE(sizeof(int))];
  struct iovec iov = {.iov_base = &byte, .iov_len = 1};
  struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof cbuf};
  ssize_t n = recvmsg(ch, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
  if (n < 0) return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? -EAGAIN : 0;
  if (n == 0) return 0;
  struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
  if (!cm || cm->cmsg_type != SCM_RIGHTS) return -EAGAIN;
  int fd;
  memcpy(&fd, CMSG_DATA(cm), sizeof fd);
  return fd;
}

static void worker(int ch) {
  int ep = epoll_create1(EPOLL_CLOEXEC);
  struct epoll_event ev = {.events = EPOLLIN, .data.fd = ch}, evs[64];
  if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, ch, &ev) < 0) die("worker epoll");
  for (;;) {
    int n = epoll_wait(ep, evs, 64, -1);
    if (n < 0 && errno != EINTR) die("worker epoll_wait");
    for (int i = 0; i < n; i++) {
      if (evs[i].data.fd != ch) {
        answer(ep, evs[i].data.fd, 1);
        continue;
      }
      int fd;
      while ((fd = recv_fd(ch)) > 0) {
        if (acking && write(ch, "a", 1) < 0) failures++;
        answer(ep, fd, 0);
      }
      if (fd == 0) _exit(0); /* the passer is gone */
    }
  }
}

/* --- plain system calls --------------------------------------------------- */

/* One byte with fd to the next worker: its index, or -1. */
static int send_fd(int fd) {
  int w = cur;
  cur = (cur + 1) % nworkers;
  conns++;
  char byte = 'c', cbuf[CMSG_SPACE(sizeof(int))] = {0};
  struct iovec iov = {.iov_base = &byte, .iov_len = 1};
  struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof cbuf};
  struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
  cm->cmsg_level = SOL_SOCKET;
  cm->cmsg_type = SCM_RIGHTS;
  cm->cmsg_len = CMSG_LEN(sizeof(int));
  memcpy(CMSG_DATA(cm), &fd, sizeof fd);
  if (sendmsg(chans[w], &mh, MSG_NOSIGNAL) < 0) {
    failures++;
    return -1;
  }
  return w;
}

static void pass(int fd) {
  send_fd(fd);
  close(fd);
}

/* Mode ack: the descriptors each worker has not answered yet, in order. */
static struct {
  int fd[SLOTS];
  unsigned head, n;
} unanswered[MAX_WORKERS];

static void pass_kept(int fd) {
  int w = unanswered[cur].n < SLOTS ? send_fd(fd) : -1; /* SLOTS unanswered: never under -c50 */
  if (w < 0) {
    if (unanswered[cur].n == SLOTS) failures++, cur = (cur + 1) % nworkers;
    close(fd);
    return;
  }
  unanswered[w].fd[(unanswered[w].head + unanswered[w].n++) % SLOTS] = fd;
}

/* Reads worker w's answers; closes what they answer. */
static void read_answers(int w) {
  char buf[4096];
  ssize_t n = recv(chans[w], buf, sizeof buf, MSG_DONTWAIT);
  for (ssize_t i = 0; i < n && unanswered[w].n; i++) {
    close(unanswered[w].fd[unanswered[w].head]);
    unanswered[w].head = (unanswered[w].head + 1) % SLOTS;
    unanswered[w].n--;
  }
}

/* accept4's failures that say nothing about the next call */
static int transient(int err) { return err == EINTR || err == ECONNABORTED || err == EPROTO; }

static void run_epoll(int lfd) {
  int ep = epoll_create1(EPOLL_CLOEXEC);
  struct epoll_event ev = {.events = EPOLLIN, .data.u32 = MAX_WORKERS}, evs[MAX_WORKERS + 1];
  if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev) < 0) die("epoll");
  for (int w = 0; acking && w < nworkers; w++) {
    ev.data.u32 = (uint32_t)w;
    if (epoll_ctl(ep, EPOLL_CTL_ADD, chans[w], &ev) < 0) die("epoll");
  }
  while (!stop) {
    int n = epoll_wait(ep, evs, MAX_WORKERS + 1, -1), got = 0, listen_ready = 0;
    if (n < 0 && errno != EINTR) die("epoll_wait");
    wakes++;
    for (int i = 0; i < n; i++) {
      if (evs[i].data.u32 == MAX_WORKERS) listen_ready = 1;
      else read_answers((int)evs[i].data.u32);
    }
    for (int i = 0; listen_ready && i < ACCEPTS_PER_TURN; i++) {
      int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd >= 0 && acking) pass_kept(fd), got++;
      else if (fd >= 0) pass(fd), got++;
      else if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      else if (!transient(errno)) die("accept4");
    }
    if (got && linger_us) nanosleep(&(struct timespec){.tv_nsec = linger_us * 1000L}, NULL);
  }
}

static void run_block(int lfd) {
  int fl = fcntl(lfd, F_GETFL);
  if (fl < 0 || fcntl(lfd, F_SETFL, fl & ~O_NONBLOCK) < 0) die("fcntl");
  while (!stop) {
    int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) pass(fd);
    else if (!transient(errno)) die("accept4");
  }
}

/* --- io_uring, raw -------------------------------------------------------- */

enum { OP_ACCEPT = 1, OP_SEND, OP_CLOSE };

typedef struct {
  struct msghdr mh;
  struct iovec iov;
  char byte;
  union { /* aligned as a cmsghdr */
    struct cmsghdr align;
    char buf[CMSG_SPACE(sizeof(int))];
  } c;
} slot_t;

static struct {
  int fd;
  unsigned *sq_head, *sq_tail, sq_mask, *sq_array, sq_tail_local, unsubmitted;
  unsigned *cq_head, *cq_tail, cq_mask;
  struct io_uring_sqe *sqes;
  struct io_uring_cqe *cqes;
} ring;
static slot_t slots[SLOTS];
static unsigned free_slots[SLOTS], nfree;

static int enter(unsigned submit, unsigned wait, unsigned flags) {
  return (int)syscall(__NR_io_uring_enter, ring.fd, submit, wait, flags, NULL, 0);
}

#ifndef IORING_FEAT_MIN_TIMEOUT
#define IORING_FEAT_MIN_TIMEOUT (1U << 15) /* Linux 6.12: min_wait_usec where older headers have pad */
#endif

static void submit_pending(unsigned wait) {
  __atomic_store_n(ring.sq_tail, ring.sq_tail_local, __ATOMIC_RELEASE);
  int r;
  if (wait && linger_us) {
    /* min_wait_usec; after it, one completion is enough (within 1 s) */
    struct __kernel_timespec ts = {.tv_sec = 1};
    struct io_uring_getevents_arg a = {.pad = linger_us, .ts = (uintptr_t)&ts};
    r = (int)syscall(__NR_io_uring_enter, ring.fd, ring.unsubmitted, batch,
                     IORING_ENTER_GETEVENTS | IORING_ENTER_EXT_ARG, &a, sizeof a);
  } else {
    r = enter(ring.unsubmitted, wait, wait ? IORING_ENTER_GETEVENTS : 0);
  }
  if (r >= 0) ring.unsubmitted -= (unsigned)r;
  else if (errno != EINTR && errno != EAGAIN && errno != EBUSY && errno != ETIME) die("io_uring_enter");
}

static struct io_uring_sqe *sqe_get(void) {
  while (ring.sq_tail_local - __atomic_load_n(ring.sq_head, __ATOMIC_ACQUIRE) >= RING_ENTRIES) submit_pending(0);
  unsigned i = ring.sq_tail_local & ring.sq_mask;
  struct io_uring_sqe *s = &ring.sqes[i];
  memset(s, 0, sizeof *s);
  ring.sq_array[i] = i;
  ring.sq_tail_local++;
  ring.unsubmitted++;
  return s;
}

static void ring_setup(void) {
  struct io_uring_params p;
  memset(&p, 0, sizeof p);
  /* task work (the accepts' completions) runs only inside our own enter:
   * batched, and counted to this process */
  p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
  ring.fd = (int)syscall(__NR_io_uring_setup, RING_ENTRIES, &p);
  if (ring.fd < 0 && errno == EINVAL) { /* before 6.1 */
    memset(&p, 0, sizeof p);
    ring.fd = (int)syscall(__NR_io_uring_setup, RING_ENTRIES, &p);
  }
  if (ring.fd < 0) die("io_uring_setup");
  if (linger_us && !(p.features & IORING_FEAT_MIN_TIMEOUT)) {
    fprintf(stderr, "io_uring: no min_wait (kernel before 6.12): RR_LINGER_US cannot batch\n");
    exit(1);
  }
  if (!(p.features & IORING_FEAT_SINGLE_MMAP)) {
    fprintf(stderr, "io_uring: no IORING_FEAT_SINGLE_MMAP (kernel before 5.4)\n");
    exit(1);
  }
  size_t sq_sz = p.sq_off.array + p.sq_entries * sizeof(unsigned);
  size_t cq_sz = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
  size_t sz = sq_sz > cq_sz ? sq_sz : cq_sz;
  char *q = mmap(NULL, sz, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, ring.fd, IORING_OFF_SQ_RING);
  void *s = mmap(NULL, p.sq_entries * sizeof(struct io_uring_sqe), PROT_READ | PROT_WRITE,
                 MAP_SHARED | MAP_POPULATE, ring.fd, IORING_OFF_SQES);
  if (q == MAP_FAILED || s == MAP_FAILED) die("mmap io_uring");
  ring.sq_head = (unsigned *)(q + p.sq_off.head);
  ring.sq_tail = (unsigned *)(q + p.sq_off.tail);
  ring.sq_mask = *(unsigned *)(q + p.sq_off.ring_mask);
  ring.sq_array = (unsigned *)(q + p.sq_off.array);
  ring.sq_tail_local = *ring.sq_tail;
  ring.cq_head = (unsigned *)(q + p.cq_off.head);
  ring.cq_tail = (unsigned *)(q + p.cq_off.tail);
  ring.cq_mask = *(unsigned *)(q + p.cq_off.ring_mask);
  ring.cqes = (struct io_uring_cqe *)(q + p.cq_off.cqes);
  ring.sqes = s;
  for (unsigned i = 0; i < SLOTS; i++) free_slots[nfree++] = SLOTS - 1 - i;
}

static void arm_accept(int lfd) {
  struct io_uring_sqe *s = sqe_get();
  s->opcode = IORING_OP_ACCEPT;
  s->fd = lfd;
  s->ioprio = IORING_ACCEPT_MULTISHOT;
  s->accept_flags = SOCK_NONBLOCK | SOCK_CLOEXEC;
  s->user_data = OP_ACCEPT;
}

/* sendmsg of fd to the next worker, linked to fd's close: both go in with
 * the next enter; the close posts no completion unless it fails (or the
 * sendmsg did and cancelled it). */
static void pass_uring(int fd) {
  if (!nfree) { /* SLOTS connections not yet sent: never under -c50 */
    close(fd);
    failures++;
    return;
  }
  unsigned k = free_slots[--nfree];
  slot_t *sl = &slots[k];
  sl->byte = 'c';
  sl->iov = (struct iovec){.iov_base = &sl->byte, .iov_len = 1};
  sl->mh = (struct msghdr){.msg_iov = &sl->iov, .msg_iovlen = 1, .msg_control = sl->c.buf,
                           .msg_controllen = sizeof sl->c.buf};
  struct cmsghdr *cm = CMSG_FIRSTHDR(&sl->mh);
  cm->cmsg_level = SOL_SOCKET;
  cm->cmsg_type = SCM_RIGHTS;
  cm->cmsg_len = CMSG_LEN(sizeof(int));
  memcpy(CMSG_DATA(cm), &fd, sizeof fd);
  struct io_uring_sqe *s = sqe_get();
  s->opcode = IORING_OP_SENDMSG;
  s->fd = chans[cur];
  s->addr = (uintptr_t)&sl->mh;
  s->len = 1;
  s->msg_flags = MSG_NOSIGNAL;
  s->flags = IOSQE_IO_LINK;
  s->user_data = (uint64_t)k << 8 | OP_SEND;
  cur = (cur + 1) % nworkers;
  s = sqe_get();
  s->opcode = IORING_OP_CLOSE;
  s->fd = fd;
  s->flags = IOSQE_CQE_SKIP_SUCCESS;
  s->user_data = (uint64_t)(unsigned)fd << 8 | OP_CLOSE;
  conns++;
}

static void run_uring(int lfd) {
  ring_setup();
  arm_accept(lfd);
  while (!stop) {
    submit_pending(1);
    wakes++;
    unsigned head = *ring.cq_head, tail = __atomic_load_n(ring.cq_tail, __ATOMIC_ACQUIRE);
    for (; head != tail; head++) {
      struct io_uring_cqe *c = &ring.cqes[head & ring.cq_mask];
      int op = (int)(c->user_data & 0xff), res = c->res;
      unsigned arg = (unsigned)(c->user_data >> 8);
      if (op == OP_ACCEPT) {
        if (res >= 0) pass_uring(res);
        else if (!transient(-res) && res != -EAGAIN) failures++;
        if (!(c->flags & IORING_CQE_F_MORE)) arm_accept(lfd);
      } else if (op == OP_SEND) {
        if (res < 0) failures++; /* its close comes back cancelled */
        free_slots[nfree++] = arg;
      } else if (op == OP_CLOSE && res == -ECANCELED) {
        close((int)arg);
      }
    }
    __atomic_store_n(ring.cq_head, head, __ATOMIC_RELEASE);
  }
}

/* --- main ----------------------------------------------------------------- */

int main(int argc, char **argv) {
  if (argc < 3 || argc > 4) {
    fprintf(stderr, "usage: rr_floor epoll|ack|block|uring PORT [WORKERS]\n");
    return 2;
  }
  const char *mode = argv[1], *e;
  if ((e = getenv("RR_LINGER_US"))) linger_us = (unsigned)atoi(e);
  if ((e = getenv("RR_BATCH"))) batch = (unsigned)atoi(e);
  if (linger_us > 999999 || batch < 1) {
    fprintf(stderr, "rr_floor: RR_LINGER_US 0-999999, RR_BATCH >= 1\n");
    return 2;
  }
  int port = atoi(argv[2]);
  nworkers = argc > 3 ? atoi(argv[3]) : 2;
  if (nworkers < 1 || nworkers > MAX_WORKERS || port < 1 || port > 65535) {
    fprintf(stderr, "rr_floor: PORT 1-65535, WORKERS 1-%d\n", MAX_WORKERS);
    return 2;
  }
  acking = !strcmp(mode, "ack"); /* before the workers are forked */
  pid_t pids[MAX_WORKERS];
  for (int i = 0; i < nworkers; i++) {
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) die("socketpair");
    pids[i] = fork();
    if (pids[i] < 0) die("fork");
    if (pids[i] == 0) {
      if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0) die("prctl"); /* never outlive the passer */
      for (int j = 0; j < i; j++) close(chans[j]);
      close(sv[0]);
      worker(sv[1]);
    }
    close(sv[1]);
    chans[i] = sv[0];
  }
  int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), one = 1;
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                           .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  if (lfd < 0 || setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
      bind(lfd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(lfd, 511) < 0)
    die("listen");
  struct sigaction act = {.sa_handler = on_signal}; /* no SA_RESTART: the waits return EINTR */
  if (sigaction(SIGTERM, &act, NULL) < 0 || sigaction(SIGINT, &act, NULL) < 0) die("sigaction");
  if (!strcmp(mode, "epoll") || !strcmp(mode, "ack")) run_epoll(lfd);
  else if (!strcmp(mode, "block")) run_block(lfd);
  else if (!strcmp(mode, "uring")) run_uring(lfd);
  else {
    fprintf(stderr, "rr_floor: MODE is epoll, ack, block or uring, not %s\n", mode);
    return 2;
  }
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  double us = (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e6 + (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
  printf("%s: %llu connections, %llu wake-ups, %llu failures, user %.0f us, sys %.0f us, %.2f us/conn over the whole run\n", mode,
         conns, wakes, failures, (double)ru.ru_utime.tv_sec * 1e6 + (double)ru.ru_utime.tv_usec,
         (double)ru.ru_stime.tv_sec * 1e6 + (double)ru.ru_stime.tv_usec, conns ? us / (double)conns : 0.0);
  for (int i = 0; i < nworkers; i++) close(chans[i]);
  for (int i = 0; i < nworkers; i++) waitpid(pids[i], NULL, 0);
  return 0;
}
