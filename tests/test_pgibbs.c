/* test_pgibbs.c -- particle MCMC in the runtime: conditional SMC with ancestor sampling (and without) leaves
** the exact posterior of the path invariant on a two-state chain, where that posterior is enumerated (16
** paths); a plain particle filter's path draw, which is biased with few particles, fails the same check
** (the negative control); particle Gibbs and PMMH give the same draws on one and two threads; Ctrl-C and bad
** options are reported. Models are traced from Lua; the statistical checks have fixed seeds. */
#include "check.h"
#include "l_expr.h"
#include "plume.h"
#include "plume_lua.h"

#include <stdlib.h>

static const char *models =
    "chain = plume.ssm{\n"
    "  init  = function(p) return plume.dist.categorical({0.5, 0.5}) end,\n"
    "  trans = function(p, x, t) return plume.dist.categorical(plume.pick(x, {{0.9, 0.1}, {0.2, 0.8}})) end,\n"
    "  obs   = function(p, x, t) return plume.dist.normal(x, 1) end,\n"
    "}\n"
    "lin = plume.ssm{\n"
    "  params = { rho = 0.8, s = 0.5 },\n"
    "  init  = function(p) return plume.dist.normal(0, 1) end,\n"
    "  trans = function(p, x, t) return plume.dist.normal(p.rho * x, p.s) end,\n"
    "  obs   = function(p, x, t) return plume.dist.normal(x, 1) end,\n"
    "}\n"
    "rho_prior = plume.dist.uniform(-1, 1)\n"
    "bad_prior = plume.dist.poisson(2)\n";

#define TT 4
#define NPATH 16

static plm_State *Ps;
static plm_ssm *chain, *lin;
static const plm_dist *rho_prior, *bad_prior;
static plm_ctx ctx;
static const double ys4[TT] = {1.1, 2.9, 0.6, 2.4};
static double exact[NPATH];

/* path k has state 1 + bit t of k at time t + 1 */
static int path_index(const double *x)
{
    int k = 0, t;
    for (t = 0; t < TT; t++) k |= (x[t] > 1.5) << t;
    return k;
}

static void enumerate_posterior(void)
{
    double lj[NPATH], mx = -INFINITY, s = 0, x[TT];
    int k, t;
    for (k = 0; k < NPATH; k++) {
        for (t = 0; t < TT; t++) x[t] = 1 + ((k >> t) & 1);
        CHECK(plm_ssm_logjoint(&ctx, chain, TT, x, ys4, &lj[k]) == PLM_OK);
        mx = fmax(mx, lj[k]);
    }
    for (k = 0; k < NPATH; k++) s += (exact[k] = exp(lj[k] - mx));
    for (k = 0; k < NPATH; k++) exact[k] /= s;
}

/* Largest |frequency - exact| / se over the 16 paths, se from nb batch means of the n path indices. */
static double path_z(const int *idx, long n, int nb)
{
    double worst = 0;
    long bl = n / nb, i;
    int k, b;
    for (k = 0; k < NPATH; k++) {
        double m = 0, v = 0, f[64];
        for (b = 0; b < nb; b++) {
            long c = 0;
            for (i = b * bl; i < (b + 1) * bl; i++) c += idx[i] == k;
            f[b] = (double)c / (double)bl;
            m += f[b] / nb;
        }
        for (b = 0; b < nb; b++) v += (f[b] - m) * (f[b] - m) / (nb - 1);
        /* a floor on se: a path with almost no mass has batches that all read 0 */
        worst = fmax(worst, fabs(m - exact[k]) / fmax(sqrt(v / nb), 1e-3));
    }
    return worst;
}

