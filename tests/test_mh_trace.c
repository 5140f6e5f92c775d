/* test_mh_trace.c -- the trace MH kernel (runtime/mh_trace.h) on model programs written in C: no Lua. Moment
** checks use 4.5 MCSE (from the chains' own bulk ESS, runtime/diag) with fixed seeds; a program that drops a
** normaliser is the negative control that the same check must reject. */
#include "check.h"
#include "plume.h"

#include <stdlib.h>

/* The program's side of a latent choice: the kernel picks the value, the program records it. */
static plm_status sample(plm_ctx *ctx, plm_mh_run *r, const char *addr, plm_dist *d, double *x, int forget_density)
{
    double lp;
    plm_status st = plm_mh_choose(ctx, r, addr, d, x, &lp);
    if (st) return st;
    return plm_trace_add(ctx, r->tr, addr, PLM_SITE_LATENT, d, x, d->dim, forget_density ? 0 : lp, NULL);
}

static plm_dist *dist2(plm_ctx *ctx, plm_dist_kind kind, double p0, double p1)
{
    double p[2] = {p0, p1};
    plm_dist *d = NULL;
    plm_dist_new(ctx, kind, p, &d);
    return d;
}

/* a ~ normal(0, 1); b ~ uniform(0, exp(a)): b's support moves with a. E[a] = 0, E[b] = exp(1/2) / 2.
** With ud != NULL, b is recorded with log density 0: the chain then targets a ~ normal(1, 1) (wrong). */
static plm_status prog_support(void *ud, plm_ctx *ctx, plm_mh_run *r)
{
    double a, b;
    plm_status st;
    if ((st = sample(ctx, r, "a", dist2(ctx, PLM_DIST_NORMAL, 0, 1), &a, 0))) return st;
    return sample(ctx, r, "b", dist2(ctx, PLM_DIST_UNIFORM, 0, exp(a)), &b, ud != NULL);
}

/* mu ~ normal(0, 1); y = 1 ~ normal(mu, 1): posterior normal(1/2, sqrt(1/2)) */
static plm_status prog_conjugate(void *ud, plm_ctx *ctx, plm_mh_run *r)
{
    double mu, y = 1;
    plm_dist *d;
    plm_status st;
    (void)ud;
    if ((st = sample(ctx, r, "mu", dist2(ctx, PLM_DIST_NORMAL, 0, 1), &mu, 0))) return st;
    d = dist2(ctx, PLM_DIST_NORMAL, mu, 1);
    return plm_trace_add(ctx, r->tr, "y", PLM_SITE_OBSERVED, d, &y, 1, plm_dist_logpdf(d, &y), NULL);
}

/* a ~ normal(0, 1), rejected (an invalid parameter) when a < -1: a normal truncated to (-1, inf),
** mean phi(1) / Phi(1) */
static plm_status prog_reject(void *ud, plm_ctx *ctx, plm_mh_run *r)
{
    double a;
    plm_status st;
    (void)ud;
    if ((st = sample(ctx, r, "a", dist2(ctx, PLM_DIST_NORMAL, 0, 1), &a, 0))) return st;
    if (a < -1) return plm_fail(ctx, PLM_EINVAL, "scale must be > 0 (got %g)", a + 1);
    return PLM_OK;
}

/* every run has density zero */
static plm_status prog_dead(void *ud, plm_ctx *ctx, plm_mh_run *r)
{
    double a;
    (void)ud;
    plm_status st = sample(ctx, r, "a", dist2(ctx, PLM_DIST_NORMAL, 0, 1), &a, 0);
    if (!st) r->tr->loglik = -INFINITY;
    return st;
}

/* Run chains 0..nchains-1 of p into new results; NULL on failure (status in *st). */
static plm_results *run_chains(plm_mh_program *p, long warmup, long samples, int nchains, uint64_t seed,
                               plm_status *st, plm_ctx *ctx)
{
    plm_mh_opts o = {warmup, samples, 1, seed, 0, NULL, 0, NULL, NULL};
    plm_results *R;
    double acc;
    int c;
    plm_ctx_clear(ctx);
    if ((*st = plm_results_new(ctx, nchains, 0, &R))) return NULL;
    for (c = 0; c < nchains; c++)
        if ((*st = plm_mh_trace_chain(ctx, p, &o, c, R, c, &acc))) {
            plm_results_free(R);
            return NULL;
        }
    return R;
}

/* |mean(col) - exact| < 4.5 MCSE */
static int mean_within_mcse(plm_results *R, const char *col, double exact)
{
    plm_ctx ctx;
    plm_summary s;
    plm_draws *D = plm_results_draws(R);
    plm_ctx_clear(&ctx);
    if (plm_draws_summary(&ctx, D, plm_draws_col(D, col, 0), &s)) return 0;
    if (!(fabs(s.mean - exact) < 4.5 * s.mcse_mean))
        printf("  mean(%s) = %.4f, exact %.4f, mcse %.4f (%.1f mcse off)\n", col, s.mean, exact, s.mcse_mean,
               fabs(s.mean - exact) / s.mcse_mean);
    return fabs(s.mean - exact) < 4.5 * s.mcse_mean;
}

