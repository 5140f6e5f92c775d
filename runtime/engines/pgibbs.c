/* pgibbs.c -- conditional SMC with ancestor sampling and the particle Gibbs driver (see pgibbs.h).
**
** A sweep keeps the reference path in the last slot N - 1; the N - 1 other particles are a bootstrap filter
** whose resampling draws from all N weights (multinomially, so that given the reference they are the i.i.d.
** draws the conditional SMC argument needs). Ancestor sampling re-draws the reference's parent at every step
** from W_{t-1}^j p(x*_t | x_{t-1}^j): its lineage then joins the others early, and the path drawn at the end
** differs from the reference at every time, not only near T, which is what makes the sampler mix for long
** series with few particles. */
#include "pgibbs.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dist.h"
#include "mcmc.h"
#include "par.h"
#include "resample.h"

struct plm_csmc {
    long T;
    size_t N;
    int dim, ydim;
    double *xs;          /* the particles of every step: xs[((t-1)*dim + k)*N + i] */
    uint32_t *anc;       /* anc[(t-1)*N + i]: the parent at t - 1 of particle i at t */
    double *xo, *xrep;   /* dim * N: gathered parents; the reference state repeated */
    double *inc, *lw, *lwp, *W, *la;   /* N: incremental, normalised log weights (t, t - 1), weights, ancestor */
    size_t *cnt, *ancs;  /* N */
    plm_rng *rng;        /* N */
};

void plm_csmc_free(plm_csmc *w)
{
    if (!w) return;
    free(w->xs);
    free(w->anc);
    free(w->xo);
    free(w->xrep);
    free(w->inc);
    free(w->lw);
    free(w->lwp);
    free(w->W);
    free(w->la);
    free(w->cnt);
    free(w->ancs);
    free(w->rng);
    free(w);
}

plm_csmc *plm_csmc_new(const plm_ssm *m, long T, size_t N)
{
    plm_csmc *w = calloc(1, sizeof *w);
    size_t d = (size_t)m->dim;
    if (!w || T < 1 || N < 2) {
        free(w);
        return NULL;
    }
    w->T = T;
    w->N = N;
    w->dim = m->dim;
    w->ydim = m->ydim;
    w->xs = malloc((size_t)T * d * N * sizeof *w->xs);
    w->anc = malloc((size_t)T * N * sizeof *w->anc);
    w->xo = malloc(d * N * sizeof *w->xo);
    w->xrep = malloc(d * N * sizeof *w->xrep);
    w->inc = malloc(N * sizeof *w->inc);
    w->lw = malloc(N * sizeof *w->lw);
    w->lwp = malloc(N * sizeof *w->lwp);
    w->W = malloc(N * sizeof *w->W);
    w->la = malloc(N * sizeof *w->la);
    w->cnt = malloc(N * sizeof *w->cnt);
    w->ancs = malloc(N * sizeof *w->ancs);
    w->rng = malloc(N * sizeof *w->rng);
    if (!w->xs || !w->anc || !w->xo || !w->xrep || !w->inc || !w->lw || !w->lwp || !w->W || !w->la || !w->cnt ||
        !w->ancs || !w->rng) {
        plm_csmc_free(w);
        return NULL;
    }
    return w;
}

/* The index drawn from normalised weights W (n of them) by the uniform u. */
size_t plm_csmc_draw_index(const double *W, size_t n, double u)
{
    double acc = 0;
    size_t i;
    for (i = 0; i < n - 1; i++)
        if ((acc += W[i]) > u) break;
    return i;
}

#define draw_index plm_csmc_draw_index

plm_status plm_csmc_ancestor(plm_ctx *ctx, const plm_ssm *m, long t, const double *xp, const double *lw,
                             const double *xr, size_t N, double *xrep, double *la, plm_rng *r, int nthreads,
                             const char *who, uint32_t *out)
{
    double mx = -INFINITY, s = 0;
    int k, dim = m->dim;
    size_t i;
    plm_status st;
    for (k = 0; k < dim; k++)
        for (i = 0; i < N; i++) xrep[k * N + i] = xr[k];
    if ((st = plm_ssm_trans_logpdf(ctx, m, t, N, xp, xrep, N, la, nthreads))) return st;
    for (i = 0; i < N; i++) {
        la[i] += lw[i];
        if (la[i] > mx) mx = la[i];
    }
    if (!(mx > -INFINITY) || mx == INFINITY)
        return plm_fail(ctx, PLM_EDOM, "%s: the reference state at t = %ld has no possible parent at t = %ld (ancestor "
                        "log weights up to %g)", who, t, t - 1, mx);
    for (i = 0; i < N; i++) s += (la[i] = exp(la[i] - mx));
    for (i = 0; i < N; i++) la[i] /= s;
    *out = (uint32_t)draw_index(la, N, plm_rng_uniform(r));
    return PLM_OK;
}