static int *pg_paths(int as, long n, uint64_t seed)
{
    plm_results *R;
    plm_pgibbs_opts o;
    plm_ssm_prior P = {0, NULL, NULL, NULL};
    int *idx = malloc((size_t)n * sizeof *idx), t;
    const double *col[TT];
    long i;
    plm_pgibbs_opts_default(&o);
    o.N = 3;
    o.chains = 1;
    o.warmup = 100;
    o.samples = n;
    o.seed = seed;
    o.ancestor_sampling = as;
    CHECK(plm_results_new(&ctx, 1, 0, &R) == PLM_OK);
    CHECK(plm_pgibbs_run(&ctx, chain, TT, ys4, &P, &o, R) == PLM_OK);
    for (t = 0; t < TT; t++) col[t] = plm_draws_chain(plm_results_draws(R), t, 0);
    for (i = 0; i < n; i++) {
        double x[TT];
        for (t = 0; t < TT; t++) x[t] = col[t][i];
        idx[i] = path_index(x);
    }
    plm_results_free(R);
    return idx;
}

static void test_csmc_with_and_without_ancestor_sampling_keeps_the_exact_path_posterior(void)
{
    const long n = 40000;
    int as;
    enumerate_posterior();
    for (as = 1; as >= 0; as--) {
        int *idx = pg_paths(as, n, 7);
        double z = path_z(idx, n, 40);
        if (getenv("SHOWZ") || !(z < 4.5)) printf("  ancestor_sampling = %d: max z %.2f\n", as, z);
        CHECK(z < 4.5);   /* 16 paths, 40 batch means each */
        free(idx);
    }
}

static void test_a_plain_filter_path_draw_fails_the_same_check(void)
{
    /* negative control: the path of an unconditional filter with 2 particles is not a posterior draw */
    const long n = 40000;
    plm_csmc *w = plm_csmc_new(chain, TT, 2);
    int *idx = malloc((size_t)n * sizeof *idx);
    double x[TT];
    long i;
    CHECK(w != NULL);
    for (i = 0; i < n; i++) {
        CHECK(plm_csmc_sweep(&ctx, w, chain, ys4, 1000 + (uint64_t)i, 0, 1, 1, x) == PLM_OK);
        idx[i] = path_index(x);
    }
    if (getenv("SHOWZ")) printf("  plain filter: max z %.2f\n", path_z(idx, n, 40));
    CHECK(path_z(idx, n, 40) > 8);
    free(idx);
    plm_csmc_free(w);
}

/* every value of every column of two results, compared exactly */
static int same_draws(plm_results *a, plm_results *b)
{
    plm_draws *A = plm_results_draws(a), *B = plm_results_draws(b);
    int col, c;
    if (plm_draws_ncols(A) != plm_draws_ncols(B)) return 0;
    for (col = 0; col < plm_draws_ncols(A); col++)
        for (c = 0; c < plm_draws_nchains(A); c++) {
            size_t n = plm_draws_len(A, c);
            if (n == 0 || n != plm_draws_len(B, c) ||
                memcmp(plm_draws_chain(A, col, c), plm_draws_chain(B, col, c), n * sizeof(double)))
                return 0;
        }
    return 1;
}

static void test_same_draws_on_one_and_two_threads(void)
{
    static const int idx[1] = {0};
    static const char *names[1] = {"rho"};
    plm_ssm_prior P = {1, idx, &rho_prior, names};
    plm_results *R1, *R2, *R3;
    plm_pgibbs_opts o;
    plm_pmmh_opts q;
    double ys[20];
    int t;
    for (t = 0; t < 20; t++) ys[t] = sin(t);
    plm_pgibbs_opts_default(&o);
    o.N = 50, o.chains = 3, o.warmup = 50, o.samples = 50, o.seed = 3;
    plm_results_new(&ctx, 3, 0, &R1);
    plm_results_new(&ctx, 3, 0, &R2);
    plm_results_new(&ctx, 3, 0, &R3);
    CHECK(plm_pgibbs_run(&ctx, lin, 20, ys, &P, &o, R1) == PLM_OK);
    o.nthreads = 2;
    CHECK(plm_pgibbs_run(&ctx, lin, 20, ys, &P, &o, R2) == PLM_OK);
    CHECK(same_draws(R1, R2));
    o.seed = 4;   /* negative control: the comparison sees a different seed */
    CHECK(plm_pgibbs_run(&ctx, lin, 20, ys, &P, &o, R3) == PLM_OK);
    CHECK(!same_draws(R1, R3));
    plm_results_free(R1), plm_results_free(R2), plm_results_free(R3);
    plm_pmmh_opts_default(&q);
    q.pf.N = 50, q.chains = 3, q.warmup = 50, q.samples = 50, q.seed = 3;
    plm_results_new(&ctx, 3, 0, &R1);
    plm_results_new(&ctx, 3, 0, &R2);
    CHECK(plm_pmmh_run(&ctx, lin, 20, ys, &P, &q, R1) == PLM_OK);
    q.nthreads = 2;
    CHECK(plm_pmmh_run(&ctx, lin, 20, ys, &P, &q, R2) == PLM_OK);
    CHECK(same_draws(R1, R2));
    CHECK(lin->params[0] == 0.8);   /* the model keeps its own value */
    plm_results_free(R1), plm_results_free(R2);
}

