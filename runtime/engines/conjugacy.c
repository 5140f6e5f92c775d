/* conjugacy.c -- which exact Gibbs update applies to a site of a static graph, found from the structure:
** the site's distribution family, its children's families, and how each child parameter depends on the
** site's value (affine for normal means, a power c x^k for precisions, variances and rates), read off the
** expression graph. Nothing here is a numeric test at a few points: a parameter either is built from the
** value by operations that keep the form, or the update is refused with the reason. */
#include "gibbs_impl.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int plm_gibbs_children(const plm_gmodel *m, int i, int *out)
{
    int j, k, n = 0;
    for (j = 0; j < m->n; j++) {
        const plm_gsite *c = &m->sites[j];
        if (j == i || c->kind == PLM_GSITE_DETERMINISTIC || c->logp < 0) continue;
        for (k = 0; k < c->nparents; k++)
            if (c->parents[k] == i) {
                out[n++] = j;
                break;
            }
    }
    return n;
}

/* dep[id] = 1 when node id depends on the coordinate's input x; computed for ids 0..top in one pass (ids are
** topological). */
typedef struct analysis {
    const plm_graph *g;
    char *dep;
    signed char *aff;   /* memo of is_affine: 0 unknown, 1 yes, -1 no */
    int var;            /* the site's value node */
    const char *isvar;  /* a block's analysis (isvar[id]: id is the value of a block site), or NULL */
} analysis;

static void mark_deps(analysis *a, int x, int top)
{
    int id, k, nargs;
    const int *args;
    for (id = 0; id <= top; id++) {
        a->dep[id] = id == x || id == a->var;
        if (a->dep[id] || plm_graph_is_input(a->g, id, NULL, NULL)) continue;
        plm_graph_node(a->g, id, &nargs, &args);
        for (k = 0; k < nargs && !a->dep[id]; k++) a->dep[id] = a->dep[args[k]];
    }
}

/* Is node id an affine function of the value (a v + b, with a and b free of it)? */
static int is_affine(analysis *a, int id)
{
    int nargs, op, r;
    const int *x;
    if (!a->dep[id] || (a->isvar ? a->isvar[id] : id == a->var)) return 1;
    if (a->aff[id]) return a->aff[id] > 0;
    op = plm_graph_node(a->g, id, &nargs, &x);
    switch (op) {
    case PLM_OP_ADD: case PLM_OP_SUB: r = is_affine(a, x[0]) && is_affine(a, x[1]); break;
    case PLM_OP_NEG: r = is_affine(a, x[0]); break;
    case PLM_OP_MUL: r = (!a->dep[x[0]] && is_affine(a, x[1])) || (!a->dep[x[1]] && is_affine(a, x[0])); break;
    case PLM_OP_DIV: r = !a->dep[x[1]] && is_affine(a, x[0]); break;
    case PLM_OP_SELECT: r = !a->dep[x[0]] && is_affine(a, x[1]) && is_affine(a, x[2]); break;
    case PLM_OP_FMA:
        r = ((!a->dep[x[0]] && is_affine(a, x[1])) || (!a->dep[x[1]] && is_affine(a, x[0]))) && is_affine(a, x[2]);
        break;
    default: r = 0;   /* the raw coordinate itself, or a non-linear op */
    }
    a->aff[id] = r ? 1 : -1;
    return r;
}

/* The power k when node id is c v^k with c free of the value, else NAN. */
static double power_of(analysis *a, int id, int depth)
{
    int nargs, op;
    const int *x;
    double p, q, k;
    if (!a->dep[id]) return 0;
    if (id == a->var) return 1;
    if (depth > 200) return NAN;
    op = plm_graph_node(a->g, id, &nargs, &x);
    switch (op) {
    case PLM_OP_MUL: return power_of(a, x[0], depth + 1) + power_of(a, x[1], depth + 1);
    case PLM_OP_DIV: return power_of(a, x[0], depth + 1) - power_of(a, x[1], depth + 1);
    case PLM_OP_NEG: return power_of(a, x[0], depth + 1);
    case PLM_OP_SQRT: return power_of(a, x[0], depth + 1) / 2;
    case PLM_OP_INV: return -power_of(a, x[0], depth + 1);
    case PLM_OP_POW:
        if (a->dep[x[1]] || !plm_graph_is_const(a->g, x[1], &k)) return NAN;
        return power_of(a, x[0], depth + 1) * k;
    case PLM_OP_ADD: case PLM_OP_SUB:
        p = power_of(a, x[0], depth + 1), q = power_of(a, x[1], depth + 1);
        return p == q ? p : NAN;
    case PLM_OP_SELECT:
        if (a->dep[x[0]]) return NAN;
        p = power_of(a, x[1], depth + 1), q = power_of(a, x[2], depth + 1);
        return p == q ? p : NAN;
    default: return NAN;
    }
}

