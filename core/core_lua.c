/* core_lua.c: the orch.core module, the Lua face of proc.c, sink.c, reap.c.
 *
 * Handles are userdata; expected failures return nil, "ENOENT: message",
 * "ENOENT" (luv's convention); misuse raises an argument error. */
#include <errno.h>
#include <fcntl.h>
#include <lauxlib.h>
#include <lua.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "orch/ctl.h"
#include "orch/heap.h"
#include "orch/daemon.h"
#include "orch/durable.h"
#include "orch/echo.h"
#include "orch/fds.h"
#include "orch/listen.h"
#include "orch/notify.h"
#include "orch/marker.h"
#include "orch/pidfd.h"
#include "orch/proc.h"
#include "orch/rotate.h"
#include "orch/runtime.h"
#include "orch/sink.h"
#include "orch/stats.h"

#define PROC_MT "orch.proc"
#define SINK_MT "orch.sink"

static int push_fail(lua_State *L, int err) {
  lua_pushnil(L);
  lua_pushfstring(L, "%s: %s", uv_err_name(err), uv_strerror(err));
  lua_pushstring(L, uv_err_name(err));
  return 3;
}

/* ---- signals ---- */

static const struct {
  const char *name;
  int num;
} signals[] = {
    {"SIGHUP", SIGHUP},   {"SIGINT", SIGINT},     {"SIGQUIT", SIGQUIT},
    {"SIGILL", SIGILL},   {"SIGTRAP", SIGTRAP},   {"SIGABRT", SIGABRT},
    {"SIGBUS", SIGBUS},   {"SIGFPE", SIGFPE},     {"SIGKILL", SIGKILL},
    {"SIGUSR1", SIGUSR1}, {"SIGSEGV", SIGSEGV},   {"SIGUSR2", SIGUSR2},
    {"SIGPIPE", SIGPIPE}, {"SIGALRM", SIGALRM},   {"SIGTERM", SIGTERM},
    {"SIGCHLD", SIGCHLD}, {"SIGCONT", SIGCONT},   {"SIGSTOP", SIGSTOP},
    {"SIGTSTP", SIGTSTP}, {"SIGTTIN", SIGTTIN},   {"SIGTTOU", SIGTTOU},
    {"SIGURG", SIGURG},   {"SIGXCPU", SIGXCPU},   {"SIGXFSZ", SIGXFSZ},
    {"SIGVTALRM", SIGVTALRM}, {"SIGPROF", SIGPROF}, {"SIGWINCH", SIGWINCH},
    {"SIGIO", SIGIO},     {"SIGPWR", SIGPWR},     {"SIGSYS", SIGSYS},
    {NULL, 0}};

static const char *signal_name(int num) {
  for (int i = 0; signals[i].name; i++)
    if (signals[i].num == num) return signals[i].name;
  return NULL;
}

/* A signal given as a number, "SIGTERM" or "TERM" (any case); 0 if unknown. */
static int signal_num(lua_State *L, int idx) {
  if (lua_type(L, idx) == LUA_TNUMBER) {
    int n = (int)lua_tointeger(L, idx);
    return n > 0 && n < NSIG ? n : 0;
  }
  const char *s = luaL_checkstring(L, idx);
  if (strncasecmp(s, "SIG", 3) == 0) s += 3;
  for (int i = 0; signals[i].name; i++)
    if (strcasecmp(signals[i].name + 3, s) == 0) return signals[i].num;
  return 0;
}

static int check_signal(lua_State *L, int idx) {
  int sig = signal_num(L, idx);
  if (!sig) luaL_argerror(L, idx, "unknown signal");
  return sig;
}

static int l_signum(lua_State *L) {
  int sig = signal_num(L, 1);
  if (!sig) return 0;
  lua_pushinteger(L, sig);
  return 1;
}

static int l_signame(lua_State *L) {
  const char *name = signal_name((int)luaL_checkinteger(L, 1));
  if (!name) return 0;
  lua_pushstring(L, name);
  return 1;
}

