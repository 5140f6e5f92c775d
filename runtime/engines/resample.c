/* resample.c -- resampling schemes, ESS and ancestor bookkeeping (see resample.h).
**
** Every scheme turns m w_i into an integer count with that mean. Multinomial draws the counts independently;
** the others lower their variance: residual keeps floor(m w_i) and draws only the remainder, stratified and
** systematic put one uniform in each stratum of [0, 1), SSP rounds the fractional parts of m w_i against each
** other pairwise so that every count is floor(m w_i) or floor(m w_i) + 1 (Gerber, Chopin and Whiteley 2019,
** "Negative association, ordering and convergence of resampling methods", Algorithm 3; the same as the
** `particles` library). */
#include "resample.h"

#include "par.h"

#include <gsl/gsl_randist.h>
#include <math.h>
#include <string.h>

static const char *const names[] = {"multinomial", "residual", "stratified", "systematic", "ssp"};
const char plm_resample_scheme_list[] = "\"multinomial\", \"residual\", \"stratified\", \"systematic\", \"ssp\"";

int plm_resample_scheme_by_name(const char *name)
{
    for (int i = 0; i < (int)(sizeof names / sizeof names[0]); i++)
        if (strcmp(name, names[i]) == 0) return i;
    return -1;
}

const char *plm_resample_scheme_name(plm_resample_scheme s)
{
    return (unsigned)s < sizeof names / sizeof names[0] ? names[s] : "?";
}

double plm_resample_normalise(const double *logw, size_t n, double *w)
{
    double mx = -INFINITY, s = 0;
    size_t i;
    for (i = 0; i < n; i++) {
        if (isnan(logw[i]) || logw[i] == INFINITY) return NAN;
        if (logw[i] > mx) mx = logw[i];
    }
    if (mx == -INFINITY) {
        for (i = 0; i < n; i++) w[i] = 0;
        return -INFINITY;
    }
    for (i = 0; i < n; i++) s += (w[i] = exp(logw[i] - mx));
    for (i = 0; i < n; i++) w[i] /= s;
    return mx + log(s);
}

double plm_resample_ess(const double *logw, size_t n)
{
    double mx = -INFINITY, s = 0, s2 = 0;
    size_t i;
    for (i = 0; i < n; i++)
        if (logw[i] > mx) mx = logw[i];
    if (mx == -INFINITY || isnan(mx)) return 0;
    for (i = 0; i < n; i++) {
        double v = exp(logw[i] - mx);
        s += v;
        s2 += v * v;
    }
    return s * s / s2;
}

double plm_resample_cess(const double *W, const double *loginc, size_t n)
{
    double mx = -INFINITY, a = 0, b = 0;
    size_t i;
    for (i = 0; i < n; i++)
        if (W[i] > 0 && loginc[i] > mx) mx = loginc[i];
    if (mx == -INFINITY || isnan(mx)) return 0;
    for (i = 0; i < n; i++) {
        double v = W[i] > 0 ? exp(loginc[i] - mx) : 0;   /* scaled by exp(-mx): the ratio is unchanged */
        a += W[i] * v;
        b += W[i] * v * v;
    }
    return b > 0 ? (double)n * a * a / b : 0;
}

static size_t last_positive(const double *w, size_t n)
{
    size_t i = n;
    while (i > 1 && !(w[i - 1] > 0)) i--;
    return i - 1;
}

/* Stratified (a fresh uniform in each stratum) and systematic (one uniform for all): point j is (j + u_j) / m;
** each particle counts the points that fall in its interval of the cumulative weights. Points past the last
** cumulative sum (rounding) go to the last positive weight. */
static void strata(const double *w, size_t n, size_t m, plm_rng *r, int fresh, size_t *counts)
{
    size_t i, j = 0;
    double c = 0, u = plm_rng_uniform(r), dm = (double)m;
    for (i = 0; i < n; i++) counts[i] = 0;
    /* c is the cumulative weight scaled by m, so the test needs no division per slot (a division in this
    ** loop-carried chain made systematic resampling cost as much as a model step) */
    for (i = 0; i < n && j < m; i++) {
        c += w[i] * dm;
        while (j < m && (double)j + u < c) {
            counts[i]++;
            j++;
            if (fresh && j < m) u = plm_rng_uniform(r);
        }
    }
    counts[last_positive(w, n)] += m - j;
}

