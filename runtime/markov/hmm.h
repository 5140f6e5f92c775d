/* hmm.h -- hidden Markov models with finite state spaces: likelihood, filtering, smoothing, decoding,
** prediction, sampling and Baum-Welch EM. Two layers: core kernels over a chain and a precomputed emission
** log-likelihood matrix (also used by the continuous-time HMM), and the plm_hmm object with its emission family.
** Matrices are row-major doubles owned by the caller unless a function says it returns GC memory. */
#ifndef PLM_HMM_H
#define PLM_HMM_H

#include <stddef.h>

#include "ctx.h"
#include "dist.h"
#include "rng.h"

/* ---- Core kernels ---------------------------------------------------------------------------------- */

/* A discrete chain for the core kernels: K states, init[K], and either one K*K row-major transition matrix
** `trans` (trans_t == NULL) or per-step matrices trans_t[t] for the step t -> t+1, t = 0..T-2. */
typedef struct plm_chain {
    int K;
    const double *init;
    const double *trans;
    const double *const *trans_t;
} plm_chain;

/* Kernels over a precomputed emission log-likelihood matrix logB (T*K, row t = log p(y_t | state k)).
** Scaled in probability space with per-step log normalisers, so no underflow for any T (a step whose
** products all underflow is redone in log space). Probabilities in the chain are trusted (validate with
** plm_hmm_check_chain); entries of logB may be -inf but not NaN. T must be >= 1. Extra memory: O(K) for
** loglik and posterior (beyond filtered/post), O(K^2) plus T*K bytes of back-pointers (K <= 256) for viterbi.
** When the observations have probability 0 under the model, loglik gives -inf with PLM_OK if filtered is
** NULL; otherwise (and for posterior and viterbi) the result is PLM_EDOM naming the first impossible step.
** Other errors: PLM_EINVAL (T = 0, K < 1, missing init/trans), PLM_ENOMEM, PLM_EINTR. */
plm_status plm_hmm_core_loglik(plm_ctx *ctx, const plm_chain *c, size_t T, const double *logB, double *loglik,
                               double *filtered /* T*K or NULL */);
plm_status plm_hmm_core_posterior(plm_ctx *ctx, const plm_chain *c, size_t T, const double *logB,
                                  double *post /* T*K */, double *loglik);
plm_status plm_hmm_core_viterbi(plm_ctx *ctx, const plm_chain *c, size_t T, const double *logB,
                                int *path /* T, 0-based */, double *logp);

/* Check init (K) and trans (K*K): entries >= 0 and each row summing to 1 within 1e-9. The message names
** the function `fn` and the row/entry, 1-based as a user reads it: "hmm: trans row 2 must sum to 1 (sum is
** 0.9)". PLM_EINVAL on failure. */
plm_status plm_hmm_check_chain(plm_ctx *ctx, const char *fn, int K, const double *init, const double *trans);

/* ---- The HMM object -------------------------------------------------------------------------------- */

typedef enum plm_hmm_emit {
    PLM_HMM_CATEGORICAL,   /* K x M probability matrix; observations are symbols 0..M-1 (stored as doubles) */
    PLM_HMM_NORMAL,        /* per state (mu, sigma) */
    PLM_HMM_POISSON,       /* per state (lambda) */
    PLM_HMM_BERNOULLI,     /* per state (p); observations 0 or 1 */
    PLM_HMM_MVNORMAL       /* per state mu[D], Sigma[D*D]; observations are D-vectors */
} plm_hmm_emit;

/* A hidden Markov model. GC memory: create with a plm_hmm_new_* function, never free. Treat as read-only;
** the fields are public so that bindings can read parameters without copies.
** par holds the per-state emission parameters:
**   categorical: K*M probabilities (row k = p(symbol | state k));
**   normal: K*2 (mu, sigma); poisson: K*1 (lambda); bernoulli: K*1 (p);
**   mvnormal: K*D means followed by K*D*D covariances. */
typedef struct plm_hmm {
    int K;               /* states */
    plm_hmm_emit emit;
    int M;               /* categorical: symbols; else 0 */
    int D;               /* doubles per observation: 1, or the dimension of mvnormal */
    double *init;        /* K */
    double *trans;       /* K*K row-major, rows sum to 1 */
    double *par;         /* emission parameters (see above) */
    /* derived, for the kernels */
    double *logtrans;    /* K*K log(trans) */
    double *emitT;       /* categorical: M*K, emitT[m*K + k] = p(m | k), so one symbol is one contiguous row */
    double *logemitT;    /* categorical: M*K logs of emitT */
    double *chol;        /* mvnormal: K lower Cholesky factors D*D, upper triangles zero */
    double *lognorm;     /* 2K per-state constants: normal and mvnormal: log normaliser of the density;
                         ** poisson: log lambda; bernoulli: log p, log(1-p) */
} plm_hmm;

/* Constructors. They copy their inputs, validate them (messages name `hmm`, the argument and the 1-based
** row/entry), and return a GC-owned model in *out. PLM_EINVAL on bad input, PLM_ENOMEM. */
plm_status plm_hmm_new_categorical(plm_ctx *ctx, int K, int M, const double *init, const double *trans,
                                   const double *emit /* K*M */, plm_hmm **out);
/* kind is normal, poisson or bernoulli; par is K*2 (normal: mu, sigma) or K*1. */
plm_status plm_hmm_new_scalar(plm_ctx *ctx, plm_hmm_emit kind, int K, const double *init, const double *trans,
                              const double *par, plm_hmm **out);
plm_status plm_hmm_new_mvnormal(plm_ctx *ctx, int K, int D, const double *init, const double *trans,
                                const double *mu /* K*D */, const double *Sigma /* K*D*D */, plm_hmm **out);
