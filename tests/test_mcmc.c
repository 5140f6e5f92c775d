/* test_mcmc.c -- targets compiled from graphs and the MCMC chain driver with the random-walk kernel,
** through the runtime alone (no Lua). */
#include "check.h"
#include "plume.h"

/* A bivariate normal with unit variances and correlation rho = data[0]:
** log p(x) = -(x0^2 - 2 rho x0 x1 + x1^2) / (2 (1 - rho^2)) (unnormalised). */
static plm_target *corr_normal(double rho, int *status)
{
    plm_graph *g = plm_graph_new();
    plm_ctx ctx;
    plm_target *t = NULL;
    int x[2], r, q, lp;
    double data[1] = {rho};
    x[0] = plm_graph_input(g, PLM_GRP_X, 0);
    x[1] = plm_graph_input(g, PLM_GRP_X, 1);
    r = plm_graph_input(g, PLM_GRP_P, 0);
    q = plm_graph_op(g, PLM_OP_ADD, plm_graph_op(g, PLM_OP_MUL, x[0], x[0], -1),
                     plm_graph_op(g, PLM_OP_MUL, x[1], x[1], -1), -1);
    q = plm_graph_op(g, PLM_OP_SUB, q,
                     plm_graph_op(g, PLM_OP_MUL, plm_graph_const(g, 2),
                                  plm_graph_op(g, PLM_OP_MUL, r, plm_graph_op(g, PLM_OP_MUL, x[0], x[1], -1), -1), -1), -1);
    lp = plm_graph_op(g, PLM_OP_DIV, plm_graph_op(g, PLM_OP_NEG, q, -1, -1),
                      plm_graph_op(g, PLM_OP_MUL, plm_graph_const(g, 2),
                                   plm_graph_op(g, PLM_OP_SUB, plm_graph_const(g, 1), plm_graph_op(g, PLM_OP_MUL, r, r, -1), -1), -1), -1);
    *status = plm_target_from_graph(&ctx, g, lp, 2, x, data, 1, &t);
    return t;
}

static void test_graph_target_logp_and_gradient_are_exact(void)
{
    int st;
    plm_target *t = corr_normal(0.6, &st);
    double u[2] = {0.3, -1.2}, g[2], lp;
    void *ws;
    CHECK(st == PLM_OK && t && t->ops->logp_grad);
    if (!t) return;
    ws = plm_target_ws_new(t);
    lp = plm_target_logp(t, ws, u);
    CHECK_NEAR(lp, -(0.09 + 2 * 0.6 * 0.36 + 1.44) / (2 * 0.64), 1e-14);
    CHECK_NEAR(t->ops->logp_grad(t, ws, u, g), lp, 1e-14);
    CHECK_NEAR(g[0], -(0.3 - 0.6 * -1.2) / 0.64, 1e-13);
    CHECK_NEAR(g[1], -(-1.2 - 0.6 * 0.3) / 0.64, 1e-13);
    CHECK(plm_target_check_grad(t, u, 1e-5) < 1e-7);
    plm_target_ws_free(t, ws);
}

static void test_graph_target_refuses_unbound_inputs(void)
{
    plm_graph *g = plm_graph_new();
    plm_ctx ctx;
    plm_target *t;
    int x = plm_graph_input(g, PLM_GRP_X, 0);
    int lp = plm_graph_op(g, PLM_OP_MUL, x, plm_graph_input(g, PLM_GRP_P, 3), -1);
    CHECK(plm_target_from_graph(&ctx, g, lp, 1, &x, NULL, 0, &t) == PLM_EINVAL);
    CHECK(strstr(ctx.msg, "datum 4") != NULL);
    lp = plm_graph_op(g, PLM_OP_ADD, x, plm_graph_draw(g, PLM_OP_STDNORMAL, 0, 0, NULL), -1);
    CHECK(plm_target_from_graph(&ctx, g, lp, 1, &x, NULL, 0, &t) == PLM_EINVAL);
    CHECK(strstr(ctx.msg, "random draws") != NULL);
}

static plm_draws *run(const plm_target *t, const plm_kernel *k, int threads, long samples, plm_status *st, plm_ctx *ctx)
{
    plm_mcmc_opts o = {4, 1000, samples, 1, 42, threads, NULL};
    plm_draws *D = NULL;
    double acc;
    *st = plm_mcmc_run(ctx, t, k, &o, &D, &acc);
    if (*st && *st != PLM_EINTR) printf("  mcmc: %s\n", ctx->msg);
    return D;
}

/* Mean within 4 MCSE of 0, and sd within 4 of its Monte Carlo errors of 1 (for a normal, the sd of an
** estimated sd is about sd / sqrt(2 ESS)), and R-hat < 1.01, for each coordinate; returns how many failed. */
static int moments_off(const plm_draws *D)
{
    int i, bad = 0;
    for (i = 0; i < 2; i++) {
        plm_summary s;
        plm_ctx ctx;
        if (plm_draws_summary(&ctx, D, i, &s)) return 99;
        if (!(fabs(s.mean) <= 4 * s.mcse_mean)) bad++;
        if (!(fabs(s.sd - 1) <= 4 * s.sd / sqrt(2 * s.ess_bulk))) bad++;
        if (!(s.rhat < 1.01)) bad++;
    }
    return bad;
}

