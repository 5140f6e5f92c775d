/* test_resample.c -- every resampling scheme is unbiased (mean offspring counts m w_i within Monte Carlo error),
** the low-variance schemes beat multinomial's variance, SSP rounds each count to floor or ceil of m w_i,
** Fearnhead-Clifford keeps expected weights without duplicates, ESS and conditional ESS take their known
** values, and ancestor bookkeeping is consistent. Fixed seeds; tolerances are stated where used. */
#include <stdlib.h>

#include "check.h"
#include "plume.h"

#define NW 7
static const double W7[NW] = {0.31, 0.02, 0.17, 0.005, 0.225, 0.13, 0.14};
static const plm_resample_scheme SCHEMES[] = {PLM_RESAMPLE_MULTINOMIAL, PLM_RESAMPLE_RESIDUAL, PLM_RESAMPLE_STRATIFIED,
                                              PLM_RESAMPLE_SYSTEMATIC, PLM_RESAMPLE_SSP};
#define NS (int)(sizeof SCHEMES / sizeof SCHEMES[0])
#define REPS 40000

/* A deliberately wrong "scheme" for the negative control: rounds m w_i to the nearest integer (biased). */
static void rounding_counts(const double *w, size_t n, size_t m, size_t *counts)
{
    size_t i, tot = 0;
    for (i = 0; i < n; i++) tot += (counts[i] = (size_t)floor(m * w[i] + 0.5));
    if (tot < m) counts[0] += m - tot;
    for (i = 0; tot > m && i < n; i++)
        if (counts[i] > 0) counts[i]--, tot--;
}

/* Run REPS resamplings (scheme < 0: the rounding control) and return the largest |mean count - m w_i| in units
** of its standard error (sample sd / sqrt(REPS)); variance of counts summed over i in *totvar. A component
** with zero sample variance counts as exact only when its mean is exactly m w_i. */
static double max_z(int scheme, const double *w, size_t n, size_t m, uint64_t seed, double *totvar)
{
    double sum[16] = {0}, sum2[16] = {0}, z = 0, scratch[16];
    size_t counts[16], i;
    plm_rng r;
    plm_ctx ctx;
    int k;
    plm_ctx_clear(&ctx);
    plm_rng_init(&r, seed, 0);
    for (k = 0; k < REPS; k++) {
        size_t tot = 0;
        if (scheme < 0)
            rounding_counts(w, n, m, counts);
        else if (plm_resample_counts(&ctx, (plm_resample_scheme)scheme, w, n, m, &r, counts, scratch))
            return INFINITY;
        for (i = 0; i < n; i++) {
            sum[i] += (double)counts[i];
            sum2[i] += (double)counts[i] * (double)counts[i];
            tot += counts[i];
        }
        if (tot != m) return INFINITY;
    }
    *totvar = 0;
    for (i = 0; i < n; i++) {
        double mean = sum[i] / REPS, var = sum2[i] / REPS - mean * mean, se = sqrt(fmax(var, 0) / REPS);
        double d = fabs(mean - (double)m * w[i]);
        *totvar += var;
        if (se > 0) z = fmax(z, d / se);
        else if (d > 1e-9) z = INFINITY;
    }
    return z;
}

/* 7 components: the largest of 7 |z| stays below 4.5 with probability > 0.9999 per scheme. */
static void test_every_scheme_is_unbiased(void)
{
    size_t ms[] = {7, 10, 3};
    double v;
    for (int k = 0; k < NS; k++)
        for (int j = 0; j < 3; j++) {
            double z = max_z(SCHEMES[k], W7, NW, ms[j], 100 + (uint64_t)k, &v);
            if (!(z < 4.5)) printf("  %s, m = %zu: max z %.2f\n", plm_resample_scheme_name(SCHEMES[k]), ms[j], z);
            CHECK(z < 4.5);
        }
}

static void test_unbiasedness_check_rejects_rounding(void)
{
    double v;
    CHECK(max_z(-1, W7, NW, 10, 1, &v) > 100);   /* rounding is biased: the check must see it */
}

