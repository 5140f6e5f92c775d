/* hmm.c -- hidden Markov models: scaled forward-backward, Viterbi, prediction, sampling and Baum-Welch.
**
** Numerics. The forward and backward vectors are kept in probability space, rescaled every step, with the
** log of each scale factor summed into the log-likelihood: products of probabilities along a sequence
** underflow by t ~ 700 otherwise, and logsumexp in the inner loop costs K^2 exp/log calls per step. A step
** whose scaled sum falls below TINY (emissions so peaked, or transitions so small, that every product
** underflowed) is redone in log space from the logs of the previous vector, so no finite log-likelihood
** ever comes out as -inf or NaN. Viterbi runs in log space, shifted by the running maximum each step. */
#include "hmm.h"

#include "par.h"

#include <float.h>
#include <gsl/gsl_linalg.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LOG_SQRT_2PI 0.91893853320467274178

/* Below this the scaled step has lost most of its digits to subnormals (or is zero): redo it in logs. */
#define TINY 1e-280

/* The hot loops get an AVX2/FMA clone picked at load time (GCC's function multi-versioning): the library is
** built for generic x86-64, where the K-wide inner loops run two doubles per instruction instead of four. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__) && !defined(__SANITIZE_ADDRESS__)
#define HOT __attribute__((target_clones("arch=x86-64-v3", "default"), optimize("O3")))
#else
#define HOT
#endif

/* Poll the interrupt flag every this many steps. */
#define POLL_EVERY 65536

/* ---- Emission rows ---------------------------------------------------------------------------------- */

/* Where the forward and backward passes read the emissions of step t. Either a log-likelihood matrix
** (logB, T*K rows; each row is exponentiated after shifting by its maximum), or categorical symbols that
** index the transposed emission matrix directly (no exp, no log in the hot loop). */
typedef struct emis {
    const double *logB;       /* row t at logB + t*K, or NULL */
    const double *emitT;      /* categorical: M*K probabilities */
    const double *logemitT;   /* categorical: M*K logs */
    const double *y;          /* categorical: symbols */
    const plm_hmm *hm;        /* the model and its whole sequence, when known: an impossible observation's */
    const double *yall;       /* error message then quotes its value */
} emis;

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

/* Scratch of the forward pass: 4K doubles. */
typedef struct fwd {
    int K;
    double *alpha;   /* filtered p(x_t | y_1..t), K */
    double *pred;    /* p(x_t | y_1..t-1), K */
    double *ebuf;    /* scaled emission row, K */
    double *lbuf;    /* log-space fallback, K */
    double loglik;
    size_t impossible;   /* first step with zero probability, or (size_t)-1 */
} fwd;

/* Prediction p(x_t | y_1..t-1) from the filtered vector of step t-1 (or init at t = 0):
** pred_j = sum_i alpha_i A_ij, as axpy sweeps over the rows of A so that the inner loop is contiguous. */
static inline void predict_step(int K, const double *restrict alpha, const double *restrict A, double *restrict pred)
{
    int i, j;
    for (j = 0; j < K; j++) pred[j] = 0;
    for (i = 0; i < K; i++) {
        const double ai = alpha[i];
        const double *restrict row = A + (size_t)i * K;
        for (j = 0; j < K; j++) pred[j] += ai * row[j];
    }
}

/* Steps t0 .. t0+n-1 of the forward pass. em's rows are addressed relative to t0 (a block of a longer
** sequence). When out is given, row t - t0 receives the filtered vector. */
HOT static void fwd_steps(fwd *f, const plm_chain *c, size_t t0, size_t n, const emis *em, double *out)
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
static plm_status impossible_at(plm_ctx *ctx, const char *fn, const emis *em, size_t t)
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
        fwd_steps(&f, c, t0, n, &em, filtered ? filtered + t0 * (size_t)c->K : NULL);
        if (plm_interrupted()) {
            free(w);
            return plm_failm(ctx, PLM_EINTR, "hmm", "interrupted");
        }
    }
    free(w);
    *loglik = f.loglik;
    if (filtered && f.impossible != (size_t)-1) return impossible_at(ctx, "hmm", NULL, f.impossible);
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
HOT static plm_status bwd_pass(plm_ctx *ctx, const plm_chain *c, size_t T, const emis *em, double *post, double *xi,
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
        if (!e) return impossible_at(ctx, "hmm", em, t + 1);
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
static plm_status fwd_all(plm_ctx *ctx, const plm_chain *c, size_t T, const emis *em, double *rows, double *w,
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
        fwd_steps(&f, c, t0, n, &eb, rows + t0 * (size_t)K);
        if (plm_interrupted()) return plm_failm(ctx, PLM_EINTR, "hmm", "interrupted");
    }
    *loglik = f.loglik;
    if (f.impossible != (size_t)-1) return impossible_at(ctx, "hmm", em, f.impossible);
    return PLM_OK;
}

/* Forward-backward over a whole sequence: post receives the smoothed marginals, xi (optional) the added
** expected transition counts. */
static plm_status fb_run(plm_ctx *ctx, const plm_chain *c, size_t T, const emis *em, double *post, double *xi,
                         double *loglik)
{
    double *w = malloc(4 * (size_t)c->K * sizeof *w);
    plm_status st;
    if (!w) return plm_failm(ctx, PLM_ENOMEM, "hmm", "out of memory");
    st = fwd_all(ctx, c, T, em, post, w, loglik);
    if (!st) st = bwd_pass(ctx, c, T, em, post, xi, w);
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
    st = fb_run(ctx, c, T, &em, post, NULL, &ll);
    if (loglik) *loglik = ll;
    return st;
}

/* ---- Viterbi ---------------------------------------------------------------------------------------- */

/* Log emission row of step t for Viterbi. */
static inline const double *emis_logrow(const emis *em, size_t t, int K)
{
    return em->logB ? em->logB + t * (size_t)K : em->logemitT + (size_t)em->y[t] * (size_t)K;
}

static void log_matrix(int K, const double *A, double *out)
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
HOT static plm_status viterbi_run(plm_ctx *ctx, const plm_chain *c, size_t T, const emis *em, const double *logA_fixed,
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
    if (!c->trans_t && !logA_fixed) log_matrix(K, c->trans, logA_own), logA_fixed = logA_own;
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
        if (c->trans_t) log_matrix(K, c->trans_t[t - 1], logA_own), logA = logA_own;
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
            return impossible_at(ctx, "hmm", em, t);
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
    return impossible_at(ctx, "hmm", em, 0);
}

plm_status plm_hmm_core_viterbi(plm_ctx *ctx, const plm_chain *c, size_t T, const double *logB, int *path,
                                double *logp)
{
    plm_status st = check_core(ctx, "hmm", c, T);
    emis em = {logB, NULL, NULL, NULL, NULL, NULL};
    if (st) return st;
    return viterbi_run(ctx, c, T, &em, NULL, path, logp);
}

/* ---- Validation ------------------------------------------------------------------------------------- */

static plm_status check_probrow(plm_ctx *ctx, const char *fn, const char *what, int row, const double *p, int n)
{
    double s = 0;
    int j;
    char name[48];
    if (row > 0)
        snprintf(name, sizeof name, "%s row %d", what, row);
    else
        snprintf(name, sizeof name, "%s", what);
    for (j = 0; j < n; j++) {
        if (!isfinite(p[j]))
            return plm_fail(ctx, PLM_EINVAL, "%s: %s entry %d must be a finite probability (got %g)", fn, name, j + 1, p[j]);
        if (p[j] < 0)
            return plm_fail(ctx, PLM_EINVAL, "%s: %s entry %d is negative (%g)", fn, name, j + 1, p[j]);
        s += p[j];
    }
    if (fabs(s - 1) > 1e-9)
        return plm_fail(ctx, PLM_EINVAL, "%s: %s must sum to 1 (sum is %.12g)", fn, name, s);
    return PLM_OK;
}

