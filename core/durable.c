/* durable.c: crash-safe writes of small files (see durable.h). */
#include "orch/durable.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "orch/binding.h"
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

/* ---- in the thread pool ---- */

typedef struct {
  uv_work_t req;
  lua_State *L;
  int cb_ref;
  int rc;
  const char *step;
  size_t len;
  char *data;
  char path[];
} job_t;

static void work(uv_work_t *req) {
  job_t *j = req->data;
  pthread_mutex_lock(&lock);
  if (sealed && strcmp(sealed, j->path) == 0) {
    j->rc = -ECANCELED;
    j->step = "write";
  } else {
    j->rc = write_locked(j->path, j->data, j->len, &j->step);
  }
  pthread_mutex_unlock(&lock);
}

static void after(uv_work_t *req, int status) {
  job_t *j = req->data;
  if (lua_up) {
    lua_State *L = j->L;
    lua_rawgeti(L, LUA_REGISTRYINDEX, j->cb_ref);
    luaL_unref(L, LUA_REGISTRYINDEX, j->cb_ref);
    int rc = status < 0 ? status : j->rc;
    int nargs = 1;
    if (rc == 0) {
      lua_pushboolean(L, 1);
    } else {
      lua_pushnil(L);
      lua_pushfstring(L, "cannot %s %s: %s: %s", j->step, j->path, uv_err_name(rc), uv_strerror(rc));
      lua_pushstring(L, uv_err_name(rc));
      nargs = 3;
    }
    int n = orch_runtime_pcall(L, nargs, 0, 0);
    if (n > 0) lua_pop(L, n);
  }
  free(j->data);
  free(j);
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
  memcpy(j->path, path, plen + 1);
  memcpy(data, text, len);
  j->data = data;
  j->len = len;
  j->L = L;
  j->req.data = j;
  lua_pushvalue(L, 3);
  j->cb_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  int rc = uv_queue_work(orch_runtime_loop(L), &j->req, work, after);
  if (rc < 0) {
    luaL_unref(L, LUA_REGISTRYINDEX, j->cb_ref);
    free(j->data);
    free(j);
    return orch_lua_fail(L, rc);
  }
  lua_pushboolean(L, 1);
  return 1;
}

static int l_durable_seal(lua_State *L) {
  int rc = orch_durable_seal(luaL_checkstring(L, 1));
  if (rc < 0) return orch_lua_fail(L, rc);
  lua_pushboolean(L, 1);
  return 1;
}

static int on_state_close(lua_State *L) {
  (void)L;
  lua_up = 0;
  return 0;
}

void orch_durable_lua_register(lua_State *L) {
  /* A registry value with a finalizer: collected only by lua_close. */
  lua_getfield(L, LUA_REGISTRYINDEX, "orch.durable_state");
  int have = !lua_isnil(L, -1);
  lua_pop(L, 1);
  if (!have) {
    lua_newuserdata(L, 1);
    lua_newtable(L);
    lua_pushcfunction(L, on_state_close);
    lua_setfield(L, -2, "__gc");
    lua_setmetatable(L, -2);
    lua_setfield(L, LUA_REGISTRYINDEX, "orch.durable_state");
  }
  lua_up = 1;
  lua_pushcfunction(L, l_durable_write);
  lua_setfield(L, -2, "durable_write");
  lua_pushcfunction(L, l_durable_seal);
  lua_setfield(L, -2, "durable_seal");
}
