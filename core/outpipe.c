/* outpipe.c: the pipes that feed log sinks (see outpipe.h): reading, lines
 * and records, and waiting when a sink refuses bytes.
 *
 * Over 600 lines on purpose: reading, framing and waiting for space are one
 * object's three views of the same private state (the bytes a full disk
 * refused, the unfinished line held back, the raw input not yet formatted),
 * and each section calls into the others (a refusal stops the reading, a
 * retry replays the framing, EOF flushes the held lines). Split, that state
 * and about fifteen internal functions would leave this file for a private
 * header; kept, the struct stays opaque (outpipe.h) and every rule about
 * held bytes is in one place. Rotation, gzip, problems and echo are apart
 * (sink*.c, rotate.c, echo*.c). */
#include "orch/outpipe.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "orch/echo.h"
#include "orch/owners.h"
#include "orch/record.h"
#include "orch/sink_impl.h"

/* Bytes one outpipe reads per turn of the loop before the other pipes and the
 * control socket get theirs: a flat-out writer cannot starve them. */
#define TURN_BYTES (1u << 20)
/* A read this large found a default-sized pipe (64 KiB) full: the app writes
 * faster than one wake-up per pipeful, so its pipe grows to PIPE_BIG (or
 * /proc/sys/fs/pipe-max-size if smaller). Only such pipes grow: a pipe's
 * size counts against its user's pipe-user-pages quota even while empty. */
#define PIPE_FULL 65536
#define PIPE_BIG (1 << 20)
/* How often an outpipe waiting for disk space tries again. */
#define RETRY_MS 500
/* How long an unfinished line (a progress bar) may be held back for a file
 * that takes whole lines only: then it is written as it is
 * (orch_outpipe_line_hold). */
static unsigned tail_ms = 1000;

void orch_outpipe_line_hold(unsigned ms) { tail_ms = ms; }

/* What a sink refused (full disk), kept by the outpipe until it goes in. */
typedef struct {
  char *buf;
  size_t len, cap;
} held_t;

struct orch_outpipe_s {
  uv_poll_t poll;            /* readability of fd */
  uv_timer_t retry;          /* while stalled: the next try of the held bytes */
  uv_timer_t tail_timer;     /* while a line is held unfinished: tail_ms */
  int fd;                    /* the parent's end of the child's pipe */
  int open_handles;          /* freed when both handles have closed */
  struct orch_outpipe_s *next; /* every open outpipe, for shutdown */
  orch_sink_t *sink, *combined;
  orch_echo_stream_t echo;   /* echo.echo NULL: no echo */
  int released, closing, eof, polling, grown;
  /* Stalled while any of these holds bytes: nothing is read meanwhile.
   * hold[0] goes to sink, hold[1] to combined; raw is input not yet
   * formatted (formatted mode stops at a refusal: records can be many times
   * the size of their input). */
  held_t hold[2], raw;
  int stall_on[2];           /* counted in that sink's stalled */

  /* Formatted mode (framed != 0). */
  int framed, json, utc;
  char *timestamp;          /* strftime format (+ %L, %:z); NULL: none */
  char *json_tail;          /* ","type":...}\n after the time */
  size_t json_tail_len;
  char *part;               /* the unterminated tail of the log stream */
  size_t part_len, part_cap;
  /* Plain mode: the unterminated tail held for the sink (0, while others
   * write its file too) and for combined (1). */
  held_t tail[2];
};

/* Every outpipe reads into this buffer: read callbacks run one at a time and
 * consume the bytes before returning, so one buffer serves them all. Bigger
 * reads mean fewer system calls per byte; 256 KiB is where the gain levels
 * off (measured: bench/logs.lua), and the pages count against the daemon's
 * memory only once a fast writer has touched them. */
static char read_buf[262144];

/* Formatted records of one chunk are gathered here and written with one
 * write(2) per sink; shared for the same reason as read_buf. Grown to the
 * largest record seen, freed when the last outpipe closes. */
