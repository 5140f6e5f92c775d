/* test_conformal.c -- block-permutation conformal prediction: the p-value equals the fraction of block
** permutations of the extended path (enumerated), and exact validity checked by enumerating every path of a
** short, non-stationary chain and of a short HMM: the randomised p-value of the truth is below alpha with
** probability exactly alpha, the conservative one with probability <= alpha, while naive split conformal misses. */
#include "check.h"
#include "plume.h"

#include <stdlib.h>

/* ---- block permutations, enumerated ---- */

static double step_score(const double *S, int K, int prev, int cur) { return S[prev * K + cur]; }

/* All permutations of blocks[1..nb-1] (block 0 holds the start and stays): the fraction whose last step
** (into the final state) has score >= the original's. */
static int blk_start[16], blk_len[16], nblk;
static int path[64];
static double perm_frac_ge(const int *x, int N, const double *S, int K)
{
    int c = x[N - 1], i, order[16], count = 0, total = 0;
    double s0 = step_score(S, K, x[N - 2], c);
    /* blocks end at visits of c; block 0 ends at the first visit */
    nblk = 0;
    for (i = 0; i < N; i++) {
        if (i == 0 || x[i - 1] == c) {
            blk_start[nblk] = i;
            blk_len[nblk++] = 0;
        }
        blk_len[nblk - 1]++;
    }
    for (i = 0; i < nblk; i++) order[i] = i;
    /* iterate permutations of order[1..nblk-1] in lexicographic order */
    for (;;) {
        int pos = 0, j, k;
        for (i = 0; i < nblk; i++)
            for (j = 0; j < blk_len[order[i]]; j++) path[pos++] = x[blk_start[order[i]] + j];
        total++;
        if (step_score(S, K, path[N - 2], path[N - 1]) >= s0) count++;
        /* next permutation of order[1..] */
        for (i = nblk - 2; i >= 1 && order[i] > order[i + 1]; i--) {}
        if (i < 1) break;
        for (j = nblk - 1; order[j] < order[i]; j--) {}
        k = order[i], order[i] = order[j], order[j] = k;
        for (j = i + 1, k = nblk - 1; j < k; j++, k--) {
            int tmp = order[j];
            order[j] = order[k], order[k] = tmp;
        }
    }
    return (double)count / total;
}

static void test_pvalue_equals_fraction_of_block_permutations(void)
{
    const int K = 3, N = 13;
    double S[9] = {0.1, 2.0, 1.5, 0.7, 0.3, 2.5, 1.2, 0.9, 0.4};
    plm_rng r;
    int rep;
    plm_rng_init(&r, 7, 0);
    for (rep = 0; rep < 200; rep++) {
        int x[13], t, cand;
        double score[13], cs, p;
        plm_ctx ctx;
        for (t = 0; t < N; t++) x[t] = (int)plm_rng_uint(&r, (uint64_t)K);
        for (t = 1; t < N - 1; t++) score[t] = step_score(S, K, x[t - 1], x[t]);
        cand = x[N - 1];
        cs = step_score(S, K, x[N - 2], cand);
        CHECK(plm_conformal_blocks(&ctx, K, (size_t)N - 1, x, score, 1, &cand, &cs, 1.0, &p) == PLM_OK);
        CHECK_NEAR(p, perm_frac_ge(x, N, S, K), 1e-12);
    }
}

/* P_u(p <= alpha) for the randomised p-value p(u) = a + b u, u ~ U(0,1), from its values at u = 1 and 1/2. */
static double prob_below(double p1, double phalf, double alpha)
{
    double b = 2 * (p1 - phalf), a = p1 - b, q = (alpha - a) / b;
    return q < 0 ? 0 : q > 1 ? 1 : q;
}

/* A chain that starts in state 0, stays there w.p. 0.95, and then moves between states 1 and 2 at random: far
** from stationary over short paths, where split conformal, which takes every step as exchangeable, is off. */
static const double init3[3] = {1, 0, 0};
static const double trans3[9] = {0.95, 0.05, 0, 0, 0.5, 0.5, 0, 0.5, 0.5};

