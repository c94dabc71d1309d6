/* pidfd.c: process handles that cannot hit a recycled pid: for processes
 * that are not our children (what a crashed daemon left) and for the
 * snapshot of a tree being stopped. A pidfd names one process for as long as
 * it is open; signals go through it and its exit is polled on the loop. */
#include "orch/pidfd.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <unistd.h>

#include "orch/binding.h"
#include "orch/cgroup.h"
#include "orch/marker.h"
#include "orch/orphans.h"
#include "orch/proc.h"
#include "orch/runtime.h"
#include "orch/stats.h"

enum { F_PPID = 4, F_PGRP = 5 };

int orch_pgroup_members(pid_t pgid, pid_t *out, int cap) {
  DIR *d = opendir("/proc");
  if (!d) return -errno;
  int n = 0;
  static const int which[] = {F_PGRP};
  struct dirent *e;
  while ((e = readdir(d)) && n < cap) {
    char *end;
    long pid = strtol(e->d_name, &end, 10);
    if (*end || pid <= 0) continue;
    uint64_t g;
    if (orch_proc_stat_fields((pid_t)pid, which, 1, &g) == 0 && (pid_t)g == pgid)
      out[n++] = (pid_t)pid;
  }
  closedir(d);
  return n;
}

int orch_pidfd_exited(int fd) {
  struct pollfd p = {.fd = fd, .events = POLLIN};
  int n;
  do n = poll(&p, 1, 0);
  while (n < 0 && errno == EINTR);
  return n > 0;
}

/* Whether pid, whose pidfd is open (so it is the process the checks see),
 * still belongs where the scan found it: in group pgid, the child of a
 * process already taken, or carrying mark. Any other process has taken a
 * recycled pid. */
static int belongs(pid_t pid, pid_t pgid, const char *mark, const pid_t *taken, int n) {
  static const int which[] = {F_PPID, F_PGRP};
  uint64_t v[2];
  if (orch_proc_stat_fields(pid, which, 2, v) < 0) return 0;
  if (pgid > 0 && (pid_t)v[1] == pgid) return 1;
  for (int i = 0; i < n; i++)
    if (taken[i] == (pid_t)v[0]) return 1;
  return mark && orch_marker_is(pid, mark) == 1;
}

/* Appends orch's orphans (orch.orphans: its children nobody watches) in
 * group pgid or carrying mark (NULL: none) but root (whose descendants are
 * there already), then their descendants (parents before children). Returns
 * the new count. */
static int own_group_children(pid_t root, pid_t pgid, const char *mark, pid_t *found, int n, int cap) {
  const orch_orphans_t *o = orch_orphans_now();
  if (!o) return n;
  int first = n;
  for (int i = 0; i < o->n && n < cap; i++) {
    pid_t kid = o->pid[i];
    if (kid == root) continue;
    /* A daemonised descendant left the group: its environment still says
     * whose it is (one small read per orphan of orch's, not per app). */
    if (o->pgrp[i] != pgid && !(mark && orch_marker_is(kid, mark) == 1)) continue;
    found[n++] = kid;
  }
  /* then the descendants of those kept */
  int kept = n;
  for (int i = first; i < kept && n < cap; i++) {
    int d = orch_proc_descendants(found[i], found + n, cap - n);
    if (d > 0) n += d;
  }
  return n;
}

/* Appends pidfds for the members of cgroup dir that out[0..n) lacks, each
 * still listed there once held. Returns the new count. */
static int cgroup_members(const char *dir, pid_t root, orch_pidfd_entry_t *out, int n, int cap,
                          pid_t *pids, int max) {
  int m = orch_cgroup_pids(dir, pids, max);
  int first = n;
  for (int i = 0; i < m && n < cap; i++) {
    int dup = pids[i] == root;
    for (int j = 0; j < n && !dup; j++) dup = out[j].pid == pids[i];
    if (dup) continue;
    int fd = pidfd_open(pids[i], 0);
    if (fd < 0) continue; /* gone already */
    out[n].pid = pids[i];
    out[n].fd = fd;
    n++;
  }
  if (n == first) return n;
  /* listed again once held: the pidfds name processes of this cgroup */
  m = orch_cgroup_pids(dir, pids, max);
  int kept = first;
  for (int i = first; i < n; i++) {
    int listed = 0;
    for (int j = 0; j < m && !listed; j++) listed = pids[j] == out[i].pid;
    if (listed) out[kept++] = out[i];
    else close(out[i].fd);
  }
  return kept;
}