/* The number of slots j in [0, m) whose point j + u lies below the cumulative weight c (scaled by m), with
** the comparison strata() makes, so both give the same counts. c - u > -1, so truncation gives its floor or 0;
** the estimate is then off by at most one (the rounding of c - u), which the two corrections settle. All of it
** in arithmetic, not branches: the counts are random, so a branch on them would be mispredicted. */
static inline size_t slots_below(double c, double u, size_t m)
{
    /* signed: an unsigned conversion is a branch on x86-64; m <= 4e9 fits */
    const int64_t mm = (int64_t)m;
    double d = c - u;
    int64_t k = (int64_t)(d > 0 ? d : 0);
    k += (double)k < d;
    k = k < mm ? k : mm;
    k -= (k > 0) & !((double)(k - 1) + u < c);
    k += (k < mm) & ((double)k + u < c);
    return (size_t)k;
}

void plm_resample_systematic_ancestors(const double *w, size_t n, size_t m, plm_rng *r, size_t *anc, size_t *marks)
{
    double c = 0, u = plm_rng_uniform(r), dm = (double)m;
    size_t i, j, s = 0, last = last_positive(w, n);
    /* marks[k] = how many particles have their last slot before k: slot j belongs to the particle numbered
    ** by the particles whose slots all lie before it, i.e. the running sum of marks; past the last
    ** cumulative sum (rounding) the slots go to the last positive weight, as in strata() */
    memset(marks, 0, (m + 1) * sizeof *marks);
    for (i = 0; i < n; i++) {
        c += w[i] * dm;
        marks[slots_below(c, u, m)]++;
    }
    for (j = 0; j < m; j++) {
        s += marks[j];
        anc[j] = s < n ? s : last;
    }
}

/* slots_below without its exact corrections, for the chunked pass: ceil(c - u) as round(c - u + 1/2), by
** adding and removing 2^52 (c - u > -1, and below 2^32). It differs from slots_below only when c - u lands
** within rounding of an integer; then one slot moves between neighbours. */
static inline size_t slots_near(double c, double u, int64_t m)
{
    double r = (c - u + 0.5 + 0x1p52) - 0x1p52;   /* IEEE arithmetic: no compiler folds this */
    int64_t k = (int64_t)r;
    return (size_t)(k < m ? k : m);
}

typedef struct sys_job {
    const double *w;
    size_t n, m, chunk, *anc, *marks;
    double u, dm;
    const double *start;   /* scaled cumulative weight at each chunk's start; start[nchunks] is the total */
    const double *src;     /* particles to copy into their slots (dim components), or NULL */
    double *dst;
    int dim;
} sys_job;

static void sys_chunks(void *arg, size_t c0, size_t c1, int worker)
{
    sys_job *J = arg;
    size_t c;
    (void)worker;
    for (c = c0; c < c1; c++) {
        size_t i0 = c * J->chunk, n = J->n - i0 < J->chunk ? J->n - i0 : J->chunk, i, j, s = 0, last = i0;
        size_t k0 = slots_below(J->start[c], J->u, J->m), k1 = slots_below(J->start[c + 1], J->u, J->m);
        size_t *marks = J->marks + c;   /* chunk c's marks are [k0 + c, k1 + c]: apart from the others' */
        double cum = J->start[c];
        if (k1 == k0) continue;
        for (j = k0; j <= k1; j++) marks[j] = 0;
        for (i = 0; i < n; i++) {
            size_t k;
            cum += J->w[i0 + i] * J->dm;
            k = slots_near(cum, J->u, (int64_t)J->m);
            marks[k < k1 ? k : k1]++;
            last = J->w[i0 + i] > 0 ? i0 + i : last;
        }
        /* slots the chunk's own running sum leaves short of its total (rounding) go to its last positive
        ** weight, which exists because the chunk has slots */
        for (j = k0; j < k1; j++) {
            s += marks[j];
            J->anc[j] = s < n ? i0 + s : last;
        }
        for (i = 0; i < (size_t)J->dim; i++) {   /* the chunk's slots were decided here: copy while in cache */
            const double *src = J->src + i * J->n;
            double *dst = J->dst + i * J->m;
            for (j = k0; j < k1; j++) dst[j] = src[J->anc[j]];
        }
    }
}

