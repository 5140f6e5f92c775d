/* test_bffg_native.c -- native code for compiled drifts (expr_native.c) against the interpreter: the generated
** code must give plm_prog_point's values bit for bit (FitzHugh-Nagumo, Ornstein-Uhlenbeck, a 3-d nonlinear drift
** with the time, and a program of the rarer operations), a guided path's log weight and end point with native code
** must equal the interpreter's bit for bit (the whole path natively for FHN and OU, the drift alone for the 3-d model
** whose diffusion reads the state), compiling is done once when several threads ask at once, and a compiler
** that does not exist gives the interpreter (NULL, and the same weight), never an error. The cache goes to a fresh
** folder (XDG_CACHE_HOME) so that the compile itself is exercised. */
#include "check.h"
#include "plume.h"
#include "bffg_impl.h"
#include "bffg_sde_impl.h"
#include "expr_native.h"

#include <dirent.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static plm_ctx ctx;

#include "sde_models.h"


/* Operations the generated code sends through plm_op_eval or writes as C operators: logistic, softplus, Phi, sign,
** digamma, comparisons, and/or, select, pow, lgamma, atan2, min, inv. */
static plm_sde *rare_ops(void)
{
    static const double p[1] = {0.3};
    plm_graph *g = plm_graph_new();
    int x1 = IN(PLM_GRP_X, 0), x2 = IN(PLM_GRP_X, 1), drift[2], diff[4];
    int c = O2(PLM_OP_AND, O2(PLM_OP_LT, x1, x2), O2(PLM_OP_NE, x1, C(0)));
    int s1 = plm_graph_op(g, PLM_OP_SELECT, c, O1(PLM_OP_LOGISTIC, x1), O1(PLM_OP_SOFTPLUS, x2));
    int s2 = O2(PLM_OP_ADD, O1(PLM_OP_PHI, x2), O2(PLM_OP_MUL, O1(PLM_OP_SIGN, x1), O1(PLM_OP_DIGAMMA, O2(PLM_OP_ADD, O1(PLM_OP_ABS, x2), C(0.5)))));
    drift[0] = O2(PLM_OP_ADD, O2(PLM_OP_MUL, s1, s2), O2(PLM_OP_POW, O2(PLM_OP_ADD, O1(PLM_OP_ABS, x1), C(1)), IN(PLM_GRP_P, 0)));
    drift[1] = O2(PLM_OP_SUB, O2(PLM_OP_ATAN2, x1, O2(PLM_OP_OR, x2, C(0))),
                  O2(PLM_OP_MIN, O1(PLM_OP_LGAMMA, O2(PLM_OP_ADD, O2(PLM_OP_MUL, x2, x2), C(0.1))), O1(PLM_OP_INV, O2(PLM_OP_ADD, O2(PLM_OP_MUL, x1, x1), C(1)))));
    diff[0] = C(0.3), diff[1] = diff[2] = C(0), diff[3] = C(0.3);
    return sde_of(g, 2, 2, 1, drift, diff, p);
}

/* Native code for s's drift against the point evaluator at 2000 random points: the number of outputs that differ
** in any bit (-1 when there is no native code). */
static int native_vs_point(const plm_sde *s)
{
    const plm_prog *p = s->drift_prog;
    double x[8], T[3] = {0.25, 0.01, 0.1}, out[8], ref[8], *po[8], *pr[8];
    plm_prog_in in[PLM_NGROUPS];
    plm_prog_point pt;
    plm_prog_native_fn fn = plm_prog_native(p);
    plm_rng r;
    int d = s->dim, i, j, o, differ = 0;
    if (!fn) return -1;
    memset(in, 0, sizeof in);
    in[PLM_GRP_P].p = s->params, in[PLM_GRP_T].p = T, in[PLM_GRP_X].p = x, in[PLM_GRP_X].ld = 1;
    for (o = 0; o < d; o++) po[o] = out + o, pr[o] = ref + o;
    CHECK(plm_prog_point_init(&ctx, &pt, p, in, pr, NULL) == PLM_OK);
    plm_rng_init(&r, 7, 0);
    for (i = 0; i < 2000; i++) {
        for (j = 0; j < d; j++) x[j] = 1.5 * plm_rng_normal(&r);
        if (i == 0) x[0] = 0;   /* a branch of select and sign at 0 */
        plm_prog_point_run(&pt);
        fn(pt.w.R, po, plm_op_eval);
        for (o = 0; o < d; o++) differ += memcmp(&out[o], &ref[o], sizeof *out) != 0;
    }
    plm_prog_point_free(&pt);
    return differ;
}

