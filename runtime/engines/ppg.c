/* ppg.c -- the Parisian particle Gibbs sampler (see ppg.h).
**
** The sweep is plume.pgibbs's conditional SMC with ancestor sampling (pgibbs.c), with the PaRIS step
** (smooth.h) after the update at every t. Why the chain is valid: the next reference is traced through the
** backward draws, one of each particle's Ntilde chosen uniformly, and each of them is a draw from the backward
** kernel W_{t-1}^j p(x_t^i | x_{t-1}^j) given the particles (exactly, by accept-reject or the O(N) kernel, or
** by the Metropolis-Hastings fall-back started at the particle's parent, itself a draw from that kernel: the
** free particles' parents by construction, the reference's by ancestor sampling). The traced path is then a
** backward-sampled (FFBS) path of the conditional particle system, which is particle Gibbs with backward
** sampling (Whiteley 2010; Lindsten and Schön 2013). */
#include "ppg.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "par.h"
#include "pgibbs.h"
#include "resample.h"

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

typedef struct ppg_ws {
    long T;
    size_t N, NN, dim;
    double *xs;          /* the particles of every step: xs[((t-1)*dim + k)*N + i] */
    uint32_t *bidx;      /* the backward draws of every step t >= 2: bidx[(t-2)*NN + i*Ntilde + q] */
    uint32_t *anc;       /* N: the parents at t - 1 of the particles at t */
    double *xo, *xrep;   /* dim * N: gathered parents; the reference state repeated */
    double *inc, *lw, *lwp, *W, *la;   /* N: incremental, normalised log weights (t, t - 1), weights, ancestor */
    size_t *cnt, *ancs;  /* N */
    plm_rng *rng;        /* N */
} ppg_ws;

static void ws_free(ppg_ws *w)
{
    free(w->xs);
    free(w->bidx);
    free(w->anc);
    free(w->xo);
    free(w->xrep);
    free(w->inc);
    free(w->lw);
    free(w->lwp);
    free(w->W);
    free(w->la);
    free(w->cnt);
    free(w->ancs);
    free(w->rng);
}

static int ws_init(ppg_ws *w, const plm_ssm *m, long T, size_t N, size_t Nt)
{
    const size_t d = (size_t)m->dim;
    memset(w, 0, sizeof *w);
    w->T = T, w->N = N, w->NN = N * Nt, w->dim = d;
    w->xs = malloc((size_t)T * d * N * sizeof *w->xs);
    w->bidx = malloc(((size_t)T * w->NN + 1) * sizeof *w->bidx);
    w->anc = malloc(N * sizeof *w->anc);
    w->xo = malloc(d * N * sizeof *w->xo);
    w->xrep = malloc(d * N * sizeof *w->xrep);
    w->inc = malloc(N * sizeof *w->inc);
    w->lw = malloc(N * sizeof *w->lw);
    w->lwp = malloc(N * sizeof *w->lwp);
    w->W = malloc(N * sizeof *w->W);
    w->la = malloc(N * sizeof *w->la);
    w->cnt = malloc(N * sizeof *w->cnt);
    w->ancs = malloc(N * sizeof *w->ancs);
    w->rng = malloc(N * sizeof *w->rng);
    return w->xs && w->bidx && w->anc && w->xo && w->xrep && w->inc && w->lw && w->lwp && w->W && w->la && w->cnt &&
           w->ancs && w->rng;
}

/* The index drawn from normalised weights W (n of them) by the uniform u. */
#define draw_index plm_csmc_draw_index

