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
    if (run->cons) {
        const plm_site *s = plm_trace_find(run->cons, addr);
        if (s && s->kind == PLM_SITE_LATENT) {
            if (s->dim != d->dim)
                return plm_fail(ctx, PLM_ENOTSUP, "%s: the imposed value has %d numbers, and the site's distribution "
                                "takes %d", addr, s->dim, d->dim);
            memcpy(x, s->value, bytes);
            *lp = plm_dist_logpdf(d, x);
            run->ncons++;
            return PLM_OK;
        }
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

/* ---- the chain: its trace target, and proposals for trace kernels ---- */

struct plm_mh_chain {
    const plm_mh_program *p;
    plm_trace *tr;          /* the current trace */
    plm_rng rng;
    int warm;               /* the iteration in progress is a warm-up one */
    long it, check_it;      /* the iteration in progress; the one at which kernels check their site names */
    plm_target target;
};

static double chain_logp(const plm_target *t, void *ws, const double *u)
{
    (void)ws;
    (void)u;
    return plm_trace_score(((const plm_mh_chain *)t->self)->tr);
}

static const plm_target_ops trace_target_ops = {"trace", NULL, NULL, chain_logp, NULL};

plm_mh_chain *plm_mh_target_chain(const plm_target *t)
{
    return t->ops == &trace_target_ops ? t->self : NULL;
}

const plm_trace *plm_mh_chain_trace(const plm_mh_chain *ch) { return ch->tr; }
const plm_mh_program *plm_mh_chain_program(const plm_mh_chain *ch) { return ch->p; }
plm_rng *plm_mh_chain_rng(plm_mh_chain *ch) { return &ch->rng; }
int plm_mh_chain_warm(const plm_mh_chain *ch) { return ch->warm; }

/* The sum of the log densities of old's latent sites that the proposal nw did not reuse -- absent from nw,
** re-drawn under another kind or dimension, or re-drawn because the old value fell outside the new support --
** other than the target and the sites of cons (whose values the move proposed). *irreversible is set when such
** a re-drawn site's new value lies inside its old support (see the top of the file). */
static double stale_logp(const plm_trace *old, const plm_trace *nw, const plm_site *target, const plm_trace *cons,
                         int *irreversible)
{
    double s = 0;
    size_t i;
    *irreversible = 0;
    for (i = 0; i < old->n; i++) {
        const plm_site *a = &old->sites[i], *b;
        if (a->kind != PLM_SITE_LATENT || a == target || (cons && plm_trace_find(cons, a->addr))) continue;
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

double plm_mh_trace_logratio(const plm_trace *old, const plm_trace *nw, const plm_trace *cons, double fresh)
{
    int irreversible;
    double stale = stale_logp(old, nw, NULL, cons, &irreversible);
    if (irreversible) return -INFINITY;
    return plm_trace_score(nw) - plm_trace_score(old) + stale - fresh;
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
    r->ncons = 0;
    st = p->run(p->ud, ctx, r);
    if (st == PLM_EINVAL || st == PLM_EDOM) {
        if (why) snprintf(why, nwhy, "%.*s", (int)nwhy - 1, ctx->msg[0] ? ctx->msg : "rejected");
        plm_ctx_clear(ctx);
        return REJECTED;
    }
    return st;
}

plm_status plm_mh_chain_propose(plm_ctx *ctx, plm_mh_chain *ch, plm_rng *rng, const plm_trace *old,
                                const plm_trace *cons, plm_trace *out, double *fresh, int *rejected, char *why,
                                size_t n)
{
    plm_mh_run r;
    plm_status st;
    size_t i;
    memset(&r, 0, sizeof r);
    r.tr = out;
    r.old = old;
    r.cons = cons;
    r.rng = rng;
    *fresh = 0;
    *rejected = 0;
    st = run_once(ch->p, ctx, &r, why, n);
    if (st == REJECTED) {
        *rejected = 1;
        return PLM_OK;
    }
    if (st) return st;
    *fresh = r.fresh;
    if (cons && (size_t)r.ncons < cons->nlatent)
        for (i = 0; i < cons->n; i++) {
            const plm_site *s = plm_trace_find(out, cons->sites[i].addr);
            if (!s || s->kind != PLM_SITE_LATENT)
                return plm_fail(ctx, PLM_EINVAL, "the run with the imposed values does not sample site '%s'",
                                cons->sites[i].addr);
        }
    return PLM_OK;
}

plm_status plm_mh_trace_copy(plm_ctx *ctx, plm_trace *dst, const plm_trace *src)
{
    size_t i;
    plm_status st;
    plm_trace_clear(dst);
    for (i = 0; i < src->n; i++) {
        const plm_site *s = &src->sites[i];
        if ((st = plm_trace_add(ctx, dst, s->addr, s->kind, s->dist, s->value, s->dim, s->logp, NULL))) return st;
    }
    /* factors are in loglik but not in any site */
    dst->loglik = src->loglik;
    dst->logprior = src->logprior;
    return PLM_OK;
}

plm_status plm_mh_chain_set(plm_ctx *ctx, plm_mh_chain *ch, const plm_trace *tr)
{
    return tr == ch->tr ? PLM_OK : plm_mh_trace_copy(ctx, ch->tr, tr);
}

/* ---- site names, shared by the MH and the Gibbs kernels ---- */

typedef struct names {
    char **v;
    int n;
} names;

/* Copy sites[0..n-1] into GC memory. */
static plm_status names_copy(plm_ctx *ctx, names *nm, const char *const *sites, int n)
{
    int i;
    nm->n = n;
    nm->v = NULL;
    if (n && !(nm->v = plm_gc_alloc((size_t)n * sizeof *nm->v))) return plm_fail(ctx, PLM_ENOMEM, "out of memory");
    for (i = 0; i < n; i++) {
        size_t len = strlen(sites[i]) + 1;
        if (!(nm->v[i] = plm_gc_alloc_atomic(len))) return plm_fail(ctx, PLM_ENOMEM, "out of memory");
        memcpy(nm->v[i], sites[i], len);
    }
    return PLM_OK;
}

/* Which name of nm stands for the site at addr: equal, or addr is an entry of it ("z" for "z[1]"); -1: none.
** With no names every site is named (0). */
static int names_find(const names *nm, const char *addr)
{
    int i;
    if (!nm->n) return 0;
    for (i = 0; i < nm->n; i++) {
        size_t n = strlen(nm->v[i]);
        if (strncmp(addr, nm->v[i], n) == 0 && (addr[n] == 0 || addr[n] == '[')) return i;
    }
    return -1;
}

/* Mark in seen[] the names of nm that tr's latent sites stand for; at the kernel's first step from the chain's
** check iteration on, fail naming the first name never seen (the model does not sample it, or never did so
** far). seen[nm->n] records that the check was made. */
static plm_status names_check(plm_ctx *ctx, const names *nm, char *seen, const plm_mh_chain *ch, const plm_trace *tr,
                              const char *kernel)
{
    size_t i;
    int j;
    for (i = 0; i < tr->n; i++)
        if (tr->sites[i].kind == PLM_SITE_LATENT && (j = names_find(nm, tr->sites[i].addr)) >= 0 && nm->n) seen[j] = 1;
    if (ch->it < ch->check_it || seen[nm->n]) return PLM_OK;
    seen[nm->n] = 1;
    for (j = 0; j < nm->n; j++)
        if (!seen[j])
            return plm_fail(ctx, PLM_EINVAL, "%s names site '%s', which the model did not sample in %ld iterations",
                            kernel, nm->v[j], ch->it + 1);
    return PLM_OK;
}

/* ---- the trace MH kernel ---- */

typedef struct mh_cfg {
    names nm;
    double log_scale0;
} mh_cfg;

typedef struct adapt {
    char *addr;
    double log_scale;
    double n;              /* proposals made at this site during warm-up */
} adapt;

typedef struct mh_state {
    adapt *a;
    int na, capa;
    double *x;             /* the proposed value */
    int capx;
    plm_trace **t;         /* t[0]: the proposal; GC memory rooted by root, since malloc'd memory is not
                           ** scanned and traces move between it and the chain */
    long root;
    size_t sweep;          /* moves per iteration, frozen after warm-up */
    char *seen;
} mh_state;

static adapt *adapt_get(mh_state *ms, const char *addr, double log_scale0)
{
    int i;
    for (i = 0; i < ms->na; i++)
        if (strcmp(ms->a[i].addr, addr) == 0) return &ms->a[i];
    if (ms->na == ms->capa) {
        int nc = ms->capa ? 2 * ms->capa : 16;
        adapt *na = realloc(ms->a, (size_t)nc * sizeof *na);
        if (!na) return NULL;
        ms->a = na;
        ms->capa = nc;
    }
    if (!(ms->a[ms->na].addr = strdup(addr))) return NULL;
    ms->a[ms->na].log_scale = log_scale0;
    ms->a[ms->na].n = 0;
    return &ms->a[ms->na++];
}

static void mh_free(void *p)
{
    mh_state *ms = p;
    int i;
    if (!ms) return;
    for (i = 0; i < ms->na; i++) free(ms->a[i].addr);
    if (ms->root) plm_unroot(ms->root);
    free(ms->a);
    free(ms->x);
    free(ms->seen);
    free(ms);
}

static void *mh_new(const plm_kernel *k, const plm_target *t)
{
    const mh_cfg *c = k->cfg;
    mh_state *ms;
    plm_ctx ctx;
    if (!plm_mh_target_chain(t) || !(ms = calloc(1, sizeof *ms))) return NULL;
    plm_ctx_clear(&ctx);
    if (!(ms->seen = calloc((size_t)c->nm.n + 1, 1)) || !(ms->t = plm_gc_alloc(sizeof *ms->t)) ||
        !(ms->root = plm_root(ms->t)) || plm_trace_new(&ctx, &ms->t[0])) {
        mh_free(ms);
        return NULL;
    }
    return ms;
}

/* 2: mvnormal (joint Gaussian step); 1: continuous scalar (step on the unconstrained scale); 0: from the prior */
static int rw_kind(const plm_dist *d)
{
    if (d->kind == PLM_DIST_MVNORMAL) return 2;
    if (plm_dist_info_of(d->kind)->discrete || d->dim != 1) return 0;
    return 1;
}

/* The latent sites of tr that the kernel moves. */
static size_t nmoved(const names *nm, const plm_trace *tr)
{
    size_t i, n = 0;
    if (!nm->n) return tr->nlatent;
    for (i = 0; i < tr->n; i++) n += tr->sites[i].kind == PLM_SITE_LATENT && names_find(nm, tr->sites[i].addr) >= 0;
    return n;
}

/* The k-th latent site of tr that the kernel moves. */
static plm_site *nth_latent(const names *nm, const plm_trace *tr, size_t k)
{
    size_t i;
    for (i = 0; i < tr->n; i++)
        if (tr->sites[i].kind == PLM_SITE_LATENT && names_find(nm, tr->sites[i].addr) >= 0 && k-- == 0)
            return &tr->sites[i];
    return NULL;
}

/* One sweep of single-site moves. Statistic: the mean acceptance probability of its moves (NaN: none). */
static plm_status mh_step(const plm_kernel *k, void *p, plm_ctx *ctx, const plm_target *t, void *ws, plm_rng *rng,
                          double *u, double *lp, double *stat, double *extra)
{
    const mh_cfg *c = k->cfg;
    const names *nm = &c->nm;
    mh_state *ms = p;
    plm_mh_chain *ch = plm_mh_target_chain(t);
    int warm = ch->warm;
    size_t step, nsteps;
    double sum = 0;
    plm_mh_run r;
    plm_status st;
    (void)ws;
    (void)u;
    (void)extra;
    if ((st = names_check(ctx, nm, ms->seen, ch, ch->tr, "plume.kernel.mh"))) return st;
    /* One iteration is a sweep of as many single-site moves as there are latent sites. After warm-up the
    ** count is frozen: a number of moves that depended on the current state would break invariance of the
    ** posterior when the number of sites varies (trans-dimensional models). */
    if (warm || ms->sweep == 0) {
        size_t nm0 = nmoved(nm, ch->tr);
        if (nm0 > ms->sweep) ms->sweep = nm0;
        nsteps = nm0;
    } else
        nsteps = ms->sweep;
    memset(&r, 0, sizeof r);
    r.rng = rng;
    for (step = 0; step < nsteps && nmoved(nm, ch->tr) > 0; step++) {
        plm_trace *tr = ch->tr;
        plm_site *s = nth_latent(nm, tr, plm_rng_uint(rng, nmoved(nm, tr)));
        const plm_dist *d = s->dist;
        adapt *ad = NULL;
        double corr = 0, loga, a, *xnew;
        int kind = rw_kind(d), j, irreversible;
        if (plm_interrupted()) return plm_fail(ctx, PLM_EINTR, "interrupted");
        if (d->dim > ms->capx) {
            double *nx = realloc(ms->x, (size_t)d->dim * sizeof *nx);
            if (!nx) return plm_fail(ctx, PLM_ENOMEM, "out of memory");
            ms->x = nx;
            ms->capx = d->dim;
        }
        xnew = ms->x;
        if (kind == 1) {
            double lo, hi, uu, un, lj0, lj1;
            if (!(ad = adapt_get(ms, s->addr, c->log_scale0))) return plm_fail(ctx, PLM_ENOMEM, "out of memory");
            plm_dist_bounds(d, &lo, &hi);
            uu = plm_transform_to_free(lo, hi, s->value[0]);
            plm_transform_from_free(lo, hi, uu, &lj0);
            un = uu + exp(ad->log_scale) * plm_rng_normal(rng);
            xnew[0] = plm_transform_from_free(lo, hi, un, &lj1);
            corr = lj1 - lj0;
        } else if (kind == 2) {
            if (!(ad = adapt_get(ms, s->addr, c->log_scale0))) return plm_fail(ctx, PLM_ENOMEM, "out of memory");
            for (j = 0; j < d->dim; j++)
                xnew[j] = s->value[j] + exp(ad->log_scale) / sqrt((double)d->dim) * plm_rng_normal(rng);
        } else {
            plm_dist_sample(d, rng, xnew);
            corr = plm_dist_logpdf(d, s->value) - plm_dist_logpdf(d, xnew);
        }
        r.tr = ms->t[0];
        r.old = tr;
        r.target = s->addr;
        r.target_val = xnew;
        st = run_once(ch->p, ctx, &r, NULL, 0);
        if (st == REJECTED)
            a = 0;   /* an invalid parameter: log density -inf */
        else if (st)
            return st;
        else {
            /* the target's old density is not a stale term: the move proposed its new value */
            double stale = stale_logp(tr, ms->t[0], s, NULL, &irreversible);
            size_t nnew = nmoved(nm, ms->t[0]);
            loga = plm_trace_score(ms->t[0]) - plm_trace_score(tr) + corr + log((double)nmoved(nm, tr)) -
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
        sum += a;
        if (plm_rng_uniform(rng) < a) {
            ch->tr = ms->t[0];
            ms->t[0] = tr;
        }
    }
    *stat = step ? sum / (double)step : NAN;
    *lp = plm_trace_score(ch->tr);
    return PLM_OK;
}

static const plm_kernel_ops mh_ops = {"trace_mh", 0, NULL, mh_new, mh_free, mh_step, NULL};

plm_status plm_trace_kernel_mh(plm_ctx *ctx, const char *const *sites, int nsites, double scale, plm_kernel **out)
{
    plm_kernel *k = plm_gc_alloc(sizeof *k);
    mh_cfg *c = plm_gc_alloc(sizeof *c);
    plm_status st;
    *out = NULL;
    if (!k || !c) return plm_fail(ctx, PLM_ENOMEM, "out of memory");
    if (!(scale >= 0 && isfinite(scale))) return plm_fail(ctx, PLM_EINVAL, "mh: proposal must be a scale > 0 (got %g)", scale);
    if ((st = names_copy(ctx, &c->nm, sites, nsites))) return st;
    c->log_scale0 = log(scale > 0 ? scale : 0.5);
    k->ops = &mh_ops;
    k->cfg = c;
    *out = k;
    return PLM_OK;
}

/* ---- Gibbs by enumeration on a dynamic trace ---- */

typedef struct gibbs_state {
    plm_trace **t;             /* GC, rooted: the run of the value being scored, the value picked so far */
    long root;
    long *cnt;                 /* per site of the current trace: the other values' runs that have it */
    size_t capcnt;
    char **addr;               /* the sites to update this step (copied: runs replace the trace) */
    int naddr, capaddr;
    char *seen;
} gibbs_state;

static void gibbs_free(void *p)
{
    gibbs_state *gs = p;
    int i;
    if (!gs) return;
    for (i = 0; i < gs->naddr; i++) free(gs->addr[i]);
    if (gs->root) plm_unroot(gs->root);
    free(gs->cnt);
    free(gs->addr);
    free(gs->seen);
    free(gs);
}

static void *gibbs_new(const plm_kernel *k, const plm_target *t)
{
    const names *nm = k->cfg;
    gibbs_state *gs;
    plm_ctx ctx;
    if (!plm_mh_target_chain(t) || !(gs = calloc(1, sizeof *gs))) return NULL;
    plm_ctx_clear(&ctx);
    if (!(gs->seen = calloc((size_t)nm->n + 1, 1)) || !(gs->t = plm_gc_alloc(2 * sizeof *gs->t)) ||
        !(gs->root = plm_root(gs->t)) || plm_trace_new(&ctx, &gs->t[0]) || plm_trace_new(&ctx, &gs->t[1])) {
        gibbs_free(gs);
        return NULL;
    }
    return gs;
}

/* The number of values of a finite discrete site (values 0..count-1), or 0 when its support is not finite. */
static long support_count(const plm_dist *d)
{
    switch (plm_dist_info_of(d->kind)->support) {
    case PLM_SUPPORT_BINARY: return 2;
    case PLM_SUPPORT_CATEGORY: return d->K;
    case PLM_SUPPORT_BOUNDED: return d->p[0] < 1e5 ? (long)d->p[0] + 1 : 0;
    default: return 0;
    }
}

/* Update the site at addr of the chain's trace from its exact conditional, by enumeration, when its values
** change the program's structure too (Carlin and Chib 1995, with the prior as pseudo-prior). The current
** trace's latent sites split into C, those every other value's run has too (with their values: reused), and
** E_s, those no other run has; run v's sites are C and E_v, drawn fresh from their priors. On the extended
** space pi(s, C, E_s) prod_{v != s} q_v(E_v | C), drawing the E_v from q_v and then s from
**     P(s = v) ~ pi(v, C, E_v) / q_v(E_v | C)
** is an exact Gibbs sweep, so pi is invariant. The weight of the current value divides by q_s(E_s | C), the
** product of its E_s sites' densities. A site that some other values' runs have and others do not fits
** neither part: refused, naming it. Without structure changes C is every site and the weights are the exact
** conditional. The other values are scored one by one and their pick kept as it goes (v replaces it with
** probability w_v / (sum of w so far)), so that two extra traces hold everything whatever the support. */
static plm_status gibbs_site(plm_ctx *ctx, gibbs_state *gs, plm_mh_chain *ch, plm_rng *rng, const char *addr)
{
    const plm_site *s = plm_trace_find(ch->tr, addr);
    plm_trace *cur = ch->tr, *picked = NULL;
    long K, v, nvalid = 0;
    double x0, total = -INFINITY, logq_s = 0, w_s;
    size_t i;
    plm_mh_run r;
    plm_status st;
    if (!s || s->kind != PLM_SITE_LATENT) return PLM_OK;   /* gone with an earlier site's new value */
    if (!plm_dist_info_of(s->dist->kind)->discrete) return PLM_OK;
    if (!(K = support_count(s->dist)))
        return plm_fail(ctx, PLM_EINVAL, "plume.kernel.gibbs: site '%s' (%s) has an infinite support, and the Gibbs "
                        "kernel on a dynamic program enumerates finite ones (bernoulli, categorical, binomial): move it "
                        "with plume.kernel.mh", addr, plm_dist_info_of(s->dist->kind)->name);
    if (cur->n > gs->capcnt) {
        long *nc = realloc(gs->cnt, cur->n * sizeof *nc);
        if (!nc) return plm_fail(ctx, PLM_ENOMEM, "out of memory");
        gs->cnt = nc;
        gs->capcnt = cur->n;
    }
    memset(gs->cnt, 0, cur->n * sizeof *gs->cnt);
    x0 = s->value[0];
    memset(&r, 0, sizeof r);
    r.rng = rng;
    r.old = cur;
    r.target = addr;
    for (v = 0; v < K; v++) {
        double xv = (double)v, w;
        int zero = 0;
        plm_trace *run = picked == gs->t[0] ? gs->t[1] : gs->t[0];
        if (xv == x0) continue;
        if (plm_interrupted()) return plm_fail(ctx, PLM_EINTR, "interrupted");
        r.tr = run;
        r.target_val = &xv;
        st = run_once(ch->p, ctx, &r, NULL, 0);
        if (st == REJECTED) continue;
        if (st) return st;
        nvalid++;
        for (i = 0; i < run->n; i++) {
            const plm_site *b = &run->sites[i], *a;
            if (b->kind != PLM_SITE_LATENT || strcmp(b->addr, addr) == 0 || !(a = plm_trace_find(cur, b->addr))) continue;
            if (a->kind != PLM_SITE_LATENT || a->dim != b->dim || a->dist->kind != b->dist->kind)
                return plm_fail(ctx, PLM_EINVAL, "plume.kernel.gibbs: with site '%s' = %ld, site '%s' changes its "
                                "distribution's kind or size; Gibbs enumerates values that keep each site's kind: move "
                                "'%s' with plume.kernel.mh", addr, v, b->addr, addr);
            gs->cnt[a - cur->sites]++;
            if (memcmp(a->value, b->value, (size_t)a->dim * sizeof(double)) != 0) zero = 1;   /* left its support */
        }
        w = zero ? -INFINITY : plm_trace_score(run) - r.fresh;
        if (!(w > -INFINITY)) continue;
        if (w == INFINITY || isnan(w))
            return plm_fail(ctx, PLM_EDOM, "plume.kernel.gibbs: site '%s' = %ld gives log density %g", addr, v, w);
        total = total > w ? total + log1p(exp(w - total)) : w + log1p(exp(total - w));
        if (plm_rng_uniform(rng) < exp(w - total)) picked = run;
    }
    for (i = 0; i < cur->n; i++) {
        const plm_site *a = &cur->sites[i];
        if (a->kind != PLM_SITE_LATENT || a == s || gs->cnt[i] == nvalid) continue;   /* in C */
        if (gs->cnt[i] != 0)
            return plm_fail(ctx, PLM_EINVAL, "plume.kernel.gibbs: site '%s' exists under some values of site '%s' but "
                            "not all, which the enumeration cannot weigh: move '%s' with plume.kernel.mh", a->addr,
                            addr, addr);
        logq_s += a->logp;   /* in E_s */
    }
    w_s = plm_trace_score(cur) - logq_s;
    if (picked && plm_rng_uniform(rng) * (1 + exp(w_s - total)) < 1) {
        /* the picked run becomes the chain's trace; the old one a scratch trace */
        if (gs->t[0] == picked) gs->t[0] = cur;
        else gs->t[1] = cur;
        ch->tr = picked;
    }
    return PLM_OK;
}

static plm_status gibbs_step(const plm_kernel *k, void *p, plm_ctx *ctx, const plm_target *t, void *ws, plm_rng *rng,
                             double *u, double *lp, double *stat, double *extra)
{
    const names *nm = k->cfg;
    gibbs_state *gs = p;
    plm_mh_chain *ch = plm_mh_target_chain(t);
    size_t i;
    int j;
    plm_status st;
    (void)ws;
    (void)u;
    (void)extra;
    if ((st = names_check(ctx, nm, gs->seen, ch, ch->tr, "plume.kernel.gibbs"))) return st;
    for (j = 0; j < gs->naddr; j++) free(gs->addr[j]);
    gs->naddr = 0;
    for (i = 0; i < ch->tr->n; i++) {
        const plm_site *s = &ch->tr->sites[i];
        if (s->kind != PLM_SITE_LATENT || names_find(nm, s->addr) < 0) continue;
        if (!plm_dist_info_of(s->dist->kind)->discrete) {
            if (!nm->n) continue;
            return plm_fail(ctx, PLM_EINVAL, "plume.kernel.gibbs: site '%s' is continuous (%s); on a dynamic program the "
                            "Gibbs kernel enumerates discrete sites: move it with plume.kernel.mh", s->addr,
                            plm_dist_info_of(s->dist->kind)->name);
        }
        if (gs->naddr == gs->capaddr) {
            int nc = gs->capaddr ? 2 * gs->capaddr : 8;
            char **na = realloc(gs->addr, (size_t)nc * sizeof *na);
            if (!na) return plm_fail(ctx, PLM_ENOMEM, "out of memory");
            gs->addr = na;
            gs->capaddr = nc;
        }
        if (!(gs->addr[gs->naddr] = strdup(s->addr))) return plm_fail(ctx, PLM_ENOMEM, "out of memory");
        gs->naddr++;
    }
    for (j = 0; j < gs->naddr; j++)
        if ((st = gibbs_site(ctx, gs, ch, rng, gs->addr[j]))) return st;
    *stat = 1;
    *lp = plm_trace_score(ch->tr);
    return PLM_OK;
}

static const plm_kernel_ops gibbs_ops = {"trace_gibbs", 0, NULL, gibbs_new, gibbs_free, gibbs_step, NULL};

plm_status plm_trace_kernel_gibbs(plm_ctx *ctx, const char *const *sites, int nsites, plm_kernel **out)
{
    plm_kernel *k = plm_gc_alloc(sizeof *k);
    names *nm = plm_gc_alloc(sizeof *nm);
    plm_status st;
    *out = NULL;
    if (!k || !nm) return plm_fail(ctx, PLM_ENOMEM, "out of memory");
    if ((st = names_copy(ctx, nm, sites, nsites))) return st;
    k->ops = &gibbs_ops;
    k->cfg = nm;
    *out = k;
    return PLM_OK;
}

/* ---- the chain driver ---- */

/* Look for a starting point: runs from the prior, with the program's initial values and improper sites
** started uniformly on the unconstrained scale. */
static plm_status find_start(plm_ctx *ctx, const plm_mh_opts *o, plm_mh_chain *ch, int c)
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
        st = run_once(ch->p, ctx, &r, why, sizeof why);
        rejected = st == REJECTED;
        if (st && !rejected) return st;
        if (!rejected && plm_trace_score(ch->tr) > -INFINITY) return PLM_OK;
        if (!rejected) describe(ch->p, ch->tr, why, sizeof why);
    }
    return plm_fail(ctx, PLM_EDEAD, "chain %d found no starting point with finite log density in 1000 tries from the "
                    "prior%s; the last try %s: %s", c + 1, o->init ? " and the init values" : "",
                    rejected ? "was rejected" : "had density zero at", why);
}

static plm_status chain_run(plm_ctx *ctx, const plm_mh_opts *o, int c, plm_mh_chain *ch, const plm_kernel *k,
                            void *ks, double *extra, plm_results *R, int rec_chain, double *accept)
{
    long it, total = o->warmup + o->samples, nstat = 0, *nx = NULL;
    int nextra = k->ops->nextra, j;
    double sstat = 0, lp = 0;
    plm_status st = PLM_OK;
    if ((st = find_start(ctx, o, ch, c))) return st;
    if (o->extra_mean) {
        if (nextra && !(nx = calloc((size_t)nextra, sizeof *nx))) return plm_fail(ctx, PLM_ENOMEM, "out of memory");
        for (j = 0; j < nextra; j++) o->extra_mean[j] = 0;
    }
    ch->check_it = o->warmup < total ? o->warmup : total - 1;
    for (it = 0; it < total; it++) {
        double stat = NAN;
        if (plm_interrupted()) {   /* a kernel written in Lua may not look */
            st = plm_fail(ctx, PLM_EINTR, "interrupted");
            break;
        }
        ch->it = it;
        ch->warm = it < o->warmup;
        for (j = 0; j < nextra; j++) extra[j] = NAN;
        if ((st = k->ops->step(k, ks, ctx, &ch->target, NULL, &ch->rng, NULL, &lp, &stat, extra))) break;
        if (ch->warm) {
            if (k->ops->adapt) k->ops->adapt(k, ks, it, o->warmup, NULL, stat);
        } else {
            if (!isnan(stat)) sstat += stat, nstat++;
            for (j = 0; nx && j < nextra; j++)
                if (!isnan(extra[j])) o->extra_mean[j] += extra[j], nx[j]++;
        }
        if (!ch->warm && (it - o->warmup) % o->thin == 0 && (st = plm_results_add_trace(ctx, R, ch->tr, rec_chain, 0)))
            break;
        if (ch->p->progress && (it & 63) == 0) ch->p->progress(ch->p->ud, c, it, total, ch->warm);
    }
    *accept = nstat ? sstat / (double)nstat : NAN;
    for (j = 0; nx && j < nextra; j++) o->extra_mean[j] = nx[j] ? o->extra_mean[j] / (double)nx[j] : NAN;
    free(nx);
    return st;
}

plm_status plm_mh_trace_chain(plm_ctx *ctx, const plm_mh_program *p, const plm_mh_opts *o, int c, plm_results *R,
                              int rec_chain, double *accept)
{
    plm_mh_chain ch;
    const plm_kernel *k = o->kernel;
    plm_kernel *dflt;
    plm_status st;
    void *ks;
    double *extra;
    *accept = NAN;
    if (o->thin < 1 || o->samples < 0 || o->warmup < 0)
        return plm_fail(ctx, PLM_EINVAL, "mh: warmup and samples must be >= 0 and thin >= 1");
    if (!k) {
        if ((st = plm_trace_kernel_mh(ctx, o->sites, o->nsites, 0, &dflt))) return st;
        k = dflt;
    }
    memset(&ch, 0, sizeof ch);
    ch.p = p;
    ch.target.ops = &trace_target_ops;
    ch.target.self = &ch;
    if ((st = plm_trace_new(ctx, &ch.tr))) return st;
    plm_rng_init(&ch.rng, o->seed, (uint64_t)c);
    if (!(extra = malloc(((size_t)k->ops->nextra + 1) * sizeof *extra))) return plm_fail(ctx, PLM_ENOMEM, "out of memory");
    if (!(ks = k->ops->chain_new(k, &ch.target))) {
        free(extra);
        return plm_fail(ctx, PLM_EINVAL, "mh: kernel %s cannot run on a dynamic program's trace (or memory ran out)",
                        k->ops->name);
    }
    st = chain_run(ctx, o, c, &ch, k, ks, extra, R, rec_chain, accept);
    k->ops->chain_free(ks);
    free(extra);
    return st;
}
