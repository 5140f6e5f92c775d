/* mh_trace.h -- single-site trace Metropolis-Hastings over dynamic model programs (lightweight MH: Wingate,
** Stuhlmueller and Goodman 2011). The program is a callback the kernel runs once per proposal; inside it,
** every random choice goes through plm_mh_choose (which reuses old values, takes the proposed value at the
** target site, or draws fresh) and every site is recorded in run->tr. The kernel picks sites, proposes,
** corrects for fresh and stale sites, adapts per-site scales during warm-up and records draws into a
** plm_results. No Lua: a host C program runs it on a model written in C (tests/test_mh_trace.c). */
#ifndef PLM_MH_TRACE_H
#define PLM_MH_TRACE_H

#include <stddef.h>
#include <stdint.h>

#include "ctx.h"
#include "dist.h"
#include "mcmc.h"
#include "results.h"
#include "rng.h"
#include "trace.h"

/* One run of the program, as the kernel asks for it. */
typedef struct plm_mh_run {
    plm_trace *tr;             /* the run records its sites here (cleared before the call) */
    const plm_trace *old;      /* a proposal: reuse these values (NULL: every choice from the prior) */
    const char *target;        /* the site whose value is proposed (NULL: none) */
    const double *target_val;
    const plm_trace *cons;     /* values imposed by address (its latent sites; NULL: none), as target is */
    int ncons;                 /* sites of cons the run met (kept by plm_mh_choose) */
    int start;                 /* looking for a starting point: the program may use its initial values, and
                               ** improper sites start uniformly in (-2, 2) on the unconstrained scale */
    double fresh;              /* sum of log densities of values drawn fresh (kept by plm_mh_choose) */
    plm_rng *rng;
} plm_mh_run;

/* The value of latent site addr of d in this run: the proposed value at the target; the old value when the
** old trace has addr with the same distribution kind and dimension and the value lies in d's support; else a
** fresh draw (counted in run->fresh). x receives d->dim doubles and *lp their log density. The caller
** records the site. PLM_ENOTSUP when a fresh value of an improper prior is needed outside the start (it has
** no sampler). */
plm_status plm_mh_choose(plm_ctx *ctx, plm_mh_run *run, const char *addr, const plm_dist *d, double *x,
                         double *lp);

typedef struct plm_mh_program {
    /* Run the program once. PLM_OK after a complete run; PLM_EINVAL or PLM_EDOM rejects the run (log density
    ** -inf: an invalid parameter met inside; the message in ctx says where); any other status stops the
    ** chain and the kernel returns it. */
    plm_status (*run)(void *ud, plm_ctx *ctx, plm_mh_run *run);
    /* Optional: why a complete run has log density -inf, in the user's words (NULL: the site's address). */
    void (*describe)(void *ud, const plm_trace *tr, char *buf, size_t n);
    /* Optional: progress, every 64 iterations of `total`. */
    void (*progress)(void *ud, int chain, long it, long total, int warm);
    void *ud;
} plm_mh_program;

typedef struct plm_mh_opts {
    long warmup, samples;   /* iterations: warm-up (adapting, not kept), then sampling */
    long thin;              /* keep every thin-th sampling iteration (>= 1) */
    uint64_t seed;
    int init;               /* the program uses initial values at the start (only for the message) */
    /* The sites the kernel moves (plume.kernel.mh{sites =} on a dynamic program): a latent site is moved when
    ** its address is one of sites[0..nsites-1] or an entry of one ("z" moves "z[1]", "z[2]", ...); the others
    ** keep their values, and a site that appears fresh is drawn from its prior. nsites = 0: every site. */
    const char *const *sites;
    int nsites;
    /* The kernel run each iteration, a trace kernel (below) or a composite of them (kernel_compose.h); NULL:
    ** the trace MH on `sites`. With it, `sites` is unused. */
    const plm_kernel *kernel;
    /* NULL, or a buffer of the kernel's nextra doubles: the mean of each diagnostic column over kept
    ** iterations, NaN skipped (a composite's "k<i>.accept_stat__" are its children's acceptance rates). */
    double *extra_mean;
} plm_mh_opts;

