/* test_bffg.c -- backward filtering, forward guiding against exact references: the Kalman filter and RTS
** smoother (runtime/lgssm.h), the forward algorithm and forward-backward marginals (runtime/hmm.h), the exact
** likelihood of a CTMC observed at discrete times (runtime/ctmc.h), and, on a 20-tip tree, the multivariate normal
** density built from shared path lengths and Felsenstein's pruning written here. Statistical checks use fixed
** seeds and tolerances of 4.5 Monte Carlo standard errors; each has a negative control that must fail them. */
#include "check.h"
#include "bffg_chain.h"
#include "plume.h"

#include <gsl/gsl_linalg.h>
#include <stdlib.h>

#define LOG_2PI 1.8378770664093454836

static plm_ctx ctx;

/* ---- the linear-Gaussian chain of the issue (also Mitosis.jl's example) --------------------------------- */

static const double Phi[4] = {0.8, 0.5, -0.1, 0.8}, beta2[2] = {0.1, 0.2}, Q2[4] = {0.2, 0, 0, 1};
static const double m0[2] = {1, 0}, P0[4] = {1, 0, 0, 1}, Cobs[2] = {1, 0}, Robs[1] = {1};
#define TL 10

static double ys_lg[TL];

static plm_lgssm *lg_reference(const double *A, const double *Q)
{
    plm_lgssm_spec sp = {2, 1, A, beta2, Q, Cobs, NULL, Robs, m0, P0};
    plm_lgssm *s = NULL;
    CHECK(plm_lgssm_new(&ctx, &sp, &s) == PLM_OK);
    return s;
}

/* x0 ~ N(m0, P0); x_t = A x_{t-1} + beta + N(0, Q); y_t = x_t[1] + N(0, 1), t = 1..T. Node order: x0, x1, y1,
** x2, y2, ... The transition kernels get the auxiliary (Aaux, Qaux) when Aaux is not NULL. */
static plm_bffg_model *lg_chain(const double *A, const double *Q, const double *Aaux, const double *Qaux)
{
    plm_bffg_model *m;
    plm_bffg_kernel *prior, *trans, *obs, *aux;
    int t, prev;
    CHECK(plm_bffg_model_new(&ctx, &m) == PLM_OK);
    CHECK(plm_bffg_kernel_linear_gaussian(&ctx, 2, 0, NULL, m0, P0, &prior) == PLM_OK);
    CHECK(plm_bffg_kernel_linear_gaussian(&ctx, 2, 2, A, beta2, Q, &trans) == PLM_OK);
    CHECK(plm_bffg_kernel_linear_gaussian(&ctx, 1, 2, Cobs, NULL, Robs, &obs) == PLM_OK);
    if (Aaux) {
        CHECK(plm_bffg_kernel_linear_gaussian(&ctx, 2, 2, Aaux, NULL, Qaux, &aux) == PLM_OK);
        CHECK(plm_bffg_kernel_set_aux(&ctx, trans, aux) == PLM_OK);
    }
    CHECK(plm_bffg_add(&ctx, m, "x0", -1, prior, NULL, &prev) == PLM_OK);
    for (t = 1; t <= TL; t++) {
        prev = bffg_step(&ctx, m, t, prev, trans, obs, &ys_lg[t - 1]);
    }
    return m;
}

static void lg_data(void)
{
    plm_lgssm *s = lg_reference(Phi, Q2);
    plm_rng r;
    plm_rng_init(&r, 2024, 0);
    CHECK(plm_lgssm_sample(&ctx, s, TL, &r, NULL, ys_lg) == PLM_OK);
}

static void test_lg_chain_loglik_equals_kalman_and_weight_is_constant(void)
{
    plm_bffg_model *m = lg_chain(Phi, Q2, NULL, NULL);
    plm_bffg_filter *f;
    double kal, lw[500], draws[500 * 2 * (TL + 1)], *edge = malloc(500 * (2 * TL + 1) * sizeof *edge);
    int s, i;
    CHECK(plm_lgssm_loglik(&ctx, lg_reference(Phi, Q2), TL, ys_lg, &kal) == PLM_OK);
    CHECK(plm_bffg_backward(&ctx, m, NULL, &f) == PLM_OK);
    CHECK_NEAR(plm_bffg_filter_loglik(f), kal, 1e-10);
    CHECK(plm_bffg_draw_width(m) == 2 * (TL + 1));
    CHECK(plm_bffg_forward(&ctx, f, 500, 7, 1, draws, lw, edge) == PLM_OK);
    for (s = 0; s < 500; s++) {
        double sum = 0;
        CHECK_NEAR(lw[s], kal, 1e-9);
        for (i = 0; i < 2 * TL + 1; i++) sum += edge[s * (2 * TL + 1) + i];
        CHECK_NEAR(sum, lw[s], 1e-12);
    }
    CHECK_NEAR(plm_bffg_ess(lw, 500), 500, 1e-6);
    CHECK_NEAR(plm_bffg_logmeanexp(lw, 500), kal, 1e-9);
    free(edge);
}

