/* kernel_compose.c -- restricted kernels (a view of the target on some coordinates), cycles, mixtures and
** repetitions of kernels (see kernel_compose.h). */
#include "kernel_compose.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A kernel's diagnostics are named by its ops table, so a composite, whose columns depend on its children,
** gets a table of its own (GC): a copy of proto with nextra names. */
static const plm_kernel_ops *ops_with_extras(const plm_kernel_ops *proto, int nextra, const char *const *names)
{
    plm_kernel_ops *ops = plm_gc_alloc(sizeof *ops);
    if (!ops) return NULL;
    *ops = *proto;
    ops->nextra = nextra;
    ops->extra_names = names;
    return ops;
}

/* ---- restriction to coordinates ---- */

typedef struct restrict_cfg {
    const plm_kernel *inner;
    int *idx, n;
} restrict_cfg;

/* The view is a target whose self is the chain's state: its log density writes the block into the full point
** the step was given and evaluates the full target there. The step scatters the block's final value back, so
** proposals written while the child searched never outlive the step. */
typedef struct restrict_state {
    plm_target sub;
    const restrict_cfg *c;
    const plm_target *full;
    void *fws;          /* the full target's workspace, for the step in progress */
    double *u;          /* the full point of the step in progress */
    double *v;          /* the block */
    double *g;          /* the full gradient */
    const char **names;
    void *inner;        /* the child's chain state */
} restrict_state;

static double sub_logp(const plm_target *t, void *ws, const double *v)
{
    restrict_state *s = t->self;
    const int *idx = s->c->idx;
    int j, n = s->c->n;
    (void)ws;
    for (j = 0; j < n; j++) s->u[idx[j]] = v[j];
    return plm_target_logp(s->full, s->fws, s->u);
}

static double sub_logp_grad(const plm_target *t, void *ws, const double *v, double *g)
{
    restrict_state *s = t->self;
    const int *idx = s->c->idx;
    int j, n = s->c->n;
    double lp;
    (void)ws;
    for (j = 0; j < n; j++) s->u[idx[j]] = v[j];
    lp = s->full->ops->logp_grad(s->full, s->fws, s->u, s->g);
    for (j = 0; j < n; j++) g[j] = s->g[idx[j]];
    return lp;
}

static const plm_target_ops sub_ops = {"block", NULL, NULL, sub_logp, sub_logp_grad};
static const plm_target_ops sub_ops_nograd = {"block", NULL, NULL, sub_logp, NULL};

static void restrict_free(void *p)
{
    restrict_state *s = p;
    if (!s) return;
    if (s->inner) s->c->inner->ops->chain_free(s->inner);
    free(s->v);
    free(s->names);
    free(s);
}

static void *restrict_new(const plm_kernel *k, const plm_target *t)
{
    const restrict_cfg *c = k->cfg;
    restrict_state *s;
    int j;
    for (j = 0; j < c->n; j++)
        if (c->idx[j] >= t->dim) return NULL;
    if (!(s = calloc(1, sizeof *s))) return NULL;
    s->c = c;
    s->full = t;
    s->v = malloc(((size_t)c->n + (size_t)t->dim) * sizeof *s->v);
    if (t->names) s->names = malloc((size_t)c->n * sizeof *s->names);
    if (!s->v || (t->names && !s->names)) {
        restrict_free(s);
        return NULL;
    }
    s->g = s->v + c->n;
    for (j = 0; t->names && j < c->n; j++) s->names[j] = t->names[c->idx[j]];
    s->sub.ops = t->ops->logp_grad ? &sub_ops : &sub_ops_nograd;
    s->sub.self = s;
    s->sub.dim = c->n;
    s->sub.names = s->names;
    if (!(s->inner = c->inner->ops->chain_new(c->inner, &s->sub))) {
        restrict_free(s);
        return NULL;
    }
    return s;
}

