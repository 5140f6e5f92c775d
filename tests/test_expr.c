/* test_expr.c -- the expression compiler: folding and sharing at construction, compiled values equal the
** scalar formulas for every op (varying and uniform paths), derivatives equal central differences, symbolic
** distribution densities equal plm_dist_logpdf1, draws depend on particle streams only, evaluation at one point
** equals the block evaluation. */
#include "check.h"
#include "lutil.h"
#include "plume.h"
#include "plume_lua.h"

#include <stdlib.h>
#include <string.h>

#include <gsl/gsl_randist.h>
#include <gsl/gsl_sf_psi.h>

static plm_ctx ctx;

static double ref1(int op, double a, double b)
{
    switch (op) {
    case PLM_OP_NEG: return -a;
    case PLM_OP_EXP: return exp(a);
    case PLM_OP_LOG: return log(a);
    case PLM_OP_LOG1P: return log1p(a);
    case PLM_OP_EXPM1: return expm1(a);
    case PLM_OP_SQRT: return sqrt(a);
    case PLM_OP_SIN: return sin(a);
    case PLM_OP_COS: return cos(a);
    case PLM_OP_TAN: return tan(a);
    case PLM_OP_ASIN: return asin(a);
    case PLM_OP_ACOS: return acos(a);
    case PLM_OP_ATAN: return atan(a);
    case PLM_OP_SINH: return sinh(a);
    case PLM_OP_COSH: return cosh(a);
    case PLM_OP_TANH: return tanh(a);
    case PLM_OP_LOGISTIC: return 1 / (1 + exp(-a));
    case PLM_OP_SOFTPLUS: return log(1 + exp(a));
    case PLM_OP_ABS: return fabs(a);
    case PLM_OP_LGAMMA: return lgamma(a);
    case PLM_OP_DIGAMMA: return (lgamma(a + 1e-5) - lgamma(a - 1e-5)) / 2e-5;
    case PLM_OP_ERF: return erf(a);
    case PLM_OP_PHI: return 0.5 * (1 + erf(a / sqrt(2)));
    case PLM_OP_INV: return 1 / a;
    case PLM_OP_ADD: return a + b;
    case PLM_OP_SUB: return a - b;
    case PLM_OP_MUL: return a * b;
    case PLM_OP_DIV: return a / b;
    case PLM_OP_POW: return pow(a, b);
    case PLM_OP_MIN: return a < b ? a : b;
    case PLM_OP_MAX: return a > b ? a : b;
    case PLM_OP_ATAN2: return atan2(a, b);
    case PLM_OP_LT: return a < b;
    default: return NAN;
    }
}

static const int unary_ops[] = {PLM_OP_NEG, PLM_OP_EXP, PLM_OP_LOG, PLM_OP_LOG1P, PLM_OP_EXPM1, PLM_OP_SQRT,
                                PLM_OP_SIN, PLM_OP_COS, PLM_OP_TAN, PLM_OP_ASIN, PLM_OP_ACOS, PLM_OP_ATAN,
                                PLM_OP_SINH, PLM_OP_COSH, PLM_OP_TANH, PLM_OP_LOGISTIC, PLM_OP_SOFTPLUS,
                                PLM_OP_ABS, PLM_OP_LGAMMA, PLM_OP_DIGAMMA, PLM_OP_ERF, PLM_OP_PHI, PLM_OP_INV};
static const int binary_ops[] = {PLM_OP_ADD, PLM_OP_SUB, PLM_OP_MUL, PLM_OP_DIV, PLM_OP_POW,
                                 PLM_OP_MIN, PLM_OP_MAX, PLM_OP_ATAN2, PLM_OP_LT};

/* inputs in (0.05, 0.95) keep every op in its domain (asin, acos, log, lgamma) */
static void random_inputs(double *x, size_t n, unsigned seed)
{
    plm_rng r;
    size_t i;
    plm_rng_init(&r, seed, 0);
    for (i = 0; i < n; i++) x[i] = 0.05 + 0.9 * plm_rng_uniform(&r);
}

