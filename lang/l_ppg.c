/* l_ppg.c -- plume.ppg(ssm, ys, opts): the Parisian particle Gibbs sampler (runtime/engines/ppg.h) for smoothed
** additive functionals at fixed parameters, or, when params gives priors, alternated with plume.pgibbs's
** parameter updates (a posterior comes back). The functional is traced on the ssm's graph and compiled, as
** plume.smooth's PaRIS functional is; the whole run is in C. */
#include "lssm.h"
#include "ldist.h"
#include "lmodel.h"
#include "ppg.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Push the symbolic state of group grp (a symbol for dim 1, else a list). */
static void push_state(lua_State *L, int holder, plm_graph *g, int grp, int dim)
{
    int k;
    if (dim == 1) {
        plm_l_pushsym(L, holder, plm_graph_input(g, grp, 0));
        return;
    }
    lua_createtable(L, dim, 0);
    for (k = 0; k < dim; k++) {
        plm_l_pushsym(L, holder, plm_graph_input(g, grp, k));
        lua_rawseti(L, -2, k + 1);
    }
}

/* Trace the function at fidx as h(t, xprev, x); its result (popped) becomes nodes. Returns their count, or 0
** for a scalar result when scalar_only. */
static int trace_h(lua_State *L, int fidx, int holder, plm_graph *g, int dim, int *nodes, int max, int *scalar,
                   const char *what)
{
    int n, k;
    lua_pushvalue(L, fidx);
    plm_l_pushsym(L, holder, plm_graph_input(g, PLM_GRP_T, 0));
    push_state(L, holder, g, PLM_GRP_X, dim);
    push_state(L, holder, g, PLM_GRP_Z, dim);
    plm_l_trace_call(L, 3, 1, what);
    if (lua_type(L, -1) != LUA_TTABLE) {
        nodes[0] = plm_l_tonode(L, -1, g, what);
        *scalar = 1;
        lua_pop(L, 1);
        return 1;
    }
    *scalar = 0;
    n = (int)luaL_len(L, -1);
    if (n < 1 || n > max) luaL_error(L, "%s must return a number or a list of 1..%d numbers", what, max);
    for (k = 0; k < n; k++) {
        lua_geti(L, -1, k + 1);
        nodes[k] = plm_l_tonode(L, -1, g, what);
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    return n;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* v (K values) as the functional's shape: a number (scalar), a list, or {name = value} (names at idx) */
static void push_shaped(lua_State *L, const double *v, int K, int stride, int scalar, int names)
{
    int j;
    if (scalar) {
        lua_pushnumber(L, v[0]);
        return;
    }
    lua_createtable(L, names ? 0 : K, names ? K : 0);
    for (j = 0; j < K; j++) {
        lua_pushnumber(L, v[(size_t)j * (size_t)stride]);
        if (names) {
            lua_rawgeti(L, names, j + 1);
            lua_insert(L, -2);
            lua_settable(L, -3);
        } else
            lua_rawseti(L, -2, j + 1);
    }
}

/* the trace: a list over iterations (scalar), a list per output, or {name = list} */
static void push_trace(lua_State *L, const plm_ppg_result *r, int scalar, int names)
{
    long it;
    int j;
    if (!scalar) lua_createtable(L, names ? 0 : r->K, names ? r->K : 0);
    for (j = 0; j < r->K; j++) {
        lua_createtable(L, (int)r->iters, 0);
        for (it = 0; it < r->iters; it++) {
            lua_pushnumber(L, r->trace[(size_t)it * (size_t)r->K + (size_t)j]);
            lua_rawseti(L, -2, it + 1);
        }
        if (scalar) return;
        if (names) {
            lua_rawgeti(L, names, j + 1);
            lua_insert(L, -2);
            lua_settable(L, -3);
        } else
            lua_rawseti(L, -2, j + 1);
    }
}

/* "PPG (8 particles, 2 backward draws, 50 iterations, burn-in 25): sxx = 189.06 (mcse 0.61), ..." */
static int l_result_tostring(lua_State *L)
{
    int parts, n = 0, k;
    luaL_Buffer b;
    lua_settop(L, 1);
    lua_newtable(L);   /* the pieces, joined at the end */
    parts = 2;
    lua_getfield(L, 1, "particles");
    lua_getfield(L, 1, "backward_draws");
    lua_getfield(L, 1, "iters");
    lua_getfield(L, 1, "burnin");
    lua_pushfstring(L, "PPG (%d particles, %d backward draws, %d iterations, burn-in %d):", (int)lua_tointeger(L, -4),
                    (int)lua_tointeger(L, -3), (int)lua_tointeger(L, -2), (int)lua_tointeger(L, -1));
    lua_rawseti(L, parts, ++n);
    lua_settop(L, parts);
    lua_getfield(L, 1, "value");   /* 3 */
    lua_getfield(L, 1, "mcse");    /* 4 */
    if (lua_type(L, 3) == LUA_TNUMBER) {
        lua_pushfstring(L, " %f (mcse %f)", lua_tonumber(L, 3), lua_tonumber(L, 4));
        lua_rawseti(L, parts, ++n);
    } else if (lua_istable(L, 3) && lua_istable(L, 4)) {
        lua_pushnil(L);
        while (lua_next(L, 3)) {   /* key at -2, estimate at -1 */
            lua_pushvalue(L, -2);
            lua_gettable(L, 4);    /* its mcse */
            if (lua_type(L, -3) == LUA_TSTRING)
                lua_pushfstring(L, "%s %s = %f (mcse %f)", n > 1 ? "," : "", lua_tostring(L, -3), lua_tonumber(L, -2),
                                lua_tonumber(L, -1));
            else
                lua_pushfstring(L, "%s [%d] = %f (mcse %f)", n > 1 ? "," : "", (int)lua_tointeger(L, -3),
                                lua_tonumber(L, -2), lua_tonumber(L, -1));
            lua_rawseti(L, parts, ++n);
            lua_pop(L, 2);
        }
    }
    luaL_buffinit(L, &b);
    for (k = 1; k <= n; k++) {
        lua_rawgeti(L, parts, k);
        luaL_addvalue(&b);
    }
    luaL_pushresult(&b);
    return 1;
}

static const char *const ppg_options[] = {"functional", "particles", "backward_draws", "iters", "burnin", "seed",
                                          "threads", "params", "rejection", "bound", "max_tries", "mh_steps", "chains",
                                          "conjugate", "param_moves", NULL};

/* 1 when a parameter is to be sampled: opts.params gives it a prior, or it has no value and plume.ssm a prior */
static int wants_priors(lua_State *L, int opts, int info, const plm_ssm *m)
{
    int k, found = 0, top = lua_gettop(L);
    if (lua_getfield(L, opts, "params") == LUA_TTABLE) {
        lua_pushnil(L);
        while (!found && lua_next(L, -2)) {
            found = plm_l_testobj(L, -1, PLM_L_DIST) != NULL;
            lua_pop(L, 1);
        }
    }
    lua_getfield(L, info, "names");
    lua_getfield(L, info, "priors");
    for (k = 0; k < m->np && !found; k++)
        if (isnan(m->params[k])) {
            lua_rawgeti(L, -2, k + 1);
            found = lua_istable(L, -2) && lua_gettable(L, -2) != LUA_TNIL;
            lua_pop(L, 1);
        }
    lua_settop(L, top);
    return found;
}

/* PPG with parameter updates (ppg.h: plm_ppg_gibbs_run): the parameters with priors are drawn given each
** sweep's path, as plume.pgibbs draws them; the functional's outputs are columns of the posterior it returns
** ("h" for a number, "h[k]" for a list, the names of a table). iters - burnin draws per chain are kept. */
static int ppg_gibbs(lua_State *L, int opts, plm_ssm *m, const double *ys, long T, const plm_prog *hprog, int K,
                     int scalar, int names, plm_ppg_opts *o)
{
    const char *fn = "plume.ppg";
    const char **cn = plm_l_scratch(L, (size_t)K * sizeof *cn);
    static const long no_times = 0;
    plm_pgibbs_opts po;
    plm_ssm_prior P;
    plm_results *R;
    double *saved, *run;
    lua_Integer v;
    plm_ctx ctx;
    plm_status st;
    int k;
    plm_pgibbs_opts_default(&po);
    v = plm_l_optint(L, opts, fn, "chains", 4);
    if (v < 1 || v > 1024) return luaL_error(L, "%s: option 'chains' must be in 1..1024 (got %d)", fn, (int)v);
    po.chains = (int)v;
    po.conjugate = plm_l_optbool(L, opts, fn, "conjugate", 1);
    v = plm_l_optint(L, opts, fn, "param_moves", 1);
    if (v < 1 || v > 1000) return luaL_error(L, "%s: option 'param_moves' must be in 1..1000 (got %d)", fn, (int)v);
    po.param_moves = (int)v;
    po.N = o->N, po.warmup = o->burnin, po.samples = o->iters - o->burnin, po.seed = o->seed;
    po.nthreads = o->nthreads;
    po.times = &no_times, po.ntimes = 0;   /* the states are not recorded: the functional is */
    for (k = 0; k < K; k++) {   /* the column names stay alive on the stack */
        if (names) {
            lua_rawgeti(L, names, k + 1);
        } else if (scalar)
            lua_pushliteral(L, "h");
        else
            lua_pushfstring(L, "h[%d]", k + 1);
        cn[k] = lua_tostring(L, -1);
    }
    plm_l_ssm_params(L, opts, fn, m, &P, &saved, &run);
    R = plm_l_newresults(L, po.chains, 0);
    plm_ctx_clear(&ctx);
    plm_interrupt_clear();
    memcpy(m->params, run, (size_t)m->np * sizeof *run);
    st = plm_ppg_gibbs_run(&ctx, m, T, ys, &P, hprog, K, cn, &o->back, &po, R);
    memcpy(m->params, saved, (size_t)m->np * sizeof *saved);
    if (st == PLM_EINTR) {
        plm_interrupt_clear();
        return luaL_error(L, "%s: interrupted", fn);
    }
    if (st) return plm_l_fail_as(L, &ctx, fn);
    plm_l_pmcmc_posterior(L, R, "ppg", po.chains, po.samples, po.warmup, po.seed, po.N);
    plm_l_pmcmc_conjugate(L, &P);
    lua_pushinteger(L, o->back.Ntilde);
    lua_setfield(L, -2, "backward_draws");
    return 1;
}

/* plume.ppg(ssm, ys, {functional = function(t, xprev, x) ... end | {name = function, ...}, particles =,
** backward_draws =, iters =, burnin =, seed =, threads =, params = {name = value}, ...}) -> result */
static int l_ppg(lua_State *L)
{
    const char *fn = "plume.ppg";
    int opts = lua_istable(L, 3) ? 3 : 0, info, holder, ftab, names = 0, scalar = 1, K = 0, hnodes[64], rej_default, k;
    plm_ssm *m = plm_l_tossm(L, 1);
    plm_graph *g;
    plm_ppg_opts o;
    plm_ppg_result r;
    plm_paris_prog H;
    plm_ssm_gauss G;
    plm_prog *hprog;
    double *ys, *saved;
    long T;
    lua_Integer v;
    plm_ctx ctx;
    plm_status st;
    if (!m) return luaL_error(L, "%s: expected a plume.ssm (got %s)", fn, luaL_typename(L, 1));
    if (!opts)
        return luaL_error(L, "%s: options must be a table with functional = function(t, xprev, x) ... end", fn);
    plm_l_checkopts(L, opts, fn, ppg_options);
    lua_getiuservalue(L, 1, 1);
    info = lua_gettop(L);
    lua_getfield(L, info, "holder");
    holder = lua_gettop(L);
    g = plm_l_testobj(L, holder, PLM_L_GRAPH);
    ys = plm_l_ssm_ys(L, 2, m->ydim, fn, &T);
    plm_ppg_opts_default(&o);
    v = plm_l_optint(L, opts, fn, "particles", 100);
    if (v < 2 || v > 100000000) return luaL_error(L, "%s: option 'particles' must be in 2..1e8 (got %d)", fn, (int)v);
    o.N = (size_t)v;
    v = plm_l_optint(L, opts, fn, "backward_draws", 2);
    if (v < 1 || v > 1000) return luaL_error(L, "%s: option 'backward_draws' must be in 1..1000 (got %d)", fn, (int)v);
    o.back.Ntilde = (int)v;
    v = plm_l_optint(L, opts, fn, "iters", 100);
    if (v < 1 || v > 100000000) return luaL_error(L, "%s: option 'iters' must be in 1..1e8 (got %d)", fn, (int)v);
    o.iters = (long)v;
    v = plm_l_optint(L, opts, fn, "burnin", o.iters / 10);
    if (v < 0 || v >= o.iters)
        return luaL_error(L, "%s: option 'burnin' must be in 0..iters - 1 = %d (got %d)", fn, (int)o.iters - 1, (int)v);
    o.burnin = (long)v;
    v = plm_l_optint(L, opts, fn, "max_tries", 10);
    if (v < 0 || v > 1000) return luaL_error(L, "%s: option 'max_tries' must be in 0..1000 (got %d)", fn, (int)v);
    o.back.max_tries = (int)v;
    v = plm_l_optint(L, opts, fn, "mh_steps", 5);
    if (v < 0 || v > 1000) return luaL_error(L, "%s: option 'mh_steps' must be in 0..1000 (got %d)", fn, (int)v);
    o.back.mh_steps = (int)v;
    o.seed = plm_l_seed(L, opts, fn);
    o.nthreads = plm_l_threads(L, opts, fn);
    /* accept-reject backward draws: with the given bound, or the one plume derives for a Gaussian transition */
    plm_ctx_clear(&ctx);
    o.back.log_bound_const = plm_l_optnum(L, opts, fn, "bound", NAN);
    rej_default = !isnan(o.back.log_bound_const);
    if (!rej_default && plm_ssm_gauss_init(&ctx, m, &G) == PLM_OK && G.const_cov) {
        o.back.gauss = &G;
        rej_default = 1;
    }
    o.back.rejection = plm_l_optbool(L, opts, fn, "rejection", rej_default);
    if (o.back.rejection && !rej_default)
        return luaL_error(L, "%s: rejection sampling needs a bound of the transition density: plume derives it for "
                             "Gaussian transitions whose covariance does not depend on the state; give bound = log "
                             "of an upper bound, or rejection = false", fn);
    /* the functional: one function (a number or a list), or {name = function} compiled together, names sorted */
    lua_getfield(L, opts, "functional");
    ftab = lua_gettop(L);
    if (lua_isfunction(L, ftab))
        K = trace_h(L, ftab, holder, g, m->dim, hnodes, 64, &scalar, "functional");
    else if (lua_istable(L, ftab)) {
        const char **key;
        int n = 0, one;
        lua_pushnil(L);
        while (lua_next(L, ftab)) {
            if (lua_type(L, -2) != LUA_TSTRING || !lua_isfunction(L, -1))
                return luaL_error(L, "%s: functional must map names to functions(t, xprev, x)", fn);
            lua_pop(L, 1);
            n++;
        }
        if (n < 1 || n > 64) return luaL_error(L, "%s: functional must name 1..64 functions (got %d)", fn, n);
        key = plm_l_scratch(L, (size_t)n * sizeof *key);
        lua_pushnil(L);
        for (k = 0; lua_next(L, ftab); k++) {
            lua_pop(L, 1);
            key[k] = lua_tostring(L, -1);   /* alive in the table */
        }
        qsort(key, (size_t)n, sizeof *key, cmp_str);
        lua_createtable(L, n, 0);
        names = lua_gettop(L);
        for (k = 0; k < n; k++) {
            char what[96];
            lua_pushstring(L, key[k]);
            lua_rawseti(L, names, k + 1);
            snprintf(what, sizeof what, "functional.%s", key[k]);
            lua_getfield(L, ftab, key[k]);
            if (trace_h(L, lua_gettop(L), holder, g, m->dim, hnodes + k, 1, &one, what) != 1 || !one)
                return luaL_error(L, "%s: %s must return a number", fn, what);
            lua_pop(L, 1);
        }
        K = n;
        scalar = 0;
    } else
        return luaL_error(L, "%s: option 'functional' must be a function(t, xprev, x) or a table of them by name "
                             "(got %s)", fn, luaL_typename(L, ftab));
    if (plm_prog_compile(&ctx, g, K, hnodes, (1u << PLM_GRP_X) | (1u << PLM_GRP_Z), &hprog)) return plm_l_fail(L, &ctx);
    if (wants_priors(L, opts, info, m)) return ppg_gibbs(L, opts, m, ys, T, hprog, K, scalar, names, &o);
    if (lua_getfield(L, opts, "chains") != LUA_TNIL)
        return luaL_error(L, "%s: option 'chains' needs parameters to sample (priors in params)", fn);
    lua_pop(L, 1);
    /* the parameters for the run: opts.params = {name = value}; every one must have a value */
    saved = plm_l_scratch(L, ((size_t)m->np + 1) * sizeof *saved);
    memcpy(saved, m->params, (size_t)m->np * sizeof *saved);
    if (lua_getfield(L, opts, "params") != LUA_TNIL) {
        if (!lua_istable(L, -1)) return luaL_error(L, "%s: option 'params' must be a table of values", fn);
        lua_getfield(L, info, "names");
        plm_l_set_named(L, lua_gettop(L) - 1, lua_gettop(L), m->params, m->np, fn);
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    lua_getfield(L, info, "names");
    for (k = 0; k < m->np; k++)
        if (isnan(m->params[k])) {
            lua_rawgeti(L, -1, k + 1);
            memcpy(m->params, saved, (size_t)m->np * sizeof *saved);
            return luaL_error(L, "%s: parameter '%s' has no value (pass params = {%s = ...})", fn, lua_tostring(L, -1),
                              lua_tostring(L, -1));
        }
    lua_pop(L, 1);
    H.m = m, H.p = hprog, H.nthreads = o.nthreads;
    plm_interrupt_clear();
    st = plm_ppg_run(&ctx, m, T, ys, K, plm_paris_prog_fn, &H, &o, &r);
    memcpy(m->params, saved, (size_t)m->np * sizeof *saved);
    if (st == PLM_EINTR) {
        plm_interrupt_clear();
        return luaL_error(L, "%s: interrupted", fn);
    }
    if (st) return plm_l_fail_as(L, &ctx, fn);
    lua_createtable(L, 0, 12);
    push_shaped(L, r.value, K, 1, scalar, names);
    lua_setfield(L, -2, "value");
    push_shaped(L, r.mcse, K, 1, scalar, names);
    lua_setfield(L, -2, "mcse");
    push_shaped(L, r.paris, K, 1, scalar, names);
    lua_setfield(L, -2, "paris");
    push_trace(L, &r, scalar, names);
    lua_setfield(L, -2, "trace");
    lua_pushinteger(L, r.iters);
    lua_setfield(L, -2, "iters");
    lua_pushinteger(L, r.burnin);
    lua_setfield(L, -2, "burnin");
    lua_pushinteger(L, (lua_Integer)o.N);
    lua_setfield(L, -2, "particles");
    lua_pushinteger(L, o.back.Ntilde);
    lua_setfield(L, -2, "backward_draws");
    lua_pushinteger(L, (lua_Integer)o.seed);
    lua_setfield(L, -2, "seed");
    lua_pushboolean(L, o.back.rejection);
    lua_setfield(L, -2, "rejection");
    lua_createtable(L, 0, 4);
    lua_pushinteger(L, (lua_Integer)r.stats.proposals);
    lua_setfield(L, -2, "proposals");
    lua_pushinteger(L, (lua_Integer)r.stats.accepted);
    lua_setfield(L, -2, "accepted");
    lua_pushinteger(L, (lua_Integer)r.stats.exact);
    lua_setfield(L, -2, "exact");
    lua_pushinteger(L, (lua_Integer)r.stats.mh);
    lua_setfield(L, -2, "mh");
    lua_setfield(L, -2, "backward");
    if (luaL_newmetatable(L, "plume.ppg_result")) {
        lua_pushcfunction(L, l_result_tostring);
        lua_setfield(L, -2, "__tostring");
    }
    lua_setmetatable(L, -2);
    plm_ppg_result_free(&r);
    return 1;
}

void plm_l_open_ppg(lua_State *L)
{
    lua_pushcfunction(L, l_ppg);
    lua_setfield(L, -2, "ppg");
}
