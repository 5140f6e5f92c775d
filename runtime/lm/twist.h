/* twist.h -- twisted SMC over language-model outputs (Zhao, Brekelmans, Makhzani, Grosse, ICML 2024): the
** per-token step that turns a next-token row of the base model p0 and a row of twist values psi_t into a
** proposal and an incremental weight, and exact twists from tractable models: a token-level automaton (states x
** vocabulary transition table; keyword constraints are built here) run in product with an HMM distilled from the
** LM, whose backward table gives p_hmm(constraint satisfied by the end | prefix) by dynamic programming (GeLaTo),
** optionally with a per-token multiplicative weight (TRACE's log-linear attribute model).
** Target: sigma(s) ∝ p0(s) phi(s); intermediate targets pi_t ∝ p0(s_1:t) psi_t(s_1:t), psi_0 = 1, psi_T = phi.
** Everything is in natural logs. Objects are malloc-owned with a _free twin. */
#ifndef PLM_TWIST_H
#define PLM_TWIST_H

#include <stddef.h>
#include <stdint.h>

#include "ctx.h"
#include "lm.h"

/* ---- The twisted step ------------------------------------------------------------------------------- */

typedef enum plm_twist_proposal {
    PLM_TWIST_PROP_P0,      /* propose from p0; weight psi_t(v) / psi_{t-1} */
    PLM_TWIST_PROP_TWIST,   /* q_t(v) ∝ p0(v) psi_t(v) over the vocabulary; weight sum_v p0 psi_t / psi_{t-1} */
    PLM_TWIST_PROP_USER     /* a given q; weight p0(v) psi_t(v) / (psi_{t-1} q(v)) */
} plm_twist_proposal;

/* One step of twisted SMC over a vocabulary of V tokens. logp0 (V) is log p0(v | prefix), logpsi (V) is
** log psi_t(prefix, v) (psi_T = phi for candidates that end the text), logpsi_prev is log psi_{t-1}(prefix).
** logq (V): the proposal's log-probabilities -- written for P0 and TWIST, read (normalised here, in place) for
** USER. inc (V): the log incremental weight p0(v) psi_t(v) / (psi_{t-1}(prefix) q(v)) of proposing v (for TWIST
** the same for every v that q can propose). When no candidate has p0 psi_t > 0, q is p0 and every increment is
** -inf (the particle dies). Errors: PLM_EINVAL for NaN in a row or a user q that gives no mass where p0 psi > 0
** (a proposal must cover the target). */
plm_status plm_twist_step(plm_ctx *ctx, int V, plm_twist_proposal kind, const double *logp0, const double *logpsi,
                          double logpsi_prev, double *logq, double *inc);

/* ---- Token automata --------------------------------------------------------------------------------- */

/* A deterministic automaton reading tokens: S states, next[s * V + v] the state after token v in state s (-1:
** the automaton rejects, for good), accept[s] 1 when ending in s satisfies the constraint. The interface is the
** transition table, so any automaton compiled elsewhere (over bytes, lifted to tokens) can be wrapped. */
typedef struct plm_tdfa {
    int S, V, start;
    int32_t *next;           /* S * V */
    unsigned char *accept;   /* S */
} plm_tdfa;

/* A new automaton with S states over V tokens, every transition -1, nothing accepting, start 0 (to fill). */
plm_status plm_tdfa_new(plm_ctx *ctx, int S, int V, plm_tdfa **out);
/* "The text contains every one of the nk keyword tokens kw[0..nk-1]" (0 < nk <= 16): the states are the subsets
** of keywords seen so far (2^nk states), accepting when all are seen. Ids must be in 0..V-1. */
plm_status plm_tdfa_keywords(plm_ctx *ctx, int V, const plm_token *kw, int nk, plm_tdfa **out);
void plm_tdfa_free(plm_tdfa *d);
/* Run the automaton over n tokens from its start: the final state, or -1 when it rejected. */
int plm_tdfa_run(const plm_tdfa *d, const plm_token *toks, size_t n);

/* ---- HMM x automaton: exact twists (GeLaTo, TRACE) --------------------------------------------------- */