/* A singular transition noise (the second coordinate moves deterministically) and a fixed start: nothing is
** inverted, and the Kalman filter (which allows a singular Q) agrees. */
static void test_lg_singular_noise_and_fixed_root_equal_kalman(void)
{
    static const double Qs[4] = {0.3, 0, 0, 0}, Z[4] = {0, 0, 0, 0};
    plm_lgssm_spec sp = {2, 1, Phi, beta2, Qs, Cobs, NULL, Robs, m0, Z};
    plm_lgssm *ref;
    plm_bffg_model *m;
    plm_bffg_kernel *prior, *trans, *obs;
    plm_bffg_filter *f;
    double kal, lw[200], draws[200 * 2 * (TL + 1)];
    int t, prev, s;
    CHECK(plm_lgssm_new(&ctx, &sp, &ref) == PLM_OK);
    CHECK(plm_lgssm_loglik(&ctx, ref, TL, ys_lg, &kal) == PLM_OK);
    CHECK(plm_bffg_model_new(&ctx, &m) == PLM_OK);
    CHECK(plm_bffg_kernel_linear_gaussian(&ctx, 2, 0, NULL, m0, Z, &prior) == PLM_OK);
    CHECK(plm_bffg_kernel_linear_gaussian(&ctx, 2, 2, Phi, beta2, Qs, &trans) == PLM_OK);
    CHECK(plm_bffg_kernel_linear_gaussian(&ctx, 1, 2, Cobs, NULL, Robs, &obs) == PLM_OK);
    CHECK(plm_bffg_add(&ctx, m, "x0", -1, prior, NULL, &prev) == PLM_OK);
    for (t = 1; t <= TL; t++) {
        prev = bffg_step(&ctx, m, t, prev, trans, obs, &ys_lg[t - 1]);
    }
    CHECK(plm_bffg_backward(&ctx, m, NULL, &f) == PLM_OK);
    CHECK_NEAR(plm_bffg_filter_loglik(f), kal, 1e-9);
    CHECK(plm_bffg_forward(&ctx, f, 200, 3, 1, draws, lw, NULL) == PLM_OK);
    for (s = 0; s < 200; s++) {
        CHECK_NEAR(lw[s], kal, 1e-9);
        CHECK(draws[s * 2 * (TL + 1)] == m0[0] && draws[s * 2 * (TL + 1) + 1] == m0[1]);   /* the fixed root */
        /* the noiseless coordinate follows x_t[2] = -0.1 x_{t-1}[1] + 0.8 x_{t-1}[2] + 0.2 exactly */
        CHECK_NEAR(draws[s * 2 * (TL + 1) + 3], -0.1 * draws[s * 2 * (TL + 1)] + 0.8 * draws[s * 2 * (TL + 1) + 1] + 0.2, 1e-12);
    }
}

/* Largest |z| over the means and variances of x_1..x_T[j] from weighted draws against the smoother's marginals.
** Means: z = (mean - m) / (sd / sqrt(ess)); variances: z = (var - P) / (P sqrt(2 / ess)). */
static double lg_max_z(const double *draws, const double *lw, size_t n, const double *sm, const double *sc,
                       int variances)
{
    double mx = -INFINITY, W = 0, W2 = 0, worst = 0, ess;
    size_t s;
    int t, j;
    double *w = malloc(n * sizeof *w);
    for (s = 0; s < n; s++) mx = fmax(mx, lw[s]);
    for (s = 0; s < n; s++) w[s] = exp(lw[s] - mx), W += w[s], W2 += w[s] * w[s];
    ess = W * W / W2;
    for (t = 1; t <= TL; t++)
        for (j = 0; j < 2; j++) {
            double m = sm[(t - 1) * 2 + j], P = sc[(t - 1) * 4 + j * 3], mean = 0, var = 0, z;
            for (s = 0; s < n; s++) mean += w[s] * draws[s * 2 * (TL + 1) + 2 * t + j];
            mean /= W;
            for (s = 0; s < n; s++) {
                double d = draws[s * 2 * (TL + 1) + 2 * t + j] - mean;
                var += w[s] * d * d;
            }
            var /= W;
            z = variances ? (var - P) / (P * sqrt(2 / ess)) : (mean - m) / sqrt(P / ess);
            worst = fmax(worst, fabs(z));
        }
    free(w);
    return worst;
}

