/* gibbs.c -- exact Gibbs kernels on static graphs (see gibbs.h): per site, a compiled program of its Markov
** blanket terms (enumeration: one evaluation per value of the support; conjugate updates: the difference of
** the terms before and after, for the log density) and, for conjugate sites, a program of the statistics
** the closed form needs (conjugacy.c decides which). Single-point evaluations, no Lua, no allocation per step. */
#include "gibbs_impl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "transform.h"

typedef struct gibbs_cfg {
    const plm_gmodel *m;
    gibbs_update *up;
    int nup;
    int block;          /* block kernel: one joint update of the sites below */
    int *bsites, *bcoord, *bsize, nb;
    long bspace;        /* points in the block's product space */
    int maxsupport;     /* weights buffer size */
    int maxstats;
} gibbs_cfg;

typedef struct gibbs_state {
    plm_prog_ws *wb, *ws;   /* per update: blanket and statistics workspaces */
    double *w;              /* weights of an enumeration (maxsupport) */
    double *s0, *s1;        /* statistics at two points (maxstats each) */
    double **o0, **o1;
    double res[2];
    double *ores[2];
} gibbs_state;

/* A chain's state keeps its cfg, whose update count chain_free needs. */
typedef struct gibbs_chain {
    const gibbs_cfg *cfg;
    gibbs_state st;
} gibbs_chain;

static void chain_free(void *p)
{
    gibbs_chain *c = p;
    int i;
    if (!c) return;
    for (i = 0; i < c->cfg->nup; i++) {
        if (c->st.wb && c->st.wb[i].p) plm_prog_ws_free(&c->st.wb[i]);
        if (c->st.ws && c->st.ws[i].p) plm_prog_ws_free(&c->st.ws[i]);
    }
    free(c->st.w), free(c->st.s0), free(c->st.s1), free(c->st.o0), free(c->st.o1);
    free(c->st.wb), free(c->st.ws);
    free(c);
}

static void *chain_new(const plm_kernel *k, const plm_target *t)
{
    const gibbs_cfg *cfg = k->cfg;
    gibbs_chain *c = calloc(1, sizeof *c);
    plm_prog_in in[PLM_NGROUPS];
    int i, ms = cfg->maxstats + 1;
    (void)t;
    if (!c) return NULL;
    c->cfg = cfg;
    c->st.wb = calloc((size_t)cfg->nup + 1, sizeof *c->st.wb);
    c->st.ws = calloc((size_t)cfg->nup + 1, sizeof *c->st.ws);
    c->st.w = malloc(((size_t)cfg->maxsupport + 1) * sizeof *c->st.w);
    c->st.s0 = malloc((size_t)ms * sizeof(double));
    c->st.s1 = malloc((size_t)ms * sizeof(double));
    c->st.o0 = malloc((size_t)ms * sizeof(double *));
    c->st.o1 = malloc((size_t)ms * sizeof(double *));
    if (!c->st.wb || !c->st.ws || !c->st.w || !c->st.s0 || !c->st.s1 || !c->st.o0 || !c->st.o1) goto fail;
    for (i = 0; i < ms; i++) c->st.o0[i] = c->st.s0 + i, c->st.o1[i] = c->st.s1 + i;
    c->st.ores[0] = c->st.res, c->st.ores[1] = c->st.res + 1;
    memset(in, 0, sizeof in);   /* the programs read only X (varying): the uniform pre-pass is constants */
    for (i = 0; i < cfg->nup; i++) {
        if (plm_prog_ws_init_block(NULL, &c->st.wb[i], cfg->up[i].blanket, 1)) goto fail;
        plm_prog_uniforms(&c->st.wb[i], in);
        if (cfg->up[i].stats) {
            if (plm_prog_ws_init_block(NULL, &c->st.ws[i], cfg->up[i].stats, 1)) goto fail;
            plm_prog_uniforms(&c->st.ws[i], in);
        }
    }
    return c;
fail:
    chain_free(c);
    return NULL;
}

