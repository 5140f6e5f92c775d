/* gmodel.c -- static graphical models (see gmodel.h): sites over one graph, transforms with their Jacobians
** built as graph nodes, dependency analysis, and the map from draws of u to the values users see. */
#include "gmodel.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gsl/gsl_sort.h>

#include "transform.h"

static plm_status eval_at(plm_ctx *ctx, const plm_gmodel *m, const int *outs, int nout, const double *u, double *res);

static int op1(plm_graph *g, plm_op op, int a) { return plm_graph_op(g, op, a, -1, -1); }
static int op2(plm_graph *g, plm_op op, int a, int b) { return plm_graph_op(g, op, a, b, -1); }

const char *plm_gsite_kind_name(plm_gsite_kind k)
{
    static const char *const names[] = {"latent", "observed", "deterministic", "factor"};
    return names[k];
}

plm_status plm_gmodel_new(plm_ctx *ctx, plm_graph *g, plm_gmodel **out)
{
    plm_gmodel *m = plm_gc_alloc(sizeof *m);
    plm_status st;
    *out = NULL;
    if (!m) return plm_fail(ctx, PLM_ENOMEM, "gmodel: out of memory");
    if ((st = plm_trace_new(ctx, &m->index))) return st;
    m->g = g;
    m->lp = -1;
    *out = m;
    return PLM_OK;
}

/* A new site named name (checked unique), or NULL with the error in ctx. */
static plm_gsite *add_site(plm_ctx *ctx, plm_gmodel *m, const char *name, plm_gsite_kind kind, int dist, int dim)
{
    static const double zero[1];
    plm_gsite *s;
    char *nm;
    if (m->finished) return plm_fail(ctx, PLM_EINVAL, "gmodel: the model is already finished"), NULL;
    if (plm_trace_add(ctx, m->index, name, PLM_SITE_DETERMINISTIC, NULL, zero, 1, 0, NULL)) return NULL;
    if (m->n == m->cap) {
        int nc = m->cap ? 2 * m->cap : 32;
        plm_gsite *ns = plm_gc_alloc((size_t)nc * sizeof *ns);
        if (!ns) return plm_fail(ctx, PLM_ENOMEM, "gmodel: out of memory"), NULL;
        if (m->n) memcpy(ns, m->sites, (size_t)m->n * sizeof *ns);
        m->sites = ns;
        m->cap = nc;
    }
    s = &m->sites[m->n];
    memset(s, 0, sizeof *s);
    nm = plm_gc_alloc_atomic(strlen(name) + 1);
    s->value = plm_gc_alloc_atomic((size_t)(dim + 1) * sizeof *s->value);
    if (!nm || !s->value) return plm_fail(ctx, PLM_ENOMEM, "gmodel: out of memory"), NULL;
    strcpy(nm, name);
    s->name = nm;
    s->kind = kind;
    s->dist = dist;
    s->dim = dim;
    s->first = -1;
    s->lo = s->hi = -1;
    s->logp = -1;
    m->n++;
    return s;
}

/* Coordinates for a latent site: k new X inputs. */
static int add_coords(plm_ctx *ctx, plm_gmodel *m, int k, int site)
{
    int i, first = m->dim;
    if (m->dim + k > m->xcap) {
        int nc = m->xcap ? 2 * m->xcap : 64;
        int *nx, *no;
        while (nc < m->dim + k) nc *= 2;
        nx = plm_gc_alloc_atomic((size_t)nc * sizeof *nx);
        no = plm_gc_alloc_atomic((size_t)nc * sizeof *no);
        if (!nx || !no) return plm_fail(ctx, PLM_ENOMEM, "gmodel: out of memory"), -1;
        if (m->dim) memcpy(nx, m->x, (size_t)m->dim * sizeof *nx), memcpy(no, m->owner, (size_t)m->dim * sizeof *no);
        m->x = nx, m->owner = no, m->xcap = nc;
    }
    for (i = 0; i < k; i++) {
        if ((m->x[first + i] = plm_graph_input(m->g, PLM_GRP_X, first + i)) < 0)
            return plm_fail(ctx, PLM_ENOMEM, "gmodel: out of memory"), -1;
        m->owner[first + i] = site;
    }
    m->dim += k;
    return first;
}

/* The value on (lo, hi) of coordinate u (lo, hi: nodes, -1 for no bound) and log |dx/du| in *logjac, the
** nodes of transform.c's formulas: lo + (hi - lo) logistic(u) with log (hi - lo) - softplus(u) - softplus(-u)
** (log s + log(1 - s), smooth and free of cancellation), lo + exp(u) or hi - exp(u) with u. */
static int transform(plm_graph *g, int u, int lo, int hi, int *logjac)
{
    if (lo >= 0 && hi >= 0) {
        int w = op2(g, PLM_OP_SUB, hi, lo);
        *logjac = op2(g, PLM_OP_SUB, op2(g, PLM_OP_SUB, op1(g, PLM_OP_LOG, w), op1(g, PLM_OP_SOFTPLUS, u)),
                      op1(g, PLM_OP_SOFTPLUS, op1(g, PLM_OP_NEG, u)));
        return op2(g, PLM_OP_ADD, lo, op2(g, PLM_OP_MUL, w, op1(g, PLM_OP_LOGISTIC, u)));
    }
    if (lo >= 0 || hi >= 0) {
        *logjac = u;
        return lo >= 0 ? op2(g, PLM_OP_ADD, lo, op1(g, PLM_OP_EXP, u)) : op2(g, PLM_OP_SUB, hi, op1(g, PLM_OP_EXP, u));
    }
    *logjac = plm_graph_const(g, 0);
    return u;
}

