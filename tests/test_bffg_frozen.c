/* test_bffg_frozen.c -- the frozen auxiliary of pCN parameter moves (plm_bffg_kernel_sde_remake, how 1 and 2;
** bffg_sde.c's sde_frozen): a 2-d diffusion whose drift intercept moves with a parameter p, observed through its
** first coordinate. Kernels remade at another p with B~ and a~ frozen must give, from the cache, the same filter
** (log-likelihood, fused messages) and the same guided paths and weights for the same innovations as the full
** backward filter through the same auxiliary, to rounding; a cache made at another B~ must not be used. Kernels
** remade together for a move equal the same chain built anew at the new parameters. */
#include "check.h"
#include "bffg_chain.h"
#include "plume.h"
#include "bffg_impl.h"

#include <math.h>
#include <string.h>

static plm_ctx ctx;

#define TO 4
static const double ys[TO] = {0.4, -0.3, 0.9, 0.2};

/* dX1 = (-0.5 X1 + 2 X2 + p) dt, dX2 = (-X1 - X2 + 0.5 p + q X1 X1 / 4) dt + 0.6 dW (hypoelliptic, like
** FitzHugh-Nagumo); parameters p, q. */
static plm_sde *make_sde(void)
{
    plm_graph *g = plm_graph_new();
    int x0 = plm_graph_input(g, PLM_GRP_X, 0), x1 = plm_graph_input(g, PLM_GRP_X, 1);
    int p = plm_graph_input(g, PLM_GRP_P, 0), q = plm_graph_input(g, PLM_GRP_P, 1), drift[2], diff[4];
    plm_sde_spec sp;
    plm_sde *s = NULL;
    drift[0] = plm_graph_op(g, PLM_OP_ADD,
                            plm_graph_op(g, PLM_OP_ADD, plm_graph_op(g, PLM_OP_MUL, plm_graph_const(g, -0.5), x0, -1),
                                         plm_graph_op(g, PLM_OP_MUL, plm_graph_const(g, 2), x1, -1), -1),
                            p, -1);
    drift[1] = plm_graph_op(g, PLM_OP_ADD,
                            plm_graph_op(g, PLM_OP_SUB, plm_graph_op(g, PLM_OP_NEG, x0, -1, -1), x1, -1),
                            plm_graph_op(g, PLM_OP_ADD, plm_graph_op(g, PLM_OP_MUL, plm_graph_const(g, 0.5), p, -1),
                                         plm_graph_op(g, PLM_OP_MUL, plm_graph_op(g, PLM_OP_MUL, q, plm_graph_const(g, 0.25), -1),
                                                      plm_graph_op(g, PLM_OP_MUL, x0, x0, -1), -1), -1), -1);
    diff[0] = diff[1] = diff[2] = plm_graph_const(g, 0);
    diff[3] = plm_graph_const(g, 0.6);
    sp.g = g, sp.dim = 2, sp.m = 2, sp.np = 2, sp.diagonal = 0, sp.drift = drift, sp.diff = diff;
    CHECK(plm_sde_new(&ctx, &sp, &s) == PLM_OK);
    return s;
}

static plm_bffg_model *chain(plm_sde *s)
{
    static const double m0[2] = {0.2, -0.1}, P0[4] = {0.3, 0, 0, 0.3}, C[2] = {1, 0}, R[1] = {0.01};
    plm_bffg_model *m;
    plm_bffg_kernel *prior, *obs, *k;
    int t, prev;
    CHECK(plm_bffg_model_new(&ctx, &m) == PLM_OK);
    CHECK(plm_bffg_kernel_linear_gaussian(&ctx, 2, 0, NULL, m0, P0, &prior) == PLM_OK);
    CHECK(plm_bffg_kernel_linear_gaussian(&ctx, 1, 2, C, NULL, R, &obs) == PLM_OK);
    CHECK(plm_bffg_add(&ctx, m, "x0", -1, prior, NULL, &prev) == PLM_OK);
    for (t = 1; t <= TO; t++) {
        double at[2] = {ys[t - 1], 0};
        plm_bffg_sde_opts o = {0.5 * (t - 1), 0.5 * t, 0.01, 0, at, NULL, NULL, NULL};
        CHECK(plm_bffg_kernel_sde(&ctx, s, &o, &k) == PLM_OK);
        prev = bffg_step(&ctx, m, t, prev, k, obs, &ys[t - 1]);
    }
    return m;
}

