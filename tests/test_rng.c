/* test_rng.c -- streams are reproducible, distinct, uniform, and usable by GSL. */
#include <gsl/gsl_cdf.h>
#include <gsl/gsl_randist.h>

#include "check.h"
#include "plume.h"

static void test_same_seed_and_stream_give_same_sequence(void)
{
    plm_rng a, b;
    int i;
    plm_rng_init(&a, 42, 7);
    plm_rng_init(&b, 42, 7);
    for (i = 0; i < 1000; i++) CHECK(plm_rng_next(&a) == plm_rng_next(&b));
}

static void test_neighbouring_streams_and_seeds_differ(void)
{
    plm_rng a, b, c;
    int i, same_ab = 0, same_ac = 0;
    plm_rng_init(&a, 1, 0);
    plm_rng_init(&b, 1, 1);
    plm_rng_init(&c, 2, 0);
    for (i = 0; i < 1000; i++) {
        uint64_t x = plm_rng_next(&a);
        same_ab += x == plm_rng_next(&b);
        same_ac += x == plm_rng_next(&c);
    }
    CHECK(same_ab == 0);
    CHECK(same_ac == 0);
}

/* Correlation between streams s and s+1 over 1e5 uniforms: |r| < 4/sqrt(n) (4 standard errors). */
static void test_adjacent_streams_are_uncorrelated(void)
{
    plm_rng a, b;
    double sx = 0, sy = 0, sxy = 0, sxx = 0, syy = 0, r;
    int i, n = 100000;
    plm_rng_init(&a, 9, 100);
    plm_rng_init(&b, 9, 101);
    for (i = 0; i < n; i++) {
        double x = plm_rng_uniform(&a), y = plm_rng_uniform(&b);
        sx += x, sy += y, sxy += x * y, sxx += x * x, syy += y * y;
    }
    r = (sxy - sx * sy / n) / sqrt((sxx - sx * sx / n) * (syy - sy * sy / n));
    CHECK(fabs(r) < 4 / sqrt((double)n));
}

/* Chi-square over 64 equal bins of 640,000 uniforms: p > 1e-4 at this fixed seed; every draw in (0, 1). */
static void test_uniform_passes_chi_square(void)
{
    plm_rng r;
    long bins[64] = {0};
    int i, n = 640000, inside = 1;
    double chi = 0, e = n / 64.0;
    plm_rng_init(&r, 123, 0);
    for (i = 0; i < n; i++) {
        double u = plm_rng_uniform(&r);
        inside &= u > 0 && u < 1;
        bins[(int)(u * 64)]++;
    }
    for (i = 0; i < 64; i++) chi += (bins[i] - e) * (bins[i] - e) / e;
    CHECK(inside);
    CHECK(gsl_cdf_chisq_Q(chi, 63) > 1e-4);
}

/* plm_rng_uint(7) hits every value with frequency 1/7 (chi-square, p > 1e-4). */
static void test_uint_is_unbiased(void)
{
    plm_rng r;
    long c[7] = {0};
    int i, n = 700000;
    double chi = 0;
    plm_rng_init(&r, 5, 5);
    for (i = 0; i < n; i++) c[plm_rng_uint(&r, 7)]++;
    for (i = 0; i < 7; i++) chi += (c[i] - n / 7.0) * (c[i] - n / 7.0) / (n / 7.0);
    CHECK(gsl_cdf_chisq_Q(chi, 6) > 1e-4);
}

/* GSL samplers draw from the stream: the same stream gives the same gaussians, and they have unit variance. */
static void test_gsl_samplers_use_the_stream(void)
{
    plm_rng a, b;
    double s2 = 0;
    int i, n = 200000;
    plm_rng_init(&a, 3, 1);
    plm_rng_init(&b, 3, 1);
    for (i = 0; i < 100; i++) CHECK(gsl_ran_gaussian(&a.gsl, 1.0) == gsl_ran_gaussian(&b.gsl, 1.0));
    for (i = 0; i < n; i++) {
        double z = plm_rng_normal(&a);
        s2 += z * z;
    }
    /* var(z^2) = 2: the mean of n squares is within 4 sqrt(2/n) of 1 */
    CHECK_NEAR(s2 / n, 1.0, 4 * sqrt(2.0 / n));
}

static void test_copy_continues_the_same_sequence(void)
{
    plm_rng a, b;
    int i;
    plm_rng_init(&a, 11, 2);
    for (i = 0; i < 10; i++) plm_rng_next(&a);
    plm_rng_copy(&b, &a);
    for (i = 0; i < 100; i++) CHECK(plm_rng_next(&a) == plm_rng_next(&b));
    CHECK(b.gsl.state == b.s);
}

int main(void)
{
    RUN(test_same_seed_and_stream_give_same_sequence);
    RUN(test_neighbouring_streams_and_seeds_differ);
    RUN(test_adjacent_streams_are_uncorrelated);
    RUN(test_uniform_passes_chi_square);
    RUN(test_uint_is_unbiased);
    RUN(test_gsl_samplers_use_the_stream);
    RUN(test_copy_continues_the_same_sequence);
    return CHECK_DONE();
}
