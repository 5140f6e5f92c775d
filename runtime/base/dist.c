/* dist.c -- distributions on top of GSL's samplers, with log densities written in closed form (GSL's
** pdf functions return densities, whose logs underflow in the tails). */
#include "dist.h"

#include <gsl/gsl_cdf.h>
#include <gsl/gsl_errno.h>
#include <gsl/gsl_integration.h>
#include <gsl/gsl_linalg.h>
#include <gsl/gsl_randist.h>
#include <gsl/gsl_sf_erf.h>
#include <gsl/gsl_sf_gamma.h>
#include <float.h>
#include <math.h>
#include <string.h>

#define LOG_SQRT_2PI 0.91893853320467274178
#define LOG_PI 1.14472988584940017414

static const plm_dist_info infos[PLM_DIST_NKINDS] = {
    [PLM_DIST_NORMAL] = {"normal", 2, {"mu", "sigma"}, PLM_SUPPORT_REAL, 0},
    [PLM_DIST_LOGNORMAL] = {"lognormal", 2, {"mu", "sigma"}, PLM_SUPPORT_POSITIVE, 0},
    [PLM_DIST_STUDENT_T] = {"student_t", 3, {"nu", "mu", "sigma"}, PLM_SUPPORT_REAL, 0},
    [PLM_DIST_CAUCHY] = {"cauchy", 2, {"mu", "sigma"}, PLM_SUPPORT_REAL, 0},
    [PLM_DIST_LAPLACE] = {"laplace", 2, {"mu", "sigma"}, PLM_SUPPORT_REAL, 0},
    [PLM_DIST_LOGISTIC] = {"logistic", 2, {"mu", "sigma"}, PLM_SUPPORT_REAL, 0},
    [PLM_DIST_EXPONENTIAL] = {"exponential", 1, {"rate"}, PLM_SUPPORT_POSITIVE, 0},
    [PLM_DIST_GAMMA] = {"gamma", 2, {"alpha", "beta"}, PLM_SUPPORT_POSITIVE, 0},
    [PLM_DIST_INV_GAMMA] = {"inverse_gamma", 2, {"alpha", "beta"}, PLM_SUPPORT_POSITIVE, 0},
    [PLM_DIST_BETA] = {"beta", 2, {"alpha", "beta"}, PLM_SUPPORT_UNIT, 0},
    [PLM_DIST_UNIFORM] = {"uniform", 2, {"a", "b"}, PLM_SUPPORT_INTERVAL, 0},
    [PLM_DIST_WEIBULL] = {"weibull", 2, {"alpha", "sigma"}, PLM_SUPPORT_POSITIVE, 0},
    [PLM_DIST_BERNOULLI] = {"bernoulli", 1, {"p"}, PLM_SUPPORT_BINARY, 1},
    [PLM_DIST_BINOMIAL] = {"binomial", 2, {"n", "p"}, PLM_SUPPORT_BOUNDED, 1},
    [PLM_DIST_POISSON] = {"poisson", 1, {"lambda"}, PLM_SUPPORT_COUNT, 1},
    [PLM_DIST_NEG_BINOMIAL] = {"negative_binomial", 2, {"alpha", "beta"}, PLM_SUPPORT_COUNT, 1},
    [PLM_DIST_GEOMETRIC] = {"geometric", 1, {"p"}, PLM_SUPPORT_COUNT, 1},
    [PLM_DIST_CATEGORICAL] = {"categorical", 0, {"probs"}, PLM_SUPPORT_CATEGORY, 1},
    [PLM_DIST_DIRICHLET] = {"dirichlet", 0, {"alpha"}, PLM_SUPPORT_SIMPLEX, 0},
    [PLM_DIST_MULTINOMIAL] = {"multinomial", 0, {"n", "probs"}, PLM_SUPPORT_COUNTS, 1},
    [PLM_DIST_MVNORMAL] = {"mvnormal", 0, {"mu", "Sigma"}, PLM_SUPPORT_REALVEC, 0},
    [PLM_DIST_HALFNORMAL] = {"halfnormal", 1, {"sigma"}, PLM_SUPPORT_POSITIVE, 0},
    [PLM_DIST_HALFCAUCHY] = {"halfcauchy", 1, {"sigma"}, PLM_SUPPORT_POSITIVE, 0},
    [PLM_DIST_HALFSTUDENT_T] = {"halfstudent_t", 2, {"nu", "sigma"}, PLM_SUPPORT_POSITIVE, 0},
    [PLM_DIST_TRUNCATED] = {"truncated", 0, {"d", "lo", "hi"}, PLM_SUPPORT_TRUNCATED, 0},
    [PLM_DIST_FLAT] = {"flat", 0, {NULL}, PLM_SUPPORT_REAL, 0, 1},
};

const plm_dist_info *plm_dist_info_of(plm_dist_kind kind)
{
    return (unsigned)kind < PLM_DIST_NKINDS ? &infos[kind] : NULL;
}

int plm_dist_kind_by_name(const char *name)
{
    int k;
    for (k = 0; k < PLM_DIST_NKINDS; k++)
        if (strcmp(infos[k].name, name) == 0) return k;
    return -1;
}

/* ---- validation ---- */

static plm_status bad(plm_ctx *ctx, plm_dist_kind k, int i, const char *what, double got)
{
    if (isnan(got)) return plm_fail(ctx, PLM_EINVAL, "%s: %s is NaN", infos[k].name, infos[k].params[i]);
    return plm_fail(ctx, PLM_EINVAL, "%s: %s must be %s (got %g)", infos[k].name, infos[k].params[i], what, got);
}

/* The same for entry i (0-based) of a vector parameter: "categorical: probs[2] is NaN". */
static plm_status bad_entry(plm_ctx *ctx, const char *who, const char *vec, int i, const char *what, double got)
{
    if (isnan(got)) return plm_fail(ctx, PLM_EINVAL, "%s: %s[%d] is NaN", who, vec, i + 1);
    return plm_fail(ctx, PLM_EINVAL, "%s: %s[%d] must be %s (got %g)", who, vec, i + 1, what, got);
}

static int is_whole(double x) { return isfinite(x) && x == floor(x); }

