/* test_bffg_fastpath.c -- the fast single-point evaluator of guided diffusion paths (expr_eval.c's plm_prog_point:
** threaded dispatch, outputs written in place) against the block evaluator, and the guided path's log weight
** (bffg_sde.c) against a plain reference written here from the definitions, on three diffusions: FitzHugh-Nagumo
** (2-d, hypoelliptic), Ornstein-Uhlenbeck (1-d) and a 3-d nonlinear drift that reads the time (exp, sin, tanh,
** max, a quotient by a parameter). The point evaluator must give the values of plm_prog_block at one point bit for
** bit, and the values of plm_prog_eval (vector exp: within an ulp) to 1e-12; the log weight must agree with the
** reference to 1e-12 relative, and a reference fed a drift off by 1e-9 must not. */
#include "check.h"
#include "plume.h"
#include "bffg_impl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static plm_ctx ctx;

#include "sde_models.h"

/* The program p (d inputs of group X, nout outputs) at n points: the point evaluator against plm_prog_block at one
** point (bit for bit) and against plm_prog_eval over all points at once; returns the largest relative difference
** from the latter, and counts the points that differ from the former in *differ. */
static double compare_point(const plm_prog *p, const double *params, int d, int n, int *differ)
{
    double x[8], T[3] = {0.25, 0.01, 0.1}, out[64], ref[64], *po[64], *pr[64], *xs, *all, *pa[64], worst = 0;
    plm_prog_in in[PLM_NGROUPS];
    plm_prog_point pt;
    plm_prog_ws ws;
    plm_rng r;
    int nout = plm_prog_nout(p), i, j, o;
    CHECK(d <= 8 && nout <= 64);
    xs = malloc((size_t)n * d * sizeof *xs), all = malloc((size_t)n * nout * sizeof *all);
    memset(in, 0, sizeof in);
    in[PLM_GRP_P].p = params, in[PLM_GRP_T].p = T, in[PLM_GRP_X].p = x, in[PLM_GRP_X].ld = 1;
    for (o = 0; o < nout; o++) po[o] = out + o, pr[o] = ref + o, pa[o] = all + (size_t)o * n;
    CHECK(plm_prog_check(&ctx, p, in, 0) == PLM_OK);
    CHECK(plm_prog_point_init(&ctx, &pt, p, in, po, NULL) == PLM_OK);
    CHECK(plm_prog_ws_init_block(&ctx, &ws, p, 1) == PLM_OK);
    plm_prog_uniforms(&ws, in);
    plm_rng_init(&r, 5, 0);
    *differ = 0;
    for (i = 0; i < n; i++) {
        for (j = 0; j < d; j++) xs[(size_t)j * n + i] = x[j] = 1.5 * plm_rng_normal(&r);
        plm_prog_point_run(&pt);
        plm_prog_block(&ws, in, 0, 1, pr, NULL);
        for (o = 0; o < nout; o++) {
            *differ += memcmp(&out[o], &ref[o], sizeof *out) != 0;
            all[(size_t)o * n + i] = out[o];
        }
    }
    in[PLM_GRP_X].p = xs, in[PLM_GRP_X].ld = (size_t)n;
    {
        double *blk = malloc((size_t)n * nout * sizeof *blk), *pb[64];
        for (o = 0; o < nout; o++) pb[o] = blk + (size_t)o * n;
        CHECK(plm_prog_eval(&ctx, p, (size_t)n, in, pb, NULL, 1) == PLM_OK);
        for (i = 0; i < n * nout; i++) worst = fmax(worst, fabs(all[i] - blk[i]) / (1 + fabs(blk[i])));
        free(blk);
    }
    (void)pa;
    plm_prog_point_free(&pt);
    plm_prog_ws_free(&ws);
    free(xs);
    free(all);
    return worst;
}

static void test_point_equals_block(void)
{
    plm_sde *s[3] = {fhn(), ou(), nonlinear3()};
    const char *name[3] = {"FitzHugh-Nagumo", "Ornstein-Uhlenbeck", "3-d nonlinear"};
    for (int i = 0; i < 3; i++) {
        int differ = 0, dj = 0;
        double w = compare_point(s[i]->drift_prog, s[i]->params, s[i]->dim, 500, &differ);
        double wj = compare_point(s[i]->jac_prog, s[i]->params, s[i]->dim, 500, &dj);
        printf("  %s: drift and Jacobian at 500 points: %d and %d values differ from the block evaluator's; largest "
               "relative difference from plm_prog_eval %.1e, %.1e\n", name[i], differ, dj, w, wj);
        CHECK(differ == 0 && dj == 0);
        CHECK(w <= 1e-12 && wj <= 1e-12);
    }
}

