/* learned.c -- learned block proposals: loading and training them, and the MH kernel that uses them (see
** learned.h). The kernel runs entirely in C: per occurrence, the motif builds the features from u (or reuses
** them when the blanket has not moved), the network draws the block and scores the old one (plm_nn_propose: one
** pass per member, two where the blocks differ before it), the motif scores both block values, and the MH test
** decides. Nothing is allocated per proposal: the workspaces are the chain's. */
#include "learned.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A network loaded or trained, its weights moved to GC memory so that the proposal is one GC object. */
static plm_status prop_new(plm_ctx *ctx, const plm_motif_def *d, const plm_nn_meta *meta, plm_nn *nn,
                           plm_learned_prop **out)
{
    plm_learned_prop *p = plm_gc_alloc(sizeof *p);
    double *theta = plm_gc_alloc_atomic((nn->nparam ? nn->nparam : 1) * sizeof *theta);
    if (!p || !theta) {
        plm_nn_free(nn);
        return plm_fail(ctx, PLM_ENOMEM, "learned: out of memory");
    }
    memset(p, 0, sizeof *p);
    memcpy(theta, nn->theta, nn->nparam * sizeof *theta);
    plm_nn_free(nn);
    p->motif = d;
    p->meta = *meta;
    p->nn = *nn;
    p->nn.theta = theta;
    p->nin = nn->nin;
    p->nmem = nn->nmem;
    *out = p;
    return PLM_OK;
}

plm_status plm_learned_load(plm_ctx *ctx, const char *path, plm_learned_prop **out)
{
    plm_nn nn;
    plm_nn_meta meta;
    plm_nn_member mem[PLM_NN_MAXMEM];
    const plm_motif_def *d;
    plm_status st;
    int nin, nmem, j;
    *out = NULL;
    if ((st = plm_nn_load(ctx, path, &meta, &nn))) return st;
    if (!(d = plm_motif_find(meta.motif))) {
        plm_nn_free(&nn);
        return plm_fail(ctx, PLM_EINVAL, "proposal file '%s': unknown motif '%s' (this plume knows mixture, grid, chain)",
                        path, meta.motif);
    }
    if (meta.nshape != d->nshape || plm_motif_check_shape(ctx, d, meta.shape)) {
        plm_nn_free(&nn);
        return plm_fail(ctx, PLM_EINVAL, "proposal file '%s': motif %s with %d shape parameters out of range", path, d->name,
                        meta.nshape);
    }
    d->layout(meta.shape, &nin, &nmem, mem);
    for (j = 0; nin == nn.nin && nmem == nn.nmem && j < nmem; j++)
        if (mem[j].kind != nn.mem[j].kind || mem[j].card != nn.mem[j].card || mem[j].ncat_at != nn.mem[j].ncat_at ||
            mem[j].skip != nn.mem[j].skip ||
            (mem[j].skip && (mem[j].base_at != nn.mem[j].base_at || mem[j].pair_of != nn.mem[j].pair_of ||
                             (mem[j].pair_of >= 0 && mem[j].pair_at != nn.mem[j].pair_at))) ||
            mem[j].rows != nn.mem[j].rows || mem[j].fixed != nn.mem[j].fixed ||
            (mem[j].fixed && mem[j].fixed_at != nn.mem[j].fixed_at) || mem[j].pair2 != nn.mem[j].pair2 ||
            (mem[j].pair2 && mem[j].pair2_of != nn.mem[j].pair2_of) ||
            (mem[j].rows && (mem[j].row_at != nn.mem[j].row_at || mem[j].row_w != nn.mem[j].row_w ||
                             mem[j].rshared_w != nn.mem[j].rshared_w ||
                             (mem[j].rshared_w && mem[j].rshared_at != nn.mem[j].rshared_at))))
            break;
    if (nin != nn.nin || nmem != nn.nmem || j < nmem) {
        plm_nn_free(&nn);
        return plm_fail(ctx, PLM_EINVAL, "proposal file '%s': its network does not fit motif %s (%d inputs and %d members, "
                        "the motif has %d and %d)", path, d->name, nn.nin, nn.nmem, nin, nmem);
    }
    if ((st = prop_new(ctx, d, &meta, &nn, out))) return st;
    snprintf((*out)->path, sizeof (*out)->path, "%s", path);
    return PLM_OK;
}

