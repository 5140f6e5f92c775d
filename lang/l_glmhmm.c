/* l_glmhmm.c -- plume.glmhmm: switching GLM-HMMs with learnable priors from Lua. The model and its EM live in C
** (runtime/glmhmm.h); this file reads options and spike matrices (T rows of N counts), keeps the fitted model
** and a copy of the training spikes, and returns states 1-based and weights as Lua tables. */
#include "lutil.h"
#include "larray.h"
#include "glmhmm.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define PLM_L_GLMHMM "plume.glmhmm"

typedef struct l_glmhmm {
    plm_glmhmm_opts o;
    plm_glmhmm *m;       /* NULL until fitted (or given weights) */
    long root;           /* GC root of m */
    double *trace;       /* GC memory, rooted by troot */
    long troot;
    int ntrace;
    int N;               /* neurons (0 until known) */
    double *y;           /* the training spikes (uservalue 1 owns them), T*N */
    size_t T;
} l_glmhmm;

static l_glmhmm *check(lua_State *L, int idx, const char *fn)
{
    l_glmhmm *g = luaL_testudata(L, idx, PLM_L_GLMHMM);
    if (!g) luaL_error(L, "%s: self must be a plume.glmhmm (got %s); call it with ':'", fn, luaL_typename(L, idx));
    return g;
}

static l_glmhmm *check_fitted(lua_State *L, int idx, const char *fn)
{
    l_glmhmm *g = check(L, idx, fn);
    if (!g->m) luaL_error(L, "%s: the model is not fitted yet; call m:fit(spikes) first", fn);
    return g;
}

static int l_glmhmm_gc(lua_State *L)
{
    l_glmhmm *g = luaL_checkudata(L, 1, PLM_L_GLMHMM);
    if (g->m) plm_unroot(g->root), g->m = NULL;
    if (g->trace) plm_unroot(g->troot), g->trace = NULL;
    return 0;
}

static void set_model(l_glmhmm *g, plm_glmhmm *m)
{
    if (g->m) plm_unroot(g->root);
    g->m = m;
    g->root = plm_root(m);
    g->N = m->N;
}

/* Spikes at idx: T rows of N counts (a table of rows or a shaped plume.array). Pushes the owner. */
static double *check_spikes(lua_State *L, int idx, const char *fn, int N, plm_glmhmm_family fam, size_t *T, size_t *cols)
{
    double *y;
    plm_ctx ctx;
    if (lua_isnoneornil(L, idx)) luaL_error(L, "%s: spikes are required (T rows of N counts)", fn);
    y = plm_l_checkmat(L, idx, fn, "spikes", T, cols);
    if (*T == 0) luaL_error(L, "%s: spikes must have at least one row", fn);
    if (N > 0 && (int)*cols != N) luaL_error(L, "%s: spikes have %d columns, but the model has %d neurons", fn, (int)*cols, N);
    if (plm_glmhmm_check_spikes(&ctx, fam, *T, (int)*cols, y)) {
        const char *m = plm_ctx_errmsg(&ctx);
        luaL_error(L, "%s: %s", fn, strncmp(m, "glmhmm: ", 8) ? m : m + 8);
    }
    return y;
}

/* Spikes from argument idx, or the training spikes when it is absent. Pushes one value either way. */
static double *spikes_or_training(lua_State *L, l_glmhmm *g, int idx, const char *fn, size_t *T)
{
    size_t cols;
    if (lua_isnoneornil(L, idx)) {
        if (!g->y) luaL_error(L, "%s: spikes are required (the model was not fitted to data)", fn);
        lua_pushnil(L);
        *T = g->T;
        return g->y;
    }
    return check_spikes(L, idx, fn, g->m->N, g->m->family, T, &cols);
}

static int fail_as(lua_State *L, plm_ctx *ctx, const char *fn)
{
    const char *m = plm_ctx_errmsg(ctx);
    return plm_l_raise(L, ctx->status, "%s: %s", fn, strncmp(m, "glmhmm: ", 8) ? m : m + 8);
}