int orch_pidfd_snapshot(pid_t root, pid_t pgid, int whole_system,
                        const orch_pidfd_scope_t *scope,
                        orch_pidfd_entry_t *out, int cap) {
  enum { MAX = 4096 };
  const char *mark = scope ? scope->mark : NULL;
  pid_t *found = malloc(2 * MAX * sizeof *found);
  if (!found) return -ENOMEM;
  pid_t *taken = found + MAX; /* root first, then what passed the checks */
  int nt = 0, nf = 0, n = 0;
  if (root > 0) {
    taken[nt++] = root;
    int m = orch_proc_descendants(root, found, MAX);
    if (m > 0) nf = m; /* breadth first: parents before their children */
  }
  if (pgid > 0 && whole_system) {
    int m = orch_pgroup_members(pgid, found + nf, MAX - nf);
    if (m > 0) nf += m;
  } else if (pgid > 0 || mark) {
    nf = own_group_children(root, pgid, mark, found, nf, MAX);
  }
  for (int i = 0; i < nf && n < cap; i++) {
    pid_t pid = found[i];
    int dup = pid == root;
    for (int j = 0; j < n && !dup; j++) dup = out[j].pid == pid;
    if (dup) continue;
    int fd = pidfd_open(pid, 0);
    if (fd < 0) continue; /* gone already */
    if (!belongs(pid, pgid, mark, taken, nt)) {
      close(fd);
      continue;
    }
    if (nt < MAX) taken[nt++] = pid;
    out[n].pid = pid;
    out[n].fd = fd;
    n++;
  }
  if (scope && scope->cgroup) n = cgroup_members(scope->cgroup, root, out, n, cap, found, MAX);
  free(found);
  return n;
}

/* ---- Lua: core.pidfd(pid [, starttime]), core.pidfd_snapshot(root, pgid) ---- */

#define PIDFD_MT "orch.pidfd"

typedef struct {
  uv_poll_t poll; /* first: callbacks find the struct by cast; data stays NULL */
  pid_t pid;
  int fd;
  int exited;
  int polling; /* poll handle initialised: closing goes through libuv */
  lua_State *L;
  int cb_ref, self_ref;
} pidw_t;

typedef struct {
  pidw_t *w; /* NULL once closed */
} lpidfd_t;

static void on_poll_closed(uv_handle_t *h) {
  pidw_t *w = (pidw_t *)h;
  close(w->fd);
  free(w);
}

static void pidw_close(lua_State *L, pidw_t *w) {
  luaL_unref(L, LUA_REGISTRYINDEX, w->cb_ref);
  luaL_unref(L, LUA_REGISTRYINDEX, w->self_ref);
  w->cb_ref = w->self_ref = LUA_NOREF;
  if (w->polling) {
    uv_close((uv_handle_t *)&w->poll, on_poll_closed);
  } else {
    close(w->fd);
    free(w);
  }
}

void orch_pidfd_push(lua_State *L, pid_t pid, int fd) {
  lpidfd_t *u = lua_newuserdata(L, sizeof *u);
  u->w = NULL;
  luaL_getmetatable(L, PIDFD_MT);
  lua_setmetatable(L, -2);
  pidw_t *w = calloc(1, sizeof *w);
  if (!w) {
    close(fd);
    luaL_error(L, "out of memory");
  }
  w->pid = pid;
  w->fd = fd;
  w->L = L;
  w->cb_ref = w->self_ref = LUA_NOREF;
  u->w = w;
}

static pidw_t *check_pidfd(lua_State *L) {
  lpidfd_t *u = luaL_checkudata(L, 1, PIDFD_MT);
  if (!u->w) luaL_argerror(L, 1, "pidfd is closed");
  return u->w;
}

static int l_pidfd(lua_State *L) {
  pid_t pid = (pid_t)luaL_checkinteger(L, 1);
  if (pid <= 0) return luaL_argerror(L, 1, "pid > 0 expected");
  int fd = pidfd_open(pid, 0);
  if (fd < 0) return orch_lua_fail(L, -errno);
  if (!lua_isnoneornil(L, 2)) {
    /* checked once the pidfd holds the process: the start time then belongs
     * to the very process the pidfd names */
    uint64_t t;
    if (orch_proc_starttime(pid, &t) < 0 || (lua_Number)t != luaL_checknumber(L, 2)) {
      close(fd);
      return orch_lua_fail(L, -ESRCH);
    }
  }
  orch_pidfd_push(L, pid, fd);
  return 1;
}

/* core.pidfd_snapshot(root, pgid [, "system" [, scope]]): a list of pidfds
 * for root's descendants and pgid's members (root itself excepted), each
 * checked to be where the scan found it once held. Members are looked for
 * among our children (and below them), or with "system" in all of /proc.
 * scope: { mark = ORCH_MARK value, cgroup = directory } (orch.tree), what
 * else belongs to the tree. */
