/* pmmh.c -- particle marginal Metropolis-Hastings (see pmmh.h).
**
** The target's log density at u runs a fresh particle filter. Its randomness must be new at every proposal
** and fixed by the chain's stream, but targets see no stream: the "pmmh" kernel wraps the random-walk kernel
** and, before each step, draws the filter's seed from the chain's stream into the target's workspace. The
** wrapper also carries failures the log density cannot return (out of memory, Ctrl-C inside a filter). */
#include "pmmh.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "comm.h"
#include "mcmc.h"

void plm_pmmh_opts_default(plm_pmmh_opts *o)
{
    memset(o, 0, sizeof *o);
    plm_pf_opts_default(&o->pf);
    o->chains = 4;
    o->warmup = 1000;
    o->samples = 1000;
    o->seed = 1;
    o->nthreads = 1;
    o->target_accept = 0.15;
}

typedef struct pmmh_target {
    plm_target t;
    const plm_ssm *m;
    const plm_ssm_prior *P;
    long T;
    const double *ys;
    plm_pf_opts pf;
} pmmh_target;

typedef struct pmmh_ws {
    plm_ssm m;           /* the model with this chain's parameters */
    double *par;
    uint64_t seed;       /* of the next filter */
    plm_status st;       /* a failure that is not a zero likelihood */
    plm_ctx ctx;
} pmmh_ws;

static void *ws_new(const plm_target *t)
{
    const pmmh_target *pt = t->self;
    pmmh_ws *w = calloc(1, sizeof *w);
    if (!w || !(w->par = malloc(((size_t)pt->m->np + 1) * sizeof *w->par))) {
        free(w);
        return NULL;
    }
    plm_ssm_with_params(pt->m, w->par, &w->m);
    return w;
}

static void ws_free(void *p)
{
    pmmh_ws *w = p;
    if (w) free(w->par);
    free(w);
}

static double pmmh_logp(const plm_target *t, void *p, const double *u)
{
    const pmmh_target *pt = t->self;
    pmmh_ws *w = p;
    plm_pf_opts o = pt->pf;
    plm_pf_result res;
    plm_status st;
    double lp = plm_ssm_prior_set(pt->P, u, w->par);
    if (lp == -INFINITY) return lp;
    o.seed = w->seed;
    st = plm_pf_run(&w->ctx, &w->m, pt->T, pt->ys, &o, &res);
    if (st == PLM_EDOM) return -INFINITY;   /* every weight zero, or a parameter outside the model's domain */
    if (st) {
        w->st = st;
        return -INFINITY;
    }
    lp += res.logz;
    plm_pf_result_free(&res);
    return lp;
}

static const plm_target_ops pmmh_ops = {"pmmh", ws_new, ws_free, pmmh_logp, NULL};

/* ---- the kernel: the random-walk kernel with a fresh filter seed per step ---- */

typedef struct kern_state {
    const plm_kernel *in;
    void *st;
} kern_state;

static void *kern_new(const plm_kernel *k, const plm_target *t)
{
    kern_state *s = malloc(sizeof *s);
    if (!s) return NULL;
    s->in = k->cfg;
    if (!(s->st = s->in->ops->chain_new(s->in, t))) {
        free(s);
        return NULL;
    }
    return s;
}

static void kern_free(void *p)
{
    kern_state *s = p;
    s->in->ops->chain_free(s->st);
    free(s);
}

static plm_status kern_step(const plm_kernel *k, void *p, plm_ctx *ctx, const plm_target *t, void *ws, plm_rng *r,
                            double *u, double *lp, double *stat, double *extra)
{
    kern_state *s = p;
    pmmh_ws *w = ws;
    plm_status st;
    (void)k;
    w->seed = plm_rng_next(r);
    w->st = PLM_OK;
    st = s->in->ops->step(s->in, s->st, ctx, t, ws, r, u, lp, stat, extra);
    if (!st && w->st) {
        memcpy(ctx->msg, w->ctx.msg, sizeof ctx->msg);
        ctx->status = st = w->st;
    }
    return st;
}

static void kern_adapt(const plm_kernel *k, void *p, long it, long nwarm, const double *u, double stat)
{
    kern_state *s = p;
    (void)k;
    if (s->in->ops->adapt) s->in->ops->adapt(s->in, s->st, it, nwarm, u, stat);
}

