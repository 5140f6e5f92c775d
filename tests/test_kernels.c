/* test_kernels.c -- composed kernels (restrict, cycle, mixture, rep), slice and elliptical slice sampling,
** through the runtime alone: exact composition semantics with counting kernels, covariances of Gaussians
** within their Monte Carlo error, simulation-based calibration with negative controls, and thread-count
** invariance. */
#include "check.h"
#include "plume.h"

#include <gsl/gsl_linalg.h>

#define OP(g, op, a, b) plm_graph_op(g, PLM_OP_##op, a, b, -1)

/* ---- targets ---- */

/* A Gaussian on R^d with precision P (row-major, d*d; zeros are skipped), mean 0, as a compiled graph. */
static plm_target *gauss_target(int d, const double *P)
{
    plm_graph *g = plm_graph_new();
    plm_ctx ctx;
    plm_target *t = NULL;
    int x[128], i, j, q = plm_graph_const(g, 0);
    for (i = 0; i < d; i++) x[i] = plm_graph_input(g, PLM_GRP_X, i);
    for (i = 0; i < d; i++)
        for (j = i; j < d; j++) {
            double p = P[i * d + j] * (i == j ? 1 : 2);
            if (p != 0) q = OP(g, ADD, q, OP(g, MUL, plm_graph_const(g, p), OP(g, MUL, x[i], x[j])));
        }
    if (plm_target_from_graph(&ctx, g, OP(g, MUL, plm_graph_const(g, -0.5), q), d, x, NULL, 0, &t))
        printf("  target: %s\n", ctx.msg);
    return t;
}

static plm_draws *run(const plm_target *t, const plm_kernel *k, int chains, int threads, long warm, long samples,
                      long thin, uint64_t seed, plm_status *st)
{
    plm_mcmc_opts o = {chains, warm, samples, thin, seed, threads, NULL};
    plm_draws *D = NULL;
    plm_ctx ctx;
    *st = plm_mcmc_run(&ctx, t, k, &o, &D, NULL);
    if (*st) printf("  mcmc: %s\n", ctx.msg);
    return D;
}

static int col(const plm_draws *D, const char *name)
{
    int i;
    for (i = 0; i < plm_draws_ncols(D); i++)
        if (strcmp(plm_draws_name(D, i), name) == 0) return i;
    return -1;
}

/* ---- composition semantics, exactly: kernels that add 1 and double ---- */

static void *none_new(const plm_kernel *k, const plm_target *t) { (void)k, (void)t; return malloc(1); }
static plm_status add1(const plm_kernel *k, void *s, plm_ctx *ctx, const plm_target *t, void *ws, plm_rng *r,
                       double *u, double *lp, double *stat, double *extra)
{
    (void)k, (void)s, (void)ctx, (void)t, (void)ws, (void)r, (void)lp, (void)extra;
    u[0] += 1;
    *stat = 0.25;
    return PLM_OK;
}
static plm_status twice(const plm_kernel *k, void *s, plm_ctx *ctx, const plm_target *t, void *ws, plm_rng *r,
                        double *u, double *lp, double *stat, double *extra)
{
    (void)k, (void)s, (void)ctx, (void)t, (void)ws, (void)r, (void)lp, (void)extra;
    u[0] *= 2;
    *stat = 0.75;
    return PLM_OK;
}
static const plm_kernel_ops add1_ops = {"add1", 0, NULL, none_new, free, add1, NULL};
static const plm_kernel_ops twice_ops = {"twice", 0, NULL, none_new, free, twice, NULL};
static double flat(const plm_target *t, void *ws, const double *u) { (void)t, (void)ws, (void)u; return 0; }

