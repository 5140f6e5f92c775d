/* cthmm.c -- continuous-time HMMs on the discrete HMM core: emission log-likelihoods plus one transition
** matrix exp(Q dt) per distinct gap between observation times. */
#include "cthmm.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "hmm.h"

static plm_status check_probs(plm_ctx *ctx, const char *what, int row, const double *p, int n)
{
    double sum = 0;
    int j;
    for (j = 0; j < n; j++) {
        if (!isfinite(p[j]) || p[j] < 0) {
            if (row) return plm_fail(ctx, PLM_EINVAL, "cthmm: %s[%d][%d] must be a probability >= 0 (got %g)", what, row, j + 1, p[j]);
            return plm_fail(ctx, PLM_EINVAL, "cthmm: %s[%d] must be a probability >= 0 (got %g)", what, j + 1, p[j]);
        }
        sum += p[j];
    }
    if (fabs(sum - 1) > 1e-9) {
        if (row) return plm_fail(ctx, PLM_EINVAL, "cthmm: %s row %d must sum to 1 (sum is %.17g)", what, row, sum);
        return plm_fail(ctx, PLM_EINVAL, "cthmm: %s must sum to 1 (sum is %.17g)", what, sum);
    }
    return PLM_OK;
}

static plm_status new_common(plm_ctx *ctx, const plm_ctmc *chain, const double *init, plm_cthmm **out)
{
    plm_cthmm *h;
    plm_status st;
    plm_init();
    *out = NULL;
    if ((st = check_probs(ctx, "init", 0, init, chain->K))) return st;
    if (!(h = plm_gc_alloc(sizeof *h)) || !(h->init = plm_gc_alloc_atomic((size_t)chain->K * sizeof *h->init)))
        return plm_fail(ctx, PLM_ENOMEM, "cthmm: out of memory");
    h->K = chain->K;
    h->chain = chain;
    memcpy(h->init, init, (size_t)chain->K * sizeof *init);
    *out = h;
    return PLM_OK;
}

plm_status plm_cthmm_new_categorical(plm_ctx *ctx, const plm_ctmc *chain, const double *init, int M,
                                     const double *E, plm_cthmm **out)
{
    plm_cthmm *h;
    plm_status st;
    int K = chain->K, k;
    size_t i, KM = (size_t)K * M;
    *out = NULL;
    if (M < 1) return plm_fail(ctx, PLM_EINVAL, "cthmm: emit must have at least one symbol (got %d)", M);
    for (k = 0; k < K; k++)
        if ((st = check_probs(ctx, "emit", k + 1, E + (size_t)k * M, M))) return st;
    if ((st = new_common(ctx, chain, init, &h))) return st;
    if (!(h->E = plm_gc_alloc_atomic(KM * sizeof *h->E)) || !(h->logE = plm_gc_alloc_atomic(KM * sizeof *h->logE)))
        return plm_fail(ctx, PLM_ENOMEM, "cthmm: out of memory");
    for (i = 0; i < KM; i++) h->E[i] = E[i], h->logE[i] = log(E[i]);
    h->M = M;
    h->D = 1;
    *out = h;
    return PLM_OK;
}

plm_status plm_cthmm_new_dists(plm_ctx *ctx, const plm_ctmc *chain, const double *init, plm_dist *const *emit,
                               plm_cthmm **out)
{
    plm_cthmm *h;
    plm_status st;
    int K = chain->K, k;
    *out = NULL;
    for (k = 0; k < K; k++) {
        if (!emit[k]) return plm_fail(ctx, PLM_EINVAL, "cthmm: emit[%d] is missing", k + 1);
        if (emit[k]->dim != emit[0]->dim)
            return plm_fail(ctx, PLM_EINVAL, "cthmm: emit[%d] has dimension %d, but emit[1] has %d", k + 1,
                            emit[k]->dim, emit[0]->dim);
    }
    if ((st = new_common(ctx, chain, init, &h))) return st;
    if (!(h->emit = plm_gc_alloc((size_t)K * sizeof *h->emit))) return plm_fail(ctx, PLM_ENOMEM, "cthmm: out of memory");
    memcpy(h->emit, emit, (size_t)K * sizeof *emit);
    h->M = 0;
    h->D = emit[0]->dim;
    *out = h;
    return PLM_OK;
}

