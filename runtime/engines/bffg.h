/* bffg.h -- backward filtering, forward guiding (van der Meulen and Schauer, "Automatic Backward Filtering
** Forward Guiding for Markov processes and graphical models") on a DAG of Markov kernels. Every node but a
** root has one parent and is reached from it through a kernel, or several parents (see plm_bffg_add_multi);
** observed nodes are leaves. The backward filter
** carries each observation toward the roots as a message h(x) = p(observations below x | x), exact here:
** a rescaled vector for discrete states, log h(x) = c + F'x - x'Hx/2 for Gaussian ones; a node with several
** children fuses their messages. Forward guiding then draws every latent node from its kernel tilted by its
** message (the h-transform) and weights the draw by log p(x, y) - log q(x), edge by edge. With exact messages
** the weight is the same for every draw and equals log p(y); a kernel may carry an auxiliary kernel that the
** backward filter uses in its place, and then the weights correct for the difference.
** Kernels, models and filters are GC memory (never freed); draws and weights are caller-owned buffers.
** Discrete states are 0-based and stored as doubles in value and draw buffers. */
#ifndef PLM_BFFG_H
#define PLM_BFFG_H

#include <stddef.h>
#include <stdint.h>

#include "ctmc.h"
#include "ctx.h"
#include "resample.h"
#include "sde.h"

/* ---- Kernels ------------------------------------------------------------------------------------------ */

/* A Markov kernel from a parent space to a child space, each either discrete (K states) or R^d. A kernel
** with input dimension 0 is a prior: it is the kernel of a root. Opaque; see bffg_impl.h. */
typedef struct plm_bffg_kernel plm_bffg_kernel;

/* Discrete transitions: P is Kin*Kout row-major, each row a probability vector (entries >= 0, summing to 1
** within 1e-9). Kin = 0 makes a prior over Kout states with P its one row. */
plm_status plm_bffg_kernel_discrete(plm_ctx *ctx, int Kin, int Kout, const double *P, plm_bffg_kernel **out);

/* Linear-Gaussian: y ~ N(B x + beta, Q), x in R^din, y in R^dout. B is dout*din (ignored when din = 0: a
** Gaussian prior N(beta, Q)), beta dout (NULL: zero), Q dout*dout symmetric positive semi-definite (a
** singular Q, even Q = 0, is allowed for latent children; an observed child needs Q positive definite). */
plm_status plm_bffg_kernel_linear_gaussian(plm_ctx *ctx, int dout, int din, const double *B, const double *beta,
                                           const double *Q, plm_bffg_kernel **out);

/* A finite continuous-time Markov chain run for time t >= 0: the discrete kernel P = exp(Q t) of the chain. */
plm_status plm_bffg_kernel_ctmc(plm_ctx *ctx, const plm_ctmc *chain, double t, plm_bffg_kernel **out);

/* Brownian motion in R^d with covariance rate Sigma (d*d, symmetric positive semi-definite) over time t >= 0:
** y ~ N(x, t Sigma). */
plm_status plm_bffg_kernel_brownian(plm_ctx *ctx, int d, const double *Sigma, double t, plm_bffg_kernel **out);

