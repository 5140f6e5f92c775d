/* test_cthmm.c -- the continuous-time HMM against an independent forward pass and brute-force enumeration
** over the discrete HMM built from its transition matrices exp(Q dt). */
#include "check.h"
#include "plume.h"

#include <stdlib.h>

static const double Qr[] = {-1.0, 0.6, 0.4, 0.3, -0.5, 0.2, 1.5, 0.5, -2.0};
static const double init3[] = {0.5, 0.3, 0.2};
static const double E3[] = {0.7, 0.2, 0.1, 0.1, 0.6, 0.3, 0.2, 0.2, 0.6};   /* 3 states x 3 symbols */
/* irregular times: a repeated time (gap 0), repeated gaps (0.5), a long gap */
static const double times6[] = {0.0, 0.5, 1.0, 1.0, 3.7, 4.2};
static const double obs6[] = {0, 2, 1, 1, 0, 2};

/* Per-step matrices from plm_ctmc_transition (tested on its own in test_ctmc). */
static void step_matrices(const plm_ctmc *c, size_t T, const double *times, double *P)
{
    plm_ctx ctx;
    size_t t;
    for (t = 0; t + 1 < T; t++) plm_ctmc_transition(&ctx, c, times[t + 1] - times[t], P + t * 9);
}

/* Plain forward algorithm in probability space (fine for T = 6). */
static double forward_loglik(const double *B, size_t T, const double *P)
{
    double a[3], an[3], ll = 0;
    size_t t;
    int i, j;
    for (t = 0; t < T; t++) {
        double z = 0;
        for (j = 0; j < 3; j++) {
            double v = 0;
            if (t == 0)
                v = init3[j];
            else
                for (i = 0; i < 3; i++) v += a[i] * P[(t - 1) * 9 + i * 3 + j];
            an[j] = v * B[t * 3 + j];
            z += an[j];
        }
        for (j = 0; j < 3; j++) a[j] = an[j] / z;
        ll += log(z);
    }
    return ll;
}

static void categorical_B(const double *obs, size_t T, double *B)
{
    size_t t;
    int k;
    for (t = 0; t < T; t++)
        for (k = 0; k < 3; k++) B[t * 3 + k] = isnan(obs[t]) ? 1 : E3[k * 3 + (int)obs[t]];
}

static void test_loglik_equals_forward_on_transition_matrices(void)
{
    plm_ctx ctx;
    plm_ctmc *c;
    plm_cthmm *h;
    double P[5 * 9], B[18], ll, obs[6];
    CHECK(plm_ctmc_new(&ctx, Qr, 3, &c) == PLM_OK);
    CHECK(plm_cthmm_new_categorical(&ctx, c, init3, 3, E3, &h) == PLM_OK);
    step_matrices(c, 6, times6, P);
    categorical_B(obs6, 6, B);
    CHECK(plm_cthmm_loglik(&ctx, h, 6, times6, obs6, &ll) == PLM_OK);
    CHECK_NEAR(ll, forward_loglik(B, 6, P), 1e-12);
    memcpy(obs, obs6, sizeof obs);
    obs[2] = NAN;   /* a missing observation is marginalised out */
    categorical_B(obs, 6, B);
    CHECK(plm_cthmm_loglik(&ctx, h, 6, times6, obs, &ll) == PLM_OK);
    CHECK_NEAR(ll, forward_loglik(B, 6, P), 1e-12);
    CHECK(plm_cthmm_loglik(&ctx, h, 1, times6, obs6, &ll) == PLM_OK);   /* one observation: no transition */
    CHECK_NEAR(ll, log(0.5 * 0.7 + 0.3 * 0.1 + 0.2 * 0.2), 1e-14);
}

