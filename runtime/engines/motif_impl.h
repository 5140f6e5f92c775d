/* motif_impl.h -- private to the motifs of learned proposals (motif.c: the mixture motif and the common parts;
** motif_discrete.c: the grid and chain motifs): the layout of occurrences and workspaces, and the helpers they
** share. */
#ifndef PLM_MOTIF_IMPL_H
#define PLM_MOTIF_IMPL_H

#include "motif.h"

#include <gsl/gsl_randist.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define LOG_SQRT_2PI 0.91893853320467274178
#define MIX_KMAX 16
#define CHAIN_SMAX 32
#define FEAT_CLAMP 30.0

static inline double clampf(double x)
{
    if (isnan(x)) return 0;
    return x < -FEAT_CLAMP ? -FEAT_CLAMP : x > FEAT_CLAMP ? FEAT_CLAMP : x;
}

static inline double lnorm(double x, double m, double s)
{
    double e = (x - m) / s;
    return -0.5 * e * e - log(s) - LOG_SQRT_2PI;
}

static inline double logistic(double x) { return 1 / (1 + exp(-x)); }

/* ---- occurrences ---- */

typedef struct occ_ops {
    int (*sites)(const plm_motif_occs *o, int i, int *sites);
    plm_status (*begin)(plm_ctx *ctx, const plm_motif_occs *o, plm_motif_ws *w, const double *u);
    plm_status (*inputs)(plm_ctx *ctx, const plm_motif_occs *o, plm_motif_ws *w, int i, const double *u, plm_rng *r,
                         double *x, double *v);
    double (*logp)(const plm_motif_occs *o, plm_motif_ws *w, int i, const double *u, const double *v);
    void (*apply)(const plm_motif_occs *o, plm_motif_ws *w, int i, double *u, const double *v);
} occ_ops;

/* A mixture group: the occurrences that share one list of K component means. */
typedef struct mix_group {
    int K;
    int mu[MIX_KMAX], muc[MIX_KMAX];   /* the mean sites and their coordinates */
    int out;                           /* outputs of the component priors: m0_j, s0_j at out + 2 j */
} mix_group;

typedef struct mix_occ {
    int z, y, zc, g;
    int out;        /* outputs: y, sd_0..sd_{K-1}, p_0..p_{K-1} */
} mix_occ;

/* One term of a discrete occurrence: its own program (the term's log density; the block's coordinates are group
** Z, all of them in block order, of which it reads those in mask), evaluated only at the values of the members it
** reads, and only for values of the coordinates outside the block that it reads that are not among the last
** TERM_MEMO it was evaluated at (a program is a function of its inputs alone, so a kept table is the same
** numbers; the outside coordinates of a discrete network take few values, so most lookups hit). */
#define TERM_MEMO 4
typedef struct disc_term {
    plm_prog *prog;
    int nx, *xin;       /* the coordinates of u outside the block that it reads */
    int mask;           /* bit j: it reads block member j */
    int ncfg;           /* values of the members it reads: the size of its table */
    int stride[4];      /* its table's index of a block value: sum of v_j stride[j] (0 for members it does not read) */
    int pstride[4];     /* grid: the same by position (a, b, c, d): stride[j] of the member at position p, else 0 */
    int at;             /* its TERM_MEMO slots in the occurrence's part of the term cache, each a table (ncfg)
                        ** and the key it was made at (nx) */
} disc_term;

/* One discrete occurrence: nb block sites with their coordinates and supports, and the terms reading it. */
typedef struct disc_occ {
    int nb, ncfg;
    int site[4], coord[4], card[4], stride[4];
    int pos[4];         /* grid: the position (0..3: a, b, c, d) of each block member; the others are absent */
    int nterm;
    int *role;          /* per term: motif-specific role (grid: 0..3 own term of position a..d, an observed node's
                        ** for an absent one; 4 + p a child of the member at position p) */
    disc_term *term;
    int nx, *xin;       /* the coordinates of u outside the block that any term reads (sorted) */
    int t0;             /* index of its first term among all the occurrences' terms */
    size_t tc_at;       /* its part of the term cache; tc_size its size */
    int tc_size;
} disc_occ;

struct plm_motif_occs {
    const plm_motif_def *def;
    const occ_ops *ops;
    int shape[PLM_NN_MAXSHAPE];
    int n;
    plm_gmodel *m;
    /* mixture */
    mix_group *groups;
    int ngroups;
    mix_occ *mocc;
    plm_prog *par;      /* every parameter the groups read, at u */
    int npar;
    /* discrete */
    disc_occ *docc;
    int maxcfg, maxterm, ntermall, maxtcfg, maxtc;
    size_t tcall;       /* the term cache's size over all occurrences */
};

struct plm_motif_ws {
    const plm_motif_occs *o;
    /* mixture */
    double *par, **parp;
    double *C, *B;      /* per group and component: sum of 1/sd^2 and y/sd^2 of the assigned observations */
    double *ls0;        /* per group and component: the log sd of its prior (set by mix_begin) */
    int k;              /* the component of the current proposal */
    double c, s, Ck, Bk;
    double ls;          /* log s */
    /* the last occurrence's sds and weights (P[1 .. 2K]) and their logs (weights normalised): observations that
    ** share them, as most do, share the logs */
    int lastK;
    double lastP[2 * MIX_KMAX], lw[MIX_KMAX], lsd[MIX_KMAX], isd[MIX_KMAX];   /* isd: 1 / sd */
    /* discrete */
    plm_prog_ws *pws;   /* per term of every occurrence, made on first use */
    double *z;          /* a term's block values at its table's points */
    const double **Tt;  /* per term of the current occurrence: its table */
    /* the term cache: per occurrence (at its tc_at) each term's slots; per term, tvalid slots filled and tnext the
    ** one to fill next. Without room for all occurrences (over 64 MB), one occurrence's worth, never valid. */
    double *tc;
    unsigned char *tvalid, *tnext, *tlast;   /* tlast: the slot it last read */
    int tc_single;      /* the term cache holds one occurrence's terms (at 0), never valid */
    /* per occurrence, the last features and the blanket values they were made from (only with the term cache):
    ** an occurrence whose blanket has not moved since its last proposal reuses them, and its terms' tables are
    ** then valid too */
    double *cache;
    size_t cstride;
    char *cvalid;
};

/* shared by the two files (motif.c) */
int motif_has_parent(const plm_gsite *s, int p);
int motif_is_latent_kind(const plm_gsite *s, int dist);
/* a small program of the graph's nodes outs, with the coordinates move as per-point inputs (gibbs_impl.h's way) */
plm_status motif_compile_small(plm_ctx *ctx, const plm_gmodel *m, int nout, const int *outs, int nmove, const int *move,
                               plm_prog **out, int **xin, int *nx, int *zmask);
plm_motif_occs *motif_occs_new(const plm_motif_def *d, const occ_ops *ops, const int *shape, plm_gmodel *m);
extern const plm_motif_def plm_motif_grid_def, plm_motif_chain_def;   /* motif_discrete.c */

#endif
