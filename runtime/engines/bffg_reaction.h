/* bffg_reaction.h -- reaction networks (continuous-time jump processes on species counts) as BFFG kernels.
** A network has d species and R reactions; reaction r fires at rate lambda_r(x) (a compiled expression of the
** counts x and the parameters) and changes x by its stoichiometry S_r (d integers). Between observation times
** the backward filter uses the linear-noise approximation (LNA) as a linear Gaussian auxiliary diffusion, and
** forward guiding simulates the jump process exactly under guided intensities lambda_r(x) h(x + S_r) / h(x),
** weighting each path by the exact likelihood ratio of the two jump processes. See bffg_reaction.c. */
#ifndef PLM_BFFG_REACTION_H
#define PLM_BFFG_REACTION_H

#include "bffg.h"
#include "expr.h"

#define PLM_RX_MAX_SPECIES 64
#define PLM_RX_MAX_REACTIONS 128

typedef struct plm_reactions plm_reactions;

/* The network: graph g holds the rates, rate[r] (R nodes) reading inputs P (np parameters, values params) and
** X (the d species counts). S is R*d (row r: the change of reaction r). Compiles the rates and their Jacobian
** d lambda_r / d x_j. GC memory; params and S are copied. PLM_EINVAL on bad sizes (named). */
plm_status plm_reactions_new(plm_ctx *ctx, plm_graph *g, int d, int R, int np, const double *S, const int *rate,
                             const double *params, plm_reactions **out);

/* The network's parameter values (np). */
const double *plm_reactions_params(const plm_reactions *net);

/* A copy of net with its parameters set to params (np values; the compiled rates are shared). */
plm_status plm_reactions_with(plm_ctx *ctx, const plm_reactions *net, const double *params, plm_reactions **out);

/* Sizes of a network. */
void plm_reactions_size(const plm_reactions *net, int *d, int *R, int *np);

/* The R rates at the state x (d values) into lambda. */
plm_status plm_reactions_rates(plm_ctx *ctx, const plm_reactions *net, const double *x, double *lambda);

/* The deterministic rate equation dx/dt = sum_r S_r lambda_r(x) by classical Runge-Kutta (steps of at most dt)
** from x0 at times[0] through the increasing times[0..n-1]: out (n*d) receives the state at each. */
plm_status plm_reactions_ode(plm_ctx *ctx, const plm_reactions *net, const double *x0, size_t n, const double *times,
                             double dt, double *out);

/* One exact path (Gillespie's direct method) from x0 at times[0], the state at each of times[0..n-1] into out
** (n*d), random stream (seed, stream). PLM_EDOM names a rate that is negative or not finite, PLM_EINVAL a path
** with more than max_jumps jumps (0: 1e8), PLM_EINTR. */
plm_status plm_reactions_simulate(plm_ctx *ctx, const plm_reactions *net, const double *x0, size_t n, const double *times,
                                  uint64_t seed, uint64_t stream, size_t max_jumps, double *out);

/* The kernel: X(t1) given X(t0) = parent, in R^d (counts as doubles).
** Backward: the child's Gaussian message is pulled back through the LNA dX = (B(t) X + beta(t)) dt + sigma(t) dW,
** B = sum_r S_r grad lambda_r(x*)', beta = sum_r S_r lambda_r(x*) - B x*, a = sigma sigma' = sum_r lambda_r(x*) S_r S_r'
** at a reference x*(t), constant on each grid step (its exact Gaussian transition there: plm_bffg_aux_transition).
** x* follows the rate equation from `at` at t0 (ode = 1) or stays at `at` (ode = 0).
** Forward: on grid step k the guided intensities are lambda_r(x) exp(S_r'(F - H x) - S_r'H S_r / 2) ((F, H) the
** mean of the messages at the step's two ends), a time-homogeneous jump process within the step that is simulated exactly by
** Gillespie's method, so the path's log weight
**   integral of (guided - original total intensity) dt + sum over jumps of log(lambda_r / guided lambda_r)
** is the exact log density of the true process against the guided one, whatever the grid: the grid sets how
** closely the guiding follows the message, not the weight. omit (negative controls for tests only, not a user
** option): 1 drops the integral, 2 the jump terms. A reaction node cannot be observed itself (observe it through a
** linear_gaussian kernel). For pCN (plm_bffg_mcmc) a path is a function of M + 1 standard normals: Phi of the
** first M are its first M uniforms (M: the grid steps plus four per expected event along the reference), the bits
** of the last seed the stream of any further ones. */
typedef struct plm_bffg_reaction_opts {
    double t0, t1, dt;    /* the interval t0 < t1 and the grid step dt > 0 */
    const double *at;     /* d: the reference state at t0 */
    int ode;              /* 1: the reference follows the rate equation from `at`; 0: constant */
    int omit;             /* 0 (the exact weight) */
} plm_bffg_reaction_opts;
plm_status plm_bffg_kernel_reaction(plm_ctx *ctx, const plm_reactions *net, const plm_bffg_reaction_opts *o,
                                    plm_bffg_kernel **out);

/* The network a reaction kernel was made from (kept by plm_bffg_kernel_reaction_with), or NULL for other kinds. */
const plm_reactions *plm_bffg_kernel_reaction_of(const plm_bffg_kernel *k);

/* The reaction kernel k remade with the network's parameters set to params: the same interval, grid, reference
** start and innovations count, the reference path and the linear-noise filter recomputed. Safe to call from several
** threads at once. */
plm_status plm_bffg_kernel_reaction_with(plm_ctx *ctx, const plm_bffg_kernel *k, const double *params,
                                         plm_bffg_kernel **out);

#endif