/* Normal emissions through plume.dist objects. */
static void test_dist_emissions_equal_forward(void)
{
    plm_ctx ctx;
    plm_ctmc *c;
    plm_cthmm *h;
    plm_dist *d[3];
    const double par[3][2] = {{0, 1}, {2, 0.5}, {-1, 2}};
    const double y[6] = {0.1, 2.2, 1.7, -0.5, -2.0, 0.3};
    double P[5 * 9], B[18], ll;
    int k, t;
    CHECK(plm_ctmc_new(&ctx, Qr, 3, &c) == PLM_OK);
    for (k = 0; k < 3; k++) CHECK(plm_dist_new(&ctx, PLM_DIST_NORMAL, par[k], &d[k]) == PLM_OK);
    CHECK(plm_cthmm_new_dists(&ctx, c, init3, d, &h) == PLM_OK);
    for (t = 0; t < 6; t++)
        for (k = 0; k < 3; k++) {
            double z = (y[t] - par[k][0]) / par[k][1];
            B[t * 3 + k] = exp(-0.5 * z * z) / (par[k][1] * sqrt(2 * M_PI));
        }
    step_matrices(c, 6, times6, P);
    CHECK(plm_cthmm_loglik(&ctx, h, 6, times6, y, &ll) == PLM_OK);
    CHECK_NEAR(ll, forward_loglik(B, 6, P), 1e-12);
}

/* Posterior marginals and the Viterbi path equal enumeration over all 3^6 state sequences. */
static void test_posterior_and_viterbi_equal_enumeration(void)
{
    plm_ctx ctx;
    plm_ctmc *c;
    plm_cthmm *h;
    double P[5 * 9], B[18], post[18], marg[18] = {0}, Z = 0, best = -INFINITY, logp, ll;
    int path[6], best_path[6], s[6], code, t;
    CHECK(plm_ctmc_new(&ctx, Qr, 3, &c) == PLM_OK);
    CHECK(plm_cthmm_new_categorical(&ctx, c, init3, 3, E3, &h) == PLM_OK);
    step_matrices(c, 6, times6, P);
    categorical_B(obs6, 6, B);
    for (code = 0; code < 729; code++) {
        double p;
        int x = code;
        for (t = 0; t < 6; t++) s[t] = x % 3, x /= 3;
        p = init3[s[0]] * B[s[0]];
        for (t = 1; t < 6; t++) p *= P[(t - 1) * 9 + s[t - 1] * 3 + s[t]] * B[t * 3 + s[t]];
        Z += p;
        for (t = 0; t < 6; t++) marg[t * 3 + s[t]] += p;
        if (log(p) > best) best = log(p), memcpy(best_path, s, sizeof s);
    }
    CHECK(plm_cthmm_posterior(&ctx, h, 6, times6, obs6, post, &ll) == PLM_OK);
    CHECK_NEAR(ll, log(Z), 1e-12);
    for (t = 0; t < 18; t++) CHECK_NEAR(post[t], marg[t] / Z, 1e-12);
    CHECK(plm_cthmm_viterbi(&ctx, h, 6, times6, obs6, path, &logp) == PLM_OK);
    CHECK_NEAR(logp, best, 1e-12);
    for (t = 0; t < 6; t++) CHECK(path[t] == best_path[t]);
}

/* 20,000 draws at times {0, 0.8}: the state frequencies at 0.8 match init * P(0.8) and the symbol
** frequencies at 0.8 match init * P(0.8) * E, each within 4 binomial standard errors (<= 0.0142). */
static void test_sample_matches_marginals(void)
{
    enum { N = 20000 };
    const double times[] = {0, 0.8};
    plm_ctx ctx;
    plm_ctmc *c;
    plm_cthmm *h;
    plm_rng r;
    double P[9], ps[3] = {0}, py[3] = {0}, fs[3] = {0}, fy[3] = {0}, obs[2];
    int states[2], i, j, n;
    CHECK(plm_ctmc_new(&ctx, Qr, 3, &c) == PLM_OK);
    CHECK(plm_cthmm_new_categorical(&ctx, c, init3, 3, E3, &h) == PLM_OK);
    plm_ctmc_transition(&ctx, c, 0.8, P);
    for (i = 0; i < 3; i++)
        for (j = 0; j < 3; j++) ps[j] += init3[i] * P[i * 3 + j];
    for (i = 0; i < 3; i++)
        for (j = 0; j < 3; j++) py[j] += ps[i] * E3[i * 3 + j];
    plm_rng_init(&r, 99, 0);
    for (n = 0; n < N; n++) {
        CHECK(plm_cthmm_sample(&ctx, h, 2, times, &r, states, obs) == PLM_OK);
        fs[states[1]] += 1.0 / N;
        fy[(int)obs[1]] += 1.0 / N;
    }
    for (j = 0; j < 3; j++) {
        CHECK_NEAR(fs[j], ps[j], 4 * sqrt(ps[j] * (1 - ps[j]) / N));
        CHECK_NEAR(fy[j], py[j], 4 * sqrt(py[j] * (1 - py[j]) / N));
    }
}