static plm_status weight_error(plm_ctx *ctx, const char *who, double A, long t)
{
    if (isnan(A) || A == INFINITY)
        return plm_fail(ctx, PLM_EDOM, "%s: a weight is %g at t = %ld: a parameter outside its domain, or a density "
                        "that is not finite", who, A, t);
    return plm_fail(ctx, PLM_EDOM, "%s: every particle has weight zero at t = %ld: no particle, the reference "
                    "included, can explain the observation", who, t);
}

const double *plm_csmc_logweights(const plm_csmc *w)
{
    return w->lw;
}

plm_status plm_csmc_sweep(plm_ctx *ctx, plm_csmc *w, const plm_ssm *m, const double *ys, uint64_t seed, int ref,
                          int ancestor_sampling, int nthreads, double *path)
{
    return plm_csmc_sweep_hook(ctx, w, m, ys, seed, ref, ancestor_sampling, nthreads, NULL, path);
}

plm_status plm_csmc_sweep_hook(plm_ctx *ctx, plm_csmc *w, const plm_ssm *m, const double *ys, uint64_t seed, int ref,
                               int ancestor_sampling, int nthreads, const plm_csmc_hook *h, double *path)
{
    const size_t N = w->N, dim = (size_t)w->dim, nf = ref ? N - 1 : N;
    const long T = w->T;
    const int nth = N >= 8 * PLM_EXPR_BLOCK ? nthreads : 1;
    const char *who = h ? h->who : "csmc";
    plm_rng rr;
    plm_status st;
    size_t i, k, b;
    long t;
    int j;
    for (i = 0; i < N; i++) plm_rng_init(&w->rng[i], seed, (uint64_t)i + 1);
    plm_rng_init(&rr, seed, 0);
    for (t = 1; t <= T; t++) {
        const double *y = ys + (size_t)(t - 1) * (size_t)w->ydim, *xr = path + (size_t)(t - 1) * dim;
        double *x = w->xs + (size_t)(t - 1) * dim * N, *xp = x - dim * N, *sw, A;
        uint32_t *anc = w->anc + (size_t)(t - 1) * N;
        int missing = 0;
        if (plm_interrupted()) return plm_fail(ctx, PLM_EINTR, "%s: interrupted at t = %ld", who, t);
        for (j = 0; j < w->ydim; j++) missing |= isnan(y[j]);
        if (t == 1) {
            st = missing ? plm_ssm_init_sample(ctx, m, nf, x, N, w->rng, nth)
                         : plm_ssm_step(ctx, m, 1, nf, NULL, y, x, N, w->inc, w->rng, nth);
            if (st) return st;
            for (i = 0; i < N; i++) anc[i] = (uint32_t)i;
        } else {
            /* the free particles' parents, from all N weights of t - 1 */
            if ((st = plm_resample_counts(ctx, PLM_RESAMPLE_MULTINOMIAL, w->W, N, nf, &rr, w->cnt, NULL))) return st;
            plm_resample_ancestors(w->cnt, N, w->ancs);
            for (i = 0; i < nf; i++) anc[i] = (uint32_t)w->ancs[i];
            for (k = 0; k < dim; k++)
                for (i = 0; i < nf; i++) w->xo[k * N + i] = xp[k * N + anc[i]];
            st = missing ? plm_ssm_trans_sample(ctx, m, t, nf, w->xo, x, N, w->rng, nth)
                         : plm_ssm_step(ctx, m, t, nf, w->xo, y, x, N, w->inc, w->rng, nth);
            if (st) return st;
            if (ref && ancestor_sampling) {
                if ((st = plm_csmc_ancestor(ctx, m, t, xp, w->lw, xr, N, w->xrep, w->la, &rr, nth, who, &anc[N - 1])))
                    return st;
            } else if (ref)
                anc[N - 1] = (uint32_t)(N - 1);
        }
        if (ref) {
            for (k = 0; k < dim; k++) x[k * N + N - 1] = xr[k];
            if (!missing && (st = plm_ssm_obs_logpdf(ctx, m, t, 1, x + N - 1, N, y, &w->inc[N - 1], 1))) return st;
        }
        /* resampling at every step leaves equal weights: the new ones are the incremental weights */
        if (missing)
            for (i = 0; i < N; i++) w->inc[i] = 0;
        sw = w->lwp, w->lwp = w->lw, w->lw = sw;   /* lwp: the weights of t - 1 */
        A = plm_resample_normalise(w->inc, N, w->W);
        if (!isfinite(A)) return weight_error(ctx, who, A, t);
        for (i = 0; i < N; i++) w->lw[i] = w->inc[i] - A;
        if (h && h->step && (st = h->step(ctx, h->ud, t, t > 1 ? xp : NULL, w->lwp, x, w->lw, anc))) return st;
    }
    /* the path of a particle drawn from the final weights, by its ancestry (or the hook's choice of parents) */
    b = draw_index(w->W, N, plm_rng_uniform(&rr));
    for (t = T; t >= 1; t--) {
        for (k = 0; k < dim; k++) path[(size_t)(t - 1) * dim + k] = w->xs[((size_t)(t - 1) * dim + k) * N + b];
        if (t > 1) b = h && h->parent ? h->parent(h->ud, t, b, &rr) : w->anc[(size_t)(t - 1) * N + b];
    }
    return PLM_OK;
}

