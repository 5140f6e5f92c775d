/* test_glmhmm.c -- switching GLM-HMMs: the E-step against brute-force enumeration of every state path, emission
** log-likelihoods against the GLM's formula, EM's objective never decreasing under each prior, and recovery of
** a simulated switching network (states after label matching, interaction supports, held-out likelihood)
** with and without the learnable priors, with negative controls. */
#include "check.h"
#include "plume.h"
#include "glmhmm.h"

#include <stdlib.h>

#include <gsl/gsl_randist.h>
#include <gsl/gsl_sf_gamma.h>

/* ---- a known switching network ---- */

typedef struct network {
    int K, N;
    int *type;        /* K*N*N true connection types -1, 0, +1 ([(k*N + i)*N + j]: j -> i) */
    plm_glmhmm *m;
} network;

/* K states over N neurons, one lag. A shared connectome (each ordered pair connected with probability pc,
** excitatory or inhibitory at random); each state keeps each connectome edge with probability keep, weight
** +-w0 (jittered by 10%), and has its own bias shift. Sticky transitions (self-transition stay). */
static network make_network(uint64_t seed, int K, int N, plm_glmhmm_family fam, double pc, double keep, double w0,
                            double base, double stay)
{
    network net = {K, N, malloc((size_t)K * N * N * sizeof(int)), NULL};
    const int P = 1 + N;
    double *W = calloc((size_t)K * N * P, sizeof *W), *init = malloc(K * sizeof *init), *trans = malloc(K * K * sizeof *trans);
    int *conn = malloc((size_t)N * N * sizeof *conn), k, i, j;
    plm_rng r;
    plm_ctx ctx;
    plm_rng_init(&r, seed, 0);
    for (i = 0; i < N * N; i++) conn[i] = plm_rng_uniform(&r) < pc ? (plm_rng_uniform(&r) < 0.5 ? 1 : -1) : 0;
    for (k = 0; k < K; k++) {
        const double shift = 1.0 * (plm_rng_uniform(&r) - 0.5);
        init[k] = 1.0 / K;
        for (j = 0; j < K; j++) trans[k * K + j] = K == 1 ? 1 : k == j ? stay : (1 - stay) / (K - 1);
        for (i = 0; i < N; i++) {
            W[((size_t)k * N + i) * P] = base + shift;
            for (j = 0; j < N; j++) {
                /* every neuron inhibits itself (refractoriness) in every state: it keeps a Poisson network stable */
                const int c = i == j ? -1 : conn[i * N + j] && plm_rng_uniform(&r) < keep ? conn[i * N + j] : 0;
                net.type[((size_t)k * N + i) * N + j] = c;
                W[((size_t)k * N + i) * P + 1 + j] = c * (i == j ? 1.5 : w0) * (1 + 0.5 * (2 * plm_rng_uniform(&r) - 1));
            }
        }
    }
    if (plm_glmhmm_new(&ctx, K, N, 1, fam, init, trans, W, &net.m)) printf("  make_network: %s\n", plm_ctx_errmsg(&ctx));
    free(W), free(init), free(trans), free(conn);
    return net;
}

static double *simulate(const network *net, size_t T, uint64_t seed, int *states)
{
    double *y = malloc(T * net->N * sizeof *y);
    plm_rng r;
    plm_ctx ctx;
    plm_rng_init(&r, seed, 7);
    if (plm_glmhmm_sample(&ctx, net->m, T, &r, states, y)) printf("  simulate: %s\n", plm_ctx_errmsg(&ctx));
    return y;
}

/* Best agreement of path with truth over all relabellings (K <= 5); perm[k] = true label of fitted state k. */
static double match_labels(int K, size_t T, const int *path, const int *truth, int *perm)
{
    int p[5], best[5], i;
    double best_acc = -1;
    long n = 1, q;
    for (i = 2; i <= K; i++) n *= i;
    for (q = 0; q < n; q++) {
        /* the q-th permutation by the factorial number system */
        int used[5] = {0}, c;
        long r = q, f = n;
        size_t t, hit = 0;
        for (i = 0; i < K; i++) {
            f /= (K - i);
            int idx = (int)(r / f);
            r %= f;
            for (c = 0;; c++)
                if (!used[c] && idx-- == 0) break;
            used[c] = 1, p[i] = c;
        }
        for (t = 0; t < T; t++) hit += p[path[t]] == truth[t];
        if ((double)hit / (double)T > best_acc) {
            best_acc = (double)hit / (double)T;
            memcpy(best, p, sizeof p);
        }
    }
    memcpy(perm, best, (size_t)K * sizeof *perm);
    return best_acc;
}

