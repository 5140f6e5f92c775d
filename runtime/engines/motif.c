/* motif.c -- the motifs of learned proposals (see motif.h): their priors for training, their detection on
** compiled graphs, and their features and block densities at a point.
**
** Two shapes of occurrence share the model side. A mixture occurrence reads the observation, the K means and
** scales and the mixture weights through one compiled program per sweep, keeps per-component sufficient
** statistics of the observations assigned to each component, and scores a block value in closed form (the
** block's own terms, the observation's term and the assigned observations' terms: every term that reads the
** block, as detection checks). A discrete occurrence (grid, chain) compiles the terms that read its block
** (the block's own and its children's, block coordinates as per-particle inputs) and evaluates them at every
** value of the block: their sum is the block's exact log density up to a constant, and the per-term tables,
** with the blanket's values plugged in, are the network's features. */
#include "motif.h"

#include <gsl/gsl_randist.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define LOG_SQRT_2PI 0.91893853320467274178
#define MIX_KMAX 16
#define CHAIN_SMAX 32
#define FEAT_CLAMP 30.0

static double clampf(double x)
{
    if (isnan(x)) return 0;
    return x < -FEAT_CLAMP ? -FEAT_CLAMP : x > FEAT_CLAMP ? FEAT_CLAMP : x;
}

static double lnorm(double x, double m, double s)
{
    double e = (x - m) / s;
    return -0.5 * e * e - log(s) - LOG_SQRT_2PI;
}

static double logistic(double x) { return 1 / (1 + exp(-x)); }

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

/* One discrete occurrence: nb block sites with their coordinates and supports, and the terms reading it. */
typedef struct disc_occ {
    int nb, ncfg;
    int site[4], coord[4], card[4], stride[4];
    int nterm;
    int *role;      /* per term: motif-specific role (grid: 0..3 own term of a..d, 4 + j a child of member j) */
    plm_prog *prog; /* outputs: the terms' log densities; block coordinates in group Z */
    int nx, *xin;   /* the coordinates of u outside the block that prog reads */
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
    int maxcfg, maxterm;
};

struct plm_motif_ws {
    const plm_motif_occs *o;
    /* mixture */
    double *par, **parp;
    double *C, *B;      /* per group and component: sum of 1/sd^2 and y/sd^2 of the assigned observations */
    int k;              /* the component of the current proposal */
    double c, s, Ck, Bk;
    /* discrete */
    plm_prog_ws *pws;   /* per occurrence, made on first use */
    double *z, *T, **Tp, *lpcfg;
    /* per occurrence, the last features and block log densities, and the blanket values they were made from:
    ** an occurrence whose blanket has not moved since its last proposal reuses them (the program is a function
    ** of those values only, so they are the same numbers) */
    double *cache;
    size_t cstride;
    char *cvalid;
};

int plm_motif_count(const plm_motif_occs *o) { return o ? o->n : 0; }
int plm_motif_sites(const plm_motif_occs *o, int i, int *sites) { return o->ops->sites(o, i, sites); }

plm_status plm_motif_ws_new(plm_ctx *ctx, const plm_motif_occs *o, plm_motif_ws **out)
{
    plm_motif_ws *w = calloc(1, sizeof *w);
    int i;
    *out = NULL;
    if (!w) return plm_fail(ctx, PLM_ENOMEM, "motif: out of memory");
    w->o = o;
    if (o->mocc) {
        w->par = malloc(((size_t)o->npar + 1) * sizeof *w->par);
        w->parp = malloc(((size_t)o->npar + 1) * sizeof *w->parp);
        w->C = calloc((size_t)o->ngroups * MIX_KMAX, sizeof *w->C);
        w->B = calloc((size_t)o->ngroups * MIX_KMAX, sizeof *w->B);
        if (!w->par || !w->parp || !w->C || !w->B) goto oom;
        for (i = 0; i < o->npar; i++) w->parp[i] = w->par + i;
    }
    if (o->docc) {
        w->pws = calloc((size_t)o->n, sizeof *w->pws);
        w->z = malloc((size_t)o->maxcfg * 4 * sizeof *w->z);
        w->T = malloc((size_t)o->maxcfg * (size_t)o->maxterm * sizeof *w->T);
        w->Tp = malloc((size_t)o->maxterm * sizeof *w->Tp);
        w->lpcfg = malloc((size_t)o->maxcfg * sizeof *w->lpcfg);
        if (!w->pws || !w->z || !w->T || !w->Tp || !w->lpcfg) goto oom;
        {   /* the cache: kept to 64 MB, beyond which an occurrence's features are recomputed every time */
            int nin, nmem, maxnx = 0;
            plm_nn_member mem[PLM_NN_MAXMEM];
            o->def->layout(o->shape, &nin, &nmem, mem);
            for (i = 0; i < o->n; i++)
                if (o->docc[i].nx > maxnx) maxnx = o->docc[i].nx;
            w->cstride = (size_t)maxnx + (size_t)nin + (size_t)o->maxcfg;
            if ((double)o->n * (double)w->cstride * sizeof(double) <= 64.0 * 1024 * 1024) {
                w->cache = malloc((size_t)o->n * w->cstride * sizeof *w->cache);
                w->cvalid = calloc((size_t)o->n, 1);
                if (!w->cache || !w->cvalid) goto oom;
            }
        }
    }
    *out = w;
    return PLM_OK;
oom:
    plm_motif_ws_free(w);
    return plm_fail(ctx, PLM_ENOMEM, "motif: out of memory");
}

void plm_motif_ws_free(plm_motif_ws *w)
{
    int i;
    if (!w) return;
    if (w->pws)
        for (i = 0; i < w->o->n; i++)
            if (w->pws[i].p) plm_prog_ws_free(&w->pws[i]);
    free(w->par), free(w->parp), free(w->C), free(w->B), free(w->pws), free(w->z), free(w->T), free(w->Tp), free(w->lpcfg);
    free(w->cache), free(w->cvalid);
    free(w);
}

plm_status plm_motif_begin(plm_ctx *ctx, const plm_motif_occs *o, plm_motif_ws *w, const double *u)
{
    return o->ops->begin ? o->ops->begin(ctx, o, w, u) : PLM_OK;
}

plm_status plm_motif_inputs(plm_ctx *ctx, const plm_motif_occs *o, plm_motif_ws *w, int i, const double *u, plm_rng *r,
                            double *x, double *v)
{
    return o->ops->inputs(ctx, o, w, i, u, r, x, v);
}

double plm_motif_logp(const plm_motif_occs *o, plm_motif_ws *w, int i, const double *u, const double *v)
{
    return o->ops->logp(o, w, i, u, v);
}

void plm_motif_apply(const plm_motif_occs *o, plm_motif_ws *w, int i, double *u, const double *v)
{
    o->ops->apply(o, w, i, u, v);
}

/* ---- reading the graph ---- */

/* Scratch for graph walks: a visit stamp per node. */
typedef struct walk {
    const plm_graph *g;
    int *stamp, now, *stack, size;
} walk;

static plm_status walk_init(plm_ctx *ctx, walk *k, const plm_graph *g)
{
    k->g = g;
    k->size = plm_graph_size(g);
    k->now = 0;
    k->stamp = calloc((size_t)k->size + 1, sizeof *k->stamp);
    k->stack = malloc(((size_t)k->size + 1) * sizeof *k->stack);
    if (!k->stamp || !k->stack) {
        free(k->stamp), free(k->stack);
        return plm_fail(ctx, PLM_ENOMEM, "motif: out of memory");
    }
    return PLM_OK;
}

static void walk_free(walk *k) { free(k->stamp), free(k->stack); }