/* ---- particle Gibbs ---- */

void plm_pgibbs_opts_default(plm_pgibbs_opts *o)
{
    memset(o, 0, sizeof *o);
    o->N = 100;
    o->chains = 4;
    o->warmup = 1000;
    o->samples = 1000;
    o->seed = 1;
    o->nthreads = 1;
    o->ancestor_sampling = 1;
    o->param_moves = 1;
    o->conjugate = 1;
}

/* The parameters given the path: the target the random-walk kernel moves (one per chain). */
typedef struct cond_target {
    plm_target t;
    plm_ssm *m;          /* the chain's copy, its parameters written at every evaluation */
    const plm_ssm_prior *P;
    const double *ys, *path;
    long T;
    plm_ctx *ctx;
} cond_target;

/* log p(x_1:T, y_1:T) of the path, missing observations skipped; NaN when a program fails (ctx says why) */
static double path_logjoint(plm_ctx *ctx, const plm_ssm *m, long T, const double *xs, const double *ys)
{
    double s = 0, v;
    long t;
    int j;
    for (t = 1; t <= T; t++) {
        const double *x = xs + (size_t)(t - 1) * (size_t)m->dim, *y = ys + (size_t)(t - 1) * (size_t)m->ydim;
        int missing = 0;
        if (plm_ssm_trans_logpdf(ctx, m, t, 1, t > 1 ? x - m->dim : x, x, 1, &v, 1)) return NAN;
        s += v;
        for (j = 0; j < m->ydim; j++) missing |= isnan(y[j]);
        if (missing) continue;
        if (plm_ssm_obs_logpdf(ctx, m, t, 1, x, 1, y, &v, 1)) return NAN;
        s += v;
    }
    return s;
}

/* A density that is NaN at some parameter (a scale below 0 inside a wide prior) makes that point impossible:
** the move is rejected, as an invalid parameter inside a model run is. */
static double cond_logp(const plm_target *tg, void *ws, const double *u)
{
    const cond_target *c = tg->self;
    double lp = plm_ssm_prior_set(c->P, u, c->m->params), lj;
    (void)ws;
    if (lp == -INFINITY) return lp;
    lj = path_logjoint(c->ctx, c->m, c->T, c->path, c->ys);
    return isnan(lj) ? -INFINITY : lp + lj;
}

static const plm_target_ops cond_ops = {"ssm path-conditional", NULL, NULL, cond_logp, NULL};

/* ---- conjugate updates ----
** A parameter theta whose prior is normal (or halfnormal, uniform, flat, a truncated normal) and on which the
** complete-data log density f depends quadratically has a (truncated) normal conditional; a gamma prior on a
** theta on which f = A log theta - B theta + c (a precision) a gamma one; an inverse-gamma prior on a theta with
** f = A log theta - B / theta + c (a variance) an inverse-gamma one. In all three, h(theta) = w(theta) f'(theta)
** is linear in theta, with w = 1, theta, theta^2: the form is recognised by fitting that line through two
** gradients (the compiled symbolic derivative of f) and checking it at two more points, and every sweep then
** fits the line at the new path and draws exactly from the conditional. */
typedef enum cj_form { CJ_LINEAR, CJ_GAMMA, CJ_INVGAMMA } cj_form;

typedef struct conj {
    int q;          /* index into the prior's lists */
    cj_form form;
    double a, b;    /* LINEAR: prior mean and precision (0: flat); GAMMA: shape and rate; INVGAMMA: shape, scale */
    double lo, hi;  /* LINEAR: where the draw is restricted (the prior's support) */
} conj;

