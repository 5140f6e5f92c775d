/* hmm_impl.h -- what the files of the HMM module share and nobody else sees: the emission source and the
** forward scratch of the kernels (hmm_kernel.c), used by inference (hmm_infer.c) and Baum-Welch (hmm_fit.c),
** and the object's emission rows (hmm.c). Not installed; users include hmm.h. */
#ifndef PLM_HMM_IMPL_H
#define PLM_HMM_IMPL_H

#include "hmm.h"

#include <string.h>

/* Poll the interrupt flag every this many steps. */
#define POLL_EVERY 65536

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

/* The chain of the object, and its categorical emission source (y: symbols of the whole sequence). */
static inline plm_chain chain_of(const plm_hmm *h)
{
    plm_chain c = {h->K, h->init, h->trans, NULL};
    return c;
}

static inline emis emis_cat(const plm_hmm *h, const double *y)
{
    emis em = {NULL, h->emitT, h->logemitT, y, h, y};
    return em;
}

/* The functions below are internal to libplume: hidden, so that -fPIC does not make their calls inside a file
** go through the PLT or forbid inlining them there (log_matrix in Viterbi's inner loop, as when they were static). */
#if defined(__GNUC__)
#pragma GCC visibility push(hidden)
#endif

/* ---- hmm_kernel.c ---- */

/* Steps t0 .. t0+n-1 of the forward pass. em's rows are addressed relative to t0 (a block of a longer
** sequence). When out is given, row t - t0 receives the filtered vector. */
void plm_hmm_fwd_steps(fwd *f, const plm_chain *c, size_t t0, size_t n, const emis *em, double *out);
/* Forward over a whole sequence into rows (T*K) with scratch w (4K), then report. */
plm_status plm_hmm_fwd_all(plm_ctx *ctx, const plm_chain *c, size_t T, const emis *em, double *rows, double *w,
                           double *loglik);
/* Turn the filtered rows in post (T*K) into smoothed marginals; when xi is given, add the expected
** transition counts into it (K*K). work: 4K. */
plm_status plm_hmm_bwd_pass(plm_ctx *ctx, const plm_chain *c, size_t T, const emis *em, double *post, double *xi,
                            double *work);
/* Forward-backward over a whole sequence: post receives the smoothed marginals, xi (optional) the added
** expected transition counts. */
plm_status plm_hmm_fb_run(plm_ctx *ctx, const plm_chain *c, size_t T, const emis *em, double *post, double *xi,
                          double *loglik);
/* Viterbi path into path (T, 0-based) and its log joint into *logp; logA_fixed is log trans when known. */
plm_status plm_hmm_viterbi_run(plm_ctx *ctx, const plm_chain *c, size_t T, const emis *em, const double *logA_fixed,
                               int *path, double *logp);
/* Observation t (0-based) has probability 0 given the ones before it: PLM_EDOM naming it (and its value,
** when em knows the model's observations). */
plm_status plm_hmm_impossible_at(plm_ctx *ctx, const char *fn, const emis *em, size_t t);
/* out (K*K) = log A elementwise. */
void plm_hmm_log_matrix(int K, const double *A, double *out);

/* ---- hmm.c ---- */

/* Emission log-likelihoods (T*K) without checks (the caller checked the observations once). Returns
** PLM_ENOMEM only for mvnormal emissions of dimension > 64 when scratch memory runs out. */
plm_status plm_hmm_emit_rows(const plm_hmm *h, size_t T, const double *restrict y, double *restrict logB);

#if defined(__GNUC__)
#pragma GCC visibility pop
#endif

#endif
