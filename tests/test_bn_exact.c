/* test_bn_exact.c -- exact marginals of grid Bayesian networks (runtime/markov/bn_exact.h) against brute-force
** enumeration of every joint state, on grids small enough to enumerate (3x3, and 3x4 / 4x3 for the
** transposed pass), with and without evidence; impossible evidence and bad input are errors. */
#include "check.h"
#include "plume.h"

#include <stdlib.h>

/* random CPT entries away from 0 and 1, and evidence on every third node (value from a fixed pattern) */
static void random_grid(plm_rng *r, int rows, int cols, double *cpt, int *ev, int observe)
{
    int v, n = rows * cols;
    for (v = 0; v < 4 * n; v++) cpt[v] = 0.05 + 0.9 * plm_rng_uniform(r);
    for (v = 0; v < n; v++) ev[v] = observe && v % 3 == 1 ? (int)(plm_rng_next(r) & 1u) : -1;
}

/* marg[v] = P(x_v = 1 | evidence) and log P(evidence), by summing plm_bn_grid_logp over all 2^n states */
static void brute_force(const plm_bn_grid *g, double *marg, double *logz)
{
    plm_ctx ctx;
    int n = g->rows * g->cols, v, x[16];
    unsigned long s, S = 1ul << n;
    double z = 0, num[16] = {0};
    plm_ctx_clear(&ctx);
    for (s = 0; s < S; s++) {
        double lp, w;
        int consistent = 1;
        for (v = 0; v < n; v++) {
            x[v] = (int)((s >> v) & 1u);
            if (g->evidence && g->evidence[v] >= 0 && g->evidence[v] != x[v]) consistent = 0;
        }
        if (!consistent) continue;
        CHECK(plm_bn_grid_logp(&ctx, g, x, &lp) == PLM_OK);
        w = exp(lp);
        z += w;
        for (v = 0; v < n; v++)
            if (x[v]) num[v] += w;
    }
    for (v = 0; v < n; v++) marg[v] = num[v] / z;
    *logz = log(z);
}

static void compare_with_enumeration(int rows, int cols, int observe, uint64_t seed)
{
    plm_ctx ctx;
    plm_rng r;
    double cpt[64], exact[16], bf[16], lz, lzbf;
    int ev[16], v, n = rows * cols;
    plm_bn_grid g = {rows, cols, cpt, ev};
    plm_ctx_clear(&ctx);
    plm_rng_init(&r, seed, 0);
    random_grid(&r, rows, cols, cpt, ev, observe);
    CHECK(plm_bn_grid_marginals(&ctx, &g, exact, &lz) == PLM_OK);
    brute_force(&g, bf, &lzbf);
    for (v = 0; v < n; v++) CHECK_NEAR(exact[v], bf[v], 1e-12);
    CHECK_NEAR(lz, lzbf, 1e-12);
    if (!observe) CHECK_NEAR(lz, 0, 1e-12);   /* no evidence: P = 1 */
}

static void test_marginals_equal_enumeration_3x3_without_evidence(void)
{
    compare_with_enumeration(3, 3, 0, 1);
}

static void test_marginals_equal_enumeration_3x3_with_evidence(void)
{
    uint64_t seed;
    for (seed = 1; seed <= 20; seed++) compare_with_enumeration(3, 3, 1, seed);
}

/* 3 x 4 runs on the transpose (it is wider than tall), 4 x 3 directly: both must agree with enumeration */
static void test_marginals_equal_enumeration_on_rectangles_both_ways(void)
{
    uint64_t seed;
    for (seed = 1; seed <= 5; seed++) {
        compare_with_enumeration(3, 4, 1, seed);
        compare_with_enumeration(4, 3, 1, seed);
        compare_with_enumeration(1, 4, 1, seed);
        compare_with_enumeration(4, 1, 1, seed);
    }
}

/* a negative control: a CPT entry changed after the exact pass moves the enumerated marginals away from it,
** so the comparison above can see a wrong answer */
static void test_a_perturbed_cpt_is_detected(void)
{
    plm_ctx ctx;
    plm_rng r;
    double cpt[36], exact[9], bf[9], lz, lzbf, worst = 0;
    int ev[9], v;
    plm_bn_grid g = {3, 3, cpt, ev};
    plm_ctx_clear(&ctx);
    plm_rng_init(&r, 7, 0);
    random_grid(&r, 3, 3, cpt, ev, 1);
    CHECK(plm_bn_grid_marginals(&ctx, &g, exact, &lz) == PLM_OK);
    cpt[4 * 4 + 3] = 1 - cpt[4 * 4 + 3];   /* the centre node, both parents 1 */
    brute_force(&g, bf, &lzbf);
    for (v = 0; v < 9; v++) worst = fmax(worst, fabs(exact[v] - bf[v]));
    CHECK(worst > 1e-4);
}

