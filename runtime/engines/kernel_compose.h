/* kernel_compose.h -- kernels made of kernels: any kernel restricted to some coordinates of the point (the
** others held fixed), and the cycle, mixture and repetition of kernels. Every kernel acts on the whole point u
** of its target; a restricted kernel hands its child a view of the target on the chosen coordinates, so a
** kernel written for a whole target (NUTS, HMC, random-walk MH, slice) runs on a block unchanged, with its own
** adaptation state in each chain. Composites report their children's statistics as extra columns named
** "k<i>.accept_stat__", "k<i>.stepsize__", ... (i: the child's position, from 1), after their own. All
** kernels made here are GC memory; they keep pointers to their children. */
#ifndef PLM_KERNEL_COMPOSE_H
#define PLM_KERNEL_COMPOSE_H

#include "mcmc.h"

/* inner run on the coordinates idx[0..n-1] of the target (distinct, each < the target's dimension; idx is
** copied), the others held fixed. The view's log density is the target's at the full point, so it differs
** from the conditional density only by a constant; its gradient is the target's, gathered. The statistic
** and diagnostics are inner's. PLM_EINVAL for an empty or repeated coordinate list. A chain on a target
** of too few coordinates fails to start (its state cannot be made). */
plm_status plm_kernel_restrict(plm_ctx *ctx, const plm_kernel *inner, const int *idx, int n, plm_kernel **out);

/* Apply ks[0], ..., ks[n-1] in turn each iteration. Statistic: the mean of the children's. */
plm_status plm_kernel_cycle(plm_ctx *ctx, const plm_kernel *const *ks, int n, plm_kernel **out);

/* Each iteration, apply one child picked with probability w[i] / sum(w) (weights finite, >= 0, not all 0),
** drawn from the chain's own stream. Statistic: the chosen child's; a child's columns read NaN in iterations
** where it did not run. During warm-up every child adapts every iteration, an idle one with the mean of
** its statistics so far, since the adaptation schedules (Stan's windows) count iterations. */
plm_status plm_kernel_mixture(plm_ctx *ctx, const plm_kernel *const *ks, const double *w, int n, plm_kernel **out);

/* Apply k n times (n >= 1) per iteration. Statistic and diagnostics: those of the last application; k adapts
** once per iteration. */
plm_status plm_kernel_rep(plm_ctx *ctx, const plm_kernel *k, int n, plm_kernel **out);

/* The children of a composite made here (cycle, mixture, rep; restrict has one), or 0 for other kernels. */
int plm_kernel_children(const plm_kernel *k, const plm_kernel *const **children);

#endif