static void test_lg_guided_draws_have_the_smoother_marginals(void)
{
    enum { N = 20000 };
    static const double Pwrong[4] = {0.6, 0.5, -0.1, 0.8};
    double sm[2 * TL], sc[4 * TL], *draws = malloc(N * 2 * (TL + 1) * sizeof *draws), *lw = malloc(N * sizeof *lw);
    plm_bffg_filter *f;
    CHECK(plm_lgssm_smooth(&ctx, lg_reference(Phi, Q2), TL, ys_lg, sm, sc, NULL) == PLM_OK);
    CHECK(plm_bffg_backward(&ctx, lg_chain(Phi, Q2, NULL, NULL), NULL, &f) == PLM_OK);
    CHECK(plm_bffg_forward(&ctx, f, N, 11, 0, draws, lw, NULL) == PLM_OK);
    CHECK(lg_max_z(draws, lw, N, sm, sc, 0) < 4.5);
    CHECK(lg_max_z(draws, lw, N, sm, sc, 1) < 4.5);
    /* negative control: the guided draws of a different transition matrix miss the smoother's means */
    CHECK(plm_bffg_backward(&ctx, lg_chain(Pwrong, Q2, NULL, NULL), NULL, &f) == PLM_OK);
    CHECK(plm_bffg_forward(&ctx, f, N, 11, 0, draws, lw, NULL) == PLM_OK);
    CHECK(lg_max_z(draws, lw, N, sm, sc, 0) > 4.5);
    free(draws), free(lw);
}

/* The backward filter runs through a wrong auxiliary (A scaled by 0.7, no drift, Q doubled); forward guiding
** draws from the true kernels tilted by those messages. The weights then vary, the unweighted draws are biased
** (negative control), and the weighted ones have the smoother's means; the likelihood estimate is unbiased. */
static void test_lg_wrong_auxiliary_reweighted_means_match(void)
{
    enum { N = 40000 };
    static const double Aaux[4] = {0.56, 0.35, -0.07, 0.56}, Qaux[4] = {0.4, 0, 0, 2};
    double sm[2 * TL], sc[4 * TL], kal, *draws = malloc(N * 2 * (TL + 1) * sizeof *draws), *lw = malloc(N * sizeof *lw);
    double *flat = calloc(N, sizeof *flat), ess, lme, mean = 0, var = 0, se;
    plm_bffg_filter *f;
    size_t s;
    CHECK(plm_lgssm_smooth(&ctx, lg_reference(Phi, Q2), TL, ys_lg, sm, sc, &kal) == PLM_OK);
    CHECK(plm_bffg_backward(&ctx, lg_chain(Phi, Q2, Aaux, Qaux), NULL, &f) == PLM_OK);
    CHECK(fabs(plm_bffg_filter_loglik(f) - kal) > 0.1);   /* the auxiliary model's likelihood, not the model's */
    CHECK(plm_bffg_forward(&ctx, f, N, 5, 0, draws, lw, NULL) == PLM_OK);
    for (s = 0; s < N; s++) mean += lw[s] / N;
    for (s = 0; s < N; s++) var += (lw[s] - mean) * (lw[s] - mean) / N;
    CHECK(sqrt(var) > 0.05);
    ess = plm_bffg_ess(lw, N);
    CHECK(ess > 0.05 * N && ess < 0.99 * N);
    CHECK(lg_max_z(draws, lw, N, sm, sc, 0) < 4.5);
    CHECK(lg_max_z(draws, flat, N, sm, sc, 0) > 4.5);
    /* log of a mean of N weights: its standard error is about sqrt((N/ess - 1) / N) */
    lme = plm_bffg_logmeanexp(lw, N);
    se = sqrt((N / ess - 1) / N);
    CHECK_NEAR(lme, kal, 4.5 * se + 1e-9);
    free(draws), free(lw), free(flat);
}

