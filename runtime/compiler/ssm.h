/* ssm.h -- state-space models compiled from traced graphs: x_1 ~ init, x_t ~ trans(x_{t-1}, t) for t >= 2,
** y_t ~ obs(x_t, t), with an optional proposal q(x_t | x_{t-1}, y_t). Every piece is a compiled program run
** over blocks of particles, so an SMC engine calls these functions per step with no Lua in the loop.
** Particle arrays are component-major: component k of particle i at x[k*ld + i] (ld >= n). Times are
** 1-based as in Lua. Parameters live in m->params and may be changed between calls without recompiling.
** plm_ssm objects are GC memory. */
#ifndef PLM_SSM_H
#define PLM_SSM_H

#include "expr.h"

/* What a traced model produced: node ids of g (input groups: P parameters, T {t}, C covariate slots,
** X the (previous) state, Y the observation, Z the state being scored). */
typedef struct plm_ssm_spec {
    plm_graph *g;
    int dim, ydim, np;
    const int *init_x;      /* dim draws of x_1 */
    int init_lp;            /* log p(x_1 = Z) */
    const int *trans_x;     /* dim draws of x_t given X = x_{t-1} */
    int trans_lp;           /* log p(x_t = Z | X) */
    const int *obs_y;       /* ydim draws of y_t given X = x_t */
    int obs_lp;             /* log p(Y | X) */
    const int *prop_x;      /* optional (NULL): dim draws of x_t given X = x_{t-1}, Y = y_t */
    int prop_lq;            /* log q of those draws (nodes of the draws, not Z) */
    int prop_lp;            /* log q(Z | X, Y) */
    int prop_lw;            /* log p(x | X) + log p(Y | x) - log q(x | X, Y) at the proposal draws x */
    int boot1_lw;           /* log p(Y | x_1) at the init draws init_x (the fused bootstrap step, t = 1) */
    int boot_lw;            /* log p(Y | x_t) at the transition draws trans_x (the fused bootstrap step) */
    int ncov;               /* covariate slots: slot s reads data column cov_col[s] at time t + cov_lag[s] */
    const int *cov_col, *cov_lag;
} plm_ssm_spec;

typedef struct plm_ssm {
    plm_graph *g;
    int dim, ydim, np, ncov;
    double *params;                 /* np values, read at every call */
    int *cov_col, *cov_lag;
    const double *data;             /* ncols columns of T_data values: data[col*T_data + (t-1)] (GC or caller) */
    int ncols;
    size_t T_data;
    plm_prog *init_sample, *init_logpdf, *trans_sample, *trans_logpdf, *obs_sample, *obs_logpdf;
    plm_prog *prop_sample, *prop_logpdf;   /* NULL without a proposal; prop_sample has dim + 1 outputs */
    plm_prog *boot1, *boot;                /* fused draw + observation weight: dim + 1 outputs */
    plm_prog *guided;                      /* fused proposal draw + importance weight (NULL without a proposal) */
    int init_lp, trans_lp, obs_lp;         /* the density nodes, for derivatives */
    plm_prog *init_grad, *trans_grad, *obs_grad;   /* compiled on first use by plm_ssm_logjoint_grad */
    plm_prog *obs_grad_xy;                         /* obs_grad with Y varying too: every time in one call */
} plm_ssm;

/* Compile every piece of spec. Parameters start at NAN until set. PLM_ENOMEM, or a compile error. */
plm_status plm_ssm_new(plm_ctx *ctx, const plm_ssm_spec *spec, plm_ssm **out);

/* Covariate data: ncols columns of T values each (column-major, kept by reference: the caller keeps it
** alive, e.g. GC memory). */
void plm_ssm_set_data(plm_ssm *m, const double *data, int ncols, size_t T);

/* Block operations (n particles, leading dimension ld, streams rng[0..n-1] for the particles). A time whose
** covariates fall outside the data gives PLM_EDOM. Outputs may alias inputs (x updated in place). */
plm_status plm_ssm_init_sample(plm_ctx *ctx, const plm_ssm *m, size_t n, double *x, size_t ld, plm_rng *rng,
                               int nthreads);
plm_status plm_ssm_trans_sample(plm_ctx *ctx, const plm_ssm *m, long t, size_t n, const double *xprev,
                                double *xnew, size_t ld, plm_rng *rng, int nthreads);
