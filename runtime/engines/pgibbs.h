/* pgibbs.h -- particle Gibbs for compiled state-space models (ssm.h): conditional SMC with ancestor sampling
** (Lindsten, Jordan and Schön 2014) draws the latent path given the parameters, and random-walk Metropolis on
** the unconstrained scale (pmcmc.h) moves the parameters that carry priors given the path, scored with the
** complete-data log density -- or, for a parameter whose conditional plume recognises as conjugate (normal,
** halfnormal, uniform, flat or truncated-normal prior with a quadratic log density; gamma prior on a precision;
** inverse-gamma prior on a variance), by an exact draw from that conditional. Chains run in parallel; every draw comes from streams fixed by (seed, chain,
** sweep, particle), so results depend on the seed and never on the thread count. */
#ifndef PLM_PGIBBS_H
#define PLM_PGIBBS_H

#include <stdint.h>

#include "pmcmc.h"
#include "results.h"

/* Conditional SMC (bootstrap proposals, multinomial resampling at every step, the reference path in the
** last slot). A workspace holds the particle history of one sweep: T * N * (dim + 1) numbers. */
typedef struct plm_csmc plm_csmc;

/* NULL when memory runs out. */
plm_csmc *plm_csmc_new(const plm_ssm *m, long T, size_t N);
void plm_csmc_free(plm_csmc *w);

/* One sweep over ys[(t-1)*ydim + k] (a NaN component marks y_t missing: no weight at t) with the particles on
** streams (seed, i + 1) and resampling on (seed, 0). With ref = 1, path (T * dim numbers, path[(t-1)*dim + k])
** is the reference kept in the last slot, and its ancestor at each step is drawn from W_{t-1}^j p(x*_t | x^j)
** when ancestor_sampling is 1 (kept at its own lineage when 0: plain CSMC); with ref = 0 the sweep is an
** ordinary bootstrap filter. Either way a path drawn from the final weights replaces path. PLM_EDOM when every
** weight is zero at a step or one is NaN (names t); PLM_EINTR; PLM_ENOMEM. */
plm_status plm_csmc_sweep(plm_ctx *ctx, plm_csmc *w, const plm_ssm *m, const double *ys, uint64_t seed, int ref,
                          int ancestor_sampling, int nthreads, double *path);

/* What a sampler built on the sweep (PPG, ppg.h) adds to it, as a table: step runs after the weights of every
** time t, with x the particles of t (component-major, ld N), lw their normalised log weights, anc their
** parents' indices, and xp, lwp those of t - 1 (unused at t = 1); parent, when not NULL, replaces the ancestry
** in the path drawn at the end: the index at t - 1 (t >= 2) that the path takes from particle b at t, drawing
** what it needs from r (the sweep's resampling stream). who names the engine in errors. */
typedef struct plm_csmc_hook {
    const char *who;
    plm_status (*step)(plm_ctx *ctx, void *ud, long t, const double *xp, const double *lwp, const double *x,
                       const double *lw, const uint32_t *anc);
    size_t (*parent)(void *ud, long t, size_t b, plm_rng *r);
    void *ud;
} plm_csmc_hook;

/* plm_csmc_sweep with the hook h (NULL: none, as plm_csmc_sweep); an error of h->step ends the sweep. */
plm_status plm_csmc_sweep_hook(plm_ctx *ctx, plm_csmc *w, const plm_ssm *m, const double *ys, uint64_t seed, int ref,
                               int ancestor_sampling, int nthreads, const plm_csmc_hook *h, double *path);

/* The normalised log weights of the last sweep's particles at T (N of them). */
const double *plm_csmc_logweights(const plm_csmc *w);

/* A sweep that replaces plm_csmc_sweep in the chains (PPG's, ppg.h): new sets up one chain's state for m (the
** chain's copy of the model, its parameters changed between sweeps) and N particles over T steps on nthreads
** (NULL and ctx set on failure); run is one sweep as plm_csmc_sweep's, whose K estimates est become columns
** names[0..K-1] of each kept draw. */
typedef struct plm_pgibbs_sweep {
    int K;
    const char *const *names;
    void *(*new)(plm_ctx *ctx, void *ud, const plm_ssm *m, long T, size_t N, int nthreads);
    plm_status (*run)(plm_ctx *ctx, void *state, const plm_ssm *m, const double *ys, uint64_t seed, int ref,
                      int nthreads, double *path, double *est);
    void (*free)(void *state);
    void *ud;
} plm_pgibbs_sweep;

typedef struct plm_pgibbs_opts {
    size_t N;                  /* particles, >= 2 */
    int chains;                /* >= 1 */
    long warmup, samples;      /* sweeps discarded (while the parameter proposal adapts) and kept, per chain */
    uint64_t seed;
    int nthreads;              /* <= 0: plm_default_threads() */
    int ancestor_sampling;     /* 1 (the default): CSMC-AS; 0: plain CSMC */
    int param_moves;           /* random-walk moves of the parameters per sweep (>= 1) */
    int conjugate;             /* 1 (the default): exact draws from the conditionals plume recognises as conjugate */
    double target_accept;      /* of the parameter moves; 0: 0.44 for one parameter, 0.234 for more */
    const long *times;         /* ntimes times (1-based) whose states are recorded; NULL: every time */
    long ntimes;
    const double *init;        /* chains * nfree starting points on the unconstrained scale (plm_ssm_prior_free),
                               ** or NULL: draws from the priors */
    const plm_pgibbs_sweep *sweep;   /* NULL: plm_csmc_sweep (with ancestor_sampling) */
} plm_pgibbs_opts;

void plm_pgibbs_opts_default(plm_pgibbs_opts *o);

/* Run the chains on the T observations ys (as plm_csmc_sweep). P lists the parameters to sample (nfree may
** be 0: the path alone); the others keep m->params, which must all be set. Each kept sweep becomes one draw
** of R (which must have o->chains chains): the free parameters by name, the state at the recorded times as
** "x[t]" ("x[t,k]" for dim > 1), the sweep's estimates (o->sweep), "lp__" (log prior + log Jacobian +
** complete-data log density) and, with free parameters, "accept_stat__" (the last parameter move's acceptance
** probability). Series: "accept_rate" (per chain, of the parameter moves after warm-up) and "update_rate"
** (per time: how often the kept sweeps changed x_t, the usual check that the path mixes at every time).
** PLM_EINVAL for bad options; PLM_EDEAD when no start of finite density is found in 100 prior draws; PLM_EINTR
** (R keeps the draws made); the sweep's errors. */
plm_status plm_pgibbs_run(plm_ctx *ctx, const plm_ssm *m, long T, const double *ys, const plm_ssm_prior *P,
                          const plm_pgibbs_opts *o, plm_results *R);

/* For samplers built on conditional SMC (pgibbs, ppg). The index of a particle drawn from the normalised
** weights W[0..n-1] with the uniform u. */
size_t plm_csmc_draw_index(const double *W, size_t n, double u);
/* Ancestor sampling (Lindsten, Jordan and Schon): the parent at t - 1 of the reference state xr (dim doubles)
** at time t, drawn with probability proportional to W_{t-1}^j p(xr | x_{t-1}^j). xp holds the N particles of
** t - 1 (component-major, stride N), lw their log weights; xrep (dim * N) and la (N) are scratch. who names the
** engine in errors: PLM_EDOM when no particle can be the parent. */
plm_status plm_csmc_ancestor(plm_ctx *ctx, const plm_ssm *m, long t, const double *xp, const double *lw,
                             const double *xr, size_t N, double *xrep, double *la, plm_rng *r, int nthreads,
                             const char *who, uint32_t *out);

#endif