/* Multinomial's total variance is m sum w_i (1 - w_i) exactly; the others must be well below it (the sampled
** total variance has a relative standard error of about 1% at REPS = 40000, so a margin of 0.8 cannot be
** crossed by chance). Residual, SSP and systematic are bounded by the fractional parts' variance. */
static void test_low_variance_schemes_beat_multinomial(void)
{
    size_t m = 10, i;
    double multi = 0, v, vm;
    for (i = 0; i < NW; i++) multi += (double)m * W7[i] * (1 - W7[i]);
    max_z(PLM_RESAMPLE_MULTINOMIAL, W7, NW, m, 7, &vm);
    CHECK_REL(vm, multi, 0.05);
    for (int k = 1; k < NS; k++) {
        max_z(SCHEMES[k], W7, NW, m, 8, &v);
        if (!(v < 0.8 * multi)) printf("  %s: variance %.3f vs multinomial %.3f\n", plm_resample_scheme_name(SCHEMES[k]), v, multi);
        CHECK(v < 0.8 * multi);
    }
}

static void test_ssp_and_systematic_counts_are_floor_or_ceil(void)
{
    plm_rng r;
    plm_ctx ctx;
    size_t counts[NW];
    double scratch[NW];
    plm_ctx_clear(&ctx);
    plm_rng_init(&r, 3, 0);
    for (int k = 0; k < 2000; k++) {
        plm_resample_scheme s = k & 1 ? PLM_RESAMPLE_SSP : PLM_RESAMPLE_SYSTEMATIC;
        size_t m = 1 + (size_t)(k % 23);
        CHECK(plm_resample_counts(&ctx, s, W7, NW, m, &r, counts, scratch) == PLM_OK);
        for (size_t i = 0; i < NW; i++) {
            double f = floor((double)m * W7[i]);
            CHECK((double)counts[i] == f || (double)counts[i] == f + 1);
        }
    }
}

static void test_same_stream_same_counts(void)
{
    plm_rng a, b;
    plm_ctx ctx;
    size_t ca[NW], cb[NW];
    double sa[NW], sb[NW];
    plm_ctx_clear(&ctx);
    for (int k = 0; k < NS; k++) {
        plm_rng_init(&a, 11, 5);
        plm_rng_init(&b, 11, 5);
        for (int rep = 0; rep < 50; rep++) {
            plm_resample_counts(&ctx, SCHEMES[k], W7, NW, 9, &a, ca, sa);
            plm_resample_counts(&ctx, SCHEMES[k], W7, NW, 9, &b, cb, sb);
            CHECK(memcmp(ca, cb, sizeof ca) == 0);
        }
    }
}

static void test_zero_weights_get_no_offspring(void)
{
    const double w[5] = {0, 0.5, 0, 0.5, 0};
    plm_rng r;
    plm_ctx ctx;
    size_t counts[5];
    double scratch[5];
    plm_ctx_clear(&ctx);
    plm_rng_init(&r, 4, 0);
    for (int k = 0; k < NS; k++)
        for (int rep = 0; rep < 200; rep++) {
            plm_resample_counts(&ctx, SCHEMES[k], w, 5, 1 + (size_t)rep % 9, &r, counts, scratch);
            CHECK(counts[0] == 0 && counts[2] == 0 && counts[4] == 0);
        }
}

static void test_bad_weights_are_refused_by_name(void)
{
    const double w[3] = {0.5, -0.1, 0.6}, u[2] = {0.5, 0.6};
    plm_rng r;
    plm_ctx ctx;
    size_t counts[3];
    plm_ctx_clear(&ctx);
    plm_rng_init(&r, 4, 0);
    CHECK(plm_resample_counts(&ctx, PLM_RESAMPLE_SYSTEMATIC, w, 3, 3, &r, counts, NULL) == PLM_EINVAL);
    CHECK(strstr(plm_ctx_errmsg(&ctx), "weight 2 is -0.1") != NULL);
    CHECK(plm_resample_counts(&ctx, PLM_RESAMPLE_SYSTEMATIC, u, 2, 3, &r, counts, NULL) == PLM_EINVAL);
    CHECK(strstr(plm_ctx_errmsg(&ctx), "sum to 1.1") != NULL);
    CHECK(plm_resample_counts(&ctx, PLM_RESAMPLE_SYSTEMATIC, u, 2, 0, &r, counts, NULL) == PLM_EINVAL);
    CHECK(plm_resample_scheme_by_name("ssp") == PLM_RESAMPLE_SSP);
    CHECK(plm_resample_scheme_by_name("bogus") == -1);
}