static void test_construction_folds_constants_and_shares_subexpressions(void)
{
    plm_graph *g = plm_graph_new();
    int x = plm_graph_input(g, PLM_GRP_X, 0), two = plm_graph_const(g, 2), e1, e2, k;
    double v;
    e1 = plm_graph_op(g, PLM_OP_EXP, plm_graph_op(g, PLM_OP_MUL, x, two, -1), -1, -1);
    e2 = plm_graph_op(g, PLM_OP_EXP, plm_graph_op(g, PLM_OP_MUL, two, x, -1), -1, -1);
    CHECK(e1 == e2);
    k = plm_graph_op(g, PLM_OP_ADD, plm_graph_const(g, 1), plm_graph_op(g, PLM_OP_LOG, two, -1, -1), -1);
    CHECK(plm_graph_is_const(g, k, &v));
    CHECK_NEAR(v, 1 + log(2), 1e-15);
    CHECK(plm_graph_op(g, PLM_OP_MUL, x, plm_graph_const(g, 1), -1) == x);
    CHECK(plm_graph_op(g, PLM_OP_ADD, x, plm_graph_const(g, 0), -1) == x);
    CHECK(plm_graph_op(g, PLM_OP_LOG, plm_graph_op(g, PLM_OP_EXP, x, -1, -1), -1, -1) == x);
    /* two draws are never merged */
    CHECK(plm_graph_draw(g, PLM_OP_STDNORMAL, 0, 0, NULL) != plm_graph_draw(g, PLM_OP_STDNORMAL, 0, 0, NULL));
    CHECK(plm_graph_op(g, PLM_OP_ADD, -1, x, -1) == -1);
}

/* f(x0, x1) compiled over n particles (x varying, p uniform: both argument modes are exercised) */
static void eval_op(int op, int ar, int mode, size_t n, const double *x0, const double *x1, double *out)
{
    plm_graph *g = plm_graph_new();
    int a = plm_graph_input(g, mode & 1 ? PLM_GRP_P : PLM_GRP_X, 0);
    int b = plm_graph_input(g, mode & 2 ? PLM_GRP_P : PLM_GRP_X, 1);
    int f = plm_graph_op(g, op, a, ar == 2 ? b : -1, -1);
    plm_prog *p = NULL;
    double *X = malloc(2 * n * sizeof *X), P[2] = {x0[0], x1[0]};
    plm_prog_in in[PLM_NGROUPS] = {{0}};
    memcpy(X, x0, n * sizeof *X);
    memcpy(X + n, x1, n * sizeof *X);
    in[PLM_GRP_X].p = X;
    in[PLM_GRP_X].ld = n;
    in[PLM_GRP_P].p = P;
    CHECK(plm_prog_compile(&ctx, g, 1, &f, 1u << PLM_GRP_X, &p) == PLM_OK);
    CHECK(plm_prog_eval(&ctx, p, n, in, &out, NULL, 1) == PLM_OK);
    free(X);
}

static void test_compiled_ops_equal_scalar_formulas(void)
{
    enum { N = 600 };   /* more than two blocks, the last one partial */
    double x0[N], x1[N], out[N];
    size_t i, k;
    int mode;
    random_inputs(x0, N, 1);
    random_inputs(x1, N, 2);
    for (k = 0; k < sizeof unary_ops / sizeof *unary_ops; k++) {
        int op = unary_ops[k];
        eval_op(op, 1, 0, N, x0, x1, out);
        for (i = 0; i < N; i++) {
            double tol = op == PLM_OP_DIGAMMA ? 1e-7 : 1e-12;
            CHECK_REL(out[i], ref1(op, x0[i], 0), tol);
        }
    }
    for (k = 0; k < sizeof binary_ops / sizeof *binary_ops; k++)
        for (mode = 0; mode < 3; mode++) {
            int op = binary_ops[k];
            eval_op(op, 2, mode, N, x0, x1, out);
            for (i = 0; i < N; i++) {
                double a = mode & 1 ? x0[0] : x0[i], b = mode & 2 ? x1[0] : x1[i];
                CHECK_REL(out[i], ref1(op, a, b), 1e-12);
            }
        }
}

