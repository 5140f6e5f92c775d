/* l_pmcmc.c -- particle MCMC on plume.ssm models (runtime/pgibbs.h, runtime/pmmh.h): plume.pgibbs(ssm, ys,
** opts) and plume.pmmh(ssm, ys, opts). Both read which parameters to sample the same way (params_setup) and
** hand back a posterior object (plume._posterior), so summary, draws, write_csv and write_json are those of
** plume.infer. */
#include "lssm.h"
#include "larray.h"
#include "ldist.h"
#include "lmodel.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>


/* What both samplers share: the model, the data, the parameters to sample and the common options. */
typedef struct pm_args {
    plm_ssm *m;
    long T;
    double *ys;
    double *saved;          /* the model's own parameter values, put back after the run */
    double *run;            /* the values for the run: NaN for the sampled ones */
    plm_ssm_prior P;
    int *idx;
    const plm_dist **dist;
    const char **names;
    int chains, nthreads;
    long samples, warmup;
    uint64_t seed;
    double *init;           /* chains * nfree unconstrained starts, or NULL */
} pm_args;

static void restore(pm_args *a)
{
    memcpy(a->m->params, a->saved, (size_t)a->m->np * sizeof *a->saved);
}

/* The parameters: opts.params[name] is a prior (sampled) or a number (held at that value for the run); a
** parameter it does not name keeps the model's value, or is sampled under the prior plume.ssm was given. */
static void params_setup(lua_State *L, int opts, const char *fn, pm_args *a)
{
    int info, names, priors, given = 0, j, np;
    np = a->m->np;
    lua_getiuservalue(L, 1, 1);
    info = lua_gettop(L);
    lua_getfield(L, info, "names");
    names = lua_gettop(L);
    lua_getfield(L, info, "priors");
    priors = lua_gettop(L);
    if (opts && lua_getfield(L, opts, "params") != LUA_TNIL) {
        if (!lua_istable(L, -1))
            luaL_error(L, "%s: option 'params' must be a table of priors (plume.dist) and values (got %s)", fn,
                       luaL_typename(L, -1));
        given = lua_gettop(L);
        lua_pushnil(L);
        while (lua_next(L, given)) {   /* every key must name a parameter */
            int found = 0;
            lua_pop(L, 1);
            for (j = 0; j < np && !found; j++) {
                lua_rawgeti(L, names, j + 1);
                found = lua_rawequal(L, -1, -2);
                lua_pop(L, 1);
            }
            if (!found)
                luaL_error(L, "%s: params.%s is not a parameter of the model", fn,
                           lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : luaL_typename(L, -1));
        }
    } else if (opts)
        lua_pop(L, 1);
    a->saved = plm_l_scratch(L, ((size_t)np + 1) * sizeof *a->saved);
    memcpy(a->saved, a->m->params, (size_t)np * sizeof *a->saved);
    a->idx = plm_l_scratch(L, ((size_t)np + 1) * sizeof *a->idx);
    a->dist = plm_l_scratch(L, ((size_t)np + 1) * sizeof *a->dist);
    a->names = plm_l_scratch(L, ((size_t)np + 1) * sizeof *a->names);
    a->run = plm_l_scratch(L, ((size_t)np + 1) * sizeof *a->run);
    a->P.nfree = 0;
    for (j = 0; j < np; j++) {
        const char *name;
        plm_dist *d = NULL;
        double v = a->m->params[j];
        int ty;
        lua_rawgeti(L, names, j + 1);
        name = lua_tostring(L, -1);   /* kept alive by the model's info table */
        ty = given ? lua_getfield(L, given, name) : (lua_pushnil(L), LUA_TNIL);
        if (ty == LUA_TNUMBER)
            v = lua_tonumber(L, -1);
        else if (ty != LUA_TNIL && !(d = plm_l_testobj(L, -1, PLM_L_DIST)))
            luaL_error(L, "%s: params.%s must be a distribution (a prior) or a number (a value), got %s", fn, name,
                       luaL_typename(L, -1));
        else if (ty == LUA_TNIL && isnan(v)) {
            lua_getfield(L, priors, name);
            if (!(d = plm_l_testobj(L, -1, PLM_L_DIST)))
                luaL_error(L, "%s: parameter '%s' has neither a value nor a prior (pass params = {%s = plume.dist...})",
                           fn, name, name);
            lua_pop(L, 1);   /* the prior stays alive in the model's info table */
        }
        lua_pop(L, 2);
        if (d) {
            if (d->dim != 1 || d->kind == PLM_DIST_CATEGORICAL || plm_dist_info_of(d->kind)->discrete)
                luaL_error(L, "%s: the prior of '%s' must be a scalar continuous distribution (got %s)", fn, name,
                           plm_dist_info_of(d->kind)->name);
            a->idx[a->P.nfree] = j;
            a->dist[a->P.nfree] = d;   /* alive in opts.params or the model's info table during the call */
            a->names[a->P.nfree++] = name;
            v = NAN;
        } else if (!isfinite(v))
            luaL_error(L, "%s: parameter '%s' must have a finite value (got %f)", fn, name, v);
        a->run[j] = v;
    }
    a->P.idx = a->idx;
    a->P.dist = a->dist;
    a->P.names = a->names;
}

