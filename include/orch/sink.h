/* sink.h: log sinks, the append-only log files that child pipes feed
 * (outpipe.h).
 *
 * A sink is an append-only log file that outlives the processes writing to it
 * (restarts, several instances with merge_logs). A file that refuses bytes
 * (a full disk, a reader that does not keep up) stalls the outpipes writing
 * to it (see outpipe.h). */
#ifndef ORCH_SINK_H
#define ORCH_SINK_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct orch_sink_s orch_sink_t;

/* Opens (creating, mode 0640) path for appending. NULL path: discard.
 * ORCH_SINK_FOLLOW: a symlink as path's last component is followed, for a
 * path the user named; else (names orch makes: default log names,
 * per-instance names, the daemon's log) it is refused with -ELOOP, as
 * someone who can write the directory may have planted it. The file after a
 * rotation and the gzip's temporary file never go through a symlink either.
 * ORCH_SINK_MKDIR: the directory is orch's (its logs directory): if it is
 * gone, it is made again (0700) and the file opened in it, here and
 * whenever the file is opened again. ORCH_SINK_MKDIRS: a path the user
 * named: its missing directories are made (0750, as a log file is 0640),
 * here and whenever the file is opened again.
 * A regular file deleted while open is noticed (at most a second after,
 * when something is written) and replaced by a new file at its path, so
 * output never goes on into a file nobody can read (orch_sink_stats). */
#define ORCH_SINK_FOLLOW 1u
#define ORCH_SINK_MKDIR 2u
#define ORCH_SINK_MKDIRS 4u
int orch_sink_open(const char *path, unsigned flags, orch_sink_t **out);
void orch_sink_ref(orch_sink_t *s);
void orch_sink_unref(orch_sink_t *s);
/* Writes all of buf; on a write error (full disk, ...) the bytes are counted as
 * dropped and the error kept for orch_sink_stats (outpipes hold what a full
 * disk refuses instead, see above). Never blocks the loop for
 * longer than the file system takes. Rotates first if the file is due (see
 * orch_sink_rotation). */
void orch_sink_write(orch_sink_t *s, const char *buf, size_t n);
const char *orch_sink_path(const orch_sink_t *s);

/* Rotation (a regular file only). When a write would take the file past
 * max_size bytes, FILE becomes FILE.1 (FILE.1 FILE.2, ..., keeping retain of
 * them; core/rotate.c) and a new FILE is opened, with the old one's mode;
 * every outpipe writing to the sink follows, as they share its fd. The cut
 * comes right after a newline:
 * - the last one that keeps the file within max_size, else
 * - right before the write, if the file ends with a newline, else
 * - the first newline of the write (the file ends one line past max_size);
 * - a write without any newline continues the file's unfinished line, up to
 *   ORCH_ROTATE_SLACK bytes past max_size; only past that is the line cut
 *   (at the write's start).
 * Formatted outpipes write whole records, so their files always end at a
 * record boundary. A failed rename or open loses nothing: the bytes go on
 * to the file open until then, the error is kept (rotate_err in the stats),
 * and rotation is tried again a second later. max_size 0: never rotate. */
#define ORCH_ROTATE_SLACK 65536
void orch_sink_rotation(orch_sink_t *s, uint64_t max_size, int retain);
/* loop non-NULL: after each rotation, FILE.1 is compressed in libuv's
 * thread pool, into FILE.gzip-N.part, synced, then renamed to FILE.K.gz
 * where K is where the file is by then (rotations do not wait), and the
 * plain FILE.K is deleted. A failure keeps the plain file as it is
 * (compress_err in the stats); a truncate, or the file going past retain,
 * drops a job in flight. */
void orch_sink_compress(orch_sink_t *s, uv_loop_t *loop);
/* Opens the file by its path again (after an external logrotate renamed it):
 * 0, or -errno with the old file kept. */
int orch_sink_reopen(orch_sink_t *s);
/* Empties the file (orch flush); writing goes on at its new end. 0 or
 * -errno. Rotated files are the caller's (orch_rotate_remove). */
int orch_sink_truncate(orch_sink_t *s);
/* Empties the file at path if it exists (orch flush of a file no sink has
 * open), through a symlink only if follow (see orch_sink_open); never
 * creates it. 0 or -errno (-ENOENT: no such file). */
int orch_sink_truncate_path(const char *path, int follow);
/* Keeps fds 1 and 2 of this process on the sink's file across rotations and
 * reopens (the daemon's own log). */
int orch_sink_own_stdio(orch_sink_t *s);

typedef struct {
  uint64_t written, dropped; /* bytes, since the sink was opened */
  int last_err;              /* of the last failed write, or 0; while stalled,
                                ENOSPC, EDQUOT or EAGAIN */
  int stalled;               /* outpipes wait for space or a reader */
  uint64_t size;             /* of the current file, as far as known */
  uint64_t rotations;
  int rotate_err;            /* errno of the failed rotation, 0 once one works */
  int compress_err;          /* errno of the last failed gzip, 0 once one works */
  uint64_t remade;           /* times the file was deleted while open, made anew */
  uint64_t dir_remade;       /* times its directory was gone and made again */
} orch_sink_stats_t;
void orch_sink_stats(const orch_sink_t *s, orch_sink_stats_t *st);

/* Problems of log files, told to one listener (the engine turns them into
 * event records and metrics) as well as, for some, a line in the daemon's
 * log. They are counted per sink and kind, and handed over from one timer
 * on the loop at most once a second for all sinks together: a failing disk
 * costs a call a second, never one per write. */
typedef enum {
  ORCH_LOGP_WRITE,      /* bytes dropped: a write failed (EIO...), or no memory held them */
  ORCH_LOGP_NOSPACE,    /* writers paused: ENOSPC or EDQUOT (outpipe.h) */
  ORCH_LOGP_RESUMED,    /* writers going again after such a pause */
  ORCH_LOGP_ROTATE,     /* a rotation failed (tried again a second later) */
  ORCH_LOGP_COMPRESS,   /* the gzip of a rotated file failed */
  ORCH_LOGP_REMADE,     /* the file was deleted while open; made anew */
  ORCH_LOGP_DIR_REMADE, /* its directory was gone; made again */
  ORCH_LOGP_KINDS
} orch_log_problem_kind_t;
typedef struct {
  const char *path;
  orch_log_problem_kind_t kind;
  int err;        /* errno of the last one, or 0 */
  uint64_t count; /* since the previous report of this sink and kind */
  uint64_t bytes; /* WRITE: bytes dropped by them; RESUMED: ms paused */
} orch_log_problem_t;
typedef void (*orch_log_problem_fn)(const orch_log_problem_t *p, void *data);
/* The listener (one per process); fn NULL: none, and what waits is
 * forgotten. 0 or -errno. */
int orch_sink_on_problem(uv_loop_t *loop, orch_log_problem_fn fn, void *data);
/* "write", "no_space", ...: the kind's name for Lua and the event records. */
const char *orch_log_problem_name(orch_log_problem_kind_t kind);

#endif