static void test_support_dependent_site_has_the_exact_prior_means(void)
{
    plm_mh_program p = {prog_support, NULL, NULL, NULL};
    plm_ctx ctx;
    plm_status st;
    uint64_t seed;
    for (seed = 1; seed <= 3; seed++) {
        plm_results *R = run_chains(&p, 1000, 20000, 2, seed, &st, &ctx);
        CHECK(st == PLM_OK && R);
        if (!R) return;
        CHECK(plm_draws_len(plm_results_draws(R), 1) == 20000);
        CHECK(mean_within_mcse(R, "a", 0));
        CHECK(mean_within_mcse(R, "b", exp(0.5) / 2));
        plm_results_free(R);
    }
}

static void test_negative_control_a_dropped_normaliser_fails_the_moment_check(void)
{
    int marker;
    plm_mh_program p = {prog_support, NULL, NULL, &marker};
    plm_ctx ctx;
    plm_status st;
    plm_results *R = run_chains(&p, 1000, 20000, 2, 1, &st, &ctx);
    CHECK(st == PLM_OK && R);
    if (!R) return;
    printf("  (negative control, expected to be off:)\n");
    CHECK(!mean_within_mcse(R, "a", 0));
    CHECK(mean_within_mcse(R, "a", 1));   /* what it samples instead: a ~ normal(1, 1) */
    plm_results_free(R);
}

static void test_conjugate_posterior_mean_within_mcse(void)
{
    plm_mh_program p = {prog_conjugate, NULL, NULL, NULL};
    plm_ctx ctx;
    plm_status st;
    plm_results *R = run_chains(&p, 1000, 20000, 2, 5, &st, &ctx);
    CHECK(st == PLM_OK && R);
    if (!R) return;
    CHECK(mean_within_mcse(R, "mu", 0.5));
    CHECK(plm_draws_ncols(plm_results_draws(R)) == 1);   /* observations are not draws */
    plm_results_free(R);
}

static void test_rejected_runs_have_density_zero(void)
{
    plm_mh_program p = {prog_reject, NULL, NULL, NULL};
    plm_ctx ctx;
    plm_status st;
    double phi1 = exp(-0.5) / sqrt(2 * M_PI), Phi1 = 0.5 * erfc(-1 / sqrt(2.0));
    plm_results *R = run_chains(&p, 1000, 20000, 2, 6, &st, &ctx);
    CHECK(st == PLM_OK && R);
    if (!R) return;
    CHECK(mean_within_mcse(R, "a", phi1 / Phi1));
    plm_results_free(R);
}

static void test_no_starting_point_is_edead_naming_the_chain(void)
{
    plm_mh_program p = {prog_dead, NULL, NULL, NULL};
    plm_ctx ctx;
    plm_status st;
    plm_results *R = run_chains(&p, 10, 10, 1, 1, &st, &ctx);
    CHECK(!R && st == PLM_EDEAD);
    CHECK(strstr(ctx.msg, "chain 1 found no starting point") != NULL);
    CHECK(strstr(ctx.msg, "site 'a' has log density -inf") == NULL);   /* the factor, not a site, is -inf */
}

static void test_interrupt_returns_eintr(void)
{
    plm_mh_program p = {prog_conjugate, NULL, NULL, NULL};
    plm_ctx ctx;
    plm_status st;
    plm_results *R;
    plm_interrupt();
    R = run_chains(&p, 10, 10, 1, 1, &st, &ctx);
    CHECK(!R && st == PLM_EINTR);
    CHECK(plm_interrupted());   /* left raised for the caller */
    plm_interrupt_clear();
}

/* Chain c draws from stream c of the seed: run alone, chain 1 gives the same draws as in a two-chain run. */
static void test_chain_draws_depend_only_on_seed_and_chain_index(void)
{
    plm_mh_program p = {prog_support, NULL, NULL, NULL};
    plm_mh_opts o = {50, 300, 1, 9, 0, NULL, 0, NULL, NULL};
    plm_ctx ctx;
    plm_status st;
    plm_results *both = run_chains(&p, 50, 300, 2, 9, &st, &ctx), *alone;
    double acc;
    CHECK(both != NULL);
    if (!both) return;
    plm_ctx_clear(&ctx);
    CHECK(plm_results_new(&ctx, 1, 0, &alone) == PLM_OK);
    CHECK(plm_mh_trace_chain(&ctx, &p, &o, 1, alone, 0, &acc) == PLM_OK);
    CHECK(acc > 0.05 && acc < 1);
    CHECK(memcmp(plm_draws_chain(plm_results_draws(both), 0, 1), plm_draws_chain(plm_results_draws(alone), 0, 0),
                 300 * sizeof(double)) == 0);
    plm_results_free(both);
    plm_results_free(alone);
}

