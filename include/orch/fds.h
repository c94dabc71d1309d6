/* fds.h: orch's descriptor budget, and what a child inherits of it.
 *
 * A managed process gets fds 0-2, its listen sockets and its IPC channel,
 * nothing else: not what orch itself inherited, not what orch has open. orch
 * runs with its soft RLIMIT_NOFILE raised to the hard limit (it holds several
 * descriptors per app); its children get the original soft limit back, so a
 * program using select() never sees an fd above FD_SETSIZE it did not ask for. */
#ifndef ORCH_FDS_H
#define ORCH_FDS_H

struct lua_State;

/* Marks every fd >= first close-on-exec (orch's start: whatever its parent
 * left open goes no further, not even to uv_spawn children). 0 or -errno. */
int orch_fds_cloexec_from(int first);

/* Raises the soft RLIMIT_NOFILE to the hard limit, remembering the original
 * for children. Idempotent. 0 or -errno. */
int orch_fds_raise_limit(void);

/* How many descriptors are open, and the soft limit. 0 or -errno. */
int orch_fds_count(int *open_out, int *limit_out);

/* Child side (between fork and exec; async-signal-safe): closes every fd
 * >= first except keep, and restores the original soft limit. 0 or -errno. */
int orch__child_fds_close_from(int first, int keep);
int orch__child_fds_restore_limit(void);

/* orch.core.raise_fd_limit(), orch.core.fd_count() */
void orch_fds_lua_register(struct lua_State *L);

#endif
