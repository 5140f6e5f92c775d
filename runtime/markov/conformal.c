/* conformal.c -- block-permutation conformal p-values for Markov chains and HMMs (see conformal.h). */
#include "conformal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* In sorted s[0..n-1]: how many entries are > v and how many == v. */
static void count_rank(const double *s, size_t n, double v, size_t *greater, size_t *equal)
{
    size_t lo = 0, hi = n, first_ge, first_gt;
    while (lo < hi) {   /* first index with s >= v */
        size_t mid = lo + (hi - lo) / 2;
        if (s[mid] < v) lo = mid + 1;
        else hi = mid;
    }
    first_ge = lo;
    hi = n;
    while (lo < hi) {   /* first index with s > v */
        size_t mid = lo + (hi - lo) / 2;
        if (s[mid] <= v) lo = mid + 1;
        else hi = mid;
    }
    first_gt = lo;
    *greater = n - first_gt;
    *equal = first_gt - first_ge;
}

static double pvalue(size_t greater, size_t equal, size_t n, double u)
{
    return ((double)greater + u * (double)(equal + 1)) / (double)(n + 1);
}

static plm_status check_u(plm_ctx *ctx, double u)
{
    if (!(u > 0 && u <= 1)) return plm_fail(ctx, PLM_EINVAL, "conformal: u must be in (0, 1] (got %g)", u);
    return PLM_OK;
}

plm_status plm_conformal_blocks(plm_ctx *ctx, int K, size_t T, const int *x, const double *score, size_t ncand,
                                const int *cand, const double *cscore, double u, double *p)
{
    size_t *start, *fill, t, i;
    size_t *first;
    double *byst;
    plm_status st;
    if ((st = check_u(ctx, u))) return st;
    if (K < 1 || T < 1) return plm_fail(ctx, PLM_EINVAL, "conformal: need K >= 1 states and T >= 1 steps (got %d, %zu)", K, T);
    for (t = 0; t < T; t++) {
        if (x[t] < 0 || x[t] >= K)
            return plm_fail(ctx, PLM_EINVAL, "conformal: state at t=%zu is %d, but states are 0..%d", t, x[t], K - 1);
        if (t > 0 && isnan(score[t])) return plm_fail(ctx, PLM_EDOM, "conformal: score at t=%zu is NaN", t);
    }
    for (i = 0; i < ncand; i++) {
        if (cand[i] < 0 || cand[i] >= K)
            return plm_fail(ctx, PLM_EINVAL, "conformal: candidate %zu is state %d, but states are 0..%d", i, cand[i], K - 1);
        if (isnan(cscore[i])) return plm_fail(ctx, PLM_EDOM, "conformal: score of candidate %zu is NaN", i);
    }
    start = calloc((size_t)K + 1, sizeof *start);
    fill = calloc((size_t)K, sizeof *fill);
    first = malloc((size_t)K * sizeof *first);
    byst = malloc((T ? T : 1) * sizeof *byst);
    if (!start || !fill || !first || !byst) {
        free(start), free(fill), free(first), free(byst);
        return plm_fail(ctx, PLM_ENOMEM, "conformal: out of memory (T=%zu)", T);
    }
    /* The first visit of each state closes the excursion that holds the start of the path, which is not
    ** exchangeable with the others: only later visits are calibration steps. */
    for (i = 0; i < (size_t)K; i++) first[i] = (size_t)-1;
    for (t = 0; t < T; t++) {
        if (first[x[t]] == (size_t)-1) first[x[t]] = t;
        else start[x[t] + 1]++;
    }
    for (i = 0; i < (size_t)K; i++) start[i + 1] += start[i];
    for (t = 0; t < T; t++)
        if (t != first[x[t]]) byst[start[x[t]] + fill[x[t]]++] = score[t];
    for (i = 0; i < (size_t)K; i++) qsort(byst + start[i], start[i + 1] - start[i], sizeof *byst, cmp_double);
    for (i = 0; i < ncand; i++) {
        int c = cand[i];
        size_t n = start[c + 1] - start[c], gt, eq;
        count_rank(byst + start[c], n, cscore[i], &gt, &eq);
        p[i] = pvalue(gt, eq, n, u);
    }
    free(start), free(fill), free(first), free(byst);
    return PLM_OK;
}

plm_status plm_conformal_split(plm_ctx *ctx, size_t T, const double *score, size_t ncand, const double *cscore,
                               double u, double *p)
{
    size_t n = T > 1 ? T - 1 : 0, i, gt, eq;
    double *s;
    plm_status st;
    if ((st = check_u(ctx, u))) return st;
    if (!(s = malloc((n ? n : 1) * sizeof *s))) return plm_fail(ctx, PLM_ENOMEM, "conformal: out of memory (T=%zu)", T);
    for (i = 0; i < n; i++) {
        s[i] = score[i + 1];
        if (isnan(s[i])) {
            free(s);
            return plm_fail(ctx, PLM_EDOM, "conformal: score at t=%zu is NaN", i + 1);
        }
    }
    qsort(s, n, sizeof *s, cmp_double);
    for (i = 0; i < ncand; i++) {
        count_rank(s, n, cscore[i], &gt, &eq);
        p[i] = pvalue(gt, eq, n, u);
    }
    free(s);
    return PLM_OK;
}

