/* test_ctmc.c -- continuous-time Markov chains: exp(Q t) against eigen-decomposition and closed forms,
** Gillespie paths against P(t) within Monte Carlo error, path and observation likelihoods by hand. */
#include "check.h"
#include "plume.h"

#include <gsl/gsl_eigen.h>

/* A reversible 4-state chain with symmetric rates: Q = V L V' exactly, so exp(Q t) = V e^{L t} V'. */
static const double Qsym[] = {-1.1, 0.5, 0.4, 0.2,
                               0.5, -0.8, 0.0, 0.3,
                               0.4, 0.0, -2.4, 2.0,
                               0.2, 0.3, 2.0, -2.5};

static void eigen_expm(const double *Q, int K, double t, double *P)
{
    double a[64];
    gsl_matrix_view av = gsl_matrix_view_array(a, K, K);
    gsl_matrix *V = gsl_matrix_alloc(K, K);
    gsl_vector *ev = gsl_vector_alloc(K);
    gsl_eigen_symmv_workspace *w = gsl_eigen_symmv_alloc(K);
    int i, j, k;
    memcpy(a, Q, K * K * sizeof *a);
    gsl_eigen_symmv(&av.matrix, ev, V, w);
    for (i = 0; i < K; i++)
        for (j = 0; j < K; j++) {
            double v = 0;
            for (k = 0; k < K; k++)
                v += gsl_matrix_get(V, i, k) * exp(gsl_vector_get(ev, k) * t) * gsl_matrix_get(V, j, k);
            P[i * K + j] = v;
        }
    gsl_eigen_symmv_free(w);
    gsl_vector_free(ev);
    gsl_matrix_free(V);
}

/* t spans no scaling (lambda t <= 4) to 2^14 squarings; 1e-10 absolute per entry. */
static void test_transition_matches_eigendecomposition_of_symmetric_chain(void)
{
    static const double ts[] = {0, 1e-6, 0.05, 0.7, 1.6, 3.0, 12.5, 100, 1e4};
    plm_ctx ctx;
    plm_ctmc *c;
    double P[16], E[16];
    size_t k;
    int i;
    CHECK(plm_ctmc_new(&ctx, Qsym, 4, &c) == PLM_OK);
    for (k = 0; k < sizeof ts / sizeof *ts; k++) {
        CHECK(plm_ctmc_transition(&ctx, c, ts[k], P) == PLM_OK);
        eigen_expm(Qsym, 4, ts[k], E);
        for (i = 0; i < 16; i++) CHECK_NEAR(P[i], E[i], 1e-10);
    }
}

/* Non-symmetric chains: the two-state closed form, and the semigroup law P(s + t) = P(s) P(t) on K = 3. */
static void test_transition_matches_two_state_closed_form(void)
{
    const double a = 0.7, b = 0.2, Q[] = {-a, a, b, -b};
    plm_ctx ctx;
    plm_ctmc *c;
    double P[4], t;
    CHECK(plm_ctmc_new(&ctx, Q, 2, &c) == PLM_OK);
    for (t = 0.1; t < 40; t *= 2.3) {
        double e = exp(-(a + b) * t);
        CHECK(plm_ctmc_transition(&ctx, c, t, P) == PLM_OK);
        CHECK_NEAR(P[0], (b + a * e) / (a + b), 1e-13);
        CHECK_NEAR(P[1], (a - a * e) / (a + b), 1e-13);
        CHECK_NEAR(P[2], (b - b * e) / (a + b), 1e-13);
        CHECK_NEAR(P[3], (a + b * e) / (a + b), 1e-13);
    }
}

static const double Q3[] = {-3.0, 2.0, 1.0, 0.5, -0.5, 0.0, 0.0, 4.0, -4.0};

static void test_transition_semigroup_and_stochastic_rows(void)
{
    plm_ctx ctx;
    plm_ctmc *c;
    double Ps[9], Pt[9], Pst[9];
    int i, j, k;
    CHECK(plm_ctmc_new(&ctx, Q3, 3, &c) == PLM_OK);
    CHECK(plm_ctmc_transition(&ctx, c, 0.37, Ps) == PLM_OK);
    CHECK(plm_ctmc_transition(&ctx, c, 2.9, Pt) == PLM_OK);
    CHECK(plm_ctmc_transition(&ctx, c, 0.37 + 2.9, Pst) == PLM_OK);
    for (i = 0; i < 3; i++) {
        double row = 0;
        for (j = 0; j < 3; j++) {
            double v = 0;
            for (k = 0; k < 3; k++) v += Ps[i * 3 + k] * Pt[k * 3 + j];
            CHECK_NEAR(Pst[i * 3 + j], v, 1e-13);
            CHECK(Pst[i * 3 + j] >= 0);
            row += Pst[i * 3 + j];
        }
        CHECK_NEAR(row, 1, 1e-14);
    }
}