static int l_pidfd_snapshot(lua_State *L) {
  pid_t root = (pid_t)luaL_optinteger(L, 1, 0);
  pid_t pgid = (pid_t)luaL_optinteger(L, 2, 0);
  const char *where = luaL_optstring(L, 3, "children");
  int whole = strcmp(where, "system") == 0;
  if (!whole && strcmp(where, "children") != 0)
    return luaL_argerror(L, 3, "\"children\" or \"system\" expected");
  orch_pidfd_scope_t scope = {NULL, NULL};
  if (!lua_isnoneornil(L, 4)) {
    luaL_checktype(L, 4, LUA_TTABLE);
    lua_getfield(L, 4, "mark");
    scope.mark = lua_tostring(L, -1); /* the table keeps the strings alive */
    lua_getfield(L, 4, "cgroup");
    scope.cgroup = lua_tostring(L, -1);
    lua_pop(L, 2);
  }
  int rc = orch_orphans_attach(orch_runtime_loop(L));
  if (rc < 0) return orch_lua_fail(L, rc);
  enum { CAP = 4096 };
  orch_pidfd_entry_t *e = malloc(CAP * sizeof *e);
  if (!e) return luaL_error(L, "out of memory");
  int n = orch_pidfd_snapshot(root, pgid, whole, &scope, e, CAP);
  if (n < 0) {
    free(e);
    return orch_lua_fail(L, n);
  }
  lua_createtable(L, n, 0);
  for (int i = 0; i < n; i++) {
    orch_pidfd_push(L, e[i].pid, e[i].fd);
    e[i].fd = -1;
    lua_rawseti(L, -2, i + 1);
  }
  free(e);
  return 1;
}

static int l_pid(lua_State *L) {
  lua_pushinteger(L, check_pidfd(L)->pid);
  return 1;
}

static int l_exited(lua_State *L) {
  pidw_t *w = check_pidfd(L);
  if (!w->exited) w->exited = orch_pidfd_exited(w->fd);
  lua_pushboolean(L, w->exited);
  return 1;
}

/* h:signal(signum): true, or nil, "ESRCH: ...", "ESRCH" once it has exited. */
static int l_signal(lua_State *L) {
  pidw_t *w = check_pidfd(L);
  int sig = (int)luaL_checkinteger(L, 2);
  if (sig <= 0 || sig >= NSIG) return luaL_argerror(L, 2, "signal number expected");
  return orch_lua_ok(L, pidfd_send_signal(w->fd, sig, NULL, 0) < 0 ? -errno : 0);
}

/* The process group of the process, or nil once it has exited. */
static int l_pgid(lua_State *L) {
  pidw_t *w = check_pidfd(L);
  static const int which[] = {F_PGRP};
  uint64_t g;
  /* read, then made sure the pid was still ours while it was read */
  if (orch_proc_stat_fields(w->pid, which, 1, &g) < 0 || orch_pidfd_exited(w->fd)) return 0;
  lua_pushinteger(L, (lua_Integer)g);
  return 1;
}

static void on_poll(uv_poll_t *h, int status, int events) {
  (void)status;
  (void)events;
  pidw_t *w = (pidw_t *)h;
  lua_State *L = w->L;
  w->exited = 1;
  uv_poll_stop(h);
  int cb = w->cb_ref, self = w->self_ref;
  w->cb_ref = w->self_ref = LUA_NOREF;
  lua_rawgeti(L, LUA_REGISTRYINDEX, cb);
  luaL_unref(L, LUA_REGISTRYINDEX, cb);
  if (lua_isfunction(L, -1)) {
    int n = orch_runtime_pcall(L, 0, 0, 0);
    if (n > 0) lua_pop(L, n);
  } else {
    lua_pop(L, 1);
  }
  luaL_unref(L, LUA_REGISTRYINDEX, self); /* may let the handle be collected */
}

/* h:on_exit(fn): fn() once, on the loop, when the process has exited (at
 * once if it already has). The handle stays alive until then. */
static int l_on_exit(lua_State *L) {
  pidw_t *w = check_pidfd(L);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  if (w->cb_ref != LUA_NOREF) return luaL_argerror(L, 1, "already watched");
  if (!w->polling) {
    int rc = uv_poll_init(orch_runtime_loop(L), &w->poll, w->fd);
    if (rc < 0) return orch_lua_fail(L, rc);
    w->polling = 1;
  }
  int rc = uv_poll_start(&w->poll, UV_READABLE, on_poll);
  if (rc < 0) return orch_lua_fail(L, rc);
  lua_pushvalue(L, 2);
  w->cb_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pushvalue(L, 1);
  w->self_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pushboolean(L, 1);
  return 1;
}

static int l_close(lua_State *L) {
  lpidfd_t *u = luaL_checkudata(L, 1, PIDFD_MT);
  if (u->w) pidw_close(L, u->w);
  u->w = NULL;
  return 0;
}

static const luaL_Reg methods[] = {{"pid", l_pid},         {"exited", l_exited},
                                   {"signal", l_signal},   {"pgid", l_pgid},
                                   {"on_exit", l_on_exit}, {"close", l_close},
                                   {NULL, NULL}};

static const luaL_Reg funcs[] = {
    {"pidfd", l_pidfd}, {"pidfd_snapshot", l_pidfd_snapshot}, {NULL, NULL}};

void orch_pidfd_lua_register(lua_State *L) {
  orch_lua_class(L, PIDFD_MT, methods, l_close);
  luaL_register(L, NULL, funcs);
}