/* The blanket terms at u (output 0) and, for binomial sites, n (output 1). */
static void blanket_at(plm_prog_ws *w, double *u, double **o)
{
    plm_prog_in in[PLM_NGROUPS];
    memset(in, 0, sizeof in);
    in[PLM_GRP_X].p = u;
    in[PLM_GRP_X].ld = 1;
    plm_prog_block(w, in, 0, 1, o, NULL);
}

/* Draw an index from unnormalised log weights w[0..n-1]; -1 when none is finite (or one is NaN). */
static int draw_log_weights(const double *w, int n, plm_rng *r)
{
    double mx = -INFINITY, tot = 0, v;
    int i;
    for (i = 0; i < n; i++) {
        if (isnan(w[i]) || w[i] == INFINITY) return -1;
        if (w[i] > mx) mx = w[i];
    }
    if (mx == -INFINITY) return -1;
    for (i = 0; i < n; i++) tot += exp(w[i] - mx);
    v = plm_rng_uniform(r) * tot;
    for (i = 0; i < n; i++) {
        double e = exp(w[i] - mx);
        if (v < e) return i;
        v -= e;
    }
    for (i = n - 1; i >= 0; i--)   /* rounding at the top end: the last value of positive weight */
        if (w[i] > -INFINITY) return i;
    return -1;
}

static plm_status enum_update(const gibbs_cfg *cfg, const gibbs_update *up, gibbs_state *st, plm_prog_ws *wb, plm_ctx *ctx,
                              plm_rng *r, double *u, double *lp)
{
    const plm_gsite *s = &cfg->m->sites[up->site];
    double old = u[up->coord];
    int n = up->support, v, pick;
    if (!n) {   /* binomial: n is a parameter (free of the site), read at the current point */
        blanket_at(wb, u, st->ores);
        if (!(st->res[1] >= 0 && st->res[1] == floor(st->res[1]) && st->res[1] < PLM_GIBBS_MAX_SUPPORT))
            return plm_fail(ctx, PLM_EDOM, "gibbs: site '%s' (binomial) has n = %g: enumeration needs a whole number "
                            "below %d", s->name, st->res[1], PLM_GIBBS_MAX_SUPPORT);
        n = (int)st->res[1] + 1;
    }
    for (v = 0; v < n; v++) {
        u[up->coord] = v;
        blanket_at(wb, u, st->ores);
        st->w[v] = st->res[0];
    }
    if ((pick = draw_log_weights(st->w, n, r)) < 0) {
        u[up->coord] = old;
        return plm_fail(ctx, PLM_EDOM, "gibbs: the full conditional of '%s' (%s) has no value of positive finite "
                        "probability", s->name, plm_dist_info_of((plm_dist_kind)s->dist)->name);
    }
    u[up->coord] = pick;
    if (old >= 0 && old < n && old == floor(old)) *lp += st->w[pick] - st->w[(int)old];
    else *lp = NAN;   /* the old value was outside the support: recompute in full */
    return PLM_OK;
}

static void stats_at(plm_prog_ws *w, double *u, double **o)
{
    blanket_at(w, u, o);
}