/* Fearnhead-Clifford: E[new weight of particle i] = w_i (4.5 standard errors), total weight exactly 1, no
** particle twice, exactly N kept. */
static void test_fearnhead_clifford_keeps_expected_weights(void)
{
    enum { n = 12, N = 5 };
    double w[n], sum = 0, acc[n] = {0}, acc2[n] = {0}, neww[N];
    size_t idx[N], m, i;
    plm_rng r;
    plm_ctx ctx;
    int dup = 0, badtot = 0, badm = 0;
    plm_ctx_clear(&ctx);
    for (i = 0; i < n; i++) sum += (w[i] = i == 3 ? 4.0 : 1.0 + (double)(i % 4));
    for (i = 0; i < n; i++) w[i] /= sum;
    plm_rng_init(&r, 21, 0);
    for (int k = 0; k < REPS; k++) {
        double got[n] = {0}, tot = 0;
        CHECK(plm_resample_fc(&ctx, w, n, N, &r, idx, neww, &m) == PLM_OK);
        badm += m != N;
        for (i = 0; i < m; i++) {
            dup += got[idx[i]] > 0;
            got[idx[i]] += neww[i];
            tot += neww[i];
        }
        badtot += fabs(tot - 1) > 1e-9;
        for (i = 0; i < n; i++) acc[i] += got[i], acc2[i] += got[i] * got[i];
    }
    CHECK(dup == 0);
    CHECK(badtot == 0);
    CHECK(badm == 0);
    for (i = 0; i < n; i++) {
        double mean = acc[i] / REPS, se = sqrt(fmax(acc2[i] / REPS - mean * mean, 0) / REPS);
        if (se > 0) CHECK(fabs(mean - w[i]) < 4.5 * se);
        else CHECK_NEAR(mean, w[i], 1e-12);   /* a survivor: kept with its own weight every time */
    }
    /* fewer positive weights than N: all kept, as they are */
    {
        double w2[4] = {0.5, 0, 0.5, 0};
        CHECK(plm_resample_fc(&ctx, w2, 4, N, &r, idx, neww, &m) == PLM_OK);
        CHECK(m == 2 && idx[0] == 0 && idx[1] == 2 && neww[0] == 0.5);
    }
}

static void test_ess_and_conditional_ess_take_known_values(void)
{
    double lw[4] = {0, 0, 0, 0}, one[4] = {0, -INFINITY, -INFINITY, -INFINITY}, W[4] = {0.25, 0.25, 0.25, 0.25};
    double w[4], two[4] = {log(3.0), 0, -INFINITY, -INFINITY};
    CHECK_NEAR(plm_resample_ess(lw, 4), 4, 1e-12);
    CHECK_NEAR(plm_resample_ess(one, 4), 1, 1e-12);
    CHECK_NEAR(plm_resample_ess(two, 4), 16.0 / 10.0, 1e-12);   /* (3 + 1)^2 / (9 + 1) */
    CHECK(plm_resample_ess((double[]){-INFINITY, -INFINITY}, 2) == 0);
    CHECK_NEAR(plm_resample_cess(W, lw, 4), 4, 1e-12);             /* flat increments: no degeneracy */
    CHECK_NEAR(plm_resample_cess(W, one, 4), 1, 1e-12);
    /* CESS after a step from uniform previous weights equals the ESS of the increments */
    CHECK_NEAR(plm_resample_cess(W, two, 4), plm_resample_ess(two, 4), 1e-12);
    CHECK_NEAR(plm_resample_normalise(two, 4, w), log(4.0), 1e-12);
    CHECK_NEAR(w[0], 0.75, 1e-15);
    CHECK(isnan(plm_resample_normalise((double[]){0, NAN}, 2, w)));
    CHECK(isnan(plm_resample_normalise((double[]){0, INFINITY}, 2, w)));
    CHECK(plm_resample_normalise(one + 1, 3, w) == -INFINITY);
}