/* Does node id read a coordinate of u marked in mark? */
static int reads_marked(walk *k, int id, const char *mark)
{
    int sp = 0;
    if (id < 0) return 0;
    k->now++;
    k->stack[sp++] = id;
    k->stamp[id] = k->now;
    while (sp) {
        int n = k->stack[--sp], nargs, grp, idx, a;
        const int *args;
        if (plm_graph_is_input(k->g, n, &grp, &idx)) {
            if (grp == PLM_GRP_X && mark[idx]) return 1;
            continue;
        }
        if (plm_graph_node(k->g, n, &nargs, &args) < 0) continue;
        for (a = 0; a < nargs; a++)
            if (args[a] >= 0 && args[a] < k->size && k->stamp[args[a]] != k->now) {
                k->stamp[args[a]] = k->now;
                k->stack[sp++] = args[a];
            }
    }
    return 0;
}

/* The value of node id when input node zin is zval and it reads no other input (0 and *out set), else -1. */
static int eval_at(const plm_graph *g, int id, int zin, double zval, double *out, int depth)
{
    int nargs, op, i;
    const int *args;
    double a[3] = {0, 0, 0};
    if (depth > 64) return -1;
    if (id == zin) return *out = zval, 0;
    if (plm_graph_is_const(g, id, out)) return 0;
    if (plm_graph_is_input(g, id, NULL, NULL)) return -1;
    op = plm_graph_node(g, id, &nargs, &args);
    if (op < 0 || nargs > 3 || op == PLM_OP_NATIVE || op == PLM_OP_NATIVE_D || op >= PLM_OP_STDNORMAL) return -1;
    for (i = 0; i < nargs; i++)
        if (eval_at(g, args[i], zin, zval, &a[i], depth + 1)) return -1;
    *out = plm_op_eval((plm_op)op, a[0], a[1], a[2]);
    return 0;
}

/* Node id with every select whose condition reads only zin resolved at zin = zval (mu[z] at z = j is mu_j). */
static int resolve_at(const plm_graph *g, int id, int zin, double zval)
{
    int nargs, guard = 0;
    const int *args;
    double c;
    while (guard++ < 100000 && plm_graph_node(g, id, &nargs, &args) == PLM_OP_SELECT && nargs == 3 &&
           eval_at(g, args[0], zin, zval, &c, 0) == 0)
        id = c != 0 ? args[1] : args[2];
    return id;
}

static int has_parent(const plm_gsite *s, int p)
{
    int i;
    for (i = 0; i < s->nparents; i++)
        if (s->parents[i] == p) return 1;
    return 0;
}

static int is_latent_kind(const plm_gsite *s, int dist)
{
    return s->kind == PLM_GSITE_LATENT && s->dist == dist && s->dim == 1;
}

/* The program of nodes outs[0..nout-1] of m's graph, coordinates move[0..nmove-1] per particle (group Z). With
** xin, the coordinates of u (group X) it reads go to *xin (GC memory) and their count to *nx. */
static plm_status compile_small(plm_ctx *ctx, const plm_gmodel *m, int nout, const int *outs, int nmove, const int *move,
                                plm_prog **out, int **xin, int *nx)
{
    plm_graph *h;
    int *so = malloc(((size_t)nout + 1) * sizeof *so);
    plm_status st;
    if (!so) return plm_fail(ctx, PLM_ENOMEM, "motif: out of memory");
    st = plm_graph_extract(ctx, m->g, nout, outs, nmove, move, PLM_GRP_Z, &h, so);
    if (!st) st = plm_prog_compile(ctx, h, nout, so, nmove ? 1u << PLM_GRP_Z : 0u, out);
    if (!st && xin) {
        int id, n = plm_graph_size(h), grp, idx;
        *nx = 0;
        if (!(*xin = plm_gc_alloc_atomic(((size_t)n + 1) * sizeof **xin))) st = plm_fail(ctx, PLM_ENOMEM, "motif: out of memory");
        for (id = 0; !st && id < n; id++)
            if (plm_graph_is_input(h, id, &grp, &idx) && grp == PLM_GRP_X) (*xin)[(*nx)++] = idx;
    }
    free(so);
    return st;
}

static plm_motif_occs *occs_new(const plm_motif_def *d, const occ_ops *ops, const int *shape, plm_gmodel *m)
{
    plm_motif_occs *o = plm_gc_alloc(sizeof *o);
    if (!o) return NULL;
    memset(o, 0, sizeof *o);
    o->def = d, o->ops = ops, o->m = m;
    if (shape) memcpy(o->shape, shape, (size_t)d->nshape * sizeof *shape);
    return o;
}

/* ---- the mixture motif ----
** Features, in the units of the chosen component k's prior (centre c = m0_k, scale s = s0_k): x[0] = K; the
** observation (y - c) / s; the assigned observations' precision relative to the prior's, log(1 + C s^2), and
** their precision-weighted mean (B / C - c) / s (0 when none); then per slot (slot 0 is k, slots 1.. the other
** components in order, slots >= K padding): 1, the log weight (normalised), the mean (-c, / s; 0 for slot 0,
** whose mean is the block's), and the log of the observation's sd under that component relative to s. Block:
** v[0] the slot of z, v[1] = (mu_k - c) / s. */

static int mix_kmax(const int *shape) { return shape[0]; }
static int mix_nin(int kmax) { return 4 + 4 * kmax; }

static void mix_layout(const int *shape, int *nin, int *nmem, plm_nn_member *mem)
{
    int kmax = mix_kmax(shape);
    *nin = mix_nin(kmax);
    *nmem = 2;
    mem[0].kind = PLM_NN_DISCRETE, mem[0].card = kmax, mem[0].ncat_at = 0;
    mem[1].kind = PLM_NN_CONTINUOUS, mem[1].card = 4, mem[1].ncat_at = -1;
}

static int slot_comp(int slot, int k) { return slot == 0 ? k : slot - 1 < k ? slot - 1 : slot; }
static int comp_slot(int j, int k) { return j == k ? 0 : j < k ? j + 1 : j; }

/* The features of one occurrence: K components, chosen component k, log weights lw (normalised), means mu
** (mu[k] unused), observation sds sd, prior centre and scale c, s, observation y, statistics C, B. */
static void mix_features(int kmax, int K, int k, const double *lw, const double *mu, const double *sd, double c, double s,
                         double y, double C, double B, double *x)
{
    int slot;
    memset(x, 0, (size_t)mix_nin(kmax) * sizeof *x);
    x[0] = K;
    x[1] = clampf((y - c) / s);
    x[2] = clampf(log1p(C * s * s));
    x[3] = C > 0 ? clampf((B / C - c) / s) : 0;
    for (slot = 0; slot < K; slot++) {
        int j = slot_comp(slot, k);
        double *f = x + 4 + 4 * slot;
        f[0] = 1;
        f[1] = clampf(lw[j]);
        f[2] = slot == 0 ? 0 : clampf((mu[j] - c) / s);
        f[3] = clampf(log(sd[j] / s));
    }
}