plm_status plm_dist_check(plm_ctx *ctx, plm_dist_kind k, const double *p)
{
    int i;
    if (k == PLM_DIST_FLAT) return PLM_OK;
    if (k == PLM_DIST_TRUNCATED)
        return plm_fail(ctx, PLM_EINVAL, "truncated: build it with plm_dist_new_truncated");
    if ((unsigned)k >= PLM_DIST_NKINDS || infos[k].nparams == 0)
        return plm_fail(ctx, PLM_EINVAL, "distribution kind %d takes vector parameters", (int)k);
    for (i = 0; i < infos[k].nparams; i++)
        if (!isfinite(p[i])) return bad(ctx, k, i, "finite", p[i]);
    switch (k) {
    case PLM_DIST_NORMAL: case PLM_DIST_LOGNORMAL: case PLM_DIST_CAUCHY:
    case PLM_DIST_LAPLACE: case PLM_DIST_LOGISTIC: case PLM_DIST_HALFSTUDENT_T:
        if (k == PLM_DIST_HALFSTUDENT_T && !(p[0] > 0)) return bad(ctx, k, 0, "> 0", p[0]);
        if (!(p[1] > 0)) return bad(ctx, k, 1, "> 0", p[1]);
        break;
    case PLM_DIST_HALFNORMAL: case PLM_DIST_HALFCAUCHY:
        if (!(p[0] > 0)) return bad(ctx, k, 0, "> 0", p[0]);
        break;
    case PLM_DIST_STUDENT_T:
        if (!(p[0] > 0)) return bad(ctx, k, 0, "> 0", p[0]);
        if (!(p[2] > 0)) return bad(ctx, k, 2, "> 0", p[2]);
        break;
    case PLM_DIST_EXPONENTIAL:
        if (!(p[0] > 0)) return bad(ctx, k, 0, "> 0", p[0]);
        break;
    case PLM_DIST_GAMMA: case PLM_DIST_INV_GAMMA: case PLM_DIST_BETA: case PLM_DIST_WEIBULL:
    case PLM_DIST_NEG_BINOMIAL:
        if (!(p[0] > 0)) return bad(ctx, k, 0, "> 0", p[0]);
        if (!(p[1] > 0)) return bad(ctx, k, 1, "> 0", p[1]);
        /* the gamma mixing draw stays below alpha + 10 sqrt(alpha) + 40 but for odds under e^-30 */
        if (k == PLM_DIST_NEG_BINOMIAL && (p[0] + 10 * sqrt(p[0]) + 40) / p[1] > PLM_DIST_POISSON_MAX)
            return plm_fail(ctx, PLM_EINVAL,
                            "negative_binomial: alpha / beta is too large (alpha = %g, beta = %g): draws would pass "
                            "2^53, where counts stop being exact; (alpha + 10 sqrt(alpha) + 40) / beta must be <= 1e15",
                            p[0], p[1]);
        break;
    case PLM_DIST_UNIFORM:
        if (!(p[1] > p[0]))
            return plm_fail(ctx, PLM_EINVAL, "uniform: b must be > a (got a = %g, b = %g)", p[0], p[1]);
        break;
    case PLM_DIST_BERNOULLI:
        if (!(p[0] >= 0 && p[0] <= 1)) return bad(ctx, k, 0, "in [0, 1]", p[0]);
        break;
    case PLM_DIST_BINOMIAL:
        if (!(is_whole(p[0]) && p[0] >= 0)) return bad(ctx, k, 0, "a whole number >= 0", p[0]);
        if (p[0] > PLM_DIST_MAX_COUNT) return bad(ctx, k, 0, "<= 2^53 = 9007199254740992 (counts are exact up to it)", p[0]);
        if (!(p[1] >= 0 && p[1] <= 1)) return bad(ctx, k, 1, "in [0, 1]", p[1]);
        break;
    case PLM_DIST_POISSON:
        if (!(p[0] >= 0)) return bad(ctx, k, 0, ">= 0", p[0]);
        if (p[0] > PLM_DIST_POISSON_MAX)
            return bad(ctx, k, 0, "<= 1e15 (draws must stay below 2^53, where counts stop being exact)", p[0]);
        break;
    case PLM_DIST_GEOMETRIC:
        if (!(p[0] > 0 && p[0] <= 1)) return bad(ctx, k, 0, "in (0, 1]", p[0]);
        if (p[0] < 1e-14) return bad(ctx, k, 0, ">= 1e-14 (draws must stay below 2^53, where counts stop being exact)", p[0]);
        break;
    default:
        break;
    }
    return PLM_OK;
}

static plm_dist *alloc_dist(plm_dist_kind kind, int dim, int K)
{
    plm_dist *d = plm_gc_alloc(sizeof *d);
    if (!d) return NULL;
    d->kind = kind;
    d->dim = dim;
    d->K = K;
    d->base = 1;
    return d;
}

plm_status plm_dist_new(plm_ctx *ctx, plm_dist_kind kind, const double *p, plm_dist **out)
{
    plm_status st = plm_dist_check(ctx, kind, p);
    plm_dist *d;
    if (st) return st;
    if (!(d = alloc_dist(kind, 1, 0))) return plm_fail(ctx, PLM_ENOMEM, "out of memory");
    memcpy(d->p, p, (size_t)infos[kind].nparams * sizeof *p);
    *out = d;
    return PLM_OK;
}

static plm_status check_probs(plm_ctx *ctx, const char *who, const double *probs, int K)
{
    double s = 0;
    int i;
    if (K < 1) return plm_fail(ctx, PLM_EINVAL, "%s: probs must have at least one entry", who);
    for (i = 0; i < K; i++) {
        if (!(probs[i] >= 0 && probs[i] <= 1)) return bad_entry(ctx, who, "probs", i, "in [0, 1]", probs[i]);
        s += probs[i];
    }
    if (fabs(s - 1) > 1e-9)
        return plm_fail(ctx, PLM_EINVAL, "%s: probs must sum to 1 (sum is %.17g)", who, s);
    return PLM_OK;
}

plm_status plm_dist_new_categorical(plm_ctx *ctx, const double *probs, int K, plm_dist **out)
{
    plm_status st = check_probs(ctx, "categorical", probs, K);
    plm_dist *d;
    int i;
    if (st) return st;
    if (!(d = alloc_dist(PLM_DIST_CATEGORICAL, 1, K)) || !(d->v = plm_gc_alloc_atomic((size_t)K * sizeof(double)))
        || !(d->aux = plm_gc_alloc_atomic((size_t)K * sizeof(double))))
        return plm_fail(ctx, PLM_ENOMEM, "out of memory");
    for (i = 0; i < K; i++) {
        d->v[i] = probs[i];
        d->aux[i] = log(probs[i]);
    }
    *out = d;
    return PLM_OK;
}

plm_status plm_dist_new_categorical_logits(plm_ctx *ctx, const double *logits, int K, plm_dist **out)
{
    plm_dist *d;
    double m = -INFINITY, s = 0, lse;
    int i;
    if (K < 1) return plm_fail(ctx, PLM_EINVAL, "categorical: logits must have at least one entry");
    for (i = 0; i < K; i++) {
        if (isnan(logits[i]) || logits[i] == INFINITY)
            return bad_entry(ctx, "categorical", "logits", i, "finite or -inf", logits[i]);
        if (logits[i] > m) m = logits[i];
    }
    if (m == -INFINITY) return plm_fail(ctx, PLM_EINVAL, "categorical: every logit is -inf (no category is possible)");
    for (i = 0; i < K; i++) s += exp(logits[i] - m);
    lse = m + log(s);
    if (!(d = alloc_dist(PLM_DIST_CATEGORICAL, 1, K)) || !(d->v = plm_gc_alloc_atomic((size_t)K * sizeof(double)))
        || !(d->aux = plm_gc_alloc_atomic((size_t)K * sizeof(double))))
        return plm_fail(ctx, PLM_ENOMEM, "out of memory");
    for (i = 0; i < K; i++) {
        d->aux[i] = logits[i] - lse;
        d->v[i] = exp(d->aux[i]);
    }
    *out = d;
    return PLM_OK;
}