/* log sum exp of n values; -inf when all are -inf. */
static double lse(const double *v, int n)
{
    double m = -INFINITY, s = 0;
    int i;
    for (i = 0; i < n; i++)
        if (v[i] > m) m = v[i];
    if (m == -INFINITY) return m;
    for (i = 0; i < n; i++) s += exp(v[i] - m);
    return m + log(s);
}

/* -log of a log-probability, +inf for -inf (an impossible step is maximally nonconforming). */
static double nonconf(double logp)
{
    return logp == -INFINITY || isnan(logp) ? INFINITY : -logp;
}

/* Dispatch to the chosen method for one batch of candidates. */
static plm_status pvalues(plm_ctx *ctx, plm_conformal_method method, int K, size_t T, const int *x,
                          const double *score, size_t ncand, const int *cand, const double *cscore, double u, double *p)
{
    if (method == PLM_CONFORMAL_SPLIT) return plm_conformal_split(ctx, T, score, ncand, cscore, u, p);
    return plm_conformal_blocks(ctx, K, T, x, score, ncand, cand, cscore, u, p);
}

/* NEXT without states: the symbols are the chain. Q[a*M + b] = log p_h(y_t = b | y_{t-1} = a). */
static plm_status next_symbols(plm_ctx *ctx, const plm_hmm *h, size_t T, const double *y, int M, const double *logBc,
                               plm_conformal_method method, double u, double *p)
{
    const int K = h->K;
    double *pi = NULL, *Q = NULL, *w = NULL, *score = NULL, *cscore = NULL;
    int *x = NULL, *cand = NULL, a, b, k, j;
    size_t t;
    plm_status st = PLM_OK;
    pi = malloc((size_t)K * sizeof *pi);
    Q = malloc((size_t)M * M * sizeof *Q);
    w = malloc((size_t)2 * K * sizeof *w);
    score = malloc(T * sizeof *score);
    cscore = malloc((size_t)M * sizeof *cscore);
    x = malloc(T * sizeof *x);
    cand = malloc((size_t)M * sizeof *cand);
    if (!pi || !Q || !w || !score || !cscore || !x || !cand) {
        st = plm_fail(ctx, PLM_ENOMEM, "conformal: out of memory");
        goto done;
    }
    /* A reducible h has no unique stationary distribution: the flat prior is used instead. */
    if (plm_hmm_stationary(ctx, h, pi))
        for (k = 0; k < K; k++) pi[k] = 1.0 / K;
    plm_ctx_clear(ctx);
    for (a = 0; a < M; a++) {
        /* w = p(x_{t-1} | y_{t-1} = a) under the stationary prior (the flat prior where a symbol is impossible
        ** under it, as for symbols of transient states), then one step of the chain */
        double *post = w, *pred = w + K, z;
        for (k = 0; k < K; k++) post[k] = log(pi[k]) + logBc[(size_t)a * K + k];
        z = lse(post, K);
        if (z == -INFINITY) {
            for (k = 0; k < K; k++) post[k] = logBc[(size_t)a * K + k];
            z = lse(post, K);
        }
        for (k = 0; k < K; k++) post[k] = z == -INFINITY ? 1.0 / K : exp(post[k] - z);
        for (j = 0; j < K; j++) {
            pred[j] = 0;
            for (k = 0; k < K; k++) pred[j] += post[k] * h->trans[(size_t)k * K + j];
        }
        for (b = 0; b < M; b++) {
            double s = 0;
            for (j = 0; j < K; j++) s += pred[j] * exp(logBc[(size_t)b * K + j]);
            Q[(size_t)a * M + b] = log(s);
        }
    }
    for (t = 0; t < T; t++) x[t] = (int)y[t];
    score[0] = 0;
    for (t = 1; t < T; t++) score[t] = nonconf(Q[(size_t)x[t - 1] * M + x[t]]);
    for (b = 0; b < M; b++) {
        cand[b] = b;
        cscore[b] = nonconf(Q[(size_t)x[T - 1] * M + b]);
    }
    st = pvalues(ctx, method, M, T, x, score, (size_t)M, cand, cscore, u, p);
done:
    free(pi), free(Q), free(w), free(score), free(cscore), free(x), free(cand);
    return st;
}

