/* owners.h: who owns each handle on orch's loop, so that exit closes
 * exactly what each owner holds, through the owner, and guesses at nothing.
 *   - luv's handles: found in luv's registry (runtime.c), closed through
 *     luv before the Lua state goes;
 *   - handles a Lua object owns (a process watch, a pidfd watch, a sink's
 *     writability poll): closed by the object's close or __gc, at the
 *     latest when the Lua state closes;
 *   - the rest, which C modules hold on their own (control sockets, log
 *     pipes, the state writer's async, the reaper's signal): their module
 *     registers an owner here when it first puts one on the loop.
 * A handle still open after all three is a bug: orch_owners_strays names it
 * on stderr (and closes it, so that orch still exits). */
#ifndef ORCH_OWNERS_H
#define ORCH_OWNERS_H

#include <uv.h>

typedef struct orch_owner_s {
  const char *what;        /* "control sockets": for the report */
  void (*close_all)(void); /* closes every handle the module holds */
  struct orch_owner_s *next;
  int added;
} orch_owner_t;

/* Registers o (static storage), once: later calls do nothing. */
void orch_owner_add(orch_owner_t *o);

/* Calls every registered owner's close_all, most recent first. */
void orch_owners_close_all(void);

/* Reports and closes every handle of loop still open (not closing);
 * returns how many there were. */
int orch_owners_strays(uv_loop_t *loop);

#endif
