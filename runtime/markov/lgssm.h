/* lgssm.h -- linear-Gaussian state space models: exact log-likelihood, Kalman filter, Rauch-Tung-Striebel
** smoother and simulation, in square-root (Cholesky factor) form so covariances stay positive semi-definite on
** long or badly conditioned series.
**   x_0 ~ N(m0, P0),  x_t = A x_{t-1} + b + N(0, Q),  y_t = C x_t + d + N(0, R),  t = 1..T
** x_t has n entries, y_t has m. Observations are T*m row-major doubles; a NaN entry is missing (a whole row of
** NaN skips the update, a partial row updates with the observed sub-vector only). Matrices are row-major.
** Inputs are const and caller-owned; outputs are caller-owned buffers; plm_lgssm objects are GC memory. */
#ifndef PLM_LGSSM_H
#define PLM_LGSSM_H

#include <stddef.h>

#include "ctx.h"
#include "rng.h"

/* The model as the caller describes it; b and d may be NULL (zero). */
typedef struct plm_lgssm_spec {
    int n, m;                  /* state and observation dimensions, both >= 1 */
    const double *A, *b, *Q;   /* n*n, n, n*n */
    const double *C, *d, *R;   /* m*n, m, m*m */
    const double *m0, *P0;     /* n, n*n */
} plm_lgssm_spec;

typedef struct plm_lgssm {
    int n, m;
    double *A, *b, *Q, *C, *d, *R, *m0, *P0;   /* validated copies (b, d zero-filled when absent) */
    double *GQ, *GR, *G0;   /* square factors, G G' = Q, R, P0: GR is R's lower Cholesky factor; GQ and G0
                            ** are Cholesky factors or, for singular Q / P0, eigen factors V sqrt(L) */
} plm_lgssm;

/* Validate the spec and return a GC-owned model in *out. Q and P0 must be symmetric positive semi-definite,
** R symmetric positive definite, everything finite. PLM_EINVAL otherwise, naming the argument and entry:
** "lgssm: Q is not symmetric (Q[1][2] = 0.3, Q[2][1] = 0.1)". */
plm_status plm_lgssm_new(plm_ctx *ctx, const plm_lgssm_spec *spec, plm_lgssm **out);

/* Log-likelihood log p(y_1..y_T) of T >= 1 observations ys (T*m, NaN = missing) into *loglik. PLM_EINVAL
** for T = 0 or an infinite observation, PLM_EINTR when interrupted. Workspace is O((n+m)^2). */
plm_status plm_lgssm_loglik(plm_ctx *ctx, const plm_lgssm *s, size_t T, const double *ys, double *loglik);

/* Kalman filter: means (T*n) and covs (T*n*n) of p(x_t | y_1..y_t), t = 1..T; loglik may be NULL. */
plm_status plm_lgssm_filter(plm_ctx *ctx, const plm_lgssm *s, size_t T, const double *ys, double *means,
                            double *covs, double *loglik);

/* RTS smoother: means (T*n) and covs (T*n*n) of p(x_t | y_1..y_T); loglik may be NULL. Uses the output
** buffers as its storage: beyond them it needs only O((n+m)^2). */
plm_status plm_lgssm_smooth(plm_ctx *ctx, const plm_lgssm *s, size_t T, const double *ys, double *means,
                            double *covs, double *loglik);

/* Draw states xs (T*n, x_1..x_T) and observations ys (T*m) from the model with r. Either may be NULL. */
plm_status plm_lgssm_sample(plm_ctx *ctx, const plm_lgssm *s, size_t T, plm_rng *r, double *xs, double *ys);

#endif
