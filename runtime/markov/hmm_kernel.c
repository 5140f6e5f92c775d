/* hmm_kernel.c -- the HMM kernels over a chain and an emission source: scaled forward, backward and Viterbi.
**
** Numerics. The forward and backward vectors are kept in probability space, rescaled every step, with the
** log of each scale factor summed into the log-likelihood: products of probabilities along a sequence
** underflow by t ~ 700 otherwise, and logsumexp in the inner loop costs K^2 exp/log calls per step. A step
** whose scaled sum falls below TINY (emissions so peaked, or transitions so small, that every product
** underflowed) is redone in log space from the logs of the previous vector, so no finite log-likelihood
** ever comes out as -inf or NaN. Viterbi runs in log space, shifted by the running maximum each step. */
#include "hmm_impl.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Below this the scaled step has lost most of its digits to subnormals (or is zero): redo it in logs. */
#define TINY 1e-280

/* The hot loops get an AVX2/FMA clone picked at load time (GCC's function multi-versioning): the library is
** built for generic x86-64, where the K-wide inner loops run two doubles per instruction instead of four. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__) && !defined(__SANITIZE_ADDRESS__)
#define HOT __attribute__((target_clones("arch=x86-64-v3", "default"), optimize("O3")))
#else
#define HOT
#endif

/* ---- Emission rows ---------------------------------------------------------------------------------- */


/* Emission probabilities of step t scaled by exp(-*shift) into buf (or a pointer into emitT), and the
** log row for the log-space fallback in *lb. Returns NULL when every emission is impossible. */
static inline const double *emis_row(const emis *em, size_t t, int K, double *restrict buf, double *shift,
                                     const double **lb)
{
    int j;
    if (em->logB) {
        const double *restrict r = em->logB + t * (size_t)K;
        double m = -INFINITY;
        for (j = 0; j < K; j++)
            if (r[j] > m) m = r[j];
        if (!(m > -INFINITY)) return NULL;
        for (j = 0; j < K; j++) buf[j] = exp(r[j] - m);
        *shift = m;
        *lb = r;
        return buf;
    } else {
        size_t off = (size_t)em->y[t] * (size_t)K;
        *shift = 0;
        *lb = em->logemitT + off;
        return em->emitT + off;
    }
}

static inline const double *trans_of(const plm_chain *c, size_t t)   /* the matrix for step t -> t+1 */
{
    return c->trans_t ? c->trans_t[t] : c->trans;
}

/* log sum_i exp(a_i + b_i) over K terms, stride sb for b (columns of a row-major matrix), with -inf handled. */
static double logsumexp2(int K, const double *a, const double *b, size_t sb)
{
    double m = -INFINITY, s = 0;
    int i;
    for (i = 0; i < K; i++) {
        double v = a[i] + b[i * sb];
        if (v > m) m = v;
    }
    if (!(m > -INFINITY)) return -INFINITY;
    for (i = 0; i < K; i++) s += exp(a[i] + b[i * sb] - m);
    return m + log(s);
}

/* Normalise the log vector lv (K) into probabilities p; returns the log of the normaliser (-inf when every
** entry is -inf, leaving p alone). */
static double normalise_logs(int K, const double *lv, double *p)
{
    double m = -INFINITY, s = 0;
    int j;
    for (j = 0; j < K; j++)
        if (lv[j] > m) m = lv[j];
    if (!(m > -INFINITY)) return -INFINITY;
    for (j = 0; j < K; j++) s += (p[j] = exp(lv[j] - m));
    for (j = 0; j < K; j++) p[j] /= s;
    return m + log(s);
}

/* ---- Forward pass ----------------------------------------------------------------------------------- */


