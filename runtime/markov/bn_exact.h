/* bn_exact.h -- exact marginals of grid Bayesian networks of binary nodes, the reference that sampled
** marginals are measured against (bench/learned_grid.lua). Arrays are caller-owned; nothing is kept. */
#ifndef PLM_BN_EXACT_H
#define PLM_BN_EXACT_H

#include "ctx.h"

/* The network: rows x cols binary nodes, node v = i * cols + j (0-based, row-major), whose parents are its
** up (i - 1, j) and left (i, j - 1) neighbours where they exist. cpt[4 v + 2 up + left] = P(x_v = 1 | up,
** left), an absent parent read as 0 (so node 0 uses cpt[0] only). evidence[v] is -1 (latent), 0 or 1
** (observed); evidence may be NULL (nothing observed). */
typedef struct plm_bn_grid {
    int rows, cols;
    const double *cpt;       /* 4 * rows * cols probabilities in [0, 1] */
    const int *evidence;     /* rows * cols entries, or NULL */
} plm_bn_grid;

/* marg[v] = P(x_v = 1 | evidence) for every node (0 or 1 on observed nodes) and, when logz is not NULL,
** *logz = log P(evidence). Exact, by a forward-backward pass over the nodes in raster order whose state is the
** frontier of the last min(rows, cols) nodes (the grid is transposed when it is wider than tall): cost
** O(rows cols 2^min(rows, cols)) time, and that many doubles of memory. PLM_EINVAL names a bad size or
** probability; PLM_ENOTSUP when min(rows, cols) > 22 or the frontier tables would exceed 2^28 doubles;
** PLM_EDOM when the evidence has probability 0; PLM_EINTR on Ctrl-C. */
plm_status plm_bn_grid_marginals(plm_ctx *ctx, const plm_bn_grid *g, double *marg, double *logz);

/* log P(x) of a full assignment x (rows * cols values 0/1): the sum of the nodes' log CPT entries. For tests
** and for scoring sampled states. PLM_EINVAL names a value that is not 0 or 1. */
plm_status plm_bn_grid_logp(plm_ctx *ctx, const plm_bn_grid *g, const int *x, double *logp);

#endif
