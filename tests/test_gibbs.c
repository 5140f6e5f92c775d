/* test_gibbs.c -- exact Gibbs kernels on static graphs: every conditional the kernel draws from equals the
** one found by brute force from the model's whole log density (enumeration, or the log density on a grid
** minus the closed form being constant), one-site posteriors match their closed forms within Monte Carlo
** error, the log density the kernel carries equals the model's, and what is not conjugate is refused with
** the reason. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gsl/gsl_linalg.h>

#include "check.h"
#include "gibbs.h"
#include "transform.h"

static plm_ctx ctx;

typedef struct built {
    plm_graph *g;
    plm_gmodel *m;
} built;

static built new_model(void)
{
    built b;
    b.g = plm_graph_new();
    plm_gmodel_new(&ctx, b.g, &b.m);
    return b;
}

static int k_(built *b, double v) { return plm_graph_const(b->g, v); }

static int latent(built *b, const char *name, plm_dist_kind kind, int np, int *p, int K)
{
    plm_symdist d = {kind, K, np, p};
    int v[1] = {-1};
    CHECK(plm_gmodel_latent(&ctx, b->m, name, &d, v) == PLM_OK);
    return v[0];
}

static void observe(built *b, const char *name, plm_dist_kind kind, int np, int *p, double y)
{
    plm_symdist d = {kind, 0, np, p};
    int x = k_(b, y);
    CHECK(plm_gmodel_observe(&ctx, b->m, name, &d, &x) == PLM_OK);
}

static double target_at(const plm_target *t, void *ws, double *u, int coord, double v)
{
    u[coord] = v;
    return plm_target_logp(t, ws, u);
}

/* log-softmax in place */
static void normalise(double *w, int n)
{
    double mx = -INFINITY, s = 0;
    int i;
    for (i = 0; i < n; i++) mx = fmax(mx, w[i]);
    for (i = 0; i < n; i++) s += exp(w[i] - mx);
    for (i = 0; i < n; i++) w[i] -= mx + log(s);
}

/* p ~ beta(2, 3); z ~ bernoulli(p); c ~ categorical(0.2, 0.5, 0.3); y1 ~ normal(mu[c] + 1.5 z, 0.7) at 1.1;
** k ~ binomial(6, p); y2 ~ poisson(k + 0.5) at 3. */
static built discrete_model(int *pz, int *pc, int *pk)
{
    built b = new_model();
    int p[4], pv, z, c, k, mean;
    p[0] = k_(&b, 2), p[1] = k_(&b, 3);
    pv = latent(&b, "p", PLM_DIST_BETA, 2, p, 0);
    p[0] = pv;
    z = latent(&b, "z", PLM_DIST_BERNOULLI, 1, p, 0);
    p[0] = k_(&b, 0.2), p[1] = k_(&b, 0.5), p[2] = k_(&b, 0.3);
    c = latent(&b, "c", PLM_DIST_CATEGORICAL, 3, p, 3);
    mean = plm_graph_op(b.g, PLM_OP_SELECT, plm_graph_op(b.g, PLM_OP_EQ, c, k_(&b, 0), -1), k_(&b, -1),
                        plm_graph_op(b.g, PLM_OP_SELECT, plm_graph_op(b.g, PLM_OP_EQ, c, k_(&b, 1), -1), k_(&b, 0.5), k_(&b, 2)));
    mean = plm_graph_op(b.g, PLM_OP_ADD, mean, plm_graph_op(b.g, PLM_OP_MUL, k_(&b, 1.5), z, -1), -1);
    p[0] = mean, p[1] = k_(&b, 0.7);
    observe(&b, "y1", PLM_DIST_NORMAL, 2, p, 1.1);
    p[0] = k_(&b, 6), p[1] = pv;
    k = latent(&b, "k", PLM_DIST_BINOMIAL, 2, p, 0);
    p[0] = plm_graph_op(b.g, PLM_OP_ADD, k, k_(&b, 0.5), -1);
    observe(&b, "y2", PLM_DIST_POISSON, 1, p, 3);
    CHECK(plm_gmodel_finish(&ctx, b.m) == PLM_OK);
    *pz = plm_gmodel_find(b.m, "z"), *pc = plm_gmodel_find(b.m, "c"), *pk = plm_gmodel_find(b.m, "k");
    return b;
}

static void test_enumeration_equals_brute_force(void)
{
    int sz, sc, sk, s, i, n;
    built b = discrete_model(&sz, &sc, &sk);
    plm_target *t;
    void *ws;
    double u[4], w[16], ref[16];
    plm_gmodel_target(&ctx, b.m, &t);
    ws = plm_target_ws_new(t);
    u[0] = plm_transform_to_free(0, 1, 0.4), u[1] = 1, u[2] = 2, u[3] = 3;
    for (s = 0; s < 3; s++) {
        int site = s == 0 ? sz : s == 1 ? sc : sk, coord = b.m->sites[site].first;
        double keep = u[coord];
        plm_kernel *k;
        CHECK(plm_kernel_gibbs(&ctx, b.m, &site, 1, &k) == PLM_OK);
        CHECK(plm_gibbs_conditional(&ctx, k, 0, u, w, 16, &n) == PLM_OK);
        CHECK(n == (s == 0 ? 2 : s == 1 ? 3 : 7));
        for (i = 0; i < n; i++) ref[i] = target_at(t, ws, u, coord, i);
        u[coord] = keep;
        normalise(w, n), normalise(ref, n);
        for (i = 0; i < n; i++) CHECK_NEAR(w[i], ref[i], 1e-12);
    }
    {   /* the block (z, c) jointly: 6 points, c fastest */
        int sites[2] = {sz, sc};
        plm_kernel *k;
        CHECK(plm_kernel_block_gibbs(&ctx, b.m, sites, 2, &k) == PLM_OK);
        CHECK(plm_gibbs_conditional(&ctx, k, 0, u, w, 16, &n) == PLM_OK);
        CHECK(n == 6);
        for (i = 0; i < 6; i++) {
            u[1] = i / 3, u[2] = i % 3;
            ref[i] = plm_target_logp(t, ws, u);
        }
        u[1] = 1, u[2] = 2;
        normalise(w, 6), normalise(ref, 6);
        for (i = 0; i < 6; i++) CHECK_NEAR(w[i], ref[i], 1e-12);
    }
    plm_target_ws_free(t, ws);
}

