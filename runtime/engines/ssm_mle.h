/* ssm_mle.h -- maximum likelihood for the parameters of a compiled state-space model (ssm.h) by stochastic
** approximation: theta_{k+1} = theta_k + gamma_k s_k / T with gamma_k = step k^(-kappa) and s_k an estimate of
** the score. Two estimates of the score:
**   score: Fisher's identity, grad log p(y | theta) = E[sum_t grad log p(x_t | x_{t-1}) + grad log p(y_t | x_t)
**          | y], the smoothed additive functional computed by on-line PaRIS (smooth.h) inside a bootstrap filter
**          -- unbiased up to the particle approximation, a fresh filter every iteration;
**   ppg:   the same functional computed by PPG (ppg.h; Cardoso et al. 2023): PaRIS inside one conditional SMC
**          sweep per iteration, conditional on the reference path of the previous iteration's sweep (traced
**          back through the backward draws), so that, as in Markov score climbing, the score estimate comes
**          from a Markov chain whose law at theta is the smoothing distribution, not from a biased filter;
**   msc:   Markov score climbing (Naesseth, Lindsten and Blei 2020): the gradient of the complete-data log density
**          at a path drawn by conditional SMC with ancestor sampling (pgibbs.h) from the previous path, a Markov
**          chain whose stationary law at theta is p(x | y, theta), so the iterates converge to a root of the score.
** The gradients are the compiled symbolic derivatives of the model's log densities (plm_ssm_logjoint_grad).
** Every draw comes from streams fixed by (seed, iteration), so results do not depend on the thread count. */
#ifndef PLM_SSM_MLE_H
#define PLM_SSM_MLE_H

#include <stdint.h>

#include "ssm.h"

typedef enum plm_mle_method { PLM_MLE_SCORE, PLM_MLE_MSC, PLM_MLE_PPG } plm_mle_method;

typedef struct plm_mle_opts {
    plm_mle_method method;
    long iters;            /* >= 1 */
    double step, kappa;    /* gamma_k = step * k^-kappa; step > 0, kappa in (0.5, 1] (Robbins-Monro) */
    size_t N;              /* particles (>= 2) */
    int Ntilde;            /* score and ppg: PaRIS backward draws */
    uint64_t seed;
    int nthreads;
    int nfree;             /* the parameters learnt: indices into m->params, the others keep their values */
    const int *idx;
} plm_mle_opts;

void plm_mle_opts_default(plm_mle_opts *o);

/* Run from the values in m->params (all set); traj receives (iters + 1) * nfree values, row k the iterate after
** k steps (row 0 the start). m->params holds the last iterate on return (also on failure: the last good one).
** A step that leaves the parameters' domain (the filter or a density fails with PLM_EDOM) is halved, up to 30
** times, then PLM_EDOM. PLM_ENOTSUP when a density has no derivative; PLM_EINVAL for bad options; PLM_EINTR. */
plm_status plm_mle_run(plm_ctx *ctx, plm_ssm *m, long T, const double *ys, const plm_mle_opts *o, double *traj);

#endif