/* the vector exp and log keep the special values: 0, +-inf, NaN, overflow, underflow, negative arguments */
static void test_vector_exp_and_log_keep_special_values(void)
{
    enum { N = 13 };
    double x[N] = {0, 1, -1, 800, -800, INFINITY, -INFINITY, NAN, 1e-300, 709.7, -745.2, -2, 5e-324};
    double e[N], l[N];
    size_t i;
    eval_op(PLM_OP_EXP, 1, 0, N, x, x, e);
    eval_op(PLM_OP_LOG, 1, 0, N, x, x, l);
    for (i = 0; i < N; i++) {
        double we = exp(x[i]), wl = log(x[i]);
        if (isnan(we)) CHECK(isnan(e[i])); else if (isinf(we) || we == 0) CHECK(e[i] == we); else CHECK_REL(e[i], we, 1e-15);
        if (isnan(wl)) CHECK(isnan(l[i])); else if (isinf(wl)) CHECK(l[i] == wl); else CHECK_REL(l[i], wl, 1e-15);
    }
}

static void test_fused_multiply_add_and_select_equal_formula(void)
{
    enum { N = 300 };
    double x0[N], x1[N], out[N], P[1] = {0.5}, X[2 * N];
    plm_graph *g = plm_graph_new();
    int a = plm_graph_input(g, PLM_GRP_X, 0), b = plm_graph_input(g, PLM_GRP_X, 1), p = plm_graph_input(g, PLM_GRP_P, 0);
    int f, s;
    plm_prog *pr;
    plm_prog_in in[PLM_NGROUPS] = {{0}};
    size_t i;
    random_inputs(x0, N, 3);
    random_inputs(x1, N, 4);
    memcpy(X, x0, sizeof x0);
    memcpy(X + N, x1, sizeof x1);
    /* (a*b + p) + (a*p + b), select(a < p, a*a, b) */
    f = plm_graph_op(g, PLM_OP_ADD, plm_graph_op(g, PLM_OP_ADD, plm_graph_op(g, PLM_OP_MUL, a, b, -1), p, -1),
                     plm_graph_op(g, PLM_OP_ADD, plm_graph_op(g, PLM_OP_MUL, a, p, -1), b, -1), -1);
    s = plm_graph_op(g, PLM_OP_SELECT, plm_graph_op(g, PLM_OP_LT, a, p, -1), plm_graph_op(g, PLM_OP_MUL, a, a, -1), b);
    f = plm_graph_op(g, PLM_OP_ADD, f, s, -1);
    in[PLM_GRP_X].p = X;
    in[PLM_GRP_X].ld = N;
    in[PLM_GRP_P].p = P;
    CHECK(plm_prog_compile(&ctx, g, 1, &f, 1u << PLM_GRP_X, &pr) == PLM_OK);
    {
        double *o = out;
        CHECK(plm_prog_eval(&ctx, pr, N, in, &o, NULL, 1) == PLM_OK);
    }
    for (i = 0; i < N; i++) {
        double A = x0[i], B = x1[i];
        double ref = (A * B + 0.5) + (A * 0.5 + B) + (A < 0.5 ? A * A : B);
        CHECK_REL(out[i], ref, 1e-12);
    }
}

