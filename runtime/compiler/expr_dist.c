/* expr_dist.c -- symbolic distributions: the draw and the log density of a distribution whose parameters are
** graph nodes, built from graph operations (a sampler becomes a transform of standard draws where one exists,
** so it vectorises) with parameters outside their domain guarded to NaN. */
#include "expr_impl.h"

#include <math.h>
#include <stdlib.h>

int plm_symdist_dim(const plm_symdist *d)
{
    return d->kind == PLM_DIST_MVNORMAL ? d->K : 1;
}

static plm_status symdist_sample(plm_ctx *ctx, plm_graph *g, const plm_symdist *d, int *out);
static plm_status symdist_logpdf(plm_ctx *ctx, plm_graph *g, const plm_symdist *d, const int *xv, int *out);

/* Lower Cholesky factor of the K*K symbolic matrix S as nodes (folds to constants for numeric S). */
static int sym_cholesky(plm_graph *g, int K, const int *S, int *L)
{
    int i, j, k;
    for (i = 0; i < K; i++)
        for (j = 0; j <= i; j++) {
            int s = S[i * K + j];
            for (k = 0; k < j; k++) s = SUB(s, MUL(L[i * K + k], L[j * K + k]));
            L[i * K + j] = i == j ? OP1(PLM_OP_SQRT, s) : DIV(s, L[j * K + j]);
            if (L[i * K + j] < 0) return -1;
        }
    return 0;
}

/* Parameters outside their domain must give NaN, never a plausible-looking draw (normal with sigma < 0 would
** otherwise sample happily) nor a sampler call that cannot end (GSL's gamma loops forever on NaN): q gets the
** parameters wrapped in select(valid, p, NaN). Constant valid parameters fold away; uniform ones are checked
** once per call by the uniform pre-pass. */
static int known_positive(const plm_graph *g, int id)
{
    int op = g->nodes[id].op;
    return op == PLM_OP_EXP || op == PLM_OP_SOFTPLUS || op == PLM_OP_LOGISTIC;
}

static int guard(plm_graph *g, int cond, int v)
{
    return SEL(cond, v, K(NAN));
}

static void guard_params(plm_graph *g, const plm_symdist *d, int *q)
{
    int i;
    const int *p = d->p;
    for (i = 0; i < d->np; i++) q[i] = p[i];
    switch (d->kind) {
    case PLM_DIST_NORMAL: case PLM_DIST_LOGNORMAL: case PLM_DIST_CAUCHY: case PLM_DIST_LAPLACE:
    case PLM_DIST_LOGISTIC:
        if (!known_positive(g, p[1])) q[1] = guard(g, OP2(PLM_OP_LT, K(0), p[1]), p[1]);
        break;
    case PLM_DIST_STUDENT_T:
        q[0] = guard(g, OP2(PLM_OP_LT, K(0), p[0]), p[0]);
        if (!known_positive(g, p[2])) q[2] = guard(g, OP2(PLM_OP_LT, K(0), p[2]), p[2]);
        break;
    case PLM_DIST_EXPONENTIAL: case PLM_DIST_POISSON:
        if (!known_positive(g, p[0])) q[0] = guard(g, OP2(PLM_OP_LE, K(0), p[0]), p[0]);
        break;
    case PLM_DIST_HALFNORMAL: case PLM_DIST_HALFCAUCHY:
        if (!known_positive(g, p[0])) q[0] = guard(g, OP2(PLM_OP_LT, K(0), p[0]), p[0]);
        break;
    case PLM_DIST_HALFSTUDENT_T:
        for (i = 0; i < 2; i++)
            if (!known_positive(g, p[i])) q[i] = guard(g, OP2(PLM_OP_LT, K(0), p[i]), p[i]);
        break;
    case PLM_DIST_GAMMA: case PLM_DIST_INV_GAMMA: case PLM_DIST_BETA: case PLM_DIST_WEIBULL:
    case PLM_DIST_NEG_BINOMIAL:
        for (i = 0; i < 2; i++)
            if (!known_positive(g, p[i])) q[i] = guard(g, OP2(PLM_OP_LT, K(0), p[i]), p[i]);
        break;
    case PLM_DIST_BERNOULLI: case PLM_DIST_GEOMETRIC:
        q[0] = guard(g, OP2(PLM_OP_AND, OP2(PLM_OP_LE, K(0), p[0]), OP2(PLM_OP_LE, p[0], K(1))), p[0]);
        break;
    case PLM_DIST_BINOMIAL:   /* GSL takes n as an unsigned int */
        q[0] = guard(g, OP2(PLM_OP_AND, OP2(PLM_OP_AND, OP2(PLM_OP_LE, K(0), p[0]), OP2(PLM_OP_LE, p[0], K(4294967295.0))),
                            OP2(PLM_OP_EQ, p[0], OP1(PLM_OP_FLOOR, p[0]))),
                     p[0]);
        q[1] = guard(g, OP2(PLM_OP_AND, OP2(PLM_OP_LE, K(0), p[1]), OP2(PLM_OP_LE, p[1], K(1))), p[1]);
        break;
    case PLM_DIST_UNIFORM:
        q[1] = guard(g, OP2(PLM_OP_LT, p[0], p[1]), p[1]);
        break;
    case PLM_DIST_CATEGORICAL:
        for (i = 0; i < d->np; i++) q[i] = guard(g, OP2(PLM_OP_LE, K(0), p[i]), p[i]);
        break;
    default:
        break;
    }
}