/* A diffusion dX = b(X, t) dt + sigma(X, t) dW (a compiled plm_sde, its parameters read now) run from time t0
** to t1: the child is X(t1) given X(t0) = parent. No transition density is known, so the backward filter uses a
** linear auxiliary diffusion dX~ = (B~ X~ + beta~) dt + sigma~ dW whose transition over each grid step is
** exactly Gaussian (plm_bffg_aux_transition), and forward guiding simulates the guided diffusion
** dX = b dt + a r dt + sigma dW (a = sigma sigma', r(t, x) = grad log h~(t, x) = F(t) - H(t) x) by Euler on the
** grid, weighting each path by the likelihood ratio of guided proposals (Schauer, van der Meulen and van Zanten
** 2017): log h~(t0, x) - log h(t1, X(t1)) + integral of G(s, X(s)) ds, with
** G = (b - b~)'r - tr[(a - a~)(H - r r')] / 2 (a left Riemann sum on the grid). The auxiliary is
** linearisation at `at` (B~ = Jacobian of b, beta~ = b - B~ at, sigma~ = sigma, all at (at, t0)) for whatever
** of B, beta, a is not given. A diffusion node cannot be observed itself (observe its value through a kernel). */
typedef struct plm_bffg_sde_opts {
    double t0, t1;        /* the interval, t0 < t1 */
    double dt;            /* grid step > 0: steps of dt, the last one shortened to land on t1 */
    int time_change;      /* 1: ceil((t1 - t0) / dt) steps at t0 + (t1 - t0) u (2 - u), u uniform in [0, 1]:
                          ** the steps shrink linearly toward t1, where guided paths bend hardest */
    const double *at;     /* d: the linearisation point (NULL: B, beta and a must all be given) */
    const double *B;      /* d*d auxiliary drift matrix B~, or NULL */
    const double *beta;   /* d, or NULL (with B given: zero) */
    const double *a;      /* d*d auxiliary diffusion covariance a~ = sigma~ sigma~' (positive semi-definite), or NULL */
} plm_bffg_sde_opts;
plm_status plm_bffg_kernel_sde(plm_ctx *ctx, const plm_sde *s, const plm_bffg_sde_opts *o, plm_bffg_kernel **out);

/* Diffusion kernel k over the piece [t0, t1] of its interval: the same sde, parameters, options and auxiliary (the
** linearisation at the same point, made at the piece's t0; the grid restarts at t0, so pieces that start on k's grid
** points keep its steps). A chain of pieces covering k's interval is the same process as k, observed at the cuts
** (plume's markov_kernel.sde{save = ...}). PLM_EINVAL when k is not a diffusion kernel or the piece not inside. */
plm_status plm_bffg_kernel_sde_piece(plm_ctx *ctx, const plm_bffg_kernel *k, double t0, double t1, plm_bffg_kernel **out);
/* The interval [*t0, *t1] of diffusion kernel k (NaN for other kinds). */
void plm_bffg_kernel_sde_span(const plm_bffg_kernel *k, double *t0, double *t1);
/* The sde of a diffusion kernel (NULL for other kinds). */
const plm_sde *plm_bffg_kernel_sde_of(const plm_bffg_kernel *k);
/* 1 when the guided paths of diffusion kernel k evaluate its drift with native code (expr_native.h) now, 2 when
** moreover paths driven by given innovations (pCN) run their whole Euler loop natively (a drift that does not read
** the time, a diffusion that reads neither time nor state), 0 when with the interpreter (native code off, or it
** could not be compiled) or k is not a diffusion kernel. */
int plm_bffg_kernel_sde_native(const plm_bffg_kernel *k);

/* The diffusion kernel k remade with the sde's parameters set to params (np values; s itself is not changed):
** the same interval, grid and auxiliary options, the linearisation redone at the new parameters. Safe to call
** from several threads at once. PLM_EINVAL when params give a non-finite or degenerate auxiliary. */
plm_status plm_bffg_kernel_sde_with(plm_ctx *ctx, const plm_bffg_kernel *k, const double *params, plm_bffg_kernel **out);

/* A nonlinear Gaussian kernel y ~ N(mu(x), Q) in R^d -> R^d: mu is the compiled drift of s (a plm_sde used for
** its drift program and Jacobian, parameters read now), Q constant (as for linear_gaussian). The backward filter
** uses the linearisation at `at` (B = J(at), beta = mu(at) - J(at) at: an auxiliary kernel), the guided draw
** comes from N(mu(x), Q) tilted by the message, and the weights correct exactly for the linearisation. When mu is
** linear the kernel equals linear_gaussian. */
plm_status plm_bffg_kernel_nonlinear(plm_ctx *ctx, const plm_sde *s, const double *Q, const double *at,
                                     plm_bffg_kernel **out);

/* Increments of a gamma process over time t > 0: y = x + G, G ~ Gamma(shape t, rate) (shape, rate > 0), in R^1.
** Messages through gamma kernels stay exact when the process is observed exactly (a gamma bridge): the
** observation y gives h(x) = Gamma(y - x; shape t, rate), and a pull-back convolves (shapes add, the rates must be
** equal). The guided increment is (y - x) Beta(shape t, k) (k: the shape ahead), which is the Dirichlet law of
** increments given the total, and its weight is constant. Other messages (a Gaussian observation) are refused. */
plm_status plm_bffg_kernel_gamma(plm_ctx *ctx, double shape, double rate, double t, plm_bffg_kernel **out);

