/* dist_impl.h -- what the files of the distribution module share and nobody else sees: construction (dist.c),
** densities (dist_density.c), samplers (dist_sample.c), truncation (dist_truncated.c), moments
** (dist_moments.c). Not installed; users include dist.h. */
#ifndef PLM_DIST_IMPL_H
#define PLM_DIST_IMPL_H

#include "dist.h"

#include <math.h>

#define LOG_SQRT_2PI 0.91893853320467274178
#define LOG_PI 1.14472988584940017414

static inline int is_whole(double x) { return isfinite(x) && x == floor(x); }

/* Internal to libplume: hidden, so that -fPIC neither routes their calls through the PLT nor forbids inlining
** them in their own file, as when they were static. */
#if defined(__GNUC__)
#pragma GCC visibility push(hidden)
#endif

/* A distribution of this kind with dim and K set, parameters left to the caller; NULL when out of memory. */
plm_dist *plm_dist_alloc(plm_dist_kind kind, int dim, int K);

/* log P(X = x), X ~ Poisson(lam), x a whole number >= 0 (saddle-point form, accurate at lam = 1e15). */
double plm_dist_poisson_lpmf(double x, double lam);

/* Log density, one draw, and the k-th moment (k = 1: mean; k = 2: variance about m) by quadrature of a
** truncated distribution; the moment returns 0, or -1 when the quadrature fails. */
double plm_dist_truncated_logpdf(const plm_dist *d, double x);
double plm_dist_truncated_sample(const plm_dist *d, plm_rng *r);
int plm_dist_truncated_moment(const plm_dist *d, int k, double m, double *out);

#if defined(__GNUC__)
#pragma GCC visibility pop
#endif

#endif
