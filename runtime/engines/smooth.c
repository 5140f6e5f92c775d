/* smooth.c -- FFBS and PaRIS over a filter's history (see smooth.h).
**
** Both need draws from the backward kernel: given a state x' at time t, an index i at t - 1 with probability
** proportional to W_{t-1}^i p(x' | x_{t-1}^i). The exact draw scores all N particles (O(N)). The accept-reject
** draw proposes i from W_{t-1} (a binary search in the cumulative weights) and accepts with probability
** p(x' | x_{t-1}^i) / bound; its expected cost is O(1) when the densities are not much below the bound, but a
** few draws can take very long (Douc et al. 2011), hence Dau and Chopin's hybrid: a fixed number of rounds,
** then the exact draw for the requests still waiting. Every round scores all waiting requests in one call of
** the compiled density. */
#include "smooth.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void plm_smooth_opts_default(plm_smooth_opts *o)
{
    memset(o, 0, sizeof *o);
    o->M = 100;
    o->Ntilde = 2;
    o->rejection = 0;
    o->max_tries = 10;
    o->log_bound_const = NAN;
    o->seed = 1;
    o->nthreads = 1;
}

/* Threads only pay for calls over several thousand particles (waking the pool costs more below); results
** do not depend on the count. */
static int threads_for(size_t n, int nthreads)
{
    return n >= 8 * PLM_EXPR_BLOCK ? nthreads : 1;
}

/* The first i with cdf[i] > u (cdf nondecreasing, u < cdf[n-1]). */
static size_t search(const double *cdf, size_t n, double u)
{
    size_t lo = 0, hi = n - 1;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (cdf[mid] > u) hi = mid;
        else lo = mid + 1;
    }
    return lo;
}

/* The log bound at time t: the caller's program (uniform inputs only) or the constant. */
static plm_status log_bound_at(plm_ctx *ctx, const plm_ssm *m, const plm_smooth_opts *o, long t, double *lb)
{
    plm_prog_in in[PLM_NGROUPS];
    double tcb[64], *tc = m->ncov < 63 ? tcb : malloc(((size_t)m->ncov + 1) * sizeof *tc), *out = lb;
    plm_status st;
    if (!o->log_bound && isnan(o->log_bound_const) && o->gauss) {
        if (tc != tcb) free(tc);
        return plm_ssm_gauss_log_bound(ctx, o->gauss, t, lb);
    }
    if (!o->log_bound) {
        *lb = o->log_bound_const;
        if (tc != tcb) free(tc);
        return isnan(*lb) ? plm_fail(ctx, PLM_EINVAL, "smooth: rejection sampling needs a bound of the transition "
                                                        "density (none was given or derived)")
                          : PLM_OK;
    }
    if (!tc) return plm_fail(ctx, PLM_ENOMEM, "smooth: out of memory");
    st = plm_ssm_bind(ctx, m, o->log_bound, t, tc, in);
    if (!st) st = plm_prog_eval(ctx, o->log_bound, 1, in, &out, NULL, 1);
    if (tc != tcb) free(tc);
    if (!st && isnan(*lb)) st = plm_fail(ctx, PLM_EDOM, "smooth: the bound of the transition density is NaN at t = %ld", t);
    return st;
}

typedef struct bwork {
    double *cdf, *lp, *xa, *xb, *xfull;   /* N, max(n, N), dim*n, dim*n, dim*N */
    size_t *wait;                         /* n */
} bwork;

static plm_status bwork_init(plm_ctx *ctx, bwork *w, size_t N, size_t n, size_t dim)
{
    size_t big = n > N ? n : N;
    w->cdf = malloc(N * sizeof *w->cdf);
    w->lp = malloc(big * sizeof *w->lp);
    w->xa = malloc(dim * n * sizeof *w->xa);
    w->xb = malloc(dim * n * sizeof *w->xb);
    w->xfull = malloc(dim * N * sizeof *w->xfull);
    w->wait = malloc(n * sizeof *w->wait);
    if (!w->cdf || !w->lp || !w->xa || !w->xb || !w->xfull || !w->wait)
        return plm_fail(ctx, PLM_ENOMEM, "smooth: out of memory");
    return PLM_OK;
}

