/* slice.h -- slice samplers. Univariate slice sampling with stepping out and shrinkage (Neal 2003, figures 3
** and 5), one coordinate at a time on any target, and elliptical slice sampling (Murray, Adams and MacKay 2010)
** for latent sites of a static graph whose prior is normal or multivariate normal: the prior's mean and
** covariance are read from the graph at the current point (they may depend on other sites), the rest of the
** log density is the likelihood. Neither needs a gradient; both accept every move (statistic 1). */
#ifndef PLM_SLICE_H
#define PLM_SLICE_H

#include "gmodel.h"
#include "mcmc.h"

/* Univariate slice sampling on every coordinate of the target in turn. width: the initial interval width
** (0: 1, on the unconstrained scale); during warm-up each coordinate's width becomes 2.5 standard deviations
** of its draws at the end of doubling windows (the first 15% of warm-up excluded). max_steps: stepping-out
** limit m per side and coordinate (0: 32). Extra diagnostic: n_eval__ (log density evaluations in the
** iteration). PLM_EINVAL for options out of range. GC-owned kernel. */
plm_status plm_kernel_slice(plm_ctx *ctx, double width, int max_steps, plm_kernel **out);

/* Elliptical slice sampling on the latent sites sites[0..nsites-1] of m (finished), one site after another.
** Each must have a normal or mvnormal prior (PLM_EINVAL naming the first that does not, or that is not a
** latent site). The kernel runs on m's target (plm_gmodel_target) and reads each site's prior term from the
** graph: its mean and precision come from the term's gradient at two points per coordinate, exact for a
** quadratic. A prior whose covariance is not positive definite at the current point is a step error
** (PLM_EDOM, naming the site). Extra diagnostic: n_eval__. GC-owned kernel, which keeps m. */
plm_status plm_kernel_ess(plm_ctx *ctx, plm_gmodel *m, const int *sites, int nsites, plm_kernel **out);

#endif
