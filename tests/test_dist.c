/* test_dist.c -- every distribution: log density equals GSL's independent density, integrates (sums) to one,
** its sampler matches its CDF (Kolmogorov-Smirnov or chi-square, p > 1e-4 at a fixed seed) and its mean
** (within 5 standard errors); bad parameters are refused with a message naming the parameter. */
#include <gsl/gsl_cdf.h>
#include <gsl/gsl_integration.h>
#include <gsl/gsl_linalg.h>
#include <gsl/gsl_randist.h>
#include <gsl/gsl_vector.h>
#include <stdlib.h>

#include "check.h"
#include "plume.h"

typedef struct kcase {
    plm_dist_kind kind;
    double p[3];
} kcase;

static const kcase cont[] = {
    {PLM_DIST_NORMAL, {1.5, 2.0}},    {PLM_DIST_LOGNORMAL, {0.3, 0.6}}, {PLM_DIST_STUDENT_T, {4.5, -1, 2}},
    {PLM_DIST_CAUCHY, {0.5, 1.5}},    {PLM_DIST_LAPLACE, {-2, 0.7}},    {PLM_DIST_LOGISTIC, {1, 2}},
    {PLM_DIST_EXPONENTIAL, {2.5}},    {PLM_DIST_GAMMA, {2.5, 1.5}},     {PLM_DIST_INV_GAMMA, {3.5, 2}},
    {PLM_DIST_BETA, {2.5, 1.5}},      {PLM_DIST_UNIFORM, {-1, 3}},      {PLM_DIST_WEIBULL, {1.7, 2.2}},
};

static const kcase disc[] = {
    {PLM_DIST_BERNOULLI, {0.3}},      {PLM_DIST_BINOMIAL, {12, 0.35}}, {PLM_DIST_POISSON, {3.7}},
    {PLM_DIST_NEG_BINOMIAL, {2.5, 0.8}}, {PLM_DIST_GEOMETRIC, {0.3}},
};

/* The CDF from GSL, in plume's (Stan's) parameterisation. */
static double cdf(const kcase *c, double x)
{
    const double *p = c->p;
    switch (c->kind) {
    case PLM_DIST_NORMAL: return gsl_cdf_gaussian_P(x - p[0], p[1]);
    case PLM_DIST_LOGNORMAL: return x <= 0 ? 0 : gsl_cdf_lognormal_P(x, p[0], p[1]);
    case PLM_DIST_STUDENT_T: return gsl_cdf_tdist_P((x - p[1]) / p[2], p[0]);
    case PLM_DIST_CAUCHY: return gsl_cdf_cauchy_P(x - p[0], p[1]);
    case PLM_DIST_LAPLACE: return gsl_cdf_laplace_P(x - p[0], p[1]);
    case PLM_DIST_LOGISTIC: return gsl_cdf_logistic_P(x - p[0], p[1]);
    case PLM_DIST_EXPONENTIAL: return gsl_cdf_exponential_P(x, 1 / p[0]);
    case PLM_DIST_GAMMA: return gsl_cdf_gamma_P(x, p[0], 1 / p[1]);
    case PLM_DIST_INV_GAMMA: return x <= 0 ? 0 : gsl_cdf_gamma_Q(p[1] / x, p[0], 1);
    case PLM_DIST_BETA: return gsl_cdf_beta_P(x, p[0], p[1]);
    case PLM_DIST_UNIFORM: return gsl_cdf_flat_P(x, p[0], p[1]);
    case PLM_DIST_WEIBULL: return gsl_cdf_weibull_P(x, p[1], p[0]);
    default: return NAN;
    }
}