static orch_record_buf_t rec;

static orch_outpipe_t *open_outpipes;

/* ---- writing for an outpipe: what a full disk refuses is held ---- */

/* Whether a sink refuses bytes (they are held); see "waiting for disk space". */
static int refused(const orch_outpipe_t *o) { return o->hold[0].len > 0 || o->hold[1].len > 0; }
static int stalled(const orch_outpipe_t *o) { return refused(o) || o->raw.len > 0; }

static int held_append(held_t *h, const char *buf, size_t n) {
  if (orch_buf_grow(&h->buf, &h->cap, h->len + n, 65536) < 0) return -ENOMEM;
  memcpy(h->buf + h->len, buf, n);
  h->len += n;
  return 0;
}

/* Writes buf to o's sink (i = 0) or combined sink (i = 1). Once the sink
 * refuses bytes for lack of space, they and everything after them for that
 * sink are held in order; the outpipe then stops reading (see pump). */
static void put(orch_outpipe_t *o, int i, const char *buf, size_t n) {
  orch_sink_t *s = i ? o->combined : o->sink;
  held_t *h = &o->hold[i];
  if (h->len == 0) {
    size_t left = orch__sink_put(s, buf, n, 1);
    buf += n - left;
    n = left;
  }
  if (n > 0 && held_append(h, buf, n) < 0) orch__sink_dropped(s, n, ENOMEM);
}

static void out(orch_outpipe_t *o, const char *buf, size_t n) {
  put(o, 0, buf, n);
  if (o->combined) put(o, 1, buf, n);
}

/* Input that formatted mode did not get to: kept raw until the sinks take
 * bytes again. */
static void stash(orch_outpipe_t *o, const char *buf, size_t n) {
  if (held_append(&o->raw, buf, n) < 0) orch__sink_dropped(o->sink, n, ENOMEM);
}

static void rec_flush(orch_outpipe_t *o) {
  if (rec.len == 0) return;
  out(o, rec.buf, rec.len);
  rec.len = 0;
}

/* Appends one record for the line a+b (without its newline; nl: it had one). */
static void emit(orch_outpipe_t *o, const char *ts, size_t ts_len, const char *a,
                 size_t alen, const char *b, size_t blen, int nl) {
  if (orch_record_put(&rec, ts, ts_len, o->json ? o->json_tail : NULL, o->json_tail_len, a, alen, b,
                      blen, nl) < 0) {
    /* No memory for the record: lose this line, visibly. */
    orch__sink_dropped(o->sink, alen + blen, ENOMEM);
    return;
  }
  /* Records stay whole in one write; keep the buffer about one read's size. */
  if (rec.len >= sizeof read_buf) rec_flush(o);
}

/* Room in o->part for n more bytes; -1: no memory. */
static int part_reserve(orch_outpipe_t *o, size_t n) {
  return orch_buf_grow(&o->part, &o->part_cap, o->part_len + n, 256);
}

/* Cuts buf into lines, prefixing the held tail to the first one. */
static void frame(orch_outpipe_t *o, const char *buf, size_t n) {
  char ts[256];
  size_t ts_len = 0;
  int have_ts = 0;
  while (n > 0) {
    if (refused(o)) {
      stash(o, buf, n);
      break;
    }
    const char *nl = memchr(buf, '\n', n);
    size_t take = nl ? (size_t)(nl - buf) : n;
    size_t fit = take;
    int whole = nl != NULL;
    if (o->part_len + take > ORCH_LINE_MAX) {
      fit = ORCH_LINE_MAX - o->part_len; /* a line of its own, cut here */
      whole = 1;
    }
    /* Cannot hold it back (no memory): write it as a line now instead. */
    if (!whole && part_reserve(o, n) < 0) whole = 1;
    if (!whole) {
      memcpy(o->part + o->part_len, buf, n);
      o->part_len += n;
      break;
    }
    if (!have_ts && o->timestamp) {
      ts_len = orch_record_time(o->timestamp, o->utc, ts, sizeof ts);
      have_ts = 1;
    }
    emit(o, ts, ts_len, o->part, o->part_len, buf, fit, fit == take && nl);
    o->part_len = 0;
    size_t used = fit + (fit == take && nl ? 1 : 0);
    buf += used;
    n -= used;
  }
  rec_flush(o);
}

