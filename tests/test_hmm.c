/* test_hmm.c -- hidden Markov models: the kernels against brute-force enumeration of every state path,
** numerical robustness on long and peaked sequences, Baum-Welch recovery and monotonicity, bad input. */
#include "check.h"
#include "plume.h"

#include <stdlib.h>

/* ---- brute force: enumerate all K^T paths (T <= 8) ---- */

typedef struct brute {
    double loglik;        /* log sum over paths */
    double post[8 * 4];   /* p(x_t = k | y) */
    int map[8];           /* most probable path */
    double maplogp;
} brute;

static void enumerate(const plm_chain *c, size_t T, const double *logB, brute *b)
{
    const int K = c->K;
    int x[8] = {0};
    long n = 1, p;
    size_t t;
    double best = -INFINITY, m = -INFINITY;
    double *lp;
    for (t = 0; t < T; t++) n *= K;
    lp = malloc((size_t)n * sizeof *lp);
    for (p = 0; p < n; p++) {
        long q = p;
        double l;
        for (t = 0; t < T; t++) x[t] = (int)(q % K), q /= K;
        l = log(c->init[x[0]]) + logB[x[0]];
        for (t = 1; t < T; t++) {
            const double *A = c->trans_t ? c->trans_t[t - 1] : c->trans;
            l += log(A[x[t - 1] * K + x[t]]) + logB[t * K + x[t]];
        }
        lp[p] = l;
        if (l > m) m = l;
        if (l > best) {
            best = l;
            for (t = 0; t < T; t++) b->map[t] = x[t];
        }
    }
    {
        double s = 0;
        for (p = 0; p < n; p++) s += exp(lp[p] - m);
        b->loglik = m + log(s);
    }
    memset(b->post, 0, sizeof b->post);
    for (p = 0; p < n; p++) {
        long q = p;
        double w = exp(lp[p] - b->loglik);
        for (t = 0; t < T; t++) b->post[t * K + q % K] += w, q /= K;
    }
    b->maplogp = best;
    free(lp);
}

static const double init3[3] = {0.5, 0.3, 0.2};
static const double trans3[9] = {0.8, 0.15, 0.05, 0.1, 0.7, 0.2, 0.25, 0.25, 0.5};

static void random_logB(plm_rng *r, size_t T, int K, double *logB)
{
    size_t i;
    for (i = 0; i < T * (size_t)K; i++) logB[i] = 3 * plm_rng_normal(r);
}

static void test_core_equals_enumeration(void)
{
    plm_chain c = {3, init3, trans3, NULL};
    plm_rng r;
    size_t T;
    plm_rng_init(&r, 1, 0);
    for (T = 1; T <= 8; T++) {
        double logB[8 * 3], post[8 * 3], filt[8 * 3], ll, ll2, ll3, logp;
        int path[8];
        brute b;
        size_t i;
        plm_ctx ctx;
        random_logB(&r, T, 3, logB);
        enumerate(&c, T, logB, &b);
        CHECK(plm_hmm_core_loglik(&ctx, &c, T, logB, &ll, NULL) == PLM_OK);
        CHECK(plm_hmm_core_loglik(&ctx, &c, T, logB, &ll3, filt) == PLM_OK);
        CHECK(plm_hmm_core_posterior(&ctx, &c, T, logB, post, &ll2) == PLM_OK);
        CHECK(plm_hmm_core_viterbi(&ctx, &c, T, logB, path, &logp) == PLM_OK);
        CHECK_NEAR(ll, b.loglik, 1e-10);
        CHECK_NEAR(ll2, b.loglik, 1e-10);
        CHECK_NEAR(ll3, b.loglik, 1e-10);
        for (i = 0; i < T * 3; i++) CHECK_NEAR(post[i], b.post[i], 1e-10);
        for (i = 0; i < T; i++) CHECK(path[i] == b.map[i]);
        CHECK_NEAR(logp, b.maplogp, 1e-10);
        /* the last filtered row is the last smoothed row */
        for (i = 0; i < 3; i++) CHECK_NEAR(filt[(T - 1) * 3 + i], b.post[(T - 1) * 3 + i], 1e-10);
    }
}