/* The conjugate family of prior q, or -1. */
static int cj_prior(const plm_ssm_prior *P, int q, conj *c)
{
    const plm_dist *d = P->dist[q];
    c->q = q;
    c->form = CJ_LINEAR;
    c->a = 0, c->b = 0, c->lo = -INFINITY, c->hi = INFINITY;
    switch (d->kind) {
    case PLM_DIST_NORMAL: c->a = d->p[0], c->b = 1 / (d->p[1] * d->p[1]); return 0;
    case PLM_DIST_HALFNORMAL: c->b = 1 / (d->p[0] * d->p[0]), c->lo = 0; return 0;
    case PLM_DIST_UNIFORM: c->lo = d->p[0], c->hi = d->p[1]; return 0;
    case PLM_DIST_FLAT: return 0;
    case PLM_DIST_TRUNCATED:
        c->lo = d->p[0], c->hi = d->p[1];
        if (d->inner->kind == PLM_DIST_NORMAL) {
            c->a = d->inner->p[0], c->b = 1 / (d->inner->p[1] * d->inner->p[1]);
            return 0;
        }
        if (d->inner->kind == PLM_DIST_HALFNORMAL) {
            c->b = 1 / (d->inner->p[0] * d->inner->p[0]), c->lo = fmax(c->lo, 0);
            return 0;
        }
        return -1;
    case PLM_DIST_GAMMA: c->form = CJ_GAMMA, c->a = d->p[0], c->b = d->p[1]; return 0;
    case PLM_DIST_INV_GAMMA: c->form = CJ_INVGAMMA, c->a = d->p[0], c->b = d->p[1]; return 0;
    default: return -1;
    }
}

/* h(th) = w(th) f'(th) for parameter j of m at the path (the others as they are); g: np doubles of scratch */
static plm_status cj_h(plm_ctx *ctx, plm_ssm *m, const conj *c, int j, long T, const double *path, const double *ys,
                       double th, double *g, double *h)
{
    double save = m->params[j];
    plm_status st;
    m->params[j] = th;
    st = plm_ssm_logjoint_grad(ctx, m, T, path, ys, g, NULL);
    m->params[j] = save;
    *h = (c->form == CJ_LINEAR ? 1 : c->form == CJ_GAMMA ? th : th * th) * g[j];
    return st;
}

/* The line h = c0 + c1 th through the points th0 and th1. */
static plm_status cj_fit(plm_ctx *ctx, plm_ssm *m, const conj *c, int j, long T, const double *path,
                         const double *ys, double th0, double th1, double *g, double *c0, double *c1)
{
    double h0, h1;
    plm_status st;
    if ((st = cj_h(ctx, m, c, j, T, path, ys, th0, g, &h0)) || (st = cj_h(ctx, m, c, j, T, path, ys, th1, g, &h1)))
        return st;
    *c1 = (h1 - h0) / (th1 - th0);
    *c0 = h0 - *c1 * th0;
    return PLM_OK;
}

/* A second point for the fit at th: far enough for the difference to keep its digits, inside the support. */
static double cj_other(const conj *c, double th)
{
    if (c->form != CJ_LINEAR) return 2 * th;
    return th + 0.5 * fmax(1, fabs(th));
}

/* 1 when parameter j's conditional has c's form at this path: the line through two points passes through two
** more (to 1e-7 relative; a form that is not linear misses by far more). */
static int cj_detect(plm_ctx *ctx, plm_ssm *m, const conj *c, int j, long T, const double *path, const double *ys,
                     double *g)
{
    double th = m->params[j], c0, c1, x[2], h;
    int k;
    if (!isfinite(th) || (c->form != CJ_LINEAR && !(th > 0))) return 0;
    if (cj_fit(ctx, m, c, j, T, path, ys, th, cj_other(c, th), g, &c0, &c1) || !isfinite(c0) || !isfinite(c1))
        return 0;
    x[0] = c->form == CJ_LINEAR ? th - 0.3 * fmax(1, fabs(th)) : 0.4 * th;
    x[1] = c->form == CJ_LINEAR ? th + 1.7 * fmax(1, fabs(th)) : 3.1 * th;
    for (k = 0; k < 2; k++) {
        double fit = c0 + c1 * x[k];
        if (cj_h(ctx, m, c, j, T, path, ys, x[k], g, &h) || !(fabs(h - fit) <= 1e-7 * (fabs(h) + fabs(fit) + 1)))
            return 0;
    }
    return 1;
}

