/* sde_models.h -- three diffusions built as plume's compiler builds them from Lua, for the tests of guided paths
** (test_bffg_fastpath.c: the point evaluator; test_bffg_native.c: native code): FitzHugh-Nagumo (2-d,
** hypoelliptic), Ornstein-Uhlenbeck (1-d) and a 3-d nonlinear drift that reads the time with state-dependent noise.
** The including file defines `static plm_ctx ctx` and includes check.h first. */
#ifndef PLM_TESTS_SDE_MODELS_H
#define PLM_TESTS_SDE_MODELS_H

#include <string.h>

#include "plume.h"

#define IN(grp, i) plm_graph_input(g, (grp), (i))
#define C(v) plm_graph_const(g, (v))
#define O2(op, a, b) plm_graph_op(g, (op), (a), (b), -1)
#define O1(op, a) plm_graph_op(g, (op), (a), -1, -1)

static plm_sde *sde_of(plm_graph *g, int dim, int m, int np, const int *drift, const int *diff, const double *params)
{
    plm_sde_spec sp;
    plm_sde *s = NULL;
    sp.g = g, sp.dim = dim, sp.m = m, sp.np = np, sp.diagonal = 0, sp.drift = drift, sp.diff = diff;
    CHECK(plm_sde_new(&ctx, &sp, &s) == PLM_OK);
    if (s) memcpy(s->params, params, (size_t)np * sizeof *params);
    return s;
}

/* dX1 = (X1 - X1^3 - X2 + s) / eps dt, dX2 = (gamma X1 - X2 + beta) dt + sigma dW; parameters s, eps, gamma, beta. */
static plm_sde *fhn(void)
{
    static const double p[4] = {0, 0.1, 1.5, 0.8};
    plm_graph *g = plm_graph_new();
    int x1 = IN(PLM_GRP_X, 0), x2 = IN(PLM_GRP_X, 1), drift[2], diff[4];
    drift[0] = O2(PLM_OP_DIV, O2(PLM_OP_ADD, O2(PLM_OP_SUB, O2(PLM_OP_SUB, x1, O2(PLM_OP_POW, x1, C(3))), x2), IN(PLM_GRP_P, 0)),
                  IN(PLM_GRP_P, 1));
    drift[1] = O2(PLM_OP_ADD, O2(PLM_OP_SUB, O2(PLM_OP_MUL, IN(PLM_GRP_P, 2), x1), x2), IN(PLM_GRP_P, 3));
    diff[0] = diff[1] = diff[2] = C(0);
    diff[3] = C(0.3);
    return sde_of(g, 2, 2, 4, drift, diff, p);
}

/* dX = theta (mu - X) dt + 0.5 dW. */
static plm_sde *ou(void)
{
    static const double p[2] = {1.3, 0.4};
    plm_graph *g = plm_graph_new();
    int x = IN(PLM_GRP_X, 0), drift[1], diff[1];
    drift[0] = O2(PLM_OP_MUL, IN(PLM_GRP_P, 0), O2(PLM_OP_SUB, IN(PLM_GRP_P, 1), x));
    diff[0] = C(0.5);
    return sde_of(g, 1, 1, 2, drift, diff, p);
}

/* A 3-d drift with unary and binary library functions, a quotient by a parameter and the time; the noise is 3 x 2
** and depends on the state. */
static plm_sde *nonlinear3(void)
{
    static const double p[2] = {0.7, 2.0};
    plm_graph *g = plm_graph_new();
    int x1 = IN(PLM_GRP_X, 0), x2 = IN(PLM_GRP_X, 1), x3 = IN(PLM_GRP_X, 2), t = IN(PLM_GRP_T, 0), drift[3], diff[6];
    drift[0] = O2(PLM_OP_SUB, O2(PLM_OP_MUL, O2(PLM_OP_MUL, IN(PLM_GRP_P, 0), O1(PLM_OP_EXP, O1(PLM_OP_NEG, O2(PLM_OP_MUL, x2, x2)))), x1),
                  x3);
    drift[1] = O2(PLM_OP_ADD, O2(PLM_OP_MUL, O1(PLM_OP_SIN, O2(PLM_OP_ADD, x1, t)), C(0.5)), O2(PLM_OP_DIV, O1(PLM_OP_NEG, x2), IN(PLM_GRP_P, 1)));
    drift[2] = O2(PLM_OP_SUB, O1(PLM_OP_TANH, x3), O2(PLM_OP_MAX, O2(PLM_OP_MUL, x1, x2), C(-1)));
    diff[0] = C(0.4), diff[1] = C(0);
    diff[2] = C(0), diff[3] = O2(PLM_OP_ADD, C(0.3), O2(PLM_OP_MUL, C(0.05), O1(PLM_OP_TANH, x1)));
    diff[4] = C(0.1), diff[5] = C(0.2);
    return sde_of(g, 3, 2, 2, drift, diff, p);
}

#endif
