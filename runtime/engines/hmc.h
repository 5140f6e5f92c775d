/* hmc.h -- Hamiltonian Monte Carlo kernels on targets with gradients: static-length HMC and the No-U-Turn
** sampler with multinomial sampling of the trajectory (Hoffman and Gelman 2014; Betancourt 2017), as Stan
** runs it: step size by dual averaging toward a target acceptance statistic, a diagonal or dense inverse
** metric estimated from the draws of doubling warm-up windows (75 iterations of initial buffer, windows from
** 25, 50 of terminal buffer; 15% / 75% / 10% of a warm-up shorter than 150), divergences counted. */
#ifndef PLM_HMC_H
#define PLM_HMC_H

#include "mcmc.h"

typedef struct plm_hmc_opts {
    double delta;        /* target acceptance statistic for dual averaging (0: 0.8) */
    int max_depth;       /* NUTS tree depth limit (0: 10) */
    int dense;           /* 1: dense inverse metric; 0: diagonal */
    double step_size;    /* initial step size (0: found by Stan's doubling heuristic) */
    int steps;           /* static HMC only: at most this many leapfrog steps per iteration, the count drawn
                         ** uniformly from 1..steps each time (0: 10) */
} plm_hmc_opts;

/* NUTS. Extra diagnostics per draw: stepsize__, treedepth__, n_leapfrog__, divergent__, energy__.
** PLM_EINVAL for options out of range. The target must have a gradient (checked by the first step, which
** fails with PLM_ENOTSUP otherwise). GC-owned kernel. */
plm_status plm_kernel_nuts(plm_ctx *ctx, const plm_hmc_opts *o, plm_kernel **out);

/* HMC with a random number (1..o->steps) of leapfrog steps per iteration, the same adaptation. Extra diagnostics: stepsize__,
** n_leapfrog__, divergent__, energy__. */
plm_status plm_kernel_hmc(plm_ctx *ctx, const plm_hmc_opts *o, plm_kernel **out);

#endif