plm_status plm_dist_new_dirichlet(plm_ctx *ctx, const double *alpha, int K, plm_dist **out)
{
    plm_dist *d;
    double s = 0, c = 0;
    int i;
    if (K < 2) return plm_fail(ctx, PLM_EINVAL, "dirichlet: alpha must have at least 2 entries (got %d)", K);
    for (i = 0; i < K; i++)
        if (!(alpha[i] > 0 && isfinite(alpha[i]))) return bad_entry(ctx, "dirichlet", "alpha", i, "> 0 and finite", alpha[i]);
    if (!(d = alloc_dist(PLM_DIST_DIRICHLET, K, K)) || !(d->v = plm_gc_alloc_atomic((size_t)K * sizeof(double))))
        return plm_fail(ctx, PLM_ENOMEM, "out of memory");
    for (i = 0; i < K; i++) {
        d->v[i] = alpha[i];
        s += alpha[i];
        c -= lgamma(alpha[i]);
    }
    d->c = c + lgamma(s);
    *out = d;
    return PLM_OK;
}

plm_status plm_dist_new_multinomial(plm_ctx *ctx, double n, const double *probs, int K, plm_dist **out)
{
    plm_status st;
    plm_dist *d;
    if (isnan(n)) return plm_fail(ctx, PLM_EINVAL, "multinomial: n is NaN");
    if (!(is_whole(n) && n >= 0 && n <= PLM_DIST_MAX_COUNT))
        return plm_fail(ctx, PLM_EINVAL, "multinomial: n must be a whole number in 0..2^53 (got %g)", n);
    if ((st = check_probs(ctx, "multinomial", probs, K))) return st;
    if (!(d = alloc_dist(PLM_DIST_MULTINOMIAL, K, K)) || !(d->v = plm_gc_alloc_atomic((size_t)K * sizeof(double))))
        return plm_fail(ctx, PLM_ENOMEM, "out of memory");
    memcpy(d->v, probs, (size_t)K * sizeof *probs);
    d->p[0] = n;
    *out = d;
    return PLM_OK;
}

plm_status plm_dist_new_mvnormal(plm_ctx *ctx, const double *mu, const double *Sigma, int K, plm_dist **out)
{
    plm_dist *d;
    gsl_matrix_view Lv;
    int i, j, err;
    double logdet = 0;
    if (K < 1) return plm_fail(ctx, PLM_EINVAL, "mvnormal: mu must have at least one entry");
    for (i = 0; i < K; i++)
        if (!isfinite(mu[i])) return bad_entry(ctx, "mvnormal", "mu", i, "finite", mu[i]);
    for (i = 0; i < K; i++)
        for (j = 0; j < K; j++) {
            double a = Sigma[i * K + j], b = Sigma[j * K + i];
            if (isnan(a)) return plm_fail(ctx, PLM_EINVAL, "mvnormal: Sigma[%d][%d] is NaN", i + 1, j + 1);
            if (!isfinite(a))
                return plm_fail(ctx, PLM_EINVAL, "mvnormal: Sigma[%d][%d] must be finite (got %g)", i + 1, j + 1, a);
            if (fabs(a - b) > 1e-9 * (fabs(a) + fabs(b) + 1e-300))
                return plm_fail(ctx, PLM_EINVAL, "mvnormal: Sigma must be symmetric (Sigma[%d][%d] = %g, Sigma[%d][%d] = %g)",
                                i + 1, j + 1, a, j + 1, i + 1, b);
        }
    if (!(d = alloc_dist(PLM_DIST_MVNORMAL, K, K)) || !(d->v = plm_gc_alloc_atomic((size_t)K * sizeof(double)))
        || !(d->aux = plm_gc_alloc_atomic((size_t)K * K * sizeof(double))))
        return plm_fail(ctx, PLM_ENOMEM, "out of memory");
    memcpy(d->v, mu, (size_t)K * sizeof *mu);
    memcpy(d->aux, Sigma, (size_t)K * K * sizeof *Sigma);
    Lv = gsl_matrix_view_array(d->aux, (size_t)K, (size_t)K);
    {
        gsl_error_handler_t *old = gsl_set_error_handler_off();
        err = gsl_linalg_cholesky_decomp1(&Lv.matrix);
        gsl_set_error_handler(old);
    }
    if (err) return plm_fail(ctx, PLM_EINVAL, "mvnormal: Sigma is not positive definite");
    for (i = 0; i < K; i++) {
        for (j = i + 1; j < K; j++) d->aux[i * K + j] = 0;   /* keep only the lower factor */
        logdet += log(d->aux[i * K + i]);
    }
    d->c = -K * LOG_SQRT_2PI - logdet;
    *out = d;
    return PLM_OK;
}

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

/* Marsaglia and Tsang's gamma sampler (2000), as GSL writes it (same draws from the same stream), in logs.
** The log of the draw is y - exp(lmag): y = log(d v) from the Marsaglia-Tsang step (for alpha < 1 on alpha + 1),
** and for alpha < 1 the boost U^(1/alpha) as log U / alpha = -exp(lmag), lmag = log(-log U) - log(alpha)
** (lmag = -inf for alpha >= 1). Kept apart because log U / alpha itself overflows for alpha < 1e-308; beta and
** dirichlet compare lmags when it does. A NaN alpha gives NaN instead of looping. */
static void log_gamma_parts(double alpha, plm_rng *r, double *y, double *lmag)
{
    gsl_rng *g = &r->gsl;
    double x, v, u, d, c;
    *lmag = -INFINITY;
    if (!(alpha > 0)) {
        *y = NAN;
        return;
    }
    if (alpha < 1) {
        u = gsl_rng_uniform_pos(g);
        log_gamma_parts(1 + alpha, r, y, &x);
        *lmag = log(-log(u)) - log(alpha);
        return;
    }
    d = alpha - 1.0 / 3.0;
    c = (1.0 / 3.0) / sqrt(d);
    for (;;) {
        do {
            x = plm_rng_normal(r);
            v = 1.0 + c * x;
        } while (v <= 0);
        v = v * v * v;
        u = gsl_rng_uniform_pos(g);
        if (u < 1 - 0.0331 * x * x * x * x) break;
        if (log(u) < 0.5 * x * x + d * (1 - v + log(v))) break;
    }
    *y = log(d) + log(v);
}

double plm_dist_log_gamma(double alpha, plm_rng *r)
{
    double y, lmag;
    log_gamma_parts(alpha, r, &y, &lmag);
    return y - exp(lmag);
}

/* exp(l) kept inside (0, inf): a value beyond the doubles becomes the nearest representable one. */
static double exp_inside(double l)
{
    double x = exp(l);
    if (x == 0) return DBL_TRUE_MIN;
    if (x == INFINITY) return DBL_MAX;
    return x;
}

