/* marker.h: the environment marker every process orch spawns carries
 * (ORCH_MARK=<id>@<absolute ORCH_HOME>), read back from /proc/PID/environ:
 * it tells whose a process is after it left its group and its parent
 * (double fork + setsid), and what a crashed daemon left running. */
#ifndef ORCH_MARKER_H
#define ORCH_MARKER_H

#include <stddef.h>
#include <sys/types.h>

#define ORCH_MARK_VAR "ORCH_MARK="

/* Looks in pid's initial environment (/proc/PID/environ: what it was
 * exec'd with) for the first entry starting with prefix. 1 and the rest of
 * that entry in val (NUL-terminated, cut at cap - 1 bytes), 0 when there is
 * none, or -errno (-ESRCH: gone; -EACCES: another user's). */
int orch_marker_get(pid_t pid, const char *prefix, char *val, size_t cap);

/* Whether pid's environment holds exactly the entry ORCH_MARK=mark. */
int orch_marker_is(pid_t pid, const char *mark);

typedef struct {
  pid_t pid;
  int fd;      /* pidfd, close-on-exec */
  char *value; /* the entry after the prefix (malloc'd) */
} orch_marker_hit_t;

/* Every process but ourselves whose environment has an entry starting with
 * prefix (and whose value ends with suffix, unless suffix is NULL), each
 * held by a pidfd and checked again once held (so a recycled pid is left
 * out). Reads all of /proc: blocking, for a worker thread. Stores a
 * malloc'd array in *out (free with orch_marker_hits_free); count or
 * -errno. */
int orch_marker_scan(const char *prefix, const char *suffix, orch_marker_hit_t **out);
void orch_marker_hits_free(orch_marker_hit_t *hits, int n);

struct lua_State;
/* Adds marker_scan(prefix, cb[, suffix]) (on libuv's thread pool) and
 * marker_get(pid, prefix). */
void orch_marker_lua_register(struct lua_State *L);

#endif