plm_status plm_symdist_sample(plm_ctx *ctx, plm_graph *g, const plm_symdist *d0, int *out)
{
    int qbuf[16], *q = d0->np <= 16 ? qbuf : malloc((size_t)d0->np * sizeof *q);
    plm_symdist dd = *d0, *d = &dd;
    plm_status st;
    if (!q) return plm_fail(ctx, PLM_ENOMEM, "sample: out of memory");
    guard_params(g, d0, q);
    dd.p = q;
    st = symdist_sample(ctx, g, d, out);
    if (q != qbuf) free(q);
    return st;
}

static plm_status symdist_sample(plm_ctx *ctx, plm_graph *g, const plm_symdist *d, int *out)
{
    const int *p = d->p;
    int kind = d->kind;
    switch (kind) {
    case PLM_DIST_NORMAL:
        out[0] = ADD(p[0], MUL(p[1], plm_graph_draw(g, PLM_OP_STDNORMAL, 0, 0, NULL)));
        break;
    case PLM_DIST_LOGNORMAL:
        out[0] = OP1(PLM_OP_EXP, ADD(p[0], MUL(p[1], plm_graph_draw(g, PLM_OP_STDNORMAL, 0, 0, NULL))));
        break;
    case PLM_DIST_UNIFORM:
        out[0] = ADD(p[0], MUL(SUB(p[1], p[0]), plm_graph_draw(g, PLM_OP_UNIFORM, 0, 0, NULL)));
        break;
    case PLM_DIST_EXPONENTIAL:
        out[0] = DIV(OP1(PLM_OP_NEG, OP1(PLM_OP_LOG, plm_graph_draw(g, PLM_OP_UNIFORM, 0, 0, NULL))), p[0]);
        break;
    case PLM_DIST_CATEGORICAL:
        out[0] = plm_graph_draw(g, PLM_OP_SAMPLE_CAT, kind, d->K, p);
        break;
    case PLM_DIST_MVNORMAL: {
        int K = d->K, i, j, *L = malloc((size_t)K * K * sizeof *L), z[64];
        if (K > 64) {
            free(L);
            return plm_fail(ctx, PLM_ENOTSUP, "mvnormal: symbolic dimension %d exceeds 64", K);
        }
        if (!L || sym_cholesky(g, K, p + K, L)) {
            free(L);
            return plm_fail(ctx, PLM_ENOMEM, "mvnormal: out of memory");
        }
        for (i = 0; i < K; i++) z[i] = plm_graph_draw(g, PLM_OP_STDNORMAL, 0, 0, NULL);
        for (i = 0; i < K; i++) {
            int s = p[i];
            for (j = 0; j <= i; j++) s = ADD(s, MUL(L[i * K + j], z[j]));
            out[i] = s;
        }
        free(L);
        break;
    }
    case PLM_DIST_DIRICHLET: case PLM_DIST_MULTINOMIAL:
        return plm_fail(ctx, PLM_ENOTSUP, "%s: symbolic parameters are not supported",
                        plm_dist_info_of(d->kind)->name);
    default:
        out[0] = plm_graph_draw(g, PLM_OP_SAMPLE, kind, d->np, p);
    }
    for (int i = 0; i < plm_symdist_dim(d); i++)
        if (out[i] < 0) return plm_fail(ctx, PLM_ENOMEM, "sample: out of memory");
    return PLM_OK;
}