/* One point at a time -- plm_prog_point (decoded addresses, for guided diffusion paths) and plm_prog_eval of n = 1
** -- gives the block evaluation's values: bit for bit, except exp and log, whose block form is the vector one
** (within 1 ulp). The program op(a, b) * p + a also takes a uniform input and a fused multiply-add. */
static void test_point_evaluation_equals_block_evaluation(void)
{
    enum { N = 40 };
    double x0[N], x1[N], blk[N], XB[2 * N], X[2], P[1] = {0.7}, one, two, *o1 = &one, *o2 = &two, *ob = blk;
    size_t i, k, nu = sizeof unary_ops / sizeof *unary_ops, nb = sizeof binary_ops / sizeof *binary_ops;
    random_inputs(x0, N, 5);
    random_inputs(x1, N, 6);
    memcpy(XB, x0, sizeof x0);
    memcpy(XB + N, x1, sizeof x1);
    for (k = 0; k < nu + nb; k++) {
        int op = k < nu ? unary_ops[k] : binary_ops[k - nu], bad = 0;
        plm_graph *g = plm_graph_new();
        int a = plm_graph_input(g, PLM_GRP_X, 0), b = plm_graph_input(g, PLM_GRP_X, 1), p = plm_graph_input(g, PLM_GRP_P, 0);
        int f = plm_graph_op(g, PLM_OP_ADD, plm_graph_op(g, PLM_OP_MUL, plm_graph_op(g, op, a, k < nu ? -1 : b, -1), p, -1), a, -1);
        plm_prog *pr = NULL;
        plm_prog_in in[PLM_NGROUPS] = {{0}}, in1[PLM_NGROUPS] = {{0}};
        plm_prog_point pt;
        in[PLM_GRP_X].p = XB, in[PLM_GRP_X].ld = N, in[PLM_GRP_P].p = P;
        in1[PLM_GRP_X].p = X, in1[PLM_GRP_X].ld = 1, in1[PLM_GRP_P].p = P;
        CHECK(plm_prog_compile(&ctx, g, 1, &f, 1u << PLM_GRP_X, &pr) == PLM_OK);
        CHECK(plm_prog_eval(&ctx, pr, N, in, &ob, NULL, 1) == PLM_OK);
        CHECK(plm_prog_point_init(&ctx, &pt, pr, in1, &o1, NULL) == PLM_OK);
        for (i = 0; i < N; i++) {
            X[0] = x0[i], X[1] = x1[i];
            plm_prog_point_run(&pt);
            if (plm_prog_eval(&ctx, pr, 1, in1, &o2, NULL, 1)) bad = 1;
            if (op == PLM_OP_EXP || op == PLM_OP_LOG) bad |= !(fabs(one - blk[i]) <= 1e-15 * (1 + fabs(blk[i])) && one == two);
            else bad |= !(one == blk[i] && two == blk[i]);
        }
        plm_prog_point_free(&pt);
        if (bad) printf("  op %d: one point %.17g, n = 1 %.17g, block %.17g\n", op, one, two, blk[N - 1]);
        CHECK(!bad);
    }
}

static double eval_scalar(plm_graph *g, int f, double a, double b)
{
    plm_prog *p = NULL;
    double P[2] = {a, b}, out, *o = &out;
    plm_prog_in in[PLM_NGROUPS] = {{0}};
    in[PLM_GRP_P].p = P;
    if (plm_prog_compile(&ctx, g, 1, &f, 0, &p) || plm_prog_eval(&ctx, p, 1, in, &o, NULL, 1)) return NAN;
    return out;
}

static void test_gradients_equal_central_differences(void)
{
    size_t k;
    double x[8];
    int i;
    random_inputs(x, 8, 5);
    for (k = 0; k < sizeof unary_ops / sizeof *unary_ops + sizeof binary_ops / sizeof *binary_ops; k++) {
        int nu = (int)(sizeof unary_ops / sizeof *unary_ops), op = (int)k < nu ? unary_ops[k] : binary_ops[k - nu];
        int ar = (int)k < nu ? 1 : 2;
        plm_graph *g = plm_graph_new();
        int a = plm_graph_input(g, PLM_GRP_P, 0), b = plm_graph_input(g, PLM_GRP_P, 1), wrt[2] = {a, b}, d[2];
        int f = plm_graph_op(g, op, a, ar == 2 ? b : -1, -1);
        if (op == PLM_OP_LT || op == PLM_OP_DIGAMMA) continue;
        CHECK(plm_graph_grad(&ctx, g, f, 2, wrt, d) == PLM_OK);
        for (i = 0; i < 4; i++) {
            double u = x[2 * i], v = x[2 * i + 1], h = 1e-6;
            double fd0 = (eval_scalar(g, f, u + h, v) - eval_scalar(g, f, u - h, v)) / (2 * h);
            double fd1 = (eval_scalar(g, f, u, v + h) - eval_scalar(g, f, u, v - h)) / (2 * h);
            if ((op == PLM_OP_MIN || op == PLM_OP_MAX) && fabs(u - v) < 1e-4) continue;
            CHECK_REL(eval_scalar(g, d[0], u, v), fd0, 1e-6);
            CHECK_REL(eval_scalar(g, d[1], u, v), fd1, 1e-6);
        }
    }
}

