/* gibbs_gauss.c -- Gaussian blocks (see gibbs.h): sites whose joint conditional is Gaussian (the terms that
** read them normal, with value and mean jointly affine in them: plm_gibbs_gaussian_check in conjugacy.c) drawn
** jointly, from the precision and shift read off a few evaluations of one compiled program. */
#include "gibbs_impl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct gauss_cfg {
    const plm_gmodel *m;
    gauss_block b;
    int *coord;         /* block index -> coordinate of u */
    int *colour;        /* block index -> colour: point colour + 1 moves the coordinate by 1 */
    int npts;           /* colours + 1 (point 0: every coordinate of the block at 0) */
    int *pos;           /* block index -> row of the precision (a fill-reducing order: fewest neighbours first) */
    plm_prog *stats;    /* per term: mean, sd, value */
} gauss_cfg;

typedef struct gauss_chain {
    const gauss_cfg *cfg;
    plm_prog_ws ws;
    double *z;          /* coordinate j of point i at z[j * npts + i] */
    double *S, **oS;    /* output o of point i at S[o * npts + i] */
    double *L, *h, *x;  /* d x d precision (its Cholesky factor), shift, work */
    int *cp, *ri;       /* the factor's nonzeros below the diagonal: column j's rows at ri[cp[j] .. cp[j + 1]) */
} gauss_chain;

static void gauss_free(void *p)
{
    gauss_chain *c = p;
    if (!c) return;
    if (c->ws.p) plm_prog_ws_free(&c->ws);
    free(c->z), free(c->S), free(c->oS), free(c->L), free(c->h), free(c->x), free(c->cp), free(c->ri);
    free(c);
}

static void *gauss_new(const plm_kernel *k, const plm_target *t)
{
    const gauss_cfg *cfg = k->cfg;
    gauss_chain *c = calloc(1, sizeof *c);
    size_t d = (size_t)cfg->b.d, np = (size_t)cfg->npts, no = 3 * (size_t)cfg->b.nterms, i, j;
    (void)t;
    if (!c) return NULL;
    c->cfg = cfg;
    c->z = calloc(d * np, sizeof *c->z);
    c->S = malloc((no * np + 1) * sizeof *c->S);
    c->oS = malloc((no + 1) * sizeof *c->oS);
    c->L = malloc((d * d + 1) * sizeof *c->L);
    c->cp = malloc((d + 1) * sizeof *c->cp);
    c->ri = malloc((d * d + 1) * sizeof *c->ri);
    c->h = malloc((d + 1) * sizeof *c->h);
    c->x = malloc((3 * d + 1) * sizeof *c->x);
    if (!c->z || !c->S || !c->oS || !c->L || !c->h || !c->x || !c->cp || !c->ri ||
        plm_prog_ws_init_block(NULL, &c->ws, cfg->stats, np < PLM_EXPR_BLOCK ? (int)np : PLM_EXPR_BLOCK)) {
        gauss_free(c);
        return NULL;
    }
    for (i = 0; i < no; i++) c->oS[i] = c->S + i * np;
    for (j = 0; j < d; j++) c->z[j * np + (size_t)cfg->colour[j] + 1] = 1;
    return c;
}

/* A in place by its Cholesky factor L (lower triangle, row-major, d x d; the upper triangle is not read),
** column by column, skipping the zeros of each column: GSL's blocked gsl_linalg_cholesky_decomp1 is dense,
** d^3 / 3 per draw, and a hierarchical block (rats: 62 sites, two hubs and 60 leaves) cost three single-site
** sweeps that way. With the rows in a fill-reducing order (leaves first), the factor is about as sparse as the
** precision and this costs O(d^2). The rows of column j's nonzeros below the diagonal go to
** ri[cp[j] .. cp[j + 1]), for the solves. Returns 0 when A is not positive definite. */
static int cholesky_sparse(double *A, int d, int *cp, int *ri)
{
    int j, i, k, a, b, n;
    for (cp[0] = 0, j = 0; j < d; j++) {
        double djj = A[j * d + j];
        int *nz = ri + cp[j];
        if (!(djj > 0) || !isfinite(djj)) return 0;
        djj = sqrt(djj);
        A[j * d + j] = djj;
        for (n = 0, i = j + 1; i < d; i++)
            if (A[i * d + j] != 0) A[i * d + j] /= djj, nz[n++] = i;
        cp[j + 1] = cp[j] + n;
        for (a = 0; a < n; a++) {
            i = nz[a];
            for (b = 0; b <= a; b++) {
                k = nz[b];
                A[i * d + k] -= A[i * d + j] * A[k * d + j];
            }
        }
    }
    return 1;
}

