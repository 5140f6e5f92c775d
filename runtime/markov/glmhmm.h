/* glmhmm.h -- switching GLM-HMMs for spike trains: a hidden Markov chain whose state-k emission is, for each
** neuron, a Poisson (log link) or Bernoulli (logit link) GLM of the lagged spikes of all neurons. Fitted by EM
** with a MAP M-step under no prior, a Gaussian prior or a one-hot prior over each state's coupling weights, the
** priors' hyperparameters learned in the M-step (after Li, Kim, Rodgers, Choi and Wu, "One-hot Generalized
** Linear Model for Switching Brain State Discovery", ICLR 2024). Spikes are T*N row-major doubles owned by
** the caller; models are GC memory, read-only once made. */
#ifndef PLM_GLMHMM_H
#define PLM_GLMHMM_H

#include <stddef.h>

#include "ctx.h"
#include "rng.h"

typedef enum plm_glmhmm_family { PLM_GLMHMM_POISSON, PLM_GLMHMM_BERNOULLI } plm_glmhmm_family;
typedef enum plm_glmhmm_prior { PLM_GLMHMM_NONE, PLM_GLMHMM_GAUSSIAN, PLM_GLMHMM_ONEHOT } plm_glmhmm_prior;

/* Connection types of the one-hot prior, in the order of the 3-vectors below. */
enum { PLM_GLMHMM_INHIBITORY, PLM_GLMHMM_UNCONNECTED, PLM_GLMHMM_EXCITATORY };

/* A switching GLM-HMM. Each state k and neuron i has P = 1 + N*L coefficients
**   W[(k*N + i)*P + 0]             bias of neuron i in state k,
**   W[(k*N + i)*P + 1 + l*N + j]   weight of neuron j's spike count l+1 bins ago on neuron i (l = 0..L-1),
** so the linear predictor is eta_tki = W_ki . x_t with x_t = (1, y_{t-1}, ..., y_{t-L}); spikes before the
** first bin count as zero. The prior fields are set for the prior the model was fitted with (else NULL/0). */
typedef struct plm_glmhmm {
    int K, N, L, P;
    plm_glmhmm_family family;
    plm_glmhmm_prior prior;
    double *init;        /* K */
    double *trans;       /* K*K row-major */
    double *W;           /* K*N*P */
    /* gaussian prior: w_kijl ~ N(wbar_ijl, sigma2), wbar and sigma2 learned */
    double *wbar;        /* N*N*L, laid out like one state's weights without the bias: [i*N*L + l*N + j] */
    double sigma2;
    /* one-hot prior: connection j -> i of state k has a type c (inhibitory, unconnected, excitatory) drawn from
    ** global type probabilities pi_ij shared by the states (the learned connectome); given c, its L weights
    ** are N(-mu, s2_on), N(0, s2_off) or N(+mu, s2_on). pi, mu, s2_on and s2_off are learned. */
    double *type_prob;   /* N*N*3: [(i*N + j)*3 + c] */
    double *resp;        /* K*N*N*3: posterior type probabilities of each state's connections */
    double mu, s2_on, s2_off;
    /* the fit's last values (0 when the model was made with plm_glmhmm_new) */
    double loglik;       /* log p(y | parameters) */
    double logprior;     /* log prior density of the weights and hyperparameters (see plm_glmhmm_fit) */
} plm_glmhmm;

/* A model from given parameters (no prior), to simulate from or to score data with. init (K), trans (K*K)
** are checked like plm_hmm's; W (K*N*P) must be finite. PLM_EINVAL names the argument. */
plm_status plm_glmhmm_new(plm_ctx *ctx, int K, int N, int L, plm_glmhmm_family family, const double *init,
                          const double *trans, const double *W, plm_glmhmm **out);

/* Check spikes (T*m->N, or T*N for a fit): finite whole numbers >= 0, and 0 or 1 for Bernoulli. PLM_EDOM names
** the 1-based bin and neuron and the value ("glmhmm: spikes[17][3] is 2.5, ..."); PLM_EINVAL when T = 0. */
plm_status plm_glmhmm_check_spikes(plm_ctx *ctx, plm_glmhmm_family family, size_t T, int N, const double *y);

