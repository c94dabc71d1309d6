/* echo.c: orch run's terminal echo, written by a thread per fd so that a
 * slow reader never blocks the loop (see echo.h for why a thread). */
#include "orch/echo.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct orch_echo_s {
  int fd;
  pthread_t thread;
  pthread_mutex_t mu;
  pthread_cond_t wake; /* for the writer: lines queued, or quit */
  pthread_cond_t idle; /* for finish: the queue is empty */
  char *pend;          /* lines queued by the loop */
  size_t pend_len;
  char *out; /* the batch being written (the writer's while busy) */
  int busy, quit;
  int dead;     /* a write failed (reader gone): nothing more is echoed */
  int dropping; /* fell behind: dropping until half the buffer is free */
  uint64_t lines, bytes, gap; /* dropped: in total, and since the last notice */
};

/* Echo fds are 1 and 2 in practice; a few more cost nothing. */
static orch_echo_t *writers[4];

static int write_all(int fd, const char *buf, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, buf, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return -1;
    buf += w;
    n -= (size_t)w;
  }
  return 0;
}

static void *writer(void *arg) {
  orch_echo_t *e = arg;
  pthread_mutex_lock(&e->mu);
  for (;;) {
    while (e->pend_len == 0 && !e->quit) pthread_cond_wait(&e->wake, &e->mu);
    if (e->pend_len == 0) break;
    /* Take the whole queue; the loop goes on filling the other buffer. */
    char *batch = e->pend;
    size_t n = e->pend_len;
    e->pend = e->out;
    e->out = batch;
    e->pend_len = 0;
    e->busy = 1;
    pthread_mutex_unlock(&e->mu);
    int rc = write_all(e->fd, batch, n);
    pthread_mutex_lock(&e->mu);
    e->busy = 0;
    if (rc < 0) {
      /* A closed terminal or pipe is not the apps' problem: echo stops. */
      e->dead = 1;
      e->pend_len = 0;
    }
    if (e->pend_len == 0) pthread_cond_broadcast(&e->idle);
  }
  pthread_mutex_unlock(&e->mu);
  return NULL;
}