plm_status plm_learned_save(plm_ctx *ctx, const char *path, const plm_learned_prop *p)
{
    return plm_nn_save(ctx, path, &p->meta, &p->nn);
}

/* ---- training ---- */

/* n instantiations of d into X (n x nin) and V (n x nmem) from stream `stream` of seed. */
static plm_status draw_set(plm_ctx *ctx, const plm_motif_def *d, const int *shape, long n, int nin, int nmem,
                           uint64_t seed, uint64_t stream, double **X, double **V)
{
    plm_rng r;
    long i;
    *X = malloc((size_t)n * (size_t)nin * sizeof **X);
    *V = malloc((size_t)n * (size_t)nmem * sizeof **V);
    if (!*X || !*V) {
        free(*X), free(*V);
        *X = *V = NULL;
        return plm_fail(ctx, PLM_ENOMEM, "learned: out of memory for %ld training instantiations", n);
    }
    plm_rng_init(&r, seed, stream);
    for (i = 0; i < n; i++) {
        if ((i & 4095) == 0 && plm_interrupted()) {
            free(*X), free(*V);
            *X = *V = NULL;
            return plm_fail(ctx, PLM_EINTR, "learned: interrupted");
        }
        d->draw(shape, &r, *X + (size_t)i * nin, *V + (size_t)i * nmem);
    }
    return PLM_OK;
}

/* Mean log q over rows 0..n-1 of X, V, in batches of the workspace's size. */
static double mean_logq(const plm_nn *nn, plm_nn_ws *w, long n, const double *X, const double *V, double *lq)
{
    long i;
    double s = 0;
    for (i = 0; i < n; i += w->maxbatch) {
        int B = (int)(n - i < w->maxbatch ? n - i : w->maxbatch), b;
        plm_nn_logq(nn, w, B, X + (size_t)i * nn->nin, V + (size_t)i * nn->nmem, lq, NULL);
        for (b = 0; b < B; b++) s += lq[b];
    }
    return n ? s / (double)n : 0;
}

