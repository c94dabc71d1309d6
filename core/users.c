/* users.c: orch.core's look-ups in the user and group databases (NSS:
 * /etc/passwd, /etc/group, or whatever nsswitch.conf says), for an app's
 * uid/gid (orch.runas). They run in the daemon, before fork: none of them
 * is safe between vfork and exec. A look-up may block for as long as a
 * network database (LDAP, sssd, NIS) takes to answer, so the daemon asks
 * with a callback: the look-up runs on a thread and the callback gets its
 * answer on the loop. Without one it answers at once (the CLI,
 * and specs). */
#include <errno.h>
#include <grp.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "orch/binding.h"
#include "orch/owners.h"
#include "orch/runtime.h"

/* The buffer the *_r functions fill: grown on ERANGE up to 1 MiB. */
#define LOOKUP_BUF_MAX (1 << 20)
#define GROUPS_MAX 65536

enum { Q_USER, Q_GROUP, Q_GROUPS };

/* One look-up: what is asked, and the answer copied out of the *_r
 * buffer (the thread pool's answer outlives it). */
typedef struct query_s {
  int kind;
  int numeric; /* by id (else by name) */
  unsigned id;
  char *name;
  gid_t gid; /* Q_GROUPS: the primary group */
  int rc;    /* 0, or the errno of the database (ENOENT...: not found) */
  int found;
  char *e_name, *e_home, *e_shell;
  unsigned e_id, e_gid;
  gid_t *groups;
  int ngroups;
  lua_State *L;
  int cb_ref;
  struct query_s *next;
} query_t;

static char *dup_or_empty(const char *s) { return strdup(s ? s : ""); }

static int fill_user(query_t *q, char *buf, size_t size) {
  struct passwd pw, *found = NULL;
  int rc = q->numeric ? getpwuid_r((uid_t)q->id, &pw, buf, size, &found)
                      : getpwnam_r(q->name, &pw, buf, size, &found);
  if (!found) return rc ? rc : ENOENT;
  q->e_name = dup_or_empty(pw.pw_name);
  q->e_home = strdup(pw.pw_dir && *pw.pw_dir ? pw.pw_dir : "/");
  q->e_shell = dup_or_empty(pw.pw_shell);
  q->e_id = pw.pw_uid;
  q->e_gid = pw.pw_gid;
  if (!q->e_name || !q->e_home || !q->e_shell) return ENOMEM;
  q->found = 1;
  return 0;
}

static int fill_group(query_t *q, char *buf, size_t size) {
  struct group gr, *found = NULL;
  int rc = q->numeric ? getgrgid_r((gid_t)q->id, &gr, buf, size, &found)
                      : getgrnam_r(q->name, &gr, buf, size, &found);
  if (!found) return rc ? rc : ENOENT;
  q->e_name = dup_or_empty(gr.gr_name);
  q->e_id = gr.gr_gid;
  if (!q->e_name) return ENOMEM;
  q->found = 1;
  return 0;
}

/* fill(q, buf, size) with a buffer grown while it says ERANGE. */
static int with_buffer(int (*fill)(query_t *, char *, size_t), query_t *q) {
  for (size_t size = 4096;; size *= 2) {
    char *buf = malloc(size);
    if (!buf) return ENOMEM;
    int rc = fill(q, buf, size);
    free(buf);
    if (rc != ERANGE || size >= LOOKUP_BUF_MAX) return rc;
  }
}

/* initgroups' list: the gids of name's groups, gid first. */
static int fill_groups(query_t *q) {
  int n = 64;
  for (;;) {
    gid_t *list = malloc((size_t)n * sizeof *list);
    if (!list) return ENOMEM;
    int want = n;
    if (getgrouplist(q->name, q->gid, list, &want) >= 0) {
      q->groups = list;
      q->ngroups = want;
      q->found = 1;
      return 0;
    }
    free(list);
    if (want <= n) want = n * 2; /* glibc sets it; be safe where it does not */
    if (want > GROUPS_MAX) return E2BIG;
    n = want;
  }
}

