/* pmmh.h -- particle marginal Metropolis-Hastings (Andrieu, Doucet and Holenstein 2010) for compiled
** state-space models: random-walk Metropolis on the unconstrained scale of the parameters that carry priors
** (pmcmc.h), with the particle filter's unbiased likelihood estimate (pfilter.h) in place of the likelihood.
** It is the random-walk kernel of mcmc.h, adaptation included, on a target whose log density runs a filter:
** the current point keeps its estimate until a proposal is accepted, which is what makes the chain exact.
** Every filter draws from a seed taken from its chain's stream, so results do not depend on threads. */
#ifndef PLM_PMMH_H
#define PLM_PMMH_H

#include <stdint.h>

#include "pfilter.h"
#include "pmcmc.h"
#include "results.h"

typedef struct plm_pmmh_opts {
    plm_pf_opts pf;            /* the filter (method, N, scheme, ess_threshold; seed, threads, history unused) */
    int chains;                /* >= 1 */
    long warmup, samples;      /* iterations discarded (while the proposal adapts) and kept, per chain */
    uint64_t seed;
    int nthreads;              /* <= 0: plm_default_threads() */
    double target_accept;      /* the adaptation's target acceptance rate, in (0, 1) */
    const double *init;        /* chains * nfree starting points on the unconstrained scale, or NULL: prior draws */
    plm_spread distribute;     /* over the ranks of a job: PARTICLES runs the chains one after another on every
                               ** rank with each filter spread over the ranks; CHAINS gives each rank a block of
                               ** the chains (chain c draws from stream (seed, c) wherever it runs) and all-gathers
                               ** the draws. Collective when several ranks; one rank ignores it. */
} plm_pmmh_opts;

/* 1000 particles, bootstrap, 4 chains of 1000 + 1000, seed 1, one thread, target_accept 0.15 (a noisy
** likelihood lowers the best acceptance rate well below 0.234: Sherlock, Thiery, Roberts and Rosenthal 2015). */
void plm_pmmh_opts_default(plm_pmmh_opts *o);

/* Run the chains on ys[(t-1)*ydim + k] (NaN: missing) and add every kept iteration to R (o->chains chains):
** the free parameters by name, "lp__" (the log posterior estimate on the unconstrained scale: log prior + log
** Jacobian + the filter's logz) and "accept_stat__"; series "accept_rate" per chain. A filter that finds
** every weight zero or a NaN weight counts as likelihood 0 (the proposal is rejected). PLM_EINVAL for bad
** options or no free parameter; PLM_EDEAD when a chain finds no start of finite estimate in 100 prior draws;
** PLM_EINTR (R keeps the draws made); PLM_ENOMEM. */
plm_status plm_pmmh_run(plm_ctx *ctx, const plm_ssm *m, long T, const double *ys, const plm_ssm_prior *P,
                        const plm_pmmh_opts *o, plm_results *R);

#endif
