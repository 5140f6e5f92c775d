/* loo.c -- PSIS, PSIS-LOO and WAIC (see loo.h). The steps follow the R package loo (gpdfit, psis_smooth_tail,
** do_psis_i, elpd_loo_pointwise), so that numbers agree with what R and ArviZ users are used to. */
#include "loo.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "diag.h"

void plm_gpd_fit(const double *x, size_t n, double *k, double *sigma)
{
    const double prior = 3;
    size_t M, j, i;
    double xstar, *theta, *ltheta, lmax = -INFINITY, wsum = 0, th = 0, kk = 0;
    *k = *sigma = NAN;
    if (n < 2) return;
    M = 30 + (size_t)floor(sqrt((double)n));
    theta = malloc(2 * M * sizeof *theta);
    if (!theta) return;
    ltheta = theta + M;
    xstar = x[(size_t)floor((double)n / 4 + 0.5) - 1];   /* the first quartile (1-based index in loo) */
    for (j = 0; j < M; j++) {
        double b = -(1 / x[n - 1] + (1 - sqrt((double)M / ((double)j + 0.5))) / prior / xstar), km = 0;
        theta[j] = -b;
        /* profile log-likelihood of theta: n (log(b / km) - km - 1), km = mean log1p(b x), b = -theta */
        for (i = 0; i < n; i++) km += log1p(b * x[i]);
        km /= (double)n;
        ltheta[j] = (double)n * (log(b / km) - km - 1);
        if (ltheta[j] > lmax) lmax = ltheta[j];
    }
    for (j = 0; j < M; j++) wsum += exp(ltheta[j] - lmax);
    for (j = 0; j < M; j++) th += theta[j] * exp(ltheta[j] - lmax) / wsum;
    for (i = 0; i < n; i++) kk += log1p(-th * x[i]);
    kk /= (double)n;
    *sigma = -kk / th;
    *k = ((double)n * kk + 10 * 0.5) / ((double)n + 10);   /* the weakly informative prior on k */
    free(theta);
}

typedef struct ranked {
    double v;
    size_t at;
} ranked;

static int by_value(const void *a, const void *b)
{
    double x = ((const ranked *)a)->v, y = ((const ranked *)b)->v;
    return (x > y) - (x < y);
}

double plm_psis(double *lr, size_t S, double r_eff, plm_status *st)
{
    double mx = -INFINITY, khat = INFINITY;
    size_t M, s;
    *st = PLM_OK;
    for (s = 0; s < S; s++)
        if (lr[s] > mx) mx = lr[s];
    for (s = 0; s < S; s++) lr[s] -= mx;   /* exp() of the ratios stays in range */
    M = (size_t)ceil(fmin(0.2 * (double)S, 3 * sqrt((double)S / r_eff)));
    if (M >= 5 && M < S) {
        ranked *r = malloc(S * sizeof *r);
        double *ex = malloc(M * sizeof *ex);
        if (!r || !ex) {
            free(r), free(ex);
            *st = PLM_ENOMEM;
            return NAN;
        }
        for (s = 0; s < S; s++) r[s].v = lr[s], r[s].at = s;
        qsort(r, S, sizeof *r, by_value);
        if (fabs(r[S - 1].v - r[S - M].v) >= 2.220446e-16 / 100) {
            double cut = r[S - M - 1].v, ecut = exp(cut), k, sigma;
            for (s = 0; s < M; s++) ex[s] = exp(r[S - M + s].v) - ecut;
            plm_gpd_fit(ex, M, &k, &sigma);
            if (isfinite(k) && sigma > 0) {
                /* the tail draws become the GPD's quantiles at (j - 0.5) / M, in the same order */
                for (s = 0; s < M; s++) {
                    double p = ((double)s + 0.5) / (double)M;
                    double q = (fabs(k) < 1e-12 ? -sigma * log1p(-p) : sigma * expm1(-k * log1p(-p)) / k) + ecut;
                    lr[r[S - M + s].at] = log(q);
                }
            }
            khat = isnan(k) ? INFINITY : k;
        }
        free(r), free(ex);
    }
    for (s = 0; s < S; s++) {
        if (lr[s] > 0) lr[s] = 0;   /* truncate at the largest raw ratio */
        lr[s] += mx;
    }
    return khat;
}

