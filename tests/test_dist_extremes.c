/* test_dist_extremes.c -- distributions at the edges: log densities at a closed end of the support are finite
** or -inf, never +inf or NaN; tiny shapes give draws > 0 with the right law; discrete samplers with huge
** parameters (Poisson 1e10, negative binomial and geometric with mean 1e12, binomial n = 1e13) have the right
** moments and shape; the new kinds (halfnormal, halfcauchy, halfstudent_t, truncated, flat) integrate to one
** and sample from their CDFs. Statistical checks: KS or chi-square p > 1e-4 at fixed seeds, moments within
** 5 standard errors; each family has a negative control that must fail. */
#include <float.h>
#include <gsl/gsl_cdf.h>
#include <gsl/gsl_integration.h>
#include <gsl/gsl_randist.h>
#include <gsl/gsl_sf_gamma.h>
#include <stdlib.h>

#include "check.h"
#include "plume.h"

static int cmpd(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Kolmogorov-Smirnov p-value of n samples against cdf (sorts x). */
static double ks_p(double (*cdf)(double, const void *), const void *arg, double *x, int n)
{
    double D = 0, lam, p = 0;
    int i, k;
    qsort(x, (size_t)n, sizeof *x, cmpd);
    for (i = 0; i < n; i++) {
        double F = cdf(x[i], arg);
        D = fmax(D, fmax(F - (double)i / n, (double)(i + 1) / n - F));
    }
    lam = (sqrt((double)n) + 0.12 + 0.11 / sqrt((double)n)) * D;
    for (k = 1; k < 100; k++) p += 2 * ((k & 1) ? 1 : -1) * exp(-2.0 * k * k * lam * lam);
    return fmin(1, fmax(0, p));
}

static plm_dist *mk(plm_dist_kind k, double a, double b)
{
    double p[3] = {a, b, 0};
    plm_dist *d = NULL;
    if (plm_dist_new(NULL, k, p, &d)) return NULL;
    return d;
}

static plm_dist *mk3(plm_dist_kind k, double a, double b, double c)
{
    double p[3] = {a, b, c};
    plm_dist *d = NULL;
    if (plm_dist_new(NULL, k, p, &d)) return NULL;
    return d;
}

static plm_dist *trunc_of(plm_dist *base, double lo, double hi)
{
    plm_dist *d = NULL;
    if (!base || plm_dist_new_truncated(NULL, base, lo, hi, &d)) return NULL;
    return d;
}

/* ---- 1. boundary densities ---- */

static void test_log_density_at_a_closed_end_is_finite_limit_or_minus_inf(void)
{
    double x0 = 0, x1 = 1, d0[2] = {0, 1}, a1[2] = {0.5, 2}, a2[2] = {1, 2};
    plm_dist *d;
    CHECK(plm_dist_logpdf(mk(PLM_DIST_GAMMA, 0.5, 1), &x0) == -INFINITY);      /* density -> +inf at 0 */
    CHECK(plm_dist_logpdf(mk(PLM_DIST_BETA, 0.5, 0.5), &x0) == -INFINITY);
    CHECK(plm_dist_logpdf(mk(PLM_DIST_BETA, 0.5, 0.5), &x1) == -INFINITY);
    CHECK(plm_dist_logpdf(mk(PLM_DIST_BETA, 2, 0.5), &x1) == -INFINITY);
    CHECK(plm_dist_logpdf(mk(PLM_DIST_WEIBULL, 0.5, 1), &x0) == -INFINITY);
    CHECK(plm_dist_logpdf(mk(PLM_DIST_LOGNORMAL, 0, 1), &x0) == -INFINITY);
    CHECK(plm_dist_logpdf(mk(PLM_DIST_INV_GAMMA, 0.5, 1), &x0) == -INFINITY);
    CHECK_NEAR(plm_dist_logpdf(mk(PLM_DIST_GAMMA, 1, 2), &x0), log(2.0), 1e-15);   /* finite limit kept */
    CHECK_NEAR(plm_dist_logpdf(mk(PLM_DIST_EXPONENTIAL, 3, 0), &x0), log(3.0), 1e-15);
    CHECK_NEAR(plm_dist_logpdf(mk(PLM_DIST_BETA, 1, 3), &x0), log(3.0), 1e-14);
    CHECK_NEAR(plm_dist_logpdf(mk(PLM_DIST_WEIBULL, 1, 2), &x0), -log(2.0), 1e-15);
    CHECK_NEAR(plm_dist_logpdf(mk(PLM_DIST_HALFNORMAL, 1, 0), &x0), log(2 * gsl_ran_ugaussian_pdf(0)), 1e-15);
    CHECK(plm_dist_new_dirichlet(NULL, a1, 2, &d) == PLM_OK);
    CHECK(plm_dist_logpdf(d, d0) == -INFINITY);                                 /* alpha_1 < 1 at x_1 = 0 */
    CHECK(plm_dist_new_dirichlet(NULL, a2, 2, &d) == PLM_OK);
    CHECK_NEAR(plm_dist_logpdf(d, d0), log(2.0), 1e-14);                       /* Dirichlet(1, 2) = Beta(1, 2) */
}

/* Every continuous kind, shapes below one included, at edge and extreme points: never +inf, never NaN, and the
** batch forms agree with the scalar one. */
static void test_no_kind_gives_plus_inf_or_nan_at_extreme_points(void)
{
    const double xs[] = {0, -0.0, 1, DBL_TRUE_MIN, DBL_MIN, 1e-300, 1 - DBL_EPSILON / 2, 1e300, DBL_MAX, -1e300,
                         INFINITY, -INFINITY, NAN};
    enum { NX = sizeof xs / sizeof *xs };
    plm_dist *ds[] = {
        mk(PLM_DIST_GAMMA, 0.5, 1),      mk(PLM_DIST_GAMMA, 1e-300, 1e-300), mk(PLM_DIST_GAMMA, 1, 1),
        mk(PLM_DIST_BETA, 0.5, 0.5),     mk(PLM_DIST_BETA, 1e-310, 1e-310),  mk(PLM_DIST_BETA, 1, 1),
        mk(PLM_DIST_INV_GAMMA, 0.5, 1),  mk(PLM_DIST_WEIBULL, 0.5, 1),       mk(PLM_DIST_LOGNORMAL, 0, 1),
        mk(PLM_DIST_EXPONENTIAL, 2, 0),  mk(PLM_DIST_NORMAL, 0, 1),          mk3(PLM_DIST_STUDENT_T, 0.5, 0, 1),
        mk(PLM_DIST_CAUCHY, 0, 1),       mk(PLM_DIST_LAPLACE, 0, 1),         mk(PLM_DIST_LOGISTIC, 0, 1),
        mk(PLM_DIST_UNIFORM, 0, 1),      mk(PLM_DIST_HALFNORMAL, 1, 0),      mk(PLM_DIST_HALFCAUCHY, 1, 0),
        mk(PLM_DIST_HALFSTUDENT_T, 0.5, 1), mk(PLM_DIST_FLAT, 0, 0),
        trunc_of(mk(PLM_DIST_GAMMA, 0.5, 1), 0, 1), trunc_of(mk(PLM_DIST_NORMAL, 0, 1), 10, INFINITY),
    };
    size_t i, j;
    double out[NX], lp;
    for (i = 0; i < sizeof ds / sizeof *ds; i++) {
        CHECK(ds[i] != NULL);
        if (!ds[i]) continue;
        plm_dist_logpdf_n(ds[i], NX, xs, out);
        for (j = 0; j < NX; j++) {
            lp = plm_dist_logpdf(ds[i], &xs[j]);
            if (!(lp < INFINITY) || out[j] != lp)
                printf("  %s at %g: %g (batch %g)\n", plm_dist_info_of(ds[i]->kind)->name, xs[j], lp, out[j]);
            CHECK(lp < INFINITY);   /* false for +inf and NaN */
            CHECK(out[j] == lp);
            CHECK(plm_dist_in_support(ds[i], &xs[j]) == (lp > -INFINITY));
        }
        CHECK(plm_dist_logpdf_sum(ds[i], NX, xs) == -INFINITY);   /* NaN and inf are outside every support */
    }
}

/* ---- 2. tiny shapes ---- */

/* Law of log X, X ~ Gamma(a, 1): P(log X <= t) = P(a, e^t); below e^-700 the series x^a / Gamma(a + 1) (relative
** error O(x)) stands in for GSL's P, which cannot take the underflowed e^t. */
static double log_gamma_cdf(double t, const void *arg)
{
    double a = *(const double *)arg;
    if (t < -700) return exp(a * t - gsl_sf_lngamma(a + 1));
    return gsl_cdf_gamma_P(exp(t), a, 1);
}

static void test_tiny_shape_gamma_log_draws_follow_the_law_of_log_x(void)
{
    enum { N = 20000 };
    static double x[N];
    double a = 0.001, wrong = 0.0012;
    plm_rng r;
    int i;
    plm_rng_init(&r, 11, 0);
    for (i = 0; i < N; i++) x[i] = plm_dist_log_gamma(a, &r);
    CHECK(ks_p(log_gamma_cdf, &a, x, N) > 1e-4);
    CHECK(ks_p(log_gamma_cdf, &wrong, x, N) < 1e-4);   /* negative control: a 20% wrong shape is rejected */
}

static double gamma_cdf(double x, const void *arg)
{
    const double *p = arg;
    return gsl_cdf_gamma_P(x, p[0], 1 / p[1]);
}

static void test_tiny_shape_gamma_draws_are_positive_and_match_the_cdf(void)
{
    enum { N = 20000 };
    static double x[N];
    double p1[2] = {0.001, 0.001}, p2[2] = {0.01, 1};
    plm_dist *d1 = mk(PLM_DIST_GAMMA, p1[0], p1[1]), *d2 = mk(PLM_DIST_GAMMA, p2[0], p2[1]);
    plm_rng r;
    int i, zero = 0, bad = 0;
    plm_rng_init(&r, 12, 0);
    plm_dist_sample_n(d1, &r, N, x);   /* half the true draws are below the smallest double */
    for (i = 0; i < N; i++) zero += x[i] == 0, bad += !(x[i] > 0 && x[i] < INFINITY);
    CHECK(zero == 0);
    CHECK(bad == 0);
    plm_dist_sample_n(d2, &r, N, x);
    for (i = 0; i < N; i++) bad += !(x[i] > 0 && isfinite(plm_dist_logpdf(d2, &x[i])));
    CHECK(bad == 0);
    CHECK(ks_p(gamma_cdf, p2, x, N) > 1e-4);   /* P(X < 1e-300) = 0.001 only: the draws are representable */
    /* weibull(0.01, 1) = E^100 and lognormal(-800, 1) underflow as plain formulas; inverse_gamma(0.001, 1) overflows */
    {
        plm_dist *ds[3] = {mk(PLM_DIST_WEIBULL, 0.01, 1), mk(PLM_DIST_LOGNORMAL, -800, 1), mk(PLM_DIST_INV_GAMMA, 0.001, 1)};
        int k;
        for (k = 0; k < 3; k++) {
            plm_dist_sample_n(ds[k], &r, N, x);
            for (i = 0; i < N; i++) bad += !(x[i] > 0 && plm_dist_logpdf(ds[k], &x[i]) > -INFINITY);
        }
        CHECK(bad == 0);
    }
}

static double beta_cdf(double x, const void *arg)
{
    const double *p = arg;
    return gsl_cdf_beta_P(x, p[0], p[1]);
}

static double invgamma_cdf(double x, const void *arg)
{
    const double *p = arg;
    return x <= 0 ? 0 : gsl_cdf_gamma_Q(p[1] / x, p[0], 1);
}

static void test_small_shape_beta_and_inverse_gamma_match_their_cdf(void)
{
    enum { N = 20000 };
    static double x[N];
    double pb[2] = {0.3, 0.7}, pi[2] = {0.3, 1}, pw[2] = {0.33, 0.7};
    plm_rng r;
    plm_rng_init(&r, 13, 0);
    plm_dist_sample_n(mk(PLM_DIST_BETA, pb[0], pb[1]), &r, N, x);
    CHECK(ks_p(beta_cdf, pb, x, N) > 1e-4);
    CHECK(ks_p(beta_cdf, pw, x, N) < 1e-4);   /* negative control */
    plm_dist_sample_n(mk(PLM_DIST_INV_GAMMA, pi[0], pi[1]), &r, N, x);
    CHECK(ks_p(invgamma_cdf, pi, x, N) > 1e-4);
}

/* Beta(a, b) with a, b -> 0 puts its mass next to 0 and 1 with P(near 0) = b / (a + b); the draws must be
** inside (0, 1) and their densities numbers (they were NaN). Dirichlet likewise. */
static void test_subnormal_beta_and_dirichlet_give_valid_values(void)
{
    enum { N = 4000 };
    double alpha[2] = {1e-310, 3e-310}, x[2], lp;
    plm_dist *b = mk(PLM_DIST_BETA, 1e-310, 3e-310), *d;
    plm_rng r;
    int i, low = 0, bad = 0, first = 0;
    CHECK(plm_dist_new_dirichlet(NULL, alpha, 2, &d) == PLM_OK);
    plm_rng_init(&r, 14, 0);
    for (i = 0; i < N; i++) {
        plm_dist_sample(b, &r, x);
        low += x[0] < 0.5;
        lp = plm_dist_logpdf(b, x);
        bad += !(x[0] > 0 && x[0] < 1) || isnan(lp) || lp == INFINITY;
        plm_dist_sample(d, &r, x);
        first += x[0] > 0.5;
        lp = plm_dist_logpdf(d, x);
        bad += !(x[0] > 0 && x[1] > 0 && x[0] <= 1 && x[1] <= 1) || fabs(x[0] + x[1] - 1) > 1e-12 || isnan(lp);
    }
    CHECK(bad == 0);
    CHECK_NEAR(low / (double)N, 0.75, 5 * sqrt(0.75 * 0.25 / N));     /* b / (a + b) */
    CHECK_NEAR(first / (double)N, 0.25, 5 * sqrt(0.75 * 0.25 / N));   /* component 1 takes the mass w.p. a / (a + b) */
    x[0] = 0.5;
    CHECK(isfinite(plm_dist_logpdf(b, x)));
}

/* ---- 3. large discrete parameters ---- */

static double normal_cdf(double x, const void *arg)
{
    const double *p = arg;
    return gsl_cdf_gaussian_P(x - p[0], p[1]);
}

/* n draws of d: mean within 5 se of m, variance within 5 se of v (se of s^2 ~ v sqrt(2 / n) for near-normal
** laws), all whole numbers; returns the draws' KS p against normal(m, sqrt(v)) (fine for skewness ~ 0). */
static double check_moments(plm_dist *d, double m, double v, double *x, int n, int whole)
{
    double s = 0, ss = 0, np[2] = {m, sqrt(v)};
    plm_rng r;
    int i, frac = 0;
    plm_rng_init(&r, 15, (uint64_t)d->kind);
    plm_dist_sample_n(d, &r, (size_t)n, x);
    for (i = 0; i < n; i++) s += x[i], frac += whole && x[i] != floor(x[i]);
    s /= n;
    for (i = 0; i < n; i++) ss += (x[i] - s) * (x[i] - s);
    ss /= n - 1;
    CHECK(frac == 0);
    CHECK_NEAR(s, m, 5 * sqrt(v / n));
    CHECK_NEAR(ss, v, 5 * v * sqrt(2.0 / n));
    return ks_p(normal_cdf, np, x, n);
}

static void test_poisson_and_binomial_with_huge_parameters(void)
{
    enum { N = 20000 };
    static double x[N];
    CHECK(check_moments(mk(PLM_DIST_POISSON, 1e10, 0), 1e10, 1e10, x, N, 1) > 1e-4);
    CHECK(check_moments(mk(PLM_DIST_POISSON, 4.5e9, 0), 4.5e9, 4.5e9, x, N, 1) > 1e-4);   /* wrapped before */
    CHECK(check_moments(mk(PLM_DIST_BINOMIAL, 1e13, 0.3), 3e12, 1e13 * 0.21, x, N, 1) > 1e-4);
    CHECK(check_moments(mk(PLM_DIST_BINOMIAL, 5e9, 0.5), 2.5e9, 1.25e9, x, N, 1) > 1e-4);
    /* negative control: the same draws are not normal(m, 1.1 sd) */
    {
        double np[2] = {2.5e9, 1.1 * sqrt(1.25e9)};
        CHECK(ks_p(normal_cdf, np, x, N) < 1e-4);
    }
}

/* The negative binomial with mean 1e12 and the geometric with p = 1e-12 hung or wrapped. */
static void test_negative_binomial_and_geometric_with_mean_1e12(void)
{
    enum { N = 20000 };
    static double x[N];
    double s = 0;
    int i;
    /* NB(1, 1e-12) and geometric(1e-12) are both geometric-like, mean ~1e12 and var ~1e24: not normal */
    check_moments(mk(PLM_DIST_NEG_BINOMIAL, 1, 1e-12), 1e12, (1e-12 + 1) / 1e-24, x, N, 1);
    check_moments(mk(PLM_DIST_GEOMETRIC, 1e-12, 0), (1 - 1e-12) / 1e-12, (1 - 1e-12) / 1e-24, x, N, 1);
    for (i = 0; i < N; i++) s += x[i] >= 0 && x[i] < 9007199254740992.0;
    CHECK(s == N);
    /* large shape too: NB(1000, 1e-9) has mean 1e12, var 1e21 (1 + 1e9) */
    CHECK(check_moments(mk(PLM_DIST_NEG_BINOMIAL, 1000, 1e-9), 1e12, 1000 * (1e-9 + 1) / 1e-18, x, N, 1) > 1e-4);
}

/* PTRS forced at moderate lambda, against the exact pmf by chi-square (cells with expected count < 5 pooled). */
static double ptrs_chisq_p(double lam_draw, double lam_pmf)
{
    enum { N = 100000, M = 400 };
    static long counts[M];
    double chi = 0, e_pool = 0, o_pool = 0;
    plm_rng r;
    int k, df = 0;
    memset(counts, 0, sizeof counts);
    plm_rng_init(&r, 16, 0);
    for (k = 0; k < N; k++) {
        double v = plm_dist_poisson_ptrs(lam_draw, &r);
        if (v >= 0 && v < M) counts[(int)v]++;
    }
    for (k = 0; k < M; k++) {
        double e = N * gsl_ran_poisson_pdf((unsigned)k, lam_pmf);
        e_pool += e, o_pool += counts[k];
        if (e_pool >= 5) {
            chi += (o_pool - e_pool) * (o_pool - e_pool) / e_pool;
            df++;
            e_pool = o_pool = 0;
        }
    }
    return gsl_cdf_chisq_Q(chi, df - 1);
}

static void test_ptrs_matches_the_poisson_pmf(void)
{
    CHECK(ptrs_chisq_p(10, 10) > 1e-4);
    CHECK(ptrs_chisq_p(57.3, 57.3) > 1e-4);
    CHECK(ptrs_chisq_p(180, 180) > 1e-4);
    CHECK(ptrs_chisq_p(58.5, 57.3) < 1e-4);   /* negative control */
}

static void test_poisson_log_pmf_is_accurate_for_huge_counts(void)
{
    double p[1] = {1e15}, x = 1e15, v;
    /* at the mode, log p = -0.5 log(2 pi lambda) - 1/(12 lambda) + ... (Stirling) */
    v = plm_dist_logpdf1(PLM_DIST_POISSON, p, x);
    CHECK_NEAR(v, -0.5 * log(2 * M_PI * 1e15), 1e-9);
    p[0] = 3.7;
    CHECK_REL(plm_dist_logpdf1(PLM_DIST_POISSON, p, 12), log(gsl_ran_poisson_pdf(12, 3.7)), 1e-12);
}

static void test_parameters_past_the_exact_range_are_refused(void)
{
    plm_ctx ctx;
    plm_dist *d;
    double pp[1] = {2e15}, pb[2] = {1.8e16, 0.5}, pg[1] = {1e-15}, pn[2] = {1, 1e-20};
    CHECK(plm_dist_new(&ctx, PLM_DIST_POISSON, pp, &d) == PLM_EINVAL);
    CHECK(strstr(plm_ctx_errmsg(&ctx), "poisson: lambda must be <= 1e15") != NULL);
    CHECK(plm_dist_new(&ctx, PLM_DIST_BINOMIAL, pb, &d) == PLM_EINVAL);
    CHECK(strstr(plm_ctx_errmsg(&ctx), "binomial: n must be <= 2^53") != NULL);
    CHECK(plm_dist_new(&ctx, PLM_DIST_GEOMETRIC, pg, &d) == PLM_EINVAL);
    CHECK(strstr(plm_ctx_errmsg(&ctx), "geometric: p must be >= 1e-14") != NULL);
    CHECK(plm_dist_new(&ctx, PLM_DIST_NEG_BINOMIAL, pn, &d) == PLM_EINVAL);
    CHECK(strstr(plm_ctx_errmsg(&ctx), "negative_binomial: alpha / beta is too large") != NULL);
}

/* ---- 6. new kinds ---- */

typedef struct tcase {
    plm_dist_kind kind;   /* base kind, or the half kind itself when lo is NAN */
    double p[3], lo, hi;
} tcase;

static const tcase news[] = {
    {PLM_DIST_HALFNORMAL, {1.5}, NAN, NAN},       {PLM_DIST_HALFCAUCHY, {0.7}, NAN, NAN},
    {PLM_DIST_HALFSTUDENT_T, {3, 2}, NAN, NAN},   {PLM_DIST_NORMAL, {1, 2}, -1, 2},
    {PLM_DIST_NORMAL, {0, 1}, 10, INFINITY},      {PLM_DIST_NORMAL, {0, 1}, -INFINITY, -6},
    {PLM_DIST_GAMMA, {2, 1}, 1, 3},               {PLM_DIST_CAUCHY, {0, 1}, 0, INFINITY},
    {PLM_DIST_STUDENT_T, {3, 0, 1}, -INFINITY, -1}, {PLM_DIST_LOGNORMAL, {0, 1}, 0.5, 4},
    {PLM_DIST_EXPONENTIAL, {2}, 1, INFINITY},     {PLM_DIST_BETA, {0.5, 0.5}, 0.1, 0.9},
    {PLM_DIST_LAPLACE, {0, 1}, -1, 30},           {PLM_DIST_WEIBULL, {1.5, 2}, 0.5, INFINITY},
    {PLM_DIST_INV_GAMMA, {3, 2}, 0.5, 2},         {PLM_DIST_LOGISTIC, {0, 1}, 2, 5},
    {PLM_DIST_HALFNORMAL, {1}, 0.5, 3},           {PLM_DIST_UNIFORM, {0, 4}, 1, 2},
    {PLM_DIST_GAMMA, {0.5, 1}, 0, 0.01},          {PLM_DIST_HALFSTUDENT_T, {2.5, 1}, 1, 9},
};

/* GSL's CDF of a base kind, lower (upper = 0) or upper tail, independent of dist.c */
static double gsl_cdf(const tcase *c, double x, int upper)
{
    const double *p = c->p;
    double P, Q;
    switch (c->kind) {
    case PLM_DIST_NORMAL: P = gsl_cdf_gaussian_P(x - p[0], p[1]), Q = gsl_cdf_gaussian_Q(x - p[0], p[1]); break;
    case PLM_DIST_GAMMA: P = gsl_cdf_gamma_P(x, p[0], 1 / p[1]), Q = gsl_cdf_gamma_Q(x, p[0], 1 / p[1]); break;
    case PLM_DIST_CAUCHY: P = gsl_cdf_cauchy_P(x - p[0], p[1]), Q = gsl_cdf_cauchy_Q(x - p[0], p[1]); break;
    case PLM_DIST_STUDENT_T: P = gsl_cdf_tdist_P((x - p[1]) / p[2], p[0]), Q = gsl_cdf_tdist_Q((x - p[1]) / p[2], p[0]); break;
    case PLM_DIST_LOGNORMAL: P = gsl_cdf_lognormal_P(x, p[0], p[1]), Q = gsl_cdf_lognormal_Q(x, p[0], p[1]); break;
    case PLM_DIST_EXPONENTIAL: P = gsl_cdf_exponential_P(x, 1 / p[0]), Q = gsl_cdf_exponential_Q(x, 1 / p[0]); break;
    case PLM_DIST_BETA: P = gsl_cdf_beta_P(x, p[0], p[1]), Q = gsl_cdf_beta_Q(x, p[0], p[1]); break;
    case PLM_DIST_LAPLACE: P = gsl_cdf_laplace_P(x - p[0], p[1]), Q = gsl_cdf_laplace_Q(x - p[0], p[1]); break;
    case PLM_DIST_WEIBULL: P = gsl_cdf_weibull_P(x, p[1], p[0]), Q = gsl_cdf_weibull_Q(x, p[1], p[0]); break;
    case PLM_DIST_INV_GAMMA: P = gsl_cdf_gamma_Q(p[1] / x, p[0], 1), Q = gsl_cdf_gamma_P(p[1] / x, p[0], 1); break;
    case PLM_DIST_LOGISTIC: P = gsl_cdf_logistic_P(x - p[0], p[1]), Q = gsl_cdf_logistic_Q(x - p[0], p[1]); break;
    case PLM_DIST_UNIFORM: P = gsl_cdf_flat_P(x, p[0], p[1]), Q = gsl_cdf_flat_Q(x, p[0], p[1]); break;
    case PLM_DIST_HALFNORMAL: Q = 2 * gsl_cdf_gaussian_Q(x, p[0]), P = 1 - Q; break;
    case PLM_DIST_HALFCAUCHY: Q = 2 * gsl_cdf_cauchy_Q(x, p[0]), P = 1 - Q; break;
    case PLM_DIST_HALFSTUDENT_T: Q = 2 * gsl_cdf_tdist_Q(x / p[1], p[0]), P = 1 - Q; break;
    default: return NAN;
    }
    return upper ? Q : P;
}

static double new_cdf(double x, const void *arg)
{
    const tcase *c = arg;
    if (isnan(c->lo)) return x <= 0 ? 0 : gsl_cdf(c, x, 0);
    if (x <= c->lo) return 0;
    if (x >= c->hi) return 1;
    if (c->lo > 0 && gsl_cdf(c, c->lo, 1) < 0.5)   /* upper tail: ratios of Q keep their digits */
        return (gsl_cdf(c, c->lo, 1) - gsl_cdf(c, x, 1)) / (gsl_cdf(c, c->lo, 1) - gsl_cdf(c, c->hi, 1));
    return (gsl_cdf(c, x, 0) - gsl_cdf(c, c->lo, 0)) / (gsl_cdf(c, c->hi, 0) - gsl_cdf(c, c->lo, 0));
}

static plm_dist *make_new(const tcase *c)
{
    plm_dist *b = mk3(c->kind, c->p[0], c->p[1], c->p[2]);
    return isnan(c->lo) ? b : trunc_of(b, c->lo, c->hi);
}

static double dens(double x, void *arg)
{
    return exp(plm_dist_logpdf(arg, &x));
}

static void test_new_kinds_integrate_to_one_and_sample_from_their_cdf(void)
{
    enum { N = 20000 };
    static double x[N];
    gsl_integration_workspace *w = gsl_integration_workspace_alloc(2000);
    size_t i;
    for (i = 0; i < sizeof news / sizeof *news; i++) {
        const tcase *c = &news[i];
        plm_dist *d = make_new(c);
        gsl_function f = {dens, d};
        double lo, hi, total = NAN, err, m = 0, mean, var, p;
        plm_rng r;
        int j, out = 0;
        CHECK(d != NULL);
        if (!d) continue;
        plm_dist_bounds(d, &lo, &hi);
        if (isinf(lo) && isinf(hi)) gsl_integration_qagi(&f, 1e-11, 1e-10, 2000, w, &total, &err);
        else if (isinf(hi)) gsl_integration_qagiu(&f, lo, 1e-11, 1e-10, 2000, w, &total, &err);
        else if (isinf(lo)) gsl_integration_qagil(&f, hi, 1e-11, 1e-10, 2000, w, &total, &err);
        else gsl_integration_qags(&f, lo, hi, 1e-11, 1e-10, 2000, w, &total, &err);
        if (!(fabs(total - 1) <= 1e-6)) printf("  case %zu integrates to %.12g\n", i, total);
        CHECK_NEAR(total, 1.0, 1e-6);
        plm_rng_init(&r, 17, i);
        plm_dist_sample_n(d, &r, N, x);
        for (j = 0; j < N; j++) out += !(plm_dist_logpdf(d, &x[j]) > -INFINITY), m += x[j];
        m /= N;
        CHECK(out == 0);
        if (plm_dist_mean(NULL, d, &mean) == PLM_OK && plm_dist_var(NULL, d, &var) == PLM_OK && isfinite(var)) {
            if (!(fabs(m - mean) <= 5 * sqrt(var / N))) printf("  case %zu: sample mean %g vs %g\n", i, m, mean);
            CHECK_NEAR(m, mean, 5 * sqrt(var / N));
        }
        p = ks_p(new_cdf, c, x, N);
        if (!(p > 1e-4)) printf("  case %zu: KS p = %g\n", i, p);
        CHECK(p > 1e-4);
    }
    gsl_integration_workspace_free(w);
}

/* Negative control: the KS check must reject truncated-normal draws tested against a 10% wider interval. */
static void test_truncated_ks_rejects_the_wrong_interval(void)
{
    enum { N = 20000 };
    static double x[N];
    tcase wrong = {PLM_DIST_NORMAL, {1, 2}, -1, 2.4};
    plm_rng r;
    plm_rng_init(&r, 18, 0);
    plm_dist_sample_n(trunc_of(mk(PLM_DIST_NORMAL, 1, 2), -1, 2), &r, N, x);
    CHECK(ks_p(new_cdf, &wrong, x, N) < 1e-4);
}

static void test_truncated_normal_deep_in_the_tail(void)
{
    enum { N = 20000 };
    static double x[N];
    plm_dist *d10 = trunc_of(mk(PLM_DIST_NORMAL, 0, 1), 10, INFINITY);
    plm_dist *d40 = trunc_of(mk(PLM_DIST_NORMAL, 2, 0.5), 22, 22.5);   /* z in [40, 41]: Q(40) underflows */
    double v = 10.1, m, s = 0, exact;
    plm_rng r;
    int j, out = 0;
    CHECK(d10 && d40);
    if (!d10 || !d40) return;
    CHECK_REL(d10->c, log(gsl_cdf_ugaussian_Q(10)), 1e-12);                  /* log normaliser, finite */
    CHECK_REL(plm_dist_logpdf(d10, &v), log(gsl_ran_ugaussian_pdf(10.1) / gsl_cdf_ugaussian_Q(10)), 1e-12);
    /* log Q(40) = log phi(40) - log(40) + log(1 - 1/40^2 + 3/40^4 - ...) */
    exact = -800 - 0.5 * log(2 * M_PI) - log(40.0) + log1p(-1.0 / 1600 + 3.0 / 2560000 - 15.0 / 4096000000.0);
    CHECK(isfinite(d40->c));
    CHECK_NEAR(d40->c + log(1 - exp(-40.5)), exact, 1e-9);   /* the mass beyond 41 is e^-40.5 of it */
    plm_rng_init(&r, 19, 0);
    plm_dist_sample_n(d40, &r, N, x);
    for (j = 0; j < N; j++) out += !(x[j] >= 22 && x[j] <= 22.5), s += (x[j] - 2) / 0.5;
    CHECK(out == 0);
    /* mean of z given z > 40 is phi(40) / Q(40) = x + 1/x - 2/x^3 + 10/x^5 - 74/x^7 at x = 40; var ~ 1/40^2 */
    CHECK_NEAR(s / N, 40.0249688472, 5 * (1 / 40.0) / sqrt((double)N));
    CHECK(plm_dist_mean(NULL, d40, &m) == PLM_OK);
    CHECK_NEAR((m - 2) / 0.5, 40.0249688472, 1e-6);
    plm_dist_sample_n(d10, &r, N, x);
    {
        tcase c = {PLM_DIST_NORMAL, {0, 1}, 10, INFINITY};
        CHECK(ks_p(new_cdf, &c, x, N) > 1e-4);
    }
}

static void test_bounds_and_support_of_the_new_kinds(void)
{
    double lo, hi, x;
    plm_dist *d;
    plm_dist_bounds(mk(PLM_DIST_HALFNORMAL, 1, 0), &lo, &hi);
    CHECK(lo == 0 && hi == INFINITY);
    plm_dist_bounds(mk3(PLM_DIST_HALFSTUDENT_T, 3, 1, 0), &lo, &hi);
    CHECK(lo == 0 && hi == INFINITY);
    plm_dist_bounds(trunc_of(mk(PLM_DIST_NORMAL, 0, 1), 0, 5), &lo, &hi);
    CHECK(lo == 0 && hi == 5);
    d = trunc_of(mk(PLM_DIST_GAMMA, 2, 1), -1, 3);
    plm_dist_bounds(d, &lo, &hi);
    CHECK(lo == 0 && hi == 3);
    x = -0.5;
    CHECK(!plm_dist_in_support(d, &x));
    x = 3.5;
    CHECK(!plm_dist_in_support(d, &x));
    x = 2;
    CHECK(plm_dist_in_support(d, &x));
    plm_dist_bounds(trunc_of(mk(PLM_DIST_BETA, 2, 2), -INFINITY, 0.5), &lo, &hi);
    CHECK(lo == 0 && hi == 0.5);
    d = mk(PLM_DIST_FLAT, 0, 0);
    CHECK(d != NULL && plm_dist_info_of(PLM_DIST_FLAT)->improper == 1);
    plm_dist_bounds(d, &lo, &hi);
    CHECK(lo == -INFINITY && hi == INFINITY);
    x = 1e300;
    CHECK(plm_dist_logpdf(d, &x) == 0);
    x = INFINITY;
    CHECK(plm_dist_logpdf(d, &x) == -INFINITY);
    CHECK(plm_dist_mean(NULL, d, &x) == PLM_EDOM);
}

static void test_truncated_refuses_bad_intervals(void)
{
    plm_ctx ctx;
    plm_dist *d, *n = mk(PLM_DIST_NORMAL, 0, 1);
    CHECK(plm_dist_new_truncated(&ctx, n, 2, 1, &d) == PLM_EINVAL);
    CHECK(strstr(plm_ctx_errmsg(&ctx), "truncated: lo must be < hi") != NULL);
    CHECK(plm_dist_new_truncated(&ctx, n, NAN, 1, &d) == PLM_EINVAL);
    CHECK(strcmp(plm_ctx_errmsg(&ctx), "truncated: lo is NaN") == 0);
    CHECK(plm_dist_new_truncated(&ctx, mk(PLM_DIST_GAMMA, 2, 1), -3, -1, &d) == PLM_EINVAL);
    CHECK(strstr(plm_ctx_errmsg(&ctx), "outside the support") != NULL);
    CHECK(plm_dist_new_truncated(&ctx, mk(PLM_DIST_POISSON, 2, 0), 0, 3, &d) == PLM_EINVAL);
    CHECK(strstr(plm_ctx_errmsg(&ctx), "continuous") != NULL);
    CHECK(plm_dist_new_truncated(&ctx, mk(PLM_DIST_GAMMA, 2, 1), 1e5, INFINITY, &d) == PLM_EINVAL);
    CHECK(strstr(plm_ctx_errmsg(&ctx), "no probability") != NULL);
}

int main(void)
{
    RUN(test_log_density_at_a_closed_end_is_finite_limit_or_minus_inf);
    RUN(test_no_kind_gives_plus_inf_or_nan_at_extreme_points);
    RUN(test_tiny_shape_gamma_log_draws_follow_the_law_of_log_x);
    RUN(test_tiny_shape_gamma_draws_are_positive_and_match_the_cdf);
    RUN(test_small_shape_beta_and_inverse_gamma_match_their_cdf);
    RUN(test_subnormal_beta_and_dirichlet_give_valid_values);
    RUN(test_poisson_and_binomial_with_huge_parameters);
    RUN(test_negative_binomial_and_geometric_with_mean_1e12);
    RUN(test_ptrs_matches_the_poisson_pmf);
    RUN(test_poisson_log_pmf_is_accurate_for_huge_counts);
    RUN(test_parameters_past_the_exact_range_are_refused);
    RUN(test_new_kinds_integrate_to_one_and_sample_from_their_cdf);
    RUN(test_truncated_ks_rejects_the_wrong_interval);
    RUN(test_truncated_normal_deep_in_the_tail);
    RUN(test_bounds_and_support_of_the_new_kinds);
    RUN(test_truncated_refuses_bad_intervals);
    return CHECK_DONE();
}