/* One sweep with seed s: conditional on path when ref is 1 (an ordinary bootstrap filter when 0), PaRIS inside;
** est receives the sweep's K estimates and path the next reference. */
static plm_status sweep(plm_ctx *ctx, ppg_ws *w, const plm_ssm *m, const double *ys, plm_paris_state *P,
                        plm_smooth_opts *bo, uint64_t s, int ref, int nthreads, double *path, double *est)
{
    const size_t N = w->N, dim = w->dim, nf = ref ? N - 1 : N, NN = w->NN, Nt = NN / N;
    const long T = w->T;
    const int nth = N >= 8 * PLM_EXPR_BLOCK ? nthreads : 1;
    plm_rng rr;
    plm_status st;
    size_t i, k, b;
    long t;
    int j;
    for (i = 0; i < N; i++) plm_rng_init(&w->rng[i], s, (uint64_t)i + 1);
    plm_rng_init(&rr, s, 0);
    bo->seed = s;   /* the PaRIS steps' streams */
    for (t = 1; t <= T; t++) {
        const double *y = ys + (size_t)(t - 1) * (size_t)m->ydim, *xr = path + (size_t)(t - 1) * dim;
        double *x = w->xs + (size_t)(t - 1) * dim * N, *xp = x - dim * N, *sw, A;
        int missing = 0;
        if (plm_interrupted()) return plm_fail(ctx, PLM_EINTR, "ppg: interrupted at t = %ld", t);
        for (j = 0; j < m->ydim; j++) missing |= isnan(y[j]);
        if (t == 1) {
            st = missing ? plm_ssm_init_sample(ctx, m, nf, x, N, w->rng, nth)
                         : plm_ssm_step(ctx, m, 1, nf, NULL, y, x, N, w->inc, w->rng, nth);
            if (st) return st;
        } else {
            /* the free particles' parents, from all N weights of t - 1 */
            if ((st = plm_resample_counts(ctx, PLM_RESAMPLE_MULTINOMIAL, w->W, N, nf, &rr, w->cnt, NULL))) return st;
            plm_resample_ancestors(w->cnt, N, w->ancs);
            for (i = 0; i < nf; i++) w->anc[i] = (uint32_t)w->ancs[i];
            for (k = 0; k < dim; k++)
                for (i = 0; i < nf; i++) w->xo[k * N + i] = xp[k * N + w->anc[i]];
            st = missing ? plm_ssm_trans_sample(ctx, m, t, nf, w->xo, x, N, w->rng, nth)
                         : plm_ssm_step(ctx, m, t, nf, w->xo, y, x, N, w->inc, w->rng, nth);
            if (st) return st;
            if (ref &&   /* ancestor sampling: the reference's parent from W_{t-1}^j p(x*_t | x_{t-1}^j) */
                (st = plm_csmc_ancestor(ctx, m, t, xp, w->lw, xr, N, w->xrep, w->la, &rr, nth, "ppg", &w->anc[N - 1])))
                return st;
        }
        if (ref) {
            for (k = 0; k < dim; k++) x[k * N + N - 1] = xr[k];
            if (!missing && (st = plm_ssm_obs_logpdf(ctx, m, t, 1, x + N - 1, N, y, &w->inc[N - 1], 1))) return st;
        }
        /* resampling at every step leaves equal weights: the new ones are the incremental weights */
        if (missing)
            for (i = 0; i < N; i++) w->inc[i] = 0;
        sw = w->lwp, w->lwp = w->lw, w->lw = sw;   /* lwp: the weights of t - 1 */
        A = plm_resample_normalise(w->inc, N, w->W);
        if (isnan(A) || A == INFINITY)
            return plm_fail(ctx, PLM_EDOM, "ppg: a weight is %g at t = %ld: a parameter outside its domain, or a "
                            "density that is not finite", A, t);
        if (!isfinite(A))
            return plm_fail(ctx, PLM_EDOM, "ppg: every particle has weight zero at t = %ld: no particle, the "
                            "reference included, can explain the observation", t);
        for (i = 0; i < N; i++) w->lw[i] = w->inc[i] - A;
        if ((st = plm_paris_next(ctx, P, t, t > 1 ? xp : NULL, w->lwp, x, w->anc))) return st;
        if (t > 1) memcpy(w->bidx + (size_t)(t - 2) * NN, plm_paris_indices(P), NN * sizeof *w->bidx);
    }
    plm_paris_estimate(P, w->lw, est);
    /* the next reference: a particle drawn from W_T, traced back through one of its backward draws per step */
    b = draw_index(w->W, N, plm_rng_uniform(&rr));
    for (t = T; t >= 1; t--) {
        for (k = 0; k < dim; k++) path[(size_t)(t - 1) * dim + k] = w->xs[((size_t)(t - 1) * dim + k) * N + b];
        if (t > 1) {
            size_t q = (size_t)(plm_rng_uniform(&rr) * (double)Nt);
            if (q >= Nt) q = Nt - 1;
            b = w->bidx[(size_t)(t - 2) * NN + b * Nt + q];
        }
    }
    return PLM_OK;
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
    ppg_ws w;
    plm_smooth_opts bo;
    plm_paris_state *P = NULL;
    double *path = NULL;
    plm_rng r0;
    plm_status st = PLM_OK;
    long it, n;
    int j;
    memset(r, 0, sizeof *r);
    memset(&w, 0, sizeof w);
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
    bo = o->back;
    bo.nthreads = o->nthreads;
    r->K = K, r->iters = o->iters, r->burnin = o->burnin;
    r->value = malloc((size_t)K * sizeof *r->value);
    r->mcse = malloc((size_t)K * sizeof *r->mcse);
    r->paris = malloc((size_t)K * sizeof *r->paris);
    r->trace = malloc((size_t)o->iters * (size_t)K * sizeof *r->trace);
    path = malloc((size_t)T * (size_t)m->dim * sizeof *path);
    if (!r->value || !r->mcse || !r->paris || !r->trace || !path || !ws_init(&w, m, T, o->N, (size_t)bo.Ntilde)) {
        st = plm_fail(ctx, PLM_ENOMEM, "ppg: out of memory (%ld steps x %zu particles)", T, o->N);
        goto done;
    }
    if (!(P = plm_paris_begin(ctx, m, o->N, K, hfn, hud, &bo, &r->stats))) {
        st = ctx->status ? ctx->status : PLM_ENOMEM;
        goto done;
    }
    plm_rng_init(&r0, o->seed, 0);
    /* the start: plain PaRIS in an unconditional sweep, whose traced path is the first reference */
    if ((st = sweep(ctx, &w, m, ys, P, &bo, plm_rng_next(&r0), 0, o->nthreads, path, r->paris))) goto done;
    for (it = 0; it < o->iters; it++)
        if ((st = sweep(ctx, &w, m, ys, P, &bo, plm_rng_next(&r0), 1, o->nthreads, path, r->trace + (size_t)it * (size_t)K)))
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
    plm_paris_end(P);
    ws_free(&w);
    free(path);
    if (st) plm_ppg_result_free(r);
    return st;
}