static void bwork_free(bwork *w)
{
    free(w->cdf);
    free(w->lp);
    free(w->xa);
    free(w->xb);
    free(w->xfull);
    free(w->wait);
}

/* n backward draws at time t >= 2: request r has the state tgt[k*n + r] at t and its stream rng[r]; idx[r]
** receives its index at t - 1. */
static plm_status backward(plm_ctx *ctx, const plm_ssm *m, const plm_pf_result *h, const plm_smooth_opts *o,
                           long t, size_t n, const double *tgt, plm_rng *rng, uint32_t *idx, bwork *w,
                           plm_smooth_stats *stats)
{
    const size_t N = h->N, dim = (size_t)h->dim;
    const double *lw = h->logw + (size_t)(t - 2) * N, *xp = h->xs + (size_t)(t - 2) * dim * N;
    size_t i, k, r, nw = n;
    double acc = 0, lb = 0;
    plm_status st;
    int round;
    for (i = 0; i < N; i++) w->cdf[i] = (acc += exp(lw[i]));
    for (r = 0; r < n; r++) w->wait[r] = r;
    if (o->rejection) {
        if ((st = log_bound_at(ctx, m, o, t, &lb))) return st;
        for (round = 0; round < o->max_tries && nw > 0; round++) {
            size_t keep = 0;
            for (k = 0; k < dim; k++)
                for (r = 0; r < nw; r++) {
                    size_t q = w->wait[r];
                    if (k == 0) idx[q] = (uint32_t)search(w->cdf, N, plm_rng_uniform(&rng[q]) * acc);
                    w->xa[k * nw + r] = xp[k * N + idx[q]];
                    w->xb[k * nw + r] = tgt[k * n + q];
                }
            if ((st = plm_ssm_trans_logpdf(ctx, m, t, nw, w->xa, w->xb, nw, w->lp, threads_for(nw, o->nthreads)))) return st;
            stats->proposals += (double)nw;
            for (r = 0; r < nw; r++) {
                size_t q = w->wait[r];
                if (w->lp[r] > lb + 1e-9 * fmax(1, fabs(lb)))
                    return plm_fail(ctx, PLM_EINVAL, "smooth: the transition density at t = %ld is %g on the log "
                                    "scale, above the bound %g: the bound is wrong", t, w->lp[r], lb);
                if (log(plm_rng_uniform(&rng[q])) < w->lp[r] - lb)
                    stats->accepted += 1;
                else
                    w->wait[keep++] = q;
            }
            nw = keep;
        }
    }
    /* the exact kernel for every request still waiting */
    for (r = 0; r < nw; r++) {
        size_t q = w->wait[r];
        double mx = -INFINITY, s = 0, u;
        if ((r & 63) == 0 && plm_interrupted()) return plm_fail(ctx, PLM_EINTR, "smooth: interrupted at t = %ld", t);
        for (k = 0; k < dim; k++) {
            double v = tgt[k * n + q];
            for (i = 0; i < N; i++) w->xfull[k * N + i] = v;
        }
        if ((st = plm_ssm_trans_logpdf(ctx, m, t, N, xp, w->xfull, N, w->lp, threads_for(N, o->nthreads)))) return st;
        for (i = 0; i < N; i++) {
            w->lp[i] += lw[i];
            if (w->lp[i] > mx) mx = w->lp[i];
        }
        if (!(mx > -INFINITY))
            return plm_fail(ctx, PLM_EDOM, "smooth: a state at t = %ld has no possible parent at t = %ld (every "
                            "backward weight is %g)", t, t - 1, mx);
        for (i = 0; i < N; i++) s += (w->lp[i] = exp(w->lp[i] - mx));
        u = plm_rng_uniform(&rng[q]) * s;
        for (acc = 0, i = 0; i < N - 1; i++)
            if ((acc += w->lp[i]) > u) break;
        idx[q] = (uint32_t)i;
        stats->exact += 1;
    }
    return PLM_OK;
}

static plm_status check_history(plm_ctx *ctx, const plm_pf_result *h)
{
    if (!h->xs || !h->logw || !h->anc) return plm_fail(ctx, PLM_EINVAL, "smooth: the filter kept no history");
    return PLM_OK;
}

