/* binding.c: what the Lua bindings of orch.core share that is too long to be
 * inline in binding.h. */
#include "orch/binding.h"

#include <string.h>

char **orch_lua_string_list(lua_State *L, int idx, const char *what, int *nul_at) {
  if (lua_type(L, idx) != LUA_TTABLE) luaL_error(L, "%s: table expected", what);
  size_t n = lua_objlen(L, idx);
  char **v = lua_newuserdata(L, (n + 1) * sizeof *v); /* freed by GC */
  if (nul_at) *nul_at = 0;
  for (size_t i = 0; i < n; i++) {
    lua_rawgeti(L, idx, (int)i + 1);
    if (lua_type(L, -1) != LUA_TSTRING)
      luaL_error(L, "%s[%d]: string expected", what, (int)i + 1);
    size_t len;
    v[i] = (char *)lua_tolstring(L, -1, &len);
    if (nul_at && !*nul_at && strlen(v[i]) != len) *nul_at = (int)i + 1;
    lua_pop(L, 1); /* the string stays alive in the table */
  }
  v[n] = NULL;
  return v;
}
