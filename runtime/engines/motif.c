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
#include "motif_impl.h"

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
        w->ls0 = calloc((size_t)o->ngroups * MIX_KMAX, sizeof *w->ls0);
        if (!w->par || !w->parp || !w->C || !w->B || !w->ls0) goto oom;
        for (i = 0; i < o->npar; i++) w->parp[i] = w->par + i;
    }
    if (o->docc) {
        int nin, nmem, maxnx = 0, whole;
        plm_nn_member mem[PLM_NN_MAXMEM];
        o->def->layout(o->shape, &nin, &nmem, mem);
        for (i = 0; i < o->n; i++)
            if (o->docc[i].nx > maxnx) maxnx = o->docc[i].nx;
        w->cstride = (size_t)maxnx + (size_t)nin;
        /* the caches are kept to 64 MB, beyond which every proposal evaluates its occurrence's terms afresh */
        whole = ((double)o->tcall + (double)o->n * (double)w->cstride) * sizeof(double) <= 64.0 * 1024 * 1024;
        w->pws = calloc((size_t)o->ntermall, sizeof *w->pws);
        w->z = malloc((size_t)o->maxtcfg * 4 * sizeof *w->z);
        w->Tt = malloc((size_t)o->maxterm * sizeof *w->Tt);
        w->tc = malloc((whole ? o->tcall : (size_t)o->maxtc) * sizeof *w->tc + 1);
        w->tvalid = calloc((size_t)o->ntermall, 1);
        w->tnext = calloc((size_t)o->ntermall, 1);
        w->tlast = calloc((size_t)o->ntermall, 1);
        if (!w->pws || !w->z || !w->Tt || !w->tc || !w->tvalid || !w->tnext || !w->tlast) goto oom;
        if (whole) {
            w->cache = malloc((size_t)o->n * w->cstride * sizeof *w->cache + 1);
            w->cvalid = calloc((size_t)o->n, 1);
            if (!w->cache || !w->cvalid) goto oom;
        } else
            w->tc_single = 1;
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
        for (i = 0; i < w->o->ntermall; i++)
            if (w->pws[i].p) plm_prog_ws_free(&w->pws[i]);
    free(w->par), free(w->parp), free(w->C), free(w->B), free(w->ls0), free(w->pws), free(w->z), free(w->Tt), free(w->tc), free(w->tvalid), free(w->tnext), free(w->tlast);
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

int motif_has_parent(const plm_gsite *s, int p)
{
    int i;
    for (i = 0; i < s->nparents; i++)
        if (s->parents[i] == p) return 1;
    return 0;
}

int motif_is_latent_kind(const plm_gsite *s, int dist)
{
    return s->kind == PLM_GSITE_LATENT && s->dist == dist && s->dim == 1;
}

/* The program of nodes outs[0..nout-1] of m's graph, coordinates move[0..nmove-1] per particle (group Z). With
** xin, the coordinates of u (group X) it reads go to *xin (GC memory) and their count to *nx, and (zmask not NULL)
** bit j of *zmask is set when it reads move[j]. */
plm_status motif_compile_small(plm_ctx *ctx, const plm_gmodel *m, int nout, const int *outs, int nmove, const int *move,
                               plm_prog **out, int **xin, int *nx, int *zmask)
{
    plm_graph *h;
    int *so = malloc(((size_t)nout + 1) * sizeof *so);
    plm_status st;
    if (!so) return plm_fail(ctx, PLM_ENOMEM, "motif: out of memory");
    st = plm_graph_extract(ctx, m->g, nout, outs, nmove, move, PLM_GRP_Z, &h, so);
    if (!st) st = plm_prog_compile(ctx, h, nout, so, nmove ? 1u << PLM_GRP_Z : 0u, out);
    if (zmask) *zmask = 0;
    if (!st && xin) {
        int id, n = plm_graph_size(h), grp, idx;
        *nx = 0;
        if (!(*xin = plm_gc_alloc_atomic(((size_t)n + 1) * sizeof **xin))) st = plm_fail(ctx, PLM_ENOMEM, "motif: out of memory");
        for (id = 0; !st && id < n; id++)
            if (plm_graph_is_input(h, id, &grp, &idx)) {
                if (grp == PLM_GRP_X) (*xin)[(*nx)++] = idx;
                else if (grp == PLM_GRP_Z && zmask && idx < 31) *zmask |= 1 << idx;
            }
    }
    free(so);
    return st;
}

plm_motif_occs *motif_occs_new(const plm_motif_def *d, const occ_ops *ops, const int *shape, plm_gmodel *m)
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
** whose mean is the block's), and the log of the observation's sd under that component relative to s. Since
** version 3 of the files, the block's exact conditional in closed form, which the network's heads start from:
** per slot the log of z's marginal (mu_k integrated out: slot 0 is the weight times the observation's predictive
** density given the other assigned observations, slot j the weight times its density under mean j), shifted so
** the largest is 0 and clamped to [-30, 0] (padding 0), as skip logits of z's head; and per slot mu_k's
** conditional mean and log sd given z in that slot (slot 0: with the observation, the others: without), which
** the mean's head adds to each of its components' (nn.h). Block: v[0] the slot of z, v[1] = (mu_k - c) / s. */

