/* main.c: orch's entry point. Everything past argv is decided in Lua
 * (orch.main); C only prepares a sane process and the runtime. */
#include <fcntl.h>
#include <lauxlib.h>
#include <signal.h>
#include <stdio.h>
#include <unistd.h>

#include "orch/daemon.h"
#include "orch/fds.h"
#include "orch/runtime.h"

/* fds 0-2 must be open: otherwise the first pipe or log file would land on
 * them and a child's dup2 onto 1/2 would go to the wrong place. */
static int ensure_std_fds(void) {
  for (int fd = 0; fd < 3; fd++) {
    if (fcntl(fd, F_GETFD) >= 0) continue;
    int n = open("/dev/null", O_RDWR);
    if (n < 0) return -1;
    if (n != fd) return -1;
  }
  return 0;
}

int main(int argc, char **argv) {
  /* The title (orch.core.set_title) is written over the original argv, so
   * from here on argv is libuv's copy. */
  orch_title_init(argc, argv);
  argv = uv_setup_args(argc, argv);
  if (ensure_std_fds() < 0) return 111;
  /* What orch's parent left open is not ours to pass on: not to managed
   * processes (they close it anyway), nor to health checks (uv_spawn). */
  orch_fds_cloexec_from(3);
  /* A closed terminal or a vanished client must be an EPIPE to handle, not a
   * signal that kills the supervisor. Children get SIG_DFL back. */
  signal(SIGPIPE, SIG_IGN);

  uv_loop_t loop;
  if (uv_loop_init(&loop) < 0) {
    fputs("orch: cannot initialise the event loop\n", stderr);
    return 111;
  }
  lua_State *L = orch_runtime_new(&loop);
  if (!L) {
    fputs("orch: cannot create the Lua state\n", stderr);
    return 111;
  }

  int status = 1;
  lua_getglobal(L, "require");
  lua_pushliteral(L, "orch.main");
  if (orch_runtime_pcall(L, 1, 1, 0) == 1 && lua_istable(L, -1)) {
    lua_getfield(L, -1, "main");
    lua_newtable(L);
    for (int i = 0; i < argc; i++) {
      lua_pushstring(L, argv[i]);
      lua_rawseti(L, -2, i);
    }
    if (orch_runtime_pcall(L, 1, 1, 0) == 1 && lua_isnumber(L, -1))
      status = (int)lua_tointeger(L, -1);
  }
  fflush(stdout);
  if (!orch_runtime_end(L)) {
    /* a request still runs on libuv's thread pool (a read from a FIFO
     * nobody opens): exit() would wait for its thread forever */
    fflush(stderr);
    _exit(status);
  }
  uv_loop_close(&loop);
  return status;
}
