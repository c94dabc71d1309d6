/* outpipe.h: the pipes that feed log sinks (sink.h).
 *
 * An outpipe reads one child stream and writes it to its sink (and to a
 * second, combined sink if given), and optionally echoes whole lines to a
 * terminal fd with a prefix ("web:0 | "). No Lua runs per chunk.
 *
 * Two modes per outpipe:
 * - plain (no format): the bytes pass through untouched, binary included;
 * - formatted (a timestamp and/or JSON): the stream is cut into lines, each
 *   written whole with its timestamp or as one JSON object (record.h). An
 *   unterminated line is held (per outpipe, so instances sharing a sink never
 *   mix halves) until its newline, until ORCH_LINE_MAX bytes (then written
 *   as a line of its own), or until EOF.
 *
 * Back-pressure: an outpipe reads only as fast as its files take the bytes
 * (write(2) on the loop thread, at most 1 MiB per pipe per loop turn), so an
 * app that writes faster than the disk blocks on its own pipe; orch's memory
 * does not grow with it. A pipe that fills its default 64 KiB grows to 1 MiB
 * (or /proc/sys/fs/pipe-max-size). A full disk (ENOSPC, EDQUOT) stalls the
 * outpipe: it holds what was refused, reads nothing more, offers the held
 * bytes again every 500 ms and resumes once they are in; the first stall on a
 * sink and the resumption are reported (stderr: the daemon log). Files that
 * are not regular are opened non-blocking (FIFOs read-write, so they need no
 * reader): a reader that does not keep up (EAGAIN) stalls the outpipe the
 * same way, resumed as soon as the fd is writable, unreported (ordinary
 * back-pressure; orch_sink_stats shows it). Other write errors drop the
 * bytes, counted (orch_sink_stats).
 *
 * The echo goes through core/echo.c and never blocks (see echo.h). */
#ifndef ORCH_OUTPIPE_H
#define ORCH_OUTPIPE_H

#include <uv.h>

#include "orch/sink.h"

typedef struct orch_outpipe_s orch_outpipe_t;

/* Longest line held back in formatted mode; a longer one is split. */
#define ORCH_LINE_MAX 65536

/* How an outpipe turns lines into log records. All-NULL/0: plain mode. */
typedef struct {
  /* strftime(3) format of the timestamp, with two additions: %L is the
   * milliseconds (000-999) and %:z the UTC offset as +hh:mm. In text mode
   * every line is written as "TIMESTAMP: line". NULL: no timestamp (text),
   * ORCH_TIME_ISO8601 in UTC (JSON, as PM2's toISOString()). */
  const char *timestamp;
  /* Non-NULL: one JSON object per line, PM2's fields in PM2's order:
   * {"message":"...\n","timestamp":"...","type":STREAM,"process_id":ID,
   * "app_name":APP}.
   * Bytes that are not valid UTF-8 are written as \u0080-\u00ff escapes of
   * their value. */
  const char *json_app;
  int json_id;
  const char *json_stream; /* "out" or "err" */
} orch_line_format_t;

#define ORCH_TIME_ISO8601 "%Y-%m-%dT%H:%M:%S.%LZ"

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
/* For orch update, right before the daemon re-executes itself: writes what
 * the outpipe holds in memory (an unfinished line) and returns the pipe's
 * descriptor, which the new image reads on; the bytes still in the pipe
 * stay there. -EAGAIN while a sink refuses bytes (full disk, slow reader),
 * -EBADF once the pipe is at EOF or closing. The outpipe is unchanged
 * otherwise: if the exec fails it goes on as before. */
int orch_outpipe_handover(orch_outpipe_t *o);
/* Stops when the writers are gone (EOF); call once the owner loses interest.
 * A grandchild may still hold the pipe, so reading goes on until EOF. */
void orch_outpipe_release(orch_outpipe_t *o);

/* Closes every outpipe, read to the end or not (orch is exiting); bytes held
 * for a full disk get one last try, then count as dropped. */
void orch_outpipes_close_all(void);

/* How long (ms, 1000 by default) plain mode holds an unfinished line for a
 * file that others write too, and formatted mode holds one for a record,
 * before writing it as it is: for every outpipe, from now on. */
void orch_outpipe_line_hold(unsigned ms);

#endif
