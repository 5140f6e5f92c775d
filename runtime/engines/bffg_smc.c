/* bffg_smc.c -- guided SMC along a chain of BFFG nodes: the guided draws of bffg.c, resampled at the observed
** nodes with weights from the backward filter's messages. */
#include "bffg_dag.h"

#include <math.h>
#include <string.h>

#include "par.h"
#include "resample.h"

/* ---- guided SMC along a chain ------------------------------------------------------------------------- */

/* log h(x) of a message */
static double msg_eval(const plm_bffg_msg *h, const double *x)
{
    double l = h->c;
    int i, j, d = h->dim;
    if (h->discrete) {
        double v = h->v[(int)x[0]];
        return v > 0 ? l + log(v) : -INFINITY;
    }
    if (h->gamma) return x[0] < h->gy ? l + (h->gk - 1) * log(h->gy - x[0]) - h->gb * (h->gy - x[0]) : -INFINITY;
    for (i = 0; i < d; i++) {
        double hx = 0;
        for (j = 0; j < d; j++) hx += h->H[i * d + j] * x[j];
        l += x[i] * (h->v[i] - 0.5 * hx);
    }
    return l;
}

typedef struct smc_job {
    const plm_bffg_filter *f;
    int node;                          /* the latent node of this stage */
    const int *obs;                    /* its observed children */
    int nobs;
    const plm_bffg_msg *psi, *psi_prev;   /* the messages from the chain ahead of this node and of its parent */
    uint64_t seed, stream0;
    double *draws, *inc;
    volatile int stop;
    int failed;
} smc_job;

/* The incremental log weight of particle s at this stage: the guided draw's edge weight, the densities of the
** observed children, and the change of the twisting function, log psi(x_i) - log psi_prev(x_parent). */
static void smc_chunk(void *arg, size_t begin, size_t end, int worker)
{
    smc_job *J = arg;
    const plm_bffg_filter *f = J->f;
    const plm_bffg_model *m = f->m;
    const node *nd = &m->nodes[J->node];
    double *work = plm_gc_alloc_atomic((f->work ? f->work : 1) * sizeof *work);
    size_t s;
    (void)worker;
    if (!work) {
        J->failed = 1;
        return;
    }
    for (s = begin; s < end && !J->stop; s++) {
        double *row = J->draws + s * m->width, *y = row + nd->offset, lw;
        const double *x = nd->parent >= 0 ? row + m->nodes[nd->parent].offset : NULL;
        plm_rng r;
        int o;
        if ((s & 63) == 0 && plm_interrupted()) {
            J->stop = 1;
            break;
        }
        plm_rng_init(&r, J->seed, J->stream0 + s);
        lw = nd->k->ops->sample(nd->k, f->guide[J->node], x, y, &r, work);
        for (o = 0; o < J->nobs; o++) {
            const node *on = &m->nodes[J->obs[o]];
            lw += on->k->ops->logpdf(on->k, y, f->values[J->obs[o]], work);
        }
        if (J->psi) lw += msg_eval(J->psi, y);
        if (J->psi_prev) lw -= msg_eval(J->psi_prev, x);
        J->inc[s] = lw;
    }
}