static void test_ancestor_bookkeeping_is_consistent(void)
{
    size_t counts[6] = {0, 3, 0, 1, 2, 0}, anc[6], back[6], sorted[6];
    plm_resample_ancestors(counts, 6, sorted);
    for (int j = 0; j < 5; j++) CHECK(sorted[j] <= sorted[j + 1]);
    plm_resample_ancestors_in_place(counts, 6, 6, anc);
    CHECK(anc[1] == 1 && anc[3] == 3 && anc[4] == 4);
    plm_resample_counts_of(anc, 6, 6, back);
    CHECK(memcmp(back, counts, sizeof back) == 0);
    /* fewer slots than particles: a survivor past the last slot moves */
    {
        size_t c2[5] = {0, 0, 1, 0, 2}, a2[3], b2[5];
        plm_resample_ancestors_in_place(c2, 5, 3, a2);
        CHECK(a2[2] == 2);
        plm_resample_counts_of(a2, 3, 5, b2);
        CHECK(memcmp(b2, c2, sizeof b2) == 0);
    }
}

/* The direct systematic ancestors are those of the counts, for the same stream: sizes, zero weights inside and
** at the end, cumulative sums that land on integers, and weights whose sum rounds below 1. */
static void test_systematic_ancestors_match_counts(void)
{
    enum { N = 1000 };
    static double w[N];
    static size_t counts[N], anc1[2 * N], anc2[2 * N], marks[2 * N + 1];
    static const size_t ms[] = {1, 3, 999, 1000, 1001, 2000};
    plm_rng r, a, b;
    plm_ctx ctx;
    int rep, bad = 0, nm;
    plm_ctx_clear(&ctx);
    plm_rng_init(&r, 9, 0);
    for (rep = 0; rep < 60; rep++) {
        size_t n = rep % 3 == 0 ? 4 : N, i, m;
        double s = 0;
        for (i = 0; i < n; i++) {
            w[i] = rep % 3 == 0 ? 1 : plm_rng_uniform(&r) < 0.3 ? 0 : -log(plm_rng_uniform(&r));
            if (rep % 5 == 1 && i > n - 20) w[i] = 0;   /* a run of zero weights at the end */
            s += w[i];
        }
        for (i = 0; i < n; i++) w[i] /= s;
        for (nm = 0; nm < (int)(sizeof ms / sizeof ms[0]); nm++) {
            m = rep % 3 == 0 ? (size_t)nm + 1 : ms[nm];
            plm_rng_init(&a, 100 + (uint64_t)rep, (uint64_t)nm);
            plm_rng_init(&b, 100 + (uint64_t)rep, (uint64_t)nm);
            CHECK(plm_resample_counts(&ctx, PLM_RESAMPLE_SYSTEMATIC, w, n, m, &a, counts, NULL) == PLM_OK);
            plm_resample_ancestors(counts, n, anc1);
            plm_resample_systematic_ancestors(w, n, m, &b, anc2, marks);
            for (i = 0; i < m; i++) bad += anc1[i] != anc2[i];
            CHECK(plm_rng_next(&a) == plm_rng_next(&b));   /* the same draws were taken */
        }
    }
    CHECK(bad == 0);
}

