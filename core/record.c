/* record.c: log records of formatted mode (see record.h). */
#include "orch/record.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int orch_buf_grow(char **buf, size_t *cap, size_t need, size_t first) {
  if (need <= *cap) return 0;
  size_t c = *cap ? *cap : first;
  while (c < need) c *= 2;
  char *b = realloc(*buf, c);
  if (!b) return -ENOMEM;
  *buf = b;
  *cap = c;
  return 0;
}

/* Only called after orch_buf_grow made room. */
static void put(orch_record_buf_t *r, const char *s, size_t n) {
  memcpy(r->buf + r->len, s, n);
  r->len += n;
}

/* Length of the valid UTF-8 sequence at s (1-4), or 0 if the bytes there are
 * not one (stray continuation, overlong form, surrogate, beyond U+10FFFF,
 * truncated). */
static size_t utf8_len(const unsigned char *s, size_t n) {
  unsigned c = s[0];
  size_t len;
  unsigned lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
  if (c < 0x80) return 1;
  if (c >= 0xC2 && c <= 0xDF) len = 2;
  else if (c >= 0xE0 && c <= 0xEF) {
    len = 3;
    if (c == 0xE0) lo = 0xA0;      /* overlong */
    else if (c == 0xED) hi = 0x9F; /* surrogates */
  } else if (c >= 0xF0 && c <= 0xF4) {
    len = 4;
    if (c == 0xF0) lo = 0x90;      /* overlong */
    else if (c == 0xF4) hi = 0x8F; /* beyond U+10FFFF */
  } else
    return 0;
  if (n < len || s[1] < lo || s[1] > hi) return 0;
  for (size_t i = 2; i < len; i++)
    if (s[i] < 0x80 || s[i] > 0xBF) return 0;
  return len;
}

/* Appends s as the inside of a JSON string. Worst case 6 bytes per input
 * byte (\u00XX), which the caller reserved. */
static void put_json(orch_record_buf_t *r, const char *str, size_t n) {
  static const char hex[] = "0123456789abcdef";
  const unsigned char *s = (const unsigned char *)str;
  char *d = r->buf + r->len;
  size_t i = 0;
  while (i < n) {
    unsigned c = s[i];
    size_t len = c < 0x80 ? 1 : utf8_len(s + i, n - i);
    if (len > 1) {
      memcpy(d, s + i, len);
      d += len;
      i += len;
      continue;
    }
    i++;
    if (c == '"' || c == '\\') {
      *d++ = '\\';
      *d++ = (char)c;
    } else if (c == '\n') {
      *d++ = '\\';
      *d++ = 'n';
    } else if (c == '\r') {
      *d++ = '\\';
      *d++ = 'r';
    } else if (c == '\t') {
      *d++ = '\\';
      *d++ = 't';
    } else if (c < 0x20 || len == 0) {
      /* Control characters, and bytes that are not UTF-8: the code point of
       * the same value, so the byte survives (read as Latin-1). */
      memcpy(d, "\\u00", 4);
      d[4] = hex[c >> 4];
      d[5] = hex[c & 15];
      d += 6;
    } else {
      *d++ = (char)c;
    }
  }
  r->len = (size_t)(d - r->buf);
}

size_t orch_record_time(const char *fmt, int utc, char *out, size_t cap) {
  struct timespec ts;
  struct tm tm;
  if (clock_gettime(CLOCK_REALTIME, &ts) < 0 ||
      !(utc ? gmtime_r(&ts.tv_sec, &tm) : localtime_r(&ts.tv_sec, &tm)))
    return 0;
  /* strftime knows neither %L nor %:z: substitute them first, escaping
   * nothing since digits, '+', '-' and ':' mean nothing to strftime. */
  char f[512];
  size_t j = 0;
  for (const char *p = fmt; *p && j + 8 < sizeof f; p++) {
    if (p[0] == '%' && p[1] == 'L') {
      j += (size_t)snprintf(f + j, sizeof f - j, "%03ld", ts.tv_nsec / 1000000);
      p++;
    } else if (p[0] == '%' && p[1] == ':' && p[2] == 'z') {
      long off = tm.tm_gmtoff;
      char sign = off < 0 ? '-' : '+';
      if (off < 0) off = -off;
      j += (size_t)snprintf(f + j, sizeof f - j, "%c%02ld:%02ld", sign,
                            off / 3600, off / 60 % 60);
      p += 2;
    } else if (p[0] == '%' && p[1]) {
      f[j++] = *p++; /* keeps "%%" and "%L"-lookalikes such as "%%L" intact */
      f[j++] = *p;
    } else {
      f[j++] = *p;
    }
  }
  f[j] = '\0';
  return strftime(out, cap, f, &tm);
}

int orch_record_put(orch_record_buf_t *r, const char *ts, size_t ts_len, const char *json_tail,
                    size_t json_tail_len, const char *a, size_t alen, const char *b, size_t blen,
                    int nl) {
  size_t need = json_tail ? 32 + 6 * ts_len + json_tail_len + 6 * (alen + blen)
                          : ts_len + 2 + alen + blen + 1;
  if (orch_buf_grow(&r->buf, &r->cap, r->len + need, 65536) < 0) return -ENOMEM;
  if (json_tail) {
    put(r, "{\"message\":\"", 12);
    put_json(r, a, alen);
    put_json(r, b, blen);
    if (nl) put(r, "\\n", 2);
    put(r, "\",\"timestamp\":\"", 15);
    put_json(r, ts, ts_len);
    put(r, json_tail, json_tail_len);
  } else {
    if (ts_len) {
      put(r, ts, ts_len);
      put(r, ": ", 2);
    }
    put(r, a, alen);
    put(r, b, blen);
    put(r, "\n", 1);
  }
  return 0;
}

char *orch_record_json_tail(const orch_line_format_t *f, size_t *len) {
  const char *app = f->json_app, *stream = f->json_stream ? f->json_stream : "";
  size_t alen = strlen(app), slen = strlen(stream);
  size_t cap = 64 + 6 * (alen + slen);
  orch_record_buf_t m = {0};
  if (orch_buf_grow(&m.buf, &m.cap, cap, cap) < 0) return NULL;
  char num[24];
  int nlen = snprintf(num, sizeof num, "%d", f->json_id);
  put(&m, "\",\"type\":\"", 10);
  put_json(&m, stream, slen);
  put(&m, "\",\"process_id\":", 15);
  put(&m, num, (size_t)nlen);
  put(&m, ",\"app_name\":\"", 13);
  put_json(&m, app, alen);
  put(&m, "\"}\n", 3);
  *len = m.len;
  return m.buf;
}