static plm_status restrict_step(const plm_kernel *k, void *p, plm_ctx *ctx, const plm_target *t, void *ws, plm_rng *r,
                                double *u, double *lp, double *stat, double *extra)
{
    const restrict_cfg *c = k->cfg;
    restrict_state *s = p;
    int j;
    plm_status st;
    (void)t;
    s->fws = ws;
    s->u = u;
    for (j = 0; j < c->n; j++) s->v[j] = u[c->idx[j]];
    st = c->inner->ops->step(c->inner, s->inner, ctx, &s->sub, s, r, s->v, lp, stat, extra);
    for (j = 0; j < c->n; j++) u[c->idx[j]] = s->v[j];
    return st;
}

static void restrict_adapt(const plm_kernel *k, void *p, long it, long nwarm, const double *u, double stat)
{
    const restrict_cfg *c = k->cfg;
    restrict_state *s = p;
    int j;
    if (!c->inner->ops->adapt) return;
    for (j = 0; j < c->n; j++) s->v[j] = u[c->idx[j]];
    c->inner->ops->adapt(c->inner, s->inner, it, nwarm, s->v, stat);
}

static const plm_kernel_ops restrict_ops = {"restrict", 0, NULL, restrict_new, restrict_free, restrict_step,
                                            restrict_adapt};

plm_status plm_kernel_restrict(plm_ctx *ctx, const plm_kernel *inner, const int *idx, int n, plm_kernel **out)
{
    plm_kernel *k;
    restrict_cfg *c;
    int i, j;
    *out = NULL;
    if (n < 1) return plm_fail(ctx, PLM_EINVAL, "kernel: a restricted kernel needs at least one coordinate");
    for (i = 0; i < n; i++) {
        if (idx[i] < 0) return plm_fail(ctx, PLM_EINVAL, "kernel: coordinate %d is negative", idx[i]);
        for (j = 0; j < i; j++)
            if (idx[j] == idx[i]) return plm_fail(ctx, PLM_EINVAL, "kernel: coordinate %d is listed twice", idx[i] + 1);
    }
    k = plm_gc_alloc(sizeof *k);
    c = plm_gc_alloc(sizeof *c);
    if (!k || !c || !(c->idx = plm_gc_alloc_atomic((size_t)n * sizeof *c->idx)))
        return plm_fail(ctx, PLM_ENOMEM, "kernel: out of memory");
    memcpy(c->idx, idx, (size_t)n * sizeof *idx);
    c->n = n;
    c->inner = inner;
    if (!(k->ops = ops_with_extras(&restrict_ops, inner->ops->nextra, inner->ops->extra_names)))
        return plm_fail(ctx, PLM_ENOMEM, "kernel: out of memory");
    k->cfg = c;
    *out = k;
    return PLM_OK;
}

/* ---- cycle, mixture, rep ---- */

enum { COMP_CYCLE, COMP_MIXTURE, COMP_REP };

typedef struct comp_cfg {
    int kind, n;
    const plm_kernel **ks;
    double *cw;         /* mixture: cumulative weights, the last 1 */
    int reps;           /* rep */
    int *off;           /* cycle, mixture: child i's columns start at extra[off[i]] (its statistic, then its own) */
} comp_cfg;

typedef struct comp_state {
    const comp_cfg *c;
    void **cs;          /* the children's chain states */
    double *stat;       /* each child's last statistic */
    double *ssum;       /* mixture: the sum of each child's statistics in warm-up, and their count */
    long *sn;
    int ran;            /* mixture: the child that ran this iteration */
} comp_state;

static void comp_free(void *p)
{
    comp_state *s = p;
    int i;
    if (!s) return;
    for (i = 0; s->cs && i < s->c->n; i++)
        if (s->cs[i]) s->c->ks[i]->ops->chain_free(s->cs[i]);
    free(s->cs);
    free(s->stat);
    free(s->sn);
    free(s);
}

static void *comp_new(const plm_kernel *k, const plm_target *t)
{
    const comp_cfg *c = k->cfg;
    comp_state *s = calloc(1, sizeof *s);
    int i;
    if (!s) return NULL;
    s->c = c;
    s->cs = calloc((size_t)c->n, sizeof *s->cs);
    s->stat = calloc(2 * (size_t)c->n, sizeof *s->stat);
    s->sn = calloc((size_t)c->n, sizeof *s->sn);
    if (!s->cs || !s->stat || !s->sn) {
        comp_free(s);
        return NULL;
    }
    s->ssum = s->stat + c->n;
    for (i = 0; i < c->n; i++) {
        if (!(s->cs[i] = c->ks[i]->ops->chain_new(c->ks[i], t))) {
            comp_free(s);
            return NULL;
        }
    }
    return s;
}

