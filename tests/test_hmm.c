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


/* ---- the model object ---- */

static const double emit3[3 * 4] = {0.6, 0.2, 0.1, 0.1, 0.1, 0.5, 0.3, 0.1, 0.25, 0.25, 0.25, 0.25};

static plm_hmm *cat3(void)
{
    plm_hmm *h = NULL;
    plm_ctx ctx;
    CHECK(plm_hmm_new_categorical(&ctx, 3, 4, init3, trans3, emit3, &h) == PLM_OK);
    return h;
}

/* logB of a model computed independently, through plm_dist objects */
static void logB_via_dists(const plm_hmm *h, size_t T, const double *y, double *logB)
{
    int k;
    size_t t;
    for (k = 0; k < h->K; k++) {
        plm_dist *d;
        plm_ctx ctx;
        CHECK(plm_hmm_state_dist(&ctx, h, k, &d) == PLM_OK);
        for (t = 0; t < T; t++) logB[t * h->K + k] = plm_dist_logpdf(d, y + t * h->D);
    }
}

static void check_model_against_enumeration(const plm_hmm *h, size_t T, const double *y)
{
    plm_chain c = {h->K, h->init, h->trans, NULL};
    double logB[8 * 4], post[8 * 4], filt[8 * 4], ll, ll2, logp;
    int path[8];
    size_t i;
    brute b;
    plm_ctx ctx;
    logB_via_dists(h, T, y, logB);
    enumerate(&c, T, logB, &b);
    CHECK(plm_hmm_loglik(&ctx, h, T, y, &ll) == PLM_OK);
    CHECK_NEAR(ll, b.loglik, 1e-10);
    CHECK(plm_hmm_filter(&ctx, h, T, y, filt, &ll2) == PLM_OK);
    CHECK_NEAR(ll2, b.loglik, 1e-10);
    for (i = 0; i < (size_t)h->K; i++) CHECK_NEAR(filt[(T - 1) * h->K + i], b.post[(T - 1) * h->K + i], 1e-10);
    CHECK(plm_hmm_posterior(&ctx, h, T, y, post, &ll2) == PLM_OK);
    CHECK_NEAR(ll2, b.loglik, 1e-10);
    for (i = 0; i < T * h->K; i++) CHECK_NEAR(post[i], b.post[i], 1e-10);
    CHECK(plm_hmm_viterbi(&ctx, h, T, y, path, &logp) == PLM_OK);
    for (i = 0; i < T; i++) CHECK(path[i] == b.map[i]);
    CHECK_NEAR(logp, b.maplogp, 1e-10);
}

static void test_categorical_equals_enumeration(void)
{
    plm_hmm *h = cat3();
    plm_rng r;
    size_t T, t;
    plm_rng_init(&r, 3, 0);
    for (T = 1; T <= 8; T++) {
        double y[8];
        for (t = 0; t < T; t++) y[t] = (double)plm_rng_uint(&r, 4);
        check_model_against_enumeration(h, T, y);
    }
}

static void test_each_emission_family_equals_enumeration(void)
{
    static const double np[6] = {-1, 0.5, 0.5, 1, 2.5, 2};
    static const double pp[3] = {0.5, 3, 9};
    static const double bp[3] = {0.1, 0.5, 0.95};
    static const double mu[6] = {0, 0, 2, 1, -1, 3};
    static const double S[12] = {1, 0.3, 0.3, 2, 0.5, 0, 0, 0.5, 2, -1, -1, 1};
    double y[16];
    plm_hmm *h;
    plm_rng r;
    int states[8];
    plm_ctx ctx;
    plm_rng_init(&r, 4, 0);
    CHECK(plm_hmm_new_scalar(&ctx, PLM_HMM_NORMAL, 3, init3, trans3, np, &h) == PLM_OK);
    CHECK(plm_hmm_sample(&ctx, h, 8, &r, states, y) == PLM_OK);
    check_model_against_enumeration(h, 8, y);
    CHECK(plm_hmm_new_scalar(&ctx, PLM_HMM_POISSON, 3, init3, trans3, pp, &h) == PLM_OK);
    CHECK(plm_hmm_sample(&ctx, h, 8, &r, states, y) == PLM_OK);
    check_model_against_enumeration(h, 8, y);
    CHECK(plm_hmm_new_scalar(&ctx, PLM_HMM_BERNOULLI, 3, init3, trans3, bp, &h) == PLM_OK);
    CHECK(plm_hmm_sample(&ctx, h, 8, &r, states, y) == PLM_OK);
    check_model_against_enumeration(h, 8, y);
    CHECK(plm_hmm_new_mvnormal(&ctx, 3, 2, init3, trans3, mu, S, &h) == PLM_OK);
    CHECK(plm_hmm_sample(&ctx, h, 8, &r, states, y) == PLM_OK);
    check_model_against_enumeration(h, 8, y);
}

