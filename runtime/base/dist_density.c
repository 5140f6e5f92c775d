/* dist_density.c -- log densities and log masses of every kind, written in closed form (GSL's pdf functions
** return densities, whose logs underflow in the tails). */
#include "dist_impl.h"

#include <gsl/gsl_errno.h>
#include <gsl/gsl_sf_gamma.h>
#include <math.h>

/* ---- scalar kernels ---- */

/* c * log(x) with 0 * log(0) = 0: densities like x^(a-1) at the edge of their support. */
static double xlogy(double c, double x)
{
    return c == 0 ? 0 : c * log(x);
}

/* The log of x^(c) at a closed end of a support (x = 0): the finite limit when there is one (c = 0 gives 0),
** -inf otherwise. A density that blows up at the edge (c < 0) is -inf there, not +inf: the point is outside
** the open support, and a +inf log density would make any weight or acceptance ratio meaningless. */
static double edge_xlogy(double c, double x)
{
    if (x == 0) return c == 0 ? 0 : -INFINITY;
    return c * log(x);
}

/* Loader's saddle-point pieces ("Fast and accurate computation of binomial probabilities", 2000), as in R's
** dpois_raw and dbinom_raw: the plain lgamma forms lose every digit for counts near 1e15 (lgamma(x + 1) is
** 3e16 there, its rounding error is ~4 in the log). stirlerr(n) = log(n!) - log(sqrt(2 pi n) (n/e)^n). */
static double stirlerr(double n)
{
    const double S0 = 1.0 / 12, S1 = 1.0 / 360, S2 = 1.0 / 1260, S3 = 1.0 / 1680, S4 = 1.0 / 1188;
    double nn = n * n;
    if (n <= 15) return lgamma(n + 1) - (n + 0.5) * log(n) + n - LOG_SQRT_2PI;
    if (n > 500) return (S0 - S1 / nn) / n;
    if (n > 80) return (S0 - (S1 - S2 / nn) / nn) / n;
    if (n > 35) return (S0 - (S1 - (S2 - S3 / nn) / nn) / nn) / n;
    return (S0 - (S1 - (S2 - (S3 - S4 / nn) / nn) / nn) / nn) / n;
}

/* x log(x / np) + np - x without cancellation when x is near np. */
static double bd0(double x, double np)
{
    if (fabs(x - np) < 0.1 * (x + np)) {
        double v = (x - np) / (x + np), s = (x - np) * v, ej = 2 * x * v, s1;
        int j;
        v *= v;
        for (j = 1; j < 1000; j++) {
            ej *= v;
            s1 = s + ej / (2 * j + 1);
            if (s1 == s) break;
            s = s1;
        }
        return s;
    }
    return x * log(x / np) + np - x;
}

/* log P(X = x), X ~ Poisson(lam), x a whole number >= 0 */
static double poisson_lpmf(double x, double lam)
{
    if (lam == 0) return x == 0 ? 0 : -INFINITY;
    if (x == 0) return -lam;
    return -stirlerr(x) - bd0(x, lam) - 0.5 * log(2 * M_PI * x);
}

/* The same for the Poisson sampler's acceptance test (dist_sample.c); poisson_lpmf itself stays static so that
** it is inlined into plm_dist_logpdf1. */
double plm_dist_poisson_lpmf(double x, double lam)
{
    return poisson_lpmf(x, lam);
}

/* log P(X = x), X ~ Binomial(n, p), x a whole number in 0..n */
static double binomial_lpmf(double x, double n, double p)
{
    double q = 1 - p;
    if (p == 0) return x == 0 ? 0 : -INFINITY;
    if (q == 0) return x == n ? 0 : -INFINITY;
    if (x == 0) return n * log1p(-p);
    if (x == n) return n * log(p);
    return stirlerr(n) - stirlerr(x) - stirlerr(n - x) - bd0(x, n * p) - bd0(n - x, n * q)
           - 0.5 * (log(2 * M_PI) + log(x) + log1p(-x / n));
}