/* The chunked systematic resampling: the same ancestors as the sequential one on these weights (they differ
** only where a cumulative sum lands within rounding of a point), the same for 1 and 3 threads, and its counts
** are floor or ceil of m w_i with no slot for a zero weight. */
static void test_chunked_systematic_matches_and_ignores_threads(void)
{
    enum { N = 1000, CH = 64, NC = (N + CH - 1) / CH };
    static double w[N], csum[NC], start[NC + 2];
    static size_t anc1[2 * N], anc2[2 * N], anc3[2 * N], marks[2 * N + NC + 2], counts[N];
    static double xs[2 * N], xd[2 * 2 * N];   /* two components of N particles, copied into m slots */
    static const size_t ms[] = {1, 7, 999, 1000, 1001, 2000};
    plm_rng r, a, b, c;
    int rep, bad = 0, badthr = 0, badcount = 0, badcopy = 0, nm;
    plm_rng_init(&r, 11, 0);
    for (nm = 0; nm < 2 * N; nm++) xs[nm] = nm + 0.5;
    for (rep = 0; rep < 40; rep++) {
        size_t i, j, m;
        double s = 0;
        for (i = 0; i < N; i++) {
            w[i] = plm_rng_uniform(&r) < 0.3 ? 0 : -log(plm_rng_uniform(&r));
            if (rep % 4 == 1 && i > N - 200) w[i] = 0;   /* whole chunks of zero weights at the end */
            s += w[i];
        }
        for (i = 0; i < N; i++) w[i] /= s;
        for (j = 0; j < NC; j++) {
            csum[j] = 0;
            for (i = j * CH; i < N && i < (j + 1) * CH; i++) csum[j] += w[i];
        }
        for (nm = 0; nm < (int)(sizeof ms / sizeof ms[0]); nm++) {
            m = ms[nm];
            plm_rng_init(&a, 200 + (uint64_t)rep, (uint64_t)nm);
            plm_rng_init(&b, 200 + (uint64_t)rep, (uint64_t)nm);
            plm_rng_init(&c, 200 + (uint64_t)rep, (uint64_t)nm);
            plm_resample_systematic_ancestors(w, N, m, &a, anc1, marks);
            plm_resample_systematic_chunked(w, N, m, CH, csum, &b, anc2, marks, start, NULL, NULL, 0, 1);
            plm_resample_systematic_chunked(w, N, m, CH, csum, &c, anc3, marks, start, xs, xd, 2, 3);
            for (i = 0; i < N; i++) counts[i] = 0;
            for (j = 0; j < m; j++) {
                bad += anc1[j] != anc2[j];
                badthr += anc2[j] != anc3[j];
                counts[anc2[j]]++;
                badcopy += xd[j] != xs[anc3[j]] || xd[m + j] != xs[N + anc3[j]];
            }
            for (i = 0; i < N; i++)
                badcount += (double)counts[i] < floor((double)m * w[i]) || (double)counts[i] > ceil((double)m * w[i]) ||
                            (w[i] == 0 && counts[i] > 0);
        }
    }
    CHECK(bad == 0);
    CHECK(badthr == 0);
    CHECK(badcount == 0);
    CHECK(badcopy == 0);
}

/* Ancestors from plm_resample_systematic_runs over the chunks [c0, c1) of every part of a split into K parts
** (as ranks hold them), the slots past the total to the last positive weight: into anc (m slots). shift: the
** negative control, each part starting its cumulative weights at 0 as if it were alone. */
static void runs_ancestors(const double *w, size_t N, size_t m, size_t CH, const double *csum, int K, double u, int shift,
                           size_t *anc, size_t *src, size_t *cnt, double *start)
{
    size_t nc = (N + CH - 1) / CH, c, j, last = 0, i;
    double dm = (double)m;
    int k;
    start[0] = 0;
    for (c = 0; c < nc; c++) start[c + 1] = start[c] + csum[c] * dm;
    for (i = 0; i < N; i++)
        if (w[i] > 0) last = i;
    for (k = 0; k < K; k++) {
        size_t c0 = (nc * (size_t)k + (size_t)K - 1) / (size_t)K, c1 = (nc * (size_t)k + nc + (size_t)K - 1) / (size_t)K;
        size_t i0 = c0 * CH, n = (c1 * CH < N ? c1 * CH : N) - (i0 < N ? i0 : N), nr, r, slot;
        double st[2048];
        for (c = c0; c <= c1; c++) st[c - c0] = start[c] - (shift ? start[c0] : 0);
        nr = plm_resample_systematic_runs(w + i0, n, CH, c1 - c0, st, u, m, src, cnt);
        slot = plm_resample_slots_below(st[0], u, m);
        for (r = 0; r < nr; r++)
            for (j = 0; j < cnt[r] && slot < m; j++) anc[slot++] = i0 + src[r];
    }
    for (j = plm_resample_slots_below(start[nc], u, m); j < m; j++) anc[j] = last;
}

