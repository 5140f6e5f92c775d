/* l_markov_mix.c -- the C half of plume.markov.mixture_fit (stdlib/plume/markov.lua holds the public API):
** converts 1-based trajectories and actions, runs runtime/markov_mix.c, and keeps the fit in a userdata for
** classify. */
#include "lutil.h"

#include <string.h>

#define MM_META "plume.markov_mixture"
#define FN "markov.mixture_fit"

typedef struct l_mm {
    plm_mm_fit fit;
} l_mm;

static int l_mm_gc(lua_State *L)
{
    l_mm *u = luaL_checkudata(L, 1, MM_META);
    plm_markov_mix_free(&u->fit);
    return 0;
}

/* A list of 1-based integers in 1..hi at idx -> 0-based ints; pushes the owner. */
static int *read_ints(lua_State *L, int idx, int hi, const char *what, size_t pos, size_t *n)
{
    size_t i;
    int *x;
    idx = lua_absindex(L, idx);
    if (lua_type(L, idx) != LUA_TTABLE) luaL_error(L, "%s: %s %d must be a list (got %s)", FN, what, (int)pos, luaL_typename(L, idx));
    *n = (size_t)lua_rawlen(L, idx);
    x = plm_l_scratch(L, (*n ? *n : 1) * sizeof *x);
    for (i = 0; i < *n; i++) {
        int ok;
        lua_Integer v;
        lua_rawgeti(L, idx, (lua_Integer)i + 1);
        v = lua_tointegerx(L, -1, &ok);
        lua_pop(L, 1);
        if (!ok || v < 1 || v > hi)
            luaL_error(L, "%s: %s %d, entry %d is %s, but it must be an integer in 1..%d", FN, what, (int)pos, (int)i + 1,
                       ok ? lua_pushfstring(L, "%d", (int)v) : "not an integer", hi);
        x[i] = (int)v - 1;
    }
    return x;
}

/* plume._markov_mixture_fit(trajs, actions|nil, S, A, K, iters, smooth, init, restarts, seed) -> userdata */
static int l_mm_fit(lua_State *L)
{
    plm_mm_data d;
    plm_mm_opts o;
    size_t n, len;
    int **s, **a = NULL, hold;
    size_t *lens;
    l_mm *u;
    plm_ctx ctx;
    luaL_checktype(L, 1, LUA_TTABLE);
    plm_mm_defaults(&o);
    d.S = (int)luaL_checkinteger(L, 3);
    d.A = (int)luaL_checkinteger(L, 4);
    o.K = (int)luaL_checkinteger(L, 5);
    o.iters = (int)luaL_checkinteger(L, 6);
    o.smooth = luaL_checknumber(L, 7);
    o.init = strcmp(luaL_checkstring(L, 8), "random") == 0 ? PLM_MM_RANDOM : PLM_MM_SPECTRAL;
    o.restarts = (int)luaL_checkinteger(L, 9);
    o.seed = (uint64_t)luaL_checkinteger(L, 10);
    d.N = (size_t)lua_rawlen(L, 1);
    s = plm_l_scratch(L, (d.N ? d.N : 1) * sizeof *s);
    lens = plm_l_scratch(L, (d.N ? d.N : 1) * sizeof *lens);
    lua_newtable(L);   /* owners of the converted arrays */
    hold = lua_gettop(L);
    if (!lua_isnoneornil(L, 2)) {
        luaL_checktype(L, 2, LUA_TTABLE);
        if ((size_t)lua_rawlen(L, 2) != d.N)
            return luaL_error(L, "%s: actions has %d lists, but there are %d trajectories", FN, (int)lua_rawlen(L, 2), (int)d.N);
        a = plm_l_scratch(L, (d.N ? d.N : 1) * sizeof *a);
        lua_rawseti(L, hold, 0);
    }
    for (n = 0; n < d.N; n++) {
        lua_rawgeti(L, 1, (lua_Integer)n + 1);
        s[n] = read_ints(L, -1, d.S, "trajectory", n + 1, &lens[n]);
        lua_rawseti(L, hold, (lua_Integer)(2 * n + 1));
        lua_pop(L, 1);
        if (a) {
            lua_rawgeti(L, 2, (lua_Integer)n + 1);
            a[n] = read_ints(L, -1, d.A, "actions of trajectory", n + 1, &len);
            lua_rawseti(L, hold, (lua_Integer)(2 * n + 2));
            lua_pop(L, 1);
            if (lens[n] > 1 && len < lens[n] - 1)
                return luaL_error(L, "%s: trajectory %d has %d states but %d actions (need %d, one per step)", FN, (int)n + 1,
                                  (int)lens[n], (int)len, (int)lens[n] - 1);
        }
    }
    d.s = (const int *const *)s;
    d.a = (const int *const *)a;
    d.len = lens;
    u = lua_newuserdatauv(L, sizeof *u, 0);
    memset(&u->fit, 0, sizeof u->fit);
    luaL_setmetatable(L, MM_META);
    if (plm_markov_mix_fit(&ctx, &d, &o, &u->fit)) return plm_l_fail(L, &ctx);
    return 1;
}