/* Runs anywhere: on the loop, or on a thread of the pool. */
static void run_query(query_t *q) {
  switch (q->kind) {
  case Q_USER: q->rc = with_buffer(fill_user, q); break;
  case Q_GROUP: q->rc = with_buffer(fill_group, q); break;
  default: q->rc = fill_groups(q); break;
  }
}

static void free_query(query_t *q) {
  free(q->name);
  free(q->e_name);
  free(q->e_home);
  free(q->e_shell);
  free(q->groups);
  free(q);
}

/* The answer: an entry ({ name, uid, gid, home, shell } for a user,
 * { name, gid } for a group, a list of gids), or nil, "no such user" (the
 * caller names it) when there is none, or nil, "EIO: ...", "EIO" when the
 * database failed. */
static int push_answer(lua_State *L, const query_t *q) {
  if (!q->found) {
    int e = q->rc;
    if (e == 0 || e == ENOENT || e == ESRCH || e == EBADF || e == EPERM) {
      lua_pushnil(L);
      lua_pushstring(L, q->kind == Q_GROUP ? "no such group" : "no such user");
      return 2;
    }
    return orch_lua_fail(L, -e);
  }
  if (q->kind == Q_GROUPS) {
    lua_createtable(L, q->ngroups, 0);
    for (int i = 0; i < q->ngroups; i++) {
      lua_pushnumber(L, q->groups[i]);
      lua_rawseti(L, -2, i + 1);
    }
    return 1;
  }
  lua_createtable(L, 0, 5);
  lua_pushstring(L, q->e_name);
  lua_setfield(L, -2, "name");
  lua_pushnumber(L, q->e_id);
  lua_setfield(L, -2, q->kind == Q_USER ? "uid" : "gid");
  if (q->kind == Q_USER) {
    lua_pushnumber(L, q->e_gid);
    lua_setfield(L, -2, "gid");
    lua_pushstring(L, q->e_home);
    lua_setfield(L, -2, "home");
    lua_pushstring(L, q->e_shell);
    lua_setfield(L, -2, "shell");
  }
  return 1;
}

/* ---- in the background ----
 * Each look-up runs on a detached thread of its own (orch.runas keeps at
 * most a few in flight), not on libuv's thread pool: a look-up that never
 * returns (a hung NIS) would hold a pool thread that log compression needs,
 * and libuv's exit joins its pool threads, so the daemon could never end.
 * Answers go back to the loop through an async handle. */

static pthread_mutex_t qlock = PTHREAD_MUTEX_INITIALIZER;
static query_t *done_list; /* under qlock */
static int started;        /* the async handle exists */
static int detached;       /* under qlock: the Lua state is gone */
static uv_async_t done_async;

static void *query_main(void *arg) {
  query_t *q = arg;
  sigset_t all;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, NULL); /* signals are the loop thread's */
  run_query(q);
  pthread_mutex_lock(&qlock);
  q->next = done_list;
  done_list = q;
  if (!detached) uv_async_send(&done_async);
  pthread_mutex_unlock(&qlock);
  return NULL;
}

static void on_done(uv_async_t *a) {
  (void)a;
  pthread_mutex_lock(&qlock);
  query_t *q = done_list;
  done_list = NULL;
  pthread_mutex_unlock(&qlock);
  while (q) {
    query_t *next = q->next;
    lua_State *L = q->L;
    lua_rawgeti(L, LUA_REGISTRYINDEX, q->cb_ref);
    luaL_unref(L, LUA_REGISTRYINDEX, q->cb_ref);
    int r = orch_runtime_pcall(L, push_answer(L, q), 0, 0);
    if (r > 0) lua_pop(L, r);
    free_query(q);
    q = next;
  }
}