static plm_status comp_step(const plm_kernel *k, void *p, plm_ctx *ctx, const plm_target *t, void *ws, plm_rng *r,
                            double *u, double *lp, double *stat, double *extra)
{
    const comp_cfg *c = k->cfg;
    comp_state *s = p;
    const plm_kernel *ch;
    plm_status st;
    int i;
    double sum = 0;
    switch (c->kind) {
    case COMP_CYCLE:
        for (i = 0; i < c->n; i++) {
            ch = c->ks[i];
            if ((st = ch->ops->step(ch, s->cs[i], ctx, t, ws, r, u, lp, &s->stat[i], extra + c->off[i] + 1)))
                return st;
            extra[c->off[i]] = s->stat[i];
            sum += s->stat[i];
        }
        *stat = sum / c->n;
        return PLM_OK;
    case COMP_MIXTURE: {
        double x = plm_rng_uniform(r);
        for (i = 0; i < k->ops->nextra; i++) extra[i] = NAN;
        for (i = 0; i < c->n - 1 && x >= c->cw[i]; i++) {}
        ch = c->ks[i];
        if ((st = ch->ops->step(ch, s->cs[i], ctx, t, ws, r, u, lp, &s->stat[i], extra + c->off[i] + 1)))
            return st;
        extra[c->off[i]] = *stat = s->stat[i];
        s->ran = i;
        return PLM_OK;
    }
    default:
        ch = c->ks[0];
        for (i = 0; i < c->reps; i++)
            if ((st = ch->ops->step(ch, s->cs[0], ctx, t, ws, r, u, lp, stat, extra))) return st;
        return PLM_OK;
    }
}

static void comp_adapt(const plm_kernel *k, void *p, long it, long nwarm, const double *u, double stat)
{
    const comp_cfg *c = k->cfg;
    comp_state *s = p;
    int i;
    for (i = 0; i < c->n; i++) {
        const plm_kernel *ch = c->ks[i];
        double si = c->kind == COMP_REP ? stat : s->stat[i];
        if (c->kind == COMP_MIXTURE) {
            /* an idle child adapts with the mean of its own statistics so far (0.5 before it first ran):
            ** repeating its last one would let one lucky step drive a step size up for many iterations */
            if (i == s->ran) s->ssum[i] += s->stat[i], s->sn[i]++;
            si = s->sn[i] ? s->ssum[i] / (double)s->sn[i] : 0.5;
            if (i == s->ran) si = s->stat[i];
        }
        if (ch->ops->adapt) ch->ops->adapt(ch, s->cs[i], it, nwarm, u, si);
    }
}

static const plm_kernel_ops cycle_ops = {"cycle", 0, NULL, comp_new, comp_free, comp_step, comp_adapt};
static const plm_kernel_ops mixture_ops = {"mixture", 0, NULL, comp_new, comp_free, comp_step, comp_adapt};
static const plm_kernel_ops rep_ops = {"rep", 0, NULL, comp_new, comp_free, comp_step, comp_adapt};

