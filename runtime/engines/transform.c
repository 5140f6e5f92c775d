/* transform.c -- log and logit transforms with their Jacobians (see transform.h). */
#include "transform.h"

#include <math.h>

static double logistic(double u) { return u >= 0 ? 1 / (1 + exp(-u)) : exp(u) / (1 + exp(u)); }

double plm_transform_to_free(double lo, double hi, double x)
{
    int has_lo = isfinite(lo), has_hi = isfinite(hi);
    if (has_lo && has_hi) {
        double s = (x - lo) / (hi - lo);
        return log(s) - log1p(-s);
    }
    if (has_lo) return log(x - lo);
    if (has_hi) return log(hi - x);
    return x;
}

double plm_transform_from_free(double lo, double hi, double u, double *logjac)
{
    int has_lo = isfinite(lo), has_hi = isfinite(hi);
    if (has_lo && has_hi) {
        /* log s + log(1 - s) for s = logistic(u), written so that neither term underflows for large |u| */
        *logjac = log(hi - lo) - fabs(u) - 2 * log1p(exp(-fabs(u)));
        return lo + (hi - lo) * logistic(u);
    }
    if (has_lo || has_hi) {
        *logjac = u;
        return has_lo ? lo + exp(u) : hi - exp(u);
    }
    *logjac = 0;
    return u;
}