/* With L from cholesky_sparse (pattern cp, ri), in place on v: solve L v = v (trans 0) or L' v = v (trans 1). */
static void tri_solve(const double *L, int d, const int *cp, const int *ri, double *v, int trans)
{
    int j, p;
    if (!trans)
        for (j = 0; j < d; j++) {
            v[j] /= L[j * d + j];
            for (p = cp[j]; p < cp[j + 1]; p++) v[ri[p]] -= L[ri[p] * d + j] * v[j];
        }
    else
        for (j = d - 1; j >= 0; j--) {
            for (p = cp[j]; p < cp[j + 1]; p++) v[j] -= L[ri[p] * d + j] * v[ri[p]];
            v[j] /= L[j * d + j];
        }
}

/* |L'v|^2 for L from cholesky_sparse. */
static double tri_norm2(const double *L, int d, const int *cp, const int *ri, const double *v)
{
    double r = 0;
    int j, p;
    for (j = 0; j < d; j++) {
        double t = L[j * d + j] * v[j];
        for (p = cp[j]; p < cp[j + 1]; p++) t += L[ri[p] * d + j] * v[ri[p]];
        r += t * t;
    }
    return r;
}

/* The joint conditional at u: the Cholesky factor (lower) of the precision into c->L, the mean into mean, both
** in the rows of cfg->pos. Each term's residual (value - mean) is affine in the block, r = r0 + a'x: r0 at
** point 0 and a_j from the point that moves coordinate j (no other coordinate the term reads moves with it);
** it adds a a' / sd^2 to the precision and -a r0 / sd^2 to the shift. */
static plm_status gauss_conditional(const gauss_cfg *cfg, gauss_chain *c, plm_ctx *ctx, const double *u, double *mean)
{
    const gauss_block *b = &cfg->b;
    int d = b->d, np = cfg->npts, t, p, q, ok;
    double *L = c->L, *a = c->x;
    plm_gibbs_eval_all(&c->ws, u, c->z, (size_t)np, np, c->oS);
    memset(L, 0, (size_t)d * (size_t)d * sizeof *L);
    memset(mean, 0, (size_t)d * sizeof *mean);
    for (t = 0; t < b->nterms; t++) {
        const double *mu = c->oS[3 * t], *sd = c->oS[3 * t + 1], *y = c->oS[3 * t + 2];
        double r0 = y[0] - mu[0], w;
        int lo = b->tptr[t], hi = b->tptr[t + 1];
        if (!(sd[0] > 0 && isfinite(sd[0]) && isfinite(r0)))
            return plm_fail(ctx, PLM_EDOM, "gaussian_block: term %s has sd %g and residual %g (needs sd > 0, finite)",
                            cfg->m->sites[b->terms[t]].name, sd[0], r0);
        w = 1 / (sd[0] * sd[0]);
        for (p = lo; p < hi; p++) {
            int pt = cfg->colour[b->tidx[p]] + 1;
            a[p - lo] = (y[pt] - mu[pt]) - r0;
        }
        for (p = lo; p < hi; p++) {
            int j = cfg->pos[b->tidx[p]];
            mean[j] -= w * a[p - lo] * r0;
            for (q = lo; q < hi; q++) {
                int k = cfg->pos[b->tidx[q]];
                if (k <= j) L[j * d + k] += w * a[p - lo] * a[q - lo];   /* the lower triangle */
            }
        }
    }
    ok = cholesky_sparse(L, d, c->cp, c->ri);
    if (ok) {   /* mean = (L L')^-1 h */
        tri_solve(L, d, c->cp, c->ri, mean, 0);
        tri_solve(L, d, c->cp, c->ri, mean, 1);
    }
    for (p = 0; p < d && ok; p++) ok = isfinite(mean[p]);
    if (!ok)
        return plm_fail(ctx, PLM_EDOM, "gaussian_block: the joint precision of '%s' and the rest of the block is not "
                        "positive definite (or not finite)", cfg->m->sites[b->sites[0]].name);
    return PLM_OK;
}