/* ---- plain mode ----
 *
 * Bytes go to a file as they come, unless others write the file too (the
 * combined log_file, which gets both streams; instances with merge_logs):
 * there only whole lines go, so that a line written in pieces is not split
 * by another writer's bytes, and the unterminated tail waits for its newline,
 * up to ORCH_LINE_MAX bytes or tail_ms (a progress bar shows within a
 * second). A tail written unfinished leaves the file open in the middle of
 * that writer's line: the next writer to come starts a new line first. */

/* Whether destination i of o gets whole lines only. */
static int lines_only(const orch_outpipe_t *o, int i) { return i || o->sink->writers > 1; }

static orch_sink_t *dest(const orch_outpipe_t *o, int i) { return i ? o->combined : o->sink; }

/* Before o writes a line to destination i: ends another writer's
 * unfinished line there. */
static void line_start(orch_outpipe_t *o, int i) {
  orch_sink_t *s = dest(o, i);
  if (s->open_line && s->open_line != o && !s->at_bol) put(o, i, "\n", 1);
  s->open_line = NULL;
}

/* After o wrote to destination i: whether the file ends in o's line. */
static void line_end(orch_outpipe_t *o, int i) {
  orch_sink_t *s = dest(o, i);
  s->open_line = s->at_bol ? NULL : o;
}

static void tail_flush(orch_outpipe_t *o, int i) {
  held_t *t = &o->tail[i];
  if (t->len == 0) return;
  line_start(o, i);
  put(o, i, t->buf, t->len);
  t->len = 0;
  line_end(o, i);
}

/* Holds buf as (more of) the unfinished line for destination i; 0, or -1
 * when it cannot (too long, no memory). */
static int tail_hold(orch_outpipe_t *o, int i, const char *buf, size_t n) {
  held_t *t = &o->tail[i];
  if (t->len + n > ORCH_LINE_MAX || orch_buf_grow(&t->buf, &t->cap, t->len + n, 256) < 0) return -1;
  memcpy(t->buf + t->len, buf, n);
  t->len += n;
  return 0;
}

static void plain_to(orch_outpipe_t *o, int i, const char *buf, size_t n) {
  if (!lines_only(o, i)) {
    tail_flush(o, i); /* held while the file was shared */
    put(o, i, buf, n);
    return;
  }
  held_t *t = &o->tail[i];
  const char *nl = memrchr(buf, '\n', n);
  size_t lines = nl ? (size_t)(nl - buf) + 1 : 0;
  if (lines == 0 && tail_hold(o, i, buf, n) == 0) return;
  if (lines == 0) lines = n; /* too long a line: this piece goes as is */
  line_start(o, i);
  if (t->len > 0) put(o, i, t->buf, t->len);
  t->len = 0;
  put(o, i, buf, lines);
  buf += lines;
  n -= lines;
  if (n > 0 && tail_hold(o, i, buf, n) < 0) put(o, i, buf, n);
  line_end(o, i);
}

/* Writes the held tails as they are (EOF: nothing will complete them; or
 * they waited tail_ms). */
static void part_flush(orch_outpipe_t *o) {
  tail_flush(o, 0);
  if (o->combined) tail_flush(o, 1);
  if (o->part_len == 0) return;
  char ts[256];
  size_t ts_len = o->timestamp ? orch_record_time(o->timestamp, o->utc, ts, sizeof ts) : 0;
  emit(o, ts, ts_len, o->part, o->part_len, "", 0, 0);
  o->part_len = 0;
  rec_flush(o);
}