/* ---- sinks ---- */

typedef struct {
  orch_sink_t *s;
} lsink_t;

static orch_sink_t *check_sink(lua_State *L, int idx) {
  lsink_t *u = luaL_checkudata(L, idx, SINK_MT);
  if (!u->s) luaL_argerror(L, idx, "sink is closed");
  return u->s;
}

/* Applies {max_size = bytes (0: never), retain = n, compress = bool} at idx,
 * if a table. */
static void sink_rotation_opts(lua_State *L, int idx, orch_sink_t *s) {
  if (lua_isnoneornil(L, idx)) return;
  luaL_checktype(L, idx, LUA_TTABLE);
  lua_getfield(L, idx, "max_size");
  lua_Number max = luaL_optnumber(L, -1, 0);
  lua_getfield(L, idx, "retain");
  lua_Integer retain = luaL_optinteger(L, -1, 5);
  lua_getfield(L, idx, "compress");
  int compress = lua_toboolean(L, -1);
  lua_pop(L, 3);
  if (!(max >= 0 && max < 9.0e15)) luaL_argerror(L, idx, "max_size: expected bytes >= 0");
  if (retain < 1 || retain > ORCH_RETAIN_MAX) luaL_argerror(L, idx, "retain: expected 1 to 1000");
  orch_sink_rotation(s, (uint64_t)max, (int)retain);
  orch_sink_compress(s, compress ? orch_runtime_loop(L) : NULL);
}

/* core.sink_open(path|nil [, {max_size =, retain =}] [, follow [, mkdir]]):
 * follow, a path the user named: a symlink there is followed; mkdir, its
 * directory is orch's, made again if gone (orch_sink_open). */
static int l_sink_open(lua_State *L) {
  const char *path = luaL_optstring(L, 1, NULL);
  if (!lua_isnoneornil(L, 2)) luaL_checktype(L, 2, LUA_TTABLE);
  unsigned flags = (lua_toboolean(L, 3) ? ORCH_SINK_FOLLOW : 0) | (lua_toboolean(L, 4) ? ORCH_SINK_MKDIR : 0);
  lsink_t *u = lua_newuserdata(L, sizeof *u);
  u->s = NULL;
  luaL_getmetatable(L, SINK_MT);
  lua_setmetatable(L, -2);
  int rc = orch_sink_open(path, flags, &u->s);
  if (rc < 0) return push_fail(L, rc);
  sink_rotation_opts(L, 2, u->s);
  return 1;
}

static int l_sink_close(lua_State *L) {
  lsink_t *u = luaL_checkudata(L, 1, SINK_MT);
  if (u->s) orch_sink_unref(u->s);
  u->s = NULL;
  return 0;
}

static int l_sink_write(lua_State *L) {
  orch_sink_t *s = check_sink(L, 1);
  size_t n;
  const char *buf = luaL_checklstring(L, 2, &n);
  orch_sink_write(s, buf, n);
  return 0;
}

static int l_sink_path(lua_State *L) {
  orch_sink_t *s = check_sink(L, 1);
  const char *p = orch_sink_path(s);
  if (*p) lua_pushstring(L, p);
  else lua_pushnil(L);
  return 1;
}