static void test_interrupt_and_bad_options(void)
{
    static const int idx[1] = {0}, idx2[2] = {0, 0};
    static const char *names[2] = {"rho", "rho"};
    const plm_dist *two[2];
    plm_ssm_prior P = {1, idx, &rho_prior, names}, Pbad = {1, idx, &bad_prior, names}, Ptwice = {2, idx2, two, names};
    plm_pgibbs_opts o;
    plm_pmmh_opts q;
    plm_results *R;
    double ys[5] = {0, 1, 0, 1, 0};
    two[0] = two[1] = rho_prior;
    plm_pgibbs_opts_default(&o);
    o.chains = 1, o.warmup = 5, o.samples = 5, o.N = 10;
    plm_pmmh_opts_default(&q);
    q.chains = 1, q.warmup = 5, q.samples = 5, q.pf.N = 10;
    plm_results_new(&ctx, 1, 0, &R);
    plm_interrupt();
    CHECK(plm_pgibbs_run(&ctx, lin, 5, ys, &P, &o, R) == PLM_EINTR);
    CHECK(plm_pmmh_run(&ctx, lin, 5, ys, &P, &q, R) == PLM_EINTR);
    plm_interrupt_clear();
    o.N = 1;
    CHECK(plm_pgibbs_run(&ctx, lin, 5, ys, &P, &o, R) == PLM_EINVAL && strstr(ctx.msg, "particles"));
    o.N = 10;
    CHECK(plm_pgibbs_run(&ctx, lin, 5, ys, &Pbad, &o, R) == PLM_EINVAL && strstr(ctx.msg, "'rho'") &&
          strstr(ctx.msg, "poisson"));
    CHECK(plm_pmmh_run(&ctx, lin, 5, ys, &Ptwice, &q, R) == PLM_EINVAL && strstr(ctx.msg, "twice"));
    o.chains = 2;
    CHECK(plm_pgibbs_run(&ctx, lin, 5, ys, &P, &o, R) == PLM_EINVAL && strstr(ctx.msg, "chains"));
    plm_results_free(R);
}

int main(void)
{
    lua_State *L;
    Ps = plm_open();
    plm_ctx_clear(&ctx);
    if (!Ps || plm_dostring(Ps, models)) {
        printf("FAIL setup: %s\n", Ps ? plm_errmsg(Ps) : "no state");
        return 1;
    }
    L = plm_lua(Ps);
    lua_getglobal(L, "chain");
    chain = plm_l_tossm(L, -1);
    lua_getglobal(L, "lin");
    lin = plm_l_tossm(L, -1);
    lua_getglobal(L, "rho_prior");
    rho_prior = plm_l_testobj(L, -1, "plume.dist");
    lua_getglobal(L, "bad_prior");
    bad_prior = plm_l_testobj(L, -1, "plume.dist");
    RUN(test_csmc_with_and_without_ancestor_sampling_keeps_the_exact_path_posterior);
    RUN(test_a_plain_filter_path_draw_fails_the_same_check);
    RUN(test_same_draws_on_one_and_two_threads);
    RUN(test_interrupt_and_bad_options);
    plm_close(Ps);
    return CHECK_DONE();
}
