/* l_kernel_show.c -- how a plume.kernel prints: its kind, sites and options, and its children for composites
** ("plume.kernel cycle{gibbs{z}, nuts}"). */
#include "lkernel.h"

#include <lauxlib.h>
#include <string.h>

/* "nuts{mu, sigma; max_depth = 8}", "cycle{gibbs{z}, nuts}" */
static void describe(lua_State *L, int idx, luaL_Buffer *b)
{
    static const char *const keys[] = {"proposal", "width", "steps", "step_size", "max_depth", "metric", NULL};
    int i, n, first = 1;
    idx = lua_absindex(L, idx);
    if (lua_isfunction(L, idx)) {
        luaL_addstring(b, "function");
        return;
    }
    lua_getfield(L, idx, "kind");
    luaL_addvalue(b);
    lua_getfield(L, idx, "kind");
    if (strcmp(lua_tostring(L, -1), "cycle") == 0 || strcmp(lua_tostring(L, -1), "mixture") == 0 ||
        strcmp(lua_tostring(L, -1), "rep") == 0) {
        int mix = strcmp(lua_tostring(L, -1), "mixture") == 0;
        lua_pop(L, 1);
        luaL_addchar(b, '{');
        lua_getfield(L, idx, "kernels");
        n = (int)luaL_len(L, -1);
        for (i = 1; i <= n; i++) {
            if (i > 1) luaL_addstring(b, ", ");
            lua_geti(L, -1, i);
            describe(L, -1, b);
            lua_pop(L, 1);
            if (mix) {
                lua_getfield(L, idx, "weights");
                lua_geti(L, -1, i);
                lua_pushfstring(L, ": %f", (lua_Number)lua_tonumber(L, -1));
                luaL_addvalue(b);
                lua_pop(L, 2);
            }
        }
        lua_pop(L, 1);
        if (lua_getfield(L, idx, "n") != LUA_TNIL) {
            lua_pushfstring(L, " x %I", (lua_Integer)lua_tointeger(L, -1));
            luaL_addvalue(b);
        }
        lua_pop(L, 1);
        luaL_addchar(b, '}');
        return;
    }
    lua_pop(L, 1);
    luaL_addchar(b, '{');
    if (lua_getfield(L, idx, "library") == LUA_TSTRING) {   /* learned: its library and motifs */
        luaL_addstring(b, "library = ");
        luaL_addvalue(b);
        if (lua_getfield(L, idx, "motifs") == LUA_TTABLE)
            for (i = 1; i <= (int)luaL_len(L, -1); i++) {
                luaL_addstring(b, i == 1 ? "; motifs = " : ", ");
                lua_geti(L, -1, i);
                luaL_addvalue(b);
            }
        lua_pop(L, 1);
        luaL_addchar(b, '}');
        return;
    }
    lua_pop(L, 1);
    if (lua_getfield(L, idx, "sites") == LUA_TTABLE) {
        n = (int)luaL_len(L, -1);
        for (i = 1; i <= n; i++) {
            if (i > 1) luaL_addstring(b, ", ");
            lua_geti(L, -1, i);
            luaL_addvalue(b);
        }
        first = 0;
    } else {
        int all;
        lua_getfield(L, idx, "_build");
        all = lua_isuserdata(L, -1) && ((const site_builder *)lua_touserdata(L, -1))->discrete;
        lua_pop(L, 1);
        luaL_addstring(b, all ? "all sites" : "all continuous sites");
        first = 0;
    }
    lua_pop(L, 1);
    for (i = 0; keys[i]; i++)
        if (lua_getfield(L, idx, keys[i]) != LUA_TNIL) {
            luaL_addstring(b, first ? "" : "; ");
            first = 0;
            lua_pushfstring(L, "%s = %s", keys[i], luaL_tolstring(L, -1, NULL));
            lua_remove(L, -2);
            lua_remove(L, -2);
            luaL_addvalue(b);
        } else
            lua_pop(L, 1);
    luaL_addchar(b, '}');
}

int plm_l_kernel_tostring(lua_State *L)
{
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    luaL_addstring(&b, "plume.kernel ");
    describe(L, 1, &b);
    luaL_pushresult(&b);
    return 1;
}