/* Steps t0 .. t0+n-1 of the forward pass. em's rows are addressed relative to t0 (a block of a longer
** sequence). When out is given, row t - t0 receives the filtered vector. */
HOT void plm_hmm_fwd_steps(fwd *f, const plm_chain *c, size_t t0, size_t n, const emis *em, double *out)
{
    const int K = f->K;
    double *restrict alpha = f->alpha, *restrict pred = f->pred;
    size_t u;
    int j;
    for (u = 0; u < n; u++) {
        size_t t = t0 + u;
        double shift, s = 0;
        const double *lb;
        const double *restrict e;
        if (f->impossible != (size_t)-1) return;
        if (t == 0)
            memcpy(pred, c->init, (size_t)K * sizeof *pred);
        else
            predict_step(K, alpha, trans_of(c, t - 1), pred);
        e = emis_row(em, u, K, f->ebuf, &shift, &lb);
        if (e) {
            for (j = 0; j < K; j++) s += (alpha[j] = pred[j] * e[j]);
        }
        if (e && s > TINY) {
            const double inv = 1.0 / s;
            for (j = 0; j < K; j++) alpha[j] *= inv;
            f->loglik += shift + log(s);
        } else {
            /* Every product underflowed (or the row is impossible): redo the step in logs, from the logs of
            ** the previous filtered vector so that predictions below DBL_MIN still count. */
            double *lv = f->lbuf, lz;
            if (e) {
                if (t == 0) {
                    for (j = 0; j < K; j++) lv[j] = log(c->init[j]) + lb[j];
                } else {
                    const double *A = trans_of(c, t - 1);
                    double *la = f->ebuf;   /* the scaled row is no longer needed */
                    int i;
                    for (i = 0; i < K; i++) la[i] = log(alpha[i]);
                    for (j = 0; j < K; j++) {
                        double m = -INFINITY, z = 0;
                        for (i = 0; i < K; i++) {
                            double v = la[i] + log(A[(size_t)i * K + j]);
                            if (v > m) m = v;
                        }
                        if (m > -INFINITY)
                            for (i = 0; i < K; i++) z += exp(la[i] + log(A[(size_t)i * K + j]) - m);
                        lv[j] = (m > -INFINITY ? m + log(z) : -INFINITY) + lb[j];
                    }
                }
                lz = normalise_logs(K, lv, alpha);
            } else
                lz = -INFINITY;
            if (!(lz > -INFINITY)) {
                f->impossible = t;
                f->loglik = -INFINITY;
                return;
            }
            f->loglik += lz;
        }
        if (out) memcpy(out + u * (size_t)K, alpha, (size_t)K * sizeof *alpha);
    }
}

static plm_status check_core(plm_ctx *ctx, const char *fn, const plm_chain *c, size_t T)
{
    if (!c || c->K < 1) return plm_fail(ctx, PLM_EINVAL, "%s: the chain must have at least one state", fn);
    if (T == 0) return plm_fail(ctx, PLM_EINVAL, "%s: the sequence is empty", fn);
    if (!c->init || (!c->trans && !c->trans_t))
        return plm_fail(ctx, PLM_EINVAL, "%s: the chain needs init and trans", fn);
    return PLM_OK;
}

/* Observation t (0-based) has probability 0 given the ones before it. The message numbers it from 1, as the
** user does, and quotes its value when em knows the model's observations (symbols from 1, vectors in full
** up to 8 components). */
plm_status plm_hmm_impossible_at(plm_ctx *ctx, const char *fn, const emis *em, size_t t)
{
    char v[160] = "";
    if (em && em->hm && em->yall) {
        const plm_hmm *h = em->hm;
        const double *y = em->yall + t * (size_t)h->D;
        if (h->emit == PLM_HMM_CATEGORICAL)
            snprintf(v, sizeof v, " (symbol %.17g)", y[0] + 1);
        else if (h->D == 1)
            snprintf(v, sizeof v, " (value %.17g)", y[0]);
        else {
            size_t len = (size_t)snprintf(v, sizeof v, " (value {");
            int i;
            for (i = 0; i < h->D && i < 8 && len < sizeof v; i++)
                len += (size_t)snprintf(v + len, sizeof v - len, "%s%.10g", i ? ", " : "", y[i]);
            if (len < sizeof v) snprintf(v + len, sizeof v - len, "%s})", h->D > 8 ? ", ..." : "");
        }
    }
    return plm_failm(ctx, PLM_EDOM, fn,
                     "observation %zu%s has probability 0 under the model given the observations before it", t + 1, v);
}