static void test_cycle_applies_in_order_and_rep_repeats(void)
{
    static const plm_target_ops ops = {"flat", NULL, NULL, flat, NULL};
    plm_target t = {&ops, NULL, 2, NULL};
    plm_kernel a = {&add1_ops, NULL}, b = {&twice_ops, NULL}, *cyc, *rep, *blk;
    const plm_kernel *ks[2] = {&a, &b};
    plm_ctx ctx;
    plm_status st;
    plm_draws *D;
    double init[2] = {0, 5};
    plm_mcmc_opts o = {1, 0, 3, 1, 1, 1, init};
    const double *x;
    /* restricted to coordinate 1 (0-based), so coordinate 0 stays at 0 */
    CHECK(plm_kernel_cycle(&ctx, ks, 2, &cyc) == PLM_OK);
    CHECK(plm_kernel_restrict(&ctx, cyc, (int[]){1}, 1, &blk) == PLM_OK);
    CHECK(plm_mcmc_run(&ctx, &t, blk, &o, &D, NULL) == PLM_OK);
    x = plm_draws_chain(D, 1, 0);
    CHECK(x[0] == 12 && x[1] == 26 && x[2] == 54);   /* (5 + 1) 2, (12 + 1) 2, (26 + 1) 2 */
    CHECK(plm_draws_chain(D, 0, 0)[2] == 0);
    CHECK(plm_draws_chain(D, col(D, "k1.accept_stat__"), 0)[0] == 0.25);
    CHECK(plm_draws_chain(D, col(D, "k2.accept_stat__"), 0)[0] == 0.75);
    CHECK(plm_draws_chain(D, col(D, "accept_stat__"), 0)[0] == 0.5);   /* the mean of the children's */
    CHECK(plm_kernel_rep(&ctx, &a, 3, &rep) == PLM_OK);
    CHECK(plm_mcmc_run(&ctx, &t, rep, &o, &D, NULL) == PLM_OK);
    x = plm_draws_chain(D, 0, 0);
    CHECK(x[0] == 3 && x[1] == 6 && x[2] == 9);
    st = plm_kernel_rep(&ctx, &a, 0, &rep);
    CHECK(st == PLM_EINVAL && strstr(ctx.msg, "count") != NULL);
    st = plm_kernel_restrict(&ctx, &a, (int[]){0, 0}, 2, &blk);
    CHECK(st == PLM_EINVAL && strstr(ctx.msg, "twice") != NULL);
    st = plm_kernel_mixture(&ctx, ks, (double[]){1, -1}, 2, &blk);
    CHECK(st == PLM_EINVAL && strstr(ctx.msg, "weight 2") != NULL);
}

static void test_mixture_weights_are_respected(void)
{
    static const plm_target_ops ops = {"flat", NULL, NULL, flat, NULL};
    plm_target t = {&ops, NULL, 1, NULL};
    plm_kernel a = {&add1_ops, NULL}, b = {&twice_ops, NULL}, *mix;
    const plm_kernel *ks[2] = {&a, &b};
    plm_ctx ctx;
    plm_draws *D;
    double init[4] = {0, 0, 0, 0};
    plm_mcmc_opts o = {4, 0, 5000, 1, 3, 1, init};
    int c, j1 = -1, j2 = -1;
    size_t i, n1 = 0, n2 = 0;
    CHECK(plm_kernel_mixture(&ctx, ks, (double[]){1, 3}, 2, &mix) == PLM_OK);
    CHECK(plm_mcmc_run(&ctx, &t, mix, &o, &D, NULL) == PLM_OK);
    j1 = col(D, "k1.accept_stat__"), j2 = col(D, "k2.accept_stat__");
    CHECK(j1 >= 0 && j2 >= 0);
    if (j1 < 0 || j2 < 0) return;
    for (c = 0; c < 4; c++)
        for (i = 0; i < 5000; i++) {
            double s1 = plm_draws_chain(D, j1, c)[i], s2 = plm_draws_chain(D, j2, c)[i];
            n1 += !isnan(s1), n2 += !isnan(s2);
            CHECK(isnan(s1) != isnan(s2));   /* exactly one ran */
        }
    /* the share of kernel 1 is binomial(20000, 1/4): sd 0.0031, so 4 sd is 0.012; and 1/2 must fail it */
    CHECK_NEAR((double)n1 / 20000, 0.25, 0.012);
    CHECK(fabs((double)n1 / 20000 - 0.5) > 0.012);
    CHECK(n1 + n2 == 20000);
}

