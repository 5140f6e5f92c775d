/* hmm_infer.c -- inference on the HMM object: likelihood, filtering, smoothing and decoding through the
** kernels of hmm_kernel.c; one-step-ahead prediction; the state chain's stationary distribution and entropy rate. */
#include "hmm_impl.h"

#include <gsl/gsl_linalg.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- Inference on the model -------------------------------------------------------------------------- */

#define BLOCK 256   /* steps of emission log-likelihoods computed at once by loglik: O(K) memory */


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
            if (plm_hmm_emit_rows(h, n, y + t0 * h->D, w + 4 * K)) {
                free(w);
                return plm_failm(ctx, PLM_ENOMEM, "hmm", "out of memory");
            }
        }
        plm_hmm_fwd_steps(&f, &c, t0, n, &em, NULL);
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
        if (plm_hmm_emit_rows(h, T, y, filtered)) {
            if (wp != w) free(wp);
            return plm_failm(ctx, PLM_ENOMEM, "hmm", "out of memory");
        }
        em.logB = filtered;
    }
    st = plm_hmm_fwd_all(ctx, &c, T, &em, filtered, wp, &ll);
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
    if (!(*own = malloc(T * (size_t)h->K * sizeof **own)) || plm_hmm_emit_rows(h, T, y, *own)) {
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
    st = plm_hmm_fb_run(ctx, &c, T, &em, post, NULL, &ll);
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
    st = plm_hmm_viterbi_run(ctx, &c, T, &em, h->logtrans, path, logp);
    free(own);
    return st;
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
            if (plm_hmm_emit_rows(h, 1, y + t * (size_t)D, lb)) {
                free(w);
                return plm_failm(ctx, PLM_ENOMEM, "hmm", "out of memory");
            }
            em.logB = lb;
        }
        plm_hmm_fwd_steps(&f, &c, t, 1, &em, NULL);
        if (f.impossible != (size_t)-1) {
            free(w);
            em.yall = y;
            return plm_hmm_impossible_at(ctx, "hmm", &em, t);
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
