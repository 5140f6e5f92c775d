/* test_vmath.c -- the vector kernels compute what the scalar ones do: plm_vnormal gives bit for bit the draws
** of plm_rng_normal on each stream (rare paths included) and leaves every stream where the scalar draw leaves
** it; plm_vexp is within 2 ulp of exp, with exp's values at the ends (-inf, overflow, NaN). */
#include <stdlib.h>

#include "check.h"
#include "plume.h"
#include "vmath.h"

#define NSTREAMS 1003   /* not a multiple of the vector width: the tail runs too */
#define DRAWS 400

static void test_vector_normals_equal_scalar_draws(void)
{
    plm_rng *a = malloc(NSTREAMS * sizeof *a), *b = malloc(NSTREAMS * sizeof *b);
    double *x = malloc(NSTREAMS * sizeof *x);
    long same = 0, rare = 0, k;
    size_t i;
    for (i = 0; i < NSTREAMS; i++) {
        plm_rng_init(&a[i], 42, i);
        plm_rng_init(&b[i], 42, i);
    }
    for (k = 0; k < DRAWS; k++) {
        plm_vnormal(b, x, NSTREAMS);
        for (i = 0; i < NSTREAMS; i++) {
            double z = plm_rng_normal(&a[i]);
            same += z == x[i];
            rare += fabs(z) > 3.442619855899;   /* the ziggurat's tail: drawn on the rare path */
        }
    }
    CHECK(same == (long)NSTREAMS * DRAWS);
    CHECK(rare > 50);   /* about 0.06% of 401,200 draws: the rare path was exercised */
    for (i = 0; i < NSTREAMS; i++) CHECK(memcmp(a[i].s, b[i].s, sizeof a[i].s) == 0);
    /* the streams still work as gsl_rngs after the vector draws (the state pointer was left alone) */
    CHECK(gsl_rng_get(&b[7].gsl) == gsl_rng_get(&a[7].gsl));
    free(a), free(b), free(x);
}

/* plm_vnormal_fill: draws from four streams in turn, bit for bit the scalar ones, rare paths in the middle of a
** run included, and each stream left where the scalar draws leave it (lengths not a multiple of four too). */
static void test_filled_normals_equal_scalar_draws_in_turn(void)
{
    enum { N = 20003 };
    plm_rng a[4], b[4];
    double *x = malloc(N * sizeof *x);
    long same = 0, rare = 0;
    int i, rep;
    for (i = 0; i < 4; i++) {
        plm_rng_init(&a[i], 7, 100 + (uint64_t)i);
        plm_rng_init(&b[i], 7, 100 + (uint64_t)i);
    }
    for (rep = 0; rep < 5; rep++) {
        size_t n = rep == 1 ? 3 : N - (size_t)rep;
        plm_vnormal_fill(b, x, n);
        for (size_t j = 0; j < n; j++) {
            double z = plm_rng_normal(&a[j & 3]);
            same += z == x[j];
            rare += fabs(z) > 3.442619855899;
        }
        for (i = 0; i < 4; i++) same -= memcmp(a[i].s, b[i].s, sizeof a[i].s) != 0 ? N : 0;
    }
    CHECK(same == (long)(N + 3 + (N - 2) + (N - 3) + (N - 4)));
    CHECK(rare > 20);
    free(x);
}

static void test_vector_exp_is_within_two_ulp(void)
{
    enum { N = 4099 };
    double *a = malloc(N * sizeof *a), *d = malloc(N * sizeof *d), worst = 0;
    plm_rng r;
    int i;
    plm_rng_init(&r, 3, 0);
    for (i = 0; i < N; i++) a[i] = -740 + 1450 * plm_rng_uniform(&r);
    a[0] = -INFINITY, a[1] = 0, a[2] = 710, a[3] = NAN, a[4] = -746;
    plm_vexp(a, d, N);
    CHECK(d[0] == 0 && d[1] == 1 && d[2] == INFINITY && isnan(d[3]) && d[4] == 0);
    for (i = 5; i < N; i++) {
        double e = exp(a[i]);
        if (e > 0x1p-1022 && e < INFINITY) worst = fmax(worst, fabs(d[i] - e) / (e * 0x1p-52));
        else CHECK(fabs(d[i] - e) <= 0x1p-1074 * 4 || d[i] == e);
    }
    CHECK(worst <= 2);
    /* in place, as the filters call it */
    memcpy(d, a, N * sizeof *a);
    plm_vexp(d, d, N);
    CHECK(d[1] == 1 && fabs(d[100] - exp(a[100])) <= 2 * 0x1p-52 * exp(a[100]));
    free(a), free(d);
}

int main(void)
{
    RUN(test_vector_normals_equal_scalar_draws);
    RUN(test_filled_normals_equal_scalar_draws_in_turn);
    RUN(test_vector_exp_is_within_two_ulp);
    return CHECK_DONE();
}