/* The exact transition of dX = (B X + beta) dt + sigma dW over time h >= 0: X(h) | X(0) = x is
** N(Phi x + m, Q) with Phi = exp(B h), m = integral_0^h exp(B u) du beta, Q = integral_0^h exp(B u) a exp(B'u) du
** (a = sigma sigma', d*d). Phi and m come from the exponential of [[B, beta], [0, 0]] h, Q from Van Loan's
** block [[-B, a], [0, B']] h (whose exponential is [[*, K], [0, exp(B'h)]] with Q = exp(B'h)' K). */
plm_status plm_bffg_aux_transition(plm_ctx *ctx, int d, const double *B, const double *beta, const double *a, double h,
                                   double *Phi, double *m, double *Q);

/* E = exp(A) for the n*n matrix A (row-major; E may not alias A): Higham's scaling and squaring (SIAM J. Matrix
** Anal. Appl. 26, 2005) with the Pade approximant of the lowest degree (3, 5, 7, 9 or 13) whose backward error is
** below the unit roundoff at ||A||_1, scaling by 2^-s only above 5.37. PLM_EDOM when A is not finite. */
plm_status plm_expm(plm_ctx *ctx, int n, const double *A, double *E);

/* Give k an auxiliary kernel: the backward filter pulls messages back through aux instead of k (aux must map
** the same spaces). Forward guiding still draws from k tilted by the messages, and the weights correct for the
** difference, so a poor auxiliary costs effective samples, not correctness. PLM_EINVAL on a space mismatch. */
plm_status plm_bffg_kernel_set_aux(plm_ctx *ctx, plm_bffg_kernel *k, const plm_bffg_kernel *aux);

/* The spaces of k: *discrete_in / *discrete_out are 1 for discrete spaces; *din / *dout are K or d (din 0 for
** a prior); any pointer may be NULL. The kernel's kind name ("discrete", "linear_gaussian") is returned. */
const char *plm_bffg_kernel_info(const plm_bffg_kernel *k, int *discrete_in, int *din, int *discrete_out, int *dout);

/* ---- Models ------------------------------------------------------------------------------------------- */

typedef struct plm_bffg_model plm_bffg_model;

plm_status plm_bffg_model_new(plm_ctx *ctx, plm_bffg_model **out);

/* Add node `name` (unique, non-empty) with kernel k from node `parent` (an earlier latent node), or a root
** (parent = -1, k a prior). value NULL makes it latent; otherwise it is observed with that value (dout doubles,
** or one 0-based state; copied) and must stay a leaf. *index (or NULL) receives the node's index: nodes are
** numbered in the order added, so parents come before children. PLM_EINVAL names the node and the mismatch. */
plm_status plm_bffg_add(plm_ctx *ctx, plm_bffg_model *m, const char *name, int parent, const plm_bffg_kernel *k,
                        const double *value, int *index);

/* Add node `name` with several parents (nparents >= 2, distinct earlier latent nodes; 1 and 0 are plm_bffg_add): k
** (linear_gaussian or discrete) takes their stacked value -- the concatenation of their vectors in the order given,
** or for discrete parents the product state s_1 K_2 ... K_n + ... + s_n (the first parent slowest, rows of a
** conditional probability table). The parents are all continuous or all discrete. The message of such a node is a
** function of all its parents, and the exact filter needs their joint law given what lies above them, so latent
** nodes are merged into clusters (the junction-tree construction) until the parents outside each cluster lie in
** one node or cluster and the clusters and the other nodes form a forest; a cluster is filtered and drawn as one
** node whose kernel is its members' joint law (linear-Gaussian, or a table over the product of their states, at
** most 1e7 entries). Its members must have linear_gaussian or discrete kernels without an auxiliary. PLM_EINVAL
** names the node and the parent or member that breaks a rule; the model is then left as it was. */
plm_status plm_bffg_add_multi(plm_ctx *ctx, plm_bffg_model *m, const char *name, int nparents, const int *parents,
                              const plm_bffg_kernel *k, const double *value, int *index);