plm_status plm_hmm_check_chain(plm_ctx *ctx, const char *fn, int K, const double *init, const double *trans)
{
    plm_status st;
    int i;
    if (K < 1) return plm_fail(ctx, PLM_EINVAL, "%s: there must be at least one state", fn);
    if (init && (st = check_probrow(ctx, fn, "init", 0, init, K))) return st;
    if (trans)
        for (i = 0; i < K; i++)
            if ((st = check_probrow(ctx, fn, "trans", i + 1, trans + (size_t)i * K, K))) return st;
    return PLM_OK;
}

/* ---- The model object ------------------------------------------------------------------------------- */

static const char *const emit_names[] = {"categorical", "normal", "poisson", "bernoulli", "mvnormal"};

const char *plm_hmm_emit_name(plm_hmm_emit e)
{
    return (unsigned)e < sizeof emit_names / sizeof *emit_names ? emit_names[e] : "?";
}

static double *gc_doubles(size_t n)
{
    return plm_gc_alloc_atomic((n ? n : 1) * sizeof(double));
}

/* Validate the chain and allocate a model with its chain copied; par (npar doubles) left to the caller. */
static plm_status new_base(plm_ctx *ctx, plm_hmm_emit kind, int K, const double *init, const double *trans,
                           size_t npar, plm_hmm **out)
{
    plm_status st = plm_hmm_check_chain(ctx, "hmm", K, init, trans);
    plm_hmm *h;
    size_t KK = (size_t)K * K;
    if (st) return st;
    if (!(h = plm_gc_alloc(sizeof *h)) || !(h->init = gc_doubles(K)) || !(h->trans = gc_doubles(KK))
        || !(h->logtrans = gc_doubles(KK)) || !(h->par = gc_doubles(npar)) || !(h->lognorm = gc_doubles(2 * (size_t)K)))
        return plm_failm(ctx, PLM_ENOMEM, "hmm", "out of memory");
    h->K = K;
    h->emit = kind;
    h->D = 1;
    memcpy(h->init, init, (size_t)K * sizeof *init);
    memcpy(h->trans, trans, KK * sizeof *trans);
    log_matrix(K, trans, h->logtrans);
    *out = h;
    return PLM_OK;
}

plm_status plm_hmm_new_categorical(plm_ctx *ctx, int K, int M, const double *init, const double *trans,
                                   const double *emit, plm_hmm **out)
{
    plm_hmm *h;
    plm_status st;
    int k, m;
    if (M < 1) return plm_failm(ctx, PLM_EINVAL, "hmm", "emit must have at least one symbol");
    if ((st = new_base(ctx, PLM_HMM_CATEGORICAL, K, init, trans, (size_t)K * M, &h))) return st;
    for (k = 0; k < K; k++)
        if ((st = check_probrow(ctx, "hmm", "emit", k + 1, emit + (size_t)k * M, M))) return st;
    if (!(h->emitT = gc_doubles((size_t)K * M)) || !(h->logemitT = gc_doubles((size_t)K * M)))
        return plm_failm(ctx, PLM_ENOMEM, "hmm", "out of memory");
    h->M = M;
    memcpy(h->par, emit, (size_t)K * M * sizeof *emit);
    for (k = 0; k < K; k++)
        for (m = 0; m < M; m++) {
            h->emitT[(size_t)m * K + k] = emit[(size_t)k * M + m];
            h->logemitT[(size_t)m * K + k] = log(emit[(size_t)k * M + m]);
        }
    *out = h;
    return PLM_OK;
}

plm_status plm_hmm_new_scalar(plm_ctx *ctx, plm_hmm_emit kind, int K, const double *init, const double *trans,
                              const double *par, plm_hmm **out)
{
    const int np = kind == PLM_HMM_NORMAL ? 2 : 1;
    plm_hmm *h;
    plm_status st;
    int k;
    if (kind != PLM_HMM_NORMAL && kind != PLM_HMM_POISSON && kind != PLM_HMM_BERNOULLI)
        return plm_failm(ctx, PLM_EINVAL, "hmm", "%s is not a scalar emission family", plm_hmm_emit_name(kind));
    if ((st = new_base(ctx, kind, K, init, trans, (size_t)K * np, &h))) return st;
    for (k = 0; k < K; k++) {
        const double *p = par + (size_t)k * np;
        switch (kind) {
        case PLM_HMM_NORMAL:
            if (!isfinite(p[0])) return plm_failm(ctx, PLM_EINVAL, "hmm", "emit state %d: mu must be finite (got %g)", k + 1, p[0]);
            if (!(p[1] > 0 && isfinite(p[1])))
                return plm_failm(ctx, PLM_EINVAL, "hmm", "emit state %d: sigma must be > 0 (got %g)", k + 1, p[1]);
            h->lognorm[k] = -log(p[1]) - LOG_SQRT_2PI;
            break;
        case PLM_HMM_POISSON:
            if (!(p[0] >= 0 && isfinite(p[0])))
                return plm_failm(ctx, PLM_EINVAL, "hmm", "emit state %d: lambda must be >= 0 (got %g)", k + 1, p[0]);
            h->lognorm[k] = log(p[0]);
            break;
        default:
            if (!(p[0] >= 0 && p[0] <= 1))
                return plm_failm(ctx, PLM_EINVAL, "hmm", "emit state %d: p must be in [0, 1] (got %g)", k + 1, p[0]);
            h->lognorm[2 * k] = log(p[0]);
            h->lognorm[2 * k + 1] = log1p(-p[0]);
        }
    }
    memcpy(h->par, par, (size_t)K * np * sizeof *par);
    *out = h;
    return PLM_OK;
}

plm_status plm_hmm_new_mvnormal(plm_ctx *ctx, int K, int D, const double *init, const double *trans,
                                const double *mu, const double *Sigma, plm_hmm **out)
{
    const size_t DD = (size_t)D * D;
    plm_hmm *h;
    plm_status st;
    int k;
    if (D < 1) return plm_failm(ctx, PLM_EINVAL, "hmm", "mvnormal emissions need dimension >= 1");
    if ((st = new_base(ctx, PLM_HMM_MVNORMAL, K, init, trans, (size_t)K * (D + DD), &h))) return st;
    if (!(h->chol = gc_doubles(K * DD))) return plm_failm(ctx, PLM_ENOMEM, "hmm", "out of memory");
    h->D = D;
    for (k = 0; k < K; k++) {
        plm_dist *d;
        plm_ctx sub;
        if (plm_dist_new_mvnormal(&sub, mu + (size_t)k * D, Sigma + k * DD, D, &d))
            return plm_failm(ctx, PLM_EINVAL, "hmm", "emit state %d: %s", k + 1, plm_ctx_errmsg(&sub));
        memcpy(h->chol + k * DD, d->aux, DD * sizeof(double));
        h->lognorm[k] = d->c;
    }
    memcpy(h->par, mu, (size_t)K * D * sizeof *mu);
    memcpy(h->par + (size_t)K * D, Sigma, K * DD * sizeof *Sigma);
    *out = h;
    return PLM_OK;
}