/* plume.glmhmm{K =, family = "poisson" | "bernoulli", lags = 1, prior = "none" | "gaussian" | "onehot", iters,
** tol, restarts, newton, ridge, seed} -- or, to simulate from a known network, {weights =, bias =, trans =, init =}. */
static int l_glmhmm_new(lua_State *L)
{
    static const char *const names[] = {"K", "family", "lags", "prior", "iters", "tol", "restarts", "newton", "ridge",
                                        "stickiness", "seed", "weights", "bias", "trans", "init", NULL};
    const char *fn = "glmhmm", *fam, *prior;
    l_glmhmm *g;
    lua_Integer K, lags, iters, restarts, newton;
    luaL_checktype(L, 1, LUA_TTABLE);
    plm_l_checkopts(L, 1, fn, names);
    g = lua_newuserdatauv(L, sizeof *g, 1);
    memset(g, 0, sizeof *g);
    luaL_setmetatable(L, PLM_L_GLMHMM);
    plm_glmhmm_fit_defaults(&g->o);
    K = plm_l_optint(L, 1, fn, "K", 2);
    lags = plm_l_optint(L, 1, fn, "lags", 1);
    iters = plm_l_optint(L, 1, fn, "iters", g->o.iters);
    restarts = plm_l_optint(L, 1, fn, "restarts", g->o.restarts);
    newton = plm_l_optint(L, 1, fn, "newton", g->o.newton);
    g->o.tol = plm_l_optnum(L, 1, fn, "tol", g->o.tol);
    g->o.ridge = plm_l_optnum(L, 1, fn, "ridge", g->o.ridge);
    g->o.stickiness = plm_l_optnum(L, 1, fn, "stickiness", g->o.stickiness);
    fam = plm_l_optstr(L, 1, fn, "family", "poisson");
    prior = plm_l_optstr(L, 1, fn, "prior", "none");
    if (K < 1 || K > 64) return luaL_error(L, "glmhmm: K must be in 1..64 (got %I)", K);
    if (lags < 1 || lags > 1000) return luaL_error(L, "glmhmm: lags must be in 1..1000 (got %I)", lags);
    if (iters < 0 || iters > 1000000) return luaL_error(L, "glmhmm: iters must be in 0..1000000 (got %I)", iters);
    if (restarts < 1 || restarts > 10000) return luaL_error(L, "glmhmm: restarts must be in 1..10000 (got %I)", restarts);
    if (newton < 1 || newton > 100) return luaL_error(L, "glmhmm: newton must be in 1..100 (got %I)", newton);
    if (!(g->o.tol >= 0)) return luaL_error(L, "glmhmm: tol must be >= 0 (got %f)", g->o.tol);
    if (!(g->o.ridge > 0) || !isfinite(g->o.ridge)) return luaL_error(L, "glmhmm: ridge must be > 0 (got %f)", g->o.ridge);
    if (!(g->o.stickiness > 0 && g->o.stickiness < 1))
        return luaL_error(L, "glmhmm: stickiness must be in (0, 1) (got %f)", g->o.stickiness);
    if (!strcmp(fam, "poisson")) g->o.family = PLM_GLMHMM_POISSON;
    else if (!strcmp(fam, "bernoulli")) g->o.family = PLM_GLMHMM_BERNOULLI;
    else return luaL_error(L, "glmhmm: family must be \"poisson\" or \"bernoulli\" (got \"%s\")", fam);
    if (!strcmp(prior, "none")) g->o.prior = PLM_GLMHMM_NONE;
    else if (!strcmp(prior, "gaussian")) g->o.prior = PLM_GLMHMM_GAUSSIAN;
    else if (!strcmp(prior, "onehot")) g->o.prior = PLM_GLMHMM_ONEHOT;
    else return luaL_error(L, "glmhmm: prior must be \"none\", \"gaussian\" or \"onehot\" (got \"%s\")", prior);
    g->o.K = (int)K, g->o.L = (int)lags, g->o.iters = (int)iters, g->o.restarts = (int)restarts, g->o.newton = (int)newton;
    g->o.seed = plm_l_seed(L, 1, fn);
    lua_getfield(L, 1, "weights");
    if (!lua_isnil(L, -1)) {
        /* a known network: weights[k] is N x N*lags, bias K x N, trans K x K, init K (default uniform) */
        int top = lua_gettop(L), k, i;
        size_t N = 0, r, c, P;
        double *W, *init, *trans, *bias;
        plm_glmhmm *m;
        plm_ctx ctx;
        if (lua_type(L, top) != LUA_TTABLE || luaL_len(L, top) != K)
            return luaL_error(L, "glmhmm: weights must be a list of K = %I matrices", K);
        lua_rawgeti(L, top, 1);
        plm_l_checkmat(L, -1, fn, "weights[1]", &r, &c);
        N = r;
        if (N == 0 || c != N * (size_t)lags)
            return luaL_error(L, "glmhmm: weights[1] must be N x N*lags (got %d x %d with lags = %d)", (int)r, (int)c, (int)lags);
        lua_settop(L, top);
        P = 1 + N * (size_t)lags;
        W = plm_l_scratch(L, (size_t)K * N * P * sizeof *W);
        for (k = 0; k < K; k++) {
            char arg[32];
            double *w;
            lua_rawgeti(L, top, k + 1);
            snprintf(arg, sizeof arg, "weights[%d]", k + 1);
            w = plm_l_checkmat(L, -1, fn, arg, &r, &c);
            if (r != N || c != N * (size_t)lags)
                return luaL_error(L, "glmhmm: %s is %d x %d, but weights[1] is %d x %d", arg, (int)r, (int)c, (int)N, (int)(N * lags));
            for (i = 0; i < (int)N; i++) memcpy(W + ((size_t)k * N + i) * P + 1, w + (size_t)i * c, c * sizeof *W);
            lua_settop(L, top + 1);
        }
        P = 1 + N * (size_t)lags;
        lua_getfield(L, 1, "bias");
        if (lua_isnil(L, -1)) return luaL_error(L, "glmhmm: bias (K x N) is required with weights");
        bias = plm_l_checkmat(L, -1, fn, "bias", &r, &c);
        if (r != (size_t)K || c != N) return luaL_error(L, "glmhmm: bias must be %I x %d (got %d x %d)", K, (int)N, (int)r, (int)c);
        for (k = 0; k < K; k++)
            for (i = 0; i < (int)N; i++) W[((size_t)k * N + i) * P] = bias[(size_t)k * N + i];
        lua_getfield(L, 1, "trans");
        if (lua_isnil(L, -1)) return luaL_error(L, "glmhmm: trans (K x K) is required with weights");
        trans = plm_l_checkmat(L, -1, fn, "trans", &r, &c);
        if (r != (size_t)K || c != (size_t)K) return luaL_error(L, "glmhmm: trans must be %I x %I (got %d x %d)", K, K, (int)r, (int)c);
        lua_getfield(L, 1, "init");
        if (lua_isnil(L, -1)) {
            init = plm_l_scratch(L, (size_t)K * sizeof *init);
            for (k = 0; k < K; k++) init[k] = 1.0 / (double)K;
        } else {
            init = plm_l_checkvec(L, -1, fn, "init", &r, 0);
            if (r != (size_t)K) return luaL_error(L, "glmhmm: init has %d entries, but K = %I", (int)r, K);
        }
        if (plm_glmhmm_new(&ctx, (int)K, (int)N, (int)lags, g->o.family, init, trans, W, &m)) return plm_l_fail(L, &ctx);
        set_model(g, m);
    }
    lua_settop(L, 2);
    return 1;
}

