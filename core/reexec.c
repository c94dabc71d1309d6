/* reexec.c: orch.core's means for `orch update`, the daemon re-executing
 * itself in place (same pid, as systemd's daemon-reexec): a memfd for the
 * handover document, descriptors handed over by number (fd_adopt), the old
 * image kept open (open_exe) and the exec itself.
 *
 * Every descriptor orch holds is close-on-exec; reexec clears the flag on
 * exactly the ones it is given, just before execve, so nothing else leaks
 * into the new image, and sets it back if execve fails (the old daemon goes
 * on serving as it was). The new image's main.c marks every inherited fd
 * above 2 close-on-exec again at once. */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "orch/binding.h"
#include "orch/fdobj.h"
#include "orch/fds.h"

/* memfd(name) -> fd object: an anonymous file, close-on-exec until reexec
 * hands it on. */
static int l_memfd(lua_State *L) {
  const char *name = luaL_checkstring(L, 1);
  int *slot = orch_fdobj_new(L);
  int fd = memfd_create(name, MFD_CLOEXEC);
  if (fd < 0) return orch_lua_fail(L, -errno);
  *slot = fd;
  return 1;
}

/* fd_adopt(n) -> fd object owning descriptor n (one the previous image
 * handed over), made close-on-exec; nil, "EBADF: ..." when n is not open. */
static int l_fd_adopt(lua_State *L) {
  int n = (int)luaL_checkinteger(L, 1);
  if (n < 3) return luaL_argerror(L, 1, "a descriptor >= 3 expected");
  int fl = fcntl(n, F_GETFD);
  if (fl < 0) return orch_lua_fail(L, -errno);
  if (fcntl(n, F_SETFD, fl | FD_CLOEXEC) < 0) return orch_lua_fail(L, -errno);
  int *slot = orch_fdobj_new(L);
  *slot = n;
  return 1;
}

/* open_exe() -> fd object: the image this process runs, even once its
 * file is replaced or removed (O_PATH, for execveat). */
static int l_open_exe(lua_State *L) {
  int *slot = orch_fdobj_new(L);
  int fd = open("/proc/self/exe", O_PATH | O_CLOEXEC);
  if (fd < 0) return orch_lua_fail(L, -errno);
  *slot = fd;
  return 1;
}

static int set_cloexec(int fd, int on) {
  int fl = fcntl(fd, F_GETFD);
  if (fl < 0) return -errno;
  if (fcntl(fd, F_SETFD, on ? (fl | FD_CLOEXEC) : (fl & ~FD_CLOEXEC)) < 0) return -errno;
  return 0;
}

#define KEEP_MAX 65536

/* reexec{ file = PATH | image = fd, argv = {...}, env = {...}, keep = {n...} }
 * Returns only on failure: nil, message, code, with every kept descriptor
 * close-on-exec again and the fd limit raised again. image: an fd object or
 * number from open_exe (execveat, AT_EMPTY_PATH). */
static int l_reexec(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_getfield(L, 1, "file");
  const char *file = lua_tostring(L, -1);
  lua_getfield(L, 1, "image");
  int image = lua_isnil(L, -1) ? -1 : orch_fdobj_arg(L, lua_gettop(L));
  if (!file && image < 0) return luaL_argerror(L, 1, "file or image expected");
  lua_getfield(L, 1, "argv");
  int nul_a, nul_e;
  char **argv = orch_lua_string_list(L, lua_gettop(L), "argv", &nul_a);
  lua_getfield(L, 1, "env");
  char **envp = orch_lua_string_list(L, lua_gettop(L), "env", &nul_e);
  if (nul_a || nul_e) return luaL_argerror(L, 1, "argv and env: no NUL byte");
  lua_getfield(L, 1, "keep");
  luaL_checktype(L, -1, LUA_TTABLE);
  int keep_at = lua_gettop(L);
  int n = (int)lua_objlen(L, keep_at);
  if (n > KEEP_MAX) return luaL_argerror(L, 1, "keep: too many descriptors");
  int *keep = lua_newuserdata(L, (size_t)(n > 0 ? n : 1) * sizeof *keep);
  for (int i = 0; i < n; i++) {
    lua_rawgeti(L, keep_at, i + 1);
    keep[i] = (int)luaL_checkinteger(L, -1);
    lua_pop(L, 1);
  }
  int rc = 0, cleared = 0;
  for (; cleared < n && rc == 0; cleared++) rc = set_cloexec(keep[cleared], 0);
  /* The new image records the limit it starts with as its children's. */
  if (rc == 0) rc = orch__child_fds_restore_limit();
  if (rc == 0) {
    if (image >= 0) syscall(SYS_execveat, image, "", argv, envp, AT_EMPTY_PATH);
    else execve(file, argv, envp);
    rc = -errno;
  }
  for (int i = 0; i < cleared; i++) (void)set_cloexec(keep[i], 1);
  struct rlimit rl; /* raised again (orch_fds_raise_limit runs once) */
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    (void)setrlimit(RLIMIT_NOFILE, &rl);
  }
  return orch_lua_fail(L, rc);
}

static const luaL_Reg funcs[] = {{"memfd", l_memfd},
                                 {"fd_adopt", l_fd_adopt},
                                 {"open_exe", l_open_exe},
                                 {"reexec", l_reexec},
                                 {NULL, NULL}};

void orch_reexec_lua_register(lua_State *L) {
  luaL_register(L, NULL, funcs);
}