/* From one plm_dist per state; all of one kind among normal, poisson, bernoulli, mvnormal (same dimension)
** and categorical (per-state category counts may differ: M is the largest, missing symbols get 0). */
plm_status plm_hmm_new_dists(plm_ctx *ctx, int K, const double *init, const double *trans,
                             plm_dist *const *dists, plm_hmm **out);

/* The emission family's name ("categorical", "normal", ...). */
const char *plm_hmm_emit_name(plm_hmm_emit e);

/* Per-state emission distribution k as a new GC-owned plm_dist (categorical over M symbols for the matrix form). */
plm_status plm_hmm_state_dist(plm_ctx *ctx, const plm_hmm *h, int k, plm_dist **out);

/* Observations: y holds T * h->D doubles (categorical symbols are 0-based whole numbers). Every function below
** checks them first: PLM_EDOM names the 0-based position and the value ("hmm: observation at t=16 is 9, but
** symbols are 0..7"); PLM_EINVAL when T = 0. */
plm_status plm_hmm_check_obs(plm_ctx *ctx, const plm_hmm *h, size_t T, const double *y);

/* Emission log-likelihoods logB (T*K) of the observations. */
plm_status plm_hmm_emit_loglik(plm_ctx *ctx, const plm_hmm *h, size_t T, const double *y, double *logB);

/* log p(y_1..T). Extra memory O(K^2 + K) (emissions are computed in fixed-size blocks). */
plm_status plm_hmm_loglik(plm_ctx *ctx, const plm_hmm *h, size_t T, const double *y, double *loglik);
/* Filtered state probabilities p(x_t | y_1..t), T*K, and optionally the log-likelihood. Extra memory O(K^2 + K). */
plm_status plm_hmm_filter(plm_ctx *ctx, const plm_hmm *h, size_t T, const double *y, double *filtered,
                          double *loglik /* or NULL */);
/* Smoothed marginals p(x_t | y_1..T), T*K. Extra memory: O(T K) for non-categorical emissions, O(K^2) otherwise. */
plm_status plm_hmm_posterior(plm_ctx *ctx, const plm_hmm *h, size_t T, const double *y, double *post,
                             double *loglik /* or NULL */);
/* Most probable state path (0-based) and its joint log-probability log p(x, y). */
plm_status plm_hmm_viterbi(plm_ctx *ctx, const plm_hmm *h, size_t T, const double *y, int *path, double *logp);

/* Draw T steps: states (0-based) and observations (T * D doubles) from stream (seed, stream) of r. */
plm_status plm_hmm_sample(plm_ctx *ctx, const plm_hmm *h, size_t T, plm_rng *r, int *states, double *y);

/* One-step-ahead prediction: for t = 0..T, the predictive state distribution weights[t*K + k] =
** p(x_{t+1} = k | y_1..t) (T+1 rows, the last is for the step after the sequence), and
** logpred[t] = log p(y_{t+1} | y_1..t) for t < T. For categorical and bernoulli emissions probs (or NULL)
** receives the predictive symbol probabilities, (T+1) * M rows (M = 2 for bernoulli: p(0), p(1)); for
** the other families mean (or NULL) receives the predictive mean, (T+1) * D (bernoulli: p(1)). acc (or NULL) receives the fraction of
** t where the predictive mode equals y_{t+1} (categorical, bernoulli, poisson; NaN for continuous families). */
typedef struct plm_hmm_pred {
    double *weights;   /* (T+1)*K, required */
    double *logpred;   /* T, required */
    double *probs;     /* (T+1)*M or NULL */
    double *mean;      /* (T+1)*D or NULL */
    double accuracy;   /* out */
    double logloss;    /* out: -(1/T) sum_t logpred[t], nats per observation */
} plm_hmm_pred;
plm_status plm_hmm_predict(plm_ctx *ctx, const plm_hmm *h, size_t T, const double *y, plm_hmm_pred *out);

/* Baum-Welch. Data: nseq sequences ys[s] of Ts[s] observations. Runs from h (restart 0) and from
** restarts-1 random starts drawn from seed; each run stops after `iters` M-steps or when the log-likelihood
** rises by less than tol. Returns the best run: *out (GC-owned), its trace of log-likelihoods (GC memory
** of *ntrace doubles: trace[i] = log-likelihood of the parameters after i M-steps), which never decreases:
** a step that would lower it (rounding at convergence) is undone and ends the run. */
typedef struct plm_hmm_fit_opts {
    int iters;            /* max M-steps per run, default 100 */
    double tol;           /* stop when the rise is below tol (absolute, nats), default 1e-6 */
    int restarts;         /* total runs, default 1 */
    unsigned long long seed;   /* streams 1.. of this seed draw the random starts */
    int threads;          /* sequences in parallel in the E-step; <= 0: plm_default_threads(). The result is
                          ** the same for any value (per-sequence statistics are added in sequence order). */
} plm_hmm_fit_opts;
void plm_hmm_fit_defaults(plm_hmm_fit_opts *o);
plm_status plm_hmm_fit(plm_ctx *ctx, const plm_hmm *h, size_t nseq, const double *const *ys, const size_t *Ts,
                       const plm_hmm_fit_opts *opts, plm_hmm **out, double **trace, int *ntrace);

/* Stationary distribution pi (K): pi trans = pi, sum 1. PLM_EDOM when it is not unique (reducible chain). */
plm_status plm_hmm_stationary(plm_ctx *ctx, const plm_hmm *h, double *pi);
/* Entropy rate of the hidden state chain, -sum_i pi_i sum_j A_ij log A_ij, in nats per step (the entropy
** rate of the observations has no closed form). PLM_EDOM as for plm_hmm_stationary. */
plm_status plm_hmm_entropy_rate(plm_ctx *ctx, const plm_hmm *h, double *rate);

#endif
