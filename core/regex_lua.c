/* regex_lua.c: orch.core's regular expressions, for PM2's `/regex/` targets
 * (`orch stop /^api-/`): POSIX extended syntax from libc, so the daemon
 * needs no regex library of its own. */
#include <regex.h>
#include <string.h>

#include "orch/binding.h"

/* regex_find(pattern, subjects) -> list of booleans (whether each subject
 * matches somewhere), or nil, "EINVAL: why", "EINVAL" for a pattern
 * regcomp refuses. One compilation for the whole list. */
static int l_regex_find(lua_State *L) {
  size_t len;
  const char *pattern = luaL_checklstring(L, 1, &len);
  luaL_checktype(L, 2, LUA_TTABLE);
  regex_t re;
  int rc = strlen(pattern) != len ? -1 : regcomp(&re, pattern, REG_EXTENDED | REG_NOSUB);
  if (rc != 0) {
    char why[256] = "a NUL byte in the pattern";
    if (rc > 0) regerror(rc, &re, why, sizeof why);
    lua_pushnil(L);
    lua_pushfstring(L, "EINVAL: %s", why);
    lua_pushliteral(L, "EINVAL");
    return 3;
  }
  size_t n = lua_objlen(L, 2);
  lua_createtable(L, (int)n, 0);
  for (size_t i = 1; i <= n; i++) {
    lua_rawgeti(L, 2, (int)i);
    const char *s = lua_tostring(L, -1);
    int hit = s != NULL && regexec(&re, s, 0, NULL, 0) == 0;
    lua_pop(L, 1);
    lua_pushboolean(L, hit);
    lua_rawseti(L, -2, (int)i);
  }
  regfree(&re);
  return 1;
}

static const luaL_Reg funcs[] = {{"regex_find", l_regex_find}, {NULL, NULL}};

void orch_regex_lua_register(lua_State *L) { luaL_register(L, NULL, funcs); }