static int tails_held(const orch_outpipe_t *o) {
  return o->part_len > 0 || o->tail[0].len > 0 || o->tail[1].len > 0;
}

static void on_tail_timer(uv_timer_t *t);

/* A held tail goes out tail_ms after it began, at the latest. */
static void tail_timer_update(orch_outpipe_t *o) {
  if (o->closing) return;
  if (!tails_held(o)) uv_timer_stop(&o->tail_timer);
  else if (!uv_is_active((uv_handle_t *)&o->tail_timer)) uv_timer_start(&o->tail_timer, on_tail_timer, tail_ms, 0);
}

static int pipe_big(void) {
  static int big;
  if (big) return big;
  big = PIPE_BIG;
  int fd = open("/proc/sys/fs/pipe-max-size", O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    char num[32];
    ssize_t n = read(fd, num, sizeof num - 1);
    close(fd);
    if (n > 0) {
      num[n] = '\0';
      long max = strtol(num, NULL, 10);
      if (max >= 4096 && max < big) big = (int)max;
    }
  }
  return big;
}

static void grow_pipe(orch_outpipe_t *o) {
  o->grown = 1;
  int want = pipe_big(), cur = fcntl(o->fd, F_GETPIPE_SZ);
  /* Failure (EPERM: the user's pipe quota is used up) only costs speed. */
  if (cur >= 0 && cur < want) (void)fcntl(o->fd, F_SETPIPE_SZ, want);
}

/* EOF or close: nothing will complete the held tails. */
static void tails_flush(orch_outpipe_t *o) {
  orch_echo_stream_flush(&o->echo);
  part_flush(o);
}

static void consume(orch_outpipe_t *o, const char *buf, size_t n) {
  /* The echo first: what the log files cannot take yet is not echoed again. */
  orch_echo_stream_write(&o->echo, buf, n);
  if (o->framed) {
    frame(o, buf, n);
  } else {
    plain_to(o, 0, buf, n);
    if (o->combined) plain_to(o, 1, buf, n);
  }
  tail_timer_update(o);
}

/* ---- waiting for space or a reader ----
 *
 * A sink that refuses bytes for lack of space (ENOSPC, EDQUOT), or because
 * its reader does not keep up (EAGAIN: a FIFO, a pipe or terminal), makes the
 * outpipe hold them and stop reading: the app blocks on its full pipe, as it
 * would on a slow disk, and loses nothing. What the outpipe holds is at most
 * about one read: the refused bytes, and in formatted mode the input it had
 * not formatted yet. The held bytes are offered again every RETRY_MS for a
 * full disk, and as soon as the file is writable for a slow reader (the sink
 * watches its fd while anyone waits); once they are in, reading resumes.
 * Other outpipes are not affected unless their files are on the same full
 * file system. The first outpipe to stall on a full disk, and the last to get
 * going again, say so in the daemon log; a slow reader is ordinary
 * back-pressure and only shows in the sink's stats (orch describe). */

/* Counts o as stalled on sink i (or not); quiet: no report (closing). */
static void stall_count(orch_outpipe_t *o, int i, int on, int quiet) {
  orch_sink_t *s = i ? o->combined : o->sink;
  if (!s || on == o->stall_on[i]) return;
  o->stall_on[i] = on;
  if (on && s->stalled++ == 0) {
    s->stalled_since = orch__now_ns();
    int err = s->stall_err ? s->stall_err : ENOSPC;
    if (err != EAGAIN) {
      orch__sink_problem(s, ORCH_LOGP_NOSPACE, err, 0);
      orch__sink_report("warning", "%s: %s (%s): writing paused until there is space; the app blocks on its output, "
             "nothing is dropped", s->path, err == EDQUOT ? "EDQUOT" : "ENOSPC", strerror(err));
    }
  } else if (!on && --s->stalled == 0) {
    orch__sink_unwatch(s);
    uint64_t paused_ns = orch__now_ns() - s->stalled_since;
    if (!quiet && s->stall_err != EAGAIN) {
      orch__sink_problem(s, ORCH_LOGP_RESUMED, 0, paused_ns / 1000000u);
      orch__sink_report("info", "%s: writing again after %.1f s", s->path, (double)paused_ns / 1e9);
    }
    s->stall_err = 0;
  }
}

