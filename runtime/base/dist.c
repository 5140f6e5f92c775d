/* dist.c -- distributions: the table of kinds, parameter validation and construction, supports. Densities are
** in dist_density.c, samplers in dist_sample.c, truncation in dist_truncated.c, moments in dist_moments.c. */
#include "dist_impl.h"

#include <gsl/gsl_errno.h>
#include <gsl/gsl_linalg.h>
#include <math.h>
#include <string.h>

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

plm_dist *plm_dist_alloc(plm_dist_kind kind, int dim, int K)
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
    if (!(d = plm_dist_alloc(kind, 1, 0))) return plm_fail(ctx, PLM_ENOMEM, "out of memory");
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
    if (!(d = plm_dist_alloc(PLM_DIST_CATEGORICAL, 1, K)) || !(d->v = plm_gc_alloc_atomic((size_t)K * sizeof(double)))
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
    if (!(d = plm_dist_alloc(PLM_DIST_CATEGORICAL, 1, K)) || !(d->v = plm_gc_alloc_atomic((size_t)K * sizeof(double)))
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
    if (!(d = plm_dist_alloc(PLM_DIST_DIRICHLET, K, K)) || !(d->v = plm_gc_alloc_atomic((size_t)K * sizeof(double))))
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
    if (!(d = plm_dist_alloc(PLM_DIST_MULTINOMIAL, K, K)) || !(d->v = plm_gc_alloc_atomic((size_t)K * sizeof(double))))
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
    if (!(d = plm_dist_alloc(PLM_DIST_MVNORMAL, K, K)) || !(d->v = plm_gc_alloc_atomic((size_t)K * sizeof(double)))
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

/* ---- supports ---- */

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