/* A program whose outputs share registers, repeat a node, and are uniform: the outputs written in place and the
** ones copied must all hold their values. */
static void test_point_outputs_shared_and_uniform(void)
{
    plm_graph *g = plm_graph_new();
    int x1 = IN(PLM_GRP_X, 0), x2 = IN(PLM_GRP_X, 1), p0 = IN(PLM_GRP_P, 0);
    int a = O2(PLM_OP_MUL, x1, x2), b = O2(PLM_OP_ADD, a, p0), u = O2(PLM_OP_MUL, p0, C(3));
    int outs[6] = {b, a, b, u, x1, O1(PLM_OP_LOG1P, O2(PLM_OP_MUL, b, b))};
    plm_prog *p;
    double par[1] = {0.5};
    int differ = 0;
    double w;
    CHECK(plm_prog_compile(&ctx, g, 6, outs, 1u << PLM_GRP_X, &p) == PLM_OK);
    w = compare_point(p, par, 2, 200, &differ);
    printf("  repeated, uniform and input outputs: %d values differ; %.1e from plm_prog_eval\n", differ, w);
    CHECK(differ == 0 && w <= 1e-12);
}

/* ---- the guided path's log weight against a reference ---------------------------------------------------- */

typedef struct grid_msgs {
    int d;
    double *c, *F, *H;
} grid_msgs;

static void keep(void *ud, size_t k, const plm_bffg_msg *h)
{
    grid_msgs *g = ud;
    g->c[k] = h->c;
    memcpy(g->F + k * g->d, h->v, (size_t)g->d * sizeof *h->v);
    memcpy(g->H + k * g->d * g->d, h->H, (size_t)g->d * g->d * sizeof *h->H);
}

static double logh_at(const grid_msgs *g, size_t k, const double *x)
{
    int d = g->d, i, j;
    double l = g->c[k];
    for (i = 0; i < d; i++) {
        double hx = 0;
        for (j = 0; j < d; j++) hx += g->H[k * d * d + i * d + j] * x[j];
        l += x[i] * (g->F[k * d + i] - 0.5 * hx);
    }
    return l;
}

/* The guided Euler path of s on grid t (N steps) from x0 with innovations z, its messages msg, the auxiliary (B, beta,
** a), written from the definitions in bffg_sde.c's header, with the drift and diffusion of plm_sde_drift and
** plm_sde_diffusion; drift_bias is added to the drift (a negative control). */
static double reference_path(const plm_sde *s, const double *t, size_t N, const grid_msgs *msg, const double *B,
                             const double *beta, const double *A, const double *x0, const double *z, double drift_bias)
{
    int d = s->dim, m = s->m, i, j, l;
    double x[8], b[8], G[64], a[64], r[8], xn[8], lw, intG = 0;
    memcpy(x, x0, (size_t)d * sizeof *x);
    lw = logh_at(msg, 0, x);
    for (size_t k = 0; k < N; k++) {
        double dt = t[k + 1] - t[k], g = 0, tr = 0;
        const double *F = msg->F + k * d, *H = msg->H + k * d * d;
        CHECK(plm_sde_drift(&ctx, s, t[k], 1, x, 1, b) == PLM_OK);
        CHECK(plm_sde_diffusion(&ctx, s, t[k], 1, x, 1, G) == PLM_OK);
        for (i = 0; i < d; i++) b[i] += drift_bias;
        for (i = 0; i < d; i++)
            for (j = 0; j < d; j++) {
                a[i * d + j] = 0;
                for (l = 0; l < m; l++) a[i * d + j] += G[i * m + l] * G[j * m + l];
            }
        for (i = 0; i < d; i++) {
            r[i] = F[i];
            for (j = 0; j < d; j++) r[i] -= H[i * d + j] * x[j];
        }
        for (i = 0; i < d; i++) {
            double bt = beta[i];
            for (j = 0; j < d; j++) bt += B[i * d + j] * x[j];
            g += (b[i] - bt) * r[i];
            for (j = 0; j < d; j++) tr += (a[i * d + j] - A[i * d + j]) * (H[j * d + i] - r[j] * r[i]);
        }
        intG += (g - 0.5 * tr) * dt;
        for (i = 0; i < d; i++) {
            double v = x[i] + b[i] * dt;
            for (j = 0; j < d; j++) v += a[i * d + j] * r[j] * dt;
            for (l = 0; l < m; l++) v += G[i * m + l] * sqrt(dt) * z[k * m + l];
            xn[i] = v;
        }
        memcpy(x, xn, (size_t)d * sizeof *x);
    }
    return lw - logh_at(msg, N, x) + intG;
}