static void stop_polling(orch_outpipe_t *o) {
  if (o->polling) uv_poll_stop(&o->poll);
  o->polling = 0;
}

static void on_retry(uv_timer_t *t);
static void retry_now(orch_outpipe_t *o);

static void wpoll_closed(uv_handle_t *h) { free(h); }

void orch__sink_unwatch(orch_sink_t *s) {
  if (!s->wpoll) return;
  uv_close((uv_handle_t *)s->wpoll, wpoll_closed);
  s->wpoll = NULL;
}

/* Retries every outpipe that holds bytes for s. */
void orch__outpipes_wake(orch_sink_t *s) {
  for (orch_outpipe_t *o = open_outpipes; o; o = o->next)
    if (!o->closing && ((o->stall_on[0] && o->sink == s) || (o->stall_on[1] && o->combined == s)))
      retry_now(o);
}

static void on_writable(uv_poll_t *h, int status, int events) {
  (void)status; /* an error: the retry's write finds it */
  (void)events;
  uv_poll_stop(h);
  orch__outpipes_wake(h->data);
}

/* Watches s's fd until it is writable; 0, or -errno (then a timer must do). */
static int sink_watch(orch_sink_t *s, uv_loop_t *loop) {
  if (!s->wpoll) {
    uv_poll_t *p = malloc(sizeof *p);
    if (!p) return -ENOMEM;
    int rc = uv_poll_init(loop, p, s->fd);
    if (rc < 0) {
      free(p);
      return rc;
    }
    p->data = s;
    s->wpoll = p;
  }
  return uv_poll_start(s->wpoll, UV_WRITABLE, on_writable);
}

static void stall(orch_outpipe_t *o) {
  stop_polling(o);
  int timer = 0;
  for (int i = 0; i < 2; i++) {
    orch_sink_t *s = i ? o->combined : o->sink;
    stall_count(o, i, o->hold[i].len > 0, 0);
    if (o->hold[i].len > 0 && (s->stall_err != EAGAIN || sink_watch(s, o->poll.loop) < 0)) timer = 1;
  }
  if (timer && !uv_is_active((uv_handle_t *)&o->retry)) uv_timer_start(&o->retry, on_retry, RETRY_MS, 0);
}

/* Offers the held bytes again; last (closing): what is still refused is
 * dropped, counted. */
static void retry_held(orch_outpipe_t *o, int last) {
  for (int i = 0; i < 2; i++) {
    held_t *h = &o->hold[i];
    orch_sink_t *s = i ? o->combined : o->sink;
    if (h->len == 0) continue;
    size_t left = orch__sink_put(s, h->buf, h->len, 1);
    if (left > 0 && last) {
      orch__sink_dropped(s, left, s->stall_err ? s->stall_err : ENOSPC);
      left = 0;
    }
    memmove(h->buf, h->buf + h->len - left, left);
    h->len = left;
    if (left == 0) {
      free(h->buf);
      *h = (held_t){0};
    }
  }
}

/* Formats the input kept raw, now that the sinks take bytes (it may be kept
 * again, in part, if they refuse some). */
static void replay_raw(orch_outpipe_t *o) {
  held_t r = o->raw;
  o->raw = (held_t){0};
  frame(o, r.buf, r.len);
  free(r.buf);
}

static void outpipe_close(orch_outpipe_t *o);
static void on_poll(uv_poll_t *h, int status, int events);

