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
    int max_tries;              /* accept-reject rounds before the fall-back (Dau and Chopin's hybrid) */
    /* PaRIS: the fall-back for the draws still waiting after max_tries rounds: mh_steps > 0 runs that many
    ** independent Metropolis-Hastings steps (proposals from W_{t-1}) started at the particle's own ancestor,
    ** O(1) per draw, so a step costs O(N) (Dau and Chopin 2023); 0 uses the exact O(N) draw, which makes the
    ** cost O(N^2) times the fraction left waiting. FFBS always uses the exact draw. */
    int mh_steps;
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
    double mh;                    /* draws made by the Metropolis-Hastings fall-back */
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

/* An additive functional given as C: out[j][r] = h_j(t, xa[.. r], xb[.. r]) for r < n (component-major, ld n;
** at t = 1 xa is xb). */
typedef plm_status (*plm_paris_fn)(plm_ctx *ctx, void *ud, long t, size_t n, const double *xa, const double *xb,
                                   double **out);

/* plm_paris with the functional as C (K outputs). */
plm_status plm_paris_fn_run(plm_ctx *ctx, const plm_ssm *m, const plm_pf_result *h, int K, plm_paris_fn hfn,
                            void *hud, const plm_smooth_opts *o, double *out, plm_smooth_stats *stats);

/* On-line PaRIS: runs the filter pf on ys (its history option is ignored: none is kept) and the PaRIS steps
** inside it, so memory is O(N Ntilde (dim + K)) whatever T. The result equals plm_paris over the history of
** the same filter bit for bit. res receives the filter's result (logz, ...; free it with plm_pf_result_free).
** Errors: those of plm_pf_run and plm_paris. */
plm_status plm_paris_online(plm_ctx *ctx, const plm_ssm *m, long T, const double *ys, const plm_pf_opts *pf,
                            const plm_prog *hprog, const plm_smooth_opts *o, double *out, plm_smooth_stats *stats,
                            plm_pf_result *res);
plm_status plm_paris_online_fn(plm_ctx *ctx, const plm_ssm *m, long T, const double *ys, const plm_pf_opts *pf,
                               int K, plm_paris_fn hfn, void *hud, const plm_smooth_opts *o, double *out,
                               plm_smooth_stats *stats, plm_pf_result *res);

/* PaRIS one step at a time, for a caller that runs its own forward pass (PPG runs it inside conditional SMC,
** ppg.h). plm_paris_begin sets up N particles and K outputs (o is read at every step, so a caller may change
** o->seed between passes: each step draws from the stream (o->seed, 2^41 + t)); NULL and ctx set on bad
** options or no memory. plm_paris_next is the step to time t: x the particles of t (component-major, ld N),
** xp and lw those of t - 1 and their normalised log weights, anc the parents' indices, where the MH fall-back
** starts (each must be a draw from the backward kernel, as a filter's or ancestor sampling's parents are); all
** three unused at t = 1. plm_paris_indices gives the step's N * Ntilde backward draws (those of particle i at
** i * Ntilde + q), plm_paris_estimate out[j] = sum_i exp(lw_i) tau_ij for the weights of the current time. */
typedef struct plm_paris_state plm_paris_state;
plm_paris_state *plm_paris_begin(plm_ctx *ctx, const plm_ssm *m, size_t N, int K, plm_paris_fn hfn, void *hud,
                                 const plm_smooth_opts *o, plm_smooth_stats *stats);
plm_status plm_paris_next(plm_ctx *ctx, plm_paris_state *P, long t, const double *xp, const double *lw,
                          const double *x, const uint32_t *anc);
const uint32_t *plm_paris_indices(const plm_paris_state *P);
void plm_paris_estimate(const plm_paris_state *P, const double *lw, double *out);
void plm_paris_end(plm_paris_state *P);

/* The plm_paris_fn of a compiled functional (X the previous state, Z the state): fill a plm_paris_prog and pass
** plm_paris_prog_fn with it. */
typedef struct plm_paris_prog {
    const plm_ssm *m;
    const plm_prog *p;
    int nthreads;
} plm_paris_prog;
plm_status plm_paris_prog_fn(plm_ctx *ctx, void *ud, long t, size_t n, const double *xa, const double *xb,
                             double **out);

#endif