plm_status plm_hmm_core_loglik(plm_ctx *ctx, const plm_chain *c, size_t T, const double *logB, double *loglik,
                               double *filtered)
{
    plm_status st = check_core(ctx, "hmm", c, T);
    fwd f;
    emis em = {logB, NULL, NULL, NULL, NULL, NULL};
    double *w;
    if (st) return st;
    if (!(w = malloc(4 * (size_t)c->K * sizeof *w))) return plm_failm(ctx, PLM_ENOMEM, "hmm", "out of memory");
    f.K = c->K, f.alpha = w, f.pred = w + c->K, f.ebuf = w + 2 * c->K, f.lbuf = w + 3 * c->K;
    f.loglik = 0, f.impossible = (size_t)-1;
    for (size_t t0 = 0; t0 < T; t0 += POLL_EVERY) {
        size_t n = T - t0 < POLL_EVERY ? T - t0 : POLL_EVERY;
        em.logB = logB + t0 * (size_t)c->K;
        plm_hmm_fwd_steps(&f, c, t0, n, &em, filtered ? filtered + t0 * (size_t)c->K : NULL);
        if (plm_interrupted()) {
            free(w);
            return plm_failm(ctx, PLM_EINTR, "hmm", "interrupted");
        }
    }
    free(w);
    *loglik = f.loglik;
    if (filtered && f.impossible != (size_t)-1) return plm_hmm_impossible_at(ctx, "hmm", NULL, f.impossible);
    return PLM_OK;
}

/* ---- Backward pass ---------------------------------------------------------------------------------- */

/* sum_j a[j] b[j] in eight partial sums: a plain floating-point reduction is not vectorised without
** -ffast-math (it would reorder the sum), this one is, and its order is fixed. */
static inline double dot(int K, const double *restrict a, const double *restrict b)
{
    double s[8] = {0, 0, 0, 0, 0, 0, 0, 0}, r;
    int j = 0, l;
    for (; j + 8 <= K; j += 8)
        for (l = 0; l < 8; l++) s[l] += a[j + l] * b[j + l];
    r = ((s[0] + s[4]) + (s[1] + s[5])) + ((s[2] + s[6]) + (s[3] + s[7]));
    for (; j < K; j++) r += a[j] * b[j];
    return r;
}