/* The model's log density on a grid of the site's value, minus the closed-form log density and the log
** Jacobian of the coordinate: constant when the closed form is the conditional. Returns the spread. */
static double spread(const plm_gmodel *m, int site, double *u, plm_dist_kind kind, const double *par, double lo, double hi)
{
    plm_target *t;
    void *ws;
    int coord = m->sites[site].first, i;
    double keep = u[coord], mn = INFINITY, mx = -INFINITY;
    plm_gmodel_target(&ctx, (plm_gmodel *)m, &t);
    ws = plm_target_ws_new(t);
    for (i = 0; i <= 20; i++) {
        double x = lo + (hi - lo) * i / 20, uc, lj, d;
        if (kind == PLM_DIST_NORMAL) uc = x, lj = 0;
        else if (kind == PLM_DIST_BETA) uc = plm_transform_to_free(0, 1, x), lj = log(x) + log1p(-x);
        else uc = log(x), lj = log(x);
        d = target_at(t, ws, u, coord, uc) - lj - plm_dist_logpdf1(kind, par, x);
        mn = fmin(mn, d), mx = fmax(mx, d);
    }
    u[coord] = keep;
    plm_target_ws_free(t, ws);
    return mx - mn;
}

static void conditional_of(const plm_gmodel *m, int site, const double *u, double *par)
{
    plm_kernel *k;
    int n = 0;
    CHECK(plm_kernel_gibbs(&ctx, m, &site, 1, &k) == PLM_OK);
    if (!k) return;
    CHECK(plm_gibbs_conditional(&ctx, k, 0, u, par, 2, &n) == PLM_OK);
    CHECK(n == 2);
}

static void test_normal_normal_conditional_is_closed_form(void)
{
    built b = new_model();
    int p[2], mu, theta;
    double u[3] = {0.3, -0.4, 0}, par[2];
    p[0] = k_(&b, 1), p[1] = k_(&b, 2);
    mu = latent(&b, "mu", PLM_DIST_NORMAL, 2, p, 0);
    /* a hierarchical child, an observation of mu itself, and one whose mean is 2 mu - 1 */
    p[0] = plm_graph_op(b.g, PLM_OP_ADD, plm_graph_op(b.g, PLM_OP_MUL, k_(&b, 0.5), mu, -1), k_(&b, 1), -1), p[1] = k_(&b, 0.8);
    theta = latent(&b, "theta", PLM_DIST_NORMAL, 2, p, 0);
    p[0] = mu, p[1] = k_(&b, 1.5);
    observe(&b, "y1", PLM_DIST_NORMAL, 2, p, 0.3);
    p[0] = plm_graph_op(b.g, PLM_OP_SUB, plm_graph_op(b.g, PLM_OP_MUL, mu, k_(&b, 2), -1), k_(&b, 1), -1), p[1] = k_(&b, 0.5);
    observe(&b, "y2", PLM_DIST_NORMAL, 2, p, 2.0);
    p[0] = theta, p[1] = k_(&b, 1);
    observe(&b, "y3", PLM_DIST_NORMAL, 2, p, -0.2);
    CHECK(plm_gmodel_finish(&ctx, b.m) == PLM_OK);
    conditional_of(b.m, 0, u, par);
    CHECK(spread(b.m, 0, u, PLM_DIST_NORMAL, par, par[0] - 3 * par[1], par[0] + 3 * par[1]) < 1e-9);
    /* theta's conditional too (its child y3 has mean theta) */
    conditional_of(b.m, 1, u, par);
    CHECK(spread(b.m, 1, u, PLM_DIST_NORMAL, par, par[0] - 3 * par[1], par[0] + 3 * par[1]) < 1e-9);
    /* a wrong closed form is caught by the same measure: the check can fail */
    par[1] *= 1.1;
    CHECK(spread(b.m, 0, u, PLM_DIST_NORMAL, par, par[0] - 3 * par[1], par[0] + 3 * par[1]) > 1e-3);
}

static void test_gamma_precision_poisson_exponential_conditional_is_closed_form(void)
{
    built b = new_model();
    int p[2], tau, i;
    double u[1] = {0.2}, par[2], ys[3] = {0.4, -1.0, 2.2};
    p[0] = k_(&b, 2), p[1] = k_(&b, 1.5);
    tau = latent(&b, "tau", PLM_DIST_GAMMA, 2, p, 0);
    for (i = 0; i < 3; i++) {   /* sd written three ways: 1/sqrt(tau), tau^-0.5, 2/sqrt(tau) */
        char name[32];
        snprintf(name, sizeof name, "y%d", i + 1);
        p[0] = k_(&b, 0.5 * i);
        p[1] = i == 0 ? plm_graph_op(b.g, PLM_OP_DIV, k_(&b, 1), plm_graph_op(b.g, PLM_OP_SQRT, tau, -1, -1), -1)
             : i == 1 ? plm_graph_op(b.g, PLM_OP_POW, tau, k_(&b, -0.5), -1)
                      : plm_graph_op(b.g, PLM_OP_DIV, k_(&b, 2), plm_graph_op(b.g, PLM_OP_SQRT, tau, -1, -1), -1);
        observe(&b, name, PLM_DIST_NORMAL, 2, p, ys[i]);
    }
    p[0] = plm_graph_op(b.g, PLM_OP_MUL, k_(&b, 3), tau, -1);
    observe(&b, "n", PLM_DIST_POISSON, 1, p, 4);
    p[0] = plm_graph_op(b.g, PLM_OP_MUL, tau, k_(&b, 2), -1);
    observe(&b, "e", PLM_DIST_EXPONENTIAL, 1, p, 0.7);
    CHECK(plm_gmodel_finish(&ctx, b.m) == PLM_OK);
    conditional_of(b.m, 0, u, par);
    CHECK(spread(b.m, 0, u, PLM_DIST_GAMMA, par, 0.05, 4) < 1e-9);
}