static const plm_kernel_ops kern_ops = {"pmmh", 0, NULL, kern_new, kern_free, kern_step, kern_adapt};

/* Starting points: given, or prior draws (stream 2^40 + c of the seed) until the estimate is finite. */
static plm_status find_starts(plm_ctx *ctx, const pmmh_target *pt, const plm_pmmh_opts *o, int lo, int hi,
                              double *init)
{
    const int d = pt->P->nfree;
    pmmh_ws *w = ws_new(&pt->t);
    plm_status st = PLM_OK;
    int c, tries;
    if (!w) return plm_fail(ctx, PLM_ENOMEM, "pmmh: out of memory");
    for (c = lo; c < hi && !st; c++) {
        double *u = init + (size_t)c * (size_t)d, lp = -INFINITY;
        plm_rng r;
        plm_rng_init(&r, o->seed, ((uint64_t)1 << 40) + (uint64_t)c);
        for (tries = 0; tries < 100 && !(lp > -INFINITY); tries++) {
            if (o->init)
                memcpy(u, o->init + (size_t)c * (size_t)d, (size_t)d * sizeof *u);
            else
                plm_ssm_prior_draw(pt->P, &r, u);
            w->seed = plm_rng_next(&r);
            lp = pmmh_logp(&pt->t, w, u);
            if (w->st) {
                memcpy(ctx->msg, w->ctx.msg, sizeof ctx->msg);
                ctx->status = st = w->st;
                break;
            }
            if (o->init) break;
        }
        if (!st && !(lp > -INFINITY))
            st = plm_fail(ctx, PLM_EDEAD, o->init ? "pmmh: chain %d: the likelihood estimate at the given start is 0"
                                                  : "pmmh: chain %d found no start with a likelihood estimate above 0 "
                                                    "in 100 draws from the prior", c + 1);
    }
    ws_free(w);
    return st;
}

/* Every chain's kept rows (w values each) into *vals, chain after chain, with their numbers in *len (chains
** entries): from D0 (chains lo..hi-1 of this rank), and with K > 1 from every rank, which also learn of each
** other's failure (st): *first is the lowest failing rank's status (its message on that rank, one naming it on
** the others). Returns a failure of the gathering itself. */
static plm_status gather_chains(plm_ctx *ctx, const plm_pmmh_opts *o, int K, int lo, int hi, size_t w,
                                plm_draws *D0, plm_status st, double **vals, size_t **len, plm_status *first_)
{
    size_t nloc = 0, total = 0, *counts = NULL, off;
    double *mine = NULL, *all = NULL;
    uint64_t *sizes = NULL;
    int c, r;
    plm_status gst = PLM_OK;
    *vals = NULL, *len = calloc((size_t)o->chains + 1, sizeof **len);
    for (c = lo; c < hi && D0; c++) nloc += plm_draws_len(D0, c - lo);
    /* this rank's part: its status, then per chain the row count and the rows (column-major in D0) */
    mine = malloc((2 + (size_t)(hi - lo) + nloc * w) * sizeof *mine);
    if (!*len || !mine) {
        free(mine), free(*len), *len = NULL;
        return plm_fail(ctx, PLM_ENOMEM, "pmmh: out of memory");
    }
    mine[0] = (double)st;
    off = 1;
    for (c = lo; c < hi; c++) {
        size_t i, n = D0 ? plm_draws_len(D0, c - lo) : 0, k;
        mine[off++] = (double)n;
        for (i = 0; i < n; i++)
            for (k = 0; k < w; k++) mine[off++] = plm_draws_chain(D0, (int)k, c - lo)[i];
    }
    if (K == 1) {
        all = mine, total = off;
    } else {
        sizes = malloc((size_t)K * sizeof *sizes);
        counts = malloc((size_t)K * sizeof *counts);
        if (!sizes || !counts) gst = plm_fail(ctx, PLM_ENOMEM, "pmmh: out of memory");
        else {
            uint64_t me = off * sizeof *mine;
            gst = plm_comm_allgather(ctx, &me, sizeof me, sizes);
            for (r = 0; r < K && !gst; r++) total += (counts[r] = (size_t)sizes[r]) / sizeof *mine;
            if (!gst && !(all = malloc((total + 1) * sizeof *all))) gst = plm_fail(ctx, PLM_ENOMEM, "pmmh: out of memory");
            if (!gst) gst = plm_comm_allgatherv(ctx, mine, counts, all);
        }
        free(mine);
        free(sizes);
        free(counts);
        if (gst) {
            free(all), free(*len), *len = NULL;
            return gst;
        }
    }
    /* walk the parts: status, then (count, rows) per chain in chain order */
    {
        size_t nrows = 0, p = 0;
        double *out;
        plm_status first = PLM_OK;
        int bad = 0;
        for (r = 0, c = 0; r < K; r++) {
            int rlo = K == 1 ? lo : (int)(((long)o->chains * r + K - 1) / K);
            int rhi = K == 1 ? hi : (int)(((long)o->chains * (r + 1) + K - 1) / K);
            if (all[p] != 0 && !first) first = (plm_status)all[p], bad = r;
            p++;
            for (c = rlo; c < rhi; c++) {
                (*len)[c] = (size_t)all[p];
                nrows += (*len)[c];
                p += 1 + (*len)[c] * w;
            }
        }
        if (!(out = malloc((nrows * w + 1) * sizeof *out))) {
            free(all);
            free(*len), *len = NULL;
            return plm_fail(ctx, PLM_ENOMEM, "pmmh: out of memory");
        }
        for (r = 0, p = 0, off = 0; r < K; r++) {
            int rlo = K == 1 ? lo : (int)(((long)o->chains * r + K - 1) / K);
            int rhi = K == 1 ? hi : (int)(((long)o->chains * (r + 1) + K - 1) / K);
            p++;
            for (c = rlo; c < rhi; c++) {
                size_t n = (size_t)all[p++];
                memcpy(out + off, all + p, n * w * sizeof *out);
                off += n * w, p += n * w;
            }
        }
        free(all);
        *vals = out;
        if (first && !st) plm_fail(ctx, first, "pmmh: rank %d failed (its message says why)", bad);
        *first_ = first;
        return PLM_OK;
    }
}