/* p(y_{t+1} = m | y_1..t) = exp(loglik(y_1..t, m) - loglik(y_1..t)), each term by enumeration */
static void test_predict_equals_enumeration(void)
{
    plm_hmm *h = cat3();
    plm_chain c = {3, init3, trans3, NULL};
    const double y[6] = {0, 1, 1, 3, 2, 1};
    double weights[7 * 3], logpred[6], probs[7 * 4], logB[7 * 3];
    plm_hmm_pred pr = {weights, logpred, probs, NULL, 0, 0};
    size_t t, i;
    int m, hits = 0;
    plm_ctx ctx;
    CHECK(plm_hmm_predict(&ctx, h, 6, y, &pr) == PLM_OK);
    for (t = 0; t <= 6; t++) {
        double prev = 0, best = -1;
        int mode = 0;
        brute b;
        for (i = 0; i < t; i++) memcpy(logB + i * 3, h->logemitT + (size_t)y[i] * 3, 3 * sizeof(double));
        if (t > 0) {
            enumerate(&c, t, logB, &b);
            prev = b.loglik;
        }
        for (m = 0; m < 4; m++) {
            double p;
            memcpy(logB + t * 3, h->logemitT + (size_t)m * 3, 3 * sizeof(double));
            enumerate(&c, t + 1, logB, &b);
            p = exp(b.loglik - prev);
            CHECK_NEAR(probs[t * 4 + m], p, 1e-12);
            if (t < 6 && m == (int)y[t]) CHECK_NEAR(logpred[t], log(p), 1e-10);
            if (p > best) best = p, mode = m;
        }
        if (t < 6 && mode == (int)y[t]) hits++;
    }
    CHECK_NEAR(pr.accuracy, hits / 6.0, 1e-15);
    {
        double ll;
        CHECK(plm_hmm_loglik(&ctx, h, 6, y, &ll) == PLM_OK);
        CHECK_NEAR(pr.logloss, -ll / 6, 1e-12);
    }
}

/* Normal emissions: logpred[t] = loglik(y_1..t) - loglik(y_1..t-1) and the predictive mean is
** sum_k p(x_t = k | y_1..t-1) mu_k, with the state weights taken from enumeration (the filtered
** marginal of step t-1 pushed through trans). */
static void test_predict_normal_equals_enumeration(void)
{
    static const double np[6] = {-1, 0.5, 0.5, 1, 2.5, 2};
    plm_chain c = {3, init3, trans3, NULL};
    double y[6], logB[6 * 3], weights[7 * 3], logpred[6], mean[7];
    plm_hmm_pred pr = {weights, logpred, NULL, mean, 0, 0};
    int st[6], k, j;
    size_t t;
    plm_hmm *h;
    plm_rng r;
    plm_ctx ctx;
    plm_rng_init(&r, 12, 0);
    CHECK(plm_hmm_new_scalar(&ctx, PLM_HMM_NORMAL, 3, init3, trans3, np, &h) == PLM_OK);
    CHECK(plm_hmm_sample(&ctx, h, 6, &r, st, y) == PLM_OK);
    CHECK(plm_hmm_predict(&ctx, h, 6, y, &pr) == PLM_OK);
    CHECK(isnan(pr.accuracy));
    logB_via_dists(h, 6, y, logB);
    for (t = 0; t <= 6; t++) {
        double w[3], prev = 0, m = 0;
        brute b;
        if (t == 0)
            memcpy(w, init3, sizeof w);
        else {
            enumerate(&c, t, logB, &b);
            prev = b.loglik;
            for (k = 0; k < 3; k++) {
                w[k] = 0;
                for (j = 0; j < 3; j++) w[k] += b.post[(t - 1) * 3 + j] * trans3[j * 3 + k];
            }
        }
        for (k = 0; k < 3; k++) {
            CHECK_NEAR(weights[t * 3 + k], w[k], 1e-12);
            m += w[k] * np[2 * k];
        }
        CHECK_NEAR(mean[t], m, 1e-12);
        if (t < 6) {
            enumerate(&c, t + 1, logB, &b);
            CHECK_NEAR(logpred[t], b.loglik - prev, 1e-10);
        }
    }
}

