/* ppg.c -- the Parisian particle Gibbs sampler (see ppg.h).
**
** The sweep is plume.pgibbs's conditional SMC with ancestor sampling (plm_csmc_sweep_hook of pgibbs.h), whose
** hook runs the PaRIS step (smooth.h) after the update at every t and traces the next reference. Why the chain
** is valid: the next reference is traced through the backward draws, one of each particle's Ntilde chosen
** uniformly, and each of them is a draw from the backward kernel W_{t-1}^j p(x_t^i | x_{t-1}^j) given the
** particles (exactly, by accept-reject or the O(N) kernel, or by the Metropolis-Hastings fall-back started at
** the particle's parent, itself a draw from that kernel: the free particles' parents by construction, the
** reference's by ancestor sampling). The traced path is then a backward-sampled (FFBS) path of the conditional
** particle system, which is particle Gibbs with backward sampling (Whiteley 2010; Lindsten and Schön 2013). */
#include "ppg.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "pgibbs.h"

void plm_ppg_opts_default(plm_ppg_opts *o)
{
    memset(o, 0, sizeof *o);
    o->N = 100;
    o->iters = 100;
    o->burnin = 10;
    o->seed = 1;
    o->nthreads = 1;
    plm_smooth_opts_default(&o->back);
}

void plm_ppg_result_free(plm_ppg_result *r)
{
    if (!r) return;
    free(r->value);
    free(r->mcse);
    free(r->paris);
    free(r->trace);
    memset(r, 0, sizeof *r);
}

struct plm_ppg_sweeper {
    plm_csmc *cs;            /* the conditional SMC sweep (pgibbs.h) */
    plm_paris_state *P;
    plm_smooth_opts bo;      /* read by P at every step: its seed is the sweep's */
    uint32_t *bidx;          /* the backward draws of every step t >= 2: bidx[(t-2)*NN + i*Ntilde + q] */
    size_t N, NN;
};

void plm_ppg_sweeper_free(plm_ppg_sweeper *S)
{
    if (!S) return;
    plm_csmc_free(S->cs);
    plm_paris_end(S->P);
    free(S->bidx);
    free(S);
}

plm_ppg_sweeper *plm_ppg_sweeper_new(plm_ctx *ctx, const plm_ssm *m, long T, size_t N, int K, plm_paris_fn hfn,
                                     void *hud, const plm_smooth_opts *back, int nthreads, plm_smooth_stats *stats)
{
    plm_ppg_sweeper *S = calloc(1, sizeof *S);
    if (!S) goto nomem;
    S->bo = *back;
    S->bo.nthreads = nthreads;
    S->N = N, S->NN = N * (size_t)back->Ntilde;
    S->bidx = malloc(((size_t)T * S->NN + 1) * sizeof *S->bidx);
    if (!S->bidx || !(S->cs = plm_csmc_new(m, T, N))) goto nomem;
    if (!(S->P = plm_paris_begin(ctx, m, N, K, hfn, hud, &S->bo, stats))) {
        if (!ctx->status) plm_fail(ctx, PLM_ENOMEM, "ppg: out of memory");
        plm_ppg_sweeper_free(S);
        return NULL;
    }
    return S;
nomem:
    plm_fail(ctx, PLM_ENOMEM, "ppg: out of memory (%ld steps x %zu particles)", T, N);
    plm_ppg_sweeper_free(S);
    return NULL;
}

/* The sweep's hook (pgibbs.h): the PaRIS step after the weights of every t, its backward draws kept */
static plm_status paris_step(plm_ctx *ctx, void *ud, long t, const double *xp, const double *lwp, const double *x,
                             const double *lw, const uint32_t *anc)
{
    plm_ppg_sweeper *S = ud;
    plm_status st;
    (void)lw;
    if ((st = plm_paris_next(ctx, S->P, t, xp, lwp, x, anc))) return st;
    if (t > 1) memcpy(S->bidx + (size_t)(t - 2) * S->NN, plm_paris_indices(S->P), S->NN * sizeof *S->bidx);
    return PLM_OK;
}

