/* l_ctmc.c -- plume.ctmc{Q=} (continuous-time Markov chains: :transition, :sample_path, :loglik_path,
** :loglik_obs) and plume.cthmm{Q=, init=, emit=} (continuous-time HMMs at irregular observation times:
** :loglik, :posterior, :viterbi, :sample). States and symbols are 1-based in Lua. */
#include "lutil.h"
#include "larray.h"
#include "ldist.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define CTMC_META "plume.ctmc"
#define CTHMM_META "plume.cthmm"

static uint64_t opt_seed(lua_State *L, int idx, const char *fn)
{
    return lua_isnoneornil(L, idx) ? plm_l_default_seed(L) : (uint64_t)plm_l_checkint(L, idx, fn, "seed");
}

/* A rate matrix at idx into a new chain. */
static plm_ctmc *rates_from(lua_State *L, int idx, const char *fn)
{
    size_t r, c;
    double *Q = plm_l_checkmat(L, idx, fn, "Q", &r, &c);
    plm_ctmc *ch;
    plm_ctx ctx;
    if (r != c) luaL_error(L, "%s: Q must be square (got %d x %d)", fn, (int)r, (int)c);
    if (r > 100000) luaL_error(L, "%s: Q has too many states (%d)", fn, (int)r);
    plm_ctx_clear(&ctx);
    if (plm_ctmc_new(&ctx, Q, (int)r, &ch)) plm_l_fail(L, &ctx);
    lua_pop(L, 1);
    return ch;
}

static int l_ctmc_new(lua_State *L)
{
    plm_ctmc *c;
    static const char *const fields[] = {"Q", NULL};
    luaL_checktype(L, 1, LUA_TTABLE);
    plm_l_checkopts(L, 1, "ctmc", fields);
    if (lua_getfield(L, 1, "Q") == LUA_TNIL) return luaL_error(L, "ctmc: missing field 'Q' (the rate matrix)");
    c = rates_from(L, -1, "ctmc");
    plm_l_pushobj(L, c, CTMC_META);
    return 1;
}

static plm_ctmc *check_ctmc(lua_State *L, const char *fn)
{
    return plm_l_checkobj(L, 1, CTMC_META, fn, "self");
}

/* A list of 1-based states (n entries) at idx into 0-based ints; pushes the owner. */
static int *check_states(lua_State *L, int idx, const char *fn, const char *arg, int K, size_t *n)
{
    double *v = plm_l_checkvec(L, idx, fn, arg, n, 0);
    int *s = plm_l_scratch(L, (*n ? *n : 1) * sizeof *s);
    size_t i;
    lua_remove(L, -2);
    for (i = 0; i < *n; i++) {
        if (!(v[i] >= 1 && v[i] <= K && v[i] == floor(v[i]))) {
            char got[32];
            snprintf(got, sizeof got, "%g", v[i]);
            luaL_error(L, "%s: %s[%I] must be a state in 1..%d (got %s)", fn, arg, (lua_Integer)i + 1, K, got);
        }
        s[i] = (int)v[i] - 1;
    }
    return s;
}

static int l_ctmc_transition(lua_State *L)
{
    plm_ctmc *c = check_ctmc(L, "ctmc:transition");
    double t = plm_l_checknum(L, 2, "ctmc:transition", "t");
    double *P = plm_l_scratch(L, (size_t)c->K * c->K * sizeof *P);
    plm_ctx ctx;
    plm_ctx_clear(&ctx);
    if (plm_ctmc_transition(&ctx, c, t, P)) return plm_l_fail(L, &ctx);
    plm_l_pushmat(L, P, (size_t)c->K, (size_t)c->K);
    return 1;
}

