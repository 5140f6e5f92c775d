/* cthmm.h -- continuous-time hidden Markov models: a plm_ctmc observed through noisy emissions at irregular
** times. Inference runs the discrete HMM core kernels (hmm.h) with one transition matrix exp(Q dt) per gap.
** States and categorical symbols are 0-based in C. Inputs are const and caller-owned; outputs are caller-owned
** buffers; plm_cthmm objects are GC memory. */
#ifndef PLM_CTHMM_H
#define PLM_CTHMM_H

#include <stddef.h>

#include "ctmc.h"
#include "dist.h"

typedef struct plm_cthmm {
    int K;                   /* states (= chain->K) */
    const plm_ctmc *chain;
    double *init;            /* K: distribution of the state at the first observation time */
    int M;                   /* categorical emissions: symbols; 0 for per-state distributions */
    double *E, *logE;        /* categorical: K*M emission probabilities and their logs */
    plm_dist **emit;         /* per-state distributions (K of them, all of dimension D), or NULL */
    int D;                   /* doubles per observation */
} plm_cthmm;

/* Categorical emissions: E is K*M, row k = p(symbol | state k). init (K) and each row of E must be >= 0 and
** sum to 1 within 1e-9; PLM_EINVAL names the entry ("cthmm: emit row 2 must sum to 1 (sum is 0.9)"). */
plm_status plm_cthmm_new_categorical(plm_ctx *ctx, const plm_ctmc *chain, const double *init, int M,
                                     const double *E, plm_cthmm **out);

/* One emission distribution per state (K of them, equal dimension). */
plm_status plm_cthmm_new_dists(plm_ctx *ctx, const plm_ctmc *chain, const double *init, plm_dist *const *emit,
                               plm_cthmm **out);

/* Observations: T >= 1 values of D doubles each (categorical: symbol numbers), at finite non-decreasing times.
** A value whose doubles are all NaN is missing. PLM_EINVAL for a symbol out of range or a bad time; the
** extra memory is O(T K + U K^2) for U distinct gaps between times. */

/* log p(obs) into *loglik (-inf when the observations are impossible). */
plm_status plm_cthmm_loglik(plm_ctx *ctx, const plm_cthmm *h, size_t T, const double *times, const double *obs,
                            double *loglik);
/* Smoothed state probabilities post (T*K); loglik may be NULL. PLM_EDOM when the observations are impossible. */
plm_status plm_cthmm_posterior(plm_ctx *ctx, const plm_cthmm *h, size_t T, const double *times, const double *obs,
                               double *post, double *loglik);
/* Most probable state sequence at the observation times (path, T, 0-based) and its joint log-probability. */
plm_status plm_cthmm_viterbi(plm_ctx *ctx, const plm_cthmm *h, size_t T, const double *times, const double *obs,
                             int *path, double *logp);
/* Draw the states at the given times (states, T) and an observation for each (obs, T*D); either may be NULL. */
plm_status plm_cthmm_sample(plm_ctx *ctx, const plm_cthmm *h, size_t T, const double *times, plm_rng *r,
                            int *states, double *obs);

#endif
