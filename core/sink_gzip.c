/* sink_gzip.c: the gzip of a sink's rotated file (orch_sink_compress),
 * in libuv's thread pool. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "orch/rotate.h"
#include "orch/sink_impl.h"

/* A job compresses one rotated file, which may move on (FILE.1 -> FILE.2 ...)
 * while it runs: rotations do not wait. Its fds follow the file's inode; its
 * index follows the name, and its output goes to a temporary name that no
 * shift touches, renamed to FILE.<index>.gz at the end. */
typedef struct gz_job_s {
  uv_work_t req;
  struct gz_job_s *next;
  orch_sink_t *s; /* a reference: the sink outlives the job */
  int in, out, err, index;
  unsigned gen;
  char part[PATH_MAX];
} gz_job_t;

static void gz_work(uv_work_t *req) {
  gz_job_t *j = req->data;
  j->err = orch_gzip_fd(j->in, j->out);
}

/* On the loop thread: the temporary file becomes FILE.<index>.gz, then the
 * plain FILE.<index> goes. On any failure the plain file stays as it is;
 * nothing is lost. A file rotated past retain, or flushed, meanwhile is gone
 * already: its output is dropped. */
static void gz_done(uv_work_t *req, int status) {
  gz_job_t *j = req->data;
  orch_sink_t *s = j->s;
  for (gz_job_t **pp = &s->jobs; *pp; pp = &(*pp)->next)
    if (*pp == j) {
      *pp = j->next;
      break;
    }
  close(j->in);
  close(j->out);
  char src[PATH_MAX], gz[PATH_MAX];
  int err = status < 0 ? -status : j->err < 0 ? -j->err : 0;
  int gone = j->gen != s->gen || j->index > s->retain;
  if (err == 0 && !gone) {
    if (orch_rotate_name(src, sizeof src, s->path, j->index, 0) < 0 ||
        orch_rotate_name(gz, sizeof gz, s->path, j->index, 1) < 0)
      err = ENAMETOOLONG;
    else if (rename(j->part, gz) < 0)
      err = errno;
    else
      unlink(src);
  }
  if (err || gone) unlink(j->part);
  if (!gone) s->gz_err = err;
  if (err && !gone) orch__sink_problem(s, ORCH_LOGP_COMPRESS, err, 0);
  free(j);
  orch_sink_unref(s);
}

/* Starts compressing FILE.1 (just rotated) in libuv's thread pool. */
void orch__sink_gzip_start(orch_sink_t *s, mode_t mode) {
  char src[PATH_MAX];
  gz_job_t *j = calloc(1, sizeof *j);
  int rc = j ? orch_rotate_name(src, sizeof src, s->path, 1, 0) : -ENOMEM;
  /* A name nobody can guess or plant first, created exclusively
   * (mkostemps: O_CREAT | O_EXCL, so a symlink there is never followed). */
  if (rc == 0 && snprintf(j->part, sizeof j->part, "%s.gzip-XXXXXX.part", s->path) >=
                     (int)sizeof j->part)
    rc = -ENAMETOOLONG;
  /* FILE.1 was ours an instant ago: not through a symlink, nor a FIFO that
   * would block the thread. */
  struct stat st;
  if (rc == 0 && (j->in = open(src, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY)) < 0)
    rc = -errno;
  else if (rc == 0 && (fstat(j->in, &st) < 0 || !S_ISREG(st.st_mode))) {
    rc = -EINVAL;
    close(j->in);
  }
  if (rc == 0 && ((j->out = mkostemps(j->part, 5, O_CLOEXEC)) < 0 || fchmod(j->out, mode) < 0)) {
    rc = -errno;
    if (j->out >= 0) {
      close(j->out);
      unlink(j->part);
    }
    close(j->in);
  }
  if (rc == 0) {
    j->req.data = j;
    j->s = s;
    j->gen = s->gen;
    j->index = 1;
    rc = uv_queue_work(s->gz_loop, &j->req, gz_work, gz_done);
    if (rc < 0) {
      close(j->in);
      close(j->out);
      unlink(j->part);
    } else {
      orch_sink_ref(s);
      j->next = s->jobs;
      s->jobs = j;
    }
  }
  if (rc < 0) {
    s->gz_err = -rc;
    orch__sink_problem(s, ORCH_LOGP_COMPRESS, -rc, 0);
    free(j);
  }
}

void orch__sink_gzip_shifted(orch_sink_t *s) {
  for (gz_job_t *j = s->jobs; j; j = j->next) j->index++;
}