void plm_resample_systematic_chunked(const double *w, size_t n, size_t m, size_t chunk, const double *csum,
                                     plm_rng *r, size_t *anc, size_t *marks, double *start, const double *src,
                                     double *dst, int dim, int nthreads)
{
    size_t nc = (n + chunk - 1) / chunk, c, j, last = last_positive(w, n);
    sys_job J;
    int k;
    J.w = w, J.n = n, J.m = m, J.chunk = chunk, J.anc = anc, J.marks = marks, J.start = start;
    J.src = src, J.dst = dst, J.dim = src ? dim : 0;
    J.u = plm_rng_uniform(r);
    J.dm = (double)m;
    start[0] = 0;
    for (c = 0; c < nc; c++) start[c + 1] = start[c] + csum[c] * J.dm;
    plm_parallel_for(nthreads, nc, 1, sys_chunks, &J);
    /* past the total (rounding), as in strata() */
    for (j = slots_below(start[nc], J.u, m); j < m; j++) {
        anc[j] = last;
        for (k = 0; k < J.dim; k++) dst[(size_t)k * m + j] = src[(size_t)k * n + last];
    }
}

size_t plm_resample_slots_below(double c, double u, size_t m)
{
    return slots_below(c, u, m);
}

/* The runs of sys_chunks: chunk c's slot j in [k0, k1) goes to particle s(j) = #{i : k0 <= k_i <= j} of the
** chunk (k_i the slot of its running sum, slots_near), or to the chunk's last positive weight when s(j) reaches
** the chunk's size. s is constant between consecutive k_i, so the slots come in runs, found in one pass. */
size_t plm_resample_systematic_runs(const double *w, size_t n, size_t chunk, size_t nc, const double *start, double u,
                                    size_t m, size_t *src, size_t *cnt)
{
    const double dm = (double)m;
    size_t c, nr = 0;
    for (c = 0; c < nc; c++) {
        size_t i0 = c * chunk, nn = n - i0 < chunk ? n - i0 : chunk, i, j, s = 0, last = i0, k = 0;
        size_t k0 = slots_below(start[c], u, m), k1 = slots_below(start[c + 1], u, m);
        double cum = start[c];
        int have = 0;   /* k is particle i's slot */
        if (k1 <= k0) continue;
        for (i = 0; i < nn; i++)
            if (w[i0 + i] > 0) last = i0 + i;
        for (i = 0, j = k0; j < k1;) {
            size_t next;
            while (i < nn) {   /* count the particles whose slot is at most j (those below k0 never count) */
                if (!have) {
                    cum += w[i0 + i] * dm;
                    k = slots_near(cum, u, (int64_t)m);
                    have = 1;
                }
                if (k > j) break;
                s += k >= k0;
                i++;
                have = 0;
            }
            if (s >= nn) {   /* the rest of the chunk's slots: its last positive weight */
                src[nr] = last;
                cnt[nr++] = k1 - j;
                break;
            }
            /* particle s holds the slots up to the next particle's slot */
            next = i < nn && k < k1 ? k : k1;
            src[nr] = i0 + s;
            cnt[nr++] = next - j;
            j = next;
        }
    }
    return nr;
}

/* Multinomial counts of m draws from weights v (summing to vsum, not necessarily 1) added to counts, by
** conditional binomials: counts[i] ~ Binomial(m left, v_i / weight left). O(n), exact, no sorting. */
static void add_multinomial(const double *v, double vsum, size_t n, size_t m, plm_rng *r, size_t *counts)
{
    size_t i, left = m, last = last_positive(v, n);
    double rest = vsum;
    for (i = 0; i < n && left > 0; i++) {
        size_t k;
        if (!(v[i] > 0)) continue;
        if (i == last || v[i] >= rest) {
            k = left;
        } else {
            k = gsl_ran_binomial(&r->gsl, v[i] / rest, (unsigned)left);
        }
        counts[i] += k;
        left -= k;
        rest -= v[i];
    }
}