typedef struct plm_bffg_node_info {
    const char *name;
    int parent;        /* -1 for a root; the first parent of a node with several */
    int nparents;      /* 0 for a root */
    const int *parents;   /* nparents indices */
    int observed;
    int discrete;
    int dim;           /* states K (discrete) or d */
    int width;         /* doubles per value: 1 (discrete) or d */
    long offset;       /* where a latent node's value starts in a draw; -1 for observed nodes */
    const plm_bffg_kernel *kernel;
    const double *value;   /* observed value (width doubles), NULL for latent nodes */
} plm_bffg_node_info;

int plm_bffg_nnodes(const plm_bffg_model *m);
/* Node i (0 <= i < nnodes) into *info. */
void plm_bffg_node(const plm_bffg_model *m, int i, plm_bffg_node_info *info);
/* The index of the node called name, or -1. */
int plm_bffg_find(const plm_bffg_model *m, const char *name);
/* Doubles per draw: the widths of the latent nodes, in node order. */
size_t plm_bffg_draw_width(const plm_bffg_model *m);

/* ---- Backward filter ---------------------------------------------------------------------------------- */

/* A message h on a node: discrete h(k) = exp(c) v[k] with max v = 1 (all zero: h = 0); Gaussian
** log h(x) = c + F'x - x'Hx/2 with v = F and H dim*dim symmetric positive semi-definite. */
typedef struct plm_bffg_msg {
    int discrete, dim;
    double c;
    double *v;
    double *H;   /* NULL for discrete */
    /* gamma = 1 (dim 1, v = H = 0): the message of an exact observation y of a gamma process ahead,
    ** log h(x) = c + (gk - 1) log(gy - x) - gb (gy - x) for x < gy, h = 0 otherwise */
    int gamma;
    double gy, gk, gb;
} plm_bffg_msg;

typedef struct plm_bffg_filter plm_bffg_filter;

/* Run the backward filter over m. values (or NULL) overrides observed values: values[i] non-NULL replaces
** node i's value for this filter (it must be observed; values are copied). The filter refers to m, which must
** not change while the filter is used. PLM_EDOM when the observations have probability 0 under the model
** (the message names the highest node below which they do); PLM_EINVAL, PLM_ENOMEM, PLM_EINTR. */
plm_status plm_bffg_backward(plm_ctx *ctx, const plm_bffg_model *m, const double *const *values,
                             plm_bffg_filter **out);

/* The filter's log-likelihood: the sum over roots of log of the integral of the prior times the root's
** message. It is log p(observations) exactly when no kernel has an auxiliary. */
double plm_bffg_filter_loglik(const plm_bffg_filter *f);

/* Optional: return f's memory at once (its messages and guides; a diffusion's guide holds its messages at every
** grid point), rather than leave it to the collector. f and everything read from it must not be used again; the
** model is not touched. For callers that make many filters and keep none (a likelihood in a loop). */
void plm_bffg_filter_release(plm_bffg_filter *f);

/* The fused message at latent node i (NULL for an observed node, and for a member of a cluster drawn jointly
** because of a node with several parents: their message is one function on the joint space). */
const plm_bffg_msg *plm_bffg_message(const plm_bffg_filter *f, int i);

/* ---- Forward guiding ---------------------------------------------------------------------------------- */

/* n guided draws. Draw s uses random stream (seed, s), so results do not depend on threads (<= 0: default).
** draws (n * draw_width) receives the latent values in node order; logw (n) the total log weight
** log p(x, y) - log q(x); edge_logw (n * nnodes, or NULL) each node's share: log p(x_i | x_parent) - log q(x_i |
** x_parent) for a latent node (in the coordinates of its kernel's noise, see bffg_kernel.c), log p(y_i |
** x_parent) for an observed one. The total is their sum. PLM_EINTR when interrupted; PLM_EDOM when a guided draw
** failed (a diffusion path left the finite numbers), naming the first such draw and its node. */
plm_status plm_bffg_forward(plm_ctx *ctx, const plm_bffg_filter *f, size_t n, uint64_t seed, int threads,
                            double *draws, double *logw, double *edge_logw);

