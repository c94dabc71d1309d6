/* orphans.c: orch's children that nobody watches, with their process
 * groups, listed from /proc at most once per loop turn.
 *
 * A stop takes a snapshot of each process's tree (core/pidfd.c), and the
 * orphans its group left are among orch's children. Listing every child per
 * snapshot made a stop of N processes, all in one turn, read N children N
 * times: O(N^2). Within a turn the list is one instant's: a process
 * re-parented to orch after it was read is there in the next turn, and an
 * exit that re-parents one (its parent was ours) is an event of a later turn
 * too, since its pidfd was not yet readable when this turn's poll returned.
 * The list is dropped (and its memory freed) before the next poll. */
#include "orch/orphans.h"

#include <stdlib.h>
#include <unistd.h>

#include "orch/owners.h"
#include "orch/proc.h"
#include "orch/stats.h"

enum { F_PGRP = 5, MAX = 8192 };

static uv_prepare_t turn;
static int attached, filled;
static orch_orphans_t list;
static unsigned long listings, listed;

static void drop(void) {
  free(list.pid);
  list.pid = list.pgrp = NULL;
  list.n = 0;
  filled = 0;
}

static void on_turn(uv_prepare_t *h) {
  uv_prepare_stop(h);
  drop();
}

static void orphans_detach(void) {
  if (!attached) return;
  attached = 0;
  uv_close((uv_handle_t *)&turn, NULL);
  drop();
}

int orch_orphans_attach(uv_loop_t *loop) {
  if (attached) return 0;
  int rc = uv_prepare_init(loop, &turn);
  if (rc < 0) return rc;
  uv_unref((uv_handle_t *)&turn);
  attached = 1;
  static orch_owner_t owner = {"the orphan list", orphans_detach, NULL, 0};
  orch_owner_add(&owner);
  return 0;
}

const orch_orphans_t *orch_orphans_now(void) {
  if (filled) return &list;
  if (!list.pid) {
    list.pid = malloc(2 * MAX * sizeof *list.pid);
    if (!list.pid) return NULL;
    list.pgrp = list.pid + MAX;
  }
  /* Every child of orch is on its main thread's list: orch forks only from
   * its loop, the main thread, and an orphan goes to the first live thread
   * of its subreaper, the leader. */
  int m = orch_proc_children(getpid(), 1, list.pid, 0, MAX);
  listings++;
  listed += m > 0 ? (unsigned long)m : 0;
  static const int which[] = {F_PGRP};
  int n = 0;
  for (int i = 0; i < m; i++) {
    uint64_t g;
    pid_t kid = list.pid[i];
    /* Managed processes are leaders of groups of their own, watched: no
     * /proc read for them. */
    if (orch_proc_is_watched(kid) || orch_proc_stat_fields(kid, which, 1, &g) < 0) continue;
    list.pid[n] = kid; /* n <= i: compacting in place */
    list.pgrp[n++] = (pid_t)g;
  }
  list.n = n;
  if (attached) {
    filled = 1;
    uv_prepare_start(&turn, on_turn);
  }
  return &list;
}

void orch_orphans_counts(unsigned long *l, unsigned long *p) {
  *l = listings;
  *p = listed;
}
