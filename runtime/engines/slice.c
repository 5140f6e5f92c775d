/* slice.c -- univariate slice sampling with stepping out and shrinkage, and elliptical slice sampling on
** the Gaussian-prior sites of a static graph (see slice.h). */
#include "slice.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <gsl/gsl_blas.h>
#include <gsl/gsl_linalg.h>

/* More shrinkage steps than this means the slice has no interior around the current point: a log density
** that is not continuous there (the interval halves on average each time, so 200 is far past 1e-50 wide). */
#define MAX_SHRINK 200

static const char *const slice_names[] = {"n_eval__"};

/* ---- univariate slice sampling ---- */

typedef struct slice_cfg {
    double width;
    int max_steps;
} slice_cfg;

typedef struct slice_state {
    int dim;
    double *w;               /* per-coordinate widths */
    double wn, *wmean, *wm2; /* Welford over the adaptation window */
    long win_start, win_len;
} slice_state;

static void slice_free(void *p)
{
    slice_state *s = p;
    if (!s) return;
    free(s->w);
    free(s);
}

static void *slice_new(const plm_kernel *k, const plm_target *t)
{
    const slice_cfg *c = k->cfg;
    slice_state *s = calloc(1, sizeof *s);
    int i, d = t->dim;
    if (!s || !(s->w = calloc(3 * (size_t)d, sizeof *s->w))) {
        free(s);
        return NULL;
    }
    s->dim = d;
    s->wmean = s->w + d;
    s->wm2 = s->wmean + d;
    for (i = 0; i < d; i++) s->w[i] = c->width > 0 ? c->width : 1;
    s->win_len = 25;
    return s;
}

/* The log density at u, with NaN and +inf turned into errors (the message names the coordinate). */
static plm_status slice_eval(plm_ctx *ctx, const plm_target *t, void *ws, const double *u, int i, double *f, long *nev)
{
    *f = plm_target_logp(t, ws, u);
    ++*nev;
    /* NaN: a distribution's parameters are invalid there (sigma < 0), so the point is off the slice */
    if (isnan(*f)) *f = -INFINITY;
    if (*f == INFINITY) {
        char name[32];
        const char *nm = t->names ? t->names[i] : (snprintf(name, sizeof name, "x[%d]", i + 1), name);
        return plm_fail(ctx, PLM_EDOM, "slice: the log density is +inf while moving %s = %g", nm, u[i]);
    }
    return PLM_OK;
}

static plm_status slice_step(const plm_kernel *k, void *p, plm_ctx *ctx, const plm_target *t, void *ws, plm_rng *r,
                             double *u, double *lp, double *stat, double *extra)
{
    const slice_cfg *c = k->cfg;
    slice_state *s = p;
    int i, m = c->max_steps > 0 ? c->max_steps : 32;
    long nev = 0;
    plm_status st;
    for (i = 0; i < s->dim; i++) {
        double x0 = u[i], w = s->w[i], y = *lp - (-log(plm_rng_uniform(r))), L, R, f;
        int J, K, n;
        /* Neal's figure 3: an interval of width w placed at random around x0, stepped out at most m times in
        ** all, the budget split at random between the sides (keeps the move reversible) */
        L = x0 - w * plm_rng_uniform(r);
        R = L + w;
        J = (int)floor(m * plm_rng_uniform(r));
        K = m - 1 - J;
        for (; J > 0; J--) {
            u[i] = L;
            if ((st = slice_eval(ctx, t, ws, u, i, &f, &nev))) return st;
            if (!(f > y)) break;
            L -= w;
        }
        for (; K > 0; K--) {
            u[i] = R;
            if ((st = slice_eval(ctx, t, ws, u, i, &f, &nev))) return st;
            if (!(f > y)) break;
            R += w;
        }
        /* figure 5: draw from the interval, shrinking it toward x0 at each point off the slice */
        for (n = 0;; n++) {
            double x1 = L + (R - L) * plm_rng_uniform(r);
            if (n == MAX_SHRINK) {
                u[i] = x0;
                return plm_fail(ctx, PLM_EDOM, "slice: the slice around coordinate %d = %g has no interior (is the log "
                                "density continuous there?)", i + 1, x0);
            }
            u[i] = x1;
            if ((st = slice_eval(ctx, t, ws, u, i, &f, &nev))) return st;
            if (f > y) {
                *lp = f;
                break;
            }
            if (x1 < x0) L = x1;
            else R = x1;
        }
    }
    *stat = 1;
    extra[0] = (double)nev;
    return PLM_OK;
}