/* The next reference goes back through one of particle b's Ntilde backward draws, chosen uniformly. */
static size_t backward_parent(void *ud, long t, size_t b, plm_rng *r)
{
    const plm_ppg_sweeper *S = ud;
    const size_t Nt = S->NN / S->N;
    size_t q = (size_t)(plm_rng_uniform(r) * (double)Nt);
    if (q >= Nt) q = Nt - 1;
    return S->bidx[(size_t)(t - 2) * S->NN + b * Nt + q];
}

plm_status plm_ppg_sweep(plm_ctx *ctx, plm_ppg_sweeper *S, const plm_ssm *m, const double *ys, uint64_t seed,
                         int ref, int nthreads, double *path, double *est)
{
    plm_csmc_hook h = {"ppg", paris_step, backward_parent, NULL};
    plm_status st;
    h.ud = S;
    S->bo.seed = seed;   /* the PaRIS steps' streams */
    if ((st = plm_csmc_sweep_hook(ctx, S->cs, m, ys, seed, ref, 1, nthreads, &h, path))) return st;
    plm_paris_estimate(S->P, plm_csmc_logweights(S->cs), est);
    return PLM_OK;
}

/* ---- PPG with parameter updates: the chains of plm_pgibbs_run with PPG's sweep ---- */

typedef struct gibbs_fn {   /* what every chain's sweeper is made of */
    const plm_prog *hprog;
    const plm_smooth_opts *back;
    int K;
} gibbs_fn;

typedef struct gibbs_chain {
    plm_paris_prog H;       /* the functional, evaluated with the chain's parameters */
    plm_ssm_gauss G;        /* the Gaussian bound, likewise */
    plm_smooth_stats stats;
    plm_ppg_sweeper *S;
} gibbs_chain;

static void gibbs_free(void *state)
{
    gibbs_chain *c = state;
    plm_ppg_sweeper_free(c->S);
    free(c);
}

static void *gibbs_new(plm_ctx *ctx, void *ud, const plm_ssm *m, long T, size_t N, int nthreads)
{
    const gibbs_fn *F = ud;
    gibbs_chain *c = calloc(1, sizeof *c);
    plm_smooth_opts bo;
    if (!c) {
        plm_fail(ctx, PLM_ENOMEM, "ppg: out of memory");
        return NULL;
    }
    bo = *F->back;
    if (bo.gauss) {
        c->G = *bo.gauss;
        c->G.m = m;
        bo.gauss = &c->G;
    }
    c->H.m = m, c->H.p = F->hprog, c->H.nthreads = nthreads;
    if (!(c->S = plm_ppg_sweeper_new(ctx, m, T, N, F->K, plm_paris_prog_fn, &c->H, &bo, nthreads, &c->stats))) {
        free(c);
        return NULL;
    }
    return c;
}

static plm_status gibbs_sweep(plm_ctx *ctx, void *state, const plm_ssm *m, const double *ys, uint64_t seed, int ref,
                              int nthreads, double *path, double *est)
{
    gibbs_chain *c = state;
    return plm_ppg_sweep(ctx, c->S, m, ys, seed, ref, nthreads, path, est);
}

plm_status plm_ppg_gibbs_run(plm_ctx *ctx, const plm_ssm *m, long T, const double *ys, const plm_ssm_prior *P,
                             const plm_prog *hprog, int K, const char *const *names, const plm_smooth_opts *back,
                             const plm_pgibbs_opts *o, plm_results *R)
{
    gibbs_fn F;
    plm_pgibbs_sweep sw;
    plm_pgibbs_opts oo = *o;
    if (back->Ntilde < 1) return plm_fail(ctx, PLM_EINVAL, "ppg: backward draws must be >= 1 (got %d)", back->Ntilde);
    F.hprog = hprog, F.back = back, F.K = K;
    sw.K = K, sw.names = names, sw.new = gibbs_new, sw.run = gibbs_sweep, sw.free = gibbs_free, sw.ud = &F;
    oo.sweep = &sw;
    return plm_pgibbs_run(ctx, m, T, ys, P, &oo, R);
}