static void start_polling(orch_outpipe_t *o) {
  if (o->polling || o->eof || o->closing) return;
  if (uv_poll_start(&o->poll, UV_READABLE, on_poll) == 0) o->polling = 1;
  else outpipe_close(o); /* cannot happen with a valid handle */
}

static void on_retry(uv_timer_t *t) { retry_now(t->data); }

static void on_tail_timer(uv_timer_t *t) {
  orch_outpipe_t *o = t->data;
  /* Stalled: what is held waits with the rest (retry_now), checked again. */
  if (stalled(o)) {
    uv_timer_start(t, on_tail_timer, tail_ms, 0);
    return;
  }
  part_flush(o);
  if (stalled(o)) stall(o);
}

static void retry_now(orch_outpipe_t *o) {
  retry_held(o, 0);
  if (!refused(o) && o->raw.len > 0) {
    replay_raw(o);
    tail_timer_update(o);
  }
  /* At EOF, the unfinished line waited for the input before it. */
  if (!stalled(o) && o->eof) tails_flush(o);
  if (stalled(o)) {
    stall(o);
    return;
  }
  for (int i = 0; i < 2; i++) stall_count(o, i, 0, 0);
  if (!o->eof) start_polling(o);
  else if (o->released) outpipe_close(o);
}

/* ---- reading ---- */

static void at_eof(orch_outpipe_t *o) {
  o->eof = 1;
  stop_polling(o);
  tails_flush(o);
  if (stalled(o)) stall(o);
  else if (o->released) outpipe_close(o);
}

/* Reads and consumes up to budget bytes, less at EAGAIN, EOF or a stall. */
static void pump(orch_outpipe_t *o, size_t budget) {
  size_t got = 0;
  while (!o->eof && !o->closing && !stalled(o) && got < budget) {
    ssize_t n = read(o->fd, read_buf, sizeof read_buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) break;
    if (n <= 0) {
      at_eof(o); /* EOF; any other error ends the stream as well */
      return;
    }
    if (n >= PIPE_FULL && !o->grown) grow_pipe(o);
    consume(o, read_buf, (size_t)n);
    got += (size_t)n;
    /* A short read emptied the pipe: spare the read that says EAGAIN. */
    if ((size_t)n < sizeof read_buf) break;
  }
  if (stalled(o)) stall(o);
}

static void on_poll(uv_poll_t *h, int status, int events) {
  (void)events;
  orch_outpipe_t *o = (orch_outpipe_t *)h;
  if (status < 0) at_eof(o);
  else pump(o, TURN_BYTES);
}

static void outpipe_free(orch_outpipe_t *o) {
  for (int i = 0; i < 2; i++)
    if (dest(o, i) && dest(o, i)->open_line == o) dest(o, i)->open_line = NULL;
  if (o->sink) {
    o->sink->writers--;
    orch_sink_unref(o->sink);
  }
  if (o->combined) orch_sink_unref(o->combined);
  if (o->fd >= 0) close(o->fd);
  free(o->hold[0].buf);
  free(o->hold[1].buf);
  free(o->raw.buf);
  orch_echo_stream_free(&o->echo);
  free(o->timestamp);
  free(o->json_tail);
  free(o->part);
  free(o->tail[0].buf);
  free(o->tail[1].buf);
  free(o);
}

static void on_handle_closed(uv_handle_t *h) {
  orch_outpipe_t *o = h->data;
  if (--o->open_handles > 0) return;
  for (orch_outpipe_t **pp = &open_outpipes; *pp; pp = &(*pp)->next)
    if (*pp == o) {
      *pp = o->next;
      break;
    }
  outpipe_free(o);
  if (!open_outpipes) {
    free(rec.buf);
    rec.buf = NULL;
    rec.len = rec.cap = 0;
  }
}