/* Bound nodes of a scalar continuous kind's support; PLM_ENOTSUP with the reason for what cannot be a site. */
static plm_status bounds(plm_ctx *ctx, plm_graph *g, const char *name, const plm_symdist *d, int *lo, int *hi)
{
    const plm_dist_info *info = plm_dist_info_of(d->kind);
    *lo = *hi = -1;
    switch (info->support) {
    case PLM_SUPPORT_REAL: case PLM_SUPPORT_REALVEC: return PLM_OK;
    case PLM_SUPPORT_POSITIVE: *lo = plm_graph_const(g, 0); return PLM_OK;
    case PLM_SUPPORT_UNIT: *lo = plm_graph_const(g, 0), *hi = plm_graph_const(g, 1); return PLM_OK;
    case PLM_SUPPORT_INTERVAL: *lo = d->p[0], *hi = d->p[1]; return PLM_OK;
    case PLM_SUPPORT_BINARY: case PLM_SUPPORT_COUNT: case PLM_SUPPORT_BOUNDED: case PLM_SUPPORT_CATEGORY:
        return PLM_OK;   /* discrete: the coordinate is the value */
    default:
        return plm_fail(ctx, PLM_ENOTSUP, "latent site '%s' (%s) is not supported by the static compiler yet (scalar "
                        "kinds and mvnormal are)", name, info->name);
    }
}

/* Keep the parameter nodes of d on s, for kernels that read the structure (conjugacy, supports). */
static plm_status keep_params(plm_ctx *ctx, plm_gsite *s, const plm_symdist *d)
{
    if (!(s->params = plm_gc_alloc_atomic(((size_t)d->np + 1) * sizeof *s->params)))
        return plm_fail(ctx, PLM_ENOMEM, "gmodel: out of memory");
    if (d->np) memcpy(s->params, d->p, (size_t)d->np * sizeof *s->params);
    s->nparams = d->np;
    s->K = d->K;
    return PLM_OK;
}

/* A dirichlet site on K coordinates: its value is softmax(u), and its term is the dirichlet log density plus the
** log Jacobian of u -> (x_1, ..., x_{K-1}, mean u), which is sum_k log x_k up to a constant (the additive
** logistic map), plus a standard normal term on mean u, which softmax ignores: without it the target would be
** flat along (1, ..., 1) and improper. With log x_k = u_k - logsumexp(u), exact in logs, the term is
** lgamma(sum a) - sum lgamma(a_k) + sum a_k log x_k - (mean u)^2 / 2. */
static plm_status latent_simplex(plm_ctx *ctx, plm_gmodel *m, const char *name, const plm_symdist *d, int *value)
{
    plm_graph *g = m->g;
    int K = d->K, i, first, mx, sum, lse, asum, term, jac, mean;
    plm_status st;
    plm_gsite *s;
    if (K < 2 || d->np != K) return plm_fail(ctx, PLM_EINVAL, "latent site '%s' (dirichlet) needs 2 or more concentrations", name);
    if (!(s = add_site(ctx, m, name, PLM_GSITE_LATENT, d->kind, K))) return ctx->status;
    if ((first = add_coords(ctx, m, K, m->n - 1)) < 0) return ctx->status;
    if ((st = keep_params(ctx, s, d))) return st;
    s->first = first;
    s->prior = *d;
    s->prior.p = s->params;
    /* logsumexp shifted by the largest coordinate: no overflow however far apart the coordinates are */
    mx = m->x[first];
    for (i = 1; i < K; i++) mx = op2(g, PLM_OP_MAX, mx, m->x[first + i]);
    sum = plm_graph_const(g, 0);
    for (i = 0; i < K; i++) sum = op2(g, PLM_OP_ADD, sum, op1(g, PLM_OP_EXP, op2(g, PLM_OP_SUB, m->x[first + i], mx)));
    lse = op2(g, PLM_OP_ADD, mx, op1(g, PLM_OP_LOG, sum));
    asum = plm_graph_const(g, 0), term = plm_graph_const(g, 0), jac = plm_graph_const(g, 0), mean = plm_graph_const(g, 0);
    for (i = 0; i < K; i++) {
        int a = d->p[i], lx = op2(g, PLM_OP_SUB, m->x[first + i], lse);
        asum = op2(g, PLM_OP_ADD, asum, a);
        term = op2(g, PLM_OP_ADD, term, op2(g, PLM_OP_SUB, op2(g, PLM_OP_MUL, op2(g, PLM_OP_SUB, a, plm_graph_const(g, 1)), lx),
                                             op1(g, PLM_OP_LGAMMA, a)));
        jac = op2(g, PLM_OP_ADD, jac, lx);
        mean = op2(g, PLM_OP_ADD, mean, m->x[first + i]);
        s->value[i] = op1(g, PLM_OP_EXP, lx);
        if (s->value[i] < 0) return plm_fail(ctx, PLM_ENOMEM, "gmodel: out of memory");
    }
    mean = op2(g, PLM_OP_DIV, mean, plm_graph_const(g, K));
    s->density = op2(g, PLM_OP_ADD, term, op1(g, PLM_OP_LGAMMA, asum));
    jac = op2(g, PLM_OP_SUB, jac, op2(g, PLM_OP_MUL, plm_graph_const(g, 0.5), op2(g, PLM_OP_MUL, mean, mean)));
    s->logp = op2(g, PLM_OP_ADD, s->density, jac);
    if (s->density < 0 || s->logp < 0) return plm_fail(ctx, PLM_ENOMEM, "gmodel: out of memory");
    memcpy(value, s->value, (size_t)K * sizeof *value);
    return PLM_OK;
}

