/* proc.h: fork/exec of managed programs, exit notification, signalling.
 *
 * A managed process runs in its own process group with stdin on /dev/null.
 * Exec failures are reported through a close-on-exec pipe, so the caller gets
 * the child's errno instead of a silent exit 127. Exits are noticed through a
 * pidfd polled on the loop: exact, per process, and no waitpid(-1). */
#ifndef ORCH_PROC_H
#define ORCH_PROC_H

#include <signal.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <uv.h>

typedef struct orch_proc_s orch_proc_t;

/* Called once, after the process has been reaped and its pipes drained of what
 * was readable at that moment. code is the exit status (or -1), sig the
 * terminating signal (or 0). */
typedef void (*orch_proc_exit_cb)(orch_proc_t *p, int code, int sig);

/* A resource limit the child sets before exec (setrlimit). */
typedef struct {
  int resource; /* RLIMIT_* */
  rlim_t soft, hard;
} orch_spawn_limit_t;

/* The setup step of the child that failed, when orch_spawn fails in the
 * child before exec (0: exec itself, or the fds). A failed limit is
 * ORCH_SPAWN_STEP_LIMIT + its index in `limits`. */
enum {
  ORCH_SPAWN_STEP_EXEC = 0,
  ORCH_SPAWN_STEP_OOM_SCORE_ADJ,
  ORCH_SPAWN_STEP_NICE,
  ORCH_SPAWN_STEP_GROUPS,
  ORCH_SPAWN_STEP_GID,
  ORCH_SPAWN_STEP_UID,
  ORCH_SPAWN_STEP_CWD,
  ORCH_SPAWN_STEP_LIMIT = 16
};

typedef struct {
  const char *file;      /* program: a path, or a bare name searched on envp's PATH */
  char *const *argv;     /* NULL-terminated */
  char *const *envp;     /* NULL-terminated, the complete environment */
  const char *cwd;       /* NULL: inherit */
  int stdout_fd;         /* child's fd 1; -1: /dev/null */
  int stderr_fd;         /* child's fd 2; -1: /dev/null */
  const int *extra_fds;  /* become fds 3, 4, ... in the child */
  int n_extra_fds;
  char *pid_env;         /* NULL, or a 32-byte "LISTEN_PID=" entry of envp that
                            the child completes with its own pid */
  int cgroup_fd;         /* > 0: a cgroup v2 directory, open: the child is
                            born there (clone3), or moves itself there before
                            exec where clone3 is refused (0: none; fd 0 is
                            always /dev/null in orch) */
  /* Set in the child, in this order, after its fds and before chdir and
   * exec (lowering a nice value or raising a hard limit needs the
   * privileges the ids may drop): */
  int set_oom_score_adj, oom_score_adj; /* /proc/self/oom_score_adj */
  int set_nice, nice;                   /* setpriority */
  const orch_spawn_limit_t *limits;     /* setrlimit, each */
  int n_limits;
  int set_groups;                       /* setgroups(groups, n_groups) */
  const gid_t *groups;
  int n_groups;
  int set_gid;                          /* real, effective and saved gid */
  gid_t gid;
  int set_uid;                          /* real, effective and saved uid */
  uid_t uid;
  int set_umask;                        /* umask (else inherited) */
  mode_t umask;
  int *failed_step;                     /* NULL, or where the step that
                                           failed goes (ORCH_SPAWN_STEP_*) */
} orch_spawn_opts_t;

/* Forks and execs. On success stores the pid and returns 0; otherwise returns
 * the negative errno of the failing step (fork, or the child's chdir/exec). */
int orch_spawn(const orch_spawn_opts_t *o, pid_t *pid_out);

/* Starts watching pid (a child of ours) for exit. Returns 0 or -errno. */
int orch_proc_watch(uv_loop_t *loop, pid_t pid, orch_proc_exit_cb cb,
                    void *data, orch_proc_t **out);
void *orch_proc_data(const orch_proc_t *p);
/* Signal the process itself (pidfd: never a recycled pid). 0 or -errno. */
int orch_proc_signal(orch_proc_t *p, int sig);
/* Stops watching; if the process still runs, it is left running. Frees p once
 * libuv has released its handle. */
void orch_proc_release(orch_proc_t *p);

/* True if pid has not been reaped by anyone yet: used by the orphan reaper to
 * leave our own children to their watchers. */
int orch_proc_is_watched(pid_t pid);

/* Becomes the reaper of orphaned descendants and reaps them on SIGCHLD, leaving
 * alone every child someone else waits for (ours, libuv's uv_spawn). cb, when
 * set, runs after each batch that reaped an orphan. */
typedef void (*orch_reap_cb)(void *data);
int orch_reaper_start(uv_loop_t *loop, orch_reap_cb cb, void *data);
void orch_reaper_stop(void);

/* What the reaper did since the daemon started, counted so that a spec can
 * tell linear from quadratic without a clock: batches run, scans of every
 * child (/proc) and the pids they listed, orphans reaped, callbacks run. */
typedef struct {
  unsigned long batches, scans, listed, reaped, callbacks;
} orch_reap_stats_t;
orch_reap_stats_t orch_reaper_stats(void);

/* proc.c, after it reaped or let go of a watched process: that zombie may have
 * hidden orphans from the reaper (waitid shows one zombie at a time). */
void orch__reaper_resume(void);

/* Descendants of pid (children, grandchildren, ...), read from /proc.
 * Returns the count stored (at most cap) or -errno. */
int orch_proc_descendants(pid_t pid, pid_t *out, int cap);

/* Appends pid's children to out[n..cap) and returns the new count (or
 * -errno). nthreads, when known to be 1, saves listing /proc/<pid>/task. */
int orch_proc_children(pid_t pid, int nthreads, pid_t *out, int n, int cap);

/* 1 if a process group has a member we may signal, 0 if it has no member,
 * -EPERM if its members are all out of our reach (another user's: a setuid
 * program, when orch is not root). */
int orch_pgroup_alive(pid_t pgid);

/* Child-side helpers shared by orch_spawn and orch_daemon_spawn (daemon.c);
 * async-signal-safe, for use between fork and exec. */
/* Writes err to the exec-error pipe and exits 127. */
void orch__child_fail(int errfd, int err) __attribute__((noreturn));
/* The same, with the setup step that failed (ORCH_SPAWN_STEP_*). */
void orch__child_fail_at(int errfd, int err, int step) __attribute__((noreturn));
/* execve, searching envp's PATH for a bare name (no shell fallback); returns
 * the errno of the failure that matters. */
int orch__child_exec(const char *file, char *const *argv, char *const *envp);
/* Every signal back to SIG_DFL (the mask is the caller's business). */
void orch__child_reset_signals(void);
/* Parent side, before fork: blocks every signal, so that no handler of
 * orch's runs in the child; *old is the mask to set back after the fork. */
void orch__fork_block_signals(sigset_t *old);

#endif
