/* sink.h: log sinks and the pipes that feed them.
 *
 * A sink is an append-only log file that outlives the processes writing to it
 * (restarts, several instances with merge_logs). An outpipe reads one child
 * stream and writes it to its sink (and to a second, combined sink if given),
 * and optionally echoes whole lines to a terminal fd with a prefix
 * ("web:0 | "). No Lua runs per chunk.
 *
 * Two modes per outpipe:
 * - plain (no format): the bytes pass through untouched, binary included;
 * - formatted (a timestamp and/or JSON): the stream is cut into lines, each
 *   written whole with its timestamp or as one JSON object. An unterminated
 *   line is held (per outpipe, so instances sharing a sink never mix halves)
 *   until its newline, until ORCH_LINE_MAX bytes (then written as a line of
 *   its own), or until EOF.
 *
 * Back-pressure: an outpipe reads only as fast as its files take the bytes
 * (write(2) on the loop thread, at most 1 MiB per pipe per loop turn), so an
 * app that writes faster than the disk blocks on its own pipe; orch's memory
 * does not grow with it. A pipe that fills its default 64 KiB grows to 1 MiB
 * (or /proc/sys/fs/pipe-max-size). A full disk (ENOSPC, EDQUOT) stalls the
 * outpipe: it holds what was refused, reads nothing more, offers the held
 * bytes again every 500 ms and resumes once they are in; the first stall on a
 * sink and the resumption are reported (orch_sink_set_reporter). Files that
 * are not regular are opened non-blocking (FIFOs read-write, so they need no
 * reader): a reader that does not keep up (EAGAIN) stalls the outpipe the
 * same way, resumed as soon as the fd is writable, unreported (ordinary
 * back-pressure; orch_sink_stats shows it). Other write errors drop the
 * bytes, counted (orch_sink_stats).
 *
 * The echo goes through core/echo.c and never blocks (see echo.h). */
#ifndef ORCH_SINK_H
#define ORCH_SINK_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct orch_sink_s orch_sink_t;
typedef struct orch_outpipe_s orch_outpipe_t;

/* Longest line held back in formatted mode; a longer one is split. */
#define ORCH_LINE_MAX 65536

/* Opens (creating, mode 0640) path for appending. NULL path: discard.
 * ORCH_SINK_FOLLOW: a symlink as path's last component is followed, for a
 * path the user named; else (names orch makes: default log names,
 * per-instance names, the daemon's log) it is refused with -ELOOP, as
 * someone who can write the directory may have planted it. The file after a
 * rotation and the gzip's temporary file never go through a symlink either.
 * ORCH_SINK_MKDIR: the directory is orch's (its logs directory): if it is
 * gone, it is made again (0700) and the file opened in it, here and
 * whenever the file is opened again.
 * A regular file deleted while open is noticed (at most a second after,
 * when something is written) and replaced by a new file at its path, so
 * output never goes on into a file nobody can read (orch_sink_stats). */
#define ORCH_SINK_FOLLOW 1u
#define ORCH_SINK_MKDIR 2u
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

/* How an outpipe turns lines into log records. All-NULL/0: plain mode. */
typedef struct {
  /* strftime(3) format of the timestamp, with two additions: %L is the
   * milliseconds (000-999) and %:z the UTC offset as +hh:mm. In text mode
   * every line is written as "TIMESTAMP: line". NULL: no timestamp (text),
   * ORCH_TIME_ISO8601 (JSON). */
  const char *timestamp;
  /* Non-NULL: one JSON object per line,
   * {"timestamp":"...","app":APP,"id":ID,"stream":STREAM,"message":"..."}.
   * Bytes that are not valid UTF-8 are written as \u0080-\u00ff escapes of
   * their value. */
  const char *json_app;
  int json_id;
  const char *json_stream; /* "out" or "err" */
} orch_line_format_t;

#define ORCH_TIME_ISO8601 "%Y-%m-%dT%H:%M:%S.%L%:z"

typedef struct {
  orch_sink_t *sink;     /* required: the stream's own file */
  orch_sink_t *combined; /* optional: also written to (log_file); may be NULL */
  int echo_fd;           /* < 0: no echo; else through orch_echo_get(fd) */
  const char *prefix;    /* before every echoed line; may be NULL */
  const orch_line_format_t *format; /* NULL: plain mode */
} orch_outpipe_opts_t;

/* Starts reading fd (the parent end of a child's stdout/stderr pipe, owned by
 * the outpipe from now on, closed on failure too). The options are copied. */
int orch_outpipe_start(uv_loop_t *loop, int fd, const orch_outpipe_opts_t *opts,
                       orch_outpipe_t **out);
/* Reads whatever is readable now, without blocking (used before an exit is
 * reported, so the log holds everything written before it). */
void orch_outpipe_drain(orch_outpipe_t *o);
/* Stops when the writers are gone (EOF); call once the owner loses interest.
 * A grandchild may still hold the pipe, so reading goes on until EOF. */
void orch_outpipe_release(orch_outpipe_t *o);

/* Closes every outpipe, read to the end or not (orch is exiting); bytes held
 * for a full disk get one last try, then count as dropped. */
void orch_outpipes_close_all(void);

/* Where sinks report that writing paused for lack of space ("warning") or
 * resumed ("info"): one line, without a newline. NULL, the default: a line on
 * stderr in the daemon log's format, "YYYY-MM-DDTHH:MM:SS LEVEL: MESSAGE". */
void orch_sink_set_reporter(void (*fn)(const char *level, const char *msg, void *ud), void *ud);

#endif
