/* grad_rate.c -- gradient evaluations per second of static models' targets, vectorised (plm_gmodel_target:
** terms of one structure as one vector instruction sequence, plm_vsum) against the scalar program of the whole
** log density (plm_target_from_graph on the model's sum), side by side in one run, and the compile time of each.
** Models: BUGS rats (examples/data/rats.json: 30 x 5 observations, 65 coordinates) and the 3-component
** Gaussian mixture of bench/mcmc_peers.lua (bench/data/gmm3.json: 1,000 factors, 8 coordinates), both built here
** as the Lua programs trace them. CPU time, best of `reps` (default 5) alternating runs, at a fixed point.
** usage: build/bench/grad_rate [reps [vec|scalar|both [rats|gmm3]]] */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "plume.h"
#include "model_graphs.h"

static plm_ctx ctx;
static int only_vec, only_scalar;   /* argv[2] = "vec" or "scalar": one path alone (for profiles) */

static double cpu(void) { return (double)clock() / CLOCKS_PER_SEC; }

/* The numbers of the JSON array after "key": (nested arrays flattened), into v (at most cap); returns the count. */
static int json_numbers(const char *path, const char *key, double *v, int cap)
{
    FILE *f = fopen(path, "rb");
    char *s, *p, pat[64];
    long len;
    int n = 0, depth = 0;
    if (!f) return 0;
    fseek(f, 0, SEEK_END), len = ftell(f), fseek(f, 0, SEEK_SET);
    s = malloc((size_t)len + 1);
    if (!s || fread(s, 1, (size_t)len, f) != (size_t)len) return fclose(f), free(s), 0;
    fclose(f);
    s[len] = 0;
    snprintf(pat, sizeof pat, "\"%s\":", key);
    if (!(p = strstr(s, pat))) return free(s), 0;
    for (p += strlen(pat); *p; p++) {
        if (*p == '[') depth++;
        else if (*p == ']') {
            if (--depth == 0) break;
        } else if (depth && (*p == '-' || (*p >= '0' && *p <= '9')) && n < cap) {
            v[n++] = strtod(p, &p);
            p--;
        }
    }
    free(s);
    return n;
}

/* rats and gmm3 with the data of the Lua programs (tests/model_graphs.h builds the graphs) */
static plm_gmodel *rats(void)
{
    double Y[150], x[5];
    int j;
    if (json_numbers("examples/data/rats.json", "Y", Y, 150) != 150 || json_numbers("examples/data/rats.json", "x", x, 5) != 5)
        return NULL;
    for (j = 0; j < 5; j++) x[j] -= 22;
    return mg_rats(&ctx, 30, 5, Y, x);
}

static plm_gmodel *gmm3(void)
{
    static double y[1000];
    if (json_numbers("bench/data/gmm3.json", "y", y, 1000) != 1000) return NULL;
    return mg_gmm3(&ctx, 1000, y);
}

/* CPU seconds for n gradient evaluations of t at u. */
static double timed(const plm_target *t, void *ws, const double *u, double *g, int n, double *lp)
{
    double t0 = cpu();
    int i;
    for (i = 0; i < n; i++) *lp = t->ops->logp_grad(t, ws, u, g);
    return cpu() - t0;
}

/* Gradient evaluations per CPU second of ts (scalar) and tv (vectorised) at u: the best of reps runs of n
** evaluations each, the two paths alternating so that both see the same load on a shared machine. */
static void rates(const plm_target *ts, const plm_target *tv, const double *u, int n, int reps, double *rs, double *rv,
                  double *ls, double *lv)
{
    void *ws = plm_target_ws_new(ts), *wv = plm_target_ws_new(tv);
    double *g = malloc((size_t)ts->dim * sizeof *g), bs = INFINITY, bv = INFINITY;
    int r;
    for (r = 0; r < reps; r++) {
        if (!only_vec) bs = fmin(bs, timed(ts, ws, u, g, n, ls));
        if (!only_scalar) bv = fmin(bv, timed(tv, wv, u, g, n, lv));
    }
    *rs = n / bs, *rv = n / bv;
    plm_target_ws_free(ts, ws), plm_target_ws_free(tv, wv);
    free(g);
}