static int set_why(char *why, size_t n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, n, fmt, ap);
    va_end(ap);
    return 0;
}

static const char *dname(int kind)
{
    return kind >= 0 ? plm_dist_info_of((plm_dist_kind)kind)->name : "none";
}

/* Growable list of statistic nodes. */
typedef struct nodes {
    int *v, n, cap;
} nodes;

static int push(nodes *s, int id)
{
    if (s->n == s->cap) {
        int nc = s->cap ? 2 * s->cap : 16, *nv = plm_gc_alloc_atomic((size_t)nc * sizeof *nv);
        if (!nv) return -1;
        if (s->n) memcpy(nv, s->v, (size_t)s->n * sizeof *nv);
        s->v = nv, s->cap = nc;
    }
    s->v[s->n++] = id;
    return 0;
}

/* The finite support size of discrete site s (0: binomial, read from n each time; -1: unbounded). */
static int finite_support(const plm_gsite *s)
{
    switch (s->dist) {
    case PLM_DIST_BERNOULLI: return 2;
    case PLM_DIST_CATEGORICAL: return s->K;
    case PLM_DIST_BINOMIAL: return 0;
    default: return -1;
    }
}

/* A dirichlet site: every child is categorical with the site's value, entry for entry, as its probabilities
** (observed, or latent as the labels of a mixture); the statistics are the K concentrations and the children's
** values, whose counts add to them. */
static plm_status find_dirichlet(plm_ctx *ctx, const plm_gmodel *m, const plm_gsite *s, const int *children, int nchildren,
                                 int *how, int **stats, int *nstats, int **cfam, int *nchild, char *why, size_t nwhy)
{
    nodes st = {0};
    int c, k, K = s->dim, *fam;
    if (!nchildren) return set_why(why, nwhy, "'%s' has no children: its conditional is its prior", s->name), PLM_OK;
    if (!(fam = plm_gc_alloc_atomic(((size_t)nchildren + 1) * sizeof *fam))) return plm_fail(ctx, PLM_ENOMEM, "gibbs: out of memory");
    for (k = 0; k < K; k++)
        if (push(&st, s->params[k])) return plm_fail(ctx, PLM_ENOMEM, "gibbs: out of memory");
    for (c = 0; c < nchildren; c++) {
        const plm_gsite *ch = &m->sites[children[c]];
        if (ch->kind == PLM_GSITE_FACTOR || ch->dist != PLM_DIST_CATEGORICAL)
            return set_why(why, nwhy, "child %s of '%s' is %s, not categorical", ch->name, s->name,
                           ch->kind == PLM_GSITE_FACTOR ? "a factor" : dname(ch->dist)), PLM_OK;
        if (ch->nparams != K || ch->dim != 1)
            return set_why(why, nwhy, "child %s of '%s' has %d categories, the site %d", ch->name, s->name, ch->nparams, K), PLM_OK;
        for (k = 0; k < K; k++)
            if (ch->params[k] != s->value[k])
                return set_why(why, nwhy, "child %s of '%s': its probabilities are not the site itself", ch->name,
                               s->name), PLM_OK;
        fam[c] = CHILD_CATEGORICAL;
        if (push(&st, ch->value[0])) return plm_fail(ctx, PLM_ENOMEM, "gibbs: out of memory");
    }
    *how = PLM_GIBBS_DIRICHLET;
    *stats = st.v, *nstats = st.n, *cfam = fam, *nchild = nchildren;
    set_why(why, nwhy, "conjugate dirichlet prior on '%s' with %d categorical child%s", s->name, nchildren,
            nchildren == 1 ? "" : "ren");
    return PLM_OK;
}

