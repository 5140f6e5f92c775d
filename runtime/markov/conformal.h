/* conformal.h -- conformal prediction for Markov chains and hidden Markov models with exact finite-sample
** validity. By de Finetti's theorem for Markov chains (Diaconis and Freedman 1980) the probability of a path
** depends only on its first state and its transition counts, so the excursions that end at successive visits
** to a state c can be permuted without changing it. With c the candidate for the next state, the step into
** the next state ends the last such excursion, and its nonconformity ranks uniformly among the steps that end
** the other excursions: a p-value that is valid for any chain, any initial distribution and any mixture of
** chains, at every sequence length. All arrays are caller-owned. */
#ifndef PLM_CONFORMAL_H
#define PLM_CONFORMAL_H

#include <stddef.h>

#include "ctx.h"
#include "hmm.h"

/* Block-permutation p-values. x holds T >= 1 states (0-based, < K) of the observed path; score[t], for
** t = 1..T-1, is the nonconformity of the step into x[t] (it may look at x[t-1] and at what the state emits at
** t, but at nothing earlier, so that it belongs to one excursion); score[0] is not read. For candidate i the
** path is extended by state cand[i] at position T whose step has nonconformity cscore[i]; with n the visits of
** c = cand[i] after its first one in x, p[i] = (#{visits with score > s} + u (1 + #{score == s})) / (1 + n).
** u = 1 gives the conservative p-value; u drawn uniformly from (0, 1] gives the randomised one, uniform on
** (0, 1] for the true candidate. NaN scores are refused (PLM_EDOM); +inf is allowed. PLM_EINVAL for a state
** out of range. Extra memory: T doubles and K + 1 offsets. */
plm_status plm_conformal_blocks(plm_ctx *ctx, int K, size_t T, const int *x, const double *score, size_t ncand,
                                const int *cand, const double *cscore, double u, double *p);

/* Split-conformal p-values that treat every step as exchangeable (the naive method, kept for comparison):
** the rank of cscore[i] among score[1..T-1] with the same formula. Not valid under Markov dependence. */
plm_status plm_conformal_split(plm_ctx *ctx, size_t T, const double *score, size_t ncand, const double *cscore,
                               double u, double *p);

typedef enum plm_conformal_target {
    PLM_CONFORMAL_NEXT,    /* the next observation */
    PLM_CONFORMAL_STATE    /* the hidden state of the last observation */
} plm_conformal_target;

typedef enum plm_conformal_method {
    PLM_CONFORMAL_BLOCKS,  /* exchangeable excursions: exact */
    PLM_CONFORMAL_SPLIT    /* all steps exchangeable: naive */
} plm_conformal_method;

/* Conformal p-values with h's predictive log-probability as the score. h must not have been fitted to y
** (fit it to earlier data): the score must be a fixed function for the guarantee to hold.
**   NEXT, x == NULL: y (T observations, categorical or bernoulli) is taken to be a Markov chain on the symbols;
**     a step's score is -log p_h(y_t | y_{t-1}), h's one-step predictive from its stationary state
**     distribution updated by y_{t-1} (the flat prior where that is not unique or gives y_{t-1} probability 0).
**     p receives M values, one per symbol (M = 2 for bernoulli).
**   NEXT, x given (T states, the fully observed training path): the score of step t is
**     -log A(x_{t-1}, x_t) - log B(x_t, y_t); the p-value of symbol m is the largest over states c of the
**     p-value of the pair (c, m), valid because the true pair's is. p receives M values.
**   STATE, x given (T - 1 states) and y (T observations, the last one new, any emission family): the score of
**     step t is -log p_h(x_t | x_{t-1}, y_t). p receives K values, one per state.
** u as for plm_conformal_blocks. Errors: PLM_EINVAL (T too short, x missing for STATE, a family without
** symbols for NEXT), PLM_EDOM (an observation or state out of range),
** PLM_ENOMEM, PLM_EINTR. */
plm_status plm_conformal_hmm(plm_ctx *ctx, const plm_hmm *h, size_t T, const double *y, const int *x,
                             plm_conformal_target target, plm_conformal_method method, double u, double *p);

#endif