/* Guided sequential Monte Carlo along a chain (the latent nodes form one path from the root; observed leaves
** hang off it): n particles are drawn node by node from the guided kernels, weighted by the edge weights of
** forward guiding times the ratio of the backward messages ahead (so that with exact messages every weight is
** the same), and resampled (scheme) after each latent node with an observed child whenever the Kish ESS is
** <= ess_threshold * n (1: at every observation). *loglik receives the log of an unbiased estimate of p(y) (the
** product over stages of the weighted mean incremental weights). draws (n * draw_width) and logw (n: the
** final log weights, unnormalised) as for plm_bffg_forward; *resamples (or NULL) the number of resampling
** steps. Particle i at stage j draws from stream (seed, j * n + i), resampling from (seed, 2^64 - 1 - j), so the
** result does not depend on threads. PLM_EINVAL when the latent nodes are not a chain; PLM_EDOM when a guided
** draw fails or every particle gets weight 0 at some stage. */
plm_status plm_bffg_smc(plm_ctx *ctx, const plm_bffg_filter *f, size_t n, uint64_t seed, int threads,
                        plm_resample_scheme scheme, double ess_threshold, double *draws, double *logw, double *loglik,
                        size_t *resamples);

/* pCN MCMC over the innovations of the guided process, with random-walk Metropolis updates of diffusion or
** reaction-network parameters (van der Meulen and Schauer; BridgeSDEInference.jl). Every guided draw is a deterministic function
** of its innovations Z ~ N(0, I) (sample_z), and exp(logw(theta, Z)) is an unbiased estimate of p(y | theta),
** so the chain targets p(theta) N(Z; 0, I) exp(logw(theta, Z)), whose theta-marginal is the posterior and whose
** path, mapped through the guided process, is the posterior path. Each iteration does, in blocks:
**   1. the path: Z' = rho Z + sqrt(1 - rho^2) W, accepted with probability min(1, exp(logw(Z') - logw(Z)));
**   2. the parameters (when nparams > 0), block by block: eta' = eta + step_b W on the unconstrained scale of the
**      block's parameters' prior supports (log / logit / identity), the kernels remade at theta' and the backward
**      filter recomputed, accepted with min(1, exp(logw(theta', Z) - logw(theta, Z) + log prior and Jacobian ratio));
**      or, for a conjugate block (conjugate below), the path kept and the block drawn from its Gaussian conditional
**      given the path, accepted with the exact ratio (bffg_conj.c).
** With fixed_aux the auxiliary's B~ and a~ stay fixed after warm-up and step 2's filter is read off a cache.
** During warm-up rho and step adapt (Robbins-Monro on their logits / logs) toward target acceptance rates.
** Chain c draws from stream (seed, c); chains run in parallel, results do not depend on threads. */
typedef struct plm_bffg_mcmc_opts {
    size_t iters, warmup;        /* kept iterations per chain; warm-up iterations before them */
    int chains;                  /* >= 1 */
    double rho;                  /* the initial pCN correlation in [0, 1) */
    double target_accept;        /* pCN acceptance targeted during warm-up, in (0, 1); 0: keep rho fixed */
    double step;                 /* the initial random-walk step of the parameters (unconstrained scale) > 0 */
    double target_accept_theta;  /* parameter acceptance targeted during warm-up; 0: keep step fixed */
    const plm_sde *sde;          /* the diffusion whose parameters are inferred (NULL when nparams = 0): every
                                 ** diffusion kernel of the model made from it is remade at new parameters */
    const struct plm_reactions *net;   /* or (sde NULL) the reaction network whose parameters are inferred: every
                                       ** reaction kernel made from it is remade, its linear-noise filter recomputed */
    int nparams;
    const int *index;            /* nparams indices into the sde's parameters */
    const plm_dist *const *prior;   /* nparams scalar continuous priors */
    const double *init;          /* nparams initial values (NULL: the sde's current values) */
    const char *const *names;    /* nparams names for messages (NULL: messages give the sde's parameter numbers) */
    const int *block;            /* nparams block numbers in 0..nblocks-1, each used (NULL: all in one block): every
                                 ** iteration moves each block in turn by its own random walk, with its own step
                                 ** adapted during warm-up (parameters on different scales, or weakly identified
                                 ** together, mix better apart) */
    int nblocks;
    const int *conjugate;        /* nblocks flags (NULL: none): a block flagged 1 is moved by a conjugate update instead of
                                 ** a random walk (2: by a conjugate update, then by its random walk: the path kept, then
                                 ** the path moved with the parameters, which mixes where either alone is slow), for sde parameters that enter the drift linearly and not the diffusion,
                                 ** and only the drift of coordinates the noise drives (1 to 4 in a block; bffg_conj.c):
                                 ** the path stays, the block is proposed from its Gaussian conditional given the path
                                 ** under the Euler likelihood (times its priors where they are normal), the innovations
                                 ** that give the same path under the new guides replace Z, and the move is accepted
                                 ** with the exact ratio of the target (nearly always). Every latent node must have one
                                 ** parent; latent nodes that are not diffusions must be linear-Gaussian */
    int fixed_aux;               /* 0: every parameter move remakes the kernels (the auxiliary relinearised at theta')
                                 ** and recomputes the backward filter. 1: the auxiliary's B~ and a~ are those of the
                                 ** linearisation at theta_a (the current theta at warm-up iterations warmup/8, /4,
                                 ** /2 and 3/4, then fixed) and only its intercept beta~ follows theta'; the filter at
                                 ** theta' is then read off a cache made at theta_a for 2-d diffusions (see
                                 ** bffg_mcmc.c); the target is exact either way */
    int adapt_cov;               /* 1: during warm-up each random-walk block (up to 8 parameters) learns the shape of
                                 ** its proposal from the covariance of its free parameters (bffg_mcmc.c, rw_shape);
                                 ** 0: an isotropic step on the free scale */
    uint64_t seed;
    int threads;
    /* Optional (NULL: none): called with every kept draw as soon as it is made -- chain in 0..chains-1, k its index
    ** in the chain from 0, row its nparams + draw_width values as in draws, loglik as in loglik -- so that a caller
    ** can write draws as they come (an interrupted or failed run keeps them). Calls are serialised (one at a time
    ** whatever the thread count) and in order within a chain. A nonzero return stops every chain: plm_bffg_mcmc
    ** then fails with PLM_EIO. */
    int (*emit)(void *ud, int chain, size_t k, const double *row, size_t len, double loglik);
    void *emit_ud;
} plm_bffg_mcmc_opts;

