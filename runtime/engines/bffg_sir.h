/* bffg_sir.h -- backward filtering, forward guiding for compartmental interacting particle systems on a graph
** (after the SIR example of van der Meulen and Schauer). N individuals, each in one of K states at times
** t = 0..T; given the states at t, individuals move independently over one step, by competing exponential clocks:
** individual i in state s moves to s' != s at rate r(s, s') = base[s][s'] + sum_k per[s][s'][k] c_k(i), c_k(i) the
** number of i's neighbours in state k at t, so with R_s = sum_{s' != s} r(s, s') it stays with probability
** exp(-R_s) and moves to s' with probability (1 - exp(-R_s)) r(s, s') / R_s (infinite rates share all the mass).
** SIR is K = 3 with base[S][I] = -log(1 - eps), per[S][I][I] = -log(1 - beta), base[I][R] = -log(1 - gamma):
** S -> I with probability 1 - (1 - eps)(1 - beta)^n. SIS, SEIR, SIRS and contact processes are other choices.
** Some individuals are observed at some times through an emission matrix (K x M symbols).
** The joint chain has K^N states, so the backward filter runs under a tractable auxiliary: every individual's
** own chain with its neighbours' state counts fixed at a guess lambda_i(t) (by default the mean-field prior
** expectation), which gives N exact per-individual discrete messages. Forward guiding draws the true interacting
** dynamics tilted by those messages (given the states at t the tilt factorises over individuals), and the weight
** corrects exactly with the ratio of true to auxiliary transition probabilities: the estimate of p(y) is unbiased.
** Arrays are caller-owned; states are 0-based here. */
#ifndef PLM_BFFG_SIR_H
#define PLM_BFFG_SIR_H

#include <stddef.h>
#include <stdint.h>

#include "ctx.h"
#include "resample.h"

#define PLM_IPS_MAX_STATES 32

typedef struct plm_bffg_ips {
    int N, T, K;               /* individuals >= 1; steps >= 0 (states at t = 0..T); states 2..PLM_IPS_MAX_STATES */
    const int *adj_start;      /* N + 1 offsets into adj (CSR): the neighbours of i are adj[adj_start[i] ..] */
    const int *adj;            /* 0-based neighbour indices */
    const double *base;        /* K*K: the rate of s -> s' at (s*K + s'), >= 0 (+inf allowed); the diagonal is ignored */
    const double *per;         /* K*K*K: added to the rate of s -> s' per neighbour in state k, at (s*K + s')*K + k, >= 0
                               ** (+inf: certain with one such neighbour); NULL: no interaction */
    const double *init;        /* N*K initial probabilities (rows sum to 1) */
    int M;                     /* observation symbols >= 1 */
    const double *emission;    /* K*M: p(symbol | state), rows sum to 1 */
    int nobs;
    const int *obs_i, *obs_t, *obs_y;   /* individual (0..N-1), time (0..T), symbol (0..M-1) of each observation */
    const double *lambda;      /* N*T*K expected neighbours of i in state k at t for the auxiliary, at (t*N + i)*K + k,
                               ** or NULL: the mean-field prior expectation */
} plm_bffg_ips;

/* The auxiliary's neighbour-count guesses lambda (N*T*K, as in plm_bffg_ips) under the mean-field prior: each
** individual's marginal is propagated with the expected state counts of its neighbours. PLM_EINVAL names a bad
** field. */
plm_status plm_bffg_ips_mean_field(plm_ctx *ctx, const plm_bffg_ips *m, double *lambda);

/* n guided paths of the true dynamics, each (T+1)*N states (t*N + i) into paths, with log weights logw (n);
** *loglik the log of the unbiased estimate of p(y), *loglik_aux (or NULL) the auxiliary model's exact
** log-likelihood. smc = 0: importance sampling (path s from random stream (seed, s)); smc = 1: guided SMC,
** resampling (scheme) after step t when the Kish ESS is <= ess_threshold * n (particle s at step t from stream
** (seed, t * n + s), resampling from (seed, 2^64 - 1 - t)); *resamples (or NULL) counts them. Results do not
** depend on threads. PLM_EINVAL on bad input (named), PLM_EDOM when the observations are impossible (under the
** auxiliary or for every particle), PLM_EINTR, PLM_ENOMEM. */
plm_status plm_bffg_ips_run(plm_ctx *ctx, const plm_bffg_ips *m, size_t n, int smc, plm_resample_scheme scheme,
                            double ess_threshold, uint64_t seed, int threads, unsigned char *paths, double *logw,
                            double *loglik, double *loglik_aux, size_t *resamples);

#endif