/* Turn the filtered rows in post (T*K, from the forward pass) into smoothed marginals, running the
** backward vector beta_t (normalised to sum 1; only proportionality matters) from t = T-1 down. When xi is
** given, add the expected transition counts sum_t p(x_t = i, x_{t+1} = j | y) into it (K*K). work: 4K. */
HOT plm_status plm_hmm_bwd_pass(plm_ctx *ctx, const plm_chain *c, size_t T, const emis *em, double *post, double *xi,
                                double *work)
{
    const int K = c->K;
    double *restrict beta = work, *restrict v = work + K, *restrict bn = work + 2 * K, *restrict ebuf = work + 3 * K;
    int i, j;
    size_t t;
    for (j = 0; j < K; j++) beta[j] = 1;
    for (t = T - 1; t-- > 0;) {
        double *restrict alpha = post + t * (size_t)K;   /* filtered row in, smoothed row out */
        const double *restrict A = trans_of(c, t);
        const double *restrict e, *lb;
        double shift, Z = 0, s = 0;
        if ((t & (POLL_EVERY - 1)) == 0 && plm_interrupted()) return plm_failm(ctx, PLM_EINTR, "hmm", "interrupted");
        e = emis_row(em, t + 1, K, ebuf, &shift, &lb);
        if (!e) return plm_hmm_impossible_at(ctx, "hmm", em, t + 1);
        for (j = 0; j < K; j++) v[j] = e[j] * beta[j];
        for (i = 0; i < K; i++) {
            const double d = dot(K, A + (size_t)i * K, v);
            bn[i] = d;
            Z += alpha[i] * d;
            s += d;
        }
        if (Z > TINY) {
            const double invZ = 1.0 / Z, invs = 1.0 / s;
            if (xi)
                for (i = 0; i < K; i++) {
                    const double ai = alpha[i] * invZ;
                    const double *restrict row = A + (size_t)i * K;
                    double *restrict xr = xi + (size_t)i * K;
                    for (j = 0; j < K; j++) xr[j] += ai * row[j] * v[j];
                }
            for (i = 0; i < K; i++) {
                alpha[i] *= bn[i] * invZ;
                beta[i] = bn[i] * invs;
            }
        } else {
            /* The products underflowed: the same step in logs. v and bn become log vectors. */
            double lZ;
            for (j = 0; j < K; j++) v[j] = lb[j] + log(beta[j]);
            for (i = 0; i < K; i++) {
                double m = -INFINITY, z = 0;
                for (j = 0; j < K; j++) {
                    double u = log(A[(size_t)i * K + j]) + v[j];
                    if (u > m) m = u;
                }
                if (m > -INFINITY)
                    for (j = 0; j < K; j++) z += exp(log(A[(size_t)i * K + j]) + v[j] - m);
                bn[i] = m > -INFINITY ? m + log(z) : -INFINITY;
            }
            for (i = 0; i < K; i++) ebuf[i] = log(alpha[i]);
            lZ = logsumexp2(K, ebuf, bn, 1);
            if (!(lZ > -INFINITY))
                return plm_failm(ctx, PLM_ERUNTIME, "hmm", "the backward pass underflowed at t=%zu", t);
            if (xi)
                for (i = 0; i < K; i++)
                    for (j = 0; j < K; j++)
                        xi[(size_t)i * K + j] += exp(ebuf[i] + log(A[(size_t)i * K + j]) + v[j] - lZ);
            for (i = 0; i < K; i++) alpha[i] = exp(ebuf[i] + bn[i] - lZ);
            normalise_logs(K, bn, beta);
        }
    }
    return PLM_OK;
}

/* Forward over a whole sequence into rows (T*K) with scratch w (4K), then report. */
plm_status plm_hmm_fwd_all(plm_ctx *ctx, const plm_chain *c, size_t T, const emis *em, double *rows, double *w,
                           double *loglik)
{
    fwd f;
    size_t t0;
    const int K = c->K;
    f.K = K, f.alpha = w, f.pred = w + K, f.ebuf = w + 2 * K, f.lbuf = w + 3 * K;
    f.loglik = 0, f.impossible = (size_t)-1;
    for (t0 = 0; t0 < T; t0 += POLL_EVERY) {
        size_t n = T - t0 < POLL_EVERY ? T - t0 : POLL_EVERY;
        emis eb = *em;
        if (eb.logB) eb.logB += t0 * (size_t)K;
        if (eb.y) eb.y += t0;
        plm_hmm_fwd_steps(&f, c, t0, n, &eb, rows + t0 * (size_t)K);
        if (plm_interrupted()) return plm_failm(ctx, PLM_EINTR, "hmm", "interrupted");
    }
    *loglik = f.loglik;
    if (f.impossible != (size_t)-1) return plm_hmm_impossible_at(ctx, "hmm", em, f.impossible);
    return PLM_OK;
}

/* Forward-backward over a whole sequence: post receives the smoothed marginals, xi (optional) the added
** expected transition counts. */
plm_status plm_hmm_fb_run(plm_ctx *ctx, const plm_chain *c, size_t T, const emis *em, double *post, double *xi,
                          double *loglik)
{
    double *w = malloc(4 * (size_t)c->K * sizeof *w);
    plm_status st;
    if (!w) return plm_failm(ctx, PLM_ENOMEM, "hmm", "out of memory");
    st = plm_hmm_fwd_all(ctx, c, T, em, post, w, loglik);
    if (!st) st = plm_hmm_bwd_pass(ctx, c, T, em, post, xi, w);
    free(w);
    return st;
}

