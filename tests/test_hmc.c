/* test_hmc.c -- NUTS and static HMC on compiled targets against exact posteriors, through the runtime alone. */
#include "check.h"
#include "plume.h"

#include <gsl/gsl_sf_psi.h>

#define OP(g, op, a, b) plm_graph_op(g, PLM_OP_##op, a, b, -1)

/* bivariate normal, unit variances, correlation rho */
static plm_target *corr_normal(double rho)
{
    plm_graph *g = plm_graph_new();
    plm_ctx ctx;
    plm_target *t = NULL;
    int x[2], q, lp;
    x[0] = plm_graph_input(g, PLM_GRP_X, 0);
    x[1] = plm_graph_input(g, PLM_GRP_X, 1);
    q = OP(g, SUB, OP(g, ADD, OP(g, MUL, x[0], x[0]), OP(g, MUL, x[1], x[1])),
           OP(g, MUL, plm_graph_const(g, 2 * rho), OP(g, MUL, x[0], x[1])));
    lp = OP(g, MUL, plm_graph_const(g, -0.5 / (1 - rho * rho)), q);
    if (plm_target_from_graph(&ctx, g, lp, 2, x, NULL, 0, &t)) printf("  target: %s\n", ctx.msg);
    return t;
}

/* u = log x with x ~ gamma(a, b): log p(u) = a u - b e^u (Jacobian e^u included); E[e^u] = a / b */
static plm_target *log_gamma_target(double a, double b)
{
    plm_graph *g = plm_graph_new();
    plm_ctx ctx;
    plm_target *t = NULL;
    int u = plm_graph_input(g, PLM_GRP_X, 0);
    int lp = OP(g, SUB, OP(g, MUL, plm_graph_const(g, a), u), OP(g, MUL, plm_graph_const(g, b), plm_graph_op(g, PLM_OP_EXP, u, -1, -1)));
    if (plm_target_from_graph(&ctx, g, lp, 1, &u, NULL, 0, &t)) printf("  target: %s\n", ctx.msg);
    return t;
}

/* Neal's funnel: v ~ N(0, 3), x | v ~ N(0, e^(v/2)); log p = -v^2/18 - x^2 e^-v / 2 - v/2 */
static plm_target *funnel(void)
{
    plm_graph *g = plm_graph_new();
    plm_ctx ctx;
    plm_target *t = NULL;
    int z[2], v, x, lp;
    z[0] = v = plm_graph_input(g, PLM_GRP_X, 0);
    z[1] = x = plm_graph_input(g, PLM_GRP_X, 1);
    lp = OP(g, MUL, plm_graph_const(g, -1.0 / 18), OP(g, MUL, v, v));
    lp = OP(g, SUB, lp, OP(g, MUL, plm_graph_const(g, 0.5), OP(g, MUL, OP(g, MUL, x, x), plm_graph_op(g, PLM_OP_EXP, plm_graph_op(g, PLM_OP_NEG, v, -1, -1), -1, -1))));
    lp = OP(g, SUB, lp, OP(g, MUL, plm_graph_const(g, 0.5), v));
    if (plm_target_from_graph(&ctx, g, lp, 2, z, NULL, 0, &t)) printf("  target: %s\n", ctx.msg);
    return t;
}

static plm_draws *run(const plm_target *t, const plm_kernel *k, int threads, long warm, long samples, plm_status *st)
{
    plm_mcmc_opts o = {4, warm, samples, 1, 7, threads, NULL};
    plm_draws *D = NULL;
    plm_ctx ctx;
    *st = plm_mcmc_run(&ctx, t, k, &o, &D, NULL);
    if (*st) printf("  mcmc: %s\n", ctx.msg);
    return D;
}

static int col(const plm_draws *D, const char *name)
{
    int i;
    for (i = 0; i < plm_draws_ncols(D); i++)
        if (strcmp(plm_draws_name(D, i), name) == 0) return i;
    return -1;
}

static double column_sum(const plm_draws *D, const char *name)
{
    int c, j = col(D, name);
    size_t i;
    double s = 0;
    for (c = 0; c < plm_draws_nchains(D); c++) {
        const double *x = plm_draws_chain(D, j, c);
        for (i = 0; i < plm_draws_len(D, c); i++) s += x[i];
    }
    return s;
}