/* ---- Gaussians ---- */

/* 4 coordinates in two blocks {0, 1}, {2, 3}, correlated within and across blocks: covariance S, precision
** its inverse (computed by GSL). */
static void four_gauss(double *S, double *P)
{
    static const double S0[16] = {1.0, 0.8, 0.6, 0.2, 0.8, 1.0, 0.5, 0.3, 0.6, 0.5, 2.0, -0.6, 0.2, 0.3, -0.6, 1.5};
    gsl_matrix_view a;
    memcpy(S, S0, sizeof S0);
    memcpy(P, S0, sizeof S0);
    a = gsl_matrix_view_array(P, 4, 4);
    CHECK(gsl_linalg_cholesky_decomp1(&a.matrix) == 0);   /* S0 is positive definite */
    gsl_linalg_cholesky_invert(&a.matrix);
}

/* Largest |sample cov - S| over entries, in units of its Monte Carlo error sqrt((S_ii S_jj + S_ij^2) / ess),
** ess the smallest bulk ESS of the coordinates (capped at the draw count). */
static double cov_error(const plm_draws *D, int d, const double *S, double *worst_rel)
{
    int c, i, j, nc = plm_draws_nchains(D);
    size_t n = plm_draws_len(D, 0), k;
    double mean[128] = {0}, ess = 1e300, worst = 0;
    double *x = malloc((size_t)nc * n * sizeof *x);
    for (i = 0; i < d; i++) {
        for (c = 0; c < nc; c++) memcpy(x + (size_t)c * n, plm_draws_chain(D, i, c), n * sizeof *x);
        ess = fmin(ess, plm_diag_ess_bulk(x, nc, n));
        for (k = 0; k < (size_t)nc * n; k++) mean[i] += x[k];
        mean[i] /= (double)(nc * n);
    }
    free(x);
    ess = fmin(ess, (double)(nc * n));
    *worst_rel = 0;
    for (i = 0; i < d; i++)
        for (j = 0; j <= i; j++) {
            double s = 0, e;
            for (c = 0; c < nc; c++) {
                const double *a = plm_draws_chain(D, i, c), *b = plm_draws_chain(D, j, c);
                for (k = 0; k < n; k++) s += (a[k] - mean[i]) * (b[k] - mean[j]);
            }
            s /= (double)(nc * n - 1);
            e = fabs(s - S[i * d + j]) / sqrt((S[i * d + i] * S[j * d + j] + S[i * d + j] * S[i * d + j]) / ess);
            if (!(e <= worst)) worst = e;
            e = fabs(s - S[i * d + j]) / sqrt(S[i * d + i] * S[j * d + j]);
            if (!(e <= *worst_rel)) *worst_rel = e;
        }
    return worst;
}

