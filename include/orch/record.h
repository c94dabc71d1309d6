/* record.h: the log records of an outpipe's formatted mode (see
 * orch_line_format_t): "TIMESTAMP: line", or one JSON object a line. */
#ifndef ORCH_RECORD_H
#define ORCH_RECORD_H

#include <stddef.h>

#include "orch/outpipe.h"

/* Records gathered for one write(2). */
typedef struct {
  char *buf;
  size_t len, cap;
} orch_record_buf_t;

/* Makes *buf (of *cap bytes) hold at least need, doubling from first;
 * -ENOMEM leaves it as it was. Every growable buffer of the log files uses
 * it. */
int orch_buf_grow(char **buf, size_t *cap, size_t need, size_t first);

/* Formats now with fmt (see orch_line_format_t), in UTC if utc, else local
 * time, into out; returns the length (0 when it does not fit, or on a clock
 * error: the record goes out without a time rather than not at all). */
size_t orch_record_time(const char *fmt, int utc, char *out, size_t cap);

/* The constant end of f's JSON records, after the time:
 * ","type":"S","process_id":N,"app_name":"NAME"}\n (malloc'd, *len bytes,
 * no NUL), or NULL for lack of memory. */
char *orch_record_json_tail(const orch_line_format_t *f, size_t *len);

/* Appends the record of the line a+b (without its newline; nl: it had one)
 * with time ts: text ("TS: line\n") if json_tail is NULL, else PM2's JSON
 * record {"message":"line\n","timestamp":"TS", then json_tail, the message
 * holding the newline only if the line had one. 0, or -ENOMEM with r
 * unchanged. */
int orch_record_put(orch_record_buf_t *r, const char *ts, size_t ts_len, const char *json_tail,
                    size_t json_tail_len, const char *a, size_t alen, const char *b, size_t blen,
                    int nl);

#endif