static void test_inverse_gamma_variance_conditional_is_closed_form(void)
{
    built b = new_model();
    int p[2], v, i;
    double u[1] = {0}, par[2], ys[3] = {0.4, -1.0, 2.2};
    p[0] = k_(&b, 3), p[1] = k_(&b, 2);
    v = latent(&b, "v", PLM_DIST_INV_GAMMA, 2, p, 0);
    for (i = 0; i < 3; i++) {
        char name[32];
        snprintf(name, sizeof name, "y%d", i + 1);
        p[0] = k_(&b, 0.3), p[1] = plm_graph_op(b.g, PLM_OP_MUL, k_(&b, 1 + i), plm_graph_op(b.g, PLM_OP_SQRT, v, -1, -1), -1);
        observe(&b, name, PLM_DIST_NORMAL, 2, p, ys[i]);
    }
    CHECK(plm_gmodel_finish(&ctx, b.m) == PLM_OK);
    conditional_of(b.m, 0, u, par);
    CHECK(spread(b.m, 0, u, PLM_DIST_INV_GAMMA, par, 0.1, 5) < 1e-9);
}

static void test_beta_bernoulli_binomial_conditional_is_closed_form(void)
{
    built b = new_model();
    int p[2], q;
    double u[1] = {0.1}, par[2];
    p[0] = k_(&b, 2), p[1] = k_(&b, 3);
    q = latent(&b, "q", PLM_DIST_BETA, 2, p, 0);
    p[0] = q;
    observe(&b, "b1", PLM_DIST_BERNOULLI, 1, p, 1);
    observe(&b, "b2", PLM_DIST_BERNOULLI, 1, p, 0);
    p[0] = k_(&b, 10), p[1] = q;
    observe(&b, "k", PLM_DIST_BINOMIAL, 2, p, 7);
    CHECK(plm_gmodel_finish(&ctx, b.m) == PLM_OK);
    conditional_of(b.m, 0, u, par);
    CHECK_NEAR(par[0], 2 + 1 + 7, 1e-12);
    CHECK_NEAR(par[1], 3 + 1 + 3, 1e-12);
    CHECK(spread(b.m, 0, u, PLM_DIST_BETA, par, 0.02, 0.98) < 1e-9);
}

static void test_non_conjugate_sites_are_refused_with_the_reason(void)
{
    built b = new_model();
    int p[2], mu, s, site;
    plm_kernel *k;
    p[0] = k_(&b, 0), p[1] = k_(&b, 1);
    mu = latent(&b, "mu", PLM_DIST_NORMAL, 2, p, 0);
    p[0] = k_(&b, 2), p[1] = k_(&b, 1);
    s = latent(&b, "s", PLM_DIST_GAMMA, 2, p, 0);
    p[0] = k_(&b, 3);
    latent(&b, "n", PLM_DIST_POISSON, 1, p, 0);
    p[0] = plm_graph_op(b.g, PLM_OP_EXP, mu, -1, -1), p[1] = s;   /* mean exp(mu), sd s: neither is conjugate */
    observe(&b, "y", PLM_DIST_NORMAL, 2, p, 1);
    CHECK(plm_gmodel_finish(&ctx, b.m) == PLM_OK);
    site = 0;
    CHECK(plm_kernel_gibbs(&ctx, b.m, &site, 1, &k) == PLM_ENOTSUP);
    CHECK(strstr(ctx.msg, "'mu'") && strstr(ctx.msg, "not affine"));
    site = 1;
    CHECK(plm_kernel_gibbs(&ctx, b.m, &site, 1, &k) == PLM_ENOTSUP);
    CHECK(strstr(ctx.msg, "'s'") && strstr(ctx.msg, "not c / sqrt(site)"));
    site = 2;
    CHECK(plm_kernel_gibbs(&ctx, b.m, &site, 1, &k) == PLM_ENOTSUP);
    CHECK(strstr(ctx.msg, "'n'") && strstr(ctx.msg, "unbounded"));
    site = 3;   /* the observation */
    CHECK(plm_kernel_gibbs(&ctx, b.m, &site, 1, &k) == PLM_EINVAL);
    CHECK(strstr(ctx.msg, "'y'") && strstr(ctx.msg, "not latent"));
    site = 9;
    CHECK(plm_kernel_gibbs(&ctx, b.m, &site, 1, &k) == PLM_EINVAL);
    CHECK(strstr(ctx.msg, "no site number 10") != NULL);
}

static void test_block_larger_than_the_cap_is_refused(void)
{
    built b = new_model();
    int p[4], i, sites[9];
    plm_kernel *k;
    for (i = 0; i < 4; i++) p[i] = k_(&b, 0.25);
    for (i = 0; i < 9; i++) {
        char name[32];
        snprintf(name, sizeof name, "c%d", i + 1);
        latent(&b, name, PLM_DIST_CATEGORICAL, 4, p, 4);
        sites[i] = i;
    }
    CHECK(plm_gmodel_finish(&ctx, b.m) == PLM_OK);
    CHECK(plm_kernel_block_gibbs(&ctx, b.m, sites, 9, &k) == PLM_EINVAL);
    CHECK(strstr(ctx.msg, "more than 65536 points") && strstr(ctx.msg, "'c9'"));
    CHECK(plm_kernel_block_gibbs(&ctx, b.m, sites, 8, &k) == PLM_OK);
}