static void test_native_drift_equals_interpreter(void)
{
    const char *name[4] = {"FitzHugh-Nagumo", "Ornstein-Uhlenbeck", "3-d nonlinear", "rarer operations"};
    plm_sde *s[4];
    int i, differ;
    s[0] = fhn(), s[1] = ou(), s[2] = nonlinear3(), s[3] = rare_ops();
    for (i = 0; i < 4; i++) {
        differ = native_vs_point(s[i]);
        printf("  %s: native drift vs the interpreter at 2000 points: %d values differ (-1: no native code)\n", name[i], differ);
        CHECK(differ == 0);
    }
}

/* The guided log weight and end point of one path for innovations z, with native code on and suspended; *native
** is plm_bffg_kernel_sde_native (2: the whole path natively, 1: the drift). */
static void path_both(const plm_sde *s, const double *x0, double *lw, double *y, int *native)
{
    int d = s->dim, i;
    size_t N = 200, n;
    double Hc[64], v[8];
    plm_bffg_sde_opts o = {0, 1.0, 0.005, 0, x0, NULL, NULL, NULL};
    plm_bffg_msg child = {0, d, -1.5, v, Hc, 0, 0, 0, 0};
    plm_bffg_kernel *k;
    void *guide = NULL;
    double *z, *work;
    plm_rng r;
    for (i = 0; i < d * d; i++) Hc[i] = i % (d + 1) == 0 ? 4.0 : 0.5 / d;
    for (i = 0; i < d; i++) v[i] = 4.0 * (x0[i] + 0.3);
    CHECK(plm_bffg_kernel_sde(&ctx, s, &o, &k) == PLM_OK);
    CHECK(k->ops->guide(&ctx, k, &child, &guide) == PLM_OK);
    z = malloc(k->nz * sizeof *z), work = malloc((k->work + 8) * sizeof *work);
    plm_rng_init(&r, 13, 0);
    for (n = 0; n < k->nz; n++) z[n] = plm_rng_normal(&r);
    (void)N;
    *native = plm_bffg_kernel_sde_native(k);
    lw[0] = k->ops->sample_z(k, guide, x0, z, y, work);
    plm_native_suspend(1);
    lw[1] = k->ops->sample_z(k, guide, x0, z, y + d, work);
    plm_native_suspend(-1);
    free(z), free(work);
}

static void test_native_path_weight_equals_interpreter(void)
{
    static const double xf[2] = {-0.5, -0.6}, xo[1] = {0.1}, x3[3] = {0.3, -0.2, 0.5};
    const plm_sde *s[3];
    const double *x0[3] = {xf, xo, x3};
    const char *name[3] = {"FitzHugh-Nagumo", "Ornstein-Uhlenbeck", "3-d nonlinear"};
    int i, native;
    double lw[2], y[16];
    s[0] = fhn(), s[1] = ou(), s[2] = nonlinear3();
    for (i = 0; i < 3; i++) {
        int d = s[i]->dim;
        path_both(s[i], x0[i], lw, y, &native);
        printf("  %s: guided log weight native %.17g, interpreter %.17g (native code: %d)\n", name[i], lw[0], lw[1], native);
        CHECK(native == (i < 2 ? 2 : 1));   /* the 3-d diffusion reads the state: the drift alone natively */
        CHECK(isfinite(lw[0]));
        CHECK(memcmp(&lw[0], &lw[1], sizeof *lw) == 0);
        CHECK(memcmp(y, y + d, (size_t)d * sizeof *y) == 0);
    }
}

typedef struct race { const plm_prog *p; plm_prog_native_fn fn; } race;

static void *ask(void *arg)
{
    race *R = arg;
    R->fn = plm_prog_native(R->p);
    return NULL;
}

