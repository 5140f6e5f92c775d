/* mcmc.c -- the chain driver and the random-walk Metropolis kernel. */
#include "mcmc.h"
#include "comm.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "par.h"

/* ---- random-walk Metropolis ---- */

typedef struct rwmh_cfg {
    double target_accept;
    double scale;            /* initial proposal sd, 0: the optimal scale for a standard normal */
} rwmh_cfg;

typedef struct rwmh_state {
    int dim;
    double log_scale;        /* global step size, log */
    double *scale;           /* per-coordinate scales */
    double *prop;            /* proposal scratch */
    long win_start, win_end; /* current adaptation window [start, end) in warm-up iterations */
    double wn, *wmean, *wm2; /* Welford accumulators over the window */
} rwmh_state;

static void rwmh_free(void *p)
{
    rwmh_state *s = p;
    if (!s) return;
    free(s->scale);
    free(s);
}

static void *rwmh_new(const plm_kernel *k, const plm_target *t)
{
    int i, d = t->dim;
    rwmh_state *s = calloc(1, sizeof *s);
    const rwmh_cfg *c = k->cfg;
    if (!s || !(s->scale = calloc((size_t)4 * (size_t)d, sizeof *s->scale))) {
        free(s);
        return NULL;
    }
    s->dim = d;
    s->prop = s->scale + d;
    s->wmean = s->prop + d;
    s->wm2 = s->wmean + d;
    /* 2.38 / sqrt(d) is the asymptotically optimal scale for a standard normal target (Roberts, Gelman and
    ** Gilks 1997); the per-coordinate scales then carry the target's own spread */
    s->log_scale = log(c->scale > 0 ? c->scale : 2.38 / sqrt((double)d));
    for (i = 0; i < d; i++) s->scale[i] = 1;
    s->win_start = 0;
    s->win_end = 25;
    return s;
}

static plm_status rwmh_step(const plm_kernel *k, void *p, plm_ctx *ctx, const plm_target *t, void *ws, plm_rng *r,
                            double *u, double *lp, double *stat, double *extra)
{
    rwmh_state *s = p;
    int i, d = s->dim;
    double h = exp(s->log_scale), lq, a;
    (void)k, (void)extra;
    for (i = 0; i < d; i++) s->prop[i] = u[i] + h * s->scale[i] * plm_rng_normal(r);
    lq = plm_target_logp(t, ws, s->prop);
    /* compiled graphs give NaN where a distribution's parameters are invalid (sigma < 0): such a proposal
    ** has no density and is rejected, as NUTS rejects a trajectory into it; the start was checked finite */
    if (isnan(lq)) lq = -INFINITY;
    if (lq == INFINITY) return plm_fail(ctx, PLM_EDOM, "rwmh: the %s target's log density is +inf at a proposed point", t->ops->name);
    a = lq - *lp >= 0 ? 1 : exp(lq - *lp);
    *stat = a;
    if (plm_rng_uniform(r) < a) {
        memcpy(u, s->prop, (size_t)d * sizeof *u);
        *lp = lq;
    }
    return PLM_OK;
}

static void rwmh_adapt(const plm_kernel *k, void *p, long it, long nwarm, const double *u, double stat)
{
    const rwmh_cfg *c = k->cfg;
    rwmh_state *s = p;
    int i, d = s->dim;
    double target = c->target_accept > 0 ? c->target_accept : d == 1 ? 0.44 : 0.234;
    /* Robbins-Monro on the log scale with a decaying gain: the scale settles, so the late warm-up draws
    ** come from a nearly fixed kernel */
    s->log_scale += (stat - target) / pow((double)it + 1, 0.6);
    /* Welford over the window; the first 15% of warm-up only tunes the global scale, since the chain is
    ** still travelling to the typical set and its spread there says nothing about the target's */
    if (it < nwarm * 15 / 100) return;
    if (s->wn == 0) s->win_start = it;
    s->wn += 1;
    for (i = 0; i < d; i++) {
        double dlt = u[i] - s->wmean[i];
        s->wmean[i] += dlt / s->wn;
        s->wm2[i] += dlt * (u[i] - s->wmean[i]);
    }
    if ((it + 1 - s->win_start >= s->win_end || it + 1 == nwarm) && s->wn >= 10) {
        for (i = 0; i < d; i++) {
            double sd = sqrt(s->wm2[i] / (s->wn - 1));
            /* shrink toward 1e-3 for short windows, as Stan does for its metric: keeps a degenerate window
            ** (a stuck chain) from collapsing a scale to zero */
            s->scale[i] = (s->wn / (s->wn + 5)) * sd + 1e-3 * (5 / (s->wn + 5));
            s->wmean[i] = s->wm2[i] = 0;
        }
        s->wn = 0;
        s->win_end *= 2;
        s->log_scale = log(2.38 / sqrt((double)d));
    }
}