/* The batch-means standard error of the mean of v[0], v[K], ... (n of them). */
static double batch_se(const double *v, long n, int K)
{
    long nb = (long)floor(sqrt((double)n)), len, b, i;
    double mean = 0, ss = 0;
    if (n < 4 || nb < 2) return NAN;
    len = n / nb;
    for (b = 0; b < nb; b++) {
        double s = 0;
        for (i = 0; i < len; i++) s += v[(size_t)(b * len + i) * (size_t)K];
        s /= (double)len;
        mean += s;
        ss += s * s;
    }
    mean /= (double)nb;
    /* the variance of a batch mean, over nb batches, scaled to the whole run's n = nb * len draws */
    return sqrt((ss / (double)nb - mean * mean) * (double)nb / (double)(nb - 1) * (double)len / (double)n);
}

plm_status plm_ppg_run(plm_ctx *ctx, const plm_ssm *m, long T, const double *ys, int K, plm_paris_fn hfn, void *hud,
                       const plm_ppg_opts *o, plm_ppg_result *r)
{
    plm_ppg_sweeper *S = NULL;
    double *path = NULL;
    plm_rng r0;
    plm_status st = PLM_OK;
    long it, n;
    int j;
    memset(r, 0, sizeof *r);
    if (o->N < 2 || o->N > ((size_t)1 << 31))
        return plm_fail(ctx, PLM_EINVAL, "ppg: particles must be in 2..2^31 (got %zu)", o->N);
    if (T < 1) return plm_fail(ctx, PLM_EINVAL, "ppg: no observations (T = %ld)", T);
    if (o->iters < 1) return plm_fail(ctx, PLM_EINVAL, "ppg: iters must be >= 1 (got %ld)", o->iters);
    if (o->burnin < 0 || o->burnin >= o->iters)
        return plm_fail(ctx, PLM_EINVAL, "ppg: burnin must be in 0..iters - 1 = %ld (got %ld)", o->iters - 1, o->burnin);
    if (K < 1) return plm_fail(ctx, PLM_EINVAL, "ppg: the functional has no outputs");
    if (o->back.Ntilde < 1)
        return plm_fail(ctx, PLM_EINVAL, "ppg: backward draws must be >= 1 (got %d)", o->back.Ntilde);
    for (j = 0; j < m->np; j++)
        if (isnan(m->params[j])) return plm_fail(ctx, PLM_EINVAL, "ppg: parameter %d has no value", j + 1);
    r->K = K, r->iters = o->iters, r->burnin = o->burnin;
    r->value = malloc((size_t)K * sizeof *r->value);
    r->mcse = malloc((size_t)K * sizeof *r->mcse);
    r->paris = malloc((size_t)K * sizeof *r->paris);
    r->trace = malloc((size_t)o->iters * (size_t)K * sizeof *r->trace);
    path = malloc((size_t)T * (size_t)m->dim * sizeof *path);
    if (!r->value || !r->mcse || !r->paris || !r->trace || !path) {
        st = plm_fail(ctx, PLM_ENOMEM, "ppg: out of memory (%ld steps x %zu particles)", T, o->N);
        goto done;
    }
    if (!(S = plm_ppg_sweeper_new(ctx, m, T, o->N, K, hfn, hud, &o->back, o->nthreads, &r->stats))) {
        st = ctx->status ? ctx->status : PLM_ENOMEM;
        goto done;
    }
    plm_rng_init(&r0, o->seed, 0);
    /* the start: plain PaRIS in an unconditional sweep, whose traced path is the first reference */
    if ((st = plm_ppg_sweep(ctx, S, m, ys, plm_rng_next(&r0), 0, o->nthreads, path, r->paris))) goto done;
    for (it = 0; it < o->iters; it++)
        if ((st = plm_ppg_sweep(ctx, S, m, ys, plm_rng_next(&r0), 1, o->nthreads, path,
                                r->trace + (size_t)it * (size_t)K)))
            goto done;
    n = o->iters - o->burnin;
    for (j = 0; j < K; j++) {
        const double *v = r->trace + (size_t)o->burnin * (size_t)K + (size_t)j;
        double s = 0;
        for (it = 0; it < n; it++) s += v[(size_t)it * (size_t)K];
        r->value[j] = s / (double)n;
        r->mcse[j] = batch_se(v, n, K);
    }
done:
    plm_ppg_sweeper_free(S);
    free(path);
    if (st) plm_ppg_result_free(r);
    return st;
}