/* Mean and variance of the value column of a one-site run against the closed form: the draws are exact and
** independent (the site's conditional is its posterior), so the tolerance is 4 standard errors. */
static void check_moments(const plm_draws *D, int transform, double mean, double var)
{
    size_t n = plm_draws_len(D, 0), i;
    const double *u = plm_draws_chain(D, 0, 0);
    double s = 0, s2 = 0, m, v;
    for (i = 0; i < n; i++) {
        double x = transform == 0 ? u[i] : transform == 1 ? exp(u[i]) : 1 / (1 + exp(-u[i]));
        s += x, s2 += x * x;
    }
    m = s / n, v = s2 / n - m * m;
    CHECK_NEAR(m, mean, 4 * sqrt(var / n));
    CHECK_NEAR(v, var, 4 * var * sqrt(2.0 / n) * 1.5);   /* 1.5: room for non-normal fourth moments */
}

static void run_one_site(built *b, const double *init, int transform, double mean, double var)
{
    plm_target *t;
    plm_kernel *k;
    plm_draws *D;
    plm_mcmc_opts o;
    int site = 0;
    CHECK(plm_gmodel_finish(&ctx, b->m) == PLM_OK);
    plm_gmodel_target(&ctx, b->m, &t);
    CHECK(plm_kernel_gibbs(&ctx, b->m, &site, 1, &k) == PLM_OK);
    memset(&o, 0, sizeof o);
    o.chains = 1, o.warmup = 10, o.samples = 20000, o.thin = 1, o.seed = 42, o.threads = 1, o.init = init;
    CHECK(plm_mcmc_run(&ctx, t, k, &o, &D, NULL) == PLM_OK);
    check_moments(D, transform, mean, var);
}

static void test_one_site_posteriors_match_closed_forms(void)
{
    int p[2], x;
    double init[1] = {0};
    {   /* normal-normal: prior N(1, 2^2), y = 0.3, 2.0 with sd 1 */
        built b = new_model();
        double prec = 1 / 4.0 + 2, mean = (1 / 4.0 + 0.3 + 2.0) / prec;
        p[0] = k_(&b, 1), p[1] = k_(&b, 2);
        x = latent(&b, "mu", PLM_DIST_NORMAL, 2, p, 0);
        p[0] = x, p[1] = k_(&b, 1);
        observe(&b, "y1", PLM_DIST_NORMAL, 2, p, 0.3);
        observe(&b, "y2", PLM_DIST_NORMAL, 2, p, 2.0);
        run_one_site(&b, init, 0, mean, 1 / prec);
    }
    {   /* gamma-poisson: prior gamma(2, 1), counts 3, 5 -> gamma(10, 3) */
        built b = new_model();
        p[0] = k_(&b, 2), p[1] = k_(&b, 1);
        x = latent(&b, "lambda", PLM_DIST_GAMMA, 2, p, 0);
        p[0] = x;
        observe(&b, "n1", PLM_DIST_POISSON, 1, p, 3);
        observe(&b, "n2", PLM_DIST_POISSON, 1, p, 5);
        run_one_site(&b, init, 1, 10 / 3.0, 10 / 9.0);
    }
    {   /* beta-binomial: beta(2, 3), 7 of 10 -> beta(9, 6) */
        built b = new_model();
        p[0] = k_(&b, 2), p[1] = k_(&b, 3);
        x = latent(&b, "q", PLM_DIST_BETA, 2, p, 0);
        p[0] = k_(&b, 10), p[1] = x;
        observe(&b, "k", PLM_DIST_BINOMIAL, 2, p, 7);
        run_one_site(&b, init, 2, 9 / 15.0, 9.0 * 6 / (15.0 * 15 * 16));
    }
    {   /* normal with unknown variance: IG(3, 2), y = 1, -1, 2 around 0 -> IG(4.5, 2 + 3) */
        built b = new_model();
        double a = 4.5, s = 5;
        p[0] = k_(&b, 3), p[1] = k_(&b, 2);
        x = latent(&b, "v", PLM_DIST_INV_GAMMA, 2, p, 0);
        p[0] = k_(&b, 0), p[1] = plm_graph_op(b.g, PLM_OP_SQRT, x, -1, -1);
        observe(&b, "y1", PLM_DIST_NORMAL, 2, p, 1);
        observe(&b, "y2", PLM_DIST_NORMAL, 2, p, -1);
        observe(&b, "y3", PLM_DIST_NORMAL, 2, p, 2);
        run_one_site(&b, init, 1, s / (a - 1), s * s / ((a - 1) * (a - 1) * (a - 2)));
    }
}

/* The log density the kernel carries from step to step (incremented by blanket terms) is the model's. */
static void test_carried_log_density_equals_the_model(void)
{
    int sz, sc, sk, i, sites[4];
    built b = discrete_model(&sz, &sc, &sk);
    plm_target *t;
    plm_kernel *k;
    plm_rng r;
    void *ws, *st;
    double u[4], lp, stat, worst = 0;
    plm_gmodel_target(&ctx, b.m, &t);
    ws = plm_target_ws_new(t);
    sites[0] = plm_gmodel_find(b.m, "p"), sites[1] = sz, sites[2] = sc, sites[3] = sk;
    CHECK(plm_kernel_gibbs(&ctx, b.m, sites, 4, &k) == PLM_OK);
    if (!k) return;
    st = k->ops->chain_new(k, t);
    u[0] = 0.2, u[1] = 0, u[2] = 1, u[3] = 2;
    lp = plm_target_logp(t, ws, u);
    plm_rng_init(&r, 7, 0);
    for (i = 0; i < 200; i++) {
        CHECK(k->ops->step(k, st, &ctx, t, ws, &r, u, &lp, &stat, NULL) == PLM_OK);
        worst = fmax(worst, fabs(lp - plm_target_logp(t, ws, u)));
    }
    CHECK(worst < 1e-9);
    k->ops->chain_free(st);
    plm_target_ws_free(t, ws);
}

