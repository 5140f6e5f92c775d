/* test_expr_vec.c -- sums of terms evaluated as vectors over terms of one structure (plm_vsum, and the targets
** of static models built on it) give the log density and gradient of the plain scalar program to 1e-12
** (relative), group exactly the terms that share a structure, never merge terms that differ, and their
** gradients agree with finite differences. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "gmodel.h"
#include "model_graphs.h"

static plm_ctx ctx;

#define OP(g, o, a, b) plm_graph_op(g, PLM_OP_##o, a, b, -1)

static int latent(plm_gmodel *m, const char *name, plm_dist_kind kind, int np, int *p)
{
    plm_symdist d = {kind, 0, np, p};
    int v[1] = {-1};
    CHECK(plm_gmodel_latent(&ctx, m, name, &d, v) == PLM_OK);
    return v[0];
}

/* The vectorised target of m (plm_gmodel_target) against the scalar program of its whole log density
** (plm_target_from_graph on m->lp), at `npoints` random points of scale `scale`: log density and gradient
** equal to 1e-12 relative; the vectorised gradient within 1e-5 of central differences. */
static void compare_paths(plm_gmodel *m, int npoints, double scale)
{
    plm_target *tv = NULL, *ts = NULL;
    void *wv, *ws;
    int d = m->dim, i, k;
    double *u = malloc((size_t)d * sizeof *u), *gv = malloc((size_t)d * sizeof *gv), *gs = malloc((size_t)d * sizeof *gs);
    plm_rng r;
    CHECK(plm_gmodel_target(&ctx, m, &tv) == PLM_OK);
    CHECK(plm_target_from_graph(&ctx, m->g, m->lp, d, m->x, NULL, 0, &ts) == PLM_OK);
    if (!tv || !ts || !u || !gv || !gs) {
        CHECK(0);
        free(u), free(gv), free(gs);
        return;
    }
    wv = plm_target_ws_new(tv), ws = plm_target_ws_new(ts);
    plm_rng_init(&r, 7, 0);
    for (k = 0; k < npoints; k++) {
        double lv, ls, lv2;
        for (i = 0; i < d; i++) u[i] = scale * (2 * plm_rng_uniform(&r) - 1);
        lv = tv->ops->logp_grad(tv, wv, u, gv);
        ls = ts->ops->logp_grad(ts, ws, u, gs);
        lv2 = plm_target_logp(tv, wv, u);
        CHECK(isfinite(ls));
        CHECK_REL(lv, ls, 1e-12);
        CHECK_REL(lv2, ls, 1e-12);
        for (i = 0; i < d; i++) CHECK_REL(gv[i], gs[i], 1e-12);
        if (k == 0) CHECK(plm_target_check_grad(tv, u, 1e-6) < 1e-5);
    }
    plm_target_ws_free(tv, wv), plm_target_ws_free(ts, ws);
    free(u), free(gv), free(gs);
}

/* How plm_vsum groups the sites' terms of m. */
static plm_vsum_info grouping(plm_gmodel *m)
{
    plm_vsum_info info;
    plm_vsum *v = NULL;
    int i, n = 0, *terms = malloc((size_t)m->n * sizeof *terms);
    memset(&info, 0, sizeof info);
    for (i = 0; i < m->n; i++)
        if (m->sites[i].logp >= 0) terms[n++] = m->sites[i].logp;
    if (plm_vsum_compile(&ctx, m->g, n, terms, m->dim, m->x, &v) == PLM_OK) plm_vsum_describe(v, &info);
    free(terms);
    return info;
}

static void test_rats_vector_equals_scalar(void)
{
    double Y[12 * 5], xc[5];
    plm_gmodel *m;
    plm_vsum_info info;
    plm_rng r;
    int i;
    plm_rng_init(&r, 3, 0);
    for (i = 0; i < 5; i++) xc[i] = 8.0 * i - 14;
    for (i = 0; i < 12 * 5; i++) Y[i] = 150 + 10 * plm_rng_normal(&r);
    CHECK((m = mg_rats(&ctx, 12, 5, Y, xc)) != NULL);
    if (!m) return;
    info = grouping(m);
    /* three groups: the alpha priors, the beta priors (one structure, normal(x | mean, sd), split by the two
    ** values its mean and sd take, so that they are uniform operands in each) and the observations; the five
    ** hyperpriors stay scalar */
    CHECK(info.ngroups == 3);
    CHECK(info.ngrouped == 12 + 12 + 60);
    compare_paths(m, 5, 1.5);
}

