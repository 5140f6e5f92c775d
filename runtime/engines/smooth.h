/* smooth.h -- particle smoothing over a filter's history (pfilter.h with history on): forward filtering
** backward sampling (FFBS) of whole trajectories, exact (O(N) per draw) or by accept-reject against a bound
** of the transition density with the exact draw as fall-back (Dau and Chopin 2023), and PaRIS (Olsson and
** Westerborn 2017) for smoothed additive functionals. Draws of trajectory j (or particle i) come from their
** own streams, so results do not depend on threads. Outputs are caller-owned. */
#ifndef PLM_SMOOTH_H
#define PLM_SMOOTH_H

#include "pfilter.h"

typedef struct plm_smooth_opts {
    size_t M;                   /* FFBS: trajectories; PaRIS: unused */
    int Ntilde;                 /* PaRIS: backward draws per particle (>= 1; 2 is the usual choice) */
    int rejection;              /* 1: accept-reject first (needs a bound), then the exact draw */
    int max_tries;              /* accept-reject rounds before the exact draw (Dau and Chopin's hybrid) */
    /* log of an upper bound of p(x_t | x_{t-1}) over both states at time t: a program with one output and
    ** only uniform inputs (parameters, time, covariates), or, when NULL, the constant log_bound_const */
    const plm_prog *log_bound;
    double log_bound_const;
    const plm_ssm_gauss *gauss;   /* used when neither is given: the bound of a Gaussian transition */
    uint64_t seed;
    int nthreads;
} plm_smooth_opts;

typedef struct plm_smooth_stats {
    double proposals, accepted;   /* accept-reject proposals made and accepted */
    double exact;                 /* draws made by the exact O(N) kernel */
} plm_smooth_stats;

void plm_smooth_opts_default(plm_smooth_opts *o);

/* FFBS: o->M trajectories from the history h of a filter of m: paths[((t-1)*dim + k)*M + j]. means and vars
** (T*dim, may be NULL) receive the trajectories' average and variance per time and component. PLM_EINVAL
** without history, or when a transition density exceeds the bound (names t); PLM_EINTR; PLM_ENOMEM. */
plm_status plm_ffbs(plm_ctx *ctx, const plm_ssm *m, const plm_pf_result *h, const plm_smooth_opts *o, double *paths,
                    double *means, double *vars, plm_smooth_stats *stats);

/* PaRIS: the smoothed expectation of S = sum_t h_t(x_{t-1}, x_t) for the K outputs of the program hprog
** (reading the previous state X and the state Z, both varying; at t = 1 X is bound to x_1 itself). out gets
** K values. Same errors as plm_ffbs. */
plm_status plm_paris(plm_ctx *ctx, const plm_ssm *m, const plm_pf_result *h, const plm_prog *hprog,
                     const plm_smooth_opts *o, double *out, plm_smooth_stats *stats);

#endif
