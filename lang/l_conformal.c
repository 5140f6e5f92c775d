/* l_conformal.c -- the C half of plume.conformal (stdlib/plume/conformal.lua holds the public API):
** plume._conformal_hmm (the HMM's own score) and plume._conformal_blocks (any per-step scores). Symbols and
** states are 1-based here and 0-based in runtime/conformal.h. */
#include "lutil.h"
#include "larray.h"

#include <math.h>
#include <string.h>

#define FN "conformal.hmm"

/* Observation t (1-based pos) of h's family from the Lua value on top of the stack into y (h->D doubles). */
static void read_one(lua_State *L, const plm_hmm *h, const char *arg, size_t pos, double *y)
{
    int t = lua_type(L, -1), i;
    if (h->emit == PLM_HMM_MVNORMAL) {
        if (t != LUA_TTABLE || luaL_len(L, -1) != h->D)
            luaL_error(L, "%s: %s[%d] must be a vector of %d numbers", FN, arg, (int)pos, h->D);
        for (i = 0; i < h->D; i++) {
            lua_rawgeti(L, -1, i + 1);
            y[i] = plm_l_checknum(L, -1, FN, arg);
            lua_pop(L, 1);
        }
        return;
    }
    if (t == LUA_TBOOLEAN && h->emit == PLM_HMM_BERNOULLI) {
        y[0] = lua_toboolean(L, -1);
        return;
    }
    if (t != LUA_TNUMBER) luaL_error(L, "%s: %s[%d] must be a number (got %s)", FN, arg, (int)pos, lua_typename(L, t));
    y[0] = lua_tonumber(L, -1);
    if (h->emit == PLM_HMM_CATEGORICAL) {
        if (y[0] != floor(y[0]) || y[0] < 1 || y[0] > h->M)
            luaL_error(L, "%s: %s[%d] is %s, but there are %d symbols (1..%d)", FN, arg, (int)pos, lua_tostring(L, -1),
                       h->M, h->M);
        y[0] -= 1;
    }
}

/* A Lua list of 1-based integers in 1..K at idx -> 0-based ints (pushes the owner). */
static int *check_states(lua_State *L, int idx, int K, const char *arg, size_t *n)
{
    size_t i;
    int *x;
    idx = lua_absindex(L, idx);
    luaL_checktype(L, idx, LUA_TTABLE);
    *n = (size_t)luaL_len(L, idx);
    x = plm_l_scratch(L, (*n ? *n : 1) * sizeof *x);
    for (i = 0; i < *n; i++) {
        int ok;
        lua_Integer v;
        lua_rawgeti(L, idx, (lua_Integer)i + 1);
        v = lua_tointegerx(L, -1, &ok);
        lua_pop(L, 1);
        if (!ok || v < 1 || v > K)
            luaL_error(L, "%s: %s[%d] must be a state 1..%d", FN, arg, (int)i + 1, K);
        x[i] = (int)v - 1;
    }
    return x;
}

static int target_of(lua_State *L, int idx)
{
    const char *s = luaL_checkstring(L, idx);
    if (strcmp(s, "next") == 0) return PLM_CONFORMAL_NEXT;
    if (strcmp(s, "state") == 0) return PLM_CONFORMAL_STATE;
    return luaL_error(L, "%s: option 'target' must be \"next\" or \"state\" (got \"%s\")", FN, s);
}

static int method_of(lua_State *L, int idx)
{
    const char *s = luaL_checkstring(L, idx);
    if (strcmp(s, "blocks") == 0) return PLM_CONFORMAL_BLOCKS;
    if (strcmp(s, "split") == 0) return PLM_CONFORMAL_SPLIT;
    return luaL_error(L, "%s: option 'method' must be \"blocks\" or \"split\" (got \"%s\")", FN, s);
}