plm_status plm_gmodel_latent(plm_ctx *ctx, plm_gmodel *m, const char *name, const plm_symdist *d, int *value)
{
    plm_graph *g = m->g;
    int dim = plm_symdist_dim(d), lo, hi, first, i, lj = -1, term, discrete = plm_dist_info_of(d->kind)->discrete;
    plm_status st;
    plm_gsite *s;
    if (d->kind == PLM_DIST_DIRICHLET) return latent_simplex(ctx, m, name, d, value);
    if ((st = bounds(ctx, g, name, d, &lo, &hi))) return st;
    if (!(s = add_site(ctx, m, name, PLM_GSITE_LATENT, d->kind, dim))) return ctx->status;
    if ((first = add_coords(ctx, m, dim, m->n - 1)) < 0) return ctx->status;
    if ((st = keep_params(ctx, s, d))) return st;
    s->first = first;
    s->lo = lo, s->hi = hi;
    s->prior = *d;
    if (!(s->prior.p = plm_gc_alloc_atomic(((size_t)d->np + 1) * sizeof *s->prior.p)))
        return plm_fail(ctx, PLM_ENOMEM, "gmodel: out of memory");
    if (d->np) memcpy(s->prior.p, d->p, (size_t)d->np * sizeof *d->p);
    s->discrete = discrete;
    if (dim == 1 && !discrete)
        s->value[0] = transform(g, m->x[first], lo, hi, &lj);
    else
        for (i = 0; i < dim; i++) s->value[i] = m->x[first + i];   /* mvnormal, discrete kinds: the value itself */
    if ((st = plm_symdist_logpdf(ctx, g, d, s->value, &term))) return st;
    s->logp = lj >= 0 ? op2(g, PLM_OP_ADD, term, lj) : term;
    s->density = term;
    for (i = 0; i < dim; i++)
        if (s->value[i] < 0) return plm_fail(ctx, PLM_ENOMEM, "gmodel: out of memory");
    if (s->logp < 0) return plm_fail(ctx, PLM_ENOMEM, "gmodel: out of memory");
    memcpy(value, s->value, (size_t)dim * sizeof *value);
    return PLM_OK;
}

plm_status plm_gmodel_observe(plm_ctx *ctx, plm_gmodel *m, const char *name, const plm_symdist *d, const int *x)
{
    int dim = plm_symdist_dim(d);
    plm_status st;
    plm_gsite *s = add_site(ctx, m, name, PLM_GSITE_OBSERVED, d->kind, dim);
    if (!s) return ctx->status;
    memcpy(s->value, x, (size_t)dim * sizeof *x);
    if ((st = keep_params(ctx, s, d))) return st;
    if ((st = plm_symdist_logpdf(ctx, m->g, d, x, &s->logp))) return st;
    return PLM_OK;
}

plm_status plm_gmodel_observe_const(plm_ctx *ctx, plm_gmodel *m, const char *name, int dist, double logp)
{
    plm_gsite *s = add_site(ctx, m, name, PLM_GSITE_OBSERVED, dist, 0);
    if (!s) return ctx->status;
    if ((s->logp = plm_graph_const(m->g, logp)) < 0) return plm_fail(ctx, PLM_ENOMEM, "gmodel: out of memory");
    return PLM_OK;
}

plm_status plm_gmodel_factor(plm_ctx *ctx, plm_gmodel *m, int node)
{
    char name[32];
    int k = 1, i;
    plm_gsite *s;
    for (i = 0; i < m->n; i++) k += m->sites[i].kind == PLM_GSITE_FACTOR;
    snprintf(name, sizeof name, "factor#%d", k);
    if (!(s = add_site(ctx, m, name, PLM_GSITE_FACTOR, -1, 0))) return ctx->status;
    s->logp = node;
    return PLM_OK;
}

plm_status plm_gmodel_deterministic(plm_ctx *ctx, plm_gmodel *m, const char *name, int dim, const int *value)
{
    plm_gsite *s = add_site(ctx, m, name, PLM_GSITE_DETERMINISTIC, -1, dim);
    if (!s) return ctx->status;
    memcpy(s->value, value, (size_t)dim * sizeof *value);
    return PLM_OK;
}