static void test_rwmh_matches_correlated_normal_within_mcse(void)
{
    int st0;
    plm_target *t = corr_normal(0.8, &st0);
    plm_kernel *k;
    plm_ctx ctx;
    plm_status st;
    plm_draws *D;
    CHECK(plm_kernel_rwmh(&ctx, 0, &k) == PLM_OK);
    D = run(t, k, 1, 5000, &st, &ctx);
    CHECK(st == PLM_OK && D);
    if (!D) return;
    CHECK(plm_draws_nchains(D) == 4 && plm_draws_len(D, 0) == 5000);
    CHECK(plm_draws_ncols(D) == 4 && strcmp(plm_draws_name(D, 0), "x[1]") == 0 &&
          strcmp(plm_draws_name(D, 2), "lp__") == 0);
    CHECK(moments_off(D) == 0);
}

/* Negative control: a kernel that accepts every proposal samples the random walk, not the target, and the
** same moment check must reject it. */
static plm_status always_accept(const plm_kernel *k, void *state, plm_ctx *ctx, const plm_target *t, void *ws,
                                plm_rng *r, double *u, double *lp, double *stat, double *extra)
{
    int i;
    (void)k, (void)state, (void)ctx, (void)extra;
    for (i = 0; i < t->dim; i++) u[i] += 0.5 * plm_rng_normal(r);
    *lp = plm_target_logp(t, ws, u);
    *stat = 1;
    return PLM_OK;
}
static void *no_state(const plm_kernel *k, const plm_target *t) { (void)k, (void)t; return malloc(1); }

static void test_negative_control_broken_kernel_fails_the_moment_check(void)
{
    static const plm_kernel_ops broken_ops = {"broken", 0, NULL, no_state, free, always_accept, NULL};
    plm_kernel broken = {&broken_ops, NULL};
    int st0;
    plm_target *t = corr_normal(0.8, &st0);
    plm_ctx ctx;
    plm_status st;
    plm_draws *D = run(t, &broken, 1, 2000, &st, &ctx);
    CHECK(st == PLM_OK && D);
    if (D) CHECK(moments_off(D) > 0);
}

static void test_draws_are_identical_for_one_and_two_threads(void)
{
    int st0, c, i;
    plm_target *t = corr_normal(0.5, &st0);
    plm_kernel *k;
    plm_ctx ctx;
    plm_status st1, st2;
    plm_draws *A, *B;
    plm_kernel_rwmh(&ctx, 0, &k);
    A = run(t, k, 1, 500, &st1, &ctx);
    B = run(t, k, 2, 500, &st2, &ctx);
    CHECK(st1 == PLM_OK && st2 == PLM_OK && A && B);
    if (st1 || st2 || !A || !B) return;
    for (c = 0; c < 4; c++)
        for (i = 0; i < 4; i++)
            CHECK(memcmp(plm_draws_chain(A, i, c), plm_draws_chain(B, i, c), 500 * sizeof(double)) == 0);
}

static void test_interrupt_stops_every_chain(void)
{
    int st0;
    plm_target *t = corr_normal(0.5, &st0);
    plm_kernel *k;
    plm_ctx ctx;
    plm_status st;
    plm_draws *D;
    plm_kernel_rwmh(&ctx, 0, &k);
    plm_interrupt();
    D = run(t, k, 2, 1000000000L / 1000, &st, &ctx);
    plm_interrupt_clear();
    CHECK(st == PLM_EINTR);
    CHECK(D && plm_draws_len(D, 0) == 0);
}

static void test_impossible_start_names_the_chain(void)
{
    int st0;
    plm_target *t = corr_normal(0.5, &st0);
    plm_kernel *k;
    plm_ctx ctx;
    plm_draws *D;
    double init[8] = {0, 0, 0, 0, 0, 0, NAN, 0};
    plm_mcmc_opts o = {4, 10, 10, 1, 1, 1, init};
    plm_kernel_rwmh(&ctx, 0, &k);
    CHECK(plm_mcmc_run(&ctx, t, k, &o, &D, NULL) == PLM_EDEAD);
    CHECK(strstr(ctx.msg, "chain 4") != NULL);
    CHECK(plm_kernel_rwmh(&ctx, 1.5, &k) == PLM_EINVAL);
}

int main(void)
{
    plm_init();
    RUN(test_graph_target_logp_and_gradient_are_exact);
    RUN(test_graph_target_refuses_unbound_inputs);
    RUN(test_rwmh_matches_correlated_normal_within_mcse);
    RUN(test_negative_control_broken_kernel_fails_the_moment_check);
    RUN(test_draws_are_identical_for_one_and_two_threads);
    RUN(test_interrupt_stops_every_chain);
    RUN(test_impossible_start_names_the_chain);
    return CHECK_DONE();
}