/* Emission log-likelihoods logB (T*K): row t = log p(y_t | y_{t-L..t-1}, state k). */
plm_status plm_glmhmm_emit_loglik(plm_ctx *ctx, const plm_glmhmm *m, size_t T, const double *y, double *logB);
/* log p(y_1..T) with the states summed out (held-out predictive log-likelihood of new spikes). */
plm_status plm_glmhmm_loglik(plm_ctx *ctx, const plm_glmhmm *m, size_t T, const double *y, double *loglik);
/* Smoothed state probabilities p(z_t | y), T*K, and optionally the log-likelihood. */
plm_status plm_glmhmm_posterior(plm_ctx *ctx, const plm_glmhmm *m, size_t T, const double *y, double *post,
                                double *loglik /* or NULL */);
/* The E-step of EM: smoothed state probabilities post (T*K), expected transition counts xi (K*K, xi[i*K + j] =
** sum_t p(z_t = i, z_{t+1} = j | y)) and log p(y). */
plm_status plm_glmhmm_expected_counts(plm_ctx *ctx, const plm_glmhmm *m, size_t T, const double *y, double *post,
                                      double *xi, double *loglik);
/* Most probable state path (0-based) and log p(path, y). */
plm_status plm_glmhmm_viterbi(plm_ctx *ctx, const plm_glmhmm *m, size_t T, const double *y, int *path, double *logp);
/* Draw T bins of states (0-based) and spikes (T*N) from stream (seed, stream) of r. */
plm_status plm_glmhmm_sample(plm_ctx *ctx, const plm_glmhmm *m, size_t T, plm_rng *r, int *states, double *y);

/* EM. Each run starts from a random sticky segmentation of the bins into K states (drawn from stream `run` of
** seed), fits each state's GLMs on its segments, and iterates: E-step by forward-backward over the HMM core,
** M-step by weighted Newton steps with step halving per state and neuron (the prior enters as a quadratic
** penalty: the Gaussian prior's, or, for the one-hot prior, the expected one under the connection types'
** posterior), then closed-form MAP updates of the transition matrix and the prior's hyperparameters. The
** objective, log p(y | theta) + log p(W | hyper) + log p(hyper), never decreases (a step that would lower it,
** rounding at convergence, ends the run). The best of `restarts` runs is returned with its objective trace
** (GC memory, *ntrace doubles). Hyperpriors: inverse-gamma on the variances with 10 pseudo-observations
** (sigma2: 0.25; s2_on: 0.25; s2_off: 0.01), Dirichlet(2, 2, 2) on each pi_ij, and a ridge on the biases
** (and, with no prior, on the weights) of precision `ridge`. */
typedef struct plm_glmhmm_opts {
    int K, L;                    /* states (>= 1), lags (>= 1) */
    plm_glmhmm_family family;
    plm_glmhmm_prior prior;
    int iters;                   /* max EM iterations per run, default 200 */
    double tol;                  /* stop when the objective rises by less than tol (nats), default 1e-6 */
    int restarts;                /* runs, default 3 */
    int newton;                  /* Newton steps per state and neuron per M-step, default 2 */
    double ridge;                /* default 1e-4 */
    double stickiness;           /* initial self-transition probability, default 0.95 */
    unsigned long long seed;
} plm_glmhmm_opts;
void plm_glmhmm_fit_defaults(plm_glmhmm_opts *o);
plm_status plm_glmhmm_fit(plm_ctx *ctx, const plm_glmhmm_opts *o, size_t T, int N, const double *y, plm_glmhmm **out,
                          double **trace, int *ntrace);

/* The family's and the prior's names ("poisson", "onehot", ...). */
const char *plm_glmhmm_family_name(plm_glmhmm_family f);
const char *plm_glmhmm_prior_name(plm_glmhmm_prior p);

#endif