static void slice_adapt(const plm_kernel *k, void *p, long it, long nwarm, const double *u, double stat)
{
    slice_state *s = p;
    int i, d = s->dim;
    (void)k, (void)stat;
    /* as for random-walk MH: the chain is still travelling for the first 15%, then the widths follow the
    ** spread of doubling windows; 2.5 sd spans most of a Gaussian slice, so stepping out is rarely needed
    ** and shrinking rarely takes more than two or three evaluations */
    if (it < nwarm * 15 / 100) return;
    if (s->wn == 0) s->win_start = it;
    s->wn += 1;
    for (i = 0; i < d; i++) {
        double dlt = u[i] - s->wmean[i];
        s->wmean[i] += dlt / s->wn;
        s->wm2[i] += dlt * (u[i] - s->wmean[i]);
    }
    if ((it + 1 - s->win_start >= s->win_len || it + 1 == nwarm) && s->wn >= 10) {
        for (i = 0; i < d; i++) {
            double sd = sqrt(s->wm2[i] / (s->wn - 1));
            /* a stuck window (sd 0) must not make the width 0: keep a floor */
            s->w[i] = fmax(2.5 * sd, 1e-6);
            s->wmean[i] = s->wm2[i] = 0;
        }
        s->wn = 0;
        s->win_len *= 2;
    }
}

static const plm_kernel_ops slice_ops = {"slice", 1, slice_names, slice_new, slice_free, slice_step, slice_adapt};

plm_status plm_kernel_slice(plm_ctx *ctx, double width, int max_steps, plm_kernel **out)
{
    plm_kernel *k;
    slice_cfg *c;
    *out = NULL;
    if (!(width >= 0 && isfinite(width))) return plm_fail(ctx, PLM_EINVAL, "slice: width must be > 0 (got %g)", width);
    if (max_steps < 0 || max_steps > 100000)
        return plm_fail(ctx, PLM_EINVAL, "slice: max_steps must be in 1..1e5 (got %d)", max_steps);
    k = plm_gc_alloc(sizeof *k);
    c = plm_gc_alloc_atomic(sizeof *c);
    if (!k || !c) return plm_fail(ctx, PLM_ENOMEM, "slice: out of memory");
    c->width = width;
    c->max_steps = max_steps;
    k->ops = &slice_ops;
    k->cfg = c;
    *out = k;
    return PLM_OK;
}

/* ---- elliptical slice sampling ---- */

/* One site: a program of its prior term and the term's gradient in the site's coordinates. */
typedef struct ess_site {
    const char *name;
    int first, K;
    plm_prog *prog;
} ess_site;

typedef struct ess_cfg {
    int n, maxK;
    ess_site *s;
} ess_cfg;

typedef struct ess_state {
    const ess_cfg *c;
    plm_prog_ws *ws;     /* one per site */
    int nws;
    double *res;         /* term, gradient */
    double **out;
    double *P, *mean, *x0, *g0, *nu;
    plm_prog_in in[PLM_NGROUPS];
} ess_state;

static void ess_free(void *p)
{
    ess_state *s = p;
    int i;
    if (!s) return;
    for (i = 0; i < s->nws; i++) plm_prog_ws_free(&s->ws[i]);
    free(s->ws);
    free(s->res);
    free(s->out);
    free(s);
}

static void *ess_new(const plm_kernel *k, const plm_target *t)
{
    const ess_cfg *c = k->cfg;
    ess_state *s = calloc(1, sizeof *s);
    int i, K = c->maxK;
    (void)t;
    if (!s) return NULL;
    s->c = c;
    s->ws = calloc((size_t)c->n, sizeof *s->ws);
    s->res = malloc(((size_t)K + 1 + (size_t)K * K + 4 * (size_t)K) * sizeof *s->res);
    s->out = malloc(((size_t)K + 1) * sizeof *s->out);
    if (!s->ws || !s->res || !s->out) {
        ess_free(s);
        return NULL;
    }
    s->P = s->res + K + 1;
    s->mean = s->P + K * K;
    s->x0 = s->mean + K;
    s->g0 = s->x0 + K;
    s->nu = s->g0 + K;
    for (i = 0; i <= K; i++) s->out[i] = s->res + i;
    for (i = 0; i < c->n; i++) {
        if (plm_prog_ws_init_block(NULL, &s->ws[i], c->s[i].prog, 1)) {
            ess_free(s);
            return NULL;
        }
        s->nws++;
        /* the programs read only X (no data group), so the uniform pre-pass needs no binding */
        plm_prog_uniforms(&s->ws[i], s->in);
    }
    return s;
}

