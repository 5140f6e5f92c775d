/* ssm_sv.c -- the stochastic-volatility ssm (traced from Lua, compiled) against the same loop written by hand
** in C with GSL: 10,000 particles x 1,000 steps of "draw x_t | x_{t-1}, weight by log p(y_t | x_t)" (the
** propagate-and-weight step of a bootstrap filter), on one and two threads; plus the compile time of a
** 50-node graph. Prints one line per measurement and the ratios. */
#include <lauxlib.h>
#include <lua.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <gsl/gsl_randist.h>

#include "l_expr.h"
#include "plume.h"
#include "plume_lua.h"

#define N 10000
#define T 1000

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

static const char *model =
    "sv = plume.ssm{\n"
    "  params = { mu = -1, rho = 0.95, sigma = 0.3 },\n"
    "  init   = function(p)       return plume.dist.normal(p.mu, p.sigma / plume.math.sqrt(1 - p.rho^2)) end,\n"
    "  trans  = function(p, x, t) return plume.dist.normal(p.mu + p.rho * (x - p.mu), p.sigma) end,\n"
    "  obs    = function(p, x, t) return plume.dist.normal(0, plume.math.exp(x / 2)) end,\n"
    "}\n";

/* the hand-written loop: one GSL-interfaced stream, the density written out; with fast = 1 the normals come
** from plume's ziggurat instead (plm_rng_normal), to separate the generator from the compiled overhead */
static double hand(const double *y, double *x, double *logw, int fast)
{
    const double mu = -1, rho = 0.95, sigma = 0.3, c = 0.91893853320467274178;
    plm_rng r;
    double acc = 0;
    int t, i;
    plm_rng_init(&r, 1, 0);
    for (i = 0; i < N; i++) x[i] = mu + sigma / sqrt(1 - rho * rho) * gsl_ran_gaussian_ziggurat(&r.gsl, 1.0);
    for (t = 0; t < T; t++) {
        const double yt = y[t];
        if (t > 0 && fast)
            for (i = 0; i < N; i++) x[i] = mu + rho * (x[i] - mu) + sigma * plm_rng_normal(&r);
        else if (t > 0)
            for (i = 0; i < N; i++) x[i] = mu + rho * (x[i] - mu) + sigma * gsl_ran_gaussian_ziggurat(&r.gsl, 1.0);
        for (i = 0; i < N; i++) logw[i] = -0.5 * yt * yt * exp(-x[i]) - 0.5 * x[i] - c;
        acc += logw[t % N];
    }
    return acc;
}

static double compiled(const plm_ssm *m, const double *y, double *x, double *logw, plm_rng *rng, int threads)
{
    plm_ctx ctx;
    double acc = 0;
    int t, i;
    for (i = 0; i < N; i++) plm_rng_init(&rng[i], 1, (uint64_t)i);
    for (t = 1; t <= T; t++) {
        if (plm_ssm_step(&ctx, m, t, N, x, &y[t - 1], x, N, logw, rng, threads)) {
            fprintf(stderr, "%s\n", ctx.msg);
            exit(1);
        }
        acc += logw[(t - 1) % N];
    }
    return acc;
}

/* What two threads can give on this machine right now: a pure arithmetic loop split by plm_parallel_for.
** On a shared machine other processes take cores; compare the model speed-ups with this ceiling. */
static volatile double sink;
static void spin(void *arg, size_t b, size_t e, int worker)
{
    double s = 0;
    size_t i;
    int k;
    (void)arg;
    (void)worker;
    for (i = b; i < e; i++)
        for (k = 0; k < 1000; k++) s += sqrt((double)(i + (size_t)k));
    sink = s;
}

static double ceiling(void)
{
    double t0 = now(), t1, t2;
    plm_parallel_for(1, 100000, 1, spin, NULL);
    t1 = now();
    plm_parallel_for(2, 100000, 1, spin, NULL);
    t2 = now();
    return (t1 - t0) / (t2 - t1);
}

