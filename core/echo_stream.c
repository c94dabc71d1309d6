/* echo_stream.c: an outpipe's echo cut into whole, prefixed lines for the
 * echo's writer (see echo.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "orch/echo.h"

int orch_echo_stream_init(orch_echo_stream_t *es, int fd, const char *prefix) {
  memset(es, 0, sizeof *es);
  /* No writer (no memory, no thread): no echo; the logs are what matter. */
  if (fd >= 0) es->echo = orch_echo_get(fd);
  if (!es->echo) return 0;
  es->prefix = strdup(prefix ? prefix : "");
  /* Only echoing outpipes (orch run) need it: 8 KiB each adds up. */
  es->line = malloc(ORCH_ECHO_LINE_MAX);
  if (!es->prefix || !es->line) return -ENOMEM;
  es->prefix_len = strlen(es->prefix);
  return 0;
}

/* The line a+b, prefixed, with a newline added if it lacks one; queued for
 * the echo's writer (core/echo.c), or dropped there if the reader is behind. */
static void echo_line(orch_echo_stream_t *es, const char *a, size_t alen,
                      const char *b, size_t blen) {
  int last = blen > 0 && b[blen - 1] == '\n';
  if (!last && alen > 0 && blen == 0 && a[alen - 1] == '\n') last = 1;
  orch_echo_line(es->echo, es->prefix, es->prefix_len, a, alen, b, blen, "\n", last ? 0 : 1);
}

/* Echoes whole lines; the unterminated tail waits for the next chunk. */
void orch_echo_stream_write(orch_echo_stream_t *es, const char *buf, size_t n) {
  if (!es->echo) return;
  while (n > 0) {
    const char *nl = memchr(buf, '\n', n);
    if (!nl) {
      if (es->held + n > ORCH_ECHO_LINE_MAX) {
        echo_line(es, es->line, es->held, buf, n);
        es->held = 0;
      } else {
        memcpy(es->line + es->held, buf, n);
        es->held += n;
      }
      return;
    }
    size_t len = (size_t)(nl - buf) + 1;
    echo_line(es, es->line, es->held, buf, len);
    es->held = 0;
    buf += len;
    n -= len;
  }
}

void orch_echo_stream_flush(orch_echo_stream_t *es) {
  if (es->echo && es->held > 0) echo_line(es, es->line, es->held, "", 0);
  es->held = 0;
}

void orch_echo_stream_free(orch_echo_stream_t *es) {
  free(es->prefix);
  free(es->line);
  es->prefix = es->line = NULL;
}
