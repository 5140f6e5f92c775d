/* l_infer.c -- plume.infer(model, data, opts): runs a dynamic model program many times. "prior" (forward
** sampling) and "is" (likelihood weighting) are driven here; "mh" is the trace MH kernel of
** runtime/mh_trace.c, to which this file gives the program as a callback (one protected Lua call per run) and
** the hooks m:sample uses under it. The program is genuinely dynamic (Lua decides which choices exist), so
** one Lua call per run is the unit of work; traces, proposals, acceptance, adaptation and draws are C. */
#include "linfer.h"
#include "ldist.h"
#include "lkernel.h"
#include "kernel_compose.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef plm_l_program program;
typedef plm_l_infer_opts options;
typedef plm_l_exec exec;

/* Why the last run of a program was rejected or dead, for the error an engine raises when it finds nothing
** else. */
typedef struct why {
    char msg[400];
} why;

enum { RUN_OK, RUN_REJECTED, RUN_ERROR };

/* Run the program once under ex, bracketed as an engine-driven run (lutil.h): an invalid parameter met
** inside becomes a rejection (RUN_REJECTED, its message and status in w and *st when not NULL): the caller
** treats the run as log density -inf. Another error from the program is re-raised after the handle is
** disarmed when raise is set, else left on the stack (RUN_ERROR). With keep, the run's first return value is
** left on the stack after RUN_OK (nil after a rejection).
**
** Each run makes garbage Lua cannot weigh: a distribution is a small Lua box rooting a GC object several
** times its size, so Lua's pacer sees a fraction of what the run allocates and lets millions of boxes --
** and what they root -- pile up (1.8 GB for 4 x 10^4 iterations of a 100-observation model). A collector
** step per run, sized by the sites the run made, keeps memory flat in the number of iterations. */
static int run_program(lua_State *L, const program *pg, exec *ex, int keep, int raise, why *w, plm_status *rst)
{
    plm_l_handle *h = lua_touserdata(L, pg->handle);
    int i, st, res = RUN_OK;
    plm_trace_clear(ex->tr);
    lua_pushvalue(L, pg->fn);
    lua_pushvalue(L, pg->handle);
    for (i = 0; i < pg->nargs; i++) lua_pushvalue(L, pg->args + i);
    h->ex = ex;
    plm_l_run_enter(L);
    st = lua_pcall(L, 1 + pg->nargs, keep ? 1 : 0, 0);
    plm_l_run_leave(L);
    h->ex = NULL;
    if (st != LUA_OK) {
        if (!plm_l_isreject(L, -1)) {
            if (raise) lua_error(L);
            return RUN_ERROR;
        }
        if (w) {
            const char *m = (lua_getfield(L, -1, "msg"), lua_tostring(L, -1));
            snprintf(w->msg, sizeof w->msg, "%s", m ? m : "rejected");
            lua_pop(L, 1);
        }
        if (rst) {
            lua_getfield(L, -1, "status");
            *rst = (plm_status)lua_tointeger(L, -1);
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
        if (keep) lua_pushnil(L);
        res = RUN_REJECTED;
    }
    lua_gc(L, LUA_GCSTEP, (int)(ex->tr->n / 8 + 1));   /* as if each site had made 128 bytes */
    return res;
}

/* Why a run has log density -inf, in the user's words, into buf: the first site whose density is zero
** ("m:observe 'y[3]': value 7 is outside the support of binomial(5, 0.3)"), or a factor of -inf. */
static void describe_dead(lua_State *L, const plm_trace *tr, char *buf, size_t n)
{
    size_t i;
    for (i = 0; i < tr->n; i++) {
        const plm_site *s = &tr->sites[i];
        const char *dist, *value;
        if (s->kind == PLM_SITE_DETERMINISTIC || s->logp > -INFINITY) continue;
        plm_l_pushdist(L, (plm_dist *)s->dist);
        dist = luaL_tolstring(L, -1, NULL);
        value = plm_l_value_str(L, s->dist, s->value, s->dim);
        snprintf(buf, n, "%s '%s': value %s is outside the support of %s",
                 s->kind == PLM_SITE_OBSERVED ? "m:observe" : "m:sample", s->addr, value, dist);
        lua_pop(L, 3);
        return;
    }
    snprintf(buf, n, "m:factor: a log weight of -inf");
}

/* ---- prior / is: independent runs from the prior; stream i for run i ---- */

static int engine_independent(lua_State *L, const program *pg, const options *o, int weighted)
{
    plm_ctx ctx;
    plm_results *R;
    plm_trace *tr;
    exec ex;
    plm_rng rng;
    plm_l_progress pr;
    double *lw;
    long i, alive = 0;
    why w;
    plm_ctx_clear(&ctx);
    plm_l_progress_start(&pr, !o->quiet);
    R = plm_l_newresults(L, 1, weighted);
    if (plm_trace_new(&ctx, &tr)) return plm_l_fail(L, &ctx);
    if (o->output && plm_l_mpi_writes(L, o->output) && plm_results_stream(&ctx, R, o->output))
        return plm_l_fail_in(L, &ctx, "plume.infer");
    lw = plm_l_scratch(L, (size_t)o->samples * sizeof *lw);
    lua_createtable(L, (int)(o->samples < 1000000 ? o->samples : 1000000), 0);   /* return values */
    memset(&ex, 0, sizeof ex);
    ex.hooks = &plm_l_prior_hooks;
    ex.tr = tr;
    ex.rng = &rng;
    for (i = 0; i < o->samples; i++) {
        int rejected, tries = 0;
        plm_rng_init(&rng, o->seed, (uint64_t)i);
        /* A rejected run (an invalid parameter met inside) has density zero. "is" keeps it with weight -inf;
        ** "prior" draws again from the same stream: its draws are the prior restricted to the valid runs. */
        while ((rejected = run_program(L, pg, &ex, 1, 1, &w, NULL) == RUN_REJECTED) && !weighted) {
            lua_pop(L, 1);
            plm_l_check_interrupt(L, "plume.infer");
            if (++tries == 1000)
                return luaL_error(L, "plume.infer: draw %d of the prior was rejected 1000 times in a row; the last "
                                     "time: %s", (int)i + 1, w.msg);
        }
        lua_rawseti(L, -2, i + 1);
        lw[i] = weighted ? (rejected ? -INFINITY : tr->loglik) : 0;
        if (lw[i] > -INFINITY)
            alive++;
        else if (!rejected)
            describe_dead(L, tr, w.msg, sizeof w.msg);   /* kept for the message when every run is dead */
        plm_l_record(L, R, tr, 0, lw[i], "plume.infer");
        plm_l_check_interrupt(L, "plume.infer");
        if ((i & 255) == 0) plm_l_progress_show(&pr, weighted ? "is" : "prior", 0, 1, i, o->samples, 0);
    }
    plm_l_progress_end(&pr);
    if (plm_results_finish(&ctx, R)) return plm_l_fail_in(L, &ctx, "plume.infer");
    if (weighted && alive == 0)
        return luaL_error(L, "plume.infer: every one of the %d samples has weight -inf; the last: %s", (int)o->samples,
                          w.msg);
    if (weighted && plm_results_set(&ctx, R, "logz", plm_logsumexp(lw, (size_t)o->samples) - log((double)o->samples)))
        return plm_l_fail_in(L, &ctx, "plume.infer");
    plm_l_push_results(L, R);         /* R, lw, values, result */
    lua_rotate(L, -4, 1);             /* result, R, lw, values */
    lua_setfield(L, -4, "values");
    lua_pop(L, 2);
    return 1;
}

/* ---- mh: the kernel of runtime/mh_trace.c with the program as its callback ---- */

typedef struct mh_lua {
    plm_l_trace_host host;    /* first: kernels written in Lua find it as the program's user data */
    lua_State *L;
    const program *pg;
    exec ex;
    plm_l_progress *pr;
    int nchains;
    int lua_err;              /* the program raised an error, left on the stack */
} mh_lua;

/* While the kernel looks for a starting point, the handle's user value is the chain's table of initial values
** by address (plume.infer's `init`), or nil. Returns 1 when addr has an initial value (then in x). */
static int init_value(lua_State *L, const char *addr, const plm_dist *d, double *x)
{
    if (lua_getiuservalue(L, 1, 1) != LUA_TTABLE) {
        lua_pop(L, 1);
        return 0;
    }
    if (lua_getfield(L, -1, addr) == LUA_TNIL) {
        lua_pop(L, 2);
        return 0;
    }
    if (!plm_l_todistvalue(L, -1, d, x))
        luaL_error(L, "plume.infer: init value of '%s' must be %s (got %s)", addr,
                   d->dim == 1 ? "a number" : "a table of numbers", luaL_typename(L, -1));
    lua_pop(L, 2);
    if (!(plm_dist_logpdf(d, x) > -INFINITY)) {
        const char *dist = luaL_tolstring(L, 3, NULL), *value = plm_l_value_str(L, d, x, d->dim);
        luaL_error(L, "plume.infer: init value of '%s' is %s, outside the support of %s", addr, value, dist);
    }
    return 1;
}

static int mh_sample(lua_State *L, exec *ex, const char *addr, const plm_dist *d, double *x, double *lp)
{
    if (ex->mh->start && init_value(L, addr, d, x)) {
        *lp = plm_dist_logpdf(d, x);
        return PLM_L_CHOSEN;
    }
    if (plm_mh_choose(&ex->ctx, ex->mh, addr, d, x, lp)) {
        if (ex->ctx.status == PLM_ENOTSUP && plm_dist_info_of(d->kind)->improper) plm_l_improper_error(L, addr);
        if (ex->ctx.status == PLM_ENOTSUP) luaL_error(L, "%s", ex->ctx.msg);   /* an imposed value of the wrong size */
        plm_l_fail(L, &ex->ctx);
    }
    return PLM_L_CHOSEN;
}

static const plm_l_hooks mh_hooks = {"mh", mh_sample, NULL, NULL};

static plm_status mh_run(void *ud, plm_ctx *ctx, plm_mh_run *r)
{
    mh_lua *m = ud;
    plm_status st = PLM_EINVAL;
    why w;
    int res;
    m->ex.mh = r;
    m->ex.tr = r->tr;
    m->ex.rng = r->rng;
    res = run_program(m->L, m->host.pg, &m->ex, 0, 0, &w, &st);
    if (res == RUN_OK) return PLM_OK;
    if (res == RUN_REJECTED) return plm_fail(ctx, st, "%s", w.msg);
    m->lua_err = m->host.lua_err = 1;
    return plm_fail(ctx, PLM_ERUNTIME, "the model program failed");
}

static void mh_describe(void *ud, const plm_trace *tr, char *buf, size_t n)
{
    describe_dead(((mh_lua *)ud)->L, tr, buf, n);
}

static void mh_progress(void *ud, int chain, long it, long total, int warm)
{
    mh_lua *m = ud;
    plm_l_progress_show(m->pr, "mh", chain, m->nchains, it, total, warm);
}

plm_status plm_l_mh_chain(lua_State *L, const program *pg, const options *o, int c, plm_results *R, int rec_chain,
                          plm_l_progress *pr, int init, plm_ctx *ctx, double *accept, int *lua_err)
{
    mh_lua m;
    plm_mh_program prog;
    plm_mh_opts mo;
    plm_status st;
    memset(&m, 0, sizeof m);
    m.L = m.host.L = L;
    m.pg = m.host.pg = pg;
    m.ex.hooks = &mh_hooks;
    m.pr = pr;
    m.nchains = o->chains;
    prog.run = mh_run;
    prog.describe = mh_describe;
    prog.progress = pr ? mh_progress : NULL;
    prog.ud = &m;
    mo.warmup = o->warmup;
    mo.samples = o->samples;
    mo.thin = o->thin;
    mo.seed = o->seed;
    mo.init = init != 0;
    mo.sites = o->mh_sites;
    mo.nsites = o->mh_nsites;
    mo.kernel = o->trace_kernel;
    mo.extra_mean = o->trace_kernel && o->extra_mean ? o->extra_mean + (size_t)c * (size_t)o->trace_kernel->ops->nextra : NULL;
    if (init) lua_pushvalue(L, init);
    else lua_pushnil(L);
    lua_setiuservalue(L, pg->handle, 1);
    st = plm_mh_trace_chain(ctx, &prog, &mo, c, R, rec_chain, accept);
    *lua_err = m.lua_err || m.host.lua_err;
    return st;
}

/* Push a table of each chain's init values (chain c at [c]; absent without `init`) and return its index: the
** option's table for every chain, or what its function returns for chain c (1-based). */
static int push_inits(lua_State *L, const options *o)
{
    int c;
    lua_createtable(L, o->chains, 0);
    for (c = 0; o->init && c < o->chains; c++) {
        if (lua_isfunction(L, o->init)) {
            lua_pushvalue(L, o->init);
            lua_pushinteger(L, c + 1);
            lua_call(L, 1, 1);
            if (!lua_istable(L, -1))
                luaL_error(L, "plume.infer: option 'init' must return a table of values by site name (chain %d got %s)",
                           c + 1, luaL_typename(L, -1));
        } else
            lua_pushvalue(L, o->init);
        lua_rawseti(L, -2, c + 1);
    }
    return lua_gettop(L);
}

/* Does the trace kernel k, or one of its children, call a Lua function (l_kernel.c)? */
static int holds_lua(const plm_kernel *k)
{
    const plm_kernel *const *ch;
    int i, n = plm_kernel_children(k, &ch);
    if (strcmp(k->ops->name, "lua") == 0) return 1;
    for (i = 0; i < n; i++)
        if (holds_lua(ch[i])) return 1;
    return 0;
}


/* ---- MH chains spread over the ranks of an MPI job ---- */

/* A growing byte buffer (malloc'd); oom is set by a failed append, which then appends nothing. */
typedef struct blob {
    char *p;
    size_t n, cap;
    int oom;
} blob;

static void put(blob *b, const void *p, size_t n)
{
    if (b->oom) return;
    if (b->n + n > b->cap) {
        size_t nc = (b->n + n) * 2 + 256;
        char *q = realloc(b->p, nc);
        if (!q) {
            b->oom = 1;
            return;
        }
        b->p = q, b->cap = nc;
    }
    memcpy(b->p + b->n, p, n);
    b->n += n;
}

static void put_i64(blob *b, int64_t v) { put(b, &v, sizeof v); }

static int64_t get_i64(const char **p)
{
    int64_t v;
    memcpy(&v, *p, sizeof v);
    *p += sizeof v;
    return v;
}

/* One chain as bytes: status, message, accept rate, the trace kernel's mean diagnostics, then the draws table
** (columns by name, then per draw its values, log weight and log density). */
static void put_chain(blob *b, const options *o, int c, plm_status st, const char *msg, double accept,
                      const plm_draws *D)
{
    int j, nc = D ? plm_draws_ncols(D) : 0, nextra = o->trace_kernel && o->extra_mean ? o->trace_kernel->ops->nextra : 0;
    size_t k, len = D ? plm_draws_len(D, 0) : 0;
    const double *lw = D ? plm_draws_logw(D, 0) : NULL, *lp = D ? plm_draws_lp(D, 0) : NULL;
    put_i64(b, st);
    put_i64(b, (int64_t)strlen(msg));
    put(b, msg, strlen(msg));
    put(b, &accept, sizeof accept);
    put_i64(b, nextra);
    if (nextra) put(b, o->extra_mean + (size_t)c * (size_t)nextra, (size_t)nextra * sizeof(double));
    put_i64(b, nc);
    for (j = 0; j < nc; j++) {
        const char *name = plm_draws_name(D, j);
        put_i64(b, (int64_t)strlen(name));
        put(b, name, strlen(name));
    }
    put_i64(b, (int64_t)len);
    for (j = 0; j < nc; j++) put(b, plm_draws_chain(D, j, 0), len * sizeof(double));
    for (k = 0; k < len; k++) {
        double w = lw ? lw[k] : 0, l = lp ? lp[k] : NAN;
        put(b, &w, sizeof w);
        put(b, &l, sizeof l);
    }
}

/* Rank r runs the chains [r C / K, (r + 1) C / K) on this state, one after the other, each into a table of its
** own; the chains are then exchanged (plm_comm_allgatherv) and merged into R chain by chain, as one state
** running them all in order would have recorded them, on every rank. A failure -- an error of the program, an
** interrupt -- travels with the draws, so that every rank raises the same error, that of the lowest-numbered
** failing chain (as a string). Collective: every rank calls it. */
static void mh_ranks(lua_State *L, const program *pg, const options *o, plm_results *R, plm_l_progress *pr,
                     double *accept_rate, int inits)
{
    const char *fn = "plume.infer";
    int K = plm_comm_size(), me = plm_comm_rank(), C = o->chains, c, r, j, base;
    int lo = (int)((long long)C * me / K), hi = (int)((long long)C * (me + 1) / K);
    blob b = {NULL, 0, 0, 0};
    uint64_t mine, *sizes = plm_l_scratch(L, (size_t)K * sizeof *sizes);
    size_t *counts = plm_l_scratch(L, (size_t)K * sizeof *counts), total = 0;
    char *all;
    const char *p;
    plm_draws *D = plm_results_draws(R);
    double *row = NULL;
    plm_ctx ctx;
    plm_status st = PLM_OK;
    int top0 = lua_gettop(L) - 2;   /* without the scratch of sizes and counts */
    static const char *const what[6] = {"chains", "samples", "warmup", "thin", "seed", "seed"};
    double agree[12] = {C, (double)o->samples, (double)o->warmup, (double)o->thin, (double)(o->seed >> 32),
                        (double)(o->seed & 0xffffffffu)};
    plm_ctx_clear(&ctx);
    /* every rank must run the same chains (a script that computes its options from the rank would not): else
    ** all fail alike here, before the exchange could be mismatched */
    for (j = 0; j < 6; j++) agree[6 + j] = -agree[j];
    if ((st = plm_comm_allreduce(&ctx, agree, 12, PLM_COMM_MAX))) goto fail;
    for (j = 0; j < 6; j++)
        if (agree[j] != -agree[6 + j])
            luaL_error(L, "%s: the ranks disagree on %s (from %f to %f): every rank must run the same chains", fn, what[j],
                       (lua_Number)-agree[6 + j], (lua_Number)agree[j]);
    for (c = lo; c < hi; c++) {
        int lua_err = 0, init, top = lua_gettop(L);
        double acc = NAN;
        plm_ctx cc;
        plm_results *Rc = plm_l_newresults(L, 1, 0);
        plm_status cs;
        const char *msg = "";
        plm_ctx_clear(&cc);
        lua_rawgeti(L, inits, c + 1);
        init = lua_istable(L, -1) ? lua_gettop(L) : 0;
        cs = plm_l_mh_chain(L, pg, o, c, Rc, 0, pr, init, &cc, &acc, &lua_err);
        if (lua_err) msg = luaL_tolstring(L, -1, NULL), cs = PLM_ERUNTIME;
        else if (cs) msg = cc.msg;
        put_chain(&b, o, c, cs, msg, acc, cs ? NULL : plm_results_draws(Rc));
        lua_settop(L, top);
        if (cs) break;   /* later chains of this rank cannot matter: this one's error comes first */
    }
    if (b.oom) {
        free(b.p);
        luaL_error(L, "%s: out of memory", fn);
    }
    /* two exchanges: how many bytes each rank has, then the bytes */
    mine = b.n;
    if ((st = plm_comm_allgather(&ctx, &mine, sizeof mine, sizes))) goto fail;
    for (r = 0; r < K; r++) counts[r] = (size_t)sizes[r], total += counts[r];
    all = plm_l_scratch(L, total + 1);
    if ((st = plm_comm_allgatherv(&ctx, b.p, counts, all))) goto fail;
    free(b.p);
    b.p = NULL;
    p = all;
    base = lua_gettop(L);
    for (c = 0; c < C && p < all + total; c++) {
        plm_status cs = (plm_status)get_i64(&p);
        int64_t ml = get_i64(&p), nextra, nc, len, k;
        int *map, nd;
        const char *vals;
        lua_settop(L, base);   /* the scratch of the chain before */
        if (cs) {
            lua_pushlstring(L, p, (size_t)ml);
            if (cs == PLM_EINTR) {
                plm_interrupt_clear();
                luaL_error(L, "%s: interrupted", fn);
            }
            if (cs == PLM_ERUNTIME) lua_error(L);   /* the program's error, as that rank raised it */
            luaL_error(L, "%s: %s", fn, lua_tostring(L, -1));
        }
        p += ml;
        memcpy(&accept_rate[c], p, sizeof(double));
        p += sizeof(double);
        nextra = get_i64(&p);
        if (nextra) memcpy(o->extra_mean + (size_t)c * (size_t)nextra, p, (size_t)nextra * sizeof(double));
        p += nextra * (int64_t)sizeof(double);
        nc = get_i64(&p);
        map = plm_l_scratch(L, (size_t)(nc + 1) * sizeof *map);
        for (j = 0; j < nc; j++) {
            int64_t nl = get_i64(&p);
            lua_pushlstring(L, p, (size_t)nl);
            p += nl;
            if ((map[j] = plm_draws_col(D, lua_tostring(L, -1), 1)) < 0) luaL_error(L, "%s: out of memory", fn);
            lua_pop(L, 1);
        }
        len = get_i64(&p);
        vals = p;   /* nc columns of len doubles (not aligned: read by memcpy) */
        p += nc * len * (int64_t)sizeof(double);
        nd = plm_draws_ncols(D);
        row = plm_l_scratch(L, (size_t)(nd + 1) * sizeof *row);
        for (k = 0; k < len; k++) {
            double w, l;
            for (j = 0; j < nd; j++) row[j] = NAN;
            for (j = 0; j < nc; j++)
                memcpy(&row[map[j]], vals + ((size_t)j * (size_t)len + (size_t)k) * sizeof(double), sizeof(double));
            memcpy(&w, p, sizeof w);
            memcpy(&l, p + sizeof w, sizeof l);
            p += 2 * sizeof(double);
            if ((st = plm_draws_push_lp(&ctx, D, c, row, nd, w, l))) goto fail;
        }
    }
    lua_settop(L, top0);
    return;
fail:
    free(b.p);
    plm_l_fail_in(L, &ctx, fn);
}

static int engine_mh(lua_State *L, const program *pg, const options *o)
{
    plm_ctx ctx;
    plm_results *R;
    plm_l_progress pr;
    double *accept_rate;
    int c, done = 0, inits, ranks = plm_comm_size() > 1 && !o->local;
    plm_ctx_clear(&ctx);
    plm_l_progress_start(&pr, !o->quiet);
    R = plm_l_newresults(L, o->chains, 0);
    if (o->output && !ranks && plm_results_stream(&ctx, R, o->output)) return plm_l_fail_in(L, &ctx, "plume.infer");
    accept_rate = plm_l_scratch(L, (size_t)o->chains * sizeof(double));
    inits = push_inits(L, o);
    /* several threads: chains on their own Lua states (not with `output`, which streams draws in order) */
    /* (a kernel holding Lua functions runs on this state: they cannot be copied with their upvalues; the C
    ** trace kernels are shared, read-only, by the chains' states) */
    if (ranks) {
        /* under mpirun: the chains spread over the ranks; rank 0 writes `output` whole at the end */
        mh_ranks(L, pg, o, R, &pr, accept_rate, inits);
        if (o->output && plm_l_mpi_writes(L, o->output)) {
            FILE *f = fopen(o->output, "w");
            plm_status st = f ? plm_draws_write_csv(&ctx, plm_results_draws(R), f) : PLM_EIO;
            if (!f || fclose(f) || st) return luaL_error(L, "plume.infer: writing '%s' failed", o->output);
        }
        done = 1;
    } else if (o->threads > 1 && o->chains > 1 && !o->output && !(o->trace_kernel && holds_lua(o->trace_kernel)))
        done = plm_l_mh_parallel(L, pg, o, R, accept_rate, inits);
    for (c = 0; !done && c < o->chains; c++) {
        int lua_err, init;
        plm_status st;
        lua_rawgeti(L, inits, c + 1);
        init = lua_istable(L, -1) ? lua_gettop(L) : 0;
        st = plm_l_mh_chain(L, pg, o, c, R, c, &pr, init, &ctx, &accept_rate[c], &lua_err);
        if (lua_err) lua_error(L);
        if (st == PLM_EINTR) plm_interrupt_clear();
        if (st) plm_l_fail_in(L, &ctx, "plume.infer");
        lua_pop(L, 1);
    }
    lua_pop(L, 1);   /* inits */
    plm_l_progress_end(&pr);
    if (plm_results_finish(&ctx, R)) return plm_l_fail_in(L, &ctx, "plume.infer");
    for (c = 0; c < o->chains; c++)
        if (plm_results_push(&ctx, R, "accept_rate", accept_rate[c])) return plm_l_fail_in(L, &ctx, "plume.infer");
    if (o->trace_kernel) {
        /* a composite's children: "k1.accept_stat__" becomes the series "k1.accept_rate" (as on static graphs) */
        const plm_kernel_ops *ops = o->trace_kernel->ops;
        int j;
        for (j = 0; j < ops->nextra; j++) {
            const char *name = ops->extra_names[j], *suffix = "accept_stat__";
            size_t len = strlen(name), sl = strlen(suffix);
            char series[160];
            if (len < sl || strcmp(name + len - sl, suffix) != 0 || len - sl >= 120) continue;
            snprintf(series, sizeof series, "%.*saccept_rate", (int)(len - sl), name);
            for (c = 0; c < o->chains; c++)
                if (plm_results_push(&ctx, R, series, o->extra_mean[(size_t)c * (size_t)ops->nextra + (size_t)j]))
                    return plm_l_fail_in(L, &ctx, "plume.infer");
        }
    }
    plm_l_push_results(L, R);
    return 1;
}

/* ---- plume.infer ---- */

static const char *const option_names[] = {"method", "samples", "warmup", "chains", "seed", "threads", "quiet", "output",
                                           "init", "thin", "delta", "max_depth", "dense", "steps", "kernel",
                                           "distribute", NULL};
static const char *const static_only[] = {"delta", "max_depth", "dense", "steps", NULL};

/* Is the value at idx an object whose metatable is named `name` (plume.model, plume.args)? */
static int is_named(lua_State *L, int idx, const char *name)
{
    int yes, t = luaL_getmetafield(L, idx, "__name");   /* pushes nothing when there is no such field */
    if (t == LUA_TNIL) return 0;
    yes = t == LUA_TSTRING && strcmp(lua_tostring(L, -1), name) == 0;
    lua_pop(L, 1);
    return yes;
}

/* plume.infer(model, data, opts) -> posterior. A C function (not a Lua wrapper), so that the errors it raises
** blame the caller's line; errors raised inside the model program keep the program's own. */
static int l_infer(lua_State *L)
{
    const char *fn = "plume.infer";
    program pg;
    options o;
    int opts, nargs, k, mh, grad, why = 0, kernel_fn = 0, plain_mh = 0;
    lua_settop(L, 3);
    /* rearranged as fn, opts, args... */
    if (lua_isfunction(L, 1))
        lua_pushvalue(L, 1);
    else if (is_named(L, 1, "plume.model"))
        lua_getfield(L, 1, "fn");
    else
        return luaL_error(L, "%s: expected a plume.model (got %s)", fn, luaL_typename(L, 1));
    if (!lua_isnil(L, 3) && !lua_istable(L, 3))
        return luaL_error(L, "%s: options must be a table (got %s)", fn, luaL_typename(L, 3));
    lua_pushvalue(L, 3);
    if (is_named(L, 2, "plume.args")) {
        nargs = (lua_getfield(L, 2, "n"), (int)lua_tointeger(L, -1));
        lua_pop(L, 1);
        luaL_checkstack(L, nargs + 16, fn);
        for (k = 1; k <= nargs; k++) lua_rawgeti(L, 2, k);
    } else {
        nargs = 1;
        lua_pushvalue(L, 2);
    }
    lua_rotate(L, 1, -3);
    lua_settop(L, 4 + nargs);   /* fn, opts, args..., model, data (kept for post:predict and plume.loo) */
    opts = lua_istable(L, 2) ? 2 : 0;
    plm_l_checkopts(L, opts, fn, option_names);
    o.method = plm_l_optstr(L, opts, fn, "method", NULL);
    o.mh_sites = NULL;
    o.mh_nsites = 0;
    o.trace_kernel = NULL;
    o.extra_mean = NULL;
    if (opts && lua_getfield(L, opts, "kernel") != LUA_TNIL) {
        /* a kernel value replaces the method (l_kernel.c builds it on the static graph, or as a trace kernel
        ** when the program is dynamic or the kernel holds a Lua function) */
        if (o.method && strcmp(o.method, "kernel") != 0)
            return luaL_error(L, "%s: give either option 'method' or option 'kernel', not both", fn);
        if (!plm_l_iskernel_or_fn(L, -1))
            return luaL_error(L, "%s: option 'kernel' must be a plume.kernel value or a function (got %s)", fn,
                              luaL_typename(L, -1));
        o.method = "kernel";
        kernel_fn = plm_l_kernel_has_fn(L, -1);
        if (lua_isfunction(L, -1))
            lua_pushnil(L);
        else if (lua_getfield(L, -1, "kind") == LUA_TSTRING && strcmp(lua_tostring(L, -1), "mh") == 0) {
            plain_mh = 1;
            /* on a dynamic program this kernel is the trace MH restricted to its sites (when it names them) */
            if (lua_getfield(L, -2, "sites") == LUA_TTABLE) {
                int n = (int)luaL_len(L, -1), i;
                const char **names = plm_l_scratch(L, (size_t)n * sizeof *names);
                for (i = 0; i < n; i++) names[i] = (lua_geti(L, -2, i + 1), lua_tostring(L, -1)), lua_pop(L, 1);
                o.mh_sites = names, o.mh_nsites = n;
                lua_setfield(L, -4, "_names");   /* the kernel value keeps the array (its strings are its sites) */
            }
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
    }
    if (opts) lua_pop(L, 1);
    if (!o.method) o.method = "auto";   /* static programs: Gibbs and NUTS (l_static.c); dynamic ones: MH */
    o.samples = (long)plm_l_optint(L, opts, fn, "samples", 1000);
    o.warmup = (long)plm_l_optint(L, opts, fn, "warmup", o.samples);
    o.chains = (int)plm_l_optint(L, opts, fn, "chains", 4);
    /* chains run on several threads only when asked: each then runs on a copy of the program */
    o.threads = plm_l_optint(L, opts, fn, "threads", 1) > 1 ? plm_l_threads(L, opts, fn) : 1;
    o.quiet = plm_l_optbool(L, opts, fn, "quiet", plm_l_quiet_default(L, lua_upvalueindex(1)));
    o.seed = plm_l_seed(L, opts, fn);
    o.output = plm_l_optstr(L, opts, fn, "output", NULL);
    o.thin = (long)plm_l_optint(L, opts, fn, "thin", 1);
    {
        /* under mpirun: "chains" spreads the chains over the ranks (plm_mcmc_run), "none" runs all on each */
        const char *d = plm_l_optstr(L, opts, fn, "distribute", "chains");
        if (strcmp(d, "chains") != 0 && strcmp(d, "none") != 0)
            return luaL_error(L, "%s: option 'distribute' must be \"chains\" or \"none\" (got \"%s\")", fn, d);
        o.local = strcmp(d, "none") == 0;
    }
    o.init = 0;
    if (opts && lua_getfield(L, opts, "init") != LUA_TNIL) {
        if (!lua_istable(L, -1) && !lua_isfunction(L, -1))
            return luaL_error(L, "%s: option 'init' must be a table of values by site name or a function(chain) "
                                 "returning one (got %s)", fn, luaL_typename(L, -1));
        o.init = lua_gettop(L);   /* stays above the arguments: index stable for the run */
    } else if (opts)
        lua_pop(L, 1);
    if (o.thin < 1) return luaL_error(L, "%s: option 'thin' must be >= 1 (got %I)", fn, (lua_Integer)o.thin);
    if (o.samples < 1 || o.samples > 100000000) return luaL_error(L, "%s: option 'samples' must be in 1..1e8 (got %I)", fn, (lua_Integer)o.samples);
    if (o.warmup < 0) return luaL_error(L, "%s: option 'warmup' must be >= 0 (got %I)", fn, (lua_Integer)o.warmup);
    if (o.chains < 1 || o.chains > 1024) return luaL_error(L, "%s: option 'chains' must be in 1..1024 (got %d)", fn, o.chains);
    pg.fn = 1;
    pg.args = 3;
    pg.nargs = nargs;
    plm_l_newhandle(L);
    pg.handle = lua_gettop(L);
    plm_interrupt_clear();
    mh = strcmp(o.method, "mh") == 0;
    /* nuts, hmc and auto: l_static.c; auto comes back with the reason when the program is dynamic */
    grad = strcmp(o.method, "nuts") == 0 || strcmp(o.method, "hmc") == 0 || strcmp(o.method, "auto") == 0 ||
           strcmp(o.method, "slice") == 0 || strcmp(o.method, "kernel") == 0 || strcmp(o.method, "gibbs") == 0;
    if (!grad && !mh && (o.init || o.thin != 1))
        return luaL_error(L, "%s: option '%s' applies to method \"mh\" (and \"nuts\", \"hmc\") only", fn,
                          o.init ? "init" : "thin");
    for (k = 0; !grad && opts && static_only[k]; k++)
        if (lua_getfield(L, opts, static_only[k]) != LUA_TNIL)
            return luaL_error(L, "%s: option '%s' applies to methods \"nuts\" and \"hmc\" only", fn, static_only[k]);
        else
            lua_pop(L, 1);
    if (kernel_fn || (grad && !plm_l_infer_static(L, &pg, &o, opts))) {
        /* auto or a kernel on a dynamic program (or a kernel written in Lua): MH or the trace kernel, saying why */
        if (kernel_fn) lua_pushliteral(L, "the kernel holds a Lua function, which runs on the program's traces");
        why = lua_gettop(L);
        if (strcmp(o.method, "kernel") == 0 && !plain_mh) {
            lua_getfield(L, opts, "kernel");
            o.trace_kernel = plm_l_trace_kernel_build(L, -1, fn);   /* its Lua functions stay on the stack */
            o.extra_mean = plm_l_scratch(L, (size_t)o.chains * (size_t)(o.trace_kernel->ops->nextra + 1) * sizeof(double));
        } else
            o.method = "mh";
        mh = grad = 1;
        engine_mh(L, &pg, &o);
        lua_pushvalue(L, why);
        lua_setfield(L, -2, "why");
    } else if (grad) {
        mh = 1;   /* chains and warm-up as for mh */
        if (strcmp(o.method, "auto") == 0) {
            /* the kernel that ran: "nuts" or "gibbs" alone, "auto" for their cycle */
            const char *picked = (lua_getfield(L, -1, "kernel"), lua_tostring(L, -1));
            o.method = !picked ? "nuts" : strncmp(picked, "nuts", 4) == 0 ? "nuts" : strstr(picked, "; nuts") ? "auto" : "gibbs";
            lua_pop(L, 1);
        }
    }
    else if (mh) engine_mh(L, &pg, &o);
    else if (strcmp(o.method, "is") == 0) engine_independent(L, &pg, &o, 1);
    else if (strcmp(o.method, "prior") == 0) engine_independent(L, &pg, &o, 0);
    else return luaL_error(L, "%s: unknown method '%s' (methods: \"prior\", \"is\", \"mh\", \"nuts\", \"hmc\", \"slice\", \"gibbs\", \"auto\")", fn, o.method);
    lua_pushstring(L, o.method);
    lua_setfield(L, -2, "method");
    lua_pushinteger(L, mh ? o.chains : 1);
    lua_setfield(L, -2, "chains");
    lua_pushinteger(L, o.samples);
    lua_setfield(L, -2, "samples");
    lua_pushinteger(L, mh ? o.warmup : 0);
    lua_setfield(L, -2, "warmup");
    lua_pushinteger(L, mh ? o.thin : 1);
    lua_setfield(L, -2, "thin");
    lua_pushinteger(L, (lua_Integer)o.seed);
    lua_setfield(L, -2, "seed");
    lua_pushvalue(L, 3 + nargs);
    lua_setfield(L, -2, "_model");
    lua_pushvalue(L, 4 + nargs);
    lua_setfield(L, -2, "_data");
    /* the table becomes a posterior object (plume._posterior) */
    lua_getfield(L, lua_upvalueindex(1), "_posterior");
    lua_insert(L, -2);
    lua_call(L, 1, 1);
    return 1;
}

void plm_l_open_infer(lua_State *L)
{
    lua_pushvalue(L, -1);
    lua_pushcclosure(L, l_infer, 1);
    lua_setfield(L, -2, "infer");
}