/* An mvnormal site (a mean vector with known covariances): every child is mvnormal with the site's value, entry
** for entry, as its mean, or normal with one entry as its mean, and no child's covariance, sd or value reads
** the site. Statistics: the prior's mean and covariance, then per child its covariance (or sd) and value. */
static plm_status find_mvnormal(plm_ctx *ctx, const plm_gmodel *m, int i, const int *children, int nchildren, int *how,
                                int **stats, int *nstats, int **cfam, int *nchild, char *why, size_t nwhy)
{
    const plm_gsite *s = &m->sites[i];
    nodes st = {0};
    int c, k, K = s->dim, top = 0, id, *fam, ok = 1;
    char *dep;
    if (!nchildren) return set_why(why, nwhy, "'%s' has no children: its conditional is its prior", s->name), PLM_OK;
    for (c = 0; c < nchildren; c++) {
        const plm_gsite *ch = &m->sites[children[c]];
        for (k = 0; k < ch->nparams; k++) top = ch->params[k] > top ? ch->params[k] : top;
        for (k = 0; k < ch->dim; k++) top = ch->value[k] > top ? ch->value[k] : top;
    }
    /* dep[id]: node id reads a coordinate of the site (ids are topological: one pass) */
    if (!(dep = calloc((size_t)top + 1, 1)) || !(fam = plm_gc_alloc_atomic(((size_t)nchildren + 1) * sizeof *fam))) {
        free(dep);
        return plm_fail(ctx, PLM_ENOMEM, "gibbs: out of memory");
    }
    for (id = 0; id <= top; id++) {
        int grp, idx, nargs;
        const int *args;
        if (plm_graph_is_input(m->g, id, &grp, &idx)) {
            dep[id] = grp == PLM_GRP_X && idx >= s->first && idx < s->first + K;
            continue;
        }
        plm_graph_node(m->g, id, &nargs, &args);
        for (k = 0; k < nargs && !dep[id]; k++) dep[id] = dep[args[k]];
    }
    for (k = 0; k < K + K * K && ok > 0; k++)
        if (push(&st, s->params[k])) ok = -1;
    for (c = 0; c < nchildren && ok > 0; c++) {
        const plm_gsite *ch = &m->sites[children[c]];
        int j, comp = -1;
        if (ch->kind == PLM_GSITE_FACTOR || (ch->dist != PLM_DIST_MVNORMAL && ch->dist != PLM_DIST_NORMAL)) {
            ok = set_why(why, nwhy, "child %s of '%s' is %s, not mvnormal or normal", ch->name, s->name,
                         ch->kind == PLM_GSITE_FACTOR ? "a factor" : dname(ch->dist));
            break;
        }
        for (k = 0; k < ch->dim && ok > 0; k++)
            if (dep[ch->value[k]]) ok = set_why(why, nwhy, "'%s' enters the value of %s, not only its mean", s->name, ch->name);
        if (ok <= 0) break;
        if (ch->dist == PLM_DIST_MVNORMAL) {
            if (ch->dim != K) {
                ok = set_why(why, nwhy, "child %s of '%s' has dimension %d, the site %d", ch->name, s->name, ch->dim, K);
                break;
            }
            for (k = 0; k < K && ok > 0; k++)
                if (ch->params[k] != s->value[k])
                    ok = set_why(why, nwhy, "child %s of '%s': its mean is not the site itself", ch->name, s->name);
            for (k = K; k < K + K * K && ok > 0; k++)
                if (dep[ch->params[k]]) ok = set_why(why, nwhy, "child %s of '%s': its covariance depends on the site", ch->name, s->name);
            if (ok <= 0) break;
            fam[c] = CHILD_MVNORMAL;
            for (k = K; k < K + K * K && ok > 0; k++)
                if (push(&st, ch->params[k])) ok = -1;
            for (k = 0; k < K && ok > 0; k++)
                if (push(&st, ch->value[k])) ok = -1;
            continue;
        }
        for (j = 0; j < K; j++)
            if (ch->params[0] == s->value[j]) comp = j;
        if (comp < 0 || dep[ch->params[1]]) {
            ok = set_why(why, nwhy, "child %s of '%s': %s", ch->name, s->name,
                         comp < 0 ? "its mean is not an entry of the site" : "its sd depends on the site");
            break;
        }
        fam[c] = CHILD_COMPONENT + comp;
        if (push(&st, ch->params[1]) || push(&st, ch->value[0])) ok = -1;
    }
    free(dep);
    if (ok < 0) return plm_fail(ctx, PLM_ENOMEM, "gibbs: out of memory");
    if (!ok) return PLM_OK;
    *how = PLM_GIBBS_MVNORMAL;
    *stats = st.v, *nstats = st.n, *cfam = fam, *nchild = nchildren;
    set_why(why, nwhy, "conjugate mvnormal prior on '%s' with %d mvnormal/normal child%s (known covariance)", s->name,
            nchildren, nchildren == 1 ? "" : "ren");
    return PLM_OK;
}