/* plume._markov_mixture_info(ud) -> {P = {k -> {a -> S x S}}, w, labels, cluster, resp, loglik, iters} */
static int l_mm_info(lua_State *L)
{
    l_mm *u = luaL_checkudata(L, 1, MM_META);
    const plm_mm_fit *f = &u->fit;
    int k, a, s2, s;
    size_t n;
    lua_createtable(L, 0, 8);
    lua_createtable(L, f->K, 0);
    for (k = 0; k < f->K; k++) {
        lua_createtable(L, f->A, 0);
        for (a = 0; a < f->A; a++) {
            lua_createtable(L, f->S, 0);
            for (s = 0; s < f->S; s++) {
                lua_createtable(L, f->S, 0);
                for (s2 = 0; s2 < f->S; s2++) {
                    lua_pushnumber(L, f->P[(((size_t)k * f->S + s) * f->A + a) * f->S + s2]);
                    lua_rawseti(L, -2, s2 + 1);
                }
                lua_rawseti(L, -2, s + 1);
            }
            lua_rawseti(L, -2, a + 1);
        }
        lua_rawseti(L, -2, k + 1);
    }
    lua_setfield(L, -2, "P");
    plm_l_pushvec(L, f->w, (size_t)f->K);
    lua_setfield(L, -2, "weights");
    lua_createtable(L, (int)f->N, 0);
    for (n = 0; n < f->N; n++) {
        lua_pushinteger(L, f->labels[n] + 1);
        lua_rawseti(L, -2, (lua_Integer)n + 1);
    }
    lua_setfield(L, -2, "labels");
    lua_createtable(L, (int)f->N, 0);
    for (n = 0; n < f->N; n++) {
        lua_pushinteger(L, f->cluster[n] + 1);
        lua_rawseti(L, -2, (lua_Integer)n + 1);
    }
    lua_setfield(L, -2, "clusters");
    plm_l_pushmat(L, f->resp, f->N, (size_t)f->K);
    lua_setfield(L, -2, "posterior");
    lua_pushnumber(L, f->loglik);
    lua_setfield(L, -2, "loglik");
    lua_pushinteger(L, f->iters);
    lua_setfield(L, -2, "iters");
    return 1;
}

/* plume._markov_mixture_classify(ud, traj, actions|nil) -> label, posterior */
static int l_mm_classify(lua_State *L)
{
    l_mm *u = luaL_checkudata(L, 1, MM_META);
    size_t len, na = 0;
    int *s, *a = NULL, label;
    double *post;
    plm_ctx ctx;
    s = read_ints(L, 2, u->fit.S, "trajectory", 1, &len);
    if (!lua_isnoneornil(L, 3)) {
        a = read_ints(L, 3, u->fit.A, "actions of trajectory", 1, &na);
        if (len > 1 && na < len - 1) return luaL_error(L, "mixture:classify: %d states need %d actions (got %d)", (int)len, (int)len - 1, (int)na);
    } else if (u->fit.A > 1)
        return luaL_error(L, "mixture:classify: this mixture has actions: give them as the second argument");
    post = plm_l_scratch(L, (size_t)u->fit.K * sizeof *post);
    if (plm_markov_mix_classify(&ctx, &u->fit, s, a, len, post, &label)) return plm_l_fail(L, &ctx);
    lua_pushinteger(L, label + 1);
    plm_l_pushvec(L, post, (size_t)u->fit.K);
    return 2;
}

void plm_l_open_markov_mix(lua_State *L)
{
    luaL_newmetatable(L, MM_META);
    lua_pushcfunction(L, l_mm_gc);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);
    lua_pushcfunction(L, l_mm_fit);
    lua_setfield(L, -2, "_markov_mixture_fit");
    lua_pushcfunction(L, l_mm_info);
    lua_setfield(L, -2, "_markov_mixture_info");
    lua_pushcfunction(L, l_mm_classify);
    lua_setfield(L, -2, "_markov_mixture_classify");
}
