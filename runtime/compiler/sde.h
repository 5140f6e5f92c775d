/* sde.h -- stochastic differential equations dx = f(x, t) dt + G(x, t) dW compiled from traced graphs:
** Euler-Maruyama and (diagonal noise) Milstein over many paths at once, and compiled drift, diffusion and
** drift Jacobian for linearisation (BFFG). Paths are component-major (component k of path i at x[k*ld + i]).
** Graph inputs: P parameters, T {t, dt, sqrt(dt)}, X the state. plm_sde objects are GC memory. */
#ifndef PLM_SDE_H
#define PLM_SDE_H

#include "expr.h"

typedef enum plm_sde_method { PLM_SDE_EULER = 0, PLM_SDE_MILSTEIN = 1 } plm_sde_method;

typedef struct plm_sde_spec {
    plm_graph *g;
    int dim;            /* state dimension */
    int m;              /* noise dimension (m == dim when diagonal) */
    int np;             /* parameters */
    int diagonal;       /* diff holds dim entries G_ii instead of dim*m */
    const int *drift;   /* dim nodes */
    const int *diff;    /* dim*m nodes, row-major, or dim nodes when diagonal */
} plm_sde_spec;

typedef struct plm_sde {
    plm_graph *g;
    int dim, m, np, diagonal;
    double *params;              /* np values read at every call, NAN until set */
    int *drift, *diff, *jac;     /* nodes; jac[i*dim + j] = d f_i / d x_j */
    plm_prog *drift_prog, *diff_prog, *jac_prog;
    plm_prog *euler, *milstein;  /* one step x -> x' (milstein NULL unless the noise is diagonal) */
} plm_sde;

/* Compile drift, diffusion, Jacobian and the step programs. PLM_EINVAL for bad dimensions; a diffusion
** matrix whose off-diagonal entries are all constant zero counts as diagonal (Milstein available). */
plm_status plm_sde_new(plm_ctx *ctx, const plm_sde_spec *spec, plm_sde **out);

/* Evaluate at n states (ld >= n): f gets dim components, G gets dim*m (or dim when diagonal), J dim*dim,
** each component k at out[k*ld + i]. */
plm_status plm_sde_drift(plm_ctx *ctx, const plm_sde *s, double t, size_t n, const double *x, size_t ld, double *f);
plm_status plm_sde_diffusion(plm_ctx *ctx, const plm_sde *s, double t, size_t n, const double *x, size_t ld,
                             double *G);
plm_status plm_sde_jacobian(plm_ctx *ctx, const plm_sde *s, double t, size_t n, const double *x, size_t ld,
                            double *J);

/* Simulate n paths on the grid t[0] < t[1] < ... < t[ngrid-1] from x0 (dim values shared by all paths, or
** dim*n component-major when x0_per_path), path i on stream (seed, i). Every `every`-th grid point (and
** the first and last) is saved: out[(s*dim + k)*n + i] for save s; nsaves = plm_sde_nsaves(ngrid, every).
** Paths are split by blocks across threads (results independent of the thread count). PLM_EDOM when a
** state becomes NaN or infinite: the message names the path and the first grid time at which it did (the
** earliest over all paths, the same for any thread count). PLM_EINVAL for a bad grid or Milstein with non-diagonal
** noise. */
plm_status plm_sde_simulate(plm_ctx *ctx, const plm_sde *s, plm_sde_method method, const double *t, size_t ngrid,
                            size_t n, const double *x0, int x0_per_path, size_t every, unsigned long long seed,
                            double *out, int nthreads);
size_t plm_sde_nsaves(size_t ngrid, size_t every);

#endif
