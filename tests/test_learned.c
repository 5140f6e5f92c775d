/* test_learned.c -- learned proposals: the networks' gradients and normalisation, the proposal file format and
** its refusals, and the MH pieces of the learned kernel against the model's own target on small graphs. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "learned.h"
#include "model_graphs.h"

#define CHAIN_SMAX_T 32   /* motif_impl.h's CHAIN_SMAX: the largest S_max */

static plm_status make_nn(plm_nn *nn, int act, int ncat_at)
{
    plm_nn_member mem[3] = {{PLM_NN_DISCRETE, 3, ncat_at, 0, -1, -1, -1, 0, -1, -1, -1, 0, 0, -1, 0, -1},
                            {PLM_NN_CONTINUOUS, 2, -1, 0, -1, -1, -1, 0, -1, -1, -1, 0, 0, -1, 0, -1},
                            {PLM_NN_DISCRETE, 2, -1, 0, -1, -1, -1, 0, -1, -1, -1, 0, 0, -1, 0, -1}};
    int hidden[2] = {5, 4};
    plm_rng r;
    plm_status st = plm_nn_init(NULL, nn, 3, 3, mem, 2, hidden, act);
    plm_rng_init(&r, 7, 0);
    if (!st) plm_nn_randomize(nn, &r);
    /* nonzero biases: a relu unit whose inputs are all zero would sit on its kink, where differences halve */
    for (size_t k = 0; !st && k < nn->nparam; k++) nn->theta[k] += 0.1 * plm_rng_normal(&r);
    return st;
}

/* d(sum log q)/d theta by backpropagation equals central finite differences, for tanh and relu nets */
/* The gradient of the summed log q of n points against central differences, every stride-th parameter. lq: n doubles
** of scratch. */
static void check_gradient(plm_nn *nn, plm_nn_ws *w, int n, const double *X, const double *V, double *lq, size_t stride)
{
    double *g = calloc(nn->nparam, sizeof *g);
    CHECK(g != NULL);
    plm_nn_logq(nn, w, n, X, V, lq, g);
    for (size_t k = 0; k < nn->nparam; k += stride) {
        double keep = nn->theta[k], h = 1e-6, up = 0, dn = 0, fd;
        int b;
        nn->theta[k] = keep + h;
        plm_nn_logq(nn, w, n, X, V, lq, NULL);
        for (b = 0; b < n; b++) up += lq[b];
        nn->theta[k] = keep - h;
        plm_nn_logq(nn, w, n, X, V, lq, NULL);
        for (b = 0; b < n; b++) dn += lq[b];
        nn->theta[k] = keep;
        fd = (up - dn) / (2 * h);
        CHECK_NEAR(g[k], fd, 1e-5 * fmax(1, fabs(fd)));
    }
    free(g);
}

static void test_nn_gradient_matches_finite_differences(void)
{
    for (int act = 0; act < 2; act++) {
        plm_nn nn;
        plm_nn_ws w;
        double X[5 * 3], V[5 * 3], lq[5];
        plm_rng r;
        int b;
        CHECK(make_nn(&nn, act, 0) == PLM_OK);
        CHECK(plm_nn_ws_init(NULL, &w, &nn, 5) == PLM_OK);
        plm_rng_init(&r, 11, act);
        for (b = 0; b < 5; b++) {
            X[3 * b] = 2 + (b % 2);   /* valid categories of member 1: 2 or 3 */
            X[3 * b + 1] = plm_rng_normal(&r), X[3 * b + 2] = plm_rng_normal(&r);
            V[3 * b] = b % 2, V[3 * b + 1] = plm_rng_normal(&r), V[3 * b + 2] = b % 2;
        }
        check_gradient(&nn, &w, 5, X, V, lq, 3);
        plm_nn_ws_free(&w);
        plm_nn_free(&nn);
    }
}

/* q sums to one over the discrete members (masked categories get nothing) and integrates to one over the
** continuous member: a sum over both discrete members of a trapezoid integral on [-60, 60] */
static void test_mdn_logq_normalises(void)
{
    plm_nn nn;
    plm_nn_ws w;
    double x[3] = {2, 0.3, -1.2}, v[3], lq, tot = 0, masked = 0;
    int a, c, i, n = 240001;
    CHECK(make_nn(&nn, PLM_NN_TANH, 0) == PLM_OK);
    CHECK(plm_nn_ws_init(NULL, &w, &nn, 1) == PLM_OK);
    for (a = 0; a < 3; a++)
        for (c = 0; c < 2; c++) {
            double s = 0, h = 120.0 / (n - 1);
            for (i = 0; i < n; i++) {
                v[0] = a, v[1] = -60 + i * h, v[2] = c;
                plm_nn_logq(&nn, &w, 1, x, v, &lq, NULL);
                s += (i == 0 || i == n - 1 ? 0.5 : 1) * exp(lq) * h;
            }
            if (a < 2) tot += s;
            else masked += s;
        }
    CHECK_NEAR(tot, 1, 1e-7);
    CHECK(masked == 0);   /* x[0] = 2: category 3 of member 1 is not valid */
    {   /* a draw's own log q is the density plm_nn_logq gives it */
        plm_rng r;
        double lq2;
        plm_rng_init(&r, 3, 0);
        for (i = 0; i < 50; i++) {
            plm_nn_sample(&nn, &w, x, &r, v, &lq);
            plm_nn_logq(&nn, &w, 1, x, v, &lq2, NULL);
            CHECK_NEAR(lq, lq2, 1e-12);
            CHECK(v[0] == 0 || v[0] == 1);
        }
    }
    {   /* the kernel's fused pass: the same draw and densities as plm_nn_sample and plm_nn_logq */
        plm_rng r1, r2;
        plm_nn_ws w2;
        double vold[3] = {1, 0.7, 0}, v2[3], lqn, lqo, lqo2;
        CHECK(plm_nn_ws_init(NULL, &w2, &nn, 2) == PLM_OK);
        plm_rng_init(&r1, 8, 0);
        plm_rng_init(&r2, 8, 0);
        for (i = 0; i < 50; i++) {
            plm_nn_sample(&nn, &w, x, &r1, v, &lq);
            plm_nn_propose(&nn, &w2, x, vold, &r2, v2, &lqn, &lqo);
            plm_nn_logq(&nn, &w, 1, x, vold, &lqo2, NULL);
            CHECK(memcmp(v, v2, sizeof v) == 0);
            CHECK_NEAR(lqn, lq, 1e-13);
            CHECK_NEAR(lqo, lqo2, 1e-13);
        }
        plm_nn_ws_free(&w2);
    }
    plm_nn_ws_free(&w);
    plm_nn_free(&nn);
}

static plm_learned_prop *train_small(const char *motif, long samples, long epochs)
{
    plm_learned_train_opts o;
    plm_learned_prop *p = NULL;
    plm_ctx ctx;
    const plm_motif_def *d = plm_motif_find(motif);
    memset(&o, 0, sizeof o);
    plm_ctx_clear(&ctx);
    for (int i = 0; i < d->nshape; i++) o.shape[i] = d->shape_default[i];
    o.samples = samples, o.epochs = epochs, o.nhidden = 1, o.hidden[0] = 16, o.seed = 5;
    if (plm_learned_train(&ctx, d, &o, &p)) printf("  train: %s\n", ctx.msg);
    return p;
}

static long file_size(const char *path)
{
    FILE *f = fopen(path, "rb");
    long n;
    if (!f) return -1;
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fclose(f);
    return n;
}