plm_status plm_hmm_new_dists(plm_ctx *ctx, int K, const double *init, const double *trans, plm_dist *const *dists,
                             plm_hmm **out)
{
    plm_dist_kind kind;
    int k;
    if (K < 1) return plm_failm(ctx, PLM_EINVAL, "hmm", "there must be at least one state");
    kind = dists[0]->kind;
    for (k = 1; k < K; k++)
        if (dists[k]->kind != kind)
            return plm_failm(ctx, PLM_EINVAL, "hmm", "emit entry %d is a %s distribution, but entry 1 is a %s", k + 1,
                            plm_dist_info_of(dists[k]->kind)->name, plm_dist_info_of(kind)->name);
    switch (kind) {
    case PLM_DIST_NORMAL:
    case PLM_DIST_POISSON:
    case PLM_DIST_BERNOULLI: {
        const int np = kind == PLM_DIST_NORMAL ? 2 : 1;
        double *par = malloc((size_t)K * np * sizeof *par);
        plm_status st;
        if (!par) return plm_failm(ctx, PLM_ENOMEM, "hmm", "out of memory");
        for (k = 0; k < K; k++) memcpy(par + (size_t)k * np, dists[k]->p, np * sizeof *par);
        st = plm_hmm_new_scalar(ctx, kind == PLM_DIST_NORMAL ? PLM_HMM_NORMAL : kind == PLM_DIST_POISSON ? PLM_HMM_POISSON : PLM_HMM_BERNOULLI,
                                K, init, trans, par, out);
        free(par);
        return st;
    }
    case PLM_DIST_CATEGORICAL: {
        int M = 0;
        double *em;
        plm_status st;
        for (k = 0; k < K; k++)
            if (dists[k]->K > M) M = dists[k]->K;
        if (!(em = calloc((size_t)K * M, sizeof *em))) return plm_failm(ctx, PLM_ENOMEM, "hmm", "out of memory");
        for (k = 0; k < K; k++) memcpy(em + (size_t)k * M, dists[k]->v, (size_t)dists[k]->K * sizeof *em);
        st = plm_hmm_new_categorical(ctx, K, M, init, trans, em, out);
        free(em);
        return st;
    }
    case PLM_DIST_MVNORMAL: {
        const int D = dists[0]->K;
        const size_t DD = (size_t)D * D;
        double *mu, *S;
        plm_status st;
        for (k = 1; k < K; k++)
            if (dists[k]->K != D)
                return plm_failm(ctx, PLM_EINVAL, "hmm", "emit entry %d has dimension %d, but entry 1 has %d", k + 1, dists[k]->K, D);
        if (!(mu = malloc((size_t)K * (D + DD) * sizeof *mu))) return plm_failm(ctx, PLM_ENOMEM, "hmm", "out of memory");
        S = mu + (size_t)K * D;
        for (k = 0; k < K; k++) {
            /* the dist keeps Sigma as its Cholesky factor L: rebuild Sigma = L L' */
            const double *L = dists[k]->aux;
            int i, j, l;
            memcpy(mu + (size_t)k * D, dists[k]->v, (size_t)D * sizeof *mu);
            for (i = 0; i < D; i++)
                for (j = 0; j < D; j++) {
                    double s = 0;
                    for (l = 0; l <= (i < j ? i : j); l++) s += L[i * D + l] * L[j * D + l];
                    S[k * DD + (size_t)i * D + j] = s;
                }
        }
        st = plm_hmm_new_mvnormal(ctx, K, D, init, trans, mu, S, out);
        free(mu);
        return st;
    }
    default:
        return plm_failm(ctx, PLM_EINVAL, "hmm",
                        "emit entry 1 is a %s distribution; per-state emissions must be normal, poisson, bernoulli, "
                        "mvnormal or categorical", plm_dist_info_of(kind)->name);
    }
}

plm_status plm_hmm_state_dist(plm_ctx *ctx, const plm_hmm *h, int k, plm_dist **out)
{
    if (k < 0 || k >= h->K) return plm_failm(ctx, PLM_EINVAL, "hmm", "state %d out of range", k + 1);
    switch (h->emit) {
    case PLM_HMM_CATEGORICAL: return plm_dist_new_categorical(ctx, h->par + (size_t)k * h->M, h->M, out);
    case PLM_HMM_NORMAL: return plm_dist_new(ctx, PLM_DIST_NORMAL, h->par + 2 * k, out);
    case PLM_HMM_POISSON: return plm_dist_new(ctx, PLM_DIST_POISSON, h->par + k, out);
    case PLM_HMM_BERNOULLI: return plm_dist_new(ctx, PLM_DIST_BERNOULLI, h->par + k, out);
    default: {
        const size_t D = (size_t)h->D;
        return plm_dist_new_mvnormal(ctx, h->par + k * D, h->par + h->K * D + k * D * D, h->D, out);
    }
    }
}

/* ---- Observations and emission log-likelihoods ------------------------------------------------------ */

plm_status plm_hmm_check_obs(plm_ctx *ctx, const plm_hmm *h, size_t T, const double *y)
{
    size_t t;
    if (T == 0) return plm_failm(ctx, PLM_EINVAL, "hmm", "the sequence is empty");
    switch (h->emit) {
    case PLM_HMM_CATEGORICAL:
        for (t = 0; t < T; t++)
            if (!(y[t] >= 0 && y[t] < h->M && y[t] == floor(y[t])))
                return plm_failm(ctx, PLM_EDOM, "hmm", "observation at t=%zu is %g, but symbols are 0..%d", t, y[t], h->M - 1);
        break;
    case PLM_HMM_POISSON:
        for (t = 0; t < T; t++)
            if (!(y[t] >= 0 && isfinite(y[t]) && y[t] == floor(y[t])))
                return plm_failm(ctx, PLM_EDOM, "hmm", "observation at t=%zu is %g, but poisson emissions are counts 0, 1, 2, ...", t, y[t]);
        break;
    case PLM_HMM_BERNOULLI:
        for (t = 0; t < T; t++)
            if (!(y[t] == 0 || y[t] == 1))
                return plm_failm(ctx, PLM_EDOM, "hmm", "observation at t=%zu is %g, but bernoulli emissions are 0 or 1", t, y[t]);
        break;
    default:
        for (t = 0; t < T * (size_t)h->D; t++)
            if (!isfinite(y[t]))
                return plm_failm(ctx, PLM_EDOM, "hmm", "observation at t=%zu is not finite (%g)", t / h->D, y[t]);
    }
    return PLM_OK;
}

/* Emission log-likelihoods without checks (the caller checked the observations once). Returns PLM_ENOMEM
** only for mvnormal emissions of dimension > 64 when scratch memory runs out. */
static plm_status emit_rows(const plm_hmm *h, size_t T, const double *restrict y, double *restrict logB)
{
    const int K = h->K;
    const double *restrict par = h->par, *restrict ln = h->lognorm;
    size_t t;
    int k;
    switch (h->emit) {
    case PLM_HMM_CATEGORICAL:
        for (t = 0; t < T; t++) memcpy(logB + t * K, h->logemitT + (size_t)y[t] * K, (size_t)K * sizeof *logB);
        break;
    case PLM_HMM_NORMAL:
        for (t = 0; t < T; t++)
            for (k = 0; k < K; k++) {
                const double z = (y[t] - par[2 * k]) / par[2 * k + 1];
                logB[t * K + k] = ln[k] - 0.5 * z * z;
            }
        break;
    case PLM_HMM_POISSON:
        for (t = 0; t < T; t++) {
            const double c = lgamma(y[t] + 1);
            for (k = 0; k < K; k++)
                logB[t * K + k] = (y[t] > 0 ? y[t] * ln[k] : 0) - par[k] - c;
        }
        break;
    case PLM_HMM_BERNOULLI:
        for (t = 0; t < T; t++)
            for (k = 0; k < K; k++) logB[t * K + k] = ln[2 * k + (y[t] == 0)];
        break;
    case PLM_HMM_MVNORMAL: {
        const int D = h->D;
        const size_t DD = (size_t)D * D;
        double z[64], *zz = D <= 64 ? z : malloc((size_t)D * sizeof *zz);
        if (!zz) return PLM_ENOMEM;
        for (t = 0; t < T; t++)
            for (k = 0; k < K; k++) {
                /* solve L z = y - mu; the density is lognorm - |z|^2 / 2 */
                const double *L = h->chol + k * DD, *mu = par + (size_t)k * D, *yt = y + t * D;
                double q = 0;
                int i, j;
                for (i = 0; i < D; i++) {
                    double s = yt[i] - mu[i];
                    for (j = 0; j < i; j++) s -= L[i * D + j] * zz[j];
                    zz[i] = s / L[i * D + i];
                    q += zz[i] * zz[i];
                }
                logB[t * K + k] = ln[k] - 0.5 * q;
            }
        if (zz != z) free(zz);
        break;
    }
    }
    return PLM_OK;
}