static void test_cycle_of_restricted_nuts_blocks_recovers_the_covariance(void)
{
    double S[16], P[16], rel, err, Sind[16];
    plm_target *t;
    plm_kernel *nuts, *b1, *b2, *cyc;
    const plm_kernel *ks[2];
    plm_ctx ctx;
    plm_status st;
    plm_draws *D;
    four_gauss(S, P);
    t = gauss_target(4, P);
    CHECK(plm_kernel_nuts(&ctx, NULL, &nuts) == PLM_OK);
    CHECK(plm_kernel_restrict(&ctx, nuts, (int[]){0, 1}, 2, &b1) == PLM_OK);
    CHECK(plm_kernel_restrict(&ctx, nuts, (int[]){2, 3}, 2, &b2) == PLM_OK);
    ks[0] = b1, ks[1] = b2;
    CHECK(plm_kernel_cycle(&ctx, ks, 2, &cyc) == PLM_OK);
    D = run(t, cyc, 4, 1, 1000, 2000, 1, 5, &st);
    CHECK(st == PLM_OK && D);
    if (!D) return;
    /* every entry within 5 Monte Carlo errors (10 entries: a false alarm has probability ~ 1e-5) */
    err = cov_error(D, 4, S, &rel);
    if (!(err < 5)) printf("  worst covariance error %.2f mcse (%.3f relative)\n", err, rel);
    CHECK(err < 5);
    /* negative control: the covariance with the cross-block entries zeroed is rejected by the same check */
    memcpy(Sind, S, sizeof S);
    Sind[2] = Sind[3] = Sind[6] = Sind[7] = Sind[8] = Sind[9] = Sind[12] = Sind[13] = 0;
    CHECK(cov_error(D, 4, Sind, &rel) > 5);
    /* per-kernel diagnostics */
    CHECK(col(D, "k1.accept_stat__") >= 0 && col(D, "k2.stepsize__") >= 0 && col(D, "k2.divergent__") >= 0);
    CHECK(col(D, "k1.treedepth__") >= 0);
}

static void test_nuts_dense_metric_recovers_a_100_dimensional_correlated_gaussian(void)
{
    /* AR(1) correlation 0.9 with scales from 0.5 to 2: a dense covariance (every entry nonzero) whose
    ** precision is tridiagonal, so the graph stays small */
    enum { D100 = 100 };
    static double S[D100 * D100], P[D100 * D100], sc[D100];
    double rho = 0.9, err, rel;
    plm_hmc_opts o = {0, 7, 1, 0, 0};   /* depth 7: warm-up with a poor early metric cannot run 1024-step trees */
    plm_target *t;
    plm_kernel *k;
    plm_ctx ctx;
    plm_status st;
    plm_draws *D;
    int i, j;
    for (i = 0; i < D100; i++) sc[i] = pow(2, -1 + 2.0 * i / (D100 - 1));
    for (i = 0; i < D100; i++)
        for (j = 0; j < D100; j++) {
            S[i * D100 + j] = sc[i] * sc[j] * pow(rho, abs(i - j));
            P[i * D100 + j] = 0;
        }
    for (i = 0; i < D100; i++) {
        P[i * D100 + i] = (i == 0 || i == D100 - 1 ? 1 : 1 + rho * rho) / (1 - rho * rho) / (sc[i] * sc[i]);
        if (i + 1 < D100) P[i * D100 + i + 1] = P[(i + 1) * D100 + i] = -rho / (1 - rho * rho) / (sc[i] * sc[i + 1]);
    }
    t = gauss_target(D100, P);
    CHECK(plm_kernel_nuts(&ctx, &o, &k) == PLM_OK);
    /* short runs: the dense metric's matrix-vector products (d^2 per leapfrog step) dominate the time */
    D = run(t, k, 2, 0, 300, 500, 1, 9, &st);
    CHECK(st == PLM_OK && D);
    if (!D) return;
    /* 5050 entries: the largest of that many normal errors is about 4 sd, so 5.5 Monte Carlo errors; and on
    ** the correlation scale (error sd about 1/sqrt(1000) = 0.03, 4 sd = 0.13) no entry is off by 0.2 */
    err = cov_error(D, D100, S, &rel);
    printf("  100-d: worst entry %.2f mcse, %.3f on the correlation scale\n", err, rel);
    CHECK(err < 5.5);
    CHECK(rel < 0.2);
}

/* ---- slice sampling ---- */

static void test_slice_matches_a_correlated_gaussian(void)
{
    double S[16], P[16], rel, err;
    plm_target *t;
    plm_kernel *k;
    plm_ctx ctx;
    plm_status st;
    plm_draws *D;
    four_gauss(S, P);
    t = gauss_target(4, P);
    CHECK(plm_kernel_slice(&ctx, 0, 0, &k) == PLM_OK);
    D = run(t, k, 4, 1, 500, 2000, 1, 6, &st);
    CHECK(st == PLM_OK && D);
    if (!D) return;
    err = cov_error(D, 4, S, &rel);
    if (!(err < 5)) printf("  worst covariance error %.2f mcse (%.3f relative)\n", err, rel);
    CHECK(err < 5);
    CHECK(col(D, "n_eval__") >= 0);
    CHECK(plm_kernel_slice(&ctx, -1, 0, &k) == PLM_EINVAL && strstr(ctx.msg, "width") != NULL);
}

