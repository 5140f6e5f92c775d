/* target.c -- the target interface's helpers and targets compiled from expression graphs. */
#include "target.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void *plm_target_ws_new(const plm_target *t)
{
    static char none;   /* a non-NULL workspace for targets that need none */
    return t->ops->ws_new ? t->ops->ws_new(t) : &none;
}

void plm_target_ws_free(const plm_target *t, void *ws)
{
    if (t->ops->ws_free && ws) t->ops->ws_free(ws);
}

double plm_target_check_grad(const plm_target *t, const double *u, double h)
{
    int i, d = t->dim;
    double worst = 0, *g = malloc((size_t)(2 * d + 1) * sizeof *g), *v = g + d;
    void *ws = plm_target_ws_new(t);
    if (!g || !ws || !t->ops->logp_grad) {
        free(g);
        plm_target_ws_free(t, ws);
        return INFINITY;
    }
    t->ops->logp_grad(t, ws, u, g);
    memcpy(v, u, (size_t)d * sizeof *v);
    for (i = 0; i < d; i++) {
        double hi = h * fmax(1, fabs(u[i])), fp, fm, fd, err;
        v[i] = u[i] + hi;
        fp = plm_target_logp(t, ws, v);
        v[i] = u[i] - hi;
        fm = plm_target_logp(t, ws, v);
        v[i] = u[i];
        fd = (fp - fm) / (2 * hi);
        err = fabs(g[i] - fd) / fmax(1, fabs(fd));
        if (!(err <= worst)) worst = err;   /* NaN counts as worst */
    }
    plm_target_ws_free(t, ws);
    free(g);
    return worst;
}

/* ---- targets from graphs ---- */

/* Two programs over the same inputs: the log density alone (for MH-type kernels, which never need the
** gradient), and the log density followed by the dim partial derivatives. */
typedef struct graph_target {
    plm_target t;
    const plm_prog *lp, *lpg;
    double *data;
    size_t ndata;
} graph_target;

typedef struct graph_ws {
    plm_prog_ws lp, lpg;
    int has_lpg;
    double *x;       /* the point, as the X group (one particle) */
    double *res;     /* outputs: log density, then the gradient */
    double **out;
    plm_prog_in in[PLM_NGROUPS];
} graph_ws;

static void graph_ws_free(void *p)
{
    graph_ws *w = p;
    if (!w) return;
    plm_prog_ws_free(&w->lp);
    if (w->has_lpg) plm_prog_ws_free(&w->lpg);
    free(w->x);
    free(w->res);
    free(w->out);
    free(w);
}

static void *graph_ws_new(const plm_target *t)
{
    const graph_target *gt = t->self;
    int i, d = t->dim;
    graph_ws *w = calloc(1, sizeof *w);
    if (!w) return NULL;
    w->x = malloc((size_t)(d + 1) * sizeof *w->x);
    w->res = malloc((size_t)(d + 1) * sizeof *w->res);
    w->out = malloc((size_t)(d + 1) * sizeof *w->out);
    if (!w->x || !w->res || !w->out || plm_prog_ws_init_block(NULL, &w->lp, gt->lp, 1)) {
        free(w->x), free(w->res), free(w->out), free(w);
        return NULL;
    }
    if (gt->lpg) {
        if (plm_prog_ws_init_block(NULL, &w->lpg, gt->lpg, 1)) {
            plm_prog_ws_free(&w->lp);
            free(w->x), free(w->res), free(w->out), free(w);
            return NULL;
        }
        w->has_lpg = 1;
    }
    for (i = 0; i <= d; i++) w->out[i] = w->res + i;
    w->in[PLM_GRP_X].p = w->x;
    w->in[PLM_GRP_X].ld = 1;
    w->in[PLM_GRP_P].p = gt->data;
    w->in[PLM_GRP_P].ld = 1;
    /* the data never change, so the uniform pre-pass (everything that depends on data alone) runs once */
    plm_prog_uniforms(&w->lp, w->in);
    if (w->has_lpg) plm_prog_uniforms(&w->lpg, w->in);
    return w;
}

static double graph_logp(const plm_target *t, void *p, const double *u)
{
    graph_ws *w = p;
    memcpy(w->x, u, (size_t)t->dim * sizeof *u);
    plm_prog_block(&w->lp, w->in, 0, 1, w->out, NULL);
    return w->res[0];
}

static double graph_logp_grad(const plm_target *t, void *p, const double *u, double *g)
{
    graph_ws *w = p;
    memcpy(w->x, u, (size_t)t->dim * sizeof *u);
    plm_prog_block(&w->lpg, w->in, 0, 1, w->out, NULL);
    memcpy(g, w->res + 1, (size_t)t->dim * sizeof *g);
    return w->res[0];
}

static const plm_target_ops graph_ops = {"graph", graph_ws_new, graph_ws_free, graph_logp, graph_logp_grad};
static const plm_target_ops graph_ops_nograd = {"graph", graph_ws_new, graph_ws_free, graph_logp, NULL};