static void bench(const char *name, plm_gmodel *(*build)(void), int n, int reps)
{
    plm_gmodel *mv, *ms;
    plm_target *tv = NULL, *ts = NULL;
    double t0, cv, cs, rv, rs, lv, ls, *u;
    int i;
    /* each path compiles its own copy of the model (a compile grows the graph it reads) */
    if (!(mv = build()) || !(ms = build())) {
        printf("%s: could not build the model (%s)\n", name, ctx.msg);
        return;
    }
    t0 = cpu();
    if (plm_gmodel_target(&ctx, mv, &tv)) printf("%s: %s\n", name, ctx.msg);
    cv = cpu() - t0;
    t0 = cpu();
    if (plm_target_from_graph(&ctx, ms->g, ms->lp, ms->dim, ms->x, NULL, 0, &ts)) printf("%s: %s\n", name, ctx.msg);
    cs = cpu() - t0;
    if (!tv || !ts) return;
    u = malloc((size_t)mv->dim * sizeof *u);
    for (i = 0; i < mv->dim; i++) u[i] = 0.3 * sin(1.0 + i);
    ls = lv = NAN;
    rates(ts, tv, u, n, reps, &rs, &rv, &ls, &lv);
    printf("%-5s scalar: %9.0f gradients/s, compile %.4f s | vectorised: %9.0f gradients/s, compile %.4f s | "
           "speed-up %.2fx, compile %.2fx less | log densities %.12g %.12g\n",
           name, rs, cs, rv, cv, rv / rs, cs / cv, ls, lv);
    {
        /* what the vectorised target is made of (compiled again, on the other copy) */
        plm_vsum *v;
        plm_vsum_info vi;
        plm_prog_info pi;
        int nt = 0, *terms = malloc((size_t)mv->n * sizeof *terms);
        for (i = 0; i < mv->n; i++)
            if (mv->sites[i].logp >= 0) terms[nt++] = mv->sites[i].logp;
        if (!plm_vsum_compile(&ctx, mv->g, nt, terms, mv->dim, mv->x, &v)) {
            plm_vsum_describe(v, &vi);
            int *outs = malloc(((size_t)ms->dim + 1) * sizeof *outs);
            plm_prog *sp = NULL;
            /* the scalar target's program again (its gradient nodes are hash-consed: the same nodes) */
            outs[0] = ms->lp;
            memset(&pi, 0, sizeof pi);
            if (!plm_graph_grad(&ctx, ms->g, ms->lp, ms->dim, ms->x, outs + 1) &&
                !plm_prog_compile(&ctx, ms->g, ms->dim + 1, outs, 1u << PLM_GRP_X, &sp))
                plm_prog_describe(sp, &pi);
            free(outs);
            printf("      %d terms, %d in %d groups; scalar program %d instructions; vectorised: %d scalar + %d in "
                   "templates\n", vi.nterms, vi.ngrouped, vi.ngroups, pi.ninstructions, vi.nscalar_ins, vi.nvector_ins);
        }
        free(terms);
    }
    free(u);
}

int main(int argc, char **argv)
{
    int reps = argc > 1 ? atoi(argv[1]) : 5;
    only_vec = argc > 2 && strcmp(argv[2], "vec") == 0;
    only_scalar = argc > 2 && strcmp(argv[2], "scalar") == 0;
    plm_ctx_clear(&ctx);
    if (argc <= 3 || strcmp(argv[3], "rats") == 0) bench("rats", rats, 1000, reps);
    if (argc <= 3 || strcmp(argv[3], "gmm3") == 0) bench("gmm3", gmm3, 100, reps);
    return 0;
}