/* Rewrite path with byte `at` xor-ed with x (at < 0: no change), cut to `len` bytes (< 0: keep) and `extra`
** bytes appended. */
static void mangle(const char *src, const char *dst, long at, int x, long len, int extra)
{
    long n = file_size(src), i;
    unsigned char *b = malloc((size_t)n + 16);
    FILE *f = fopen(src, "rb");
    if (!f || !b) return;
    if (fread(b, 1, (size_t)n, f) != (size_t)n) n = 0;
    fclose(f);
    if (at >= 0 && at < n) b[at] ^= (unsigned char)x;
    if (len >= 0 && len < n) n = len;
    for (i = 0; i < extra; i++) b[n++] = 0;
    f = fopen(dst, "wb");
    fwrite(b, 1, (size_t)n, f);
    fclose(f);
    free(b);
}

static void expect_refused(const char *path, const char *what)
{
    plm_ctx ctx;
    plm_learned_prop *p = (plm_learned_prop *)1;
    plm_status st;
    plm_ctx_clear(&ctx);
    st = plm_learned_load(&ctx, path, &p);
    CHECK(st == PLM_EINVAL);
    CHECK(p == NULL);
    CHECK(strstr(ctx.msg, path) != NULL);
    if (!strstr(ctx.msg, what)) printf("  expected '%s' in: %s\n", what, ctx.msg);
    CHECK(strstr(ctx.msg, what) != NULL);
}

/* save then load gives the same weights and header; damaged files are refused, naming the file and the damage */
static void test_file_round_trip_and_refusals(void)
{
    const char *path = "build/tests/learned_rt.plmprop", *bad = "build/tests/learned_bad.plmprop";
    plm_learned_prop *p = train_small("grid", 200, 1), *q = NULL;
    plm_ctx ctx;
    long n;
    plm_ctx_clear(&ctx);
    CHECK(p != NULL);
    if (!p) return;
    CHECK(plm_learned_save(&ctx, path, p) == PLM_OK);
    CHECK(plm_learned_load(&ctx, path, &q) == PLM_OK);
    if (!q) return;
    CHECK(strcmp(q->meta.motif, "grid") == 0);
    CHECK(q->nn.nparam == p->nn.nparam);
    CHECK(memcmp(q->nn.theta, p->nn.theta, p->nn.nparam * sizeof *p->nn.theta) == 0);
    CHECK(q->meta.seed == 5 && q->meta.samples == 200 && q->meta.epochs == 1);
    CHECK(q->meta.heldout == p->meta.heldout);
    n = file_size(path);
    mangle(path, bad, n - 100, 0x10, -1, 0);   /* a flipped bit in a weight */
    expect_refused(bad, "checksum mismatch");
    mangle(path, bad, -1, 0, n - 37, 0);       /* cut short */
    expect_refused(bad, "truncated");
    mangle(path, bad, -1, 0, 30, 0);           /* cut in the header */
    expect_refused(bad, "truncated");
    mangle(path, bad, 8, 0x07, -1, 0);         /* format version 4 -> 3: a file of the layout before second pairs */
    expect_refused(bad, "format version 3, but this plume reads version 4");
    mangle(path, bad, 0, 0x20, -1, 0);         /* magic */
    expect_refused(bad, "not a plume proposal file");
    mangle(path, bad, -1, 0, -1, 8);           /* bytes after the checksum */
    expect_refused(bad, "after the checksum");
    plm_ctx_clear(&ctx);
    CHECK(plm_learned_load(&ctx, "build/tests/no_such.plmprop", &q) == PLM_EIO);
    CHECK(strstr(ctx.msg, "no_such.plmprop") != NULL);
}

/* Training is reproducible: the same seed gives the same weights bit for bit */
static void test_training_reproducible(void)
{
    plm_learned_prop *a = train_small("mixture", 300, 2), *b = train_small("mixture", 300, 2);
    CHECK(a && b);
    if (a && b) CHECK(memcmp(a->nn.theta, b->nn.theta, a->nn.nparam * sizeof *a->nn.theta) == 0);
}

/* A 3x3 grid of bernoulli nodes, x[r][c] ~ bernoulli(logistic(b0 + b1 up + b2 left)), with a noisy observation
** of three nodes; obs (9 characters, row-major) marks grid nodes observed at 0 or 1 ('-': latent). Names say
** nothing of the grid ("n" and a scrambled number): detection must go by structure. */
static plm_gmodel *grid3_obs(plm_ctx *ctx, const char *obs)
{
    plm_graph *g = plm_graph_new();
    plm_gmodel *m;
    int x[3][3], r, c, st = 0;
    static const double b[9][3] = {{0.3, 0, 0}, {-0.5, 0, 1.5}, {0.2, 0, -2}, {1, -1.7, 0}, {-0.3, 2, 1},
                                   {0.1, -1, 1.2}, {0.4, 1.1, 0}, {-1, 0.5, 2.2}, {0.7, -2.5, 1.3}};
    if (plm_gmodel_new(ctx, g, &m)) return NULL;
    for (r = 0; r < 3; r++)
        for (c = 0; c < 3; c++) {
            const double *bb = b[3 * r + c];
            int e = plm_graph_const(g, bb[0]), p, at = 3 * r + c;
            char name[32];
            if (r > 0) e = MG_OP(g, ADD, e, MG_OP(g, MUL, plm_graph_const(g, bb[1]), x[r - 1][c]));
            if (c > 0) e = MG_OP(g, ADD, e, MG_OP(g, MUL, plm_graph_const(g, bb[2]), x[r][c - 1]));
            p = plm_graph_op(g, PLM_OP_LOGISTIC, e, -1, -1);
            snprintf(name, sizeof name, "n%d", (7 * at + 3) % 9);
            if (obs[at] == '-') {
                x[r][c] = mg_latent(ctx, m, &st, name, PLM_DIST_BERNOULLI, 1, &p);
            } else {
                plm_symdist d = {PLM_DIST_BERNOULLI, 0, 1, &p};
                x[r][c] = plm_graph_const(g, obs[at] == '1');
                if (!st) st = plm_gmodel_observe(ctx, m, name, &d, &x[r][c]);
            }
        }
    for (r = 0; r < 3; r++) {
        int p = MG_OP(g, ADD, plm_graph_const(g, 0.2), MG_OP(g, MUL, plm_graph_const(g, 0.6), x[r][r])), one = plm_graph_const(g, 1);
        plm_symdist d = {PLM_DIST_BERNOULLI, 0, 1, &p};
        char name[32];
        snprintf(name, sizeof name, "y%d", r);
        if (!st) st = plm_gmodel_observe(ctx, m, name, &d, &one);
    }
    return st || plm_gmodel_finish(ctx, m) ? NULL : m;
}

static plm_gmodel *grid3(plm_ctx *ctx) { return grid3_obs(ctx, "---------"); }

/* The site of grid node (r, c) of grid3_obs, by its name. */
static int grid3_site(const plm_gmodel *m, int r, int c)
{
    char name[32];
    int i;
    snprintf(name, sizeof name, "n%d", (7 * (3 * r + c) + 3) % 9);
    for (i = 0; i < m->n; i++)
        if (strcmp(m->sites[i].name, name) == 0) return i;
    return -1;
}