/* Estimated connection type of state k's j -> i: the one-hot posterior's mode, else the sign of a weight larger
** than thr in magnitude. */
static int est_type(const plm_glmhmm *m, int k, int i, int j, double thr)
{
    if (m->prior == PLM_GLMHMM_ONEHOT) {
        const double *r = m->resp + (((size_t)k * m->N + i) * m->N + j) * 3;
        return r[0] > r[1] && r[0] > r[2] ? -1 : r[2] > r[1] ? 1 : 0;
    } else {
        const double w = m->W[((size_t)k * m->N + i) * m->P + 1 + j];
        return w > thr ? 1 : w < -thr ? -1 : 0;
    }
}

/* Fraction of connections (all states, all ordered pairs) whose type is recovered, states matched by perm. */
static double support_acc(const network *net, const plm_glmhmm *m, const int *perm, double thr)
{
    const int K = net->K, N = net->N;
    int k, i, j, hit = 0;
    for (k = 0; k < K; k++)
        for (i = 0; i < N; i++)
            for (j = 0; j < N; j++) {
                int e = est_type(m, k, i, j, thr), t = net->type[((size_t)perm[k] * N + i) * N + j];
                hit += e == t;
            }
    return (double)hit / (K * N * N);
}

static plm_glmhmm *fit_opts(int K, int N, size_t T, const double *y, plm_glmhmm_family fam, plm_glmhmm_prior prior,
                            int iters, double tol, int restarts, double **trace, int *ntrace)
{
    plm_glmhmm_opts o;
    plm_glmhmm *m = NULL;
    plm_ctx ctx;
    double *tr = NULL;
    int n = 0;
    plm_glmhmm_fit_defaults(&o);
    o.K = K, o.L = 1, o.family = fam, o.prior = prior, o.seed = 1, o.iters = iters, o.tol = tol, o.restarts = restarts;
    if (plm_glmhmm_fit(&ctx, &o, T, N, y, &m, &tr, &n)) printf("  fit: %s\n", plm_ctx_errmsg(&ctx));
    if (trace) *trace = tr, *ntrace = n;
    return m;
}

/* ---- exact checks ---- */

/* Posterior, expected transition counts and log-likelihood of a 2-state, 2-neuron, 2-lag model on 7 bins equal
** the sums over all 2^7 state paths. */
static void test_expected_counts_equal_enumeration(void)
{
    enum { K = 2, N = 2, L = 2, T = 7 };
    const int P = 1 + N * L;
    double W[K * N * (1 + N * L)], init[K] = {0.3, 0.7}, trans[K * K] = {0.8, 0.2, 0.35, 0.65};
    double y[T * N] = {1, 0, 0, 1, 1, 1, 0, 0, 2, 1, 0, 3, 1, 0}, logB[T * K], post[T * K], xi[K * K], ll;
    double bpost[T * K] = {0}, bxi[K * K] = {0}, Z = 0;
    plm_glmhmm *m;
    plm_ctx ctx;
    plm_rng r;
    int p, t, k;
    plm_rng_init(&r, 5, 0);
    for (p = 0; p < K * N * P; p++) W[p] = plm_rng_normal(&r) * 0.5;
    CHECK(plm_glmhmm_new(&ctx, K, N, L, PLM_GLMHMM_POISSON, init, trans, W, &m) == PLM_OK);
    CHECK(plm_glmhmm_emit_loglik(&ctx, m, T, y, logB) == PLM_OK);
    CHECK(plm_glmhmm_expected_counts(&ctx, m, T, y, post, xi, &ll) == PLM_OK);
    for (p = 0; p < 1 << T; p++) {
        double lp = log(init[p & 1]) + logB[p & 1], w;
        for (t = 1; t < T; t++) {
            const int a = (p >> (t - 1)) & 1, b = (p >> t) & 1;
            lp += log(trans[a * K + b]) + logB[t * K + b];
        }
        w = exp(lp);
        Z += w;
        for (t = 0; t < T; t++) bpost[t * K + ((p >> t) & 1)] += w;
        for (t = 0; t + 1 < T; t++) bxi[((p >> t) & 1) * K + ((p >> (t + 1)) & 1)] += w;
    }
    CHECK_NEAR(ll, log(Z), 1e-10);
    for (t = 0; t < T; t++)
        for (k = 0; k < K; k++) CHECK_NEAR(post[t * K + k], bpost[t * K + k] / Z, 1e-12);
    for (k = 0; k < K * K; k++) CHECK_NEAR(xi[k], bxi[k] / Z, 1e-12);
}