static plm_status gauss_step(const plm_kernel *k, void *state, plm_ctx *ctx, const plm_target *t, void *tws, plm_rng *r,
                             double *u, double *lp, double *stat, double *extra)
{
    const gauss_cfg *cfg = k->cfg;
    gauss_chain *c = state;
    int d = cfg->b.d, j;
    double *mean = c->h, *z = c->x + d, qold, qnew = 0;
    plm_status st;
    (void)extra;
    if ((st = gauss_conditional(cfg, c, ctx, u, mean))) return st;
    /* the old point's quadratic form, |L'(x - mean)|^2, then the draw mean + L'^-1 e with e standard normal */
    for (j = 0; j < d; j++) z[cfg->pos[j]] = u[cfg->coord[j]] - mean[cfg->pos[j]];
    qold = tri_norm2(c->L, d, c->cp, c->ri, z);
    for (j = 0; j < d; j++) z[j] = plm_rng_normal(r), qnew += z[j] * z[j];
    tri_solve(c->L, d, c->cp, c->ri, z, 1);
    for (j = 0; j < d; j++) u[cfg->coord[j]] = mean[cfg->pos[j]] + z[cfg->pos[j]];
    /* the block's terms are exactly this quadratic in it: the log density changes by its difference */
    if (isfinite(*lp)) *lp += -0.5 * (qnew - qold);
    else *lp = plm_target_logp(t, tws, u);
    if (isnan(*lp)) return plm_fail(ctx, PLM_EDOM, "gaussian_block: the log density is NaN after the update");
    *stat = 1;
    return PLM_OK;
}

static const plm_kernel_ops gauss_ops = {"gaussian_block", 0, NULL, gauss_new, gauss_free, gauss_step, NULL};