static void test_results_series_and_scalars(void)
{
    plm_ctx ctx;
    plm_results *R;
    const double *v;
    const char *name;
    double x;
    long long iv;
    int isint;
    size_t n;
    plm_ctx_clear(&ctx);
    CHECK(plm_results_new(&ctx, 1, 1, &R) == PLM_OK);
    CHECK(plm_results_push(&ctx, R, "ess_history", 10) == PLM_OK && plm_results_push(&ctx, R, "ess_history", 7) == PLM_OK);
    CHECK(plm_results_set(&ctx, R, "logz", -1.5) == PLM_OK && plm_results_set_int(&ctx, R, "steps", 2) == PLM_OK);
    CHECK(plm_results_set(&ctx, R, "logz", -2.5) == PLM_OK);   /* replaces */
    v = plm_results_series(R, "ess_history", &n);
    CHECK(n == 2 && v[0] == 10 && v[1] == 7);
    CHECK(plm_results_series(R, "nothing", &n) == NULL && n == 0);
    CHECK(plm_results_scalar_at(R, 0, &name, &x, &iv, &isint) && strcmp(name, "logz") == 0 && x == -2.5 && !isint);
    CHECK(plm_results_scalar_at(R, 1, &name, &x, &iv, &isint) && iv == 2 && isint);
    CHECK(!plm_results_scalar_at(R, 2, &name, &x, &iv, &isint));
    CHECK(plm_draws_weighted(plm_results_draws(R)));
    plm_results_free(R);
}

/* ---- the kernel example of doc/manual.md ("Architecture"), verbatim ---- */

typedef struct { double *x; } indep_state;
static void *indep_new(const plm_kernel *k, const plm_target *t)
{
    indep_state *s = malloc(sizeof *s);
    (void)k;
    if (s && !(s->x = malloc((size_t)t->dim * sizeof *s->x))) free(s), s = NULL;
    return s;
}
static void indep_free(void *st) { free(((indep_state *)st)->x); free(st); }
static double logq(const double *u, int n) { double l = 0; while (n--) l -= u[n] * u[n] / 8; return l; }
static plm_status indep_step(const plm_kernel *k, void *st, plm_ctx *ctx, const plm_target *t, void *ws,
                             plm_rng *r, double *u, double *lp, double *stat, double *extra)
{
    double *x = ((indep_state *)st)->x, lx;
    (void)k, (void)extra;   /* no settings, no extra diagnostics */
    for (int i = 0; i < t->dim; i++) x[i] = 2 * plm_rng_normal(r);
    if (isnan(lx = plm_target_logp(t, ws, x))) return plm_fail(ctx, PLM_EDOM, "log density is NaN");
    *stat = fmin(1, exp(lx - *lp + logq(u, t->dim) - logq(x, t->dim)));
    if (plm_rng_uniform(r) < *stat) memcpy(u, x, (size_t)t->dim * sizeof *u), *lp = lx;
    return PLM_OK;
}
static const plm_kernel_ops indep_ops = {"independence", 0, NULL, indep_new, indep_free, indep_step, NULL};

/* a target written by hand: a standard normal in two dimensions */
static double std_normal_logp(const plm_target *t, void *ws, const double *u)
{
    (void)t, (void)ws;
    return -(u[0] * u[0] + u[1] * u[1]) / 2;
}
static const plm_target_ops std_normal_ops = {"std_normal", NULL, NULL, std_normal_logp, NULL};

static void test_manual_kernel_example_samples_a_standard_normal(void)
{
    plm_target t = {&std_normal_ops, NULL, 2, NULL};
    plm_kernel indep = {&indep_ops, NULL};
    plm_mcmc_opts o = {2, 500, 10000, 1, 3, 1, NULL};
    plm_draws *D = NULL;
    plm_summary s;
    plm_ctx ctx;
    double accept;
    plm_ctx_clear(&ctx);
    CHECK(plm_mcmc_run(&ctx, &t, &indep, &o, &D, &accept) == PLM_OK && D);
    if (!D) return;
    CHECK(accept > 0.3 && accept < 1);
    CHECK(plm_draws_summary(&ctx, D, plm_draws_col(D, "x[1]", 0), &s) == PLM_OK);
    CHECK_NEAR(s.mean, 0, 4.5 * s.mcse_mean);
    CHECK_NEAR(s.sd, 1, 0.05);
}

int main(void)
{
    plm_init();
    RUN(test_support_dependent_site_has_the_exact_prior_means);
    RUN(test_negative_control_a_dropped_normaliser_fails_the_moment_check);
    RUN(test_conjugate_posterior_mean_within_mcse);
    RUN(test_rejected_runs_have_density_zero);
    RUN(test_no_starting_point_is_edead_naming_the_chain);
    RUN(test_interrupt_returns_eintr);
    RUN(test_chain_draws_depend_only_on_seed_and_chain_index);
    RUN(test_results_series_and_scalars);
    RUN(test_manual_kernel_example_samples_a_standard_normal);
    return CHECK_DONE();
}