plm_status plm_hmm_emit_loglik(plm_ctx *ctx, const plm_hmm *h, size_t T, const double *y, double *logB)
{
    plm_status st = plm_hmm_check_obs(ctx, h, T, y);
    if (st) return st;
    if (emit_rows(h, T, y, logB)) return plm_failm(ctx, PLM_ENOMEM, "hmm", "out of memory");
    return PLM_OK;
}

/* ---- Inference on the model -------------------------------------------------------------------------- */

#define BLOCK 256   /* steps of emission log-likelihoods computed at once by loglik: O(K) memory */

static plm_chain chain_of(const plm_hmm *h)
{
    plm_chain c = {h->K, h->init, h->trans, NULL};
    return c;
}

static emis emis_cat(const plm_hmm *h, const double *y)
{
    emis em = {NULL, h->emitT, h->logemitT, y, h, y};
    return em;
}

plm_status plm_hmm_loglik(plm_ctx *ctx, const plm_hmm *h, size_t T, const double *y, double *loglik)
{
    const int K = h->K;
    plm_chain c = chain_of(h);
    plm_status st = plm_hmm_check_obs(ctx, h, T, y);
    double *w;
    fwd f;
    size_t t0, blk = h->emit == PLM_HMM_CATEGORICAL ? POLL_EVERY : BLOCK;
    if (st) return st;
    if (!(w = malloc((4 * (size_t)K + (h->emit == PLM_HMM_CATEGORICAL ? 0 : BLOCK * (size_t)K)) * sizeof *w)))
        return plm_failm(ctx, PLM_ENOMEM, "hmm", "out of memory");
    f.K = K, f.alpha = w, f.pred = w + K, f.ebuf = w + 2 * K, f.lbuf = w + 3 * K;
    f.loglik = 0, f.impossible = (size_t)-1;
    for (t0 = 0; t0 < T && f.impossible == (size_t)-1; t0 += blk) {
        size_t n = T - t0 < blk ? T - t0 : blk;
        emis em = emis_cat(h, y + t0);
        if (h->emit != PLM_HMM_CATEGORICAL) {
            em.logB = w + 4 * K;
            if (emit_rows(h, n, y + t0 * h->D, w + 4 * K)) {
                free(w);
                return plm_failm(ctx, PLM_ENOMEM, "hmm", "out of memory");
            }
        }
        fwd_steps(&f, &c, t0, n, &em, NULL);
        if (((t0 / blk) & 255) == 0 && plm_interrupted()) {
            free(w);
            return plm_failm(ctx, PLM_EINTR, "hmm", "interrupted");
        }
    }
    free(w);
    *loglik = f.loglik;
    return PLM_OK;
}

plm_status plm_hmm_filter(plm_ctx *ctx, const plm_hmm *h, size_t T, const double *y, double *filtered, double *loglik)
{
    plm_chain c = chain_of(h);
    plm_status st = plm_hmm_check_obs(ctx, h, T, y);
    emis em = emis_cat(h, y);
    double w[4 * 64], *wp, ll;
    if (st) return st;
    if (!(wp = h->K <= 64 ? w : malloc(4 * (size_t)h->K * sizeof *wp))) return plm_failm(ctx, PLM_ENOMEM, "hmm", "out of memory");
    if (h->emit != PLM_HMM_CATEGORICAL) {
        /* the output doubles as the emission buffer: row t is read before it is overwritten */
        if (emit_rows(h, T, y, filtered)) {
            if (wp != w) free(wp);
            return plm_failm(ctx, PLM_ENOMEM, "hmm", "out of memory");
        }
        em.logB = filtered;
    }
    st = fwd_all(ctx, &c, T, &em, filtered, wp, &ll);
    if (wp != w) free(wp);
    if (loglik) *loglik = ll;
    return st;
}

/* Emission source for a whole sequence: categorical reads symbols; others need logB (T*K, malloc'd here). */
static plm_status emis_whole(plm_ctx *ctx, const plm_hmm *h, size_t T, const double *y, emis *em, double **own)
{
    *em = emis_cat(h, y);
    *own = NULL;
    if (h->emit == PLM_HMM_CATEGORICAL) return PLM_OK;
    if (!(*own = malloc(T * (size_t)h->K * sizeof **own)) || emit_rows(h, T, y, *own)) {
        free(*own);
        *own = NULL;
        return plm_failm(ctx, PLM_ENOMEM, "hmm", "out of memory (%zu emission log-likelihoods)", T * (size_t)h->K);
    }
    em->logB = *own;
    return PLM_OK;
}

plm_status plm_hmm_posterior(plm_ctx *ctx, const plm_hmm *h, size_t T, const double *y, double *post, double *loglik)
{
    plm_chain c = chain_of(h);
    plm_status st = plm_hmm_check_obs(ctx, h, T, y);
    emis em;
    double *own, ll = 0;
    if (st || (st = emis_whole(ctx, h, T, y, &em, &own))) return st;
    st = fb_run(ctx, &c, T, &em, post, NULL, &ll);
    free(own);
    if (loglik) *loglik = ll;
    return st;
}

plm_status plm_hmm_viterbi(plm_ctx *ctx, const plm_hmm *h, size_t T, const double *y, int *path, double *logp)
{
    plm_chain c = chain_of(h);
    plm_status st = plm_hmm_check_obs(ctx, h, T, y);
    emis em;
    double *own;
    if (st || (st = emis_whole(ctx, h, T, y, &em, &own))) return st;
    st = viterbi_run(ctx, &c, T, &em, h->logtrans, path, logp);
    free(own);
    return st;
}

/* ---- Sampling --------------------------------------------------------------------------------------- */

/* Index drawn from probabilities p (n, summing to 1 within 1e-9): the last positive entry takes the slack. */
static int draw_index(plm_rng *r, const double *p, int n)
{
    double u = plm_rng_uniform(r), c = 0;
    int i, last = 0;
    for (i = 0; i < n; i++) {
        if (p[i] > 0) last = i;
        c += p[i];
        if (u < c && p[i] > 0) return i;
    }
    return last;
}

static void draw_emission(const plm_hmm *h, int k, plm_rng *r, double *yt)
{
    switch (h->emit) {
    case PLM_HMM_CATEGORICAL: yt[0] = draw_index(r, h->par + (size_t)k * h->M, h->M); break;
    case PLM_HMM_NORMAL: yt[0] = h->par[2 * k] + h->par[2 * k + 1] * plm_rng_normal(r); break;
    case PLM_HMM_POISSON: yt[0] = plm_dist_sample1(PLM_DIST_POISSON, h->par + k, r); break;
    case PLM_HMM_BERNOULLI: yt[0] = plm_rng_uniform(r) < h->par[k] ? 1 : 0; break;
    case PLM_HMM_MVNORMAL: {
        const int D = h->D;
        const double *L = h->chol + (size_t)k * D * D, *mu = h->par + (size_t)k * D;
        int i, j;
        for (i = 0; i < D; i++) yt[i] = 0;
        for (j = 0; j < D; j++) {   /* y = mu + L z, column by column so z needs no storage */
            const double z = plm_rng_normal(r);
            for (i = j; i < D; i++) yt[i] += L[i * D + j] * z;
        }
        for (i = 0; i < D; i++) yt[i] += mu[i];
        break;
    }
    }
}