plm_status plm_target_from_graph(plm_ctx *ctx, plm_graph *g, int lp, int dim, const int *x, const double *data,
                                 size_t ndata, plm_target **out)
{
    graph_target *gt;
    plm_prog *p, *pg = NULL;
    plm_status st, gst = PLM_OK;
    plm_prog_info info;
    int i, *outs;
    *out = NULL;
    if (dim < 1 || lp < 0 || !x) return plm_fail(ctx, PLM_EINVAL, "target: need a log density node and dim >= 1 inputs");
    if ((st = plm_prog_compile(ctx, g, 1, &lp, 1u << PLM_GRP_X, &p))) return st;
    plm_prog_describe(p, &info);
    if (info.ndraws) return plm_fail(ctx, PLM_EINVAL, "target: the log density makes random draws");
    /* every input the program reads must be a coordinate of the point or a datum we hold */
    for (i = 0; i < plm_graph_size(g); i++) {
        int grp, idx;
        if (!plm_graph_is_input(g, i, &grp, &idx) || !plm_prog_uses(p, grp, idx)) continue;
        if (grp == PLM_GRP_X && idx >= dim)
            return plm_fail(ctx, PLM_EINVAL, "target: the log density reads coordinate %d of a %d-dimensional point",
                            idx + 1, dim);
        if (grp == PLM_GRP_P && (size_t)idx >= ndata)
            return plm_fail(ctx, PLM_EINVAL, "target: the log density reads datum %d but %zu were given", idx + 1,
                            ndata);
        if (grp != PLM_GRP_X && grp != PLM_GRP_P)
            return plm_fail(ctx, PLM_EINVAL, "target: the log density reads input group %d (only X and P are bound)",
                            grp);
    }
    gt = plm_gc_alloc(sizeof *gt);
    outs = plm_gc_alloc_atomic((size_t)(dim + 1) * sizeof *outs);
    if (!gt || !outs) return plm_fail(ctx, PLM_ENOMEM, "target: out of memory");
    if (ndata) {
        if (!(gt->data = plm_gc_alloc_atomic(ndata * sizeof *data))) return plm_fail(ctx, PLM_ENOMEM, "target: out of memory");
        memcpy(gt->data, data, ndata * sizeof *data);
    }
    gt->ndata = ndata;
    outs[0] = lp;
    gst = plm_graph_grad(ctx, g, lp, dim, x, outs + 1);
    if (gst == PLM_OK && (st = plm_prog_compile(ctx, g, dim + 1, outs, 1u << PLM_GRP_X, &pg))) return st;
    if (gst != PLM_OK && gst != PLM_ENOTSUP) return gst;
    gt->lp = p;
    gt->lpg = pg;
    gt->t.ops = pg ? &graph_ops : &graph_ops_nograd;
    gt->t.self = gt;
    gt->t.dim = dim;
    gt->t.names = NULL;
    *out = &gt->t;
    return gst;
}

/* ---- targets from sums of terms, vectorised over terms of one structure (plm_vsum) ---- */

typedef struct vsum_target {
    plm_target t;
    const plm_vsum *v;
} vsum_target;

typedef struct vsum_ws {
    double *x;
    plm_vsum_ws *w;
} vsum_ws;

static void vsum_ws_free(void *p)
{
    vsum_ws *w = p;
    if (!w) return;
    plm_vsum_ws_free(w->w);
    free(w->x);
    free(w);
}

static void *vsum_ws_new(const plm_target *t)
{
    const vsum_target *vt = t->self;
    vsum_ws *w = calloc(1, sizeof *w);
    if (!w) return NULL;
    if (!(w->x = calloc((size_t)t->dim + 1, sizeof *w->x)) || !(w->w = plm_vsum_ws_new(vt->v, w->x))) {
        vsum_ws_free(w);
        return NULL;
    }
    return w;
}

static double vsum_logp(const plm_target *t, void *p, const double *u)
{
    vsum_ws *w = p;
    memcpy(w->x, u, (size_t)t->dim * sizeof *u);
    return plm_vsum_eval(w->w, NULL);
}

static double vsum_logp_grad(const plm_target *t, void *p, const double *u, double *g)
{
    vsum_ws *w = p;
    memcpy(w->x, u, (size_t)t->dim * sizeof *u);
    return plm_vsum_eval(w->w, g);
}

static const plm_target_ops vsum_ops = {"graph", vsum_ws_new, vsum_ws_free, vsum_logp, vsum_logp_grad};

plm_status plm_target_from_terms(plm_ctx *ctx, plm_graph *g, int nterms, const int *terms, int dim, const int *x,
                                 plm_target **out)
{
    plm_vsum *v = NULL;
    plm_vsum_info info;
    plm_status st;
    int lp, i;
    *out = NULL;
    if (dim < 1 || !x) return plm_fail(ctx, PLM_EINVAL, "target: need a log density node and dim >= 1 inputs");
    st = plm_vsum_compile(ctx, g, nterms, terms, dim, x, &v);
    if (st && st != PLM_ENOTSUP) return st;
    if (!st) plm_vsum_describe(v, &info);
    if (!st && info.ngroups) {
        vsum_target *vt = plm_gc_alloc(sizeof *vt);
        if (!vt) return plm_fail(ctx, PLM_ENOMEM, "target: out of memory");
        vt->v = v;
        vt->t.ops = &vsum_ops;
        vt->t.self = vt;
        vt->t.dim = dim;
        vt->t.names = NULL;
        *out = &vt->t;
        return PLM_OK;
    }
    /* nothing to vectorise, or what plm_vsum does not handle: the plain sum, with its checks and messages */
    if (ctx) plm_ctx_clear(ctx);
    lp = plm_graph_const(g, 0);
    for (i = 0; i < nterms; i++) lp = plm_graph_op(g, PLM_OP_ADD, lp, terms[i], -1);
    if (lp < 0) return plm_fail(ctx, PLM_ENOMEM, "target: out of memory");
    return plm_target_from_graph(ctx, g, lp, dim, x, NULL, 0, out);
}