static void outpipe_close(orch_outpipe_t *o) {
  if (o->closing) return;
  o->closing = 1;
  stop_polling(o);
  /* A last chance for what waits for space; then it is dropped, counted. */
  retry_held(o, 1);
  if (o->raw.len > 0) {
    replay_raw(o);
    retry_held(o, 1);
    if (o->raw.len > 0) {
      orch__sink_dropped(o->sink, o->raw.len, o->sink->stall_err ? o->sink->stall_err : ENOSPC);
      free(o->raw.buf);
      o->raw = (held_t){0};
    }
  }
  tails_flush(o);
  retry_held(o, 1);
  for (int i = 0; i < 2; i++) stall_count(o, i, 0, 1);
  uv_close((uv_handle_t *)&o->poll, on_handle_closed);
  uv_close((uv_handle_t *)&o->retry, on_handle_closed);
  uv_close((uv_handle_t *)&o->tail_timer, on_handle_closed);
}

static int outpipe_format(orch_outpipe_t *o, const orch_line_format_t *f) {
  if (!f || (!f->timestamp && !f->json_app)) return 0;
  o->framed = 1;
  const char *ts = f->timestamp;
  if (f->json_app) {
    o->json = 1;
    if (!ts) {
      ts = ORCH_TIME_ISO8601;
      o->utc = 1;
    }
    o->json_tail = orch_record_json_tail(f, &o->json_tail_len);
    if (!o->json_tail) return -ENOMEM;
  }
  if (ts && !(o->timestamp = strdup(ts))) return -ENOMEM;
  return 0;
}

int orch_outpipe_start(uv_loop_t *loop, int fd, const orch_outpipe_opts_t *opts,
                       orch_outpipe_t **out) {
  orch_outpipe_t *o = calloc(1, sizeof *o);
  if (!o) {
    close(fd);
    return -ENOMEM;
  }
  o->fd = fd; /* closed by outpipe_free from here on */
  int rc = orch_echo_stream_init(&o->echo, opts->echo_fd, opts->prefix);
  if (rc == 0) rc = outpipe_format(o, opts->format);
  /* Also makes fd non-blocking. */
  if (rc == 0) rc = uv_poll_init(loop, &o->poll, fd);
  if (rc < 0) {
    outpipe_free(o);
    return rc;
  }
  uv_timer_init(loop, &o->retry);
  uv_timer_init(loop, &o->tail_timer);
  o->poll.data = o->retry.data = o->tail_timer.data = o;
  o->open_handles = 3;
  o->sink = opts->sink;
  orch_sink_ref(o->sink);
  o->sink->writers++;
  if (opts->combined) {
    o->combined = opts->combined;
    orch_sink_ref(o->combined);
  }
  /* From here on the handles are in the loop: only uv_close may free them. */
  o->next = open_outpipes;
  open_outpipes = o;
  static orch_owner_t owner = {"log pipes", orch_outpipes_close_all, NULL, 0};
  orch_owner_add(&owner);
  start_polling(o);
  if (o->closing) return -EIO;
  *out = o;
  return 0;
}

void orch_outpipe_drain(orch_outpipe_t *o) {
  /* Bounded: a grandchild that holds the pipe may write on forever. */
  pump(o, 4 * (size_t)pipe_big());
}

int orch_outpipe_handover(orch_outpipe_t *o) {
  if (o->closing || o->eof) return -EBADF;
  retry_held(o, 0);
  if (stalled(o)) return -EAGAIN;
  /* What the pipe holds stays there for the next image; only what orch
   * holds in memory, an unfinished line, is written now. */
  part_flush(o);
  if (stalled(o)) return -EAGAIN;
  return o->fd;
}

void orch_outpipe_release(orch_outpipe_t *o) {
  o->released = 1;
  if (o->eof && !stalled(o)) outpipe_close(o);
}

void orch_outpipes_close_all(void) {
  for (orch_outpipe_t *o = open_outpipes; o; o = o->next) outpipe_close(o);
}