/* A composite of kind over ks[0..n-1]: the children copied, and for cycle and mixture the column names
** "k<i>.accept_stat__" then "k<i>.<child's name>" for each child. */
static plm_status comp_make(plm_ctx *ctx, int kind, const plm_kernel *const *ks, int n, plm_kernel **out)
{
    plm_kernel *k = plm_gc_alloc(sizeof *k);
    comp_cfg *c = plm_gc_alloc(sizeof *c);
    const plm_kernel_ops *proto;
    int i, j, nx = 0;
    char **names;
    *out = NULL;
    if (n < 1) return plm_fail(ctx, PLM_EINVAL, "kernel: a %s needs at least one kernel", kind == COMP_CYCLE ? "cycle" : "mixture");
    if (!k || !c || !(c->ks = plm_gc_alloc((size_t)n * sizeof *c->ks)) ||
        !(c->off = plm_gc_alloc_atomic((size_t)n * sizeof *c->off)))
        return plm_fail(ctx, PLM_ENOMEM, "kernel: out of memory");
    for (i = 0; i < n; i++) {
        if (!ks[i]) return plm_fail(ctx, PLM_EINVAL, "kernel: kernel %d is missing", i + 1);
        c->ks[i] = ks[i];
        c->off[i] = nx;
        nx += 1 + ks[i]->ops->nextra;
    }
    c->kind = kind;
    c->n = n;
    k->cfg = c;
    proto = kind == COMP_CYCLE ? &cycle_ops : kind == COMP_MIXTURE ? &mixture_ops : &rep_ops;
    if (kind == COMP_REP) {
        if (!(k->ops = ops_with_extras(proto, ks[0]->ops->nextra, ks[0]->ops->extra_names)))
            return plm_fail(ctx, PLM_ENOMEM, "kernel: out of memory");
        *out = k;
        return PLM_OK;
    }
    if (!(names = plm_gc_alloc((size_t)nx * sizeof *names))) return plm_fail(ctx, PLM_ENOMEM, "kernel: out of memory");
    for (i = 0; i < n; i++)
        for (j = -1; j < ks[i]->ops->nextra; j++) {
            const char *base = j < 0 ? "accept_stat__" : ks[i]->ops->extra_names[j];
            size_t len = strlen(base) + 16;
            char *nm = plm_gc_alloc_atomic(len);
            if (!nm) return plm_fail(ctx, PLM_ENOMEM, "kernel: out of memory");
            snprintf(nm, len, "k%d.%s", i + 1, base);
            names[c->off[i] + 1 + j] = nm;
        }
    if (!(k->ops = ops_with_extras(proto, nx, (const char *const *)names)))
        return plm_fail(ctx, PLM_ENOMEM, "kernel: out of memory");
    *out = k;
    return PLM_OK;
}

plm_status plm_kernel_cycle(plm_ctx *ctx, const plm_kernel *const *ks, int n, plm_kernel **out)
{
    return comp_make(ctx, COMP_CYCLE, ks, n, out);
}

plm_status plm_kernel_mixture(plm_ctx *ctx, const plm_kernel *const *ks, const double *w, int n, plm_kernel **out)
{
    double sum = 0, acc = 0;
    comp_cfg *c;
    plm_status st;
    int i;
    *out = NULL;
    for (i = 0; i < n; i++) {
        if (!(isfinite(w[i]) && w[i] >= 0))
            return plm_fail(ctx, PLM_EINVAL, "kernel.mixture: weight %d must be finite and >= 0 (got %g)", i + 1, w[i]);
        sum += w[i];
    }
    if (n >= 1 && !(sum > 0)) return plm_fail(ctx, PLM_EINVAL, "kernel.mixture: the weights are all 0");
    if ((st = comp_make(ctx, COMP_MIXTURE, ks, n, out))) return st;
    c = (*out)->cfg;
    if (!(c->cw = plm_gc_alloc_atomic((size_t)n * sizeof *c->cw))) return plm_fail(ctx, PLM_ENOMEM, "kernel: out of memory");
    for (i = 0; i < n; i++) c->cw[i] = (acc += w[i]) / sum;
    c->cw[n - 1] = 1;
    return PLM_OK;
}

plm_status plm_kernel_rep(plm_ctx *ctx, const plm_kernel *k, int n, plm_kernel **out)
{
    plm_status st;
    *out = NULL;
    if (n < 1) return plm_fail(ctx, PLM_EINVAL, "kernel.rep: the count must be >= 1 (got %d)", n);
    if ((st = comp_make(ctx, COMP_REP, &k, 1, out))) return st;
    ((comp_cfg *)(*out)->cfg)->reps = n;
    return PLM_OK;
}

int plm_kernel_children(const plm_kernel *k, const plm_kernel *const **children)
{
    if (k->ops->step == restrict_step) {
        *children = &((const restrict_cfg *)k->cfg)->inner;
        return 1;
    }
    if (k->ops->step == comp_step) {
        const comp_cfg *c = k->cfg;
        *children = c->ks;
        return c->n;
    }
    return 0;
}
