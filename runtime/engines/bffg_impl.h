/* bffg_impl.h -- the insides of BFFG kernels, shared by bffg.c (the engine) and bffg_kernel.c (the kernels).
** A kernel kind is a table of functions (plm_bffg_kernel_ops): the engine never looks at a kernel's fields, so
** a new kind of kernel is a new table. Not installed. */
#ifndef PLM_BFFG_IMPL_H
#define PLM_BFFG_IMPL_H

#include "bffg.h"
#include "rng.h"
#include "sde.h"

typedef struct plm_bffg_kernel_ops {
    const char *name;
    /* The message on the parent, h(x) = integral of k(y | x) child(y) dy, into out (allocated by the engine for
    ** the parent's space; dim 0 for a prior, which leaves only out->c). */
    plm_status (*pullback)(plm_ctx *ctx, const plm_bffg_kernel *k, const plm_bffg_msg *child, plm_bffg_msg *out);
    /* The message on the parent of an observed child with value y: h(x) = k(y | x). */
    plm_status (*observe)(plm_ctx *ctx, const plm_bffg_kernel *k, const double *y, plm_bffg_msg *out);
    /* Precompute the guided kernel q(y | x) proportional to k(y | x) child(y); *guide receives GC memory. */
    plm_status (*guide)(plm_ctx *ctx, const plm_bffg_kernel *k, const plm_bffg_msg *child, void **guide);
    /* Draw y from the guided kernel at parent value x (NULL for a prior) and return log k(y|x) - log q(y|x).
    ** work holds `work` doubles. No allocation: this runs once per draw per node. */
    double (*sample)(const plm_bffg_kernel *k, const void *guide, const double *x, double *y, plm_rng *r,
                     double *work);
    /* log k(y | x) of an observed value. NULL (with observe NULL) for kernels that cannot be observed
    ** directly, such as diffusions: their child is observed through another kernel. */
    double (*logpdf)(const plm_bffg_kernel *k, const double *x, const double *y, double *work);
    /* The same draw as a function of its innovations: z holds the kernel's nz standard normals, which take the
    ** place of the random stream (a discrete draw reads its uniform as Phi(z[0])). pCN MCMC moves z. */
    double (*sample_z)(const plm_bffg_kernel *k, const void *guide, const double *x, const double *z, double *y,
                       double *work);
    /* Optional (NULL: the engine calls pullback): the message on the parent read off a guide made by `guide`,
    ** for kinds whose guide already holds it (a diffusion's guide is the whole backward pass). */
    void (*guide_msg)(const plm_bffg_kernel *k, const void *guide, plm_bffg_msg *out);
    /* Optional: return the memory of a guide made by `guide` at once (plm_bffg_filter_discard); the guide must not
    ** be used again. */
    void (*guide_free)(const plm_bffg_kernel *k, void *guide);
    /* Optional (the conjugate parameter update of pCN, bffg_conj.c; NULL: not supported): the inverse of sample_z,
    ** the innovations z with which sample_z under guide draws y from x. zold: y's innovations under gold, the guide
    ** before, for kinds where y does not determine them all. work holds `work` + 2 dout + dout^2 doubles. A z it
    ** cannot find is NaN. */
    void (*unsample_z)(const plm_bffg_kernel *k, const void *gold, const void *guide, const double *x, const double *y,
                       const double *zold, double *z, double *work);
    /* Optional (NULL: guide allocates for itself): the doubles of grid storage a guide of k will need, and guide
    ** made with that storage given (mem, from one block the engine allocates for the whole filter and returns with
    ** it: a diffusion's guide holds its messages at every grid point, and a parameter move of pCN makes one per
    ** kernel). guide_mem may return 0 (a guide that needs none), and guide_at accepts mem NULL. */
    size_t (*guide_mem)(const plm_bffg_kernel *k);
    plm_status (*guide_at)(plm_ctx *ctx, const plm_bffg_kernel *k, const plm_bffg_msg *child, double *mem, void **guide);
} plm_bffg_kernel_ops;