/* A million steps of strongly peaked normal emissions (sigma 0.01, means 10 apart): the log-likelihood
** is about -1e6 * something, far past where unscaled products underflow; everything must stay finite and
** the three routes to the log-likelihood must agree. */
static void test_long_sequence_stays_finite(void)
{
    static const double np[6] = {0, 0.01, 10, 0.01, 20, 0.01};
    const size_t T = 1000000;
    double *y = malloc(T * sizeof *y), *post = malloc(T * 3 * sizeof *post), ll, ll2, logp;
    int *states = malloc(T * sizeof *states), *path = malloc(T * sizeof *path);
    size_t t, wrong = 0;
    plm_hmm *h;
    plm_rng r;
    plm_ctx ctx;
    plm_rng_init(&r, 5, 0);
    CHECK(plm_hmm_new_scalar(&ctx, PLM_HMM_NORMAL, 3, init3, trans3, np, &h) == PLM_OK);
    CHECK(plm_hmm_sample(&ctx, h, T, &r, states, y) == PLM_OK);
    CHECK(plm_hmm_loglik(&ctx, h, T, y, &ll) == PLM_OK);
    CHECK(isfinite(ll));
    CHECK(plm_hmm_posterior(&ctx, h, T, y, post, &ll2) == PLM_OK);
    CHECK_REL(ll2, ll, 1e-12);
    for (t = 0; t < T * 3; t++)
        if (!(post[t] >= 0 && post[t] <= 1)) wrong++;
    CHECK(wrong == 0);
    CHECK(plm_hmm_viterbi(&ctx, h, T, y, path, &logp) == PLM_OK);
    CHECK(isfinite(logp) && logp <= ll + 1e-6 * fabs(ll));
    for (t = 0; t < T; t++) wrong += path[t] != states[t];
    CHECK(wrong == 0);   /* means 1000 sigmas apart: decoding is exact */
    free(y), free(post), free(states), free(path);
}

