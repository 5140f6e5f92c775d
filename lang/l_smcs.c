/* l_smcs.c -- SMC samplers: plume.smc_sampler(model, data, opts) on static model programs (runtime/smcs.h:
** adaptive tempering, IBIS, waste-free moves), and plume.smc2(ssm, ys, opts) on plume.ssm models with unknown
** parameters (runtime/smc2.h). Both hand back a posterior object (plume._posterior) with the evidence and the
** run's traces. */
#include "linfer.h"
#include "lssm.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gmodel.h"
#include "smc2.h"
#include "smcs.h"

static int opts_table(lua_State *L, int idx, const char *fn)
{
    if (!lua_isnoneornil(L, idx) && !lua_istable(L, idx))
        return luaL_error(L, "%s: options must be a table (got %s)", fn, luaL_typename(L, idx));
    return lua_istable(L, idx) ? idx : 0;
}

static size_t opt_count(lua_State *L, int opts, const char *fn, const char *key, lua_Integer def, lua_Integer lo)
{
    lua_Integer v = plm_l_optint(L, opts, fn, key, def);
    if (v < lo || v > 100000000) luaL_error(L, "%s: option '%s' must be in %d..1e8 (got %d)", fn, key, (int)lo, (int)v);
    return (size_t)v;
}

static int opt_scheme(lua_State *L, int opts, const char *fn)
{
    const char *name = plm_l_optstr(L, opts, fn, "resample", "systematic");
    int sc = plm_resample_scheme_by_name(name);
    if (sc < 0) luaL_error(L, "%s: unknown resampling scheme '%s' (resample: %s)", fn, name, plm_resample_scheme_list);
    return sc;
}

/* Push the series v[0..n-1] as a Lua list into the table at -2 under name. */
static void set_list(lua_State *L, const char *name, const double *v, long n)
{
    long i;
    lua_createtable(L, (int)n, 0);
    for (i = 0; i < n; i++) {
        lua_pushnumber(L, v[i]);
        lua_rawseti(L, -2, i + 1);
    }
    lua_setfield(L, -2, name);
}

static void set_num(lua_State *L, const char *name, double v)
{
    lua_pushnumber(L, v);
    lua_setfield(L, -2, name);
}

static void set_int(lua_State *L, const char *name, lua_Integer v)
{
    lua_pushinteger(L, v);
    lua_setfield(L, -2, name);
}

/* The table on top becomes a posterior object. */
static void to_posterior(lua_State *L)
{
    plm_l_pushmodule(L);
    lua_getfield(L, -1, "_posterior");
    lua_remove(L, -2);
    lua_insert(L, -2);
    lua_call(L, 1, 1);
}

/* ---- plume.smc_sampler ---- */

static const char *const smcs_options[] = {"particles", "method", "ess_target", "ess_threshold", "moves", "waste_free",
                                           "chain_length", "scale", "resample", "seed", "threads", "max_steps", "kernel",
                                           "leapfrog", "step_size", NULL};

/* The draws of the final cloud: its u through the model's transforms, weighted when the weights differ. Pushes
** one value (the draws). */
static void push_cloud(lua_State *L, plm_gmodel *gm, const plm_smcs_result *r, int threads, const char *fn)
{
    plm_ctx ctx;
    plm_draws *U, *V, *D;
    int top = lua_gettop(L);
    double *row = plm_l_scratch(L, ((size_t)gm->dim + 1) * sizeof *row);
    size_t i;
    int k, ncol;
    plm_ctx_clear(&ctx);
    if (plm_draws_new(&ctx, 1, &U) || plm_draws_new(&ctx, 1, &V)) plm_l_fail_in(L, &ctx, fn);
    plm_l_pushdraws(L, U);   /* kept alive on the stack */
    plm_l_pushdraws(L, V);
    for (k = 0; k < gm->dim; k++) {
        char name[32];
        snprintf(name, sizeof name, "u%d", k + 1);
        plm_draws_col(U, name, 1);
    }
    for (i = 0; i < r->N; i++) {
        for (k = 0; k < gm->dim; k++) row[k] = r->u[(size_t)k * r->N + i];
        if (plm_draws_push(&ctx, U, 0, row, gm->dim, 0)) plm_l_fail_in(L, &ctx, fn);
    }
    if (plm_gmodel_draws(&ctx, gm, U, V, threads)) plm_l_fail_in(L, &ctx, fn);
    lua_pop(L, 2);
    if (!r->weighted) {
        plm_l_pushdraws(L, V);
        lua_replace(L, top + 1);
        lua_settop(L, top + 1);
        return;
    }
    if (plm_draws_new(&ctx, 1, &D)) plm_l_fail_in(L, &ctx, fn);
    plm_draws_set_weighted(D, 1);
    ncol = plm_draws_ncols(V);
    row = plm_l_scratch(L, ((size_t)ncol + 1) * sizeof *row);
    for (k = 0; k < ncol; k++) plm_draws_col(D, plm_draws_name(V, k), 1);
    for (i = 0; i < r->N; i++) {
        for (k = 0; k < ncol; k++) row[k] = plm_draws_chain(V, k, 0)[i];
        if (plm_draws_push(&ctx, D, 0, row, ncol, r->logw[i])) plm_l_fail_in(L, &ctx, fn);
    }
    plm_l_pushdraws(L, D);
    lua_replace(L, top + 1);
    lua_settop(L, top + 1);
}