/* Draw parameter j from its conditional given the path. PLM_EDOM when the conditional is improper (a flat or
** uniform prior on a parameter the path says nothing about: names it). */
static plm_status cj_draw(plm_ctx *ctx, plm_ssm *m, const conj *c, int j, const char *name, long T,
                          const double *path, const double *ys, plm_rng *r, double *g)
{
    double th = m->params[j], c0, c1, v;
    plm_status st;
    if ((st = cj_fit(ctx, m, c, j, T, path, ys, th, cj_other(c, th), g, &c0, &c1))) return st;
    if (c->form == CJ_LINEAR) {   /* f' = c0 + c1 th: precision -c1 */
        double prec = c->b - c1, mean, sd;
        if (!(prec > 0))
            return plm_fail(ctx, PLM_EDOM, "pgibbs: the conditional of '%s' given the path is improper (precision %g)",
                            name, prec);
        mean = (c->a * c->b + c0) / prec, sd = 1 / sqrt(prec);
        v = mean + sd * plm_dist_std_truncnorm((c->lo - mean) / sd, (c->hi - mean) / sd, r);
        if (v <= c->lo) v = nextafter(c->lo, INFINITY);   /* open supports: stay inside */
        if (v >= c->hi) v = nextafter(c->hi, -INFINITY);
    } else if (c->form == CJ_GAMMA) {   /* th f' = A - B th: gamma(a + A, b + B) */
        double shape = c->a + c0, rate = c->b - c1;
        if (!(shape > 0 && rate > 0))
            return plm_fail(ctx, PLM_EDOM, "pgibbs: the gamma conditional of '%s' is improper (shape %g, rate %g)",
                            name, shape, rate);
        v = exp(plm_dist_log_gamma(shape, r)) / rate;
    } else {   /* th^2 f' = A th + B: inverse-gamma(a - A, b + B) */
        double shape = c->a - c1, scale = c->b + c0;
        if (!(shape > 0 && scale > 0))
            return plm_fail(ctx, PLM_EDOM, "pgibbs: the inverse-gamma conditional of '%s' is improper (shape %g, "
                            "scale %g)", name, shape, scale);
        v = scale * exp(-plm_dist_log_gamma(shape, r));
    }
    if (!(v > 0) && c->form != CJ_LINEAR)
        v = c->form == CJ_GAMMA ? DBL_MIN : DBL_MAX;   /* an underflow of an extreme draw */
    m->params[j] = v;
    return PLM_OK;
}

typedef struct pg_job {
    const plm_ssm *m;
    long T;
    const double *ys;
    const plm_ssm_prior *P;
    const plm_pgibbs_opts *o;
    const plm_kernel *k;
    const long *times;
    long ntimes;
    int inner_threads, w;      /* threads of a sweep; values per kept row */
    double *vals;              /* chains x samples x w */
    long *kept, *changed;      /* per chain; per chain and time */
    double *accept;            /* per chain */
    int *conj;                 /* per chain and free parameter: 1 when drawn from its conjugate conditional */
    int grad_ok;               /* the complete-data log density has a gradient (conjugate updates need it) */
    plm_status *st;
    plm_ctx *ctx;
} pg_job;

/* log prior + log Jacobian of every free parameter at par, plus the path's complete-data log density */
static double full_lp(plm_ctx *ctx, const plm_ssm_prior *P, const plm_ssm *mc, long T, const double *path,
                      const double *ys, double *ufull, double *scratch)
{
    double lp;
    memcpy(scratch, mc->params, (size_t)mc->np * sizeof *scratch);
    plm_ssm_prior_free(P, mc->params, ufull);
    lp = plm_ssm_prior_set(P, ufull, scratch);
    return lp == -INFINITY ? lp : lp + path_logjoint(ctx, mc, T, path, ys);
}

/* One sweep of chain c: the plain one, or o->sweep's (its estimates into est) */
static plm_status chain_sweep(plm_ctx *ctx, const pg_job *J, plm_csmc *w, void *sw, const plm_ssm *mc, uint64_t seed,
                              int ref, double *path, double *est)
{
    const plm_pgibbs_sweep *S = J->o->sweep;
    if (S) return S->run(ctx, sw, mc, J->ys, seed, ref, J->inner_threads, path, est);
    return plm_csmc_sweep(ctx, w, mc, J->ys, seed, ref, ref && J->o->ancestor_sampling, J->inner_threads, path);
}