plm_status plm_gibbs_find(plm_ctx *ctx, const plm_gmodel *m, int i, const int *children, int nchildren, int *how,
                          int **stats, int *nstats, int **cfam, int *nchild, char *why, size_t nwhy)
{
    const plm_gsite *s = &m->sites[i];
    const plm_graph *g = m->g;
    analysis a;
    nodes st = {0};
    int c, top = 0, kind = s->dist, want, ok = 1, *fam;
    double pw = 0;
    *how = PLM_GIBBS_NONE;
    *stats = NULL, *nstats = 0, *cfam = NULL, *nchild = 0;
    if (s->discrete) {
        int k = finite_support(s);
        if (k < 0)
            return set_why(why, nwhy, "'%s' is discrete (%s) with an unbounded support: no finite enumeration", s->name,
                           dname(kind)), PLM_OK;
        *how = PLM_GIBBS_ENUM;
        set_why(why, nwhy, "enumeration of '%s' (%s) over its support, %d blanket term%s", s->name, dname(kind),
                nchildren + 1, nchildren ? "s" : "");
        return PLM_OK;
    }
    if (kind == PLM_DIST_MVNORMAL) return find_mvnormal(ctx, m, i, children, nchildren, how, stats, nstats, cfam, nchild, why, nwhy);
    if (kind == PLM_DIST_DIRICHLET) return find_dirichlet(ctx, m, s, children, nchildren, how, stats, nstats, cfam, nchild, why, nwhy);
    switch (kind) {
    case PLM_DIST_NORMAL: want = PLM_GIBBS_NORMAL; break;
    case PLM_DIST_GAMMA: want = PLM_GIBBS_GAMMA; break;
    case PLM_DIST_INV_GAMMA: want = PLM_GIBBS_INV_GAMMA; break;
    case PLM_DIST_BETA: want = PLM_GIBBS_BETA; break;
    default:
        return set_why(why, nwhy, "'%s' (%s) has no conjugate family plume knows", s->name, dname(kind)), PLM_OK;
    }
    if (s->dim != 1) return set_why(why, nwhy, "'%s' is not scalar", s->name), PLM_OK;
    if (!nchildren) return set_why(why, nwhy, "'%s' has no children: its conditional is its prior", s->name), PLM_OK;
    for (c = 0; c < nchildren; c++) {
        const plm_gsite *ch = &m->sites[children[c]];
        int k;
        if (ch->kind == PLM_GSITE_FACTOR)
            return set_why(why, nwhy, "'%s' is read by %s, which is not a distribution", s->name, ch->name), PLM_OK;
        for (k = 0; k < ch->nparams; k++)
            if (ch->params[k] > top) top = ch->params[k];
        for (k = 0; k < ch->dim; k++)
            if (ch->value[k] > top) top = ch->value[k];
    }
    memset(&a, 0, sizeof a);
    a.g = g;
    a.var = s->value[0];
    if (a.var > top) top = a.var;
    a.dep = calloc((size_t)top + 1, 1);
    a.aff = calloc((size_t)top + 1, 1);
    fam = plm_gc_alloc_atomic(((size_t)nchildren + 1) * sizeof *fam);
    if (!a.dep || !a.aff || !fam) {
        free(a.dep), free(a.aff);
        return plm_fail(ctx, PLM_ENOMEM, "gibbs: out of memory");
    }
    mark_deps(&a, m->x[s->first], top);
    /* the prior's own parameters come first */
    if (push(&st, s->params[0]) || push(&st, s->params[1])) ok = -1;
    for (c = 0; c < nchildren && ok > 0; c++) {
        const plm_gsite *ch = &m->sites[children[c]];
        const int *p = ch->params;
        int y = ch->dim == 1 ? ch->value[0] : -1;
        if (ch->dim != 1 || a.dep[y]) {
            ok = set_why(why, nwhy, "'%s' enters the value of %s, not only its parameters", s->name, ch->name);
            break;
        }
        switch (want) {
        case PLM_GIBBS_NORMAL:
            if (ch->dist != PLM_DIST_NORMAL) {
                ok = set_why(why, nwhy, "child %s of '%s' is %s, not normal", ch->name, s->name, dname(ch->dist));
                break;
            }
            if (a.dep[p[1]] || !is_affine(&a, p[0])) {
                ok = set_why(why, nwhy, "child %s of '%s': %s", ch->name, s->name,
                             a.dep[p[1]] ? "its sd depends on the site" : "its mean is not affine in the site");
                break;
            }
            fam[c] = CHILD_NORMAL;
            if (push(&st, p[0]) || push(&st, p[1]) || push(&st, y)) ok = -1;
            break;
        case PLM_GIBBS_GAMMA: case PLM_GIBBS_INV_GAMMA:
            if (ch->dist == PLM_DIST_NORMAL) {
                pw = want == PLM_GIBBS_GAMMA ? -0.5 : 0.5;
                if (a.dep[p[0]] || power_of(&a, p[1], 0) != pw) {
                    ok = set_why(why, nwhy, "child %s of '%s': %s", ch->name, s->name,
                                 a.dep[p[0]] ? "its mean depends on the site"
                                 : want == PLM_GIBBS_GAMMA ? "its sd is not c / sqrt(site) (the site is not a precision)"
                                                           : "its sd is not c sqrt(site) (the site is not a variance)");
                    break;
                }
                fam[c] = CHILD_NORMAL;
                if (push(&st, p[0]) || push(&st, p[1]) || push(&st, y)) ok = -1;
            } else if (want == PLM_GIBBS_GAMMA &&
                       (ch->dist == PLM_DIST_POISSON || ch->dist == PLM_DIST_EXPONENTIAL || ch->dist == PLM_DIST_GAMMA)) {
                int rate = ch->dist == PLM_DIST_GAMMA ? p[1] : p[0];
                if ((ch->dist == PLM_DIST_GAMMA && a.dep[p[0]]) || power_of(&a, rate, 0) != 1) {
                    ok = set_why(why, nwhy, "child %s of '%s': its rate is not c * site", ch->name, s->name);
                    break;
                }
                fam[c] = ch->dist == PLM_DIST_POISSON ? CHILD_POISSON : ch->dist == PLM_DIST_GAMMA ? CHILD_GAMMA : CHILD_EXPONENTIAL;
                if ((ch->dist == PLM_DIST_GAMMA && push(&st, p[0])) || push(&st, rate) || push(&st, y)) ok = -1;
            } else
                ok = set_why(why, nwhy, "child %s of '%s' is %s: not conjugate to a %s prior", ch->name, s->name,
                             dname(ch->dist), dname(kind));
            break;
        case PLM_GIBBS_BETA:
            if (ch->dist != PLM_DIST_BERNOULLI && ch->dist != PLM_DIST_BINOMIAL) {
                ok = set_why(why, nwhy, "child %s of '%s' is %s, not bernoulli or binomial", ch->name, s->name,
                             dname(ch->dist));
                break;
            }
            if (p[ch->dist == PLM_DIST_BINOMIAL] != a.var || (ch->dist == PLM_DIST_BINOMIAL && a.dep[p[0]])) {
                ok = set_why(why, nwhy, "child %s of '%s': its probability is not the site itself", ch->name, s->name);
                break;
            }
            fam[c] = ch->dist == PLM_DIST_BINOMIAL ? CHILD_BINOMIAL : CHILD_BERNOULLI;
            if ((ch->dist == PLM_DIST_BINOMIAL && push(&st, p[0])) || push(&st, y)) ok = -1;
            break;
        }
    }
    free(a.dep), free(a.aff);
    if (ok < 0) return plm_fail(ctx, PLM_ENOMEM, "gibbs: out of memory");
    if (!ok) return PLM_OK;
    *how = want;
    *stats = st.v, *nstats = st.n, *cfam = fam, *nchild = nchildren;
    set_why(why, nwhy, "conjugate %s prior on '%s' with %d %s child%s", dname(kind), s->name, nchildren,
            want == PLM_GIBBS_NORMAL ? "normal (affine mean)" : want == PLM_GIBBS_BETA ? "bernoulli/binomial"
            : want == PLM_GIBBS_INV_GAMMA ? "normal (variance)" : "normal/poisson/exponential/gamma",
            nchildren == 1 ? "" : "ren");
    return PLM_OK;
}

