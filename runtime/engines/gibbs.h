/* gibbs.h -- exact Gibbs updates on static graphical models (gmodel.h): each site drawn from its full
** conditional given the rest of u. Finite discrete sites are enumerated over their support; continuous sites
** whose prior and children form a conjugate pair (found from the graph's structure and the distribution
** families, conjugacy.c) are drawn in closed form. Every update evaluates only the site's Markov blanket
** terms (its own term and its children's), compiled once per site. Kernels are GC memory; a kernel made for
** a model works on that model's target (plm_gmodel_target) only. */
#ifndef PLM_GIBBS_H
#define PLM_GIBBS_H

#include "gmodel.h"
#include "mcmc.h"

/* Largest support a discrete site may have to be enumerated, and largest product space of a block. */
#define PLM_GIBBS_MAX_SUPPORT 100000
#define PLM_GIBBS_MAX_BLOCK 65536
/* Most sites of a Gaussian block (plm_kernel_gaussian_block); auto updates larger components site by site. */
#define PLM_GIBBS_MAX_GAUSS 200

typedef enum plm_gibbs_how {
    PLM_GIBBS_NONE,         /* no exact conditional (plan.why says why) */
    PLM_GIBBS_ENUM,         /* finite discrete support (bernoulli, categorical, binomial): enumeration */
    PLM_GIBBS_NORMAL,       /* normal prior; normal children whose means are affine in the site */
    PLM_GIBBS_GAMMA,        /* gamma prior on a precision or rate: normal children with sd = c x^-1/2, poisson,
                            ** exponential and gamma children with rate = c x */
    PLM_GIBBS_INV_GAMMA,    /* inverse-gamma prior on a variance: normal children with sd = c x^1/2 */
    PLM_GIBBS_BETA,         /* beta prior on a probability: bernoulli and binomial children with p = x */
    PLM_GIBBS_DIRICHLET,    /* dirichlet prior on a probability vector: categorical children with p = x */
    PLM_GIBBS_MVNORMAL      /* mvnormal prior on a mean vector: mvnormal children with mean x and a covariance free
                            ** of it, normal children with mean x[k] and an sd free of it */
} plm_gibbs_how;

typedef struct plm_gibbs_plan {
    plm_gibbs_how how;
    int nchildren;          /* terms besides the site's own that its update evaluates */
    char why[200];          /* what was found ("conjugate normal-normal: 3 normal children with affine means") or
                            ** why there is no exact update ("child 'y' (poisson) is not normal") */
} plm_gibbs_plan;

/* Which exact update applies to site `site` of the finished model m, and why. PLM_EINVAL when site is not a
** latent site (the message names it); otherwise PLM_OK, with how = PLM_GIBBS_NONE where none applies. */
plm_status plm_gibbs_plan_site(plm_ctx *ctx, const plm_gmodel *m, int site, plm_gibbs_plan *out);

/* "none", "enumeration", "normal", "gamma", "inverse-gamma", "beta", "dirichlet", "mvnormal". */
const char *plm_gibbs_how_name(plm_gibbs_how how);

/* A kernel whose step updates the sites sites[0..nsites-1] in turn, each from its exact full conditional
** given the rest of u, then sets *lp to the target's log density at the new u and *stat to 1. PLM_EINVAL
** names a site that is not latent or is out of range; PLM_ENOTSUP names the first site without an exact
** conditional and says why. The model must be finished. */
plm_status plm_kernel_gibbs(plm_ctx *ctx, const plm_gmodel *m, const int *sites, int nsites, plm_kernel **out);

/* A kernel drawing the finite discrete sites sites[0..nsites-1] jointly from their joint full conditional,
** by enumerating the product of their supports (bernoulli, categorical, binomial with a constant n).
** PLM_EINVAL when the product has more than PLM_GIBBS_MAX_BLOCK points or a site is not finite discrete. */
plm_status plm_kernel_block_gibbs(plm_ctx *ctx, const plm_gmodel *m, const int *sites, int nsites, plm_kernel **out);

/* A kernel drawing the latent scalar normal sites sites[0..nsites-1] (at most PLM_GIBBS_MAX_GAUSS) jointly from
** their joint full conditional, when it is Gaussian: every term reading them is a normal density whose value
** and mean are affine in them jointly and whose sd does not read them (plm_gibbs_gaussian_check). Each step
** reads the affine coefficients of every such term off a few evaluations of the terms' means (sites that never
** share a term move together in one evaluation), sums precision L and shift h, and draws N(L^-1 h, L^-1) by a
** Cholesky factor (GSL). PLM_EINVAL says why the sites are not a Gaussian block. */
plm_status plm_kernel_gaussian_block(plm_ctx *ctx, const plm_gmodel *m, const int *sites, int nsites, plm_kernel **out);

/* Group the sites cand[0..ncand-1] (each with a normal-normal conjugate update, PLM_GIBBS_NORMAL) into Gaussian
** blocks: candidates read by one term (one's own term reading another, or both read by one child) join one
** component; a component of at least 2 and at most PLM_GIBBS_MAX_GAUSS sites that passes the joint check
** becomes block b (0-based): block[i] = b for its candidates, -1 for the others. *nblocks counts the blocks;
** why (nwhy bytes) gets the reason for each refused component, "; "-separated, empty when none. */
plm_status plm_gibbs_gaussian_blocks(plm_ctx *ctx, const plm_gmodel *m, const int *cand, int ncand, int *block,
                                     int *nblocks, char *why, size_t nwhy);

/* *reads = 1 when the mean of a term of the Gaussian block sites[0..n-1] reads a coordinate k with coords[k]
** set (a site outside the block scales or shifts it: 8 schools' tau in mu + tau * theta_tilde[j]); 0 when
** not, or when the sites are not a block. */
plm_status plm_gibbs_block_means_read(plm_ctx *ctx, const plm_gmodel *m, const int *sites, int n, const char *coords,
                                      int *reads);

/* The full conditional that update i of kernel k (from plm_kernel_gibbs: the i-th site; block kernels have one
** update) draws from at u, for tests and displays. Enumerations: the unnormalised log weights of values
** 0, 1, ... (block: of the product space, the last site fastest) into out, *n of them (at most cap).
** Conjugate updates: *n = 2 parameters of the site's value: normal (mean, sd), gamma (shape, rate),
** inverse-gamma (shape, scale), beta (a, b); dirichlet: *n = K concentrations; mvnormal: *n = K + K * K, the
** mean then the covariance (row-major); Gaussian blocks (update 0): *n = d + d * d, the same for the d sites. */
plm_status plm_gibbs_conditional(plm_ctx *ctx, const plm_kernel *k, int i, const double *u, double *out, int cap, int *n);

#endif