plm_status plm_learned_train(plm_ctx *ctx, const plm_motif_def *d, const plm_learned_train_opts *o, plm_learned_prop **out)
{
    plm_nn nn;
    plm_nn_member mem[PLM_NN_MAXMEM];
    plm_nn_ws w;
    plm_nn_adam adam;
    plm_nn_meta meta;
    plm_rng r;
    double *X = NULL, *V = NULL, *Xh = NULL, *Vh = NULL, *bx = NULL, *bv = NULL, *grad = NULL, *lq = NULL, held = 0;
    long *perm = NULL, nh = o->heldout > 0 ? o->heldout : o->samples / 10 < 100 ? 100 : o->samples / 10, e, i;
    int nin, nmem, batch = o->batch > 0 ? o->batch : 64, stopped = 0;
    plm_status st;
    *out = NULL;
    if ((st = plm_motif_check_shape(ctx, d, o->shape))) return st;
    if (o->samples < 10 || o->samples > 5000000)
        return plm_fail(ctx, PLM_EINVAL, "learned: samples must be in 10..5e6 (got %ld)", o->samples);
    if (o->epochs < 1 || o->epochs > 100000) return plm_fail(ctx, PLM_EINVAL, "learned: epochs must be in 1..1e5 (got %ld)", o->epochs);
    if (batch > 4096) return plm_fail(ctx, PLM_EINVAL, "learned: batch must be in 1..4096 (got %d)", batch);
    if (!(o->lr >= 0) || o->lr > 1) return plm_fail(ctx, PLM_EINVAL, "learned: lr must be in (0, 1] (got %g)", o->lr);
    d->layout(o->shape, &nin, &nmem, mem);
    if ((st = plm_nn_init(ctx, &nn, nin, nmem, mem, o->nhidden, o->hidden, o->act))) return st;
    memset(&w, 0, sizeof w);
    memset(&adam, 0, sizeof adam);
    if ((st = plm_nn_ws_init(ctx, &w, &nn, batch < 256 ? 256 : batch)) ||
        (st = plm_nn_adam_init(ctx, &adam, nn.nparam, o->lr > 0 ? o->lr : 1e-3)))
        goto done;
    if ((st = draw_set(ctx, d, o->shape, o->samples, nin, nmem, o->seed, 0, &X, &V)) ||
        (st = draw_set(ctx, d, o->shape, nh, nin, nmem, o->seed, 1, &Xh, &Vh)))
        goto done;
    plm_rng_init(&r, o->seed, 2);
    plm_nn_randomize(&nn, &r);
    plm_rng_init(&r, o->seed, 3);
    perm = malloc((size_t)o->samples * sizeof *perm);
    bx = malloc((size_t)batch * nin * sizeof *bx);
    bv = malloc((size_t)batch * nmem * sizeof *bv);
    grad = malloc(nn.nparam * sizeof *grad);
    lq = malloc((size_t)w.maxbatch * sizeof *lq);
    if (!perm || !bx || !bv || !grad || !lq) {
        st = plm_fail(ctx, PLM_ENOMEM, "learned: out of memory");
        goto done;
    }
    for (i = 0; i < o->samples; i++) perm[i] = i;
    for (e = 0; e < o->epochs && !stopped; e++) {
        double tr = 0;
        /* the step size falls linearly to a tenth over the epochs: the last epochs refine instead of jumping */
        adam.lr = (o->lr > 0 ? o->lr : 1e-3) * (1 - 0.9 * (double)e / (double)o->epochs);
        for (i = o->samples - 1; i > 0; i--) {
            long j = (long)plm_rng_uint(&r, (uint64_t)i + 1), t = perm[i];
            perm[i] = perm[j], perm[j] = t;
        }
        for (i = 0; i < o->samples; i += batch) {
            int B = (int)(o->samples - i < batch ? o->samples - i : batch), b;
            size_t k;
            if (plm_interrupted()) {
                st = plm_fail(ctx, PLM_EINTR, "learned: interrupted in epoch %ld", e + 1);
                goto done;
            }
            for (b = 0; b < B; b++) {
                memcpy(bx + (size_t)b * nin, X + (size_t)perm[i + b] * nin, (size_t)nin * sizeof *bx);
                memcpy(bv + (size_t)b * nmem, V + (size_t)perm[i + b] * nmem, (size_t)nmem * sizeof *bv);
            }
            memset(grad, 0, nn.nparam * sizeof *grad);
            plm_nn_logq(&nn, &w, B, bx, bv, lq, grad);
            for (b = 0; b < B; b++) tr += lq[b];
            for (k = 0; k < nn.nparam; k++) grad[k] /= B;
            plm_nn_adam_step(&adam, nn.theta, grad);
        }
        held = mean_logq(&nn, &w, nh, Xh, Vh, lq);
        if (o->progress && o->progress(o->ud, e + 1, o->epochs, tr / (double)o->samples, held)) stopped = 1;
    }
    memset(&meta, 0, sizeof meta);
    snprintf(meta.motif, sizeof meta.motif, "%s", d->name);
    meta.nshape = d->nshape;
    memcpy(meta.shape, o->shape, (size_t)d->nshape * sizeof *meta.shape);
    meta.seed = o->seed, meta.samples = o->samples, meta.epochs = e, meta.heldout = held;
    st = prop_new(ctx, d, &meta, &nn, out);
done:
    plm_nn_free(&nn);
    plm_nn_ws_free(&w);
    plm_nn_adam_free(&adam);
    free(X), free(V), free(Xh), free(Vh), free(perm), free(bx), free(bv), free(grad), free(lq);
    return st;
}

plm_status plm_learned_eval(plm_ctx *ctx, const plm_learned_prop *p, long n, uint64_t seed, uint64_t stream, double *mean)
{
    double *X, *V, *lq;
    plm_nn_ws w;
    plm_status st;
    if (n < 1) return plm_fail(ctx, PLM_EINVAL, "learned: n must be >= 1 (got %ld)", n);
    if ((st = draw_set(ctx, p->motif, p->meta.shape, n, p->nin, p->nmem, seed, stream, &X, &V))) return st;
    if ((st = plm_nn_ws_init(ctx, &w, &p->nn, 256))) goto done;
    if (!(lq = malloc(256 * sizeof *lq))) st = plm_fail(ctx, PLM_ENOMEM, "learned: out of memory");
    else *mean = mean_logq(&p->nn, &w, n, X, V, lq);
    free(lq);
    plm_nn_ws_free(&w);
done:
    free(X), free(V);
    return st;
}

/* ---- the kernel ---- */

typedef struct learned_cfg {
    plm_gmodel *m;
    int nprops;
    plm_learned_prop **props;
    plm_motif_occs **occs;
    int broken;
    const char **names;
} learned_cfg;