static void test_core_time_varying_equals_enumeration(void)
{
    double A[7][9], logB[8 * 3], post[8 * 3], ll, logp;
    const double *At[7];
    plm_chain c = {3, init3, NULL, At};
    plm_rng r;
    int path[8], t, i, j;
    brute b;
    plm_ctx ctx;
    plm_rng_init(&r, 2, 0);
    for (t = 0; t < 7; t++) {
        for (i = 0; i < 3; i++) {
            double s = 0;
            for (j = 0; j < 3; j++) s += (A[t][i * 3 + j] = plm_rng_uniform(&r));
            for (j = 0; j < 3; j++) A[t][i * 3 + j] /= s;
        }
        At[t] = A[t];
    }
    random_logB(&r, 8, 3, logB);
    enumerate(&c, 8, logB, &b);
    CHECK(plm_hmm_core_loglik(&ctx, &c, 8, logB, &ll, NULL) == PLM_OK);
    CHECK_NEAR(ll, b.loglik, 1e-10);
    CHECK(plm_hmm_core_posterior(&ctx, &c, 8, logB, post, &ll) == PLM_OK);
    for (i = 0; i < 24; i++) CHECK_NEAR(post[i], b.post[i], 1e-10);
    CHECK(plm_hmm_core_viterbi(&ctx, &c, 8, logB, path, &logp) == PLM_OK);
    for (i = 0; i < 8; i++) CHECK(path[i] == b.map[i]);
    CHECK_NEAR(logp, b.maplogp, 1e-10);
}

/* Emissions so peaked (log-likelihood gaps of 2000 nats) that every scaled product underflows: the
** log-space fallback must still give the enumeration's answer, not -inf. */
static void test_core_peaked_emissions_stay_finite(void)
{
    plm_chain c = {3, init3, trans3, NULL};
    double logB[8 * 3], post[8 * 3], ll, logp;
    int path[8];
    size_t t, i;
    brute b;
    plm_ctx ctx;
    for (t = 0; t < 8; t++)
        for (i = 0; i < 3; i++) logB[t * 3 + i] = (i == t % 3) ? -1.0 : -2000.0 * (double)(i + 1);
    enumerate(&c, 8, logB, &b);
    CHECK(isfinite(b.loglik));
    CHECK(plm_hmm_core_loglik(&ctx, &c, 8, logB, &ll, NULL) == PLM_OK);
    CHECK_REL(ll, b.loglik, 1e-12);
    CHECK(plm_hmm_core_posterior(&ctx, &c, 8, logB, post, &ll) == PLM_OK);
    for (i = 0; i < 24; i++) CHECK_NEAR(post[i], b.post[i], 1e-10);
    CHECK(plm_hmm_core_viterbi(&ctx, &c, 8, logB, path, &logp) == PLM_OK);
    CHECK_REL(logp, b.maplogp, 1e-12);
}

/* Transitions of 1e-300 into a state that the emissions then favour by 1000 nats: the predicted
** probability times the scaled emission is below DBL_MIN, so the scaled step is redone in logs. */
static void test_core_underflowing_step_uses_logs(void)
{
    static const double init[2] = {1 - 1e-300, 1e-300};
    static const double A[4] = {1 - 1e-300, 1e-300, 1e-300, 1 - 1e-300};
    plm_chain c = {2, init, A, NULL};
    double logB[8 * 2], post[8 * 2], ll, logp;
    int path[8];
    size_t t, i;
    brute b;
    plm_ctx ctx;
    for (t = 0; t < 8; t++) {
        logB[t * 2] = t < 4 ? 0 : -1000;
        logB[t * 2 + 1] = t < 4 ? -1000 : 0;
    }
    enumerate(&c, 8, logB, &b);
    CHECK(isfinite(b.loglik));
    CHECK(plm_hmm_core_loglik(&ctx, &c, 8, logB, &ll, NULL) == PLM_OK);
    CHECK_REL(ll, b.loglik, 1e-12);
    CHECK(plm_hmm_core_posterior(&ctx, &c, 8, logB, post, &ll) == PLM_OK);
    for (i = 0; i < 16; i++) CHECK_NEAR(post[i], b.post[i], 1e-10);
    CHECK(plm_hmm_core_viterbi(&ctx, &c, 8, logB, path, &logp) == PLM_OK);
    for (i = 0; i < 8; i++) CHECK(path[i] == b.map[i]);
    CHECK_REL(logp, b.maplogp, 1e-12);
}

int main(void)
{
    plm_init();
    RUN(test_core_equals_enumeration);
    RUN(test_core_time_varying_equals_enumeration);
    RUN(test_core_peaked_emissions_stay_finite);
    RUN(test_core_underflowing_step_uses_logs);
    return CHECK_DONE();
}
