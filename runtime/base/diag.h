/* diag.h -- posterior summaries and MCMC diagnostics: quantiles, rank-normalised split R-hat, bulk and tail
** effective sample sizes (Vehtari, Gelman, Simpson, Carpenter and Buerkner 2021), Monte Carlo standard
** errors, and weighted summaries for importance samples. Inputs are caller-owned and never modified. */
#ifndef PLM_DIAG_H
#define PLM_DIAG_H

#include <stddef.h>

#include "ctx.h"

typedef struct plm_summary {
    double mean, sd;
    double q5, q50, q95;
    double mcse_mean;        /* sd / sqrt(ess of the mean) */
    double ess_bulk, ess_tail;
    double rhat;             /* NaN for a single short chain or weighted samples */
    size_t n;                /* draws used (non-NaN) */
} plm_summary;

/* Summary of draws x laid out chain after chain (nchains blocks of n draws). NaN entries (a site absent
** from some draws) are dropped chain by chain; diagnostics then use the shortest chain's length. For a
** constant, or when a draw is infinite, ess_bulk, ess_tail and rhat are NaN (undefined), never a number
** computed from them. PLM_EINVAL when every draw is NaN. */
plm_status plm_diag_summary(plm_ctx *ctx, const double *x, int nchains, size_t n, plm_summary *out);

/* Weighted summary for importance samples: log weights lw (need not be normalised). ess_bulk and
** ess_tail are Kish's effective sample size; rhat is NaN. PLM_EDEAD when every weight is -inf. */
plm_status plm_diag_summary_weighted(plm_ctx *ctx, const double *x, const double *lw, size_t n, plm_summary *out);

/* The pieces, for callers that want only one: each returns NaN when undefined (fewer than 4 draws per chain). */
double plm_diag_rhat(const double *x, int nchains, size_t n);
double plm_diag_ess_bulk(const double *x, int nchains, size_t n);
double plm_diag_ess_tail(const double *x, int nchains, size_t n);
/* ESS of the mean of x itself (no rank normalisation), with Geyer's initial monotone sequence. */
double plm_diag_ess_basic(const double *x, int nchains, size_t n);

/* Quantile q in [0, 1] of n values (type 7, as R and numpy); sorts a private copy. */
double plm_diag_quantile(const double *x, size_t n, double q);

/* log(sum(exp(x))) without overflow; -inf when n == 0 or all are -inf. */
double plm_logsumexp(const double *x, size_t n);

#endif
