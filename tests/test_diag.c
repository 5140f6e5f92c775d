/* test_diag.c -- R-hat, bulk/tail ESS, quantiles and weighted summaries on chains with known answers;
** the draws table and its CSV/JSON output. */
#include <stdlib.h>

#include "check.h"
#include "plume.h"

/* nc chains of n AR(1) draws with coefficient rho and unit stationary variance; chain c shifted by shift*c */
static double *ar1(int nc, size_t n, double rho, double shift, uint64_t seed)
{
    double *x = malloc((size_t)nc * n * sizeof *x);
    int c;
    for (c = 0; c < nc; c++) {
        plm_rng r;
        double v = 0, s = sqrt(1 - rho * rho);
        size_t i;
        plm_rng_init(&r, seed, (uint64_t)c);
        v = plm_rng_normal(&r);
        for (i = 0; i < n; i++) {
            v = rho * v + s * plm_rng_normal(&r);
            x[(size_t)c * n + i] = v + shift * c;
        }
    }
    return x;
}

static void test_ess_of_independent_draws_is_about_their_number(void)
{
    double *x = ar1(4, 1000, 0, 0, 1);
    double e = plm_diag_ess_bulk(x, 4, 1000), t = plm_diag_ess_tail(x, 4, 1000), b = plm_diag_ess_basic(x, 4, 1000);
    CHECK(e > 0.8 * 4000 && e < 1.25 * 4000);
    CHECK(t > 0.7 * 4000 && t < 1.4 * 4000);
    CHECK(b > 0.8 * 4000 && b < 1.25 * 4000);
    free(x);
}

/* AR(1) with rho = 0.9: the integrated autocorrelation time is (1 + rho) / (1 - rho) = 19. */
static void test_ess_of_ar1_matches_its_autocorrelation_time(void)
{
    size_t n = 20000;
    double *x = ar1(4, n, 0.9, 0, 2);
    double expect = 4.0 * n / 19.0, e = plm_diag_ess_basic(x, 4, n), eb = plm_diag_ess_bulk(x, 4, n);
    CHECK(e > 0.8 * expect && e < 1.25 * expect);
    CHECK(eb > 0.8 * expect && eb < 1.25 * expect);
    free(x);
}

static void test_rhat_is_one_for_mixed_chains_and_large_for_separated_ones(void)
{
    double *x = ar1(4, 2000, 0.5, 0, 3), *y = ar1(4, 2000, 0.5, 1.0, 4);
    double r1 = plm_diag_rhat(x, 4, 2000), r2 = plm_diag_rhat(y, 4, 2000);
    CHECK(r1 < 1.01);
    CHECK(r2 > 1.1);
    free(x);
    free(y);
}

/* A chain with a trend: split R-hat must notice it even with one chain. */
static void test_split_rhat_detects_a_trend_within_one_chain(void)
{
    double x[2000];
    plm_rng r;
    int i;
    plm_rng_init(&r, 5, 0);
    for (i = 0; i < 2000; i++) x[i] = plm_rng_normal(&r) + i / 500.0;
    CHECK(plm_diag_rhat(x, 1, 2000) > 1.1);
}

static void test_quantiles_follow_type_7(void)
{
    double x[4] = {4, 1, 3, 2};
    CHECK_NEAR(plm_diag_quantile(x, 4, 0.5), 2.5, 1e-15);
    CHECK_NEAR(plm_diag_quantile(x, 4, 0.25), 1.75, 1e-15);
    CHECK_NEAR(plm_diag_quantile(x, 4, 1.0), 4, 1e-15);
    CHECK_NEAR(plm_diag_quantile(x, 4, 0.0), 1, 1e-15);
}

static void test_logsumexp_does_not_overflow(void)
{
    double x[3] = {1000, 1000, -INFINITY}, y[2] = {-INFINITY, -INFINITY};
    CHECK_NEAR(plm_logsumexp(x, 3), 1000 + log(2.0), 1e-12);
    CHECK(plm_logsumexp(y, 2) == -INFINITY);
}

static void test_weighted_summary_with_equal_weights_is_the_plain_summary(void)
{
    double x[5] = {1, 2, 3, 4, 10}, lw[5] = {3, 3, 3, 3, 3}, dead[5];
    plm_summary s;
    plm_ctx ctx;
    int i;
    CHECK(plm_diag_summary_weighted(&ctx, x, lw, 5, &s) == PLM_OK);
    CHECK_NEAR(s.mean, 4, 1e-14);
    CHECK_NEAR(s.ess_bulk, 5, 1e-12);
    CHECK(isnan(s.rhat));
    for (i = 0; i < 5; i++) dead[i] = -INFINITY;
    CHECK(plm_diag_summary_weighted(&ctx, x, dead, 5, &s) == PLM_EDEAD);
}