/* The prior term of site i at u into s->res[0], its gradient into s->res[1..K]. */
static void ess_term(ess_state *s, int i, const double *u)
{
    s->in[PLM_GRP_X].p = u;
    s->in[PLM_GRP_X].ld = 1;
    plm_prog_block(&s->ws[i], s->in, 0, 1, s->out, NULL);
}

static plm_status ess_site_step(ess_state *s, int i, plm_ctx *ctx, const plm_target *t, void *tws, plm_rng *r,
                                double *u, double *lp, long *nev)
{
    const ess_site *e = &s->c->s[i];
    int K = e->K, a, b, n;
    double *x = u + e->first, term0, ll0, logy, th, lo, hi;
    gsl_matrix_view Pv = gsl_matrix_view_array(s->P, (size_t)K, (size_t)K);
    gsl_vector_view mv = gsl_vector_view_array(s->mean, (size_t)K), gv = gsl_vector_view_array(s->g0, (size_t)K);
    gsl_vector_view nv = gsl_vector_view_array(s->nu, (size_t)K);
    /* the prior term is -(x - m)' P (x - m) / 2 + const, so its gradient g(x) = -P (x - m) is affine in x:
    ** column b of P is g(x) - g(x + e_b), and m = x + P^-1 g(x) */
    memcpy(s->x0, x, (size_t)K * sizeof *x);
    ess_term(s, i, u);
    term0 = s->res[0];
    memcpy(s->g0, s->res + 1, (size_t)K * sizeof *s->g0);
    for (b = 0; b < K; b++) {
        x[b] = s->x0[b] + 1;
        ess_term(s, i, u);
        x[b] = s->x0[b];
        for (a = 0; a < K; a++) s->P[a * K + b] = s->g0[a] - s->res[1 + a];
    }
    for (a = 0; a < K; a++)
        for (b = 0; b < a; b++) s->P[a * K + b] = s->P[b * K + a] = 0.5 * (s->P[a * K + b] + s->P[b * K + a]);
    for (a = 0; a < K * K; a++)
        if (!isfinite(s->P[a]) || !isfinite(term0))
            return plm_fail(ctx, PLM_EDOM, "elliptical_slice: the prior of '%s' is not finite at the current point", e->name);
    if (gsl_linalg_cholesky_decomp1(&Pv.matrix))
        return plm_fail(ctx, PLM_EDOM, "elliptical_slice: the prior covariance of '%s' is not positive definite at the "
                        "current point", e->name);
    gsl_linalg_cholesky_solve(&Pv.matrix, &gv.vector, &mv.vector);
    for (a = 0; a < K; a++) s->mean[a] += s->x0[a];
    /* nu ~ N(0, P^-1): with P = C C', nu = C'^-1 z */
    for (a = 0; a < K; a++) s->nu[a] = plm_rng_normal(r);
    gsl_blas_dtrsv(CblasLower, CblasTrans, CblasNonUnit, &Pv.matrix, &nv.vector);
    /* Murray, Adams and MacKay, figure 2: the likelihood is the target less the prior term */
    ll0 = *lp - term0;
    logy = ll0 + log(plm_rng_uniform(r));
    th = 2 * M_PI * plm_rng_uniform(r);
    lo = th - 2 * M_PI, hi = th;
    for (n = 0; n < MAX_SHRINK; n++) {
        double ct = cos(th), st = sin(th), lpn, ll;
        for (a = 0; a < K; a++) x[a] = s->mean[a] + (s->x0[a] - s->mean[a]) * ct + s->nu[a] * st;
        lpn = plm_target_logp(t, tws, u);
        ++*nev;
        if (lpn == INFINITY) {
            memcpy(x, s->x0, (size_t)K * sizeof *x);
            return plm_fail(ctx, PLM_EDOM, "elliptical_slice: the log density is +inf while moving '%s'", e->name);
        }
        ess_term(s, i, u);
        ll = lpn - s->res[0];
        if (isnan(ll)) ll = -INFINITY;   /* invalid parameters of another term there: off the slice */
        if (ll > logy) {
            *lp = lpn;
            return PLM_OK;
        }
        if (th < 0) lo = th;
        else hi = th;
        th = lo + (hi - lo) * plm_rng_uniform(r);
    }
    memcpy(x, s->x0, (size_t)K * sizeof *x);
    return plm_fail(ctx, PLM_EDOM, "elliptical_slice: the slice around '%s' has no interior (is the likelihood "
                    "continuous there?)", e->name);
}

