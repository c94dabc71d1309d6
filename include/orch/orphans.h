/* orphans.h: orch's children that nobody watches (orphans of managed
 * programs, re-parented to orch, their subreaper), with their process
 * groups, listed at most once per loop turn (core/orphans.c). */
#ifndef ORCH_ORPHANS_H
#define ORCH_ORPHANS_H

#include <sys/types.h>
#include <uv.h>

typedef struct {
  pid_t *pid, *pgrp; /* n of each */
  int n;
} orch_orphans_t;

/* Keeps the list for the rest of the loop turn from now on (a prepare
 * handle drops it before the next poll). Once; 0 or a libuv error. */
int orch_orphans_attach(uv_loop_t *loop);

/* The list, read now or earlier in this loop turn; NULL without memory. */
const orch_orphans_t *orch_orphans_now(void);

/* How often orch's children were listed, and how many pids in all. */
void orch_orphans_counts(unsigned long *listings, unsigned long *listed);

#endif