plm_status plm_hmm_sample(plm_ctx *ctx, const plm_hmm *h, size_t T, plm_rng *r, int *states, double *y)
{
    size_t t;
    int s;
    if (T == 0) return plm_failm(ctx, PLM_EINVAL, "hmm", "sample needs T >= 1");
    s = draw_index(r, h->init, h->K);
    for (t = 0; t < T; t++) {
        if (t > 0) s = draw_index(r, h->trans + (size_t)s * h->K, h->K);
        states[t] = s;
        draw_emission(h, s, r, y + t * (size_t)h->D);
    }
    return PLM_OK;
}

/* ---- One-step-ahead prediction ---------------------------------------------------------------------- */

/* Mode of the mixture sum_k w_k Poisson(lambda_k), searched over 0 .. max lambda + 10 sd + 10. */
static double poisson_mixture_mode(const plm_hmm *h, const double *w)
{
    double lmax = 0, best = -1, arg = 0;
    int k, n, nmax;
    for (k = 0; k < h->K; k++)
        if (h->par[k] > lmax) lmax = h->par[k];
    nmax = (int)ceil(lmax + 10 * sqrt(lmax) + 10);
    for (n = 0; n <= nmax; n++) {
        double p = 0, lg = lgamma(n + 1.0);
        for (k = 0; k < h->K; k++)
            if (w[k] > 0) p += w[k] * exp((n > 0 ? n * h->lognorm[k] : 0) - h->par[k] - lg);
        if (p > best) best = p, arg = n;
    }
    return arg;
}

plm_status plm_hmm_predict(plm_ctx *ctx, const plm_hmm *h, size_t T, const double *y, plm_hmm_pred *out)
{
    const int K = h->K, D = h->D;
    plm_chain c = chain_of(h);
    plm_status st = plm_hmm_check_obs(ctx, h, T, y);
    double *w, *lb;
    fwd f;
    size_t t, hits = 0;
    int k;
    if (st) return st;
    if (!(w = malloc(5 * (size_t)K * sizeof *w))) return plm_failm(ctx, PLM_ENOMEM, "hmm", "out of memory");
    f.K = K, f.alpha = w, f.pred = w + K, f.ebuf = w + 2 * K, f.lbuf = w + 3 * K;
    f.loglik = 0, f.impossible = (size_t)-1;
    lb = w + 4 * K;
    for (t = 0; t < T; t++) {
        emis em = emis_cat(h, y + t);
        double before = f.loglik;
        if (h->emit != PLM_HMM_CATEGORICAL) {
            if (emit_rows(h, 1, y + t * (size_t)D, lb)) {
                free(w);
                return plm_failm(ctx, PLM_ENOMEM, "hmm", "out of memory");
            }
            em.logB = lb;
        }
        fwd_steps(&f, &c, t, 1, &em, NULL);
        if (f.impossible != (size_t)-1) {
            free(w);
            em.yall = y;
            return impossible_at(ctx, "hmm", &em, t);
        }
        memcpy(out->weights + t * K, f.pred, (size_t)K * sizeof *f.pred);
        out->logpred[t] = f.loglik - before;
    }
    predict_step(K, f.alpha, h->trans, out->weights + T * K);
    free(w);
    out->logloss = -f.loglik / (double)T;
    for (t = 0; t <= T; t++) {
        const double *wt = out->weights + t * K;
        double mode = NAN;
        switch (h->emit) {
        case PLM_HMM_CATEGORICAL: {
            const int M = h->M;
            double *pr = out->probs, bestp = -1;
            int m;
            for (m = 0; m < M; m++) {
                /* p(m) = sum_k w_k B[k, m], reading row m of the transposed matrix */
                const double *col = h->emitT + (size_t)m * K;
                double p = 0;
                for (k = 0; k < K; k++) p += wt[k] * col[k];
                if (pr) pr[t * M + m] = p;
                if (p > bestp) bestp = p, mode = m;
            }
            break;
        }
        case PLM_HMM_BERNOULLI: {
            double p1 = 0;
            for (k = 0; k < K; k++) p1 += wt[k] * h->par[k];
            if (out->probs) out->probs[2 * t] = 1 - p1, out->probs[2 * t + 1] = p1;
            if (out->mean) out->mean[t] = p1;
            mode = p1 > 0.5 ? 1 : 0;
            break;
        }
        case PLM_HMM_POISSON: {
            double m = 0;
            for (k = 0; k < K; k++) m += wt[k] * h->par[k];
            if (out->mean) out->mean[t] = m;
            if (t < T) mode = poisson_mixture_mode(h, wt);
            break;
        }
        case PLM_HMM_NORMAL: {
            double m = 0;
            for (k = 0; k < K; k++) m += wt[k] * h->par[2 * k];
            if (out->mean) out->mean[t] = m;
            break;
        }
        case PLM_HMM_MVNORMAL:
            if (out->mean) {
                int i;
                for (i = 0; i < D; i++) {
                    double m = 0;
                    for (k = 0; k < K; k++) m += wt[k] * h->par[(size_t)k * D + i];
                    out->mean[t * D + i] = m;
                }
            }
            break;
        }
        if (t < T && mode == y[t]) hits++;
    }
    out->accuracy = (h->emit == PLM_HMM_NORMAL || h->emit == PLM_HMM_MVNORMAL) ? NAN : (double)hits / (double)T;
    return PLM_OK;
}

/* ---- Stationary distribution and entropy rate ------------------------------------------------------- */

plm_status plm_hmm_stationary(plm_ctx *ctx, const plm_hmm *h, double *pi)
{
    const int K = h->K;
    gsl_matrix *Mx = gsl_matrix_alloc(K, K);
    gsl_permutation *perm = gsl_permutation_alloc(K);
    gsl_vector *b = gsl_vector_calloc(K), *x = gsl_vector_alloc(K);
    plm_status st = PLM_OK;
    gsl_error_handler_t *old = NULL;
    double umax = 0;
    int i, j, sign;
    if (!Mx || !perm || !b || !x) {
        st = plm_failm(ctx, PLM_ENOMEM, "hmm", "out of memory");
        goto done;
    }
    /* pi (A - I) = 0 with one equation replaced by sum(pi) = 1: (A' - I) pi' = 0, last row all ones */
    for (i = 0; i < K; i++)
        for (j = 0; j < K; j++)
            gsl_matrix_set(Mx, i, j, i == K - 1 ? 1.0 : h->trans[(size_t)j * K + i] - (i == j));
    gsl_vector_set(b, K - 1, 1.0);
    old = gsl_set_error_handler_off();   /* GSL's default handler aborts; singularity is checked below */
    gsl_linalg_LU_decomp(Mx, perm, &sign);
    for (i = 0; i < K; i++)
        if (fabs(gsl_matrix_get(Mx, i, i)) > umax) umax = fabs(gsl_matrix_get(Mx, i, i));
    for (i = 0; i < K; i++)
        if (!(fabs(gsl_matrix_get(Mx, i, i)) > 1e-12 * umax)) {
            st = plm_failm(ctx, PLM_EDOM, "hmm", "the chain has no unique stationary distribution (it is reducible)");
            goto done;
        }
    if (gsl_linalg_LU_solve(Mx, perm, b, x)) {
        st = plm_failm(ctx, PLM_EDOM, "hmm", "the chain has no unique stationary distribution (it is reducible)");
        goto done;
    }
    for (i = 0; i < K; i++) {
        double v = gsl_vector_get(x, i);
        if (!(v > -1e-9)) {
            st = plm_failm(ctx, PLM_EDOM, "hmm", "the chain has no unique stationary distribution (it is reducible)");
            goto done;
        }
        pi[i] = v > 0 ? v : 0;   /* rounding leaves -1e-17 (or -0) where the mass is 0 */
    }
done:
    if (old) gsl_set_error_handler(old);
    if (Mx) gsl_matrix_free(Mx);
    if (perm) gsl_permutation_free(perm);
    if (b) gsl_vector_free(b);
    if (x) gsl_vector_free(x);
    return st;
}