/* The negative control's kernel: Neal's stepping out, then the first uniform point of the interval taken
** without checking that it lies on the slice (no shrinkage): it samples something wider than the target. */
static plm_status noshrink_step(const plm_kernel *k, void *p, plm_ctx *ctx, const plm_target *t, void *ws, plm_rng *r,
                                double *u, double *lp, double *stat, double *extra)
{
    int i;
    (void)k, (void)p, (void)ctx;
    for (i = 0; i < t->dim; i++) {
        double y = *lp + log(plm_rng_uniform(r)), L = u[i] - plm_rng_uniform(r), R = L + 1, x0 = u[i];
        int J = (int)floor(32 * plm_rng_uniform(r)), K = 31 - J;
        while (J-- > 0 && (u[i] = L, plm_target_logp(t, ws, u) > y)) L -= 1;
        while (K-- > 0 && (u[i] = R, plm_target_logp(t, ws, u) > y)) R += 1;
        (void)x0;
        u[i] = L + (R - L) * plm_rng_uniform(r);
        *lp = plm_target_logp(t, ws, u);
    }
    *stat = 1;
    extra[0] = 0;
    return PLM_OK;
}
static const char *const noshrink_names[] = {"n_eval__"};
static const plm_kernel_ops noshrink_ops = {"noshrink", 1, noshrink_names, none_new, free, noshrink_step, NULL};

/* The model of the SBC tests: mu ~ N(0, 1), log s ~ N(0, 0.5), y_1..3 ~ N(mu, s), on u = (mu, log s). */
typedef struct sbc_data {
    double y[3];
} sbc_data;

static double sbc_logp(const plm_target *t, void *ws, const double *u)
{
    const sbc_data *d = t->self;
    double lp = -0.5 * u[0] * u[0] - 2 * u[1] * u[1], s = exp(u[1]);
    int i;
    (void)ws;
    for (i = 0; i < 3; i++) lp += -0.5 * (d->y[i] - u[0]) * (d->y[i] - u[0]) / (s * s) - u[1];
    return lp;
}

/* Talts et al. 2018: draw (mu*, log s*) from the prior and y from the model, run the kernel from the prior
** draw... from a random start, and take the rank of each true value among L = 99 thinned draws; with a correct
** sampler the ranks are uniform on 0..99. Ten bins per parameter, chi-square 9 df each; returns the larger. */
static double sbc_chi2(const plm_kernel *k, int reps, uint64_t seed)
{
    static const plm_target_ops ops = {"sbc", NULL, NULL, sbc_logp, NULL};
    sbc_data dat;
    plm_target t = {&ops, &dat, 2, NULL};
    int bins[2][10] = {{0}}, r, b, p;
    double chi = 0;
    plm_rng g;
    plm_rng_init(&g, seed, 1000);
    for (r = 0; r < reps; r++) {
        double th[2], x2;
        plm_status st;
        plm_draws *D;
        int i;
        th[0] = plm_rng_normal(&g);
        th[1] = 0.5 * plm_rng_normal(&g);
        for (i = 0; i < 3; i++) dat.y[i] = th[0] + exp(th[1]) * plm_rng_normal(&g);
        D = run(&t, k, 1, 1, 200, 99, 3, seed * 1000 + (uint64_t)r, &st);
        if (st || !D) return INFINITY;
        for (p = 0; p < 2; p++) {
            int rank = 0;
            const double *x = plm_draws_chain(D, p, 0);
            for (i = 0; i < 99; i++) rank += x[i] < th[p];
            bins[p][rank / 10]++;
        }
        (void)x2;
    }
    for (p = 0; p < 2; p++) {
        double c = 0, e = reps / 10.0;
        for (b = 0; b < 10; b++) c += (bins[p][b] - e) * (bins[p][b] - e) / e;
        if (c > chi) chi = c;
        if (c > 27.9) {
            printf("  parameter %d bins:", p + 1);
            for (b = 0; b < 10; b++) printf(" %d", bins[p][b]);
            printf(" (chi-square %.1f)\n", c);
        }
    }
    return chi;
}

