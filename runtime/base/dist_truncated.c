/* dist_truncated.c -- truncation of a scalar continuous distribution to [lo, hi]: log tail probabilities,
** construction, density, samplers and moments by quadrature. */
#include "dist_impl.h"

#include <gsl/gsl_cdf.h>
#include <gsl/gsl_errno.h>
#include <gsl/gsl_integration.h>
#include <gsl/gsl_sf_erf.h>
#include <math.h>

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
double plm_dist_std_truncnorm(double a, double b, plm_rng *r)
{
    if (b <= 0) return -plm_dist_std_truncnorm(-b, -a, r);
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
    if (!(d = plm_dist_alloc(PLM_DIST_TRUNCATED, 1, 0)) || !(d->aux = plm_gc_alloc_atomic(4 * sizeof(double))))
        return plm_fail(ctx, PLM_ENOMEM, "out of memory");
    d->inner = base;
    d->p[0] = lo, d->p[1] = hi;
    d->c = logZ;
    d->aux[0] = lPlo, d->aux[1] = lPhi, d->aux[2] = lQlo, d->aux[3] = lQhi;
    *out = d;
    return PLM_OK;
}

double plm_dist_truncated_logpdf(const plm_dist *d, double x)
{
    if (!(x >= d->p[0] && x <= d->p[1])) return -INFINITY;
    return plm_dist_logpdf(d->inner, &x) - d->c;
}

double plm_dist_truncated_sample(const plm_dist *d, plm_rng *r)
{
    const plm_dist *b = d->inner;
    const double *p = b->p;
    double lo = d->p[0], hi = d->p[1], x;
    switch (b->kind) {
    case PLM_DIST_NORMAL:
        x = p[0] + p[1] * plm_dist_std_truncnorm((lo - p[0]) / p[1], (hi - p[0]) / p[1], r);
        break;
    case PLM_DIST_HALFNORMAL:
        x = p[0] * plm_dist_std_truncnorm(fmax(lo, 0) / p[0], hi / p[0], r);
        break;
    case PLM_DIST_LOGNORMAL:
        x = exp(p[0] + p[1] * plm_dist_std_truncnorm((log(fmax(lo, 0)) - p[0]) / p[1], (log(hi) - p[0]) / p[1], r));
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
    double w = exp(plm_dist_truncated_logpdf(t->d, x));
    return w == 0 ? 0 : t->k == 1 ? x * w : (x - t->m) * (x - t->m) * w;
}

int plm_dist_truncated_moment(const plm_dist *d, int k, double m, double *out)
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