static const plm_kernel_ops rwmh_ops = {"rwmh", 0, NULL, rwmh_new, rwmh_free, rwmh_step, rwmh_adapt};

plm_status plm_kernel_rwmh(plm_ctx *ctx, double target_accept, plm_kernel **out)
{
    return plm_kernel_rwmh_scaled(ctx, target_accept, 0, out);
}

plm_status plm_kernel_rwmh_scaled(plm_ctx *ctx, double target_accept, double scale, plm_kernel **out)
{
    plm_kernel *k;
    rwmh_cfg *c;
    *out = NULL;
    if (!(target_accept == 0 || (target_accept > 0 && target_accept < 1)))
        return plm_fail(ctx, PLM_EINVAL, "rwmh: target_accept must be in (0, 1) (got %g)", target_accept);
    if (!(scale >= 0 && isfinite(scale))) return plm_fail(ctx, PLM_EINVAL, "rwmh: the proposal scale must be > 0 (got %g)", scale);
    k = plm_gc_alloc(sizeof *k);
    c = plm_gc_alloc_atomic(sizeof *c);
    if (!k || !c) return plm_fail(ctx, PLM_ENOMEM, "rwmh: out of memory");
    c->target_accept = target_accept;
    c->scale = scale;
    k->ops = &rwmh_ops;
    k->cfg = c;
    *out = k;
    return PLM_OK;
}

/* ---- the chain driver ---- */

typedef struct chain_job {
    const plm_target *t;
    const plm_kernel *k;
    const plm_mcmc_opts *o;
    double *vals;          /* chains x samples x (dim + 2), kept draws */
    long *kept;            /* per chain */
    plm_status *st;        /* per chain */
    plm_ctx *ctx;          /* per chain */
    int lo;                /* the first chain this rank runs (see plm_mcmc_run) */
    int chain0;            /* the first chain's stream number (plm_mcmc_run_from) */
} chain_job;

static plm_status chain_start(const chain_job *J, int c, void *ws, plm_rng *r, double *u, double *lp)
{
    const plm_target *t = J->t;
    int i, d = t->dim, tries;
    if (J->o->init) {
        memcpy(u, J->o->init + (size_t)c * (size_t)d, (size_t)d * sizeof *u);
        *lp = plm_target_logp(t, ws, u);
        if (isfinite(*lp)) return PLM_OK;
        return plm_fail(&J->ctx[c], PLM_EDEAD, "mcmc: chain %d: the log density at the given start is %g", c + 1, *lp);
    }
    for (tries = 0; tries < 100; tries++) {
        for (i = 0; i < d; i++) u[i] = -2 + 4 * plm_rng_uniform(r);
        *lp = plm_target_logp(t, ws, u);
        if (isfinite(*lp)) return PLM_OK;
    }
    return plm_fail(&J->ctx[c], PLM_EDEAD,
                    "mcmc: chain %d found no point of finite log density in 100 uniform(-2, 2) starts (last: %g); give init",
                    c + 1, *lp);
}

