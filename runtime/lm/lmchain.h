/* lmchain.h -- a language model read as a Markov chain on its contexts (after Zekri et al., "Large Language
** Models as Markov Chains"): the state is the last K tokens, a step draws the next token from the model's
** distribution at temperature T and slides the window. Built over the contexts reachable from a start
** context (shorter contexts grow until they hold K tokens), as a sparse transition matrix; then its
** stationary distribution, spectral gap and mixing time. Chains are malloc-owned: plm_lmchain_free. */
#ifndef PLM_LMCHAIN_H
#define PLM_LMCHAIN_H

#include <stddef.h>
#include <stdint.h>

#include "lm.h"
#include "rng.h"

typedef struct plm_lmchain plm_lmchain;

/* Dense methods (LU for the stationary distribution, a full eigen-solve for the gap) are used up to these
** many states; above them, iterations on the sparse matrix. */
#define PLM_LMCHAIN_DENSE_STATIONARY 2000
#define PLM_LMCHAIN_DENSE_EIGEN 600

typedef struct plm_lmchain_opts {
    int context;              /* K >= 1 tokens of state */
    double temperature;       /* T >= 0: rows p^(1/T) renormalised; 0 = greedy (ties share), inf = uniform on
                              ** the tokens of positive probability */
    const plm_token *start;   /* the start context (its last K tokens count); NULL/0 = start of text */
    size_t nstart;
    size_t max_states;        /* refuse chains with more reachable states (0: 100000) */
    size_t dense_limit;       /* 0: the limits above; otherwise the one limit for both (tests use 1 to force
                              ** the iterations on small chains) */
} plm_lmchain_opts;

/* Build the chain: breadth-first from the start context, next-token rows fetched in batches through
** plm_lm_next_logprobs. State 0 is the start context. Errors: PLM_EINVAL (K < 1, T < 0 or NaN, a context
** longer than the model accepts), PLM_EDOM (more than max_states reachable states: the message names the
** limit), PLM_ENOMEM, PLM_EINTR, and the backend's. Messages start "lmchain: ". */
plm_status plm_lmchain_new(plm_ctx *ctx, plm_lm *lm, const plm_lmchain_opts *o, plm_lmchain **out);
void plm_lmchain_free(plm_lmchain *c);

/* Size and states: n states, nnz transitions; the tokens of state i (len <= K; shorter only for the growing
** start contexts), owned by the chain. */
size_t plm_lmchain_n_states(const plm_lmchain *c);
size_t plm_lmchain_nnz(const plm_lmchain *c);
const plm_token *plm_lmchain_state(const plm_lmchain *c, size_t i, size_t *len);
/* Row i: its n successor states and their probabilities (summing to 1), owned by the chain. */
void plm_lmchain_row(const plm_lmchain *c, size_t i, const int32_t **succ, const double **prob, size_t *n);

/* Structure, found once at construction (Tarjan's strongly connected components): the number of closed
** classes (classes no transition leaves), and the period of the closed class when there is one. */
int plm_lmchain_closed_classes(const plm_lmchain *c);
int plm_lmchain_period(const plm_lmchain *c);

/* The stationary distribution pi (n, caller-owned): zero off the closed class. Unique when there is exactly
** one closed class, otherwise PLM_EDOM. Up to PLM_LMCHAIN_DENSE_STATIONARY states in the class, an LU solve
** of pi (P - I) = 0 with sum 1; above, power iteration on the lazy chain (P + I) / 2 until the L1 change is
** below 1e-13 (PLM_ERUNTIME when 10^6 iterations do not get there). */
plm_status plm_lmchain_stationary(plm_ctx *ctx, const plm_lmchain *c, double *pi);

/* The absolute spectral gap 1 - |lambda_2| (lambda_2: the eigenvalue of largest modulus after one eigenvalue
** 1) and |lambda_2| itself. Exactly 0 for a chain with several closed classes or a periodic one. Up to
** PLM_LMCHAIN_DENSE_EIGEN states: all eigenvalues of the dense matrix (GSL's nonsymmetric solver); above:
** restarted Arnoldi (Krylov dimension 20) on the rows summing to zero, until the Ritz estimate changes by less
** than 1e-12 between restarts (at most 1000 restarts; a slowly separating spectrum may stop short of that). */
plm_status plm_lmchain_spectral_gap(plm_ctx *ctx, const plm_lmchain *c, double *gap, double *lambda2);

/* The mixing time: the smallest t with max_x TV(P^t(x, .), pi) <= eps, the maximum over every state x
** (from < 0) or over the one state `from`. Each start's distribution is iterated on the sparse matrix
** (cost per start: t nnz), starts in parallel on `threads` (0: all cores), same result for any count.
** PLM_EDOM when the chain never mixes (several closed classes, or a periodic closed class), PLM_ERUNTIME
** when max_steps steps do not reach eps (the message gives the distance reached), PLM_EINVAL when eps is
** not in (0, 1). */
plm_status plm_lmchain_mixing_time(plm_ctx *ctx, const plm_lmchain *c, double eps, long from, size_t max_steps,
                                   int threads, size_t *t);

/* Walk n steps from state `from`: states[i] is the state after step i + 1 (its last token is the token
** drawn at that step). */
plm_status plm_lmchain_sample(plm_ctx *ctx, const plm_lmchain *c, plm_rng *r, size_t from, size_t n,
                              int32_t *states);

#endif