/* A 3-component Gaussian mixture marginalised into one factor per point (bench/mcmc_peers.lua's gmm3). */
static void test_mixture_vector_equals_scalar(void)
{
    double y[40];
    plm_gmodel *m;
    plm_vsum_info info;
    plm_rng r;
    int i;
    plm_rng_init(&r, 5, 0);
    for (i = 0; i < 40; i++) y[i] = (i % 3) * 3.0 - 2 + plm_rng_normal(&r);
    CHECK((m = mg_gmm3(&ctx, 40, y)) != NULL);
    if (!m) return;
    info = grouping(m);
    CHECK(info.ngroups == 1);
    CHECK(info.ngrouped == 40);
    compare_paths(m, 5, 1.0);
}

/* Terms that look alike but differ: an op, the place of a leaf, a leaf read twice instead of two leaves, a
** constant instead of a site. Each kind forms its own group (or none), and the sum stays exact. */
static void test_differing_structure_is_not_merged(void)
{
    plm_graph *g = plm_graph_new();
    plm_gmodel *m;
    int p[2], x[8], i, a, b;
    plm_gmodel_new(&ctx, g, &m);
    p[0] = plm_graph_const(g, 0), p[1] = plm_graph_const(g, 1);
    for (i = 0; i < 8; i++) {
        char name[32];
        snprintf(name, sizeof name, "x%d", i);
        x[i] = latent(m, name, PLM_DIST_NORMAL, 2, p);   /* group 1: eight normal(0, 1) priors */
    }
    a = x[0], b = x[1];
    for (i = 0; i < 5; i++) {
        int k = plm_graph_const(g, 0.5 + i);
        /* group 2: -(a - k)^2 / 2 ... written as (a - k) * (k - a): 5 terms */
        plm_gmodel_factor(&ctx, m, OP(g, MUL, OP(g, SUB, a, k), OP(g, SUB, k, a)));
        /* group 3: the same with the subtraction's operands swapped in the first factor: (k - a) * (k - a) is
        ** a square of one node, a different structure from a product of two */
        plm_gmodel_factor(&ctx, m, OP(g, MUL, OP(g, SUB, k, b), OP(g, SUB, k, b)));
        /* group 4: log(1 + exp(x[i] * k)), read from varying sites */
        plm_gmodel_factor(&ctx, m, plm_graph_op(g, PLM_OP_SOFTPLUS, OP(g, MUL, x[i + 2], k), -1, -1));
        /* group 5: x[i] * x[i + 1] -- two node leaves, against group 6: x[i] * 3.25 (a constant leaf) */
        plm_gmodel_factor(&ctx, m, OP(g, MUL, x[i + 2], x[i + 3]));
        plm_gmodel_factor(&ctx, m, OP(g, MUL, x[i + 2], plm_graph_const(g, 3.25 + i)));
        /* group 7: a division (not commutative) of the same leaves as group 5 (not x[i+3]^2 in the
        ** denominator: that node is also the prior's of x[i+3], which would then read it as a shared leaf) */
        plm_gmodel_factor(&ctx, m, OP(g, DIV, x[i + 2], OP(g, ADD, plm_graph_const(g, 2),
                                                          plm_graph_op(g, PLM_OP_EXP, x[i + 3], -1, -1))));
    }
    /* three terms of yet another shape: too few for a group, they stay scalar */
    for (i = 0; i < 3; i++) plm_gmodel_factor(&ctx, m, plm_graph_op(g, PLM_OP_TANH, OP(g, ADD, x[i], x[7]), -1, -1));
    CHECK(plm_gmodel_finish(&ctx, m) == PLM_OK);
    {
        plm_vsum_info info = grouping(m);
        CHECK(info.ngroups == 7);
        CHECK(info.ngrouped == 8 + 6 * 5);
    }
    compare_paths(m, 6, 1.2);
}

int main(void)
{
    plm_ctx_clear(&ctx);
    RUN(test_rats_vector_equals_scalar);
    RUN(test_mixture_vector_equals_scalar);
    RUN(test_differing_structure_is_not_merged);
    return CHECK_DONE();
}
