/* test_ssm.c -- the native ssm interface an SMC engine calls: the fused bootstrap step equals transition
** sampling followed by observation scoring, proposal weights equal the proposal density at the draws, the
** init density is used at t = 1, results do not depend on the thread count, parameters change without a
** recompile; and plm_sde_nsaves counts the saved grid points. Models are traced from Lua. */
#include "check.h"
#include "l_expr.h"
#include "plume.h"
#include "plume_lua.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

enum { N = 700 };   /* three blocks, the last one partial */

static const char *model =
    "m = plume.ssm{\n"
    "  params = { mu = -1, rho = 0.9, sigma = 0.4 },\n"
    "  init  = function(p) return plume.dist.normal(p.mu, 1) end,\n"
    "  trans = function(p, x, t) return plume.dist.normal(p.mu + p.rho * (x - p.mu), p.sigma) end,\n"
    "  obs   = function(p, x, t) return plume.dist.normal(x, 0.5) end,\n"
    "  proposal = function(p, x, y, t) return plume.dist.normal(0.5 * (p.rho * x + y), 0.6) end,\n"
    "}\n";

static plm_State *P;
static plm_ssm *m;
static plm_ctx ctx;

static void streams(plm_rng *r, unsigned seed)
{
    size_t i;
    for (i = 0; i < N; i++) plm_rng_init(&r[i], seed, i);
}

static void test_step_equals_trans_sample_then_obs_logpdf(void)
{
    double *x = malloc(N * sizeof *x), *a = malloc(N * sizeof *a), *b = malloc(N * sizeof *b);
    double *wa = malloc(N * sizeof *wa), *wb = malloc(N * sizeof *wb), y = 0.3;
    plm_rng *r = malloc(N * sizeof *r);
    size_t i;
    for (i = 0; i < N; i++) x[i] = -1 + 0.01 * (double)i;
    streams(r, 5);
    CHECK(plm_ssm_step(&ctx, m, 3, N, x, &y, a, N, wa, r, 1) == PLM_OK);
    streams(r, 5);
    CHECK(plm_ssm_trans_sample(&ctx, m, 3, N, x, b, N, r, 1) == PLM_OK);
    CHECK(plm_ssm_obs_logpdf(&ctx, m, 3, N, b, N, &y, wb, 1) == PLM_OK);
    for (i = 0; i < N; i++) {
        CHECK(a[i] == b[i]);
        CHECK_REL(wa[i], wb[i], 1e-14);
        CHECK_REL(wb[i], plm_dist_logpdf1(PLM_DIST_NORMAL, (double[]){b[i], 0.5}, y), 1e-13);
    }
    /* two threads give the same draws */
    streams(r, 5);
    CHECK(plm_ssm_step(&ctx, m, 3, N, x, &y, b, N, wb, r, 2) == PLM_OK);
    for (i = 0; i < N; i++) CHECK(a[i] == b[i] && wa[i] == wb[i]);
    free(x), free(a), free(b), free(wa), free(wb), free(r);
}

static void test_transition_density_uses_init_at_t1_and_current_params(void)
{
    double xp[2] = {0.5, -2}, xn[2] = {0.1, -1.5}, out[2];
    CHECK(plm_ssm_trans_logpdf(&ctx, m, 2, 2, xp, xn, 2, out, 1) == PLM_OK);
    CHECK_REL(out[0], plm_dist_logpdf1(PLM_DIST_NORMAL, (double[]){-1 + 0.9 * 1.5, 0.4}, 0.1), 1e-13);
    CHECK(plm_ssm_trans_logpdf(&ctx, m, 1, 2, xp, xn, 2, out, 1) == PLM_OK);
    CHECK_REL(out[1], plm_dist_logpdf1(PLM_DIST_NORMAL, (double[]){-1, 1}, -1.5), 1e-13);
    m->params[1] = 0.5;   /* rho: no recompile */
    CHECK(plm_ssm_trans_logpdf(&ctx, m, 2, 2, xp, xn, 2, out, 1) == PLM_OK);
    CHECK_REL(out[0], plm_dist_logpdf1(PLM_DIST_NORMAL, (double[]){-1 + 0.5 * 1.5, 0.4}, 0.1), 1e-13);
    m->params[1] = 0.9;
}

static void test_proposal_weight_equals_its_density_at_the_draws(void)
{
    double *x = malloc(N * sizeof *x), *xn = malloc(N * sizeof *xn), *lq = malloc(N * sizeof *lq);
    double *lq2 = malloc(N * sizeof *lq2), y = 1.2, s = 0, s2 = 0, mean = 0.5 * (0.9 * 0.2 + 1.2);
    plm_rng *r = malloc(N * sizeof *r);
    size_t i;
    for (i = 0; i < N; i++) x[i] = 0.2;
    streams(r, 8);
    CHECK(plm_ssm_prop_sample(&ctx, m, 4, N, x, &y, xn, N, lq, r, 1) == PLM_OK);
    CHECK(plm_ssm_prop_logpdf(&ctx, m, 4, N, x, &y, xn, N, lq2, 1) == PLM_OK);
    for (i = 0; i < N; i++) {
        CHECK_REL(lq[i], lq2[i], 1e-13);
        CHECK_REL(lq[i], plm_dist_logpdf1(PLM_DIST_NORMAL, (double[]){mean, 0.6}, xn[i]), 1e-13);
        s += xn[i];
        s2 += (xn[i] - mean) * (xn[i] - mean);
    }
    CHECK_NEAR(s / N, mean, 5 * 0.6 / sqrt(N));          /* 5 standard errors */
    CHECK_NEAR(s2 / N, 0.36, 5 * 0.36 * sqrt(2.0 / N));
    free(x), free(xn), free(lq), free(lq2), free(r);
}

