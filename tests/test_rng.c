/* test_rng.c -- streams are reproducible, distinct, uniform, and usable by GSL; the normal sampler is normal. */
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

static int cmp_dbl(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* plm_rng_normal (the ziggurat) against the normal CDF: Kolmogorov distance below the 0.1% critical value 1.95/sqrt(n),
** and the mass beyond |z| > 3 within 5 standard errors; negative control: a t(5) sample must fail the same test */
static double ks_normal(double *z, size_t n)
{
    size_t i;
    double D = 0;
    qsort(z, n, sizeof *z, cmp_dbl);
    for (i = 0; i < n; i++) {
        double F = 0.5 * erfc(-z[i] / sqrt(2));
        D = fmax(D, fmax(fabs(F - (double)i / n), fabs((double)(i + 1) / n - F)));
    }
    return D;
}

static void test_ziggurat_draws_are_standard_normal(void)
{
    enum { N = 200000 };
    double *z = malloc(N * sizeof *z), tail = 0, p3 = 0.0026997960632601866;
    plm_rng r;
    size_t i;
    plm_rng_init(&r, 11, 0);
    for (i = 0; i < N; i++) {
        z[i] = plm_rng_normal(&r);
        tail += fabs(z[i]) > 3;
    }
    CHECK(ks_normal(z, N) < 1.95 / sqrt(N));
    CHECK_NEAR(tail / N, p3, 5 * sqrt(p3 * (1 - p3) / N));
    for (i = 0; i < N; i++) z[i] = gsl_ran_tdist(&r.gsl, 5) ;
    CHECK(ks_normal(z, N) > 1.95 / sqrt(N));   /* negative control */
    free(z);
}

/* The written-out ziggurat tables are the ones their formulas give (within 4 ulp, whatever the libm), and
** every layer has the same area V: x[i] (f[i+1] - f[i]) = V for i = 1..127. */
static void test_ziggurat_tables_follow_their_formulas(void)
{
    const double R = 3.442619855899, V = 9.91256303526217e-3;
    double x = R, err = 0, area = 0;
    int i;
    CHECK_NEAR(plm_rng_zig_x[0], V / exp(-0.5 * R * R), 4e-16 * plm_rng_zig_x[0]);
    CHECK(plm_rng_zig_x[1] == R && plm_rng_zig_x[128] == 0);
    for (i = 2; i < 128; i++) {
        x = sqrt(-2 * log(V / plm_rng_zig_x[i - 1] + exp(-0.5 * plm_rng_zig_x[i - 1] * plm_rng_zig_x[i - 1])));
        err = fmax(err, fabs(plm_rng_zig_x[i] - x) / x);
    }
    for (i = 0; i <= 128; i++)
        err = fmax(err, fabs(plm_rng_zig_f[i] - exp(-0.5 * plm_rng_zig_x[i] * plm_rng_zig_x[i])) / plm_rng_zig_f[i]);
    CHECK(err < 1e-15);
    for (i = 1; i < 127; i++) area = fmax(area, fabs(plm_rng_zig_x[i] * (plm_rng_zig_f[i + 1] - plm_rng_zig_f[i]) - V) / V);
    CHECK(area < 1e-9);
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
    RUN(test_ziggurat_draws_are_standard_normal);
    RUN(test_ziggurat_tables_follow_their_formulas);
    return CHECK_DONE();
}