/* Files in dir whose names end in ext. */
static int count_files(const char *dir, const char *ext)
{
    DIR *D = opendir(dir);
    struct dirent *e;
    int n = 0;
    if (!D) return -1;
    while ((e = readdir(D))) {
        size_t l = strlen(e->d_name), k = strlen(ext);
        n += l > k && strcmp(e->d_name + l - k, ext) == 0;
    }
    closedir(D);
    return n;
}

static char cache[256];

static void test_native_compiles_once_for_threads(void)
{
    plm_sde *s = nonlinear3();
    pthread_t th[4];
    race R[4];
    char dir[300];
    int i, so0, so1;
    snprintf(dir, sizeof dir, "%s/plume", cache);
    so0 = count_files(dir, ".so");
    s->params[0] = 0.7;
    /* a drift no other test compiled: its own object */
    {
        plm_graph *g = plm_graph_new();
        int x = IN(PLM_GRP_X, 0), drift[1], diff[1];
        drift[0] = O2(PLM_OP_MUL, O1(PLM_OP_COS, x), IN(PLM_GRP_P, 0));
        diff[0] = C(0.2);
        s = sde_of(g, 1, 1, 1, drift, diff, (const double[]){0.9});
    }
    for (i = 0; i < 4; i++) R[i].p = s->drift_prog, R[i].fn = NULL;
    for (i = 0; i < 4; i++) CHECK(pthread_create(&th[i], NULL, ask, &R[i]) == 0);
    for (i = 0; i < 4; i++) pthread_join(th[i], NULL);
    so1 = count_files(dir, ".so");
    printf("  4 threads: native code %p %p %p %p; objects in the cache %d -> %d, sources left %d\n", (void *)(size_t)R[0].fn,
           (void *)(size_t)R[1].fn, (void *)(size_t)R[2].fn, (void *)(size_t)R[3].fn, so0, so1, count_files(dir, ".c"));
    for (i = 0; i < 4; i++) CHECK(R[i].fn != NULL && R[i].fn == R[0].fn);
    CHECK(so1 == so0 + 1);
    CHECK(count_files(dir, ".c") == 0);
}

static void test_no_compiler_falls_back(void)
{
    static const double xf[2] = {-0.5, -0.6};
    plm_sde *s;
    double lw[2], lwn[2], y[4], yn[4];
    int native, nn;
    /* the same FitzHugh-Nagumo with a working compiler, for the reference weight */
    s = fhn();
    path_both(s, xf, lwn, yn, &nn);
    CHECK(nn);
    setenv("PLUME_CC", "/nonexistent/cc", 1);
    s = fhn();   /* a fresh program: the first one's native code is cached on it */
    path_both(s, xf, lw, y, &native);
    unsetenv("PLUME_CC");
    printf("  PLUME_CC=/nonexistent/cc: native code %d; log weight %.17g, with native code %.17g\n", native, lw[0], lwn[0]);
    CHECK(!native);
    CHECK(memcmp(&lw[0], &lw[1], sizeof *lw) == 0);
    CHECK(memcmp(&lw[0], &lwn[0], sizeof *lw) == 0);   /* the interpreter's weight is the native one */
    CHECK(memcmp(y, yn, 2 * sizeof *y) == 0);
    /* PLUME_NATIVE=0 turns it off */
    setenv("PLUME_NATIVE", "0", 1);
    CHECK(!plm_native_enabled());
    CHECK(plm_prog_native(fhn()->drift_prog) == NULL);
    unsetenv("PLUME_NATIVE");
    CHECK(plm_native_enabled());
}

