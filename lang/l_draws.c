/* l_draws.c -- the draws object seen from Lua (runtime/draws.h), wrapped by lang/plume/_results.lua as the
** posterior: columns, one column's draws, log weights, summaries, shape, CSV and JSON output. */
#include "lmodel.h"

#include <math.h>
#include <stdio.h>

static plm_draws *checkdraws(lua_State *L, int idx)
{
    return plm_l_checkobj(L, idx, PLM_L_DRAWS, "draws", "self");
}

/* D:columns() -> {names} */
static int l_draws_columns(lua_State *L)
{
    plm_draws *D = checkdraws(L, 1);
    int i, n = plm_draws_ncols(D);
    lua_createtable(L, n, 0);
    for (i = 0; i < n; i++) {
        lua_pushstring(L, plm_draws_name(D, i));
        lua_rawseti(L, -2, i + 1);
    }
    return 1;
}

/* D:column(name) -> flat array of all chains' draws (nil when no such column) */
static int l_draws_column(lua_State *L)
{
    plm_draws *D = checkdraws(L, 1);
    int col = plm_draws_col(D, luaL_checkstring(L, 2), 0), c;
    lua_Integer k = 1;
    if (col < 0) return 0;
    lua_newtable(L);
    for (c = 0; c < plm_draws_nchains(D); c++) {
        const double *v = plm_draws_chain(D, col, c);
        size_t i, n = plm_draws_len(D, c);
        for (i = 0; i < n; i++) {
            if (isnan(v[i])) lua_pushboolean(L, 0);   /* absent in this draw: false keeps the array dense */
            else lua_pushnumber(L, v[i]);
            lua_rawseti(L, -2, k++);
        }
    }
    return 1;
}

/* D:logw() -> flat array of log weights */
static int l_draws_logw(lua_State *L)
{
    plm_draws *D = checkdraws(L, 1);
    int c;
    lua_Integer k = 1;
    lua_newtable(L);
    for (c = 0; c < plm_draws_nchains(D); c++) {
        const double *v = plm_draws_logw(D, c);
        size_t i, n = plm_draws_len(D, c);
        for (i = 0; i < n; i++) {
            lua_pushnumber(L, v[i]);
            lua_rawseti(L, -2, k++);
        }
    }
    return 1;
}

/* D:summary(name) -> {mean=, sd=, ...} */
static int l_draws_summary(lua_State *L)
{
    plm_draws *D = checkdraws(L, 1);
    const char *name = luaL_checkstring(L, 2);
    int col = plm_draws_col(D, name, 0);
    plm_summary s;
    plm_ctx ctx;
    plm_ctx_clear(&ctx);
    if (col < 0) return luaL_error(L, "summary: no site named '%s'", name);
    if (plm_draws_summary(&ctx, D, col, &s)) return plm_l_fail(L, &ctx);
    lua_createtable(L, 0, 10);
#define F(k) (lua_pushnumber(L, s.k), lua_setfield(L, -2, #k))
    F(mean); F(sd); F(q5); F(q50); F(q95); F(mcse_mean); F(ess_bulk); F(ess_tail); F(rhat);
#undef F
    lua_pushinteger(L, (lua_Integer)s.n);
    lua_setfield(L, -2, "n");
    {
        lua_Integer missing = 0;
        int c;
        size_t i;
        for (c = 0; c < plm_draws_nchains(D); c++) {
            const double *v = plm_draws_chain(D, col, c);
            for (i = 0; i < plm_draws_len(D, c); i++) missing += isnan(v[i]);
        }
        lua_pushinteger(L, missing);
        lua_setfield(L, -2, "missing");
    }
    return 1;
}

static int write_file(lua_State *L, int json)
{
    plm_draws *D = checkdraws(L, 1);
    const char *path = luaL_checkstring(L, 2);
    plm_ctx ctx;
    FILE *f = fopen(path, "w");
    plm_status st;
    plm_ctx_clear(&ctx);
    if (!f) return luaL_error(L, "%s: cannot open '%s' for writing", json ? "write_json" : "write_csv", path);
    st = json ? plm_draws_write_json(&ctx, D, f) : plm_draws_write_csv(&ctx, D, f);
    if (fclose(f) != 0 && !st) st = plm_fail(&ctx, PLM_EIO, "%s: could not finish writing '%s'", json ? "write_json" : "write_csv", path);
    if (st) return plm_l_fail(L, &ctx);
    return 0;
}

static int l_draws_write_csv(lua_State *L) { return write_file(L, 0); }
static int l_draws_write_json(lua_State *L) { return write_file(L, 1); }

static int l_draws_shape(lua_State *L)
{
    plm_draws *D = checkdraws(L, 1);
    lua_pushinteger(L, plm_draws_nchains(D));
    lua_pushinteger(L, (lua_Integer)plm_draws_len(D, 0));
    lua_pushboolean(L, plm_draws_weighted(D));
    {
        lua_Integer total = 0;
        int c;
        for (c = 0; c < plm_draws_nchains(D); c++) total += (lua_Integer)plm_draws_len(D, c);
        lua_pushinteger(L, total);
    }
    return 4;
}

void plm_l_open_draws(lua_State *L)
{
    static const luaL_Reg dmethods[] = {
        {"columns", l_draws_columns}, {"column", l_draws_column}, {"logw", l_draws_logw},
        {"summary", l_draws_summary}, {"write_csv", l_draws_write_csv}, {"write_json", l_draws_write_json},
        {"shape", l_draws_shape}, {NULL, NULL}};
    plm_l_newmeta(L, PLM_L_DRAWS, dmethods, NULL);
    lua_pop(L, 1);
}