/* Largest relative difference between the filters and guided draws of models a and b for 3 sets of innovations. */
static double max_diff(const plm_bffg_model *a, const plm_bffg_model *b)
{
    plm_bffg_filter *fa, *fb;
    size_t nz = plm_bffg_nz(a), w = plm_bffg_draw_width(a), l;
    double z[2 * 2 * 50 * TO + 8], ra[16], rb[16], work[256], worst = 0;
    plm_rng r;
    int i, j;
    CHECK(nz <= sizeof z / sizeof *z && w <= 16);
    CHECK(plm_bffg_backward(&ctx, a, NULL, &fa) == PLM_OK);
    CHECK(plm_bffg_backward(&ctx, b, NULL, &fb) == PLM_OK);
    worst = fabs(plm_bffg_filter_loglik(fa) - plm_bffg_filter_loglik(fb)) / (1 + fabs(plm_bffg_filter_loglik(fa)));
    for (i = 0; i < plm_bffg_nnodes(a); i++) {
        const plm_bffg_msg *ma = plm_bffg_message(fa, i), *mb = plm_bffg_message(fb, i);
        if (!ma) continue;
        worst = fmax(worst, fabs(ma->c - mb->c) / (1 + fabs(ma->c)));
        for (j = 0; j < 2; j++) worst = fmax(worst, fabs(ma->v[j] - mb->v[j]) / (1 + fabs(ma->v[j])));
        for (j = 0; j < 4; j++) worst = fmax(worst, fabs(ma->H[j] - mb->H[j]) / (1 + fabs(ma->H[j])));
    }
    plm_rng_init(&r, 99, 0);
    for (int rep = 0; rep < 3; rep++) {
        double la, lb;
        for (l = 0; l < nz; l++) z[l] = plm_rng_normal(&r);
        la = plm_bffg_draw_z(fa, z, ra, work);
        lb = plm_bffg_draw_z(fb, z, rb, work);
        CHECK(isfinite(la) && isfinite(lb));
        worst = fmax(worst, fabs(la - lb) / (1 + fabs(la)));
        for (l = 0; l < w; l++) worst = fmax(worst, fabs(ra[l] - rb[l]) / (1 + fabs(ra[l])));
    }
    return worst;
}

static void test_frozen_cache_equals_the_full_filter(void)
{
    plm_sde *s = make_sde();
    plm_bffg_model *m, *m1, *m0, *fast, *slow, *relin;
    plm_bffg_filter *f;
    double pa[2] = {0.3, 1}, pb[2] = {-0.8, 1.7}, d;
    s->params[0] = pa[0], s->params[1] = pa[1];
    m = chain(s);
    /* at p_a: m1's kernels keep caches (made by its filter), m0's do not */
    CHECK(plm_bffg_model_with(&ctx, m, s, pa, 1, &m1) == PLM_OK);
    CHECK(plm_bffg_model_with(&ctx, m, s, pa, 0, &m0) == PLM_OK);
    CHECK(plm_bffg_backward(&ctx, m1, NULL, &f) == PLM_OK);
    /* at p_b with B~, a~ frozen at p_a: from the caches, and by the full filter */
    CHECK(plm_bffg_model_with(&ctx, m1, s, pb, 2, &fast) == PLM_OK);
    CHECK(plm_bffg_model_with(&ctx, m0, s, pb, 2, &slow) == PLM_OK);
    d = max_diff(fast, slow);
    printf("  frozen cache vs full filter at other parameters: largest relative difference %.2e\n", d);
    CHECK(d < 1e-9);
    /* negative control: the same comparison against kernels relinearised at p_b (another B~: q enters the
    ** Jacobian) must show the difference that the frozen B~ makes */
    CHECK(plm_bffg_model_with(&ctx, m, s, pb, 0, &relin) == PLM_OK);
    d = max_diff(fast, relin);
    printf("  frozen B~ vs B~ relinearised at the new parameters: %.2e\n", d);
    CHECK(d > 1e-4);
}

/* A parameter move remakes its kernels together (plm_bffg_model_with: one evaluation of the Jacobian and drift at
** every linearisation point, siblings sharing the path plan and a~): the filter and the guided draws must be those
** of the same chain built anew at the new parameters, kernel by kernel, to rounding. */
static void test_kernels_remade_together_equal_kernels_made_alone(void)
{
    plm_sde *s = make_sde();
    plm_bffg_model *m, *together, *alone;
    double pa[2] = {0.3, 1}, pb[2] = {-0.8, 1.7}, d;
    s->params[0] = pa[0], s->params[1] = pa[1];
    m = chain(s);
    CHECK(plm_bffg_model_with(&ctx, m, s, pb, 0, &together) == PLM_OK);
    s->params[0] = pb[0], s->params[1] = pb[1];
    alone = chain(s);
    d = max_diff(together, alone);
    printf("  remade together vs made alone at the new parameters: largest relative difference %.2e\n", d);
    CHECK(d < 1e-12);
}

int main(void)
{
    plm_ctx_clear(&ctx);
    RUN(test_frozen_cache_equals_the_full_filter);
    RUN(test_kernels_remade_together_equal_kernels_made_alone);
    return CHECK_DONE();
}