static plm_status run_chain(const chain_job *J, int c)
{
    const plm_target *t = J->t;
    const plm_kernel *k = J->k;
    const plm_mcmc_opts *o = J->o;
    int d = t->dim, w = d + 2 + k->ops->nextra;
    /* thinning keeps the first of every thin sampling iterations (0, thin, 2 thin, ...), as the trace MH does
    ** (mh_trace.c), and runs no iteration after the last kept one: a chain's draws do not depend on thin */
    long it, total = o->warmup + (o->samples ? (o->samples - 1) * o->thin + 1 : 0);
    double *u = malloc((size_t)(d + k->ops->nextra) * sizeof *u), *extra = u + d, lp, stat = 0;
    double *row = J->vals + (size_t)c * (size_t)o->samples * (size_t)w;
    void *ws = plm_target_ws_new(t), *ks = k->ops->chain_new(k, t);
    plm_rng r;
    plm_status st = PLM_OK;
    plm_ctx *ctx = &J->ctx[c];
    plm_rng_init(&r, o->seed, (uint64_t)J->chain0 + (uint64_t)c);
    if (!u || !ws || !ks) {
        st = plm_fail(ctx, PLM_ENOMEM, "mcmc: out of memory");
        goto done;
    }
    if ((st = chain_start(J, c, ws, &r, u, &lp))) goto done;
    for (it = 0; it < total; it++) {
        if (plm_interrupted()) {
            st = plm_fail(ctx, PLM_EINTR, "mcmc: interrupted");
            break;
        }
        if ((st = k->ops->step(k, ks, ctx, t, ws, &r, u, &lp, &stat, extra))) break;
        if (it < o->warmup) {
            if (k->ops->adapt) k->ops->adapt(k, ks, it, o->warmup, u, stat);
        } else if ((it - o->warmup) % o->thin == 0) {
            memcpy(row, u, (size_t)d * sizeof *u);
            row[d] = lp;
            row[d + 1] = stat;
            memcpy(row + d + 2, extra, (size_t)k->ops->nextra * sizeof *extra);
            row += w;
            J->kept[c]++;
        }
    }
done:
    if (ks) k->ops->chain_free(ks);
    plm_target_ws_free(t, ws);
    free(u);
    return st;
}

static void chain_worker(void *arg, size_t begin, size_t end, int worker)
{
    chain_job *J = arg;
    size_t c;
    (void)worker;
    for (c = begin; c < end; c++) J->st[J->lo + c] = run_chain(J, J->lo + (int)c);
}

/* The first chain of rank r when chains are spread over ranks: blocks of consecutive chains, sizes differing by
** at most one. */
static int block_start(int chains, int r, int ranks)
{
    return (int)((long long)chains * r / ranks);
}

/* Every rank gets the kept draws, counts and errors of the chains the other ranks ran: each array of J is
** gathered in place, rank r's block of chains from rank r. */
static plm_status share_chains(plm_ctx *ctx, chain_job *J, int chains, size_t row)
{
    int K = plm_comm_size(), r;
    size_t *counts = malloc((size_t)K * sizeof *counts);
    plm_status st = PLM_OK;
    struct {
        void *base;
        size_t size;
    } part[4];
    int i;
    if (!counts) return plm_fail(ctx, PLM_ENOMEM, "mcmc: out of memory");
    part[0].base = J->vals, part[0].size = row;   /* a chain's whole slot: samples rows, of which kept are set */
    part[1].base = J->kept, part[1].size = sizeof *J->kept;
    part[2].base = J->st, part[2].size = sizeof *J->st;
    part[3].base = J->ctx, part[3].size = sizeof *J->ctx;
    for (i = 0; i < 4 && st == PLM_OK; i++) {
        for (r = 0; r < K; r++)
            counts[r] = (size_t)(block_start(chains, r + 1, K) - block_start(chains, r, K)) * part[i].size;
        st = plm_comm_allgatherv(ctx, NULL, counts, part[i].base);
    }
    free(counts);
    return st;
}

/* Do the ranks agree on the run (a script that computes its options from plume.mpi.rank would not)? Else every
** rank fails alike, before any chain runs, instead of meeting a mismatched exchange. */
static plm_status same_run(plm_ctx *ctx, const plm_mcmc_opts *o, int dim, int width)
{
    enum { N = 8 };
    double v[N] = {o->chains, (double)o->samples, (double)o->warmup, (double)o->thin, (double)(o->seed >> 32),
                   (double)(o->seed & 0xffffffffu), dim, width}, b[2 * N];
    static const char *const what[N] = {"chains", "samples", "warmup", "thin", "seed", "seed", "the coordinates",
                                        "the columns"};
    plm_status st;
    int i;
    for (i = 0; i < N; i++) b[i] = v[i], b[N + i] = -v[i];
    if ((st = plm_comm_allreduce(ctx, b, 2 * N, PLM_COMM_MAX))) return st;
    for (i = 0; i < N; i++)
        if (b[i] != -b[N + i])
            return plm_fail(ctx, PLM_EINVAL, "mcmc: the ranks disagree on %s (from %.17g to %.17g): every rank must run the "
                            "same chains", what[i], -b[N + i], b[i]);
    return PLM_OK;
}