/* The kernel of s over [0, 0.5] (dt = 0.005) with the auxiliary given, toward a Gaussian child message centred
** near x0: its guided path for innovations z against the reference path. */
static void check_weight(const char *name, const plm_sde *s, const double *B, const double *beta, const double *A,
                         const double *x0)
{
    int d = s->dim, i, rep;
    size_t N = 100, n, nz;
    plm_bffg_sde_opts o = {0, 0.5, 0.005, 0, NULL, B, beta, A};
    plm_bffg_kernel *k, **steps = plm_gc_alloc(N * sizeof *steps);   /* collector memory: it keeps the kernels alive */
    double v[8], Hc[64], y[8], *z, *work, *t = malloc((N + 1) * sizeof *t), Phi[64], mm[8], Q[64];
    double fast, ref, off, worst = 0, ctrl = INFINITY;
    plm_bffg_msg child = {0, d, -1.5, v, Hc, 0, 0, 0, 0}, out0;
    grid_msgs msg = {d, malloc((N + 1) * sizeof(double)), malloc((N + 1) * d * sizeof(double)),
                     malloc((N + 1) * d * d * sizeof(double))};
    void *guide = NULL;
    plm_rng r;
    for (i = 0; i < d * d; i++) Hc[i] = i % (d + 1) == 0 ? 4.0 : 0.5 / d;
    for (i = 0; i < d; i++) v[i] = 4.0 * (x0[i] + 0.3);
    CHECK(plm_bffg_kernel_sde(&ctx, s, &o, &k) == PLM_OK);
    CHECK(k->ops->guide(&ctx, k, &child, &guide) == PLM_OK);
    /* the reference messages: the same grid and the auxiliary's exact step transitions, pulled back here */
    for (n = 0; n <= N; n++) t[n] = fmin(0 + (double)n * 0.005, 0.5);
    t[N] = 0.5;
    for (n = 0; n < N; n++) {
        CHECK(plm_bffg_aux_transition(&ctx, d, B, beta, A, t[n + 1] - t[n], Phi, mm, Q) == PLM_OK);
        CHECK(plm_bffg_kernel_linear_gaussian(&ctx, d, d, Phi, mm, Q, &steps[n]) == PLM_OK);
    }
    out0 = child;
    out0.v = malloc(d * sizeof(double)), out0.H = malloc(d * d * sizeof(double));
    CHECK(plm_bffg_pullback_grid(&ctx, d, N, (const plm_bffg_kernel *const *)steps, &child, keep, &msg, &out0) == PLM_OK);
    nz = k->nz;
    CHECK(nz == N * (size_t)s->m);
    z = malloc(nz * sizeof *z), work = malloc((k->work + 8) * sizeof *work);
    plm_rng_init(&r, 11, 0);
    for (rep = 0; rep < 5; rep++) {
        for (n = 0; n < nz; n++) z[n] = plm_rng_normal(&r);
        fast = k->ops->sample_z(k, guide, x0, z, y, work);
        ref = reference_path(s, t, N, &msg, B, beta, A, x0, z, 0);
        off = reference_path(s, t, N, &msg, B, beta, A, x0, z, 1e-9 * (1 + fabs(ref)));
        CHECK(isfinite(fast) && isfinite(ref));
        worst = fmax(worst, fabs(fast - ref) / (1 + fabs(ref)));
        ctrl = fmin(ctrl, fabs(fast - off) / (1 + fabs(ref)));
    }
    printf("  %s: guided log weight vs the reference over 5 paths: largest relative difference %.1e; "
           "reference with its drift off by 1e-9: at least %.1e\n", name, worst, ctrl);
    CHECK(worst <= 1e-12);
    CHECK(ctrl > 1e-12);   /* the comparison can fail */
    free(z), free(work), free(t), free(msg.c), free(msg.F), free(msg.H), free(out0.v), free(out0.H);
}

static void test_path_weight_equals_reference(void)
{
    /* auxiliaries that differ from the drifts, so that every term of G is exercised */
    static const double Bf[4] = {-1, -10, 1.5, -1}, bf[2] = {0.2, 0.8}, Af[4] = {0.01, 0, 0, 0.05}, xf[2] = {-0.5, -0.6};
    static const double Bo[1] = {-1}, bo[1] = {0.3}, Ao[1] = {0.2}, xo[1] = {0.1};
    static const double B3[9] = {-1, 0, -1, 0.5, -0.5, 0, -1, 0, 0.2}, b3[3] = {0.1, 0, -0.1},
                        A3[9] = {0.16, 0, 0.02, 0, 0.09, 0.06, 0.02, 0.06, 0.05}, x3[3] = {0.3, -0.2, 0.5};
    check_weight("FitzHugh-Nagumo", fhn(), Bf, bf, Af, xf);
    check_weight("Ornstein-Uhlenbeck", ou(), Bo, bo, Ao, xo);
    check_weight("3-d nonlinear", nonlinear3(), B3, b3, A3, x3);
}

int main(void)
{
    plm_ctx_clear(&ctx);
    RUN(test_point_equals_block);
    RUN(test_point_outputs_shared_and_uniform);
    RUN(test_path_weight_equals_reference);
    return CHECK_DONE();
}