/* chi-square with 9 degrees of freedom: 27.9 is p = 0.001; two parameters, so a false alarm ~ 0.002 per test
** with a fixed seed (and the seed is fixed) */
#define CHI2_REJECT 27.9

static void test_sbc_slice_ranks_uniform(void)
{
    plm_kernel *k;
    plm_ctx ctx;
    double chi;
    plm_kernel_slice(&ctx, 0, 0, &k);
    chi = sbc_chi2(k, 300, 21);
    if (!(chi < CHI2_REJECT)) printf("  chi-square %.1f\n", chi);
    CHECK(chi < CHI2_REJECT);
}

static void test_sbc_negative_control_slice_without_shrinkage_is_rejected(void)
{
    plm_kernel k = {&noshrink_ops, NULL};
    double chi = sbc_chi2(&k, 300, 22);
    if (!(chi > CHI2_REJECT)) printf("  chi-square %.1f\n", chi);
    CHECK(chi > CHI2_REJECT);
}

/* a cycle of blocks: slice on mu, random-walk MH on log s */
static plm_kernel *slice_mh_cycle(const plm_kernel *first)
{
    plm_kernel *mh, *b1, *b2, *cyc;
    const plm_kernel *ks[2];
    plm_ctx ctx;
    plm_kernel_rwmh(&ctx, 0, &mh);
    plm_kernel_restrict(&ctx, first, (int[]){0}, 1, &b1);
    plm_kernel_restrict(&ctx, mh, (int[]){1}, 1, &b2);
    ks[0] = b1, ks[1] = b2;
    plm_kernel_cycle(&ctx, ks, 2, &cyc);
    return cyc;
}

static void test_sbc_cycle_of_slice_and_mh_blocks_ranks_uniform(void)
{
    plm_kernel *k;
    plm_ctx ctx;
    double chi;
    plm_kernel_slice(&ctx, 0, 0, &k);
    chi = sbc_chi2(slice_mh_cycle(k), 300, 23);
    if (!(chi < CHI2_REJECT)) printf("  chi-square %.1f\n", chi);
    CHECK(chi < CHI2_REJECT);
}

static void test_sbc_negative_control_cycle_with_a_broken_block_is_rejected(void)
{
    static plm_kernel k = {&noshrink_ops, NULL};
    double chi = sbc_chi2(slice_mh_cycle(&k), 300, 24);
    if (!(chi > CHI2_REJECT)) printf("  chi-square %.1f\n", chi);
    CHECK(chi > CHI2_REJECT);
}

/* ---- elliptical slice sampling on a static graph ---- */

