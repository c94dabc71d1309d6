/* unixsock.h: binding AF_UNIX sockets to paths (the control socket, the
 * notify sockets, an app's listen sockets), with a stale socket file there
 * replaced and never anything else. */
#ifndef ORCH_UNIXSOCK_H
#define ORCH_UNIXSOCK_H

/* ORCH_UNIX_REPLACE: a socket file at path (left by a process that is gone)
 * is removed first; anything else there is -EEXIST. Without it, any file
 * there is -EADDRINUSE (bind's own answer), as Node's listen(path) has it.
 * ORCH_UNIX_PRIVATE: the socket file is 0600 whatever the umask (a private
 * umask for the moment of the bind, then chmod); else 0777 & ~umask. */
#define ORCH_UNIX_REPLACE 1u
#define ORCH_UNIX_PRIVATE 2u

/* Binds the AF_UNIX socket fd to path. 0 or -errno (-ENAMETOOLONG: path
 * does not fit in sun_path). */
int orch_unix_bind(int fd, const char *path, unsigned flags);

#endif