void plm_l_ssm_params(lua_State *L, int opts, const char *fn, plm_ssm *m, plm_ssm_prior *P, double **saved,
                      double **run)
{
    pm_args a;
    memset(&a, 0, sizeof a);
    a.m = m;
    params_setup(L, opts, fn, &a);
    *P = a.P, *saved = a.saved, *run = a.run;
}

/* The model at 1, ys at 2, and the options both samplers take. */
static void common_setup(lua_State *L, int opts, const char *fn, pm_args *a, long def_samples)
{
    lua_Integer c, s, w;
    memset(a, 0, sizeof *a);
    if (!(a->m = plm_l_tossm(L, 1))) luaL_error(L, "%s: expected a plume.ssm (got %s)", fn, luaL_typename(L, 1));
    a->ys = plm_l_ssm_ys(L, 2, a->m->ydim, fn, &a->T);
    s = plm_l_optint(L, opts, fn, "samples", def_samples);
    w = plm_l_optint(L, opts, fn, "warmup", s);
    c = plm_l_optint(L, opts, fn, "chains", 4);
    if (s < 1 || s > 100000000) luaL_error(L, "%s: option 'samples' must be in 1..1e8 (got %d)", fn, (int)s);
    if (w < 0 || w > 100000000) luaL_error(L, "%s: option 'warmup' must be in 0..1e8 (got %d)", fn, (int)w);
    if (c < 1 || c > 1024) luaL_error(L, "%s: option 'chains' must be in 1..1024 (got %d)", fn, (int)c);
    a->samples = (long)s, a->warmup = (long)w, a->chains = (int)c;
    a->seed = plm_l_seed(L, opts, fn);
    a->nthreads = plm_l_threads(L, opts, fn);
    params_setup(L, opts, fn, a);
}