static int mix_kmax(const int *shape) { return shape[0]; }
static int mix_nin(int kmax) { return 4 + 4 * kmax + kmax + 2 * kmax; }

static void mix_layout(const int *shape, int *nin, int *nmem, plm_nn_member *mem)
{
    int kmax = mix_kmax(shape);
    *nin = mix_nin(kmax);
    *nmem = 2;
    memset(mem, 0, 2 * sizeof *mem);
    mem[0].kind = PLM_NN_DISCRETE, mem[0].card = kmax, mem[0].ncat_at = 0;
    mem[0].skip = 1, mem[0].base_at = 4 + 4 * kmax, mem[0].pair_of = -1, mem[0].pair_at = -1;
    /* one Gaussian: the skip offsets hold mu_k's exact conditional given z, the network corrects it */
    mem[1].kind = PLM_NN_CONTINUOUS, mem[1].card = 1, mem[1].ncat_at = -1;
    mem[1].skip = 1, mem[1].base_at = -1, mem[1].pair_of = 0, mem[1].pair_at = 4 + 5 * kmax;
}

static int slot_comp(int slot, int k) { return slot == 0 ? k : slot - 1 < k ? slot - 1 : slot; }
static int comp_slot(int j, int k) { return j == k ? 0 : j < k ? j + 1 : j; }

