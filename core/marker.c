/* marker.c: finding orch's processes by the marker in their environment.
 * /proc/PID/environ holds the strings a process was exec'd with; reading it
 * takes the target's memory lock, so a whole-system scan runs on libuv's
 * thread pool, never on the loop. */
#include "orch/marker.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <unistd.h>

#include "orch/binding.h"
#include "orch/pidfd.h"
#include "orch/runtime.h"

int orch_marker_get(pid_t pid, const char *prefix, char *val, size_t cap) {
  char path[40];
  snprintf(path, sizeof path, "/proc/%d/environ", (int)pid);
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) return errno == ENOENT ? -ESRCH : -errno;
  /* One pass over the entries, byte by byte through a small buffer: an
   * environment may be megabytes, the marker is one entry. */
  size_t plen = strlen(prefix), pos = 0, vlen = 0;
  int skipping = 0, found = 0, rc = 0;
  char buf[4096];
  while (!found) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      rc = errno == ESRCH ? -ESRCH : -errno;
      break;
    }
    if (n == 0) {
      found = !skipping && pos == plen; /* the last entry, unterminated */
      break;
    }
    for (ssize_t i = 0; i < n && !found; i++) {
      char c = buf[i];
      if (skipping) {
        if (c == '\0') skipping = 0, pos = 0;
      } else if (pos < plen) {
        if (c == prefix[pos]) pos++;
        else if (c == '\0') pos = 0;
        else skipping = 1;
      } else if (c == '\0') {
        found = 1;
      } else if (vlen + 1 < cap) {
        val[vlen++] = c;
      }
    }
  }
  close(fd);
  if (rc < 0) return rc;
  if (cap > 0) val[found ? vlen : 0] = '\0';
  return found;
}

int orch_marker_is(pid_t pid, const char *mark) {
  size_t len = strlen(mark);
  char *val = malloc(len + 2); /* one more: a longer value is not equal */
  if (!val) return -ENOMEM;
  int rc = orch_marker_get(pid, ORCH_MARK_VAR, val, len + 2);
  if (rc == 1) rc = strcmp(val, mark) == 0;
  free(val);
  return rc;
}

void orch_marker_hits_free(orch_marker_hit_t *hits, int n) {
  if (!hits) return;
  for (int i = 0; i < n; i++) {
    if (hits[i].fd >= 0) close(hits[i].fd);
    free(hits[i].value);
  }
  free(hits);
}

enum { VALUE_MAX = 8192 }; /* a marker holds a path: PATH_MAX and an id */

/* pid carries prefix: held by a pidfd and read again once held, so the
 * value belongs to the process the pidfd names. 1 and the hit, 0 if not. */
static int ends_with(const char *s, const char *suffix) {
  size_t n = strlen(s), m = strlen(suffix);
  return n >= m && memcmp(s + n - m, suffix, m) == 0;
}

static int take(pid_t pid, const char *prefix, const char *suffix, char *val, orch_marker_hit_t *hit) {
  if (orch_marker_get(pid, prefix, val, VALUE_MAX) != 1) return 0;
  if (suffix && !ends_with(val, suffix)) return 0; /* another home's: no pidfd, no hit */
  int fd = pidfd_open(pid, 0);
  if (fd < 0) return 0; /* gone already */
  char *again = malloc(VALUE_MAX);
  int same = again && orch_marker_get(pid, prefix, again, VALUE_MAX) == 1 &&
             strcmp(again, val) == 0 && !orch_pidfd_exited(fd);
  if (!same) {
    free(again);
    close(fd);
    return 0;
  }
  /* kept at its length: VALUE_MAX per hit was 8 KiB for every marked
   * process on the machine (other homes' too), left touched in the pool
   * thread's malloc arena after the scan */
  char *value = strdup(again);
  free(again);
  if (!value) {
    close(fd);
    return 0;
  }
  hit->pid = pid;
  hit->fd = fd;
  hit->value = value;
  return 1;
}

int orch_marker_scan(const char *prefix, const char *suffix, orch_marker_hit_t **out) {
  *out = NULL;
  DIR *d = opendir("/proc");
  if (!d) return -errno;
  char *val = malloc(VALUE_MAX);
  if (!val) {
    closedir(d);
    return -ENOMEM;
  }
  orch_marker_hit_t *hits = NULL;
  int n = 0, cap = 0, rc = 0;
  pid_t self = getpid();
  struct dirent *e;
  while ((e = readdir(d))) {
    char *end;
    long pid = strtol(e->d_name, &end, 10);
    if (*end || pid <= 0 || pid == self) continue;
    if (n == cap) {
      int ncap = cap ? cap * 2 : 16;
      orch_marker_hit_t *h = realloc(hits, (size_t)ncap * sizeof *h);
      if (!h) {
        rc = -ENOMEM;
        break;
      }
      hits = h;
      cap = ncap;
    }
    n += take((pid_t)pid, prefix, suffix, val, &hits[n]);
  }
  closedir(d);
  free(val);
  if (rc < 0) {
    orch_marker_hits_free(hits, n);
    return rc;
  }
  *out = hits;
  return n;
}

