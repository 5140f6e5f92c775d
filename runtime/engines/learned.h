/* learned.h -- Metropolis-Hastings with learned block proposals (after Wang, Wu, Moore and Russell, "Meta-Learning
** MCMC Proposals", NeurIPS 2018). A proposal is a network (nn.h) trained once on random instantiations of a
** motif (motif.h) to approximate the block's conditional given its Markov blanket's features, q(B | C) ~ p(B | C);
** the kernel finds every occurrence of the motif in a model, draws the block from q and accepts with the exact
** ratio p(B') q(B | C) / (p(B) q(B' | C)), so the target stays exact whatever the network. Proposals are GC
** memory (their weights too); kernels are GC memory with malloc'd per-chain states. */
#ifndef PLM_LEARNED_H
#define PLM_LEARNED_H

#include "mcmc.h"
#include "motif.h"
#include "nn.h"

typedef struct plm_learned_prop {
    const plm_motif_def *motif;
    plm_nn_meta meta;
    plm_nn nn;              /* theta is GC memory: never plm_nn_free it */
    int nin, nmem;
    char path[256];         /* the file it was read from ("" when trained in this process) */
} plm_learned_prop;

/* Read a proposal file (plm_nn_load's checks), and check that it names a known motif whose layout for its
** shape is the network's. PLM_EINVAL names the file and what is wrong. */
plm_status plm_learned_load(plm_ctx *ctx, const char *path, plm_learned_prop **out);
/* Write p to path (plm_nn_save). */
plm_status plm_learned_save(plm_ctx *ctx, const char *path, const plm_learned_prop *p);

/* Called after each epoch with the mean log q per block on the training set and on the held-out set; a nonzero
** return stops training (the network so far is kept). */
typedef int (*plm_learned_progress)(void *ud, long epoch, long epochs, double train_ll, double heldout_ll);

typedef struct plm_learned_train_opts {
    int shape[PLM_NN_MAXSHAPE];     /* the motif's shape parameters (d->nshape of them) */
    long samples;                   /* training instantiations (>= 10) */
    long heldout;                   /* held-out instantiations (0: samples / 10, at least 100) */
    long epochs;                    /* passes over the training set */
    int nhidden, hidden[PLM_NN_MAXHIDDEN];
    int act;                        /* PLM_NN_TANH or PLM_NN_RELU */
    int batch;                      /* minibatch size (0: 64) */
    double lr;                      /* Adam's step size (0: 1e-3) */
    uint64_t seed;
    plm_learned_progress progress;
    void *ud;
} plm_learned_train_opts;

/* Train a proposal for motif d: draw o->samples training and held-out instantiations from the motif's prior
** (stream 0 and 1 of the seed), initialise the network (stream 2), and maximise the mean log q of the training
** blocks with Adam (step size falling linearly from lr to lr / 10) on minibatches shuffled by stream 3, single-threaded, so the weights depend on the seed only.
** PLM_EINTR when interrupted (checked every minibatch); PLM_EINVAL names a bad option. */
plm_status plm_learned_train(plm_ctx *ctx, const plm_motif_def *d, const plm_learned_train_opts *o, plm_learned_prop **out);

/* Mean log q per block of n fresh instantiations drawn from stream `stream` of seed (an evaluation). */
plm_status plm_learned_eval(plm_ctx *ctx, const plm_learned_prop *p, long n, uint64_t seed, uint64_t stream, double *mean);

/* The MH kernel over every occurrence of each proposal's motif in m (finished; its target made by
** plm_gmodel_target): each step sweeps the occurrences in order, proposing each block once. Statistic: the
** fraction of proposals accepted; extra columns "learned.<motif>.accept_stat__" per proposal (their acceptance rates). noccs (nprops, may be
** NULL) receives the occurrence counts. PLM_EINVAL when a proposal's motif does not occur in m. */
plm_status plm_kernel_learned(plm_ctx *ctx, plm_gmodel *m, plm_learned_prop *const *props, int nprops,
                              plm_kernel **out, int *noccs);

/* The pieces of one MH step, for tests: for occurrence `occ` of proposal `p` of kernel k at u, with the
** network's random choices from r, the proposed block v (the network's coordinates), log q forward and
** reverse, and the motif's log densities of the new and old block values; returns the log acceptance ratio
** in *logr; unew (m->dim, or NULL) receives u with the proposed block. u is not changed. */
plm_status plm_learned_debug_step(plm_ctx *ctx, const plm_kernel *k, int p, int occ, const double *u, plm_rng *r,
                                  double *v, double *lq_fwd, double *lq_rev, double *lp_new, double *lp_old,
                                  double *logr, double *unew);

/* Drop the reverse proposal density from the kernel's ratio (a deliberately wrong kernel, for the negative
** control of the tests). */
void plm_learned_set_broken(plm_kernel *k, int broken);

#endif
