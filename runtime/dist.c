/* dist.c -- distributions on top of GSL's samplers, with log densities written in closed form (GSL's
** pdf functions return densities, whose logs underflow in the tails). */
#include "dist.h"

#include <gsl/gsl_linalg.h>
#include <gsl/gsl_randist.h>
#include <gsl/gsl_sf_gamma.h>
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
    return plm_fail(ctx, PLM_EINVAL, "%s: %s must be %s (got %g)", infos[k].name, infos[k].params[i], what, got);
}

static int is_whole(double x) { return isfinite(x) && x == floor(x); }

plm_status plm_dist_check(plm_ctx *ctx, plm_dist_kind k, const double *p)
{
    int i;
    if ((unsigned)k >= PLM_DIST_NKINDS || infos[k].nparams == 0)
        return plm_fail(ctx, PLM_EINVAL, "distribution kind %d takes vector parameters", (int)k);
    for (i = 0; i < infos[k].nparams; i++)
        if (!isfinite(p[i])) return bad(ctx, k, i, "finite", p[i]);
    switch (k) {
    case PLM_DIST_NORMAL: case PLM_DIST_LOGNORMAL: case PLM_DIST_CAUCHY:
    case PLM_DIST_LAPLACE: case PLM_DIST_LOGISTIC:
        if (!(p[1] > 0)) return bad(ctx, k, 1, "> 0", p[1]);
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
        break;
    case PLM_DIST_UNIFORM:
        if (!(p[1] > p[0]))
            return plm_fail(ctx, PLM_EINVAL, "uniform: b must be > a (got a = %g, b = %g)", p[0], p[1]);
        break;
    case PLM_DIST_BERNOULLI:
        if (!(p[0] >= 0 && p[0] <= 1)) return bad(ctx, k, 0, "in [0, 1]", p[0]);
        break;
    case PLM_DIST_BINOMIAL:
        if (!(is_whole(p[0]) && p[0] >= 0 && p[0] <= 4294967295.0))
            return bad(ctx, k, 0, "a whole number >= 0", p[0]);
        if (!(p[1] >= 0 && p[1] <= 1)) return bad(ctx, k, 1, "in [0, 1]", p[1]);
        break;
    case PLM_DIST_POISSON:
        if (!(p[0] >= 0)) return bad(ctx, k, 0, ">= 0", p[0]);
        break;
    case PLM_DIST_GEOMETRIC:
        if (!(p[0] > 0 && p[0] <= 1)) return bad(ctx, k, 0, "in (0, 1]", p[0]);
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
        if (!(probs[i] >= 0 && probs[i] <= 1))
            return plm_fail(ctx, PLM_EINVAL, "%s: probs[%d] must be in [0, 1] (got %g)", who, i + 1, probs[i]);
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
            return plm_fail(ctx, PLM_EINVAL, "categorical: logits[%d] must be finite or -inf (got %g)", i + 1, logits[i]);
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
        if (!(alpha[i] > 0 && isfinite(alpha[i])))
            return plm_fail(ctx, PLM_EINVAL, "dirichlet: alpha[%d] must be > 0 (got %g)", i + 1, alpha[i]);
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
    if (!(is_whole(n) && n >= 0 && n <= 4294967295.0))
        return plm_fail(ctx, PLM_EINVAL, "multinomial: n must be a whole number >= 0 (got %g)", n);
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
        if (!isfinite(mu[i])) return plm_fail(ctx, PLM_EINVAL, "mvnormal: mu[%d] must be finite (got %g)", i + 1, mu[i]);
    for (i = 0; i < K; i++)
        for (j = 0; j < K; j++) {
            double a = Sigma[i * K + j], b = Sigma[j * K + i];
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
        z = (x - p[1]) / p[2];
        return lgamma(0.5 * (p[0] + 1)) - lgamma(0.5 * p[0]) - 0.5 * (log(p[0]) + LOG_PI) - log(p[2])
               - 0.5 * (p[0] + 1) * log1p(z * z / p[0]);
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
        return p[0] * log(p[1]) - lgamma(p[0]) + xlogy(p[0] - 1, x) - p[1] * x;
    case PLM_DIST_INV_GAMMA:
        if (!(x > 0) || isinf(x)) return -INFINITY;
        return p[0] * log(p[1]) - lgamma(p[0]) - (p[0] + 1) * log(x) - p[1] / x;
    case PLM_DIST_BETA:
        if (!(x >= 0 && x <= 1)) return -INFINITY;
        return xlogy(p[0] - 1, x) + xlogy(p[1] - 1, 1 - x) - gsl_sf_lnbeta(p[0], p[1]);
    case PLM_DIST_UNIFORM:
        if (!(x >= p[0] && x <= p[1])) return -INFINITY;
        return -log(p[1] - p[0]);
    case PLM_DIST_WEIBULL:
        if (!(x >= 0) || isinf(x)) return -INFINITY;
        z = x / p[1];
        return log(p[0]) - log(p[1]) + xlogy(p[0] - 1, z) - pow(z, p[0]);
    case PLM_DIST_BERNOULLI:
        if (x == 1) return log(p[0]);
        if (x == 0) return log1p(-p[0]);
        return -INFINITY;
    case PLM_DIST_BINOMIAL:
        if (!(is_whole(x) && x >= 0 && x <= p[0])) return -INFINITY;
        return lgamma(p[0] + 1) - lgamma(x + 1) - lgamma(p[0] - x + 1) + xlogy(x, p[1])
               + (p[0] - x == 0 ? 0 : (p[0] - x) * log1p(-p[1]));
    case PLM_DIST_POISSON:
        if (!(is_whole(x) && x >= 0)) return -INFINITY;
        return xlogy(x, p[0]) - p[0] - lgamma(x + 1);
    case PLM_DIST_NEG_BINOMIAL:
        if (!(is_whole(x) && x >= 0)) return -INFINITY;
        return lgamma(x + p[0]) - lgamma(x + 1) - lgamma(p[0]) + p[0] * log(p[1]) - (p[0] + x) * log1p(p[1]);
    case PLM_DIST_GEOMETRIC:
        if (!(is_whole(x) && x >= 0)) return -INFINITY;
        return log(p[0]) + (x == 0 ? 0 : x * log1p(-p[0]));
    default:
        return -INFINITY;   /* vector-parameterised kinds go through plm_dist_logpdf */
    }
}

double plm_dist_sample1(plm_dist_kind kind, const double *p, plm_rng *r)
{
    gsl_rng *g = &r->gsl;
    switch (kind) {
    case PLM_DIST_NORMAL: return p[0] + p[1] * gsl_ran_gaussian_ziggurat(g, 1.0);
    case PLM_DIST_LOGNORMAL: return exp(p[0] + p[1] * gsl_ran_gaussian_ziggurat(g, 1.0));
    case PLM_DIST_STUDENT_T: return p[1] + p[2] * gsl_ran_tdist(g, p[0]);
    case PLM_DIST_CAUCHY: return p[0] + gsl_ran_cauchy(g, p[1]);
    case PLM_DIST_LAPLACE: return p[0] + gsl_ran_laplace(g, p[1]);
    case PLM_DIST_LOGISTIC: return p[0] + gsl_ran_logistic(g, p[1]);
    case PLM_DIST_EXPONENTIAL: return -log(plm_rng_uniform(r)) / p[0];
    case PLM_DIST_GAMMA: return gsl_ran_gamma(g, p[0], 1.0 / p[1]);
    case PLM_DIST_INV_GAMMA: return p[1] / gsl_ran_gamma(g, p[0], 1.0);
    case PLM_DIST_BETA: return gsl_ran_beta(g, p[0], p[1]);
    case PLM_DIST_UNIFORM: return p[0] + (p[1] - p[0]) * plm_rng_uniform(r);
    case PLM_DIST_WEIBULL: return gsl_ran_weibull(g, p[1], p[0]);
    case PLM_DIST_BERNOULLI: return plm_rng_uniform(r) < p[0] ? 1.0 : 0.0;
    case PLM_DIST_BINOMIAL: return (double)gsl_ran_binomial(g, p[1], (unsigned)p[0]);
    case PLM_DIST_POISSON: return (double)gsl_ran_poisson(g, p[0]);
    case PLM_DIST_NEG_BINOMIAL: return (double)gsl_ran_negative_binomial(g, p[1] / (1 + p[1]), p[0]);
    case PLM_DIST_GEOMETRIC: return p[0] == 1 ? 0.0 : (double)gsl_ran_geometric(g, p[0]) - 1.0;
    default: return NAN;
    }
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
            lp += xlogy(d->v[i] - 1, x[i]);
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
    case PLM_DIST_DIRICHLET:
        gsl_ran_dirichlet(&r->gsl, (size_t)K, d->v, out);
        break;
    case PLM_DIST_MULTINOMIAL: {
        /* sequential conditional binomials: avoids GSL's unsigned int buffer */
        double left = d->p[0], mass = 1;
        for (i = 0; i < K; i++) {
            double q = mass > 0 ? d->v[i] / mass : 0;
            if (q > 1) q = 1;
            out[i] = (i == K - 1) ? left : (left > 0 && q > 0 ? (double)gsl_ran_binomial(&r->gsl, q, (unsigned)left) : 0);
            left -= out[i];
            mass -= d->v[i];
        }
        break;
    }
    case PLM_DIST_MVNORMAL: {
        /* out = mu + L z, filled from the last row up so z can live in out itself */
        for (i = 0; i < K; i++) out[i] = gsl_ran_gaussian_ziggurat(&r->gsl, 1.0);
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
        for (i = 0; i < n; i++) out[i] = p[0] + p[1] * gsl_ran_gaussian_ziggurat(&r->gsl, 1.0);
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
    default: break;
    }
}