/* ---- Lua ---- */

/* A scan on the thread pool. Jobs still queued when the Lua state closes
 * (teardown) are cut loose from it: their results are dropped. */
typedef struct job_s {
  uv_work_t req;
  lua_State *L; /* NULL once the state is gone */
  int cb_ref;
  char *prefix;
  char *suffix; /* NULL: any value */
  orch_marker_hit_t *hits;
  int n; /* count or -errno */
  struct job_s *next;
} job_t;

static job_t *jobs;

static void scan_work(uv_work_t *req) {
  job_t *j = req->data;
  j->n = orch_marker_scan(j->prefix, j->suffix, &j->hits);
}

static void unlink_job(job_t *j) {
  for (job_t **p = &jobs; *p; p = &(*p)->next)
    if (*p == j) {
      *p = j->next;
      break;
    }
}

static void scan_done(uv_work_t *req, int status) {
  job_t *j = req->data;
  unlink_job(j);
  lua_State *L = j->L;
  if (L) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, j->cb_ref);
    luaL_unref(L, LUA_REGISTRYINDEX, j->cb_ref);
    int nargs;
    int err = status < 0 ? status : j->n < 0 ? j->n : 0;
    if (err) {
      nargs = orch_lua_fail(L, err);
    } else {
      lua_createtable(L, j->n, 0);
      for (int i = 0; i < j->n; i++) {
        lua_createtable(L, 0, 3);
        lua_pushinteger(L, j->hits[i].pid);
        lua_setfield(L, -2, "pid");
        lua_pushstring(L, j->hits[i].value);
        lua_setfield(L, -2, "value");
        orch_pidfd_push(L, j->hits[i].pid, j->hits[i].fd);
        j->hits[i].fd = -1; /* the userdata owns it now */
        lua_setfield(L, -2, "pidfd");
        lua_rawseti(L, -2, i + 1);
      }
      nargs = 1;
    }
    int r = orch_runtime_pcall(L, nargs, 0, 0);
    if (r > 0) lua_pop(L, r);
  }
  orch_marker_hits_free(j->hits, j->n);
  free(j->prefix);
  free(j->suffix);
  free(j);
}

static int on_state_close(lua_State *L) {
  (void)L;
  for (job_t *j = jobs; j; j = j->next) j->L = NULL;
  return 0;
}

/* core.marker_scan(prefix, cb[, suffix]): cb(list) later, on the loop,
 * where list holds { pid, value, pidfd } for every process whose
 * environment has an entry starting with prefix, its value ending with
 * suffix if given (cb(nil, msg, code) on failure). */
static int l_marker_scan(lua_State *L) {
  const char *prefix = luaL_checkstring(L, 1);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  const char *suffix = luaL_optstring(L, 3, NULL);
  if (!*prefix) return luaL_argerror(L, 1, "non-empty prefix expected");
  job_t *j = calloc(1, sizeof *j);
  char *p = strdup(prefix);
  char *sfx = suffix ? strdup(suffix) : NULL;
  if (!j || !p || (suffix && !sfx)) {
    free(j);
    free(p);
    free(sfx);
    return orch_lua_fail(L, -ENOMEM);
  }
  j->prefix = p;
  j->suffix = sfx;
  j->req.data = j;
  j->L = L;
  int rc = uv_queue_work(orch_runtime_loop(L), &j->req, scan_work, scan_done);
  if (rc < 0) {
    free(p);
    free(sfx);
    free(j);
    return orch_lua_fail(L, rc);
  }
  orch_lua_on_state_close(L, "orch.marker.jobs", on_state_close);
  lua_pushvalue(L, 2);
  j->cb_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  j->next = jobs;
  jobs = j;
  lua_pushboolean(L, 1);
  return 1;
}

/* core.marker_get(pid, prefix): the value of pid's entry starting with
 * prefix, false when it has none, or nil, msg, code. Reads one process's
 * environment on the loop: for orch's own children. */
static int l_marker_get(lua_State *L) {
  pid_t pid = (pid_t)luaL_checkinteger(L, 1);
  const char *prefix = luaL_checkstring(L, 2);
  if (pid <= 0) return luaL_argerror(L, 1, "pid > 0 expected");
  char *val = malloc(VALUE_MAX);
  if (!val) return orch_lua_fail(L, -ENOMEM);
  int rc = orch_marker_get(pid, prefix, val, VALUE_MAX);
  if (rc < 0) {
    free(val);
    return orch_lua_fail(L, rc);
  }
  if (rc) lua_pushstring(L, val);
  else lua_pushboolean(L, 0);
  free(val);
  return 1;
}

static const luaL_Reg funcs[] = {
    {"marker_scan", l_marker_scan}, {"marker_get", l_marker_get}, {NULL, NULL}};

void orch_marker_lua_register(lua_State *L) {
  luaL_register(L, NULL, funcs);
}