/* Emission log-likelihoods equal the Poisson and Bernoulli GLM formulas, lags included (zero before bin 1). */
static void test_emit_loglik_matches_glm_formula(void)
{
    enum { K = 2, N = 3, L = 2, T = 5 };
    const int P = 1 + N * L;
    double W[K * N * (1 + N * L)], init[K] = {0.5, 0.5}, trans[K * K] = {0.9, 0.1, 0.1, 0.9};
    double yp[T * N] = {0, 1, 2, 1, 0, 0, 3, 1, 1, 0, 0, 0, 1, 2, 0}, yb[T * N], logB[T * K];
    plm_glmhmm *m;
    plm_ctx ctx;
    plm_rng r;
    int p, t, k, i, l, j, fam;
    plm_rng_init(&r, 6, 0);
    for (p = 0; p < K * N * P; p++) W[p] = plm_rng_normal(&r) * 0.4;
    for (p = 0; p < T * N; p++) yb[p] = yp[p] > 0;
    for (fam = 0; fam < 2; fam++) {
        const double *y = fam == 0 ? yp : yb;
        CHECK(plm_glmhmm_new(&ctx, K, N, L, fam == 0 ? PLM_GLMHMM_POISSON : PLM_GLMHMM_BERNOULLI, init, trans, W, &m) == PLM_OK);
        CHECK(plm_glmhmm_emit_loglik(&ctx, m, T, y, logB) == PLM_OK);
        for (t = 0; t < T; t++)
            for (k = 0; k < K; k++) {
                double s = 0;
                for (i = 0; i < N; i++) {
                    const double *b = W + (k * N + i) * P;
                    double eta = b[0];
                    for (l = 0; l < L; l++)
                        for (j = 0; j < N; j++)
                            if (t - l - 1 >= 0) eta += b[1 + l * N + j] * y[(t - l - 1) * N + j];
                    if (fam == 0) s += log(gsl_ran_poisson_pdf((unsigned)y[t * N + i], exp(eta)));
                    else s += log(gsl_ran_bernoulli_pdf((unsigned)y[t * N + i], 1 / (1 + exp(-eta))));
                }
                CHECK_NEAR(logB[t * K + k], s, 1e-10);
            }
    }
}

/* EM's objective (log-likelihood + log prior) never decreases, under each prior and family, and the model's
** loglik + logprior is the last value of the trace. */
static void test_em_objective_never_decreases(void)
{
    const size_t T = 600;
    int fam, pr;
    for (fam = 0; fam < 2; fam++) {
        network net = make_network(11 + fam, 2, 5, fam == 0 ? PLM_GLMHMM_POISSON : PLM_GLMHMM_BERNOULLI, 0.3, 0.8,
                                   fam == 0 ? 0.5 : 1.5, fam == 0 ? log(0.3) : log(0.25), 0.97);
        int *z = malloc(T * sizeof *z);
        double *y = simulate(&net, T, 12, z);
        for (pr = 0; pr < 3; pr++) {
            double *tr;
            int n, i, down = 0;
            plm_glmhmm *m = fit_opts(2, 5, T, y, net.m->family, (plm_glmhmm_prior)pr, 40, 0, 2, &tr, &n);
            CHECK(m != NULL);
            if (!m) continue;
            CHECK(n >= 5);
            for (i = 1; i < n; i++) down += tr[i] < tr[i - 1];
            CHECK(down == 0);
            CHECK(tr[n - 1] > tr[0]);
            CHECK_REL(m->loglik + m->logprior, tr[n - 1], 1e-12);
        }
        free(z), free(y), free(net.type);
    }
}

/* ---- a simulated switching network ---- */

typedef struct outcome {
    double acc[3];        /* Viterbi state accuracy after label matching, per prior */
    double supp[3];       /* connection types recovered (one-hot: posterior mode; others: |w| > 0.3) */
    double heldout[3];    /* held-out log-likelihood */
    double acc_shifted;   /* negative control: one-hot path against the truth shifted by half the bins */
    double supp_other;    /* negative control: one-hot types against another network's */
} outcome;