/* sink:rotation{max_size =, retain =}: changes the settings of an open sink. */
static int l_sink_rotation(lua_State *L) {
  orch_sink_t *s = check_sink(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  sink_rotation_opts(L, 2, s);
  return 0;
}

static int ok_or_fail(lua_State *L, int rc) {
  if (rc < 0) return push_fail(L, rc);
  lua_pushboolean(L, 1);
  return 1;
}

static int l_sink_reopen(lua_State *L) { return ok_or_fail(L, orch_sink_reopen(check_sink(L, 1))); }
static int l_sink_truncate(lua_State *L) { return ok_or_fail(L, orch_sink_truncate(check_sink(L, 1))); }
static int l_sink_own_stdio(lua_State *L) { return ok_or_fail(L, orch_sink_own_stdio(check_sink(L, 1))); }

static int l_sink_stats(lua_State *L) {
  orch_sink_t *s = check_sink(L, 1);
  orch_sink_stats_t st;
  orch_sink_stats(s, &st);
  lua_createtable(L, 0, 6);
  lua_pushnumber(L, (lua_Number)st.written);
  lua_setfield(L, -2, "written");
  lua_pushnumber(L, (lua_Number)st.dropped);
  lua_setfield(L, -2, "dropped");
  lua_pushnumber(L, (lua_Number)st.size);
  lua_setfield(L, -2, "size");
  lua_pushnumber(L, (lua_Number)st.rotations);
  lua_setfield(L, -2, "rotations");
  if (st.last_err) {
    lua_pushstring(L, uv_err_name(-st.last_err));
    lua_setfield(L, -2, "error");
  }
  lua_pushboolean(L, st.stalled);
  lua_setfield(L, -2, "stalled");
  if (st.rotate_err) {
    lua_pushstring(L, uv_err_name(-st.rotate_err));
    lua_setfield(L, -2, "rotate_error");
  }
  if (st.compress_err) {
    lua_pushstring(L, uv_err_name(-st.compress_err));
    lua_setfield(L, -2, "compress_error");
  }
  lua_pushnumber(L, (lua_Number)st.remade);
  lua_setfield(L, -2, "remade");
  lua_pushnumber(L, (lua_Number)st.dir_remade);
  lua_setfield(L, -2, "dir_remade");
  return 1;
}

/* core.truncate_log(path [, follow]): empties an existing log file no sink
 * has open (orch_sink_truncate_path). */
static int l_truncate_log(lua_State *L) {
  return ok_or_fail(L, orch_sink_truncate_path(luaL_checkstring(L, 1), lua_toboolean(L, 2)));
}

/* core.remove_rotated(path, retain): deletes path.1 ... (and .gz). */
static int l_remove_rotated(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  int retain = (int)luaL_optinteger(L, 2, 1);
  return ok_or_fail(L, orch_rotate_remove(path, retain));
}

/* ---- processes ---- */

typedef struct {
  lua_State *L;
  orch_proc_t *p;
  orch_outpipe_t *out[2];
  pid_t pid;
  int exited, code, sig;
  int cb_ref;   /* on_exit */
  int self_ref; /* pins the userdata while C may still call back */
} lproc_t;

static void close_outpipes(lproc_t *u) {
  for (int i = 0; i < 2; i++)
    if (u->out[i]) {
      orch_outpipe_release(u->out[i]);
      u->out[i] = NULL;
    }
}

static void on_exit_cb(orch_proc_t *p, int code, int sig) {
  lproc_t *u = orch_proc_data(p);
  lua_State *L = u->L;
  u->exited = 1;
  u->code = code;
  u->sig = sig;
  /* Whatever the app wrote before it died belongs in the log before the
   * exit is reported. */
  for (int i = 0; i < 2; i++)
    if (u->out[i]) orch_outpipe_drain(u->out[i]);
  close_outpipes(u);
  orch_proc_release(p);
  u->p = NULL;

  lua_rawgeti(L, LUA_REGISTRYINDEX, u->cb_ref);
  luaL_unref(L, LUA_REGISTRYINDEX, u->cb_ref);
  u->cb_ref = LUA_NOREF;
  int self = u->self_ref;
  u->self_ref = LUA_NOREF;
  if (lua_isfunction(L, -1)) {
    if (code >= 0) lua_pushinteger(L, code);
    else lua_pushnil(L);
    const char *name = sig ? signal_name(sig) : NULL;
    if (name) lua_pushstring(L, name);
    else if (sig) lua_pushinteger(L, sig);
    else lua_pushnil(L);
    int n = orch_runtime_pcall(L, 2, 0, 0);
    if (n > 0) lua_pop(L, n);
  } else {
    lua_pop(L, 1);
  }
  luaL_unref(L, LUA_REGISTRYINDEX, self); /* may let u be collected */
}

/* *nul_at: the 1-based index of the first string holding a NUL byte (the
 * program would see it cut short there), or 0. */
static const char **string_list(lua_State *L, int idx, const char *what, int *nul_at) {
  if (lua_type(L, idx) != LUA_TTABLE) luaL_error(L, "%s: table expected", what);
  size_t n = lua_objlen(L, idx);
  const char **v = lua_newuserdata(L, (n + 1) * sizeof *v); /* freed by GC */
  *nul_at = 0;
  for (size_t i = 0; i < n; i++) {
    lua_rawgeti(L, idx, (int)i + 1);
    size_t len;
    v[i] = lua_tolstring(L, -1, &len);
    if (!v[i] || lua_type(L, -1) != LUA_TSTRING)
      luaL_error(L, "%s[%d]: string expected", what, (int)i + 1);
    if (!*nul_at && strlen(v[i]) != len) *nul_at = (int)i + 1;
    lua_pop(L, 1); /* the string stays alive in the table */
  }
  v[n] = NULL;
  return v;
}

/* nil, "EINVAL: ... contains a NUL byte", "EINVAL": names the argument by
 * its position, the variable by its name (what comes before '='). */
static int nul_fail(lua_State *L, int arg_at, char *const *envp, int env_at) {
  lua_pushnil(L);
  if (arg_at) {
    lua_pushfstring(L, "EINVAL: argument %d contains a NUL byte", arg_at - 1);
  } else {
    const char *e = envp[env_at - 1], *eq = strchr(e, '=');
    lua_pushliteral(L, "EINVAL: environment variable ");
    lua_pushlstring(L, e, eq ? (size_t)(eq - e) : strlen(e));
    lua_pushliteral(L, " contains a NUL byte");
    lua_concat(L, 3);
  }
  lua_pushliteral(L, "EINVAL");
  return 3;
}

static int int_list(lua_State *L, int idx, int *out, int cap) {
  int n = (int)lua_objlen(L, idx);
  if (n > cap) luaL_error(L, "fds: at most %d", cap);
  for (int i = 0; i < n; i++) {
    lua_rawgeti(L, idx, i + 1);
    out[i] = (int)luaL_checkinteger(L, -1);
    lua_pop(L, 1);
  }
  return n;
}

/* stdout/stderr option:
 *   { sink = <sink>, combined = <sink>?, echo_fd = 1?, prefix = "web:0 | "?,
 *     format = { timestamp = "%Y-%m-%d %H:%M:%S"?,
 *                json = { app = "web", id = 0, stream = "out" }? }? }
 * The strings stay alive in the options table until l_spawn returns, and
 * orch_outpipe_start copies them. */
typedef struct {
  orch_outpipe_opts_t o;
  orch_line_format_t format;
} stream_opt_t;

static const char *opt_string(lua_State *L, int t, const char *key, const char *what) {
  lua_getfield(L, t, key);
  const char *v = lua_tostring(L, -1);
  if (!lua_isnil(L, -1) && lua_type(L, -1) != LUA_TSTRING)
    luaL_error(L, "%s.%s: string expected", what, key);
  lua_pop(L, 1);
  return v;
}

static void stream_format(lua_State *L, int t, const char *key, stream_opt_t *so) {
  lua_getfield(L, t, "format");
  int f = lua_gettop(L);
  if (lua_isnil(L, f)) {
    lua_pop(L, 1);
    return;
  }
  if (!lua_istable(L, f)) luaL_error(L, "%s.format: table expected", key);
  so->format.timestamp = opt_string(L, f, "timestamp", key);
  lua_getfield(L, f, "json");
  int j = lua_gettop(L);
  if (lua_istable(L, j)) {
    so->format.json_app = opt_string(L, j, "app", key);
    if (!so->format.json_app) luaL_error(L, "%s.format.json.app: string expected", key);
    so->format.json_stream = opt_string(L, j, "stream", key);
    lua_getfield(L, j, "id");
    so->format.json_id = (int)luaL_optinteger(L, -1, 0);
    lua_pop(L, 1);
  } else if (!lua_isnil(L, j)) {
    luaL_error(L, "%s.format.json: table expected", key);
  }
  lua_pop(L, 2);
  so->o.format = &so->format;
}

static void stream_opt(lua_State *L, int opts, const char *key, stream_opt_t *so) {
  memset(so, 0, sizeof *so);
  so->o.echo_fd = -1;
  lua_getfield(L, opts, key);
  if (lua_istable(L, -1)) {
    int t = lua_gettop(L);
    lua_getfield(L, t, "sink");
    so->o.sink = check_sink(L, lua_gettop(L));
    lua_getfield(L, t, "combined");
    if (!lua_isnil(L, -1)) so->o.combined = check_sink(L, lua_gettop(L));
    lua_getfield(L, t, "echo_fd");
    so->o.echo_fd = (int)luaL_optinteger(L, -1, -1);
    lua_pop(L, 3);
    so->o.prefix = opt_string(L, t, "prefix", key);
    stream_format(L, t, key, so);
  } else if (!lua_isnil(L, -1)) {
    luaL_error(L, "%s: table expected", key);
  }
  lua_pop(L, 1);
}

static int l_spawn(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  orch_spawn_opts_t o;
  memset(&o, 0, sizeof o);
  lua_getfield(L, 1, "file");
  o.file = luaL_checkstring(L, -1);
  lua_getfield(L, 1, "argv");
  int arg_nul, env_nul;
  o.argv = (char *const *)string_list(L, lua_gettop(L), "argv", &arg_nul);
  lua_getfield(L, 1, "env");
  o.envp = (char *const *)string_list(L, lua_gettop(L), "env", &env_nul);
  if (arg_nul || env_nul) return nul_fail(L, arg_nul, o.envp, env_nul);
  lua_getfield(L, 1, "cwd");
  o.cwd = lua_tostring(L, -1);
  /* listen_pid: LISTEN_PID=<the child's own pid>, known only after fork, so
   * the child writes it into this buffer, appended to a copy of env. */
  lua_getfield(L, 1, "listen_pid");
  if (lua_toboolean(L, -1)) {
    size_t n = 0;
    while (o.envp[n]) n++;
    char **env = lua_newuserdata(L, (n + 2) * sizeof *env);
    memcpy(env, o.envp, n * sizeof *env);
    o.pid_env = lua_newuserdata(L, 32);
    memcpy(o.pid_env, "LISTEN_PID=", 12);
    env[n] = o.pid_env;
    env[n + 1] = NULL;
    o.envp = env;
  }
  int extra[64];
  lua_getfield(L, 1, "fds");
  if (lua_istable(L, -1)) {
    o.n_extra_fds = int_list(L, lua_gettop(L), extra, 64);
    o.extra_fds = extra;
  }
  stream_opt_t so[2];
  stream_opt(L, 1, "stdout", &so[0]);
  stream_opt(L, 1, "stderr", &so[1]);
  lua_getfield(L, 1, "on_exit");
  int cb_idx = lua_gettop(L);

  int pipes[2][2] = {{-1, -1}, {-1, -1}};
  int rc = 0;
  for (int i = 0; i < 2 && rc == 0; i++)
    if (so[i].o.sink && pipe2(pipes[i], O_CLOEXEC) < 0) rc = -errno;
  pid_t pid = 0;
  if (rc == 0) {
    o.stdout_fd = so[0].o.sink ? pipes[0][1] : -1;
    o.stderr_fd = so[1].o.sink ? pipes[1][1] : -1;
    rc = orch_spawn(&o, &pid);
  }
  for (int i = 0; i < 2; i++)
    if (pipes[i][1] >= 0) close(pipes[i][1]);
  if (rc < 0) {
    for (int i = 0; i < 2; i++)
      if (pipes[i][0] >= 0) close(pipes[i][0]);
    return push_fail(L, rc);
  }

  lproc_t *u = lua_newuserdata(L, sizeof *u);
  memset(u, 0, sizeof *u);
  u->L = L;
  u->pid = pid;
  u->cb_ref = LUA_NOREF;
  luaL_getmetatable(L, PROC_MT);
  lua_setmetatable(L, -2);
  for (int i = 0; i < 2; i++) {
    if (pipes[i][0] < 0) continue;
    /* On failure the read end is closed: the child gets EPIPE, not a hang. */
    orch_outpipe_start(orch_runtime_loop(L), pipes[i][0], &so[i].o, &u->out[i]);
  }
  rc = orch_proc_watch(orch_runtime_loop(L), pid, on_exit_cb, u, &u->p);
  if (rc < 0) {
    /* Without a watcher the exit would go unnoticed: refuse the process. */
    kill(-pid, SIGKILL);
    close_outpipes(u);
    return push_fail(L, rc);
  }
  lua_pushvalue(L, cb_idx);
  u->cb_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pushvalue(L, -1);
  u->self_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  return 1;
}

static lproc_t *check_proc(lua_State *L) {
  return luaL_checkudata(L, 1, PROC_MT);
}

static int l_proc_pid(lua_State *L) {
  lua_pushinteger(L, check_proc(L)->pid);
  return 1;
}

static int l_proc_exited(lua_State *L) {
  lua_pushboolean(L, check_proc(L)->exited);
  return 1;
}

/* Signals the process only, through its pidfd. */
static int l_proc_signal(lua_State *L) {
  lproc_t *u = check_proc(L);
  int sig = check_signal(L, 2);
  int rc = u->p ? orch_proc_signal(u->p, sig) : -ESRCH;
  if (rc < 0) return push_fail(L, rc);
  lua_pushboolean(L, 1);
  return 1;
}

static int l_proc_gc(lua_State *L) {
  lproc_t *u = check_proc(L);
  /* Only reached with the process still watched when the state closes. */
  if (u->p) {
    close_outpipes(u);
    orch_proc_release(u->p);
    u->p = NULL;
  }
  return 0;
}

/* ---- plain functions ---- */

static int l_kill(lua_State *L) {
  pid_t pid = (pid_t)luaL_checkinteger(L, 1);
  int sig = lua_isnoneornil(L, 2)                                ? SIGTERM
            : lua_type(L, 2) == LUA_TNUMBER && lua_tointeger(L, 2) == 0 ? 0
                                                                       : check_signal(L, 2);
  if (pid == 0 || pid == -1) return luaL_argerror(L, 1, "refusing pid 0/-1");
  if (kill(pid, sig) < 0) return push_fail(L, -errno);
  lua_pushboolean(L, 1);
  return 1;
}

static int l_getpgid(lua_State *L) {
  pid_t g = getpgid((pid_t)luaL_checkinteger(L, 1));
  if (g < 0) return push_fail(L, -errno);
  lua_pushinteger(L, g);
  return 1;
}

/* pgroup_alive(pgid) -> true | false | false, "EPERM" (members that may not
 * be signalled, and nothing else) */
static int l_pgroup_alive(lua_State *L) {
  int r = orch_pgroup_alive((pid_t)luaL_checkinteger(L, 1));
  lua_pushboolean(L, r > 0);
  if (r >= 0) return 1;
  lua_pushstring(L, uv_err_name(r));
  return 2;
}

static int l_descendants(lua_State *L) {
  pid_t kids[4096];
  int n = orch_proc_descendants((pid_t)luaL_checkinteger(L, 1), kids, 4096);
  if (n < 0) n = 0; /* a process that is gone has no descendants */
  lua_createtable(L, n, 0);
  for (int i = 0; i < n; i++) {
    lua_pushinteger(L, kids[i]);
    lua_rawseti(L, -2, i + 1);
  }
  return 1;
}

static int reap_ref = LUA_NOREF;
static lua_State *reap_L;

static void on_reaped(void *data) {
  (void)data;
  lua_State *L = reap_L;
  if (reap_ref == LUA_NOREF) return;
  lua_rawgeti(L, LUA_REGISTRYINDEX, reap_ref);
  int n = orch_runtime_pcall(L, 0, 0, 0);
  if (n > 0) lua_pop(L, n);
}

static int l_reaper_start(lua_State *L) {
  if (!lua_isnoneornil(L, 1)) luaL_checktype(L, 1, LUA_TFUNCTION);
  luaL_unref(L, LUA_REGISTRYINDEX, reap_ref);
  reap_ref = LUA_NOREF;
  if (!lua_isnoneornil(L, 1)) {
    lua_pushvalue(L, 1);
    reap_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  reap_L = L;
  int rc = orch_reaper_start(orch_runtime_loop(L), on_reaped, NULL);
  if (rc < 0) return push_fail(L, rc);
  lua_pushboolean(L, 1);
  return 1;
}

static int l_getpid(lua_State *L) {
  lua_pushinteger(L, getpid());
  return 1;
}

static int l_exe_path(lua_State *L) {
  char buf[4096];
  ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n < 0) return push_fail(L, -errno);
  lua_pushlstring(L, buf, (size_t)n);
  return 1;
}

extern char **environ;

/* orch's environment as a table: the base of every child's, in `orch run`. */
static int l_environ(lua_State *L) {
  lua_newtable(L);
  for (char **e = environ; *e; e++) {
    const char *eq = strchr(*e, '=');
    if (!eq || eq == *e) continue;
    lua_pushlstring(L, *e, (size_t)(eq - *e));
    lua_pushstring(L, eq + 1);
    lua_rawset(L, -3);
  }
  return 1;
}

/* A connected AF_UNIX stream pair, both ends close-on-exec: the IPC channel
 * of a managed process (the child's end becomes its fd 3 through spawn's
 * `fds`, which clears close-on-exec there). */
static int l_socketpair(lua_State *L) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) return push_fail(L, -errno);
  lua_pushinteger(L, sv[0]);
  lua_pushinteger(L, sv[1]);
  return 2;
}