/* log B(a, b); GSL's version refuses subnormal arguments (beta(1e-310, 1e-310)), where the lgamma sum is
** accurate because lgamma(a) ~ -log(a) dominates. */
static double lnbeta(double a, double b)
{
    gsl_sf_result r;
    if (gsl_sf_lnbeta_e(a, b, &r) == GSL_SUCCESS && isfinite(r.val)) return r.val;
    return lgamma(a) + lgamma(b) - lgamma(a + b);
}

static double student_t_lpdf(double nu, double z)
{
    return lgamma(0.5 * (nu + 1)) - lgamma(0.5 * nu) - 0.5 * (log(nu) + LOG_PI) - 0.5 * (nu + 1) * log1p(z * z / nu);
}

double plm_dist_logpdf1(plm_dist_kind kind, const double *p, double x)
{
    double z;
    if (isnan(x)) return -INFINITY;
    switch (kind) {
    case PLM_DIST_NORMAL:
        z = (x - p[0]) / p[1];
        return -0.5 * z * z - log(p[1]) - LOG_SQRT_2PI;
    case PLM_DIST_LOGNORMAL:
        if (!(x > 0)) return -INFINITY;
        z = (log(x) - p[0]) / p[1];
        return -0.5 * z * z - log(p[1]) - LOG_SQRT_2PI - log(x);
    case PLM_DIST_STUDENT_T:
        return student_t_lpdf(p[0], (x - p[1]) / p[2]) - log(p[2]);
    case PLM_DIST_CAUCHY:
        z = (x - p[0]) / p[1];
        return -LOG_PI - log(p[1]) - log1p(z * z);
    case PLM_DIST_LAPLACE:
        return -M_LN2 - log(p[1]) - fabs(x - p[0]) / p[1];
    case PLM_DIST_LOGISTIC:
        /* symmetric in z: use |z| so exp never overflows */
        z = fabs(x - p[0]) / p[1];
        return -z - log(p[1]) - 2 * log1p(exp(-z));
    case PLM_DIST_EXPONENTIAL:
        if (!(x >= 0) || isinf(x)) return -INFINITY;
        return log(p[0]) - p[0] * x;
    case PLM_DIST_GAMMA:
        if (!(x >= 0) || isinf(x)) return -INFINITY;
        return p[0] * log(p[1]) - lgamma(p[0]) + edge_xlogy(p[0] - 1, x) - p[1] * x;
    case PLM_DIST_INV_GAMMA:
        if (!(x > 0) || isinf(x)) return -INFINITY;
        return p[0] * log(p[1]) - lgamma(p[0]) - (p[0] + 1) * log(x) - p[1] / x;
    case PLM_DIST_BETA:
        if (!(x >= 0 && x <= 1)) return -INFINITY;
        return edge_xlogy(p[0] - 1, x) + (x == 1 ? edge_xlogy(p[1] - 1, 0) : (p[1] - 1) * log1p(-x))
               - lnbeta(p[0], p[1]);
    case PLM_DIST_UNIFORM:
        if (!(x >= p[0] && x <= p[1])) return -INFINITY;
        return -log(p[1] - p[0]);
    case PLM_DIST_WEIBULL:
        if (!(x >= 0) || isinf(x)) return -INFINITY;
        z = x / p[1];
        return log(p[0]) - log(p[1]) + edge_xlogy(p[0] - 1, z) - pow(z, p[0]);
    case PLM_DIST_BERNOULLI:
        if (x == 1) return log(p[0]);
        if (x == 0) return log1p(-p[0]);
        return -INFINITY;
    case PLM_DIST_BINOMIAL:
        if (!(is_whole(x) && x >= 0 && x <= p[0])) return -INFINITY;
        return binomial_lpmf(x, p[0], p[1]);
    case PLM_DIST_POISSON:
        if (!(is_whole(x) && x >= 0)) return -INFINITY;
        return poisson_lpmf(x, p[0]);
    case PLM_DIST_NEG_BINOMIAL:
        if (!(is_whole(x) && x >= 0)) return -INFINITY;
        return lgamma(x + p[0]) - lgamma(x + 1) - lgamma(p[0]) + p[0] * log(p[1]) - (p[0] + x) * log1p(p[1]);
    case PLM_DIST_GEOMETRIC:
        if (!(is_whole(x) && x >= 0)) return -INFINITY;
        return log(p[0]) + (x == 0 ? 0 : x * log1p(-p[0]));
    case PLM_DIST_HALFNORMAL:
        if (!(x >= 0)) return -INFINITY;
        z = x / p[0];
        return M_LN2 - 0.5 * z * z - log(p[0]) - LOG_SQRT_2PI;
    case PLM_DIST_HALFCAUCHY:
        if (!(x >= 0)) return -INFINITY;
        z = x / p[0];
        return M_LN2 - LOG_PI - log(p[0]) - log1p(z * z);
    case PLM_DIST_HALFSTUDENT_T:
        if (!(x >= 0)) return -INFINITY;
        return M_LN2 + student_t_lpdf(p[0], x / p[1]) - log(p[1]);
    case PLM_DIST_FLAT:
        return isfinite(x) ? 0 : -INFINITY;
    default:
        return -INFINITY;   /* vector-parameterised kinds and truncated go through plm_dist_logpdf */
    }
}