/* init = {name = value}: one start for every chain, naming every sampled parameter (without it each chain
** starts from prior draws). What this pushes stays on the stack for the run. */
static void init_setup(lua_State *L, int opts, const char *fn, pm_args *a)
{
    const int d = a->P.nfree;
    double *u, *x;
    int j, c, tab;
    if (!opts || lua_getfield(L, opts, "init") == LUA_TNIL) return;
    tab = lua_gettop(L);
    if (!lua_istable(L, tab)) luaL_error(L, "%s: option 'init' must be a table of values by parameter name", fn);
    lua_pushnil(L);
    while (lua_next(L, tab)) {
        int found = 0;
        lua_pop(L, 1);
        for (j = 0; j < d && !found; j++) found = lua_type(L, -1) == LUA_TSTRING && !strcmp(lua_tostring(L, -1), a->names[j]);
        if (!found)
            luaL_error(L, "%s: init.%s is not a sampled parameter", fn,
                       lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : luaL_typename(L, -1));
    }
    x = plm_l_scratch(L, ((size_t)a->m->np + 1) * sizeof *x);
    u = plm_l_scratch(L, ((size_t)d + 1) * sizeof *u);
    a->init = plm_l_scratch(L, ((size_t)a->chains * (size_t)d + 1) * sizeof *a->init);
    for (j = 0; j < d; j++) {
        double v;
        if (lua_getfield(L, tab, a->names[j]) != LUA_TNUMBER)
            luaL_error(L, "%s: init.%s must be a number (init gives every sampled parameter a start)", fn, a->names[j]);
        v = x[a->idx[j]] = lua_tonumber(L, -1);
        lua_pop(L, 1);
        if (!(plm_dist_logpdf(a->dist[j], &v) > -INFINITY))
            luaL_error(L, "%s: init.%s = %f is outside the support of its prior", fn, a->names[j], v);
    }
    plm_ssm_prior_free(&a->P, x, u);
    for (j = 0; j < d; j++)
        if (!isfinite(u[j]))
            luaL_error(L, "%s: init.%s = %f is on the boundary of its prior's support", fn, a->names[j], x[a->idx[j]]);
    for (c = 0; c < a->chains; c++) memcpy(a->init + (size_t)c * (size_t)d, u, (size_t)d * sizeof *u);
}

/* Put the model's own parameter values back, then raise a failure. */
static void finish(lua_State *L, pm_args *a, plm_ctx *ctx, plm_status st, const char *fn)
{
    restore(a);
    if (st == PLM_EINTR) {
        plm_interrupt_clear();
        luaL_error(L, "%s: interrupted", fn);
    }
    if (st) plm_l_fail_as(L, ctx, fn);
}

void plm_l_pmcmc_posterior(lua_State *L, plm_results *R, const char *method, int chains, long samples, long warmup,
                           uint64_t seed, size_t N)
{
    plm_l_push_results(L, R);
    lua_pushstring(L, method);
    lua_setfield(L, -2, "method");
    lua_pushinteger(L, chains);
    lua_setfield(L, -2, "chains");
    lua_pushinteger(L, samples);
    lua_setfield(L, -2, "samples");
    lua_pushinteger(L, warmup);
    lua_setfield(L, -2, "warmup");
    lua_pushinteger(L, (lua_Integer)seed);
    lua_setfield(L, -2, "seed");
    lua_pushinteger(L, (lua_Integer)N);
    lua_setfield(L, -2, "particles");
    plm_l_pushmodule(L);
    lua_getfield(L, -1, "_posterior");
    lua_remove(L, -2);
    lua_insert(L, -2);
    lua_call(L, 1, 1);
}

void plm_l_pmcmc_conjugate(lua_State *L, const plm_ssm_prior *P)
{
    int k, list;
    lua_getfield(L, -1, "conjugate");
    list = lua_gettop(L);
    lua_createtable(L, 0, P->nfree);
    for (k = 0; k < P->nfree; k++) {
        int on = 0;
        if (lua_istable(L, list)) {
            on = lua_geti(L, list, k + 1) == LUA_TNUMBER && lua_tonumber(L, -1) > 0;
            lua_pop(L, 1);
        }
        lua_pushboolean(L, on);
        lua_setfield(L, -2, P->names[k]);
    }
    lua_setfield(L, -3, "conjugate");
    lua_pop(L, 1);
}

/* The results become a posterior object (plume._posterior) with the run's settings. */
static void push_posterior(lua_State *L, plm_results *R, const pm_args *a, const char *method, size_t N)
{
    plm_l_pmcmc_posterior(L, R, method, a->chains, a->samples, a->warmup, a->seed, N);
}

static int check_opts_table(lua_State *L, const char *fn)
{
    if (!lua_isnoneornil(L, 3) && !lua_istable(L, 3))
        return luaL_error(L, "%s: options must be a table (got %s)", fn, luaL_typename(L, 3));
    return lua_istable(L, 3) ? 3 : 0;
}