/* What the kernels need for one observation sequence: logB (T*K) and per-step matrices. */
typedef struct prep {
    plm_chain chain;
    double *logB;
    const double **trans_t;
    double *mats;
} prep;

typedef struct gap {
    double dt;
    size_t step;
} gap;

static int cmp_gap(const void *a, const void *b)
{
    double x = ((const gap *)a)->dt, y = ((const gap *)b)->dt;
    return (x > y) - (x < y);
}

static void prep_free(prep *p)
{
    free(p->logB);
    free(p->trans_t);
    free(p->mats);
}

static plm_status check_times(plm_ctx *ctx, size_t T, const double *times)
{
    size_t t;
    if (T == 0) return plm_fail(ctx, PLM_EINVAL, "cthmm: the observation sequence is empty");
    for (t = 0; t < T; t++) {
        if (!isfinite(times[t])) return plm_fail(ctx, PLM_EINVAL, "cthmm: times[%zu] is not finite (%g)", t + 1, times[t]);
        if (t > 0 && times[t] < times[t - 1])
            return plm_fail(ctx, PLM_EINVAL, "cthmm: times must not decrease (times[%zu] = %g, times[%zu] = %g)", t + 1,
                            times[t], t, times[t - 1]);
    }
    return PLM_OK;
}

/* Transition matrices for the T-1 gaps, one exponential per distinct gap (sorted so equal gaps meet). */
static plm_status prep_trans(plm_ctx *ctx, const plm_cthmm *h, size_t T, const double *times, prep *p)
{
    size_t KK = (size_t)h->K * h->K, i, u = 0;
    gap *g;
    plm_status st = PLM_OK;
    if (T < 2) return PLM_OK;
    if (!(g = malloc((T - 1) * sizeof *g)) || !(p->trans_t = malloc((T - 1) * sizeof *p->trans_t))) {
        free(g);
        return plm_fail(ctx, PLM_ENOMEM, "cthmm: out of memory");
    }
    for (i = 0; i + 1 < T; i++) g[i].dt = times[i + 1] - times[i], g[i].step = i;
    qsort(g, T - 1, sizeof *g, cmp_gap);
    for (i = 0; i + 1 < T; i++) u += i == 0 || g[i].dt != g[i - 1].dt;
    if (!(p->mats = malloc(u * KK * sizeof *p->mats))) {
        free(g);
        return plm_fail(ctx, PLM_ENOMEM, "cthmm: out of memory");
    }
    u = 0;
    for (i = 0; i + 1 < T && st == PLM_OK; i++) {
        if (i == 0 || g[i].dt != g[i - 1].dt) {
            if ((u & 255) == 255 && plm_interrupted()) st = plm_fail(ctx, PLM_EINTR, "cthmm: interrupted");
            else st = plm_ctmc_transition(ctx, h->chain, g[i].dt, p->mats + u++ * KK);
        }
        p->trans_t[g[i].step] = p->mats + (u - 1) * KK;
    }
    free(g);
    p->chain.trans_t = p->trans_t;
    return st;
}

static plm_status prep_emissions(plm_ctx *ctx, const plm_cthmm *h, size_t T, const double *obs, prep *p)
{
    int K = h->K, D = h->D, k, j;
    size_t t;
    if (!(p->logB = malloc(T * K * sizeof *p->logB))) return plm_fail(ctx, PLM_ENOMEM, "cthmm: out of memory");
    for (t = 0; t < T; t++) {
        const double *y = obs + t * D;
        double *lb = p->logB + t * K;
        int missing = 1;
        for (j = 0; j < D; j++) missing &= isnan(y[j]);
        if (missing) {
            for (k = 0; k < K; k++) lb[k] = 0;
            continue;
        }
        if (h->logE) {
            double v = y[0];
            if (!(v >= 0 && v < h->M && v == floor(v)))
                return plm_fail(ctx, PLM_EINVAL, "cthmm: obs[%zu] is %g, but the symbols are 1..%d", t + 1, v + 1, h->M);
            for (k = 0; k < K; k++) lb[k] = h->logE[(size_t)k * h->M + (int)v];
        } else {
            for (j = 0; j < D; j++)
                if (isnan(y[j])) return plm_fail(ctx, PLM_EINVAL, "cthmm: obs[%zu] is partly missing (NaN entry %d)", t + 1, j + 1);
            for (k = 0; k < K; k++) {
                double v = plm_dist_logpdf(h->emit[k], y);
                lb[k] = isnan(v) ? -INFINITY : v;
            }
        }
    }
    return PLM_OK;
}