/* The prior over mixture instantiations (in the units of component k's prior: c = 0, s = 1):
** K uniform on 2..K_max; weights Dirichlet(1, ..., 1); the means N(0, 1); the observation sds log-uniform on
** [0.02, 2], one shared by all components or one per component (probability 1/2 each); the number n of other
** observations assigned to k log-uniform on 1..200, minus 1; z from the weights, y ~ N(mu_z, sd_z). */
static void mix_draw(const int *shape, plm_rng *r, double *x, double *v)
{
    int kmax = mix_kmax(shape), K = 2 + (int)plm_rng_uint(r, (uint64_t)(kmax - 1)), k = (int)plm_rng_uint(r, (uint64_t)K);
    double w[MIX_KMAX], lw[MIX_KMAX], mu[MIX_KMAX], sd[MIX_KMAX], tot = 0, u, C = 0, B = 0, y;
    int j, n, z, shared = plm_rng_uniform(r) < 0.5;
    for (j = 0; j < K; j++) tot += w[j] = gsl_ran_gamma(&r->gsl, 1.0, 1.0);
    for (j = 0; j < K; j++) lw[j] = log(w[j] / tot);
    for (j = 0; j < K; j++) mu[j] = plm_rng_normal(r);
    for (j = 0; j < K; j++) sd[j] = (j == 0 || !shared) ? 0.02 * exp(plm_rng_uniform(r) * log(100.0)) : sd[0];
    n = (int)floor(exp(plm_rng_uniform(r) * log(200.0))) - 1;
    if (n > 0) {
        double ybar = mu[k] + sd[k] / sqrt((double)n) * plm_rng_normal(r);
        C = n / (sd[k] * sd[k]);
        B = C * ybar;
    }
    u = plm_rng_uniform(r);
    for (z = 0; z < K - 1; z++)
        if ((u -= w[z] / tot) < 0) break;
    y = mu[z] + sd[z] * plm_rng_normal(r);
    mix_features(kmax, K, k, lw, mu, sd, 0, 1, y, C, B, x);
    v[0] = comp_slot(z, k);
    v[1] = mu[k];
}

void plm_motif_mixture_features(int kmax, int K, int k, const double *lw, const double *mu, const double *sd, double c,
                                double s, double y, double C, double B, double *x)
{
    mix_features(kmax, K, k, lw, mu, sd, c, s, y, C, B, x);
}

static int mix_sites(const plm_motif_occs *o, int i, int *sites)
{
    const mix_occ *q = &o->mocc[i];
    const mix_group *g = &o->groups[q->g];
    int j;
    sites[0] = q->z;
    for (j = 0; j < g->K; j++) sites[1 + j] = g->mu[j];
    return 1 + g->K;
}

static plm_status mix_begin(plm_ctx *ctx, const plm_motif_occs *o, plm_motif_ws *w, const double *u)
{
    plm_prog_in in[PLM_NGROUPS];
    plm_status st;
    int i;
    memset(in, 0, sizeof in);
    in[PLM_GRP_X].p = u;
    in[PLM_GRP_X].ld = 1;
    if ((st = plm_prog_eval(ctx, o->par, 1, in, w->parp, NULL, 1))) return st;
    memset(w->C, 0, (size_t)o->ngroups * MIX_KMAX * sizeof *w->C);
    memset(w->B, 0, (size_t)o->ngroups * MIX_KMAX * sizeof *w->B);
    for (i = 0; i < o->n; i++) {
        const mix_occ *q = &o->mocc[i];
        int K = o->groups[q->g].K, z = (int)u[q->zc];
        double y = w->par[q->out], sd;
        if (z < 0 || z >= K) continue;
        sd = w->par[q->out + 1 + z];
        w->C[q->g * MIX_KMAX + z] += 1 / (sd * sd);
        w->B[q->g * MIX_KMAX + z] += y / (sd * sd);
    }
    return PLM_OK;
}

static plm_status mix_inputs(plm_ctx *ctx, const plm_motif_occs *o, plm_motif_ws *w, int i, const double *u, plm_rng *r,
                             double *x, double *v)
{
    const mix_occ *q = &o->mocc[i];
    const mix_group *g = &o->groups[q->g];
    const double *P = w->par + q->out;
    double lw[MIX_KMAX], mu[MIX_KMAX], sd[MIX_KMAX], tot = 0, y = P[0];
    int K = g->K, k = (int)plm_rng_uint(r, (uint64_t)K), j, z = (int)u[q->zc];
    for (j = 0; j < K; j++) tot += P[1 + K + j];
    for (j = 0; j < K; j++) {
        lw[j] = log(P[1 + K + j] / tot);
        mu[j] = u[g->muc[j]];
        sd[j] = P[1 + j];
        if (!(sd[j] > 0) || !(P[1 + K + j] >= 0))
            return plm_fail(ctx, PLM_EDOM, "learned: mixture observation '%s' has sd %g or weight %g under component %d",
                            o->m->sites[q->y].name, sd[j], P[1 + K + j], j + 1);
    }
    w->k = k;
    w->c = w->par[g->out + 2 * k];
    w->s = w->par[g->out + 2 * k + 1];
    if (!(w->s > 0) || !isfinite(w->c))
        return plm_fail(ctx, PLM_EDOM, "learned: the prior of mixture mean '%s' has mean %g and sd %g",
                        o->m->sites[g->mu[k]].name, w->c, w->s);
    w->Ck = w->C[q->g * MIX_KMAX + k];
    w->Bk = w->B[q->g * MIX_KMAX + k];
    if (z == k) {   /* the other observations only: the block decides where this one goes */
        w->Ck -= 1 / (sd[k] * sd[k]);
        w->Bk -= y / (sd[k] * sd[k]);
        if (w->Ck < 1e-12 * (1 / (sd[k] * sd[k]))) w->Ck = 0, w->Bk = 0;
    }
    mix_features(mix_kmax(o->shape), K, k, lw, mu, sd, w->c, w->s, y, w->Ck, w->Bk, x);
    v[0] = z >= 0 && z < K ? comp_slot(z, k) : -1;
    v[1] = (mu[k] - w->c) / w->s;
    return PLM_OK;
}

static double mix_logp(const plm_motif_occs *o, plm_motif_ws *w, int i, const double *u, const double *v)
{
    const mix_occ *q = &o->mocc[i];
    const mix_group *g = &o->groups[q->g];
    const double *P = w->par + q->out;
    int K = g->K, slot = (int)v[0], z;
    double m = w->c + w->s * v[1], mz, tot = 0;
    if (!(v[0] >= 0 && slot < K && slot == v[0]) || !isfinite(m)) return -INFINITY;
    z = slot_comp(slot, w->k);
    for (int j = 0; j < K; j++) tot += P[1 + K + j];
    mz = z == w->k ? m : u[g->muc[z]];
    return lnorm(m, w->c, w->s) + log(P[1 + K + z] / tot) + lnorm(P[0], mz, P[1 + z]) + m * w->Bk - 0.5 * m * m * w->Ck;
}

static void mix_apply(const plm_motif_occs *o, plm_motif_ws *w, int i, double *u, const double *v)
{
    const mix_occ *q = &o->mocc[i];
    const mix_group *g = &o->groups[q->g];
    const double *P = w->par + q->out;
    int K = g->K, zold = (int)u[q->zc], znew = slot_comp((int)v[0], w->k);
    double y = P[0];
    if (zold >= 0 && zold < K) {
        w->C[q->g * MIX_KMAX + zold] -= 1 / (P[1 + zold] * P[1 + zold]);
        w->B[q->g * MIX_KMAX + zold] -= y / (P[1 + zold] * P[1 + zold]);
    }
    w->C[q->g * MIX_KMAX + znew] += 1 / (P[1 + znew] * P[1 + znew]);
    w->B[q->g * MIX_KMAX + znew] += y / (P[1 + znew] * P[1 + znew]);
    u[q->zc] = znew;
    u[g->muc[w->k]] = w->c + w->s * v[1];
}

static const occ_ops mix_ops = {mix_sites, mix_begin, mix_inputs, mix_logp, mix_apply};