static void miscoverage_chain(int N, double alpha, double *blocks_rand, double *blocks_cons, double *split_rand)
{
    const int K = 3;
    long n = 1, q;
    int t;
    plm_ctx ctx;
    plm_hmm *h;
    double emit[9] = {1, 0, 0, 0, 1, 0, 0, 0, 1};
    CHECK(plm_hmm_new_categorical(&ctx, K, K, init3, trans3, emit, &h) == PLM_OK);
    for (t = 0; t < N; t++) n *= K;
    *blocks_rand = *blocks_cons = *split_rand = 0;
    for (q = 0; q < n; q++) {
        int x[16];
        double y[16], pr, p1[3], ph[3], s1[3], sh[3];
        long v = q;
        for (t = 0; t < N; t++) x[t] = (int)(v % K), v /= K, y[t] = x[t];
        pr = init3[x[0]];
        for (t = 1; t < N && pr > 0; t++) pr *= trans3[x[t - 1] * K + x[t]];
        if (pr == 0) continue;
        /* the first N-1 symbols are the data, x[N-1] the truth; h scores the symbol chain itself */
        CHECK(plm_conformal_hmm(&ctx, h, (size_t)N - 1, y, NULL, PLM_CONFORMAL_NEXT, PLM_CONFORMAL_BLOCKS, 1.0, p1) == PLM_OK);
        CHECK(plm_conformal_hmm(&ctx, h, (size_t)N - 1, y, NULL, PLM_CONFORMAL_NEXT, PLM_CONFORMAL_BLOCKS, 0.5, ph) == PLM_OK);
        CHECK(plm_conformal_hmm(&ctx, h, (size_t)N - 1, y, NULL, PLM_CONFORMAL_NEXT, PLM_CONFORMAL_SPLIT, 1.0, s1) == PLM_OK);
        CHECK(plm_conformal_hmm(&ctx, h, (size_t)N - 1, y, NULL, PLM_CONFORMAL_NEXT, PLM_CONFORMAL_SPLIT, 0.5, sh) == PLM_OK);
        *blocks_rand += pr * prob_below(p1[x[N - 1]], ph[x[N - 1]], alpha);
        *blocks_cons += pr * (p1[x[N - 1]] <= alpha);
        *split_rand += pr * prob_below(s1[x[N - 1]], sh[x[N - 1]], alpha);
    }
}

static void test_markov_chain_miscoverage_is_exactly_alpha(void)
{
    static const double alphas[] = {0.05, 0.1, 0.2, 0.37};
    int N, a;
    for (N = 3; N <= 10; N++)
        for (a = 0; a < 4; a++) {
            double br, bc, sr;
            miscoverage_chain(N, alphas[a], &br, &bc, &sr);
            CHECK_NEAR(br, alphas[a], 1e-12);
            CHECK(bc <= alphas[a] + 1e-12);
        }
}

/* The negative control: the same enumeration finds split conformal missing its level (miscoverage 0.244 at
** alpha = 0.2), and off it the other way at alpha = 0.1 (0.093): it is not valid under Markov dependence. */
static void test_split_conformal_misses_under_markov_dependence(void)
{
    double br, bc, sr;
    miscoverage_chain(10, 0.2, &br, &bc, &sr);
    CHECK(sr > 0.24);
    CHECK_NEAR(br, 0.2, 1e-12);
}

