/* transform.h -- maps between a scalar support interval (lo, hi) and the real line, for MCMC proposals made
** on the unconstrained scale: identity (no finite bound), shifted log (one finite bound) and scaled logit
** (two finite bounds), each with the log Jacobian that turns a density in x into one in u. The bounds come
** from plm_dist_bounds, so per-instance supports (truncated, half-) need nothing more. */
#ifndef PLM_TRANSFORM_H
#define PLM_TRANSFORM_H

/* u for x in (lo, hi); -inf or +inf at an endpoint. */
double plm_transform_to_free(double lo, double hi, double x);

/* x in [lo, hi] for u, and *logjac = log |dx/du| (finite for finite u; x may round to an endpoint for
** |u| beyond about 36 with two bounds or 709 with one, where the density decides). */
double plm_transform_from_free(double lo, double hi, double u, double *logjac);

#endif