static plm_status pg_chain(const pg_job *J, int c)
{
    const plm_ssm *m0 = J->m;
    const plm_pgibbs_opts *o = J->o;
    const plm_ssm_prior *P = J->P;
    const long T = J->T, total = o->warmup + o->samples;
    const size_t dim = (size_t)m0->dim, pl = (size_t)T * dim;
    const int nfree = P->nfree, moves = o->param_moves, np = m0->np;
    plm_ctx *ctx = &J->ctx[c];
    double *par = malloc(((size_t)np + 1) * sizeof *par), *path = malloc(2 * pl * sizeof *path);
    double *old = path + pl, *u = malloc(((size_t)nfree + 1) * sizeof *u), *row;
    double *ufull = malloc(((size_t)nfree + 1) * sizeof *ufull), *scr = malloc(((size_t)np + 1) * 2 * sizeof *scr);
    double lp = 0, stat = NAN, sacc = 0;
    conj *cj = malloc(((size_t)nfree + 1) * sizeof *cj);
    int *idx2 = malloc(((size_t)nfree + 1) * sizeof *idx2), ncj = 0;
    const plm_dist **dist2 = malloc(((size_t)nfree + 1) * sizeof *dist2);
    const char **names2 = malloc(((size_t)nfree + 1) * sizeof *names2);
    plm_ssm_prior P2;   /* the parameters the random walk moves: those without a conjugate update */
    const int K = o->sweep ? o->sweep->K : 0;
    double *est = malloc(((size_t)K + 1) * sizeof *est);
    plm_csmc *w = o->sweep ? NULL : plm_csmc_new(m0, T, o->N);
    void *sw = NULL;
    plm_ssm mc;
    cond_target tg;
    void *ks = NULL;
    plm_rng r;
    plm_status st = PLM_OK;
    long it, tt;
    int tries, j;
    size_t i;
    plm_rng_init(&r, o->seed, (uint64_t)c);
    row = J->vals + (size_t)c * (size_t)o->samples * (size_t)J->w;
    if (!par || !path || !u || !ufull || !scr || !cj || !idx2 || !dist2 || !names2 || !est || (!w && !o->sweep)) {
        st = plm_fail(ctx, PLM_ENOMEM, "pgibbs: out of memory (%ld x %zu particles)", T, o->N);
        goto done;
    }
    plm_ssm_with_params(m0, par, &mc);
    if (o->sweep && !(sw = o->sweep->new(ctx, o->sweep->ud, &mc, T, o->N, J->inner_threads))) {
        st = ctx->status ? ctx->status : PLM_ENOMEM;
        goto done;
    }
    /* the start: parameters from init or the prior, a path from an unconditional sweep */
    for (tries = 0;; tries++) {
        if (tries == 100) {
            st = plm_fail(ctx, PLM_EDEAD, "pgibbs: chain %d found no start of finite density in 100 draws from the "
                          "prior (last: %s)", c + 1, ctx->msg[0] ? ctx->msg : "log density -inf");
            goto done;
        }
        if (o->init)
            memcpy(u, o->init + (size_t)c * (size_t)nfree, (size_t)nfree * sizeof *u);
        else
            plm_ssm_prior_draw(P, &r, u);
        if (plm_ssm_prior_set(P, u, par) == -INFINITY) {
            if (o->init) {
                st = plm_fail(ctx, PLM_EDEAD, "pgibbs: chain %d: the given start is outside the prior's support", c + 1);
                goto done;
            }
            continue;
        }
        st = chain_sweep(ctx, J, w, sw, &mc, plm_rng_next(&r), 0, path, est);
        if (st == PLM_EDOM && !o->init) continue;
        if (st) goto done;
        lp = full_lp(ctx, P, &mc, T, path, J->ys, ufull, scr);
        if (isfinite(lp)) break;
        if (o->init) {
            st = plm_fail(ctx, PLM_EDEAD, "pgibbs: chain %d: the log density at the given start is %g", c + 1, lp);
            goto done;
        }
    }
    /* which parameters have a conjugate update (recognised at the start's path); the others move by the walk */
    P2.nfree = 0;
    for (j = 0; j < nfree; j++) {
        if (o->conjugate && J->grad_ok && !cj_prior(P, j, &cj[ncj]) &&
            cj_detect(ctx, &mc, &cj[ncj], P->idx[j], T, path, J->ys, scr)) {
            J->conj[(size_t)c * (size_t)nfree + (size_t)j] = 1;
            ncj++;
            continue;
        }
        idx2[P2.nfree] = P->idx[j], dist2[P2.nfree] = P->dist[j], names2[P2.nfree] = P->names[j];
        P2.nfree++;
    }
    P2.idx = idx2, P2.dist = dist2, P2.names = names2;
    plm_ssm_prior_free(&P2, par, u);
    tg.t.ops = &cond_ops;
    tg.t.self = &tg;
    tg.t.dim = P2.nfree;
    tg.t.names = P2.names;
    tg.m = &mc, tg.P = &P2, tg.ys = J->ys, tg.path = path, tg.T = T, tg.ctx = ctx;
    if (P2.nfree && !(ks = J->k->ops->chain_new(J->k, &tg.t))) {
        st = plm_fail(ctx, PLM_ENOMEM, "pgibbs: out of memory");
        goto done;
    }
    ctx->msg[0] = 0;
    for (it = 0; it < total; it++) {
        if (plm_interrupted()) {
            st = plm_fail(ctx, PLM_EINTR, "pgibbs: interrupted");
            goto done;
        }
        if (P2.nfree) plm_ssm_prior_set(&P2, u, par);   /* a rejected move left the proposal's values there */
        memcpy(old, path, pl * sizeof *path);
        if ((st = chain_sweep(ctx, J, w, sw, &mc, plm_rng_next(&r), 1, path, est))) goto done;
        for (j = 0; j < ncj; j++)
            if ((st = cj_draw(ctx, &mc, &cj[j], P->idx[cj[j].q], P->names[cj[j].q], T, path, J->ys, &r, scr)))
                goto done;
        if (P2.nfree) {
            lp = cond_logp(&tg.t, NULL, u);
            for (j = 0; j < moves; j++) {
                if ((st = J->k->ops->step(J->k, ks, ctx, &tg.t, NULL, &r, u, &lp, &stat, NULL))) goto done;
                if (it < o->warmup && J->k->ops->adapt)
                    J->k->ops->adapt(J->k, ks, it * moves + j, o->warmup * moves, u, stat);
            }
            plm_ssm_prior_set(&P2, u, par);
        } else
            stat = 1;   /* Gibbs draws are always accepted */
        if (it < o->warmup) continue;
        lp = nfree ? full_lp(ctx, P, &mc, T, path, J->ys, ufull, scr) : path_logjoint(ctx, &mc, T, path, J->ys);
        for (tt = 0; tt < T; tt++)
            for (i = 0; i < dim; i++)
                if (path[(size_t)tt * dim + i] != old[(size_t)tt * dim + i]) {
                    J->changed[(size_t)c * (size_t)T + (size_t)tt]++;
                    break;
                }
        {
            double *v = row;
            for (j = 0; j < nfree; j++) *v++ = par[P->idx[j]];
            for (tt = 0; tt < J->ntimes; tt++) {
                long t = J->times ? J->times[tt] : tt + 1;
                for (i = 0; i < dim; i++) *v++ = path[(size_t)(t - 1) * dim + i];
            }
            for (j = 0; j < K; j++) *v++ = est[j];
            *v++ = lp;
            if (nfree) *v = stat;
        }
        if (nfree) sacc += stat;
        row += J->w;
        J->kept[c]++;
    }
done:
    J->accept[c] = J->kept[c] ? sacc / (double)J->kept[c] : NAN;
    if (ks) J->k->ops->chain_free(ks);
    plm_csmc_free(w);
    if (sw) o->sweep->free(sw);
    free(est);
    free(par);
    free(path);
    free(u);
    free(ufull);
    free(scr);
    free(cj);
    free(idx2);
    free(dist2);
    free(names2);
    return st;
}