plm_status plm_hmm_entropy_rate(plm_ctx *ctx, const plm_hmm *h, double *rate)
{
    const int K = h->K;
    double *pi = malloc((size_t)K * sizeof *pi), H = 0;
    plm_status st;
    int i, j;
    if (!pi) return plm_failm(ctx, PLM_ENOMEM, "hmm", "out of memory");
    if (!(st = plm_hmm_stationary(ctx, h, pi))) {
        for (i = 0; i < K; i++)
            for (j = 0; j < K; j++) {
                const double a = h->trans[(size_t)i * K + j];
                if (a > 0) H -= pi[i] * a * log(a);
            }
        *rate = H;
    }
    free(pi);
    return st;
}

/* ---- Baum-Welch --------------------------------------------------------------------------------------- */

void plm_hmm_fit_defaults(plm_hmm_fit_opts *o)
{
    o->iters = 100;
    o->tol = 1e-6;
    o->restarts = 1;
    o->seed = 1;
    o->threads = 0;
}

/* The data and the scratch shared by every E-step of a fit. Sequences are processed in rounds of `slots`
** in parallel, each into its own statistics slot; the slots are then added to the total in sequence order,
** so the result is the same for any number of threads. */
typedef struct fitdata {
    size_t nseq, Ttot, Tmax;
    const double *const *ys;
    const size_t *Ts;
    double *mean, *var;   /* per coordinate over all observations (D each), for random starts and floors */
    int nthreads;
    size_t slots;         /* sequences per round */
    double *post, *logB;  /* per worker: Tmax*K each (logB only for non-categorical) */
    double *work;         /* per worker: 4K */
    double *slot_stats;   /* slots * stats_len */
    double *slot_ll;      /* slots */
    plm_status *slot_st;  /* slots */
    plm_ctx *slot_ctx;    /* slots */
} fitdata;

/* Expected sufficient statistics. Moments are taken about the current means (mu0), which keeps the
** variance update E[(y - mu0)^2] - (mu - mu0)^2 free of the cancellation of E[y^2] - mu^2. */
typedef struct stats {
    double *init;   /* K */
    double *xi;     /* K*K */
    double *g;      /* K: sum of gamma */
    double *s1;     /* categorical: M*K counts (transposed); others: K*D */
    double *s2;     /* normal: K; mvnormal: K*D*D */
} stats;

static size_t stats_len(const plm_hmm *h)
{
    const size_t K = h->K, D = h->D;
    return 2 * K + K * K + (h->emit == PLM_HMM_CATEGORICAL ? (size_t)h->M * K : K * D + K * D * D);
}

static void stats_bind(const plm_hmm *h, double *mem, stats *s)
{
    const size_t K = h->K, D = h->D;
    s->init = mem, s->xi = mem + K, s->g = s->xi + K * K, s->s1 = s->g + K;
    s->s2 = s->s1 + (h->emit == PLM_HMM_CATEGORICAL ? (size_t)h->M * K : K * D);
}

/* E-step of one sequence into the zeroed statistics s, with scratch post/logB/work. */
static plm_status estep_seq(plm_ctx *ctx, const plm_hmm *h, size_t q, size_t T, const double *y, double *post,
                            double *logB, double *work, stats *s, double *loglik)
{
    const int K = h->K, D = h->D;
    plm_chain c = chain_of(h);
    emis em = emis_cat(h, y);
    size_t t;
    int k;
    plm_status st;
    if (h->emit != PLM_HMM_CATEGORICAL) {
        if (emit_rows(h, T, y, logB)) return plm_failm(ctx, PLM_ENOMEM, "hmm", "out of memory");
        em.logB = logB;
    }
    st = fwd_all(ctx, &c, T, &em, post, work, loglik);
    if (st == PLM_EDOM) {   /* "observation 3 (symbol 4) has probability 0 ..." gains the sequence number */
        char why[PLM_MSG_MAX];
        snprintf(why, sizeof why, "%s", plm_ctx_errbody(ctx));
        return plm_failm(ctx, PLM_EDOM, "hmm", "sequence %zu: %s", q + 1, why);
    }
    if (st || (st = bwd_pass(ctx, &c, T, &em, post, s->xi, work))) return st;
    for (k = 0; k < K; k++) s->init[k] += post[k];
    for (t = 0; t < T; t++) {
        const double *restrict g = post + t * K;
        for (k = 0; k < K; k++) s->g[k] += g[k];
        switch (h->emit) {
        case PLM_HMM_CATEGORICAL: {
            double *restrict row = s->s1 + (size_t)y[t] * K;
            for (k = 0; k < K; k++) row[k] += g[k];
            break;
        }
        case PLM_HMM_NORMAL:
            for (k = 0; k < K; k++) {
                const double d = y[t] - h->par[2 * k];
                s->s1[k] += g[k] * d;
                s->s2[k] += g[k] * d * d;
            }
            break;
        case PLM_HMM_POISSON:
        case PLM_HMM_BERNOULLI:
            for (k = 0; k < K; k++) s->s1[k] += g[k] * y[t];
            break;
        case PLM_HMM_MVNORMAL:
            for (k = 0; k < K; k++) {
                const double *mu = h->par + (size_t)k * D, *yt = y + t * D;
                double *s1 = s->s1 + (size_t)k * D, *s2 = s->s2 + (size_t)k * D * D;
                int i, j;
                for (i = 0; i < D; i++) {
                    const double di = g[k] * (yt[i] - mu[i]);
                    s1[i] += di;
                    for (j = 0; j <= i; j++) s2[i * D + j] += di * (yt[j] - mu[j]);
                }
            }
            break;
        }
    }
    return PLM_OK;
}

typedef struct estep_job {
    const plm_hmm *h;
    fitdata *fd;
    size_t q0;   /* first sequence of the round */
} estep_job;

static void estep_chunk(void *arg, size_t begin, size_t end, int worker)
{
    estep_job *j = arg;
    fitdata *fd = j->fd;
    const size_t K = (size_t)j->h->K, len = stats_len(j->h);
    size_t i;
    for (i = begin; i < end; i++) {
        const size_t q = j->q0 + i;
        stats s;
        memset(fd->slot_stats + i * len, 0, len * sizeof(double));
        stats_bind(j->h, fd->slot_stats + i * len, &s);
        fd->slot_st[i] = estep_seq(&fd->slot_ctx[i], j->h, q, fd->Ts[q], fd->ys[q], fd->post + (size_t)worker * fd->Tmax * K,
                                   fd->logB ? fd->logB + (size_t)worker * fd->Tmax * K : NULL, fd->work + (size_t)worker * 4 * K,
                                   &s, &fd->slot_ll[i]);
    }
}

