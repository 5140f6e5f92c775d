/* pf_sv.c -- the bootstrap particle filter of plume (plm_pf_run over the stochastic-volatility ssm traced from
** Lua) against the same filter written by hand in C: mu = -1, rho = 0.95, sigma = 0.3, T = 1,000 steps,
** N = 10,000 particles, systematic resampling at every step, log evidence, ESS and filtering mean and variance
** at every step in both. One run prints both times, the ratio, particle-steps per second, the 2-thread
** speed-up, and the machine's own 2-thread ceiling in the same run (a loop of pure arithmetic on 1 and 2
** threads, with as many barriers per second as the filter has): on a shared machine a second core is often
** not free, and then no filter can be faster on two threads. Usage: pf_sv [reps] [N]. */
#include <lauxlib.h>
#include <lua.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "l_expr.h"
#include "plume.h"
#include "plume_lua.h"

#define T 1000

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

/* The ceiling: 1000 parallel sections of pure arithmetic, each as long as a filter step's work. */
static void spin(void *arg, size_t b, size_t e, int worker)
{
    double *acc = arg, x = 1;
    size_t i;
    for (i = b; i < e; i++) x = x * 1.0000001 + 1e-9;
    acc[worker * 8] += x;   /* a cache line per worker */
}

static double ceiling_time(int nthreads, size_t work)
{
    static double acc[8 * 8];
    double t0 = now();
    int s;
    for (s = 0; s < T; s++) plm_parallel_for(nthreads, work, 1, spin, acc);
    return now() - t0;
}

static const char *model =
    "sv = plume.ssm{\n"
    "  params = { mu = -1, rho = 0.95, sigma = 0.3 },\n"
    "  init   = function(p)       return plume.dist.normal(p.mu, p.sigma / plume.math.sqrt(1 - p.rho^2)) end,\n"
    "  trans  = function(p, x, t) return plume.dist.normal(p.mu + p.rho * (x - p.mu), p.sigma) end,\n"
    "  obs    = function(p, x, t) return plume.dist.normal(0, plume.math.exp(x / 2)) end,\n"
    "}\n";

/* The reference: one stream, plume's normal generator, the densities written out, systematic resampling
** by hand. Returns the log evidence; means[t] gets the filtering means. */
static double hand(const double *y, size_t N, double *x, double *xo, double *lw, double *w, double *means)
{
    const double mu = -1, rho = 0.95, sigma = 0.3, c = 0.91893853320467274178, s0 = sigma / sqrt(1 - rho * rho);
    plm_rng r;
    double logz = 0;
    size_t i, j;
    int t;
    plm_rng_init(&r, 1, 0);
    for (t = 0; t < T; t++) {
        const double yt = y[t];
        double mx = -INFINITY, s = 0, s2 = 0, m = 0, v = 0, u, cum;
        if (t == 0)
            for (i = 0; i < N; i++) x[i] = mu + s0 * plm_rng_normal(&r);
        else {
            /* systematic resampling of the normalised w, then the move */
            u = plm_rng_uniform(&r);
            cum = w[0] * (double)N;
            for (j = 0, i = 0; j < N; j++) {
                while (cum <= (double)j + u && i < N - 1) cum += w[++i] * (double)N;
                xo[j] = x[i];
            }
            for (i = 0; i < N; i++) x[i] = mu + rho * (xo[i] - mu) + sigma * plm_rng_normal(&r);
        }
        for (i = 0; i < N; i++) {
            lw[i] = -0.5 * yt * yt * exp(-x[i]) - 0.5 * x[i] - c;
            if (lw[i] > mx) mx = lw[i];
        }
        for (i = 0; i < N; i++) s += (w[i] = exp(lw[i] - mx));
        for (i = 0; i < N; i++) {
            w[i] /= s;
            s2 += w[i] * w[i];
            m += w[i] * x[i];
        }
        for (i = 0; i < N; i++) v += w[i] * (x[i] - m) * (x[i] - m);
        logz += mx + log(s / (double)N);
        means[t] = m + 0 * v + 0 * s2;
    }
    return logz;
}

