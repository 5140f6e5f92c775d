/* mh_trace.c -- the trace MH kernel. Continuous scalars move by a Gaussian random walk on the unconstrained
** scale of their support (runtime/transform.h, with the Jacobian), its scale adapted per site during warm-up
** towards an acceptance rate of 0.44; mvnormal sites move jointly; discrete and simplex sites are re-drawn
** from their prior.
**
** Reversibility when supports move. A proposal re-runs the program reusing each old value whose address,
** kind and dimension still match; an old value that falls outside its site's new support (b ~ uniform(0,
** 1 - a) after a moved a) is re-drawn fresh. The ratio counts fresh draws in the forward proposal density and
** the old values they replace as the reverse move's fresh draws (Wingate et al. 2011). That is right only
** when the reverse move would re-draw them too, i.e. when the new value lies outside the old support; if it
** lies inside, the reverse move would reuse it and could never restore the old value: the reverse proposal
** density is zero, and so is the acceptance probability (stale_logp's *irreversible). Without this, moves
** that push b out of its support and back are accepted asymmetrically: mean(a) 0.71 instead of 0.5 in the
** example above. */
#include "mh_trace.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "transform.h"

plm_status plm_mh_choose(plm_ctx *ctx, plm_mh_run *run, const char *addr, const plm_dist *d, double *x, double *lp)
{
    size_t bytes = (size_t)d->dim * sizeof *x;
    if (run->target && strcmp(addr, run->target) == 0) {
        memcpy(x, run->target_val, bytes);
        *lp = plm_dist_logpdf(d, x);
        return PLM_OK;
    }
    if (run->old) {
        const plm_site *s = plm_trace_find(run->old, addr);
        if (s && s->kind == PLM_SITE_LATENT && s->dim == d->dim && s->dist && s->dist->kind == d->kind) {
            memcpy(x, s->value, bytes);
            *lp = plm_dist_logpdf(d, x);
            if (*lp > -INFINITY) return PLM_OK;   /* outside the new support: re-drawn (see the top of the file) */
        }
    }
    if (plm_dist_info_of(d->kind)->improper) {
        /* no sampler: started as Stan does, uniformly in (-2, 2) on the unconstrained scale; nothing else may
        ** draw it (a proposal cannot make it appear) */
        double lo, hi, lj;
        if (!run->start) return plm_fail(ctx, PLM_ENOTSUP, "%s: an improper prior has no sampler", addr);
        plm_dist_bounds(d, &lo, &hi);
        x[0] = plm_transform_from_free(lo, hi, -2 + 4 * plm_rng_uniform(run->rng), &lj);
        *lp = plm_dist_logpdf(d, x);
        return PLM_OK;
    }
    plm_dist_sample(d, run->rng, x);
    *lp = plm_dist_logpdf(d, x);
    run->fresh += *lp;
    return PLM_OK;
}

/* ---- per-site adaptation ---- */

typedef struct adapt {
    char *addr;
    double log_scale;
    double n;              /* proposals made at this site during warm-up */
} adapt;

typedef struct chain {
    adapt *a;
    int na, capa;
    double *x;             /* the proposed value */
    int capx;
    plm_trace *tr, *prop;
    plm_rng rng;
} chain;

static adapt *adapt_get(chain *ch, const char *addr)
{
    int i;
    for (i = 0; i < ch->na; i++)
        if (strcmp(ch->a[i].addr, addr) == 0) return &ch->a[i];
    if (ch->na == ch->capa) {
        int nc = ch->capa ? 2 * ch->capa : 16;
        adapt *na = realloc(ch->a, (size_t)nc * sizeof *na);
        if (!na) return NULL;
        ch->a = na;
        ch->capa = nc;
    }
    if (!(ch->a[ch->na].addr = strdup(addr))) return NULL;
    ch->a[ch->na].log_scale = log(0.5);
    ch->a[ch->na].n = 0;
    return &ch->a[ch->na++];
}

static void chain_free(chain *ch)
{
    int i;
    for (i = 0; i < ch->na; i++) free(ch->a[i].addr);
    free(ch->a);
    free(ch->x);
}

/* 2: mvnormal (joint Gaussian step); 1: continuous scalar (step on the unconstrained scale); 0: from the prior */
static int rw_kind(const plm_dist *d)
{
    if (d->kind == PLM_DIST_MVNORMAL) return 2;
    if (plm_dist_info_of(d->kind)->discrete || d->dim != 1) return 0;
    return 1;
}

/* Does the kernel move the site at addr (plm_mh_opts.sites)? */
static int moves(const plm_mh_opts *o, const char *addr)
{
    int i;
    if (!o->nsites) return 1;
    for (i = 0; i < o->nsites; i++) {
        size_t n = strlen(o->sites[i]);
        if (strncmp(addr, o->sites[i], n) == 0 && (addr[n] == 0 || addr[n] == '[')) return 1;
    }
    return 0;
}