/* Two diffusion kernels remade from one (other parameters, the same grid and native code) drawn side by side
** (plm_bffg_sde_sample_z2) give each kernel's own draw bit for bit: with a~ = a (the loop without the trace term)
** and with a~ != a on either side (the loop with it); a path that leaves the finite numbers sends both back to the
** caller (return 0) with nothing written. */
static void test_two_paths_side_by_side_equal_each_alone(void)
{
    const char *name[2] = {"FitzHugh-Nagumo", "Ornstein-Uhlenbeck"};
    int model, aux;
    for (model = 0; model < 2; model++)
        for (aux = 0; aux < 3; aux++) {
            plm_sde *s = model ? ou() : fhn();
            int d = s->dim, i, ok, same = 1;
            double x0[2] = {-0.5, 0.4}, Hc[4] = {4, 0.3, 0.3, 2}, v[2] = {1, -1}, p2[8], a_other[4] = {0.2, 0, 0, 0.3};
            double y[4], yy[4], lw[2], lww[2], *z[2], *work = malloc(64 * sizeof *work);
            plm_bffg_sde_opts o = {0, 1.0, 0.005, 0, x0, NULL, NULL, aux == 1 ? a_other : NULL};
            plm_bffg_msg child = {0, d, -1.5, v, Hc, 0, 0, 0, 0};
            plm_bffg_kernel *k[2];
            void *g[2];
            plm_rng r;
            CHECK(plm_bffg_kernel_sde(&ctx, s, &o, &k[0]) == PLM_OK);
            for (i = 0; i < s->np; i++) p2[i] = s->params[i] * 1.1 + 0.05;
            CHECK(plm_bffg_kernel_sde_remake(&ctx, k[0], p2, 0, NULL, &k[1]) == PLM_OK);
            if (aux == 2) {   /* a~ != a on the second side only: its own auxiliary */
                plm_bffg_sde_opts o2 = o;
                o2.a = a_other;
                CHECK(plm_bffg_kernel_sde(&ctx, s, &o2, &k[1]) == PLM_OK);
            }
            plm_rng_init(&r, 21, (uint64_t)aux);
            for (i = 0; i < 2; i++) {
                CHECK(k[i]->ops->guide(&ctx, k[i], &child, &g[i]) == PLM_OK);
                z[i] = malloc(k[i]->nz * sizeof **z);
                for (size_t n = 0; n < k[i]->nz; n++) z[i][n] = plm_rng_normal(&r);
            }
            ok = plm_bffg_sde_sample_z2(k[0], g[0], x0, z[0], y, &lw[0], k[1], g[1], x0, z[1], y + d, &lw[1]);
            for (i = 0; i < 2; i++) lww[i] = k[i]->ops->sample_z(k[i], g[i], x0, z[i], yy + i * d, work);
            if (aux == 2) {   /* a kernel made anew has a grid of its own: not drawn together */
                CHECK(ok == 0);
            } else {
                CHECK(ok == 1);
                same = memcmp(lw, lww, sizeof lw) == 0 && memcmp(y, yy, 2 * (size_t)d * sizeof *y) == 0;
                CHECK(same);
                CHECK(isfinite(lw[0]) && isfinite(lw[1]) && lw[0] != lw[1]);
            }
            printf("  %s, %s: side by side %d, the same bits %d (log weights %.17g, %.17g)\n", name[model],
                   aux == 0 ? "a~ = a" : aux == 1 ? "a~ != a" : "another grid", ok, same, lw[0], lw[1]);
            /* innovations that blow the first path up: nothing written, each alone says which */
            if (aux == 0) {
                double keep = y[0];
                z[0][3] = INFINITY;
                CHECK(plm_bffg_sde_sample_z2(k[0], g[0], x0, z[0], y, &lw[0], k[1], g[1], x0, z[1], y + d, &lw[1]) == 0);
                CHECK(y[0] == keep);
                CHECK(isnan(k[0]->ops->sample_z(k[0], g[0], x0, z[0], yy, work)));
            }
            free(z[0]), free(z[1]), free(work);
        }
}