/* Latent sites whose coordinates the nodes roots[0..nroots-1] read, other than `self`, into s->parents:
** a walk down the graph from the roots (node ids are topological, so a stamp per node marks visits). */
static plm_status find_parents(plm_ctx *ctx, plm_gmodel *m, int self, int *stamp, int *stack, char *seen_site,
                               const int *roots, int nroots, int tag)
{
    plm_gsite *s = &m->sites[self];
    int top = 0, i, np = 0;
    for (i = 0; i < nroots; i++)
        if (roots[i] >= 0 && stamp[roots[i]] != tag) stamp[roots[i]] = tag, stack[top++] = roots[i];
    while (top) {
        int id = stack[--top], nargs, grp, idx, k;
        const int *args;
        if (plm_graph_is_input(m->g, id, &grp, &idx)) {
            if (grp == PLM_GRP_X && idx < m->dim) {
                int o = m->owner[idx];
                if (o != self && !seen_site[o]) seen_site[o] = 1, np++;
            }
            continue;
        }
        plm_graph_node(m->g, id, &nargs, &args);
        for (k = 0; k < nargs; k++)
            if (stamp[args[k]] != tag) stamp[args[k]] = tag, stack[top++] = args[k];
    }
    if (!(s->parents = plm_gc_alloc_atomic((size_t)(np + 1) * sizeof *s->parents)))
        return plm_fail(ctx, PLM_ENOMEM, "gmodel: out of memory");
    for (i = 0, s->nparents = 0; i < m->n && s->nparents < np; i++)
        if (seen_site[i]) s->parents[s->nparents++] = i, seen_site[i] = 0;
    return PLM_OK;
}

/* A site's term without the log Jacobian of its transform: what a run of the program on the values scores. */
static int density_term(const plm_gsite *s)
{
    return s->kind == PLM_GSITE_LATENT ? s->density : s->logp;
}

plm_status plm_gmodel_finish(plm_ctx *ctx, plm_gmodel *m)
{
    plm_graph *g = m->g;
    int i, gsize, lp = plm_graph_const(g, 0), nlat = 0;
    int *stamp, *stack, *roots;
    char *seen;
    plm_status st = PLM_OK;
    if (m->finished) return PLM_OK;
    for (i = 0; i < m->n; i++) {
        nlat += m->sites[i].kind == PLM_GSITE_LATENT;
        if (m->sites[i].logp >= 0) lp = op2(g, PLM_OP_ADD, lp, m->sites[i].logp);
    }
    if (lp < 0) return plm_fail(ctx, PLM_ENOMEM, "gmodel: out of memory");
    if (!nlat) return plm_fail(ctx, PLM_EINVAL, "the model has no latent site (m:sample): nothing to infer");
    m->lp = lp;
    gsize = plm_graph_size(g);
    stamp = malloc((size_t)gsize * sizeof *stamp);
    stack = malloc((size_t)gsize * sizeof *stack);
    seen = calloc((size_t)m->n + 1, 1);
    roots = malloc(((size_t)m->n + (size_t)m->dim + 2) * sizeof *roots);
    if (!stamp || !stack || !seen || !roots) {
        st = plm_fail(ctx, PLM_ENOMEM, "gmodel: out of memory");
        goto done;
    }
    for (i = 0; i < gsize; i++) stamp[i] = -1;
    for (i = 0; i < m->n && !st; i++) {
        plm_gsite *s = &m->sites[i];
        /* a deterministic value is read through its nodes; the others through their term (a latent site's
        ** term holds its value, so its bounds' parents are found too) */
        if (s->kind == PLM_GSITE_DETERMINISTIC)
            st = find_parents(ctx, m, i, stamp, stack, seen, s->value, s->dim, i);
        else
            st = find_parents(ctx, m, i, stamp, stack, seen, &s->logp, 1, i);
    }
    if (!st) m->finished = 1;
    /* plume's static check scores several runs of the program with plm_gmodel_logdensity: one compile of the
    ** whole graph here, not one per call (on a 1,000-point mixture that was most of the compile time) */
    if (!st) {
        int n = 0;
        for (i = 0; i < m->n; i++)
            if (m->sites[i].logp >= 0) roots[n++] = density_term(&m->sites[i]);
        if (n && (st = plm_prog_compile(ctx, g, n, roots, 1u << PLM_GRP_X, &m->dens))) m->finished = 0;
    }
done:
    free(stamp), free(stack), free(seen), free(roots);
    return st;
}

int plm_gmodel_continuous(const plm_gmodel *m, int *coords)
{
    int i, n = 0;
    for (i = 0; i < m->dim; i++)
        if (!m->sites[m->owner[i]].discrete) coords[n++] = i;
    return n;
}

int plm_gmodel_first_discrete(const plm_gmodel *m)
{
    int i;
    for (i = 0; i < m->n; i++)
        if (m->sites[i].kind == PLM_GSITE_LATENT && m->sites[i].discrete) return i;
    return -1;
}

plm_status plm_gmodel_init_discrete(plm_ctx *ctx, const plm_gmodel *m, double *u)
{
    int i, n = 0, v, *outs = malloc(((size_t)m->n + 1) * sizeof *outs), *site = malloc(((size_t)m->n + 1) * sizeof *site);
    char *done = calloc((size_t)m->n + 1, 1);
    double *res = malloc(((size_t)m->n + 1) * sizeof *res);
    plm_status st = PLM_OK;
    if (!outs || !site || !done || !res) {
        st = plm_fail(ctx, PLM_ENOMEM, "gmodel: out of memory");
        goto out;
    }
    for (i = 0; i < m->n; i++)
        if (m->sites[i].kind == PLM_GSITE_LATENT && m->sites[i].discrete) outs[n] = m->sites[i].logp, site[n++] = i;
    /* all unset sites move to v together: one evaluation per candidate value, not one per site and value */
    for (v = 0; v < 64 && n; v++) {
        int left = 0;
        for (i = 0; i < n; i++)
            if (!done[i]) u[m->sites[site[i]].first] = v, left++;
        if (!left || (st = eval_at(ctx, m, outs, n, u, res))) break;
        for (i = 0; i < n; i++)
            if (!done[i] && isfinite(res[i])) done[i] = 1;
    }
    for (i = 0; i < n && !st; i++)
        if (!done[i]) u[m->sites[site[i]].first] = 0;
out:
    free(outs), free(site), free(done), free(res);
    return st;
}