static void test_guided_step_weight_is_trans_plus_obs_minus_proposal(void)
{
    double *x = malloc(N * sizeof *x), *a = malloc(N * sizeof *a), *b = malloc(N * sizeof *b);
    double *w = malloc(N * sizeof *w), *lq = malloc(N * sizeof *lq), *lt = malloc(N * sizeof *lt);
    double *lo = malloc(N * sizeof *lo), y = 0.7;
    plm_rng *r = malloc(N * sizeof *r);
    size_t i;
    for (i = 0; i < N; i++) x[i] = -1.5 + 0.005 * (double)i;
    streams(r, 6);
    CHECK(plm_ssm_step_guided(&ctx, m, 5, N, x, &y, a, N, w, r, 2) == PLM_OK);
    streams(r, 6);
    CHECK(plm_ssm_prop_sample(&ctx, m, 5, N, x, &y, b, N, lq, r, 1) == PLM_OK);
    CHECK(plm_ssm_trans_logpdf(&ctx, m, 5, N, x, b, N, lt, 1) == PLM_OK);
    CHECK(plm_ssm_obs_logpdf(&ctx, m, 5, N, b, N, &y, lo, 1) == PLM_OK);
    for (i = 0; i < N; i++) {
        CHECK(a[i] == b[i]);
        CHECK_REL(w[i], lt[i] + lo[i] - lq[i], 1e-12);
    }
    CHECK(plm_ssm_step_guided(&ctx, m, 1, N, x, &y, a, N, w, r, 1) == PLM_EINVAL);
    free(x), free(a), free(b), free(w), free(lq), free(lt), free(lo), free(r);
}

static void test_sde_nsaves_counts_first_every_kth_and_last(void)
{
    CHECK(plm_sde_nsaves(11, 1) == 11);
    CHECK(plm_sde_nsaves(11, 5) == 3);    /* 0, 5, 10 */
    CHECK(plm_sde_nsaves(12, 5) == 4);    /* 0, 5, 10, 11 */
    CHECK(plm_sde_nsaves(1, 3) == 1);
}

/* Several threads asking for the gradient of a fresh model at once (the first call builds the derivative
** programs): every thread gets the single-threaded answer. A smoke test: without the lock a race shows only
** sometimes (a crash or a wrong gradient); under `make SAN=1` AddressSanitizer watches the memory too. */
static pthread_barrier_t grad_start;   /* all threads make their first call together */

typedef struct grad_job {
    const double *xs, *ys;
    double gp[3], gx[6];
    plm_status st;
} grad_job;

static void *grad_worker(void *arg)
{
    grad_job *j = arg;
    plm_ctx c;
    int entered = plm_thread_enter(), k;
    pthread_barrier_wait(&grad_start);
    for (k = 0; k < 50 && !j->st; k++) j->st = plm_ssm_logjoint_grad(&c, m, 6, j->xs, j->ys, j->gp, j->gx);
    plm_thread_leave(entered);
    return NULL;
}

static void test_logjoint_grad_is_thread_safe_on_first_use(void)
{
    static const double xs[6] = {-0.8, -1.1, -0.7, -1.3, -0.9, -1.0}, ys[6] = {-0.5, -1.2, -0.4, -1.6, -0.7, -1.1};
    grad_job jobs[4];
    pthread_t th[4];
    double gp[3], gx[6];
    int i, k;
    memset(jobs, 0, sizeof jobs);
    pthread_barrier_init(&grad_start, NULL, 4);
    for (i = 0; i < 4; i++) {
        jobs[i].xs = xs, jobs[i].ys = ys;
        pthread_create(&th[i], NULL, grad_worker, &jobs[i]);
    }
    for (i = 0; i < 4; i++) pthread_join(th[i], NULL);
    pthread_barrier_destroy(&grad_start);
    CHECK(plm_ssm_logjoint_grad(&ctx, m, 6, xs, ys, gp, gx) == PLM_OK);
    for (i = 0; i < 4; i++) {
        CHECK(jobs[i].st == PLM_OK);
        for (k = 0; k < 3; k++) CHECK(jobs[i].gp[k] == gp[k]);
        for (k = 0; k < 6; k++) CHECK(jobs[i].gx[k] == gx[k]);
    }
}

int main(void)
{
    lua_State *L;
    P = plm_open();
    if (!P || plm_dostring(P, model)) {
        printf("FAIL setup: %s\n", P ? plm_errmsg(P) : "no state");
        return 1;
    }
    L = plm_lua(P);
    lua_getglobal(L, "m");
    m = plm_l_tossm(L, -1);
    RUN(test_logjoint_grad_is_thread_safe_on_first_use);
    RUN(test_step_equals_trans_sample_then_obs_logpdf);
    RUN(test_transition_density_uses_init_at_t1_and_current_params);
    RUN(test_proposal_weight_equals_its_density_at_the_draws);
    RUN(test_guided_step_weight_is_trans_plus_obs_minus_proposal);
    RUN(test_sde_nsaves_counts_first_every_kth_and_last);
    plm_close(P);
    return CHECK_DONE();
}
