/* sink.h: log sinks and the pipes that feed them.
 *
 * A sink is an append-only log file that outlives the processes writing to it
 * (restarts, several instances with merge_logs). An outpipe reads one child
 * stream and copies every byte to its sink, and optionally echoes whole lines
 * to a terminal fd with a prefix ("web:0 | "). No Lua runs per chunk. */
#ifndef ORCH_SINK_H
#define ORCH_SINK_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct orch_sink_s orch_sink_t;
typedef struct orch_outpipe_s orch_outpipe_t;

/* Opens (creating, mode 0640) path for appending. NULL path: discard. */
int orch_sink_open(const char *path, orch_sink_t **out);
void orch_sink_ref(orch_sink_t *s);
void orch_sink_unref(orch_sink_t *s);
/* Writes all of buf; on a write error (full disk, ...) the bytes are counted as
 * dropped and the error kept for orch_sink_stats. Never blocks the loop for
 * longer than the file system takes. */
void orch_sink_write(orch_sink_t *s, const char *buf, size_t n);
const char *orch_sink_path(const orch_sink_t *s);
void orch_sink_stats(const orch_sink_t *s, uint64_t *written, uint64_t *dropped,
                     int *last_err);

/* Starts reading fd (the parent end of a child's stdout/stderr pipe, owned by
 * the outpipe from now on) into sink. echo_fd < 0: no echo. */
int orch_outpipe_start(uv_loop_t *loop, int fd, orch_sink_t *sink, int echo_fd,
                       const char *prefix, orch_outpipe_t **out);
/* Reads whatever is readable now, without blocking (used before an exit is
 * reported, so the log holds everything written before it). */
void orch_outpipe_drain(orch_outpipe_t *o);
/* Stops when the writers are gone (EOF); call once the owner loses interest.
 * A grandchild may still hold the pipe, so reading goes on until EOF. */
void orch_outpipe_release(orch_outpipe_t *o);

/* Closes every outpipe, read to the end or not (orch is exiting). */
void orch_outpipes_close_all(void);

#endif