/* The MH pieces of occurrence occ of kernel k (proposal p) at random points of m: the motif's p(new) / p(old) is the
** target's ratio, the log ratio is lpn - lpo + lqr - lqf, the forward and reverse densities are the network's, q
** sums to one over the block values with every absent position at 0 and gives the others probability 0. */
static void check_grid_occurrence(plm_gmodel *m, plm_kernel *k, plm_learned_prop *p, int occ, int reps, plm_rng *r)
{
    plm_ctx ctx;
    plm_target *t;
    plm_motif_occs *o;
    plm_motif_ws *mw;
    plm_nn_ws w;
    void *tws;
    int rep;
    plm_ctx_clear(&ctx);
    CHECK(plm_gmodel_target(&ctx, m, &t) == PLM_OK);
    tws = plm_target_ws_new(t);
    CHECK(p->motif->detect(&ctx, p->motif, p->meta.shape, m, &o) == PLM_OK);
    CHECK(plm_motif_ws_new(NULL, o, &mw) == PLM_OK && plm_nn_ws_init(NULL, &w, &p->nn, 1) == PLM_OK);
    for (rep = 0; rep < reps; rep++) {
        double u[9], un[9], v[4], vo[4], vv[4], x[64], lqf, lqr, lpn, lpo, lr, lq, sum = 0;
        int j, cfg, absent = 0, seen_old = 0;
        for (j = 0; j < m->dim; j++) u[j] = (double)(plm_rng_uniform(r) < 0.5);
        CHECK(plm_learned_debug_step(&ctx, k, 0, occ, u, r, v, &lqf, &lqr, &lpn, &lpo, &lr, un) == PLM_OK);
        CHECK_NEAR(lpn - lpo, plm_target_logp(t, tws, un) - plm_target_logp(t, tws, u), 1e-10);
        CHECK_NEAR(lr, lpn - lpo + lqr - lqf, 1e-12);
        plm_motif_begin(&ctx, o, mw, u);
        plm_motif_inputs(&ctx, o, mw, occ, u, r, x, vo);
        for (j = 0; j < 4; j++) absent |= (x[13 + j] != 0) << j;
        for (j = 0; j < 4; j++) CHECK(!(absent >> j & 1) || (v[j] == 0 && vo[j] == 0));
        for (cfg = 0; cfg < 16; cfg++) {
            for (j = 0; j < 4; j++) vv[j] = (cfg >> j) & 1;
            plm_nn_logq(&p->nn, &w, 1, x, vv, &lq, NULL);
            if (cfg & absent) {
                CHECK(lq == -INFINITY);
                continue;
            }
            sum += exp(lq);
            if (memcmp(vv, v, sizeof vv) == 0) CHECK_NEAR(lq, lqf, 1e-12);
            if (memcmp(vv, vo, sizeof vv) == 0) { CHECK_NEAR(lq, lqr, 1e-12); seen_old = 1; }
        }
        CHECK(seen_old);
        CHECK_NEAR(sum, 1, 1e-12);
    }
    plm_nn_ws_free(&w);
    plm_motif_ws_free(mw);
    plm_target_ws_free(t, tws);
}

/* With the centre of a 3x3 grid observed, detection finds by structure the window above-left of it with the centre
** at d (latent a, b, c), the window below-right with no a (the centre would be a: b, c, d latent), and the two
** corners in no window (top-right, bottom-left) as blocks of one; every latent node lies in a block. The absent
** positions are flagged in the features, and each block's MH pieces are exact (check_grid_occurrence). */
static void test_grid_partial_windows(void)
{
    plm_ctx ctx;
    plm_gmodel *m;
    plm_kernel *k;
    plm_motif_occs *o;
    plm_motif_ws *mw;
    plm_learned_prop *p = train_small("grid", 2000, 3);
    int nocc = 0, occ, want[4][4], wabsent[4] = {8, 1, 14, 14}, r, c, j, found[4] = {0, 0, 0, 0}, covered[9] = {0};
    plm_rng rng;
    plm_ctx_clear(&ctx);
    m = grid3_obs(&ctx, "----1----");
    CHECK(m && p);
    if (!m || !p) return;
    /* the blocks' sites, in position order a, b, c, d (-1 absent) */
    want[0][0] = grid3_site(m, 0, 0), want[0][1] = grid3_site(m, 0, 1), want[0][2] = grid3_site(m, 1, 0), want[0][3] = -1;
    want[1][0] = -1, want[1][1] = grid3_site(m, 1, 2), want[1][2] = grid3_site(m, 2, 1), want[1][3] = grid3_site(m, 2, 2);
    want[2][0] = grid3_site(m, 0, 2), want[3][0] = grid3_site(m, 2, 0);
    for (j = 1; j < 4; j++) want[2][j] = want[3][j] = -1;
    CHECK(plm_kernel_learned(&ctx, m, &p, 1, &k, &nocc) == PLM_OK);
    CHECK(nocc == 4);
    CHECK(p->motif->detect(&ctx, p->motif, p->meta.shape, m, &o) == PLM_OK && plm_motif_count(o) == 4);
    CHECK(plm_motif_ws_new(NULL, o, &mw) == PLM_OK);
    plm_rng_init(&rng, 23, 0);
    for (occ = 0; occ < plm_motif_count(o); occ++) {
        double u[9] = {0}, x[64], v[4];
        int sites[8], ns = plm_motif_sites(o, occ, sites), absent = 0, w;
        plm_motif_begin(&ctx, o, mw, u);
        plm_motif_inputs(&ctx, o, mw, occ, u, &rng, x, v);
        for (j = 0; j < 4; j++) absent |= (x[13 + j] != 0) << j;
        for (w = 0; w < 4; w++) {   /* the wanted block with these sites and these absent positions */
            int n = 0, ok = absent == wabsent[w];
            for (j = 0; j < 4; j++)
                if (want[w][j] >= 0) n++;
            ok = ok && n == ns;
            for (j = 0; j < ns && ok; j++) {
                int l, in = 0;
                for (l = 0; l < 4; l++) in |= want[w][l] == sites[j];
                ok = in;
            }
            if (ok) found[w]++;
        }
        for (j = 0; j < ns; j++)
            for (r = 0; r < 9; r++)
                if (sites[j] == grid3_site(m, r / 3, r % 3)) covered[r]++;
    }
    for (j = 0; j < 4; j++) CHECK(found[j] == 1);
    for (r = 0; r < 9; r++) CHECK(r == 4 ? covered[r] == 0 : covered[r] == 1);
    plm_motif_ws_free(mw);
    for (occ = 0; occ < nocc; occ++) check_grid_occurrence(m, k, p, occ, 20, &rng);
    /* an observed corner and an observed edge node: a window with a and d absent (b, c alone) and more blocks of one */
    m = grid3_obs(&ctx, "0-------1");
    CHECK(m != NULL);
    if (!m) return;
    CHECK(plm_kernel_learned(&ctx, m, &p, 1, &k, &nocc) == PLM_OK);
    CHECK(nocc >= 3);
    for (occ = 0; occ < nocc; occ++) check_grid_occurrence(m, k, p, occ, 10, &rng);
    (void)c;
}