/* a 50-node graph: a mix of arithmetic and math functions over 3 states and 3 parameters */
static double compile_time(void)
{
    plm_graph *g = plm_graph_new();
    int nodes[64], n = 0, i, reps = 2000;
    plm_ctx ctx;
    plm_prog *p;
    plm_prog_info info;
    double t0;
    static const int ops[] = {PLM_OP_ADD, PLM_OP_MUL, PLM_OP_SUB, PLM_OP_EXP, PLM_OP_DIV, PLM_OP_TANH, PLM_OP_MUL,
                              PLM_OP_LOG1P, PLM_OP_ADD, PLM_OP_SQRT};
    for (i = 0; i < 3; i++) nodes[n++] = plm_graph_input(g, PLM_GRP_X, i);
    for (i = 0; i < 3; i++) nodes[n++] = plm_graph_input(g, PLM_GRP_P, i);
    while (n < 50) {
        int op = ops[n % 10], a = nodes[n - 1], b = nodes[(n * 7) % (n - 1)];
        if (op == PLM_OP_SQRT || op == PLM_OP_LOG1P) a = plm_graph_op(g, PLM_OP_MUL, a, a, -1);
        nodes[n++] = plm_graph_op(g, op, a, b, -1);
    }
    t0 = now();
    for (i = 0; i < reps; i++)
        if (plm_prog_compile(&ctx, g, 1, &nodes[n - 1], 1u << PLM_GRP_X, &p)) return -1;
    plm_prog_describe(p, &info);
    printf("graph: %d nodes in the graph, %d live, %d instructions (%d uniform), %d registers\n", plm_graph_size(g),
           info.nlive, info.ninstructions, info.nuniform, info.nregisters);
    return (now() - t0) / reps;
}

int main(int argc, char **argv)
{
    plm_State *P = plm_open();
    lua_State *L = plm_lua(P);
    plm_ssm *m;
    plm_ctx ctx;
    double *x = malloc(N * sizeof *x), *logw = malloc(N * sizeof *logw), *ys = malloc(T * sizeof *ys);
    double *xs = malloc(T * sizeof *xs), t0, th, t1, t2, ttrace, a = 0, b = 0;
    plm_rng *rng = malloc(N * sizeof *rng);
    int reps = argc > 1 ? atoi(argv[1]) : 3, r;
    double best_h = 1e9, best_1 = 1e9, best_2 = 1e9, best_f = 1e9;
    t0 = now();
    if (plm_dostring(P, model)) {
        fprintf(stderr, "%s\n", plm_errmsg(P));
        return 1;
    }
    ttrace = now() - t0;
    lua_getglobal(L, "sv");
    m = plm_l_tossm(L, -1);
    if (plm_ssm_simulate(&ctx, m, T, 1, 7, xs, ys, 1)) return 1;
    for (r = 0; r < reps; r++) {
        t0 = now();
        a = hand(ys, x, logw, 0);
        th = now() - t0;
        t0 = now();
        hand(ys, x, logw, 1);
        if (now() - t0 < best_f) best_f = now() - t0;
        t0 = now();
        b = compiled(m, ys, x, logw, rng, 1);
        t1 = now() - t0;
        t0 = now();
        compiled(m, ys, x, logw, rng, 2);
        t2 = now() - t0;
        if (th < best_h) best_h = th;
        if (t1 < best_1) best_1 = t1;
        if (t2 < best_2) best_2 = t2;
    }
    printf("sv ssm, %d particles x %d steps (best of %d): hand-written C+GSL %.3f s (%.1f M particle-steps/s)\n", N, T,
           reps, best_h, N * (double)T / best_h / 1e6);
    printf("  plume compiled, 1 thread %.3f s (%.1f M/s), 2 threads %.3f s\n", best_1, N * (double)T / best_1 / 1e6,
           best_2);
    printf("  ratio plume/hand (1 thread) = %.2f   2-thread speed-up = %.2f   (checksums %.3g %.3g)\n",
           best_1 / best_h, best_1 / best_2, a, b);
    printf("  hand-written with plume's normal generator %.3f s: ratio plume/that = %.2f\n", best_f, best_1 / best_f);
    printf("  trace + compile of the sv model from Lua: %.3f ms\n", ttrace * 1e3);
    printf("compile of a 50-node graph: %.3f ms\n", compile_time() * 1e3);
    printf("2-thread ceiling of this machine now (pure arithmetic loop): %.2f\n", ceiling());
    plm_close(P);
    return 0;
}
