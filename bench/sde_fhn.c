/* sde_fhn.c -- Euler-Maruyama for the FitzHugh-Nagumo SDE (traced from Lua, compiled) against the same loop
** written by hand in C with GSL: 1,000 paths x 10,000 steps, final states only, one and two threads. */
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

#define NP 1000
#define NS 10000

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

static const char *model =
    "fhn = plume.sde{ dim = 2, params = { s = 0, eps = 0.1, gamma = 1.5, beta = 0.8, sigma = 0.3 },\n"
    "  drift     = function(p, x, t) return { (x[1] - x[1]^3 - x[2] + p.s) / p.eps, p.gamma * x[1] - x[2] + p.beta } end,\n"
    "  diffusion = function(p, x, t) return { {0, 0}, {0, p.sigma} } end }\n";

/* the hand-written loop: path by path, one GSL-interfaced stream; with fast = 1 the normals come from
** plume's ziggurat instead (plm_rng_normal), to separate the generator from the compiled overhead */
static double hand(double *out, double dt, int fast)
{
    const double s = 0, eps = 0.1, gamma = 1.5, beta = 0.8, sigma = 0.3, sdt = sqrt(dt);
    plm_rng r;
    int i, k;
    double acc = 0;
    plm_rng_init(&r, 1, 0);
    for (i = 0; i < NP; i++) {
        double x1 = -0.5, x2 = -0.6;
        for (k = 0; k < NS; k++) {
            double f1 = (x1 - x1 * x1 * x1 - x2 + s) / eps, f2 = gamma * x1 - x2 + beta;
            x1 += f1 * dt;
            x2 += f2 * dt + sigma * sdt * (fast ? plm_rng_normal(&r) : gsl_ran_gaussian_ziggurat(&r.gsl, 1.0));
        }
        out[i] = x1;
        out[NP + i] = x2;
        acc += x1;
    }
    return acc;
}

int main(int argc, char **argv)
{
    plm_State *P = plm_open();
    lua_State *L = plm_lua(P);
    plm_sde *sde;
    plm_ctx ctx;
    double *grid = malloc((NS + 1) * sizeof *grid), x0[2] = {-0.5, -0.6}, *out = malloc(4 * NP * sizeof *out);
    double dt = 1e-3, t0, th, t1, t2, best_h = 1e9, best_1 = 1e9, best_2 = 1e9, best_f = 1e9, a = 0, b = 0;
    int reps = argc > 1 ? atoi(argv[1]) : 3, r, k;
    if (plm_dostring(P, model)) {
        fprintf(stderr, "%s\n", plm_errmsg(P));
        return 1;
    }
    lua_getglobal(L, "fhn");
    sde = plm_l_tosde(L, -1);
    for (k = 0; k <= NS; k++) grid[k] = k * dt;
    for (r = 0; r < reps; r++) {
        t0 = now();
        a = hand(out, dt, 0);
        th = now() - t0;
        t0 = now();
        hand(out, dt, 1);
        if (now() - t0 < best_f) best_f = now() - t0;
        t0 = now();
        if (plm_sde_simulate(&ctx, sde, PLM_SDE_EULER, grid, NS + 1, NP, x0, 0, NS, 1, out, 1)) {
            fprintf(stderr, "%s\n", ctx.msg);
            return 1;
        }
        t1 = now() - t0;
        b = 0;
        for (k = 0; k < NP; k++) b += out[2 * NP + k];
        t0 = now();
        plm_sde_simulate(&ctx, sde, PLM_SDE_EULER, grid, NS + 1, NP, x0, 0, NS, 1, out, 2);
        t2 = now() - t0;
        if (th < best_h) best_h = th;
        if (t1 < best_1) best_1 = t1;
        if (t2 < best_2) best_2 = t2;
    }
    printf("fhn sde Euler-Maruyama, %d paths x %d steps (best of %d): hand-written C+GSL %.3f s (%.1f M path-steps/s)\n",
           NP, NS, reps, best_h, NP * (double)NS / best_h / 1e6);
    printf("  plume compiled, 1 thread %.3f s (%.1f M/s), 2 threads %.3f s\n", best_1, NP * (double)NS / best_1 / 1e6,
           best_2);
    printf("  ratio plume/hand (1 thread) = %.2f   2-thread speed-up = %.2f   (mean x1: %.3f %.3f)\n", best_1 / best_h,
           best_1 / best_2, a / NP, b / NP);
    printf("  hand-written with plume's normal generator %.3f s: ratio plume/that = %.2f\n", best_f, best_1 / best_f);
    plm_close(P);
    return 0;
}
