/* daemon_lua.c: orch.core.lock_pidfile, read_pidfile, spawn_detached,
 * ready_wait, start_lock, set_title, sleep_ms. */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "orch/binding.h"
#include "orch/daemon.h"
#include "orch/fdobj.h"

#define LOCK_MT "orch.pidfile_lock"

typedef struct {
  int fd; /* -1 once released */
} llock_t;

/* A lock userdata, not yet holding anything (released: fd -1). */
static llock_t *new_lock(lua_State *L) {
  llock_t *u = lua_newuserdata(L, sizeof *u);
  u->fd = -1;
  luaL_getmetatable(L, LOCK_MT);
  lua_setmetatable(L, -2);
  return u;
}

static int l_lock_pidfile(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  llock_t *u = new_lock(L);
  int rc = orch_pidfile_lock(path, &u->fd);
  if (rc == -EWOULDBLOCK) {
    /* Its own code rather than libuv's EAGAIN: callers test for this one. */
    pid_t holder;
    lua_pushnil(L);
    if (orch_pidfile_read(path, &holder) == 0)
      lua_pushfstring(L, "EWOULDBLOCK: %s is locked by pid %d", path, (int)holder);
    else
      lua_pushfstring(L, "EWOULDBLOCK: %s is locked by another process", path);
    lua_pushliteral(L, "EWOULDBLOCK");
    return 3;
  }
  if (rc < 0) return orch_lua_fail(L, rc);
  return 1;
}

static int l_lock_release(lua_State *L) {
  llock_t *u = luaL_checkudata(L, 1, LOCK_MT);
  if (u->fd >= 0) close(u->fd); /* closing the last fd drops the flock */
  u->fd = -1;
  return 0;
}

/* lock:fd() -> the descriptor holding the flock (orch update hands it to
 * the new image, so the lock is never let go), nil once released. */
static int l_lock_fd(lua_State *L) {
  llock_t *u = luaL_checkudata(L, 1, LOCK_MT);
  if (u->fd < 0) return 0;
  lua_pushinteger(L, u->fd);
  return 1;
}

/* lock_adopt(n) -> the lock a previous image of this process held on
 * descriptor n (still held: the flock belongs to the open file). */
static int l_lock_adopt(lua_State *L) {
  int n = (int)luaL_checkinteger(L, 1);
  if (n < 3) return luaL_argerror(L, 1, "a descriptor >= 3 expected");
  llock_t *u = new_lock(L);
  int fl = fcntl(n, F_GETFD);
  if (fl < 0 || fcntl(n, F_SETFD, fl | FD_CLOEXEC) < 0) return orch_lua_fail(L, -errno);
  u->fd = n;
  return 1;
}

static int l_read_pidfile(lua_State *L) {
  pid_t pid;
  if (orch_pidfile_read(luaL_checkstring(L, 1), &pid) < 0) {
    lua_pushnil(L);
    return 1;
  }
  lua_pushinteger(L, pid);
  return 1;
}

static const char *opt_string(lua_State *L, const char *key) {
  lua_getfield(L, 1, key);
  if (lua_isnil(L, -1)) return NULL;
  if (lua_type(L, -1) != LUA_TSTRING) luaL_error(L, "%s: string expected", key);
  return lua_tostring(L, -1); /* alive in the options table */
}

/* { file =, argv = { ... }, env = { "K=V", ... } | nil, log =, cwd =,
 *   ready_fd = n | nil } -> pid [, fd of the readiness pipe's read end] */
static int l_spawn_detached(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  orch_daemon_opts_t o;
  memset(&o, 0, sizeof o);
  o.file = opt_string(L, "file");
  if (!o.file) return luaL_argerror(L, 1, "file: string expected");
  lua_getfield(L, 1, "argv");
  if (lua_isnil(L, -1)) {
    char **v = lua_newuserdata(L, 2 * sizeof *v);
    v[0] = (char *)o.file;
    v[1] = NULL;
    o.argv = v;
  } else {
    o.argv = orch_lua_string_list(L, lua_gettop(L), "argv", NULL);
  }
  lua_getfield(L, 1, "env");
  if (!lua_isnil(L, -1)) o.envp = orch_lua_string_list(L, lua_gettop(L), "env", NULL);
  o.log = opt_string(L, "log");
  o.cwd = opt_string(L, "cwd");
  lua_getfield(L, 1, "ready_fd");
  o.ready_fd = (int)luaL_optinteger(L, -1, -1);
  pid_t pid;
  int ready = -1;
  int *slot = orch_fdobj_new(L); /* before the pipe, so that it has an owner */
  int rc = orch_daemon_spawn(&o, &pid, &ready);
  if (rc < 0) return orch_lua_fail(L, rc);
  *slot = ready;
  lua_pushinteger(L, pid);
  if (ready < 0) return 1;
  lua_insert(L, -2);
  return 2;
}

/* core.ready_wait(f, timeout_ms): the byte the daemon wrote, or nil,
 * message, "EOF" (it is gone without one) | "ETIMEDOUT" | code. Closes f. */
static int l_ready_wait(lua_State *L) {
  int ms = (int)luaL_checkinteger(L, 2);
  int fd = orch_fdobj_take(L, 1);
  int rc = orch_daemon_ready_wait(fd, ms);
  close(fd);
  if (rc > 0) {
    char c = (char)(rc & 0xff);
    lua_pushlstring(L, &c, 1);
    return 1;
  }
  if (rc < 0) return orch_lua_fail(L, rc);
  lua_pushnil(L);
  lua_pushliteral(L, "EOF: the daemon exited before it was ready");
  lua_pushliteral(L, "EOF");
  return 3;
}

/* core.start_lock(dir): a lock (see lock_pidfile) on dir, waited for. */
static int l_start_lock(lua_State *L) {
  const char *dir = luaL_checkstring(L, 1);
  llock_t *u = new_lock(L);
  int rc = orch_start_lock(dir, &u->fd);
  if (rc < 0) return orch_lua_fail(L, rc);
  return 1;
}

static int l_set_title(lua_State *L) {
  int rc = orch_title_set(luaL_checkstring(L, 1));
  return orch_lua_ok(L, rc);
}

/* Blocking sleep for the CLI's short waits (it has no loop to wait on). */
static int l_sleep_ms(lua_State *L) {
  lua_Number ms = luaL_checknumber(L, 1);
  if (ms <= 0) return 0;
  struct timespec ts;
  ts.tv_sec = (time_t)(ms / 1000);
  ts.tv_nsec = (long)((ms - (lua_Number)ts.tv_sec * 1000) * 1e6);
  while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
  }
  return 0;
}

static const luaL_Reg lock_methods[] = {{"release", l_lock_release}, {"fd", l_lock_fd}, {NULL, NULL}};

static const luaL_Reg funcs[] = {
    {"lock_pidfile", l_lock_pidfile}, {"lock_adopt", l_lock_adopt}, {"read_pidfile", l_read_pidfile},
    {"spawn_detached", l_spawn_detached}, {"ready_wait", l_ready_wait},
    {"start_lock", l_start_lock}, {"set_title", l_set_title}, {"sleep_ms", l_sleep_ms},
    {NULL, NULL}};

void orch_daemon_lua_register(lua_State *L) {
  orch_lua_class(L, LOCK_MT, lock_methods, l_lock_release);
  luaL_register(L, NULL, funcs);
}