static void test_symbolic_logpdf_equals_dist_logpdf1(void)
{
    static const struct {
        plm_dist_kind kind;
        double p[3], x;
    } cases[] = {
        {PLM_DIST_NORMAL, {0.3, 1.7, 0}, -0.4},   {PLM_DIST_LOGNORMAL, {0.3, 0.7, 0}, 1.4},
        {PLM_DIST_STUDENT_T, {4, 0.2, 1.3, }, 0.9}, {PLM_DIST_CAUCHY, {0.1, 2, 0}, 3},
        {PLM_DIST_LAPLACE, {0.1, 2, 0}, -1},      {PLM_DIST_LOGISTIC, {0.1, 2, 0}, 1.5},
        {PLM_DIST_EXPONENTIAL, {1.5, 0, 0}, 0.7}, {PLM_DIST_GAMMA, {2.5, 1.5, 0}, 0.8},
        {PLM_DIST_INV_GAMMA, {2.5, 1.5, 0}, 0.8}, {PLM_DIST_BETA, {2.5, 1.5, 0}, 0.3},
        {PLM_DIST_UNIFORM, {-1, 2, 0}, 0.3},      {PLM_DIST_POISSON, {3.5, 0, 0}, 4},
        {PLM_DIST_BERNOULLI, {0.3, 0, 0}, 1},     {PLM_DIST_BINOMIAL, {10, 0.3, 0}, 4},
        {PLM_DIST_WEIBULL, {1.5, 2, 0}, 0.9},     {PLM_DIST_NEG_BINOMIAL, {3, 0.5, 0}, 2},
        {PLM_DIST_GAMMA, {2.5, 1.5, 0}, -0.8},
    };
    size_t c;
    for (c = 0; c < sizeof cases / sizeof *cases; c++) {
        plm_graph *g = plm_graph_new();
        const plm_dist_info *info = plm_dist_info_of(cases[c].kind);
        int pn[3], i, x = plm_graph_input(g, PLM_GRP_P, 3), lp;
        double P[4];
        plm_symdist d;
        for (i = 0; i < info->nparams; i++) pn[i] = plm_graph_input(g, PLM_GRP_P, i);
        d.kind = cases[c].kind, d.K = 0, d.np = info->nparams, d.p = pn;
        CHECK(plm_symdist_logpdf(&ctx, g, &d, &x, &lp) == PLM_OK);
        memcpy(P, cases[c].p, 3 * sizeof *P);
        P[3] = cases[c].x;
        {
            plm_prog *p;
            plm_prog_in in[PLM_NGROUPS] = {{0}};
            double out, *o = &out, want = plm_dist_logpdf1(cases[c].kind, cases[c].p, cases[c].x);
            in[PLM_GRP_P].p = P;
            CHECK(plm_prog_compile(&ctx, g, 1, &lp, 0, &p) == PLM_OK);
            CHECK(plm_prog_eval(&ctx, p, 1, in, &o, NULL, 1) == PLM_OK);
            if (isinf(want))
                CHECK(out == want);
            else
                CHECK_REL(out, want, 1e-12);
        }
    }
}