/* Per occurrence, the inputs' first-layer parts (plm_nn_xpart) for the last XP_MEMO distinct inputs x it proposed
** from: a discrete occurrence's features are a function of its blanket, which takes few values, and the first
** layer's columns of x are most of a small network's work. Each slot: x (nin), then its part. A proposal whose
** inputs rarely repeat (continuous features) stops looking when, after its first 16 sweeps (the first fills the
** slots), under 1 in 8 of its lookups so far found theirs; either way the numbers are the same. */
#define XP_MEMO 4
typedef struct xp_memo {
    double *d;              /* NULL: no room (over 64 MB); the part is computed every time */
    size_t stride;
    long looks, hits, trial;   /* trial: looks before the hit rate is judged */
    int off;                   /* stopped looking */
    unsigned char *n, *next;
} xp_memo;

typedef struct learned_chain {
    const learned_cfg *cfg;
    plm_motif_ws **mw;
    plm_nn_ws *nw;
    xp_memo *memo;
    double *x, *v, *vold, *ucopy;
    void *tws;
    const plm_target *t;
} learned_chain;

static void chain_free(void *p)
{
    learned_chain *c = p;
    int i;
    if (!c) return;
    for (i = 0; i < c->cfg->nprops; i++) {
        if (c->mw) plm_motif_ws_free(c->mw[i]);
        if (c->nw) plm_nn_ws_free(&c->nw[i]);
        if (c->memo) free(c->memo[i].d), free(c->memo[i].n), free(c->memo[i].next);
    }
    free(c->memo);
    if (c->t) plm_target_ws_free(c->t, c->tws);
    free(c->mw), free(c->nw), free(c->x), free(c->v), free(c->vold), free(c->ucopy);
    free(c);
}

static void *chain_new(const plm_kernel *k, const plm_target *t)
{
    const learned_cfg *cfg = k->cfg;
    learned_chain *c;
    int i, maxin = 1;
    if (t->dim != cfg->m->dim || !(c = calloc(1, sizeof *c))) return NULL;
    c->cfg = cfg;
    for (i = 0; i < cfg->nprops; i++)
        if (cfg->props[i]->nin > maxin) maxin = cfg->props[i]->nin;
    c->mw = calloc((size_t)cfg->nprops, sizeof *c->mw);
    c->nw = calloc((size_t)cfg->nprops, sizeof *c->nw);
    c->memo = calloc((size_t)cfg->nprops, sizeof *c->memo);
    c->x = malloc((size_t)maxin * sizeof *c->x);
    c->v = malloc(PLM_NN_MAXMEM * sizeof *c->v);
    c->vold = malloc(PLM_NN_MAXMEM * sizeof *c->vold);
    c->ucopy = malloc(((size_t)t->dim + 1) * sizeof *c->ucopy);
    c->t = t;
    c->tws = plm_target_ws_new(t);
    if (!c->mw || !c->nw || !c->memo || !c->x || !c->v || !c->vold || !c->ucopy) goto fail;
    for (i = 0; i < cfg->nprops; i++) {
        const plm_nn *nn = &cfg->props[i]->nn;
        xp_memo *mm = &c->memo[i];
        size_t n = (size_t)plm_motif_count(cfg->occs[i]);
        if (plm_motif_ws_new(NULL, cfg->occs[i], &c->mw[i]) || plm_nn_ws_init(NULL, &c->nw[i], nn, 2)) goto fail;
        mm->stride = (size_t)nn->nin + plm_nn_xpart_size(nn);
        mm->trial = 16 * (long)n + 256;   /* sixteen sweeps: the first fills the slots */
        if ((double)n * XP_MEMO * (double)mm->stride * sizeof(double) <= 64.0 * 1024 * 1024) {
            mm->d = malloc(n * XP_MEMO * mm->stride * sizeof *mm->d + 1);
            mm->n = calloc(n + 1, 1);
            mm->next = calloc(n + 1, 1);
            if (!mm->d || !mm->n || !mm->next) goto fail;
        }
    }
    return c;
fail:
    chain_free(c);
    return NULL;
}