/* plume.smc_sampler(model, data, opts) -> posterior with logz, temperatures, ess, accept_rate, logz_increments */
static int l_smc_sampler(lua_State *L)
{
    const char *fn = "plume.smc_sampler", *method, *kernel;
    int opts, threads, ibis;
    plm_l_program pg;
    plm_gmodel *gm;
    plm_smcs_opts o;
    plm_smcs_result r;
    plm_ctx ctx;
    plm_status st;
    double t0 = plm_l_now();
    lua_settop(L, 3);
    if (!lua_istable(L, 1)) return luaL_error(L, "%s: expected a plume.model (got %s)", fn, luaL_typename(L, 1));
    opts = opts_table(L, 3, fn);
    plm_l_checkopts(L, opts, fn, smcs_options);
    plm_smcs_opts_default(&o);
    method = plm_l_optstr(L, opts, fn, "method", "tempering");
    if (strcmp(method, "tempering") && strcmp(method, "ibis"))
        return luaL_error(L, "%s: unknown method '%s' (\"tempering\", \"ibis\")", fn, method);
    ibis = !strcmp(method, "ibis");
    o.method = ibis ? PLM_SMCS_IBIS : PLM_SMCS_TEMPERING;
    o.N = opt_count(L, opts, fn, "particles", 1000, 2);
    o.ess_target = plm_l_optnum(L, opts, fn, "ess_target", 0.5);
    o.ess_threshold = plm_l_optnum(L, opts, fn, "ess_threshold", 0.5);
    o.moves = (int)opt_count(L, opts, fn, "moves", 5, 1);
    o.waste_free = plm_l_optbool(L, opts, fn, "waste_free", 0);
    o.chain_length = opt_count(L, opts, fn, "chain_length", 10, 2);
    o.scale = plm_l_optnum(L, opts, fn, "scale", 0);
    o.scheme = (plm_resample_scheme)opt_scheme(L, opts, fn);
    o.max_steps = (long)opt_count(L, opts, fn, "max_steps", 10000, 1);
    kernel = plm_l_optstr(L, opts, fn, "kernel", "rw");
    if (strcmp(kernel, "rw") && strcmp(kernel, "hmc"))
        return luaL_error(L, "%s: unknown kernel '%s' (\"rw\", \"hmc\")", fn, kernel);
    o.kernel = strcmp(kernel, "hmc") ? PLM_SMCS_RW : PLM_SMCS_HMC;
    o.leapfrog = (int)opt_count(L, opts, fn, "leapfrog", 10, 1);
    o.step_size = plm_l_optnum(L, opts, fn, "step_size", 0.5);
    if (!(o.step_size > 0) || !isfinite(o.step_size))
        return luaL_error(L, "%s: option 'step_size' must be > 0 (got %f)", fn, (lua_Number)o.step_size);
    o.seed = plm_l_seed(L, opts, fn);
    threads = plm_l_threads(L, opts, fn);
    o.nthreads = threads;
    if (!(o.ess_target > 0 && o.ess_target < 1))
        return luaL_error(L, "%s: option 'ess_target' must be in (0, 1) (got %f)", fn, (lua_Number)o.ess_target);
    if (!(o.ess_threshold > 0 && o.ess_threshold <= 1))
        return luaL_error(L, "%s: option 'ess_threshold' must be in (0, 1] (got %f)", fn, (lua_Number)o.ess_threshold);
    if (!(o.scale >= 0) || !isfinite(o.scale) || (opts && lua_getfield(L, opts, "scale") != LUA_TNIL && !(o.scale > 0)))
        return luaL_error(L, "%s: option 'scale' must be > 0 (got %f)", fn, (lua_Number)o.scale);
    if (opts) lua_pop(L, 1);
    if (o.waste_free && (o.N % o.chain_length || o.N / o.chain_length < 2))
        return luaL_error(L, "%s: waste-free moves need 'chain_length' (%d) to divide 'particles' (%d) into at least 2 "
                             "chains", fn, (int)o.chain_length, (int)o.N);
    plm_l_push_program(L, 1, 2, &pg, fn);
    if (!plm_l_trace_static(L, &pg, &gm))
        return luaL_error(L, "%s: needs a static model (compiled once, continuous latent sites): %s", fn,
                          lua_tostring(L, -1));
    plm_ctx_clear(&ctx);
    plm_interrupt_clear();
    st = plm_smcs_run(&ctx, gm, &o, &r);
    if (st == PLM_EINTR) {
        plm_interrupt_clear();
        return luaL_error(L, "%s: interrupted", fn);
    }
    if (st) return plm_l_fail_as(L, &ctx, fn);
    /* the cloud moves to scratch memory owned by the stack, so that nothing leaks when what follows raises (the
    ** series are freed as soon as they are copied; only running out of memory raises before that) */
    {
        size_t nu = (size_t)r.dim * r.N * sizeof *r.u;
        double *u = plm_l_scratch(L, nu + 1), *lw = plm_l_scratch(L, r.N * sizeof *lw);
        memcpy(u, r.u, nu);
        memcpy(lw, r.logw, r.N * sizeof *lw);
        free(r.u), free(r.logw);
        r.u = u, r.logw = lw;
    }
    lua_newtable(L);
    set_num(L, "logz", r.logz);
    if (!ibis) set_list(L, "temperatures", r.lambda, r.steps);
    set_list(L, "ess", r.ess, r.steps);
    set_list(L, "accept_rate", r.accept, r.steps);
    set_list(L, "logz_increments", r.logz_inc, r.steps);
    set_int(L, "steps", r.steps);
    set_int(L, "moves", r.moves_done);
    set_int(L, "evaluations", r.evals);
    free(r.lambda), free(r.ess), free(r.accept), free(r.logz_inc);
    push_cloud(L, gm, &r, threads, fn);   /* r.u and r.logw are scratch now */
    lua_setfield(L, -2, "_draws");
    lua_pushstring(L, method);
    lua_setfield(L, -2, "method");
    set_int(L, "chains", 1);
    set_int(L, "samples", (lua_Integer)o.N);
    set_int(L, "particles", (lua_Integer)o.N);
    set_int(L, "warmup", 0);
    set_int(L, "seed", (lua_Integer)o.seed);
    set_int(L, "dim", gm->dim);
    lua_pushboolean(L, o.waste_free);
    lua_setfield(L, -2, "waste_free");
    lua_pushstring(L, kernel);
    lua_setfield(L, -2, "kernel");
    set_num(L, "sampling_time", plm_l_now() - t0);
    to_posterior(L);
    return 1;
}

