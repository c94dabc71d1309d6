/* sink_problem.c: the problems of log files (a failed write, a full disk, a
 * failed rotation or gzip...) handed to one listener on the loop, counted
 * per sink and kind in between (see sink.h, orch_sink_on_problem). Only
 * counters are touched where the problem happens: the listener runs later,
 * from a timer, at most once a second, so a disk that fails every write
 * costs the loop one call a second. */
#include <errno.h>

#include "orch/owners.h"
#include "orch/sink_impl.h"

/* At most one report a second: the first problem after a quiet second is
 * told on the next turn of the loop, later ones are gathered. */
#define REPORT_MS 1000

static struct {
  uv_loop_t *loop;
  uv_timer_t timer;
  int timer_open;
  orch_log_problem_fn fn;
  void *data;
  orch_sink_t *queue; /* sinks with problems to tell, each holding a reference */
  uint64_t last_ms;   /* loop time of the last report */
} P;

static const char *const names[ORCH_LOGP_KINDS] = {
    [ORCH_LOGP_WRITE] = "write",   [ORCH_LOGP_NOSPACE] = "no_space",   [ORCH_LOGP_RESUMED] = "resumed",
    [ORCH_LOGP_ROTATE] = "rotate", [ORCH_LOGP_COMPRESS] = "compress", [ORCH_LOGP_REMADE] = "remade",
    [ORCH_LOGP_DIR_REMADE] = "dir_remade"};

const char *orch_log_problem_name(orch_log_problem_kind_t kind) {
  return kind >= 0 && kind < ORCH_LOGP_KINDS ? names[kind] : "unknown";
}

/* Empties the queue: the counts are forgotten, the references dropped. */
static void forget_queue(void) {
  while (P.queue) {
    orch_sink_t *s = P.queue;
    P.queue = s->prob_next;
    s->prob_next = NULL;
    s->prob_queued = 0;
    for (int k = 0; k < ORCH_LOGP_KINDS; k++) s->prob_count[k] = s->prob_bytes[k] = 0;
    orch_sink_unref(s);
  }
}

static void on_report(uv_timer_t *t) {
  (void)t;
  P.last_ms = uv_now(P.loop);
  /* The listener may cause problems of its own (it writes the daemon's
   * log): those queue anew, for the next report. */
  orch_sink_t *q = P.queue;
  P.queue = NULL;
  while (q) {
    orch_sink_t *s = q;
    q = s->prob_next;
    s->prob_next = NULL;
    s->prob_queued = 0;
    for (int k = 0; k < ORCH_LOGP_KINDS; k++) {
      if (s->prob_count[k] == 0) continue;
      orch_log_problem_t p = {s->path, (orch_log_problem_kind_t)k, s->prob_err[k], s->prob_count[k],
                              s->prob_bytes[k]};
      s->prob_count[k] = s->prob_bytes[k] = 0;
      if (P.fn) P.fn(&p, P.data);
    }
    orch_sink_unref(s);
  }
}

static void close_all(void) {
  forget_queue();
  P.fn = NULL;
  if (P.timer_open) uv_close((uv_handle_t *)&P.timer, NULL);
  P.timer_open = 0;
}

int orch_sink_on_problem(uv_loop_t *loop, orch_log_problem_fn fn, void *data) {
  if (!fn) {
    forget_queue();
    if (P.timer_open) uv_timer_stop(&P.timer);
    P.fn = NULL;
    return 0;
  }
  if (P.timer_open && P.loop != loop) return -EBUSY;
  if (!P.timer_open) {
    int rc = uv_timer_init(loop, &P.timer);
    if (rc < 0) return rc;
    /* A report due does not keep the loop running at exit. */
    uv_unref((uv_handle_t *)&P.timer);
    P.timer_open = 1;
    P.loop = loop;
    static orch_owner_t owner = {"log problem reports", close_all, NULL, 0};
    orch_owner_add(&owner);
  }
  P.fn = fn;
  P.data = data;
  return 0;
}

void orch__sink_problem(orch_sink_t *s, orch_log_problem_kind_t kind, int err, uint64_t bytes) {
  if (!P.fn || kind < 0 || kind >= ORCH_LOGP_KINDS) return;
  s->prob_count[kind]++;
  s->prob_bytes[kind] += bytes;
  s->prob_err[kind] = err;
  if (!s->prob_queued) {
    s->prob_queued = 1;
    orch_sink_ref(s);
    s->prob_next = P.queue;
    P.queue = s;
  }
  if (!uv_is_active((uv_handle_t *)&P.timer)) {
    uint64_t now = uv_now(P.loop), due = P.last_ms + REPORT_MS;
    /* Cannot fail on an initialised timer with a callback. */
    (void)uv_timer_start(&P.timer, on_report, due > now ? due - now : 0, 0);
  }
}

void orch__sink_dropped(orch_sink_t *s, uint64_t bytes, int err) {
  s->dropped += bytes;
  s->last_err = err;
  orch__sink_problem(s, ORCH_LOGP_WRITE, err, bytes);
}
