/* model_graphs.h -- static models built as plume's tracer builds them from their Lua programs, for
** tests/test_expr_vec.c (the vectorised target against the scalar program) and bench/grad_rate.c (the speed of
** both): BUGS rats and the 3-component Gaussian mixture of bench/mcmc_peers.lua. The data come from the caller.
** Each builder returns the finished model, or NULL with the first failure's message on ctx. */
#ifndef PLM_TESTS_MODEL_GRAPHS_H
#define PLM_TESTS_MODEL_GRAPHS_H

#include <math.h>
#include <stdio.h>

#include "gmodel.h"

#define MG_OP(g, o, a, b) plm_graph_op(g, PLM_OP_##o, a, b, -1)

/* A latent site of distribution kind with the np parameter nodes p; its node. *st keeps the first failure. */
static inline int mg_latent(plm_ctx *ctx, plm_gmodel *m, int *st, const char *name, plm_dist_kind kind, int np, int *p)
{
    plm_symdist d = {kind, 0, np, p};
    int v[1] = {-1}, s = plm_gmodel_latent(ctx, m, name, &d, v);
    if (!*st) *st = s;
    return v[0];
}

/* BUGS rats: Y[i,j] ~ normal(alpha[i] + beta[i] * xc[j], sigma), alpha[i] ~ normal(alpha.c, 1/sqrt(alpha.tau)),
** beta[i] ~ normal(beta.c, 1/sqrt(beta.tau)), sigma = 1/sqrt(tau.c); N rats, T times, Y row-major (N x T), xc the
** centred times. xc[j] is made after beta[i] for i = 0 and before it afterwards: hash-consing orders the product's
** arguments differently, and a grouping of the terms must still see one structure. */
static inline plm_gmodel *mg_rats(plm_ctx *ctx, int N, int T, const double *Y, const double *xc)
{
    plm_graph *g = plm_graph_new();
    plm_gmodel *m;
    int p[2], ac, bc, at, bt, tc, sigma, sa, sb, i, j, st = 0;
    if (plm_gmodel_new(ctx, g, &m)) return NULL;
    p[0] = plm_graph_const(g, 0), p[1] = plm_graph_const(g, 1000);
    ac = mg_latent(ctx, m, &st, "alpha.c", PLM_DIST_NORMAL, 2, p);
    bc = mg_latent(ctx, m, &st, "beta.c", PLM_DIST_NORMAL, 2, p);
    p[0] = p[1] = plm_graph_const(g, 0.001);
    at = mg_latent(ctx, m, &st, "alpha.tau", PLM_DIST_GAMMA, 2, p);
    bt = mg_latent(ctx, m, &st, "beta.tau", PLM_DIST_GAMMA, 2, p);
    tc = mg_latent(ctx, m, &st, "tau.c", PLM_DIST_GAMMA, 2, p);
    sigma = MG_OP(g, DIV, plm_graph_const(g, 1), plm_graph_op(g, PLM_OP_SQRT, tc, -1, -1));
    sa = MG_OP(g, DIV, plm_graph_const(g, 1), plm_graph_op(g, PLM_OP_SQRT, at, -1, -1));
    sb = MG_OP(g, DIV, plm_graph_const(g, 1), plm_graph_op(g, PLM_OP_SQRT, bt, -1, -1));
    for (i = 0; i < N; i++) {
        char name[32];
        int a, b;
        snprintf(name, sizeof name, "alpha[%d]", i + 1);
        p[0] = ac, p[1] = sa;
        a = mg_latent(ctx, m, &st, name, PLM_DIST_NORMAL, 2, p);
        snprintf(name, sizeof name, "beta[%d]", i + 1);
        p[0] = bc, p[1] = sb;
        b = mg_latent(ctx, m, &st, name, PLM_DIST_NORMAL, 2, p);
        for (j = 0; j < T; j++) {
            plm_symdist d = {PLM_DIST_NORMAL, 0, 2, p};
            int y = plm_graph_const(g, Y[i * T + j]), s;
            snprintf(name, sizeof name, "Y[%d,%d]", i + 1, j + 1);
            p[0] = MG_OP(g, ADD, a, MG_OP(g, MUL, b, plm_graph_const(g, xc[j]))), p[1] = sigma;
            s = plm_gmodel_observe(ctx, m, name, &d, &y);
            if (!st) st = s;
        }
    }
    return st || plm_gmodel_finish(ctx, m) ? NULL : m;
}

