/* dist_sample.c -- samplers: GSL's where they serve, and our own for what they do not (the log-space gamma
** for tiny shapes, Poisson and binomial at huge parameters). */
#include "dist_impl.h"

#include <gsl/gsl_randist.h>
#include <float.h>
#include <math.h>

/* ---- scalar samplers ---- */

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
        if (log(V) + log(inv_alpha) - log(a / (us * us) + b) <= plm_dist_poisson_lpmf(k, lam)) return k;
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
        out[0] = plm_dist_truncated_sample(d, r);
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