/* A conjugate update: the statistics, the closed-form draw, and the change of the blanket terms. */
static plm_status conj_update(const gibbs_cfg *cfg, const gibbs_update *up, gibbs_state *st, plm_prog_ws *wb,
                              plm_prog_ws *ws, plm_ctx *ctx, plm_rng *r, double *u, double *lp)
{
    const plm_gsite *s = &cfg->m->sites[up->site];
    double old = u[up->coord], before, x, newu, a, b;
    const double *S0 = st->s0, *S1 = st->s1;
    int c, j = 2;
    blanket_at(wb, u, st->ores);
    before = st->res[0];
    switch (up->how) {
    case PLM_GIBBS_NORMAL: {
        double prec, num;
        /* the children's means are affine in the site: their values at 0 and 1 give slope and intercept */
        u[up->coord] = 0;
        stats_at(ws, u, st->o0);
        u[up->coord] = 1;
        stats_at(ws, u, st->o1);
        if (!(S0[1] > 0)) goto badparam;
        prec = 1 / (S0[1] * S0[1]);
        num = S0[0] * prec;
        for (c = 0; c < up->nchild; c++, j += 3) {
            double sl = S1[j] - S0[j], ic = S0[j], sd = S0[j + 1], y = S0[j + 2], w;
            if (!(sd > 0)) goto badchild;
            w = 1 / (sd * sd);
            prec += sl * sl * w;
            num += sl * (y - ic) * w;
        }
        newu = num / prec + plm_rng_normal(r) / sqrt(prec);
        break;
    }
    case PLM_GIBBS_GAMMA: case PLM_GIBBS_INV_GAMMA: {
        /* at x = 1 every child parameter c x^k is its coefficient c */
        u[up->coord] = 0;   /* log 1 */
        stats_at(ws, u, st->o0);
        a = S0[0], b = S0[1];
        if (!(a > 0 && b > 0)) goto badparam;
        for (c = 0; c < up->nchild; c++) {
            switch (up->cfam[c]) {
            case CHILD_NORMAL: {
                double d = S0[j + 2] - S0[j], sd = S0[j + 1];
                if (!(sd > 0)) goto badchild;
                a += 0.5, b += 0.5 * d * d / (sd * sd);
                j += 3;
                break;
            }
            case CHILD_POISSON:
                a += S0[j + 1], b += S0[j];
                j += 2;
                break;
            case CHILD_EXPONENTIAL:
                a += 1, b += S0[j] * S0[j + 1];
                j += 2;
                break;
            default:   /* CHILD_GAMMA */
                a += S0[j], b += S0[j + 1] * S0[j + 2];
                j += 3;
            }
        }
        if (!(a > 0 && b > 0 && isfinite(a) && isfinite(b))) goto badchild;
        /* log of a Gamma(a, b) draw: exact in logs, which is the coordinate itself */
        x = plm_dist_log_gamma(a, r) - log(b);
        newu = up->how == PLM_GIBBS_GAMMA ? x : -x;
        break;
    }
    default: {   /* PLM_GIBBS_BETA */
        stats_at(ws, u, st->o0);
        a = S0[0], b = S0[1];
        if (!(a > 0 && b > 0)) goto badparam;
        for (c = 0; c < up->nchild; c++) {
            if (up->cfam[c] == CHILD_BINOMIAL) {
                a += S0[j + 1], b += S0[j] - S0[j + 1];
                j += 2;
            } else {
                a += S0[j], b += 1 - S0[j];
                j += 1;
            }
        }
        if (!(a > 0 && b > 0)) goto badchild;
        /* logit of G1 / (G1 + G2) is log G1 - log G2: the unconstrained coordinate without cancellation */
        newu = plm_dist_log_gamma(a, r) - plm_dist_log_gamma(b, r);
    }
    }
    u[up->coord] = newu;
    blanket_at(wb, u, st->ores);
    *lp += st->res[0] - before;
    return PLM_OK;
badparam:
    u[up->coord] = old;
    return plm_fail(ctx, PLM_EDOM, "gibbs: the prior of '%s' (%s) has invalid parameters (%g, %g)", s->name,
                    plm_dist_info_of((plm_dist_kind)s->dist)->name, S0[0], S0[1]);
badchild:
    u[up->coord] = old;
    return plm_fail(ctx, PLM_EDOM, "gibbs: a child of '%s' has invalid parameters or values (a non-positive scale, or "
                    "counts outside their range)", s->name);
}

