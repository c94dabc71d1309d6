/* cgroup.h: a managed process in a cgroup v2 of its own (where a subtree
 * is delegated to orch), so that its whole tree, daemonised descendants
 * included, is listed by cgroup.procs and ended by cgroup.kill. Finding
 * and creating the directories is orch.tree's (Lua); C reads members. */
#ifndef ORCH_CGROUP_H
#define ORCH_CGROUP_H

#include <sys/types.h>

/* The pids in dir/cgroup.procs. Count (at most cap) or -errno. */
int orch_cgroup_pids(const char *dir, pid_t *out, int cap);

/* Opens the cgroup directory dir (close-on-exec), for orch_spawn's
 * cgroup_fd: the child is born there. fd or -errno. */
int orch_cgroup_open(const char *dir);

#endif