/* m ~ N(0, 1), theta ~ N(m, tau) (elliptical slice: a prior that depends on another site), y_1, y_2 ~
** N(theta, 1) observed. *ess_site receives theta's index. */
static plm_gmodel *ess_model(const double *y, double tau, int *ess_site, plm_target **t)
{
    plm_graph *g = plm_graph_new();
    plm_gmodel *m;
    plm_ctx ctx;
    int pm[2], pt[2], py[2], vm, vt, i, yc;
    plm_symdist dm = {PLM_DIST_NORMAL, 0, 2, pm}, dt = {PLM_DIST_NORMAL, 0, 2, pt}, dy = {PLM_DIST_NORMAL, 0, 2, py};
    char name[32];
    if (plm_gmodel_new(&ctx, g, &m)) return NULL;
    pm[0] = plm_graph_const(g, 0), pm[1] = plm_graph_const(g, 1);
    if (plm_gmodel_latent(&ctx, m, "m", &dm, &vm)) return NULL;
    pt[0] = vm, pt[1] = plm_graph_const(g, tau);
    if (plm_gmodel_latent(&ctx, m, "theta", &dt, &vt)) return NULL;
    py[0] = vt, py[1] = plm_graph_const(g, 1);
    for (i = 0; i < 2; i++) {
        snprintf(name, sizeof name, "y%d", i + 1);
        yc = plm_graph_const(g, y[i]);
        if (plm_gmodel_observe(&ctx, m, name, &dy, &yc)) return NULL;
    }
    if (plm_gmodel_target(&ctx, m, t)) return NULL;
    *ess_site = plm_gmodel_find(m, "theta");
    return m;
}

/* SBC of (m, theta) with data simulated from theta ~ N(m, tau_true), the model saying tau_model, sampled by
** a cycle of elliptical slice on theta and slice on m's coordinate (u[0]). */
static double sbc_ess_chi2(double tau_true, double tau_model, int reps, uint64_t seed)
{
    int bins[2][10] = {{0}}, r, b, p;
    double chi = 0;
    plm_rng g;
    plm_rng_init(&g, seed, 1000);
    for (r = 0; r < reps; r++) {
        double th[2], y[2];
        plm_status st;
        plm_draws *D;
        plm_target *t;
        plm_kernel *ess, *sl, *b1, *cyc;
        const plm_kernel *ks[2];
        plm_gmodel *gm;
        plm_ctx ctx;
        int i, site;
        th[0] = plm_rng_normal(&g);
        th[1] = th[0] + tau_true * plm_rng_normal(&g);
        for (i = 0; i < 2; i++) y[i] = th[1] + plm_rng_normal(&g);
        if (!(gm = ess_model(y, tau_model, &site, &t))) return INFINITY;
        if (plm_kernel_ess(&ctx, gm, &site, 1, &ess)) {
            printf("  ess: %s\n", ctx.msg);
            return INFINITY;
        }
        plm_kernel_slice(&ctx, 0, 0, &sl);
        plm_kernel_restrict(&ctx, sl, (int[]){0}, 1, &b1);
        ks[0] = ess, ks[1] = b1;
        plm_kernel_cycle(&ctx, ks, 2, &cyc);
        D = run(t, cyc, 1, 1, 200, 99, 3, seed * 1000 + (uint64_t)r, &st);
        if (st || !D) return INFINITY;
        for (p = 0; p < 2; p++) {
            int rank = 0;
            const double *x = plm_draws_chain(D, p, 0);
            for (i = 0; i < 99; i++) rank += x[i] < th[p];
            bins[p][rank / 10]++;
        }
    }
    for (p = 0; p < 2; p++) {
        double c = 0, e = reps / 10.0;
        for (b = 0; b < 10; b++) c += (bins[p][b] - e) * (bins[p][b] - e) / e;
        if (c > chi) chi = c;
    }
    return chi;
}

static void test_sbc_elliptical_slice_ranks_uniform(void)
{
    double chi = sbc_ess_chi2(1, 1, 300, 31);
    if (!(chi < CHI2_REJECT)) printf("  chi-square %.1f\n", chi);
    CHECK(chi < CHI2_REJECT);
}

static void test_sbc_negative_control_elliptical_slice_with_wrong_prior_cov_is_rejected(void)
{
    /* the kernel samples with prior variance 0.09 where the data came from variance 1 */
    double chi = sbc_ess_chi2(1, 0.3, 300, 32);
    if (!(chi > CHI2_REJECT)) printf("  chi-square %.1f\n", chi);
    CHECK(chi > CHI2_REJECT);
}

