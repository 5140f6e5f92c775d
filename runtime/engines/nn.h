/* nn.h -- the small neural networks of learned MCMC proposals (learned.h): for each member of a block, a
** multilayer perceptron reads the inputs (a motif's Markov-blanket features) and the values of the members
** before it, and its head is a softmax over categories (a discrete member) or a mixture of Gaussians (a
** continuous one), so q(block | inputs) is an exact, normalised autoregressive density. Minibatches go through
** GSL's CBLAS (training is Adam); single evaluations, the MH kernel's, through plain loops. A network and its
** workspace are malloc'd (plm_nn_free), and one file format (versioned, checksummed) stores a network with the
** motif it was trained for. */
#ifndef PLM_NN_H
#define PLM_NN_H

#include <stddef.h>
#include <stdint.h>

#include "ctx.h"
#include "rng.h"

#define PLM_NN_MAXMEM 8      /* members of a block */
#define PLM_NN_MAXHIDDEN 4   /* hidden layers */
#define PLM_NN_MAXWIDTH 4096 /* units of any layer */

typedef enum plm_nn_kind { PLM_NN_DISCRETE = 0, PLM_NN_CONTINUOUS = 1 } plm_nn_kind;
typedef enum plm_nn_act { PLM_NN_TANH = 0, PLM_NN_RELU = 1 } plm_nn_act;

typedef struct plm_nn_member {
    int kind;       /* plm_nn_kind */
    int card;       /* discrete: categories; continuous: Gaussian components of the head */
    int ncat_at;    /* discrete: index of the input holding the number of valid categories (1..card; the
                    ** others get probability 0), or -1 when all are valid */
    /* discrete: skip logits, added to the perceptron's outputs before the softmax (no weights of their own; the
    ** perceptron learns the rest). With skip = 1: logit c gains x[base_at + c] (base_at >= 0), and, with
    ** pair_of >= 0 (an earlier discrete member) of value v, x[pair_at + v card + c]. A motif whose inputs hold
    ** the block's log potentials gives them to the head directly this way. skip = 0 (a zeroed member): none.
    ** continuous (since version 3): with skip = 1, base_at = -1 and pair_of >= 0 of value v, every component's
    ** mean gains x[pair_at + 2 v] and its raw log sd x[pair_at + 2 v + 1] (a conditional Gaussian the motif knows). */
    int skip, base_at, pair_at, pair_of;
    /* discrete: a per-category perceptron instead of one over the whole input. With rows = 1 the member's
    ** perceptron is applied to each category c on its own, reading row c of the input table at row_at (row_w
    ** numbers per category) followed by the rshared_w inputs at rshared_at (the same for every c; rshared_w may be
    ** 0), and gives one number, c's logit (plus the skip logits); it reads none of the members before it. One set of
    ** weights serves every category, so a function of a category's row (a sum over the next member's values, say)
    ** is learned once. rows = 0 (a zeroed member): one perceptron. */
    int rows, row_at, row_w, rshared_at, rshared_w;
    /* a member that may be absent from a block (an observed node where the motif has a latent one): with fixed = 1
    ** it is fixed whenever x[fixed_at] != 0, and then its value is 0 (the motif writes the inputs as if the absent
    ** node were 0), it is never drawn and its log q is 0 (-inf for any other value). The members after it read
    ** that 0 as usual. fixed = 0 (a zeroed member): never fixed. */
    int fixed, fixed_at;
    /* discrete, with pair_of >= 0: pair2 = 1 indexes the pair table by two earlier discrete members, row
    ** v[pair_of] + card(pair_of) v[pair2_of] (a grid's d given b and c). pair2 = 0 (a zeroed member): one. */
    int pair2, pair2_of;
} plm_nn_member;

typedef struct plm_nn {
    int nin, nmem, nhidden, act;
    int hidden[PLM_NN_MAXHIDDEN];
    plm_nn_member mem[PLM_NN_MAXMEM];
    size_t nparam;
    double *theta;      /* every weight, member by member, layer by layer: W (out x in, row-major), then b */
    /* derived by plm_nn_init */
    int nlayer;                                   /* nhidden + 1 */
    int width[PLM_NN_MAXMEM][PLM_NN_MAXHIDDEN + 2]; /* member j: input width, hidden widths, output width */
    size_t off[PLM_NN_MAXMEM][PLM_NN_MAXHIDDEN + 1]; /* member j, layer l: offset of W in theta */
    int maxwidth;
    int rowmult;                                  /* the most categories of a member with rows = 1 (else 1) */
    int bin1;       /* no hidden layer, every member binary with no per-category perceptron nor category count (a
                    ** grid block): plm_nn_propose_xp and plm_nn_sample take one inline path with one exp and one
                    ** log1p per member (the batched pass's densities up to rounding) */
} plm_nn;

/* Lay out a network (theta zeroed, malloc'd). Member j's net reads the nin inputs, then one-hot codes of the
** discrete members before it and the values of the continuous ones. PLM_EINVAL names a bad size. */
plm_status plm_nn_init(plm_ctx *ctx, plm_nn *nn, int nin, int nmem, const plm_nn_member *mem, int nhidden,
                       const int *hidden, int act);
void plm_nn_free(plm_nn *nn);
/* Glorot-uniform weights and zero biases from r; the output layer of a member with skip logits zero (it starts at
** them). */
void plm_nn_randomize(plm_nn *nn, plm_rng *r);