/* The features of one occurrence: K components, chosen component k, log weights lw (normalised), means mu
** (mu[k] unused), observation sds sd, their logs lsd and inverses isd, prior centre and scale c, s (ls = log s, is =
** 1 / s), observation y, statistics C, B. The inverses turn the divisions by s and the sds into products: a
** division's latency was most of this function's time. */
static void mix_features_l(int kmax, int K, int k, const double *lw, const double *mu, const double *sd, const double *lsd,
                           const double *isd, double c, double s, double ls, double is, double y, double C, double B,
                           double *x)
{
    int slot;
    double *zl = x + 4 + 4 * kmax, *mp = zl + kmax, mx = -INFINITY;
    double yy = (y - c) * is, Cs = C * s * s, Bs = s * (B - c * C), sk = sd[k] * is, sk2 = sk * sk, isk = s * isd[k];
    double P0 = 1 + Cs, iP0 = 1 / P0, M0 = Bs * iP0, P1 = P0 + isk * isk, M1 = (Bs + yy * isk * isk) / P1;
    /* the three log variances from two log1p: log P0 = log1p(C s^2); with L = log1p(sk^2 P0), the predictive
    ** variance sk^2 + 1 / P0 has log L - log P0, and P1 = P0 + 1 / sk^2 has log L - 2 log sk */
    double lP0 = log1p(Cs), L = log1p(sk2 * P0), lsk = lsd[k] - ls;
    memset(x, 0, (size_t)mix_nin(kmax) * sizeof *x);
    x[0] = K;
    x[1] = clampf(yy);
    x[2] = clampf(lP0);
    x[3] = C > 0 ? clampf((B / C - c) * is) : 0;
    for (slot = 0; slot < K; slot++) {
        int j = slot_comp(slot, k);
        double *f = x + 4 + 4 * slot, e;
        f[0] = 1;
        f[1] = clampf(lw[j]);
        f[2] = slot == 0 ? 0 : clampf((mu[j] - c) * is);
        f[3] = clampf(lsd[j] - ls);
        /* in the units of k's prior: every slot's density carries the same 1 / s */
        if (slot == 0) {
            double v = sk2 + iP0;
            e = yy - M0;
            zl[0] = lw[k] - 0.5 * e * e / v - 0.5 * (L - lP0);
        } else {
            e = (y - mu[j]) * isd[j];
            zl[slot] = lw[j] - 0.5 * e * e - (lsd[j] - ls);
        }
        if (zl[slot] > mx) mx = zl[slot];
    }
    /* slots >= K are never drawn (x[0] = K): their inputs are 0, which the network's first layer skips */
    for (slot = 0; slot < K; slot++) zl[slot] = isfinite(mx) ? clampf(zl[slot] - mx) : -FEAT_CLAMP;
    mp[0] = clampf(M1);
    mp[1] = clampf(-0.5 * (L - 2 * lsk));
    for (slot = 1; slot < K; slot++) mp[2 * slot] = clampf(M0), mp[2 * slot + 1] = clampf(-0.5 * lP0);
}

static void mix_features(int kmax, int K, int k, const double *lw, const double *mu, const double *sd, double c, double s,
                         double y, double C, double B, double *x)
{
    double lsd[MIX_KMAX], isd[MIX_KMAX];
    int j;
    for (j = 0; j < K; j++) lsd[j] = log(sd[j]), isd[j] = 1 / sd[j];
    mix_features_l(kmax, K, k, lw, mu, sd, lsd, isd, c, s, log(s), 1 / s, y, C, B, x);
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
    /* the priors' log sds: nothing in the block moves them (detection), so one log per component and sweep (an sd
    ** that is not positive is reported by mix_inputs, which reads the sd itself) */
    for (i = 0; i < o->ngroups; i++)
        for (int j = 0; j < o->groups[i].K; j++) {
            double s = w->par[o->groups[i].out + 2 * j + 1];
            w->ls0[i * MIX_KMAX + j] = s > 0 ? log(s) : NAN;
        }
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
    double mu[MIX_KMAX], tot = 0, y = P[0];
    const double *sd = P + 1;
    int K = g->K, k = (int)plm_rng_uint(r, (uint64_t)K), j, z = (int)u[q->zc];
    if (K != w->lastK || memcmp(w->lastP, P + 1, 2 * (size_t)K * sizeof *P) != 0) {
        for (j = 0; j < K; j++) {
            if (!(sd[j] > 0) || !(P[1 + K + j] >= 0))
                return plm_fail(ctx, PLM_EDOM, "learned: mixture observation '%s' has sd %g or weight %g under component %d",
                                o->m->sites[q->y].name, sd[j], P[1 + K + j], j + 1);
            tot += P[1 + K + j];
        }
        for (j = 0; j < K; j++) w->lw[j] = log(P[1 + K + j] / tot), w->lsd[j] = log(sd[j]), w->isd[j] = 1 / sd[j];
        memcpy(w->lastP, P + 1, 2 * (size_t)K * sizeof *P);
        w->lastK = K;
    }
    for (j = 0; j < K; j++) mu[j] = u[g->muc[j]];
    w->k = k;
    w->c = w->par[g->out + 2 * k];
    w->s = w->par[g->out + 2 * k + 1];
    if (!(w->s > 0) || !isfinite(w->c))
        return plm_fail(ctx, PLM_EDOM, "learned: the prior of mixture mean '%s' has mean %g and sd %g",
                        o->m->sites[g->mu[k]].name, w->c, w->s);
    w->ls = w->ls0[q->g * MIX_KMAX + k];
    w->Ck = w->C[q->g * MIX_KMAX + k];
    w->Bk = w->B[q->g * MIX_KMAX + k];
    if (z == k) {   /* the other observations only: the block decides where this one goes */
        w->Ck -= 1 / (sd[k] * sd[k]);
        w->Bk -= y / (sd[k] * sd[k]);
        if (w->Ck < 1e-12 * (1 / (sd[k] * sd[k]))) w->Ck = 0, w->Bk = 0;
    }
    mix_features_l(mix_kmax(o->shape), K, k, w->lw, mu, sd, w->lsd, w->isd, w->c, w->s, w->ls, 1 / w->s, y, w->Ck, w->Bk,
                   x);
    v[0] = z >= 0 && z < K ? comp_slot(z, k) : -1;
    v[1] = (mu[k] - w->c) / w->s;
    return PLM_OK;
}

