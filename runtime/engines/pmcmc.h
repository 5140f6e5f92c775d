/* pmcmc.h -- what particle MCMC (pgibbs.h, pmmh.h) shares: the parameters of a state-space model that carry a
** prior, and the map between their values and the unconstrained scale on which random-walk proposals move
** (transform.h, from each prior's support). The other parameters keep the values in m->params.
** Everything here is caller-owned; nothing allocates. */
#ifndef PLM_PMCMC_H
#define PLM_PMCMC_H

#include "dist.h"
#include "rng.h"
#include "ssm.h"

typedef struct plm_ssm_prior {
    int nfree;                    /* parameters with a prior, 1..np */
    const int *idx;               /* nfree indices into m->params, distinct */
    const plm_dist *const *dist;  /* nfree priors: scalar and continuous (improper ones allowed) */
    const char *const *names;     /* nfree names, for the result columns */
} plm_ssm_prior;

/* PLM_EINVAL (naming the parameter) when an index is out of range or repeated, or a prior is not a scalar
** continuous distribution. */
plm_status plm_ssm_prior_check(plm_ctx *ctx, const plm_ssm *m, const plm_ssm_prior *P);

/* Write the values of the free parameters for the point u (nfree unconstrained coordinates) into params (the
** ssm's np values; the others are left alone) and return log prior + log Jacobian: -inf outside a support. */
double plm_ssm_prior_set(const plm_ssm_prior *P, const double *u, double *params);

/* u for the values of the free parameters in params (+-inf at an end of a support). */
void plm_ssm_prior_free(const plm_ssm_prior *P, const double *params, double *u);

/* A draw of u from the priors (uniform(-2, 2) on the unconstrained scale for an improper one, as Stan starts). */
void plm_ssm_prior_draw(const plm_ssm_prior *P, plm_rng *r, double *u);

/* A shallow copy of m whose parameters live in params (np doubles, initialised from m->params): chains that
** run at once each change their own. The programs are shared (evaluating them is thread-safe). */
void plm_ssm_with_params(const plm_ssm *m, double *params, plm_ssm *copy);

#endif