static void test_mvnormal_and_categorical_logpdf_equal_dist(void)
{
    double mu[2] = {0.5, -1}, S[4] = {2, 0.6, 0.6, 1.5}, x[2] = {0.1, 0.3}, pr[3] = {0.2, 0.5, 0.3};
    plm_dist *dm, *dc;
    plm_graph *g = plm_graph_new();
    int pn[6], i, xn[2], lp[2];
    plm_symdist d;
    plm_prog *p;
    plm_prog_in in[PLM_NGROUPS] = {{0}};
    double out[2], *o[2] = {&out[0], &out[1]}, c1 = 1;
    CHECK(plm_dist_new_mvnormal(&ctx, mu, S, 2, &dm) == PLM_OK);
    CHECK(plm_dist_new_categorical(&ctx, pr, 3, &dc) == PLM_OK);
    for (i = 0; i < 2; i++) pn[i] = plm_graph_const(g, mu[i]);
    for (i = 0; i < 4; i++) pn[2 + i] = plm_graph_input(g, PLM_GRP_P, i);
    for (i = 0; i < 2; i++) xn[i] = plm_graph_const(g, x[i]);
    d.kind = PLM_DIST_MVNORMAL, d.K = 2, d.np = 6, d.p = pn;
    CHECK(plm_symdist_logpdf(&ctx, g, &d, xn, &lp[0]) == PLM_OK);
    for (i = 0; i < 3; i++) pn[i] = plm_graph_const(g, pr[i]);
    d.kind = PLM_DIST_CATEGORICAL, d.K = 3, d.np = 3;
    xn[0] = plm_graph_input(g, PLM_GRP_Y, 0);
    CHECK(plm_symdist_logpdf(&ctx, g, &d, xn, &lp[1]) == PLM_OK);
    in[PLM_GRP_P].p = S;
    in[PLM_GRP_Y].p = &c1;
    CHECK(plm_prog_compile(&ctx, g, 2, lp, 0, &p) == PLM_OK);
    CHECK(plm_prog_eval(&ctx, p, 1, in, o, NULL, 1) == PLM_OK);
    CHECK_REL(out[0], plm_dist_logpdf(dm, x), 1e-12);
    CHECK_REL(out[1], plm_dist_logpdf(dc, &c1), 1e-12);
}

/* the same draws whatever the thread count, and mean/var of normal(mu, sigma) within 5 standard errors */
static void test_draws_follow_streams_and_moments(void)
{
    enum { N = 20000 };
    plm_graph *g = plm_graph_new();
    int pn[2] = {plm_graph_input(g, PLM_GRP_P, 0), plm_graph_input(g, PLM_GRP_P, 1)}, x;
    plm_symdist d = {PLM_DIST_NORMAL, 0, 2, pn};
    plm_prog *p;
    plm_prog_in in[PLM_NGROUPS] = {{0}};
    double P[2] = {1.5, 2}, *a = malloc(N * sizeof *a), *b = malloc(N * sizeof *b), s = 0, s2 = 0;
    plm_rng *r = malloc(N * sizeof *r);
    size_t i;
    CHECK(plm_symdist_sample(&ctx, g, &d, &x) == PLM_OK);
    CHECK(plm_prog_compile(&ctx, g, 1, &x, 0, &p) == PLM_OK);
    in[PLM_GRP_P].p = P;
    for (i = 0; i < N; i++) plm_rng_init(&r[i], 7, i);
    CHECK(plm_prog_eval(&ctx, p, N, in, &a, r, 1) == PLM_OK);
    for (i = 0; i < N; i++) plm_rng_init(&r[i], 7, i);
    CHECK(plm_prog_eval(&ctx, p, N, in, &b, r, 2) == PLM_OK);
    CHECK(memcmp(a, b, N * sizeof *a) == 0);
    for (i = 0; i < N; i++) s += a[i], s2 += a[i] * a[i];
    s /= N;
    s2 = s2 / N - s * s;
    CHECK_NEAR(s, 1.5, 5 * 2 / sqrt(N));
    CHECK_NEAR(s2, 4, 5 * 4 * sqrt(2.0 / N));
    CHECK(plm_prog_eval(&ctx, p, N, in, &a, NULL, 1) == PLM_EINVAL);   /* draws need streams */
    free(a);
    free(b);
    free(r);
}

static double hyp(double a, double b) { return sqrt(a * a + b * b); }
static void hyp_grad(double a, double b, double *g)
{
    double h = sqrt(a * a + b * b);
    g[0] = a / h;
    g[1] = b / h;
}

static void test_native_calls_and_their_gradients(void)
{
    plm_native f = {"hyp", 2, (void *)hyp, (void *)hyp_grad};
    plm_graph *g = plm_graph_new();
    int a = plm_graph_input(g, PLM_GRP_P, 0), b = plm_graph_input(g, PLM_GRP_P, 1), args[2] = {a, b}, wrt[2] = {a, b};
    int h = plm_graph_native(g, &f, args), d[2];
    int k = plm_graph_native(g, &f, (int[]){plm_graph_const(g, 3), plm_graph_const(g, 4)});
    double v;
    CHECK(plm_graph_is_const(g, k, &v) && v == 5);
    CHECK(plm_graph_grad(&ctx, g, plm_graph_op(g, PLM_OP_MUL, h, h, -1), 2, wrt, d) == PLM_OK);
    CHECK_REL(eval_scalar(g, h, 0.6, 0.8), 1.0, 1e-15);
    CHECK_REL(eval_scalar(g, d[0], 0.6, 0.8), 1.2, 1e-12);
    CHECK_REL(eval_scalar(g, d[1], 0.6, 0.8), 1.6, 1e-12);
    f.grad = NULL;
    CHECK(plm_graph_grad(&ctx, g, h, 2, wrt, d) == PLM_ENOTSUP);
    CHECK(strstr(plm_ctx_errmsg(&ctx), "hyp") != NULL);
}

