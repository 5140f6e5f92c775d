/* bffg_sir.h -- backward filtering, forward guiding for an SIR interacting particle system on a graph (after
** the SIR example of van der Meulen and Schauer). N individuals, each in state S, I or R (0, 1, 2) at times
** t = 0..T; given the states at t, individuals move independently: S -> I with probability
** 1 - (1 - eps)(1 - beta)^n (n: the individual's infected neighbours at t), I -> R with probability gamma, R stays.
** Some individuals are observed at some times through an emission matrix (3 x M symbols).
** The joint chain has 3^N states, so the backward filter runs under a tractable auxiliary: every individual's
** own chain with its infected neighbours fixed at a guess lambda_i(t) (by default the mean-field prior expectation),
** which gives N exact per-individual discrete messages. Forward guiding draws the true interacting dynamics tilted
** by those messages (given the states at t the tilt factorises over individuals), and the weight corrects exactly
** with the ratio of true to auxiliary transition probabilities: the estimate of p(y) is unbiased.
** Arrays are caller-owned; states are 0-based here. */
#ifndef PLM_BFFG_SIR_H
#define PLM_BFFG_SIR_H

#include <stddef.h>
#include <stdint.h>

#include "ctx.h"
#include "resample.h"

typedef struct plm_bffg_sir {
    int N, T;                  /* individuals >= 1; steps >= 0 (states at t = 0..T) */
    const int *adj_start;      /* N + 1 offsets into adj (CSR): the neighbours of i are adj[adj_start[i] ..] */
    const int *adj;            /* 0-based neighbour indices */
    double beta, gamma, eps;   /* infection per infected neighbour, recovery, background infection; in [0, 1] */
    const double *init;        /* N*3 initial probabilities of S, I, R (rows sum to 1) */
    int M;                     /* observation symbols >= 1 */
    const double *emission;    /* 3*M: p(symbol | state), rows sum to 1 */
    int nobs;
    const int *obs_i, *obs_t, *obs_y;   /* individual (0..N-1), time (0..T), symbol (0..M-1) of each observation */
    const double *lambda;      /* N*T expected infected neighbours of i at t for the auxiliary (row t: t*N + i),
                               ** or NULL: the mean-field prior expectation */
} plm_bffg_sir;

/* The auxiliary's infected-neighbour guesses lambda (N*T, t*N + i) under the mean-field prior: each individual's
** marginal is propagated with the expected number of its infected neighbours. PLM_EINVAL names a bad field. */
plm_status plm_bffg_sir_mean_field(plm_ctx *ctx, const plm_bffg_sir *m, double *lambda);

/* n guided paths of the true dynamics, each (T+1)*N states (t*N + i) into paths, with log weights logw (n);
** *loglik the log of the unbiased estimate of p(y), *loglik_aux (or NULL) the auxiliary model's exact
** log-likelihood. smc = 0: importance sampling (path s from random stream (seed, s)); smc = 1: guided SMC,
** resampling (scheme) after step t when the Kish ESS is <= ess_threshold * n (particle s at step t from stream
** (seed, t * n + s), resampling from (seed, 2^64 - 1 - t)); *resamples (or NULL) counts them. Results do not
** depend on threads. PLM_EINVAL on bad input (named), PLM_EDOM when the observations are impossible (under the
** auxiliary or for every particle), PLM_EINTR, PLM_ENOMEM. */
plm_status plm_bffg_sir_run(plm_ctx *ctx, const plm_bffg_sir *m, size_t n, int smc, plm_resample_scheme scheme,
                            double ess_threshold, uint64_t seed, int threads, unsigned char *paths, double *logw,
                            double *loglik, double *loglik_aux, size_t *resamples);

#endif
