/* test_transform.c -- the unconstrained-scale transforms MH proposes on: each maps the real line into its
** interval and back, and its log Jacobian equals log |dx/du| computed by central finite differences. */
#include <math.h>

#include "check.h"
#include "transform.h"

static const double lo_hi[][2] = {
    {-INFINITY, INFINITY}, {0, INFINITY}, {2.5, INFINITY}, {-INFINITY, 3}, {0, 1}, {-2, 7}, {1e-3, 2e-3}};
static const double us[] = {-30, -5, -1.3, -0.2, 0, 0.7, 2, 6, 30};

static void test_round_trip_and_values_inside_the_interval(void)
{
    size_t i, j;
    for (i = 0; i < sizeof lo_hi / sizeof lo_hi[0]; i++)
        for (j = 0; j < sizeof us / sizeof us[0]; j++) {
            double lo = lo_hi[i][0], hi = lo_hi[i][1], lj, u = us[j];
            double x = plm_transform_from_free(lo, hi, u, &lj);
            CHECK(x >= lo && x <= hi);
            if (fabs(u) <= 6) {   /* away from where x rounds to an endpoint */
                CHECK(x > lo && x < hi);
                CHECK_NEAR(plm_transform_to_free(lo, hi, x), u, 1e-9 * fmax(1, fabs(u)));
            }
        }
}

static void test_log_jacobian_matches_finite_differences(void)
{
    size_t i, j;
    for (i = 0; i < sizeof lo_hi / sizeof lo_hi[0]; i++)
        for (j = 0; j < sizeof us / sizeof us[0]; j++) {
            double lo = lo_hi[i][0], hi = lo_hi[i][1], u = us[j], h = 1e-6, lj, d;
            if (fabs(u) > 6) continue;
            plm_transform_from_free(lo, hi, u, &lj);
            d = (plm_transform_from_free(lo, hi, u + h, &(double){0}) - plm_transform_from_free(lo, hi, u - h, &(double){0})) / (2 * h);
            CHECK_NEAR(lj, log(fabs(d)), 1e-6);
        }
}

/* Negative control: the Jacobian of the logit without the interval's width is detectably wrong. */
static void test_finite_difference_check_sees_a_missing_width(void)
{
    double lj, h = 1e-6, d;
    plm_transform_from_free(-2, 7, 0.3, &lj);
    d = (plm_transform_from_free(-2, 7, 0.3 + h, &(double){0}) - plm_transform_from_free(-2, 7, 0.3 - h, &(double){0})) / (2 * h);
    CHECK(fabs((lj - log(9)) - log(d)) > 1);
}

static void test_large_arguments_stay_finite(void)
{
    double lj;
    CHECK(plm_transform_from_free(0, 1, 800, &lj) == 1 && isfinite(lj));
    CHECK(plm_transform_from_free(0, 1, -800, &lj) == 0 && isfinite(lj));
    CHECK(isfinite(plm_transform_from_free(0, INFINITY, 700, &lj)) && lj == 700);
}

int main(void)
{
    RUN(test_round_trip_and_values_inside_the_interval);
    RUN(test_log_jacobian_matches_finite_differences);
    RUN(test_finite_difference_check_sees_a_missing_width);
    RUN(test_large_arguments_stay_finite);
    return CHECK_DONE();
}