static int l_close(lua_State *L) {
  if (close((int)luaL_checkinteger(L, 1)) < 0) return push_fail(L, -errno);
  lua_pushboolean(L, 1);
  return 1;
}

/* A second descriptor for a socket that a luv handle will own (and close)
 * while orch keeps the first. */
static int l_dup(lua_State *L) {
  int fd = fcntl((int)luaL_checkinteger(L, 1), F_DUPFD_CLOEXEC, 3);
  if (fd < 0) return push_fail(L, -errno);
  lua_pushinteger(L, fd);
  return 1;
}

static int l_isatty(lua_State *L) {
  lua_pushboolean(L, isatty((int)luaL_checkinteger(L, 1)));
  return 1;
}

/* core.echo(fd, text): text (whole lines) to orch run's terminal through
 * the echo's writer (core/echo.c), never blocking; dropped, counted, when the
 * reader is behind. false if fd has no writer (then nothing was written). */
static int l_echo(lua_State *L) {
  int fd = (int)luaL_checkinteger(L, 1);
  size_t n;
  const char *s = luaL_checklstring(L, 2, &n);
  orch_echo_t *e = fd >= 0 ? orch_echo_get(fd) : NULL;
  if (e) orch_echo_line(e, s, n, NULL, 0, NULL, 0, NULL, 0);
  lua_pushboolean(L, e != NULL);
  return 1;
}