plm_status plm_gmodel_prior_draws(plm_ctx *ctx, const plm_gmodel *m, double *U, size_t N, plm_rng *rng, int nthreads,
                                  const unsigned char *keep, double ulim, int median_of, int improper_uniform)
{
    plm_graph *g = m->g;
    plm_prog_in in[PLM_NGROUPS];
    double *vals = NULL, **outp = NULL, *pick = NULL;
    int *outs = NULL, j, k, t, maxout = 3, reps = median_of > 1 ? median_of : 1;
    plm_status st = PLM_OK;
    size_t i;
    for (j = 0; j < m->n; j++)
        if (m->sites[j].kind == PLM_GSITE_LATENT && m->sites[j].dim + 2 > maxout) maxout = m->sites[j].dim + 2;
    vals = malloc((size_t)maxout * N * (size_t)reps * sizeof *vals);
    pick = malloc((size_t)reps * sizeof *pick);
    outp = malloc((size_t)maxout * sizeof *outp);
    outs = malloc((size_t)maxout * sizeof *outs);
    if (!vals || !outp || !outs || !pick) {
        st = plm_fail(ctx, PLM_ENOMEM, "gmodel: out of memory for %zu prior draws", N);
        goto done;
    }
    memset(in, 0, sizeof in);
    in[PLM_GRP_X].p = U;
    in[PLM_GRP_X].ld = N;
    /* coordinates not drawn yet are 0: no program reads them (a site reads only the sites before it) */
    for (k = 0; k < m->dim; k++)
        for (i = 0; i < N; i++)
            if (!keep || !keep[i * (size_t)m->n + (size_t)m->owner[k]]) U[(size_t)k * N + i] = 0;
    for (j = 0; j < m->n && !st; j++) {
        const plm_gsite *s = &m->sites[j];
        const plm_dist_info *info;
        int nout, dim = s->dim;
        plm_prog *p;
        if (s->kind != PLM_GSITE_LATENT) continue;
        info = plm_dist_info_of((plm_dist_kind)s->dist);
        if (info->improper) {
            if (!improper_uniform) {
                st = plm_fail(ctx, PLM_ENOTSUP, "latent site '%s' has an improper prior (%s), which cannot be drawn from",
                              s->name, info->name);
                break;
            }
            for (k = 0; k < dim; k++)
                for (i = 0; i < N; i++)
                    if (!keep || !keep[i * (size_t)m->n + (size_t)j])
                        U[(size_t)(s->first + k) * N + i] = -2 + 4 * plm_rng_uniform(&rng[i]);
            continue;
        }
        if (s->dist == PLM_DIST_DIRICHLET) {
            /* gamma(a_k) draws g_k: u_k = log g_k - mean log g is on the simplex's coordinates with mean 0 (the
            ** normalisation cancels); log g floored at 1e-300, where a small a_k underflows */
            int mean = plm_graph_const(g, 0);
            for (k = 0; k < dim; k++) {
                int ab[2];
                ab[0] = s->params[k], ab[1] = plm_graph_const(g, 1);
                outs[k] = op1(g, PLM_OP_LOG, op2(g, PLM_OP_MAX, plm_graph_draw(g, PLM_OP_SAMPLE, PLM_DIST_GAMMA, 2, ab),
                                                 plm_graph_const(g, 1e-300)));
                mean = op2(g, PLM_OP_ADD, mean, outs[k]);
            }
            mean = op2(g, PLM_OP_DIV, mean, plm_graph_const(g, dim));
            for (k = 0; k < dim; k++) outs[k] = op2(g, PLM_OP_SUB, outs[k], mean);
        } else if ((st = plm_symdist_sample(ctx, g, &s->prior, outs)))
            break;
        nout = dim;
        if (dim == 1) outs[nout++] = s->lo >= 0 ? s->lo : plm_graph_const(g, -INFINITY);
        if (dim == 1) outs[nout++] = s->hi >= 0 ? s->hi : plm_graph_const(g, INFINITY);
        for (k = 0; k < nout && !st; k++)
            if (outs[k] < 0) st = plm_fail(ctx, PLM_ENOMEM, "gmodel: out of memory");
        if (st || (st = plm_prog_compile(ctx, g, nout, outs, 1u << PLM_GRP_X, &p))) break;
        /* draw t of coordinate k of point i at vals[(t * nout + k) * N + i] */
        for (t = 0; t < reps && !st; t++) {
            for (k = 0; k < nout; k++) outp[k] = vals + ((size_t)t * (size_t)nout + (size_t)k) * N;
            st = plm_prog_eval(ctx, p, N, in, outp, rng, nthreads);
        }
        if (st) break;
        for (k = 0; k < dim; k++) {
            double *uk = U + (size_t)(s->first + k) * N;
            for (i = 0; i < N; i++) {
                double v, lo, hi;
                if (keep && keep[i * (size_t)m->n + (size_t)j]) continue;
                /* a scalar site's median of reps draws (transforms are monotone: the median maps to the median);
                ** a vector site takes its first draw, which is on its support */
                for (t = 0; t < reps; t++) pick[t] = vals[((size_t)t * (size_t)nout + (size_t)k) * N + i];
                if (dim == 1 && reps > 1) gsl_sort(pick, 1, (size_t)reps);
                v = dim == 1 ? pick[reps / 2] : pick[0];
                if (dim > 1 || s->discrete) {
                    uk[i] = v;
                    continue;
                }
                lo = vals[(size_t)1 * N + i], hi = vals[(size_t)2 * N + i];
                v = plm_transform_to_free(lo, hi, v);
                if (ulim > 0 && (s->lo >= 0 || s->hi >= 0) && !isnan(v)) v = v < -ulim ? -ulim : v > ulim ? ulim : v;
                uk[i] = v;
            }
        }
    }
done:
    free(vals), free(outp), free(outs), free(pick);
    return st;
}