/* Gamma(alpha, rate) draw, > 0 whatever alpha. For alpha >= 1 the product of GSL's form (no logs). */
static double gamma_draw(double alpha, double rate, plm_rng *r)
{
    return exp_inside(plm_dist_log_gamma(alpha, r) - log(rate));
}

/* Beta(a, b) = G1 / (G1 + G2) = 1 / (1 + exp(lg2 - lg1)) from log-gammas, so that tiny shapes, whose gamma
** draws underflow, still give a value; it is kept inside the open (0, 1). */
static double beta_draw(double a, double b, plm_rng *r)
{
    double yb, mb, ya, ma, t, x;
    log_gamma_parts(b, r, &yb, &mb);
    log_gamma_parts(a, r, &ya, &ma);
    if (isnan(ya) || isnan(yb)) return NAN;
    t = (yb - exp(mb)) - (ya - exp(ma));
    if (isnan(t)) t = ma > mb ? INFINITY : -INFINITY;   /* both logs overflowed: the larger magnitude loses */
    x = t > 0 ? exp(-t) / (1 + exp(-t)) : 1 / (1 + exp(t));
    if (x <= 0) return DBL_TRUE_MIN;
    if (x >= 1) return 1 - DBL_EPSILON / 2;
    return x;
}

/* Hormann's PTRS ("The transformed rejection method for generating Poisson random variables", 1993),
** lambda >= 10, all in doubles: no integer type limits the result. The acceptance test uses the saddle-point
** log pmf, which stays accurate at lambda = 1e15. */
double plm_dist_poisson_ptrs(double lam, plm_rng *r)
{
    double slam = sqrt(lam), b = 0.931 + 2.53 * slam, a = -0.059 + 0.02483 * b;
    double inv_alpha = 1.1239 + 1.1328 / (b - 3.4), vr = 0.9277 - 3.6224 / (b - 2);
    if (!(lam >= 10)) return NAN;
    for (;;) {
        double U = plm_rng_uniform(r) - 0.5, V = plm_rng_uniform(r), us = 0.5 - fabs(U);
        double k = floor((2 * a / us + b) * U + lam + 0.43);
        if (us >= 0.07 && V <= vr) return k;
        if (k < 0 || (us < 0.013 && V > us)) continue;
        if (log(V) + log(inv_alpha) - log(a / (us * us) + b) <= poisson_lpmf(k, lam)) return k;
    }
}

static double poisson_draw(double lam, plm_rng *r)
{
    if (!(lam < 1e6)) return lam >= 1e6 ? plm_dist_poisson_ptrs(lam, r) : NAN;
    return (double)gsl_ran_poisson(&r->gsl, lam);
}

/* Binomial(n, p) for n up to 2^53. GSL's sampler takes n as unsigned int; above 2^31 use the order
** statistic of n uniforms (Knuth, TAOCP 3.4.1): the a-th smallest, X ~ Beta(a, n + 1 - a), splits the trials
** into a binomial on each side of it, halving n per step. */
static double binomial_draw(double n, double p, plm_rng *r)
{
    double k = 0;
    if (!(n >= 0 && p >= 0 && p <= 1)) return NAN;   /* unchecked parameters from compiled code */
    while (n >= 2147483648.0) {
        double a = floor(n / 2) + 1, bb = n + 1 - a, X;
        if (!(p > 0)) return k;
        if (p >= 1) return k + n;
        X = beta_draw(a, bb, r);
        if (X >= p) {
            n = a - 1;
            p = p / X;
        } else {
            k += a;
            n = bb - 1;
            p = (p - X) / (1 - X);
        }
    }
    return k + (double)gsl_ran_binomial(&r->gsl, p, (unsigned)n);
}

double plm_dist_sample1(plm_dist_kind kind, const double *p, plm_rng *r)
{
    gsl_rng *g = &r->gsl;
    switch (kind) {
    case PLM_DIST_NORMAL: return p[0] + p[1] * plm_rng_normal(r);
    case PLM_DIST_LOGNORMAL: return exp_inside(p[0] + p[1] * plm_rng_normal(r));
    case PLM_DIST_STUDENT_T: return p[0] > 0 ? p[1] + p[2] * gsl_ran_tdist(g, p[0]) : NAN;
    case PLM_DIST_CAUCHY: return p[0] + gsl_ran_cauchy(g, p[1]);
    case PLM_DIST_LAPLACE: return p[0] + gsl_ran_laplace(g, p[1]);
    case PLM_DIST_LOGISTIC: return p[0] + gsl_ran_logistic(g, p[1]);
    case PLM_DIST_EXPONENTIAL: return -log(plm_rng_uniform(r)) / p[0];
    case PLM_DIST_GAMMA: return gamma_draw(p[0], p[1], r);
    case PLM_DIST_INV_GAMMA: return exp_inside(log(p[1]) - plm_dist_log_gamma(p[0], r));
    case PLM_DIST_BETA: return beta_draw(p[0], p[1], r);
    case PLM_DIST_UNIFORM: return p[0] + (p[1] - p[0]) * plm_rng_uniform(r);
    case PLM_DIST_WEIBULL:
        /* GSL's sigma (-log U)^(1/alpha), in logs: a small shape underflows or overflows it */
        return exp_inside(log(p[1]) + log(-log(gsl_rng_uniform_pos(g))) / p[0]);
    case PLM_DIST_BERNOULLI: return plm_rng_uniform(r) < p[0] ? 1.0 : 0.0;
    case PLM_DIST_BINOMIAL: return binomial_draw(p[0], p[1], r);
    case PLM_DIST_POISSON: return poisson_draw(p[0], r);
    case PLM_DIST_NEG_BINOMIAL: {
        /* gamma-Poisson mixture, as GSL's sampler but in doubles: lambda ~ Gamma(alpha, rate beta) */
        double lg = plm_dist_log_gamma(p[0], r) - log(p[1]);
        return isnan(lg) ? NAN : poisson_draw(exp(lg), r);
    }
    case PLM_DIST_GEOMETRIC:
        /* inversion: P(floor(log U / log(1 - p)) >= k) = P(U <= (1 - p)^k) = (1 - p)^k */
        if (p[0] == 1) return 0;
        return floor(log(plm_rng_uniform(r)) / log1p(-p[0]));
    case PLM_DIST_HALFNORMAL: return fabs(p[0] * plm_rng_normal(r));
    case PLM_DIST_HALFCAUCHY: return fabs(gsl_ran_cauchy(g, p[0]));
    case PLM_DIST_HALFSTUDENT_T: return p[0] > 0 ? fabs(p[1] * gsl_ran_tdist(g, p[0])) : NAN;
    default: return NAN;   /* flat has no draws; truncated goes through plm_dist_sample */
    }
}

/* ---- truncated ---- */

/* log Phi(z), accurate in both tails (Phi(-40) underflows as a probability, not as a log). */
static double log_ncdf(double z)
{
    if (z < 0) return gsl_sf_log_erfc(-z / M_SQRT2) - M_LN2;
    return log1p(-0.5 * erfc(z / M_SQRT2));
}