static void test_forward_is_the_same_for_any_thread_count(void)
{
    enum { N = 3000 };
    static const double Aaux[4] = {0.56, 0.35, -0.07, 0.56}, Qaux[4] = {0.4, 0, 0, 2};
    double *d1 = malloc(N * 2 * (TL + 1) * sizeof *d1), *d2 = malloc(N * 2 * (TL + 1) * sizeof *d2);
    double w1[N], w2[N];
    plm_bffg_filter *f;
    CHECK(plm_bffg_backward(&ctx, lg_chain(Phi, Q2, Aaux, Qaux), NULL, &f) == PLM_OK);
    CHECK(plm_bffg_forward(&ctx, f, N, 9, 1, d1, w1, NULL) == PLM_OK);
    CHECK(plm_bffg_forward(&ctx, f, N, 9, 3, d2, w2, NULL) == PLM_OK);
    CHECK(memcmp(d1, d2, N * 2 * (TL + 1) * sizeof *d1) == 0);
    CHECK(memcmp(w1, w2, sizeof w1) == 0);
    free(d1), free(d2);
}

/* ---- discrete chain against the forward algorithm and forward-backward -------------------------------- */

#define TD 30
static const double init3[3] = {0.5, 0.3, 0.2};
static const double trans3[9] = {0.8, 0.15, 0.05, 0.1, 0.7, 0.2, 0.25, 0.25, 0.5};
static const double emit34[12] = {0.6, 0.2, 0.1, 0.1, 0.1, 0.6, 0.2, 0.1, 0.05, 0.05, 0.3, 0.6};

/* x1 ~ init; y_t ~ emit[x_t]; x_{t+1} ~ trans[x_t]. Latent nodes x1..xT in order. */
static plm_bffg_model *disc_chain(const double *trans, const double *y)
{
    plm_bffg_model *m;
    plm_bffg_kernel *prior, *tr, *em;
    int t, prev = -1;
    CHECK(plm_bffg_model_new(&ctx, &m) == PLM_OK);
    CHECK(plm_bffg_kernel_discrete(&ctx, 0, 3, init3, &prior) == PLM_OK);
    CHECK(plm_bffg_kernel_discrete(&ctx, 3, 3, trans, &tr) == PLM_OK);
    CHECK(plm_bffg_kernel_discrete(&ctx, 3, 4, emit34, &em) == PLM_OK);
    for (t = 1; t <= TD; t++) {
        prev = bffg_step(&ctx, m, t, prev, t == 1 ? prior : tr, em, &y[t - 1]);
    }
    return m;
}

/* Largest |z| of state frequencies at each t against post (T*3): z = (f - p) / sqrt(p (1 - p) / n). */
static double disc_max_z(const double *draws, size_t n, const double *post)
{
    double worst = 0;
    int t, k;
    for (t = 0; t < TD; t++)
        for (k = 0; k < 3; k++) {
            double p = post[t * 3 + k], cnt = 0;
            size_t s;
            for (s = 0; s < n; s++) cnt += draws[s * TD + t] == k;
            if (p > 1e-12) worst = fmax(worst, fabs(cnt / n - p) / sqrt(p * (1 - p) / n));
            else if (cnt > 0) worst = INFINITY;
        }
    return worst;
}

static void test_discrete_chain_weight_equals_forward_algorithm_and_marginals_match(void)
{
    enum { N = 20000 };
    static const double wrong[9] = {0.5, 0.3, 0.2, 0.3, 0.4, 0.3, 0.25, 0.25, 0.5};
    plm_hmm *h;
    plm_rng r;
    int states[TD];
    double y[TD], ll, post[TD * 3], *draws = malloc(N * TD * sizeof *draws), *lw = malloc(N * sizeof *lw);
    plm_bffg_filter *f;
    size_t s;
    CHECK(plm_hmm_new_categorical(&ctx, 3, 4, init3, trans3, emit34, &h) == PLM_OK);
    plm_rng_init(&r, 77, 0);
    CHECK(plm_hmm_sample(&ctx, h, TD, &r, states, y) == PLM_OK);
    CHECK(plm_hmm_posterior(&ctx, h, TD, y, post, &ll) == PLM_OK);
    CHECK(plm_bffg_backward(&ctx, disc_chain(trans3, y), NULL, &f) == PLM_OK);
    CHECK_NEAR(plm_bffg_filter_loglik(f), ll, 1e-10);
    CHECK(plm_bffg_forward(&ctx, f, N, 1, 0, draws, lw, NULL) == PLM_OK);
    for (s = 0; s < N; s++) CHECK_NEAR(lw[s], ll, 1e-9);
    CHECK(disc_max_z(draws, N, post) < 4.5);
    /* negative control: guided draws under another transition matrix */
    CHECK(plm_bffg_backward(&ctx, disc_chain(wrong, y), NULL, &f) == PLM_OK);
    CHECK(plm_bffg_forward(&ctx, f, N, 1, 0, draws, lw, NULL) == PLM_OK);
    CHECK(disc_max_z(draws, N, post) > 4.5);
    free(draws), free(lw);
}