/* On every 2x2 block of a 3x3 grid, at random points: the kernel's p(new) / p(old) is the target's ratio, its
** forward and reverse densities are the network's, and q sums to one over the 16 block values. */
static void test_grid_ratio_equals_enumeration(void)
{
    plm_ctx ctx;
    plm_gmodel *m;
    plm_target *t;
    plm_kernel *k;
    plm_learned_prop *p = train_small("grid", 2000, 3);
    int nocc = 0, occ, rep;
    void *tws;
    plm_rng r;
    plm_ctx_clear(&ctx);
    m = grid3(&ctx);
    CHECK(m && p);
    if (!m || !p) return;
    CHECK(plm_gmodel_target(&ctx, m, &t) == PLM_OK);
    tws = plm_target_ws_new(t);
    CHECK(plm_kernel_learned(&ctx, m, &p, 1, &k, &nocc) == PLM_OK);
    CHECK(nocc == 4);
    plm_rng_init(&r, 21, 0);
    for (occ = 0; occ < nocc; occ++)
        for (rep = 0; rep < 20; rep++) {
            double u[9], un[9], v[4], lqf, lqr, lpn, lpo, lr, x[64], lq, sum = 0, vv[4], enumq;
            int j, cfg;
            plm_nn_ws w;
            for (j = 0; j < 9; j++) u[j] = (double)(plm_rng_uniform(&r) < 0.5);
            CHECK(plm_learned_debug_step(&ctx, k, 0, occ, u, &r, v, &lqf, &lqr, &lpn, &lpo, &lr, un) == PLM_OK);
            CHECK_NEAR(lpn - lpo, plm_target_logp(t, tws, un) - plm_target_logp(t, tws, u), 1e-10);
            CHECK_NEAR(lr, lpn - lpo + lqr - lqf, 1e-12);
            /* q over the block's 16 values, from the inputs the kernel built */
            CHECK(plm_nn_ws_init(NULL, &w, &p->nn, 1) == PLM_OK);
            {
                plm_motif_occs *o;
                plm_motif_ws *mw;
                double vo[4];
                p->motif->detect(&ctx, p->motif, p->meta.shape, m, &o);
                plm_motif_ws_new(NULL, o, &mw);
                plm_motif_begin(&ctx, o, mw, u);
                plm_motif_inputs(&ctx, o, mw, occ, u, &r, x, vo);
                enumq = 0;
                for (cfg = 0; cfg < 16; cfg++) {
                    for (j = 0; j < 4; j++) vv[j] = (cfg >> j) & 1;
                    plm_nn_logq(&p->nn, &w, 1, x, vv, &lq, NULL);
                    sum += exp(lq);
                    if (memcmp(vv, v, sizeof vv) == 0) CHECK_NEAR(lq, lqf, 1e-12);
                    if (memcmp(vv, vo, sizeof vv) == 0) {
                        CHECK_NEAR(lq, lqr, 1e-12);
                        enumq = 1;
                    }
                }
                CHECK(enumq == 1);
                plm_motif_ws_free(mw);
            }
            CHECK_NEAR(sum, 1, 1e-12);
            plm_nn_ws_free(&w);
        }
    plm_target_ws_free(t, tws);
}

/* A 3-state HMM of T steps as the tracer builds it: s_1 ~ categorical(init), s_t ~ categorical(P[s_{t-1}]) with
** each probability a chain of selects on s_{t-1} + 1, y_t ~ categorical(E[s_t]) observed. */
static plm_gmodel *hmm3(plm_ctx *ctx, int T, const int *y)
{
    static const double init[3] = {0.5, 0.3, 0.2};
    static const double P[3][3] = {{0.8, 0.15, 0.05}, {0.1, 0.7, 0.2}, {0.3, 0.3, 0.4}};
    static const double E[3][3] = {{0.7, 0.2, 0.1}, {0.1, 0.8, 0.1}, {0.2, 0.2, 0.6}};
    plm_graph *g = plm_graph_new();
    plm_gmodel *m;
    int t, k, s, st = 0, prev = -1, p[3];
    if (plm_gmodel_new(ctx, g, &m)) return NULL;
    for (t = 0; t < T; t++) {
        char name[32];
        int z, zz, v[1] = {-1}, obs;
        for (k = 0; k < 3; k++) {
            if (t == 0) {
                p[k] = plm_graph_const(g, init[k]);
                continue;
            }
            p[k] = plm_graph_const(g, NAN);
            for (s = 3; s >= 1; s--)
                p[k] = plm_graph_op(g, PLM_OP_SELECT, plm_graph_op(g, PLM_OP_EQ, prev, plm_graph_const(g, s), -1),
                                    plm_graph_const(g, P[s - 1][k]), p[k]);
        }
        {
            plm_symdist d = {PLM_DIST_CATEGORICAL, 3, 3, p};
            snprintf(name, sizeof name, "s[%d]", t + 1);
            if (!st) st = plm_gmodel_latent(ctx, m, name, &d, v);
        }
        z = v[0];
        zz = MG_OP(g, ADD, z, plm_graph_const(g, 1));
        for (k = 0; k < 3; k++) {
            p[k] = plm_graph_const(g, NAN);
            for (s = 3; s >= 1; s--)
                p[k] = plm_graph_op(g, PLM_OP_SELECT, plm_graph_op(g, PLM_OP_EQ, zz, plm_graph_const(g, s), -1),
                                    plm_graph_const(g, E[s - 1][k]), p[k]);
        }
        {
            plm_symdist d = {PLM_DIST_CATEGORICAL, 3, 3, p};
            obs = plm_graph_const(g, y[t]);
            snprintf(name, sizeof name, "y[%d]", t + 1);
            if (!st) st = plm_gmodel_observe(ctx, m, name, &d, &obs);
        }
        prev = zz;
    }
    return st || plm_gmodel_finish(ctx, m) ? NULL : m;
}

/* On every chain block (s_t, s_t+1) of a 4-step HMM, at random points: the features are the block's log density
** (U1[s1] + N[s1, s2] differs between any two block values as the target does), the kernel's p(new) /
** p(old) is the target's ratio, its forward and reverse densities are the network's (skip logits included), and q
** sums to one over the 9 block values. */
static void test_chain_ratio_equals_enumeration(void)
{
    static const int y[4] = {0, 2, 1, 1};
    plm_ctx ctx;
    plm_gmodel *m;
    plm_target *t;
    plm_kernel *k;
    plm_learned_prop *p = train_small("chain", 2000, 2);
    int nocc = 0, occ, rep, smax;
    void *tws;
    plm_rng r;
    plm_ctx_clear(&ctx);
    m = hmm3(&ctx, 4, y);
    if (!m) printf("  hmm3: %s\n", ctx.msg);
    CHECK(m && p);
    if (!m || !p) return;
    smax = p->meta.shape[0];
    CHECK(p->nn.mem[0].skip == 1 && p->nn.mem[0].rows == 1 && p->nn.mem[1].skip == 1 && p->nn.mem[1].pair_of == 0);
    CHECK(plm_gmodel_target(&ctx, m, &t) == PLM_OK);
    tws = plm_target_ws_new(t);
    CHECK(plm_kernel_learned(&ctx, m, &p, 1, &k, &nocc) == PLM_OK);
    CHECK(nocc == 3);
    plm_rng_init(&r, 23, 0);
    for (occ = 0; occ < nocc; occ++)
        for (rep = 0; rep < 10; rep++) {
            double u[4], un[4], v[2], vv[2], vo[2], lqf, lqr, lpn, lpo, lr, lq, sum = 0, x[1 + CHAIN_SMAX_T + CHAIN_SMAX_T * CHAIN_SMAX_T];
            double lp0 = 0, f0 = 0;
            int j, a, b, seen = 0;
            plm_nn_ws w;
            plm_motif_occs *o;
            plm_motif_ws *mw;
            for (j = 0; j < 4; j++) u[j] = (double)plm_rng_uint(&r, 3);
            CHECK(plm_learned_debug_step(&ctx, k, 0, occ, u, &r, v, &lqf, &lqr, &lpn, &lpo, &lr, un) == PLM_OK);
            CHECK_NEAR(lpn - lpo, plm_target_logp(t, tws, un) - plm_target_logp(t, tws, u), 1e-10);
            CHECK_NEAR(lr, lpn - lpo + lqr - lqf, 1e-12);
            CHECK(plm_nn_ws_init(NULL, &w, &p->nn, 1) == PLM_OK);
            CHECK(p->motif->detect(&ctx, p->motif, p->meta.shape, m, &o) == PLM_OK);
            CHECK(plm_motif_ws_new(NULL, o, &mw) == PLM_OK);
            plm_motif_begin(&ctx, o, mw, u);
            plm_motif_inputs(&ctx, o, mw, occ, u, &r, x, vo);
            for (a = 0; a < 3; a++)
                for (b = 0; b < 3; b++) {
                    double lp, f = x[1 + a] + x[1 + smax + a * smax + b];
                    vv[0] = a, vv[1] = b;
                    lp = plm_motif_logp(o, mw, occ, u, vv);
                    if (a == 0 && b == 0) lp0 = lp, f0 = f;
                    CHECK_NEAR(lp - lp0, f - f0, 1e-10);   /* no entry is near the clamp here */
                    plm_nn_logq(&p->nn, &w, 1, x, vv, &lq, NULL);
                    sum += exp(lq);
                    if (vv[0] == v[0] && vv[1] == v[1]) {
                        CHECK_NEAR(lq, lqf, 1e-12);
                        seen |= 1;
                    }
                    if (vv[0] == vo[0] && vv[1] == vo[1]) {
                        CHECK_NEAR(lq, lqr, 1e-12);
                        seen |= 2;
                    }
                }
            CHECK(seen == 3);
            CHECK_NEAR(sum, 1, 1e-12);
            plm_motif_ws_free(mw);
            plm_nn_ws_free(&w);
        }
    plm_target_ws_free(t, tws);
}