static plm_status block_update(const gibbs_cfg *cfg, gibbs_state *st, plm_prog_ws *wb, plm_ctx *ctx, plm_rng *r,
                               double *u, double *lp)
{
    long p, pick;
    int k;
    double oldw = NAN;
    for (k = 0; k < cfg->nb; k++) st->s0[k] = u[cfg->bcoord[k]];
    for (p = 0; p < cfg->bspace; p++) {
        long q = p;
        int same = 1;
        for (k = cfg->nb - 1; k >= 0; k--) {
            u[cfg->bcoord[k]] = (double)(q % cfg->bsize[k]);
            same &= u[cfg->bcoord[k]] == st->s0[k];
            q /= cfg->bsize[k];
        }
        blanket_at(wb, u, st->ores);
        st->w[p] = st->res[0];
        if (same) oldw = st->res[0];
    }
    if ((pick = draw_log_weights(st->w, (int)cfg->bspace, r)) < 0) {
        for (k = 0; k < cfg->nb; k++) u[cfg->bcoord[k]] = st->s0[k];
        return plm_fail(ctx, PLM_EDOM, "block_gibbs: the joint conditional of '%s' and the rest of the block has no "
                        "point of positive finite probability", cfg->m->sites[cfg->bsites[0]].name);
    }
    for (k = cfg->nb - 1, p = pick; k >= 0; k--) {
        u[cfg->bcoord[k]] = (double)(p % cfg->bsize[k]);
        p /= cfg->bsize[k];
    }
    if (isnan(oldw)) *lp = NAN;
    else *lp += st->w[pick] - oldw;
    return PLM_OK;
}

static plm_status gibbs_step(const plm_kernel *k, void *state, plm_ctx *ctx, const plm_target *t, void *tws, plm_rng *r,
                             double *u, double *lp, double *stat, double *extra)
{
    const gibbs_cfg *cfg = k->cfg;
    gibbs_chain *c = state;
    plm_status st = PLM_OK;
    int i;
    (void)extra;
    if (!isfinite(*lp)) *lp = NAN;   /* increments from a non-finite start mean nothing: recompute at the end */
    if (cfg->block)
        st = block_update(cfg, &c->st, &c->st.wb[0], ctx, r, u, lp);
    else
        for (i = 0; i < cfg->nup && !st; i++) {
            const gibbs_update *up = &cfg->up[i];
            st = up->how == PLM_GIBBS_ENUM ? enum_update(cfg, up, &c->st, &c->st.wb[i], ctx, r, u, lp)
                                           : conj_update(cfg, up, &c->st, &c->st.wb[i], &c->st.ws[i], ctx, r, u, lp);
        }
    if (st) return st;
    if (!isfinite(*lp)) *lp = plm_target_logp(t, tws, u);
    if (isnan(*lp)) return plm_fail(ctx, PLM_EDOM, "gibbs: the log density is NaN after the update");
    *stat = 1;
    return PLM_OK;
}

static const plm_kernel_ops gibbs_ops = {"gibbs", 0, NULL, chain_new, chain_free, gibbs_step, NULL};
static const plm_kernel_ops block_ops = {"block_gibbs", 0, NULL, chain_new, chain_free, gibbs_step, NULL};

/* The blanket program of the sites in[0..n-1]: the sum of their terms and their children's, each term once,
** and extra outputs (binomial n). */
static plm_status blanket_prog(plm_ctx *ctx, const plm_gmodel *m, const int *sites, int n, int *scratch, char *seen,
                               int extra, plm_prog **out)
{
    plm_graph *g = m->g;
    int i, k, nc, sum = plm_graph_const(g, 0), outs[2];
    plm_status st;
    memset(seen, 0, (size_t)m->n + 1);
    for (i = 0; i < n; i++) {
        seen[sites[i]] = 1;
        nc = plm_gibbs_children(m, sites[i], scratch);
        for (k = 0; k < nc; k++) seen[scratch[k]] = 1;
    }
    for (i = 0; i < m->n; i++)
        if (seen[i] && m->sites[i].logp >= 0) sum = plm_graph_op(g, PLM_OP_ADD, sum, m->sites[i].logp, -1);
    if (sum < 0) return plm_fail(ctx, PLM_ENOMEM, "gibbs: out of memory");
    outs[0] = sum;
    outs[1] = extra;
    st = plm_prog_compile(ctx, g, extra >= 0 ? 2 : 1, outs, 1u << PLM_GRP_X, out);
    return st;
}