/* Bernoulli network: 3 states, 10 neurons, a shared connectome (40% of pairs) of which each state keeps 80%,
** weights +-1.5 modulated by up to 50% per state, 2000 bins to fit and 2000 held out. */
static outcome run_network(uint64_t seed)
{
    const size_t T = 2000;
    const int K = 3, N = 10;
    network net = make_network(seed, K, N, PLM_GLMHMM_BERNOULLI, 0.4, 0.8, 1.5, log(0.25), 0.98);
    network other = make_network(seed + 1000, K, N, PLM_GLMHMM_BERNOULLI, 0.4, 0.8, 1.5, log(0.25), 0.98);
    int *z = malloc(T * sizeof *z), *zt = malloc(T * sizeof *zt), *path = malloc(T * sizeof *path), *shifted = malloc(T * sizeof *shifted);
    double *y = simulate(&net, T, seed + 1, z), *yt = simulate(&net, T, seed + 2, zt), lp;
    outcome out;
    plm_ctx ctx;
    size_t t;
    int pr, perm[5];
    memset(&out, 0, sizeof out);
    for (t = 0; t < T; t++) shifted[t] = z[(t + T / 2) % T];
    for (pr = 0; pr < 3; pr++) {
        plm_glmhmm *m = fit_opts(K, N, T, y, PLM_GLMHMM_BERNOULLI, (plm_glmhmm_prior)pr, 200, 1e-3, 3, NULL, NULL);
        CHECK(m != NULL);
        if (!m) continue;
        CHECK(plm_glmhmm_viterbi(&ctx, m, T, y, path, &lp) == PLM_OK);
        out.acc[pr] = match_labels(K, T, path, z, perm);
        out.supp[pr] = support_acc(&net, m, perm, 0.3);
        CHECK(plm_glmhmm_loglik(&ctx, m, T, yt, &out.heldout[pr]) == PLM_OK);
        if (pr == PLM_GLMHMM_ONEHOT) {
            int perm2[5];
            out.acc_shifted = match_labels(K, T, path, shifted, perm2);
            out.supp_other = support_acc(&other, m, perm, 0.3);
        }
    }
    printf("  seed %d: accuracy none %.3f gaussian %.3f onehot %.3f; types %.3f %.3f %.3f; held-out %.1f %.1f %.1f; "
           "controls %.3f %.3f\n", (int)seed, out.acc[0], out.acc[1], out.acc[2], out.supp[0], out.supp[1], out.supp[2],
           out.heldout[0], out.heldout[1], out.heldout[2], out.acc_shifted, out.supp_other);
    free(z), free(zt), free(path), free(shifted), free(y), free(yt), free(net.type), free(other.type);
    return out;
}

/* On two simulated networks (fixed seeds), the one-hot prior recovers the states (after label matching) and the
** connection types better than the prior-free GLM-HMM (averaged over the two), and has the highest held-out
** log-likelihood of the three priors on each. The Gaussian prior's rank against no prior is printed, not
** asserted: in these simulations it is not stable (see doc/manual.md). Negative controls: the same scores
** against a shifted state path and another network's connections are near chance. */
static void test_onehot_prior_beats_prior_free(void)
{
    outcome a = run_network(100), b = run_network(101);
    CHECK(a.acc[2] + b.acc[2] > a.acc[0] + b.acc[0]);
    CHECK(a.acc[2] > 0.8 && b.acc[2] > 0.8);
    CHECK(a.supp[2] > a.supp[0] && b.supp[2] > b.supp[0]);
    CHECK(a.supp[2] > 0.85 && b.supp[2] > 0.85);
    CHECK(a.heldout[2] > a.heldout[0] && a.heldout[2] > a.heldout[1]);
    CHECK(b.heldout[2] > b.heldout[0] && b.heldout[2] > b.heldout[1]);
    /* controls: with 3 sticky states a shifted path matches about 1/3 to 1/2 of bins; another network's types
    ** match the unconnected majority but not the rest */
    CHECK(a.acc_shifted < 0.6 && b.acc_shifted < 0.6);
    CHECK(a.supp_other < a.supp[2] - 0.15 && b.supp_other < b.supp[2] - 0.15);
}

/* ---- bad input ---- */

static void test_bad_input_is_named(void)
{
    double y[4] = {0, 1, 2.5, 0}, yb[4] = {0, 1, 2, 0}, *tr;
    plm_glmhmm_opts o;
    plm_glmhmm *m;
    plm_ctx ctx;
    int n;
    plm_glmhmm_fit_defaults(&o);
    CHECK(plm_glmhmm_fit(&ctx, &o, 2, 2, y, &m, &tr, &n) == PLM_EDOM);
    CHECK(strstr(plm_ctx_errmsg(&ctx), "spikes[2][1] is 2.5") != NULL);
    o.family = PLM_GLMHMM_BERNOULLI;
    CHECK(plm_glmhmm_fit(&ctx, &o, 2, 2, yb, &m, &tr, &n) == PLM_EDOM);
    CHECK(strstr(plm_ctx_errmsg(&ctx), "bernoulli model needs 0 or 1") != NULL);
    o.K = 0;
    CHECK(plm_glmhmm_fit(&ctx, &o, 2, 2, yb, &m, &tr, &n) == PLM_EINVAL);
    CHECK(strstr(plm_ctx_errmsg(&ctx), "K must be in 1..64 (got 0)") != NULL);
}

int main(void)
{
    plm_init();
    RUN(test_expected_counts_equal_enumeration);
    RUN(test_emit_loglik_matches_glm_formula);
    RUN(test_em_objective_never_decreases);
    RUN(test_onehot_prior_beats_prior_free);
    RUN(test_bad_input_is_named);
    return CHECK_DONE();
}
