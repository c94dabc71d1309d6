/* durable.c: crash-safe writes of small files (see durable.h). */
#include "orch/durable.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "orch/binding.h"
#include "orch/owners.h"
#include "orch/runtime.h"

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static char *sealed; /* under lock */

/* Cleared when the Lua state closes: a write finishing later (main.c runs
 * the loop once more) only frees its memory. One Lua state per process. */
static int lua_up;

static int write_all(int fd, const char *data, size_t len) {
  while (len > 0) {
    ssize_t n = write(fd, data, len);
    if (n < 0) {
      if (errno == EINTR) continue;
      return -errno;
    }
    if (n == 0) return -EIO;
    data += n;
    len -= (size_t)n;
  }
  return 0;
}

static int sync_dir(const char *path) {
  const char *slash = strrchr(path, '/');
  char dir[4096];
  if (!slash) {
    strcpy(dir, ".");
  } else if (slash == path) {
    strcpy(dir, "/");
  } else {
    size_t n = (size_t)(slash - path);
    if (n >= sizeof dir) return -ENAMETOOLONG;
    memcpy(dir, path, n);
    dir[n] = '\0';
  }
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return -errno;
  int rc = fsync(fd) < 0 ? -errno : 0;
  close(fd);
  return rc;
}

/* The steps, with lock held. */
static int write_locked(const char *path, const char *data, size_t len, const char **step) {
  char tmp[4096];
  if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp) {
    *step = "create";
    return -ENAMETOOLONG;
  }
  /* a leftover of a crash mid-write: $ORCH_HOME is private, it is ours */
  if (unlink(tmp) < 0 && errno != ENOENT) {
    *step = "create";
    return -errno;
  }
  *step = "create";
  int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) return -errno;
  int rc = write_all(fd, data, len);
  *step = "write";
  if (rc == 0) {
    *step = "fsync";
    rc = fsync(fd) < 0 ? -errno : 0;
  }
  if (close(fd) < 0 && rc == 0 && errno != EINTR) rc = -errno;
  if (rc == 0) {
    *step = "rename";
    rc = rename(tmp, path) < 0 ? -errno : 0;
  }
  if (rc < 0) {
    unlink(tmp);
    return rc;
  }
  *step = "fsync the directory of";
  return sync_dir(path);
}

int orch_durable_write(const char *path, const char *data, size_t len, const char **step) {
  pthread_mutex_lock(&lock);
  int rc = write_locked(path, data, len, step);
  pthread_mutex_unlock(&lock);
  return rc;
}

int orch_durable_seal(const char *path) {
  char *copy = strdup(path);
  if (!copy) return -ENOMEM;
  pthread_mutex_lock(&lock);
  free(sealed);
  sealed = copy;
  pthread_mutex_unlock(&lock);
  return 0;
}

/* ---- on a writer thread of its own ----
 * Not libuv's thread pool: a state write must not wait behind gzip jobs of
 * rotated logs. Jobs are done in order; finished ones go back to the loop
 * through an async handle. */

typedef struct job {
  struct job *next;
  lua_State *L;
  int cb_ref;
  int rc;
  const char *step;
  size_t len;
  char *data;
  char path[];
} job_t;

static pthread_mutex_t qlock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t qcond = PTHREAD_COND_INITIALIZER;
static job_t *todo_head, *todo_tail, *done_head, *done_tail; /* under qlock */
static int started;  /* the thread and the async handle exist */
static int detached; /* under qlock: the Lua state is gone, no more async sends */
static uv_async_t done_async;

static void push(job_t **head, job_t **tail, job_t *j) {
  j->next = NULL;
  if (*tail) (*tail)->next = j;
  else *head = j;
  *tail = j;
}

static void *writer_main(void *arg) {
  (void)arg;
  sigset_t all;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, NULL); /* signals are the loop thread's */
  for (;;) {
    pthread_mutex_lock(&qlock);
    while (!todo_head) pthread_cond_wait(&qcond, &qlock);
    job_t *j = todo_head;
    todo_head = j->next;
    if (!todo_head) todo_tail = NULL;
    pthread_mutex_unlock(&qlock);

    pthread_mutex_lock(&lock);
    if (sealed && strcmp(sealed, j->path) == 0) {
      j->rc = -ECANCELED;
      j->step = "write";
    } else {
      j->rc = write_locked(j->path, j->data, j->len, &j->step);
    }
    pthread_mutex_unlock(&lock);

    pthread_mutex_lock(&qlock);
    push(&done_head, &done_tail, j);
    if (!detached) uv_async_send(&done_async);
    pthread_mutex_unlock(&qlock);
  }
  return NULL;
}