/* The latent sites of tr that the kernel moves. */
static size_t nmoved(const plm_mh_opts *o, const plm_trace *tr)
{
    size_t i, n = 0;
    if (!o->nsites) return tr->nlatent;
    for (i = 0; i < tr->n; i++) n += tr->sites[i].kind == PLM_SITE_LATENT && moves(o, tr->sites[i].addr);
    return n;
}

/* The k-th latent site of tr that the kernel moves. */
static plm_site *nth_latent(const plm_mh_opts *o, const plm_trace *tr, size_t k)
{
    size_t i;
    for (i = 0; i < tr->n; i++)
        if (tr->sites[i].kind == PLM_SITE_LATENT && moves(o, tr->sites[i].addr) && k-- == 0) return &tr->sites[i];
    return NULL;
}

/* The sum of the log densities of old's latent sites that the proposal nw did not reuse -- absent from nw,
** re-drawn under another kind or dimension, or re-drawn because the old value fell outside the new support --
** other than the target. *irreversible is set when such a re-drawn site's new value lies inside its old
** support (see the top of the file). */
static double stale_logp(const plm_trace *old, const plm_trace *nw, const plm_site *target, int *irreversible)
{
    double s = 0;
    size_t i;
    *irreversible = 0;
    for (i = 0; i < old->n; i++) {
        const plm_site *a = &old->sites[i], *b;
        if (a->kind != PLM_SITE_LATENT || a == target) continue;
        b = plm_trace_find(nw, a->addr);
        if (!b || b->kind != PLM_SITE_LATENT || b->dist->kind != a->dist->kind || b->dim != a->dim) {
            s += a->logp;   /* re-drawn under a new kind: stale here, fresh in nw (and so in reverse) */
            continue;
        }
        if (memcmp(b->value, a->value, (size_t)a->dim * sizeof(double)) == 0) continue;   /* reused */
        s += a->logp;
        if (plm_dist_logpdf(a->dist, b->value) > -INFINITY) *irreversible = 1;
    }
    return s;
}

static void describe(const plm_mh_program *p, const plm_trace *tr, char *buf, size_t n)
{
    size_t i;
    if (p->describe) {
        p->describe(p->ud, tr, buf, n);
        return;
    }
    for (i = 0; i < tr->n; i++)
        if (tr->sites[i].kind != PLM_SITE_DETERMINISTIC && tr->sites[i].logp == -INFINITY) {
            snprintf(buf, n, "site '%s' has log density -inf", tr->sites[i].addr);
            return;
        }
    snprintf(buf, n, "a factor of -inf");
}

#define REJECTED ((plm_status)-1)

/* Run the program into r->tr. Returns PLM_OK, REJECTED (the reason in why when not NULL), or another status. */
static plm_status run_once(const plm_mh_program *p, plm_ctx *ctx, plm_mh_run *r, char *why, size_t nwhy)
{
    plm_status st;
    plm_trace_clear(r->tr);
    r->fresh = 0;
    st = p->run(p->ud, ctx, r);
    if (st == PLM_EINVAL || st == PLM_EDOM) {
        if (why) snprintf(why, nwhy, "%.*s", (int)nwhy - 1, ctx->msg[0] ? ctx->msg : "rejected");
        plm_ctx_clear(ctx);
        return REJECTED;
    }
    return st;
}

/* Look for a starting point: runs from the prior, with the program's initial values and improper sites
** started uniformly on the unconstrained scale. */
static plm_status find_start(plm_ctx *ctx, const plm_mh_program *p, const plm_mh_opts *o, chain *ch, int c)
{
    char why[400] = "";
    plm_mh_run r;
    int tries, rejected = 0;
    plm_status st;
    memset(&r, 0, sizeof r);
    r.tr = ch->tr;
    r.rng = &ch->rng;
    r.start = 1;
    for (tries = 0; tries < 1000; tries++) {
        if (plm_interrupted()) return plm_fail(ctx, PLM_EINTR, "interrupted");
        st = run_once(p, ctx, &r, why, sizeof why);
        rejected = st == REJECTED;
        if (st && !rejected) return st;
        if (!rejected && plm_trace_score(ch->tr) > -INFINITY) return PLM_OK;
        if (!rejected) describe(p, ch->tr, why, sizeof why);
    }
    return plm_fail(ctx, PLM_EDEAD, "chain %d found no starting point with finite log density in 1000 tries from the "
                    "prior%s; the last try %s: %s", c + 1, o->init ? " and the init values" : "",
                    rejected ? "was rejected" : "had density zero at", why);
}