plm_status plm_kernel_gaussian_block(plm_ctx *ctx, const plm_gmodel *m, const int *sites, int nsites, plm_kernel **out)
{
    gauss_cfg *cfg;
    plm_kernel *k;
    char why[200], *clash;
    int i, j, p, q, t, d, maxc = 0;
    plm_status st;
    *out = NULL;
    if (nsites < 1) return plm_fail(ctx, PLM_EINVAL, "gaussian_block: no sites to update");
    for (i = 0; i < nsites; i++)
        if ((st = plm_gibbs_check_site(ctx, m, sites[i], "gaussian_block"))) return st;
    if (nsites > PLM_GIBBS_MAX_GAUSS)
        return plm_fail(ctx, PLM_EINVAL, "gaussian_block: %d sites, more than %d: split the block", nsites,
                        PLM_GIBBS_MAX_GAUSS);
    cfg = plm_gc_alloc(sizeof *cfg);
    k = plm_gc_alloc(sizeof *k);
    if (!cfg || !k) return plm_fail(ctx, PLM_ENOMEM, "gaussian_block: out of memory");
    if ((st = plm_gibbs_gaussian_check(ctx, m, sites, nsites, &cfg->b, why, sizeof why))) return st;
    if (!cfg->b.ok) return plm_fail(ctx, PLM_EINVAL, "gaussian_block: not a gaussian block: %s", why);
    d = cfg->b.d;
    cfg->m = m;
    cfg->coord = plm_gc_alloc_atomic((size_t)d * sizeof(int));
    cfg->colour = plm_gc_alloc_atomic((size_t)d * sizeof(int));
    if (!cfg->coord || !cfg->colour || !(clash = calloc((size_t)d * (size_t)d, 1)))
        return plm_fail(ctx, PLM_ENOMEM, "gaussian_block: out of memory");
    for (j = 0; j < d; j++) cfg->coord[j] = m->sites[sites[j]].first;
    /* colour the sites greedily so that no term reads two of one colour: one evaluation per colour */
    for (t = 0; t < cfg->b.nterms; t++)
        for (p = cfg->b.tptr[t]; p < cfg->b.tptr[t + 1]; p++)
            for (q = cfg->b.tptr[t]; q < cfg->b.tptr[t + 1]; q++) clash[cfg->b.tidx[p] * d + cfg->b.tidx[q]] = 1;
    for (j = 0; j < d; j++) {
        int col;
        for (col = 0;; col++) {
            for (i = 0; i < j && !(cfg->colour[i] == col && clash[j * d + i]); i++) {}
            if (i == j) break;
        }
        cfg->colour[j] = col;
        if (col + 1 > maxc) maxc = col + 1;
    }
    /* rows in order of fewest neighbours first (a static minimum-degree order): leaves before hubs */
    if (!(cfg->pos = plm_gc_alloc_atomic((size_t)d * sizeof(int)))) {
        free(clash);
        return plm_fail(ctx, PLM_ENOMEM, "gaussian_block: out of memory");
    }
    {
        int *deg = malloc((size_t)d * sizeof *deg), row = 0, dg;
        if (!deg) {
            free(clash);
            return plm_fail(ctx, PLM_ENOMEM, "gaussian_block: out of memory");
        }
        for (j = 0; j < d; j++)
            for (deg[j] = 0, i = 0; i < d; i++) deg[j] += clash[j * d + i];
        for (dg = 0; row < d; dg++)
            for (j = 0; j < d; j++)
                if (deg[j] == dg) cfg->pos[j] = row++;
        free(deg);
    }
    free(clash);
    cfg->npts = maxc + 1;
    if ((st = plm_gibbs_compile_small(ctx, m->g, 3 * cfg->b.nterms, cfg->b.stats, d, cfg->coord, &cfg->stats))) return st;
    k->ops = &gauss_ops;
    k->cfg = cfg;
    *out = k;
    return PLM_OK;
}

int plm_gibbs_is_gaussian_block(const plm_kernel *k) { return k->ops == &gauss_ops; }

plm_status plm_gibbs_gaussian_conditional(plm_ctx *ctx, const plm_kernel *k, int i, const double *u, double *out, int cap,
                                          int *n)
{
    const gauss_cfg *g = k->cfg;
    gauss_chain *gc;
    plm_status st;
    int d = g->b.d;
    *n = 0;
    if (i != 0) return plm_fail(ctx, PLM_EINVAL, "gibbs: no update %d (a gaussian block has 1)", i);
    if (cap < d + d * d) return plm_fail(ctx, PLM_EINVAL, "gibbs: out needs %d doubles", d + d * d);
    if (!(gc = gauss_new(k, NULL))) return plm_fail(ctx, PLM_ENOMEM, "gibbs: out of memory");
    if (!(st = gauss_conditional(g, gc, ctx, u, gc->h))) {
        int r, q;
        double *e = gc->x;
        for (r = 0; r < d; r++) out[r] = gc->h[g->pos[r]];
        for (q = 0; q < d; q++) {   /* column q of the covariance: (L L')^-1 e_q, in the block's order */
            memset(e, 0, (size_t)d * sizeof *e);
            e[g->pos[q]] = 1;
            tri_solve(gc->L, d, gc->cp, gc->ri, e, 0);
            tri_solve(gc->L, d, gc->cp, gc->ri, e, 1);
            for (r = 0; r < d; r++) out[d + r * d + q] = e[g->pos[r]];
        }
        *n = d + d * d;
    }
    gauss_free(gc);
    return st;
}
