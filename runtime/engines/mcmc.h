/* mcmc.h -- Markov chain Monte Carlo on targets: kernels are tables of functions (a new kernel is a new
** table, never a new branch in the driver), and one chain driver runs warm-up and sampling for several chains
** in parallel into a draws table. Chain c draws from stream c of the seed, so results do not depend on the
** thread count. Kernel states and workspaces are malloc'd per chain and freed by the driver. */
#ifndef PLM_MCMC_H
#define PLM_MCMC_H

#include <stdint.h>

#include "ctx.h"
#include "draws.h"
#include "rng.h"
#include "target.h"

typedef struct plm_kernel plm_kernel;

/* chain_new returns a per-chain state (NULL: out of memory). step moves the point u (with log density *lp,
** both updated in place), writes a statistic in [0, 1] to *stat (the acceptance probability for Metropolis
** kernels, Stan's accept_stat__) that adapt consumes, and writes nextra further diagnostics (named by
** extra_names, e.g. "divergent__") to extra; it returns PLM_OK or an error with the message in ctx (a NaN
** log density at the current point is an error, PLM_EDOM; at a proposed point it is a rejection, since
** compiled graphs give NaN where a distribution's parameters are invalid). adapt, called after each warm-up step `it` of `nwarm` (0-based), may
** be NULL. */
typedef struct plm_kernel_ops {
    const char *name;
    int nextra;
    const char *const *extra_names;
    void *(*chain_new)(const plm_kernel *k, const plm_target *t);
    void (*chain_free)(void *state);
    plm_status (*step)(const plm_kernel *k, void *state, plm_ctx *ctx, const plm_target *t, void *ws, plm_rng *r,
                       double *u, double *lp, double *stat, double *extra);
    void (*adapt)(const plm_kernel *k, void *state, long it, long nwarm, const double *u, double stat);
} plm_kernel_ops;

struct plm_kernel {
    const plm_kernel_ops *ops;
    void *cfg;      /* the kernel's settings, GC memory */
};

/* Random-walk Metropolis: Gaussian proposals with per-coordinate scales. During warm-up the global scale
** follows a Robbins-Monro recursion toward the acceptance rate `target_accept` (0 picks 0.44 in one
** dimension and 0.234 above, the optimal rates of Roberts, Gelman and Gilks), and at the end of each
** doubling window the per-coordinate scales become the window's standard deviations. GC-owned kernel. */
plm_status plm_kernel_rwmh(plm_ctx *ctx, double target_accept, plm_kernel **out);
/* The same with the proposal's standard deviation per coordinate starting at scale (> 0; 0: 2.38 / sqrt(dim)). */
plm_status plm_kernel_rwmh_scaled(plm_ctx *ctx, double target_accept, double scale, plm_kernel **out);

typedef struct plm_mcmc_opts {
    int chains;             /* >= 1 */
    long warmup, samples;   /* warm-up iterations (not kept) and kept iterations per chain */
    long thin;              /* keep sampling iterations 1, 1 + thin, 1 + 2 thin, ... (thin >= 1), as the trace MH
                            ** does; samples counts kept draws */
    uint64_t seed;
    int threads;            /* <= 0: plm_default_threads() */
    const double *init;     /* chains * dim starting points, or NULL: uniform on (-2, 2) per coordinate, as
                            ** Stan does, redrawn (up to 100 times) while the log density is -inf */
} plm_mcmc_opts;

/* Run the chains and return a new draws table (GC) with one column per coordinate (t->names, or "x[i]"),
** then "lp__", "accept_stat__" and the kernel's extra diagnostics. *accept receives the mean statistic over kept iterations (may be NULL).
** Errors: PLM_EINVAL for bad options; PLM_EDEAD when a chain finds no point of finite density (the message
** names the chain); PLM_EINTR when interrupted (every chain stops within one iteration; *out then holds the
** draws made so far); a kernel's error from the lowest-numbered failing chain.
**
** Ranks: in a job of K ranks (comm.h), rank r runs the chains [r C / K, (r + 1) C / K) (on
** its threads) and the draws, kept counts and errors of all chains are then exchanged (plm_comm_allgatherv), so
** that every rank returns the same draws table, status and message -- those of a one-process run, byte for byte,
** since chain c's stream depends only on (seed, c). The call is then collective: every rank must make it, with
** the same options. */
plm_status plm_mcmc_run(plm_ctx *ctx, const plm_target *t, const plm_kernel *k, const plm_mcmc_opts *o,
                        plm_draws **out, double *accept);
/* The same with every chain run by this process, whatever the ranks: not collective. */
plm_status plm_mcmc_run_local(plm_ctx *ctx, const plm_target *t, const plm_kernel *k, const plm_mcmc_opts *o,
                              plm_draws **out, double *accept);
/* The same, not collective, for chains chain0, chain0 + 1, ... of a larger run whose chains the caller shares
** out (over MPI ranks): chain c of these draws from stream (seed, chain0 + c), as it would in the whole run. */
plm_status plm_mcmc_run_from(plm_ctx *ctx, const plm_target *t, const plm_kernel *k, const plm_mcmc_opts *o, int chain0,
                             plm_draws **out, double *accept);

#endif