static plm_status chain_run(plm_ctx *ctx, const plm_mh_program *p, const plm_mh_opts *o, int c, chain *ch,
                            plm_results *R, int rec_chain, double *accept)
{
    long it, total = o->warmup + o->samples, nprop = 0;
    size_t sweep = 0;
    double nacc = 0;
    plm_mh_run r;
    plm_status st;
    plm_rng *rng = &ch->rng;
    if ((st = plm_trace_new(ctx, &ch->tr)) || (st = plm_trace_new(ctx, &ch->prop))) return st;
    plm_rng_init(rng, o->seed, (uint64_t)c);
    if ((st = find_start(ctx, p, o, ch, c))) return st;
    memset(&r, 0, sizeof r);
    r.rng = rng;
    for (it = 0; it < total; it++) {
        int warm = it < o->warmup;
        size_t step, nsteps;
        plm_trace *tr = ch->tr;
        /* One iteration is a sweep of as many single-site moves as there are latent sites. After warm-up the
        ** count is frozen: a number of moves that depended on the current state would break invariance of the
        ** posterior when the number of sites varies (trans-dimensional models). */
        if (warm || sweep == 0) {
            size_t nm = nmoved(o, tr);
            if (nm > sweep) sweep = nm;
            nsteps = nm;
        } else
            nsteps = sweep;
        for (step = 0; step < nsteps && nmoved(o, ch->tr) > 0; step++) {
            plm_site *s;
            const plm_dist *d;
            adapt *ad = NULL;
            double corr = 0, loga, a, *xnew;
            int kind, j, irreversible;
            tr = ch->tr;
            s = nth_latent(o, tr, plm_rng_uint(rng, nmoved(o, tr)));
            d = s->dist;
            kind = rw_kind(d);
            if (plm_interrupted()) return plm_fail(ctx, PLM_EINTR, "interrupted");
            if (d->dim > ch->capx) {
                double *nx = realloc(ch->x, (size_t)d->dim * sizeof *nx);
                if (!nx) return plm_fail(ctx, PLM_ENOMEM, "out of memory");
                ch->x = nx;
                ch->capx = d->dim;
            }
            xnew = ch->x;
            if (kind == 1) {
                double lo, hi, u, un, lj0, lj1;
                if (!(ad = adapt_get(ch, s->addr))) return plm_fail(ctx, PLM_ENOMEM, "out of memory");
                plm_dist_bounds(d, &lo, &hi);
                u = plm_transform_to_free(lo, hi, s->value[0]);
                plm_transform_from_free(lo, hi, u, &lj0);
                un = u + exp(ad->log_scale) * plm_rng_normal(rng);
                xnew[0] = plm_transform_from_free(lo, hi, un, &lj1);
                corr = lj1 - lj0;
            } else if (kind == 2) {
                if (!(ad = adapt_get(ch, s->addr))) return plm_fail(ctx, PLM_ENOMEM, "out of memory");
                for (j = 0; j < d->dim; j++)
                    xnew[j] = s->value[j] + exp(ad->log_scale) / sqrt((double)d->dim) * plm_rng_normal(rng);
            } else {
                plm_dist_sample(d, rng, xnew);
                corr = plm_dist_logpdf(d, s->value) - plm_dist_logpdf(d, xnew);
            }
            r.tr = ch->prop;
            r.old = tr;
            r.target = s->addr;
            r.target_val = xnew;
            st = run_once(p, ctx, &r, NULL, 0);
            if (st == REJECTED)
                a = 0;   /* an invalid parameter: log density -inf */
            else if (st)
                return st;
            else {
                /* the target's old density is not a stale term: the move proposed its new value */
                double stale = stale_logp(tr, ch->prop, s, &irreversible);
                size_t nnew = nmoved(o, ch->prop);
                loga = plm_trace_score(ch->prop) - plm_trace_score(tr) + corr + log((double)nmoved(o, tr)) -
                       log((double)(nnew ? nnew : 1)) + stale - r.fresh;
                a = irreversible || isnan(loga) ? 0 : (loga >= 0 ? 1 : exp(loga));
            }
            if (ad && warm) {
                /* Robbins-Monro on the log scale towards 0.44 acceptance (1-D optimum) */
                ad->n += 1;
                ad->log_scale += (a - 0.44) / pow(ad->n + 1, 0.6);
                if (ad->log_scale > 10) ad->log_scale = 10;
                if (ad->log_scale < -20) ad->log_scale = -20;
            }
            if (!warm) nprop++, nacc += a;
            if (plm_rng_uniform(rng) < a) {
                ch->tr = ch->prop;
                ch->prop = tr;
            }
        }
        if (!warm && (it - o->warmup) % o->thin == 0 && (st = plm_results_add_trace(ctx, R, ch->tr, rec_chain, 0)))
            return st;
        if (p->progress && (it & 63) == 0) p->progress(p->ud, c, it, total, warm);
    }
    *accept = nprop ? nacc / (double)nprop : NAN;
    return PLM_OK;
}

plm_status plm_mh_trace_chain(plm_ctx *ctx, const plm_mh_program *p, const plm_mh_opts *o, int c, plm_results *R,
                              int rec_chain, double *accept)
{
    chain ch;
    plm_status st;
    if (o->thin < 1 || o->samples < 0 || o->warmup < 0)
        return plm_fail(ctx, PLM_EINVAL, "mh: warmup and samples must be >= 0 and thin >= 1");
    memset(&ch, 0, sizeof ch);
    *accept = NAN;
    st = chain_run(ctx, p, o, c, &ch, R, rec_chain, accept);
    chain_free(&ch);
    return st;
}