/* core.echo_stats(): { lines =, bytes = } not echoed (readers behind). */
static int l_echo_stats(lua_State *L) {
  orch_echo_stats_t st;
  orch_echo_stats(&st);
  lua_createtable(L, 0, 2);
  lua_pushnumber(L, (lua_Number)st.lines);
  lua_setfield(L, -2, "lines");
  lua_pushnumber(L, (lua_Number)st.bytes);
  lua_setfield(L, -2, "bytes");
  return 1;
}

/* Where errors of protected callbacks go (default: stderr). */
/* heap_limit(on): caps the Lua heap while user code runs (orch.hook). */
static int l_heap_limit(lua_State *L) {
  lua_pushboolean(L, orch_heap_limit(L, lua_toboolean(L, 1)) == 0);
  return 1;
}

/* heap(): bytes the Lua state holds, and the cap in force (0: none). */
static int l_heap(lua_State *L) {
  size_t used = 0, limit = 0;
  if (orch_heap_stats(L, &used, &limit) < 0) return 0;
  lua_pushnumber(L, (lua_Number)used);
  lua_pushnumber(L, (lua_Number)limit);
  return 2;
}

static int l_on_error(lua_State *L) {
  if (!lua_isnil(L, 1)) luaL_checktype(L, 1, LUA_TFUNCTION);
  lua_pushvalue(L, 1);
  lua_setfield(L, LUA_REGISTRYINDEX, "orch.on_error");
  return 0;
}