/* The state at time t of 1000 Gillespie paths from state 1: each state's frequency is within 4 binomial
** standard errors sqrt(p (1 - p) / 1000) of P(t)[1][j] (at most 0.064). Negative control: the same
** frequencies are judged against P(t/4), which must fail that tolerance in some state. */
static void test_gillespie_paths_match_transition_within_monte_carlo_error(void)
{
    enum { N = 1000 };
    const double t = 0.6;
    plm_ctx ctx;
    plm_ctmc *c;
    plm_rng r;
    double P[9], Pwrong[9], freq[3] = {0, 0, 0};
    int k, j, wrong = 0;
    CHECK(plm_ctmc_new(&ctx, Q3, 3, &c) == PLM_OK);
    plm_rng_init(&r, 2024, 0);
    for (k = 0; k < N; k++) {
        plm_ctmc_path path;
        CHECK(plm_ctmc_sample_path(&ctx, c, 0, 0, t, &r, &path) == PLM_OK);
        CHECK(path.times[0] == 0 && path.states[0] == 0 && path.t_end == t);
        freq[path.states[path.n - 1]] += 1.0 / N;
    }
    CHECK(plm_ctmc_transition(&ctx, c, t, P) == PLM_OK);
    CHECK(plm_ctmc_transition(&ctx, c, t / 4, Pwrong) == PLM_OK);
    for (j = 0; j < 3; j++) {
        CHECK_NEAR(freq[j], P[j], 4 * sqrt(P[j] * (1 - P[j]) / N));
        wrong += fabs(freq[j] - Pwrong[j]) > 4 * sqrt(Pwrong[j] * (1 - Pwrong[j]) / N);
    }
    CHECK(wrong > 0);
}

/* Path with jumps 1 -> 2 at 0.5, 2 -> 1 at 1.25, 1 -> 3 at 2.0, observed until 3.0 (Q3, start 0):
** log 2 - 3 * 0.5 + log 0.5 - 0.5 * 0.75 + log 1 - 3 * 0.75 - 4 * 1.0. */
static void test_loglik_path_equals_hand_computation(void)
{
    double times[] = {0, 0.5, 1.25, 2.0};
    int states[] = {0, 1, 0, 2};
    plm_ctmc_path path = {4, times, states, 3.0};
    plm_ctx ctx;
    plm_ctmc *c;
    double ll;
    CHECK(plm_ctmc_new(&ctx, Q3, 3, &c) == PLM_OK);
    CHECK(plm_ctmc_loglik_path(&ctx, c, &path, &ll) == PLM_OK);
    CHECK_NEAR(ll, log(2.0) - 1.5 + log(0.5) - 0.375 + log(1.0) - 2.25 - 4.0, 1e-14);
    states[3] = 1;   /* 1 -> 2 ... 2 -> 1 fine, but then 1 -> 2 at rate 2 */
    CHECK(plm_ctmc_loglik_path(&ctx, c, &path, &ll) == PLM_OK);
    CHECK_NEAR(ll, log(2.0) - 1.5 + log(0.5) - 0.375 + log(2.0) - 2.25 - 0.5, 1e-14);
    states[1] = 2, states[2] = 1, states[3] = 2;   /* 3 -> 2 is possible, 2 -> 3 is not */
    CHECK(plm_ctmc_loglik_path(&ctx, c, &path, &ll) == PLM_OK);
    CHECK(ll == -INFINITY);
}

/* Irregular observation times on the two-state chain: the sum of closed-form log transition probabilities. */
static void test_loglik_obs_equals_closed_form(void)
{
    const double a = 0.7, b = 0.2, Q[] = {-a, a, b, -b};
    const double times[] = {0.0, 0.3, 0.3, 1.9, 2.0, 7.5};
    const int states[] = {0, 1, 1, 1, 0, 0};
    plm_ctx ctx;
    plm_ctmc *c;
    double ll, want = 0;
    int i;
    CHECK(plm_ctmc_new(&ctx, Q, 2, &c) == PLM_OK);
    for (i = 0; i < 5; i++) {
        double t = times[i + 1] - times[i], e = exp(-(a + b) * t), P[4];
        P[0] = (b + a * e) / (a + b), P[1] = (a - a * e) / (a + b);
        P[2] = (b - b * e) / (a + b), P[3] = (a + b * e) / (a + b);
        want += log(P[states[i] * 2 + states[i + 1]]);
    }
    CHECK(plm_ctmc_loglik_obs(&ctx, c, 6, times, states, &ll) == PLM_OK);
    CHECK_NEAR(ll, want, 1e-12);
}