static const char *const pgibbs_options[] = {"particles", "samples", "warmup", "chains", "seed", "threads", "params",
                                             "init", "times", "ancestor_sampling", "param_moves", "conjugate",
                                             NULL};

/* plume.pgibbs(ssm, ys, opts) -> posterior */
static int l_pgibbs(lua_State *L)
{
    const char *fn = "plume.pgibbs";
    int opts = check_opts_table(L, fn);
    pm_args a;
    plm_pgibbs_opts o;
    plm_results *R;
    plm_ctx ctx;
    plm_status st;
    lua_Integer N;
    long *times = NULL, nt = 0;
    plm_l_checkopts(L, opts, fn, pgibbs_options);
    common_setup(L, opts, fn, &a, 1000);
    plm_pgibbs_opts_default(&o);
    N = plm_l_optint(L, opts, fn, "particles", 100);
    if (N < 2 || N > 100000000) return luaL_error(L, "%s: option 'particles' must be in 2..1e8 (got %d)", fn, (int)N);
    o.N = (size_t)N;
    o.ancestor_sampling = plm_l_optbool(L, opts, fn, "ancestor_sampling", 1);
    o.conjugate = plm_l_optbool(L, opts, fn, "conjugate", 1);
    o.param_moves = (int)plm_l_optint(L, opts, fn, "param_moves", 1);
    if (o.param_moves < 1 || o.param_moves > 1000)
        return luaL_error(L, "%s: option 'param_moves' must be in 1..1000 (got %d)", fn, o.param_moves);
    /* times = {t, ...} or "all" (the default) */
    if (opts && lua_getfield(L, opts, "times") != LUA_TNIL) {
        int tab = lua_gettop(L);
        lua_Integer k;
        if (lua_type(L, tab) == LUA_TSTRING && !strcmp(lua_tostring(L, tab), "all"))
            times = NULL;
        else if (lua_istable(L, tab)) {
            nt = (long)luaL_len(L, tab);
            times = plm_l_scratch(L, ((size_t)nt + 1) * sizeof *times);
            for (k = 1; k <= nt; k++) {
                lua_Integer t;
                if (lua_geti(L, tab, k) != LUA_TNUMBER || !lua_isinteger(L, -1))
                    return luaL_error(L, "%s: times[%d] must be a whole number", fn, (int)k);
                t = lua_tointeger(L, -1);
                if (t < 1 || t > a.T) return luaL_error(L, "%s: times[%d] = %d is outside 1..%d", fn, (int)k, (int)t, (int)a.T);
                times[k - 1] = (long)t;
                lua_pop(L, 1);
            }
        } else
            return luaL_error(L, "%s: option 'times' must be a list of times or \"all\" (got %s)", fn, luaL_typename(L, tab));
    }
    if (!times && (double)a.chains * (double)a.samples * (double)a.T * a.m->dim > 2e8)
        return luaL_error(L, "%s: recording the state at all %d times would keep %.0f numbers; list the ones wanted "
                             "with times = {...}", fn, (int)a.T, (double)a.chains * (double)a.samples * (double)a.T * a.m->dim);
    init_setup(L, opts, fn, &a);
    o.chains = a.chains, o.samples = a.samples, o.warmup = a.warmup, o.seed = a.seed, o.nthreads = a.nthreads;
    o.times = times;
    o.ntimes = times ? nt : 0;
    o.init = a.init;
    R = plm_l_newresults(L, a.chains, 0);
    plm_ctx_clear(&ctx);
    plm_interrupt_clear();
    memcpy(a.m->params, a.run, (size_t)a.m->np * sizeof *a.run);
    st = plm_pgibbs_run(&ctx, a.m, a.T, a.ys, &a.P, &o, R);
    finish(L, &a, &ctx, st, fn);
    push_posterior(L, R, &a, "pgibbs", o.N);
    plm_l_pmcmc_conjugate(L, &a.P);
    return 1;
}

static const char *const pmmh_options[] = {"particles", "samples", "warmup", "chains", "seed", "threads", "params",
                                           "init", "method", "resample", "ess_threshold", "distribute", NULL};