struct plm_bffg_kernel {
    const plm_bffg_kernel_ops *ops;
    int discrete_in, discrete_out;
    int din, dout;                   /* K or d; din = 0 for a prior */
    size_t work;                     /* doubles of workspace for sample and logpdf */
    size_t nz;                       /* innovations (standard normals) per draw, for sample_z */
    const plm_bffg_kernel *aux;      /* the backward filter pulls back through this one (NULL: itself) */
    /* discrete */
    double *P;                       /* max(din,1) * dout */
    /* linear-Gaussian */
    double *B, *beta;                /* dout*din, dout */
    double *G;                       /* dout*r factor of Q: G G' = Q */
    int r;                           /* rank of Q */
    double *L;                       /* lower Cholesky factor of Q when Q is positive definite, else NULL */
    double logdetL;                  /* sum of log L_ii */
    /* nonlinear Gaussian: the mean mu(x) is this sde's compiled drift (its parameters frozen), in place of B x + beta
    ** (B, beta then hold the linearisation that the auxiliary uses) */
    const plm_sde *mean;
    /* other kinds (diffusions: bffg_sde.c) keep their own state here */
    void *impl;
};

/* Small dense helpers (bffg_kernel.c; row-major, n x n). plm_bffg_chol_lower: A's lower Cholesky factor in place
** (upper triangle zeroed), *logdet = sum log L_ii; 0, or -1 when A is not positive definite. plm_bffg_solve_lower:
** x := L^-1 x, x with stride s. plm_bffg_solve_lower_t: x := L^-T x. */
int plm_bffg_chol_lower(double *A, int n, double *logdet);
void plm_bffg_solve_lower(const double *L, int n, double *x, int s);
void plm_bffg_solve_lower_t(const double *L, int n, double *x);

/* For the MCMC engine (bffg_mcmc.c). */
/* Innovations per draw of the whole model: the sum of the latent nodes' kernels' nz. */
size_t plm_bffg_nz(const plm_bffg_model *m);
/* Doubles of workspace one draw needs under f. */
size_t plm_bffg_filter_work(const plm_bffg_filter *f);
/* The guided draw with innovations z (plm_bffg_nz doubles, node by node) into row; returns its total log weight
** (NaN when a kernel's draw failed). */
double plm_bffg_draw_z(const plm_bffg_filter *f, const double *z, double *row, double *work);
/* Return the memory of f's guides at once; f must not be used again. pCN MCMC discards the filters of rejected
** parameter proposals this way: their guides (a diffusion's messages at every grid point) are most of what a
** parameter move allocates, and left to the collector they cost more than the move's filter. */
void plm_bffg_filter_discard(plm_bffg_filter *f);
/* Return all of f's memory at once, and, with base given, that of f's model when plm_bffg_model_with made it from
** base (the model, and the diffusion kernels it remade: plm_bffg_kernel_sde_free; other kernels are left to the
** collector). Nothing may refer to f, its messages, guides or (with base) its model afterwards. pCN MCMC frees
** each parameter move's filter and model this way when it drops them: a move allocates a few hundred small
** blocks per diffusion, and left to the collector they set off a full collection every few moves. */
void plm_bffg_filter_free(plm_bffg_filter *f, const plm_bffg_model *base);
/* Return the memory of a diffusion kernel remade at new parameters (plm_bffg_kernel_sde_remake with how 0 or 2)
** at once; other kernels are left alone. k must not be used again. */
void plm_bffg_kernel_sde_free(plm_bffg_kernel *k);
/* The guided draws of two diffusion kernels remade from one (the same grid and native path, for instance the same
** kernel at two parameter values) with their innovations z0, z1 side by side: what sample_z gives for each, bit for
** bit (y0, lw0 and y1, lw1), in about the time of one where the CPU overlaps them. Returns 0, with nothing written,
** when they cannot run together (not such kernels, no native code) or either path left the finite numbers: the
** caller then draws each alone. */
int plm_bffg_sde_sample_z2(const plm_bffg_kernel *k0, const void *guide0, const double *x0, const double *z0, double *y0,
                           double *lw0, const plm_bffg_kernel *k1, const void *guide1, const double *x1, const double *z1,
                           double *y1, double *lw1);