/* The block's log density: mu_k's prior, z's weight, the observation's term and the other assigned observations'
** (m B - m^2 C / 2), with the logs kept by mix_inputs. */
static double mix_logp(const plm_motif_occs *o, plm_motif_ws *w, int i, const double *u, const double *v)
{
    const mix_occ *q = &o->mocc[i];
    const mix_group *g = &o->groups[q->g];
    const double *P = w->par + q->out;
    int K = g->K, slot = (int)v[0], z;
    double m = w->c + w->s * v[1], mz, e0, e1;
    if (!(v[0] >= 0 && slot < K && slot == v[0]) || !isfinite(m)) return -INFINITY;
    z = slot_comp(slot, w->k);
    mz = z == w->k ? m : u[g->muc[z]];
    e0 = (m - w->c) / w->s, e1 = (P[0] - mz) / P[1 + z];
    return -0.5 * e0 * e0 - w->ls + w->lw[z] - 0.5 * e1 * e1 - w->lsd[z] - 2 * LOG_SQRT_2PI + m * w->Bk -
           0.5 * m * m * w->Ck;
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
        if (motif_is_latent_kind(s, PLM_DIST_NORMAL) && !s->discrete && s->lo < 0 && s->hi < 0 && s->value[0] >= 0)
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
        if (!motif_is_latent_kind(z, PLM_DIST_CATEGORICAL) || K < 2 || K > kmax || nch[i] != 1) continue;
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
                if (i != grp[g].mu[j] && motif_has_parent(s, grp[g].mu[j])) ok = 0;
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
    if (!(o = motif_occs_new(d, &mix_ops, shape, m)) || !(o->mocc = plm_gc_alloc_atomic((size_t)n * sizeof *occ)) ||
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
    if ((st = motif_compile_small(ctx, m, nout, outs, 0, NULL, &o->par, NULL, NULL, NULL))) goto done;
    memcpy(o->mocc, occ, (size_t)n * sizeof *occ);
    memcpy(o->groups, grp, (size_t)ng * sizeof *grp);
    o->n = n, o->ngroups = ng, o->npar = nout;
    *out = o;
done:
    walk_free(&wk);
    free(valsite), free(nch), free(child), free(occ), free(grp), free(mark), free(keep), free(outs);
    return st;
}

/* ---- the table of motifs ---- */

static const char *const mix_shape_names[] = {"K_max"};
static const int mix_def[] = {8}, mix_min[] = {2}, mix_max[] = {MIX_KMAX};

static const plm_motif_def MIXTURE = {"mixture", 1, mix_shape_names, mix_def, mix_min, mix_max,
                                      "a mixture assignment and the mean of one component",
                                      mix_layout, mix_draw, mix_detect};
static const plm_motif_def *const ALL[] = {&MIXTURE, &plm_motif_grid_def, &plm_motif_chain_def, NULL};

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