/* At exit (owners.h): answers still to come are dropped. */
static void close_async(void) {
  pthread_mutex_lock(&qlock);
  detached = 1;
  pthread_mutex_unlock(&qlock);
  if (!uv_is_closing((uv_handle_t *)&done_async)) uv_close((uv_handle_t *)&done_async, NULL);
}

static int start_query(uv_loop_t *loop, query_t *q) {
  if (!started) {
    int rc = uv_async_init(loop, &done_async, on_done);
    if (rc < 0) return rc;
    uv_unref((uv_handle_t *)&done_async); /* a look-up does not keep orch alive */
    started = 1;
    static orch_owner_t owner = {"user look-ups", close_async, NULL, 0};
    orch_owner_add(&owner);
  }
  pthread_t t;
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  int rc = -pthread_create(&t, &attr, query_main, q);
  pthread_attr_destroy(&attr);
  return rc;
}

/* The answer now (no callback at cb), or true and cb(answer...) later. */
static int ask(lua_State *L, query_t *q, int cb) {
  if (lua_isnoneornil(L, cb)) {
    run_query(q);
    int n = push_answer(L, q);
    free_query(q);
    return n;
  }
  luaL_checktype(L, cb, LUA_TFUNCTION);
  q->L = L;
  lua_pushvalue(L, cb);
  q->cb_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  int rc = start_query(orch_runtime_loop(L), q);
  if (rc < 0) {
    luaL_unref(L, LUA_REGISTRYINDEX, q->cb_ref);
    free_query(q);
    return orch_lua_fail(L, rc);
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* A query for the name or id at 1: a number is an id, never a name of
 * digits ("1000" is a name, as getpwnam takes it; orch.runas passes
 * numbers as such). */
static query_t *new_query(lua_State *L, int kind) {
  unsigned id = 0;
  int numeric = lua_type(L, 1) == LUA_TNUMBER;
  if (numeric) {
    lua_Number n = lua_tonumber(L, 1);
    if (n < 0 || n > 4294967294.0 || n != (lua_Number)(unsigned)n)
      luaL_argerror(L, 1, "an id from 0 to 2^32-2 expected");
    id = (unsigned)n;
  }
  const char *name = numeric ? NULL : luaL_checkstring(L, 1);
  query_t *q = calloc(1, sizeof *q);
  if (q && name && !(q->name = strdup(name))) {
    free(q);
    q = NULL;
  }
  if (!q) return NULL;
  q->kind = kind;
  q->numeric = numeric;
  q->id = id;
  return q;
}

/* user(name | uid [, cb]): { name, uid, gid, home, shell }, or nil and why. */
static int l_user(lua_State *L) {
  query_t *q = new_query(L, Q_USER);
  return q ? ask(L, q, 2) : orch_lua_fail(L, -ENOMEM);
}

/* group(name | gid [, cb]): { name, gid }, or nil and why. */
static int l_group(lua_State *L) {
  query_t *q = new_query(L, Q_GROUP);
  return q ? ask(L, q, 2) : orch_lua_fail(L, -ENOMEM);
}

/* user_groups(name, gid [, cb]): the gids of name's groups, gid first
 * (initgroups' list), as a Lua list. */
static int l_user_groups(lua_State *L) {
  luaL_checkstring(L, 1);
  gid_t gid = (gid_t)luaL_checknumber(L, 2);
  query_t *q = new_query(L, Q_GROUPS);
  if (!q) return orch_lua_fail(L, -ENOMEM);
  q->gid = gid;
  return ask(L, q, 3);
}

/* ids(): the effective uid and gid orch runs with. */
static int l_ids(lua_State *L) {
  lua_pushnumber(L, geteuid());
  lua_pushnumber(L, getegid());
  return 2;
}

static const luaL_Reg funcs[] = {{"user", l_user},
                                 {"group", l_group},
                                 {"user_groups", l_user_groups},
                                 {"ids", l_ids},
                                 {NULL, NULL}};

void orch_users_lua_register(lua_State *L) { luaL_register(L, NULL, funcs); }