plm_status plm_gibbs_gaussian_check(plm_ctx *ctx, const plm_gmodel *m, const int *sites, int n, gauss_block *out,
                                    char *why, size_t nwhy)
{
    const plm_graph *g = m->g;
    analysis a;
    int *bof = NULL, i, j, k, t, top = 0, id, ok = 1, nt = 0, nz = 0;
    char *inc = NULL, *isvar = NULL;
    memset(out, 0, sizeof *out);
    why[0] = 0;
    if (n < 1) return set_why(why, nwhy, "no sites"), PLM_OK;
    if (!(bof = malloc(((size_t)m->n + 1) * sizeof *bof)) || !(inc = calloc((size_t)m->dim + 1, 1)))
        goto nomem;
    for (j = 0; j < m->n; j++) bof[j] = -1;
    for (i = 0; i < n; i++) {
        const plm_gsite *s = &m->sites[sites[i]];
        if (s->kind != PLM_GSITE_LATENT || s->discrete || s->dist != PLM_DIST_NORMAL || s->dim != 1) {
            ok = set_why(why, nwhy, "'%s' is not a latent scalar normal site", s->name);
            goto done;
        }
        if (bof[sites[i]] >= 0) {
            ok = set_why(why, nwhy, "'%s' is listed twice", s->name);
            goto done;
        }
        bof[sites[i]] = i;
        inc[s->first] = 1;
        if (s->value[0] > top) top = s->value[0];
    }
    /* the terms touching B: B's own and every term that reads a site of B; nz counts (term, block site) pairs */
    for (j = 0; j < m->n; j++) {
        const plm_gsite *c = &m->sites[j];
        int reads = bof[j] >= 0;
        if (c->kind == PLM_GSITE_DETERMINISTIC || c->logp < 0) continue;
        for (k = 0; k < c->nparents; k++) reads += bof[c->parents[k]] >= 0;
        if (!reads) continue;
        if (c->kind == PLM_GSITE_FACTOR || c->dist != PLM_DIST_NORMAL || c->dim != 1) {
            ok = set_why(why, nwhy, "term %s is %s, not a scalar normal", c->name,
                         c->kind == PLM_GSITE_FACTOR ? "a factor" : dname(c->dist));
            goto done;
        }
        nt++, nz += reads;
        for (k = 0; k < 2; k++) top = c->params[k] > top ? c->params[k] : top;
        top = c->value[0] > top ? c->value[0] : top;
    }
    out->d = n, out->nterms = nt;
    out->sites = plm_gc_alloc_atomic((size_t)n * sizeof(int));
    out->terms = plm_gc_alloc_atomic((size_t)nt * sizeof(int));
    out->tptr = plm_gc_alloc_atomic(((size_t)nt + 1) * sizeof(int));
    out->tidx = plm_gc_alloc_atomic(((size_t)nz + 1) * sizeof(int));
    out->stats = plm_gc_alloc_atomic((3 * (size_t)nt + 1) * sizeof(int));
    memset(&a, 0, sizeof a);
    a.g = g;
    a.var = -1;
    a.dep = calloc((size_t)top + 1, 1);
    a.aff = calloc((size_t)top + 1, 1);
    a.isvar = isvar = calloc((size_t)top + 1, 1);
    if (!out->sites || !out->terms || !out->tptr || !out->tidx || !out->stats || !a.dep || !a.aff || !isvar) {
        free(a.dep), free(a.aff);
        goto nomem;
    }
    memcpy(out->sites, sites, (size_t)n * sizeof *sites);
    for (i = 0; i < n; i++) isvar[m->sites[sites[i]].value[0]] = 1;
    /* dep[id]: node id reads a coordinate of B (ids are topological: one pass) */
    for (id = 0; id <= top; id++) {
        int grp, idx, nargs;
        const int *args;
        if (isvar[id]) a.dep[id] = 1;
        else if (plm_graph_is_input(g, id, &grp, &idx)) a.dep[id] = grp == PLM_GRP_X && idx >= 0 && idx < m->dim && inc[idx];
        else {
            plm_graph_node(g, id, &nargs, &args);
            for (k = 0; k < nargs && !a.dep[id]; k++) a.dep[id] = a.dep[args[k]];
        }
    }
    /* every term: value and mean jointly affine in B (a product of two of B's sites is not), sd free of B */
    for (j = 0, t = 0, nz = 0; j < m->n && ok; j++) {
        const plm_gsite *c = &m->sites[j];
        int y, reads = bof[j] >= 0;
        if (c->kind == PLM_GSITE_DETERMINISTIC || c->logp < 0) continue;
        for (k = 0; k < c->nparents; k++) reads += bof[c->parents[k]] >= 0;
        if (!reads) continue;
        y = c->value[0];
        if (a.dep[c->params[1]]) ok = set_why(why, nwhy, "the sd of %s depends on the block", c->name);
        else if (a.dep[y] && !isvar[y]) ok = set_why(why, nwhy, "the value of %s is a function of the block", c->name);
        else if (!is_affine(&a, c->params[0]))
            ok = set_why(why, nwhy, "the mean of %s is not affine in the block's sites jointly", c->name);
        out->terms[t] = j;
        out->tptr[t] = nz;
        if (bof[j] >= 0) out->tidx[nz++] = bof[j];
        for (k = 0; k < c->nparents; k++)
            if (bof[c->parents[k]] >= 0 && c->parents[k] != j) out->tidx[nz++] = bof[c->parents[k]];
        out->stats[3 * t] = c->params[0], out->stats[3 * t + 1] = c->params[1], out->stats[3 * t + 2] = y;
        t++;
    }
    if (ok) out->tptr[t] = nz;
    free(a.dep), free(a.aff);
done:
    free(bof), free(inc), free(isvar);
    out->ok = ok;
    if (ok) set_why(why, nwhy, "gaussian block of %d sites: %d normal terms with means affine in it jointly", n, nt);
    return PLM_OK;
nomem:
    free(bof), free(inc), free(isvar);
    return plm_fail(ctx, PLM_ENOMEM, "gibbs: out of memory");
}