/* m:fit(spikes) -> m: EM from restarts random starts; the model keeps the spikes for viterbi/posterior. */
static int l_glmhmm_fit(lua_State *L)
{
    const char *fn = "glmhmm:fit";
    l_glmhmm *g = check(L, 1, fn);
    size_t T, N;
    double *y = check_spikes(L, 2, fn, 0, g->o.family, &T, &N), *copy, *trace;
    plm_glmhmm *m;
    plm_ctx ctx;
    int ntrace;
    copy = plm_l_scratch(L, T * N * sizeof *copy);
    memcpy(copy, y, T * N * sizeof *copy);
    if (plm_glmhmm_fit(&ctx, &g->o, T, (int)N, copy, &m, &trace, &ntrace)) return fail_as(L, &ctx, fn);
    lua_setiuservalue(L, 1, 1);   /* the copy lives as long as the model */
    g->y = copy, g->T = T;
    set_model(g, m);
    if (g->trace) plm_unroot(g->troot);
    g->trace = trace, g->troot = plm_root(trace), g->ntrace = ntrace;
    lua_settop(L, 1);
    return 1;
}

static void push_path(lua_State *L, const int *p, size_t T)
{
    size_t t;
    lua_createtable(L, (int)T, 0);
    for (t = 0; t < T; t++) {
        lua_pushinteger(L, p[t] + 1);
        lua_rawseti(L, -2, (lua_Integer)t + 1);
    }
}