/* The one-sided guarantee of EM: the trace never decreases, for every emission family. */
static void test_em_loglik_monotone(void)
{
    static const double np[6] = {-1, 1, 0, 1, 1, 1};
    static const double start_np[6] = {-0.5, 2, 0.1, 2, 0.6, 2};
    static const double pp[3] = {1, 4, 8}, start_pp[3] = {2, 3, 5};
    static const double bp[3] = {0.2, 0.5, 0.8}, start_bp[3] = {0.4, 0.5, 0.6};
    static const double flat[9] = {1.0 / 3, 1.0 / 3, 1.0 / 3, 1.0 / 3, 1.0 / 3, 1.0 / 3, 1.0 / 3, 1.0 / 3, 1.0 / 3};
    static const double mu[6] = {0, 0, 2, 1, -1, 3}, start_mu[6] = {0.5, 0.5, 1, 1, 0, 2};
    static const double S[12] = {1, 0.3, 0.3, 2, 0.5, 0, 0, 0.5, 2, -1, -1, 1};
    static const double I2[12] = {2, 0, 0, 2, 2, 0, 0, 2, 2, 0, 0, 2};
    const size_t T = 2000;
    double *y = malloc(2 * T * sizeof *y), *trace;
    const double *ys[1] = {y};
    int *st = malloc(T * sizeof *st), fam, n, i;
    plm_hmm_fit_opts o;
    plm_rng r;
    plm_ctx ctx;
    plm_hmm_fit_defaults(&o);
    o.iters = 60;
    o.tol = 0;
    plm_rng_init(&r, 6, 0);
    for (fam = 0; fam < 5; fam++) {
        plm_hmm *truth = NULL, *start = NULL, *fit = NULL;
        switch (fam) {
        case 0:
            truth = cat3();
            plm_hmm_new_categorical(&ctx, 3, 4, flat + 0, flat, (const double[12]){0.3, 0.3, 0.2, 0.2, 0.2, 0.3, 0.3, 0.2, 0.25, 0.25, 0.25, 0.25}, &start);
            break;
        case 1:
            plm_hmm_new_scalar(&ctx, PLM_HMM_NORMAL, 3, init3, trans3, np, &truth);
            plm_hmm_new_scalar(&ctx, PLM_HMM_NORMAL, 3, flat, flat, start_np, &start);
            break;
        case 2:
            plm_hmm_new_scalar(&ctx, PLM_HMM_POISSON, 3, init3, trans3, pp, &truth);
            plm_hmm_new_scalar(&ctx, PLM_HMM_POISSON, 3, flat, flat, start_pp, &start);
            break;
        case 3:
            plm_hmm_new_scalar(&ctx, PLM_HMM_BERNOULLI, 3, init3, trans3, bp, &truth);
            plm_hmm_new_scalar(&ctx, PLM_HMM_BERNOULLI, 3, flat, flat, start_bp, &start);
            break;
        default:
            plm_hmm_new_mvnormal(&ctx, 3, 2, init3, trans3, mu, S, &truth);
            plm_hmm_new_mvnormal(&ctx, 3, 2, flat, flat, start_mu, I2, &start);
        }
        CHECK(truth && start);
        if (!truth || !start) continue;
        CHECK(plm_hmm_sample(&ctx, truth, T, &r, st, y) == PLM_OK);
        CHECK(plm_hmm_fit(&ctx, start, 1, ys, &T, &o, &fit, &trace, &n) == PLM_OK);
        CHECK(n >= 10);   /* it did run: a flat start is far from the optimum */
        for (i = 1; i < n; i++)
            if (!(trace[i] >= trace[i - 1])) {
                printf("  family %d: trace[%d] = %.17g < trace[%d] = %.17g\n", fam, i, trace[i], i - 1, trace[i - 1]);
                CHECK(trace[i] >= trace[i - 1]);
            }
        CHECK(trace[n - 1] > trace[0] + 1);
        {
            double ll;   /* the last trace entry is the fitted model's log-likelihood */
            CHECK(plm_hmm_loglik(&ctx, fit, T, y, &ll) == PLM_OK);
            CHECK_REL(ll, trace[n - 1], 1e-10);
        }
    }
    free(y), free(st);
}

