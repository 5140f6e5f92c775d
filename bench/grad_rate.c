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

#define OP(g, o, a, b) plm_graph_op(g, PLM_OP_##o, a, b, -1)

static int latent(plm_gmodel *m, const char *name, plm_dist_kind kind, int np, int *p)
{
    plm_symdist d = {kind, 0, np, p};
    int v[1] = {-1};
    if (plm_gmodel_latent(&ctx, m, name, &d, v)) fprintf(stderr, "latent %s: %s\n", name, ctx.msg);
    return v[0];
}

static plm_gmodel *rats(void)
{
    double Y[150], x[5];
    plm_graph *g = plm_graph_new();
    plm_gmodel *m;
    int p[2], ac, bc, at, bt, tc, sigma, sa, sb, i, j;
    if (json_numbers("examples/data/rats.json", "Y", Y, 150) != 150 || json_numbers("examples/data/rats.json", "x", x, 5) != 5)
        return NULL;
    plm_gmodel_new(&ctx, g, &m);
    p[0] = plm_graph_const(g, 0), p[1] = plm_graph_const(g, 1000);
    ac = latent(m, "alpha.c", PLM_DIST_NORMAL, 2, p);
    bc = latent(m, "beta.c", PLM_DIST_NORMAL, 2, p);
    p[0] = p[1] = plm_graph_const(g, 0.001);
    at = latent(m, "alpha.tau", PLM_DIST_GAMMA, 2, p);
    bt = latent(m, "beta.tau", PLM_DIST_GAMMA, 2, p);
    tc = latent(m, "tau.c", PLM_DIST_GAMMA, 2, p);
    sigma = OP(g, DIV, plm_graph_const(g, 1), plm_graph_op(g, PLM_OP_SQRT, tc, -1, -1));
    sa = OP(g, DIV, plm_graph_const(g, 1), plm_graph_op(g, PLM_OP_SQRT, at, -1, -1));
    sb = OP(g, DIV, plm_graph_const(g, 1), plm_graph_op(g, PLM_OP_SQRT, bt, -1, -1));
    for (i = 0; i < 30; i++) {
        char name[32];
        int a, b;
        snprintf(name, sizeof name, "alpha[%d]", i + 1);
        p[0] = ac, p[1] = sa;
        a = latent(m, name, PLM_DIST_NORMAL, 2, p);
        snprintf(name, sizeof name, "beta[%d]", i + 1);
        p[0] = bc, p[1] = sb;
        b = latent(m, name, PLM_DIST_NORMAL, 2, p);
        for (j = 0; j < 5; j++) {
            plm_symdist d = {PLM_DIST_NORMAL, 0, 2, p};
            int y = plm_graph_const(g, Y[i * 5 + j]);
            snprintf(name, sizeof name, "Y[%d,%d]", i + 1, j + 1);
            p[0] = OP(g, ADD, a, OP(g, MUL, b, plm_graph_const(g, x[j] - 22))), p[1] = sigma;
            plm_gmodel_observe(&ctx, m, name, &d, &y);
        }
    }
    return plm_gmodel_finish(&ctx, m) ? NULL : m;
}

static plm_gmodel *gmm3(void)
{
    static double y[1000];
    plm_graph *g = plm_graph_new();
    plm_gmodel *m;
    int p[2], mu[3], s[3], v1, v2, w[3], c[3], h[3], k, i, one;
    if (json_numbers("bench/data/gmm3.json", "y", y, 1000) != 1000) return NULL;
    plm_gmodel_new(&ctx, g, &m);
    one = plm_graph_const(g, 1);
    p[0] = plm_graph_const(g, 0), p[1] = plm_graph_const(g, 10);
    mu[0] = latent(m, "mu1", PLM_DIST_NORMAL, 2, p);
    p[0] = plm_graph_const(g, 5);
    mu[1] = OP(g, ADD, mu[0], latent(m, "d2", PLM_DIST_HALFNORMAL, 1, p));
    mu[2] = OP(g, ADD, mu[1], latent(m, "d3", PLM_DIST_HALFNORMAL, 1, p));
    p[0] = plm_graph_const(g, 2);
    s[0] = latent(m, "sigma1", PLM_DIST_HALFNORMAL, 1, p);
    s[1] = latent(m, "sigma2", PLM_DIST_HALFNORMAL, 1, p);
    s[2] = latent(m, "sigma3", PLM_DIST_HALFNORMAL, 1, p);
    p[0] = one, p[1] = plm_graph_const(g, 2);
    v1 = latent(m, "v1", PLM_DIST_BETA, 2, p);
    p[1] = one;
    v2 = latent(m, "v2", PLM_DIST_BETA, 2, p);
    w[0] = v1, w[1] = OP(g, MUL, OP(g, SUB, one, v1), v2);
    w[2] = OP(g, MUL, OP(g, SUB, one, v1), OP(g, SUB, one, v2));
    for (k = 0; k < 3; k++) {
        c[k] = OP(g, DIV, w[k], s[k]);
        h[k] = OP(g, DIV, plm_graph_const(g, -0.5), OP(g, MUL, s[k], s[k]));
    }
    for (i = 0; i < 1000; i++) {
        int yi = plm_graph_const(g, y[i]), sum = -1;
        for (k = 0; k < 3; k++) {
            int dd = OP(g, SUB, yi, mu[k]);
            int e = OP(g, MUL, c[k], plm_graph_op(g, PLM_OP_EXP, OP(g, MUL, h[k], OP(g, MUL, dd, dd)), -1, -1));
            sum = sum < 0 ? e : OP(g, ADD, sum, e);
        }
        plm_gmodel_factor(&ctx, m, OP(g, ADD, plm_graph_const(g, -0.5 * log(2 * M_PI)), plm_graph_op(g, PLM_OP_LOG, sum, -1, -1)));
    }
    return plm_gmodel_finish(&ctx, m) ? NULL : m;
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