/* m:viterbi([spikes]) -> path (states 1..K), log p(path, spikes) */
static int l_glmhmm_viterbi(lua_State *L)
{
    const char *fn = "glmhmm:viterbi";
    l_glmhmm *g = check_fitted(L, 1, fn);
    size_t T;
    double *y = spikes_or_training(L, g, 2, fn, &T), lp;
    int *path = plm_l_scratch(L, T * sizeof *path);
    plm_ctx ctx;
    if (plm_glmhmm_viterbi(&ctx, g->m, T, y, path, &lp)) return fail_as(L, &ctx, fn);
    push_path(L, path, T);
    lua_pushnumber(L, lp);
    return 2;
}

/* m:posterior([spikes]) -> T rows of K state probabilities, log-likelihood */
static int l_glmhmm_posterior(lua_State *L)
{
    const char *fn = "glmhmm:posterior";
    l_glmhmm *g = check_fitted(L, 1, fn);
    size_t T;
    double *y = spikes_or_training(L, g, 2, fn, &T), ll;
    double *post = plm_l_scratch(L, T * g->m->K * sizeof *post);
    plm_ctx ctx;
    if (plm_glmhmm_posterior(&ctx, g->m, T, y, post, &ll)) return fail_as(L, &ctx, fn);
    plm_l_pushmat(L, post, T, (size_t)g->m->K);
    lua_pushnumber(L, ll);
    return 2;
}

/* m:loglik([spikes]) -> log p(spikes), the states summed out (held-out predictive log-likelihood); without
** spikes, of the training spikes */
static int l_glmhmm_loglik(lua_State *L)
{
    const char *fn = "glmhmm:loglik";
    l_glmhmm *g = check_fitted(L, 1, fn);
    size_t T;
    double *y = spikes_or_training(L, g, 2, fn, &T), ll;
    plm_ctx ctx;
    if (plm_glmhmm_loglik(&ctx, g->m, T, y, &ll)) return fail_as(L, &ctx, fn);
    lua_pushnumber(L, ll);
    return 1;
}