static plm_status ess_step(const plm_kernel *k, void *p, plm_ctx *ctx, const plm_target *t, void *ws, plm_rng *r,
                           double *u, double *lp, double *stat, double *extra)
{
    ess_state *s = p;
    int i;
    long nev = 0;
    plm_status st;
    (void)k;
    for (i = 0; i < s->c->n; i++)
        if ((st = ess_site_step(s, i, ctx, t, ws, r, u, lp, &nev))) return st;
    *stat = 1;
    extra[0] = (double)nev;
    return PLM_OK;
}

static const plm_kernel_ops ess_ops = {"elliptical_slice", 1, slice_names, ess_new, ess_free, ess_step, NULL};

plm_status plm_kernel_ess(plm_ctx *ctx, plm_gmodel *m, const int *sites, int nsites, plm_kernel **out)
{
    plm_kernel *k;
    ess_cfg *c;
    plm_status st;
    int i, j, *outs;
    *out = NULL;
    if (!m->finished && (st = plm_gmodel_finish(ctx, m))) return st;
    if (nsites < 1) return plm_fail(ctx, PLM_EINVAL, "elliptical_slice: no sites given");
    k = plm_gc_alloc(sizeof *k);
    c = plm_gc_alloc(sizeof *c);
    if (!k || !c || !(c->s = plm_gc_alloc((size_t)nsites * sizeof *c->s)))
        return plm_fail(ctx, PLM_ENOMEM, "elliptical_slice: out of memory");
    for (i = 0; i < nsites; i++) {
        const plm_gsite *gs;
        ess_site *e = &c->s[i];
        if (sites[i] < 0 || sites[i] >= m->n) return plm_fail(ctx, PLM_EINVAL, "elliptical_slice: site %d does not exist", sites[i] + 1);
        gs = &m->sites[sites[i]];
        if (gs->kind != PLM_GSITE_LATENT)
            return plm_fail(ctx, PLM_EINVAL, "elliptical_slice: site '%s' is %s, not latent", gs->name,
                            plm_gsite_kind_name(gs->kind));
        if (gs->dist != PLM_DIST_NORMAL && gs->dist != PLM_DIST_MVNORMAL)
            return plm_fail(ctx, PLM_EINVAL, "elliptical_slice: site '%s' has a %s prior; elliptical slice sampling "
                            "needs a normal or mvnormal prior", gs->name, plm_dist_info_of((plm_dist_kind)gs->dist)->name);
        for (j = 0; j < i; j++)
            if (sites[j] == sites[i]) return plm_fail(ctx, PLM_EINVAL, "elliptical_slice: site '%s' is listed twice", gs->name);
        e->name = gs->name;
        e->first = gs->first;
        e->K = gs->dim;
        if (!(outs = plm_gc_alloc_atomic(((size_t)e->K + 1) * sizeof *outs)))
            return plm_fail(ctx, PLM_ENOMEM, "elliptical_slice: out of memory");
        outs[0] = gs->logp;
        if ((st = plm_graph_grad(ctx, m->g, gs->logp, e->K, m->x + e->first, outs + 1))) return st;
        if ((st = plm_prog_compile(ctx, m->g, e->K + 1, outs, 1u << PLM_GRP_X, &e->prog))) return st;
        if (e->K > c->maxK) c->maxK = e->K;
    }
    c->n = nsites;
    k->ops = &ess_ops;
    k->cfg = c;
    *out = k;
    return PLM_OK;
}
