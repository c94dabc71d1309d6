/* listen.h: listening sockets the daemon binds and holds for its apps, so
 * that a port outlives the restarts of the processes serving it. */
#ifndef ORCH_LISTEN_H
#define ORCH_LISTEN_H

#include <lua.h>

/* Binds and listens on a numeric IPv4/IPv6 host and port (SO_REUSEADDR,
 * close-on-exec, non-blocking off: the receivers decide). Returns the fd or
 * a negative errno. */
int orch_listen_tcp(const char *host, int port, int backlog);
/* The same on a Unix socket path. replace: an existing socket file there is
 * removed first (never anything else); otherwise any file there is
 * EADDRINUSE, as Node's listen(path) has it. */
int orch_listen_unix(const char *path, int backlog, int replace);

/* Adds listen_tcp, listen_unix and sockname to the orch.core table on the
 * stack top. */
void orch_listen_lua_register(lua_State *L);

#endif
