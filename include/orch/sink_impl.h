/* sink_impl.h: a sink's insides, shared by the files that make up the log
 * files (sink.c, sink_gzip.c, outpipe.c); nothing else uses them. */
#ifndef ORCH_SINK_IMPL_H
#define ORCH_SINK_IMPL_H

#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "orch/sink.h"

struct orch_sink_s {
  int fd; /* -1: discard */
  int refs;
  int last_err;
  uint64_t written, dropped;
  /* Rotation (orch_sink_rotation). */
  uint64_t max_size;  /* 0: never */
  int retain;
  int regular;        /* only a regular file rotates */
  int at_bol;         /* the file is empty or ends with a newline */
  int pending_open;   /* FILE was renamed away; opening the new one failed */
  int own_stdio;      /* fds 1 and 2 follow the file */
  int follow;         /* a symlink at path is followed (ORCH_SINK_FOLLOW) */
  int mkdir;          /* its directory is orch's: made again if gone */
  int mkdirs;         /* a path the user named: missing directories are made */
  uint64_t check_at;  /* CLOCK_MONOTONIC ns: next look for a deleted file */
  uint64_t remade;    /* times the file was deleted while open, and made anew */
  uint64_t dir_remade; /* times its directory was gone and made again */
  uint64_t size;      /* of the file; refreshed with fstat near max_size */
  uint64_t retry_at;  /* CLOCK_MONOTONIC ns: no rotation attempt before */
  uint64_t rotations;
  int rotate_err;
  /* gzip of FILE.1 after each rotation (orch_sink_compress). */
  uv_loop_t *gz_loop;  /* NULL: off */
  struct gz_job_s *jobs; /* in flight */
  unsigned gen;        /* bumped by truncate: a job from before is dropped */
  int gz_err;
  /* Outpipes waiting for space (a full disk): they hold what they could not
   * write and read no more, so their apps block on their pipes. */
  int stalled;
  int stall_err;           /* ENOSPC, EDQUOT or EAGAIN while stalled */
  uv_poll_t *wpoll;        /* while stalled on EAGAIN: waits for writability */
  uint64_t stalled_since;  /* CLOCK_MONOTONIC ns */
  int writers;             /* outpipes writing to it as their own stream */
  /* Problems not yet handed to the listener (sink_problem.c); a queued
   * sink holds a reference until they are. */
  uint64_t prob_count[ORCH_LOGP_KINDS], prob_bytes[ORCH_LOGP_KINDS];
  int prob_err[ORCH_LOGP_KINDS];
  struct orch_sink_s *prob_next;
  int prob_queued;
  const void *open_line;   /* the outpipe whose unfinished line the file ends in
                              (outpipe.c, plain mode), or NULL */
  char path[];
};

static inline uint64_t orch__now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* sink.c */
/* orch_sink_write; hold: bytes that a full disk refused are returned (their
 * count: the tail of buf) for the caller to offer again, rather than dropped. */
size_t orch__sink_put(orch_sink_t *s, const char *buf, size_t n, int hold);
/* One line for whoever watches orch, on stderr (the daemon log, or orch
 * run's terminal through the echo): "YYYY-MM-DDTHH:MM:SS LEVEL: MESSAGE". */
void orch__sink_report(const char *level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* sink_problem.c: counts a problem of s for the listener
 * (orch_sink_on_problem); bytes as in orch_log_problem_t. */
void orch__sink_problem(orch_sink_t *s, orch_log_problem_kind_t kind, int err, uint64_t bytes);
/* Bytes lost for s: counted, the error kept for orch_sink_stats, and told. */
void orch__sink_dropped(orch_sink_t *s, uint64_t bytes, int err);

/* sink_gzip.c: after a rotation, compresses FILE.1 in libuv's thread pool
 * (orch_sink_compress); shifted: the rotated files moved up one (FILE.1 is
 * FILE.2 now), and the jobs in flight follow. */
void orch__sink_gzip_start(orch_sink_t *s, mode_t mode);
void orch__sink_gzip_shifted(orch_sink_t *s);

/* outpipe.c: the writability watch of a sink whose reader is behind, and
 * the outpipes stalled on it (woken after orch_sink_reopen). */
void orch__sink_unwatch(orch_sink_t *s);
void orch__outpipes_wake(orch_sink_t *s);

#endif