/* Kernels of one parameter move (plm_bffg_kernel_sde_remake with a sibling) share the native path's plan when the
** parameters and a~ agree, and then draw exactly what the same kernel remade alone draws; at other parameters,
** or with another a~, the plan is not shared. */
static void test_sibling_kernels_share_the_plan_and_draw_the_same(void)
{
    plm_sde *s = fhn();
    double at0[2] = {-0.5, 0.4}, at1[2] = {1.1, 0.2}, p2[4], p3[4], a_other[4] = {0.2, 0, 0, 0.3};
    double Hc[4] = {4, 0.3, 0.3, 2}, v[2] = {1, -1}, x0[2] = {0.3, -0.2}, y[2], yy[2], lw, lww, *z, work[64];
    plm_bffg_sde_opts o0 = {0, 1.0, 0.005, 0, at0, NULL, NULL, NULL}, o1 = {1.0, 2.0, 0.005, 0, at1, NULL, NULL, NULL};
    plm_bffg_msg child = {0, 2, -1.5, v, Hc, 0, 0, 0, 0};
    plm_bffg_kernel *k0, *k1, *k1a, *r0, *r1, *r1alone, *r1other, *r1a;
    void *g1, *g1alone;
    plm_rng r;
    size_t n;
    int i;
    CHECK(plm_bffg_kernel_sde(&ctx, s, &o0, &k0) == PLM_OK);
    CHECK(plm_bffg_kernel_sde(&ctx, s, &o1, &k1) == PLM_OK);
    o1.a = a_other;
    CHECK(plm_bffg_kernel_sde(&ctx, s, &o1, &k1a) == PLM_OK);
    for (i = 0; i < s->np; i++) p2[i] = s->params[i] * 1.1 + 0.05, p3[i] = p2[i] + 0.01;
    CHECK(plm_bffg_kernel_sde_remake(&ctx, k0, p2, 0, NULL, &r0) == PLM_OK);
    CHECK(plm_bffg_kernel_sde_remake(&ctx, k1, p2, 0, r0, &r1) == PLM_OK);
    CHECK(plm_bffg_kernel_sde_remake(&ctx, k1, p2, 0, NULL, &r1alone) == PLM_OK);
    CHECK(plm_bffg_kernel_sde_remake(&ctx, k1, p3, 0, r0, &r1other) == PLM_OK);
    CHECK(plm_bffg_kernel_sde_remake(&ctx, k1a, p2, 0, r0, &r1a) == PLM_OK);
    CHECK(((sde_kernel *)r1->impl)->plan != NULL);
    CHECK(((sde_kernel *)r1->impl)->plan == ((sde_kernel *)r0->impl)->plan);
    CHECK(((sde_kernel *)r1alone->impl)->plan != ((sde_kernel *)r0->impl)->plan);
    CHECK(((sde_kernel *)r1other->impl)->plan != ((sde_kernel *)r0->impl)->plan);   /* other parameters */
    CHECK(((sde_kernel *)r1a->impl)->plan != ((sde_kernel *)r0->impl)->plan);       /* another a~ */
    CHECK(r1->ops->guide(&ctx, r1, &child, &g1) == PLM_OK);
    CHECK(r1alone->ops->guide(&ctx, r1alone, &child, &g1alone) == PLM_OK);
    z = malloc(r1->nz * sizeof *z);
    plm_rng_init(&r, 5, 0);
    for (n = 0; n < r1->nz; n++) z[n] = plm_rng_normal(&r);
    lw = r1->ops->sample_z(r1, g1, x0, z, y, work);
    lww = r1alone->ops->sample_z(r1alone, g1alone, x0, z, yy, work);
    printf("  shared plan: log weight %.17g, remade alone %.17g\n", lw, lww);
    CHECK(isfinite(lw) && memcmp(&lw, &lww, sizeof lw) == 0 && memcmp(y, yy, sizeof y) == 0);
    free(z);
}

int main(void)
{
    char tmpl[] = "/tmp/plume-native-test-XXXXXX";
    plm_ctx_clear(&ctx);
    if (mkdtemp(tmpl)) {
        snprintf(cache, sizeof cache, "%s", tmpl);
        setenv("XDG_CACHE_HOME", cache, 1);
    }
    unsetenv("PLUME_CC");
    unsetenv("PLUME_NATIVE");
    RUN(test_native_drift_equals_interpreter);
    RUN(test_native_path_weight_equals_interpreter);
    RUN(test_two_paths_side_by_side_equal_each_alone);
    RUN(test_sibling_kernels_share_the_plan_and_draw_the_same);
    RUN(test_native_compiles_once_for_threads);
    RUN(test_no_compiler_falls_back);
    if (cache[0]) {
        char cmd[400];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", cache);
        if (system(cmd) != 0) printf("  could not remove %s\n", cache);
    }
    return CHECK_DONE();
}