plm_status plm_gibbs_block_means_read(plm_ctx *ctx, const plm_gmodel *m, const int *sites, int n, const char *coords,
                                      int *reads)
{
    gauss_block gb;
    char why[200], *dep;
    int t, id, k, top = 0;
    plm_status st;
    *reads = 0;
    if ((st = plm_gibbs_gaussian_check(ctx, m, sites, n, &gb, why, sizeof why)) || !gb.ok) return st;
    for (t = 0; t < gb.nterms; t++) top = gb.stats[3 * t] > top ? gb.stats[3 * t] : top;
    if (!(dep = calloc((size_t)top + 1, 1))) return plm_fail(ctx, PLM_ENOMEM, "gibbs: out of memory");
    for (id = 0; id <= top; id++) {
        int grp, idx, nargs;
        const int *args;
        if (plm_graph_is_input(m->g, id, &grp, &idx)) dep[id] = grp == PLM_GRP_X && idx >= 0 && idx < m->dim && coords[idx];
        else {
            plm_graph_node(m->g, id, &nargs, &args);
            for (k = 0; k < nargs && !dep[id]; k++) dep[id] = dep[args[k]];
        }
    }
    for (t = 0; t < gb.nterms && !*reads; t++) *reads = dep[gb.stats[3 * t]];
    free(dep);
    return PLM_OK;
}