/* E-step over all sequences: the expected statistics and the total log-likelihood. */
static plm_status estep(plm_ctx *ctx, const plm_hmm *h, fitdata *fd, double *smem, stats *s, double *loglik)
{
    const size_t len = stats_len(h);
    size_t q0, i, l;
    memset(smem, 0, len * sizeof *smem);
    stats_bind(h, smem, s);
    *loglik = 0;
    for (q0 = 0; q0 < fd->nseq; q0 += fd->slots) {
        const size_t n = fd->nseq - q0 < fd->slots ? fd->nseq - q0 : fd->slots;
        estep_job job = {h, fd, q0};
        plm_parallel_for(fd->nthreads, n, 1, estep_chunk, &job);
        for (i = 0; i < n; i++) {
            const double *restrict add = fd->slot_stats + i * len;
            if (fd->slot_st[i]) {   /* the worker's failure, status and prefix intact */
                *ctx = fd->slot_ctx[i];
                return fd->slot_st[i];
            }
            *loglik += fd->slot_ll[i];
            for (l = 0; l < len; l++) smem[l] += add[l];
        }
    }
    return PLM_OK;
}

/* M-step: closed-form maximisers of the expected complete-data log-likelihood. A state with no expected
** visits keeps its old parameters; a normal variance is floored at 1e-10 of the data's (the constrained
** maximum, since the objective is unimodal in the variance), so EM still cannot lower the likelihood. */
static plm_status mstep(plm_ctx *ctx, const plm_hmm *h, const fitdata *fd, const stats *s, plm_hmm **out)
{
    const int K = h->K, D = h->D;
    const size_t KK = (size_t)K * K;
    size_t npar = h->emit == PLM_HMM_CATEGORICAL ? (size_t)K * h->M
                : h->emit == PLM_HMM_MVNORMAL ? (size_t)K * D * (1 + D) : (size_t)K * (h->emit == PLM_HMM_NORMAL ? 2 : 1);
    double *init = malloc((K + KK + npar) * sizeof *init), *trans, *par, tot = 0;
    plm_status st;
    int i, j, k;
    if (!init) return plm_failm(ctx, PLM_ENOMEM, "hmm", "out of memory");
    trans = init + K, par = trans + KK;
    memcpy(par, h->par, npar * sizeof *par);
    for (k = 0; k < K; k++) tot += s->init[k];
    for (k = 0; k < K; k++) init[k] = s->init[k] / tot;
    for (i = 0; i < K; i++) {
        double rs = 0;
        for (j = 0; j < K; j++) rs += s->xi[(size_t)i * K + j];
        for (j = 0; j < K; j++) trans[(size_t)i * K + j] = rs > 0 ? s->xi[(size_t)i * K + j] / rs : h->trans[(size_t)i * K + j];
    }
    for (k = 0; k < K; k++) {
        const double g = s->g[k];
        if (!(g > 1e-300)) continue;
        switch (h->emit) {
        case PLM_HMM_CATEGORICAL: {
            const int M = h->M;
            int m;
            for (m = 0; m < M; m++) par[(size_t)k * M + m] = s->s1[(size_t)m * K + k] / g;
            break;
        }
        case PLM_HMM_NORMAL: {
            const double d = s->s1[k] / g, floor_var = 1e-10 * (fd->var[0] > 0 ? fd->var[0] : 1);
            double v = s->s2[k] / g - d * d;
            if (!(v > floor_var)) v = floor_var;
            par[2 * k] = h->par[2 * k] + d;
            par[2 * k + 1] = sqrt(v);
            break;
        }
        case PLM_HMM_POISSON: par[k] = s->s1[k] / g; break;
        case PLM_HMM_BERNOULLI: {
            const double p = s->s1[k] / g;
            par[k] = p < 0 ? 0 : p > 1 ? 1 : p;
            break;
        }
        case PLM_HMM_MVNORMAL: {
            double *mu = par + (size_t)k * D, *S = par + (size_t)K * D + (size_t)k * D * D, ridge = 0, trace = 0;
            const double *s1 = s->s1 + (size_t)k * D, *s2 = s->s2 + (size_t)k * D * D;
            int tries;
            for (i = 0; i < D; i++)
                for (j = 0; j <= i; j++)
                    S[i * D + j] = S[j * D + i] = s2[i * D + j] / g - (s1[i] / g) * (s1[j] / g);
            for (i = 0; i < D; i++) mu[i] = h->par[(size_t)k * D + i] + s1[i] / g, trace += fd->var[i];
            /* a state that owns fewer than D+1 distinct points has a singular covariance: add the smallest
            ** ridge (a multiple of the data's scale) that makes it positive definite */
            for (tries = 0; tries < 40; tries++) {
                plm_dist *d;
                plm_ctx sub;
                if (!plm_dist_new_mvnormal(&sub, mu, S, D, &d)) break;
                ridge = ridge ? 10 * ridge : 1e-10 * (trace > 0 ? trace / D : 1);
                for (i = 0; i < D; i++) S[i * D + i] += ridge;
            }
            break;
        }
        }
    }
    switch (h->emit) {
    case PLM_HMM_CATEGORICAL: st = plm_hmm_new_categorical(ctx, K, h->M, init, trans, par, out); break;
    case PLM_HMM_MVNORMAL: st = plm_hmm_new_mvnormal(ctx, K, D, init, trans, par, par + (size_t)K * D, out); break;
    default: st = plm_hmm_new_scalar(ctx, h->emit, K, init, trans, par, out);
    }
    free(init);
    return st;
}

/* Dirichlet(1, ..., 1) draw into p (n). */
static void flat_dirichlet(plm_rng *r, double *p, int n)
{
    double s = 0;
    int i;
    for (i = 0; i < n; i++) s += (p[i] = -log(plm_rng_uniform(r)));
    for (i = 0; i < n; i++) p[i] /= s;
}

/* A random observation from the data (uniform over all time points). */
static const double *random_obs(plm_rng *r, const fitdata *fd, int D)
{
    size_t u = plm_rng_uint(r, fd->Ttot), q = 0;
    while (u >= fd->Ts[q]) u -= fd->Ts[q++];
    return fd->ys[q] + u * D;
}

/* A random starting model for restarts: flat Dirichlet chain and categorical rows; normal and mvnormal
** means at random data points with the data's spread; poisson rates at random data points + 0.5. */
static plm_status random_start(plm_ctx *ctx, const plm_hmm *h, const fitdata *fd, plm_rng *r, plm_hmm **out)
{
    const int K = h->K, D = h->D;
    const size_t KK = (size_t)K * K;
    size_t npar = h->emit == PLM_HMM_CATEGORICAL ? (size_t)K * h->M
                : h->emit == PLM_HMM_MVNORMAL ? (size_t)K * D * (1 + D) : (size_t)K * (h->emit == PLM_HMM_NORMAL ? 2 : 1);
    double *init = calloc(K + KK + npar, sizeof *init), *trans, *par;
    plm_status st;
    int i, k;
    if (!init) return plm_failm(ctx, PLM_ENOMEM, "hmm", "out of memory");
    trans = init + K, par = trans + KK;
    flat_dirichlet(r, init, K);
    for (i = 0; i < K; i++) flat_dirichlet(r, trans + (size_t)i * K, K);
    for (k = 0; k < K; k++) switch (h->emit) {
        case PLM_HMM_CATEGORICAL: flat_dirichlet(r, par + (size_t)k * h->M, h->M); break;
        case PLM_HMM_NORMAL:
            par[2 * k] = random_obs(r, fd, 1)[0];
            par[2 * k + 1] = fd->var[0] > 0 ? sqrt(fd->var[0]) : 1;
            break;
        case PLM_HMM_POISSON: par[k] = random_obs(r, fd, 1)[0] + 0.5; break;
        case PLM_HMM_BERNOULLI: par[k] = 0.1 + 0.8 * plm_rng_uniform(r); break;
        case PLM_HMM_MVNORMAL: {
            double *S = par + (size_t)K * D + (size_t)k * D * D;
            memcpy(par + (size_t)k * D, random_obs(r, fd, D), (size_t)D * sizeof *par);
            for (i = 0; i < D; i++) S[i * D + i] = fd->var[i] > 0 ? fd->var[i] : 1;
            break;
        }
        }
    switch (h->emit) {
    case PLM_HMM_CATEGORICAL: st = plm_hmm_new_categorical(ctx, K, h->M, init, trans, par, out); break;
    case PLM_HMM_MVNORMAL: st = plm_hmm_new_mvnormal(ctx, K, D, init, trans, par, par + (size_t)K * D, out); break;
    default: st = plm_hmm_new_scalar(ctx, h->emit, K, init, trans, par, out);
    }
    free(init);
    return st;
}