plm_status plm_conformal_hmm(plm_ctx *ctx, const plm_hmm *h, size_t T, const double *y, const int *x,
                             plm_conformal_target target, plm_conformal_method method, double u, double *p)
{
    const int K = h->K;
    int M = h->emit == PLM_HMM_CATEGORICAL ? h->M : h->emit == PLM_HMM_BERNOULLI ? 2 : 0;
    size_t Tx, t;
    double *logB = NULL, *logBc = NULL, *score = NULL, *cscore = NULL, *ysym = NULL, *pc = NULL, *v = NULL;
    int *cand = NULL, k, m;
    plm_status st;
    if (target == PLM_CONFORMAL_STATE && !x)
        return plm_fail(ctx, PLM_EINVAL, "conformal.hmm: target 'state' needs the hidden states of the observed "
                        "sequence (option states): the blocks are excursions of the hidden chain");
    if (target == PLM_CONFORMAL_NEXT && !M)
        return plm_fail(ctx, PLM_EINVAL, "conformal.hmm: target 'next' needs a finite set of symbols "
                        "(categorical or bernoulli emissions; this HMM's are %s)", plm_hmm_emit_name(h->emit));
    Tx = target == PLM_CONFORMAL_STATE ? T - 1 : T;
    if (T < 1 || Tx < 1)
        return plm_fail(ctx, PLM_EINVAL, "conformal.hmm: need at least %d observations (got %zu)",
                        target == PLM_CONFORMAL_STATE ? 2 : 1, T);
    if ((st = plm_hmm_check_obs(ctx, h, T, y))) return st;
    if (x)
        for (t = 0; t < Tx; t++)
            if (x[t] < 0 || x[t] >= K)
                return plm_fail(ctx, PLM_EDOM, "conformal.hmm: state at t=%zu is %d, but states are 0..%d", t, x[t], K - 1);
    logBc = malloc((size_t)(M ? M : 1) * K * sizeof *logBc);
    ysym = malloc((size_t)(M ? M : 1) * sizeof *ysym);
    if (!logBc || !ysym) {
        st = plm_fail(ctx, PLM_ENOMEM, "conformal: out of memory");
        goto done;
    }
    for (m = 0; m < M; m++) ysym[m] = m;
    if (M && (st = plm_hmm_emit_loglik(ctx, h, (size_t)M, ysym, logBc))) goto done;
    if (target == PLM_CONFORMAL_NEXT && !x) {
        st = next_symbols(ctx, h, T, y, M, logBc, method, u, p);
        goto done;
    }
    logB = malloc(T * (size_t)K * sizeof *logB);
    score = malloc(T * sizeof *score);
    cscore = malloc((size_t)K * (M ? M : 1) * sizeof *cscore);
    cand = malloc((size_t)K * (M ? M : 1) * sizeof *cand);
    pc = malloc((size_t)K * (M ? M : 1) * sizeof *pc);
    v = malloc((size_t)K * sizeof *v);
    if (!logB || !score || !cscore || !cand || !pc || !v) {
        st = plm_fail(ctx, PLM_ENOMEM, "conformal: out of memory (T=%zu)", T);
        goto done;
    }
    if ((st = plm_hmm_emit_loglik(ctx, h, T, y, logB))) goto done;
    score[0] = 0;
    if (target == PLM_CONFORMAL_STATE) {
        /* -log p(x_t | x_{t-1}, y_t): the one-step state posterior given the previous state */
        for (t = 1; t <= Tx; t++) {
            const double *la = h->logtrans + (size_t)x[t - 1] * K, *lb = logB + t * K;
            double z;
            if (t % 65536 == 0 && plm_interrupted()) {
                st = plm_fail(ctx, PLM_EINTR, "conformal.hmm: interrupted");
                goto done;
            }
            for (k = 0; k < K; k++) v[k] = la[k] + lb[k];
            z = lse(v, K);
            if (t < Tx) score[t] = z == -INFINITY ? INFINITY : nonconf(v[x[t]] - z);
            else
                for (k = 0; k < K; k++) {
                    cand[k] = k;
                    cscore[k] = z == -INFINITY ? INFINITY : nonconf(v[k] - z);
                }
        }
        st = pvalues(ctx, method, K, Tx, x, score, (size_t)K, cand, cscore, u, p);
        goto done;
    }
    /* NEXT with states: the pair (state, symbol) at T */
    for (t = 1; t < T; t++) score[t] = nonconf(h->logtrans[(size_t)x[t - 1] * K + x[t]] + logB[t * K + x[t]]);
    for (k = 0; k < K; k++)
        for (m = 0; m < M; m++) {
            cand[k * M + m] = k;
            cscore[k * M + m] = nonconf(h->logtrans[(size_t)x[T - 1] * K + k] + logBc[(size_t)m * K + k]);
        }
    if ((st = pvalues(ctx, method, K, T, x, score, (size_t)K * M, cand, cscore, u, pc))) goto done;
    for (m = 0; m < M; m++) {
        p[m] = 0;
        for (k = 0; k < K; k++)
            if (pc[k * M + m] > p[m]) p[m] = pc[k * M + m];
    }
done:
    free(logB), free(logBc), free(score), free(cscore), free(ysym), free(pc), free(v), free(cand);
    return st;
}