/* q(. | x) of two 3-category members sums to 1 over the 9 blocks. */
static void check_normalised(const plm_nn *nn, plm_nn_ws *w, const double *x)
{
    double v[2], lq, tot = 0;
    for (int a = 0; a < 3; a++)
        for (int b = 0; b < 3; b++) {
            v[0] = a, v[1] = b;
            plm_nn_logq(nn, w, 1, x, v, &lq, NULL);
            tot += exp(lq);
        }
    CHECK_NEAR(tot, 1, 1e-12);
}

/* Skip logits: with every weight zero, q is the softmax of the skip logits alone (member 1: x[1..3]; member 2:
** row v1 of the table x[4..12] plus x[13..15]); with random weights, backpropagation equals finite differences and
** the single-evaluation paths score what the batched one does; a bad skip is refused. */
static void test_skip_logits(void)
{
    plm_nn_member mem[2] = {{PLM_NN_DISCRETE, 3, 0, 1, 1, -1, -1, 0, -1, -1, -1, 0, 0, -1, 0, -1},
                            {PLM_NN_DISCRETE, 3, 0, 1, 13, 4, 0, 0, -1, -1, -1, 0, 0, -1, 0, -1}};
    int hidden[1] = {4}, a, b, i;
    plm_nn nn;
    plm_nn_ws w;
    plm_rng r;
    double x[16], v[2], lq, g0;
    plm_ctx ctx;
    plm_ctx_clear(&ctx);
    CHECK(plm_nn_init(&ctx, &nn, 16, 2, mem, 1, hidden, PLM_NN_RELU) == PLM_OK);
    CHECK(plm_nn_ws_init(NULL, &w, &nn, 1) == PLM_OK);
    plm_rng_init(&r, 4, 0);
    x[0] = 3;
    for (i = 1; i < 16; i++) x[i] = 2 * plm_rng_normal(&r);
    for (a = 0; a < 3; a++)
        for (b = 0; b < 3; b++) {
            double z1 = log(exp(x[1]) + exp(x[2]) + exp(x[3])), z2 = 0;
            for (i = 0; i < 3; i++) z2 += exp(x[4 + 3 * a + i] + x[13 + i]);
            v[0] = a, v[1] = b;
            plm_nn_logq(&nn, &w, 1, x, v, &lq, NULL);
            CHECK_NEAR(lq, x[1 + a] - z1 + x[4 + 3 * a + b] + x[13 + b] - log(z2), 1e-12);
        }
    plm_nn_randomize(&nn, &r);
    for (size_t k = 0; k < nn.nparam; k++) nn.theta[k] += 0.1 * plm_rng_normal(&r);
    plm_nn_ws_sync(&w, &nn);
    {
        double *g = calloc(nn.nparam, sizeof *g), vold[2] = {2, 1}, vn[2], lqn, lqo, lq2;
        v[0] = 1, v[1] = 2;
        plm_nn_logq(&nn, &w, 1, x, v, &lq, g);
        for (size_t k = 0; k < nn.nparam; k += 2) {
            double keep = nn.theta[k], h = 1e-6, up, dn;
            nn.theta[k] = keep + h;
            plm_nn_logq(&nn, &w, 1, x, v, &up, NULL);
            nn.theta[k] = keep - h;
            plm_nn_logq(&nn, &w, 1, x, v, &dn, NULL);
            nn.theta[k] = keep;
            g0 = (up - dn) / (2 * h);
            CHECK_NEAR(g[k], g0, 1e-5 * fmax(1, fabs(g0)));
        }
        free(g);
        check_normalised(&nn, &w, x);
        for (i = 0; i < 20; i++) {
            plm_nn_propose(&nn, &w, x, vold, &r, vn, &lqn, &lqo);
            plm_nn_logq(&nn, &w, 1, x, vn, &lq, NULL);
            plm_nn_logq(&nn, &w, 1, x, vold, &lq2, NULL);
            CHECK_NEAR(lqn, lq, 1e-12);
            CHECK_NEAR(lqo, lq2, 1e-12);
        }
    }
    plm_nn_ws_free(&w);
    plm_nn_free(&nn);
    {   /* member 1 per category (rows): row c of the table x[4..12] and the shared x[13..15], two hidden layers */
        plm_nn_member rm[2] = {mem[0], mem[1]};
        int h2[2] = {5, 4};
        double X[4 * 16], V[4 * 2], LQ[4], lq1, vn[2], lqn, lqo;
        rm[0].rows = 1, rm[0].row_at = 4, rm[0].row_w = 3, rm[0].rshared_at = 13, rm[0].rshared_w = 3;
        CHECK(plm_nn_init(&ctx, &nn, 16, 2, rm, 2, h2, PLM_NN_TANH) == PLM_OK);
        CHECK(nn.width[0][0] == 6 && nn.width[0][3] == 1);
        CHECK(plm_nn_ws_init(NULL, &w, &nn, 4) == PLM_OK);
        plm_nn_randomize(&nn, &r);
        for (size_t k = 0; k < nn.nparam; k++) nn.theta[k] += 0.3 * plm_rng_normal(&r);
        plm_nn_ws_sync(&w, &nn);
        for (i = 0; i < 4; i++) {
            memcpy(X + 16 * i, x, sizeof x);
            X[16 * i + 5 + i] += 1;   /* different rows */
            V[2 * i] = i % 3, V[2 * i + 1] = (i + 1) % 3;
        }
        check_gradient(&nn, &w, 4, X, V, LQ, 1);
        plm_nn_logq(&nn, &w, 4, X, V, LQ, NULL);
        for (i = 0; i < 4; i++) {   /* one point at a time: the same as in the batch; the single paths too */
            plm_nn_logq(&nn, &w, 1, X + 16 * i, V + 2 * i, &lq1, NULL);
            CHECK_NEAR(lq1, LQ[i], 1e-12);
            plm_nn_propose(&nn, &w, X + 16 * i, V + 2 * i, &r, vn, &lqn, &lqo);
            CHECK_NEAR(lqo, LQ[i], 1e-12);
            plm_nn_logq(&nn, &w, 1, X + 16 * i, vn, &lq1, NULL);
            CHECK_NEAR(lqn, lq1, 1e-12);
        }
        check_normalised(&nn, &w, x);
        plm_nn_ws_free(&w);
        plm_nn_free(&nn);
        rm[0].row_at = 8;   /* 3 rows of 3 from 8 run past the inputs */
        CHECK(plm_nn_init(&ctx, &nn, 16, 2, rm, 2, h2, PLM_NN_TANH) == PLM_EINVAL);
        CHECK(strstr(ctx.msg, "member 1's per-category perceptron") != NULL);
    }
    mem[1].pair_at = 8;   /* the table would run past the 16 inputs */
    CHECK(plm_nn_init(&ctx, &nn, 16, 2, mem, 1, hidden, PLM_NN_RELU) == PLM_EINVAL);
    CHECK(strstr(ctx.msg, "member 2's skip logits") != NULL);
    mem[1].pair_at = 4, mem[0].pair_of = 1;   /* a pair with a later member */
    CHECK(plm_nn_init(&ctx, &nn, 16, 2, mem, 1, hidden, PLM_NN_RELU) == PLM_EINVAL);
}

