/* daemon.h: what makes orch a daemon: the pid-file lock, a detached start,
 * the process title. */
#ifndef ORCH_DAEMON_H
#define ORCH_DAEMON_H

#include <sys/types.h>

/* Opens (creating, 0600) and locks path (flock, exclusive, non-blocking),
 * then writes our pid into it. On success *fd holds the lock until closed.
 * 0, -EWOULDBLOCK when another process holds it, or another -errno. */
int orch_pidfile_lock(const char *path, int *fd);
/* The pid written in path: > 0, or -errno (-EINVAL when it holds none). */
int orch_pidfile_read(const char *path, pid_t *pid);

typedef struct {
  const char *file;   /* a path, or a bare name searched on the PATH of envp */
  char *const *argv;  /* NULL-terminated */
  char *const *envp;  /* NULL: our environ */
  const char *log;    /* stdout and stderr are appended here (created 0600);
                         NULL: /dev/null */
  const char *cwd;    /* NULL: "/" */
  int ready_fd;       /* -1, or the daemon's fd number (3 to 1000) that gets
                         the write end of a readiness pipe (s6's
                         notification-fd): the daemon writes a byte there once
                         it serves, and EOF without one means it is gone */
} orch_daemon_opts_t;

/* Starts a program detached: in a new session, not our child (double fork:
 * nothing for us to reap later), stdin on /dev/null, every signal at its
 * default and unblocked, no fd of ours but 0-2. Returns 0 with *pid set once
 * it has exec'd, or the negative errno of the step that failed (the log's
 * open, fork, chdir, exec...). */
int orch_daemon_spawn(const orch_daemon_opts_t *o, pid_t *pid, int *ready);
/* With o->ready_fd set, *ready is the read end of that pipe (close-on-exec).
 * Waits on it: 0x100 | the byte once one came, 0 at EOF without one (the
 * daemon is gone), -ETIMEDOUT, or another -errno. Leaves fd open. */
int orch_daemon_ready_wait(int fd, int timeout_ms);

/* Takes an exclusive flock on directory dir, waiting for it: CLIs that find
 * no daemon start one at a time. *fd holds the lock until closed. 0 or
 * -errno. */
int orch_start_lock(const char *dir, int *fd);

/* Remembers where argv lives; call from main before uv_setup_args. */
void orch_title_init(int argc, char **argv);
/* Sets the title ps and /proc/<pid>/cmdline show (uv_set_process_title) and
 * the 15-character name of /proc/<pid>/comm. A title longer than the
 * original command line goes on into the environment's space, whose strings
 * are copied elsewhere first (as setproctitle does). 0 or -errno. */
int orch_title_set(const char *title);

struct lua_State;
/* Adds lock_pidfile, read_pidfile, spawn_detached, ready_wait, start_lock,
 * set_title, sleep_ms. */
void orch_daemon_lua_register(struct lua_State *L);

#endif
