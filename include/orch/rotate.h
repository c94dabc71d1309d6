/* rotate.h: numbered rotation of a log file's name.
 *
 * FILE is the live file; FILE.1 the most recent rotated one, FILE.2 the one
 * before, ... up to FILE.retain. A rotated file may also exist compressed
 * as FILE.N.gz: both names move together. Only names are touched here: the
 * caller holds the open file and reopens FILE after a shift. */
#ifndef ORCH_ROTATE_H
#define ORCH_ROTATE_H

#include <stddef.h>

/* Most rotated files a caller may ask to keep. */
#define ORCH_RETAIN_MAX 1000

/* Deletes FILE.retain (the oldest), renames FILE.N to FILE.N+1 from
 * retain-1 down to 1, then FILE to FILE.1, and deletes what is left above
 * retain (from a larger earlier setting). A missing file is skipped. The
 * first other failure stops the shift before FILE is renamed, so the live
 * file never goes anywhere unless every older one moved: 0 or -errno. */
int orch_rotate_shift(const char *path, int retain);

/* Deletes FILE.1 ... (and .gz): at least up to retain, then on as long as
 * one exists. 0 or the first -errno other than ENOENT. */
int orch_rotate_remove(const char *path, int retain);

/* Compresses everything readable from in into out as one gzip member
 * (zlib's default level), then fsyncs out: 0 or -errno. Blocking: for a
 * worker thread. */
int orch_gzip_fd(int in, int out);

/* FILE.n (gz: FILE.n.gz) into buf; -ENAMETOOLONG if it does not fit. */
int orch_rotate_name(char *buf, size_t cap, const char *path, int n, int gz);

#endif
