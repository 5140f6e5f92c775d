/* optimize.h -- modes of targets and Gaussian approximations around them: quasi-Newton maximisation of a
** target's log density with its gradient (GSL's vector_bfgs2), the Hessian at a point by central differences
** of the gradient, and draws from the Laplace approximation N(mode, (-H)^-1) on R^dim. Buffers are
** caller-owned. */
#ifndef PLM_OPTIMIZE_H
#define PLM_OPTIMIZE_H

#include <stddef.h>
#include <stdint.h>

#include "ctx.h"
#include "target.h"

typedef struct plm_optim_opts {
    int max_iter;        /* iterations at most (0: 2000) */
    double tol_grad;     /* converged when max |gradient| < tol_grad (0: 1e-8) */
    double tol_rel_obj;  /* ... or when no further progress is possible and the last step changed the log
                         ** density by less than tol_rel_obj * (1 + |lp|) (0: 1e-12) */
    double step;         /* first trial step length of the line search (0: 0.1) */
} plm_optim_opts;

typedef struct plm_optim_result {
    double lp;           /* log density at the result */
    double grad_max;     /* max |gradient| there */
    int iterations;
    int converged;       /* 1 when a test of opts passed, 0 when max_iter ran out or the search stalled */
} plm_optim_result;

/* Maximise t's log density from u0 (dim doubles) into u (dim doubles; may be u0). t needs a gradient
** (PLM_ENOTSUP otherwise). PLM_EDEAD when the log density at u0 is not finite, PLM_EINTR on Ctrl-C. A run
** that does not converge is not an error: res->converged says so. */
plm_status plm_optimize(plm_ctx *ctx, const plm_target *t, const double *u0, const plm_optim_opts *opts, double *u,
                        plm_optim_result *res);

/* The Hessian of t's log density at u into H (dim*dim, row-major, symmetrised), by central differences of
** the gradient with steps h * max(1, |u_i|) (h <= 0: 1e-5). PLM_EDOM when an entry is not finite. */
plm_status plm_hessian(plm_ctx *ctx, const plm_target *t, const double *u, double h, double *H);

/* n draws of N(mode, (-H)^-1) into out (n rows of dim, row-major), from stream 0 of seed. H is the Hessian of
** the log density at the mode; PLM_EDOM when -H is not positive definite (the point is not a strict
** maximum, or the posterior is improper in some direction). *logdet receives log det (-H) when not NULL. */
plm_status plm_laplace_draws(plm_ctx *ctx, const double *mode, const double *H, int dim, size_t n, uint64_t seed,
                             double *out, double *logdet);

#endif
