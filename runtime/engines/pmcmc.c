/* pmcmc.c -- the parameter space of particle MCMC (see pmcmc.h). */
#include "pmcmc.h"

#include <math.h>
#include <string.h>

#include "transform.h"

plm_status plm_ssm_prior_check(plm_ctx *ctx, const plm_ssm *m, const plm_ssm_prior *P)
{
    int j, k;
    if (P->nfree < 0 || P->nfree > m->np)
        return plm_fail(ctx, PLM_EINVAL, "pmcmc: %d parameters with priors, but the model has %d", P->nfree, m->np);
    for (j = 0; j < P->nfree; j++) {
        const plm_dist *d = P->dist[j];
        const char *nm = P->names ? P->names[j] : "?";
        if (P->idx[j] < 0 || P->idx[j] >= m->np)
            return plm_fail(ctx, PLM_EINVAL, "pmcmc: parameter index %d outside 0..%d", P->idx[j], m->np - 1);
        for (k = 0; k < j; k++)
            if (P->idx[k] == P->idx[j])
                return plm_fail(ctx, PLM_EINVAL, "pmcmc: parameter '%s' is listed twice", nm);
        if (!d || d->dim != 1 || d->kind == PLM_DIST_CATEGORICAL || plm_dist_info_of(d->kind)->discrete)
            return plm_fail(ctx, PLM_EINVAL, "pmcmc: the prior of parameter '%s' must be a scalar continuous "
                            "distribution (got %s)", nm, d ? plm_dist_info_of(d->kind)->name : "none");
    }
    return PLM_OK;
}

double plm_ssm_prior_set(const plm_ssm_prior *P, const double *u, double *params)
{
    double lp = 0;
    int j;
    for (j = 0; j < P->nfree; j++) {
        double lo, hi, lj, x;
        plm_dist_bounds(P->dist[j], &lo, &hi);
        x = plm_transform_from_free(lo, hi, u[j], &lj);
        params[P->idx[j]] = x;
        lp += plm_dist_logpdf(P->dist[j], &x) + lj;
    }
    return isnan(lp) ? -INFINITY : lp;
}

void plm_ssm_prior_free(const plm_ssm_prior *P, const double *params, double *u)
{
    int j;
    for (j = 0; j < P->nfree; j++) {
        double lo, hi;
        plm_dist_bounds(P->dist[j], &lo, &hi);
        u[j] = plm_transform_to_free(lo, hi, params[P->idx[j]]);
    }
}

void plm_ssm_prior_draw(const plm_ssm_prior *P, plm_rng *r, double *u)
{
    int j;
    for (j = 0; j < P->nfree; j++) {
        const plm_dist *d = P->dist[j];
        if (plm_dist_info_of(d->kind)->improper)
            u[j] = -2 + 4 * plm_rng_uniform(r);
        else {
            double lo, hi, x;
            plm_dist_sample(d, r, &x);
            plm_dist_bounds(d, &lo, &hi);
            u[j] = plm_transform_to_free(lo, hi, x);
        }
    }
}

void plm_ssm_with_params(const plm_ssm *m, double *params, plm_ssm *copy)
{
    *copy = *m;
    memcpy(params, m->params, (size_t)m->np * sizeof *params);
    copy->params = params;
}
