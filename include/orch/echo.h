/* echo.h: copies of output lines for orch run's terminal (fd 1 and 2) that
 * never block the loop.
 *
 * Each echo fd has a writer thread doing plain blocking writes; the loop only
 * appends whole lines to a buffer of ECHO_CAP bytes under a mutex. A reader
 * that falls behind (a pipe nobody reads, a paused terminal, `| less`) fills
 * the buffer, and further lines are dropped whole and counted until it has
 * room again; then one line says how many were dropped, where they are
 * missing. The log files get every byte regardless: they are written by the
 * outpipes, not from here.
 *
 * Why a thread rather than a non-blocking fd: fds 1 and 2 are usually shared
 * with the shell that started orch (the same open file description), so
 * O_NONBLOCK on them would change the shell's terminal too (and stay set if
 * orch is killed). Reopening /proc/self/fd/N gives a description of one's
 * own, but not for sockets (journald's stdout), nor for a terminal or pipe
 * of another user (su, sudo -u), nor without /proc; a thread writes to any of
 * them, in order, and the loop never waits. */
#ifndef ORCH_ECHO_H
#define ORCH_ECHO_H

#include <stddef.h>
#include <stdint.h>

/* Bytes of lines waiting for one fd's reader, at most (plus one batch being
 * written). */
#define ORCH_ECHO_CAP (1u << 20)

typedef struct orch_echo_s orch_echo_t;

/* The writer of fd (created, with its thread, on first use); NULL if it
 * cannot be made (no memory, no thread), then nothing is echoed. */
orch_echo_t *orch_echo_get(int fd);

/* The writer of fd if there is one (orch run), else NULL. */
orch_echo_t *orch_echo_find(int fd);

/* Appends one line made of up to 4 pieces (NULL/0 pieces are skipped); the
 * caller gives the newline. A line that does not fit is dropped, counted. */
void orch_echo_line(orch_echo_t *e, const char *a, size_t alen, const char *b, size_t blen,
                    const char *c, size_t clen, const char *d, size_t dlen);

typedef struct {
  uint64_t lines, bytes; /* dropped because the reader fell behind */
} orch_echo_stats_t;
/* The sums over every echo fd. */
void orch_echo_stats(orch_echo_stats_t *st);

/* At exit: gives the readers up to ms milliseconds to take what is queued
 * (what is left counts as dropped), then says on fd 2 how many lines were
 * not echoed, if any. */
void orch_echo_finish(int ms);

/* One stream's echo (an outpipe's, in orch run; core/echo_stream.c): whole
 * lines, each with a prefix; the unterminated tail waits for the next chunk,
 * up to ORCH_ECHO_LINE_MAX bytes (a longer line is echoed in pieces). */
#define ORCH_ECHO_LINE_MAX 8192
typedef struct {
  orch_echo_t *echo; /* NULL: no echo (then the calls below do nothing) */
  char *prefix;
  size_t prefix_len;
  char *line; /* ORCH_ECHO_LINE_MAX: the unterminated tail */
  size_t held;
} orch_echo_stream_t;

/* Echoes to fd's writer (orch_echo_get) with prefix (may be NULL); fd < 0,
 * or no writer: no echo. 0, or -ENOMEM; orch_echo_stream_free either way. */
int orch_echo_stream_init(orch_echo_stream_t *es, int fd, const char *prefix);
void orch_echo_stream_write(orch_echo_stream_t *es, const char *buf, size_t n);
/* EOF or close: the held tail as a line of its own. */
void orch_echo_stream_flush(orch_echo_stream_t *es);
void orch_echo_stream_free(orch_echo_stream_t *es);

#endif
