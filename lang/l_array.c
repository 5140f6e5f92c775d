/* l_array.c -- plume.array: a numeric vector in one block of memory, so large data sets cross between
** Lua and C without a table per element. 1-based from Lua; an optional shape rows x cols (row-major). */
#include "lutil.h"
#include "larray.h"

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

double *plm_l_checkvec(lua_State *L, int idx, const char *fn, const char *arg, size_t *n, int allow_nan)
{
    plm_l_array *a;
    double *x;
    size_t i, len;
    idx = lua_absindex(L, idx);
    if ((a = plm_l_toarray(L, idx))) {
        lua_pushvalue(L, idx);
        *n = a->n;
        return a->data;
    }
    if (lua_type(L, idx) != LUA_TTABLE) luaL_error(L, "%s: %s must be an array of numbers (got %s)", fn, arg, luaL_typename(L, idx));
    len = (size_t)luaL_len(L, idx);
    x = plm_l_scratch(L, len * sizeof *x);
    for (i = 0; i < len; i++) {
        int t = lua_geti(L, idx, (lua_Integer)i + 1);
        if (t == LUA_TNUMBER)
            x[i] = lua_tonumber(L, -1);
        else if (t == LUA_TNIL && allow_nan)
            x[i] = NAN;
        else
            luaL_error(L, "%s: %s[%d] must be a number (got %s)", fn, arg, (int)i + 1, luaL_typename(L, -1));
        lua_pop(L, 1);
    }
    *n = len;
    return x;
}

double *plm_l_checkmat(lua_State *L, int idx, const char *fn, const char *arg, size_t *rows, size_t *cols)
{
    plm_l_array *a;
    double *x;
    size_t i, j, r, c = 0;
    idx = lua_absindex(L, idx);
    if ((a = plm_l_toarray(L, idx))) {
        lua_pushvalue(L, idx);
        *rows = a->rows;
        *cols = a->cols;
        return a->data;
    }
    if (lua_type(L, idx) != LUA_TTABLE) luaL_error(L, "%s: %s must be a matrix (a table of rows) (got %s)", fn, arg, luaL_typename(L, idx));
    r = (size_t)luaL_len(L, idx);
    if (r > 0) {
        if (lua_geti(L, idx, 1) != LUA_TTABLE)
            luaL_error(L, "%s: %s must be a matrix (a table of rows); row 1 is a %s", fn, arg, luaL_typename(L, -1));
        c = (size_t)luaL_len(L, -1);
        lua_pop(L, 1);
    }
    x = plm_l_scratch(L, r * c * sizeof *x);
    for (i = 0; i < r; i++) {
        size_t ci;
        if (lua_geti(L, idx, (lua_Integer)i + 1) != LUA_TTABLE)
            luaL_error(L, "%s: %s row %d must be a table (got %s)", fn, arg, (int)i + 1, luaL_typename(L, -1));
        ci = (size_t)luaL_len(L, -1);
        if (ci != c)
            luaL_error(L, "%s: %s row %d has %d entries, expected %d", fn, arg, (int)i + 1, (int)ci, (int)c);
        for (j = 0; j < c; j++) {
            if (lua_geti(L, -1, (lua_Integer)j + 1) != LUA_TNUMBER)
                luaL_error(L, "%s: %s[%d][%d] must be a number (got %s)", fn, arg, (int)i + 1, (int)j + 1,
                           luaL_typename(L, -1));
            x[i * c + j] = lua_tonumber(L, -1);
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
    }
    *rows = r;
    *cols = c;
    return x;
}