/* ---- any kind ---- */

double plm_dist_logpdf(const plm_dist *d, const double *x)
{
    int i, j, K = d->K;
    double s, lp;
    switch (d->kind) {
    case PLM_DIST_CATEGORICAL:
        if (!(is_whole(x[0]) && x[0] >= 0 && x[0] < K)) return -INFINITY;
        return d->aux[(int)x[0]];
    case PLM_DIST_DIRICHLET:
        s = 0;
        lp = d->c;
        for (i = 0; i < K; i++) {
            if (!(x[i] >= 0 && x[i] <= 1)) return -INFINITY;
            s += x[i];
            lp += edge_xlogy(d->v[i] - 1, x[i]);
        }
        return fabs(s - 1) <= 1e-8 ? lp : -INFINITY;
    case PLM_DIST_MULTINOMIAL:
        s = 0;
        lp = lgamma(d->p[0] + 1);
        for (i = 0; i < K; i++) {
            if (!(is_whole(x[i]) && x[i] >= 0)) return -INFINITY;
            s += x[i];
            lp += xlogy(x[i], d->v[i]) - lgamma(x[i] + 1);
        }
        return s == d->p[0] ? lp : -INFINITY;
    case PLM_DIST_TRUNCATED:
        return plm_dist_truncated_logpdf(d, x[0]);
    case PLM_DIST_MVNORMAL: {
        /* forward substitution L z = x - mu, one row at a time; no allocation */
        double zz = 0, z[64], *zp = K <= 64 ? z : NULL;
        if (!zp) {
            /* large K: solve in place twice over a GC scratch; rare enough to allocate */
            zp = plm_gc_alloc_atomic((size_t)K * sizeof(double));
            if (!zp) return NAN;
        }
        for (i = 0; i < K; i++) {
            double v = x[i] - d->v[i];
            if (isnan(x[i])) return -INFINITY;
            for (j = 0; j < i; j++) v -= d->aux[i * K + j] * zp[j];
            zp[i] = v / d->aux[i * K + i];
            zz += zp[i] * zp[i];
        }
        return d->c - 0.5 * zz;
    }
    default:
        return plm_dist_logpdf1(d->kind, d->p, x[0]);
    }
}
void plm_dist_logpdf_n(const plm_dist *d, size_t n, const double *x, double *out)
{
    size_t i;
    if (d->kind == PLM_DIST_NORMAL) {
        double mu = d->p[0], is = 1 / d->p[1], c = -log(d->p[1]) - LOG_SQRT_2PI;
        for (i = 0; i < n; i++) {
            double z = (x[i] - mu) * is;
            out[i] = isnan(x[i]) ? -INFINITY : c - 0.5 * z * z;
        }
        return;
    }
    for (i = 0; i < n; i++) out[i] = plm_dist_logpdf(d, x + i * (size_t)d->dim);
}

double plm_dist_logpdf_sum(const plm_dist *d, size_t n, const double *x)
{
    size_t i;
    double s = 0;
    for (i = 0; i < n; i++) s += plm_dist_logpdf(d, x + i * (size_t)d->dim);
    return s;
}