/* GSL's density in plume's parameterisation, as an independent check of the closed forms. */
static double gsl_pdf(const kcase *c, double x)
{
    const double *p = c->p;
    switch (c->kind) {
    case PLM_DIST_NORMAL: return gsl_ran_gaussian_pdf(x - p[0], p[1]);
    case PLM_DIST_LOGNORMAL: return gsl_ran_lognormal_pdf(x, p[0], p[1]);
    case PLM_DIST_STUDENT_T: return gsl_ran_tdist_pdf((x - p[1]) / p[2], p[0]) / p[2];
    case PLM_DIST_CAUCHY: return gsl_ran_cauchy_pdf(x - p[0], p[1]);
    case PLM_DIST_LAPLACE: return gsl_ran_laplace_pdf(x - p[0], p[1]);
    case PLM_DIST_LOGISTIC: return gsl_ran_logistic_pdf(x - p[0], p[1]);
    case PLM_DIST_EXPONENTIAL: return gsl_ran_exponential_pdf(x, 1 / p[0]);
    case PLM_DIST_GAMMA: return gsl_ran_gamma_pdf(x, p[0], 1 / p[1]);
    case PLM_DIST_INV_GAMMA: return gsl_ran_gamma_pdf(1 / x, p[0], 1 / p[1]) / (x * x);
    case PLM_DIST_BETA: return gsl_ran_beta_pdf(x, p[0], p[1]);
    case PLM_DIST_UNIFORM: return gsl_ran_flat_pdf(x, p[0], p[1]);
    case PLM_DIST_WEIBULL: return gsl_ran_weibull_pdf(x, p[1], p[0]);
    case PLM_DIST_BERNOULLI: return gsl_ran_bernoulli_pdf((unsigned)x, p[0]);
    case PLM_DIST_BINOMIAL: return gsl_ran_binomial_pdf((unsigned)x, p[1], (unsigned)p[0]);
    case PLM_DIST_POISSON: return gsl_ran_poisson_pdf((unsigned)x, p[0]);
    case PLM_DIST_NEG_BINOMIAL: return gsl_ran_negative_binomial_pdf((unsigned)x, p[1] / (1 + p[1]), p[0]);
    case PLM_DIST_GEOMETRIC: return gsl_ran_geometric_pdf((unsigned)x + 1, p[0]);
    default: return NAN;
    }
}

