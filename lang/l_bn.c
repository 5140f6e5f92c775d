/* l_bn.c -- the C half of plume.markov.grid_bn_exact (stdlib/plume/markov.lua exposes it): exact marginals of
** a grid Bayesian network of binary nodes by runtime/markov/bn_exact.c, with 1-based nodes in raster order. */
#include "lutil.h"

#define FN "markov.grid_bn_exact"

/* plume._grid_bn_exact{rows =, cols =, cpt =, evidence =} -> marginals, logz.
** cpt: 4 n probabilities, cpt[4 (v - 1) + 2 up + left + 1] = P(x_v = 1 | up, left); evidence: a table from
** node v (1..n) to 0 or 1 (absent: latent). marginals[v] = P(x_v = 1 | evidence); logz = log P(evidence). */
static int l_grid_bn_exact(lua_State *L)
{
    static const char *const opts[] = {"rows", "cols", "cpt", "evidence", NULL};
    plm_ctx ctx;
    plm_bn_grid g;
    double *cpt, *marg, logz;
    int *ev, n, v;
    luaL_checktype(L, 1, LUA_TTABLE);
    plm_l_checkopts(L, 1, FN, opts);
    g.rows = (int)plm_l_optint(L, 1, FN, "rows", 0);
    g.cols = (int)plm_l_optint(L, 1, FN, "cols", 0);
    if (g.rows < 1 || g.cols < 1 || g.rows > 4096 || g.cols > 4096)
        return luaL_error(L, "%s: rows and cols must be in 1..4096 (got %d x %d)", FN, g.rows, g.cols);
    n = g.rows * g.cols;
    lua_getfield(L, 1, "cpt");
    if (lua_type(L, -1) != LUA_TTABLE) return luaL_error(L, "%s: option 'cpt' must be a list of %d probabilities", FN, 4 * n);
    if ((int)lua_rawlen(L, -1) != 4 * n)
        return luaL_error(L, "%s: cpt has %d entries; a %d x %d grid needs 4 * %d = %d", FN, (int)lua_rawlen(L, -1),
                          g.rows, g.cols, n, 4 * n);
    cpt = plm_l_scratch(L, 4 * (size_t)n * sizeof *cpt);
    for (v = 0; v < 4 * n; v++) {
        lua_rawgeti(L, -2, v + 1);
        if (!lua_isnumber(L, -1)) return luaL_error(L, "%s: cpt[%d] must be a number (got %s)", FN, v + 1, luaL_typename(L, -1));
        cpt[v] = lua_tonumber(L, -1);
        lua_pop(L, 1);
    }
    ev = plm_l_scratch(L, (size_t)n * sizeof *ev);
    for (v = 0; v < n; v++) ev[v] = -1;
    lua_getfield(L, 1, "evidence");
    if (!lua_isnil(L, -1)) {
        if (lua_type(L, -1) != LUA_TTABLE) return luaL_error(L, "%s: option 'evidence' must be a table node -> 0 or 1", FN);
        lua_pushnil(L);
        while (lua_next(L, -2)) {
            int isint, isval;
            lua_Integer k = lua_tointegerx(L, -2, &isint), x = lua_tointegerx(L, -1, &isval);
            if (!isint || k < 1 || k > n) return luaL_error(L, "%s: evidence key must be a node in 1..%d", FN, n);
            if (!isval || (x != 0 && x != 1))
                return luaL_error(L, "%s: evidence[%d] must be 0 or 1", FN, (int)k);
            ev[k - 1] = (int)x;
            lua_pop(L, 1);
        }
    }
    g.cpt = cpt;
    g.evidence = ev;
    marg = plm_l_scratch(L, (size_t)n * sizeof *marg);
    plm_ctx_clear(&ctx);
    if (plm_bn_grid_marginals(&ctx, &g, marg, &logz) != PLM_OK) return plm_l_fail_as(L, &ctx, FN);
    plm_l_pushvec(L, marg, (size_t)n);
    lua_pushnumber(L, logz);
    return 2;
}

void plm_l_open_bn(lua_State *L)
{
    lua_pushcfunction(L, l_grid_bn_exact);
    lua_setfield(L, -2, "_grid_bn_exact");
}