static orch_echo_t *echo_new(int fd) {
  orch_echo_t *e = calloc(1, sizeof *e);
  if (!e) return NULL;
  e->fd = fd;
  e->pend = malloc(ORCH_ECHO_CAP);
  e->out = malloc(ORCH_ECHO_CAP);
  pthread_condattr_t ca;
  int ok = e->pend && e->out && pthread_condattr_init(&ca) == 0;
  if (ok) {
    /* finish waits against CLOCK_MONOTONIC: a clock change cannot stretch it. */
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    ok = pthread_mutex_init(&e->mu, NULL) == 0;
    ok = ok && pthread_cond_init(&e->wake, NULL) == 0 && pthread_cond_init(&e->idle, &ca) == 0;
    pthread_condattr_destroy(&ca);
  }
  if (ok) {
    /* Signals are the loop's business: the writer takes none. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_attr_t attr;
    ok = pthread_attr_init(&attr) == 0;
    if (ok) {
      pthread_attr_setstacksize(&attr, 256 * 1024);
      pthread_sigmask(SIG_SETMASK, &all, &old);
      ok = pthread_create(&e->thread, &attr, writer, e) == 0;
      pthread_sigmask(SIG_SETMASK, &old, NULL);
      pthread_attr_destroy(&attr);
    }
  }
  if (!ok) {
    free(e->pend);
    free(e->out);
    free(e);
    return NULL;
  }
  return e;
}

orch_echo_t *orch_echo_find(int fd) {
  for (int i = 0; i < (int)(sizeof writers / sizeof *writers); i++)
    if (writers[i] && writers[i]->fd == fd) return writers[i];
  return NULL;
}

orch_echo_t *orch_echo_get(int fd) {
  int free_slot = -1;
  for (int i = 0; i < (int)(sizeof writers / sizeof *writers); i++) {
    if (writers[i] && writers[i]->fd == fd) return writers[i];
    if (!writers[i] && free_slot < 0) free_slot = i;
  }
  if (free_slot < 0) return NULL;
  return writers[free_slot] = echo_new(fd);
}

static void put(orch_echo_t *e, const char *s, size_t n) {
  if (n == 0) return;
  memcpy(e->pend + e->pend_len, s, n);
  e->pend_len += n;
}

void orch_echo_line(orch_echo_t *e, const char *a, size_t alen, const char *b, size_t blen,
                    const char *c, size_t clen, const char *d, size_t dlen) {
  size_t n = alen + blen + clen + dlen;
  char notice[128];
  int nlen = 0;
  pthread_mutex_lock(&e->mu);
  if (e->dead) goto out;
  /* Behind: drop whole lines until half the buffer is free again, rather
   * than one line in, one line out while the reader crawls. */
  if (e->dropping && e->pend_len <= ORCH_ECHO_CAP / 2) {
    e->dropping = 0;
    nlen = snprintf(notice, sizeof notice,
                    "orch | %llu lines of output were not echoed here: the reader fell behind "
                    "(the log files have them)\n",
                    (unsigned long long)e->gap);
  }
  if (e->dropping || e->pend_len + (size_t)nlen + n > ORCH_ECHO_CAP) {
    e->dropping = 1;
    e->lines++;
    e->bytes += n;
    e->gap++; /* a notice not written yet keeps its count */
    goto out;
  }
  int was_empty = e->pend_len == 0;
  if (nlen > 0) {
    put(e, notice, (size_t)nlen);
    e->gap = 0;
  }
  put(e, a, alen);
  put(e, b, blen);
  put(e, c, clen);
  put(e, d, dlen);
  if (was_empty && !e->busy) pthread_cond_signal(&e->wake);
out:
  pthread_mutex_unlock(&e->mu);
}

void orch_echo_stats(orch_echo_stats_t *st) {
  st->lines = st->bytes = 0;
  for (int i = 0; i < (int)(sizeof writers / sizeof *writers); i++) {
    orch_echo_t *e = writers[i];
    if (!e) continue;
    pthread_mutex_lock(&e->mu);
    st->lines += e->lines;
    st->bytes += e->bytes;
    pthread_mutex_unlock(&e->mu);
  }
}

static size_t count_lines(const char *s, size_t n) {
  size_t k = 0;
  for (const char *p = s; (p = memchr(p, '\n', n - (size_t)(p - s))); p++) k++;
  return k;
}

/* Waits until deadline for e's queue to empty; 1 if it did (the writer is
 * then gone and e freed), 0 if not (what is queued counts as dropped; the
 * writer, stuck in write(2), is left to the process's exit). */
static int drain(orch_echo_t *e, const struct timespec *deadline) {
  pthread_mutex_lock(&e->mu);
  e->quit = 1;
  pthread_cond_signal(&e->wake);
  int rc = 0;
  while ((e->pend_len > 0 || e->busy) && rc != ETIMEDOUT)
    rc = pthread_cond_timedwait(&e->idle, &e->mu, deadline);
  int drained = e->pend_len == 0 && !e->busy;
  if (!drained) {
    size_t k = count_lines(e->pend, e->pend_len);
    e->lines += k;
    e->bytes += e->pend_len;
    e->pend_len = 0;
  }
  pthread_mutex_unlock(&e->mu);
  if (drained) pthread_join(e->thread, NULL);
  return drained;
}

void orch_echo_finish(int ms) {
  struct timespec deadline;
  clock_gettime(CLOCK_MONOTONIC, &deadline);
  deadline.tv_sec += ms / 1000;
  deadline.tv_nsec += (long)(ms % 1000) * 1000000;
  if (deadline.tv_nsec >= 1000000000) {
    deadline.tv_sec++;
    deadline.tv_nsec -= 1000000000;
  }
  uint64_t lines = 0;
  int stderr_free = 1; /* fd 2 has no writer left that might still be stuck */
  for (int i = 0; i < (int)(sizeof writers / sizeof *writers); i++) {
    orch_echo_t *e = writers[i];
    if (!e) continue;
    int drained = drain(e, &deadline);
    lines += e->lines;
    if (!drained) {
      if (e->fd == 2) stderr_free = 0;
      continue; /* its thread may still use it */
    }
    pthread_mutex_destroy(&e->mu);
    pthread_cond_destroy(&e->wake);
    pthread_cond_destroy(&e->idle);
    free(e->pend);
    free(e->out);
    free(e);
    writers[i] = NULL;
  }
  if (lines == 0 || !stderr_free) return;
  char msg[160];
  int n = snprintf(msg, sizeof msg,
                   "orch | %llu lines of output were not echoed: the reader fell behind "
                   "(the log files have them)\n",
                   (unsigned long long)lines);
  if (n > 0 && write(2, msg, (size_t)n) < 0) return; /* nowhere left to say it */
}