/* digamma and trigamma (written out, not GSL's: GSL aborts on underflow) equal GSL's values, and poles give NaN */
static void test_digamma_trigamma_equal_gsl_and_poles_are_nan(void)
{
    static const double xs[] = {1e-3, 0.3, 1, 2.5, 5.9, 6, 9.99, 10, 30, 1e5, -0.5, -2.7, -10.3};
    size_t i;
    for (i = 0; i < sizeof xs / sizeof *xs; i++) {
        CHECK_REL(plm_op_eval(PLM_OP_DIGAMMA, xs[i], 0, 0), gsl_sf_psi(xs[i]), 1e-14);
        CHECK_REL(plm_op_eval(PLM_OP_TRIGAMMA, xs[i], 0, 0), gsl_sf_psi_1(xs[i]), 1e-14);
    }
    CHECK(isnan(plm_op_eval(PLM_OP_DIGAMMA, 0, 0, 0)) && isnan(plm_op_eval(PLM_OP_TRIGAMMA, -3, 0, 0)));
    CHECK(isnan(plm_op_eval(PLM_OP_TRIGAMMA, -1e308, 0, 0)) && plm_op_eval(PLM_OP_TRIGAMMA, 1e308, 0, 0) >= 0);
}

/* plume.pick with a plain index outside 1..n (or not whole) raises a domain error naming the index and the
** length; inside a model run an engine drives it is a rejection (that run gets log density -inf), never list[n] */
static void test_pick_outside_the_list_is_a_domain_error_and_a_rejection_in_runs(void)
{
    plm_State *P = plm_open();
    lua_State *L = P ? plm_lua(P) : NULL;
    CHECK(L != NULL);
    if (!L) return;
    CHECK(luaL_dostring(L, "return plume.pick(4, {10, 20, 30})") != LUA_OK);
    CHECK(!plm_l_isreject(L, -1) && strstr(lua_tostring(L, -1), "index 4 is not a whole number in 1..3"));
    lua_pop(L, 1);
    plm_l_run_enter(L);
    CHECK(luaL_dostring(L, "return plume.pick(2.5, {10, 20, 30})") != LUA_OK);
    CHECK(plm_l_isreject(L, -1));
    lua_getfield(L, -1, "status");
    CHECK(lua_tointeger(L, -1) == PLM_EDOM);
    lua_pop(L, 2);
    CHECK(luaL_dostring(L, "return plume.pick(3, {10, 20, 30})") == LUA_OK && lua_tonumber(L, -1) == 30);
    lua_pop(L, 1);
    plm_l_run_leave(L);
    plm_close(P);
}

int main(void)
{
    plm_init();
    RUN(test_construction_folds_constants_and_shares_subexpressions);
    RUN(test_compiled_ops_equal_scalar_formulas);
    RUN(test_fused_multiply_add_and_select_equal_formula);
    RUN(test_vector_exp_and_log_keep_special_values);
    RUN(test_point_evaluation_equals_block_evaluation);
    RUN(test_gradients_equal_central_differences);
    RUN(test_symbolic_logpdf_equals_dist_logpdf1);
    RUN(test_mvnormal_and_categorical_logpdf_equal_dist);
    RUN(test_draws_follow_streams_and_moments);
    RUN(test_native_calls_and_their_gradients);
    RUN(test_digamma_trigamma_equal_gsl_and_poles_are_nan);
    RUN(test_pick_outside_the_list_is_a_domain_error_and_a_rejection_in_runs);
    return CHECK_DONE();
}