static void expect(plm_status got, plm_ctx *ctx, const char *want)
{
    CHECK(got == PLM_EINVAL);
    CHECK(strstr(ctx->msg, want) != NULL);
    if (!strstr(ctx->msg, want)) printf("  message \"%s\" lacks \"%s\"\n", ctx->msg, want);
}

static void test_bad_input_names_row_and_entry(void)
{
    plm_ctx ctx;
    plm_ctmc *c;
    double Q[9], P[9], ll, times[] = {0, 1, 0.5}, t2[] = {0, 1};
    int states[] = {0, 1, 2}, same[] = {0, 0};
    plm_ctmc_path path = {3, times, states, 2};
    memcpy(Q, Q3, sizeof Q);
    Q[5] = -0.1, Q[4] = -0.4;
    expect(plm_ctmc_new(&ctx, Q, 3, &c), &ctx, "Q[2][3] is negative (-0.1)");
    memcpy(Q, Q3, sizeof Q);
    Q[4] = -0.6;
    expect(plm_ctmc_new(&ctx, Q, 3, &c), &ctx, "Q row 2 sums to -0.1");
    Q[4] = NAN;
    expect(plm_ctmc_new(&ctx, Q, 3, &c), &ctx, "Q[2][2] is not finite");
    expect(plm_ctmc_new(&ctx, Q, 0, &c), &ctx, "at least one state");
    CHECK(plm_ctmc_new(&ctx, Q3, 3, &c) == PLM_OK);
    expect(plm_ctmc_transition(&ctx, c, -1, P), &ctx, "transition time must be finite and >= 0");
    expect(plm_ctmc_loglik_path(&ctx, c, &path, &ll), &ctx, "path times must not decrease (time 3 is 0.5");
    times[2] = 1.5;
    path.t_end = 1.0;
    expect(plm_ctmc_loglik_path(&ctx, c, &path, &ll), &ctx, "t_end (1) must be finite and >= the last jump time");
    path.t_end = 2;
    states[2] = 3;
    expect(plm_ctmc_loglik_path(&ctx, c, &path, &ll), &ctx, "path state 3 is 4, out of range 1..3");
    states[2] = 1;
    expect(plm_ctmc_loglik_path(&ctx, c, &path, &ll), &ctx, "path states 2 and 3 are both 2");
    path.n = 0;
    expect(plm_ctmc_loglik_path(&ctx, c, &path, &ll), &ctx, "empty");
    t2[1] = -1;
    expect(plm_ctmc_loglik_obs(&ctx, c, 2, t2, same, &ll), &ctx, "times must not decrease");
    expect(plm_ctmc_loglik_obs(&ctx, c, 0, t2, same, &ll), &ctx, "no observations");
    {
        plm_rng r;
        plm_rng_init(&r, 1, 0);
        expect(plm_ctmc_sample_path(&ctx, c, 3, 0, 1, &r, &path), &ctx, "initial state 4 is out of range 1..3");
        expect(plm_ctmc_sample_path(&ctx, c, 0, 2, 1, &r, &path), &ctx, "t_end must be finite");
    }
}

/* An absorbing state: a path that reaches it stays until t_end, and P(t) keeps exact zeros. */
static void test_absorbing_state(void)
{
    const double Q[] = {-1, 1, 0, 0};
    plm_ctx ctx;
    plm_ctmc *c;
    plm_rng r;
    plm_ctmc_path path;
    double P[4];
    CHECK(plm_ctmc_new(&ctx, Q, 2, &c) == PLM_OK);
    plm_rng_init(&r, 3, 0);
    CHECK(plm_ctmc_sample_path(&ctx, c, 0, 0, 100, &r, &path) == PLM_OK);
    CHECK(path.n == 2 && path.states[1] == 1);
    CHECK(plm_ctmc_transition(&ctx, c, 2, P) == PLM_OK);
    CHECK(P[2] == 0 && P[3] == 1);
    CHECK_NEAR(P[0], exp(-2), 1e-15);
}