/* Run chain `chain` on stream `chain` of the seed, so that the draws do not depend on which thread runs it;
** kept draws go to R as chain rec_chain. One iteration is a sweep of single-site moves (as many as latent
** sites; frozen after warm-up, see mh_trace.c). *accept receives the mean acceptance probability after
** warm-up (NaN without proposals). Errors: PLM_EDEAD when no starting point of finite density is found in
** 1000 runs (the message gives the last run's reason); PLM_EINTR when interrupted (the interrupt is left
** raised for the caller to clear); a status returned by the program or by R. */
plm_status plm_mh_trace_chain(plm_ctx *ctx, const plm_mh_program *p, const plm_mh_opts *o, int chain,
                              plm_results *R, int rec_chain, double *accept);

/* ---- trace kernels ----
** A trace kernel is a plm_kernel (mcmc.h) whose target is the chain's trace target: dimension 0, self the
** chain (plm_mh_chain), log density the current trace's score; u is NULL and *lp is not read. Its step moves
** the chain's current trace. The composites of kernel_compose.h (cycle, mixture, rep) compose them unchanged,
** since they only pass the target along. */
typedef struct plm_mh_chain plm_mh_chain;

/* The chain behind a trace target; NULL for another target (a trace kernel on a compiled graph). */
plm_mh_chain *plm_mh_target_chain(const plm_target *t);
/* The current trace; the chain's program; its stream; whether the iteration in progress is a warm-up one. */
const plm_trace *plm_mh_chain_trace(const plm_mh_chain *ch);
const plm_mh_program *plm_mh_chain_program(const plm_mh_chain *ch);
plm_rng *plm_mh_chain_rng(plm_mh_chain *ch);
int plm_mh_chain_warm(const plm_mh_chain *ch);

/* Run the program into out (a trace not the chain's): cons's latent values imposed by address, old's reused
** where they fit (plm_mh_choose), new sites drawn from rng; *fresh receives the log density of the fresh draws.
** PLM_OK with *rejected = 0 after a complete run; PLM_OK with *rejected = 1 when the program rejected the run
** (the message in why, n bytes); PLM_EINVAL naming a site of cons that the run did not sample; another
** status from the program. */
plm_status plm_mh_chain_propose(plm_ctx *ctx, plm_mh_chain *ch, plm_rng *rng, const plm_trace *old,
                                const plm_trace *cons, plm_trace *out, double *fresh, int *rejected, char *why,
                                size_t n);

/* The log Metropolis-Hastings ratio of the move old -> nw, nw proposed by plm_mh_chain_propose from old with
** cons and fresh, less the proposal ratio of cons's values (the caller's): score difference, fresh draws in the
** forward density, the old values nw dropped in the reverse one; -inf when the reverse move is impossible
** (see the top of mh_trace.c). */
double plm_mh_trace_logratio(const plm_trace *old, const plm_trace *nw, const plm_trace *cons, double fresh);

/* Copy the sites, values and scores of src into dst (cleared first; distributions shared). */
plm_status plm_mh_trace_copy(plm_ctx *ctx, plm_trace *dst, const plm_trace *src);

/* Make a copy of tr the chain's current trace. */
plm_status plm_mh_chain_set(plm_ctx *ctx, plm_mh_chain *ch, const plm_trace *tr);

/* The trace MH (the default kernel) on the sites named by sites[0..nsites-1] (as plm_mh_opts.sites; nsites = 0:
** every site), its random-walk scales starting at scale (0: 0.5). Names are copied. GC kernel. */
plm_status plm_trace_kernel_mh(plm_ctx *ctx, const char *const *sites, int nsites, double scale, plm_kernel **out);

/* Gibbs by enumeration on finite discrete sites of a dynamic trace (bernoulli, categorical, binomial; names
** as for the MH; nsites = 0: every discrete site): each other value of the site is scored by running the
** program with it, the other sites held, and the value drawn from the exact conditional. A value that makes
** sites appear draws them from their priors, and the weights account for it (prior as pseudo-prior, Carlin
** and Chib 1995; see mh_trace.c), so switching sites on and off is exact. Refused (PLM_EINVAL naming the
** sites): a site present under some other values but not all (neither shared nor exclusive), a site whose
** distribution changes kind, a site of infinite support. A value under which another site's value leaves
** its support has probability 0. Statistic: 1. GC kernel. */
plm_status plm_trace_kernel_gibbs(plm_ctx *ctx, const char *const *sites, int nsites, plm_kernel **out);

#endif