/* ---- CTMC observed at discrete times ------------------------------------------------------------------ */

/* x(t_1) ~ init, x(t_{i+1}) | x(t_i) ~ exp(Q (t_{i+1} - t_i)), each state observed exactly (identity emission):
** log p = log init[s_1] + plm_ctmc_loglik_obs. */
static void test_ctmc_observed_states_weight_equals_exact_likelihood(void)
{
    static const double Q[9] = {-3, 2, 1, 0.5, -0.5, 0, 0, 4, -4}, I3[9] = {1, 0, 0, 0, 1, 0, 0, 0, 1};
    static const double init[3] = {0.2, 0.5, 0.3}, times[6] = {0, 0.3, 0.35, 1.2, 2.0, 4.5};
    static const int st[6] = {1, 0, 0, 2, 1, 1};
    plm_ctmc *c;
    plm_bffg_model *m;
    plm_bffg_kernel *prior, *id, *k;
    plm_bffg_filter *f;
    double exact, lw[100], draws[100 * 6];
    int i, prev = -1, s;
    CHECK(plm_ctmc_new(&ctx, Q, 3, &c) == PLM_OK);
    CHECK(plm_ctmc_loglik_obs(&ctx, c, 6, times, st, &exact) == PLM_OK);
    exact += log(init[st[0]]);
    CHECK(plm_bffg_model_new(&ctx, &m) == PLM_OK);
    CHECK(plm_bffg_kernel_discrete(&ctx, 0, 3, init, &prior) == PLM_OK);
    CHECK(plm_bffg_kernel_discrete(&ctx, 3, 3, I3, &id) == PLM_OK);
    for (i = 0; i < 6; i++) {
        double v = st[i];
        if (i) CHECK(plm_bffg_kernel_ctmc(&ctx, c, times[i] - times[i - 1], &k) == PLM_OK);
        prev = bffg_step(&ctx, m, i + 1, prev, i ? k : prior, id, &v);
    }
    CHECK(plm_bffg_backward(&ctx, m, NULL, &f) == PLM_OK);
    CHECK_NEAR(plm_bffg_filter_loglik(f), exact, 1e-12);
    CHECK(plm_bffg_forward(&ctx, f, 100, 2, 1, draws, lw, NULL) == PLM_OK);
    for (s = 0; s < 100; s++) {
        CHECK_NEAR(lw[s], exact, 1e-12);
        for (i = 0; i < 6; i++) CHECK(draws[s * 6 + i] == st[i]);   /* observed exactly: the path is forced */
    }
}

/* ---- Brownian motion on a 20-tip tree ----------------------------------------------------------------- */

#define NT 20
#define NN (2 * NT - 1)

typedef struct tree20 {
    int parent[NN];
    double len[NN], depth[NN];
    int tip[NN];
} tree20;

/* A random rooted binary tree: start from NT tips, join two random clades under a new node until one is left;
** then renumber so parents come first (node 0 is the root). */
static void random_tree(tree20 *T, uint64_t seed)
{
    int clade[NT], nclade = NT, next = NT, par[NN], order[NN], pos[NN], i, n = 0, head = 0;
    double len[NN];
    plm_rng r;
    plm_rng_init(&r, seed, 0);
    for (i = 0; i < NT; i++) clade[i] = i;
    for (i = 0; i < NN; i++) par[i] = -1, len[i] = 0.1 + 2 * plm_rng_uniform(&r);
    while (nclade > 1) {
        int a = (int)plm_rng_uint(&r, (uint64_t)nclade), b;
        int ca = clade[a];
        clade[a] = clade[--nclade];
        b = (int)plm_rng_uint(&r, (uint64_t)nclade);
        par[ca] = next, par[clade[b]] = next;
        clade[b] = next++;
    }
    /* breadth-first from the root (the last node made) */
    order[n++] = NN - 1;
    while (head < n) {
        int u = order[head++];
        for (i = 0; i < NN; i++)
            if (par[i] == u) order[n++] = i;
    }
    for (i = 0; i < NN; i++) pos[order[i]] = i;
    for (i = 0; i < NN; i++) {
        int u = order[i];
        T->parent[i] = par[u] < 0 ? -1 : pos[par[u]];
        T->len[i] = par[u] < 0 ? 0 : len[u];
        T->tip[i] = u < NT;
        T->depth[i] = T->parent[i] < 0 ? 0 : T->depth[T->parent[i]] + T->len[i];
    }
}