static void expect(plm_status got, plm_ctx *ctx, const char *want)
{
    CHECK(got == PLM_EINVAL);
    CHECK(strstr(ctx->msg, want) != NULL);
    if (!strstr(ctx->msg, want)) printf("  message \"%s\" lacks \"%s\"\n", ctx->msg, want);
}

static void test_bad_input_names_the_argument(void)
{
    plm_ctx ctx;
    plm_ctmc *c;
    plm_cthmm *h;
    plm_dist *d[3];
    double E[9], init[3] = {0.5, 0.6, -0.1}, ll, obs[3] = {0, 3, 1}, times[3] = {0, 1, 0.5};
    const double p1[] = {0.5, 0.5}, p2[] = {0.2, 0.3, 0.5}, np[] = {0, 1};
    CHECK(plm_ctmc_new(&ctx, Qr, 3, &c) == PLM_OK);
    expect(plm_cthmm_new_categorical(&ctx, c, init, 3, E3, &h), &ctx, "init[3] must be a probability >= 0");
    init[2] = 0.1;
    expect(plm_cthmm_new_categorical(&ctx, c, init, 3, E3, &h), &ctx, "init must sum to 1");
    memcpy(E, E3, sizeof E);
    E[4] = 0.5;
    expect(plm_cthmm_new_categorical(&ctx, c, init3, 3, E, &h), &ctx, "emit row 2 must sum to 1");
    CHECK(plm_dist_new(&ctx, PLM_DIST_NORMAL, np, &d[0]) == PLM_OK);
    CHECK(plm_dist_new_categorical(&ctx, p1, 2, &d[1]) == PLM_OK);
    CHECK(plm_dist_new_dirichlet(&ctx, p2, 3, &d[2]) == PLM_OK);
    expect(plm_cthmm_new_dists(&ctx, c, init3, d, &h), &ctx, "emit[3] has dimension 3, but emit[1] has 1");
    CHECK(plm_cthmm_new_categorical(&ctx, c, init3, 3, E3, &h) == PLM_OK);
    expect(plm_cthmm_loglik(&ctx, h, 3, times, obs, &ll), &ctx, "times must not decrease (times[3] = 0.5");
    times[2] = 2;
    expect(plm_cthmm_loglik(&ctx, h, 3, times, obs, &ll), &ctx, "obs[2] is 4, but the symbols are 1..3");
    expect(plm_cthmm_loglik(&ctx, h, 0, times, obs, &ll), &ctx, "empty");
}

/* An impossible observation sequence: loglik is -inf, posterior an error (not NaN). */
static void test_impossible_observations(void)
{
    const double E[] = {1, 0, 0, 1}, Q[] = {0, 0, 0, 0}, init[] = {1, 0};
    const double times[] = {0, 1}, obs[] = {0, 1};
    plm_ctx ctx;
    plm_ctmc *c;
    plm_cthmm *h;
    double ll, post[4];
    CHECK(plm_ctmc_new(&ctx, Q, 2, &c) == PLM_OK);
    CHECK(plm_cthmm_new_categorical(&ctx, c, init, 2, E, &h) == PLM_OK);
    CHECK(plm_cthmm_loglik(&ctx, h, 2, times, obs, &ll) == PLM_OK);
    CHECK(ll == -INFINITY);
    CHECK(plm_cthmm_posterior(&ctx, h, 2, times, obs, post, &ll) != PLM_OK);
}

int main(void)
{
    plm_init();
    RUN(test_loglik_equals_forward_on_transition_matrices);
    RUN(test_dist_emissions_equal_forward);
    RUN(test_posterior_and_viterbi_equal_enumeration);
    RUN(test_sample_matches_marginals);
    RUN(test_bad_input_names_the_argument);
    RUN(test_impossible_observations);
    return CHECK_DONE();
}