/* Baum-Welch recovers a 3-state normal HMM from T = 50,000 up to label permutation. Tolerances: with
** ~16,000 visits per state the standard error of a mean is sigma / sqrt(16000) ~ 0.008 and of a
** transition probability sqrt(p (1-p) / 16000) <= 0.004; we allow 0.05 for both (> 6 se plus the
** uncertainty of the state assignment). Negative control: the flat starting model is not within it. */
static void test_em_recovers_three_state_model(void)
{
    static const double tinit[3] = {1.0 / 3, 1.0 / 3, 1.0 / 3};
    static const double ttrans[9] = {0.95, 0.03, 0.02, 0.04, 0.90, 0.06, 0.05, 0.05, 0.90};
    static const double tnp[6] = {-2, 1, 0.5, 0.7, 3, 1.2};
    static const double snp[6] = {-1, 2, 0, 2, 1, 2};
    static const double strans[9] = {0.8, 0.1, 0.1, 0.1, 0.8, 0.1, 0.1, 0.1, 0.8};
    const size_t T = 50000;
    double *y = malloc(T * sizeof *y), *trace;
    const double *ys[1] = {y};
    int *st = malloc(T * sizeof *st), n, perm[3] = {0, 1, 2}, i, j;
    plm_hmm *truth, *start, *fit;
    plm_hmm_fit_opts o;
    plm_rng r;
    plm_ctx ctx;
    double maxerr = 0, startmaxerr = 0;
    plm_rng_init(&r, 7, 0);
    CHECK(plm_hmm_new_scalar(&ctx, PLM_HMM_NORMAL, 3, tinit, ttrans, tnp, &truth) == PLM_OK);
    CHECK(plm_hmm_new_scalar(&ctx, PLM_HMM_NORMAL, 3, tinit, strans, snp, &start) == PLM_OK);
    CHECK(plm_hmm_sample(&ctx, truth, T, &r, st, y) == PLM_OK);
    plm_hmm_fit_defaults(&o);
    o.iters = 300;
    o.tol = 1e-8;
    o.restarts = 2;
    CHECK(plm_hmm_fit(&ctx, start, 1, ys, &T, &o, &fit, &trace, &n) == PLM_OK);
    /* label permutation: match fitted states to true ones by the nearest mean */
    for (i = 0; i < 3; i++) {
        double bd = INFINITY;
        for (j = 0; j < 3; j++)
            if (fabs(fit->par[2 * j] - tnp[2 * i]) < bd) bd = fabs(fit->par[2 * j] - tnp[2 * i]), perm[i] = j;
    }
    CHECK(perm[0] != perm[1] && perm[1] != perm[2] && perm[0] != perm[2]);
    for (i = 0; i < 3; i++) {
        maxerr = fmax(maxerr, fabs(fit->par[2 * perm[i]] - tnp[2 * i]));
        maxerr = fmax(maxerr, fabs(fit->par[2 * perm[i] + 1] - tnp[2 * i + 1]));
        startmaxerr = fmax(startmaxerr, fabs(snp[2 * i + 1] - tnp[2 * i + 1]));
        for (j = 0; j < 3; j++) {
            maxerr = fmax(maxerr, fabs(fit->trans[perm[i] * 3 + perm[j]] - ttrans[i * 3 + j]));
            startmaxerr = fmax(startmaxerr, fabs(strans[i * 3 + j] - ttrans[i * 3 + j]));
        }
    }
    CHECK(maxerr < 0.05);
    CHECK(startmaxerr > 0.05);
    for (i = 1; i < n; i++) CHECK(trace[i] >= trace[i - 1]);
    free(y), free(st);
}

/* The E-step runs sequences in parallel but adds their statistics in sequence order: the fit must be
** bit-for-bit the same with 1, 2 and 3 threads. */
static void test_em_same_result_any_thread_count(void)
{
    static const double np[6] = {-1, 1, 0, 1, 1, 1}, start_np[6] = {-0.5, 2, 0.1, 2, 0.6, 2};
    enum { NSEQ = 37 };
    double *y[NSEQ], *trace[3];
    size_t Ts[NSEQ];
    int st[400], q, th, n[3], i;
    plm_hmm *truth, *start, *fit[3];
    plm_hmm_fit_opts o;
    plm_rng r;
    plm_ctx ctx;
    plm_rng_init(&r, 11, 0);
    CHECK(plm_hmm_new_scalar(&ctx, PLM_HMM_NORMAL, 3, init3, trans3, np, &truth) == PLM_OK);
    CHECK(plm_hmm_new_scalar(&ctx, PLM_HMM_NORMAL, 3, init3, trans3, start_np, &start) == PLM_OK);
    for (q = 0; q < NSEQ; q++) {
        Ts[q] = 50 + 7 * (size_t)q;
        y[q] = malloc(Ts[q] * sizeof(double));
        CHECK(plm_hmm_sample(&ctx, truth, Ts[q], &r, st, y[q]) == PLM_OK);
    }
    plm_hmm_fit_defaults(&o);
    o.iters = 20;
    o.restarts = 2;
    for (th = 0; th < 3; th++) {
        o.threads = th + 1;
        CHECK(plm_hmm_fit(&ctx, start, NSEQ, (const double *const *)y, Ts, &o, &fit[th], &trace[th], &n[th]) == PLM_OK);
    }
    for (th = 1; th < 3; th++) {
        CHECK(n[th] == n[0]);
        for (i = 0; i < n[0] && i < n[th]; i++) CHECK(trace[th][i] == trace[0][i]);
        for (i = 0; i < 6; i++) CHECK(fit[th]->par[i] == fit[0]->par[i]);
        for (i = 0; i < 9; i++) CHECK(fit[th]->trans[i] == fit[0]->trans[i]);
    }
    for (q = 0; q < NSEQ; q++) free(y[q]);
}