plm_status plm_pmmh_run(plm_ctx *ctx, const plm_ssm *m, long T, const double *ys, const plm_ssm_prior *P,
                        const plm_pmmh_opts *o, plm_results *R)
{
    pmmh_target pt;
    plm_kernel *rw, kern;
    plm_mcmc_opts mo;
    plm_draws *D0 = NULL, *D = plm_results_draws(R);
    plm_status st, rst, gst;
    double *init, *row, accept, *vals = NULL, *v;
    size_t *len = NULL, w;
    const int d = P->nfree;
    int c, j, K, lo, hi;
    if (d < 1) return plm_fail(ctx, PLM_EINVAL, "pmmh: no parameter has a prior: nothing to sample");
    if (T < 1) return plm_fail(ctx, PLM_EINVAL, "pmmh: no observations (T = %ld)", T);
    if (o->chains < 1 || o->warmup < 0 || o->samples < 0)
        return plm_fail(ctx, PLM_EINVAL, "pmmh: need chains >= 1, warmup >= 0 and samples >= 0");
    if (!(o->target_accept > 0 && o->target_accept < 1))
        return plm_fail(ctx, PLM_EINVAL, "pmmh: target_accept must be in (0, 1) (got %g)", o->target_accept);
    if (plm_draws_nchains(D) != o->chains)
        return plm_fail(ctx, PLM_EINVAL, "pmmh: the results have %d chains, not %d", plm_draws_nchains(D), o->chains);
    if ((st = plm_ssm_prior_check(ctx, m, P))) return st;
    for (j = 0; j < m->np; j++) {
        int free_j = 0, q;
        for (q = 0; q < d; q++) free_j |= P->idx[q] == j;
        if (!free_j && isnan(m->params[j]))
            return plm_fail(ctx, PLM_EINVAL, "pmmh: parameter %d has neither a value nor a prior", j + 1);
    }
    memset(&pt, 0, sizeof pt);
    pt.t.ops = &pmmh_ops;
    pt.t.self = &pt;
    pt.t.dim = d;
    pt.t.names = P->names;
    pt.m = m, pt.P = P, pt.T = T, pt.ys = ys;
    pt.pf = o->pf;
    pt.pf.history = 0;
    pt.pf.moments = NULL;
    /* chains in parallel with one-thread filters; one chain spreads its filters' particles instead. Over
    ** ranks: PARTICLES runs the chains in turn on the main thread (the filters' collectives need it), each
    ** filter spread; CHAINS gives this rank chains [lo, hi) */
    pt.pf.nthreads = o->chains > 1 && o->nthreads != 1 ? 1 : o->nthreads;
    pt.pf.distribute = 0;
    K = plm_comm_size();
    lo = 0, hi = o->chains;
    if (K > 1 && o->distribute == PLM_SPREAD_PARTICLES) {   /* every rank runs every chain */
        pt.pf.distribute = 1;
        pt.pf.nthreads = o->nthreads;
        K = 1;
    } else if (K > 1 && o->distribute == PLM_SPREAD_CHAINS) {
        int r = plm_comm_rank();
        lo = (int)(((long)o->chains * r + K - 1) / K);
        hi = (int)(((long)o->chains * (r + 1) + K - 1) / K);
    } else
        K = 1;
    if ((st = plm_kernel_rwmh(ctx, o->target_accept, &rw))) return st;
    kern.ops = &kern_ops;
    kern.cfg = rw;
    if (!(init = malloc(((size_t)o->chains * (size_t)d + 1) * sizeof *init)))
        return plm_fail(ctx, PLM_ENOMEM, "pmmh: out of memory");
    st = find_starts(ctx, &pt, o, lo, hi, init);
    memset(&mo, 0, sizeof mo);
    mo.chains = hi - lo;
    mo.warmup = o->warmup;
    mo.samples = o->samples;
    mo.thin = 1;
    mo.seed = o->seed;
    mo.threads = hi - lo > 1 && !pt.pf.distribute ? o->nthreads : 1;
    /* K: the ranks among which the chains are shared (1: all here) */
    mo.init = init + (size_t)lo * (size_t)d;
    if (!st && hi > lo) st = plm_mcmc_run_from(ctx, &pt.t, &kern, &mo, lo, &D0, &accept);
    free(init);
    /* every chain's kept rows, here or from the rank that ran it */
    w = (size_t)d + 2;
    if ((gst = gather_chains(ctx, o, K, lo, hi, w, D0, st, &vals, &len, &st))) return gst;
    if (!D0 && K == 1) {
        free(vals), free(len);
        return st;
    }
    /* the draws on the parameters' own scale; what was made is kept, also after an error */
    for (j = 0; j < d; j++)
        if (plm_draws_col(D, P->names[j], 1) != j) {
            free(vals), free(len);
            return plm_fail(ctx, PLM_EINVAL, "pmmh: column name '%s' is used twice", P->names[j]);
        }
    if (plm_draws_col(D, "lp__", 1) != d || plm_draws_col(D, "accept_stat__", 1) != d + 1) {
        free(vals), free(len);
        return plm_fail(ctx, PLM_EINVAL, "pmmh: a parameter is named lp__ or accept_stat__");
    }
    if (!(row = malloc(((size_t)m->np + (size_t)d + 2) * sizeof *row))) {
        free(vals), free(len);
        return plm_fail(ctx, PLM_ENOMEM, "pmmh: out of memory");
    }
    rst = PLM_OK;
    for (c = 0, v = vals; c < o->chains && !rst; c++) {
        size_t i, n = len[c];
        double sacc = 0, *par = row + d + 2;
        for (i = 0; i < n && !rst; i++, v += w) {
            plm_ssm_prior_set(P, v, par);
            for (j = 0; j < d; j++) row[j] = par[P->idx[j]];
            row[d] = v[d];
            row[d + 1] = v[d + 1];
            sacc += row[d + 1];
            rst = plm_draws_push(ctx, D, c, row, d + 2, 0);
        }
        if (!rst) rst = plm_results_push(ctx, R, "accept_rate", n ? sacc / (double)n : NAN);
    }
    free(vals), free(len);
    free(row);
    return rst ? rst : st;
}