/* m:sample(T [, seed]) -> states (1..K), spikes (T rows of N) */
static int l_glmhmm_sample(lua_State *L)
{
    const char *fn = "glmhmm:sample";
    l_glmhmm *g = check_fitted(L, 1, fn);
    lua_Integer T = plm_l_checkint(L, 2, fn, "T");
    unsigned long long seed;
    int *st;
    double *y;
    plm_rng r;
    plm_ctx ctx;
    if (T < 1 || T > 100000000) return luaL_error(L, "%s: T must be in 1..1e8 (got %I)", fn, T);
    seed = lua_isnoneornil(L, 3) ? plm_l_default_seed(L) : (unsigned long long)plm_l_checkint(L, 3, fn, "seed");
    st = plm_l_scratch(L, (size_t)T * sizeof *st);
    y = plm_l_scratch(L, (size_t)T * g->m->N * sizeof *y);
    plm_rng_init(&r, seed, 0);
    if (plm_glmhmm_sample(&ctx, g->m, (size_t)T, &r, st, y)) return fail_as(L, &ctx, fn);
    push_path(L, st, (size_t)T);
    plm_l_pushmat(L, y, (size_t)T, (size_t)g->m->N);
    return 2;
}

/* Per state k, its N x N*L weight matrix (row i: the weights onto neuron i, lag-major). */
static void push_weights(lua_State *L, const plm_glmhmm *m)
{
    const size_t P = (size_t)m->P;
    int k, i;
    lua_createtable(L, m->K, 0);
    for (k = 0; k < m->K; k++) {
        lua_createtable(L, m->N, 0);
        for (i = 0; i < m->N; i++) {
            plm_l_pushvec(L, m->W + ((size_t)k * m->N + i) * P + 1, P - 1);
            lua_rawseti(L, -2, i + 1);
        }
        lua_rawseti(L, -2, k + 1);
    }
}

/* The one-hot types (-1 inhibitory, 0 none, 1 excitatory) of probabilities p (stride 3, N*N of them) as N x N. */
static void push_types(lua_State *L, const double *p, int N)
{
    int i, j;
    lua_createtable(L, N, 0);
    for (i = 0; i < N; i++) {
        lua_createtable(L, N, 0);
        for (j = 0; j < N; j++) {
            const double *r = p + ((size_t)i * N + j) * 3;
            lua_pushinteger(L, r[0] > r[1] && r[0] > r[2] ? -1 : r[2] > r[1] ? 1 : 0);
            lua_rawseti(L, -2, j + 1);
        }
        lua_rawseti(L, -2, i + 1);
    }
}

