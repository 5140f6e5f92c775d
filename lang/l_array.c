/* l_array.c -- plume.array: a numeric vector in one block of memory, so large data sets cross between
** Lua and C without a table per element. 1-based from Lua; an optional shape rows x cols (row-major). */
#include "lutil.h"

#include <math.h>
#include <string.h>

plm_l_array *plm_l_newarray(lua_State *L, size_t n)
{
    plm_l_array *a = lua_newuserdatauv(L, sizeof *a + n * sizeof(double), 0);
    a->n = n;
    a->rows = n;
    a->cols = 1;
    a->data = (double *)(a + 1);
    memset(a->data, 0, n * sizeof(double));
    luaL_setmetatable(L, PLM_L_ARRAY);
    return a;
}

plm_l_array *plm_l_toarray(lua_State *L, int idx)
{
    plm_l_array *a = luaL_testudata(L, idx, PLM_L_ARRAY);
    if (a) a->data = (double *)(a + 1);   /* the block never moves, but keep the pointer honest */
    return a;
}

/* plume.array(n [, fill]) | plume.array(table) | plume.array(rows, cols [, fill]) */
static int l_array_new(lua_State *L)
{
    plm_l_array *a;
    size_t i;
    if (lua_type(L, 1) == LUA_TTABLE) {
        size_t n, r, c;
        lua_rawgeti(L, 1, 1);
        if (lua_type(L, -1) == LUA_TTABLE) {      /* a matrix */
            double *x;
            lua_pop(L, 1);
            x = plm_l_checkmat(L, 1, "plume.array", "the matrix", &r, &c);
            a = plm_l_newarray(L, r * c);
            memcpy(a->data, x, r * c * sizeof *x);
            a->rows = r;
            a->cols = c;
            return 1;
        }
        lua_pop(L, 1);
        {
            double *x = plm_l_checkvec(L, 1, "plume.array", "the table", &n, 1);
            a = plm_l_newarray(L, n);
            memcpy(a->data, x, n * sizeof *x);
        }
        return 1;
    }
    {
        lua_Integer n = plm_l_checkint(L, 1, "plume.array", "n");
        lua_Integer cols = 1;
        double fill = 0;
        int shaped = lua_type(L, 2) == LUA_TNUMBER && lua_isinteger(L, 2) && !lua_isnoneornil(L, 3);
        if (shaped) {
            cols = plm_l_checkint(L, 2, "plume.array", "cols");
            fill = plm_l_checknum(L, 3, "plume.array", "fill");
        } else if (!lua_isnoneornil(L, 2))
            fill = plm_l_checknum(L, 2, "plume.array", "fill");
        /* compared in doubles, so n * cols cannot wrap before the check */
        if (n < 0) return luaL_error(L, "plume.array: n must be >= 0 (got %I)", n);
        if (cols < 1) return luaL_error(L, "plume.array: cols must be >= 1 (got %I)", cols);
        if ((double)n * (double)cols > 1e10)
            return luaL_error(L, "plume.array: %I x %I elements is over the limit of 1e10 (80 GB of doubles)", n, cols);
        a = plm_l_newarray(L, (size_t)(n * cols));
        a->rows = (size_t)n;
        a->cols = (size_t)cols;
        for (i = 0; i < a->n; i++) a->data[i] = fill;
    }
    return 1;
}

static int l_array_index(lua_State *L)
{
    plm_l_array *a = luaL_checkudata(L, 1, PLM_L_ARRAY);
    if (lua_type(L, 2) == LUA_TNUMBER) {
        lua_Integer i = lua_tointeger(L, 2);
        if (i >= 1 && (size_t)i <= a->n) {
            lua_pushnumber(L, a->data[i - 1]);
            return 1;
        }
        lua_pushnil(L);
        return 1;
    }
    luaL_getmetatable(L, PLM_L_ARRAY);
    lua_getfield(L, -1, "methods");
    lua_pushvalue(L, 2);
    lua_rawget(L, -2);
    return 1;
}

static int l_array_newindex(lua_State *L)
{
    plm_l_array *a = luaL_checkudata(L, 1, PLM_L_ARRAY);
    lua_Integer i = plm_l_checkint(L, 2, "plume.array", "index");
    if (i < 1 || (size_t)i > a->n)
        return luaL_error(L, "plume.array: index %I out of range 1..%I", i, (lua_Integer)a->n);
    a->data[i - 1] = plm_l_checknum(L, 3, "plume.array", "value");
    return 0;
}

static int l_array_len(lua_State *L)
{
    plm_l_array *a = luaL_checkudata(L, 1, PLM_L_ARRAY);
    lua_pushinteger(L, (lua_Integer)a->n);
    return 1;
}

static int l_array_tostring(lua_State *L)
{
    plm_l_array *a = luaL_checkudata(L, 1, PLM_L_ARRAY);
    luaL_Buffer b;
    size_t i, show = a->n <= 8 ? a->n : 6;
    luaL_buffinit(L, &b);
    if (a->cols > 1)
        lua_pushfstring(L, "plume.array(%I x %I) {", (lua_Integer)a->rows, (lua_Integer)a->cols);
    else
        lua_pushfstring(L, "plume.array(%I) {", (lua_Integer)a->n);
    luaL_addvalue(&b);
    for (i = 0; i < show; i++) {
        char num[32];
        snprintf(num, sizeof num, "%s%.6g", i ? ", " : "", a->data[i]);
        luaL_addstring(&b, num);
    }
    if (show < a->n) {
        char num[40];
        snprintf(num, sizeof num, ", ..., %.6g", a->data[a->n - 1]);
        luaL_addstring(&b, num);
    }
    luaL_addstring(&b, "}");
    luaL_pushresult(&b);
    return 1;
}

static int l_array_totable(lua_State *L)
{
    plm_l_array *a = luaL_checkudata(L, 1, PLM_L_ARRAY);
    if (a->cols > 1)
        plm_l_pushmat(L, a->data, a->rows, a->cols);
    else
        plm_l_pushvec(L, a->data, a->n);
    return 1;
}

static int l_array_shape(lua_State *L)
{
    plm_l_array *a = luaL_checkudata(L, 1, PLM_L_ARRAY);
    lua_pushinteger(L, (lua_Integer)a->rows);
    lua_pushinteger(L, (lua_Integer)a->cols);
    return 2;
}

static int l_array_sum(lua_State *L)
{
    plm_l_array *a = luaL_checkudata(L, 1, PLM_L_ARRAY);
    double s = 0;
    size_t i;
    for (i = 0; i < a->n; i++) s += a->data[i];
    lua_pushnumber(L, s);
    return 1;
}

void plm_l_open_array(lua_State *L)
{
    static const luaL_Reg methods[] = {
        {"totable", l_array_totable}, {"shape", l_array_shape}, {"sum", l_array_sum}, {NULL, NULL}};
    static const luaL_Reg meta[] = {
        {"__index", l_array_index}, {"__newindex", l_array_newindex}, {"__len", l_array_len},
        {"__tostring", l_array_tostring}, {NULL, NULL}};
    luaL_newmetatable(L, PLM_L_ARRAY);
    luaL_setfuncs(L, meta, 0);
    luaL_newlib(L, methods);
    lua_setfield(L, -2, "methods");
    lua_pop(L, 1);
    lua_pushcfunction(L, l_array_new);
    lua_setfield(L, -2, "array");
}