/* plm_bffg_draw_z for two filters of models with the same structure (plm_bffg_model_with from one model) at once:
** returns f0's total log weight into row0 and f1's into *ll1, row1, the same as two plm_bffg_draw_z calls, with
** their diffusion kernels' paths run side by side (plm_bffg_sde_sample_z2) where they can. work0, work1: each
** plm_bffg_filter_work(f) doubles. */
double plm_bffg_draw_z2(const plm_bffg_filter *f0, const double *z0, double *row0, double *work0, const plm_bffg_filter *f1,
                        const double *z1, double *row1, double *work1, double *ll1);
/* A copy of m whose kernels made from owner are remade with parameters params (other nodes shared): owner a
** plm_sde (its diffusion kernels, by plm_bffg_kernel_sde_remake with how) or a plm_reactions (its reaction kernels,
** by plm_bffg_kernel_reaction_with; how is ignored). */
plm_status plm_bffg_model_with(plm_ctx *ctx, const plm_bffg_model *m, const void *owner, const double *params, int how,
                               plm_bffg_model **out);
/* The object whose parameters o's parameter moves index (o->sde, else o->net, else NULL), with its number of
** parameters and their current values (bffg_reaction.c). */
const void *plm_bffg_mcmc_owner(const plm_bffg_mcmc_opts *o, int *np, const double **params);
/* The diffusion kernel k remade at params. how 0: as plm_bffg_kernel_sde_with (the auxiliary relinearised at
** params). how 1: the same, and the kernel keeps a cache of its backward filter when its guide is made (d = 2).
** how 2: the auxiliary's B~ and a~ are k's and only its intercept follows params (beta~ = b(at; params) - B~ at,
** or the beta given); when k was made with how 1 and its guide is made, the new kernel's guide is computed from
** k's cache in O(N) multiply-adds and its constant in O(1) (bffg_sde.c, sde_frozen), else by the full filter.
** Kernels made with how 2 share k's grid and cache: k must stay alive. sib, when not NULL, is a kernel remade
** by this function for the same parameters in the same model (the one made just before): the new kernel shares
** what does not depend on its interval (the native path's plan) with it when they agree (a shared plan is left
** to the collector, so either may be freed first). */
plm_status plm_bffg_kernel_sde_remake(plm_ctx *ctx, const plm_bffg_kernel *k, const double *params, int how,
                                      plm_bffg_kernel *sib, plm_bffg_kernel **out);
/* The n diffusion kernels ks remade at params with how, into out[0..n-1], as plm_bffg_kernel_sde_remake would one
** by one, each with the previous as its sibling: when they are kernels of one sde whose drift does not read the
** time, the Jacobian and drift at all their linearisation points are evaluated in one pass (a parameter move of pCN
** remakes every kernel of the model). */
plm_status plm_bffg_kernels_sde_remake(plm_ctx *ctx, const plm_bffg_kernel *const *ks, int n, const double *params, int how,
                                       plm_bffg_kernel **out);

/* For the conjugate parameter update (bffg_conj.c), from a diffusion kernel (bffg_sde_conj.c). */
/* k's grid steps N (0 when k is not a diffusion kernel), with its states d and innovations per step. */
size_t plm_bffg_sde_grid(const plm_bffg_kernel *k, int *d, int *nz_step);
/* k's guided path under guide on its grid, X ((N + 1) d doubles, X[0..d) its start): forward (inverse 0), the
** path that the innovations zin (N nz_step) give, into X, as sample_z draws it up to rounding; inverse (1), the
** innovations zout that give the path X, their parts that do not move the state (a noise that drives no coordinate)
** taken from zin. Returns the path's log weight as sample_z does, NaN when it left the finite numbers. */
double plm_bffg_sde_walk(const plm_bffg_kernel *k, const void *guide, double *X, const double *zin, double *zout, int inverse);
/* The program of the conjugate update of the nb (1..4) parameters idx of s: at a state x, the drift b(x) (dim outputs)
** and its derivatives Phi[i][j] = d b_i / d theta_j (output dim + i nb + j), built symbolically into s's graph (call
** before threads). PLM_EINVAL, naming the parameter (names: nb names, or NULL), when the drift is not linear in the
** block (a second derivative in the block is not the constant 0) or a parameter enters the diffusion coefficient. */
plm_status plm_bffg_sde_conj_prog(plm_ctx *ctx, const plm_sde *s, int nb, const int *idx, const char *const *names,
                                  plm_prog **out);