/* log P(X <= x) (upper = 0) or log P(X > x) (upper = 1) for a scalar continuous kind. Where a log tail has a
** closed form (normal family, exponential, laplace) it is used, so those kinds can be truncated far in a
** tail; elsewhere the log of GSL's P or Q, whichever is the small one. */
static double log_cdf(const plm_dist *d, double x, int upper)
{
    const double *p = d->p;
    double P, Q, z;
    if (x == -INFINITY) return upper ? 0 : -INFINITY;
    if (x == INFINITY) return upper ? -INFINITY : 0;
    switch (d->kind) {
    case PLM_DIST_NORMAL:
        z = (x - p[0]) / p[1];
        return log_ncdf(upper ? -z : z);
    case PLM_DIST_LOGNORMAL:
        if (x <= 0) return upper ? 0 : -INFINITY;
        z = (log(x) - p[0]) / p[1];
        return log_ncdf(upper ? -z : z);
    case PLM_DIST_HALFNORMAL:
        if (x <= 0) return upper ? 0 : -INFINITY;
        z = x / p[0];
        if (upper) return M_LN2 + log_ncdf(-z);
        return z < 1 ? log(erf(z / M_SQRT2)) : log1p(-erfc(z / M_SQRT2));
    case PLM_DIST_EXPONENTIAL:
        if (x <= 0) return upper ? 0 : -INFINITY;
        return upper ? -p[0] * x : log(-expm1(-p[0] * x));
    case PLM_DIST_LAPLACE:
        z = (x - p[0]) / p[1];
        if (z >= 0) return upper ? -M_LN2 - z : log1p(-0.5 * exp(-z));
        return upper ? log1p(-0.5 * exp(z)) : -M_LN2 + z;
    case PLM_DIST_STUDENT_T:
        z = (x - p[1]) / p[2];
        P = gsl_cdf_tdist_P(z, p[0]), Q = gsl_cdf_tdist_Q(z, p[0]);
        break;
    case PLM_DIST_CAUCHY: P = gsl_cdf_cauchy_P(x - p[0], p[1]), Q = gsl_cdf_cauchy_Q(x - p[0], p[1]); break;
    case PLM_DIST_LOGISTIC: P = gsl_cdf_logistic_P(x - p[0], p[1]), Q = gsl_cdf_logistic_Q(x - p[0], p[1]); break;
    case PLM_DIST_GAMMA:
        if (x <= 0) return upper ? 0 : -INFINITY;
        P = gsl_cdf_gamma_P(x, p[0], 1 / p[1]), Q = gsl_cdf_gamma_Q(x, p[0], 1 / p[1]);
        break;
    case PLM_DIST_INV_GAMMA:
        if (x <= 0) return upper ? 0 : -INFINITY;
        P = gsl_cdf_gamma_Q(p[1] / x, p[0], 1), Q = gsl_cdf_gamma_P(p[1] / x, p[0], 1);
        break;
    case PLM_DIST_BETA:
        if (x <= 0) return upper ? 0 : -INFINITY;
        if (x >= 1) return upper ? -INFINITY : 0;
        P = gsl_cdf_beta_P(x, p[0], p[1]), Q = gsl_cdf_beta_Q(x, p[0], p[1]);
        break;
    case PLM_DIST_UNIFORM:
        z = (x - p[0]) / (p[1] - p[0]);
        z = z < 0 ? 0 : z > 1 ? 1 : z;
        P = z, Q = 1 - z;
        break;
    case PLM_DIST_WEIBULL:
        if (x <= 0) return upper ? 0 : -INFINITY;
        z = pow(x / p[1], p[0]);
        return upper ? -z : log(-expm1(-z));
    case PLM_DIST_HALFCAUCHY: case PLM_DIST_HALFSTUDENT_T:
        if (x <= 0) return upper ? 0 : -INFINITY;
        Q = 2 * (d->kind == PLM_DIST_HALFCAUCHY ? gsl_cdf_cauchy_Q(x, p[0]) : gsl_cdf_tdist_Q(x / p[1], p[0]));
        return upper ? log(Q) : log1p(-Q);
    default:
        return NAN;
    }
    if (upper) return Q < 0.5 ? log(Q) : log1p(-P);
    return P < 0.5 ? log(P) : log1p(-Q);
}

/* The x with log_cdf(d, x, upper) = l (GSL's inverses, or closed forms in logs where log_cdf has them). */
static double inv_log_cdf(const plm_dist *d, double l, int upper)
{
    const double *p = d->p;
    double P = upper ? -expm1(l) : exp(l), Q = upper ? exp(l) : -expm1(l);
    int useQ = Q < P;   /* invert the small tail: its probability has full relative precision */
    switch (d->kind) {
    case PLM_DIST_EXPONENTIAL:
        return upper ? -l / p[0] : -log1p(-exp(l)) / p[0];
    case PLM_DIST_LAPLACE:
        if (upper) return p[0] + p[1] * (l <= -M_LN2 ? -M_LN2 - l : M_LN2 + log1p(-exp(l)));
        return p[0] + p[1] * (l <= -M_LN2 ? l + M_LN2 : -M_LN2 - log1p(-exp(l)));
    case PLM_DIST_WEIBULL:
        return p[1] * pow(upper ? -l : -log1p(-exp(l)), 1 / p[0]);
    case PLM_DIST_STUDENT_T:
        return p[1] + p[2] * (useQ ? gsl_cdf_tdist_Qinv(Q, p[0]) : gsl_cdf_tdist_Pinv(P, p[0]));
    case PLM_DIST_CAUCHY: return p[0] + (useQ ? gsl_cdf_cauchy_Qinv(Q, p[1]) : gsl_cdf_cauchy_Pinv(P, p[1]));
    case PLM_DIST_LOGISTIC: return p[0] + (useQ ? gsl_cdf_logistic_Qinv(Q, p[1]) : gsl_cdf_logistic_Pinv(P, p[1]));
    case PLM_DIST_GAMMA: return useQ ? gsl_cdf_gamma_Qinv(Q, p[0], 1 / p[1]) : gsl_cdf_gamma_Pinv(P, p[0], 1 / p[1]);
    case PLM_DIST_INV_GAMMA: return p[1] / (useQ ? gsl_cdf_gamma_Pinv(Q, p[0], 1) : gsl_cdf_gamma_Qinv(P, p[0], 1));
    case PLM_DIST_BETA: return useQ ? gsl_cdf_beta_Qinv(Q, p[0], p[1]) : gsl_cdf_beta_Pinv(P, p[0], p[1]);
    case PLM_DIST_UNIFORM: return useQ ? p[1] - (p[1] - p[0]) * Q : p[0] + (p[1] - p[0]) * P;
    case PLM_DIST_HALFCAUCHY: return gsl_cdf_cauchy_Qinv(Q / 2, p[0]);
    case PLM_DIST_HALFSTUDENT_T: return p[1] * gsl_cdf_tdist_Qinv(Q / 2, p[0]);
    default: return NAN;
    }
}