/* Rows stay stochastic at any t (issue 8: row sums were 0.83 at t = 1e16, 0 at 1e20, inf at 1e300), and
** P(t) matches the exact two-state formula there, also when lambda t overflows a double (rates 1e10). */
static void test_transition_stays_stochastic_at_huge_t(void)
{
    static const double ts[] = {1e3, 1e16, 1e20, 1e300};
    const double scales[] = {1, 1e-12, 1e10};
    const double a = 0.7, b = 0.2;
    size_t k, m;
    int i;
    for (m = 0; m < 3; m++) {
        double Qs[] = {-1 * scales[m], 1 * scales[m], 1 * scales[m], -1 * scales[m]};
        double Qa[] = {-a * scales[m], a * scales[m], b * scales[m], -b * scales[m]};
        plm_ctx ctx;
        plm_ctmc *cs, *ca;
        double P[4];
        CHECK(plm_ctmc_new(&ctx, Qs, 2, &cs) == PLM_OK);
        CHECK(plm_ctmc_new(&ctx, Qa, 2, &ca) == PLM_OK);
        for (k = 0; k < sizeof ts / sizeof *ts; k++) {
            double e = exp(-2 * scales[m] * ts[k]), ea = exp(-(a + b) * scales[m] * ts[k]);
            CHECK(plm_ctmc_transition(&ctx, cs, ts[k], P) == PLM_OK);
            CHECK_NEAR(P[0], (1 + e) / 2, 1e-12);
            CHECK_NEAR(P[1], (1 - e) / 2, 1e-12);
            CHECK_NEAR(P[2], (1 - e) / 2, 1e-12);
            CHECK_NEAR(P[3], (1 + e) / 2, 1e-12);
            CHECK_NEAR(P[0] + P[1], 1, 1e-12);
            CHECK_NEAR(P[2] + P[3], 1, 1e-12);
            CHECK(plm_ctmc_transition(&ctx, ca, ts[k], P) == PLM_OK);
            CHECK_NEAR(P[0], (b + a * ea) / (a + b), 1e-12);
            CHECK_NEAR(P[1], (a - a * ea) / (a + b), 1e-12);
            CHECK_NEAR(P[2], (b - b * ea) / (a + b), 1e-12);
            CHECK_NEAR(P[3], (a + b * ea) / (a + b), 1e-12);
            for (i = 0; i < 4; i++) CHECK(P[i] >= 0);
        }
    }
}

/* A reducible chain: states 1 and 2 form a closed class (stationary 2/3, 1/3), state 3 is transient and
** leaves at rate 1 into the class and rate 1 into the absorbing state 4. For t >= 50 every entry equals its
** limit to within e^-50: rows 1-2 are (2/3, 1/3, 0, 0), row 3 (1/3, 1/6, 0, 1/2), row 4 (0, 0, 0, 1). */
static void test_transition_limit_of_reducible_chain_with_absorbing_state(void)
{
    static const double Q[] = {-1, 1, 0, 0,
                               2, -2, 0, 0,
                               1, 0, -2, 1,
                               0, 0, 0, 0};
    static const double L[] = {2. / 3, 1. / 3, 0, 0,
                               2. / 3, 1. / 3, 0, 0,
                               1. / 3, 1. / 6, 0, 0.5,
                               0, 0, 0, 1};
    static const double ts[] = {50, 1e16, 1e20, 1e300};
    plm_ctx ctx;
    plm_ctmc *c;
    double P[16];
    size_t k;
    int i, j;
    CHECK(plm_ctmc_new(&ctx, Q, 4, &c) == PLM_OK);
    for (k = 0; k < sizeof ts / sizeof *ts; k++) {
        CHECK(plm_ctmc_transition(&ctx, c, ts[k], P) == PLM_OK);
        for (i = 0; i < 4; i++) {
            double row = 0;
            for (j = 0; j < 4; j++) {
                CHECK_NEAR(P[i * 4 + j], L[i * 4 + j], 1e-12);
                row += P[i * 4 + j];
            }
            CHECK_NEAR(row, 1, 1e-12);
        }
        CHECK(P[15] == 1 && P[12] == 0 && P[2] == 0 && P[3] == 0);   /* absorbing row and closed class exact */
    }
}

int main(void)
{
    plm_init();
    RUN(test_transition_matches_eigendecomposition_of_symmetric_chain);
    RUN(test_transition_matches_two_state_closed_form);
    RUN(test_transition_semigroup_and_stochastic_rows);
    RUN(test_gillespie_paths_match_transition_within_monte_carlo_error);
    RUN(test_loglik_path_equals_hand_computation);
    RUN(test_loglik_obs_equals_closed_form);
    RUN(test_bad_input_names_row_and_entry);
    RUN(test_absorbing_state);
    RUN(test_transition_stays_stochastic_at_huge_t);
    RUN(test_transition_limit_of_reducible_chain_with_absorbing_state);
    return CHECK_DONE();
}