/* Exact: tips ~ N(mu0 1, s0^2 11' + sigma2 C), C_ij = depth of the most recent common ancestor of tips i, j. */
static double tree_mvn(const tree20 *T, double mu0, double s0sq, double sigma2, const double *y)
{
    int idx[NT], n = 0, i, j;
    double S[NT * NT], e[NT], ll = 0;
    gsl_matrix_view Sv;
    for (i = 0; i < NN; i++)
        if (T->tip[i]) idx[n++] = i;
    for (i = 0; i < NT; i++)
        for (j = 0; j < NT; j++) {
            int a = idx[i], b = idx[j];
            while (a != b) {   /* climb the deeper (higher-numbered: preorder) of the two */
                if (a > b) a = T->parent[a];
                else b = T->parent[b];
            }
            S[i * NT + j] = s0sq + sigma2 * T->depth[a];
        }
    Sv = gsl_matrix_view_array(S, NT, NT);
    CHECK(gsl_linalg_cholesky_decomp1(&Sv.matrix) == 0);
    for (i = 0; i < NT; i++) {
        double acc = y[idx[i]] - mu0;
        for (j = 0; j < i; j++) acc -= S[i * NT + j] * e[j];
        e[i] = acc / S[i * NT + i];
        ll += -0.5 * e[i] * e[i] - log(S[i * NT + i]) - 0.5 * LOG_2PI;
    }
    return ll;
}

/* Felsenstein (1973) pruning: each node's likelihood of the tips below is k N(x; m, v); a branch of length t adds
** sigma2 t to v; siblings multiply, which costs the factor N(m1; m2, v1 + v2). */
static double tree_pruning(const tree20 *T, double mu0, double s0sq, double sigma2, const double *y)
{
    double m[NN], v[NN], lk[NN];
    int have[NN] = {0}, i;
    for (i = NN - 1; i >= 0; i--) {
        double mi, vi;
        if (T->tip[i]) m[i] = y[i], v[i] = 0, lk[i] = 0;
        if (i == 0) break;
        mi = m[i], vi = v[i] + sigma2 * T->len[i];
        {
            int p = T->parent[i];
            if (!have[p]) {
                m[p] = mi, v[p] = vi, lk[p] = lk[i];
                have[p] = 1;
            } else {
                double V = v[p] + vi, d = m[p] - mi;
                lk[p] += lk[i] - 0.5 * d * d / V - 0.5 * log(V) - 0.5 * LOG_2PI;
                m[p] = (m[p] * vi + mi * v[p]) / V;
                v[p] = v[p] * vi / V;
            }
        }
    }
    {
        double V = v[0] + s0sq, d = m[0] - mu0;
        return lk[0] - 0.5 * d * d / V - 0.5 * log(V) - 0.5 * LOG_2PI;
    }
}

static void tree_newick_text(const tree20 *T, int u, char *out, size_t cap)
{
    size_t n = strlen(out);
    int i, first = 1;
    if (T->tip[u]) {
        snprintf(out + n, cap - n, "t%d:%.17g", u, T->len[u]);
        return;
    }
    snprintf(out + n, cap - n, "(");
    for (i = 0; i < NN; i++)
        if (T->parent[i] == u) {
            if (!first) strncat(out, ",", cap - strlen(out) - 1);
            first = 0;
            tree_newick_text(T, i, out, cap);
        }
    n = strlen(out);
    snprintf(out + n, cap - n, ")n%d:%.17g", u, T->len[u]);
}