/* plume._conformal_hmm(h, obs, states|nil, target, method, u) -> p-values (symbols or states, 1-based) */
static int l_conformal_hmm(lua_State *L)
{
    plm_hmm *h = plm_l_checkobj(L, 1, "plume.hmm", FN, "h");
    int target, method, *x = NULL;
    size_t T, t, nx = 0, np;
    double *y, *p, u;
    plm_ctx ctx;
    luaL_checktype(L, 2, LUA_TTABLE);
    target = target_of(L, 4);
    method = method_of(L, 5);
    u = luaL_checknumber(L, 6);
    T = (size_t)luaL_len(L, 2);
    if (T == 0) return luaL_error(L, "%s: obs is empty", FN);
    y = plm_l_scratch(L, T * (size_t)h->D * sizeof *y);
    for (t = 0; t < T; t++) {
        lua_rawgeti(L, 2, (lua_Integer)t + 1);
        read_one(L, h, "obs", t + 1, y + t * (size_t)h->D);
        lua_pop(L, 1);
    }
    if (!lua_isnoneornil(L, 3)) {
        size_t want = target == PLM_CONFORMAL_STATE ? T - 1 : T;
        x = check_states(L, 3, h->K, "states", &nx);
        if (nx != want)
            return luaL_error(L, "%s: states has %d entries, but %s %d (%s)", FN, (int)nx,
                              target == PLM_CONFORMAL_STATE ? "target 'state' needs #obs - 1 =" : "obs has", (int)want,
                              target == PLM_CONFORMAL_STATE ? "the last observation is the new one" : "one state per observation");
    }
    np = target == PLM_CONFORMAL_STATE ? (size_t)h->K : h->emit == PLM_HMM_BERNOULLI ? 2 : (size_t)h->M;
    p = plm_l_scratch(L, (np ? np : 1) * sizeof *p);
    if (plm_conformal_hmm(&ctx, h, T, y, x, target, method, u, p)) return plm_l_fail(L, &ctx);
    plm_l_pushvec(L, p, np);
    return 1;
}

/* plume._conformal_blocks(K, states, scores, cand, cscores, u, method) -> p-values per candidate */
static int l_conformal_blocks(lua_State *L)
{
    lua_Integer K = plm_l_checkint(L, 1, "conformal.chain", "K");
    size_t T, nc, ns, i;
    int *x, *cand, method;
    double *score, *cscore, *p, u;
    plm_ctx ctx;
    if (K < 1) return luaL_error(L, "conformal.chain: K must be >= 1 (got %d)", (int)K);
    x = check_states(L, 2, (int)K, "states", &T);
    score = plm_l_checkvec(L, 3, "conformal.chain", "scores", &ns, 0);
    cand = check_states(L, 4, (int)K, "candidates", &nc);
    cscore = plm_l_checkvec(L, 5, "conformal.chain", "candidate scores", &i, 0);
    u = luaL_checknumber(L, 6);
    method = method_of(L, 7);
    if (ns != T || i != nc) return luaL_error(L, "conformal.chain: one score per step and per candidate is needed");
    if (T == 0) return luaL_error(L, "conformal.chain: states is empty");
    p = plm_l_scratch(L, (nc ? nc : 1) * sizeof *p);
    if ((method == PLM_CONFORMAL_SPLIT ? plm_conformal_split(&ctx, T, score, nc, cscore, u, p)
                                       : plm_conformal_blocks(&ctx, (int)K, T, x, score, nc, cand, cscore, u, p)))
        return plm_l_fail(L, &ctx);
    plm_l_pushvec(L, p, nc);
    return 1;
}

/* plume._conformal_u([seed]) -> a uniform draw on (0, 1) for the randomised p-value: stream 0 of seed, or
** plume's default stream. */
static int l_conformal_u(lua_State *L)
{
    plm_rng r, *rp = plm_l_default_rng(L);
    if (!lua_isnoneornil(L, 1)) {
        plm_rng_init(&r, (uint64_t)plm_l_checkint(L, 1, FN, "seed"), 0);
        rp = &r;
    }
    lua_pushnumber(L, plm_rng_uniform(rp));
    return 1;
}

void plm_l_open_conformal(lua_State *L)
{
    lua_pushcfunction(L, l_conformal_u);
    lua_setfield(L, -2, "_conformal_u");
    lua_pushcfunction(L, l_conformal_hmm);
    lua_setfield(L, -2, "_conformal_hmm");
    lua_pushcfunction(L, l_conformal_blocks);
    lua_setfield(L, -2, "_conformal_blocks");
}