/* Mean and MCSE of a summary: the true mean (0) lies within 4 MCSE, and MCSE tracks sd/sqrt(ESS). */
static void test_summary_mean_is_within_its_mcse(void)
{
    size_t n = 5000;
    double *x = ar1(4, n, 0.8, 0, 6);
    plm_summary s;
    CHECK(plm_diag_summary(NULL, x, 4, n, &s) == PLM_OK);
    CHECK(fabs(s.mean) < 4 * s.mcse_mean);
    CHECK(s.mcse_mean > 0.5 * sqrt(9.0 / (4.0 * n)) && s.mcse_mean < 2 * sqrt(9.0 / (4.0 * n)));
    CHECK(s.n == 4 * n);
    free(x);
}

static void test_draws_table_pads_late_columns_and_writes_csv(void)
{
    plm_draws *D;
    plm_ctx ctx;
    double row[2] = {1.5, 2};
    char buf[512] = {0};
    FILE *f;
    CHECK(plm_draws_new(&ctx, 2, &D) == PLM_OK);
    CHECK(plm_draws_col(D, "a", 1) == 0);
    CHECK(plm_draws_push(&ctx, D, 0, row, 1, 0) == PLM_OK);
    CHECK(plm_draws_col(D, "b", 1) == 1);
    CHECK(plm_draws_col(D, "b", 0) == 1);
    CHECK(plm_draws_col(D, "c", 0) == -1);
    CHECK(plm_draws_push(&ctx, D, 1, row, 2, 0) == PLM_OK);
    CHECK(plm_draws_push(&ctx, D, 2, row, 2, 0) == PLM_EINVAL);
    CHECK(isnan(plm_draws_chain(D, 1, 0)[0]));
    f = tmpfile();
    CHECK(plm_draws_write_csv(&ctx, D, f) == PLM_OK);
    rewind(f);
    CHECK(fread(buf, 1, sizeof buf - 1, f) > 0);
    fclose(f);
    CHECK(strcmp(buf, "chain,draw,a,b\n1,1,1.5,\n2,1,1.5,2\n") == 0);
}

/* A constant site has no R-hat: before, rank normalisation reported exactly 1.000 beside an ESS of NaN. */
static void test_constant_draws_have_no_rhat_or_ess(void)
{
    double x[400];
    plm_summary s;
    plm_ctx ctx;
    size_t i;
    plm_ctx_clear(&ctx);
    for (i = 0; i < 400; i++) x[i] = 3.5;
    CHECK(plm_diag_summary(&ctx, x, 4, 100, &s) == PLM_OK);
    CHECK(s.mean == 3.5 && s.sd == 0 && s.q50 == 3.5 && s.mcse_mean == 0);
    CHECK(isnan(s.rhat) && isnan(s.ess_bulk) && isnan(s.ess_tail));
}

/* An infinite draw: no moments, so no diagnostics built from them. */
static void test_infinite_draw_gives_no_diagnostics(void)
{
    double *x = ar1(2, 200, 0, 0, 3);
    plm_summary s;
    plm_ctx ctx;
    plm_ctx_clear(&ctx);
    x[17] = INFINITY;
    CHECK(plm_diag_summary(&ctx, x, 2, 200, &s) == PLM_OK);
    CHECK(isnan(s.rhat) && isnan(s.ess_bulk) && isnan(s.mcse_mean));
    free(x);
}

int main(void)
{
    RUN(test_ess_of_independent_draws_is_about_their_number);
    RUN(test_ess_of_ar1_matches_its_autocorrelation_time);
    RUN(test_rhat_is_one_for_mixed_chains_and_large_for_separated_ones);
    RUN(test_split_rhat_detects_a_trend_within_one_chain);
    RUN(test_quantiles_follow_type_7);
    RUN(test_logsumexp_does_not_overflow);
    RUN(test_weighted_summary_with_equal_weights_is_the_plain_summary);
    RUN(test_summary_mean_is_within_its_mcse);
    RUN(test_draws_table_pads_late_columns_and_writes_csv);
    RUN(test_constant_draws_have_no_rhat_or_ess);
    RUN(test_infinite_draw_gives_no_diagnostics);
    return CHECK_DONE();
}