/* The same for conjugate updates, whose increments come from the conditional's shape: mu ~ normal(0, 2),
** tau ~ gamma(2, 1), v ~ inv_gamma(3, 2), theta_j ~ normal(mu, 1/sqrt(tau)), y_j ~ normal(theta_j, sqrt(v)). */
static void test_carried_log_density_equals_the_model_conjugate(void)
{
    built b = new_model();
    int p[2], mu, tau, v, j, sites[6];
    double u[6] = {0.1, 0.2, -0.3, 0.5, -0.5, 1.0}, lp, stat, worst = 0, ys[3] = {1.5, -0.7, 2.4};
    plm_target *t;
    plm_kernel *k;
    plm_rng r;
    void *ws, *st;
    p[0] = k_(&b, 0), p[1] = k_(&b, 2);
    mu = latent(&b, "mu", PLM_DIST_NORMAL, 2, p, 0);
    p[0] = k_(&b, 2), p[1] = k_(&b, 1);
    tau = latent(&b, "tau", PLM_DIST_GAMMA, 2, p, 0);
    p[0] = k_(&b, 3), p[1] = k_(&b, 2);
    v = latent(&b, "v", PLM_DIST_INV_GAMMA, 2, p, 0);
    for (j = 0; j < 3; j++) {
        char name[32];
        int th;
        snprintf(name, sizeof name, "theta%d", j + 1);
        p[0] = mu, p[1] = plm_graph_op(b.g, PLM_OP_INV, plm_graph_op(b.g, PLM_OP_SQRT, tau, -1, -1), -1, -1);
        th = latent(&b, name, PLM_DIST_NORMAL, 2, p, 0);
        snprintf(name, sizeof name, "y%d", j + 1);
        p[0] = th, p[1] = plm_graph_op(b.g, PLM_OP_SQRT, v, -1, -1);
        observe(&b, name, PLM_DIST_NORMAL, 2, p, ys[j]);
    }
    CHECK(plm_gmodel_finish(&ctx, b.m) == PLM_OK);
    plm_gmodel_target(&ctx, b.m, &t);
    ws = plm_target_ws_new(t);
    sites[0] = 0, sites[1] = 1, sites[2] = 2, sites[3] = plm_gmodel_find(b.m, "theta1");
    sites[4] = plm_gmodel_find(b.m, "theta2"), sites[5] = plm_gmodel_find(b.m, "theta3");
    CHECK(plm_kernel_gibbs(&ctx, b.m, sites, 6, &k) == PLM_OK);
    if (!k) return;
    st = k->ops->chain_new(k, t);
    lp = plm_target_logp(t, ws, u);
    plm_rng_init(&r, 8, 0);
    for (j = 0; j < 500; j++) {
        CHECK(k->ops->step(k, st, &ctx, t, ws, &r, u, &lp, &stat, NULL) == PLM_OK);
        worst = fmax(worst, fabs(lp - plm_target_logp(t, ws, u)) / fmax(1, fabs(lp)));
    }
    CHECK(worst < 1e-9);
    k->ops->chain_free(st);
    plm_target_ws_free(t, ws);
}

/* w ~ dirichlet(1, 2, 0.5); y1, y2, y3 ~ categorical(w) at 0, 0, 2 (0-based); z ~ categorical(w) latent; also
** a dirichlet site whose child reads it otherwise (normal(w[1], 1)), refused with the reason. */
static void test_dirichlet_categorical_conditional_is_closed_form(void)
{
    built b = new_model();
    int a[3], w[3], j, site, zc, sites[2];
    double u[4] = {0.3, -1.2, 0.4, 1}, par[3], y[3] = {0, 0, 2}, lo = INFINITY, hi = -INFINITY, lp, stat, worst = 0;
    plm_symdist d = {PLM_DIST_DIRICHLET, 3, 3, a}, c = {PLM_DIST_CATEGORICAL, 3, 3, w};
    plm_target *t;
    plm_kernel *k;
    plm_rng r;
    void *ws, *st;
    a[0] = k_(&b, 1), a[1] = k_(&b, 2), a[2] = k_(&b, 0.5);
    CHECK(plm_gmodel_latent(&ctx, b.m, "w", &d, w) == PLM_OK);
    for (j = 0; j < 3; j++) {
        char name[32];
        int x = k_(&b, y[j]);
        snprintf(name, sizeof name, "y%d", j + 1);
        CHECK(plm_gmodel_observe(&ctx, b.m, name, &c, &x) == PLM_OK);
    }
    CHECK(plm_gmodel_latent(&ctx, b.m, "z", &c, &zc) == PLM_OK);
    CHECK(plm_gmodel_finish(&ctx, b.m) == PLM_OK);
    site = plm_gmodel_find(b.m, "w");
    {
        plm_kernel *k1;
        int n = 0;
        CHECK(plm_kernel_gibbs(&ctx, b.m, &site, 1, &k1) == PLM_OK);
        if (!k1) return;
        CHECK(plm_gibbs_conditional(&ctx, k1, 0, u, par, 3, &n) == PLM_OK);
        CHECK(n == 3);
    }
    /* prior plus counts: y gives two 0s and a 2, z = 1 one 1 */
    CHECK_NEAR(par[0], 1 + 2, 1e-12);
    CHECK_NEAR(par[1], 2 + 1, 1e-12);
    CHECK_NEAR(par[2], 0.5 + 1, 1e-12);
    /* brute force: the model's log density on u less sum par_k log x_k - (mean u)^2 / 2 is constant in w's
    ** coordinates (the dirichlet density, the Jacobian prod x_k and the normal on mean u, nothing else) */
    plm_gmodel_target(&ctx, b.m, &t);
    ws = plm_target_ws_new(t);
    plm_rng_init(&r, 3, 0);
    for (j = 0; j < 50; j++) {
        double v[4], mx, tot = 0, mean, f = 0;
        int i;
        for (i = 0; i < 3; i++) v[i] = 3 * plm_rng_normal(&r);
        v[3] = u[3];
        mx = fmax(v[0], fmax(v[1], v[2]));
        for (i = 0; i < 3; i++) tot += exp(v[i] - mx);
        mean = (v[0] + v[1] + v[2]) / 3;
        for (i = 0; i < 3; i++) f += par[i] * (v[i] - mx - log(tot));
        f = plm_target_logp(t, ws, v) - (f - 0.5 * mean * mean);
        lo = fmin(lo, f), hi = fmax(hi, f);
    }
    CHECK(hi - lo < 1e-9);
    /* the log density the kernel carries (w by its closed form, z by enumeration) equals the model's */
    sites[0] = site, sites[1] = plm_gmodel_find(b.m, "z");
    CHECK(plm_kernel_gibbs(&ctx, b.m, sites, 2, &k) == PLM_OK);
    if (!k) return;
    st = k->ops->chain_new(k, t);
    lp = plm_target_logp(t, ws, u);
    for (j = 0; j < 300; j++) {
        CHECK(k->ops->step(k, st, &ctx, t, ws, &r, u, &lp, &stat, NULL) == PLM_OK);
        worst = fmax(worst, fabs(lp - plm_target_logp(t, ws, u)) / fmax(1, fabs(lp)));
    }
    CHECK(worst < 1e-9);
    k->ops->chain_free(st);
    plm_target_ws_free(t, ws);
}

