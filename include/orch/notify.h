/* notify.h: the receiving end of systemd's sd_notify protocol, so that
 * programs written for Type=notify services can say READY=1 to orch. */
#ifndef ORCH_NOTIFY_H
#define ORCH_NOTIFY_H

#include <lua.h>

/* Adds notify_socket and notify_recv to the orch.core table on the stack
 * top. */
void orch_notify_lua_register(lua_State *L);

#endif