/* An HMM over the vocabulary (K hidden states, categorical emissions over V tokens) in product with an
** automaton, over texts of at most T tokens. The backward table
**   B[r][z][s] = p_hmm(the automaton accepts after r more tokens, times the product of their weights |
**                      hidden state z, automaton state s)
** gives the twist psi_t(x_1:t) = w(x_1:t) sum_z p_hmm(z_t = z | x_1:t) B[T - t][z][s(x_1:t)] with w the product of
** the per-token weights (1 when none are given). End-of-text ids (eos) end the text: a candidate that is EOS, or
** the T-th token, gets phi = w * accept[s] rather than the HMM's estimate. */
typedef struct plm_hmmguide {
    int K, V, S, T;
    double *init;            /* K */
    double *trans;           /* K*K */
    double *emitT;           /* V*K: emitT[v*K + z] = p(v | z), smoothed so that no token has probability 0 */
    double *logw;            /* V per-token log weights, or NULL */
    unsigned char *eos;      /* V flags */
    int32_t *next;           /* the automaton (copied): S*V */
    unsigned char *accept;   /* S */
    int start;
    double *B;               /* (T + 1) * K * S */
} plm_hmmguide;

/* Build the guide and its backward table: O(T (K^2 S + K V S)) time, (T+1) K S doubles. emit is K*V (row z =
** p(. | z)); eps mixes every emission row with the uniform distribution (eps / V per token) so that tokens the
** HMM never saw keep a positive twist; logw (V) may be NULL; eos lists n_eos ids. Rows of init, trans and emit
** are checked (non-negative, summing to 1 within 1e-6). */
plm_status plm_hmmguide_new(plm_ctx *ctx, int K, int V, const double *init, const double *trans, const double *emit,
                            const plm_tdfa *dfa, const double *logw, const plm_token *eos, int n_eos, int T, double eps,
                            plm_hmmguide **out);
void plm_hmmguide_free(plm_hmmguide *g);

/* The state a guide keeps for one prefix: the filter p(z_t | x_1:t) (K doubles; unused at t = 0), the automaton
** state (-1: rejected), the log weight so far and t. */
typedef struct plm_hmmguide_state {
    double *alpha;   /* K, caller-owned */
    int s;
    double logw;
    int t;
} plm_hmmguide_state;
void plm_hmmguide_start(const plm_hmmguide *g, plm_hmmguide_state *st);
/* out[v] = log psi_{t+1}(x_1:t, v) for every token v (phi for EOS and for the T-th token; -inf past T).
** scratch: 2K doubles. */
void plm_hmmguide_logpsi(const plm_hmmguide *g, const plm_hmmguide_state *st, double *out, double *scratch);
/* Append token v: the filter, the automaton state, the weight and t move on. scratch: K doubles. */
void plm_hmmguide_advance(const plm_hmmguide *g, plm_hmmguide_state *st, plm_token v, double *scratch);


/* ---- Saving guides; learned twists ----------------------------------------------------------------- */

/* Write g to path as a versioned text file ("plume-twist 1", then the sizes and every table); load reads it back
** (PLM_EIO / PLM_EPARSE name the file and what is wrong, e.g. another version). */
plm_status plm_hmmguide_save(plm_ctx *ctx, const plm_hmmguide *g, const char *path);
plm_status plm_hmmguide_load(plm_ctx *ctx, const char *path, plm_hmmguide **out);

/* A learnable twist for an automaton constraint: a guide with one hidden state whose table holds
** psi(prefix) = exp(W[r][s]) for the automaton state s and r tokens left (phi stays exact at the end). */
plm_status plm_twist_table_new(plm_ctx *ctx, const plm_tdfa *dfa, const plm_token *eos, int n_eos, int T,
                               plm_hmmguide **out);

/* Contrastive twist learning (Zhao et al. 2024, section 4.1) of a table twist g: each iteration runs twisted SMC
** with N particles after prompt (resampling multinomially every step), and moves W by lr times
** sum_t (E_sigma[grad log psi_t] - E_pi_t[grad log psi_t]): the sigma expectation from the final weighted
** particles, the pi_t one from every particle at step t-1 extended over the whole vocabulary by q_t. logz[it]
** (iters entries, or NULL) receives each iteration's log Z estimate; progress (or NULL) is called after each.
** Polls Ctrl-C. */
typedef void (*plm_twist_progress)(void *ud, int it, int iters, double logz, double ess);
plm_status plm_twist_ctl(plm_ctx *ctx, plm_lm *lm, plm_hmmguide *g, const plm_token *prompt, size_t np, int N,
                         int iters, double lr, uint64_t seed, double *logz, plm_twist_progress progress, void *ud);

#endif
