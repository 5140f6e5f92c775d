/* gibbs_impl.h -- what gibbs.c (the kernels) and conjugacy.c (finding the updates) share. Private. */
#ifndef PLM_GIBBS_IMPL_H
#define PLM_GIBBS_IMPL_H

#include "gibbs.h"

/* What one child term contributes to a conjugate update, and the program outputs it reads (in order). */
enum {
    CHILD_NORMAL,       /* [mean, sd, y]: normal prior (mean affine), gamma (sd = c x^-1/2), inv-gamma (c x^1/2) */
    CHILD_POISSON,      /* [rate, y]: rate = c x */
    CHILD_EXPONENTIAL,  /* [rate, y] */
    CHILD_GAMMA,        /* [shape, rate, y] */
    CHILD_BERNOULLI,    /* [y]: p = x */
    CHILD_BINOMIAL,     /* [n, y]: p = x */
    CHILD_CATEGORICAL,  /* [y] (0-based): probabilities = the dirichlet site's value */
    CHILD_MVNORMAL,     /* [Sigma (K * K), y (K)]: mean = the mvnormal site's value */
    CHILD_COMPONENT     /* + k: [sd, y], a normal child with mean = entry k of the mvnormal site's value */
};

/* One site's update, built once per kernel: for enumerations the blanket program (output 0: the sum of the
** site's term and its children's terms; output 1: binomial n), for conjugate updates the statistics program
** (the prior's two parameters, a dirichlet's K, or an mvnormal's K + K * K, then each child's outputs). */
typedef struct gibbs_update {
    int site, how, coord;
    plm_prog *blanket;
    plm_prog *stats;
    int nstats, nchild;
    int *cfam;          /* per child: CHILD_* */
    int support;        /* enumeration: the support size (0 for binomial: read n at each step) */
} gibbs_update;

/* Find the update of latent site i: how (PLM_GIBBS_*), and for conjugate ones the statistics nodes into a
** new GC array *stats (count *nstats) and per-child families *cfam (count *nchild). why as the plan's. */
plm_status plm_gibbs_find(plm_ctx *ctx, const plm_gmodel *m, int i, const int *children, int nchildren, int *how,
                          int **stats, int *nstats, int **cfam, int *nchild, char *why, size_t nwhy);

/* The children of site i (sites with a term that reads i's coordinates), into out; returns the count. */
int plm_gibbs_children(const plm_gmodel *m, int i, int *out);

/* A Gaussian block (plm_gibbs_gaussian_check): d scalar normal sites, and the nterms scalar normal terms that
** read them (sites' indices in terms; the block indices term t reads at tidx[tptr[t] .. tptr[t + 1]); its
** mean, sd and value nodes at stats[3 t ..]). ok = 0 when the sites are not a block. GC arrays. */
typedef struct gauss_block {
    int ok, d, nterms;
    int *sites, *terms, *tptr, *tidx, *stats;
} gauss_block;

/* Is sites[0..n-1] (latent scalar normal sites) a Gaussian block: every term that reads one of them (their own
** terms included) a scalar normal whose value and mean are jointly affine in the block's sites and whose sd
** reads none of them? Found from the expression graph, as the single-site checks are: a product of two of
** the block's sites is not affine. Fills out (out->ok = 0 with why naming the failing term when it is not). */
plm_status plm_gibbs_gaussian_check(plm_ctx *ctx, const plm_gmodel *m, const int *sites, int n, gauss_block *out,
                                    char *why, size_t nwhy);

/* Shared by gibbs.c and gibbs_gauss.c (defined in gibbs.c). */

/* Points 0..n-1 of the program w (inputs of group Z at z, leading dimension ld; the rest at u) into o, in
** blocks of PLM_EXPR_BLOCK, the uniform part once. */
void plm_gibbs_eval_all(plm_prog_ws *w, const double *u, const double *z, size_t ld, long n, double *const *o);

/* The program of the nodes outs[0..nout-1] of g, the coordinates move[0..nmove-1] inputs of group Z. */
plm_status plm_gibbs_compile_small(plm_ctx *ctx, const plm_graph *g, int nout, const int *outs, int nmove,
                                   const int *move, plm_prog **out);

/* PLM_OK when site s of the finished model m is latent; else an error naming fn and the site. */
plm_status plm_gibbs_check_site(plm_ctx *ctx, const plm_gmodel *m, int s, const char *fn);

/* The Gaussian-block kernel (gibbs_gauss.c): is k one, and its conditional at u (mean, then covariance
** row-major: d + d * d doubles of out) as plm_gibbs_conditional reports it. */
int plm_gibbs_is_gaussian_block(const plm_kernel *k);
plm_status plm_gibbs_gaussian_conditional(plm_ctx *ctx, const plm_kernel *k, int i, const double *u, double *out, int cap,
                                          int *n);

#endif