plm_status plm_symdist_logpdf(plm_ctx *ctx, plm_graph *g, const plm_symdist *d0, const int *xv, int *out)
{
    int qbuf[16], *q = d0->np <= 16 ? qbuf : malloc((size_t)d0->np * sizeof *q);
    plm_symdist dd = *d0;
    plm_status st;
    if (!q) return plm_fail(ctx, PLM_ENOMEM, "logpdf: out of memory");
    guard_params(g, d0, q);
    dd.p = q;
    st = symdist_logpdf(ctx, g, &dd, xv, out);
    if (q != qbuf) free(q);
    return st;
}

static plm_status symdist_logpdf(plm_ctx *ctx, plm_graph *g, const plm_symdist *d, const int *xv, int *out)
{
    const int *p = d->p;
    int x = xv[0], r = -1, ninf = K(-INFINITY);
    switch (d->kind) {
    case PLM_DIST_NORMAL: {
        int z = DIV(SUB(x, p[0]), p[1]);
        r = SUB(SUB(MUL(K(-0.5), MUL(z, z)), OP1(PLM_OP_LOG, p[1])), K(LOG_SQRT_2PI));
        break;
    }
    case PLM_DIST_LOGNORMAL: {
        int lx = OP1(PLM_OP_LOG, x), z = DIV(SUB(lx, p[0]), p[1]);
        r = SUB(SUB(SUB(MUL(K(-0.5), MUL(z, z)), OP1(PLM_OP_LOG, p[1])), K(LOG_SQRT_2PI)), lx);
        r = SEL(OP2(PLM_OP_LT, K(0), x), r, ninf);
        break;
    }
    case PLM_DIST_STUDENT_T: {
        int nu = p[0], z = DIV(SUB(x, p[1]), p[2]), h = MUL(K(0.5), ADD(nu, K(1)));
        r = SUB(OP1(PLM_OP_LGAMMA, h), OP1(PLM_OP_LGAMMA, MUL(K(0.5), nu)));
        r = SUB(r, MUL(K(0.5), ADD(OP1(PLM_OP_LOG, nu), K(LOG_PI))));
        r = SUB(r, OP1(PLM_OP_LOG, p[2]));
        r = SUB(r, MUL(h, OP1(PLM_OP_LOG1P, DIV(MUL(z, z), nu))));
        break;
    }
    case PLM_DIST_CAUCHY: {
        int z = DIV(SUB(x, p[0]), p[1]);
        r = SUB(SUB(K(-LOG_PI), OP1(PLM_OP_LOG, p[1])), OP1(PLM_OP_LOG1P, MUL(z, z)));
        break;
    }
    case PLM_DIST_LAPLACE:
        r = SUB(SUB(K(-M_LN2), OP1(PLM_OP_LOG, p[1])), DIV(OP1(PLM_OP_ABS, SUB(x, p[0])), p[1]));
        break;
    case PLM_DIST_LOGISTIC: {
        int z = DIV(OP1(PLM_OP_ABS, SUB(x, p[0])), p[1]);
        r = SUB(SUB(OP1(PLM_OP_NEG, z), OP1(PLM_OP_LOG, p[1])),
                MUL(K(2), OP1(PLM_OP_LOG1P, OP1(PLM_OP_EXP, OP1(PLM_OP_NEG, z)))));
        break;
    }
    case PLM_DIST_EXPONENTIAL:
        r = SEL(OP2(PLM_OP_LE, K(0), x), SUB(OP1(PLM_OP_LOG, p[0]), MUL(p[0], x)), ninf);
        break;
    case PLM_DIST_GAMMA:
        r = SUB(MUL(p[0], OP1(PLM_OP_LOG, p[1])), OP1(PLM_OP_LGAMMA, p[0]));
        r = SUB(ADD(r, MUL(SUB(p[0], K(1)), OP1(PLM_OP_LOG, x))), MUL(p[1], x));
        r = SEL(OP2(PLM_OP_LT, K(0), x), r, ninf);
        break;
    case PLM_DIST_INV_GAMMA:
        r = SUB(MUL(p[0], OP1(PLM_OP_LOG, p[1])), OP1(PLM_OP_LGAMMA, p[0]));
        r = SUB(SUB(r, MUL(ADD(p[0], K(1)), OP1(PLM_OP_LOG, x))), DIV(p[1], x));
        r = SEL(OP2(PLM_OP_LT, K(0), x), r, ninf);
        break;
    case PLM_DIST_BETA: {
        int lb = SUB(ADD(OP1(PLM_OP_LGAMMA, p[0]), OP1(PLM_OP_LGAMMA, p[1])), OP1(PLM_OP_LGAMMA, ADD(p[0], p[1])));
        r = ADD(MUL(SUB(p[0], K(1)), OP1(PLM_OP_LOG, x)), MUL(SUB(p[1], K(1)), OP1(PLM_OP_LOG1P, OP1(PLM_OP_NEG, x))));
        r = SEL(OP2(PLM_OP_AND, OP2(PLM_OP_LT, K(0), x), OP2(PLM_OP_LT, x, K(1))), SUB(r, lb), ninf);
        break;
    }
    case PLM_DIST_UNIFORM:
        r = SEL(OP2(PLM_OP_AND, OP2(PLM_OP_LE, p[0], x), OP2(PLM_OP_LE, x, p[1])),
                OP1(PLM_OP_NEG, OP1(PLM_OP_LOG, SUB(p[1], p[0]))), ninf);
        break;
    case PLM_DIST_POISSON:
        r = SUB(SUB(MUL(x, OP1(PLM_OP_LOG, p[0])), p[0]), OP1(PLM_OP_LGAMMA, ADD(x, K(1))));
        r = SEL(OP2(PLM_OP_LE, K(0), x), r, ninf);
        break;
    case PLM_DIST_BERNOULLI:
        r = SEL(OP2(PLM_OP_EQ, x, K(1)), OP1(PLM_OP_LOG, p[0]),
                SEL(OP2(PLM_OP_EQ, x, K(0)), OP1(PLM_OP_LOG1P, OP1(PLM_OP_NEG, p[0])), ninf));
        break;
    case PLM_DIST_BINOMIAL: {
        int n = p[0], q = p[1], nx = SUB(n, x);
        r = SUB(SUB(OP1(PLM_OP_LGAMMA, ADD(n, K(1))), OP1(PLM_OP_LGAMMA, ADD(x, K(1)))),
                OP1(PLM_OP_LGAMMA, ADD(nx, K(1))));
        r = ADD(ADD(r, MUL(x, OP1(PLM_OP_LOG, q))), MUL(nx, OP1(PLM_OP_LOG1P, OP1(PLM_OP_NEG, q))));
        r = SEL(OP2(PLM_OP_AND, OP2(PLM_OP_LE, K(0), x), OP2(PLM_OP_LE, x, n)), r, ninf);
        break;
    }
    case PLM_DIST_CATEGORICAL: {
        int k;
        r = K(0);
        for (k = d->K - 1; k >= 0; k--) r = SEL(OP2(PLM_OP_EQ, x, K(k)), p[k], r);
        r = OP1(PLM_OP_LOG, r);
        break;
    }
    case PLM_DIST_MVNORMAL: {
        int Kd = d->K, i, j, *L = malloc((size_t)Kd * Kd * sizeof *L), w[64], q = K(0), ld = K(0);
        if (Kd > 64) {
            free(L);
            return plm_fail(ctx, PLM_ENOTSUP, "mvnormal: symbolic dimension %d exceeds 64", Kd);
        }
        if (!L || sym_cholesky(g, Kd, p + Kd, L)) {
            free(L);
            return plm_fail(ctx, PLM_ENOMEM, "mvnormal: out of memory");
        }
        for (i = 0; i < Kd; i++) {   /* forward solve L w = x - mu */
            int s = SUB(xv[i], p[i]);
            for (j = 0; j < i; j++) s = SUB(s, MUL(L[i * Kd + j], w[j]));
            w[i] = DIV(s, L[i * Kd + i]);
            q = ADD(q, MUL(w[i], w[i]));
            ld = ADD(ld, OP1(PLM_OP_LOG, L[i * Kd + i]));
        }
        r = SUB(SUB(MUL(K(-0.5), q), ld), K(Kd * LOG_SQRT_2PI));
        free(L);
        break;
    }
    /* the half and count kinds in closed form too, so that static models using them have gradients */
    case PLM_DIST_HALFNORMAL: {
        int z = DIV(x, p[0]);
        r = SUB(SUB(MUL(K(-0.5), MUL(z, z)), OP1(PLM_OP_LOG, p[0])), K(LOG_SQRT_2PI - M_LN2));
        r = SEL(OP2(PLM_OP_LE, K(0), x), r, ninf);
        break;
    }
    case PLM_DIST_HALFCAUCHY: {
        int z = DIV(x, p[0]);
        r = SUB(SUB(K(M_LN2 - LOG_PI), OP1(PLM_OP_LOG, p[0])), OP1(PLM_OP_LOG1P, MUL(z, z)));
        r = SEL(OP2(PLM_OP_LE, K(0), x), r, ninf);
        break;
    }
    case PLM_DIST_HALFSTUDENT_T: {
        int nu = p[0], z = DIV(x, p[1]), h = MUL(K(0.5), ADD(nu, K(1)));
        r = SUB(OP1(PLM_OP_LGAMMA, h), OP1(PLM_OP_LGAMMA, MUL(K(0.5), nu)));
        r = SUB(r, MUL(K(0.5), ADD(OP1(PLM_OP_LOG, nu), K(LOG_PI))));
        r = SUB(ADD(r, K(M_LN2)), OP1(PLM_OP_LOG, p[1]));
        r = SUB(r, MUL(h, OP1(PLM_OP_LOG1P, DIV(MUL(z, z), nu))));
        r = SEL(OP2(PLM_OP_LE, K(0), x), r, ninf);
        break;
    }
    case PLM_DIST_WEIBULL: {
        int z = DIV(x, p[1]);
        r = SUB(SUB(OP1(PLM_OP_LOG, p[0]), OP1(PLM_OP_LOG, p[1])), OP2(PLM_OP_POW, z, p[0]));
        r = ADD(r, MUL(SUB(p[0], K(1)), OP1(PLM_OP_LOG, z)));
        r = SEL(OP2(PLM_OP_LT, K(0), x), r, ninf);
        break;
    }
    case PLM_DIST_NEG_BINOMIAL:
        r = SUB(SUB(OP1(PLM_OP_LGAMMA, ADD(x, p[0])), OP1(PLM_OP_LGAMMA, ADD(x, K(1)))), OP1(PLM_OP_LGAMMA, p[0]));
        r = SUB(ADD(r, MUL(p[0], OP1(PLM_OP_LOG, p[1]))), MUL(ADD(p[0], x), OP1(PLM_OP_LOG1P, p[1])));
        r = SEL(OP2(PLM_OP_LE, K(0), x), r, ninf);
        break;
    case PLM_DIST_GEOMETRIC:
        r = ADD(OP1(PLM_OP_LOG, p[0]), MUL(x, OP1(PLM_OP_LOG1P, OP1(PLM_OP_NEG, p[0]))));
        r = SEL(OP2(PLM_OP_LE, K(0), x), r, ninf);
        break;
    case PLM_DIST_FLAT:
        r = K(0);
        break;
    case PLM_DIST_DIRICHLET: case PLM_DIST_MULTINOMIAL:
        return plm_fail(ctx, PLM_ENOTSUP, "%s: symbolic parameters are not supported",
                        plm_dist_info_of(d->kind)->name);
    default:
        r = plm_graph_logpdf_generic(g, d->kind, d->np, p, x);
    }
    if (r < 0) return plm_fail(ctx, PLM_ENOMEM, "logpdf: out of memory");
    *out = r;
    return PLM_OK;
}
