/* users.c: orch.core's look-ups in the user and group databases (NSS:
 * /etc/passwd, /etc/group, or whatever nsswitch.conf says), for an app's
 * uid/gid (orch.runas). They run in the daemon, before fork: none of them
 * is safe between vfork and exec. A lookup may block on a network database;
 * it happens when a config is loaded and when a process is launched, as
 * systemd does for User=. */
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "orch/binding.h"

/* The buffer the *_r functions fill: grown on ERANGE up to 1 MiB. */
#define LOOKUP_BUF_MAX (1 << 20)

/* A name, or a number given as a number (never a name of digits: "1000"
 * is a name, as getpwnam takes it, and orch.runas passes numbers as such). */
static int by_id(lua_State *L, unsigned *id) {
  if (lua_type(L, 1) != LUA_TNUMBER) {
    luaL_checkstring(L, 1);
    return 0;
  }
  lua_Number n = lua_tonumber(L, 1);
  if (n < 0 || n > 4294967294.0 || n != (lua_Number)(unsigned)n) luaL_argerror(L, 1, "an id from 0 to 2^32-2 expected");
  *id = (unsigned)n;
  return 1;
}

/* Not found: nil, "no such user" (the caller names it). An error of the
 * database: nil, "EIO: ...", "EIO". */
static int lookup_fail(lua_State *L, int err, const char *what) {
  if (err == 0 || err == ENOENT || err == ESRCH || err == EBADF || err == EPERM) {
    lua_pushnil(L);
    lua_pushstring(L, what);
    return 2;
  }
  return orch_lua_fail(L, -err);
}

/* user(name | uid): { name, uid, gid, home, shell }, or nil and why. */
static int l_user(lua_State *L) {
  unsigned id = 0;
  int numeric = by_id(L, &id);
  size_t size = 4096;
  for (;;) {
    char *buf = malloc(size);
    if (!buf) return orch_lua_fail(L, -ENOMEM);
    struct passwd pw, *found = NULL;
    int rc = numeric ? getpwuid_r((uid_t)id, &pw, buf, size, &found)
                     : getpwnam_r(lua_tostring(L, 1), &pw, buf, size, &found);
    if (rc == ERANGE && size < LOOKUP_BUF_MAX) {
      free(buf);
      size *= 2;
      continue;
    }
    if (!found) {
      free(buf);
      return lookup_fail(L, rc, "no such user");
    }
    lua_createtable(L, 0, 5);
    lua_pushstring(L, pw.pw_name);
    lua_setfield(L, -2, "name");
    lua_pushnumber(L, pw.pw_uid);
    lua_setfield(L, -2, "uid");
    lua_pushnumber(L, pw.pw_gid);
    lua_setfield(L, -2, "gid");
    lua_pushstring(L, pw.pw_dir ? pw.pw_dir : "/");
    lua_setfield(L, -2, "home");
    lua_pushstring(L, pw.pw_shell ? pw.pw_shell : "");
    lua_setfield(L, -2, "shell");
    free(buf);
    return 1;
  }
}

/* group(name | gid): { name, gid }, or nil and why. */
static int l_group(lua_State *L) {
  unsigned id = 0;
  int numeric = by_id(L, &id);
  size_t size = 4096;
  for (;;) {
    char *buf = malloc(size);
    if (!buf) return orch_lua_fail(L, -ENOMEM);
    struct group gr, *found = NULL;
    int rc = numeric ? getgrgid_r((gid_t)id, &gr, buf, size, &found)
                     : getgrnam_r(lua_tostring(L, 1), &gr, buf, size, &found);
    if (rc == ERANGE && size < LOOKUP_BUF_MAX) {
      free(buf);
      size *= 2;
      continue;
    }
    if (!found) {
      free(buf);
      return lookup_fail(L, rc, "no such group");
    }
    lua_createtable(L, 0, 2);
    lua_pushstring(L, gr.gr_name);
    lua_setfield(L, -2, "name");
    lua_pushnumber(L, gr.gr_gid);
    lua_setfield(L, -2, "gid");
    free(buf);
    return 1;
  }
}

/* user_groups(name, gid): the gids of name's groups, gid first
 * (initgroups' list), as a Lua list. */
static int l_user_groups(lua_State *L) {
  const char *name = luaL_checkstring(L, 1);
  gid_t gid = (gid_t)luaL_checknumber(L, 2);
  int n = 64;
  for (;;) {
    gid_t *list = malloc((size_t)n * sizeof *list);
    if (!list) return orch_lua_fail(L, -ENOMEM);
    int want = n;
    if (getgrouplist(name, gid, list, &want) < 0) {
      free(list);
      if (want <= n) want = n * 2; /* glibc sets it; be safe where it does not */
      if (want > 65536) return orch_lua_fail(L, -E2BIG);
      n = want;
      continue;
    }
    lua_createtable(L, want, 0);
    for (int i = 0; i < want; i++) {
      lua_pushnumber(L, list[i]);
      lua_rawseti(L, -2, i + 1);
    }
    free(list);
    return 1;
  }
}

/* ids(): the effective uid and gid orch runs with. */
static int l_ids(lua_State *L) {
  lua_pushnumber(L, geteuid());
  lua_pushnumber(L, getegid());
  return 2;
}

static const luaL_Reg funcs[] = {{"user", l_user},
                                 {"group", l_group},
                                 {"user_groups", l_user_groups},
                                 {"ids", l_ids},
                                 {NULL, NULL}};

void orch_users_lua_register(lua_State *L) { luaL_register(L, NULL, funcs); }