int main(int argc, char **argv)
{
    plm_State *P = plm_open();
    lua_State *L = plm_lua(P);
    int reps = argc > 1 ? atoi(argv[1]) : 3, rep;
    size_t N = argc > 2 ? (size_t)atol(argv[2]) : 10000;
    double *x = malloc(N * sizeof *x), *xo = malloc(N * sizeof *xo), *lw = malloc(N * sizeof *lw);
    double *w = malloc(N * sizeof *w), *hm = malloc(T * sizeof *hm), *xs = malloc(T * sizeof *xs), ys[T];
    double best_h = 1e9, best_1 = 1e9, best_2 = 1e9, best_c1 = 1e9, best_c2 = 1e9, load[3] = {0, 0, 0}, lz_h = 0, lz_1 = 0, lz_2 = 0, dmean = 0;
    plm_ssm *m;
    plm_ctx ctx;
    plm_pf_opts o;
    plm_pf_result r1, r2;
    if (plm_dostring(P, model)) {
        fprintf(stderr, "%s\n", plm_errmsg(P));
        return 1;
    }
    lua_getglobal(L, "sv");
    m = plm_l_tossm(L, -1);
    if (plm_ssm_simulate(&ctx, m, T, 1, 7, xs, ys, 1)) return 1;
    plm_pf_opts_default(&o);
    o.N = N;
    o.ess_threshold = 1;
    o.scheme = PLM_RESAMPLE_SYSTEMATIC;
    for (rep = 0; rep < reps; rep++) {
        double t0 = now(), th, t1, t2;
        int k;
        lz_h = hand(ys, N, x, xo, lw, w, hm);
        th = now() - t0;
        o.nthreads = 1;
        t0 = now();
        if (plm_pf_run(&ctx, m, T, ys, &o, &r1)) return fprintf(stderr, "%s\n", ctx.msg), 1;
        t1 = now() - t0;
        o.nthreads = 2;
        t0 = now();
        if (plm_pf_run(&ctx, m, T, ys, &o, &r2)) return fprintf(stderr, "%s\n", ctx.msg), 1;
        t2 = now() - t0;
        lz_1 = r1.logz;
        lz_2 = r2.logz;
        for (dmean = 0, k = 0; k < T; k++) dmean = fmax(dmean, fabs(r1.means[k] - hm[k]));
        plm_pf_result_free(&r1);
        plm_pf_result_free(&r2);
        /* about 100,000 multiply-adds per section, about a filter step's time on one thread */
        best_c1 = fmin(best_c1, ceiling_time(1, 100000));
        best_c2 = fmin(best_c2, ceiling_time(2, 100000));
        if (th < best_h) best_h = th;
        if (t1 < best_1) best_1 = t1;
        if (t2 < best_2) best_2 = t2;
    }
    printf("sv bootstrap filter, %zu particles x %d steps, systematic resampling every step (best of %d)\n", N, T, reps);
    printf("  hand-written C   %.3f s  %5.1f M particle-steps/s  logz %.2f\n", best_h, N * (double)T / best_h / 1e6,
           lz_h);
    printf("  plume, 1 thread  %.3f s  %5.1f M particle-steps/s  logz %.2f\n", best_1, N * (double)T / best_1 / 1e6,
           lz_1);
    printf("  plume, 2 threads %.3f s  %5.1f M particle-steps/s  logz %.2f (bit-identical: %s)\n", best_2,
           N * (double)T / best_2 / 1e6, lz_2, lz_1 == lz_2 ? "yes" : "NO");
    printf("  ratio plume/hand (1 thread) = %.2f   2-thread speed-up = %.2f   largest |mean difference| %.3f\n",
           best_1 / best_h, best_1 / best_2, dmean);
    getloadavg(load, 3);
    printf("  machine's 2-thread ceiling in this run (pure arithmetic, %d barriers) = %.2f   load average %.2f\n", T,
           best_c1 / best_c2, load[0]);
    printf("  particles library (numpy+numba, ARCHITECTURE.md): ~29 M particle-steps/s -> plume 1 thread is %.1fx\n",
           N * (double)T / best_1 / 1e6 / 29);
    plm_close(P);
    free(x), free(xo), free(lw), free(w), free(hm), free(xs);
    return 0;
}