/* ---- plume.smc2 ---- */

static const char *const smc2_options[] = {"params", "nx", "ntheta", "ess_threshold", "moves", "scale", "method",
                                           "resample", "ess_threshold_x", "seed", "threads", "nx_max", "nx_accept",
                                           "distribute", NULL};

/* plume.smc2(ssm, ys, {params = {name = prior, ...}, nx =, ntheta =, ...}) -> posterior with logz, ess,
** logz_increments, accept_rate, rejuvenations */
static int l_smc2(lua_State *L)
{
    const char *fn = "plume.smc2", *method;
    int opts = opts_table(L, 3, fn), j;
    plm_ssm *m;
    plm_ssm_prior P;
    plm_smc2_opts o;
    plm_smc2_result r;
    plm_ctx ctx;
    plm_draws *D;
    plm_status st;
    double *ys, *saved, *run, t0 = plm_l_now();
    long T;
    size_t i;
    plm_l_checkopts(L, opts, fn, smc2_options);
    if (!(m = plm_l_tossm(L, 1))) return luaL_error(L, "%s: expected a plume.ssm (got %s)", fn, luaL_typename(L, 1));
    ys = plm_l_ssm_ys(L, 2, m->ydim, fn, &T);
    plm_smc2_opts_default(&o);
    o.Ntheta = opt_count(L, opts, fn, "ntheta", 1000, 2);
    o.pf.N = opt_count(L, opts, fn, "nx", 100, 1);
    o.ess_threshold = plm_l_optnum(L, opts, fn, "ess_threshold", 0.5);
    o.pf.ess_threshold = plm_l_optnum(L, opts, fn, "ess_threshold_x", 0.5);
    o.moves = (int)opt_count(L, opts, fn, "moves", 3, 1);
    o.nx_max = opt_count(L, opts, fn, "nx_max", (lua_Integer)o.pf.N, 1);
    o.nx_accept = plm_l_optnum(L, opts, fn, "nx_accept", 0.2);
    if (!(o.nx_accept > 0 && o.nx_accept < 1))
        return luaL_error(L, "%s: option 'nx_accept' must be in (0, 1) (got %f)", fn, (lua_Number)o.nx_accept);
    o.scale = plm_l_optnum(L, opts, fn, "scale", 0);
    o.scheme = o.pf.scheme = (plm_resample_scheme)opt_scheme(L, opts, fn);
    method = plm_l_optstr(L, opts, fn, "method", "bootstrap");
    if (!strcmp(method, "bootstrap"))
        o.pf.method = PLM_PF_BOOTSTRAP;
    else if (!strcmp(method, "guided")) {
        if (!m->guided)
            return luaL_error(L, "%s: method \"guided\" needs a model with a proposal (plume.ssm{..., proposal = ...})", fn);
        o.pf.method = PLM_PF_GUIDED;
    } else
        return luaL_error(L, "%s: unknown method '%s' (\"bootstrap\", \"guided\")", fn, method);
    o.seed = plm_l_seed(L, opts, fn);
    o.nthreads = plm_l_threads(L, opts, fn);
    o.distribute = plm_l_spread(L, opts, fn, o.Ntheta);
    if (!(o.ess_threshold > 0 && o.ess_threshold <= 1))
        return luaL_error(L, "%s: option 'ess_threshold' must be in (0, 1] (got %f)", fn, (lua_Number)o.ess_threshold);
    if (!(o.pf.ess_threshold >= 0 && o.pf.ess_threshold <= 1))
        return luaL_error(L, "%s: option 'ess_threshold_x' must be in [0, 1] (got %f)", fn, (lua_Number)o.pf.ess_threshold);
    if (!(o.scale >= 0) || !isfinite(o.scale))
        return luaL_error(L, "%s: option 'scale' must be > 0 (got %f)", fn, (lua_Number)o.scale);
    plm_l_ssm_params(L, opts, fn, m, &P, &saved, &run);
    if (P.nfree == 0)
        return luaL_error(L, "%s: no parameter has a prior, so there is nothing to sample (give params = {name = "
                             "plume.dist...})", fn);
    plm_ctx_clear(&ctx);
    plm_interrupt_clear();
    memcpy(m->params, run, (size_t)m->np * sizeof *run);
    st = plm_smc2_run(&ctx, m, T, ys, &P, &o, &r);
    memcpy(m->params, saved, (size_t)m->np * sizeof *saved);
    if (st == PLM_EINTR) {
        plm_interrupt_clear();
        return luaL_error(L, "%s: interrupted", fn);
    }
    if (st) return plm_l_fail_as(L, &ctx, fn);
    lua_newtable(L);
    set_num(L, "logz", r.logz);
    set_list(L, "ess", r.ess, r.T);
    set_list(L, "logz_increments", r.logz_inc, r.T);
    set_list(L, "accept_rate", r.accept, r.T);
    set_int(L, "rejuvenations", r.rejuvenations);
    set_int(L, "filters", r.filters);
    set_int(L, "exchanges", r.exchanges);
    set_int(L, "nx_final", (lua_Integer)r.nx);
    /* the theta-particles as one weighted chain */
    plm_ctx_clear(&ctx);
    st = plm_draws_new(&ctx, 1, &D);
    if (!st) plm_draws_set_weighted(D, 1);
    for (j = 0; j < P.nfree && !st; j++)
        if (plm_draws_col(D, P.names[j], 1) != j) st = plm_fail(&ctx, PLM_EINVAL, "column '%s' twice", P.names[j]);
    for (i = 0; i < r.Ntheta && !st; i++) st = plm_draws_push(&ctx, D, 0, r.theta + i * (size_t)P.nfree, P.nfree, r.logw[i]);
    plm_smc2_result_free(&r);
    if (st) return plm_l_fail_as(L, &ctx, fn);
    plm_l_pushdraws(L, D);
    lua_setfield(L, -2, "_draws");
    lua_pushstring(L, "smc2");
    lua_setfield(L, -2, "method");
    set_int(L, "chains", 1);
    set_int(L, "samples", (lua_Integer)o.Ntheta);
    set_int(L, "ntheta", (lua_Integer)o.Ntheta);
    set_int(L, "nx", (lua_Integer)o.pf.N);
    set_int(L, "warmup", 0);
    set_int(L, "seed", (lua_Integer)o.seed);
    set_num(L, "sampling_time", plm_l_now() - t0);
    to_posterior(L);
    return 1;
}

void plm_l_open_smcs(lua_State *L)
{
    lua_pushcfunction(L, l_smc_sampler);
    lua_setfield(L, -2, "smc_sampler");
    lua_pushcfunction(L, l_smc2);
    lua_setfield(L, -2, "smc2");
}