/* spread: share the chains out over the ranks (plm_mcmc_run); chain0: the first chain's stream number. */
static plm_status run(plm_ctx *ctx, const plm_target *t, const plm_kernel *k, const plm_mcmc_opts *o, int spread,
                      int chain0, plm_draws **out, double *accept)
{
    chain_job J;
    plm_draws *D;
    plm_status st = PLM_OK;
    int c, i, d = t->dim, w = d + 2 + k->ops->nextra;
    double sacc = 0;
    long nacc = 0;
    *out = NULL;
    if (o->chains < 1 || o->warmup < 0 || o->samples < 0 || o->thin < 1)
        return plm_fail(ctx, PLM_EINVAL, "mcmc: need chains >= 1, warmup >= 0, samples >= 0 and thin >= 1");
    if ((double)o->chains * (double)o->samples * w > 1e10)
        return plm_fail(ctx, PLM_EINVAL, "mcmc: %d chains x %ld samples x %d columns is more than 1e10 values", o->chains,
                        o->samples, w);
    memset(&J, 0, sizeof J);
    J.t = t, J.k = k, J.o = o, J.chain0 = chain0;
    J.vals = malloc(((size_t)o->chains * (size_t)o->samples * (size_t)w + 1) * sizeof *J.vals);
    J.kept = calloc((size_t)o->chains, sizeof *J.kept);
    J.st = calloc((size_t)o->chains, sizeof *J.st);
    J.ctx = calloc((size_t)o->chains, sizeof *J.ctx);
    if (!J.vals || !J.kept || !J.st || !J.ctx || plm_draws_new(ctx, o->chains, &D)) {
        st = plm_fail(ctx, PLM_ENOMEM, "mcmc: out of memory");
        goto done;
    }
    for (i = 0; i < d; i++) {
        char name[32];
        const char *nm = t->names ? t->names[i] : (snprintf(name, sizeof name, "x[%d]", i + 1), name);
        if (plm_draws_col(D, nm, 1) != i) {
            st = plm_fail(ctx, PLM_EINVAL, "mcmc: coordinate name '%s' is not unique", nm);
            goto done;
        }
    }
    plm_draws_col(D, "lp__", 1);
    plm_draws_col(D, "accept_stat__", 1);
    for (i = 0; i < k->ops->nextra; i++) plm_draws_col(D, k->ops->extra_names[i], 1);
    if (!spread || plm_comm_size() == 1) {
        plm_parallel_for(o->threads, (size_t)o->chains, 1, chain_worker, &J);
    } else {
        int K = plm_comm_size(), r = plm_comm_rank();
        if ((st = same_run(ctx, o, d, w))) goto done;
        J.lo = block_start(o->chains, r, K);
        plm_parallel_for(o->threads, (size_t)(block_start(o->chains, r + 1, K) - J.lo), 1, chain_worker, &J);
        /* every rank reaches this exchange, whatever its chains did: an error travels with the draws */
        if ((st = share_chains(ctx, &J, o->chains, (size_t)o->samples * (size_t)w * sizeof *J.vals))) goto done;
    }
    /* the draws of every chain go in, also when some failed or were interrupted: what was made is kept */
    for (c = 0; c < o->chains; c++) {
        const double *row = J.vals + (size_t)c * (size_t)o->samples * (size_t)w;
        long j;
        for (j = 0; j < J.kept[c]; j++, row += w) {
            if ((st = plm_draws_push(ctx, D, c, row, w, 0))) goto done;
            sacc += row[d + 1];
            nacc++;
        }
    }
    for (c = 0; c < o->chains; c++)
        if (J.st[c]) {
            st = J.st[c];
            memcpy(ctx->msg, J.ctx[c].msg, sizeof ctx->msg);
            ctx->status = st;
            break;
        }
    if (accept) *accept = nacc ? sacc / (double)nacc : NAN;
    *out = D;
done:
    free(J.vals);
    free(J.kept);
    free(J.st);
    free(J.ctx);
    return st;
}

plm_status plm_mcmc_run(plm_ctx *ctx, const plm_target *t, const plm_kernel *k, const plm_mcmc_opts *o,
                        plm_draws **out, double *accept)
{
    return run(ctx, t, k, o, 1, 0, out, accept);
}

plm_status plm_mcmc_run_local(plm_ctx *ctx, const plm_target *t, const plm_kernel *k, const plm_mcmc_opts *o,
                              plm_draws **out, double *accept)
{
    return run(ctx, t, k, o, 0, 0, out, accept);
}

plm_status plm_mcmc_run_from(plm_ctx *ctx, const plm_target *t, const plm_kernel *k, const plm_mcmc_opts *o, int chain0,
                             plm_draws **out, double *accept)
{
    return run(ctx, t, k, o, 0, chain0, out, accept);
}