/* out[i] = log p(y | x_i) for one observation y (ydim doubles) shared by all particles */
plm_status plm_ssm_obs_logpdf(plm_ctx *ctx, const plm_ssm *m, long t, size_t n, const double *x, size_t ld,
                              const double *y, double *out, int nthreads);
plm_status plm_ssm_obs_sample(plm_ctx *ctx, const plm_ssm *m, long t, size_t n, const double *x, size_t ld,
                              double *y, size_t ldy, plm_rng *rng, int nthreads);
/* out[i] = log p(xnew_i | xprev_i) (t >= 2), or log p(x_1 = xnew_i) when t == 1 (xprev unused) */
plm_status plm_ssm_trans_logpdf(plm_ctx *ctx, const plm_ssm *m, long t, size_t n, const double *xprev,
                                const double *xnew, size_t ld, double *out, int nthreads);
/* Proposal: xnew_i ~ q(. | xprev_i, y) and logq[i] = log q(xnew_i | xprev_i, y). PLM_EINVAL without one. */
plm_status plm_ssm_prop_sample(plm_ctx *ctx, const plm_ssm *m, long t, size_t n, const double *xprev,
                               const double *y, double *xnew, size_t ld, double *logq, plm_rng *rng, int nthreads);
/* out[i] = log q(xnew_i | xprev_i, y). */
plm_status plm_ssm_prop_logpdf(plm_ctx *ctx, const plm_ssm *m, long t, size_t n, const double *xprev,
                               const double *y, const double *xnew, size_t ld, double *out, int nthreads);

/* The bootstrap step in one pass (draws stay in registers): xnew_i ~ trans(. | xprev_i) (init when t == 1,
** xprev unused) and logw[i] = log p(y | xnew_i). */
plm_status plm_ssm_step(plm_ctx *ctx, const plm_ssm *m, long t, size_t n, const double *xprev, const double *y,
                        double *xnew, size_t ld, double *logw, plm_rng *rng, int nthreads);

/* The guided step in one pass, for t >= 2: xnew_i ~ q(. | xprev_i, y) and logw[i] = log p(xnew_i | xprev_i)
** + log p(y | xnew_i) - log q(xnew_i | xprev_i, y). PLM_EINVAL without a proposal or for t < 2 (use
** plm_ssm_step at t = 1). */
plm_status plm_ssm_step_guided(plm_ctx *ctx, const plm_ssm *m, long t, size_t n, const double *xprev,
                               const double *y, double *xnew, size_t ld, double *logw, plm_rng *rng, int nthreads);

/* The uniform input bindings of program p at time t, for engines that evaluate m's programs block by block
** themselves: parameters, {t} and covariate slots (tc holds 1 + ncov doubles). Slots p does not read may fall
** outside the data (the lagged u[t - 1] of trans at t = 1); PLM_EDOM names a covariate p reads outside it. */
plm_status plm_ssm_bind(plm_ctx *ctx, const plm_ssm *m, const plm_prog *p, long t, double *tc, plm_prog_in *in);

/* Simulate n independent paths of length T: xs[((t-1)*dim + k)*n + i] and ys[((t-1)*ydim + k)*n + i];
** particle i draws from stream (seed, i). PLM_EDOM when a value comes out NaN (names t and particle). */
plm_status plm_ssm_simulate(plm_ctx *ctx, const plm_ssm *m, long T, size_t n, unsigned long long seed,
                            double *xs, double *ys, int nthreads);

/* Complete-data log density of one path: xs[(t-1)*dim + k], ys[(t-1)*ydim + k]. */
plm_status plm_ssm_logjoint(plm_ctx *ctx, const plm_ssm *m, long T, const double *xs, const double *ys,
                            double *out);

/* Gradient of the complete-data log density of one path (an observation with a NaN component is missing and
** contributes nothing): gp[j] = d/d params[j] (np values) and, when gx is
** not NULL, gx[(t-1)*dim + k] = d/d x_t[k]. The derivative programs are built and compiled on the first
** call (the graph grows; existing programs are unaffected). PLM_ENOTSUP when a density has no derivative
** (a native function without grad, a distribution scored through the generic kernel). Thread-safe: the
** first calls build the programs under a lock. */
plm_status plm_ssm_logjoint_grad(plm_ctx *ctx, plm_ssm *m, long T, const double *xs, const double *ys, double *gp,
                                 double *gx);

#endif