/* The inputs' first-layer parts of the network of proposal p for occurrence i's inputs c->x: kept, or computed and
** kept. */
static const double *xpart_of(learned_chain *c, const plm_nn *nn, int p, int i)
{
    xp_memo *mm = &c->memo[p];
    size_t nin = (size_t)nn->nin;
    double *base, *e;
    int s;
    if (!mm->d || mm->off) {
        plm_nn_xpart(nn, &c->nw[p], c->x, c->nw[p].xp);
        return c->nw[p].xp;
    }
    base = mm->d + (size_t)i * XP_MEMO * mm->stride;
    mm->looks++;
    for (s = 0; s < mm->n[i]; s++) {
        e = base + (size_t)s * mm->stride;
        if (memcmp(e, c->x, nin * sizeof *e) == 0) return mm->hits++, e + nin;
    }
    if (mm->looks >= mm->trial && mm->hits * 8 < mm->looks) mm->off = 1;
    s = mm->next[i];
    e = base + (size_t)s * mm->stride;
    memcpy(e, c->x, nin * sizeof *e);
    plm_nn_xpart(nn, &c->nw[p], c->x, e + nin);
    if (mm->n[i] < XP_MEMO) mm->n[i]++;
    mm->next[i] = (unsigned char)((s + 1) % XP_MEMO);
    return e + nin;
}

/* One proposal for occurrence i of proposal p at u: the pieces of the MH ratio. */
static plm_status propose(const learned_cfg *cfg, learned_chain *c, plm_ctx *ctx, int p, int i, const double *u, plm_rng *r,
                          double *lqf, double *lqr, double *lpn, double *lpo)
{
    const plm_learned_prop *pr = cfg->props[p];
    plm_motif_ws *mw = c->mw[p];
    plm_status st;
    if ((st = plm_motif_inputs(ctx, cfg->occs[p], mw, i, u, r, c->x, c->vold))) return st;
    plm_nn_propose_xp(&pr->nn, &c->nw[p], c->x, xpart_of(c, &pr->nn, p, i), c->vold, r, c->v, lqf, lqr);
    *lpn = plm_motif_logp(cfg->occs[p], mw, i, u, c->v);
    *lpo = plm_motif_logp(cfg->occs[p], mw, i, u, c->vold);
    return PLM_OK;
}

static double log_ratio(const learned_cfg *cfg, double lqf, double lqr, double lpn, double lpo)
{
    if (lpn == -INFINITY) return -INFINITY;
    if (lpo == -INFINITY) return INFINITY;   /* the old block was impossible: any possible one is better */
    return lpn - lpo + (cfg->broken ? 0 : lqr) - lqf;
}

static plm_status step(const plm_kernel *k, void *state, plm_ctx *ctx, const plm_target *t, void *ws, plm_rng *r,
                       double *u, double *lp, double *stat, double *extra)
{
    const learned_cfg *cfg = k->cfg;
    learned_chain *c = state;
    long tot = 0, acc = 0;
    int p, i;
    plm_status st;
    (void)ws;
    /* the log density follows the accepted moves' exact changes, as Gibbs's does; from a non-finite start it is
    ** recomputed at the end */
    if (!isfinite(*lp)) *lp = NAN;
    for (p = 0; p < cfg->nprops; p++) {
        const plm_motif_occs *o = cfg->occs[p];
        int n = plm_motif_count(o), pa = 0;
        if ((st = plm_motif_begin(ctx, o, c->mw[p], u))) return st;
        for (i = 0; i < n; i++) {
            double lqf, lqr, lpn, lpo, lr;
            if ((i & 255) == 255 && plm_interrupted()) return plm_fail(ctx, PLM_EINTR, "learned: interrupted");
            if ((st = propose(cfg, c, ctx, p, i, u, r, &lqf, &lqr, &lpn, &lpo))) return st;
            lr = log_ratio(cfg, lqf, lqr, lpn, lpo);
            if (lr >= 0 || plm_rng_uniform(r) < exp(lr)) {   /* NaN: rejected */
                plm_motif_apply(o, c->mw[p], i, u, c->v);
                *lp = lpo == -INFINITY ? NAN : *lp + (lpn - lpo);
                pa++;
            }
        }
        extra[p] = n ? (double)pa / n : NAN;
        acc += pa, tot += n;
    }
    if (!isfinite(*lp)) *lp = plm_target_logp(t, c->tws, u);
    if (isnan(*lp)) return plm_fail(ctx, PLM_EDOM, "learned: the log density is NaN after a sweep");
    *stat = tot ? (double)acc / (double)tot : 1;
    return PLM_OK;
}