/* a 15 x 15 grid (2^15 frontier states): marginals are probabilities, observed nodes are exact, and the
** evidence's log probability is finite and negative */
static void test_15x15_grid_runs(void)
{
    plm_ctx ctx;
    plm_rng r;
    static double cpt[4 * 225], m[225];
    static int ev[225];
    double lz;
    int v, ok = 1;
    plm_bn_grid g = {15, 15, cpt, ev};
    plm_ctx_clear(&ctx);
    plm_rng_init(&r, 3, 0);
    random_grid(&r, 15, 15, cpt, ev, 1);
    CHECK(plm_bn_grid_marginals(&ctx, &g, m, &lz) == PLM_OK);
    for (v = 0; v < 225; v++) {
        if (!(m[v] >= 0 && m[v] <= 1)) ok = 0;
        if (ev[v] >= 0 && m[v] != ev[v]) ok = 0;
    }
    CHECK(ok);
    CHECK(isfinite(lz) && lz < 0);
}

static void test_errors_name_the_problem(void)
{
    plm_ctx ctx;
    double cpt[36], m[9];
    int ev[9], v, x[9] = {0};
    plm_bn_grid g = {3, 3, cpt, ev};
    for (v = 0; v < 36; v++) cpt[v] = 0.5;
    for (v = 0; v < 9; v++) ev[v] = -1;
    plm_ctx_clear(&ctx);
    cpt[4 * 5 + 2] = 1.5;
    CHECK(plm_bn_grid_marginals(&ctx, &g, m, NULL) == PLM_EINVAL);
    CHECK(strstr(plm_ctx_errmsg(&ctx), "node (2, 3)") && strstr(plm_ctx_errmsg(&ctx), "1.5"));
    cpt[4 * 5 + 2] = NAN;
    CHECK(plm_bn_grid_marginals(&ctx, &g, m, NULL) == PLM_EINVAL);
    cpt[4 * 5 + 2] = 0.5;
    ev[4] = 2;
    CHECK(plm_bn_grid_marginals(&ctx, &g, m, NULL) == PLM_EINVAL);
    CHECK(strstr(plm_ctx_errmsg(&ctx), "evidence 2") != NULL);
    /* node 0 is 1 with probability 0 and observed 1: impossible evidence */
    ev[4] = -1;
    cpt[0] = 0;
    ev[0] = 1;
    CHECK(plm_bn_grid_marginals(&ctx, &g, m, NULL) == PLM_EDOM);
    CHECK(strstr(plm_ctx_errmsg(&ctx), "probability 0") != NULL);
    g.rows = 0;
    CHECK(plm_bn_grid_marginals(&ctx, &g, m, NULL) == PLM_EINVAL);
    {   /* a 25 x 25 grid: 2^25 frontier states, refused rather than allocated */
        static double big[4 * 625];
        for (v = 0; v < 4 * 625; v++) big[v] = 0.5;
        g.rows = 25, g.cols = 25, g.cpt = big, g.evidence = NULL;
        CHECK(plm_bn_grid_marginals(&ctx, &g, m, NULL) == PLM_ENOTSUP);
        CHECK(strstr(plm_ctx_errmsg(&ctx), "25 x 25") != NULL);
    }
    g.cpt = NULL;
    CHECK(plm_bn_grid_marginals(&ctx, &g, m, NULL) == PLM_EINVAL);
    g.rows = 3, g.cols = 3, g.cpt = cpt;
    x[2] = 3;
    cpt[0] = 0.5;
    CHECK(plm_bn_grid_logp(&ctx, &g, x, &m[0]) == PLM_EINVAL);
}

int main(void)
{
    RUN(test_marginals_equal_enumeration_3x3_without_evidence);
    RUN(test_marginals_equal_enumeration_3x3_with_evidence);
    RUN(test_marginals_equal_enumeration_on_rectangles_both_ways);
    RUN(test_a_perturbed_cpt_is_detected);
    RUN(test_15x15_grid_runs);
    RUN(test_errors_name_the_problem);
    return CHECK_DONE();
}