plm_status plm_gmodel_discrete_modes(plm_ctx *ctx, const plm_gmodel *m, double *u, const unsigned char *keep)
{
    int i, j, k, n = 0, v, *outs = malloc(((size_t)m->n + 1) * sizeof *outs), *site = malloc(((size_t)m->n + 1) * sizeof *site);
    double *res = malloc(((size_t)m->n + 1) * sizeof *res), *best = malloc(((size_t)m->n + 1) * sizeof *best);
    double *arg = malloc(((size_t)m->n + 1) * sizeof *arg);
    plm_prog *p = NULL;
    plm_prog_in in[PLM_NGROUPS];
    plm_status st = PLM_OK;
    if (!outs || !site || !res || !best || !arg) {
        st = plm_fail(ctx, PLM_ENOMEM, "gmodel: out of memory");
        goto out;
    }
    for (i = 0; i < m->n; i++) {
        const plm_gsite *s = &m->sites[i];
        int sum;
        if (s->kind != PLM_GSITE_LATENT || !s->discrete || (keep && keep[i])) continue;
        sum = s->logp;   /* its own term and its children's */
        for (j = 0; j < m->n; j++)
            if (j != i && m->sites[j].kind != PLM_GSITE_DETERMINISTIC && m->sites[j].logp >= 0)
                for (k = 0; k < m->sites[j].nparents; k++)
                    if (m->sites[j].parents[k] == i) {
                        sum = op2(m->g, PLM_OP_ADD, sum, m->sites[j].logp);
                        break;
                    }
        if (sum < 0) {
            st = plm_fail(ctx, PLM_ENOMEM, "gmodel: out of memory");
            goto out;
        }
        outs[n] = sum, site[n] = i, best[n] = -INFINITY, arg[n] = u[s->first];
        n++;
    }
    if (!n) goto out;
    if ((st = plm_prog_compile(ctx, m->g, n, outs, 1u << PLM_GRP_X, &p))) goto out;
    memset(in, 0, sizeof in);
    in[PLM_GRP_X].p = u;
    in[PLM_GRP_X].ld = 1;
    for (v = 0; v < 64; v++) {
        for (i = 0; i < n; i++) u[m->sites[site[i]].first] = v;
        {
            double **o = malloc((size_t)n * sizeof *o);
            if (!o) {
                st = plm_fail(ctx, PLM_ENOMEM, "gmodel: out of memory");
                goto out;
            }
            for (i = 0; i < n; i++) o[i] = res + i;
            st = plm_prog_eval(ctx, p, 1, in, o, NULL, 1);
            free(o);
        }
        if (st) goto out;
        for (i = 0; i < n; i++)
            if (res[i] > best[i] && !isnan(res[i])) best[i] = res[i], arg[i] = v;
    }
    for (i = 0; i < n; i++) u[m->sites[site[i]].first] = arg[i];
out:
    free(outs), free(site), free(res), free(best), free(arg);
    return st;
}

int plm_gmodel_find(const plm_gmodel *m, const char *name)
{
    const plm_site *s = plm_trace_find(m->index, name);
    return s ? (int)(s - m->index->sites) : -1;
}

static int has_parent(const plm_gsite *s, int j)
{
    int k;
    for (k = 0; k < s->nparents; k++)
        if (s->parents[k] == j) return 1;
    return 0;
}

int plm_gmodel_blanket(const plm_gmodel *m, int i, int *out)
{
    int j, k, n = 0;
    char *in = calloc((size_t)m->n + 1, 1);
    if (!in) return 0;
    for (k = 0; k < m->sites[i].nparents; k++) in[m->sites[i].parents[k]] = 1;
    for (j = 0; j < m->n; j++) {
        const plm_gsite *c = &m->sites[j];
        if (j == i || c->kind == PLM_GSITE_DETERMINISTIC || !has_parent(c, i)) continue;
        in[j] = 1;   /* a child, and its other parents */
        for (k = 0; k < c->nparents; k++) in[c->parents[k]] = 1;
    }
    in[i] = 0;
    for (j = 0; j < m->n; j++)
        if (in[j]) out[n++] = j;
    free(in);
    return n;
}