/* Standard normal restricted to [a, b]. Inversion where the interval's mass is a well-resolved difference
** of tail probabilities; far in a tail Robert's exponential rejection ("Simulation of truncated normal
** variables", 1995), whose acceptance tends to 1 as a grows; a short interval by uniform rejection. */
static double std_truncnorm(double a, double b, plm_rng *r)
{
    if (b <= 0) return -std_truncnorm(-b, -a, r);
    if (a >= 5 && (b - a) * a > 1) {
        double alpha = 0.5 * (a + sqrt(a * a + 4));
        for (;;) {
            double z = a - log(plm_rng_uniform(r)) / alpha, t = z - alpha;
            if (z <= b && log(plm_rng_uniform(r)) <= -0.5 * t * t) return z;
        }
    }
    if (b - a < 0.1 || a >= 5) {
        double m = a > 0 ? a * a : 0;   /* z^2 is smallest at a (or 0 inside the interval) */
        for (;;) {
            double z = a + (b - a) * plm_rng_uniform(r);
            if (log(plm_rng_uniform(r)) <= -0.5 * (z * z - m)) return z;
        }
    }
    {
        double u = plm_rng_uniform(r), z;
        if (a >= 0) {
            double qa = gsl_cdf_ugaussian_Q(a), qb = gsl_cdf_ugaussian_Q(b);
            z = gsl_cdf_ugaussian_Qinv(qb + u * (qa - qb));
        } else {
            double pa = gsl_cdf_ugaussian_P(a), pb = gsl_cdf_ugaussian_P(b);
            z = gsl_cdf_ugaussian_Pinv(pa + u * (pb - pa));
        }
        return z < a ? a : z > b ? b : z;   /* rounding at the ends */
    }
}

plm_status plm_dist_new_truncated(plm_ctx *ctx, const plm_dist *base, double lo, double hi, plm_dist **out)
{
    const plm_dist_info *bi = plm_dist_info_of(base->kind);
    plm_dist *d;
    double blo, bhi, lPlo, lPhi, lQlo, lQhi, logZ;
    if (isnan(lo)) return plm_fail(ctx, PLM_EINVAL, "truncated: lo is NaN");
    if (isnan(hi)) return plm_fail(ctx, PLM_EINVAL, "truncated: hi is NaN");
    if (bi->discrete || bi->improper || base->dim != 1 || base->kind == PLM_DIST_TRUNCATED)
        return plm_fail(ctx, PLM_EINVAL, "truncated: d must be a scalar continuous proper distribution (got %s)",
                        bi->name);
    if (!(lo < hi)) return plm_fail(ctx, PLM_EINVAL, "truncated: lo must be < hi (got lo = %g, hi = %g)", lo, hi);
    plm_dist_bounds(base, &blo, &bhi);
    if (!(fmax(lo, blo) < fmin(hi, bhi)))
        return plm_fail(ctx, PLM_EINVAL, "truncated: [%g, %g] lies outside the support [%g, %g] of %s", lo, hi,
                        blo, bhi, bi->name);
    lPlo = log_cdf(base, lo, 0), lPhi = log_cdf(base, hi, 0);
    lQlo = log_cdf(base, lo, 1), lQhi = log_cdf(base, hi, 1);
    /* F(hi) - F(lo) from the side where both terms are small, so the difference keeps its digits */
    if (lQlo < -M_LN2)
        logZ = lQlo + log1p(-exp(lQhi - lQlo));
    else
        logZ = lPhi + log1p(-exp(lPlo - lPhi));
    if (!(logZ > -INFINITY))
        return plm_fail(ctx, PLM_EINVAL, "truncated: [%g, %g] has no probability under %s that doubles can resolve",
                        lo, hi, bi->name);
    if (!(d = alloc_dist(PLM_DIST_TRUNCATED, 1, 0)) || !(d->aux = plm_gc_alloc_atomic(4 * sizeof(double))))
        return plm_fail(ctx, PLM_ENOMEM, "out of memory");
    d->inner = base;
    d->p[0] = lo, d->p[1] = hi;
    d->c = logZ;
    d->aux[0] = lPlo, d->aux[1] = lPhi, d->aux[2] = lQlo, d->aux[3] = lQhi;
    *out = d;
    return PLM_OK;
}

static double truncated_logpdf(const plm_dist *d, double x)
{
    if (!(x >= d->p[0] && x <= d->p[1])) return -INFINITY;
    return plm_dist_logpdf(d->inner, &x) - d->c;
}

static double truncated_sample(const plm_dist *d, plm_rng *r)
{
    const plm_dist *b = d->inner;
    const double *p = b->p;
    double lo = d->p[0], hi = d->p[1], x;
    switch (b->kind) {
    case PLM_DIST_NORMAL:
        x = p[0] + p[1] * std_truncnorm((lo - p[0]) / p[1], (hi - p[0]) / p[1], r);
        break;
    case PLM_DIST_HALFNORMAL:
        x = p[0] * std_truncnorm(fmax(lo, 0) / p[0], hi / p[0], r);
        break;
    case PLM_DIST_LOGNORMAL:
        x = exp(p[0] + p[1] * std_truncnorm((log(fmax(lo, 0)) - p[0]) / p[1], (log(hi) - p[0]) / p[1], r));
        break;
    default: {
        /* inversion on the side where the tail probabilities are small: log F(x) uniform between the logs */
        int upper = d->aux[2] < -M_LN2;
        double l1 = upper ? d->aux[2] : d->aux[1], l0 = upper ? d->aux[3] : d->aux[0];
        double e = exp(l0 - l1), u = plm_rng_uniform(r);
        x = inv_log_cdf(b, l1 + log(e + u * (1 - e)), upper);
    }
    }
    return x < lo ? lo : x > hi ? hi : x;
}

/* Mean (k = 1) or variance (k = 2) of a truncated distribution by GSL's adaptive quadrature. */
typedef struct tmom {
    const plm_dist *d;
    int k;
    double m;
} tmom;

static double tmom_f(double x, void *arg)
{
    const tmom *t = arg;
    double w = exp(truncated_logpdf(t->d, x));
    return w == 0 ? 0 : t->k == 1 ? x * w : (x - t->m) * (x - t->m) * w;
}

static int truncated_moment(const plm_dist *d, int k, double m, double *out)
{
    gsl_integration_workspace *w = gsl_integration_workspace_alloc(1000);
    tmom t = {d, k, m};
    gsl_function f = {tmom_f, &t};
    double lo, hi, err;
    int st;
    if (!w) return -1;
    plm_dist_bounds(d, &lo, &hi);
    if (isinf(lo) && isinf(hi))
        st = gsl_integration_qagi(&f, 1e-12, 1e-10, 1000, w, out, &err);
    else if (isinf(hi))
        st = gsl_integration_qagiu(&f, lo, 1e-12, 1e-10, 1000, w, out, &err);
    else if (isinf(lo))
        st = gsl_integration_qagil(&f, hi, 1e-12, 1e-10, 1000, w, out, &err);
    else
        st = gsl_integration_qags(&f, lo, hi, 1e-12, 1e-10, 1000, w, out, &err);
    gsl_integration_workspace_free(w);
    return st == GSL_SUCCESS && isfinite(*out) ? 0 : -1;
}

