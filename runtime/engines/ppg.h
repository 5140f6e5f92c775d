/* ppg.h -- the Parisian particle Gibbs sampler (PPG; Cardoso, Janati, Le Corff, Moulines and Olsson, "State and
** parameter learning with PaRIS particle Gibbs", ICML 2023) for smoothed additive functionals
** S = sum_t h_t(x_{t-1}, x_t) of a compiled state-space model (ssm.h) at fixed parameters.
**
** Every iteration runs conditional SMC (bootstrap proposals, multinomial resampling at every step, the frozen
** reference path in the last slot, its parent drawn by ancestor sampling) with PaRIS inside it (smooth.h): each
** particle draws Ntilde parents from the backward kernel and carries tau_t^i, an estimate of
** E[S_t | x_t = x_t^i]. The iteration's estimate is sum_i W_T^i tau_T^i; the next reference is the path traced
** back from a particle drawn from W_T through one of its Ntilde backward draws (uniformly) at every step --
** a backward-sampled path, so the chain is particle Gibbs with backward sampling and leaves the smoothing
** distribution invariant. The PPG estimate averages the iterations after a burn-in (the roll-out estimator):
** its bias decays geometrically with the burn-in, where PaRIS alone keeps an O(1/N) bias. The sweep is
** pgibbs.h's conditional SMC with a hook; plm_ppg_gibbs_run adds parameter updates between sweeps.
** Every draw comes from streams fixed by the seed, never by the thread count. */
#ifndef PLM_PPG_H
#define PLM_PPG_H

#include "pgibbs.h"
#include "smooth.h"

typedef struct plm_ppg_opts {
    size_t N;                 /* particles, >= 2 */
    long iters, burnin;       /* conditional iterations (>= 1); the first burnin of them are not averaged */
    uint64_t seed;
    int nthreads;             /* <= 0: plm_default_threads() */
    plm_smooth_opts back;     /* the backward draws: Ntilde, rejection, bound, mh_steps (its seed is set per
                              ** iteration) */
} plm_ppg_opts;

void plm_ppg_opts_default(plm_ppg_opts *o);

typedef struct plm_ppg_result {
    int K;
    long iters, burnin;
    double *value;    /* K: the mean of trace over iterations burnin + 1 .. iters */
    double *mcse;     /* K: its Monte Carlo standard error by batch means (floor(sqrt(n)) batches; NaN for n < 4) */
    double *paris;    /* K: the estimate of the unconditional first sweep: plain PaRIS (which starts the chain) */
    double *trace;    /* iters * K: trace[(k-1)*K + j], iteration k's estimate of output j */
    plm_smooth_stats stats;   /* backward draws of the whole run */
} plm_ppg_result;

void plm_ppg_result_free(plm_ppg_result *r);

/* Run PPG on the T observations ys[(t-1)*ydim + k] (a NaN component marks y_t missing) with m's parameters,
** which must all be set, for the K-output functional hfn (smooth.h; plm_paris_prog_fn for a compiled one).
** PLM_EINVAL for bad options (names them); PLM_EDOM when every weight is zero at a step, or the reference has
** no possible parent (names t); PLM_EINTR; PLM_ENOMEM. On failure r holds nothing. */
plm_status plm_ppg_run(plm_ctx *ctx, const plm_ssm *m, long T, const double *ys, int K, plm_paris_fn hfn, void *hud,
                       const plm_ppg_opts *o, plm_ppg_result *r);

/* One sweep at a time, for samplers that move the parameters between sweeps (the MLE's PPG score, ssm_mle.h).
** plm_ppg_sweeper_new sets up T steps of N particles and PaRIS for hfn (K outputs) with the backward options
** back (copied; its seed is ignored) on nthreads; NULL and ctx set on bad options or no memory. The sweeper
** reads m's parameters at every sweep, so the caller may change them between sweeps (m itself must stay).
** plm_ppg_sweep runs one sweep from seed: conditional on path when ref is 1 (a bootstrap filter when 0, the
** start), est receives its K estimates and path the next reference. Errors as plm_ppg_run's. */
typedef struct plm_ppg_sweeper plm_ppg_sweeper;
plm_ppg_sweeper *plm_ppg_sweeper_new(plm_ctx *ctx, const plm_ssm *m, long T, size_t N, int K, plm_paris_fn hfn,
                                     void *hud, const plm_smooth_opts *back, int nthreads, plm_smooth_stats *stats);
plm_status plm_ppg_sweep(plm_ctx *ctx, plm_ppg_sweeper *S, const plm_ssm *m, const double *ys, uint64_t seed,
                         int ref, int nthreads, double *path, double *est);
void plm_ppg_sweeper_free(plm_ppg_sweeper *S);

/* PPG with parameter updates: plm_pgibbs_run (pgibbs.h: conjugate draws or random-walk moves of the parameters
** in P given the path, o's options) whose sweeps are PPG's, the reference traced through the backward draws.
** Each kept draw of R has the K outputs of the compiled functional hprog (plm_paris_prog_fn's convention) as
** columns names[0..K-1]: their mean over the draws estimates the posterior expectation of the smoothed
** functional, the parameters integrated out. back holds the backward options (its gauss, when set, is
** re-pointed at each chain's model). Errors: plm_pgibbs_run's and the sweep's. */
plm_status plm_ppg_gibbs_run(plm_ctx *ctx, const plm_ssm *m, long T, const double *ys, const plm_ssm_prior *P,
                             const plm_prog *hprog, int K, const char *const *names, const plm_smooth_opts *back,
                             const plm_pgibbs_opts *o, plm_results *R);

#endif