plm_status plm_gmodel_target(plm_ctx *ctx, plm_gmodel *m, plm_target **out)
{
    plm_status st;
    *out = NULL;
    int i, n = 0, *terms;
    if (!m->finished && (st = plm_gmodel_finish(ctx, m))) return st;
    /* the sites' terms one by one, not m->lp: repeated observations then evaluate as vectors */
    if (!(terms = malloc(((size_t)m->n + 1) * sizeof *terms))) return plm_fail(ctx, PLM_ENOMEM, "gmodel: out of memory");
    for (i = 0; i < m->n; i++)
        if (m->sites[i].logp >= 0) terms[n++] = m->sites[i].logp;
    st = plm_target_from_terms(ctx, m->g, n, terms, m->dim, m->x, out);
    free(terms);
    return st;
}

plm_status plm_gmodel_unconstrain(plm_ctx *ctx, const plm_gmodel *m, int site, const double *x, double *u)
{
    const plm_gsite *s = &m->sites[site];
    double lo = -INFINITY, hi = INFINITY;
    int i;
    if (s->discrete) {
        if (!(x[0] >= 0 && x[0] == floor(x[0]) && x[0] <= PLM_DIST_MAX_COUNT))
            return plm_fail(ctx, PLM_EINVAL, "init value of '%s' is %g, but the site is discrete (%s): a whole number >= 0 "
                            "is needed", s->name, x[0], plm_dist_info_of((plm_dist_kind)s->dist)->name);
        u[0] = x[0] - s->base;
        return PLM_OK;
    }
    if (s->dist == PLM_DIST_DIRICHLET) {
        double tot = 0, mean = 0;
        for (i = 0; i < s->dim; i++) {
            if (!(x[i] > 0 && x[i] <= 1)) break;
            tot += x[i];
        }
        if (i < s->dim || fabs(tot - 1) > 1e-9)
            return plm_fail(ctx, PLM_EINVAL, "init value of '%s' must be a probability vector (entries in (0, 1] "
                            "summing to 1)", s->name);
        for (i = 0; i < s->dim; i++) mean += log(x[i]) / s->dim;
        for (i = 0; i < s->dim; i++) u[i] = log(x[i]) - mean;
        return PLM_OK;
    }
    if (s->dim > 1) {
        for (i = 0; i < s->dim; i++)
            if (!isfinite(x[i])) return plm_fail(ctx, PLM_EINVAL, "init value of '%s' must be finite", s->name);
        memcpy(u, x, (size_t)s->dim * sizeof *u);
        return PLM_OK;
    }
    if ((s->lo >= 0 && !plm_graph_is_const(m->g, s->lo, &lo)) || (s->hi >= 0 && !plm_graph_is_const(m->g, s->hi, &hi)))
        return plm_fail(ctx, PLM_EINVAL, "init value of '%s': its support depends on other sites, so it cannot be "
                        "given (leave it out: it starts at random)", s->name);
    if (!(x[0] > lo && x[0] < hi) || !isfinite(x[0]))
        /* worded as the trace MH's init check (lang/l_infer.c), with the open interval the transform needs */
        return plm_fail(ctx, PLM_EINVAL, "init value of '%s' is %g, outside the support of %s (the open interval (%g, %g))",
                        s->name, x[0], s->dist >= 0 ? plm_dist_info_of((plm_dist_kind)s->dist)->name : "its distribution",
                        lo, hi);
    u[0] = plm_transform_to_free(lo, hi, x[0]);
    return PLM_OK;
}

/* Evaluate nout nodes of the graph at the single point u into res. */
static plm_status eval_at(plm_ctx *ctx, const plm_gmodel *m, const int *outs, int nout, const double *u, double *res)
{
    plm_prog *p;
    plm_prog_in in[PLM_NGROUPS];
    double **o = malloc((size_t)nout * sizeof *o);
    plm_status st;
    int i;
    if (!o) return plm_fail(ctx, PLM_ENOMEM, "gmodel: out of memory");
    memset(in, 0, sizeof in);
    in[PLM_GRP_X].p = u;
    in[PLM_GRP_X].ld = 1;
    for (i = 0; i < nout; i++) o[i] = res + i;
    st = plm_prog_compile(ctx, m->g, nout, outs, 1u << PLM_GRP_X, &p);
    if (!st) st = plm_prog_eval(ctx, p, 1, in, o, NULL, 1);
    free(o);
    return st;
}

plm_status plm_gmodel_blame(plm_ctx *ctx, const plm_gmodel *m, const double *u)
{
    int i, n = 0, *outs = malloc(((size_t)m->n + 1) * sizeof *outs), *site = malloc(((size_t)m->n + 1) * sizeof *site);
    double *res = malloc(((size_t)m->n + 1) * sizeof *res);
    plm_status st;
    if (!outs || !site || !res) {
        free(outs), free(site), free(res);
        return plm_fail(ctx, PLM_ENOMEM, "gmodel: out of memory");
    }
    for (i = 0; i < m->n; i++)
        if (m->sites[i].logp >= 0) outs[n] = m->sites[i].logp, site[n++] = i;
    st = n ? eval_at(ctx, m, outs, n, u, res) : PLM_OK;
    for (i = 0; !st && i < n; i++) {
        const plm_gsite *s = &m->sites[site[i]];
        const char *dist = s->dist >= 0 ? plm_dist_info_of((plm_dist_kind)s->dist)->name : NULL;
        double v = NAN;
        if (isfinite(res[i])) continue;
        if (s->kind == PLM_GSITE_LATENT && s->dim == 1) eval_at(ctx, m, s->value, 1, u, &v);
        if (s->kind == PLM_GSITE_LATENT && s->dim == 1)
            st = plm_fail(ctx, PLM_EDEAD, "site '%s' (latent, %s) has log density %g at %s = %g", s->name, dist, res[i],
                          s->name, v);
        else
            st = plm_fail(ctx, PLM_EDEAD, "site '%s' (%s%s%s) has log density %g", s->name, plm_gsite_kind_name(s->kind),
                          dist ? ", " : "", dist ? dist : "", res[i]);
    }
    free(outs), free(site), free(res);
    return st;
}