static int cmpd(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Kolmogorov-Smirnov p-value of sorted samples against cdf (asymptotic Kolmogorov distribution). */
static double ks_p(const kcase *c, double *x, int n)
{
    double D = 0, lam, p = 0;
    int i, k;
    qsort(x, (size_t)n, sizeof *x, cmpd);
    for (i = 0; i < n; i++) {
        double F = cdf(c, x[i]);
        D = fmax(D, fmax(F - (double)i / n, (double)(i + 1) / n - F));
    }
    lam = (sqrt((double)n) + 0.12 + 0.11 / sqrt((double)n)) * D;
    for (k = 1; k < 100; k++) p += 2 * ((k & 1) ? 1 : -1) * exp(-2.0 * k * k * lam * lam);
    return fmin(1, fmax(0, p));
}

static double dens(double x, void *arg)
{
    const kcase *c = arg;
    return exp(plm_dist_logpdf1(c->kind, c->p, x));
}

static void test_continuous_logpdf_equals_gsl_density_and_integrates_to_one(void)
{
    size_t i;
    gsl_integration_workspace *w = gsl_integration_workspace_alloc(2000);
    for (i = 0; i < sizeof cont / sizeof *cont; i++) {
        const kcase *c = &cont[i];
        const plm_dist_info *info = plm_dist_info_of(c->kind);
        gsl_function f = {dens, (void *)c};
        double total, err, x;
        int k;
        for (k = 1; k < 20; k++) {
            x = info->support == PLM_SUPPORT_REAL ? -6 + 0.6 * k : info->support == PLM_SUPPORT_UNIT ? k / 20.0
                : info->support == PLM_SUPPORT_INTERVAL ? -1 + 0.2 * k : 0.3 * k;
            CHECK_REL(plm_dist_logpdf1(c->kind, c->p, x), log(gsl_pdf(c, x)), 1e-10);
        }
        switch (info->support) {
        case PLM_SUPPORT_REAL: gsl_integration_qagi(&f, 1e-10, 1e-10, 2000, w, &total, &err); break;
        case PLM_SUPPORT_POSITIVE: gsl_integration_qagiu(&f, 0, 1e-10, 1e-10, 2000, w, &total, &err); break;
        case PLM_SUPPORT_UNIT: gsl_integration_qags(&f, 0, 1, 1e-10, 1e-10, 2000, w, &total, &err); break;
        default: gsl_integration_qags(&f, c->p[0], c->p[1], 1e-10, 1e-10, 2000, w, &total, &err);
        }
        if (fabs(total - 1) > 1e-6) printf("  %s integrates to %.12g\n", info->name, total);
        CHECK_NEAR(total, 1.0, 1e-6);
        CHECK(plm_dist_logpdf1(c->kind, c->p, NAN) == -INFINITY);
    }
    gsl_integration_workspace_free(w);
}

static void test_continuous_samplers_match_their_cdf_and_mean(void)
{
    enum { N = 20000 };
    static double x[N];
    size_t i;
    for (i = 0; i < sizeof cont / sizeof *cont; i++) {
        const kcase *c = &cont[i];
        plm_dist *d;
        plm_rng r;
        double m = 0, mean, var, p;
        int j;
        CHECK(plm_dist_new(NULL, c->kind, c->p, &d) == PLM_OK);
        plm_rng_init(&r, 2024, i);
        plm_dist_sample_n(d, &r, N, x);
        for (j = 0; j < N; j++) m += x[j];
        m /= N;
        if (plm_dist_mean(NULL, d, &mean) == PLM_OK && plm_dist_var(NULL, d, &var) == PLM_OK && isfinite(var)) {
            if (!(fabs(m - mean) <= 5 * sqrt(var / N))) printf("  %s: sample mean %g vs %g\n", plm_dist_info_of(c->kind)->name, m, mean);
            CHECK_NEAR(m, mean, 5 * sqrt(var / N));
        }
        p = ks_p(c, x, N);
        if (!(p > 1e-4)) printf("  %s: KS p = %g\n", plm_dist_info_of(c->kind)->name, p);
        CHECK(p > 1e-4);
    }
}

/* Negative control: the KS check above must reject a sampler with a 10% wrong scale. */
static void test_ks_check_rejects_a_wrong_sampler(void)
{
    enum { N = 20000 };
    static double x[N];
    kcase truth = {PLM_DIST_NORMAL, {1.5, 2.0}};
    double wrong[2] = {1.5, 2.2};
    plm_rng r;
    int j;
    plm_rng_init(&r, 2024, 0);
    for (j = 0; j < N; j++) x[j] = plm_dist_sample1(PLM_DIST_NORMAL, wrong, &r);
    CHECK(ks_p(&truth, x, N) < 1e-4);
}

static void test_discrete_logpmf_equals_gsl_sums_to_one_and_sampler_matches(void)
{
    enum { N = 50000 };
    size_t i;
    for (i = 0; i < sizeof disc / sizeof *disc; i++) {
        const kcase *c = &disc[i];
        plm_dist *d;
        plm_rng r;
        long counts[200] = {0};
        double total = 0, chi = 0, e_pool = 0, o_pool = 0;
        int k, df = 0;
        CHECK(plm_dist_new(NULL, c->kind, c->p, &d) == PLM_OK);
        for (k = 0; k < 200; k++) {
            double lp = plm_dist_logpdf1(c->kind, c->p, k);
            double g = gsl_pdf(c, k);
            total += exp(lp);
            if (g > 1e-300) CHECK_REL(lp, log(g), 1e-10);
        }
        CHECK_NEAR(total, 1.0, 1e-10);
        CHECK(plm_dist_logpdf1(c->kind, c->p, 1.5) == -INFINITY);
        CHECK(plm_dist_logpdf1(c->kind, c->p, -1) == -INFINITY);
        plm_rng_init(&r, 77, i);
        for (k = 0; k < N; k++) {
            double v;
            plm_dist_sample(d, &r, &v);
            if (v >= 0 && v < 200) counts[(int)v]++;
        }
        /* chi-square with cells of expected count < 5 pooled */
        for (k = 0; k < 200; k++) {
            double e = N * exp(plm_dist_logpdf1(c->kind, c->p, k));
            e_pool += e;
            o_pool += counts[k];
            if (e_pool >= 5) {
                chi += (o_pool - e_pool) * (o_pool - e_pool) / e_pool;
                df++;
                e_pool = o_pool = 0;
            }
        }
        if (df > 1) {
            double p = gsl_cdf_chisq_Q(chi, df - 1);
            if (!(p > 1e-4)) printf("  %s: chi-square p = %g\n", plm_dist_info_of(c->kind)->name, p);
            CHECK(p > 1e-4);
        }
    }
}

static void test_vector_kinds_match_gsl(void)
{
    double alpha[3] = {1.5, 2, 3.5}, x[3] = {0.2, 0.3, 0.5}, probs[3] = {0.2, 0.5, 0.3}, cnt[3] = {2, 5, 3};
    unsigned ucnt[3] = {2, 5, 3};
    double mu[2] = {1, -1}, S[4] = {2, 0.6, 0.6, 1}, y[2] = {0.3, 0.4};
    plm_dist *d;
    gsl_vector_view mv = gsl_vector_view_array(mu, 2), yv = gsl_vector_view_array(y, 2);
    gsl_matrix *L = gsl_matrix_alloc(2, 2);
    gsl_vector *work = gsl_vector_alloc(2);
    double ref;

    CHECK(plm_dist_new_dirichlet(NULL, alpha, 3, &d) == PLM_OK);
    CHECK_REL(plm_dist_logpdf(d, x), gsl_ran_dirichlet_lnpdf(3, alpha, x), 1e-12);
    CHECK(plm_dist_new_multinomial(NULL, 10, probs, 3, &d) == PLM_OK);
    CHECK_REL(plm_dist_logpdf(d, cnt), gsl_ran_multinomial_lnpdf(3, probs, ucnt), 1e-12);
    cnt[0] = 3;
    CHECK(plm_dist_logpdf(d, cnt) == -INFINITY);   /* counts must sum to n */
    CHECK(plm_dist_new_mvnormal(NULL, mu, S, 2, &d) == PLM_OK);
    gsl_matrix_set(L, 0, 0, 2), gsl_matrix_set(L, 0, 1, 0.6), gsl_matrix_set(L, 1, 0, 0.6), gsl_matrix_set(L, 1, 1, 1);
    gsl_linalg_cholesky_decomp1(L);
    gsl_ran_multivariate_gaussian_log_pdf(&yv.vector, &mv.vector, L, &ref, work);
    CHECK_REL(plm_dist_logpdf(d, y), ref, 1e-12);
    gsl_matrix_free(L);
    gsl_vector_free(work);
}

/* Sample means of vector kinds within 5 standard errors; mvnormal also reproduces its covariance. */
static void test_vector_samplers_have_the_right_moments(void)
{
    enum { N = 40000 };
    double alpha[3] = {1.5, 2, 3.5}, probs[3] = {0.2, 0.5, 0.3};
    double mu[2] = {1, -1}, S[4] = {2, 0.6, 0.6, 1};
    plm_dist *dd, *dm, *dn, *dc;
    plm_rng r;
    double sd[3] = {0}, sm[3] = {0}, sn[2] = {0}, cov = 0, md[3], vd[3], mm[3], vm[3], x[3];
    long cat[3] = {0};
    int i, k;
    plm_dist_new_dirichlet(NULL, alpha, 3, &dd);
    plm_dist_new_multinomial(NULL, 7, probs, 3, &dm);
    plm_dist_new_mvnormal(NULL, mu, S, 2, &dn);
    plm_dist_new_categorical(NULL, probs, 3, &dc);
    plm_rng_init(&r, 8, 8);
    for (i = 0; i < N; i++) {
        plm_dist_sample(dd, &r, x);
        for (k = 0; k < 3; k++) sd[k] += x[k];
        plm_dist_sample(dm, &r, x);
        CHECK(x[0] + x[1] + x[2] == 7);
        for (k = 0; k < 3; k++) sm[k] += x[k];
        plm_dist_sample(dn, &r, x);
        sn[0] += x[0], sn[1] += x[1], cov += (x[0] - 1) * (x[1] + 1);
        plm_dist_sample(dc, &r, x);
        cat[(int)x[0]]++;
    }
    plm_dist_mean(NULL, dd, md), plm_dist_var(NULL, dd, vd);
    plm_dist_mean(NULL, dm, mm), plm_dist_var(NULL, dm, vm);
    for (k = 0; k < 3; k++) {
        CHECK_NEAR(sd[k] / N, md[k], 5 * sqrt(vd[k] / N));
        CHECK_NEAR(sm[k] / N, mm[k], 5 * sqrt(vm[k] / N));
        CHECK_NEAR(cat[k] / (double)N, probs[k], 5 * sqrt(probs[k] * (1 - probs[k]) / N));
    }
    CHECK_NEAR(sn[0] / N, 1, 5 * sqrt(2.0 / N));
    CHECK_NEAR(sn[1] / N, -1, 5 * sqrt(1.0 / N));
    /* var of the product of the centred pair is S00 S11 + S01^2 = 2.36 */
    CHECK_NEAR(cov / N, 0.6, 5 * sqrt(2.36 / N));
}

static void test_batch_forms_equal_scalar_forms(void)
{
    double p[2] = {0.5, 1.3}, x[100], lp[100];
    plm_dist *d;
    plm_rng a, b;
    int i;
    plm_dist_new(NULL, PLM_DIST_NORMAL, p, &d);
    plm_rng_init(&a, 1, 1);
    plm_rng_init(&b, 1, 1);
    plm_dist_sample_n(d, &a, 100, x);
    for (i = 0; i < 100; i++) CHECK(x[i] == plm_dist_sample1(PLM_DIST_NORMAL, p, &b));
    plm_dist_logpdf_n(d, 100, x, lp);
    for (i = 0; i < 100; i++) CHECK_REL(lp[i], plm_dist_logpdf(d, &x[i]), 1e-14);
}

static void test_bad_parameters_are_refused_naming_the_parameter(void)
{
    plm_ctx ctx;
    plm_dist *d;
    double p1[2] = {0, -1}, p2[2] = {NAN, 1}, p3[2] = {2, 1}, p4[1] = {1.5}, p5[2] = {3.5, 0.5};
    double probs[2] = {0.5, 0.6}, neg[2] = {-0.1, 1.1}, S[4] = {1, 2, 2, 1}, mu[2] = {0, 0}, S2[4] = {1, 0.5, 0.4, 1};
    CHECK(plm_dist_new(&ctx, PLM_DIST_NORMAL, p1, &d) == PLM_EINVAL);
    CHECK(strcmp(plm_ctx_errmsg(&ctx), "normal: sigma must be > 0 (got -1)") == 0);
    CHECK(plm_dist_new(&ctx, PLM_DIST_NORMAL, p2, &d) == PLM_EINVAL);
    CHECK(strcmp(plm_ctx_errmsg(&ctx), "normal: mu is NaN") == 0);   /* named, and said to be NaN */
    CHECK(plm_dist_new(&ctx, PLM_DIST_UNIFORM, p3, &d) == PLM_EINVAL);
    CHECK(strstr(plm_ctx_errmsg(&ctx), "uniform: b must be > a") != NULL);
    CHECK(plm_dist_new(&ctx, PLM_DIST_BERNOULLI, p4, &d) == PLM_EINVAL);
    CHECK(strstr(plm_ctx_errmsg(&ctx), "bernoulli: p must be in [0, 1]") != NULL);
    CHECK(plm_dist_new(&ctx, PLM_DIST_BINOMIAL, p5, &d) == PLM_EINVAL);
    CHECK(strstr(plm_ctx_errmsg(&ctx), "binomial: n must be a whole number") != NULL);
    CHECK(plm_dist_new_categorical(&ctx, probs, 2, &d) == PLM_EINVAL);
    CHECK(strstr(plm_ctx_errmsg(&ctx), "categorical: probs must sum to 1") != NULL);
    CHECK(plm_dist_new_categorical(&ctx, neg, 2, &d) == PLM_EINVAL);
    CHECK(strstr(plm_ctx_errmsg(&ctx), "categorical: probs[1] must be in [0, 1]") != NULL);
    CHECK(plm_dist_new_mvnormal(&ctx, mu, S, 2, &d) == PLM_EINVAL);
    CHECK(strstr(plm_ctx_errmsg(&ctx), "not positive definite") != NULL);
    CHECK(plm_dist_new_mvnormal(&ctx, mu, S2, 2, &d) == PLM_EINVAL);
    CHECK(strstr(plm_ctx_errmsg(&ctx), "symmetric") != NULL);
    CHECK(plm_dist_new_dirichlet(&ctx, neg, 2, &d) == PLM_EINVAL);
    CHECK(strstr(plm_ctx_errmsg(&ctx), "dirichlet: alpha[1] must be > 0") != NULL);
}

/* Edge values give finite or -inf densities, never NaN. */
static void test_support_edges_never_give_nan(void)
{
    double pb[2] = {1, 3}, pg[2] = {1, 2}, pbern0[1] = {0}, ppois0[1] = {0};
    CHECK_NEAR(plm_dist_logpdf1(PLM_DIST_BETA, pb, 0), log(3.0), 1e-14);   /* Beta(1,3) at 0: density 3 */
    CHECK(plm_dist_logpdf1(PLM_DIST_BETA, pb, 1) == -INFINITY);
    CHECK_NEAR(plm_dist_logpdf1(PLM_DIST_GAMMA, pg, 0), log(2.0), 1e-14);
    CHECK(plm_dist_logpdf1(PLM_DIST_BERNOULLI, pbern0, 0) == 0);
    CHECK(plm_dist_logpdf1(PLM_DIST_BERNOULLI, pbern0, 1) == -INFINITY);
    CHECK(plm_dist_logpdf1(PLM_DIST_POISSON, ppois0, 0) == 0);
    CHECK(plm_dist_logpdf1(PLM_DIST_POISSON, ppois0, 2) == -INFINITY);
    CHECK(plm_dist_logpdf1(PLM_DIST_NORMAL, pb, INFINITY) == -INFINITY);
}

static void test_normal_logpdf_at_half_is_the_textbook_value(void)
{
    double p[2] = {0, 1};
    CHECK_NEAR(plm_dist_logpdf1(PLM_DIST_NORMAL, p, 0.5), -1.0439385332046727, 1e-15);
}

int main(void)
{
    RUN(test_normal_logpdf_at_half_is_the_textbook_value);
    RUN(test_continuous_logpdf_equals_gsl_density_and_integrates_to_one);
    RUN(test_continuous_samplers_match_their_cdf_and_mean);
    RUN(test_ks_check_rejects_a_wrong_sampler);
    RUN(test_discrete_logpmf_equals_gsl_sums_to_one_and_sampler_matches);
    RUN(test_vector_kinds_match_gsl);
    RUN(test_vector_samplers_have_the_right_moments);
    RUN(test_batch_forms_equal_scalar_forms);
    RUN(test_bad_parameters_are_refused_naming_the_parameter);
    RUN(test_support_edges_never_give_nan);
    return CHECK_DONE();
}
