/* owners.c: the registry of orch's C handle owners (see owners.h). */
#include "orch/owners.h"

#include <stdio.h>

static orch_owner_t *owners;

void orch_owner_add(orch_owner_t *o) {
  if (o->added) return;
  o->added = 1;
  o->next = owners;
  owners = o;
}

void orch_owners_close_all(void) {
  for (orch_owner_t *o = owners; o; o = o->next) o->close_all();
}

static void close_stray(uv_handle_t *h, void *arg) {
  if (uv_is_closing(h)) return;
  (*(int *)arg)++;
  fprintf(stderr, "orch: exit: a libuv %s handle no owner closed is still open (a bug in orch)\n",
          uv_handle_type_name(uv_handle_get_type(h)));
  uv_close(h, NULL);
}

int orch_owners_strays(uv_loop_t *loop) {
  int n = 0;
  uv_walk(loop, close_stray, &n);
  return n;
}