plm_status plm_gmodel_logdensity(plm_ctx *ctx, const plm_gmodel *m, const double *u, double *lp)
{
    int i, n = 0, *outs = malloc(((size_t)m->n + 1) * sizeof *outs);
    double *res = malloc(((size_t)m->n + 1) * sizeof *res);
    plm_status st;
    *lp = 0;
    if (!outs || !res) {
        free(outs), free(res);
        return plm_fail(ctx, PLM_ENOMEM, "gmodel: out of memory");
    }
    for (i = 0; i < m->n; i++)
        if (m->sites[i].logp >= 0) outs[n++] = density_term(&m->sites[i]);
    if (m->dens) {
        plm_prog_in in[PLM_NGROUPS];
        double **o = malloc(((size_t)n + 1) * sizeof *o);
        memset(in, 0, sizeof in);
        in[PLM_GRP_X].p = u, in[PLM_GRP_X].ld = 1;
        for (i = 0; i < n && o; i++) o[i] = res + i;
        st = o ? plm_prog_eval(ctx, m->dens, 1, in, o, NULL, 1) : plm_fail(ctx, PLM_ENOMEM, "gmodel: out of memory");
        free(o);
    } else
        st = n ? eval_at(ctx, m, outs, n, u, res) : PLM_OK;
    for (i = 0; !st && i < n; i++) *lp += res[i];
    free(outs), free(res);
    return st;
}

plm_status plm_gmodel_draws(plm_ctx *ctx, const plm_gmodel *m, const plm_draws *U, plm_draws *D, int nthreads)
{
    int i, k, c, nout = 0, col;
    int nchains = plm_draws_nchains(U);
    int *outs;
    double *X = NULL, *vals = NULL, **o = NULL, *row = NULL;
    plm_prog *p;
    plm_prog_in in[PLM_NGROUPS];
    plm_status st = PLM_OK;
    char name[512];
    for (i = 0; i < m->n; i++)
        if (m->sites[i].kind == PLM_GSITE_LATENT || m->sites[i].kind == PLM_GSITE_DETERMINISTIC) nout += m->sites[i].dim;
    if (!(outs = malloc(((size_t)nout + 1) * sizeof *outs))) return plm_fail(ctx, PLM_ENOMEM, "gmodel: out of memory");
    for (i = 0, col = 0; i < m->n; i++) {
        const plm_gsite *s = &m->sites[i];
        if (s->kind != PLM_GSITE_LATENT && s->kind != PLM_GSITE_DETERMINISTIC) continue;
        for (k = 0; k < s->dim; k++, col++) {
            if (s->dim == 1) snprintf(name, sizeof name, "%s", s->name);
            else snprintf(name, sizeof name, "%s[%d]", s->name, k + 1);
            if (plm_draws_col(D, name, 1) != col) {
                st = plm_fail(ctx, PLM_EINVAL, "column '%s' is made twice (a site named like an entry of a vector site)", name);
                goto done;
            }
            outs[col] = s->base ? op2(m->g, PLM_OP_ADD, s->value[k], plm_graph_const(m->g, s->base)) : s->value[k];
        }
    }
    if ((st = plm_prog_compile(ctx, m->g, nout, outs, 1u << PLM_GRP_X, &p))) goto done;
    memset(in, 0, sizeof in);
    if (!(o = malloc(((size_t)nout + 1) * sizeof *o)) || !(row = malloc(((size_t)nout + 1) * sizeof *row))) {
        st = plm_fail(ctx, PLM_ENOMEM, "gmodel: out of memory");
        goto done;
    }
    for (c = 0; c < nchains; c++) {
        size_t n = plm_draws_len(U, c), j;
        if (!n) continue;
        free(X), free(vals);
        X = malloc((size_t)m->dim * n * sizeof *X);
        vals = malloc((size_t)nout * n * sizeof *vals);
        if (!X || !vals) {
            st = plm_fail(ctx, PLM_ENOMEM, "gmodel: out of memory");
            goto done;
        }
        /* the draws table is column-major per chain: exactly the component-major layout of a varying group */
        for (k = 0; k < m->dim; k++) memcpy(X + (size_t)k * n, plm_draws_chain(U, k, c), n * sizeof *X);
        in[PLM_GRP_X].p = X;
        in[PLM_GRP_X].ld = n;
        for (k = 0; k < nout; k++) o[k] = vals + (size_t)k * n;
        if ((st = plm_prog_eval(ctx, p, n, in, o, NULL, nthreads))) goto done;
        for (j = 0; j < n; j++) {
            for (k = 0; k < nout; k++) row[k] = o[k][j];
            if ((st = plm_draws_push(ctx, D, c, row, nout, 0))) goto done;
        }
    }
done:
    free(outs), free(X), free(vals), free(o), free(row);
    return st;
}