static int uf_find(int *p, int i)
{
    while (p[i] != i) i = p[i] = p[p[i]];
    return i;
}

plm_status plm_gibbs_gaussian_blocks(plm_ctx *ctx, const plm_gmodel *m, const int *cand, int ncand, int *block,
                                     int *nblocks, char *why, size_t nwhy)
{
    int *cid, *par, *members, i, j, k, nb = 0;
    size_t used = 0;
    plm_status st = PLM_OK;
    *nblocks = 0;
    why[0] = 0;
    cid = malloc(((size_t)m->n + 1) * sizeof *cid);
    par = malloc(((size_t)ncand + 1) * sizeof *par);
    members = malloc(((size_t)ncand + 1) * sizeof *members);
    if (!cid || !par || !members) {
        free(cid), free(par), free(members);
        return plm_fail(ctx, PLM_ENOMEM, "gibbs: out of memory");
    }
    for (j = 0; j < m->n; j++) cid[j] = -1;
    for (i = 0; i < ncand; i++) cid[cand[i]] = i, par[i] = i, block[i] = -1;
    /* candidates read by one term (its own site among them) join one component */
    for (j = 0; j < m->n; j++) {
        const plm_gsite *c = &m->sites[j];
        int first = cid[j];
        if (c->kind == PLM_GSITE_DETERMINISTIC || c->logp < 0) continue;
        for (k = 0; k < c->nparents; k++) {
            int o = cid[c->parents[k]];
            if (o < 0) continue;
            if (first < 0) first = o;
            else par[uf_find(par, o)] = uf_find(par, first);
        }
    }
    for (i = 0; i < ncand && !st; i++) {
        int root = uf_find(par, i), n = 0;
        gauss_block gb;
        char w[200];
        if (root != i) continue;   /* each component once, at its root... */
        for (j = 0; j < ncand; j++)
            if (uf_find(par, j) == root) members[n++] = cand[j];
        if (n < 2) continue;
        if (n > PLM_GIBBS_MAX_GAUSS) {
            snprintf(w, sizeof w, "%d sites from '%s': more than %d, single-site", n, m->sites[members[0]].name,
                     PLM_GIBBS_MAX_GAUSS);
            gb.ok = 0;
        } else if ((st = plm_gibbs_gaussian_check(ctx, m, members, n, &gb, w, sizeof w)))
            break;
        if (!gb.ok) {
            used += (size_t)snprintf(why + used, used < nwhy ? nwhy - used : 0, "%s'%s' and %d more: %s",
                                     used ? "; " : "", m->sites[members[0]].name, n - 1, w);
            if (used >= nwhy) used = nwhy - 1;
            continue;
        }
        for (j = 0; j < ncand; j++)
            if (uf_find(par, j) == root) block[j] = nb;
        nb++;
    }
    free(cid), free(par), free(members);
    *nblocks = nb;
    return st;
}