static void pg_worker(void *arg, size_t begin, size_t end, int worker)
{
    pg_job *J = arg;
    size_t c;
    (void)worker;
    for (c = begin; c < end; c++) J->st[c] = pg_chain(J, (int)c);
}

/* The columns of the draws, in row order. */
static plm_status pg_columns(plm_ctx *ctx, plm_draws *D, const plm_ssm *m, const plm_ssm_prior *P, const pg_job *J)
{
    char name[64];
    int col = 0, j, k;
    long tt;
    for (j = 0; j < P->nfree; j++, col++)
        if (plm_draws_col(D, P->names[j], 1) != col)
            return plm_fail(ctx, PLM_EINVAL, "pgibbs: column name '%s' is used twice", P->names[j]);
    for (tt = 0; tt < J->ntimes; tt++)
        for (k = 0; k < m->dim; k++, col++) {
            long t = J->times ? J->times[tt] : tt + 1;
            if (m->dim == 1)
                snprintf(name, sizeof name, "x[%ld]", t);
            else
                snprintf(name, sizeof name, "x[%ld,%d]", t, k + 1);
            if (plm_draws_col(D, name, 1) != col)
                return plm_fail(ctx, PLM_EINVAL, "pgibbs: column name '%s' is used twice (a time listed twice, or a "
                                "parameter of that name)", name);
        }
    for (j = 0; J->o->sweep && j < J->o->sweep->K; j++, col++)
        if (plm_draws_col(D, J->o->sweep->names[j], 1) != col)
            return plm_fail(ctx, PLM_EINVAL, "pgibbs: column name '%s' is used twice (an output named as a "
                            "parameter or a state)", J->o->sweep->names[j]);
    if (plm_draws_col(D, "lp__", 1) != col || (P->nfree && plm_draws_col(D, "accept_stat__", 1) != col + 1))
        return plm_fail(ctx, PLM_EINVAL, "pgibbs: a parameter is named lp__ or accept_stat__");
    return PLM_OK;
}