/* A Gaussian mixture as the tracer builds it: mu_k ~ normal(0, 3), z_i ~ categorical(w), y_i ~ normal(mu[z_i], s)
** with mu[z] a chain of selects on z + 1 (1-based), and sd 0.5 or per component. */
static plm_gmodel *gmm(plm_ctx *ctx, int n, int K, int per_comp_sd)
{
    plm_graph *g = plm_graph_new();
    plm_gmodel *m;
    int mu[8], p[8], i, k, st = 0;
    plm_rng r;
    plm_rng_init(&r, 99, 0);
    if (plm_gmodel_new(ctx, g, &m)) return NULL;
    for (k = 0; k < K; k++) {
        char name[32];
        p[0] = plm_graph_const(g, 0), p[1] = plm_graph_const(g, 3);
        snprintf(name, sizeof name, "mu[%d]", k + 1);
        mu[k] = mg_latent(ctx, m, &st, name, PLM_DIST_NORMAL, 2, p);
    }
    for (i = 0; i < n; i++) {
        char name[32];
        int z, zz, mean = plm_graph_const(g, NAN), sd = plm_graph_const(g, NAN), q[2], y;
        plm_symdist d = {PLM_DIST_CATEGORICAL, K, K, p};
        int v[1];
        for (k = 0; k < K; k++) p[k] = plm_graph_const(g, (k + 1.0) / (K * (K + 1) / 2.0));
        snprintf(name, sizeof name, "z[%d]", i + 1);
        if (!st) st = plm_gmodel_latent(ctx, m, name, &d, v);
        z = v[0];
        zz = MG_OP(g, ADD, z, plm_graph_const(g, 1));
        for (k = K; k >= 1; k--) {
            int c = plm_graph_op(g, PLM_OP_EQ, zz, plm_graph_const(g, k), -1);
            mean = plm_graph_op(g, PLM_OP_SELECT, c, mu[k - 1], mean);
            sd = plm_graph_op(g, PLM_OP_SELECT, c, plm_graph_const(g, per_comp_sd ? 0.3 + 0.4 * k : 0.5), sd);
        }
        q[0] = mean, q[1] = sd;
        {
            plm_symdist dy = {PLM_DIST_NORMAL, 0, 2, q};
            y = plm_graph_const(g, (i % K) * 2.0 - 2 + 0.3 * plm_rng_normal(&r));
            snprintf(name, sizeof name, "y[%d]", i + 1);
            if (!st) st = plm_gmodel_observe(ctx, m, name, &dy, &y);
        }
    }
    return st || plm_gmodel_finish(ctx, m) ? NULL : m;
}

/* The mixture occurrence's closed-form p(new) / p(old) (own terms, the observation's, and the assigned
** observations' through sufficient statistics) is the target's ratio, at random points and proposals */
static void test_mixture_logp_equals_target_difference(void)
{
    plm_ctx ctx;
    plm_learned_prop *p = train_small("mixture", 2000, 2);
    plm_rng r;
    plm_ctx_clear(&ctx);
    plm_rng_init(&r, 4, 0);
    CHECK(p != NULL);
    for (int sdk = 0; sdk < 2 && p; sdk++) {
        plm_gmodel *m = gmm(&ctx, 12, 3, sdk);
        plm_target *t;
        plm_kernel *k;
        int nocc = 0, i, rep, j;
        CHECK(m != NULL);
        if (!m) return;
        void *tws;
        CHECK(plm_gmodel_target(&ctx, m, &t) == PLM_OK);
        tws = plm_target_ws_new(t);
        CHECK(plm_kernel_learned(&ctx, m, &p, 1, &k, &nocc) == PLM_OK);
        CHECK(nocc == 12);
        for (rep = 0; rep < 10; rep++)
            for (i = 0; i < nocc; i++) {
                double u[15], un[15], v[2], lqf, lqr, lpn, lpo, lr;
                for (j = 0; j < m->dim; j++) {
                    const plm_gsite *s = &m->sites[m->owner[j]];
                    u[j] = s->discrete ? (double)plm_rng_uint(&r, 3) : 3 * plm_rng_normal(&r);
                }
                CHECK(plm_learned_debug_step(&ctx, k, 0, i, u, &r, v, &lqf, &lqr, &lpn, &lpo, &lr, un) == PLM_OK);
                CHECK_NEAR(lpn - lpo, plm_target_logp(t, tws, un) - plm_target_logp(t, tws, u), 1e-8);
            }
        plm_target_ws_free(t, tws);
    }
}

/* A model without the motif is refused by name */
static void test_absent_motif_is_an_error(void)
{
    plm_ctx ctx;
    plm_learned_prop *p = train_small("chain", 100, 1);
    plm_gmodel *m;
    plm_kernel *k;
    plm_ctx_clear(&ctx);
    m = grid3(&ctx);
    CHECK(m && p);
    if (!m || !p) return;
    CHECK(plm_kernel_learned(&ctx, m, &p, 1, &k, NULL) == PLM_EINVAL);
    CHECK(strstr(ctx.msg, "motif chain") != NULL);
}

/* Ctrl-C stops training (checked every minibatch) and a chain of the kernel (checked in the sweep and by the
** driver every iteration), with PLM_EINTR */
static void test_interrupt_stops_training_and_sampling(void)
{
    plm_learned_train_opts o;
    plm_learned_prop *p = NULL, *g = train_small("grid", 500, 1);
    plm_ctx ctx;
    plm_gmodel *m;
    plm_target *t;
    plm_kernel *k;
    plm_mcmc_opts mo;
    plm_draws *U = NULL;
    static const double zeros[18];
    memset(&o, 0, sizeof o);
    o.samples = 2000, o.epochs = 5, o.nhidden = 1, o.hidden[0] = 8, o.seed = 1;
    plm_ctx_clear(&ctx);
    plm_interrupt();
    CHECK(plm_learned_train(&ctx, plm_motif_find("grid"), &o, &p) == PLM_EINTR);
    CHECK(p == NULL);
    plm_interrupt_clear();
    m = grid3(&ctx);
    CHECK(m && g && plm_gmodel_target(&ctx, m, &t) == PLM_OK && plm_kernel_learned(&ctx, m, &g, 1, &k, NULL) == PLM_OK);
    memset(&mo, 0, sizeof mo);
    mo.chains = 2, mo.warmup = 10, mo.samples = 1000000, mo.thin = 1, mo.seed = 1, mo.threads = 2;
    mo.init = zeros;   /* every node 0: a start of finite density (uniform(-2, 2) starts mean nothing here) */
    plm_interrupt();
    CHECK(plm_mcmc_run(&ctx, t, k, &mo, &U, NULL) == PLM_EINTR);
    plm_interrupt_clear();
}

