/* pfilter.h -- particle filters over a compiled state-space model (ssm.h): bootstrap, guided (the model's
** proposal) and auxiliary (look-ahead weights), resampling with the schemes of resample.h when the ESS falls
** below a threshold. The whole loop runs in C over the ssm's compiled kernels, threads split the particles by
** index (particle i always draws from stream (seed, i + 1), resampling from stream (seed, 0) on the calling
** thread), so a result depends on the seed and never on the thread count.
** Results are malloc'd by plm_pf_run and released with plm_pf_result_free.
**
** Ranks: with distribute set and several ranks, rank r holds the particles of a contiguous block of the fixed
** chunks of PF_CHUNK (512) particles by which the update sums (ranks hold whole chunks, so a chunk's sums are
** the same wherever it lives), and draws for particle i from stream (seed, i + 1) as before. Each step
** all-gathers the per-chunk maxima, sums and moments, and every rank combines them in chunk order: logz, ESS,
** means and variances come out bitwise those of one process. Resampling is plm_resample_systematic_chunked's,
** split by chunks (plm_resample_systematic_runs, the one uniform drawn by every rank from stream (seed, 0)),
** and the new particles are moved to the ranks that own their slots (slot j lives where particle j lives): the
** ranks stay balanced and only particles whose slots lie on another rank cross. Filters that need every
** particle in one place (history, a hook, the auxiliary filter) or other resampling schemes run whole on every
** rank. plm_pf_run is then collective: every rank must call it with the same arguments. */
#ifndef PLM_PFILTER_H
#define PLM_PFILTER_H

#include <stdint.h>

#include "resample.h"
#include "ssm.h"

typedef enum plm_pf_method {
    PLM_PF_BOOTSTRAP,   /* propose from the transition, weight by the observation density */
    PLM_PF_GUIDED,      /* propose from the model's proposal q(x_t | x_{t-1}, y_t) (t >= 2; t = 1 draws init) */
    PLM_PF_AUXILIARY    /* bootstrap moves, resampling by W_{t-1} * eta(x_{t-1}, y_t) (Pitt and Shephard 1999) */
} plm_pf_method;

typedef struct plm_pf_opts {
    plm_pf_method method;
    size_t N;                     /* particles, >= 1 */
    plm_resample_scheme scheme;
    double ess_threshold;         /* resample before step t when ESS < ess_threshold * N; >= 1: at every step */
    uint64_t seed;
    int nthreads;                 /* <= 0: plm_default_threads() */
    int history;                  /* keep particles, log weights and ancestors of every step (for smoothing) */
    /* 1: in a job of several ranks (comm.h), spread the particles over them (see "Ranks" below); 0: every rank
    ** runs the whole filter by itself. The results are the same either way, and with one rank. */
    int distribute;
    /* auxiliary: a program with one output, log eta, reading the state X (varying) and the observation Y
    ** (uniform) with the ssm's parameter, time and covariate bindings; required for PLM_PF_AUXILIARY */
    const plm_prog *lookahead;
    /* auxiliary without a look-ahead program: eta = p(y_t | x = the transition mean), from this derivation */
    const struct plm_ssm_gauss *gauss;
    /* optional: a program of K outputs f_k(x) over the state X (varying); their filtering expectations are
    ** reported per step */
    const plm_prog *moments;
    /* guided without a model proposal: the locally optimal proposal of this derivation (plm_ssm_optimal_init) */
    const struct plm_ssm_optimal *optimal;
    /* optional: called after the update at every t with the particles and normalised log weights of t - 1
    ** (before resampling; NULL at t = 1), those of t and their parents' indices at t - 1, so that on-line
    ** smoothers need no history. A failure stops the filter with its status (the hook sets the message). */
    plm_status (*hook)(plm_ctx *ctx, void *ud, long t, size_t N, const double *xprev, const double *lwprev,
                       const double *x, const double *lw, const size_t *anc);
    void *hook_ud;
} plm_pf_opts;

/* How PMMH and SMC^2 use the ranks of a job (comm.h): every rank runs everything (NONE), the filters spread their
** particles over the ranks while every rank runs every chain or theta-particle in turn (PARTICLES), or the
** chains or theta-particles are shared out over the ranks, each running its filters alone (CHAINS). The
** results are the same in every mode and on every rank. */
typedef enum plm_spread { PLM_SPREAD_NONE, PLM_SPREAD_PARTICLES, PLM_SPREAD_CHAINS } plm_spread;

/* Defaults: bootstrap, 1000 particles, systematic, threshold 0.5, seed 1, one thread, no history. */
void plm_pf_opts_default(plm_pf_opts *o);