static int l_glmhmm_index(lua_State *L)
{
    l_glmhmm *g = check(L, 1, "glmhmm");
    const char *k = luaL_checkstring(L, 2);
    const plm_glmhmm *m = g->m;
    int s, i;
    if (luaL_getmetafield(L, 1, "__methods") && lua_getfield(L, -1, k) != LUA_TNIL) return 1;
    if (!strcmp(k, "K")) lua_pushinteger(L, g->o.K);
    else if (!strcmp(k, "lags")) lua_pushinteger(L, m ? m->L : g->o.L);
    else if (!strcmp(k, "N")) m ? lua_pushinteger(L, m->N) : lua_pushnil(L);
    else if (!strcmp(k, "family")) lua_pushstring(L, plm_glmhmm_family_name(m ? m->family : g->o.family));
    else if (!strcmp(k, "prior")) lua_pushstring(L, plm_glmhmm_prior_name(g->o.prior));
    else if (!strcmp(k, "fitted")) lua_pushboolean(L, g->trace != NULL);
    else if (!m) lua_pushnil(L);
    else if (!strcmp(k, "weights")) push_weights(L, m);
    else if (!strcmp(k, "bias")) {
        lua_createtable(L, m->K, 0);
        for (s = 0; s < m->K; s++) {
            lua_createtable(L, m->N, 0);
            for (i = 0; i < m->N; i++) {
                lua_pushnumber(L, m->W[((size_t)s * m->N + i) * m->P]);
                lua_rawseti(L, -2, i + 1);
            }
            lua_rawseti(L, -2, s + 1);
        }
    } else if (!strcmp(k, "trans")) plm_l_pushmat(L, m->trans, (size_t)m->K, (size_t)m->K);
    else if (!strcmp(k, "init")) plm_l_pushvec(L, m->init, (size_t)m->K);
    else if (!strcmp(k, "trace")) g->trace ? plm_l_pushvec(L, g->trace, (size_t)g->ntrace) : lua_pushnil(L);
    else if (!strcmp(k, "logprior")) g->trace ? lua_pushnumber(L, m->logprior) : lua_pushnil(L);
    else if (!strcmp(k, "wbar")) m->wbar ? plm_l_pushmat(L, m->wbar, (size_t)m->N, (size_t)m->N * m->L) : lua_pushnil(L);
    else if (!strcmp(k, "sigma2")) m->wbar ? lua_pushnumber(L, m->sigma2) : lua_pushnil(L);
    else if (!strcmp(k, "mu")) m->type_prob ? lua_pushnumber(L, m->mu) : lua_pushnil(L);
    else if (!strcmp(k, "s2_on")) m->type_prob ? lua_pushnumber(L, m->s2_on) : lua_pushnil(L);
    else if (!strcmp(k, "s2_off")) m->type_prob ? lua_pushnumber(L, m->s2_off) : lua_pushnil(L);
    else if (!strcmp(k, "connectome")) m->type_prob ? push_types(L, m->type_prob, m->N) : lua_pushnil(L);
    else if (!strcmp(k, "types")) {
        if (!m->resp) lua_pushnil(L);
        else {
            lua_createtable(L, m->K, 0);
            for (s = 0; s < m->K; s++) {
                push_types(L, m->resp + (size_t)s * m->N * m->N * 3, m->N);
                lua_rawseti(L, -2, s + 1);
            }
        }
    } else if (!strcmp(k, "type_prob")) {
        if (!m->type_prob) lua_pushnil(L);
        else {
            int j;
            lua_createtable(L, m->N, 0);
            for (i = 0; i < m->N; i++) {
                lua_createtable(L, m->N, 0);
                for (j = 0; j < m->N; j++) {
                    plm_l_pushvec(L, m->type_prob + ((size_t)i * m->N + j) * 3, 3);
                    lua_rawseti(L, -2, j + 1);
                }
                lua_rawseti(L, -2, i + 1);
            }
        }
    } else
        lua_pushnil(L);
    return 1;
}

static int l_glmhmm_tostring(lua_State *L)
{
    l_glmhmm *g = check(L, 1, "glmhmm");
    if (g->m && g->trace)
        lua_pushfstring(L, "plume.glmhmm{K = %d, N = %d, lags = %d, family = \"%s\", prior = \"%s\"}: fitted, loglik %f",
                        g->o.K, g->m->N, g->m->L, plm_glmhmm_family_name(g->m->family), plm_glmhmm_prior_name(g->o.prior),
                        g->m->loglik);
    else
        lua_pushfstring(L, "plume.glmhmm{K = %d, lags = %d, family = \"%s\", prior = \"%s\"}%s", g->o.K, g->o.L,
                        plm_glmhmm_family_name(g->o.family), plm_glmhmm_prior_name(g->o.prior),
                        g->m ? ": given weights" : ": not fitted");
    return 1;
}

void plm_l_open_glmhmm(lua_State *L)
{
    static const luaL_Reg methods[] = {{"fit", l_glmhmm_fit}, {"viterbi", l_glmhmm_viterbi},
                                       {"posterior", l_glmhmm_posterior}, {"loglik", l_glmhmm_loglik},
                                       {"sample", l_glmhmm_sample}, {NULL, NULL}};
    luaL_newmetatable(L, PLM_L_GLMHMM);
    luaL_newlib(L, methods);
    lua_setfield(L, -2, "__methods");
    lua_pushcfunction(L, l_glmhmm_index);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_glmhmm_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, l_glmhmm_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pushliteral(L, PLM_L_GLMHMM);
    lua_setfield(L, -2, "__name");
    lua_pop(L, 1);
    lua_pushcfunction(L, l_glmhmm_new);
    lua_setfield(L, -2, "glmhmm");
}