plm_status plm_bffg_smc(plm_ctx *ctx, const plm_bffg_filter *f, size_t n, uint64_t seed, int threads,
                        plm_resample_scheme scheme, double ess_threshold, double *draws, double *logw, double *loglik,
                        size_t *resamples)
{
    const plm_bffg_model *m = f->m;
    int nn = m->n, i, root = -1, nroots = 0, *next, *obs, *obs_start, *nobs, stage;
    size_t s, width = m->width, nres = 0, *counts, *anc;
    double *W, *inc, *cur = draws, *other, logz = 0;
    plm_status st = PLM_OK;
    if (n == 0) return plm_fail(ctx, PLM_EINVAL, "bffg smc: needs at least one particle");
    if (!draws || !logw || !loglik) return plm_fail(ctx, PLM_EINVAL, "bffg smc: needs draw, weight and loglik buffers");
    if (!(ess_threshold >= 0 && ess_threshold <= 1))
        return plm_fail(ctx, PLM_EINVAL, "bffg smc: ess_threshold must be in [0, 1] (got %g)", ess_threshold);
    next = plm_gc_alloc_atomic((size_t)(3 * nn + 2) * sizeof *next);
    obs = plm_gc_alloc_atomic((size_t)(nn + 1) * sizeof *obs);
    W = plm_gc_alloc_atomic(n * sizeof *W), inc = plm_gc_alloc_atomic(n * sizeof *inc);
    other = plm_gc_alloc_atomic((n * width + 1) * sizeof *other);
    counts = plm_gc_alloc_atomic(n * sizeof *counts), anc = plm_gc_alloc_atomic(n * sizeof *anc);
    if (!next || !obs || !W || !inc || !other || !counts || !anc) return plm_fail(ctx, PLM_ENOMEM, "bffg smc: out of memory");
    obs_start = next + nn, nobs = next + 2 * nn;
    for (i = 0; i < nn; i++) next[i] = -1, nobs[i] = 0;
    /* the chain: one root, each latent node with at most one latent child; observed children listed per node */
    for (i = 0; i < nn; i++) {
        const node *nd = &m->nodes[i];
        if (nd->np > 1)
            return plm_fail(ctx, PLM_EINVAL, "bffg smc: node '%s' has several parents, so the latent nodes are not a chain; "
                                             "use method \"is\"", nd->name);
        if (nd->value) {
            nobs[nd->parent]++;
            continue;
        }
        if (nd->parent < 0) {
            root = i, nroots++;
            continue;
        }
        if (next[nd->parent] >= 0)
            return plm_fail(ctx, PLM_EINVAL, "bffg smc: the latent nodes must form a chain, but '%s' has two latent children "
                                             "('%s' and '%s'); use method \"is\" for trees", m->nodes[nd->parent].name,
                            m->nodes[next[nd->parent]].name, nd->name);
        next[nd->parent] = i;
    }
    if (nroots != 1) return plm_fail(ctx, PLM_EINVAL, "bffg smc: the latent nodes must form one chain (found %d roots)", nroots);
    for (i = 0, s = 0; i < nn; i++) obs_start[i] = (int)s, s += (size_t)nobs[i];
    for (i = 0; i < nn; i++) nobs[i] = 0;
    for (i = 0; i < nn; i++)
        if (m->nodes[i].value) {
            int p = m->nodes[i].parent;
            obs[obs_start[p] + nobs[p]++] = i;
        }
    for (s = 0; s < n; s++) logw[s] = 0;
    for (i = root, stage = 0; i >= 0; i = next[i], stage++) {
        smc_job J;
        double lse_prev, lse;
        memset(&J, 0, sizeof J);
        J.f = f, J.node = i, J.obs = obs + obs_start[i], J.nobs = nobs[i];
        J.psi = next[i] >= 0 ? f->up[next[i]] : NULL;
        J.psi_prev = m->nodes[i].parent >= 0 ? f->up[i] : NULL;
        J.seed = seed, J.stream0 = (uint64_t)stage * n, J.draws = cur, J.inc = inc;
        plm_parallel_for(threads, n, 64, smc_chunk, &J);
        if (J.failed) return plm_fail(ctx, PLM_ENOMEM, "bffg smc: out of memory");
        if (J.stop || plm_interrupted()) return plm_fail(ctx, PLM_EINTR, "bffg smc: interrupted");
        for (s = 0; s < n; s++)
            if (isnan(inc[s]))
                return plm_fail(ctx, PLM_EDOM, "bffg smc: particle %zu: the guided draw of node '%s' failed (a diffusion "
                                               "path left the finite numbers: reduce dt, or check the parameters and the "
                                               "auxiliary)", s + 1, m->nodes[i].name);
        lse_prev = plm_resample_normalise(logw, n, W);
        for (s = 0; s < n; s++) logw[s] += inc[s];
        lse = plm_resample_normalise(logw, n, W);
        if (lse == -INFINITY)
            return plm_fail(ctx, PLM_EDOM, "bffg smc: every particle has weight 0 after node '%s' (the observations are "
                                           "impossible for all %zu particles)", m->nodes[i].name, n);
        logz += lse - lse_prev;
        /* resample at observation times (not after the last stage: its weights are the output) */
        if (nobs[i] > 0 && next[i] >= 0 && (ess_threshold >= 1 || plm_resample_ess(logw, n) <= ess_threshold * (double)n)) {
            plm_rng rr;
            double *t;
            plm_rng_init(&rr, seed, UINT64_MAX - (uint64_t)stage);
            if ((st = plm_resample_counts(ctx, scheme, W, n, n, &rr, counts, inc))) return st;
            plm_resample_ancestors(counts, n, anc);
            for (s = 0; s < n; s++) memcpy(other + s * width, cur + anc[s] * width, width * sizeof *cur);
            t = cur, cur = other, other = t;
            for (s = 0; s < n; s++) logw[s] = 0;
            nres++;
        }
    }
    if (cur != draws) memcpy(draws, cur, n * width * sizeof *draws);
    *loglik = logz;
    if (resamples) *resamples = nres;
    return PLM_OK;
}