/* A network with no hidden layer and binary members (the grid's layout) takes nn.c's bin1 path: its densities equal
** the batched pass's to 1e-12 (relative) with weights large enough that the logits saturate, and at one input its
** draws of the 16 block values follow exp(log q) (each count within 5 standard errors of 40,000 q). */
static void test_bin1_path(void)
{
    const plm_motif_def *d = plm_motif_find("grid");
    plm_nn_member mem[PLM_NN_MAXMEM];
    plm_nn nn;
    plm_nn_ws w, wb;
    plm_rng r;
    int nin, nmem, i, j, c, ok_lq = 1, ok_freq = 1;
    double x[64], vold[4], v[4], lqn, lqo, lq[2], X[128], V[8], xs[64];
    long count[16] = {0};
    d->layout(NULL, &nin, &nmem, mem);
    CHECK(plm_nn_init(NULL, &nn, nin, nmem, mem, 0, NULL, PLM_NN_TANH) == PLM_OK);
    CHECK(nn.bin1 == 1);
    plm_rng_init(&r, 77, 0);
    plm_nn_randomize(&nn, &r);
    for (size_t k = 0; k < nn.nparam; k++) nn.theta[k] += 3 * plm_rng_normal(&r);
    CHECK(plm_nn_ws_init(NULL, &w, &nn, 1) == PLM_OK && plm_nn_ws_init(NULL, &wb, &nn, 2) == PLM_OK);
    for (i = 0; i < 300; i++) {
        d->draw(NULL, &r, x, vold);
        plm_nn_propose(&nn, &w, x, vold, &r, v, &lqn, &lqo);
        memcpy(X, x, (size_t)nin * sizeof *x), memcpy(X + nin, x, (size_t)nin * sizeof *x);
        memcpy(V, v, 4 * sizeof *v), memcpy(V + 4, vold, 4 * sizeof *v);
        plm_nn_logq(&nn, &wb, 2, X, V, lq, NULL);
        if (!(fabs(lqn - lq[0]) <= 1e-12 * fmax(1, fabs(lq[0])) && fabs(lqo - lq[1]) <= 1e-12 * fmax(1, fabs(lq[1]))))
            ok_lq = 0;
    }
    CHECK(ok_lq);
    /* one input with no absent position, its logits moderate so that every block value has some mass */
    d->draw(NULL, &r, xs, vold);
    for (j = 0; j < nin; j++) xs[j] *= 0.1;
    for (j = 13; j < 17; j++) xs[j] = 0;
    for (j = 0; j < 4; j++) vold[j] = 0;
    for (i = 0; i < 40000; i++) {
        plm_nn_propose(&nn, &w, xs, vold, &r, v, &lqn, &lqo);
        count[(int)v[0] + 2 * (int)v[1] + 4 * (int)v[2] + 8 * (int)v[3]]++;
    }
    for (c = 0; c < 16; c++) {
        double q, se;
        for (j = 0; j < 4; j++) V[j] = c >> j & 1;
        plm_nn_logq(&nn, &wb, 1, xs, V, lq, NULL);
        q = exp(lq[0]), se = sqrt(40000 * q * (1 - q));
        if (fabs((double)count[c] - 40000 * q) > 5 * se + 1) ok_freq = 0;
    }
    CHECK(ok_freq);
    plm_nn_ws_free(&w), plm_nn_ws_free(&wb);
    plm_nn_free(&nn);
}

/* The kernel's single evaluations (plm_nn_propose, plain loops over the transposed weights) give each shipped
** network's densities to 1e-12 of the batched cblas pass (plm_nn_logq over 400 rows at once), on 200 prior draws
** of its motif, and plm_nn_sample draws the same block with the same density, bit for bit. */
static void test_single_evaluation_equals_batched(void)
{
    const char *names[3] = {"mixture", "grid", "chain"};
    for (int t = 0; t < 3; t++) {
        char path[128];
        plm_ctx ctx;
        plm_learned_prop *p = NULL;
        plm_nn_ws w1, wb;
        plm_rng r, r1, r2;
        int n = 200, nin, nmem, i, j, same = 1;
        double *X, *V, *lq, *lqs, v[PLM_NN_MAXMEM], vs[PLM_NN_MAXMEM], lqn, lqo, lqsamp;
        plm_ctx_clear(&ctx);
        snprintf(path, sizeof path, "stdlib/proposals/%s.plmprop", names[t]);
        CHECK(plm_learned_load(&ctx, path, &p) == PLM_OK);
        if (!p) continue;
        nin = p->nin, nmem = p->nmem;
        X = malloc(2 * (size_t)n * nin * sizeof *X), V = malloc(2 * (size_t)n * nmem * sizeof *V);
        lq = malloc(2 * (size_t)n * sizeof *lq), lqs = malloc(2 * (size_t)n * sizeof *lqs);
        CHECK(plm_nn_ws_init(NULL, &w1, &p->nn, 2) == PLM_OK && plm_nn_ws_init(NULL, &wb, &p->nn, 2 * n) == PLM_OK);
        plm_rng_init(&r, 31, (uint64_t)t);
        for (i = 0; i < n; i++) {
            double *x = X + (size_t)2 * i * nin, *vold = V + (size_t)(2 * i + 1) * nmem;
            p->motif->draw(p->meta.shape, &r, x, vold);
            memcpy(x + nin, x, (size_t)nin * sizeof *x);
            r1 = r2 = r;
            plm_nn_propose(&p->nn, &w1, x, vold, &r1, v, &lqn, &lqo);
            plm_nn_sample(&p->nn, &w1, x, &r2, vs, &lqsamp);
            same = same && memcmp(v, vs, (size_t)nmem * sizeof *v) == 0 && lqn == lqsamp;
            memcpy(V + (size_t)2 * i * nmem, v, (size_t)nmem * sizeof *v);
            lqs[2 * i] = lqn, lqs[2 * i + 1] = lqo;
            r = r1;
        }
        CHECK(same);
        plm_nn_logq(&p->nn, &wb, 2 * n, X, V, lq, NULL);
        for (j = 0; j < 2 * n; j++) CHECK_NEAR(lqs[j], lq[j], 1e-12);
        plm_nn_ws_free(&w1), plm_nn_ws_free(&wb);
        free(X), free(V), free(lq), free(lqs);
    }
}