plm_status plm_ffbs(plm_ctx *ctx, const plm_ssm *m, const plm_pf_result *h, const plm_smooth_opts *o, double *paths,
                    double *means, double *vars, plm_smooth_stats *stats)
{
    const size_t N = h->N, M = o->M, dim = (size_t)h->dim;
    const long T = h->T;
    plm_rng *rng = NULL;
    uint32_t *idx = NULL;
    bwork w;
    plm_status st;
    size_t j, k, i;
    long t;
    memset(stats, 0, sizeof *stats);
    memset(&w, 0, sizeof w);
    if ((st = check_history(ctx, h))) return st;
    if (M < 1) return plm_fail(ctx, PLM_EINVAL, "smooth: trajectories must be >= 1 (got %zu)", M);
    rng = malloc(M * sizeof *rng);
    idx = malloc(M * sizeof *idx);
    if (!rng || !idx || (st = bwork_init(ctx, &w, N, M, dim))) {
        st = plm_fail(ctx, PLM_ENOMEM, "smooth: out of memory");
        goto done;
    }
    for (j = 0; j < M; j++) plm_rng_init(&rng[j], o->seed, ((uint64_t)1 << 40) + j);
    {   /* the last time: indices from W_T */
        const double *lw = h->logw + (size_t)(T - 1) * N, *x = h->xs + (size_t)(T - 1) * dim * N;
        double acc = 0;
        for (i = 0; i < N; i++) w.cdf[i] = (acc += exp(lw[i]));
        for (j = 0; j < M; j++) idx[j] = (uint32_t)search(w.cdf, N, plm_rng_uniform(&rng[j]) * acc);
        for (k = 0; k < dim; k++)
            for (j = 0; j < M; j++) paths[((size_t)(T - 1) * dim + k) * M + j] = x[k * N + idx[j]];
    }
    for (t = T; t >= 2; t--) {
        const double *x = h->xs + (size_t)(t - 2) * dim * N;
        if (plm_interrupted()) {
            st = plm_fail(ctx, PLM_EINTR, "smooth: interrupted at t = %ld", t);
            goto done;
        }
        if ((st = backward(ctx, m, h, o, t, M, paths + (size_t)(t - 1) * dim * M, rng, idx, &w, stats))) goto done;
        for (k = 0; k < dim; k++)
            for (j = 0; j < M; j++) paths[((size_t)(t - 2) * dim + k) * M + j] = x[k * N + idx[j]];
    }
    if (means || vars)
        for (t = 1; t <= T; t++)
            for (k = 0; k < dim; k++) {
                const double *p = paths + ((size_t)(t - 1) * dim + k) * M;
                double mu = 0, v = 0;
                for (j = 0; j < M; j++) mu += p[j];
                mu /= (double)M;
                for (j = 0; j < M; j++) v += (p[j] - mu) * (p[j] - mu);
                if (means) means[(size_t)(t - 1) * dim + k] = mu;
                if (vars) vars[(size_t)(t - 1) * dim + k] = M > 1 ? v / (double)(M - 1) : 0;
            }
done:
    free(rng);
    free(idx);
    bwork_free(&w);
    return st;
}

/* hv[o*n + r] = h_o(t, X = xa[.. r], Z = xb[.. r]) for r < n (both component-major with ld n) */
static plm_status eval_h(plm_ctx *ctx, const plm_ssm *m, const plm_prog *p, long t, size_t n, const double *xa,
                         const double *xb, double **out, int nthreads)
{
    plm_prog_in in[PLM_NGROUPS];
    double tcb[64], *tc = m->ncov < 63 ? tcb : malloc(((size_t)m->ncov + 1) * sizeof *tc);
    plm_status st;
    if (!tc) return plm_fail(ctx, PLM_ENOMEM, "smooth: out of memory");
    st = plm_ssm_bind(ctx, m, p, t, tc, in);
    if (!st) {
        in[PLM_GRP_X].p = xa;
        in[PLM_GRP_X].ld = n;
        in[PLM_GRP_Z].p = xb;
        in[PLM_GRP_Z].ld = n;
        st = plm_prog_eval(ctx, p, n, in, out, NULL, nthreads);
    }
    if (tc != tcb) free(tc);
    return st;
}

