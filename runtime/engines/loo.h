/* loo.h -- model comparison from pointwise log-likelihoods: Pareto-smoothed importance sampling (PSIS) and
** PSIS leave-one-out cross-validation (Vehtari, Gelman and Gabry 2017, "Practical Bayesian model evaluation
** using leave-one-out cross-validation and WAIC"; Vehtari, Simpson, Gelman, Yao and Gabry 2024, "Pareto
** smoothed importance sampling"), and WAIC, computed as the R package loo and ArviZ compute them. A
** log-likelihood matrix is caller-owned, observation-major: ll[i*S + s] is observation i under draw s, the
** draws chain after chain. */
#ifndef PLM_LOO_H
#define PLM_LOO_H

#include <stddef.h>

#include "ctx.h"

/* Fit a generalised Pareto distribution to the n exceedances x (ascending, >= 0) by Zhang and Stephens'
** (2009) empirical Bayes method with loo's weakly informative prior on k (k pulled towards 0.5 by 10
** pseudo-observations). k > 0 is a heavy tail; k and sigma are NaN when n < 2. */
void plm_gpd_fit(const double *x, size_t n, double *k, double *sigma);

/* Pareto-smooth the S log importance ratios lr in place into log weights (unnormalised): the largest
** M = ceil(min(0.2 S, 3 sqrt(S / r_eff))) are replaced by the expected order statistics of the fitted
** generalised Pareto, then truncated at the largest raw ratio. Returns the tail shape k-hat (Inf when the
** tail has fewer than 5 draws or is flat, as loo reports it). PLM_ENOMEM in *st when memory ran out. */
double plm_psis(double *lr, size_t S, double r_eff, plm_status *st);

typedef struct plm_loo_point {
    double lpd;          /* log mean of the likelihood over the draws */
    double elpd_loo;     /* PSIS-LOO log predictive density */
    double p_loo;        /* lpd - elpd_loo */
    double k;            /* Pareto k-hat */
    double r_eff;        /* relative efficiency of the draws for exp(ll) */
    double elpd_waic;    /* lpd - p_waic */
    double p_waic;       /* the variance of ll over the draws */
} plm_loo_point;

typedef struct plm_loo_totals {
    size_t n;
    double elpd_loo, se_elpd_loo, p_loo, se_p_loo, looic, se_looic;
    double elpd_waic, se_elpd_waic, p_waic, se_p_waic, waic, se_waic;
    size_t k_good, k_ok, k_bad, k_very_bad;   /* k <= 0.5, (0.5, 0.7], (0.7, 1], > 1 (or Inf) */
    size_t p_waic_large;                      /* points with p_waic > 0.4, where WAIC is unreliable */
} plm_loo_totals;

/* PSIS-LOO and WAIC of N observations under nchains chains of n draws each (S = nchains * n): each point into
** pts[i] (N entries) and the sums with their standard errors (sqrt(N) times the sd of the pointwise values)
** into *tot. r_eff is estimated per observation from the ESS of exp(ll) (1 for a single chain of independent
** draws). PLM_EINVAL when a log-likelihood is NaN or +inf (the message names the observation), PLM_ENOMEM. */
plm_status plm_loo(plm_ctx *ctx, const double *ll, size_t N, int nchains, size_t n, plm_loo_point *pts,
                   plm_loo_totals *tot);

#endif