static const luaL_Reg proc_methods[] = {{"pid", l_proc_pid},
                                        {"exited", l_proc_exited},
                                        {"signal", l_proc_signal},
                                        {NULL, NULL}};

static const luaL_Reg sink_methods[] = {{"write", l_sink_write},
                                        {"path", l_sink_path},
                                        {"stats", l_sink_stats},
                                        {"rotation", l_sink_rotation},
                                        {"reopen", l_sink_reopen},
                                        {"truncate", l_sink_truncate},
                                        {"own_stdio", l_sink_own_stdio},
                                        {"close", l_sink_close},
                                        {NULL, NULL}};

static const luaL_Reg core_funcs[] = {{"spawn", l_spawn},
                                      {"sink_open", l_sink_open},
                                      {"remove_rotated", l_remove_rotated},
                                      {"truncate_log", l_truncate_log},
                                      {"kill", l_kill},
                                      {"pgroup_alive", l_pgroup_alive},
                                      {"getpgid", l_getpgid},
                                      {"descendants", l_descendants},
                                      {"signum", l_signum},
                                      {"signame", l_signame},
                                      {"reaper_start", l_reaper_start},
                                      {"getpid", l_getpid},
                                      {"exe_path", l_exe_path},
                                      {"isatty", l_isatty},
                                      {"environ", l_environ},
                                      {"socketpair", l_socketpair},
                                      {"close", l_close},
                                      {"dup", l_dup},
                                      {"on_error", l_on_error},
                                      {"echo", l_echo},
                                      {"echo_stats", l_echo_stats},
                                      {"heap_limit", l_heap_limit},
                                      {"heap", l_heap},
                                      {NULL, NULL}};

static void new_class(lua_State *L, const char *name, const luaL_Reg *methods,
                      lua_CFunction gc) {
  luaL_newmetatable(L, name);
  lua_newtable(L);
  luaL_register(L, NULL, methods);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, gc);
  lua_setfield(L, -2, "__gc");
  lua_pop(L, 1);
}

int luaopen_orch_core(lua_State *L) {
  new_class(L, PROC_MT, proc_methods, l_proc_gc);
  new_class(L, SINK_MT, sink_methods, l_sink_close);
  lua_newtable(L);
  luaL_register(L, NULL, core_funcs);
  orch_ctl_lua_register(L);
  orch_stats_lua_register(L);
  orch_daemon_lua_register(L);
  orch_listen_lua_register(L);
  orch_notify_lua_register(L);
  orch_fds_lua_register(L);
  orch_durable_lua_register(L);
  orch_pidfd_lua_register(L);
  orch_marker_lua_register(L);
  return 1;
}