/* mean within 4 MCSE of mean, sd within 4 Monte Carlo errors of sd (about sd / sqrt(2 ESS) for near-normal
** draws), R-hat < 1.01 */
static int moments_ok(const plm_draws *D, int j, double mean, double sd)
{
    plm_summary s;
    plm_ctx ctx;
    if (plm_draws_summary(&ctx, D, j, &s)) return 0;
    if (!(fabs(s.mean - mean) <= 4 * s.mcse_mean) || !(fabs(s.sd - sd) <= 4 * s.sd / sqrt(2 * s.ess_bulk)) ||
        !(s.rhat < 1.01)) {
        printf("  column %d: mean %g (mcse %g, want %g), sd %g (want %g), ess %g, rhat %g\n", j, s.mean, s.mcse_mean,
               mean, s.sd, sd, s.ess_bulk, s.rhat);
        return 0;
    }
    return 1;
}

static void test_nuts_matches_correlated_normal_and_mixes_well(void)
{
    plm_target *t = corr_normal(0.9);
    plm_kernel *k;
    plm_ctx ctx;
    plm_status st;
    plm_draws *D;
    plm_summary s;
    CHECK(plm_kernel_nuts(&ctx, NULL, &k) == PLM_OK);
    D = run(t, k, 1, 1000, 1000, &st);
    CHECK(st == PLM_OK && D);
    if (!D) return;
    CHECK(moments_ok(D, 0, 0, 1));
    CHECK(moments_ok(D, 1, 0, 1));
    /* at correlation 0.9 with a diagonal metric NUTS gives about 800 effective draws of 4,000 (seeds vary by
    ** about 10%); random-walk Metropolis gives about 200 per 4,000 on the same target (test_mcmc.c) */
    plm_draws_summary(&ctx, D, 0, &s);
    CHECK(s.ess_bulk > 500);
    CHECK(column_sum(D, "divergent__") == 0);
    /* dual averaging aims the statistic at 0.8 during warm-up; the averaged final step size is smaller than
    ** the last iterates, so sampling runs at or somewhat above the target, as in Stan */
    {
        double a = column_sum(D, "accept_stat__") / 4000;
        CHECK(a > 0.7 && a < 0.97);
    }
}

static void test_nuts_matches_gamma_on_the_log_scale(void)
{
    plm_target *t = log_gamma_target(3, 2);
    plm_kernel *k;
    plm_ctx ctx;
    plm_status st;
    plm_draws *D;
    plm_kernel_nuts(&ctx, NULL, &k);
    D = run(t, k, 1, 500, 2000, &st);
    CHECK(st == PLM_OK && D);
    if (!D) return;
    /* E[log X] = digamma(a) - log b and sd(log X) = sqrt(trigamma(a)) for X ~ gamma(a, b) */
    CHECK(moments_ok(D, 0, gsl_sf_psi(3) - log(2), sqrt(gsl_sf_psi_1(3))));
}

static void test_dense_metric_handles_strong_correlation(void)
{
    plm_target *t = corr_normal(0.99);
    plm_hmc_opts o = {0, 0, 1, 0, 0};
    plm_kernel *k;
    plm_ctx ctx;
    plm_status st;
    plm_draws *D;
    plm_summary s;
    CHECK(plm_kernel_nuts(&ctx, &o, &k) == PLM_OK);
    D = run(t, k, 1, 1000, 1000, &st);
    CHECK(st == PLM_OK && D);
    if (!D) return;
    CHECK(moments_ok(D, 0, 0, 1));
    CHECK(moments_ok(D, 1, 0, 1));
    /* with the covariance learned, the trajectories are short: mean tree depth well under the 5+ that a
    ** unit metric needs at correlation 0.99 */
    CHECK(column_sum(D, "treedepth__") / 4000 < 3.5);
    plm_draws_summary(&ctx, D, 0, &s);
    CHECK(s.ess_bulk > 1000);
}