/* Detection: a latent categorical z (K <= K_max) whose only child is an observed normal y, whose mean at z = j
** is (after resolving selects on z) the value of a latent unbounded normal site mu_j, distinct for each j;
** occurrences sharing the list of means form a group, kept when every term reading a mean is the observation
** of one of its occurrences, and no weight, observation sd or prior parameter reads a z or a mean of the group. */
static plm_status mix_detect(plm_ctx *ctx, const plm_motif_def *d, const int *shape, plm_gmodel *m, plm_motif_occs **out)
{
    int kmax = mix_kmax(shape), i, j, n = 0, ng = 0, *valsite = NULL, *nch = NULL, *child = NULL, *outs = NULL, nout = 0;
    mix_occ *occ = NULL;
    mix_group *grp = NULL;
    char *mark = NULL, *keep = NULL;
    walk wk;
    plm_status st = PLM_OK;
    plm_motif_occs *o;
    int gsize = plm_graph_size(m->g);
    *out = NULL;
    if ((st = walk_init(ctx, &wk, m->g))) return st;
    valsite = malloc(((size_t)gsize + 1) * sizeof *valsite);
    nch = calloc((size_t)m->n + 1, sizeof *nch);
    child = malloc(((size_t)m->n + 1) * sizeof *child);
    occ = malloc(((size_t)m->n + 1) * sizeof *occ);
    grp = malloc(((size_t)m->n + 1) * sizeof *grp);
    mark = calloc((size_t)m->dim + 1, 1);
    keep = calloc((size_t)m->n + 1, 1);
    if (!valsite || !nch || !child || !occ || !grp || !mark || !keep) {
        st = plm_fail(ctx, PLM_ENOMEM, "motif: out of memory");
        goto done;
    }
    for (i = 0; i < gsize; i++) valsite[i] = -1;
    for (i = 0; i < m->n; i++) {
        const plm_gsite *s = &m->sites[i];
        if (is_latent_kind(s, PLM_DIST_NORMAL) && !s->discrete && s->lo < 0 && s->hi < 0 && s->value[0] >= 0)
            valsite[s->value[0]] = i;
    }
    /* the terms reading each latent site: their count, and one of them */
    for (i = 0; i < m->n; i++)
        if (m->sites[i].logp >= 0)
            for (j = 0; j < m->sites[i].nparents; j++) {
                int p = m->sites[i].parents[j];
                if (p == i) continue;
                nch[p]++;
                child[p] = i;
            }
    for (i = 0; i < m->n; i++) {
        const plm_gsite *z = &m->sites[i], *y;
        int K = z->K, zin, mus[MIX_KMAX], g, ok = 1;
        if (!is_latent_kind(z, PLM_DIST_CATEGORICAL) || K < 2 || K > kmax || nch[i] != 1) continue;
        y = &m->sites[child[i]];
        if (y->kind != PLM_GSITE_OBSERVED || y->dist != PLM_DIST_NORMAL || y->dim != 1 || y->nparams != 2) continue;
        zin = m->x[z->first];
        for (j = 0; j < K && ok; j++) {
            int node = resolve_at(m->g, y->params[0], zin, (double)j);
            mus[j] = node >= 0 && node < gsize ? valsite[node] : -1;
            if (mus[j] < 0) ok = 0;
            for (int l = 0; l < j && ok; l++) ok = mus[l] != mus[j];
        }
        if (!ok) continue;
        for (g = 0; g < ng; g++)
            if (grp[g].K == K && memcmp(grp[g].mu, mus, (size_t)K * sizeof *mus) == 0) break;
        if (g == ng) {
            grp[ng].K = K;
            memcpy(grp[ng].mu, mus, (size_t)K * sizeof *mus);
            for (j = 0; j < K; j++) grp[ng].muc[j] = m->sites[mus[j]].first;
            ng++;
        }
        occ[n].z = i, occ[n].y = child[i], occ[n].zc = z->first, occ[n].g = g;
        n++;
    }
    /* check each group: the means' terms are its observations' only; nothing else reads the block coordinates */
    for (int g = 0; g < ng; g++) {
        int ok = 1, cnt = 0;
        memset(mark, 0, (size_t)m->dim + 1);
        memset(keep, 0, (size_t)m->n + 1);
        for (j = 0; j < grp[g].K; j++) mark[grp[g].muc[j]] = 1;
        for (i = 0; i < n; i++)
            if (occ[i].g == g) mark[occ[i].zc] = 1, keep[occ[i].y] = 1;
        for (i = 0; i < m->n && ok; i++) {
            const plm_gsite *s = &m->sites[i];
            if (s->logp < 0 || keep[i]) continue;
            for (j = 0; j < grp[g].K && ok; j++)
                if (i != grp[g].mu[j] && has_parent(s, grp[g].mu[j])) ok = 0;
        }
        for (j = 0; j < grp[g].K && ok; j++) {
            const plm_gsite *mu = &m->sites[grp[g].mu[j]];
            ok = mu->nparams == 2 && !reads_marked(&wk, mu->params[0], mark) && !reads_marked(&wk, mu->params[1], mark);
        }
        for (i = 0; i < n && ok; i++) {
            const plm_gsite *z = &m->sites[occ[i].z], *y = &m->sites[occ[i].y];
            if (occ[i].g != g) continue;
            for (j = 0; j < z->nparams && ok; j++) ok = !reads_marked(&wk, z->params[j], mark);
            for (j = 0; j < grp[g].K && ok; j++)
                ok = !reads_marked(&wk, resolve_at(m->g, y->params[1], m->x[z->first], (double)j), mark);
            ok = ok && !reads_marked(&wk, y->value[0], mark);
            cnt++;
        }
        if (!ok || !cnt)
            for (i = 0; i < n; i++)
                if (occ[i].g == g) occ[i].g = -1;
    }
    {   /* drop the occurrences of refused groups, renumber the groups */
        int *newg = malloc(((size_t)ng + 1) * sizeof *newg), k = 0, g2 = 0;
        if (!newg) {
            st = plm_fail(ctx, PLM_ENOMEM, "motif: out of memory");
            goto done;
        }
        for (int g = 0; g < ng; g++) newg[g] = -1;
        for (i = 0; i < n; i++)
            if (occ[i].g >= 0 && newg[occ[i].g] < 0) newg[occ[i].g] = g2, grp[g2] = grp[occ[i].g], g2++;
        for (i = 0; i < n; i++)
            if (occ[i].g >= 0) occ[k] = occ[i], occ[k].g = newg[occ[i].g], k++;
        free(newg);
        n = k, ng = g2;
    }
    if (!n) goto done;
    /* the parameter program: per occurrence y, sd_j, p_j; per group m0_j, s0_j */
    for (i = 0; i < n; i++) nout += 1 + 2 * grp[occ[i].g].K;
    for (int g = 0; g < ng; g++) nout += 2 * grp[g].K;
    if (!(outs = malloc((size_t)nout * sizeof *outs))) {
        st = plm_fail(ctx, PLM_ENOMEM, "motif: out of memory");
        goto done;
    }
    if (!(o = occs_new(d, &mix_ops, shape, m)) || !(o->mocc = plm_gc_alloc_atomic((size_t)n * sizeof *occ)) ||
        !(o->groups = plm_gc_alloc_atomic((size_t)ng * sizeof *grp))) {
        st = plm_fail(ctx, PLM_ENOMEM, "motif: out of memory");
        goto done;
    }
    nout = 0;
    for (i = 0; i < n; i++) {
        const plm_gsite *z = &m->sites[occ[i].z], *y = &m->sites[occ[i].y];
        int K = grp[occ[i].g].K;
        occ[i].out = nout;
        outs[nout++] = y->value[0];
        for (j = 0; j < K; j++) outs[nout++] = resolve_at(m->g, y->params[1], m->x[z->first], (double)j);
        for (j = 0; j < K; j++) outs[nout++] = z->params[j];
    }
    for (int g = 0; g < ng; g++) {
        grp[g].out = nout;
        for (j = 0; j < grp[g].K; j++) {
            outs[nout++] = m->sites[grp[g].mu[j]].params[0];
            outs[nout++] = m->sites[grp[g].mu[j]].params[1];
        }
    }
    if ((st = compile_small(ctx, m, nout, outs, 0, NULL, &o->par, NULL, NULL))) goto done;
    memcpy(o->mocc, occ, (size_t)n * sizeof *occ);
    memcpy(o->groups, grp, (size_t)ng * sizeof *grp);
    o->n = n, o->ngroups = ng, o->npar = nout;
    *out = o;
done:
    walk_free(&wk);
    free(valsite), free(nch), free(child), free(occ), free(grp), free(mark), free(keep), free(outs);
    return st;
}