/* One EM run from `start`; the trace (malloc'd, iters+1 doubles) and the final model are returned. */
static plm_status em_run(plm_ctx *ctx, const plm_hmm *start, fitdata *fd, const plm_hmm_fit_opts *o, double *smem,
                         plm_hmm **out, double *trace, int *ntrace)
{
    const plm_hmm *cur = start;
    stats s;
    double ll, ll_next;
    plm_status st;
    int it;
    if ((st = estep(ctx, cur, fd, smem, &s, &ll))) return st;
    trace[0] = ll;
    *ntrace = 1;
    for (it = 0; it < o->iters; it++) {
        plm_hmm *next;
        if ((st = mstep(ctx, cur, fd, &s, &next))) return st;
        if ((st = estep(ctx, next, fd, smem, &s, &ll_next))) {
            if (st != PLM_EDOM) return st;
            break;   /* unreachable in exact arithmetic: the M-step cannot make the data impossible */
        }
        /* EM cannot lower the likelihood; a lower value is rounding at the optimum: keep cur and stop */
        if (ll_next < ll) break;
        trace[(*ntrace)++] = ll_next;
        cur = next;
        if (ll_next - ll < o->tol) break;
        ll = ll_next;
    }
    *out = (plm_hmm *)cur;
    return PLM_OK;
}

plm_status plm_hmm_fit(plm_ctx *ctx, const plm_hmm *h, size_t nseq, const double *const *ys, const size_t *Ts,
                       const plm_hmm_fit_opts *opts, plm_hmm **out, double **trace, int *ntrace)
{
    const int K = h->K, D = h->D;
    plm_hmm_fit_opts o;
    fitdata fd;
    double *smem = NULL, *tr = NULL, *best_tr = NULL, best_ll = -INFINITY;
    plm_hmm *best = NULL;
    plm_status st = PLM_OK;
    int best_n = 0, r;
    size_t q, t;
    if (opts) o = *opts;
    else plm_hmm_fit_defaults(&o);
    if (o.iters < 0) return plm_failm(ctx, PLM_EINVAL, "hmm", "iters must be >= 0 (got %d)", o.iters);
    if (o.restarts < 1) return plm_failm(ctx, PLM_EINVAL, "hmm", "restarts must be >= 1 (got %d)", o.restarts);
    if (!(o.tol >= 0)) return plm_failm(ctx, PLM_EINVAL, "hmm", "tol must be >= 0 (got %g)", o.tol);
    if (nseq == 0) return plm_failm(ctx, PLM_EINVAL, "hmm", "no sequences");
    memset(&fd, 0, sizeof fd);
    fd.nseq = nseq, fd.ys = ys, fd.Ts = Ts;
    for (q = 0; q < nseq; q++) {
        plm_status sq = plm_hmm_check_obs(ctx, h, Ts[q], ys[q]);
        if (sq) {
            char msg[PLM_MSG_MAX];
            snprintf(msg, sizeof msg, "%s", plm_ctx_errbody(ctx));
            return plm_failm(ctx, sq, "hmm", "sequence %zu: %s", q + 1, msg);
        }
        fd.Ttot += Ts[q];
        if (Ts[q] > fd.Tmax) fd.Tmax = Ts[q];
    }
    /* threads: no more than sequences, and no more than the scratch (2 Tmax K doubles each) allows */
    fd.nthreads = o.threads > 0 ? o.threads : plm_default_threads();
    if ((size_t)fd.nthreads > nseq) fd.nthreads = (int)nseq;
    while (fd.nthreads > 1 && (size_t)fd.nthreads * fd.Tmax * K > ((size_t)1 << 27)) fd.nthreads--;
    fd.slots = nseq < 64 ? nseq : 64;
    while (fd.slots > (size_t)fd.nthreads && fd.slots * stats_len(h) > ((size_t)1 << 23)) fd.slots /= 2;
    {
        const size_t nw = (size_t)fd.nthreads, sl = fd.slots;
        if (!(fd.mean = calloc(2 * (size_t)D, sizeof(double))) || !(fd.post = malloc(nw * fd.Tmax * K * sizeof(double)))
            || !(fd.work = malloc(nw * 4 * (size_t)K * sizeof(double))) || !(smem = malloc(stats_len(h) * sizeof *smem))
            || !(fd.slot_stats = malloc(sl * stats_len(h) * sizeof(double))) || !(fd.slot_ll = malloc(sl * sizeof(double)))
            || !(fd.slot_st = malloc(sl * sizeof *fd.slot_st)) || !(fd.slot_ctx = malloc(sl * sizeof *fd.slot_ctx))
            || !(tr = malloc(((size_t)o.iters + 1) * sizeof *tr)) || !(best_tr = malloc(((size_t)o.iters + 1) * sizeof *tr))
            || (h->emit != PLM_HMM_CATEGORICAL && !(fd.logB = malloc(nw * fd.Tmax * K * sizeof(double))))) {
            st = plm_failm(ctx, PLM_ENOMEM, "hmm", "out of memory");
            goto done;
        }
    }
    fd.var = fd.mean + D;
    /* data mean and variance per coordinate (Welford, so large offsets do not cancel) */
    {
        size_t n = 0;
        double *m2 = fd.var;
        for (q = 0; q < nseq; q++)
            for (t = 0; t < Ts[q]; t++) {
                int i;
                n++;
                for (i = 0; i < D; i++) {
                    const double x = ys[q][t * D + i], d = x - fd.mean[i];
                    fd.mean[i] += d / (double)n;
                    m2[i] += d * (x - fd.mean[i]);
                }
            }
        for (int i = 0; i < D; i++) fd.var[i] = m2[i] / (double)n;
    }
    for (r = 0; r < o.restarts; r++) {
        const plm_hmm *start = h;
        plm_hmm *res;
        int n;
        if (r > 0) {
            plm_rng rng;
            plm_hmm *rs;
            plm_rng_init(&rng, o.seed, (uint64_t)r);
            if ((st = random_start(ctx, h, &fd, &rng, &rs))) goto done;
            start = rs;
        }
        st = em_run(ctx, start, &fd, &o, smem, &res, tr, &n);
        if (st == PLM_EDOM && r > 0) continue;   /* a random start that cannot explain the data */
        if (st) goto done;
        if (!best || tr[n - 1] > best_ll) {
            double *sw = best_tr;
            best = res, best_ll = tr[n - 1], best_n = n;
            best_tr = tr, tr = sw;
        }
    }
    if (!(*trace = plm_gc_alloc_atomic((size_t)best_n * sizeof **trace))) {
        st = plm_failm(ctx, PLM_ENOMEM, "hmm", "out of memory");
        goto done;
    }
    memcpy(*trace, best_tr, (size_t)best_n * sizeof **trace);
    *ntrace = best_n;
    *out = best;
done:
    free(fd.mean), free(fd.post), free(fd.work), free(fd.logB), free(smem), free(tr), free(best_tr);
    free(fd.slot_stats), free(fd.slot_ll), free(fd.slot_st), free(fd.slot_ctx);
    return st;
}