/* ---- any kind ---- */

static double cat_sample(const plm_dist *d, plm_rng *r)
{
    double u = plm_rng_uniform(r), c = 0;
    int i;
    for (i = 0; i < d->K - 1; i++) {
        c += d->v[i];
        if (u < c) return i;
    }
    /* rounding can leave c slightly under 1: the last category with positive probability takes the rest */
    for (i = d->K - 1; i > 0 && d->v[i] == 0; i--)
        ;
    return i;
}

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
        return truncated_logpdf(d, x[0]);
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

void plm_dist_sample(const plm_dist *d, plm_rng *r, double *out)
{
    int i, j, K = d->K;
    switch (d->kind) {
    case PLM_DIST_CATEGORICAL:
        out[0] = cat_sample(d, r);
        break;
    case PLM_DIST_DIRICHLET: {
        /* normalise gamma draws in logs: with tiny alphas every draw underflows and G / sum(G) is 0/0 */
        double m = -INFINITY, s = 0, y, lmag, least = INFINITY;
        int win = 0;
        for (i = 0; i < K; i++) {
            log_gamma_parts(d->v[i], r, &y, &lmag);
            out[i] = y - exp(lmag);
            if (out[i] > m) m = out[i];
            if (lmag < least) least = lmag, win = i;
        }
        if (m == -INFINITY) out[win] = m = 0;   /* every log overflowed: the smallest magnitude takes the mass */
        for (i = 0; i < K; i++) s += (out[i] = exp(out[i] - m));
        for (i = 0; i < K; i++) {
            out[i] /= s;
            if (out[i] == 0) out[i] = DBL_TRUE_MIN;   /* keep every component inside the open simplex */
        }
        break;
    }
    case PLM_DIST_TRUNCATED:
        out[0] = truncated_sample(d, r);
        break;
    case PLM_DIST_MULTINOMIAL: {
        /* sequential conditional binomials: avoids GSL's unsigned int buffer */
        double left = d->p[0], mass = 1;
        for (i = 0; i < K; i++) {
            double q = mass > 0 ? d->v[i] / mass : 0;
            if (q > 1) q = 1;
            out[i] = (i == K - 1) ? left : (left > 0 && q > 0 ? binomial_draw(left, q, r) : 0);
            left -= out[i];
            mass -= d->v[i];
        }
        break;
    }
    case PLM_DIST_MVNORMAL: {
        /* out = mu + L z, filled from the last row up so z can live in out itself */
        for (i = 0; i < K; i++) out[i] = plm_rng_normal(r);
        for (i = K - 1; i >= 0; i--) {
            double v = d->v[i];
            for (j = 0; j <= i; j++) v += d->aux[i * K + j] * out[j];
            out[i] = v;
        }
        break;
    }
    default:
        out[0] = plm_dist_sample1(d->kind, d->p, r);
    }
}