static plm_status check_site(plm_ctx *ctx, const plm_gmodel *m, int s, const char *fn)
{
    if (!m->finished) return plm_fail(ctx, PLM_EINVAL, "%s: the model is not finished", fn);
    if (s < 0 || s >= m->n) return plm_fail(ctx, PLM_EINVAL, "%s: no site number %d (the model has %d sites)", fn, s + 1, m->n);
    if (m->sites[s].kind != PLM_GSITE_LATENT)
        return plm_fail(ctx, PLM_EINVAL, "%s: site '%s' is %s, not latent: nothing to update", fn, m->sites[s].name,
                        plm_gsite_kind_name(m->sites[s].kind));
    return PLM_OK;
}

plm_status plm_kernel_gibbs(plm_ctx *ctx, const plm_gmodel *m, const int *sites, int nsites, plm_kernel **out)
{
    gibbs_cfg *cfg;
    plm_kernel *k;
    int i, *scratch = NULL, *ch = NULL;
    char *seen = NULL;
    plm_status st = PLM_OK;
    *out = NULL;
    if (nsites < 1) return plm_fail(ctx, PLM_EINVAL, "gibbs: no sites to update");
    for (i = 0; i < nsites; i++)
        if ((st = check_site(ctx, m, sites[i], "gibbs"))) return st;
    cfg = plm_gc_alloc(sizeof *cfg);
    k = plm_gc_alloc(sizeof *k);
    if (!cfg || !k || !(cfg->up = plm_gc_alloc((size_t)nsites * sizeof *cfg->up)))
        return plm_fail(ctx, PLM_ENOMEM, "gibbs: out of memory");
    scratch = malloc(((size_t)m->n + 1) * sizeof *scratch);
    ch = malloc(((size_t)m->n + 1) * sizeof *ch);
    seen = malloc((size_t)m->n + 1);
    if (!scratch || !ch || !seen) {
        st = plm_fail(ctx, PLM_ENOMEM, "gibbs: out of memory");
        goto done;
    }
    cfg->m = m;
    cfg->nup = nsites;
    cfg->maxsupport = 2;
    for (i = 0; i < nsites && !st; i++) {
        gibbs_update *up = &cfg->up[i];
        const plm_gsite *s = &m->sites[sites[i]];
        int how, *stats, nstats, *cfam, nchild, nc = plm_gibbs_children(m, sites[i], ch);
        char why[200];
        if ((st = plm_gibbs_find(ctx, m, sites[i], ch, nc, &how, &stats, &nstats, &cfam, &nchild, why, sizeof why))) break;
        if (how == PLM_GIBBS_NONE) {
            st = plm_fail(ctx, PLM_ENOTSUP, "gibbs: site '%s' has no exact conditional: %s", s->name, why);
            break;
        }
        up->site = sites[i], up->how = how, up->coord = s->first;
        up->cfam = cfam, up->nchild = nchild, up->nstats = nstats;
        if (how == PLM_GIBBS_ENUM) {
            up->support = s->dist == PLM_DIST_BINOMIAL ? 0 : s->dist == PLM_DIST_BERNOULLI ? 2 : s->K;
            if (s->dist == PLM_DIST_BINOMIAL) {
                double n;
                up->support = 0;
                if (plm_graph_is_const(m->g, s->params[0], &n) && n + 1 > cfg->maxsupport && n < PLM_GIBBS_MAX_SUPPORT)
                    cfg->maxsupport = (int)n + 1;
                else if (!plm_graph_is_const(m->g, s->params[0], &n))
                    cfg->maxsupport = PLM_GIBBS_MAX_SUPPORT;
            } else if (up->support > cfg->maxsupport)
                cfg->maxsupport = up->support;
        } else {
            if (nstats > cfg->maxstats) cfg->maxstats = nstats;
            if ((st = plm_prog_compile(ctx, m->g, nstats, stats, 1u << PLM_GRP_X, &up->stats))) break;
        }
        st = blanket_prog(ctx, m, &sites[i], 1, scratch, seen, s->dist == PLM_DIST_BINOMIAL && s->discrete ? s->params[0] : -1,
                          &up->blanket);
    }
    if (st) goto done;
    k->ops = &gibbs_ops;
    k->cfg = cfg;
    *out = k;
done:
    free(scratch), free(ch), free(seen);
    return st;
}