typedef struct plm_pf_result {
    long T;
    size_t N;
    int dim, nmom;
    double logz;             /* log of the unbiased estimate of p(y_1:T) */
    double *logz_inc;        /* [t-1]: log of the estimate of p(y_t | y_1:t-1); 0 where y_t is missing */
    double *ess;             /* [t-1]: ESS of the weights after the update at t */
    unsigned char *resampled;/* [t-1]: 1 when the particles were resampled before the move to t */
    double *means, *vars;    /* [(t-1)*dim + k]: filtering mean and variance of component k at t */
    double *moments;         /* [(t-1)*nmom + j]: filtering expectation of moment j (NULL without moments) */
    /* history (NULL without): xs[((t-1)*dim + k)*N + i] the particles at t, logw[(t-1)*N + i] their
    ** normalised log weights, anc[(t-1)*N + i] the index at t-1 of particle i's parent (anc at t = 1 is i) */
    double *xs, *logw;
    uint32_t *anc;
} plm_pf_result;

/* Run the filter on T observations ys[(t-1)*ydim + k] (a NaN component marks y_t missing: the particles move
** and are not weighted). Parameters are those in m->params. Returns PLM_OK; PLM_EINVAL for bad options
** (names the option) or a guided/auxiliary run without what it needs; PLM_EDOM when every weight is zero at
** a step or a weight is NaN (the message names the step and the observation); PLM_EINTR on Ctrl-C;
** PLM_ENOMEM. On failure *res holds nothing to free. */
plm_status plm_pf_run(plm_ctx *ctx, const plm_ssm *m, long T, const double *ys, const plm_pf_opts *o,
                      plm_pf_result *res);

void plm_pf_result_free(plm_pf_result *res);

/* Bytes plm_pf_run needs for N particles, T steps and the given options (for messages and limits). */
double plm_pf_bytes(const plm_ssm *m, long T, const plm_pf_opts *o, int nmom);

/* Gaussian transitions, recognised from the derivatives of the transition log density in x_t: when the
** Hessian in x_t does not depend on x_t, log p(x_t | x_{t-1}) is Gaussian in x_t and one Newton step from
** x_t = 0 lands on its mean; when the Hessian depends on nothing varying, the covariance is the same for
** every x_{t-1} and the density is bounded by its value at the mean (the bound that rejection smoothers
** need). The programs are compiled on the ssm's graph (which grows; not thread-safe). */
typedef struct plm_ssm_gauss {
    const plm_ssm *m;
    plm_prog *grad, *hess;   /* d log p / d x_t and d^2 log p / d x_t^2 at x_t = 0, over x_{t-1} */
    int const_cov;           /* the Hessian reads neither state */
} plm_ssm_gauss;

/* PLM_ENOTSUP (with a message saying why) when the transition is not Gaussian in x_t or has no derivative. */
plm_status plm_ssm_gauss_init(plm_ctx *ctx, const plm_ssm *m, plm_ssm_gauss *G);
/* mean[k*n + i] = E[x_t[k] | x_{t-1} = xprev[. i]] (component-major, ld n), t >= 2. PLM_EDOM when the
** covariance is not positive definite. */
plm_status plm_ssm_gauss_mean(plm_ctx *ctx, const plm_ssm_gauss *G, long t, size_t n, const double *xprev, double *mean,
                              int nthreads);
/* log sup p(x_t | x_{t-1}) = -0.5 log det(2 pi Sigma) at t; PLM_ENOTSUP without const_cov. */
plm_status plm_ssm_gauss_log_bound(plm_ctx *ctx, const plm_ssm_gauss *G, long t, double *lb);

/* The locally optimal proposal p(x_t | x_{t-1}, y_t), derived when the transition is Gaussian in x_t
** (plm_ssm_gauss) and log p(y_t | x_t) is quadratic in x_t (its Hessian in x_t reads no state: a
** linear-Gaussian observation y = H x + N(0, R), with any H and R, is the usual case). Then the sum of the two
** log densities is quadratic in x_t: one Newton step from x_t = 0 gives the proposal mean, the Hessian its
** precision, and the predictive p(y_t | x_{t-1}) = p(x* | x_{t-1}) p(y_t | x*) (2 pi)^(d/2) det(P)^(-1/2)
** at the mode x* is the exact incremental weight (Doucet, Godsill and Andrieu 2000). */
typedef struct plm_ssm_optimal {
    plm_ssm_gauss tr;          /* the transition's derivatives */
    plm_prog *ograd, *ohess;   /* d log p(y | x) / dx and d^2 / dx^2 at x = 0 (Y uniform, nothing varying) */
} plm_ssm_optimal;

/* PLM_ENOTSUP (the message says which condition fails) when the model is not of that form. The programs are
** compiled on the ssm's graph (which grows; not thread-safe). */
plm_status plm_ssm_optimal_init(plm_ctx *ctx, const plm_ssm *m, plm_ssm_optimal *O);

/* The optimal move at t >= 2 for n particles: xnew[k*n + i] ~ p(. | xprev_i, y) (stream rng[i]) and
** logw[i] = log p(y | xprev_i). xnew must not alias xprev. mode (dim * n) is scratch. PLM_EDOM when the
** combined precision is not positive definite (names t and the particle). */
plm_status plm_ssm_optimal_step(plm_ctx *ctx, const plm_ssm_optimal *O, long t, size_t n, const double *xprev,
                                const double *y, double *xnew, double *mode, double *logw, plm_rng *rng,
                                int nthreads);

#endif