static void test_static_hmc_matches_correlated_normal(void)
{
    plm_target *t = corr_normal(0.5);
    plm_hmc_opts o = {0, 0, 0, 0, 16};
    plm_kernel *k;
    plm_ctx ctx;
    plm_status st;
    plm_draws *D;
    CHECK(plm_kernel_hmc(&ctx, &o, &k) == PLM_OK);
    D = run(t, k, 1, 1000, 1000, &st);
    CHECK(st == PLM_OK && D);
    if (!D) return;
    CHECK(moments_ok(D, 0, 0, 1));
    CHECK(moments_ok(D, 1, 0, 1));
}

/* Negative control: the same moment check rejects NUTS run on the wrong target (correlation 0.5 draws
** checked against sd 1.3). */
static void test_negative_control_wrong_answer_fails_the_check(void)
{
    plm_target *t = corr_normal(0.5);
    plm_kernel *k;
    plm_ctx ctx;
    plm_status st;
    plm_draws *D;
    plm_kernel_nuts(&ctx, NULL, &k);
    D = run(t, k, 1, 500, 1000, &st);
    CHECK(D != NULL);
    if (D) CHECK(!moments_ok(D, 0, 0, 1.3) && !moments_ok(D, 0, 0.15, 1));
}

static void test_divergences_are_counted_in_the_funnel(void)
{
    plm_target *t = funnel();
    plm_kernel *k;
    plm_ctx ctx;
    plm_status st;
    plm_draws *D;
    plm_kernel_nuts(&ctx, NULL, &k);
    D = run(t, k, 1, 500, 1000, &st);
    CHECK(st == PLM_OK && D);
    if (D) CHECK(column_sum(D, "divergent__") > 0);
}

static void test_nuts_draws_are_identical_for_one_and_two_threads(void)
{
    plm_target *t = corr_normal(0.7);
    plm_kernel *k;
    plm_ctx ctx;
    plm_status s1, s2;
    plm_draws *A, *B;
    int c, j;
    plm_kernel_nuts(&ctx, NULL, &k);
    A = run(t, k, 1, 200, 200, &s1);
    B = run(t, k, 2, 200, 200, &s2);
    CHECK(s1 == PLM_OK && s2 == PLM_OK && A && B);
    if (s1 || s2 || !A || !B) return;
    for (c = 0; c < 4; c++)
        for (j = 0; j < plm_draws_ncols(A); j++)
            CHECK(memcmp(plm_draws_chain(A, j, c), plm_draws_chain(B, j, c), 200 * sizeof(double)) == 0);
}

static double lp_only(const plm_target *t, void *ws, const double *u) { (void)t, (void)ws; return -0.5 * u[0] * u[0]; }

static void test_target_without_gradient_is_refused(void)
{
    static const plm_target_ops ops = {"plain", NULL, NULL, lp_only, NULL};
    plm_target t = {&ops, NULL, 1, NULL};
    plm_kernel *k;
    plm_ctx ctx;
    plm_draws *D;
    plm_mcmc_opts o = {1, 10, 10, 1, 1, 1, NULL};
    plm_kernel_nuts(&ctx, NULL, &k);
    CHECK(plm_mcmc_run(&ctx, &t, k, &o, &D, NULL) == PLM_ENOTSUP);
    CHECK(strstr(ctx.msg, "no gradient") != NULL);
    {
        plm_hmc_opts bad = {1.5, 0, 0, 0, 0};
        CHECK(plm_kernel_nuts(&ctx, &bad, &k) == PLM_EINVAL && strstr(ctx.msg, "delta") != NULL);
    }
}

int main(void)
{
    plm_init();
    RUN(test_nuts_matches_correlated_normal_and_mixes_well);
    RUN(test_nuts_matches_gamma_on_the_log_scale);
    RUN(test_dense_metric_handles_strong_correlation);
    RUN(test_static_hmc_matches_correlated_normal);
    RUN(test_negative_control_wrong_answer_fails_the_check);
    RUN(test_divergences_are_counted_in_the_funnel);
    RUN(test_nuts_draws_are_identical_for_one_and_two_threads);
    RUN(test_target_without_gradient_is_refused);
    return CHECK_DONE();
}