static void test_stationary_and_entropy_rate(void)
{
    plm_hmm *h = cat3();
    double pi[3], pA[3] = {0}, H, Hb = 0;
    int i, j;
    plm_ctx ctx;
    CHECK(plm_hmm_stationary(&ctx, h, pi) == PLM_OK);
    for (i = 0; i < 3; i++)
        for (j = 0; j < 3; j++) pA[j] += pi[i] * trans3[i * 3 + j];
    for (j = 0; j < 3; j++) CHECK_NEAR(pA[j], pi[j], 1e-14);
    CHECK_NEAR(pi[0] + pi[1] + pi[2], 1, 1e-14);
    CHECK(plm_hmm_entropy_rate(&ctx, h, &H) == PLM_OK);
    for (i = 0; i < 3; i++)
        for (j = 0; j < 3; j++) Hb -= pi[i] * trans3[i * 3 + j] * log(trans3[i * 3 + j]);
    CHECK_NEAR(H, Hb, 1e-14);
    /* an i.i.d. chain with uniform rows has entropy rate log K */
    {
        static const double u[4] = {0.5, 0.5, 0.5, 0.5}, e[4] = {1, 0, 0, 1};
        plm_hmm *g;
        CHECK(plm_hmm_new_categorical(&ctx, 2, 2, u, u, e, &g) == PLM_OK);
        CHECK(plm_hmm_entropy_rate(&ctx, g, &H) == PLM_OK);
        CHECK_NEAR(H, log(2.0), 1e-15);
    }
    /* a reducible chain (two absorbing states) has no unique stationary distribution */
    {
        static const double u[2] = {0.5, 0.5}, I[4] = {1, 0, 0, 1};
        plm_hmm *g;
        CHECK(plm_hmm_new_categorical(&ctx, 2, 2, u, I, I, &g) == PLM_OK);
        CHECK(plm_hmm_stationary(&ctx, g, pi) == PLM_EDOM);
    }
}

/* Sampled state frequencies match the stationary distribution (T = 200,000 from near-stationarity; the
** chain mixes in a few steps, so the standard error is below 0.005: tolerance 0.02). */
static void test_sample_state_frequencies(void)
{
    plm_hmm *h = cat3();
    const size_t T = 200000;
    int *st = malloc(T * sizeof *st);
    double *y = malloc(T * sizeof *y), pi[3], f[3] = {0}, fy[4] = {0}, py[4] = {0};
    size_t t;
    int k, m;
    plm_rng r;
    plm_ctx ctx;
    plm_rng_init(&r, 8, 0);
    CHECK(plm_hmm_sample(&ctx, h, T, &r, st, y) == PLM_OK);
    CHECK(plm_hmm_stationary(&ctx, h, pi) == PLM_OK);
    for (t = 0; t < T; t++) f[st[t]] += 1.0 / T, fy[(int)y[t]] += 1.0 / T;
    for (k = 0; k < 3; k++) CHECK_NEAR(f[k], pi[k], 0.02);
    for (m = 0; m < 4; m++) {
        for (k = 0; k < 3; k++) py[m] += pi[k] * emit3[k * 4 + m];
        CHECK_NEAR(fy[m], py[m], 0.02);
    }
    free(st), free(y);
}

static int msg_has(const plm_ctx *ctx, const char *s)
{
    int ok = strstr(plm_ctx_errmsg(ctx), s) != NULL;
    if (!ok) printf("  message \"%s\" lacks \"%s\"\n", plm_ctx_errmsg(ctx), s);
    return ok;
}

