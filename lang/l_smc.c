/* l_smc.c -- sequential Monte Carlo over model programs: plume.smc(model, args, opts).
**
** Each particle runs the program as a Lua coroutine (see lparticles.h). Every m:observe and m:factor is a
** checkpoint: once every live particle has reached its next checkpoint (or finished) the driver resamples when
** the effective sample size is low, with the schemes of runtime/resample. "steer" (SMC steering, Lew et al.
** 2023) extends every particle K ways and keeps N of the N*K with the unbiased without-replacement resampling
** of Fearnhead and Clifford (2003). */
#include "lparticles.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct smc_opts {
    int N, K, steer, quiet;
    plm_resample_scheme scheme;
    double ess_threshold;
    long max_steps;
    unsigned long long seed;
    int twist;            /* stack slot of {twist =, proposal =} for the program's LM contexts, 0: none */
    plm_trace *pin;       /* conditional SMC: the reference path of particle 1, or NULL */
} smc_opts;

static const char *const smc_option_names[] = {"particles", "ess_threshold", "seed", "method", "extensions",
                                                "max_steps", "quiet", "threads", "resample", "twist",
                                                "proposal", "pin", NULL};

/* options.pin = {addr = value, ...}: the reference path of conditional SMC, as a trace of latent sites */
static plm_trace *pin_trace(lua_State *L, int opts)
{
    plm_ctx ctx;
    plm_trace *tr;
    plm_ctx_clear(&ctx);
    if (lua_getfield(L, opts, "pin") == LUA_TNIL) {
        lua_pop(L, 1);
        return NULL;
    }
    if (!lua_istable(L, -1)) luaL_error(L, "plume.smc: option 'pin' must be a table {address = value} (got %s)", luaL_typename(L, -1));
    if (plm_trace_new(&ctx, &tr)) plm_l_fail(L, &ctx);
    lua_pushnil(L);
    while (lua_next(L, -2)) {
        double v;
        if (lua_type(L, -2) != LUA_TSTRING || !lua_isnumber(L, -1))
            luaL_error(L, "plume.smc: option 'pin' must map addresses (strings) to numbers");
        v = lua_tonumber(L, -1);
        if (plm_trace_add(&ctx, tr, lua_tostring(L, -2), PLM_SITE_LATENT, NULL, &v, 1, 0, NULL)) plm_l_fail(L, &ctx);
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    return tr;
}

/* options.twist / options.proposal: a table {twist =, proposal =} pushed for the engine (lm contexts the program
** creates take it, see l_lmctx.c), its slot in o->twist; nothing when no twist is given. */
static void twist_option(lua_State *L, int opts, smc_opts *o)
{
    o->twist = 0;
    if (!opts) return;
    lua_getfield(L, opts, "proposal");
    if (lua_getfield(L, opts, "twist") == LUA_TNIL) {
        if (!lua_isnil(L, -2)) luaL_error(L, "plume.smc: option 'proposal' needs option 'twist' (with ctx:twist, give the proposal to ctx:twist)");
        lua_pop(L, 2);
        return;
    }
    lua_createtable(L, 0, 2);
    lua_insert(L, -2);
    lua_setfield(L, -2, "twist");
    lua_insert(L, -2);
    lua_setfield(L, -2, "proposal");
    o->twist = lua_gettop(L);
}

static void smc_options(lua_State *L, int opts, smc_opts *o)
{
    const char *fn = "plume.smc", *method, *scheme;
    int sc;
    o->steer = 0;
    plm_l_checkopts(L, opts, fn, smc_option_names);
    o->N = (int)plm_l_optint(L, opts, fn, "particles", 100);
    o->ess_threshold = plm_l_optnum(L, opts, fn, "ess_threshold", 0.5);
    o->seed = plm_l_seed(L, opts, fn);
    method = plm_l_optstr(L, opts, fn, "method", "standard");
    o->K = (int)plm_l_optint(L, opts, fn, "extensions", 4);
    o->max_steps = (long)plm_l_optint(L, opts, fn, "max_steps", 100000);
    o->quiet = plm_l_optbool(L, opts, fn, "quiet", plm_l_quiet_default(L, lua_upvalueindex(1)));
    plm_l_pop_refuse_threads(L, opts, fn);
    scheme = plm_l_optstr(L, opts, fn, "resample", "systematic");
    if ((sc = plm_resample_scheme_by_name(scheme)) < 0)
        luaL_error(L, "%s: unknown resampling scheme '%s' (resample: %s)", fn, scheme, plm_resample_scheme_list);
    o->scheme = (plm_resample_scheme)sc;
    if (o->N < 1 || o->N > 10000000) luaL_error(L, "%s: option 'particles' must be in 1..1e7 (got %d)", fn, o->N);
    if (!(o->ess_threshold >= 0 && o->ess_threshold <= 1))
        luaL_error(L, "%s: option 'ess_threshold' must be in [0, 1] (got %f)", fn, o->ess_threshold);
    o->pin = pin_trace(L, opts);
    if (o->K < 1 || o->K > 1000) luaL_error(L, "%s: option 'extensions' must be in 1..1000 (got %d)", fn, o->K);
    if (strcmp(method, "standard") == 0) o->steer = 0;
    else if (strcmp(method, "steer") == 0) o->steer = 1;
    else luaL_error(L, "%s: unknown method '%s' (methods: \"standard\", \"steer\")", fn, method);
}

/* The progress line of a particle engine (a program's number of steps is not known in advance, so there is no
** total and no ETA): steps done, particles alive, ESS and the rate, at most five times a second. */
static void smc_progress(plm_l_progress *pr, const char *what, long step, int alive, int n, double ess)
{
    double t;
    if (!pr->on) return;
    t = plm_l_now();
    if (t - pr->last < 0.2) return;
    pr->last = t;
    fprintf(stderr, "\rplume: %s  step %ld  alive %d/%d  ESS %.0f  %.1f steps/s  %.1fs   ", what, step, alive, n, ess,
            (double)step / fmax(t - pr->start, 1e-9), t - pr->start);
    fflush(stderr);
}

/* plume.smc(model, args, opts) */
static int l_smc(lua_State *L)
{
    smc_opts o;
    engine E;
    plm_rng sr;
    plm_l_progress pr;
    plm_ctx ctx;
    double logz = 0, lse;
    int opts, nargs, i, *par;
    double *lw, *w, *logw;
    size_t *cnt, *anc;
    long step = 0, resamples = 0;
    plm_results *R;
    plm_l_pop_arrange(L, "plume.smc");
    nargs = (int)lua_tointeger(L, 3);
    opts = lua_istable(L, 2) ? 2 : 0;
    smc_options(L, opts, &o);
    twist_option(L, opts, &o);
    if (o.pin && o.steer) luaL_error(L, "plume.smc: option 'pin' (conditional SMC) works with method = \"standard\" only");
    memset(&E, 0, sizeof E);
    E.twist = o.twist;
    plm_ctx_clear(&ctx);
    E.L = L;
    E.args = 4;
    E.nargs = nargs;
    E.seed = o.seed;
    E.next_stream = 1;
    E.who = "plume.smc";
    E.fn = 1;
    plm_rng_init(&sr, o.seed, 0);
    R = plm_l_newresults(L, 1, 1);
    lua_newtable(L); E.cos = lua_gettop(L);
    lua_newtable(L); E.handles = lua_gettop(L);
    lua_newtable(L); E.vals = lua_gettop(L);
    lua_newtable(L); E.reqs = lua_gettop(L);
    lua_newtable(L); E.objs = lua_gettop(L);
    lua_newtable(L); E.adopt = lua_gettop(L);
    plm_l_pop_grow(&E, o.N * (o.steer ? o.K : 1));
    for (i = 0; i < o.N; i++) {
        plm_l_pop_spawn(&E, i, NULL, 0, 0, 0);
        E.n = i + 1;
    }
    E.p[0].ex.pin = o.pin;
    plm_l_progress_start(&pr, !o.quiet);
    plm_interrupt_clear();
    while (!plm_l_pop_finished(&E)) {
        double ess;
        int m, alive = 0;
        plm_l_check_interrupt(L, "plume.smc");
        if (++step > o.max_steps) luaL_error(L, "plume.smc: more than %d steps (raise max_steps?)", (int)o.max_steps);
        if (o.steer) {
            /* K - 1 extra copies of every unfinished particle, each carrying 1/K of its weight */
            int n0 = E.n, k;
            plm_l_pop_grow(&E, n0 * o.K);
            for (i = 0; i < n0; i++) {
                if (E.p[i].state == P_DONE || E.p[i].state == P_DEAD) continue;
                E.p[i].logw -= log((double)o.K);
                lua_rawgeti(L, E.objs, i + 1);
                for (k = 1; k < o.K; k++) {
                    plm_l_pop_spawn(&E, E.n, E.p[i].ex.tr, E.p[i].ex.checkpoints, E.p[i].logw, lua_gettop(L));
                    E.n++;
                }
                lua_pop(L, 1);
            }
        }
        for (i = 0; i < E.n; i++)
            if (E.p[i].state == P_CHECK) E.p[i].state = P_RUN;
        plm_l_pop_advance(&E);
        plm_l_check_interrupt(L, "plume.smc");
        /* the weights as plain arrays for runtime/resample */
        logw = plm_l_scratch(L, (size_t)E.n * sizeof *logw);
        w = plm_l_scratch(L, (size_t)E.n * sizeof *w);
        for (i = 0; i < E.n; i++) logw[i] = E.p[i].logw, alive += E.p[i].logw > -INFINITY;
        lse = plm_resample_normalise(logw, (size_t)E.n, w);
        if (lse == -INFINITY) plm_l_pop_all_dead(&E, step);
        ess = plm_resample_ess(logw, (size_t)E.n);
        /* the running estimate of the log normaliser: steer keeps every weight, so it is their mean */
        if (plm_results_push(&ctx, R, "ess_history", ess) ||
            plm_results_push(&ctx, R, "logz_history", o.steer ? lse - log((double)o.N) : logz + lse - log((double)E.n)))
            plm_l_fail_in(L, &ctx, "plume.smc");
        smc_progress(&pr, o.steer ? "smc-steer" : "smc", step, alive, E.n, ess);
        par = plm_l_scratch(L, (size_t)(E.n > o.N ? E.n : o.N) * sizeof *par);
        lw = plm_l_scratch(L, (size_t)(E.n > o.N ? E.n : o.N) * sizeof *lw);
        cnt = plm_l_scratch(L, (size_t)E.n * sizeof *cnt);
        anc = plm_l_scratch(L, (size_t)(E.n > o.N ? E.n : o.N) * sizeof *anc);
        if (o.steer) {
            size_t mm;
            if (plm_resample_fc(&ctx, w, (size_t)E.n, (size_t)o.N, &sr, anc, lw, &mm)) plm_l_fail(L, &ctx);
            m = (int)mm;
            for (i = 0; i < m; i++) par[i] = (int)anc[i], lw[i] = log(lw[i]) + lse;
            plm_l_pop_rebuild(&E, par, lw, m, NULL);
            resamples++;
        } else if (o.pin && !plm_l_pop_finished(&E)) {
            /* conditional SMC: particle 1 keeps the reference path; the other N - 1 are drawn (multinomially)
            ** from all N, every step */
            logz += lse - log((double)E.n);
            par[0] = 0, lw[0] = 0;
            if (o.N > 1) {
                if (plm_resample_counts(&ctx, PLM_RESAMPLE_MULTINOMIAL, w, (size_t)E.n, (size_t)o.N - 1, &sr, cnt, NULL))
                    plm_l_fail(L, &ctx);
                plm_resample_ancestors(cnt, (size_t)E.n, anc);
                for (i = 1; i < o.N; i++) par[i] = (int)anc[i - 1], lw[i] = 0;
            }
            plm_l_pop_rebuild(&E, par, lw, o.N, NULL);
            resamples++;
        } else if (ess < o.ess_threshold * E.n && !plm_l_pop_finished(&E)) {
            double *scratch = lw;   /* SSP's fractional parts; lw is set after */
            logz += lse - log((double)E.n);
            if (plm_resample_counts(&ctx, o.scheme, w, (size_t)E.n, (size_t)o.N, &sr, cnt, scratch)) plm_l_fail(L, &ctx);
            plm_resample_ancestors(cnt, (size_t)E.n, anc);
            for (i = 0; i < o.N; i++) par[i] = (int)anc[i], lw[i] = 0;
            plm_l_pop_rebuild(&E, par, lw, o.N, NULL);
            resamples++;
        }
        lua_pop(L, 6);
    }
    plm_l_progress_end(&pr);
    plm_l_pop_ess(E.p, E.n, &lse);
    if (lse == -INFINITY) plm_l_pop_all_dead(&E, step);
    if (o.steer)
        logz = lse - log((double)o.N);   /* steer never resets weights: the evidence is their mean at the end */
    else
        logz += lse - log((double)E.n);
    if (!isfinite(logz)) luaL_error(L, "plume.smc: the log evidence is %g after step %d", logz, (int)step);
    /* results */
    {
        int res;
        if (plm_results_set(&ctx, R, "logz", logz) || plm_results_set(&ctx, R, "ess", plm_l_pop_ess(E.p, E.n, &lse)) ||
            plm_results_set_int(&ctx, R, "resamples", resamples) || plm_results_set_int(&ctx, R, "rejected", E.rejected) ||
            plm_results_set_int(&ctx, R, "steps", step))
            plm_l_fail_in(L, &ctx, "plume.smc");
        res = plm_l_pop_results(&E, R, 0);
        lua_pushstring(L, o.steer ? "smc-steer" : "smc");
        lua_setfield(L, res, "method");
        lua_pushstring(L, o.steer ? "fearnhead-clifford" : plm_resample_scheme_name(o.scheme));
        lua_setfield(L, res, "resample");
        lua_pushinteger(L, (lua_Integer)o.seed);
        lua_setfield(L, res, "seed");
        lua_settop(L, res);
        return plm_l_pop_posterior(L);
    }
}

void plm_l_open_smc(lua_State *L)
{
    lua_pushvalue(L, -1);
    lua_pushcclosure(L, l_smc, 1);
    lua_setfield(L, -2, "smc");
}