static void test_tree_brownian_loglik_equals_mvn_and_pruning(void)
{
    const double mu0 = 0.3, s0sq = 4, sigma2 = 0.7;
    tree20 T;
    double y[NN] = {0}, mvn, prune, lw[300], *draws;
    char text[8192] = "";
    plm_tree *pt;
    plm_bffg_model *m;
    plm_bffg_kernel *prior, *k;
    plm_bffg_filter *f;
    plm_rng r;
    int i, s, index[NN];
    random_tree(&T, 12);
    plm_rng_init(&r, 13, 0);
    for (i = 0; i < NN; i++) if (T.tip[i]) y[i] = 2 * plm_rng_normal(&r);
    mvn = tree_mvn(&T, mu0, s0sq, sigma2, y);
    prune = tree_pruning(&T, mu0, s0sq, sigma2, y);
    CHECK_NEAR(prune, mvn, 1e-10);
    /* the model from the tree's Newick text, as plume.tree.newick builds it */
    tree_newick_text(&T, 0, text, sizeof text);
    strncat(text, ";", sizeof text - strlen(text) - 1);
    CHECK(plm_tree_newick(&ctx, text, &pt) == PLM_OK);
    CHECK(pt->n == NN && pt->ntips == NT);
    CHECK(plm_bffg_model_new(&ctx, &m) == PLM_OK);
    CHECK(plm_bffg_kernel_linear_gaussian(&ctx, 1, 0, NULL, &mu0, &s0sq, &prior) == PLM_OK);
    for (i = 0; i < pt->n; i++) {
        int u = atoi(pt->name[i] + 1);   /* "t7" / "n3": the node of T */
        index[i] = u;
        if (pt->parent[i] < 0) {
            CHECK(plm_bffg_add(&ctx, m, pt->name[i], -1, prior, NULL, NULL) == PLM_OK);
            continue;
        }
        CHECK_NEAR(pt->length[i], T.len[u], 0);
        CHECK(plm_bffg_kernel_brownian(&ctx, 1, &sigma2, pt->length[i], &k) == PLM_OK);
        CHECK(plm_bffg_add(&ctx, m, pt->name[i], pt->parent[i], k, pt->tip[i] ? &y[u] : NULL, NULL) == PLM_OK);
    }
    (void)index;
    CHECK(plm_bffg_backward(&ctx, m, NULL, &f) == PLM_OK);
    CHECK_NEAR(plm_bffg_filter_loglik(f), mvn, 1e-10);
    draws = malloc(300 * plm_bffg_draw_width(m) * sizeof *draws);
    CHECK(plm_bffg_forward(&ctx, f, 300, 4, 1, draws, lw, NULL) == PLM_OK);
    for (s = 0; s < 300; s++) CHECK_NEAR(lw[s], mvn, 1e-9);
    free(draws);
}

/* ---- Newick and bad input ----------------------------------------------------------------------------- */

static void test_newick_parses_names_lengths_and_reports_errors(void)
{
    plm_tree *t;
    CHECK(plm_tree_newick(&ctx, "((A:1,B:2)AB:0.5, 'C d''e' : 1.5 [a comment])root;", &t) == PLM_OK);
    CHECK(t->n == 5 && t->ntips == 3);
    CHECK(strcmp(t->name[0], "root") == 0 && t->parent[0] == -1 && isnan(t->length[0]));
    CHECK(strcmp(t->name[1], "AB") == 0 && t->parent[1] == 0 && t->length[1] == 0.5 && !t->tip[1]);
    CHECK(strcmp(t->name[2], "A") == 0 && t->parent[2] == 1 && t->length[2] == 1 && t->tip[2]);
    CHECK(strcmp(t->name[4], "C d'e") == 0 && t->parent[4] == 0 && t->length[4] == 1.5);
    CHECK(plm_tree_newick(&ctx, "(A,(B,C));", &t) == PLM_OK);
    CHECK(strcmp(t->name[0], "node0") == 0 && strcmp(t->name[2], "node2") == 0 && t->ntips == 3);
    CHECK(plm_tree_newick(&ctx, "((A:1,B:2);", &t) == PLM_EPARSE);
    CHECK(strstr(plm_ctx_errmsg(&ctx), "line 1, column 11") && strstr(plm_ctx_errmsg(&ctx), "not closed"));
    CHECK(plm_tree_newick(&ctx, "(A:1,\nB:x);", &t) == PLM_EPARSE);
    CHECK(strstr(plm_ctx_errmsg(&ctx), "line 2, column 3") && strstr(plm_ctx_errmsg(&ctx), "branch length"));
    CHECK(plm_tree_newick(&ctx, "(A:1,A:2);", &t) == PLM_EPARSE);
    CHECK(strstr(plm_ctx_errmsg(&ctx), "'A' is given to two nodes") != NULL);
    CHECK(plm_tree_newick(&ctx, "(A:-1,B:2);", &t) == PLM_EPARSE);
    CHECK(plm_tree_newick(&ctx, "(A,B));", &t) == PLM_EPARSE);
    CHECK(plm_tree_newick(&ctx, "(A,B); x", &t) == PLM_EPARSE);
}