static void test_dirichlet_with_a_non_categorical_child_is_refused(void)
{
    built b = new_model();
    int a[2], w[2], p[2];
    plm_symdist d = {PLM_DIST_DIRICHLET, 2, 2, a};
    plm_gibbs_plan plan;
    a[0] = k_(&b, 1), a[1] = k_(&b, 1);
    CHECK(plm_gmodel_latent(&ctx, b.m, "w", &d, w) == PLM_OK);
    p[0] = w[0], p[1] = k_(&b, 1);
    observe(&b, "y", PLM_DIST_NORMAL, 2, p, 0.3);
    CHECK(plm_gmodel_finish(&ctx, b.m) == PLM_OK);
    CHECK(plm_gibbs_plan_site(&ctx, b.m, 0, &plan) == PLM_OK);
    CHECK(plan.how == PLM_GIBBS_NONE);
    CHECK(strstr(plan.why, "child y of 'w' is normal, not categorical") != NULL);
}

static void inv2(const double *A, double *B)
{
    double det = A[0] * A[3] - A[1] * A[2];
    B[0] = A[3] / det, B[1] = -A[1] / det, B[2] = -A[2] / det, B[3] = A[0] / det;
}

/* mu ~ mvnormal((1, -1), S0); y1, y2 ~ mvnormal(mu, S) observed; y3 ~ normal(mu[2], 0.7) at 0.1: the
** conditional is the closed form P = S0^-1 + 2 S^-1 + e2 e2' / 0.49, mean P^-1 (S0^-1 m0 + S^-1 (y1 + y2)
** + e2 0.1 / 0.49), and the model's log density on u less that gaussian's is constant. */
static void test_mvnormal_known_covariance_conditional_is_closed_form(void)
{
    built b = new_model();
    double m0[2] = {1, -1}, S0[4] = {4, 1, 1, 2}, S[4] = {1, 0.3, 0.3, 0.5}, y[2][2] = {{0.5, 0.2}, {1.5, -0.4}};
    double S0i[4], Si[4], P[4], C[4], h[2], mean[2], out[6], u[2] = {0.3, 0.7}, lo = INFINITY, hi = -INFINITY, lp, stat, worst = 0;
    int p[6], mu[2], j, n = 0, site;
    plm_symdist d = {PLM_DIST_MVNORMAL, 2, 6, p};
    plm_target *t;
    plm_kernel *k;
    plm_rng r;
    void *ws, *st;
    for (j = 0; j < 2; j++) p[j] = k_(&b, m0[j]);
    for (j = 0; j < 4; j++) p[2 + j] = k_(&b, S0[j]);
    CHECK(plm_gmodel_latent(&ctx, b.m, "mu", &d, mu) == PLM_OK);
    for (j = 0; j < 2; j++) {
        char name[32];
        int x[2], i;
        p[0] = mu[0], p[1] = mu[1];
        for (i = 0; i < 4; i++) p[2 + i] = k_(&b, S[i]);
        x[0] = k_(&b, y[j][0]), x[1] = k_(&b, y[j][1]);
        snprintf(name, sizeof name, "y%d", j + 1);
        CHECK(plm_gmodel_observe(&ctx, b.m, name, &d, x) == PLM_OK);
    }
    p[0] = mu[1], p[1] = k_(&b, 0.7);
    observe(&b, "y3", PLM_DIST_NORMAL, 2, p, 0.1);
    CHECK(plm_gmodel_finish(&ctx, b.m) == PLM_OK);
    site = plm_gmodel_find(b.m, "mu");
    CHECK(plm_kernel_gibbs(&ctx, b.m, &site, 1, &k) == PLM_OK);
    if (!k) return;
    CHECK(plm_gibbs_conditional(&ctx, k, 0, u, out, 6, &n) == PLM_OK);
    CHECK(n == 6);
    inv2(S0, S0i), inv2(S, Si);
    for (j = 0; j < 4; j++) P[j] = S0i[j] + 2 * Si[j];
    P[3] += 1 / 0.49;
    for (j = 0; j < 2; j++)
        h[j] = S0i[2 * j] * m0[0] + S0i[2 * j + 1] * m0[1] + Si[2 * j] * (y[0][0] + y[1][0]) + Si[2 * j + 1] * (y[0][1] + y[1][1]);
    h[1] += 0.1 / 0.49;
    inv2(P, C);
    mean[0] = C[0] * h[0] + C[1] * h[1], mean[1] = C[2] * h[0] + C[3] * h[1];
    CHECK_NEAR(out[0], mean[0], 1e-12);
    CHECK_NEAR(out[1], mean[1], 1e-12);
    for (j = 0; j < 4; j++) CHECK_NEAR(out[2 + j], C[j], 1e-12);
    /* brute force: the target less the closed-form gaussian is constant in mu */
    plm_gmodel_target(&ctx, b.m, &t);
    ws = plm_target_ws_new(t);
    plm_rng_init(&r, 4, 0);
    for (j = 0; j < 50; j++) {
        double v[2], d0, d1, q;
        v[0] = 3 * plm_rng_normal(&r), v[1] = 3 * plm_rng_normal(&r);
        d0 = v[0] - mean[0], d1 = v[1] - mean[1];
        q = d0 * (P[0] * d0 + P[1] * d1) + d1 * (P[2] * d0 + P[3] * d1);
        q = plm_target_logp(t, ws, v) + 0.5 * q;
        lo = fmin(lo, q), hi = fmax(hi, q);
    }
    CHECK(hi - lo < 1e-9);
    /* the draws' mean and the carried log density */
    st = k->ops->chain_new(k, t);
    lp = plm_target_logp(t, ws, u);
    {
        double s0 = 0, s1 = 0;
        int N = 20000;
        for (j = 0; j < N; j++) {
            CHECK(k->ops->step(k, st, &ctx, t, ws, &r, u, &lp, &stat, NULL) == PLM_OK);
            worst = fmax(worst, fabs(lp - plm_target_logp(t, ws, u)) / fmax(1, fabs(lp)));
            s0 += u[0], s1 += u[1];
        }
        /* independent exact draws: 4 standard errors */
        CHECK(fabs(s0 / N - mean[0]) < 4 * sqrt(C[0] / N));
        CHECK(fabs(s1 / N - mean[1]) < 4 * sqrt(C[3] / N));
    }
    CHECK(worst < 1e-9);
    k->ops->chain_free(st);
    plm_target_ws_free(t, ws);
}

