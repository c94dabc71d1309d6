/* pidfd.h: handles on processes that are not (or no longer) our children,
 * and on the members of a tree being stopped: a pidfd names one process for
 * as long as it is open, so no signal can reach a recycled pid. */
#ifndef ORCH_PIDFD_H
#define ORCH_PIDFD_H

#include <sys/types.h>

/* The members of process group pgid, from /proc. Count or -errno. */
int orch_pgroup_members(pid_t pgid, pid_t *out, int cap);

/* Whether the process of pidfd fd has exited (its pidfd is readable). */
int orch_pidfd_exited(int fd);

typedef struct {
  pid_t pid;
  int fd; /* pidfd, close-on-exec */
} orch_pidfd_entry_t;

/* What else belongs to a tree besides root's descendants and pgid's
 * members: what left both (double fork + setsid). */
typedef struct {
  const char *mark;   /* NULL, or an ORCH_MARK value: those of orch's own
                         children (where orphans land) that carry it, and
                         their descendants */
  const char *cgroup; /* NULL, or a cgroup directory: its members */
} orch_pidfd_scope_t;

/* Pidfds for root's descendants (root > 0) and the members of group pgid
 * (pgid > 0), root itself excepted, and for what scope (may be NULL) adds.
 * Members are found among our own children and below them (cheap: where a
 * stopped app's orphans land, orch being their subreaper), or with
 * whole_system in all of /proc (for what a crashed daemon left). Each is
 * checked once its pidfd is open: it must still be in pgid, the child of
 * root or of another entry, carry the mark or be listed in the cgroup, so a
 * pid recycled between the scan and pidfd_open is left out. Count or
 * -errno. */
int orch_pidfd_snapshot(pid_t root, pid_t pgid, int whole_system,
                        const orch_pidfd_scope_t *scope,
                        orch_pidfd_entry_t *out, int cap);

struct lua_State;
/* Pushes a pidfd userdata that owns fd (closed with it). */
void orch_pidfd_push(struct lua_State *L, pid_t pid, int fd);
/* Adds pidfd(pid [, starttime]) and pidfd_snapshot(root, pgid [, where [, scope]]). */
void orch_pidfd_lua_register(struct lua_State *L);

#endif
