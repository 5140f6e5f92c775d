/* l_draws.c -- the draws object seen from Lua (runtime/draws.h), wrapped by lang/plume/_results.lua as the
** posterior: columns, one column's draws, log weights, summaries, shape, output in plume's CSV, CmdStan's CSV
** and ArviZ's JSON (runtime/draws_io.h), and plume._read_draws, which reads them back. */
#include "lmodel.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

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
            if (plm_draws_is_absent(v[i])) lua_pushboolean(L, 0);   /* absent in this draw: false keeps the array dense */
            else lua_pushnumber(L, v[i]);                          /* a NaN value stays NaN */
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

/* The run's settings from a Lua table {method=, model=, seed=, samples=, warmup=, thin=} (absent fields unknown). */
static void checkmeta(lua_State *L, int idx, plm_draws_meta *m)
{
    plm_draws_meta_clear(m);
    if (!lua_istable(L, idx)) return;
    if (lua_getfield(L, idx, "method") == LUA_TSTRING) snprintf(m->method, sizeof m->method, "%s", lua_tostring(L, -1));
    if (lua_getfield(L, idx, "model") == LUA_TSTRING) snprintf(m->model, sizeof m->model, "%s", lua_tostring(L, -1));
    if (lua_getfield(L, idx, "seed") == LUA_TNUMBER) m->seed = (long long)lua_tointeger(L, -1), m->has_seed = 1;
    if (lua_getfield(L, idx, "samples") == LUA_TNUMBER) m->samples = (long)lua_tointeger(L, -1);
    if (lua_getfield(L, idx, "warmup") == LUA_TNUMBER) m->warmup = (long)lua_tointeger(L, -1);
    if (lua_getfield(L, idx, "thin") == LUA_TNUMBER) m->thin = (long)lua_tointeger(L, -1);
    lua_pop(L, 6);
}

static void pushmeta(lua_State *L, const plm_draws_meta *m)
{
    lua_createtable(L, 0, 6);
    if (m->method[0]) lua_pushstring(L, m->method), lua_setfield(L, -2, "method");
    if (m->model[0]) lua_pushstring(L, m->model), lua_setfield(L, -2, "model");
    if (m->has_seed) lua_pushinteger(L, (lua_Integer)m->seed), lua_setfield(L, -2, "seed");
    if (m->samples >= 0) lua_pushinteger(L, m->samples), lua_setfield(L, -2, "samples");
    if (m->warmup >= 0) lua_pushinteger(L, m->warmup), lua_setfield(L, -2, "warmup");
    if (m->thin >= 0) lua_pushinteger(L, m->thin), lua_setfield(L, -2, "thin");
}

enum { OUT_CSV, OUT_CMDSTAN, OUT_JSON };

/* D:write_csv(path) / D:write_cmdstan(path, chain, meta) / D:write_json(path, meta) */
static int write_file(lua_State *L, int how)
{
    static const char *const fn[] = {"write_csv", "write_csv", "write_json"};
    plm_draws *D = checkdraws(L, 1);
    const char *path = luaL_checkstring(L, 2);
    int chain = how == OUT_CMDSTAN ? (int)luaL_checkinteger(L, 3) - 1 : 0;
    plm_draws_meta m;
    plm_ctx ctx;
    FILE *f;
    plm_status st;
    plm_ctx_clear(&ctx);
    checkmeta(L, how == OUT_CMDSTAN ? 4 : 3, &m);
    if (!plm_l_mpi_writes(L, path)) return 0;   /* under mpirun, rank 0 writes */
    if (!(f = fopen(path, "w"))) return luaL_error(L, "%s: cannot open '%s' for writing", fn[how], path);
    st = how == OUT_CSV ? plm_draws_write_csv(&ctx, D, f)
       : how == OUT_CMDSTAN ? plm_draws_write_cmdstan(&ctx, D, chain, &m, f)
       : plm_draws_write_json(&ctx, D, &m, f);
    if (fclose(f) != 0 && !st) st = plm_fail(&ctx, PLM_EIO, "%s: could not finish writing '%s'", fn[how], path);
    if (st) return plm_l_fail(L, &ctx);
    return 0;
}

static int l_draws_write_csv(lua_State *L) { return write_file(L, OUT_CSV); }
static int l_draws_write_cmdstan(lua_State *L) { return write_file(L, OUT_CMDSTAN); }
static int l_draws_write_json(lua_State *L) { return write_file(L, OUT_JSON); }

/* D:lp() -> flat array of each draw's log density (NaN where unknown), or nil when none was recorded */
static int l_draws_lp(lua_State *L)
{
    plm_draws *D = checkdraws(L, 1);
    int c;
    lua_Integer k = 1;
    if (!plm_draws_lp(D, 0)) return 0;
    lua_newtable(L);
    for (c = 0; c < plm_draws_nchains(D); c++) {
        const double *v = plm_draws_lp(D, c);
        size_t i, n = plm_draws_len(D, c);
        for (i = 0; i < n; i++) {
            lua_pushnumber(L, v[i]);
            lua_rawseti(L, -2, k++);
        }
    }
    return 1;
}

/* plume._read_draws(format, path_or_paths) -> draws, meta; format "csv", "cmdstan" (a table of chain files)
** or "json". Errors name the file and line. */
static int l_read_draws(lua_State *L)
{
    const char *fmt = luaL_checkstring(L, 1);
    plm_draws *D = NULL;
    plm_draws_meta m;
    plm_ctx ctx;
    plm_status st;
    plm_ctx_clear(&ctx);
    plm_draws_meta_clear(&m);
    if (strcmp(fmt, "cmdstan") == 0) {
        int n = (int)luaL_len(L, 2), i;
        const char **paths = plm_l_scratch(L, (size_t)(n + 1) * sizeof *paths);
        for (i = 0; i < n; i++) {
            lua_rawgeti(L, 2, i + 1);
            paths[i] = luaL_checkstring(L, -1);   /* kept alive by the table */
            lua_pop(L, 1);
        }
        st = plm_draws_read_cmdstan(&ctx, paths, n, &D, &m);
    } else if (strcmp(fmt, "json") == 0)
        st = plm_draws_read_json(&ctx, luaL_checkstring(L, 2), &D, &m);
    else
        st = plm_draws_read_csv(&ctx, luaL_checkstring(L, 2), &D);
    if (st) return plm_l_fail(L, &ctx);
    plm_l_pushdraws(L, D);
    pushmeta(L, &m);
    return 2;
}

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
        {"summary", l_draws_summary}, {"write_csv", l_draws_write_csv}, {"write_cmdstan", l_draws_write_cmdstan},
        {"write_json", l_draws_write_json}, {"lp", l_draws_lp}, {"shape", l_draws_shape}, {NULL, NULL}};
    plm_l_newmeta(L, PLM_L_DRAWS, dmethods, NULL);
    lua_pop(L, 1);
    lua_pushcfunction(L, l_read_draws);
    lua_setfield(L, -2, "_read_draws");
}
