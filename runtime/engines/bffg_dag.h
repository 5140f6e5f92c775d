/* bffg_dag.h -- private to the BFFG engine (bffg.c, bffg_smc.c, bffg_mcmc.c): the layout of models and filters. */
#ifndef PLM_BFFG_DAG_H
#define PLM_BFFG_DAG_H

#include "bffg_impl.h"

typedef struct node {
    char *name;
    int parent;      /* the first parent; -1 for a root */
    int np;          /* parents: 0 (a root), 1, or several */
    int *parents;    /* np indices, when np >= 2 */
    const plm_bffg_kernel *k;
    double *value;   /* observed value, or NULL */
    long offset;     /* in a draw, for latent nodes */
    int group;       /* the cluster of latent nodes drawn jointly that it belongs to, or -1 */
    int slot;        /* its place among the cluster's members */
} node;

/* A cluster: latent nodes that the filter treats as one node whose value is their joint value (the junction-tree
** construction, specialised to kernels whose joint law is closed-form). The message a node with several parents
** sends back is a function of all of them together, and pulling it back further exactly needs their joint law
** given what lies above, so rebuild_groups merges latent nodes until every unit -- a cluster, or a node in none --
** has the values it depends on in one unit (its parent unit) and the units form a forest. A cluster's kernel from
** its parent unit's value is the joint law of its members: a linear-Gaussian kernel (the members' kernels solved
** by forward substitution), or a conditional table over the product of their states. Messages into a cluster are
** fused on the joint space; forward guiding draws the members together. */
typedef struct group {
    int nmem;
    int *mem;           /* node indices, in node order (so parents within the cluster come first) */
    int discrete;
    int D;              /* the joint dimension, or the number of joint states */
    int *off;           /* per member: its first coordinate (Gaussian), or its stride (discrete; the first slowest) */
    int *dim;           /* per member: d or K */
    int pnode;          /* a parent of a member outside the cluster (all such parents lie in one unit), or -1 */
    int pgroup;         /* the cluster of pnode, or -1 (then the kernel's input is pnode's own value) */
    plm_bffg_kernel *k; /* the members' joint law given the parent unit's value (a prior when pnode < 0) */
} group;

struct plm_bffg_model {
    node *nodes;
    int n, cap;
    size_t width;    /* doubles per draw */
    group *groups;
    int ngroups;
    int gwork;       /* doubles a draw needs for the groups: a cluster's joint value and its parent unit's, or the
                     ** largest stacked parents */
    int *order;      /* the nodes in drawing order: every unit after its parent unit, a cluster's members together
                     ** (its first member first); node order when there are no clusters */
};

struct plm_bffg_filter {
    const plm_bffg_model *m;
    plm_bffg_msg **gmsg;     /* per group: the fused message on the joint space */
    void **gguide;           /* per group: the joint kernel's guided form */
    size_t kwork;            /* doubles of workspace the kernels need (the groups' buffers follow) */
    const double **values;   /* per node: the observed value in use (NULL for latent nodes) */
    plm_bffg_msg **msg;      /* per latent node: the fused message */
    plm_bffg_msg **up;       /* per node: the message it sends to its parent (or, for a root, its constant) */
    void **guide;            /* per latent node: its kernel's guided form toward that message */
    double *mem;             /* the guides' grid storage (guide_mem, guide_at), one block, or NULL */
    size_t nmem;             /* its length in doubles */
    void *msgs;              /* the messages (msg, up, gmsg), one block (msg_arena in bffg.c) */
    size_t nmsgs;            /* its length in bytes */
    double loglik;
    size_t work;             /* doubles of workspace a draw needs */
};

/* Storage a freed filter hands to the next one of the same model (pCN makes and drops a filter per parameter move:
** reusing the blocks spares the collector a large allocation, its clearing, and a collection every few dozen
** moves). NULL members: nothing to give. */
typedef struct plm_bffg_spare {
    double *mem;
    size_t nmem;
    void *msgs;
    size_t nmsgs;
} plm_bffg_spare;

/* plm_bffg_backward, taking f->mem and f->msgs from spare when they are large enough (the spare's members are
** then set to NULL); spare may be NULL. */
plm_status plm_bffg_backward_reuse(plm_ctx *ctx, const plm_bffg_model *m, const double *const *values,
                                   plm_bffg_spare *spare, plm_bffg_filter **out);

/* plm_bffg_filter_free (bffg_mcmc.c), handing f's storage blocks to spare where its slots are empty (else freeing
** them). */
void plm_bffg_filter_free_to(plm_bffg_filter *f, const plm_bffg_model *base, plm_bffg_spare *spare);

#endif