/* ---- discrete occurrences (grid, chain) ---- */

static int disc_sites(const plm_motif_occs *o, int i, int *sites)
{
    const disc_occ *q = &o->docc[i];
    memcpy(sites, q->site, (size_t)q->nb * sizeof *sites);
    return q->nb;
}

/* The cached features x (nin) and block log densities (into w->lpcfg) of occurrence i, when its blanket at u is
** the one they were made from (bit for bit): 1, else 0. */
static int disc_hit(const plm_motif_occs *o, plm_motif_ws *w, int i, const double *u, double *x, int nin)
{
    const disc_occ *q = &o->docc[i];
    const double *c = w->cache + (size_t)i * w->cstride;
    int k;
    if (!w->cache || !w->cvalid[i]) return 0;
    for (k = 0; k < q->nx; k++)
        if (memcmp(&c[k], &u[q->xin[k]], sizeof *c) != 0) return 0;
    memcpy(x, c + q->nx, (size_t)nin * sizeof *x);
    memcpy(w->lpcfg, c + q->nx + nin, (size_t)q->ncfg * sizeof *x);
    return 1;
}

/* Keep occurrence i's blanket at u, features x and w->lpcfg for disc_hit. */
static void disc_store(const plm_motif_occs *o, plm_motif_ws *w, int i, const double *u, const double *x, int nin)
{
    const disc_occ *q = &o->docc[i];
    double *c = w->cache + (size_t)i * w->cstride;
    int k;
    if (!w->cache) return;
    for (k = 0; k < q->nx; k++) c[k] = u[q->xin[k]];
    memcpy(c + q->nx, x, (size_t)nin * sizeof *x);
    memcpy(c + q->nx + nin, w->lpcfg, (size_t)q->ncfg * sizeof *x);
    w->cvalid[i] = 1;
}

/* Evaluate occurrence i's terms at every value of its block: w->T (term t at config c: T[t * ncfg + c]) and
** their sums w->lpcfg. */
static plm_status disc_eval(plm_ctx *ctx, const plm_motif_occs *o, plm_motif_ws *w, int i, const double *u)
{
    const disc_occ *q = &o->docc[i];
    plm_prog_ws *pw = &w->pws[i];
    plm_prog_in in[PLM_NGROUPS];
    int c, j, t;
    plm_status st;
    if (!pw->p) {
        int blk = q->ncfg < PLM_EXPR_BLOCK ? q->ncfg : PLM_EXPR_BLOCK;
        if ((st = plm_prog_ws_init_block(ctx, pw, q->prog, blk < 2 ? 2 : blk))) return st;
    }
    for (j = 0; j < q->nb; j++)
        for (c = 0; c < q->ncfg; c++) w->z[j * q->ncfg + c] = (c / q->stride[j]) % q->card[j];
    for (t = 0; t < q->nterm; t++) w->Tp[t] = w->T + (size_t)t * q->ncfg;
    memset(in, 0, sizeof in);
    in[PLM_GRP_X].p = u;
    in[PLM_GRP_X].ld = 1;
    in[PLM_GRP_Z].p = w->z;
    in[PLM_GRP_Z].ld = (size_t)q->ncfg;
    plm_prog_uniforms(pw, in);
    for (c = 0; c < q->ncfg; c += PLM_EXPR_BLOCK)
        plm_prog_block(pw, in, (size_t)c, (size_t)(q->ncfg - c < PLM_EXPR_BLOCK ? q->ncfg - c : PLM_EXPR_BLOCK), w->Tp, NULL);
    for (c = 0; c < q->ncfg; c++) {
        double s = 0;
        for (t = 0; t < q->nterm; t++) s += w->T[(size_t)t * q->ncfg + c];
        w->lpcfg[c] = isnan(s) ? -INFINITY : s;
    }
    return PLM_OK;
}

static int disc_cfg(const disc_occ *q, const double *v)
{
    int j, c = 0;
    for (j = 0; j < q->nb; j++) {
        int k = (int)v[j];
        if (!(v[j] >= 0 && k < q->card[j] && k == v[j])) return -1;
        c += k * q->stride[j];
    }
    return c;
}

static double disc_logp(const plm_motif_occs *o, plm_motif_ws *w, int i, const double *u, const double *v)
{
    int c = disc_cfg(&o->docc[i], v);
    (void)u;
    return c < 0 ? -INFINITY : w->lpcfg[c];
}

static void disc_apply(const plm_motif_occs *o, plm_motif_ws *w, int i, double *u, const double *v)
{
    const disc_occ *q = &o->docc[i];
    int j;
    (void)w;
    for (j = 0; j < q->nb; j++) u[q->coord[j]] = v[j];
}

/* The occurrence array doubled (GC memory: it holds the occurrences' programs, which only it keeps alive). */
static disc_occ *grow_occ(disc_occ *occ, int *cap)
{
    disc_occ *q = plm_gc_alloc(2 * (size_t)*cap * sizeof *q);
    if (!q) return NULL;
    memcpy(q, occ, (size_t)*cap * sizeof *q);
    *cap *= 2;
    return q;
}

/* Make occurrence q (block sites set) with terms terms[0..nterm-1] (site indices) of roles role. */
static plm_status disc_make(plm_ctx *ctx, plm_gmodel *m, disc_occ *q, const int *terms, const int *role, int nterm)
{
    int j, *outs = malloc(((size_t)nterm + 1) * sizeof *outs);
    plm_status st;
    if (!outs || !(q->role = plm_gc_alloc_atomic((size_t)nterm * sizeof *q->role))) {
        free(outs);
        return plm_fail(ctx, PLM_ENOMEM, "motif: out of memory");
    }
    q->ncfg = 1;
    for (j = 0; j < q->nb; j++) {
        q->coord[j] = m->sites[q->site[j]].first;
        q->card[j] = m->sites[q->site[j]].dist == PLM_DIST_BERNOULLI ? 2 : m->sites[q->site[j]].K;
        q->stride[j] = q->ncfg;
        q->ncfg *= q->card[j];
    }
    for (j = 0; j < nterm; j++) outs[j] = m->sites[terms[j]].logp, q->role[j] = role[j];
    q->nterm = nterm;
    st = compile_small(ctx, m, nterm, outs, q->nb, q->coord, &q->prog, &q->xin, &q->nx);
    free(outs);
    return st;
}

/* The terms reading each latent site besides its own (sites with a term, in model order), as lists. */
typedef struct kids {
    int *start, *list;   /* site i's at list[start[i] .. start[i + 1]) */
} kids;