plm_status plm_hmm_core_posterior(plm_ctx *ctx, const plm_chain *c, size_t T, const double *logB, double *post,
                                  double *loglik)
{
    plm_status st = check_core(ctx, "hmm", c, T);
    emis em = {logB, NULL, NULL, NULL, NULL, NULL};
    double ll = 0;
    if (st) return st;
    st = plm_hmm_fb_run(ctx, c, T, &em, post, NULL, &ll);
    if (loglik) *loglik = ll;
    return st;
}

/* ---- Viterbi ---------------------------------------------------------------------------------------- */

/* Log emission row of step t for Viterbi. */
static inline const double *emis_logrow(const emis *em, size_t t, int K)
{
    return em->logB ? em->logB + t * (size_t)K : em->logemitT + (size_t)em->y[t] * (size_t)K;
}

void plm_hmm_log_matrix(int K, const double *A, double *out)
{
    size_t n = (size_t)K * K, i;
    for (i = 0; i < n; i++) out[i] = log(A[i]);
}

/* max_j x[j] in eight partial maxima, so that it vectorises (as dot does for sums); -inf when K = 0. */
static inline double max_of(int K, const double *restrict x)
{
    double p[8] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY}, r;
    int j = 0, l;
    for (; j + 8 <= K; j += 8)
        for (l = 0; l < 8; l++) p[l] = x[j + l] > p[l] ? x[j + l] : p[l];
    r = p[0];
    for (l = 1; l < 8; l++) r = p[l] > r ? p[l] : r;
    for (; j < K; j++) r = x[j] > r ? x[j] : r;
    return r;
}

/* best[j] = max_i delta[i] + logA[i, j] and arg[j] = the first maximising i. Rows of logA are swept with
** j inner, so the loop is a contiguous compare-and-blend over j. */
static inline void maxplus_step(int K, const double *restrict delta, const double *restrict logA,
                                double *restrict best, int64_t *restrict arg)
{
    int i, j;
    for (j = 0; j < K; j++) best[j] = delta[0] + logA[j], arg[j] = 0;
    for (i = 1; i < K; i++) {
        const double di = delta[i];
        const double *restrict row = logA + (size_t)i * K;
        for (j = 0; j < K; j++) {
            /* written as a max and a bit-mask select, not as `if`: GCC turns the `if` form into masked
            ** stores and branches, this form into compare, max and and/or over whole vectors */
            const double b = best[j], cand = di + row[j];
            const int64_t mask = -(int64_t)(cand > b);
            best[j] = cand > b ? cand : b;
            arg[j] = (arg[j] & ~mask) | ((int64_t)i & mask);
        }
    }
}

