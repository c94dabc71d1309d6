/* notify.h: systemd's sd_notify protocol: the receiving end, so that
 * programs written for Type=notify services can say READY=1 to orch, and
 * the sending end, so that orch can say it to its own service manager. */
#ifndef ORCH_NOTIFY_H
#define ORCH_NOTIFY_H

#include <lua.h>

/* Adds notify_socket, notify_recv and notify_send to the orch.core table
 * on the stack top. */
void orch_notify_lua_register(lua_State *L);

#endif