plm_status plm_kernel_block_gibbs(plm_ctx *ctx, const plm_gmodel *m, const int *sites, int nsites, plm_kernel **out)
{
    gibbs_cfg *cfg;
    plm_kernel *k;
    int i, j, *scratch, *ch;
    char *seen;
    double space = 1;
    plm_status st;
    *out = NULL;
    if (nsites < 1) return plm_fail(ctx, PLM_EINVAL, "block_gibbs: no sites to update");
    cfg = plm_gc_alloc(sizeof *cfg);
    k = plm_gc_alloc(sizeof *k);
    if (!cfg || !k || !(cfg->up = plm_gc_alloc(sizeof *cfg->up)) || !(cfg->bsites = plm_gc_alloc_atomic((size_t)nsites * sizeof(int))) ||
        !(cfg->bcoord = plm_gc_alloc_atomic((size_t)nsites * sizeof(int))) ||
        !(cfg->bsize = plm_gc_alloc_atomic((size_t)nsites * sizeof(int))))
        return plm_fail(ctx, PLM_ENOMEM, "block_gibbs: out of memory");
    for (i = 0; i < nsites; i++) {
        const plm_gsite *s;
        double n = 0;
        if ((st = check_site(ctx, m, sites[i], "block_gibbs"))) return st;
        s = &m->sites[sites[i]];
        for (j = 0; j < i; j++)
            if (sites[j] == sites[i]) return plm_fail(ctx, PLM_EINVAL, "block_gibbs: site '%s' is listed twice", s->name);
        if (!s->discrete || (s->dist != PLM_DIST_BERNOULLI && s->dist != PLM_DIST_CATEGORICAL &&
                             !(s->dist == PLM_DIST_BINOMIAL && plm_graph_is_const(m->g, s->params[0], &n))))
            return plm_fail(ctx, PLM_EINVAL, "block_gibbs: site '%s' (%s) is not finite discrete (bernoulli, categorical, "
                            "binomial with a constant n)", s->name, plm_dist_info_of((plm_dist_kind)s->dist)->name);
        cfg->bsites[i] = sites[i];
        cfg->bcoord[i] = s->first;
        cfg->bsize[i] = s->dist == PLM_DIST_BERNOULLI ? 2 : s->dist == PLM_DIST_CATEGORICAL ? s->K : (int)fmin(n + 1, 1e9);
        space *= cfg->bsize[i];
        if (space > PLM_GIBBS_MAX_BLOCK)
            return plm_fail(ctx, PLM_EINVAL, "block_gibbs: the joint support of the block has more than %d points (at "
                            "site '%s'): split the block", PLM_GIBBS_MAX_BLOCK, s->name);
    }
    scratch = malloc(((size_t)m->n + 1) * sizeof *scratch);
    ch = malloc(((size_t)m->n + 1) * sizeof *ch);
    seen = malloc((size_t)m->n + 1);
    if (!scratch || !ch || !seen) {
        free(scratch), free(ch), free(seen);
        return plm_fail(ctx, PLM_ENOMEM, "block_gibbs: out of memory");
    }
    cfg->m = m;
    cfg->block = 1;
    cfg->nb = nsites;
    cfg->bspace = (long)space;
    cfg->nup = 1;
    cfg->maxsupport = (int)space;
    cfg->maxstats = nsites;
    cfg->up[0].site = sites[0];
    cfg->up[0].how = PLM_GIBBS_ENUM;
    st = blanket_prog(ctx, m, sites, nsites, scratch, seen, -1, &cfg->up[0].blanket);
    free(scratch), free(ch), free(seen);
    if (st) return st;
    k->ops = &block_ops;
    k->cfg = cfg;
    *out = k;
    return PLM_OK;
}