/* Run o->chains chains over model m (values as for plm_bffg_backward). Outputs (caller-owned):
** draws: chains * iters rows of nparams + draw_width doubles (the parameters, then the latent node values);
** loglik: chains * iters values of logw(theta, Z) at the kept states (or NULL);
** stats: chains * 5 values: pCN acceptance rate and parameter acceptance rate after warm-up (over all blocks' moves),
** final rho, final step (the first block's; NaN when it is conjugate), the conjugate blocks' acceptance rate after
** warm-up (NaN when there are none) (or NULL). PLM_EINVAL on bad options (named), PLM_EDOM when no finite starting state is found, PLM_EINTR. */
plm_status plm_bffg_mcmc(plm_ctx *ctx, const plm_bffg_model *m, const double *const *values, const plm_bffg_mcmc_opts *o,
                         double *draws, double *loglik, double *stats);

/* Kish's effective sample size (sum w)^2 / sum w^2 of n log weights (0 when all are -inf). */
double plm_bffg_ess(const double *logw, size_t n);

/* log of the mean of exp(logw): the importance-sampling estimate of log p(y). */
double plm_bffg_logmeanexp(const double *logw, size_t n);

/* ---- Trees -------------------------------------------------------------------------------------------- */

/* A rooted tree from Newick text. Nodes are in preorder (a parent before its children; node 0 is the root).
** Unnamed nodes are named "node<i>" (i their index); length[i] is the branch into node i (NaN when the text
** gives none; the root's is its optional length). GC memory. */
typedef struct plm_tree {
    int n, ntips;
    int *parent;      /* -1 for the root */
    double *length;
    char **name;
    int *tip;         /* 1 for leaves */
} plm_tree;

/* Parse s: "((A:1,B:2)AB:0.5,C:1.5);". Quoted names ('a b', with '' for a quote), [comments] and white space
** are allowed; the final ';' may be omitted. PLM_EPARSE names the line and column and what was expected;
** duplicate names and negative or non-finite lengths are errors too. */
plm_status plm_tree_newick(plm_ctx *ctx, const char *s, plm_tree **out);

#endif