void plm_dist_sample_n(const plm_dist *d, plm_rng *r, size_t n, double *out)
{
    size_t i;
    const double *p = d->p;
    switch (d->kind) {
    case PLM_DIST_NORMAL:
        for (i = 0; i < n; i++) out[i] = p[0] + p[1] * plm_rng_normal(r);
        break;
    case PLM_DIST_UNIFORM:
        for (i = 0; i < n; i++) out[i] = p[0] + (p[1] - p[0]) * plm_rng_uniform(r);
        break;
    default:
        for (i = 0; i < n; i++) plm_dist_sample(d, r, out + i * (size_t)d->dim);
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

/* ---- moments ---- */

/* Mean of the half-t: 2 sigma sqrt(nu / pi) Gamma((nu + 1) / 2) / (Gamma(nu / 2) (nu - 1)), NaN for nu <= 1. */
static double halft_mean(const double *p)
{
    if (!(p[0] > 1)) return NAN;
    return 2 * p[1] * sqrt(p[0] / M_PI) * exp(lgamma(0.5 * (p[0] + 1)) - lgamma(0.5 * p[0])) / (p[0] - 1);
}

static plm_status undefined(plm_ctx *ctx, const plm_dist *d, const char *what, double *out)
{
    int i;
    for (i = 0; i < d->dim; i++) out[i] = NAN;
    return plm_fail(ctx, PLM_EDOM, "%s: the %s is undefined for these parameters", infos[d->kind].name, what);
}

plm_status plm_dist_mean(plm_ctx *ctx, const plm_dist *d, double *out)
{
    const double *p = d->p;
    int i;
    switch (d->kind) {
    case PLM_DIST_NORMAL: case PLM_DIST_LAPLACE: case PLM_DIST_LOGISTIC: out[0] = p[0]; break;
    case PLM_DIST_LOGNORMAL: out[0] = exp(p[0] + 0.5 * p[1] * p[1]); break;
    case PLM_DIST_STUDENT_T:
        if (!(p[0] > 1)) return undefined(ctx, d, "mean", out);
        out[0] = p[1];
        break;
    case PLM_DIST_CAUCHY: return undefined(ctx, d, "mean", out);
    case PLM_DIST_EXPONENTIAL: out[0] = 1 / p[0]; break;
    case PLM_DIST_GAMMA: out[0] = p[0] / p[1]; break;
    case PLM_DIST_INV_GAMMA:
        if (!(p[0] > 1)) return undefined(ctx, d, "mean", out);
        out[0] = p[1] / (p[0] - 1);
        break;
    case PLM_DIST_BETA: out[0] = p[0] / (p[0] + p[1]); break;
    case PLM_DIST_UNIFORM: out[0] = 0.5 * (p[0] + p[1]); break;
    case PLM_DIST_WEIBULL: out[0] = p[1] * tgamma(1 + 1 / p[0]); break;
    case PLM_DIST_BERNOULLI: out[0] = p[0]; break;
    case PLM_DIST_BINOMIAL: out[0] = p[0] * p[1]; break;
    case PLM_DIST_POISSON: out[0] = p[0]; break;
    case PLM_DIST_NEG_BINOMIAL: out[0] = p[0] / p[1]; break;
    case PLM_DIST_GEOMETRIC: out[0] = (1 - p[0]) / p[0]; break;
    case PLM_DIST_CATEGORICAL:
        out[0] = 0;
        for (i = 0; i < d->K; i++) out[0] += i * d->v[i];
        break;
    case PLM_DIST_DIRICHLET: {
        double s = 0;
        for (i = 0; i < d->K; i++) s += d->v[i];
        for (i = 0; i < d->K; i++) out[i] = d->v[i] / s;
        break;
    }
    case PLM_DIST_MULTINOMIAL:
        for (i = 0; i < d->K; i++) out[i] = d->p[0] * d->v[i];
        break;
    case PLM_DIST_MVNORMAL:
        for (i = 0; i < d->K; i++) out[i] = d->v[i];
        break;
    case PLM_DIST_HALFNORMAL: out[0] = p[0] * sqrt(2 / M_PI); break;
    case PLM_DIST_HALFCAUCHY: return undefined(ctx, d, "mean", out);
    case PLM_DIST_HALFSTUDENT_T:
        if (isnan(out[0] = halft_mean(p))) return undefined(ctx, d, "mean", out);
        break;
    case PLM_DIST_FLAT:
        out[0] = NAN;
        return plm_fail(ctx, PLM_EDOM, "flat: an improper prior has no mean");
    case PLM_DIST_TRUNCATED: {
        double blo, bhi, m;
        plm_dist_bounds(d->inner, &blo, &bhi);
        /* an unbounded side keeps the base's tail: no base mean, no mean */
        if (((isinf(d->p[0]) && isinf(blo)) || (isinf(d->p[1]) && isinf(bhi))) && plm_dist_mean(NULL, d->inner, &m))
            return undefined(ctx, d, "mean", out);
        if (truncated_moment(d, 1, 0, out))
            return plm_fail(ctx, PLM_EDOM, "truncated: the mean could not be computed (quadrature failed)");
        break;
    }
    default:
        return plm_fail(ctx, PLM_EINVAL, "unknown distribution kind");
    }
    return PLM_OK;
}

plm_status plm_dist_var(plm_ctx *ctx, const plm_dist *d, double *out)
{
    const double *p = d->p;
    int i, j;
    switch (d->kind) {
    case PLM_DIST_NORMAL: out[0] = p[1] * p[1]; break;
    case PLM_DIST_LOGNORMAL: out[0] = expm1(p[1] * p[1]) * exp(2 * p[0] + p[1] * p[1]); break;
    case PLM_DIST_STUDENT_T:
        if (!(p[0] > 1)) return undefined(ctx, d, "variance", out);
        out[0] = p[0] > 2 ? p[2] * p[2] * p[0] / (p[0] - 2) : INFINITY;
        break;
    case PLM_DIST_CAUCHY: return undefined(ctx, d, "variance", out);
    case PLM_DIST_LAPLACE: out[0] = 2 * p[1] * p[1]; break;
    case PLM_DIST_LOGISTIC: out[0] = p[1] * p[1] * M_PI * M_PI / 3; break;
    case PLM_DIST_EXPONENTIAL: out[0] = 1 / (p[0] * p[0]); break;
    case PLM_DIST_GAMMA: out[0] = p[0] / (p[1] * p[1]); break;
    case PLM_DIST_INV_GAMMA:
        if (!(p[0] > 1)) return undefined(ctx, d, "variance", out);
        out[0] = p[0] > 2 ? p[1] * p[1] / ((p[0] - 1) * (p[0] - 1) * (p[0] - 2)) : INFINITY;
        break;
    case PLM_DIST_BETA: {
        double s = p[0] + p[1];
        out[0] = p[0] * p[1] / (s * s * (s + 1));
        break;
    }
    case PLM_DIST_UNIFORM: out[0] = (p[1] - p[0]) * (p[1] - p[0]) / 12; break;
    case PLM_DIST_WEIBULL: {
        double g1 = tgamma(1 + 1 / p[0]);
        out[0] = p[1] * p[1] * (tgamma(1 + 2 / p[0]) - g1 * g1);
        break;
    }
    case PLM_DIST_BERNOULLI: out[0] = p[0] * (1 - p[0]); break;
    case PLM_DIST_BINOMIAL: out[0] = p[0] * p[1] * (1 - p[1]); break;
    case PLM_DIST_POISSON: out[0] = p[0]; break;
    case PLM_DIST_NEG_BINOMIAL: out[0] = p[0] * (p[1] + 1) / (p[1] * p[1]); break;
    case PLM_DIST_GEOMETRIC: out[0] = (1 - p[0]) / (p[0] * p[0]); break;
    case PLM_DIST_CATEGORICAL: {
        double m = 0, m2 = 0;
        for (i = 0; i < d->K; i++) {
            m += i * d->v[i];
            m2 += (double)i * i * d->v[i];
        }
        out[0] = m2 - m * m;
        break;
    }
    case PLM_DIST_DIRICHLET: {
        double s = 0;
        for (i = 0; i < d->K; i++) s += d->v[i];
        for (i = 0; i < d->K; i++) out[i] = d->v[i] * (s - d->v[i]) / (s * s * (s + 1));
        break;
    }
    case PLM_DIST_MULTINOMIAL:
        for (i = 0; i < d->K; i++) out[i] = d->p[0] * d->v[i] * (1 - d->v[i]);
        break;
    case PLM_DIST_MVNORMAL:
        for (i = 0; i < d->K; i++) {
            double s = 0;
            for (j = 0; j <= i; j++) s += d->aux[i * d->K + j] * d->aux[i * d->K + j];
            out[i] = s;
        }
        break;
    case PLM_DIST_HALFNORMAL: out[0] = p[0] * p[0] * (1 - 2 / M_PI); break;
    case PLM_DIST_HALFCAUCHY: return undefined(ctx, d, "variance", out);
    case PLM_DIST_HALFSTUDENT_T: {
        double m = halft_mean(p);
        if (isnan(m)) return undefined(ctx, d, "variance", out);
        out[0] = p[0] > 2 ? p[1] * p[1] * p[0] / (p[0] - 2) - m * m : INFINITY;
        break;
    }
    case PLM_DIST_FLAT:
        out[0] = NAN;
        return plm_fail(ctx, PLM_EDOM, "flat: an improper prior has no variance");
    case PLM_DIST_TRUNCATED: {
        double blo, bhi, m, v;
        int open = 0;
        plm_dist_bounds(d->inner, &blo, &bhi);
        open = (isinf(d->p[0]) && isinf(blo)) || (isinf(d->p[1]) && isinf(bhi));
        if (plm_dist_mean(ctx, d, &m)) return undefined(ctx, d, "variance", out);
        if (open && (plm_dist_var(NULL, d->inner, &v) || isinf(v))) {
            if (v == INFINITY) {   /* the base's heavy tail survives on the open side */
                out[0] = INFINITY;
                break;
            }
            return undefined(ctx, d, "variance", out);
        }
        if (truncated_moment(d, 2, m, out))
            return plm_fail(ctx, PLM_EDOM, "truncated: the variance could not be computed (quadrature failed)");
        break;
    }
    default:
        return plm_fail(ctx, PLM_EINVAL, "unknown distribution kind");
    }
    return PLM_OK;
}

int plm_dist_in_support(const plm_dist *d, const double *x)
{
    return plm_dist_logpdf(d, x) > -INFINITY;
}

void plm_dist_bounds(const plm_dist *d, double *lo, double *hi)
{
    *lo = -INFINITY, *hi = INFINITY;
    switch (plm_dist_info_of(d->kind)->support) {
    case PLM_SUPPORT_POSITIVE: *lo = 0; break;
    case PLM_SUPPORT_UNIT: *lo = 0, *hi = 1; break;
    case PLM_SUPPORT_INTERVAL: *lo = d->p[0], *hi = d->p[1]; break;
    case PLM_SUPPORT_TRUNCATED:
        plm_dist_bounds(d->inner, lo, hi);
        *lo = fmax(*lo, d->p[0]), *hi = fmin(*hi, d->p[1]);
        break;
    default: break;
    }
}