/* plume.pmmh(ssm, ys, opts) -> posterior */
static int l_pmmh(lua_State *L)
{
    const char *fn = "plume.pmmh", *method, *scheme;
    int opts = check_opts_table(L, fn), sc;
    pm_args a;
    plm_pmmh_opts o;
    plm_results *R;
    plm_ctx ctx;
    plm_status st;
    lua_Integer N;
    plm_l_checkopts(L, opts, fn, pmmh_options);
    common_setup(L, opts, fn, &a, 1000);
    if (a.P.nfree == 0)
        return luaL_error(L, "%s: no parameter has a prior, so there is nothing to sample (give params = {name = "
                             "plume.dist...})", fn);
    plm_pmmh_opts_default(&o);
    N = plm_l_optint(L, opts, fn, "particles", 1000);
    if (N < 1 || N > 100000000) return luaL_error(L, "%s: option 'particles' must be in 1..1e8 (got %d)", fn, (int)N);
    o.pf.N = (size_t)N;
    method = plm_l_optstr(L, opts, fn, "method", "bootstrap");
    if (!strcmp(method, "bootstrap"))
        o.pf.method = PLM_PF_BOOTSTRAP;
    else if (!strcmp(method, "guided")) {
        if (!a.m->guided)
            return luaL_error(L, "%s: method \"guided\" needs a model with a proposal (plume.ssm{..., proposal = ...})", fn);
        o.pf.method = PLM_PF_GUIDED;
    } else
        return luaL_error(L, "%s: unknown method '%s' (\"bootstrap\", \"guided\")", fn, method);
    scheme = plm_l_optstr(L, opts, fn, "resample", "systematic");
    if ((sc = plm_resample_scheme_by_name(scheme)) < 0)
        return luaL_error(L, "%s: unknown resampling scheme '%s' (resample: %s)", fn, scheme, plm_resample_scheme_list);
    o.pf.scheme = (plm_resample_scheme)sc;
    o.pf.ess_threshold = plm_l_optnum(L, opts, fn, "ess_threshold", 0.5);
    if (!(o.pf.ess_threshold >= 0 && o.pf.ess_threshold <= 1))
        return luaL_error(L, "%s: option 'ess_threshold' must be in [0, 1] (got %f)", fn, o.pf.ess_threshold);
    init_setup(L, opts, fn, &a);
    o.chains = a.chains, o.samples = a.samples, o.warmup = a.warmup, o.seed = a.seed, o.nthreads = a.nthreads;
    o.distribute = plm_l_spread(L, opts, fn, a.chains);
    o.init = a.init;
    R = plm_l_newresults(L, a.chains, 0);
    plm_ctx_clear(&ctx);
    plm_interrupt_clear();
    memcpy(a.m->params, a.run, (size_t)a.m->np * sizeof *a.run);
    st = plm_pmmh_run(&ctx, a.m, a.T, a.ys, &a.P, &o, R);
    finish(L, &a, &ctx, st, fn);
    push_posterior(L, R, &a, "pmmh", o.pf.N);
    return 1;
}

plm_spread plm_l_spread(lua_State *L, int opts, const char *fn, size_t chains)
{
    const char *d = plm_l_optstr(L, opts, fn, "distribute", chains >= (size_t)plm_comm_size() ? "chains" : "particles");
    if (!strcmp(d, "chains")) return PLM_SPREAD_CHAINS;
    if (!strcmp(d, "particles")) return PLM_SPREAD_PARTICLES;
    luaL_error(L, "%s: option 'distribute' must be \"particles\" or \"chains\" (got '%s')", fn, d);
    return PLM_SPREAD_NONE;
}

void plm_l_open_pmcmc(lua_State *L)
{
    lua_pushcfunction(L, l_pgibbs);
    lua_setfield(L, -2, "pgibbs");
    lua_pushcfunction(L, l_pmmh);
    lua_setfield(L, -2, "pmmh");
}