static plm_status kids_init(plm_ctx *ctx, const plm_gmodel *m, kids *k)
{
    int i, j, *fill;
    k->start = calloc((size_t)m->n + 2, sizeof *k->start);
    fill = calloc((size_t)m->n + 1, sizeof *fill);
    k->list = NULL;
    if (!k->start || !fill) goto oom;
    for (i = 0; i < m->n; i++)
        if (m->sites[i].logp >= 0)
            for (j = 0; j < m->sites[i].nparents; j++)
                if (m->sites[i].parents[j] != i) k->start[m->sites[i].parents[j] + 1]++;
    for (i = 0; i < m->n; i++) k->start[i + 1] += k->start[i];
    if (!(k->list = malloc(((size_t)k->start[m->n] + 1) * sizeof *k->list))) goto oom;
    for (i = 0; i < m->n; i++)   /* in model order, since i increases */
        if (m->sites[i].logp >= 0)
            for (j = 0; j < m->sites[i].nparents; j++) {
                int p = m->sites[i].parents[j];
                if (p != i) k->list[k->start[p] + fill[p]++] = i;
            }
    free(fill);
    return PLM_OK;
oom:
    free(k->start), free(fill);
    return plm_fail(ctx, PLM_ENOMEM, "motif: out of memory");
}

static void kids_free(kids *k) { free(k->start), free(k->list); }

static int cmp_int(const void *a, const void *b) { return *(const int *)a - *(const int *)b; }

/* The terms reading the block sites blk[0..nb-1] besides their own: each must read exactly one of them (its
** role is `base` + its index in blk). In model order into terms; returns the count, or -1 when a term reads two. */
static int single_children(const plm_gmodel *m, const kids *kd, const int *blk, int nb, int *terms, int *role, int base)
{
    int n = 0, i, j, k, out = 0;
    for (j = 0; j < nb; j++)
        for (k = kd->start[blk[j]]; k < kd->start[blk[j] + 1]; k++) terms[n++] = kd->list[k];
    qsort(terms, (size_t)n, sizeof *terms, cmp_int);
    for (i = 0; i < n; i++) {
        int t = terms[i], hits = 0, which = -1, own = 0;
        if (i > 0 && t == terms[i - 1]) continue;
        for (j = 0; j < nb; j++) {
            if (t == blk[j]) own = 1;
            if (has_parent(&m->sites[t], blk[j])) hits++, which = j;
        }
        if (own) continue;
        if (hits > 1) return -1;
        terms[out] = t, role[out] = base + which, out++;
    }
    return out;
}

static plm_status disc_begin(plm_ctx *ctx, const plm_motif_occs *o, plm_motif_ws *w, const double *u)
{
    (void)ctx, (void)o, (void)w, (void)u;
    return PLM_OK;
}

/* ---- the grid motif ----
** Block (a, b, c, d): b and c read a, d reads b and c. Features (13): the logits of the block's own terms
** given the blanket, in units of log odds: a; b given a = 0, 1; c given a = 0, 1; d given (b, c) = (0, 0),
** (1, 0), (0, 1), (1, 1); then for each of a, b, c, d the log-likelihood ratio (1 vs 0) of its children outside
** the block. Each is clamped to [-30, 30]. */

static void grid_layout(const int *shape, int *nin, int *nmem, plm_nn_member *mem)
{
    int j;
    (void)shape;
    *nin = 13;
    *nmem = 4;
    for (j = 0; j < 4; j++) mem[j].kind = PLM_NN_DISCRETE, mem[j].card = 2, mem[j].ncat_at = -1;
}

static double log_bern(int x, double p) { return x ? log(p) : log1p(-p); }

/* The prior over grid instantiations: each own-term logit N(0, 2^2) independently; the block drawn from them
** in order a, b, c, d; each block node has 0, 1 or 2 children outside the block (uniform), each a bernoulli
** whose logits given the node = 0 and 1 are N(0, 2^2), drawn given the node. */
static void grid_draw(const int *shape, plm_rng *r, double *x, double *v)
{
    double L[9];
    int j, a, b, c, d, val[4];
    (void)shape;
    for (j = 0; j < 9; j++) L[j] = 2 * plm_rng_normal(r);
    a = plm_rng_uniform(r) < logistic(L[0]);
    b = plm_rng_uniform(r) < logistic(L[1 + a]);
    c = plm_rng_uniform(r) < logistic(L[3 + a]);
    d = plm_rng_uniform(r) < logistic(L[5 + b + 2 * c]);
    val[0] = a, val[1] = b, val[2] = c, val[3] = d;
    for (j = 0; j < 9; j++) x[j] = clampf(L[j]);
    for (j = 0; j < 4; j++) {
        int nc = (int)plm_rng_uint(r, 3), k;
        double U = 0;
        for (k = 0; k < nc; k++) {
            double p0 = logistic(2 * plm_rng_normal(r)), p1 = logistic(2 * plm_rng_normal(r));
            int ch = plm_rng_uniform(r) < (val[j] ? p1 : p0);
            U += log_bern(ch, p1) - log_bern(ch, p0);
        }
        x[9 + j] = clampf(U);
        v[j] = val[j];
    }
}

static plm_status grid_inputs(plm_ctx *ctx, const plm_motif_occs *o, plm_motif_ws *w, int i, const double *u, plm_rng *r,
                              double *x, double *v)
{
    const disc_occ *q = &o->docc[i];
    const double *T;
    int t, j;
    plm_status st;
    (void)r;
    for (j = 0; j < 4; j++) v[j] = u[q->coord[j]];
    if (disc_hit(o, w, i, u, x, 13)) return PLM_OK;
    if ((st = disc_eval(ctx, o, w, i, u))) return st;
    memset(x, 0, 13 * sizeof *x);
    /* config index a + 2 b + 4 c + 8 d */
    for (t = 0; t < q->nterm; t++) {
        T = w->T + (size_t)t * q->ncfg;
        switch (q->role[t]) {
        case 0: x[0] += T[1] - T[0]; break;
        case 1: x[1] += T[2] - T[0], x[2] += T[3] - T[1]; break;
        case 2: x[3] += T[4] - T[0], x[4] += T[5] - T[1]; break;
        case 3:
            x[5] += T[8] - T[0], x[6] += T[10] - T[2], x[7] += T[12] - T[4], x[8] += T[14] - T[6];
            break;
        default: j = q->role[t] - 4, x[9 + j] += T[q->stride[j]] - T[0]; break;
        }
    }
    for (j = 0; j < 13; j++) x[j] = clampf(x[j]);
    disc_store(o, w, i, u, x, 13);
    return PLM_OK;
}

/* The occurrences occ[0..n-1] of a discrete-block motif (grid, chain) as the model's set of them, with the most
** configurations and terms of any one (workspace sizes). */
static plm_status disc_occs(plm_ctx *ctx, const plm_motif_def *d, const occ_ops *ops, const int *shape, plm_gmodel *m,
                            disc_occ *occ, int n, plm_motif_occs **out)
{
    plm_motif_occs *o = occs_new(d, ops, shape, m);
    int a;
    if (!o) return plm_fail(ctx, PLM_ENOMEM, "motif: out of memory");
    o->docc = occ;
    o->n = n;
    for (a = 0; a < n; a++) {
        if (occ[a].ncfg > o->maxcfg) o->maxcfg = occ[a].ncfg;
        if (occ[a].nterm > o->maxterm) o->maxterm = occ[a].nterm;
    }
    *out = o;
    return PLM_OK;
}

static const occ_ops grid_ops = {disc_sites, disc_begin, grid_inputs, disc_logp, disc_apply};

