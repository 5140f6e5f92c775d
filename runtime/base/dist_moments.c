/* dist_moments.c -- means and variances of every kind: closed forms, quadrature for truncated ones. */
#include "dist_impl.h"

#include <math.h>

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
    return plm_fail(ctx, PLM_EDOM, "%s: the %s is undefined for these parameters", plm_dist_info_of(d->kind)->name, what);
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
        if (plm_dist_truncated_moment(d, 1, 0, out))
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
        if (plm_dist_truncated_moment(d, 2, m, out))
            return plm_fail(ctx, PLM_EDOM, "truncated: the variance could not be computed (quadrature failed)");
        break;
    }
    default:
        return plm_fail(ctx, PLM_EINVAL, "unknown distribution kind");
    }
    return PLM_OK;
}