static void test_elliptical_slice_refuses_a_site_without_gaussian_prior(void)
{
    plm_graph *g = plm_graph_new();
    plm_gmodel *m;
    plm_ctx ctx;
    plm_target *t;
    plm_kernel *k;
    int p[2], v, site;
    plm_symdist d = {PLM_DIST_GAMMA, 0, 2, p};
    double y[2] = {0, 1};
    plm_gmodel_new(&ctx, g, &m);
    p[0] = plm_graph_const(g, 2), p[1] = plm_graph_const(g, 1);
    plm_gmodel_latent(&ctx, m, "sigma", &d, &v);
    plm_gmodel_finish(&ctx, m);
    site = 0;
    CHECK(plm_kernel_ess(&ctx, m, &site, 1, &k) == PLM_EINVAL);
    CHECK(strstr(ctx.msg, "'sigma'") != NULL && strstr(ctx.msg, "gamma") != NULL);
    m = ess_model(y, 1, &site, &t);
    site = plm_gmodel_find(m, "y1");
    CHECK(plm_kernel_ess(&ctx, m, &site, 1, &k) == PLM_EINVAL && strstr(ctx.msg, "'y1' is observed") != NULL);
}

static void test_composed_draws_are_identical_for_one_and_two_threads(void)
{
    double S[16], P[16];
    plm_target *t;
    plm_kernel *nuts, *sl, *b1, *b2, *mix, *cyc;
    const plm_kernel *ks[2];
    plm_ctx ctx;
    plm_status s1, s2;
    plm_draws *A, *B;
    int c, j;
    four_gauss(S, P);
    t = gauss_target(4, P);
    plm_kernel_nuts(&ctx, NULL, &nuts);
    plm_kernel_slice(&ctx, 0, 0, &sl);
    plm_kernel_restrict(&ctx, nuts, (int[]){0, 1}, 2, &b1);
    plm_kernel_restrict(&ctx, sl, (int[]){2, 3}, 2, &b2);
    ks[0] = b1, ks[1] = b2;
    plm_kernel_mixture(&ctx, ks, (double[]){1, 1}, 2, &mix);
    ks[0] = mix, ks[1] = b2;
    plm_kernel_cycle(&ctx, ks, 2, &cyc);
    A = run(t, cyc, 4, 1, 200, 200, 1, 8, &s1);
    B = run(t, cyc, 4, 2, 200, 200, 1, 8, &s2);
    CHECK(s1 == PLM_OK && s2 == PLM_OK && A && B);
    if (s1 || s2 || !A || !B) return;
    CHECK(plm_draws_ncols(A) == plm_draws_ncols(B));
    CHECK(col(A, "k1.k1.treedepth__") >= 0);   /* nested composites prefix their children's columns */
    for (c = 0; c < 4; c++)
        for (j = 0; j < plm_draws_ncols(A); j++)
            CHECK(memcmp(plm_draws_chain(A, j, c), plm_draws_chain(B, j, c), 200 * sizeof(double)) == 0);
}

int main(void)
{
    plm_init();
    RUN(test_cycle_applies_in_order_and_rep_repeats);
    RUN(test_mixture_weights_are_respected);
    RUN(test_cycle_of_restricted_nuts_blocks_recovers_the_covariance);
    RUN(test_nuts_dense_metric_recovers_a_100_dimensional_correlated_gaussian);
    RUN(test_slice_matches_a_correlated_gaussian);
    RUN(test_sbc_slice_ranks_uniform);
    RUN(test_sbc_negative_control_slice_without_shrinkage_is_rejected);
    RUN(test_sbc_cycle_of_slice_and_mh_blocks_ranks_uniform);
    RUN(test_sbc_negative_control_cycle_with_a_broken_block_is_rejected);
    RUN(test_sbc_elliptical_slice_ranks_uniform);
    RUN(test_sbc_negative_control_elliptical_slice_with_wrong_prior_cov_is_rejected);
    RUN(test_elliptical_slice_refuses_a_site_without_gaussian_prior);
    RUN(test_composed_draws_are_identical_for_one_and_two_threads);
    return CHECK_DONE();
}
