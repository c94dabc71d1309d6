/* cgroup.h: a managed process in a cgroup v2 of its own (where a subtree
 * is delegated to orch), so that its whole tree, daemonised descendants
 * included, is listed by cgroup.procs and ended by cgroup.kill. Finding
 * and creating the directories is orch.tree's (Lua); C reads members. */
#ifndef ORCH_CGROUP_H
#define ORCH_CGROUP_H

#include <sys/types.h>

/* The pids in dir/cgroup.procs. Count (at most cap) or -errno. */
int orch_cgroup_pids(const char *dir, pid_t *out, int cap);

/* Opens dir/cgroup.procs for writing (close-on-exec): a spawned child
 * writes "0" to it before exec to move itself in. fd or -errno. */
int orch_cgroup_open_procs(const char *dir);

#endif