plm_status plm_paris(plm_ctx *ctx, const plm_ssm *m, const plm_pf_result *h, const plm_prog *hprog,
                     const plm_smooth_opts *o, double *out, plm_smooth_stats *stats)
{
    const size_t N = h->N, dim = (size_t)h->dim, Nt = (size_t)(o->Ntilde > 0 ? o->Ntilde : 0), NN = N * Nt;
    const int K = plm_prog_nout(hprog);
    const long T = h->T;
    double *tau = NULL, *tau2 = NULL, *hv = NULL, *tgt = NULL, *xa = NULL, **ho = NULL;
    plm_rng *rng = NULL;
    uint32_t *idx = NULL;
    bwork w;
    plm_status st;
    size_t i, k, r, q;
    long t;
    int j;
    memset(stats, 0, sizeof *stats);
    memset(&w, 0, sizeof w);
    if ((st = check_history(ctx, h))) return st;
    if (Nt < 1) return plm_fail(ctx, PLM_EINVAL, "smooth: backward draws (Ntilde) must be >= 1 (got %d)", o->Ntilde);
    tau = malloc((size_t)K * N * sizeof *tau);
    tau2 = malloc((size_t)K * N * sizeof *tau2);
    hv = malloc((size_t)K * NN * sizeof *hv);
    tgt = malloc(dim * NN * sizeof *tgt);
    xa = malloc(dim * NN * sizeof *xa);
    ho = malloc((size_t)K * sizeof *ho);
    rng = malloc(NN * sizeof *rng);
    idx = malloc(NN * sizeof *idx);
    if (!tau || !tau2 || !hv || !tgt || !xa || !ho || !rng || !idx || (st = bwork_init(ctx, &w, N, NN, dim))) {
        st = plm_fail(ctx, PLM_ENOMEM, "smooth: out of memory");
        goto done;
    }
    for (r = 0; r < NN; r++) plm_rng_init(&rng[r], o->seed, ((uint64_t)1 << 41) + r);
    /* t = 1: tau = h_1(x_1, x_1) */
    for (j = 0; j < K; j++) ho[j] = tau + (size_t)j * N;
    if ((st = eval_h(ctx, m, hprog, 1, N, h->xs, h->xs, ho, threads_for(N, o->nthreads)))) goto done;
    for (j = 0; j < K; j++) ho[j] = hv + (size_t)j * NN;
    for (t = 2; t <= T; t++) {
        const double *x = h->xs + (size_t)(t - 1) * dim * N, *xp = h->xs + (size_t)(t - 2) * dim * N;
        if (plm_interrupted()) {
            st = plm_fail(ctx, PLM_EINTR, "smooth: interrupted at t = %ld", t);
            goto done;
        }
        /* request r = i * Nt + q asks for a parent of particle i */
        for (k = 0; k < dim; k++)
            for (i = 0; i < N; i++)
                for (q = 0; q < Nt; q++) tgt[k * NN + i * Nt + q] = x[k * N + i];
        if ((st = backward(ctx, m, h, o, t, NN, tgt, rng, idx, &w, stats))) goto done;
        for (k = 0; k < dim; k++)
            for (r = 0; r < NN; r++) xa[k * NN + r] = xp[k * N + idx[r]];
        if ((st = eval_h(ctx, m, hprog, t, NN, xa, tgt, ho, threads_for(NN, o->nthreads)))) goto done;
        for (j = 0; j < K; j++) {
            const double *tj = tau + (size_t)j * N, *hj = hv + (size_t)j * NN;
            double *nj = tau2 + (size_t)j * N;
            for (i = 0; i < N; i++) {
                double s = 0;
                for (q = 0; q < Nt; q++) s += tj[idx[i * Nt + q]] + hj[i * Nt + q];
                nj[i] = s / (double)Nt;
            }
        }
        {
            double *sw = tau;
            tau = tau2;
            tau2 = sw;
        }
    }
    {
        const double *lw = h->logw + (size_t)(T - 1) * N;
        for (j = 0; j < K; j++) {
            double s = 0;
            for (i = 0; i < N; i++) s += exp(lw[i]) * tau[(size_t)j * N + i];
            out[j] = s;
        }
    }
done:
    free(tau);
    free(tau2);
    free(hv);
    free(tgt);
    free(xa);
    free(ho);
    free(rng);
    free(idx);
    bwork_free(&w);
    return st;
}