const char *plm_gibbs_how_name(plm_gibbs_how how)
{
    static const char *const names[] = {"none", "enumeration", "normal", "gamma", "inverse-gamma", "beta", "dirichlet",
                                        "mvnormal"};
    return names[how];
}

plm_status plm_gibbs_plan_site(plm_ctx *ctx, const plm_gmodel *m, int site, plm_gibbs_plan *out)
{
    int *ch, n, how, *stats, nstats, *cfam, nchild;
    plm_status st;
    memset(out, 0, sizeof *out);
    if (site < 0 || site >= m->n) return plm_fail(ctx, PLM_EINVAL, "gibbs: no site number %d (the model has %d)", site + 1, m->n);
    if (m->sites[site].kind != PLM_GSITE_LATENT)
        return plm_fail(ctx, PLM_EINVAL, "gibbs: site '%s' is %s, not latent: nothing to update", m->sites[site].name,
                        plm_gsite_kind_name(m->sites[site].kind));
    if (!(ch = malloc(((size_t)m->n + 1) * sizeof *ch))) return plm_fail(ctx, PLM_ENOMEM, "gibbs: out of memory");
    n = plm_gibbs_children(m, site, ch);
    st = plm_gibbs_find(ctx, m, site, ch, n, &how, &stats, &nstats, &cfam, &nchild, out->why, sizeof out->why);
    free(ch);
    out->how = (plm_gibbs_how)how;
    out->nchildren = n;
    return st;
}