/* A grid occurrence's features and block densities come from its cache when its blanket has not moved: the same
** numbers, bit for bit, as a fresh workspace computes at the same point; after a blanket site moves, those of the
** new point. */
static void test_feature_cache_is_exact(void)
{
    plm_ctx ctx;
    plm_gmodel *m;
    plm_learned_prop *p = NULL;
    plm_motif_occs *o = NULL;
    plm_rng r;
    int occ, rep, j, cfg;
    plm_ctx_clear(&ctx);
    m = grid3(&ctx);
    CHECK(m && plm_learned_load(&ctx, "stdlib/proposals/grid.plmprop", &p) == PLM_OK);
    if (!m || !p) return;
    CHECK(p->motif->detect(&ctx, p->motif, p->meta.shape, m, &o) == PLM_OK && o);
    plm_rng_init(&r, 5, 0);
    for (rep = 0; rep < 10; rep++) {
        plm_motif_ws *kept, *fresh;
        double u[9];
        for (j = 0; j < 9; j++) u[j] = (double)(plm_rng_uniform(&r) < 0.5);
        CHECK(plm_motif_ws_new(NULL, o, &kept) == PLM_OK);
        for (occ = 0; occ < plm_motif_count(o); occ++) {
            double x1[64] = {0}, x2[64] = {0}, x3[64] = {0}, v1[4], v2[4], v3[4];
            plm_motif_inputs(&ctx, o, kept, occ, u, &r, x1, v1);
            plm_motif_inputs(&ctx, o, kept, occ, u, &r, x2, v2);   /* from the cache */
            CHECK(plm_motif_ws_new(NULL, o, &fresh) == PLM_OK);
            plm_motif_inputs(&ctx, o, fresh, occ, u, &r, x3, v3);
            CHECK(memcmp(x1, x2, sizeof x1) == 0 && memcmp(x1, x3, sizeof x1) == 0);
            for (cfg = 0; cfg < 16; cfg++) {
                double vv[4];
                for (j = 0; j < 4; j++) vv[j] = (cfg >> j) & 1;
                CHECK(plm_motif_logp(o, kept, occ, u, vv) == plm_motif_logp(o, fresh, occ, u, vv));
            }
            plm_motif_ws_free(fresh);
            /* move every site: the blanket changes, and the features must follow */
            for (j = 0; j < 9; j++) u[j] = 1 - u[j];
            plm_motif_inputs(&ctx, o, kept, occ, u, &r, x1, v1);
            CHECK(plm_motif_ws_new(NULL, o, &fresh) == PLM_OK);
            plm_motif_inputs(&ctx, o, fresh, occ, u, &r, x3, v3);
            CHECK(memcmp(x1, x3, sizeof x1) == 0);
            plm_motif_ws_free(fresh);
        }
        plm_motif_ws_free(kept);
    }
}

/* A grid occurrence's terms keep their tables for the last few values of the coordinates outside the block that
** they read, and the kernel keeps the network's first-layer part of the inputs for the last few inputs: over a walk
** through points whose blankets come back and are evicted (six patterns of the 3x3 grid, more than the four kept),
** the features and all 16 block densities from one long-lived workspace equal a fresh workspace's, bit for bit; and
** the network's proposal from a kept first-layer part is plm_nn_propose's, bit for bit, on each shipped network. */
static void test_kept_tables_are_exact(void)
{
    plm_ctx ctx;
    plm_gmodel *m;
    plm_learned_prop *p = NULL;
    plm_motif_occs *o = NULL;
    plm_motif_ws *kept = NULL;
    plm_rng r;
    double pat[6][9];
    const char *names[3] = {"mixture", "grid", "chain"};
    int step, j, cfg, t, bad = 0;
    plm_ctx_clear(&ctx);
    m = grid3(&ctx);
    CHECK(m && plm_learned_load(&ctx, "stdlib/proposals/grid.plmprop", &p) == PLM_OK);
    if (!m || !p) return;
    CHECK(p->motif->detect(&ctx, p->motif, p->meta.shape, m, &o) == PLM_OK && o);
    CHECK(plm_motif_ws_new(NULL, o, &kept) == PLM_OK);
    if (!o || !kept) return;
    plm_rng_init(&r, 6, 0);
    for (t = 0; t < 6; t++)
        for (j = 0; j < 9; j++) pat[t][j] = (double)(plm_rng_uniform(&r) < 0.5);
    for (step = 0; step < 300; step++) {
        const double *u = pat[plm_rng_uint(&r, 6)];
        int occ = (int)plm_rng_uint(&r, (uint64_t)plm_motif_count(o));
        plm_motif_ws *fresh;
        double x1[64] = {0}, x2[64] = {0}, v1[4], v2[4];
        plm_motif_inputs(&ctx, o, kept, occ, u, &r, x1, v1);
        CHECK(plm_motif_ws_new(NULL, o, &fresh) == PLM_OK);
        plm_motif_inputs(&ctx, o, fresh, occ, u, &r, x2, v2);
        bad += memcmp(x1, x2, sizeof x1) != 0 || memcmp(v1, v2, sizeof v1) != 0;
        for (cfg = 0; cfg < 16; cfg++) {
            double vv[4];
            for (j = 0; j < 4; j++) vv[j] = (cfg >> j) & 1;
            bad += memcmp(&(double){plm_motif_logp(o, kept, occ, u, vv)}, &(double){plm_motif_logp(o, fresh, occ, u, vv)},
                          sizeof(double)) != 0;
        }
        plm_motif_ws_free(fresh);
    }
    CHECK(bad == 0);
    plm_motif_ws_free(kept);
    for (t = 0; t < 3; t++) {
        char path[128];
        plm_learned_prop *q = NULL;
        plm_nn_ws w1, w2;
        double x[1024], xp[8 * 4096], vold[PLM_NN_MAXMEM], va[PLM_NN_MAXMEM], vb[PLM_NN_MAXMEM], a1, a2, b1, b2;
        plm_rng ra, rb;
        int i, same = 1;
        snprintf(path, sizeof path, "stdlib/proposals/%s.plmprop", names[t]);
        CHECK(plm_learned_load(&ctx, path, &q) == PLM_OK);
        if (!q) continue;
        CHECK(q->nin <= 1024 && plm_nn_xpart_size(&q->nn) <= sizeof xp / sizeof *xp);
        CHECK(plm_nn_ws_init(NULL, &w1, &q->nn, 2) == PLM_OK && plm_nn_ws_init(NULL, &w2, &q->nn, 2) == PLM_OK);
        plm_rng_init(&r, 32, (uint64_t)t);
        for (i = 0; i < 100; i++) {
            q->motif->draw(q->meta.shape, &r, x, vold);
            plm_nn_xpart(&q->nn, &w2, x, xp);
            plm_rng_init(&ra, 33, (uint64_t)i), plm_rng_init(&rb, 33, (uint64_t)i);
            plm_nn_propose(&q->nn, &w1, x, vold, &ra, va, &a1, &a2);
            plm_nn_propose_xp(&q->nn, &w2, x, xp, vold, &rb, vb, &b1, &b2);
            same = same && memcmp(va, vb, (size_t)q->nmem * sizeof *va) == 0 && memcmp(&a1, &b1, sizeof a1) == 0 &&
                   memcmp(&a2, &b2, sizeof a2) == 0;
        }
        CHECK(same);
        plm_nn_ws_free(&w1), plm_nn_ws_free(&w2);
    }
}

int main(void)
{
    plm_init();
    RUN(test_nn_gradient_matches_finite_differences);
    RUN(test_mdn_logq_normalises);
    RUN(test_file_round_trip_and_refusals);
    RUN(test_training_reproducible);
    RUN(test_grid_ratio_equals_enumeration);
    RUN(test_grid_partial_windows);
    RUN(test_chain_ratio_equals_enumeration);
    RUN(test_skip_logits);
    RUN(test_mixture_logp_equals_target_difference);
    RUN(test_absent_motif_is_an_error);
    RUN(test_interrupt_stops_training_and_sampling);
    RUN(test_bin1_path);
    RUN(test_single_evaluation_equals_batched);
    RUN(test_feature_cache_is_exact);
    RUN(test_kept_tables_are_exact);
    return CHECK_DONE();
}
