/* smcs.h -- SMC samplers for static models (gmodel.h): a cloud of N particles on the unconstrained point u,
** drawn from the prior and carried to the posterior through a sequence of intermediate targets, with an
** estimate of the log evidence log p(data) on the way (Del Moral, Doucet and Jasra 2006).
**
** Two sequences:
** - adaptive tempering: pi_l(u) ~ prior(u) lik(u)^lambda_l, 0 = lambda_0 < ... < lambda_L = 1, each next
**   lambda found by bisection so that the conditional ESS of the incremental weights (Zhou, Johansen and Aston
**   2016) is ess_target * N; the cloud is resampled and moved after every step;
** - IBIS, data tempering (Chopin 2002): pi_t(u) ~ prior(u) prod_{s<=t} p_s(u), where the terms p_s are the
**   model's observed and factor sites in program order; resample-move when the ESS falls below
**   ess_threshold * N.
** "prior" is the sum of the latent sites' terms (log densities on the support plus log Jacobians: the density
** of u); "likelihood" the sum of the observed and factor sites' terms. Prior draws are ancestral: each latent
** site in program order is drawn from its distribution, whose parameters read the sites drawn before it.
**
** Moves are random-walk Metropolis on u with proposal covariance scale^2 * (the weighted covariance of the
** cloud), or HMC with `leapfrog` steps, the inverse metric the cloud's weighted variances and a step size that
** follows the acceptance rate from one move to the next (times 1.2 above 0.9, times 0.6 below 0.6; each
** particle jitters it by a uniform factor in [0.8, 1.2]) -- the tuning of Buchholz, Chopin and Jacob (2021) in
** its simplest form. Either `moves` steps of every particle after resampling N, or waste-free (Dau and Chopin
** 2022): M = N / P starting points resampled, each runs a chain of P states, all M P states form the next
** cloud.
**
** Log densities are evaluated for the whole cloud at once by one compiled program (threads over particles).
** Particle slot i draws from stream (seed, i + 1), resampling from (seed, 0) on the calling thread, so results
** depend on the seed and never on the thread count. */
#ifndef PLM_SMCS_H
#define PLM_SMCS_H

#include <stdint.h>

#include "gmodel.h"
#include "resample.h"

typedef enum plm_smcs_method {
    PLM_SMCS_TEMPERING,
    PLM_SMCS_IBIS
} plm_smcs_method;

typedef enum plm_smcs_kernel {
    PLM_SMCS_RW,                 /* random-walk Metropolis, covariance from the cloud */
    PLM_SMCS_HMC                 /* HMC, diagonal metric from the cloud, adaptive step size */
} plm_smcs_kernel;

typedef struct plm_smcs_opts {
    plm_smcs_method method;
    size_t N;                    /* particles, >= 2 */
    double ess_target;           /* tempering: CESS fraction each step aims at, in (0, 1) */
    double ess_threshold;        /* IBIS: resample-move when ESS < ess_threshold * N, in (0, 1] */
    int moves;                   /* standard moves: Metropolis steps per particle per move, >= 1 */
    int waste_free;              /* 1: waste-free moves */
    size_t chain_length;         /* waste-free: P >= 2, dividing N */
    double scale;                /* RW: proposal scale on the cloud's covariance (0: 2.38 / sqrt(dim)) */
    plm_smcs_kernel kernel;
    int leapfrog;                /* HMC: leapfrog steps per move, >= 1 */
    double step_size;            /* HMC: the first step size, in units of the cloud's standard deviations (0: 0.5) */
    plm_resample_scheme scheme;
    uint64_t seed;
    int nthreads;                /* <= 0: plm_default_threads() */
    long max_steps;              /* tempering: at most this many temperatures */
} plm_smcs_opts;

/* Tempering, 1000 particles, ess_target 0.5, ess_threshold 0.5, random walk, 5 moves, not waste-free (P = 10
** when it is), HMC with 10 leapfrog steps of 0.5 when asked, systematic, seed 1, one thread, at most 10000
** temperatures. */
void plm_smcs_opts_default(plm_smcs_opts *o);

typedef struct plm_smcs_result {
    size_t N;
    int dim;
    double *u;               /* the final cloud, u[k*N + i]: coordinate k of particle i */
    double *logw;            /* their normalised log weights (all -log N after a move) */
    int weighted;            /* 1 when the weights are not all equal (IBIS ending without a move) */
    double logz;             /* log of the estimate of the evidence p(data) */
    long steps;              /* temperatures after 0 (tempering) or terms (IBIS) */
    /* per step s < steps: the temperature (tempering) or 1 (IBIS), the ESS after reweighting (as a fraction of
    ** N), the mean acceptance rate of the move that followed (NaN: no move), the log evidence increment */
    double *lambda, *ess, *accept, *logz_inc;
    long moves_done;         /* resample-move steps */
    long evals;              /* log density evaluations (particles times passes) */
} plm_smcs_result;

/* Run the sampler on the finished model m. PLM_EINVAL for bad options (named) or, for IBIS, a model without
** observed or factor sites; PLM_ENOTSUP for a latent site without a sampler (an improper prior) or HMC on a
** log density without a gradient; PLM_EDEAD when
** every particle has likelihood 0 (the message names the first site whose term is -inf at a particle) or
** tempering does not reach 1 within max_steps; PLM_EDOM when a log density is NaN (named as plm_gmodel_blame
** does); PLM_EINTR on Ctrl-C; PLM_ENOMEM. The result is malloc'd (plm_smcs_result_free) and holds nothing on
** failure. */
plm_status plm_smcs_run(plm_ctx *ctx, plm_gmodel *m, const plm_smcs_opts *o, plm_smcs_result *res);

void plm_smcs_result_free(plm_smcs_result *res);

#endif
