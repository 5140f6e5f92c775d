/* markov_mix.h -- learning mixtures of Markov chains and MDPs from short unlabelled trajectories, after Kausik,
** Tan and Tewari, "Learning Mixtures of Markov Chains and MDPs": (1) per context (a state, or a state-action
** pair) the subspace spanned by the K next-state distributions, from products of independent halves of each
** trajectory's visits; (2) pairwise estimators between trajectories in those subspaces (inner products of
** centred, projected rows: the squared distances up to per-trajectory terms) and spectral clustering of them; (3) EM refinement and model estimation; (4) classification of new trajectories.
** Inputs are caller-owned; a fit owns malloc'd arrays released by plm_markov_mix_free. */
#ifndef PLM_MARKOV_MIX_H
#define PLM_MARKOV_MIX_H

#include <stddef.h>
#include <stdint.h>

#include "ctx.h"

/* N trajectories: s[n][t] states in 0..S-1 for t < len[n]; a[n][t] actions in 0..A-1 for t < len[n] - 1
** (the action taken in s[n][t]), or a == NULL and A == 1 for plain Markov chains. */
typedef struct plm_mm_data {
    size_t N;
    const int *const *s;
    const int *const *a;
    const size_t *len;
    int S, A;
} plm_mm_data;

typedef enum plm_mm_init {
    PLM_MM_SPECTRAL,   /* subspace estimation and clustering of pairwise distances, then EM */
    PLM_MM_RANDOM      /* EM from random transition matrices (the baseline) */
} plm_mm_init;

typedef struct plm_mm_opts {
    int K;              /* components, >= 1 */
    int iters;          /* EM iterations after the initial clustering (default 20; 0: the clustering alone) */
    double tol;         /* stop when the log-likelihood rises by less (default 1e-8) */
    double smooth;      /* pseudo-count (> 0) added to every transition count in the M-step (default 0.1) */
    plm_mm_init init;
    int restarts;       /* random init: runs, the best log-likelihood kept (default 1) */
    uint64_t seed;      /* for k-means seeding and random starts */
} plm_mm_opts;
void plm_mm_defaults(plm_mm_opts *o);

/* The fitted mixture. P[((k*S + s)*A + a)*S + s2] = p_k(s2 | s, a). */
typedef struct plm_mm_fit {
    int K, S, A;
    size_t N;
    double *P;        /* K*S*A*S */
    double *w;        /* K mixing weights */
    double *resp;     /* N*K posterior label probabilities */
    int *labels;      /* N, the most probable component */
    int *cluster;     /* N, the labels of the spectral clustering before EM (random init: all -1) */
    double loglik;    /* sum over trajectories of log sum_k w_k p_k(trajectory) (first states not modelled) */
    int iters;        /* EM iterations run */
} plm_mm_fit;

/* Fit. On success *out holds malloc'd arrays (plm_markov_mix_free). PLM_EINVAL for bad options or data (a state
** or action out of range, K > N), PLM_ENOMEM, PLM_EINTR. Same seed, same result. */
plm_status plm_markov_mix_fit(plm_ctx *ctx, const plm_mm_data *d, const plm_mm_opts *o, plm_mm_fit *out);
void plm_markov_mix_free(plm_mm_fit *f);

/* Posterior over components of one trajectory (s: len states, a: len-1 actions or NULL): post[K]; returns the
** most probable component in *label. PLM_EINVAL for a state or action out of range. */
plm_status plm_markov_mix_classify(plm_ctx *ctx, const plm_mm_fit *f, const int *s, const int *a, size_t len,
                                   double *post, int *label);

#endif