/* Particles spread over K processes (whole chunks each) resample by runs to exactly the ancestors of the
** chunked resampling of all of them, for K = 1..5 (parts may hold no chunk), slots m <, = and > N, weights with
** zero runs; the negative control (parts that do not know the weight before them) differs. */
static void test_runs_over_parts_give_the_chunked_ancestors(void)
{
    enum { N = 1000, CH = 64, NC = (N + CH - 1) / CH };
    static double w[N], csum[NC], start[NC + 2];
    static size_t anc1[2 * N], anc2[2 * N], marks[2 * N + NC + 2], src[2 * N + NC], cnt[2 * N + NC];
    static const size_t ms[] = {1, 7, 999, 1000, 1001, 2000};
    plm_rng r, a;
    int rep, K, bad = 0, differs = 0, nm;
    plm_rng_init(&r, 12, 0);
    for (rep = 0; rep < 40; rep++) {
        size_t i, j, m;
        double s = 0;
        for (i = 0; i < N; i++) {
            w[i] = plm_rng_uniform(&r) < 0.3 ? 0 : -log(plm_rng_uniform(&r));
            if (rep % 4 == 1 && i > N - 200) w[i] = 0;
            if (rep % 4 == 2) w[i] = 1;   /* equal weights: cumulative sums near the points */
            if (rep % 4 == 3 && i % 97) w[i] = 0;   /* few particles carry everything */
            s += w[i];
        }
        for (i = 0; i < N; i++) w[i] /= s;
        for (j = 0; j < NC; j++) {
            csum[j] = 0;
            for (i = j * CH; i < N && i < (j + 1) * CH; i++) csum[j] += w[i];
        }
        for (nm = 0; nm < (int)(sizeof ms / sizeof ms[0]); nm++) {
            double u;
            m = ms[nm];
            plm_rng_init(&a, 300 + (uint64_t)rep, (uint64_t)nm);
            plm_resample_systematic_chunked(w, N, m, CH, csum, &a, anc1, marks, start, NULL, NULL, 0, 1);
            plm_rng_init(&a, 300 + (uint64_t)rep, (uint64_t)nm);
            u = plm_rng_uniform(&a);
            for (K = 1; K <= 5; K++) {
                runs_ancestors(w, N, m, CH, csum, K, u, 0, anc2, src, cnt, start);
                for (j = 0; j < m; j++) bad += anc1[j] != anc2[j];
            }
            runs_ancestors(w, N, m, CH, csum, 3, u, 1, anc2, src, cnt, start);
            for (j = 0; j < m; j++) differs += anc1[j] != anc2[j];
        }
    }
    CHECK(bad == 0);
    CHECK(differs > 0);
}

int main(void)
{
    RUN(test_runs_over_parts_give_the_chunked_ancestors);
    RUN(test_chunked_systematic_matches_and_ignores_threads);
    RUN(test_systematic_ancestors_match_counts);
    RUN(test_every_scheme_is_unbiased);
    RUN(test_unbiasedness_check_rejects_rounding);
    RUN(test_low_variance_schemes_beat_multinomial);
    RUN(test_ssp_and_systematic_counts_are_floor_or_ceil);
    RUN(test_same_stream_same_counts);
    RUN(test_zero_weights_get_no_offspring);
    RUN(test_bad_weights_are_refused_by_name);
    RUN(test_fearnhead_clifford_keeps_expected_weights);
    RUN(test_ess_and_conditional_ess_take_known_values);
    RUN(test_ancestor_bookkeeping_is_consistent);
    return CHECK_DONE();
}