/* plm_bffg_sde_walk forward from X[0..d) with innovations z, *lw its log weight, and the Euler likelihood of the path
** under k's parameters as a quadratic form in the block of prog (plm_bffg_sde_conj_prog): adds sum V'V into P
** (nb * nb) and sum V'u into mv (nb) (bffg_sde_conj.c). PLM_EINVAL, naming the parameter, when one enters the drift
** of a coordinate the noise does not drive. */
plm_status plm_bffg_sde_keep(plm_ctx *ctx, const plm_bffg_kernel *k, const void *guide, double *X, const double *z, int nb,
                             const int *idx, const char *const *names, const plm_prog *prog, double *P, double *mv,
                             double *lw);
/* Compile k's native path that keeps its states (first use of plm_bffg_sde_keep's fast path) now, before threads. */
void plm_bffg_sde_keep_prepare(const plm_bffg_kernel *k);

/* The conjugate update of pCN MCMC (bffg_conj.c): the state of one chain's moves. */
typedef struct plm_bffg_conj plm_bffg_conj;
/* For the nb (1..4) parameters idx of sde, over models with the structure of m under filter f's observations: every
** latent node one parent's child, and those that are not diffusions able to map a draw back to its innovations
** (unsample_z: linear-Gaussian kernels). names (nb, or NULL): the parameters' names for messages; prog: the block's
** plm_bffg_sde_conj_prog. PLM_EINVAL naming the node otherwise; PLM_ENOMEM. */
plm_status plm_bffg_conj_new(plm_ctx *ctx, const plm_bffg_model *m, const plm_bffg_filter *f, const plm_sde *sde, int nb,
                             const int *idx, const char *const *names, const plm_prog *prog, plm_bffg_conj **out);
/* Keep the guided draw of innovations z under f (every diffusion's path on its grid); *ell receives the sum over the
** diffusion edges of logw_e - |z_e|^2 / 2 (NaN when a path failed), P (nb * nb) and mv (nb) the Euler likelihood of
** the sde's paths as a quadratic form in the block (plm_bffg_sde_keep). Errors as plm_bffg_sde_keep's. */
plm_status plm_bffg_conj_keep(plm_ctx *ctx, plm_bffg_conj *C, const plm_bffg_filter *f, const double *z, double *P,
                              double *mv, double *ell);
/* The innovations z2 that give the kept draw under filter f2 (a model made from m at other parameters), z the kept
** draw's under f; returns the sum of plm_bffg_conj_keep's *ell under f2, NaN when some innovation cannot be found. */
double plm_bffg_conj_innov(plm_bffg_conj *C, const plm_bffg_filter *f, const plm_bffg_filter *f2, const double *z,
                           double *z2);
/* 1 when row (a draw) is the kept draw up to rounding: its discrete values equal, its others within 1e-6 relative. */
int plm_bffg_conj_same(const plm_bffg_conj *C, const double *row);

/* For the diffusion (bffg_sde.c) and reaction-network (bffg_reaction.c) kernels: the d-dimensional Gaussian
** message child at the end of a grid of N steps carried back to its start into out (out->v, out->H hold d and d*d
** doubles), step[k] the linear-Gaussian kernel of grid step k. visit (may be NULL) sees the message h at every
** grid point k = N, N-1, ..., 0 in that order, before the pull-back through step k - 1. */
plm_status plm_bffg_pullback_grid(plm_ctx *ctx, int d, size_t N, const plm_bffg_kernel *const *step,
                                  const plm_bffg_msg *child, void (*visit)(void *ud, size_t k, const plm_bffg_msg *h),
                                  void *ud, plm_bffg_msg *out);

#endif