static int l_ctmc_sample_path(lua_State *L)
{
    plm_ctmc *c = check_ctmc(L, "ctmc:sample_path");
    lua_Integer x0 = plm_l_checkint(L, 2, "ctmc:sample_path", "x0");
    double t_end = plm_l_checknum(L, 3, "ctmc:sample_path", "t_end");
    uint64_t seed = opt_seed(L, 4, "ctmc:sample_path");
    plm_ctmc_path path;
    plm_rng r;
    plm_ctx ctx;
    size_t i;
    if (x0 < 1 || x0 > c->K) return luaL_error(L, "ctmc:sample_path: x0 must be a state in 1..%d (got %I)", c->K, x0);
    plm_rng_init(&r, seed, 0);
    plm_ctx_clear(&ctx);
    if (plm_ctmc_sample_path(&ctx, c, (int)x0 - 1, 0, t_end, &r, &path)) return plm_l_fail(L, &ctx);
    lua_createtable(L, 0, 3);
    plm_l_pushvec(L, path.times, path.n);
    lua_setfield(L, -2, "times");
    lua_createtable(L, (int)path.n, 0);
    for (i = 0; i < path.n; i++) {
        lua_pushinteger(L, path.states[i] + 1);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    lua_setfield(L, -2, "states");
    lua_pushnumber(L, t_end);
    lua_setfield(L, -2, "t_end");
    return 1;
}

static int l_ctmc_loglik_path(lua_State *L)
{
    const char *fn = "ctmc:loglik_path";
    plm_ctmc *c = check_ctmc(L, fn);
    plm_ctmc_path path;
    plm_ctx ctx;
    size_t nt, ns;
    double ll;
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_getfield(L, 2, "times");
    path.times = plm_l_checkvec(L, -1, fn, "path.times", &nt, 0);
    lua_getfield(L, 2, "states");
    path.states = check_states(L, -1, fn, "path.states", c->K, &ns);
    if (lua_getfield(L, 2, "t_end") != LUA_TNUMBER)
        return luaL_error(L, "%s: path.t_end must be a number (got %s)", fn, luaL_typename(L, -1));
    path.t_end = lua_tonumber(L, -1);
    if (nt != ns) return luaL_error(L, "%s: path.times has %d entries but path.states has %d", fn, (int)nt, (int)ns);
    path.n = nt;
    plm_ctx_clear(&ctx);
    if (plm_ctmc_loglik_path(&ctx, c, &path, &ll)) return plm_l_fail(L, &ctx);
    lua_pushnumber(L, ll);
    return 1;
}

static int l_ctmc_loglik_obs(lua_State *L)
{
    const char *fn = "ctmc:loglik_obs";
    plm_ctmc *c = check_ctmc(L, fn);
    size_t nt, ns;
    double *times = plm_l_checkvec(L, 2, fn, "times", &nt, 0), ll;
    int *states = check_states(L, 3, fn, "states", c->K, &ns);
    plm_ctx ctx;
    if (nt != ns) return luaL_error(L, "%s: times has %d entries but states has %d", fn, (int)nt, (int)ns);
    plm_ctx_clear(&ctx);
    if (plm_ctmc_loglik_obs(&ctx, c, nt, times, states, &ll)) return plm_l_fail(L, &ctx);
    lua_pushnumber(L, ll);
    return 1;
}

static int l_ctmc_tostring(lua_State *L)
{
    plm_ctmc *c = check_ctmc(L, "tostring");
    char rate[32];
    snprintf(rate, sizeof rate, "%.6g", c->lambda);
    lua_pushfstring(L, "ctmc(%d states, largest exit rate %s)", c->K, rate);
    return 1;
}

/* ---- cthmm ---- */

static int l_cthmm_new(lua_State *L)
{
    const char *fn = "cthmm";
    plm_ctmc *c;
    plm_cthmm *h;
    plm_ctx ctx;
    double *init;
    size_t n;
    int K, k;
    static const char *const fields[] = {"Q", "init", "emit", NULL};
    luaL_checktype(L, 1, LUA_TTABLE);
    plm_l_checkopts(L, 1, "cthmm", fields);
    if (lua_getfield(L, 1, "Q") == LUA_TNIL) return luaL_error(L, "cthmm: missing field 'Q' (the rate matrix)");
    if (!(c = plm_l_testobj(L, -1, CTMC_META))) c = rates_from(L, -1, fn);
    K = c->K;
    if (lua_getfield(L, 1, "init") == LUA_TNIL) return luaL_error(L, "cthmm: missing field 'init'");
    init = plm_l_checkvec(L, -1, fn, "init", &n, 0);
    if ((int)n != K) return luaL_error(L, "cthmm: init must have %d entries (one per state of Q), got %d", K, (int)n);
    if (lua_getfield(L, 1, "emit") != LUA_TTABLE)
        return luaL_error(L, "cthmm: emit must be a matrix of symbol probabilities or a list of distributions (got %s)",
                          luaL_typename(L, -1));
    plm_ctx_clear(&ctx);
    lua_geti(L, -1, 1);
    if (plm_l_testobj(L, -1, PLM_L_DIST)) {
        plm_dist **d;
        lua_pop(L, 1);
        if ((int)luaL_len(L, -1) != K)
            return luaL_error(L, "cthmm: emit must have %d distributions (one per state), got %d", K, (int)luaL_len(L, -1));
        d = plm_l_scratch(L, (size_t)K * sizeof *d);
        for (k = 0; k < K; k++) {
            lua_geti(L, -2, k + 1);
            if (!(d[k] = plm_l_testobj(L, -1, PLM_L_DIST)))
                return luaL_error(L, "cthmm: emit[%d] must be a distribution (got %s)", k + 1, luaL_typename(L, -1));
            lua_pop(L, 1);
        }
        if (plm_cthmm_new_dists(&ctx, c, init, d, &h)) return plm_l_fail(L, &ctx);
    } else {
        size_t r, cols;
        double *E;
        lua_pop(L, 1);
        E = plm_l_checkmat(L, -1, fn, "emit", &r, &cols);
        if ((int)r != K) return luaL_error(L, "cthmm: emit must have %d rows (one per state), got %d", K, (int)r);
        if (plm_cthmm_new_categorical(&ctx, c, init, (int)cols, E, &h)) return plm_l_fail(L, &ctx);
    }
    plm_l_pushobj(L, h, CTHMM_META);
    return 1;
}

static plm_cthmm *check_cthmm(lua_State *L, const char *fn)
{
    return plm_l_checkobj(L, 1, CTHMM_META, fn, "self");
}

/* Observations at idx (T of them; nil or NaN = missing) into T*D doubles; pushes the owner. */
static double *check_obs(lua_State *L, int idx, const char *fn, const plm_cthmm *h, size_t T)
{
    size_t t, len;
    int D = h->D, j;
    double *x = plm_l_scratch(L, (T ? T : 1) * D * sizeof *x);
    plm_l_array *a;
    idx = lua_absindex(L, idx);
    if ((a = plm_l_toarray(L, idx))) {
        if (D != 1 || a->n != T) luaL_error(L, "%s: obs has %d entries but times has %d", fn, (int)a->n, (int)T);
        for (t = 0; t < T; t++) x[t] = h->emit ? a->data[t] : a->data[t] - 1;
        if (h->emit && h->emit[0]->kind == PLM_DIST_CATEGORICAL)
            for (t = 0; t < T; t++) x[t] -= 1;
        return x;
    }
    if (lua_type(L, idx) != LUA_TTABLE) luaL_error(L, "%s: obs must be a list of observations (got %s)", fn, luaL_typename(L, idx));
    if (lua_getfield(L, idx, "n") == LUA_TNUMBER && lua_isinteger(L, -1))
        len = (size_t)lua_tointeger(L, -1);
    else
        len = (size_t)luaL_len(L, idx);
    lua_pop(L, 1);
    if (len != T) luaL_error(L, "%s: obs has %d entries but times has %d", fn, (int)len, (int)T);
    for (t = 0; t < T; t++) {
        int type = lua_geti(L, idx, (lua_Integer)t + 1);
        double *xt = x + t * D;
        if (type == LUA_TNIL) {
            for (j = 0; j < D; j++) xt[j] = NAN;
        } else if (!h->emit) {
            if (type != LUA_TNUMBER) luaL_error(L, "%s: obs[%d] must be a symbol number (got %s)", fn, (int)t + 1, luaL_typename(L, -1));
            xt[0] = lua_tonumber(L, -1) - 1;
        } else if (!plm_l_todistvalue(L, -1, h->emit[0], xt)) {
            if (D == 1) luaL_error(L, "%s: obs[%d] must be a number (got %s)", fn, (int)t + 1, luaL_typename(L, -1));
            luaL_error(L, "%s: obs[%d] must be a vector of %d numbers", fn, (int)t + 1, D);
        }
        lua_pop(L, 1);
    }
    return x;
}

/* Common argument handling: self, times (arg 2), obs (arg 3). */
static const plm_cthmm *cthmm_args(lua_State *L, const char *fn, size_t *T, double **times, double **obs)
{
    const plm_cthmm *h = check_cthmm(L, fn);
    *times = plm_l_checkvec(L, 2, fn, "times", T, 0);
    *obs = check_obs(L, 3, fn, h, *T);
    return h;
}

static int l_cthmm_loglik(lua_State *L)
{
    size_t T;
    double *times, *obs, ll;
    const plm_cthmm *h = cthmm_args(L, "cthmm:loglik", &T, &times, &obs);
    plm_ctx ctx;
    plm_ctx_clear(&ctx);
    if (plm_cthmm_loglik(&ctx, h, T, times, obs, &ll)) return plm_l_fail(L, &ctx);
    lua_pushnumber(L, ll);
    return 1;
}

static int l_cthmm_posterior(lua_State *L)
{
    size_t T;
    double *times, *obs, *post, ll;
    const plm_cthmm *h = cthmm_args(L, "cthmm:posterior", &T, &times, &obs);
    plm_ctx ctx;
    post = plm_l_scratch(L, (T ? T : 1) * h->K * sizeof *post);
    plm_ctx_clear(&ctx);
    if (plm_cthmm_posterior(&ctx, h, T, times, obs, post, &ll)) return plm_l_fail(L, &ctx);
    plm_l_pushmat(L, post, T, (size_t)h->K);
    lua_pushnumber(L, ll);
    return 2;
}

static int l_cthmm_viterbi(lua_State *L)
{
    size_t T, t;
    double *times, *obs, logp;
    const plm_cthmm *h = cthmm_args(L, "cthmm:viterbi", &T, &times, &obs);
    int *path = plm_l_scratch(L, (T ? T : 1) * sizeof *path);
    plm_ctx ctx;
    plm_ctx_clear(&ctx);
    if (plm_cthmm_viterbi(&ctx, h, T, times, obs, path, &logp)) return plm_l_fail(L, &ctx);
    lua_createtable(L, (int)T, 0);
    for (t = 0; t < T; t++) {
        lua_pushinteger(L, path[t] + 1);
        lua_rawseti(L, -2, (lua_Integer)t + 1);
    }
    lua_pushnumber(L, logp);
    return 2;
}

static int l_cthmm_sample(lua_State *L)
{
    const char *fn = "cthmm:sample";
    const plm_cthmm *h = check_cthmm(L, fn);
    size_t T, t;
    double *times = plm_l_checkvec(L, 2, fn, "times", &T, 0), *obs;
    uint64_t seed = opt_seed(L, 3, fn);
    int *states;
    plm_rng r;
    plm_ctx ctx;
    states = plm_l_scratch(L, (T ? T : 1) * sizeof *states);
    obs = plm_l_scratch(L, (T ? T : 1) * h->D * sizeof *obs);
    plm_rng_init(&r, seed, 0);
    plm_ctx_clear(&ctx);
    if (plm_cthmm_sample(&ctx, h, T, times, &r, states, obs)) return plm_l_fail(L, &ctx);
    lua_createtable(L, (int)T, 0);
    for (t = 0; t < T; t++) {
        lua_pushinteger(L, states[t] + 1);
        lua_rawseti(L, -2, (lua_Integer)t + 1);
    }
    lua_createtable(L, (int)T, 0);
    for (t = 0; t < T; t++) {
        if (h->emit)
            plm_l_pushdistvalue(L, h->emit[states[t]], obs + t * h->D);
        else
            lua_pushinteger(L, (lua_Integer)obs[t] + 1);
        lua_rawseti(L, -2, (lua_Integer)t + 1);
    }
    return 2;
}

static int l_cthmm_tostring(lua_State *L)
{
    const plm_cthmm *h = check_cthmm(L, "tostring");
    if (h->emit)
        lua_pushfstring(L, "cthmm(%d states, %s emissions)", h->K, plm_dist_info_of(h->emit[0]->kind)->name);
    else
        lua_pushfstring(L, "cthmm(%d states, categorical emissions over %d symbols)", h->K, h->M);
    return 1;
}

void plm_l_open_ctmc(lua_State *L)
{
    static const luaL_Reg ctmc_methods[] = {{"transition", l_ctmc_transition}, {"sample_path", l_ctmc_sample_path},
                                            {"loglik_path", l_ctmc_loglik_path}, {"loglik_obs", l_ctmc_loglik_obs},
                                            {NULL, NULL}};
    static const luaL_Reg ctmc_meta[] = {{"__tostring", l_ctmc_tostring}, {NULL, NULL}};
    static const luaL_Reg cthmm_methods[] = {{"loglik", l_cthmm_loglik}, {"posterior", l_cthmm_posterior},
                                             {"viterbi", l_cthmm_viterbi}, {"sample", l_cthmm_sample}, {NULL, NULL}};
    static const luaL_Reg cthmm_meta[] = {{"__tostring", l_cthmm_tostring}, {NULL, NULL}};
    plm_l_newmeta(L, CTMC_META, ctmc_methods, ctmc_meta);
    lua_pop(L, 1);
    plm_l_newmeta(L, CTHMM_META, cthmm_methods, cthmm_meta);
    lua_pop(L, 1);
    lua_pushcfunction(L, l_ctmc_new);
    lua_setfield(L, -2, "ctmc");
    lua_pushcfunction(L, l_cthmm_new);
    lua_setfield(L, -2, "cthmm");
}