static const plm_kernel_ops learned_ops = {"learned", 0, NULL, chain_new, chain_free, step, NULL};

plm_status plm_kernel_learned(plm_ctx *ctx, plm_gmodel *m, plm_learned_prop *const *props, int nprops,
                              plm_kernel **out, int *noccs)
{
    learned_cfg *cfg;
    plm_kernel_ops *ops;
    plm_kernel *k;
    int p;
    plm_status st;
    *out = NULL;
    if (nprops < 1) return plm_fail(ctx, PLM_EINVAL, "learned: no proposal given");
    if (!m->finished) return plm_fail(ctx, PLM_EINVAL, "learned: the model is not finished");
    cfg = plm_gc_alloc(sizeof *cfg);
    ops = plm_gc_alloc(sizeof *ops);
    k = plm_gc_alloc(sizeof *k);
    if (!cfg || !ops || !k || !(cfg->props = plm_gc_alloc((size_t)nprops * sizeof *cfg->props)) ||
        !(cfg->occs = plm_gc_alloc((size_t)nprops * sizeof *cfg->occs)) ||
        !(cfg->names = plm_gc_alloc((size_t)nprops * sizeof *cfg->names)))
        return plm_fail(ctx, PLM_ENOMEM, "learned: out of memory");
    cfg->m = m;
    cfg->nprops = nprops;
    for (p = 0; p < nprops; p++) {
        const plm_motif_def *d = props[p]->motif;
        char *name;
        cfg->props[p] = props[p];
        if ((st = d->detect(ctx, d, props[p]->meta.shape, m, &cfg->occs[p]))) return st;
        if (!cfg->occs[p])
            return plm_fail(ctx, PLM_EINVAL, "learned: motif %s (%s) does not occur in this model", d->name, d->block_desc);
        if (noccs) noccs[p] = plm_motif_count(cfg->occs[p]);
        if (!(name = plm_gc_alloc_atomic(strlen(d->name) + 24))) return plm_fail(ctx, PLM_ENOMEM, "learned: out of memory");
        sprintf(name, "learned.%s.accept_stat__", d->name);
        cfg->names[p] = name;
    }
    *ops = learned_ops;
    ops->nextra = nprops;
    ops->extra_names = cfg->names;
    k->ops = ops;
    k->cfg = cfg;
    *out = k;
    return PLM_OK;
}

void plm_learned_set_broken(plm_kernel *k, int broken)
{
    if (k && k->ops && strcmp(k->ops->name, "learned") == 0) ((learned_cfg *)k->cfg)->broken = broken;
}

plm_status plm_learned_debug_step(plm_ctx *ctx, const plm_kernel *k, int p, int occ, const double *u, plm_rng *r,
                                  double *v, double *lq_fwd, double *lq_rev, double *lp_new, double *lp_old,
                                  double *logr, double *unew)
{
    const learned_cfg *cfg = k->cfg;
    plm_target *t;
    learned_chain *c;
    plm_status st;
    if (strcmp(k->ops->name, "learned") != 0) return plm_fail(ctx, PLM_EINVAL, "learned: not a learned kernel");
    if (p < 0 || p >= cfg->nprops || occ < 0 || occ >= plm_motif_count(cfg->occs[p]))
        return plm_fail(ctx, PLM_EINVAL, "learned: no occurrence %d of proposal %d", occ, p);
    if ((st = plm_gmodel_target(ctx, cfg->m, &t)) && st != PLM_ENOTSUP) return st;
    if (!(c = chain_new(k, t))) return plm_fail(ctx, PLM_ENOMEM, "learned: out of memory");
    memcpy(c->ucopy, u, (size_t)t->dim * sizeof *u);
    if (!(st = plm_motif_begin(ctx, cfg->occs[p], c->mw[p], c->ucopy)) &&
        !(st = propose(cfg, c, ctx, p, occ, c->ucopy, r, lq_fwd, lq_rev, lp_new, lp_old))) {
        memcpy(v, c->v, (size_t)cfg->props[p]->nmem * sizeof *v);
        *logr = log_ratio(cfg, *lq_fwd, *lq_rev, *lp_new, *lp_old);
        if (unew) {
            memcpy(unew, c->ucopy, (size_t)t->dim * sizeof *u);
            plm_motif_apply(cfg->occs[p], c->mw[p], occ, unew, c->v);
        }
    }
    chain_free(c);
    return st;
}