/* Max-product in log space. delta is shifted by its maximum every step (the shifts add up to logp), so
** scores stay O(1) whatever T. Back-pointers are bytes when K <= 256 and 16-bit when K <= 65536: at K=16,
** T=2e5 that is 3.2 MB instead of 12.8 MB of int, which matters more than the arithmetic. logA_fixed (K*K,
** or NULL) is log(trans) when the chain is homogeneous. */
HOT plm_status plm_hmm_viterbi_run(plm_ctx *ctx, const plm_chain *c, size_t T, const emis *em, const double *logA_fixed,
                                   int *path, double *logp)
{
    const int K = c->K;
    const size_t KK = (size_t)K * K;
    const int bw = K <= 256 ? 1 : K <= 65536 ? 2 : 4;
    double *w, *delta, *best, *logA_own = NULL;
    int64_t *arg;   /* as wide as a double, so the compare-and-select loop vectorises */
    void *bp;
    double total = 0;
    size_t t;
    int j;
    if (!(w = malloc((2 * (size_t)K + ((c->trans_t || !logA_fixed) ? KK : 0)) * sizeof *w)))
        return plm_failm(ctx, PLM_ENOMEM, "hmm", "out of memory");
    if (!(bp = malloc(T * (size_t)K * bw)) || !(arg = malloc((size_t)K * sizeof *arg))) {
        free(w), free(bp);
        return plm_failm(ctx, PLM_ENOMEM, "hmm", "out of memory (Viterbi back-pointers need %zu bytes)", T * (size_t)K * bw);
    }
    delta = w, best = w + K;
    if (c->trans_t || !logA_fixed) logA_own = w + 2 * K;
    if (!c->trans_t && !logA_fixed) plm_hmm_log_matrix(K, c->trans, logA_own), logA_fixed = logA_own;
    {
        const double *lb = emis_logrow(em, 0, K);
        double m = -INFINITY;
        for (j = 0; j < K; j++) {
            delta[j] = log(c->init[j]) + lb[j];
            if (delta[j] > m) m = delta[j];
        }
        if (!(m > -INFINITY)) goto impossible0;
        for (j = 0; j < K; j++) delta[j] -= m;
        total = m;
    }
    for (t = 1; t < T; t++) {
        const double *restrict logA = logA_fixed;
        const double *restrict lb = emis_logrow(em, t, K);
        double m = -INFINITY;
        if (c->trans_t) plm_hmm_log_matrix(K, c->trans_t[t - 1], logA_own), logA = logA_own;
        if ((t & (POLL_EVERY - 1)) == 0 && plm_interrupted()) {
            free(w), free(bp), free(arg);
            return plm_failm(ctx, PLM_EINTR, "hmm", "interrupted");
        }
        /* common small K as constants, so the compiler unrolls the j loop and keeps best/arg in registers */
        if (K == 16)
            maxplus_step(16, delta, logA, best, arg);
        else if (K == 8)
            maxplus_step(8, delta, logA, best, arg);
        else
            maxplus_step(K, delta, logA, best, arg);
        for (j = 0; j < K; j++) delta[j] = best[j] + lb[j];
        m = max_of(K, delta);
        if (!(m > -INFINITY)) {
            free(w), free(bp), free(arg);
            return plm_hmm_impossible_at(ctx, "hmm", em, t);
        }
        for (j = 0; j < K; j++) delta[j] -= m;
        total += m;
        if (bw == 1) {
            uint8_t *b = (uint8_t *)bp + t * (size_t)K;
            for (j = 0; j < K; j++) b[j] = (uint8_t)arg[j];
        } else if (bw == 2) {
            uint16_t *b = (uint16_t *)bp + t * (size_t)K;
            for (j = 0; j < K; j++) b[j] = (uint16_t)arg[j];
        } else {
            int32_t *b = (int32_t *)bp + t * (size_t)K;
            for (j = 0; j < K; j++) b[j] = (int32_t)arg[j];
        }
    }
    {
        int s = 0;
        for (j = 1; j < K; j++)
            if (delta[j] > delta[s]) s = j;
        *logp = total + delta[s];
        for (t = T; t-- > 0;) {
            path[t] = s;
            if (t > 0)
                s = bw == 1 ? ((uint8_t *)bp)[t * (size_t)K + s]
                  : bw == 2 ? ((uint16_t *)bp)[t * (size_t)K + s] : ((int32_t *)bp)[t * (size_t)K + s];
        }
    }
    free(w), free(bp), free(arg);
    return PLM_OK;
impossible0:
    free(w), free(bp), free(arg);
    return plm_hmm_impossible_at(ctx, "hmm", em, 0);
}

plm_status plm_hmm_core_viterbi(plm_ctx *ctx, const plm_chain *c, size_t T, const double *logB, int *path,
                                double *logp)
{
    plm_status st = check_core(ctx, "hmm", c, T);
    emis em = {logB, NULL, NULL, NULL, NULL, NULL};
    if (st) return st;
    return plm_hmm_viterbi_run(ctx, c, T, &em, NULL, path, logp);
}