/* Residual: floor(m w_i) copies each, then the m - sum floor copies left multinomially on the fractional parts
** v_i = m w_i - floor(m w_i), by conditional binomials as above (v is recomputed rather than stored). */
static void residual(const double *w, size_t n, size_t m, plm_rng *r, size_t *counts)
{
    size_t i, fixed = 0, left, last = 0;
    double dm = (double)m, rest = 0;
    for (i = 0; i < n; i++) {
        double f = floor(dm * w[i]);
        counts[i] = (size_t)f;
        fixed += counts[i];
        rest += dm * w[i] - f;
    }
    if (fixed >= m) return;
    left = m - fixed;
    for (i = 0; i < n; i++)
        if (dm * w[i] - floor(dm * w[i]) > 0) last = i;
    for (i = 0; i < n && left > 0; i++) {
        double v = dm * w[i] - floor(dm * w[i]);
        size_t k;
        if (!(v > 0)) continue;
        k = (i == last || v >= rest) ? left : gsl_ran_binomial(&r->gsl, v / rest, (unsigned)left);
        counts[i] += k;
        left -= k;
        rest -= v;
    }
}

/* SSP: the fractional parts xi of m w_i are rounded two at a time. Of the pair (i, j), one moves up and the
** other down by the same amount, chosen with the probabilities that keep both means, until one of them reaches
** 0 or 1; the one that reached its bound is replaced by the next particle. n - 1 uniforms; xi is the caller's
** scratch of n doubles. */
static void ssp(const double *w, size_t n, size_t m, plm_rng *r, size_t *counts, double *xi)
{
    size_t i = 0, j = 1, k, total = 0;
    double dm = (double)m;
    for (k = 0; k < n; k++) {
        double f = floor(dm * w[k]);
        counts[k] = (size_t)f;
        xi[k] = dm * w[k] - f;
    }
    for (k = 0; k + 1 < n; k++) {
        double up = fmin(xi[j], 1 - xi[i]);     /* i up, j down */
        double down = fmin(xi[i], 1 - xi[j]);   /* j up, i down */
        double sum = up + down, u = plm_rng_uniform(r);
        if (sum > 0 && u < up / sum) {           /* swap so that i is always the one that moves up */
            size_t t = i;
            i = j;
            j = t;
            up = down;
        }
        if (xi[j] < 1 - xi[i]) {                 /* j reaches 0: it is done, the next particle takes its place */
            xi[i] += xi[j];
            xi[j] = 0;
            j = k + 2;
        } else {                                 /* i reaches 1: one more offspring, then replaced */
            xi[j] -= up;
            xi[i] = 0;
            counts[i]++;
            i = k + 2;
        }
    }
    /* rounding can leave the last open fractional part just below 1: it is the missing offspring */
    for (k = 0; k < n; k++) total += counts[k];
    if (total < m) {
        size_t open = i < n ? i : j < n ? j : last_positive(w, n);
        counts[open] += m - total;
    }
}

plm_status plm_resample_counts(plm_ctx *ctx, plm_resample_scheme s, const double *w, size_t n, size_t m,
                               plm_rng *r, size_t *counts, double *scratch)
{
    double sum = 0;
    size_t i;
    if (n == 0 || m == 0)
        return plm_fail(ctx, PLM_EINVAL, "resample: need at least one particle and one slot (got n = %zu, m = %zu)", n, m);
    if (m > 4000000000u) return plm_fail(ctx, PLM_EINVAL, "resample: at most 4e9 slots (got %zu)", m);
    for (i = 0; i < n; i++) {
        if (!(w[i] >= 0) || w[i] == INFINITY)
            return plm_fail(ctx, PLM_EINVAL, "resample: weight %zu is %g (must be finite and >= 0)", i + 1, w[i]);
        sum += w[i];
    }
    if (fabs(sum - 1) > 1e-9) return plm_fail(ctx, PLM_EINVAL, "resample: weights sum to %.17g, not 1", sum);
    switch (s) {
    case PLM_RESAMPLE_MULTINOMIAL:
        for (i = 0; i < n; i++) counts[i] = 0;
        add_multinomial(w, sum, n, m, r, counts);
        return PLM_OK;
    case PLM_RESAMPLE_RESIDUAL:
        residual(w, n, m, r, counts);
        return PLM_OK;
    case PLM_RESAMPLE_STRATIFIED:
        strata(w, n, m, r, 1, counts);
        return PLM_OK;
    case PLM_RESAMPLE_SYSTEMATIC:
        strata(w, n, m, r, 0, counts);
        return PLM_OK;
    case PLM_RESAMPLE_SSP:
        if (!scratch) return plm_fail(ctx, PLM_EINVAL, "resample: ssp needs scratch of n doubles");
        ssp(w, n, m, r, counts, scratch);
        return PLM_OK;
    }
    return plm_fail(ctx, PLM_EINVAL, "resample: unknown scheme %d", (int)s);
}