/* A 3-component Gaussian mixture marginalised into one factor per point y[0..n-1] (bench/mcmc_peers.lua's gmm3):
** means mu1 ~ normal(0, 10), mu2 = mu1 + d2, mu3 = mu2 + d3, d ~ halfnormal(5); sigma_k ~ halfnormal(2); weights by
** stick breaking, v1 ~ beta(1, 2), v2 ~ beta(1, 1). */
static inline plm_gmodel *mg_gmm3(plm_ctx *ctx, int n, const double *y)
{
    plm_graph *g = plm_graph_new();
    plm_gmodel *m;
    int p[2], mu[3], s[3], v1, v2, w[3], c[3], h[3], k, i, one, st = 0;
    if (plm_gmodel_new(ctx, g, &m)) return NULL;
    one = plm_graph_const(g, 1);
    p[0] = plm_graph_const(g, 0), p[1] = plm_graph_const(g, 10);
    mu[0] = mg_latent(ctx, m, &st, "mu1", PLM_DIST_NORMAL, 2, p);
    p[0] = plm_graph_const(g, 5);
    mu[1] = MG_OP(g, ADD, mu[0], mg_latent(ctx, m, &st, "d2", PLM_DIST_HALFNORMAL, 1, p));
    mu[2] = MG_OP(g, ADD, mu[1], mg_latent(ctx, m, &st, "d3", PLM_DIST_HALFNORMAL, 1, p));
    p[0] = plm_graph_const(g, 2);
    for (k = 0; k < 3; k++) {
        char name[32];
        snprintf(name, sizeof name, "sigma%d", k + 1);
        s[k] = mg_latent(ctx, m, &st, name, PLM_DIST_HALFNORMAL, 1, p);
    }
    p[0] = one, p[1] = plm_graph_const(g, 2);
    v1 = mg_latent(ctx, m, &st, "v1", PLM_DIST_BETA, 2, p);
    p[1] = one;
    v2 = mg_latent(ctx, m, &st, "v2", PLM_DIST_BETA, 2, p);
    w[0] = v1, w[1] = MG_OP(g, MUL, MG_OP(g, SUB, one, v1), v2);
    w[2] = MG_OP(g, MUL, MG_OP(g, SUB, one, v1), MG_OP(g, SUB, one, v2));
    for (k = 0; k < 3; k++) {
        c[k] = MG_OP(g, DIV, w[k], s[k]);
        h[k] = MG_OP(g, DIV, plm_graph_const(g, -0.5), MG_OP(g, MUL, s[k], s[k]));
    }
    for (i = 0; i < n; i++) {
        int yi = plm_graph_const(g, y[i]), sum = -1, f;
        for (k = 0; k < 3; k++) {
            int dd = MG_OP(g, SUB, yi, mu[k]);
            int e = MG_OP(g, MUL, c[k], plm_graph_op(g, PLM_OP_EXP, MG_OP(g, MUL, h[k], MG_OP(g, MUL, dd, dd)), -1, -1));
            sum = sum < 0 ? e : MG_OP(g, ADD, sum, e);
        }
        f = plm_gmodel_factor(ctx, m, MG_OP(g, ADD, plm_graph_const(g, -0.5 * log(2 * M_PI)),
                                             plm_graph_op(g, PLM_OP_LOG, sum, -1, -1)));
        if (!st) st = f;
    }
    return st || plm_gmodel_finish(ctx, m) ? NULL : m;
}

#endif