static void finish(job_t *j) {
  if (lua_up) {
    lua_State *L = j->L;
    lua_rawgeti(L, LUA_REGISTRYINDEX, j->cb_ref);
    luaL_unref(L, LUA_REGISTRYINDEX, j->cb_ref);
    int nargs = 1;
    if (j->rc == 0) {
      lua_pushboolean(L, 1);
    } else {
      lua_pushnil(L);
      lua_pushfstring(L, "cannot %s %s: %s: %s", j->step, j->path, uv_err_name(j->rc), uv_strerror(j->rc));
      lua_pushstring(L, uv_err_name(j->rc));
      nargs = 3;
    }
    int n = orch_runtime_pcall(L, nargs, 0, 0);
    if (n > 0) lua_pop(L, n);
  }
  free(j->data);
  free(j);
}

static void on_done(uv_async_t *a) {
  (void)a;
  pthread_mutex_lock(&qlock);
  job_t *j = done_head;
  done_head = done_tail = NULL;
  pthread_mutex_unlock(&qlock);
  while (j) {
    job_t *next = j->next;
    finish(j);
    j = next;
  }
}

/* The async handle goes at exit (owners.h); the writer finishes what it
 * holds on its own and sends nothing more. */
static void close_async(void) {
  pthread_mutex_lock(&qlock);
  detached = 1;
  pthread_mutex_unlock(&qlock);
  if (!uv_is_closing((uv_handle_t *)&done_async)) uv_close((uv_handle_t *)&done_async, NULL);
}

static int start_writer(uv_loop_t *loop) {
  if (started) return 0;
  int rc = uv_async_init(loop, &done_async, on_done);
  if (rc < 0) return rc;
  uv_unref((uv_handle_t *)&done_async); /* pending writes do not keep orch alive */
  pthread_t t;
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  rc = -pthread_create(&t, &attr, writer_main, NULL);
  pthread_attr_destroy(&attr);
  if (rc < 0) {
    uv_close((uv_handle_t *)&done_async, NULL);
    return rc;
  }
  started = 1;
  static orch_owner_t owner = {"the state writer", close_async, NULL, 0};
  orch_owner_add(&owner);
  return 0;
}

/* durable_write(path, text[, callback]): without a callback, blocking:
 * true | nil, message, code. With one: true (queued; callback(ok, message,
 * code) once written) | nil, message, code. */
static int l_durable_write(lua_State *L) {
  size_t plen, len;
  const char *path = luaL_checklstring(L, 1, &plen);
  const char *text = luaL_checklstring(L, 2, &len);
  if (lua_isnoneornil(L, 3)) {
    const char *step = "write";
    int rc = orch_durable_write(path, text, len, &step);
    if (rc == 0) {
      lua_pushboolean(L, 1);
      return 1;
    }
    lua_pushnil(L);
    lua_pushfstring(L, "cannot %s %s: %s: %s", step, path, uv_err_name(rc), uv_strerror(rc));
    lua_pushstring(L, uv_err_name(rc));
    return 3;
  }
  luaL_checktype(L, 3, LUA_TFUNCTION);
  job_t *j = calloc(1, sizeof *j + plen + 1);
  char *data = malloc(len ? len : 1);
  if (!j || !data) {
    free(j);
    free(data);
    return orch_lua_fail(L, -ENOMEM);
  }
  int rc = start_writer(orch_runtime_loop(L));
  if (rc < 0) {
    free(j);
    free(data);
    return orch_lua_fail(L, rc);
  }
  memcpy(j->path, path, plen + 1);
  memcpy(data, text, len);
  j->data = data;
  j->len = len;
  j->L = L;
  lua_pushvalue(L, 3);
  j->cb_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  pthread_mutex_lock(&qlock);
  push(&todo_head, &todo_tail, j);
  pthread_cond_signal(&qcond);
  pthread_mutex_unlock(&qlock);
  lua_pushboolean(L, 1);
  return 1;
}

static int l_durable_seal(lua_State *L) {
  int rc = orch_durable_seal(luaL_checkstring(L, 1));
  return orch_lua_ok(L, rc);
}

static int on_state_close(lua_State *L) {
  (void)L;
  lua_up = 0;
  /* main.c closes every handle next: the writer must not touch ours */
  pthread_mutex_lock(&qlock);
  detached = 1;
  pthread_mutex_unlock(&qlock);
  return 0;
}

static const luaL_Reg funcs[] = {
    {"durable_write", l_durable_write}, {"durable_seal", l_durable_seal}, {NULL, NULL}};

void orch_durable_lua_register(lua_State *L) {
  orch_lua_on_state_close(L, "orch.durable_state", on_state_close);
  lua_up = 1;
  luaL_register(L, NULL, funcs);
}
