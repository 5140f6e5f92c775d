/* motif.h -- structural motifs of static graphs (gmodel.h) for learned block proposals (learned.h). A motif
** is a small subgraph shape with a block B of latent sites and the features of its Markov blanket C that a
** proposal network reads. Each motif is a table of functions: the training side draws random instantiations
** (C's features and B) from a documented prior over the motif's parameters; the model side finds every
** occurrence in a finished gmodel by structure and distribution family (never by names), and per occurrence
** builds the features from the current point u, reads and writes the block in u, and evaluates the log
** density of a block value given the rest of u up to a constant (exactly the change of the target's log
** density between two block values). Motifs here:
**   "mixture" (shape: K_max): a categorical z choosing which of K <= K_max normal means generates a normal
**       observation; block (z, mu_k) for a component k drawn uniformly per proposal.
**   "grid" (no shape): the latent bernoulli sites of a 2x2 window (a, b; c, d) of a grid-shaped Bayesian network
**       (b and c read a, d reads b and c), some positions possibly observed or missing; a latent bernoulli site in no
**       window is a block of its own.
**   "chain" (shape: S_max): two consecutive categorical states of a Markov chain with emissions.
** Occurrences are GC memory; per-chain workspaces are malloc'd. */
#ifndef PLM_MOTIF_H
#define PLM_MOTIF_H

#include "gmodel.h"
#include "nn.h"

typedef struct plm_motif_def plm_motif_def;
typedef struct plm_motif_occs plm_motif_occs;   /* the occurrences of one motif in one model */
typedef struct plm_motif_ws plm_motif_ws;       /* a chain's scratch for them */

struct plm_motif_def {
    const char *name;
    int nshape;
    const char *const *shape_names;
    const int *shape_default, *shape_min, *shape_max;
    const char *block_desc;     /* what the block is, for messages and tostring */
    /* the network's input count and block members for this shape */
    void (*layout)(const int *shape, int *nin, int *nmem, plm_nn_member *mem);
    /* a random instantiation from the motif's prior: inputs x (nin) and block v (nmem) */
    void (*draw)(const int *shape, plm_rng *r, double *x, double *v);
    /* every occurrence in m (a finished model); *out = NULL when there is none */
    plm_status (*detect)(plm_ctx *ctx, const plm_motif_def *d, const int *shape, plm_gmodel *m, plm_motif_occs **out);
};

/* The motif named name ("mixture", "grid", "chain"), or NULL. */
const plm_motif_def *plm_motif_find(const char *name);
/* The motifs, NULL-terminated. */
const plm_motif_def *const *plm_motif_all(void);
/* PLM_EINVAL naming the parameter when shape (d->nshape values) is out of range. */
plm_status plm_motif_check_shape(plm_ctx *ctx, const plm_motif_def *d, const int *shape);

/* The mixture motif's network inputs (4 + 7 K_max numbers into x) for an observation y, K components, the
** chosen component k (0-based), log weights lw, means mu (mu[k] unused), the observation's sd under each
** component, the prior mean c and sd s of mu_k, and the assigned observations' sums C = sum 1/sd^2 and
** B = sum y/sd^2 (0, 0 for none). The block is (slot of z, (mu_k - c) / s); slot 0 is k, slots 1.. are the
** other components in increasing order. For callers that use a mixture proposal outside a graph. */
void plm_motif_mixture_features(int kmax, int K, int k, const double *lw, const double *mu, const double *sd, double c,
                                double s, double y, double C, double B, double *x);

/* ---- occurrences in a model ---- */

int plm_motif_count(const plm_motif_occs *o);
/* The latent sites occurrence i may change (the block, for every choice of its random part), into sites;
** returns their count (at most 2 + the motif's K_max). */
int plm_motif_sites(const plm_motif_occs *o, int i, int *sites);

plm_status plm_motif_ws_new(plm_ctx *ctx, const plm_motif_occs *o, plm_motif_ws **out);
void plm_motif_ws_free(plm_motif_ws *w);
/* Call before a sweep over the occurrences at u (caches what stays fixed while only blocks move). */
plm_status plm_motif_begin(plm_ctx *ctx, const plm_motif_occs *o, plm_motif_ws *w, const double *u);
/* Occurrence i at u: choose the block (may draw from r, independently of the block's values), write the
** network inputs (which never read the block) into x and the block's current value into v. A grid or chain
** occurrence whose blanket values in u are those of its last call on w reuses that call's inputs and densities. */
plm_status plm_motif_inputs(plm_ctx *ctx, const plm_motif_occs *o, plm_motif_ws *w, int i, const double *u, plm_rng *r,
                            double *x, double *v);
/* The log density of block value v given the rest of u, up to a constant that is the same for every v (the
** target's log density changes by the difference of two of these); -inf outside the support. Only after
** plm_motif_inputs for the same occurrence. */
double plm_motif_logp(const plm_motif_occs *o, plm_motif_ws *w, int i, const double *u, const double *v);
/* Set the block of occurrence i in u to v (after plm_motif_inputs for it). */
void plm_motif_apply(const plm_motif_occs *o, plm_motif_ws *w, int i, double *u, const double *v);

#endif
