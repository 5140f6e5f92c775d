/* diag.c -- summaries and convergence diagnostics. R-hat and ESS follow Vehtari et al. (2021):
** rank-normalised split chains for the bulk, indicator chains at the 5% and 95% quantiles for the tails,
** autocorrelations combined across chains and truncated by Geyer's initial monotone sequence. */
#include "diag.h"

#include <gsl/gsl_cdf.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

double plm_logsumexp(const double *x, size_t n)
{
    double m = -INFINITY, s = 0;
    size_t i;
    for (i = 0; i < n; i++)
        if (x[i] > m) m = x[i];
    if (m == -INFINITY || isnan(m)) return m;
    if (m == INFINITY) return INFINITY;
    for (i = 0; i < n; i++) s += exp(x[i] - m);
    return m + log(s);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* type-7 quantile of sorted values */
static double quantile_sorted(const double *s, size_t n, double q)
{
    double h, f;
    size_t lo;
    if (n == 0) return NAN;
    h = (double)(n - 1) * q;
    lo = (size_t)floor(h);
    if (lo + 1 >= n) return s[n - 1];
    f = h - (double)lo;
    return s[lo] + f * (s[lo + 1] - s[lo]);
}

double plm_diag_quantile(const double *x, size_t n, double q)
{
    double *s, r;
    if (n == 0) return NAN;
    if (!(s = malloc(n * sizeof *s))) return NAN;
    memcpy(s, x, n * sizeof *s);
    qsort(s, n, sizeof *s, cmp_double);
    r = quantile_sorted(s, n, q);
    free(s);
    return r;
}

/* ---- chains: m chains of n draws each, chain-major ---- */

/* Split each of nc chains of n into two halves (the middle draw of an odd n is dropped): 2*nc chains of
** n/2, written to out. Splitting lets R-hat see a trend within a chain. */
static void split_chains(const double *x, int nc, size_t n, double *out)
{
    size_t h = n / 2;
    int c;
    for (c = 0; c < nc; c++) {
        memcpy(out + (size_t)(2 * c) * h, x + (size_t)c * n, h * sizeof *x);
        memcpy(out + (size_t)(2 * c + 1) * h, x + (size_t)c * n + (n - h), h * sizeof *x);
    }
}

typedef struct rank_item {
    double v;
    size_t i;
} rank_item;

static int cmp_rank(const void *a, const void *b)
{
    const rank_item *x = a, *y = b;
    return (x->v > y->v) - (x->v < y->v);
}

/* z = Phi^-1((r - 3/8) / (S + 1/4)) with average ranks for ties (Blom's normal scores). */
static int rank_normalise(const double *x, size_t S, double *z)
{
    rank_item *it = malloc(S * sizeof *it);
    size_t i, j;
    if (!it) return -1;
    for (i = 0; i < S; i++) {
        it[i].v = x[i];
        it[i].i = i;
    }
    qsort(it, S, sizeof *it, cmp_rank);
    for (i = 0; i < S; i = j) {
        double r;
        for (j = i + 1; j < S && it[j].v == it[i].v; j++)
            ;
        r = 0.5 * (double)(i + 1 + j);   /* average of ranks i+1 .. j */
        for (size_t k = i; k < j; k++) z[it[k].i] = gsl_cdf_ugaussian_Pinv((r - 0.375) / ((double)S + 0.25));
    }
    free(it);
    return 0;
}

static double rhat_basic(const double *x, int m, size_t n)
{
    double mean_all = 0, B = 0, W = 0;
    int c;
    if (m < 2 || n < 2) return NAN;
    for (c = 0; c < m; c++) {
        const double *y = x + (size_t)c * n;
        double mu = 0, v = 0;
        size_t i;
        for (i = 0; i < n; i++) mu += y[i];
        mu /= (double)n;
        for (i = 0; i < n; i++) v += (y[i] - mu) * (y[i] - mu);
        W += v / (double)(n - 1);
        mean_all += mu;
        B += mu * mu;
    }
    W /= m;
    mean_all /= m;
    B = (B / m - mean_all * mean_all) * m / (m - 1);   /* variance of chain means */
    if (!(W > 0)) return W == 0 && B == 0 ? 1.0 : NAN;
    return sqrt(((double)(n - 1) / (double)n * W + B) / W);
}

/* Autocovariance at lag t of one chain (biased: divided by n), about the chain mean. */
static double autocov(const double *y, size_t n, double mu, size_t t)
{
    double s = 0;
    size_t i;
    for (i = 0; i + t < n; i++) s += (y[i] - mu) * (y[i + t] - mu);
    return s / (double)n;
}

/* Autocorrelation at lag t combined over m chains: 1 - (W - mean autocovariance) / var+. */
static double combined_rho(const double *x, int m, size_t n, const double *mu, double mean_var, double var_plus,
                           size_t t)
{
    double a = 0;
    int c;
    for (c = 0; c < m; c++) a += autocov(x + (size_t)c * n, n, mu[c], t);
    return 1 - (mean_var - a / m) / var_plus;
}

/* Effective sample size of m chains of n (Geyer's initial monotone sequence over the combined
** autocorrelations; the form used by Stan and the posterior package). */
static double ess_chains(const double *x, int m, size_t n)
{
    double *mu, *rho, mean_var = 0, var_plus, cm = 0, cm2 = 0, tau, ess;
    size_t t, max_t;
    int c;
    if (n < 4 || m < 1) return NAN;
    mu = malloc((size_t)m * sizeof *mu);
    rho = calloc(n + 1, sizeof *rho);
    if (!mu || !rho) {
        free(mu);
        free(rho);
        return NAN;
    }
    for (c = 0; c < m; c++) {
        const double *y = x + (size_t)c * n;
        double s = 0;
        size_t i;
        for (i = 0; i < n; i++) s += y[i];
        mu[c] = s / (double)n;
        mean_var += autocov(y, n, mu[c], 0);
        cm += mu[c];
        cm2 += mu[c] * mu[c];
    }
    mean_var = mean_var / m * (double)n / (double)(n - 1);
    var_plus = mean_var * (double)(n - 1) / (double)n;
    if (m > 1) var_plus += (cm2 - cm * cm / m) / (m - 1);
    if (!(var_plus > 0)) {   /* constant draws: no information about mixing */
        free(mu);
        free(rho);
        return NAN;
    }
    {
        double even = 1, odd = combined_rho(x, m, n, mu, mean_var, var_plus, 1);
        rho[0] = even;
        rho[1] = odd;
        t = 0;
        while (t + 5 < n && even + odd > 0) {
            t += 2;
            even = combined_rho(x, m, n, mu, mean_var, var_plus, t);
            odd = combined_rho(x, m, n, mu, mean_var, var_plus, t + 1);
            if (even + odd >= 0) {
                rho[t] = even;
                rho[t + 1] = odd;
            }
        }
        max_t = t;
        if (even > 0) rho[max_t] = even;
    }
    /* monotone: pair sums may not increase */
    for (t = 2; max_t >= 4 && t <= max_t - 2; t += 2) {
        if (rho[t] + rho[t + 1] > rho[t - 2] + rho[t - 1]) {
            rho[t] = 0.5 * (rho[t - 2] + rho[t - 1]);
            rho[t + 1] = rho[t];
        }
    }
    tau = -1;
    for (t = 0; t < max_t; t++) tau += 2 * rho[t];
    tau += rho[max_t];
    ess = (double)m * (double)n;
    if (tau < 1 / log10(ess)) tau = 1 / log10(ess);
    free(mu);
    free(rho);
    return ess / tau;
}

double plm_diag_rhat(const double *x, int nc, size_t n)
{
    size_t S = (size_t)nc * n, h = n / 2, i;
    double *z, *f, *sp, med, r1, r2;
    if (h < 2 || nc < 1) return NAN;
    z = malloc(S * sizeof *z);
    f = malloc(S * sizeof *f);
    sp = malloc(S * sizeof *sp);
    if (!z || !f || !sp) {
        free(z), free(f), free(sp);
        return NAN;
    }
    /* bulk: rank-normalised split chains */
    rank_normalise(x, S, z);
    split_chains(z, nc, n, sp);
    r1 = rhat_basic(sp, 2 * nc, h);
    /* tails: the same on |x - median| */
    med = plm_diag_quantile(x, S, 0.5);
    for (i = 0; i < S; i++) f[i] = fabs(x[i] - med);
    rank_normalise(f, S, z);
    split_chains(z, nc, n, sp);
    r2 = rhat_basic(sp, 2 * nc, h);
    free(z), free(f), free(sp);
    return r1 > r2 ? r1 : r2;
}

double plm_diag_ess_bulk(const double *x, int nc, size_t n)
{
    size_t S = (size_t)nc * n;
    double *z = malloc(S * sizeof *z), *sp = malloc(S * sizeof *sp), e;
    if (!z || !sp || n < 8) {
        free(z), free(sp);
        return NAN;
    }
    rank_normalise(x, S, z);
    split_chains(z, nc, n, sp);
    e = ess_chains(sp, 2 * nc, n / 2);
    free(z), free(sp);
    return e;
}

static double ess_indicator(const double *x, int nc, size_t n, double q)
{
    size_t S = (size_t)nc * n, i;
    double *ind = malloc(S * sizeof *ind), *sp = malloc(S * sizeof *sp), e;
    if (!ind || !sp) {
        free(ind), free(sp);
        return NAN;
    }
    for (i = 0; i < S; i++) ind[i] = x[i] <= q;
    split_chains(ind, nc, n, sp);
    e = ess_chains(sp, 2 * nc, n / 2);
    free(ind), free(sp);
    return e;
}

double plm_diag_ess_tail(const double *x, int nc, size_t n)
{
    size_t S = (size_t)nc * n;
    double e5, e95;
    if (n < 8) return NAN;
    e5 = ess_indicator(x, nc, n, plm_diag_quantile(x, S, 0.05));
    e95 = ess_indicator(x, nc, n, plm_diag_quantile(x, S, 0.95));
    return e5 < e95 ? e5 : e95;
}

double plm_diag_ess_basic(const double *x, int nc, size_t n)
{
    size_t S = (size_t)nc * n;
    double *sp = malloc(S * sizeof *sp), e;
    if (!sp || n < 8) {
        free(sp);
        return NAN;
    }
    split_chains(x, nc, n, sp);
    e = ess_chains(sp, 2 * nc, n / 2);
    free(sp);
    return e;
}

plm_status plm_diag_summary(plm_ctx *ctx, const double *x, int nchains, size_t n, plm_summary *out)
{
    size_t len = (size_t)-1, S, i, k;
    double *y, *s, mean = 0, var = 0;
    int c;
    /* the finite draws of each chain, truncated to the shortest so chains line up */
    for (c = 0; c < nchains; c++) {
        size_t m = 0;
        for (i = 0; i < n; i++) m += !isnan(x[(size_t)c * n + i]);
        if (m < len) len = m;
    }
    if (nchains < 1 || len == 0 || len == (size_t)-1)
        return plm_fail(ctx, PLM_EINVAL, "summary: no draws to summarise");
    S = (size_t)nchains * len;
    if (!(y = malloc(S * sizeof *y)) || !(s = malloc(S * sizeof *s))) {
        free(y);
        return plm_fail(ctx, PLM_ENOMEM, "summary: out of memory");
    }
    for (c = 0, k = 0; c < nchains; c++) {
        size_t m = 0;
        for (i = 0; i < n && m < len; i++)
            if (!isnan(x[(size_t)c * n + i])) y[k++] = x[(size_t)c * n + i], m++;
    }
    for (i = 0; i < S; i++) mean += y[i];
    mean /= (double)S;
    for (i = 0; i < S; i++) var += (y[i] - mean) * (y[i] - mean);
    var = S > 1 ? var / (double)(S - 1) : 0;
    memcpy(s, y, S * sizeof *s);
    qsort(s, S, sizeof *s, cmp_double);
    out->n = S;
    out->mean = mean;
    out->sd = sqrt(var);
    out->q5 = quantile_sorted(s, S, 0.05);
    out->q50 = quantile_sorted(s, S, 0.5);
    out->q95 = quantile_sorted(s, S, 0.95);
    if (s[0] == s[S - 1] || isinf(s[0]) || isinf(s[S - 1])) {
        /* A constant has no variance and infinite draws no finite moments: R-hat and the ESS are undefined
        ** there (rank normalisation would report a constant's R-hat as exactly 1). */
        out->ess_bulk = out->ess_tail = out->rhat = NAN;
        out->mcse_mean = s[0] == s[S - 1] && isfinite(s[0]) ? 0 : NAN;
    } else {
        double e = plm_diag_ess_basic(y, nchains, len);
        out->ess_bulk = plm_diag_ess_bulk(y, nchains, len);
        out->ess_tail = plm_diag_ess_tail(y, nchains, len);
        out->rhat = plm_diag_rhat(y, nchains, len);
        out->mcse_mean = e > 0 ? out->sd / sqrt(e) : NAN;
    }
    free(y);
    free(s);
    return PLM_OK;
}

typedef struct wpair {
    double v, w;
} wpair;

static int cmp_wpair(const void *a, const void *b)
{
    const wpair *x = a, *y = b;
    return (x->v > y->v) - (x->v < y->v);
}

/* weighted quantile: the smallest value whose cumulative normalised weight reaches q */
static double wquantile(const wpair *p, size_t n, double q)
{
    double c = 0;
    size_t i;
    for (i = 0; i < n; i++) {
        c += p[i].w;
        if (c >= q) return p[i].v;
    }
    return n ? p[n - 1].v : NAN;
}

plm_status plm_diag_summary_weighted(plm_ctx *ctx, const double *x, const double *lw, size_t n, plm_summary *out)
{
    double mx = -INFINITY, sw = 0, sw2 = 0, mean = 0, var = 0;
    wpair *p;
    size_t i, k = 0;
    for (i = 0; i < n; i++)
        if (!isnan(x[i]) && lw[i] > mx) mx = lw[i];
    if (mx == -INFINITY) return plm_fail(ctx, PLM_EDEAD, "summary: every draw has weight -inf");
    if (!(p = malloc(n * sizeof *p))) return plm_fail(ctx, PLM_ENOMEM, "summary: out of memory");
    for (i = 0; i < n; i++) {
        if (isnan(x[i]) || lw[i] == -INFINITY) continue;
        p[k].v = x[i];
        p[k].w = exp(lw[i] - mx);
        sw += p[k].w;
        k++;
    }
    for (i = 0; i < k; i++) {
        p[i].w /= sw;
        mean += p[i].w * p[i].v;
        sw2 += p[i].w * p[i].w;
    }
    for (i = 0; i < k; i++) var += p[i].w * (p[i].v - mean) * (p[i].v - mean);
    qsort(p, k, sizeof *p, cmp_wpair);
    out->n = k;
    out->mean = mean;
    out->sd = sqrt(var);
    out->q5 = wquantile(p, k, 0.05);
    out->q50 = wquantile(p, k, 0.5);
    out->q95 = wquantile(p, k, 0.95);
    out->ess_bulk = out->ess_tail = 1 / sw2;
    out->rhat = NAN;
    out->mcse_mean = out->sd / sqrt(out->ess_bulk);
    free(p);
    return PLM_OK;
}