static int is_bern(const plm_gsite *s) { return is_latent_kind(s, PLM_DIST_BERNOULLI); }

/* Read set of site s among the block blk[0..3]: bit j when s's term reads blk[j] (its own site included). */
static int reads_of(const plm_gmodel *m, int s, const int *blk)
{
    int j, bits = 0;
    for (j = 0; j < 4; j++)
        if (s == blk[j] || has_parent(&m->sites[s], blk[j])) bits |= 1 << j;
    return bits;
}

static plm_status grid_detect(plm_ctx *ctx, const plm_motif_def *d, const int *shape, plm_gmodel *m, plm_motif_occs **out)
{
    int a, b, c, dd, n = 0, cap = 16, *terms = NULL, *role = NULL;
    disc_occ *occ = plm_gc_alloc((size_t)cap * sizeof *occ);
    plm_status st;
    kids kd;
    *out = NULL;
    if ((st = kids_init(ctx, m, &kd))) return st;
    terms = malloc(((size_t)kd.start[m->n] + 8) * sizeof *terms);
    role = malloc(((size_t)kd.start[m->n] + 8) * sizeof *role);
    if (!terms || !role || !occ) {
        st = plm_fail(ctx, PLM_ENOMEM, "motif: out of memory");
        goto done;
    }
    for (a = 0; a < m->n; a++) {
        int kb, kc, kdd;
        if (!is_bern(&m->sites[a])) continue;
        for (kb = kd.start[a]; kb < kd.start[a + 1]; kb++) {
            b = kd.list[kb];
            if (!is_bern(&m->sites[b])) continue;
            for (kc = kd.start[a]; kc < kd.start[a + 1]; kc++) {
                c = kd.list[kc];
                if (c <= b || !is_bern(&m->sites[c])) continue;
                for (kdd = kd.start[b]; kdd < kd.start[b + 1]; kdd++) {
                    int blk[4], nt, j;
                    disc_occ *q;
                    dd = kd.list[kdd];
                    if (dd == a || dd == c || !is_bern(&m->sites[dd]) || !has_parent(&m->sites[dd], c)) continue;
                    blk[0] = a, blk[1] = b, blk[2] = c, blk[3] = dd;
                    /* own terms read exactly: a {a}, b {a, b}, c {a, c}, d {b, c, d} of the block */
                    if (reads_of(m, a, blk) != 1 || reads_of(m, b, blk) != 3 || reads_of(m, c, blk) != 5 ||
                        reads_of(m, dd, blk) != 14)
                        continue;
                    for (j = 0; j < 4; j++) terms[j] = blk[j], role[j] = j;
                    if ((nt = single_children(m, &kd, blk, 4, terms + 4, role + 4, 4)) < 0) continue;
                    if (n == cap && !(occ = grow_occ(occ, &cap))) {
                        st = plm_fail(ctx, PLM_ENOMEM, "motif: out of memory");
                        goto done;
                    }
                    q = &occ[n++];
                    memset(q, 0, sizeof *q);
                    q->nb = 4;
                    memcpy(q->site, blk, sizeof blk);
                    if ((st = disc_make(ctx, m, q, terms, role, 4 + nt))) goto done;
                }
            }
        }
    }
    if (n) st = disc_occs(ctx, d, &grid_ops, shape, m, occ, n, out);
done:
    kids_free(&kd);
    free(terms), free(role);
    return st;
}

/* ---- the chain motif ----
** Block (s1, s2): consecutive categorical states (S <= S_max) where s2's term reads s1. Features: x[0] = S;
** the log probabilities of s1 given the state before it (S_max, padded), the log transition matrix from s1 to s2
** (S_max x S_max, row s1), and for s1 and s2 the summed log-likelihoods of the terms outside the block that read
** them (emissions, the state after s2), each row and vector shifted so its largest valid entry is 0, padding
** -30, clamped to [-30, 0]. */

static int chain_smax(const int *shape) { return shape[0]; }
static int chain_nin(int smax) { return 1 + smax + smax * smax + 2 * smax; }

static void chain_layout(const int *shape, int *nin, int *nmem, plm_nn_member *mem)
{
    int smax = chain_smax(shape);
    *nin = chain_nin(smax);
    *nmem = 2;
    mem[0].kind = PLM_NN_DISCRETE, mem[0].card = smax, mem[0].ncat_at = 0;
    mem[1].kind = PLM_NN_DISCRETE, mem[1].card = smax, mem[1].ncat_at = 0;
}

/* Shift a[0..S-1] so its maximum is 0, clamp, and pad to smax with -30. */
static void norm_row(double *a, int S, int smax)
{
    double mx = -INFINITY;
    int j;
    for (j = 0; j < S; j++)
        if (a[j] > mx) mx = a[j];
    for (j = 0; j < smax; j++) a[j] = j < S && isfinite(mx) ? clampf(a[j] - mx) : -FEAT_CLAMP;
}

/* Chain features from raw log tables: first[S], M[S x S] (row-major, stride S), u1[S], u2[S]. */
static void chain_features(int smax, int S, const double *first, const double *M, const double *u1, const double *u2,
                           double *x)
{
    double *f = x + 1, *Mx = x + 1 + smax, *a = Mx + smax * smax, *b = a + smax;
    int s;
    x[0] = S;
    memcpy(f, first, (size_t)S * sizeof *f);
    norm_row(f, S, smax);
    for (s = 0; s < smax; s++) {
        if (s < S) memcpy(Mx + s * smax, M + s * S, (size_t)S * sizeof *Mx);
        norm_row(Mx + s * smax, s < S ? S : 0, smax);
    }
    memcpy(a, u1, (size_t)S * sizeof *a);
    norm_row(a, S, smax);
    memcpy(b, u2, (size_t)S * sizeof *b);
    norm_row(b, S, smax);
}

static void dirichlet(plm_rng *r, double alpha, int S, double *p)
{
    double tot = 0;
    int j;
    for (j = 0; j < S; j++) tot += p[j] = gsl_ran_gamma(&r->gsl, alpha, 1.0) + 1e-300;
    for (j = 0; j < S; j++) p[j] /= tot;
}

static int draw_cat(plm_rng *r, const double *p, int S)
{
    double u = plm_rng_uniform(r);
    int j;
    for (j = 0; j < S - 1; j++)
        if ((u -= p[j]) < 0) break;
    return j;
}