/* A kidiq-like regression with known sigma: beta[1..4] ~ normal(0, 100), y_i ~ normal(b1 + b2 hs_i + b3 iq_i +
** b4 hs_i iq_i, 10) with iq uncentred (around 100: the coefficients are strongly correlated). The gaussian
** block's conditional is the Bayesian linear regression posterior: precision I / 100^2 + X'X / 10^2, mean its
** inverse times X'y / 10^2, computed here by GSL from the design; the log density the kernel carries equals
** the model's. */
#define REG_N 40
static void test_gaussian_block_is_the_regression_posterior(void)
{
    built b = new_model();
    int p[2], beta[4], i, j, k, n = 0, sites[4];
    double X[REG_N * 4], y[REG_N], u[4] = {1, -2, 0.5, 0.1}, out[4 + 16], P[16], h[4], worst = 0, lp, stat;
    plm_rng r;
    plm_kernel *kb;
    plm_target *t;
    void *ws, *st;
    gsl_matrix_view pv = gsl_matrix_view_array(P, 4, 4);
    gsl_vector_view hv = gsl_vector_view_array(h, 4);
    plm_rng_init(&r, 11, 0);
    for (k = 0; k < 4; k++) {
        char name[32];
        snprintf(name, sizeof name, "beta[%d]", k + 1);
        p[0] = k_(&b, 0), p[1] = k_(&b, 100);
        beta[k] = latent(&b, name, PLM_DIST_NORMAL, 2, p, 0);
    }
    for (i = 0; i < REG_N; i++) {
        char name[32];
        double hs = plm_rng_uniform(&r) < 0.7, iq = 100 + 15 * plm_rng_normal(&r), m;
        X[4 * i] = 1, X[4 * i + 1] = hs, X[4 * i + 2] = iq, X[4 * i + 3] = hs * iq;
        y[i] = 20 + 10 * hs + 0.6 * iq - 0.1 * hs * iq + 10 * plm_rng_normal(&r);
        m = plm_graph_op(b.g, PLM_OP_ADD, beta[0], plm_graph_op(b.g, PLM_OP_MUL, beta[1], k_(&b, hs), -1), -1);
        m = plm_graph_op(b.g, PLM_OP_ADD, m, plm_graph_op(b.g, PLM_OP_MUL, k_(&b, iq), beta[2], -1), -1);
        p[0] = plm_graph_op(b.g, PLM_OP_ADD, m, plm_graph_op(b.g, PLM_OP_MUL, beta[3], k_(&b, hs * iq), -1), -1);
        p[1] = k_(&b, 10);
        snprintf(name, sizeof name, "y[%d]", i + 1);
        observe(&b, name, PLM_DIST_NORMAL, 2, p, y[i]);
    }
    CHECK(plm_gmodel_finish(&ctx, b.m) == PLM_OK);
    for (k = 0; k < 4; k++) sites[k] = plm_gmodel_find(b.m, k == 0 ? "beta[1]" : k == 1 ? "beta[2]" : k == 2 ? "beta[3]" : "beta[4]");
    CHECK(plm_kernel_gaussian_block(&ctx, b.m, sites, 4, &kb) == PLM_OK);
    if (!kb) return;
    CHECK(plm_gibbs_conditional(&ctx, kb, 0, u, out, 20, &n) == PLM_OK);
    CHECK(n == 20);
    /* the closed form */
    for (j = 0; j < 4; j++) {
        h[j] = 0;
        for (k = 0; k < 4; k++) P[j * 4 + k] = j == k ? 1e-4 : 0;
        for (i = 0; i < REG_N; i++) {
            h[j] += X[4 * i + j] * y[i] / 100;
            for (k = 0; k < 4; k++) P[j * 4 + k] += X[4 * i + j] * X[4 * i + k] / 100;
        }
    }
    CHECK(gsl_linalg_cholesky_decomp1(&pv.matrix) == 0);
    gsl_linalg_cholesky_svx(&pv.matrix, &hv.vector);
    gsl_linalg_cholesky_invert(&pv.matrix);
    for (j = 0; j < 4; j++) {
        worst = fmax(worst, fabs(out[j] - h[j]) / sqrt(P[j * 4 + j]));   /* in posterior sds */
        for (k = 0; k < 4; k++) worst = fmax(worst, fabs(out[4 + j * 4 + k] - P[j * 4 + k]) / sqrt(P[j * 4 + j] * P[k * 4 + k]));
    }
    printf("  gaussian block vs closed form: worst error %.2e (sds / correlations)\n", worst);
    CHECK(worst < 1e-9);
    /* strongly correlated: single-site Gibbs would crawl (|corr(beta[1], beta[3])| near 1) */
    CHECK(fabs(P[2]) / sqrt(P[0] * P[10]) > 0.9);
    /* the carried log density equals the model's */
    plm_gmodel_target(&ctx, b.m, &t);
    ws = plm_target_ws_new(t);
    st = kb->ops->chain_new(kb, t);
    lp = plm_target_logp(t, ws, u);
    for (worst = 0, j = 0; j < 200; j++) {
        CHECK(kb->ops->step(kb, st, &ctx, t, ws, &r, u, &lp, &stat, NULL) == PLM_OK);
        worst = fmax(worst, fabs(lp - plm_target_logp(t, ws, u)) / fmax(1, fabs(lp)));
    }
    CHECK(worst < 1e-9);
    kb->ops->chain_free(st);
    plm_target_ws_free(t, ws);
}