/* Relative efficiency of the draws for the mean of exp(ll): loo's relative_eff, with plume's ESS of the mean. */
static double rel_eff(const double *ll, int nchains, size_t n, double *buf)
{
    size_t S = (size_t)nchains * n, s;
    double mx = -INFINITY, e;
    for (s = 0; s < S; s++)
        if (ll[s] > mx) mx = ll[s];
    for (s = 0; s < S; s++) buf[s] = exp(ll[s] - mx);
    e = plm_diag_ess_basic(buf, nchains, n) / (double)S;
    return isfinite(e) && e > 0 ? e : 1;
}

static double sample_var(const double *x, size_t n)
{
    double m = 0, v = 0;
    size_t i;
    for (i = 0; i < n; i++) m += x[i];
    m /= (double)n;
    for (i = 0; i < n; i++) v += (x[i] - m) * (x[i] - m);
    return n > 1 ? v / (double)(n - 1) : 0;
}

/* The sum of x over the N points and its standard error sqrt(N var(x)). */
static void total(const plm_loo_point *pts, size_t N, size_t off, double *sum, double *se)
{
    double *x = malloc((N + 1) * sizeof *x);
    size_t i;
    *sum = 0;
    for (i = 0; i < N; i++) {
        double v = *(const double *)((const char *)&pts[i] + off);
        *sum += v;
        if (x) x[i] = v;
    }
    *se = x ? sqrt((double)N * sample_var(x, N)) : NAN;
    free(x);
}

plm_status plm_loo(plm_ctx *ctx, const double *ll, size_t N, int nchains, size_t n, plm_loo_point *pts,
                   plm_loo_totals *tot)
{
    size_t S = (size_t)nchains * n, i, s;
    double *lw = malloc((2 * S + 1) * sizeof *lw), *tmp = lw + S;
    plm_status st = PLM_OK;
    if (!lw) return plm_fail(ctx, PLM_ENOMEM, "loo: out of memory");
    if (S < 2) {
        free(lw);
        return plm_fail(ctx, PLM_EINVAL, "loo: needs at least 2 draws (got %zu)", S);
    }
    memset(tot, 0, sizeof *tot);
    tot->n = N;
    for (i = 0; i < N && !st; i++) {
        const double *li = ll + i * S;
        plm_loo_point *p = &pts[i];
        for (s = 0; s < S; s++)
            if (isnan(li[s]) || li[s] == INFINITY) {
                st = plm_fail(ctx, PLM_EINVAL, "loo: the log-likelihood of observation %zu is %g under draw %zu", i + 1,
                              li[s], s + 1);
                break;
            }
        if (st) break;
        p->lpd = plm_logsumexp(li, S) - log((double)S);
        p->p_waic = sample_var(li, S);
        p->elpd_waic = p->lpd - p->p_waic;
        p->r_eff = rel_eff(li, nchains, n, tmp);
        for (s = 0; s < S; s++) lw[s] = -li[s];
        p->k = plm_psis(lw, S, p->r_eff, &st);
        if (st) {
            plm_fail(ctx, st, "loo: out of memory");
            break;
        }
        for (s = 0; s < S; s++) tmp[s] = lw[s] + li[s];
        p->elpd_loo = plm_logsumexp(tmp, S) - plm_logsumexp(lw, S);
        p->p_loo = p->lpd - p->elpd_loo;
        if (p->k <= 0.5) tot->k_good++;
        else if (p->k <= 0.7) tot->k_ok++;
        else if (p->k <= 1) tot->k_bad++;
        else tot->k_very_bad++;
        tot->p_waic_large += p->p_waic > 0.4;
    }
    free(lw);
    if (st) return st;
    total(pts, N, offsetof(plm_loo_point, elpd_loo), &tot->elpd_loo, &tot->se_elpd_loo);
    total(pts, N, offsetof(plm_loo_point, p_loo), &tot->p_loo, &tot->se_p_loo);
    total(pts, N, offsetof(plm_loo_point, elpd_waic), &tot->elpd_waic, &tot->se_elpd_waic);
    total(pts, N, offsetof(plm_loo_point, p_waic), &tot->p_waic, &tot->se_p_waic);
    tot->looic = -2 * tot->elpd_loo, tot->se_looic = 2 * tot->se_elpd_loo;
    tot->waic = -2 * tot->elpd_waic, tot->se_waic = 2 * tot->se_elpd_waic;
    return PLM_OK;
}