plm_status plm_pgibbs_run(plm_ctx *ctx, const plm_ssm *m, long T, const double *ys, const plm_ssm_prior *P,
                          const plm_pgibbs_opts *o, plm_results *R)
{
    pg_job J;
    plm_kernel *k = NULL;
    plm_draws *D = plm_results_draws(R);
    plm_status st;
    long tt;
    int c, j;
    memset(&J, 0, sizeof J);
    if (o->N < 2 || o->N > ((size_t)1 << 31))
        return plm_fail(ctx, PLM_EINVAL, "pgibbs: particles must be in 2..2^31 (got %zu)", o->N);
    if (T < 1) return plm_fail(ctx, PLM_EINVAL, "pgibbs: no observations (T = %ld)", T);
    if (o->chains < 1 || o->warmup < 0 || o->samples < 0 || o->param_moves < 1)
        return plm_fail(ctx, PLM_EINVAL, "pgibbs: need chains >= 1, warmup >= 0, samples >= 0 and param_moves >= 1");
    if (plm_draws_nchains(D) != o->chains)
        return plm_fail(ctx, PLM_EINVAL, "pgibbs: the results have %d chains, not %d", plm_draws_nchains(D), o->chains);
    if ((st = plm_ssm_prior_check(ctx, m, P))) return st;
    for (j = 0; j < m->np; j++) {
        int free_j = 0, q;
        for (q = 0; q < P->nfree; q++) free_j |= P->idx[q] == j;
        if (!free_j && isnan(m->params[j]))
            return plm_fail(ctx, PLM_EINVAL, "pgibbs: parameter %d has neither a value nor a prior", j + 1);
    }
    for (tt = 0; o->times && tt < o->ntimes; tt++)
        if (o->times[tt] < 1 || o->times[tt] > T)
            return plm_fail(ctx, PLM_EINVAL, "pgibbs: recorded time %ld is outside 1..%ld", o->times[tt], T);
    if (P->nfree && (st = plm_kernel_rwmh(ctx, o->target_accept, &k))) return st;
    J.m = m, J.T = T, J.ys = ys, J.P = P, J.o = o, J.k = k;
    J.times = o->times;
    J.ntimes = o->times ? o->ntimes : T;
    J.w = P->nfree + (int)(J.ntimes * m->dim) + (o->sweep ? o->sweep->K : 0) + 1 + (P->nfree > 0);
    if ((double)o->chains * (double)o->samples * J.w > 2e9)
        return plm_fail(ctx, PLM_EINVAL, "pgibbs: %d chains x %ld samples x %d columns is more than 2e9 values "
                        "(record fewer times)", o->chains, o->samples, J.w);
    /* chains in parallel, each sweep on one thread; a single chain spreads its sweeps' particles instead */
    J.inner_threads = o->chains > 1 && o->nthreads != 1 ? 1 : o->nthreads;
    J.vals = malloc(((size_t)o->chains * (size_t)o->samples * (size_t)J.w + 1) * sizeof *J.vals);
    J.kept = calloc((size_t)o->chains, sizeof *J.kept);
    J.changed = calloc((size_t)o->chains * (size_t)T, sizeof *J.changed);
    J.accept = calloc((size_t)o->chains, sizeof *J.accept);
    J.st = calloc((size_t)o->chains, sizeof *J.st);
    J.ctx = calloc((size_t)o->chains, sizeof *J.ctx);
    J.conj = calloc((size_t)o->chains * (size_t)P->nfree + 1, sizeof *J.conj);
    if (!J.vals || !J.kept || !J.changed || !J.accept || !J.st || !J.ctx || !J.conj) {
        st = plm_fail(ctx, PLM_ENOMEM, "pgibbs: out of memory");
        goto done;
    }
    if ((st = pg_columns(ctx, D, m, P, &J))) goto done;
    if (P->nfree && o->conjugate) {
        /* the derivative programs, built once here so that the chains' copies share them */
        double *gp = malloc(((size_t)m->np + 1) * sizeof *gp);
        plm_ctx c2;
        plm_ctx_clear(&c2);
        J.grad_ok = gp && !plm_ssm_logjoint_grad(&c2, (plm_ssm *)m, 0, NULL, NULL, gp, NULL);
        free(gp);
    }
    plm_parallel_for(o->chains > 1 ? o->nthreads : 1, (size_t)o->chains, 1, pg_worker, &J);
    /* every chain's draws go in, also when some failed or were interrupted */
    for (c = 0; c < o->chains; c++) {
        const double *row = J.vals + (size_t)c * (size_t)o->samples * (size_t)J.w;
        long i;
        for (i = 0; i < J.kept[c]; i++, row += J.w)
            if ((st = plm_draws_push(ctx, D, c, row, J.w, 0))) goto done;
    }
    for (c = 0; c < o->chains && P->nfree; c++)
        if ((st = plm_results_push(ctx, R, "accept_rate", J.accept[c]))) goto done;
    for (j = 0; j < P->nfree; j++) {   /* 1 when every chain drew parameter j from its conjugate conditional */
        int all = 1;
        for (c = 0; c < o->chains; c++) all &= J.conj[(size_t)c * (size_t)P->nfree + (size_t)j];
        if ((st = plm_results_push(ctx, R, "conjugate", all))) goto done;
    }
    for (tt = 0; tt < T; tt++) {
        long n = 0, s = 0;
        for (c = 0; c < o->chains; c++) s += J.changed[(size_t)c * (size_t)T + (size_t)tt], n += J.kept[c];
        if ((st = plm_results_push(ctx, R, "update_rate", n ? (double)s / (double)n : NAN))) goto done;
    }
    for (c = 0; c < o->chains; c++)
        if (J.st[c]) {
            st = J.st[c];
            memcpy(ctx->msg, J.ctx[c].msg, sizeof ctx->msg);
            ctx->status = st;
            break;
        }
done:
    free(J.vals);
    free(J.kept);
    free(J.changed);
    free(J.accept);
    free(J.st);
    free(J.ctx);
    free(J.conj);
    return st;
}
