/* ctl_client.c: the CLI's end of the control socket. Blocking calls and one
 * growing buffer; no libuv, so that a verb costs little beyond start-up. */
#include "orch/ctl.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

struct orch_ctl_client_s {
  int fd;
  int eof;
  char *buf;
  size_t start, len, cap; /* unread bytes are buf[start, start + len) */
  size_t scanned;         /* of those, how many are known to hold no '\n' */
};

int orch_ctl_connect(const char *path, orch_ctl_client_t **out) {
  struct sockaddr_un sa;
  memset(&sa, 0, sizeof sa);
  sa.sun_family = AF_UNIX;
  if (strlen(path) >= sizeof sa.sun_path) return -ENAMETOOLONG;
  strcpy(sa.sun_path, path);
  orch_ctl_client_t *c = calloc(1, sizeof *c);
  if (!c) return -ENOMEM;
  c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (c->fd < 0) {
    int err = errno;
    free(c);
    return -err;
  }
  int rc;
  do rc = connect(c->fd, (struct sockaddr *)&sa, sizeof sa);
  while (rc < 0 && errno == EINTR);
  if (rc < 0) {
    int err = errno;
    close(c->fd);
    free(c);
    return -err;
  }
  *out = c;
  return 0;
}

int orch_ctl_client_send(orch_ctl_client_t *c, const char *buf, size_t n) {
  while (n > 0) {
    /* MSG_NOSIGNAL: a daemon that died is an EPIPE to report, whatever the
     * caller did with SIGPIPE. */
    ssize_t w = send(c->fd, buf, n, MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EINTR) continue;
      return -errno;
    }
    buf += w;
    n -= (size_t)w;
  }
  return 0;
}

static long long now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Makes room for at least 4 KiB more after the unread bytes. */
enum { CLIENT_BUF_FIRST = 256 * 1024 };

static int make_room(orch_ctl_client_t *c) {
  if (c->start > 0 && c->start + c->len + 4096 > c->cap) {
    memmove(c->buf, c->buf + c->start, c->len);
    c->start = 0;
  }
  if (c->len + 4096 <= c->cap) return 0;
  /* The first buffer is big enough for a list of 1000 processes (160 KB):
   * malloc maps it and a page costs only once touched, while growing by
   * doubling from 16 KB copied the reply four times into fresh pages (a
   * page fault costs ~20 us on a VM: 2 ms of `orch list --json`). */
  size_t cap = c->cap ? c->cap * 2 : CLIENT_BUF_FIRST;
  while (cap < c->len + 4096) cap *= 2;
  char *nb = realloc(c->buf, cap);
  if (!nb) return -ENOMEM;
  c->buf = nb;
  c->cap = cap;
  return 0;
}

static int take_line(orch_ctl_client_t *c, size_t n, size_t skip,
                     const char **line, size_t *len) {
  *line = c->buf + c->start;
  *len = n;
  c->start += n + skip;
  c->len -= n + skip;
  c->scanned = 0;
  if (c->len == 0) c->start = 0;
  return 0;
}

int orch_ctl_client_read_line(orch_ctl_client_t *c, int timeout_ms,
                              const char **line, size_t *len) {
  long long deadline = timeout_ms >= 0 ? now_ms() + timeout_ms : 0;
  for (;;) {
    char *p = c->buf + c->start;
    char *nl = c->len > c->scanned ? memchr(p + c->scanned, '\n', c->len - c->scanned) : NULL;
    if (nl) return take_line(c, (size_t)(nl - p), 1, line, len);
    c->scanned = c->len;
    if (c->eof) {
      if (c->len > 0) return take_line(c, c->len, 0, line, len);
      return UV_EOF;
    }

    /* Polls at least once, so that a timeout of 0 reads what is there. */
    int wait = -1;
    if (timeout_ms >= 0) {
      long long left = deadline - now_ms();
      wait = left <= 0 ? 0 : left > 1000000000 ? 1000000000 : (int)left;
    }
    struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
    int rc = poll(&pfd, 1, wait);
    if (rc < 0) {
      if (errno == EINTR) continue;
      return -errno;
    }
    if (rc == 0) {
      if (now_ms() >= deadline) return -ETIMEDOUT;
      continue;
    }

    rc = make_room(c);
    if (rc < 0) return rc;
    ssize_t n = read(c->fd, c->buf + c->start + c->len,
                     c->cap - c->start - c->len);
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      /* ECONNRESET after the daemon closed on us: what it sent first still
       * counts, so report the reset only once the buffer is empty. */
      if (c->len > 0 && errno == ECONNRESET) {
        c->eof = 1;
        continue;
      }
      return -errno;
    }
    if (n == 0) c->eof = 1;
    c->len += (size_t)n;
  }
}

/* Writes all of buf to fd, a descriptor the caller owns (stdout), waiting
 * while it is full. 0 or a negative errno. */
static int write_all(int fd, const char *buf, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, buf, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) {
        struct pollfd pfd = {.fd = fd, .events = POLLOUT};
        if (poll(&pfd, 1, -1) < 0 && errno != EINTR) return -errno;
        continue;
      }
      return -errno;
    }
    buf += w;
    n -= (size_t)w;
  }
  return 0;
}

int orch_ctl_client_pass_line(orch_ctl_client_t *c, int timeout_ms, const char *head,
                              size_t head_len, int fd, const char **line, size_t *len,
                              int *write_err) {
  int rc = orch_ctl_client_read_line(c, timeout_ms, line, len);
  if (rc < 0) return rc;
  size_t n = *len;
  if (n <= head_len || memcmp(*line, head, head_len) != 0 || (*line)[n - 1] != '}') return 0;
  /* The line is consumed and lies in c's buffer: a newline where its
   * closing brace was, and the text between head and it is written in one
   * piece. */
  char *text = c->buf + (*line - c->buf) + head_len;
  text[n - head_len - 1] = '\n';
  *write_err = write_all(fd, text, n - head_len);
  return 1;
}

int orch_ctl_client_fd(const orch_ctl_client_t *c) { return c->fd; }

void orch_ctl_client_close(orch_ctl_client_t *c) {
  close(c->fd); /* nothing useful to do with an error of close */
  free(c->buf);
  free(c);
}