static void test_bad_input_names_argument_and_entry(void)
{
    static const double badrow[9] = {0.8, 0.15, 0.05, 0.1, 0.7, 0.1, 0.25, 0.25, 0.5};
    static const double negrow[9] = {0.8, 0.15, 0.05, 0.1, 0.7, 0.2, 1.25, -0.25, 0.0};
    static const double badinit[3] = {0.5, 0.3, 0.3};
    static const double bademit[12] = {0.6, 0.2, 0.1, 0.1, 0.1, 0.5, 0.3, 0.1, 0.25, 0.25, 0.25, 0.2};
    static const double np[6] = {0, 1, 0, -1, 0, 1};
    plm_hmm *h = cat3(), *g;
    double y[3] = {0, 7, 1}, ll;
    plm_ctx ctx;
    CHECK(plm_hmm_new_categorical(&ctx, 3, 4, init3, badrow, emit3, &g) == PLM_EINVAL);
    CHECK(msg_has(&ctx, "trans row 2 must sum to 1"));
    CHECK(plm_hmm_new_categorical(&ctx, 3, 4, init3, negrow, emit3, &g) == PLM_EINVAL);
    CHECK(msg_has(&ctx, "trans row 3 entry 2 is negative"));
    CHECK(plm_hmm_new_categorical(&ctx, 3, 4, badinit, trans3, emit3, &g) == PLM_EINVAL);
    CHECK(msg_has(&ctx, "init must sum to 1"));
    CHECK(plm_hmm_new_categorical(&ctx, 3, 4, init3, trans3, bademit, &g) == PLM_EINVAL);
    CHECK(msg_has(&ctx, "emit row 3 must sum to 1"));
    CHECK(plm_hmm_new_scalar(&ctx, PLM_HMM_NORMAL, 3, init3, trans3, np, &g) == PLM_EINVAL);
    CHECK(msg_has(&ctx, "emit state 2: sigma must be > 0"));
    CHECK(plm_hmm_loglik(&ctx, h, 3, y, &ll) == PLM_EDOM);
    CHECK(msg_has(&ctx, "observation at t=1 is 7"));
    CHECK(plm_hmm_loglik(&ctx, h, 0, y, &ll) == PLM_EINVAL);
    CHECK(msg_has(&ctx, "empty"));
    {
        static const double mu[4] = {0, 0, 1, 1}, S[8] = {1, 0, 0, 1, 1, 2, 2, 1};
        CHECK(plm_hmm_new_mvnormal(&ctx, 2, 2, (const double[2]){0.5, 0.5}, (const double[4]){0.5, 0.5, 0.5, 0.5}, mu, S, &g) == PLM_EINVAL);
        CHECK(msg_has(&ctx, "state 2") && msg_has(&ctx, "positive definite"));
    }
}

/* Data impossible under the model: loglik says -inf, the others say why. */
static void test_impossible_data_reported(void)
{
    static const double e[6] = {1, 0, 0, 0, 1, 0};
    static const double u[2] = {1, 0}, I[4] = {1, 0, 0, 1};
    const double y[3] = {0, 0, 1};
    double ll, post[6];
    int path[3];
    plm_hmm *h;
    plm_ctx ctx;
    CHECK(plm_hmm_new_categorical(&ctx, 2, 3, u, I, e, &h) == PLM_OK);
    CHECK(plm_hmm_loglik(&ctx, h, 3, y, &ll) == PLM_OK);
    CHECK(ll == -INFINITY);
    CHECK(plm_hmm_posterior(&ctx, h, 3, y, post, &ll) == PLM_EDOM);
    CHECK(msg_has(&ctx, "probability 0"));
    CHECK(plm_hmm_viterbi(&ctx, h, 3, y, path, &ll) == PLM_EDOM);
}

int main(void)
{
    plm_init();
    RUN(test_core_equals_enumeration);
    RUN(test_core_time_varying_equals_enumeration);
    RUN(test_core_peaked_emissions_stay_finite);
    RUN(test_core_underflowing_step_uses_logs);
    RUN(test_categorical_equals_enumeration);
    RUN(test_each_emission_family_equals_enumeration);
    RUN(test_predict_equals_enumeration);
    RUN(test_predict_normal_equals_enumeration);
    RUN(test_long_sequence_stays_finite);
    RUN(test_em_loglik_monotone);
    RUN(test_em_recovers_three_state_model);
    RUN(test_em_same_result_any_thread_count);
    RUN(test_stationary_and_entropy_rate);
    RUN(test_sample_state_frequencies);
    RUN(test_bad_input_names_argument_and_entry);
    RUN(test_impossible_data_reported);
    return CHECK_DONE();
}