static void test_bad_models_are_refused_with_the_node_named(void)
{
    static const double P2[4] = {0.9, 0.1, 0.2, 0.8}, bad[4] = {0.9, 0.2, 0.2, 0.8}, nonpsd[4] = {1, 2, 2, 1};
    static const double E[4] = {1, 0, 1, 0}, one[1] = {1}, zero1[1] = {0};
    plm_bffg_model *m;
    plm_bffg_kernel *pd, *kd, *em, *kg;
    plm_bffg_filter *f;
    double y = 1, two = 2;
    int x;
    CHECK(plm_bffg_kernel_discrete(&ctx, 2, 2, bad, &kd) == PLM_EINVAL);
    CHECK(strstr(plm_ctx_errmsg(&ctx), "row 1 of P must sum to 1") != NULL);
    CHECK(plm_bffg_kernel_linear_gaussian(&ctx, 2, 0, NULL, NULL, nonpsd, &kg) == PLM_EINVAL);
    CHECK(strstr(plm_ctx_errmsg(&ctx), "not positive semi-definite") != NULL);
    CHECK(plm_bffg_kernel_discrete(&ctx, 0, 2, P2, &pd) == PLM_OK);
    CHECK(plm_bffg_kernel_discrete(&ctx, 2, 2, P2, &kd) == PLM_OK);
    CHECK(plm_bffg_kernel_discrete(&ctx, 2, 2, E, &em) == PLM_OK);   /* symbol 1 is impossible */
    CHECK(plm_bffg_kernel_linear_gaussian(&ctx, 1, 1, one, NULL, one, &kg) == PLM_OK);
    CHECK(plm_bffg_model_new(&ctx, &m) == PLM_OK);
    CHECK(plm_bffg_add(&ctx, m, "x", -1, kd, NULL, NULL) == PLM_EINVAL);   /* a root needs a prior */
    CHECK(plm_bffg_add(&ctx, m, "x", -1, pd, NULL, &x) == PLM_OK);
    CHECK(plm_bffg_add(&ctx, m, "x", x, kd, NULL, NULL) == PLM_EINVAL);   /* duplicate name */
    CHECK(plm_bffg_add(&ctx, m, "g", x, kg, NULL, NULL) == PLM_EINVAL);   /* continuous kernel from a discrete node */
    CHECK(strstr(plm_ctx_errmsg(&ctx), "node 'g'") && strstr(plm_ctx_errmsg(&ctx), "parent 'x'"));
    CHECK(plm_bffg_add(&ctx, m, "y", x, em, &two, NULL) == PLM_EDOM);   /* state out of range */
    CHECK(plm_bffg_add(&ctx, m, "y", x, em, &y, NULL) == PLM_OK);
    CHECK(plm_bffg_add(&ctx, m, "z", 1, kd, NULL, NULL) == PLM_EINVAL);   /* child of an observed node */
    CHECK(strstr(plm_ctx_errmsg(&ctx), "must be leaves") != NULL);
    CHECK(plm_bffg_backward(&ctx, m, NULL, &f) == PLM_EDOM);
    CHECK(strstr(plm_ctx_errmsg(&ctx), "below node 'x' have probability 0") != NULL);
    {   /* overriding the value makes it possible; overriding a latent node is refused */
        const double *vals[2] = {NULL, zero1};
        const double *lat[2] = {zero1, NULL};
        CHECK(plm_bffg_backward(&ctx, m, vals, &f) == PLM_OK);
        CHECK_NEAR(plm_bffg_filter_loglik(f), 0, 1e-15);   /* both states emit symbol 0 surely */
        CHECK(plm_bffg_backward(&ctx, m, lat, &f) == PLM_EINVAL);
    }
}

int main(void)
{
    plm_ctx_clear(&ctx);
    lg_data();
    RUN(test_lg_chain_loglik_equals_kalman_and_weight_is_constant);
    RUN(test_lg_singular_noise_and_fixed_root_equal_kalman);
    RUN(test_lg_guided_draws_have_the_smoother_marginals);
    RUN(test_lg_wrong_auxiliary_reweighted_means_match);
    RUN(test_forward_is_the_same_for_any_thread_count);
    RUN(test_discrete_chain_weight_equals_forward_algorithm_and_marginals_match);
    RUN(test_ctmc_observed_states_weight_equals_exact_likelihood);
    RUN(test_tree_brownian_loglik_equals_mvn_and_pruning);
    RUN(test_newick_parses_names_lengths_and_reports_errors);
    RUN(test_bad_models_are_refused_with_the_node_named);
    return CHECK_DONE();
}
