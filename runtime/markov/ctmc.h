/* ctmc.h -- continuous-time Markov chains on K states: validated rate matrices, transition matrices
** P(t) = exp(Q t), Gillespie simulation, and exact log-likelihoods of fully observed paths and of states
** observed at irregular times. States are 0-based in C. Matrices are row-major K*K; inputs are const and
** caller-owned; plm_ctmc objects and sampled paths are GC memory. */
#ifndef PLM_CTMC_H
#define PLM_CTMC_H

#include <stddef.h>

#include "ctx.h"
#include "rng.h"

typedef struct plm_ctmc {
    int K;
    double *Q;        /* K*K rates; each diagonal entry is minus its row's off-diagonal sum, exactly */
    double *exit;     /* K exit rates -Q[i][i] */
    double lambda;    /* the largest exit rate (the uniformisation rate) */
} plm_ctmc;

/* A path: the chain enters states[i] at times[i] (times[0] is the start) and is observed until t_end. */
typedef struct plm_ctmc_path {
    size_t n;
    double *times;
    int *states;
    double t_end;
} plm_ctmc_path;

/* Validate Q (K >= 1, finite, off-diagonal entries >= 0, each row summing to 0 within
** 1e-9 * (1 + sum of |entries|)) and return a GC-owned chain in *out. PLM_EINVAL names the row or entry:
** "ctmc: Q[2][3] is negative (-0.1); off-diagonal rates must be >= 0". */
plm_status plm_ctmc_new(plm_ctx *ctx, const double *Q, int K, plm_ctmc **out);

/* P = exp(Q t) (K*K) for finite t >= 0, by uniformisation with scaling and squaring: the series for
** exp(Q t / 2^s) with lambda t / 2^s <= 4 is cut where its Poisson tail is below 2^-s * 1e-17, then squared
** s times (s ~ log2(lambda t), at most about 2100). Every sum is of non-negative terms and each row is
** renormalised to sum to 1 after every product, so rows are stochastic at any t (t = 1e300 included) and
** converge to the chain's limit, reducible chains and absorbing states included. */
plm_status plm_ctmc_transition(plm_ctx *ctx, const plm_ctmc *c, double t, double *P);

/* Gillespie simulation from state x0 at time t0 until t_end >= t0: fills *path with GC-owned
** arrays (path->n >= 1, times[0] = t0, states[0] = x0). PLM_EINVAL beyond 1e8 jumps. */
plm_status plm_ctmc_sample_path(plm_ctx *ctx, const plm_ctmc *c, int x0, double t0, double t_end, plm_rng *r,
                                plm_ctmc_path *path);

/* Exact log density of a fully observed path given its first state:
**   sum_i [ log Q[s_i][s_{i+1}] - exit(s_i) (t_{i+1} - t_i) ] - exit(s_last) (t_end - t_last).
** -inf for an impossible jump. PLM_EINVAL for states out of range, decreasing times, t_end before the last
** jump, or a "jump" that does not change state. */
plm_status plm_ctmc_loglik_path(plm_ctx *ctx, const plm_ctmc *c, const plm_ctmc_path *path, double *loglik);

/* log p(x(t_2) = s_2, ..., x(t_n) = s_n | x(t_1) = s_1) = sum log P(t_{i+1} - t_i)[s_i][s_{i+1}] for n >= 1
** observations at non-decreasing times. Transition matrices are shared between equal gaps. */
plm_status plm_ctmc_loglik_obs(plm_ctx *ctx, const plm_ctmc *c, size_t n, const double *times, const int *states,
                               double *loglik);

#endif