/* Negative control for the joint check: a, b ~ normal(0, 1), y ~ normal(a * b, 1). Each is normal-normal
** given the other, but the pair is not a Gaussian block (the mean is bilinear): refused with the reason, and
** plm_gibbs_gaussian_blocks leaves them single-site. With y ~ normal(a + 2 b, 1) instead it is a block. */
static void test_bilinear_pair_is_not_a_gaussian_block(void)
{
    int bil;
    for (bil = 1; bil >= 0; bil--) {
        built b = new_model();
        int p[2], a, c, sites[2], block[2] = {7, 7}, nb = -1;
        char why[400];
        plm_kernel *k = NULL;
        plm_gibbs_plan plan;
        p[0] = k_(&b, 0), p[1] = k_(&b, 1);
        a = latent(&b, "a", PLM_DIST_NORMAL, 2, p, 0);
        c = latent(&b, "b", PLM_DIST_NORMAL, 2, p, 0);
        p[0] = bil ? plm_graph_op(b.g, PLM_OP_MUL, a, c, -1)
                   : plm_graph_op(b.g, PLM_OP_ADD, a, plm_graph_op(b.g, PLM_OP_MUL, k_(&b, 2), c, -1), -1);
        p[1] = k_(&b, 1);
        observe(&b, "y", PLM_DIST_NORMAL, 2, p, 1.3);
        CHECK(plm_gmodel_finish(&ctx, b.m) == PLM_OK);
        sites[0] = plm_gmodel_find(b.m, "a"), sites[1] = plm_gmodel_find(b.m, "b");
        CHECK(plm_gibbs_plan_site(&ctx, b.m, sites[0], &plan) == PLM_OK && plan.how == PLM_GIBBS_NORMAL);
        CHECK(plm_gibbs_gaussian_blocks(&ctx, b.m, sites, 2, block, &nb, why, sizeof why) == PLM_OK);
        if (bil) {
            CHECK(nb == 0 && block[0] == -1 && block[1] == -1);
            CHECK(strstr(why, "not affine") != NULL);
            CHECK(plm_kernel_gaussian_block(&ctx, b.m, sites, 2, &k) == PLM_EINVAL);
            CHECK(strstr(ctx.msg, "mean of y is not affine") != NULL);
            printf("  bilinear: %s\n", ctx.msg);
        } else {
            CHECK(nb == 1 && block[0] == 0 && block[1] == 0 && why[0] == 0);
            CHECK(plm_kernel_gaussian_block(&ctx, b.m, sites, 2, &k) == PLM_OK);
        }
    }
}

int main(void)
{
    RUN(test_enumeration_equals_brute_force);
    RUN(test_normal_normal_conditional_is_closed_form);
    RUN(test_gamma_precision_poisson_exponential_conditional_is_closed_form);
    RUN(test_inverse_gamma_variance_conditional_is_closed_form);
    RUN(test_beta_bernoulli_binomial_conditional_is_closed_form);
    RUN(test_non_conjugate_sites_are_refused_with_the_reason);
    RUN(test_block_larger_than_the_cap_is_refused);
    RUN(test_one_site_posteriors_match_closed_forms);
    RUN(test_carried_log_density_equals_the_model);
    RUN(test_carried_log_density_equals_the_model_conjugate);
    RUN(test_dirichlet_categorical_conditional_is_closed_form);
    RUN(test_dirichlet_with_a_non_categorical_child_is_refused);
    RUN(test_mvnormal_known_covariance_conditional_is_closed_form);
    RUN(test_gaussian_block_is_the_regression_posterior);
    RUN(test_bilinear_pair_is_not_a_gaussian_block);
    return CHECK_DONE();
}