/* The prior over chain instantiations: S uniform on 2..S_max; transition rows Dirichlet(alpha) with alpha
** log-uniform on [0.1, 2]; the state before s1 uniform (or, with probability 0.2, s1 drawn from a Dirichlet(1)
** initial distribution); emissions over V symbols (uniform on 2..30) with rows Dirichlet(beta), beta
** log-uniform on [0.05, 1], each state observed with probability 0.9; with probability 0.8 a state after s2. */
static void chain_draw(const int *shape, plm_rng *r, double *x, double *v)
{
    int smax = chain_smax(shape), S = 2 + (int)plm_rng_uint(r, (uint64_t)(smax - 1)), V = 2 + (int)plm_rng_uint(r, 29);
    double P[CHAIN_SMAX * CHAIN_SMAX], E[CHAIN_SMAX * 32], first[CHAIN_SMAX], M[CHAIN_SMAX * CHAIN_SMAX];
    double u1[CHAIN_SMAX], u2[CHAIN_SMAX], alpha = 0.1 * exp(plm_rng_uniform(r) * log(20.0));
    double beta = 0.05 * exp(plm_rng_uniform(r) * log(20.0)), init[CHAIN_SMAX];
    int s, t, s1, s2;
    for (s = 0; s < S; s++) dirichlet(r, alpha, S, P + s * S);
    for (s = 0; s < S; s++) dirichlet(r, beta, V, E + s * V);
    if (plm_rng_uniform(r) < 0.2) {
        dirichlet(r, 1.0, S, init);
    } else {
        int s0 = (int)plm_rng_uint(r, (uint64_t)S);
        memcpy(init, P + s0 * S, (size_t)S * sizeof *init);
    }
    for (s = 0; s < S; s++) first[s] = log(init[s]);
    for (s = 0; s < S * S; s++) M[s] = log(P[s]);
    s1 = draw_cat(r, init, S);
    s2 = draw_cat(r, P + s1 * S, S);
    memset(u1, 0, sizeof u1), memset(u2, 0, sizeof u2);
    if (plm_rng_uniform(r) < 0.9) {
        int y = draw_cat(r, E + s1 * V, V);
        for (s = 0; s < S; s++) u1[s] += log(E[s * V + y]);
    }
    if (plm_rng_uniform(r) < 0.9) {
        int y = draw_cat(r, E + s2 * V, V);
        for (s = 0; s < S; s++) u2[s] += log(E[s * V + y]);
    }
    if (plm_rng_uniform(r) < 0.8) {
        t = draw_cat(r, P + s2 * S, S);
        for (s = 0; s < S; s++) u2[s] += log(P[s * S + t]);
    }
    chain_features(smax, S, first, M, u1, u2, x);
    v[0] = s1, v[1] = s2;
}

static plm_status chain_inputs(plm_ctx *ctx, const plm_motif_occs *o, plm_motif_ws *w, int i, const double *u, plm_rng *r,
                               double *x, double *v)
{
    const disc_occ *q = &o->docc[i];
    int S = q->card[0], t, s, s2;
    double first[CHAIN_SMAX], M[CHAIN_SMAX * CHAIN_SMAX], u1[CHAIN_SMAX], u2[CHAIN_SMAX];
    plm_status st;
    (void)r;
    v[0] = u[q->coord[0]], v[1] = u[q->coord[1]];
    if (disc_hit(o, w, i, u, x, chain_nin(chain_smax(o->shape)))) return PLM_OK;
    if ((st = disc_eval(ctx, o, w, i, u))) return st;
    memset(first, 0, sizeof first), memset(M, 0, sizeof M), memset(u1, 0, sizeof u1), memset(u2, 0, sizeof u2);
    /* config index s1 + S s2 */
    for (t = 0; t < q->nterm; t++) {
        const double *T = w->T + (size_t)t * q->ncfg;
        for (s = 0; s < S; s++) switch (q->role[t]) {
            case 0: first[s] += T[s]; break;
            case 1: for (s2 = 0; s2 < S; s2++) M[s * S + s2] += T[s + S * s2]; break;
            case 4: u1[s] += T[s]; break;
            case 5: u2[s] += T[S * s]; break;
            default: break;
            }
    }
    chain_features(chain_smax(o->shape), S, first, M, u1, u2, x);
    disc_store(o, w, i, u, x, chain_nin(chain_smax(o->shape)));
    return PLM_OK;
}

static const occ_ops chain_ops = {disc_sites, disc_begin, chain_inputs, disc_logp, disc_apply};

static int is_cat(const plm_gsite *s) { return is_latent_kind(s, PLM_DIST_CATEGORICAL); }

static plm_status chain_detect(plm_ctx *ctx, const plm_motif_def *d, const int *shape, plm_gmodel *m, plm_motif_occs **out)
{
    int smax = chain_smax(shape), s1, s2, n = 0, cap = 16, *terms = NULL, *role = NULL;
    disc_occ *occ = plm_gc_alloc((size_t)cap * sizeof *occ);
    plm_status st;
    kids kd;
    *out = NULL;
    if ((st = kids_init(ctx, m, &kd))) return st;
    terms = malloc(((size_t)kd.start[m->n] + 8) * sizeof *terms);
    role = malloc(((size_t)kd.start[m->n] + 8) * sizeof *role);
    if (!terms || !role || !occ) {
        st = plm_fail(ctx, PLM_ENOMEM, "motif: out of memory");
        goto done;
    }
    for (s2 = 0; s2 < m->n; s2++) {
        const plm_gsite *b = &m->sites[s2];
        int np = 0, j, nt, blk[2];
        disc_occ *q;
        if (!is_cat(b) || b->K < 2 || b->K > smax) continue;
        /* s1: the one categorical latent parent of s2 with as many states */
        for (s1 = -1, j = 0; j < b->nparents; j++) {
            const plm_gsite *a = &m->sites[b->parents[j]];
            if (b->parents[j] != s2 && is_cat(a)) np++, s1 = b->parents[j];
        }
        if (np != 1 || m->sites[s1].K != b->K || has_parent(&m->sites[s1], s2)) continue;
        blk[0] = s1, blk[1] = s2;
        terms[0] = s1, role[0] = 0, terms[1] = s2, role[1] = 1;
        if ((nt = single_children(m, &kd, blk, 2, terms + 2, role + 2, 4)) < 0) continue;
        /* s2's own term is the only one reading both; check s1's reads neither twice */
        if (n == cap && !(occ = grow_occ(occ, &cap))) {
            st = plm_fail(ctx, PLM_ENOMEM, "motif: out of memory");
            goto done;
        }
        q = &occ[n++];
        memset(q, 0, sizeof *q);
        q->nb = 2;
        q->site[0] = s1, q->site[1] = s2;
        if ((st = disc_make(ctx, m, q, terms, role, 2 + nt))) goto done;
    }
    if (n) st = disc_occs(ctx, d, &chain_ops, shape, m, occ, n, out);
done:
    kids_free(&kd);
    free(terms), free(role);
    return st;
}

/* ---- the table of motifs ---- */

static const char *const mix_shape_names[] = {"K_max"};
static const int mix_def[] = {8}, mix_min[] = {2}, mix_max[] = {MIX_KMAX};
static const char *const chain_shape_names[] = {"S_max"};
static const int chain_def[] = {8}, chain_min[] = {2}, chain_max[] = {CHAIN_SMAX};

static const plm_motif_def MIXTURE = {"mixture", 1, mix_shape_names, mix_def, mix_min, mix_max,
                                      "a mixture assignment and the mean of one component",
                                      mix_layout, mix_draw, mix_detect};
static const plm_motif_def GRID = {"grid", 0, NULL, NULL, NULL, NULL, "a 2x2 block of a binary grid network",
                                   grid_layout, grid_draw, grid_detect};
static const plm_motif_def CHAIN = {"chain", 1, chain_shape_names, chain_def, chain_min, chain_max,
                                    "two consecutive states of a Markov chain", chain_layout, chain_draw, chain_detect};
static const plm_motif_def *const ALL[] = {&MIXTURE, &GRID, &CHAIN, NULL};

const plm_motif_def *const *plm_motif_all(void) { return ALL; }

const plm_motif_def *plm_motif_find(const char *name)
{
    int i;
    for (i = 0; ALL[i]; i++)
        if (strcmp(ALL[i]->name, name) == 0) return ALL[i];
    return NULL;
}

plm_status plm_motif_check_shape(plm_ctx *ctx, const plm_motif_def *d, const int *shape)
{
    int i;
    for (i = 0; i < d->nshape; i++)
        if (shape[i] < d->shape_min[i] || shape[i] > d->shape_max[i])
            return plm_fail(ctx, PLM_EINVAL, "motif %s: %s must be in %d..%d (got %d)", d->name, d->shape_names[i],
                            d->shape_min[i], d->shape_max[i], shape[i]);
    return PLM_OK;
}
