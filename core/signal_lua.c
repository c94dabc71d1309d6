/* signal_lua.c: orch.core's signals and process groups: signum, signame,
 * kill, getpgid, pgroup_alive, descendants. */
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "orch/binding.h"
#include "orch/proc.h"

static const struct {
  const char *name;
  int num;
} signals[] = {
    {"SIGHUP", SIGHUP},   {"SIGINT", SIGINT},     {"SIGQUIT", SIGQUIT},
    {"SIGILL", SIGILL},   {"SIGTRAP", SIGTRAP},   {"SIGABRT", SIGABRT},
    {"SIGBUS", SIGBUS},   {"SIGFPE", SIGFPE},     {"SIGKILL", SIGKILL},
    {"SIGUSR1", SIGUSR1}, {"SIGSEGV", SIGSEGV},   {"SIGUSR2", SIGUSR2},
    {"SIGPIPE", SIGPIPE}, {"SIGALRM", SIGALRM},   {"SIGTERM", SIGTERM},
    {"SIGCHLD", SIGCHLD}, {"SIGCONT", SIGCONT},   {"SIGSTOP", SIGSTOP},
    {"SIGTSTP", SIGTSTP}, {"SIGTTIN", SIGTTIN},   {"SIGTTOU", SIGTTOU},
    {"SIGURG", SIGURG},   {"SIGXCPU", SIGXCPU},   {"SIGXFSZ", SIGXFSZ},
    {"SIGVTALRM", SIGVTALRM}, {"SIGPROF", SIGPROF}, {"SIGWINCH", SIGWINCH},
    {"SIGIO", SIGIO},     {"SIGPWR", SIGPWR},     {"SIGSYS", SIGSYS},
    {NULL, 0}};

const char *orch_signal_name(int num) {
  for (int i = 0; signals[i].name; i++)
    if (signals[i].num == num) return signals[i].name;
  return NULL;
}

/* A signal given as a number, "SIGTERM" or "TERM" (any case); 0 if unknown. */
static int signal_num(lua_State *L, int idx) {
  if (lua_type(L, idx) == LUA_TNUMBER) {
    int n = (int)lua_tointeger(L, idx);
    return n > 0 && n < NSIG ? n : 0;
  }
  const char *s = luaL_checkstring(L, idx);
  if (strncasecmp(s, "SIG", 3) == 0) s += 3;
  for (int i = 0; signals[i].name; i++)
    if (strcasecmp(signals[i].name + 3, s) == 0) return signals[i].num;
  return 0;
}

int orch_lua_check_signal(lua_State *L, int idx) {
  int sig = signal_num(L, idx);
  if (!sig) luaL_argerror(L, idx, "unknown signal");
  return sig;
}

static int l_signum(lua_State *L) {
  int sig = signal_num(L, 1);
  if (!sig) return 0;
  lua_pushinteger(L, sig);
  return 1;
}

static int l_signame(lua_State *L) {
  const char *name = orch_signal_name((int)luaL_checkinteger(L, 1));
  if (!name) return 0;
  lua_pushstring(L, name);
  return 1;
}

static int l_kill(lua_State *L) {
  pid_t pid = (pid_t)luaL_checkinteger(L, 1);
  int sig = lua_isnoneornil(L, 2)                                ? SIGTERM
            : lua_type(L, 2) == LUA_TNUMBER && lua_tointeger(L, 2) == 0 ? 0
                                                                       : orch_lua_check_signal(L, 2);
  if (pid == 0 || pid == -1) return luaL_argerror(L, 1, "refusing pid 0/-1");
  return orch_lua_ok(L, kill(pid, sig) < 0 ? -errno : 0);
}

static int l_getpgid(lua_State *L) {
  pid_t g = getpgid((pid_t)luaL_checkinteger(L, 1));
  if (g < 0) return orch_lua_fail(L, -errno);
  lua_pushinteger(L, g);
  return 1;
}

/* pgroup_alive(pgid) -> true | false | false, "EPERM" (members that may not
 * be signalled, and nothing else) */
static int l_pgroup_alive(lua_State *L) {
  int r = orch_pgroup_alive((pid_t)luaL_checkinteger(L, 1));
  lua_pushboolean(L, r > 0);
  if (r >= 0) return 1;
  lua_pushstring(L, uv_err_name(r));
  return 2;
}

static int l_descendants(lua_State *L) {
  pid_t kids[4096];
  int n = orch_proc_descendants((pid_t)luaL_checkinteger(L, 1), kids, 4096);
  if (n < 0) n = 0; /* a process that is gone has no descendants */
  lua_createtable(L, n, 0);
  for (int i = 0; i < n; i++) {
    lua_pushinteger(L, kids[i]);
    lua_rawseti(L, -2, i + 1);
  }
  return 1;
}

static const luaL_Reg funcs[] = {
    {"signum", l_signum}, {"signame", l_signame}, {"kill", l_kill}, {"getpgid", l_getpgid},
    {"pgroup_alive", l_pgroup_alive}, {"descendants", l_descendants}, {NULL, NULL}};

void orch_signal_lua_register(lua_State *L) { luaL_register(L, NULL, funcs); }