/* Hidden-state target: every (state path, symbol path) of a 2-state, 3-symbol HMM; the hidden path of all
** but the last step is observed, and the set is for the last hidden state given its symbol. */
static void test_hmm_state_miscoverage_is_exactly_alpha(void)
{
    const int K = 2, M = 3;
    const double init[2] = {0.3, 0.7}, trans[4] = {0.8, 0.2, 0.35, 0.65};
    const double emit[6] = {0.7, 0.2, 0.1, 0.1, 0.3, 0.6};
    /* a deliberately wrong model for the score: validity must not depend on it */
    const double trans_w[4] = {0.5, 0.5, 0.9, 0.1}, emit_w[6] = {0.2, 0.3, 0.5, 0.6, 0.3, 0.1};
    plm_hmm *h, *hw;
    plm_ctx ctx;
    int N, which;
    CHECK(plm_hmm_new_categorical(&ctx, K, M, init, trans, emit, &h) == PLM_OK);
    CHECK(plm_hmm_new_categorical(&ctx, K, M, init, trans_w, emit_w, &hw) == PLM_OK);
    for (which = 0; which < 2; which++)
        for (N = 2; N <= 6; N++) {
            long n = 1, q;
            int t;
            double miss = 0, miss_cons = 0, miss_next = 0, alpha = 0.15;
            for (t = 0; t < N; t++) n *= K * M;
            for (q = 0; q < n; q++) {
                int x[8];
                double y[8], pr, p1[3], ph[3], pn[3];
                long v = q;
                for (t = 0; t < N; t++) x[t] = (int)(v % K), v /= K, y[t] = (double)(v % M), v /= M;
                pr = init[x[0]] * emit[x[0] * M + (int)y[0]];
                for (t = 1; t < N; t++) pr *= trans[x[t - 1] * K + x[t]] * emit[x[t] * M + (int)y[t]];
                CHECK(plm_conformal_hmm(&ctx, which ? hw : h, (size_t)N, y, x, PLM_CONFORMAL_STATE, PLM_CONFORMAL_BLOCKS, 1.0, p1) == PLM_OK);
                CHECK(plm_conformal_hmm(&ctx, which ? hw : h, (size_t)N, y, x, PLM_CONFORMAL_STATE, PLM_CONFORMAL_BLOCKS, 0.5, ph) == PLM_OK);
                miss += pr * prob_below(p1[x[N - 1]], ph[x[N - 1]], alpha);
                miss_cons += pr * (p1[x[N - 1]] <= alpha);
                if (N >= 2) {   /* next symbol from the first N-1 steps, states observed */
                    CHECK(plm_conformal_hmm(&ctx, which ? hw : h, (size_t)N - 1, y, x, PLM_CONFORMAL_NEXT, PLM_CONFORMAL_BLOCKS, 1.0, pn) == PLM_OK);
                    miss_next += pr * (pn[(int)y[N - 1]] <= alpha);
                }
            }
            CHECK_NEAR(miss, alpha, 1e-12);
            CHECK(miss_cons <= alpha + 1e-12);
            CHECK(miss_next <= alpha + 1e-12);
        }
}

static void test_bad_input_is_refused(void)
{
    plm_ctx ctx;
    int x[3] = {0, 1, 5}, cand = 0;
    double s[3] = {0, 1, 2}, cs = 1, p;
    const double init[2] = {0.5, 0.5}, trans[4] = {0.5, 0.5, 0.5, 0.5}, par[4] = {0, 1, 1, 1};
    plm_hmm *h;
    double y[3] = {0.1, 0.2, 0.3};
    CHECK(plm_conformal_blocks(&ctx, 2, 3, x, s, 1, &cand, &cs, 1.0, &p) == PLM_EINVAL);
    CHECK(strstr(ctx.msg, "state at t=2 is 5") != NULL);
    x[2] = 1, s[1] = NAN;
    CHECK(plm_conformal_blocks(&ctx, 2, 3, x, s, 1, &cand, &cs, 1.0, &p) == PLM_EDOM);
    CHECK(plm_conformal_blocks(&ctx, 2, 3, x, s, 1, &cand, &cs, 0.0, &p) == PLM_EINVAL);
    CHECK(plm_hmm_new_scalar(&ctx, PLM_HMM_NORMAL, 2, init, trans, par, &h) == PLM_OK);
    CHECK(plm_conformal_hmm(&ctx, h, 3, y, NULL, PLM_CONFORMAL_NEXT, PLM_CONFORMAL_BLOCKS, 1.0, &p) == PLM_EINVAL);
    CHECK(strstr(ctx.msg, "finite set of symbols") != NULL);
    CHECK(plm_conformal_hmm(&ctx, h, 3, y, NULL, PLM_CONFORMAL_STATE, PLM_CONFORMAL_BLOCKS, 1.0, &p) == PLM_EINVAL);
    CHECK(strstr(ctx.msg, "option states") != NULL);
}

int main(void)
{
    plm_init();
    RUN(test_pvalue_equals_fraction_of_block_permutations);
    RUN(test_markov_chain_miscoverage_is_exactly_alpha);
    RUN(test_split_conformal_misses_under_markov_dependence);
    RUN(test_hmm_state_miscoverage_is_exactly_alpha);
    RUN(test_bad_input_is_refused);
    return CHECK_DONE();
}
