/* smc2.h -- SMC^2 (Chopin, Jacob and Papaspiliopoulos 2013) for compiled state-space models whose parameters
** carry priors (pmcmc.h): N_theta parameter particles, each with a particle filter of N_x particles
** (pfilter.h), weighted at time t by its filter's estimate of p(y_t | y_1:t-1, theta). When the ESS of the
** theta-weights falls below ess_threshold * N_theta, the theta-particles are resampled and moved by PMMH
** steps (a random walk on the unconstrained scale with the weighted covariance of the cloud, scaled) that
** target the posterior given y_1:t. The log evidence is the sum of log sum_i W_i p^(y_t | y_1:t-1, theta_i).
**
** Each filter runs over all T observations at once, and its increments are used one time after another: the
** filter's steps past t are drawn from their conditional law given its past, independently of every decision
** taken at t, so this is the same algorithm as extending the filters one step at a time, at a cost of O(T) per
** filter instead of O(t). A filter that loses every particle (or a parameter outside the model's domain) counts
** as likelihood 0 for the whole series.
** The exchange step (CJP section 3.6): when the PMMH moves accept too rarely, every theta-particle runs a new
** filter with twice the x-particles and is reweighted by the ratio of the new to the old estimate of
** p(y_1:t | theta), a valid importance step that leaves the evidence estimate unbiased.
** Theta-particle slot i draws from stream (seed, i + 1) (its proposals, its filters' seeds, its acceptance),
** resampling from (seed, 0) on the calling thread; threads split the theta-particles, filters run on one
** thread each, so a result depends on the seed and never on the thread count. */
#ifndef PLM_SMC2_H
#define PLM_SMC2_H

#include <stdint.h>

#include "pfilter.h"
#include "pmcmc.h"

typedef struct plm_smc2_opts {
    plm_pf_opts pf;              /* the filters: method, N (= N_x), scheme, ess_threshold (seed, threads unused) */
    size_t Ntheta;               /* >= 2 */
    double ess_threshold;        /* rejuvenate when ESS < ess_threshold * Ntheta, in (0, 1] */
    int moves;                   /* PMMH steps per rejuvenation, >= 1 */
    size_t nx_max;               /* exchange step: while a rejuvenation accepts below nx_accept and N_x < nx_max,
                                 ** N_x doubles (0 or pf.N: never) */
    double nx_accept;            /* in (0, 1) */
    double scale;                /* proposal scale on the cloud's covariance (0: 2.38 / sqrt(nfree)) */
    plm_resample_scheme scheme;  /* of the theta-particles */
    uint64_t seed;
    int nthreads;                /* <= 0: plm_default_threads() */
    plm_spread distribute;       /* over the ranks of a job (pfilter.h): PARTICLES runs every theta-particle's
                                 ** filter spread over the ranks, one after another; CHAINS gives each rank a block
                                 ** of the theta-particles (their filters local) and all-gathers their results after
                                 ** every round of filters. Collective when several ranks; one rank ignores it. */
} plm_smc2_opts;

/* 1000 theta-particles of 100 x-particles (bootstrap, systematic, ESS 0.5), ess_threshold 0.5, 3 moves, no
** exchange step (nx_accept 0.2 when nx_max is set), systematic, seed 1, one thread. */
void plm_smc2_opts_default(plm_smc2_opts *o);

typedef struct plm_smc2_result {
    size_t Ntheta;
    int nfree;
    long T;
    double *theta;               /* theta[i*nfree + j]: parameter j (the prior's scale) of particle i */
    double *logw;                /* normalised log weights */
    double logz;
    double *logz_inc, *ess;      /* [t-1]: evidence increment, ESS fraction after the update at t */
    double *accept;              /* [t-1]: acceptance rate of the PMMH moves after t, NaN when none */
    long rejuvenations, filters; /* moves made and filters run */
    size_t nx;                   /* x-particles at the end */
    long exchanges;
} plm_smc2_result;

/* Run on ys[(t-1)*ydim + k] (NaN: missing). Parameters without a prior keep m->params. PLM_EINVAL for bad
** options or no free parameter; PLM_EDEAD when every theta-particle has weight 0 (names the time); PLM_EINTR;
** PLM_ENOMEM; a filter's other failures as they are. The result is malloc'd (plm_smc2_result_free). */
plm_status plm_smc2_run(plm_ctx *ctx, const plm_ssm *m, long T, const double *ys, const plm_ssm_prior *P,
                        const plm_smc2_opts *o, plm_smc2_result *res);

void plm_smc2_result_free(plm_smc2_result *res);

#endif