void plm_resample_ancestors(const size_t *counts, size_t n, size_t *anc)
{
    size_t i, j = 0, k;
    for (i = 0; i < n; i++)
        for (k = 0; k < counts[i]; k++) anc[j++] = i;
}

void plm_resample_ancestors_in_place(const size_t *counts, size_t n, size_t m, size_t *anc)
{
    size_t i, k, free_slot = 0;
    /* first copies stay home (when home is a slot), then the other copies fill the slots left free */
    for (i = 0; i < n && i < m; i++)
        if (counts[i] > 0) anc[i] = i;
    for (i = 0; i < n; i++) {
        for (k = (i < m && counts[i] > 0) ? 1 : 0; k < counts[i]; k++) {
            while (free_slot < m && free_slot < n && counts[free_slot] > 0) free_slot++;
            anc[free_slot++] = i;
        }
    }
}

void plm_resample_counts_of(const size_t *anc, size_t m, size_t n, size_t *counts)
{
    size_t j;
    for (j = 0; j < n; j++) counts[j] = 0;
    for (j = 0; j < m; j++) counts[anc[j]]++;
}

plm_status plm_resample_fc(plm_ctx *ctx, const double *w, size_t n, size_t N, plm_rng *r, size_t *idx, double *neww,
                           size_t *m)
{
    size_t i, kept = 0, nz = 0, left;
    double wmin = INFINITY, lo, hi, c, rest = 0, u, acc = 0;
    if (N == 0) return plm_fail(ctx, PLM_EINVAL, "resample_fc: N must be >= 1");
    for (i = 0; i < n; i++) {
        if (!(w[i] >= 0) || w[i] == INFINITY)
            return plm_fail(ctx, PLM_EINVAL, "resample_fc: weight %zu is %g (must be finite and >= 0)", i + 1, w[i]);
        if (w[i] > 0) nz++, wmin = fmin(wmin, w[i]);
    }
    if (nz <= N) {   /* every positive weight fits: keep them all as they are */
        for (i = 0; i < n; i++)
            if (w[i] > 0) idx[kept] = i, neww[kept] = w[i], kept++;
        *m = kept;
        return PLM_OK;
    }
    /* f(c) = sum min(1, c w_i) increases from f(N) <= N to f(N / wmin) = nz > N: bisect in log scale, keeping
    ** f(lo) <= N so that there are at most N survivors */
    lo = (double)N;
    hi = (double)N / wmin;
    for (i = 0; i < 200 && hi - lo > 1e-12 * hi; i++) {
        double mid = sqrt(lo * hi), f = 0;
        for (size_t j = 0; j < n; j++) f += fmin(1, mid * w[j]);
        if (f < (double)N) lo = mid; else hi = mid;
    }
    c = lo;
    for (i = 0; i < n; i++) {
        if (c * w[i] >= 1) idx[kept] = i, neww[kept] = w[i], kept++;
        else rest += w[i];
    }
    left = N - kept;
    /* the rest fill `left` slots systematically, particle i with probability left w_i / rest = c w_i < 1 (never
    ** twice), each carrying rest / left: the total weight is kept exactly and E[new weight of i] = w_i */
    u = plm_rng_uniform(r);
    {
        size_t j = 0, lastr = n;
        for (i = 0; i < n && j < left; i++) {
            if (c * w[i] >= 1 || !(w[i] > 0)) continue;
            lastr = i;
            acc += w[i] / rest * (double)left;
            while (j < left && (double)j + u < acc) {
                idx[kept + j] = i;
                neww[kept + j] = rest / (double)left;
                j++;
            }
        }
        while (j < left && lastr < n) {   /* rounding at the top end */
            idx[kept + j] = lastr;
            neww[kept + j] = rest / (double)left;
            j++;
        }
        *m = kept + j;
    }
    return PLM_OK;
}