/* Scratch for batches of up to maxbatch points, and for single evaluations (plm_nn_sample, plm_nn_propose) a copy
** of the weights laid out for them, taken here: after changing nn->theta, plm_nn_ws_sync before those two.
** Malloc'd; plm_nn_ws_free. */
typedef struct plm_nn_ws {
    int maxbatch, swidth;
    size_t maxrows;     /* rows of the batched pass's matrices: maxbatch times the network's rowmult */
    double *in, *act, *dact, *out, *dout;
    double *wt;     /* theta with each W transposed (in x out) */
    double *s;      /* 7 vectors of maxwidth for single evaluations */
    int *nz;        /* indices of a layer's nonzero inputs */
    double *xp;     /* plm_nn_propose's inputs' parts (plm_nn_xpart) */
    /* The "mt" layout of every member's first layer, for one pass over the inputs when every member has a first
    ** layer of the same width and none a per-category perceptron (mtw = nmem times that width, else 0): row i
    ** (i < nin) holds input i's weights for member 0's units, then member 1's, ...; row nin the biases. */
    double *mt;
    int mtw;
} plm_nn_ws;
plm_status plm_nn_ws_init(plm_ctx *ctx, plm_nn_ws *w, const plm_nn *nn, int maxbatch);
void plm_nn_ws_sync(plm_nn_ws *w, const plm_nn *nn);
void plm_nn_ws_free(plm_nn_ws *w);

/* log q(V[b] | X[b]) for b < B (X: B x nin, V: B x nmem, row-major; discrete values are 0-based category
** numbers) into logq. grad (nparam, or NULL) accumulates the gradient of sum_b logq[b] w.r.t. theta. A value
** outside its member's valid categories has log q = -inf (and adds no gradient). B <= w->maxbatch. */
void plm_nn_logq(const plm_nn *nn, plm_nn_ws *w, int B, const double *X, const double *V, double *logq, double *grad);

/* Draw v (nmem values) from q(. | x) with r; *logq receives its log density. A single evaluation: plain loops over
** the workspace's copy of the weights instead of the batched pass, the same function up to rounding (the order of
** the sums differs; within 1e-12 of plm_nn_logq in the tests). */
void plm_nn_sample(const plm_nn *nn, plm_nn_ws *w, const double *x, plm_rng *r, double *v, double *logq);

/* One MH proposal's network work: draw v (nmem values) from q(. | x) and score both it and vold, in *lq_new and
** *lq_old. The inputs' part of each member's first layer is computed once for both, and a member whose earlier
** members are equal in v and vold is evaluated once. The same draw and numbers as plm_nn_sample, bit for bit,
** and those of plm_nn_logq up to rounding. Any workspace of the network will do. */
void plm_nn_propose(const plm_nn *nn, plm_nn_ws *w, const double *x, const double *vold, plm_rng *r, double *v,
                    double *lq_new, double *lq_old);

/* The inputs' part of each member's first layer (its bias and the columns of x; what plm_nn_propose shares between
** the new and old block) into xp, plm_nn_xpart_size(nn) numbers: a function of x alone, so a caller that sees the
** same x again may keep it and call plm_nn_propose_xp, which is plm_nn_propose from a given xp, bit for bit. */
size_t plm_nn_xpart_size(const plm_nn *nn);
void plm_nn_xpart(const plm_nn *nn, plm_nn_ws *w, const double *x, double *xp);
void plm_nn_propose_xp(const plm_nn *nn, plm_nn_ws *w, const double *x, const double *xp, const double *vold, plm_rng *r,
                       double *v, double *lq_new, double *lq_old);

/* Adam (Kingma and Ba) on a parameter vector: malloc'd moments. */
typedef struct plm_nn_adam {
    size_t n;
    long t;
    double lr, b1, b2, eps;
    double *m, *v;
} plm_nn_adam;
plm_status plm_nn_adam_init(plm_ctx *ctx, plm_nn_adam *a, size_t n, double lr);
/* One ascent step of theta along grad (a gradient of the objective to maximise). */
void plm_nn_adam_step(plm_nn_adam *a, double *theta, const double *grad);
void plm_nn_adam_free(plm_nn_adam *a);

/* ---- proposal files ---- */

#define PLM_NN_FILE_VERSION 4
#define PLM_NN_MAXSHAPE 8

/* What a proposal file says besides the weights: the motif (name and shape parameters, motif.h) and how the
** network was trained. */
typedef struct plm_nn_meta {
    char motif[32];
    int nshape;
    int shape[PLM_NN_MAXSHAPE];
    uint64_t seed;
    long samples, epochs;
    double heldout;     /* mean held-out log q per block at the end of training */
} plm_nn_meta;

/* Write meta and nn to path: magic "PLMPROP\0", the format version, the meta, the network's sizes (per member
** since version 2 also its skip logits' and per-category perceptron's fields, since version 3 its fixed flag and
** input, since version 4 its second pair member), the weights (little-endian IEEE doubles), and an FNV-1a 64-bit checksum over every byte before it. PLM_EIO names the file. */
plm_status plm_nn_save(plm_ctx *ctx, const char *path, const plm_nn_meta *meta, const plm_nn *nn);
/* Read a file written by plm_nn_save into meta and nn (initialised here; plm_nn_free). A file that is not a
** proposal file, has another format version, is truncated, has trailing bytes, fails its checksum or holds
** impossible sizes is refused with PLM_EINVAL and a message naming the file and what is wrong; nothing of it is
** used. */
plm_status plm_nn_load(plm_ctx *ctx, const char *path, plm_nn_meta *meta, plm_nn *nn);

#endif
