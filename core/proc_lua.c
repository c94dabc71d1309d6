/* proc_lua.c: orch.core's processes: spawn (a child whose stdout and stderr
 * go to sinks through outpipes), the proc class (pid, signal, and
 * the on_exit callback), and reaper_start. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "orch/binding.h"
#include "orch/cgroup.h"
#include "orch/fdobj.h"
#include "orch/orphans.h"
#include "orch/proc.h"
#include "orch/runtime.h"
#include "orch/outpipe.h"

#define PROC_MT "orch.proc"

typedef struct {
  lua_State *L;
  orch_proc_t *p;
  orch_outpipe_t *out[2];
  pid_t pid;
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
    const char *name = sig ? orch_signal_name(sig) : NULL;
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

/* spawn's `fds`: fd objects (or numbers, for what orch did not hand out). */
static int fd_list(lua_State *L, int idx, int *out, int cap) {
  int n = (int)lua_objlen(L, idx);
  if (n > cap) luaL_error(L, "fds: at most %d", cap);
  for (int i = 0; i < n; i++) {
    lua_rawgeti(L, idx, i + 1);
    out[i] = orch_fdobj_to(L, -1);
    if (out[i] == -EBADF) luaL_error(L, "fds[%d]: descriptor already closed or released", i + 1);
    if (out[i] < 0) luaL_error(L, "fds[%d]: descriptor (" ORCH_FDOBJ_MT " or number) expected", i + 1);
    lua_pop(L, 1); /* an fd object stays alive in the table */
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
    so->o.sink = orch_lua_check_sink(L, lua_gettop(L));
    lua_getfield(L, t, "combined");
    if (!lua_isnil(L, -1)) so->o.combined = orch_lua_check_sink(L, lua_gettop(L));
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

/* setrlimit's resources by the names of systemd's Limit*= settings. */
static const struct {
  const char *name;
  int resource;
} limit_names[] = {
    {"as", RLIMIT_AS},           {"core", RLIMIT_CORE},     {"cpu", RLIMIT_CPU},
    {"data", RLIMIT_DATA},       {"fsize", RLIMIT_FSIZE},   {"locks", RLIMIT_LOCKS},
    {"memlock", RLIMIT_MEMLOCK}, {"msgqueue", RLIMIT_MSGQUEUE}, {"nice", RLIMIT_NICE},
    {"nofile", RLIMIT_NOFILE},   {"nproc", RLIMIT_NPROC},   {"rss", RLIMIT_RSS},
    {"rtprio", RLIMIT_RTPRIO},   {"rttime", RLIMIT_RTTIME}, {"sigpending", RLIMIT_SIGPENDING},
    {"stack", RLIMIT_STACK}};

#define MAX_LIMITS ((int)(sizeof limit_names / sizeof limit_names[0]))

/* A limit's soft or hard value: a number, or "infinity". */
static rlim_t limit_value(lua_State *L, int t, const char *key, const char *name) {
  lua_getfield(L, t, key);
  rlim_t v = RLIM_INFINITY;
  if (lua_type(L, -1) == LUA_TNUMBER && lua_tonumber(L, -1) >= 0) v = (rlim_t)lua_tonumber(L, -1);
  else if (!(lua_type(L, -1) == LUA_TSTRING && strcmp(lua_tostring(L, -1), "infinity") == 0))
    luaL_error(L, "limits.%s.%s: a non-negative number or \"infinity\" expected", name, key);
  lua_pop(L, 1);
  return v;
}

/* limits = { { name = "nofile", soft = N|"infinity", hard = ... }, ... } */
static int spawn_limits(lua_State *L, int opts, orch_spawn_limit_t *out) {
  lua_getfield(L, opts, "limits");
  int t = lua_gettop(L), n = 0;
  if (lua_istable(L, t)) {
    n = (int)lua_objlen(L, t);
    if (n > MAX_LIMITS) luaL_error(L, "limits: at most %d", MAX_LIMITS);
    for (int i = 0; i < n; i++) {
      lua_rawgeti(L, t, i + 1);
      int e = lua_gettop(L);
      if (!lua_istable(L, e)) luaL_error(L, "limits[%d]: table expected", i + 1);
      const char *name = opt_string(L, e, "name", "limits");
      int k = 0;
      while (k < MAX_LIMITS && !(name && strcmp(name, limit_names[k].name) == 0)) k++;
      if (k == MAX_LIMITS) luaL_error(L, "limits[%d]: unknown limit %s", i + 1, name ? name : "(no name)");
      out[i].resource = limit_names[k].resource;
      out[i].soft = limit_value(L, e, "soft", name);
      out[i].hard = limit_value(L, e, "hard", name);
      lua_pop(L, 1);
    }
  } else if (!lua_isnil(L, t)) {
    luaL_error(L, "limits: table expected");
  }
  lua_pop(L, 1);
  return n;
}

/* An optional integer field: sets *set and *v when present. */
static void opt_int(lua_State *L, int opts, const char *key, int *set, long *v) {
  lua_getfield(L, opts, key);
  if (!lua_isnil(L, -1)) {
    *set = 1;
    *v = (long)luaL_checkinteger(L, -1);
  }
  lua_pop(L, 1);
}

/* uid, gid, groups (a list of gids), umask, nice, oom_score_adj, limits:
 * what orch.runas resolved in the parent (a name lookup is not safe
 * between vfork and exec). The arrays live in userdata left on the stack. */
static void spawn_credentials(lua_State *L, int opts, orch_spawn_opts_t *o) {
  long v = 0;
  opt_int(L, opts, "uid", &o->set_uid, &v);
  o->uid = (uid_t)v;
  opt_int(L, opts, "gid", &o->set_gid, &v);
  o->gid = (gid_t)v;
  opt_int(L, opts, "umask", &o->set_umask, &v);
  o->umask = (mode_t)v;
  opt_int(L, opts, "nice", &o->set_nice, &v);
  o->nice = (int)v;
  opt_int(L, opts, "oom_score_adj", &o->set_oom_score_adj, &v);
  o->oom_score_adj = (int)v;
  lua_getfield(L, opts, "groups");
  if (lua_istable(L, -1)) {
    int t = lua_gettop(L), n = (int)lua_objlen(L, t);
    gid_t *g = lua_newuserdata(L, (size_t)(n ? n : 1) * sizeof *g);
    for (int i = 0; i < n; i++) {
      lua_rawgeti(L, t, i + 1);
      g[i] = (gid_t)luaL_checkinteger(L, -1);
      lua_pop(L, 1);
    }
    o->set_groups = 1, o->groups = g, o->n_groups = n;
    lua_insert(L, t); /* the userdata stays below the table */
  } else if (!lua_isnil(L, -1)) {
    luaL_error(L, "groups: table expected");
  }
  lua_pop(L, 1);
  orch_spawn_limit_t *limits = lua_newuserdata(L, MAX_LIMITS * sizeof *limits);
  o->n_limits = spawn_limits(L, opts, limits);
  o->limits = limits;
}

/* nil, "EPERM: cannot set limits.nofile (soft 1024, hard 1048577):
 * Operation not permitted", "EPERM", "limits.nofile": a setup step of the
 * child failed; its 4th value names the option. */
static int step_fail(lua_State *L, int opts, const orch_spawn_opts_t *o, int step, int err) {
  lua_pushnil(L);
  const char *code = uv_err_name(err), *why = uv_strerror(err);
  char what[64];
  switch (step) {
  case ORCH_SPAWN_STEP_OOM_SCORE_ADJ:
    lua_pushfstring(L, "%s: cannot set oom_score_adj %d: %s", code, o->oom_score_adj, why);
    snprintf(what, sizeof what, "oom_score_adj");
    break;
  case ORCH_SPAWN_STEP_NICE:
    lua_pushfstring(L, "%s: cannot set nice %d: %s", code, o->nice, why);
    snprintf(what, sizeof what, "nice");
    break;
  case ORCH_SPAWN_STEP_GROUPS:
    lua_pushfstring(L, "%s: cannot set the supplementary groups: %s", code, why);
    snprintf(what, sizeof what, "uid");
    break;
  case ORCH_SPAWN_STEP_GID:
    lua_pushfstring(L, "%s: cannot switch to gid %d: %s", code, (int)o->gid, why);
    snprintf(what, sizeof what, "gid");
    break;
  case ORCH_SPAWN_STEP_CWD:
    lua_getfield(L, opts, "cwd");
    lua_pushfstring(L, "%s: cannot enter cwd %s: %s", code, lua_tostring(L, -1), why);
    lua_remove(L, -2);
    snprintf(what, sizeof what, "cwd");
    break;
  case ORCH_SPAWN_STEP_UID:
    lua_pushfstring(L, "%s: cannot switch to uid %d: %s", code, (int)o->uid, why);
    snprintf(what, sizeof what, "uid");
    break;
  default: {
    int i = step - ORCH_SPAWN_STEP_LIMIT;
    if (i < 0 || i >= o->n_limits) return orch_lua_fail(L, err);
    lua_getfield(L, opts, "limits");
    lua_rawgeti(L, -1, i + 1);
    lua_getfield(L, -1, "name");
    snprintf(what, sizeof what, "limits.%s", lua_tostring(L, -1));
    lua_pop(L, 3);
    char soft[24] = "infinity", hard[24] = "infinity";
    if (o->limits[i].soft != RLIM_INFINITY) snprintf(soft, sizeof soft, "%llu", (unsigned long long)o->limits[i].soft);
    if (o->limits[i].hard != RLIM_INFINITY) snprintf(hard, sizeof hard, "%llu", (unsigned long long)o->limits[i].hard);
    lua_pushfstring(L, "%s: cannot set %s (soft %s, hard %s): %s", code, what, soft, hard, why);
  }
  }
  lua_pushstring(L, code);
  lua_pushstring(L, what);
  return 4;
}

/* The proc object for pid (a child of ours, running), reading its streams
 * from fds[0] and fds[1] (-1: none; owned by the outpipes from here on,
 * closed on failure). Pushes it, or nil, message, code. */
static int push_proc(lua_State *L, pid_t pid, const int fds[2], stream_opt_t so[2], int cb_idx) {
  lproc_t *u = lua_newuserdata(L, sizeof *u);
  memset(u, 0, sizeof *u);
  u->L = L;
  u->pid = pid;
  u->cb_ref = LUA_NOREF;
  luaL_getmetatable(L, PROC_MT);
  lua_setmetatable(L, -2);
  for (int i = 0; i < 2; i++) {
    if (fds[i] < 0) continue;
    /* On failure the read end is closed: the child gets EPIPE, not a hang. */
    orch_outpipe_start(orch_runtime_loop(L), fds[i], &so[i].o, &u->out[i]);
  }
  int rc = orch_proc_watch(orch_runtime_loop(L), pid, on_exit_cb, u, &u->p);
  if (rc < 0) {
    /* Without a watcher the exit would go unnoticed: refuse the process. */
    kill(-pid, SIGKILL);
    close_outpipes(u);
    return orch_lua_fail(L, rc);
  }
  lua_pushvalue(L, cb_idx);
  u->cb_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pushvalue(L, -1);
  u->self_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  return 1;
}

static int l_spawn(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  orch_spawn_opts_t o;
  memset(&o, 0, sizeof o);
  lua_getfield(L, 1, "file");
  o.file = luaL_checkstring(L, -1);
  lua_getfield(L, 1, "argv");
  int arg_nul, env_nul;
  o.argv = orch_lua_string_list(L, lua_gettop(L), "argv", &arg_nul);
  lua_getfield(L, 1, "env");
  o.envp = orch_lua_string_list(L, lua_gettop(L), "env", &env_nul);
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
    o.n_extra_fds = fd_list(L, lua_gettop(L), extra, 64);
    o.extra_fds = extra;
  }
  spawn_credentials(L, 1, &o);
  int failed_step = 0;
  o.failed_step = &failed_step;
  stream_opt_t so[2];
  stream_opt(L, 1, "stdout", &so[0]);
  stream_opt(L, 1, "stderr", &so[1]);
  /* output: a descriptor for the child's stdout and stderr where no sink
   * is given (a health check's pipe); kept alive by the options table */
  lua_getfield(L, 1, "output");
  int output = lua_isnil(L, -1) ? -1 : orch_fdobj_to(L, -1);
  if (output < -1) luaL_error(L, "output: descriptor (" ORCH_FDOBJ_MT " or number) expected");
  lua_pop(L, 1);
  lua_getfield(L, 1, "on_exit");
  int cb_idx = lua_gettop(L);

  int pipes[2][2] = {{-1, -1}, {-1, -1}};
  int rc = 0;
  /* cgroup: the directory of the cgroup the child joins (orch.tree) */
  lua_getfield(L, 1, "cgroup");
  const char *cgroup = lua_tostring(L, -1); /* kept alive by the options table */
  lua_pop(L, 1);
  if (cgroup && (rc = orch_cgroup_open(cgroup)) > 0) {
    o.cgroup_fd = rc;
    rc = 0;
  }
  for (int i = 0; i < 2 && rc == 0; i++)
    if (so[i].o.sink && pipe2(pipes[i], O_CLOEXEC) < 0) rc = -errno;
  pid_t pid = 0;
  if (rc == 0) {
    o.stdout_fd = so[0].o.sink ? pipes[0][1] : output;
    o.stderr_fd = so[1].o.sink ? pipes[1][1] : output;
    rc = orch_spawn(&o, &pid);
  }
  for (int i = 0; i < 2; i++)
    if (pipes[i][1] >= 0) close(pipes[i][1]);
  if (o.cgroup_fd > 0) close(o.cgroup_fd);
  if (rc < 0) {
    for (int i = 0; i < 2; i++)
      if (pipes[i][0] >= 0) close(pipes[i][0]);
    if (failed_step) return step_fail(L, 1, &o, failed_step, rc);
    return orch_lua_fail(L, rc);
  }

  int reads[2] = {pipes[0][0], pipes[1][0]};
  return push_proc(L, pid, reads, so, cb_idx);
}

static lproc_t *check_proc(lua_State *L) {
  return luaL_checkudata(L, 1, PROC_MT);
}

/* adopt{ pid =, stdout_fd =, stderr_fd =, stdout =, stderr =, on_exit = }:
 * a process a previous image of this daemon spawned (orch update), still
 * our child, with its pipes' read ends handed over by number; the options
 * are spawn's. Returns a proc, or nil, message, code. */
static int l_adopt(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_getfield(L, 1, "pid");
  pid_t pid = (pid_t)luaL_checkinteger(L, -1);
  int fds[2];
  const char *keys[2] = {"stdout_fd", "stderr_fd"};
  for (int i = 0; i < 2; i++) {
    lua_getfield(L, 1, keys[i]);
    fds[i] = lua_isnil(L, -1) ? -1 : (int)luaL_checkinteger(L, -1);
    lua_pop(L, 1);
  }
  stream_opt_t so[2];
  stream_opt(L, 1, "stdout", &so[0]);
  stream_opt(L, 1, "stderr", &so[1]);
  for (int i = 0; i < 2; i++)
    if (fds[i] >= 0 && !so[i].o.sink) return luaL_argerror(L, 1, "a stream's descriptor without its sink");
  lua_getfield(L, 1, "on_exit");
  return push_proc(L, pid, fds, so, lua_gettop(L));
}

/* p:handover() -> stdout_fd, stderr_fd (nil: none) | nil, message, code:
 * see orch_outpipe_handover; EAGAIN while a log file refuses bytes. */
static int l_proc_handover(lua_State *L) {
  lproc_t *u = check_proc(L);
  int fds[2] = {-1, -1};
  for (int i = 0; i < 2; i++) {
    if (!u->out[i]) continue;
    fds[i] = orch_outpipe_handover(u->out[i]);
    if (fds[i] == -EAGAIN) {
      lua_pushnil(L);
      lua_pushliteral(L, "EAGAIN: a log file does not take bytes now (full disk or slow reader)");
      lua_pushliteral(L, "EAGAIN");
      return 3;
    }
  }
  for (int i = 0; i < 2; i++)
    if (fds[i] >= 0) lua_pushinteger(L, fds[i]);
    else lua_pushnil(L);
  return 2;
}

static int l_proc_pid(lua_State *L) {
  lua_pushinteger(L, check_proc(L)->pid);
  return 1;
}

/* Signals the process only, through its pidfd. */
static int l_proc_signal(lua_State *L) {
  lproc_t *u = check_proc(L);
  int sig = orch_lua_check_signal(L, 2);
  int rc = u->p ? orch_proc_signal(u->p, sig) : -ESRCH;
  return orch_lua_ok(L, rc);
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
  return orch_lua_ok(L, rc);
}

/* reaper_stats() -> { batches, scans, listed, reaped, callbacks,
 * child_listings, children_listed }: the reaper's counts (orch_reap_stats_t)
 * and orch.orphans' (the children listed for tree snapshots). */
static int l_reaper_stats(lua_State *L) {
  orch_reap_stats_t s = orch_reaper_stats();
  lua_createtable(L, 0, 5);
  lua_pushnumber(L, (lua_Number)s.batches);
  lua_setfield(L, -2, "batches");
  lua_pushnumber(L, (lua_Number)s.scans);
  lua_setfield(L, -2, "scans");
  lua_pushnumber(L, (lua_Number)s.listed);
  lua_setfield(L, -2, "listed");
  lua_pushnumber(L, (lua_Number)s.reaped);
  lua_setfield(L, -2, "reaped");
  lua_pushnumber(L, (lua_Number)s.callbacks);
  lua_setfield(L, -2, "callbacks");
  unsigned long listings, listed;
  orch_orphans_counts(&listings, &listed);
  lua_pushnumber(L, (lua_Number)listings);
  lua_setfield(L, -2, "child_listings");
  lua_pushnumber(L, (lua_Number)listed);
  lua_setfield(L, -2, "children_listed");
  return 1;
}

static const luaL_Reg proc_methods[] = {
    {"pid", l_proc_pid}, {"signal", l_proc_signal}, {"handover", l_proc_handover}, {NULL, NULL}};

static const luaL_Reg funcs[] = {
    {"spawn", l_spawn}, {"adopt", l_adopt}, {"reaper_start", l_reaper_start},
    {"reaper_stats", l_reaper_stats}, {NULL, NULL}};

void orch_proc_lua_register(lua_State *L) {
  orch_lua_class(L, PROC_MT, proc_methods, l_proc_gc);
  luaL_register(L, NULL, funcs);
}
