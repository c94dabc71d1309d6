/* stats.h: resource use of process trees, read from /proc.
 *
 * Runs for every process on every `orch list`, so it reads each
 * /proc/<pid>/stat once, with open/read into a stack buffer. */
#ifndef ORCH_STATS_H
#define ORCH_STATS_H

#include <stdint.h>
#include <sys/types.h>

typedef struct {
  uint64_t rss;       /* bytes resident, summed over the tree */
  uint64_t cpu_ticks; /* utime + stime of the live processes of the tree */
  uint64_t starttime; /* the root's start, clock ticks since boot */
  int procs;          /* the root and its descendants */
} orch_proc_stats_t;

/* pid and all its descendants. 0, or -ESRCH (or another -errno) when pid's
 * own stat cannot be read. A descendant that vanishes meanwhile is skipped. */
int orch_proc_stats(pid_t pid, orch_proc_stats_t *out);

/* Field 22 of /proc/<pid>/stat: with the pid, identifies a process across pid
 * reuse. 0 or -errno. */
int orch_proc_starttime(pid_t pid, uint64_t *out);

/* Numeric fields of /proc/<pid>/stat by their proc(5) number (>= 3; 1 and 2,
 * pid and comm, are not numeric). pid 0 means self. 0 or -errno. */
int orch_proc_stat_fields(pid_t pid, const int *which, int n, uint64_t *out);

long orch_clock_ticks(void);

struct lua_State;
/* Adds proc_stats, proc_starttime and clock_ticks to the table on the top. */
void orch_stats_lua_register(struct lua_State *L);

#endif