static plm_status prepare(plm_ctx *ctx, const plm_cthmm *h, size_t T, const double *times, const double *obs, prep *p)
{
    plm_status st;
    memset(p, 0, sizeof *p);
    p->chain.K = h->K;
    p->chain.init = h->init;
    p->chain.trans = NULL;
    if ((st = check_times(ctx, T, times))) return st;
    if ((st = prep_emissions(ctx, h, T, obs, p))) return st;
    if (T < 2) {   /* no step: the kernels never read a transition matrix, but give them a valid one */
        p->chain.trans_t = NULL;
        if (!(p->mats = malloc((size_t)h->K * h->K * sizeof *p->mats))) return plm_fail(ctx, PLM_ENOMEM, "cthmm: out of memory");
        st = plm_ctmc_transition(ctx, h->chain, 0, p->mats);
        p->chain.trans = p->mats;
        return st;
    }
    return prep_trans(ctx, h, T, times, p);
}

plm_status plm_cthmm_loglik(plm_ctx *ctx, const plm_cthmm *h, size_t T, const double *times, const double *obs,
                            double *loglik)
{
    prep p;
    plm_status st = prepare(ctx, h, T, times, obs, &p);
    if (st == PLM_OK) st = plm_hmm_core_loglik(ctx, &p.chain, T, p.logB, loglik, NULL);
    prep_free(&p);
    return st;
}

plm_status plm_cthmm_posterior(plm_ctx *ctx, const plm_cthmm *h, size_t T, const double *times, const double *obs,
                               double *post, double *loglik)
{
    prep p;
    double ll;
    plm_status st = prepare(ctx, h, T, times, obs, &p);
    if (st == PLM_OK) st = plm_hmm_core_posterior(ctx, &p.chain, T, p.logB, post, &ll);
    if (st == PLM_OK && loglik) *loglik = ll;
    prep_free(&p);
    return st;
}

plm_status plm_cthmm_viterbi(plm_ctx *ctx, const plm_cthmm *h, size_t T, const double *times, const double *obs,
                             int *path, double *logp)
{
    prep p;
    plm_status st = prepare(ctx, h, T, times, obs, &p);
    if (st == PLM_OK) st = plm_hmm_core_viterbi(ctx, &p.chain, T, p.logB, path, logp);
    prep_free(&p);
    return st;
}

/* Index drawn from the probability vector p (n entries summing to 1). */
static int draw_index(plm_rng *r, const double *p, int n)
{
    double u = plm_rng_uniform(r);
    int j, last = 0;
    for (j = 0; j < n; j++) {
        if (p[j] <= 0) continue;
        last = j;
        if ((u -= p[j]) < 0) return j;
    }
    return last;   /* rounding left u >= 0: the last possible index */
}

plm_status plm_cthmm_sample(plm_ctx *ctx, const plm_cthmm *h, size_t T, const double *times, plm_rng *r,
                            int *states, double *obs)
{
    prep p;
    plm_status st;
    size_t t;
    int K = h->K, x = 0;
    memset(&p, 0, sizeof p);
    if ((st = check_times(ctx, T, times)) || (st = prep_trans(ctx, h, T, times, &p))) {
        prep_free(&p);
        return st;
    }
    for (t = 0; t < T; t++) {
        x = t == 0 ? draw_index(r, h->init, K) : draw_index(r, p.trans_t[t - 1] + (size_t)x * K, K);
        if (states) states[t] = x;
        if (!obs) continue;
        if (h->E)
            obs[t] = draw_index(r, h->E + (size_t)x * h->M, h->M);
        else
            plm_dist_sample(h->emit[x], r, obs + t * h->D);
    }
    prep_free(&p);
    return PLM_OK;
}
