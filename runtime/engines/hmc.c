/* hmc.c -- static HMC and NUTS with Stan's warm-up: dual averaging of the step size and windowed estimates
** of the inverse metric. The trajectory code follows the multinomial NUTS of Betancourt (2017), with the
** additional U-turn checks across subtrees that Stan added in 2.26. */
#include "hmc.h"

#include <gsl/gsl_blas.h>
#include <gsl/gsl_linalg.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Stan's defaults for dual averaging and the adaptation windows. */
#define DA_GAMMA 0.05
#define DA_T0 10.0
#define DA_KAPPA 0.75
#define INIT_BUFFER 75
#define TERM_BUFFER 50
#define BASE_WINDOW 25
/* an energy error beyond this marks a divergent trajectory (Stan's max_deltaH) */
#define MAX_DELTA_H 1000.0
/* a level of the recursion keeps both subtrees' momentum sums, the four boundary momenta (and sharps) it
** needs for the U-turn checks, a scratch sum, and the right subtree's proposal (q, p, g) */
#define LEVEL_VECS 10

typedef struct hmc_cfg {
    plm_hmc_opts o;
    int nuts;
} hmc_cfg;

/* A phase-space point: position, momentum, gradient and log density. */
typedef struct point {
    double *q, *p, *g;
    double lp;
} point;

typedef struct hmc_state {
    const hmc_cfg *cfg;
    int d, dense;
    double eps;
    int need_eps_init;
    double *minv;            /* inverse metric: d (diagonal) or d*d (dense, row-major) */
    double *chol;            /* dense: lower Cholesky factor of minv */
    /* dual averaging */
    double mu, sbar, xbar;
    long da_counter;
    /* windows, in warm-up iterations */
    long nwarm, init_buffer, term_buffer, base_window, win_counter, win_size, win_next;
    int metric_on;
    double wn, *wmean, *wm2; /* Welford: mean (d) and second moments (d or d*d) */
    /* the chain's current point with its gradient, kept between steps */
    point cur;
    int cur_valid;
    /* NUTS scratch: the trajectory's ends and the selected sample */
    point z, zf, zb, zs, zp;
    double *rho, *pf_b, *psf_b, *pf_f, *psf_f, *pb_f, *psb_f, *pb_b, *psb_b, *tmp, *rho_f, *rho_b, *dlt;
    double *lvl;             /* per depth level 1..max_depth: LEVEL_VECS vectors of d for the recursion */
    /* per-transition counters */
    long n_leapfrog;
    int divergent;
    double sum_metro;
    plm_ctx *ctx;
    plm_status err;
    const plm_target *t;
    void *ws;
} hmc_state;

static void hmc_free(void *p)
{
    hmc_state *s = p;
    if (!s) return;
    free(s->minv);
    free(s);
}

static void point_init(point *z, double **mem, int d)
{
    z->q = *mem, z->p = *mem + d, z->g = *mem + 2 * d;
    *mem += 3 * d;
    z->lp = -INFINITY;
}

static void point_copy(point *dst, const point *src, int d)
{
    memcpy(dst->q, src->q, (size_t)d * sizeof *dst->q);
    memcpy(dst->p, src->p, (size_t)d * sizeof *dst->p);
    memcpy(dst->g, src->g, (size_t)d * sizeof *dst->g);
    dst->lp = src->lp;
}

static void *hmc_new(const plm_kernel *k, const plm_target *t)
{
    const hmc_cfg *c = k->cfg;
    int d = t->dim, i, depth = c->o.max_depth > 0 ? c->o.max_depth : 10;
    size_t dm = c->o.dense ? (size_t)d * (size_t)d : (size_t)d, n;
    hmc_state *s = calloc(1, sizeof *s);
    double *m;
    if (!s) return NULL;
    /* minv, chol, wmean, wm2, 6 points, 13 trajectory vectors, LEVEL_VECS per depth level */
    n = 3 * dm + (size_t)d + 18 * (size_t)d + 13 * (size_t)d + LEVEL_VECS * (size_t)d * (size_t)(depth + 1);
    if (!(s->minv = calloc(n, sizeof *s->minv))) {
        free(s);
        return NULL;
    }
    s->cfg = c;
    s->d = d;
    s->dense = c->o.dense;
    s->chol = s->minv + dm;
    s->wmean = s->chol + dm;
    s->wm2 = s->wmean + d;
    m = s->wm2 + dm;
    point_init(&s->cur, &m, d);
    point_init(&s->z, &m, d);
    point_init(&s->zf, &m, d);
    point_init(&s->zb, &m, d);
    point_init(&s->zs, &m, d);
    point_init(&s->zp, &m, d);
    s->rho = m, s->pf_b = m + d, s->psf_b = m + 2 * d, s->pf_f = m + 3 * d, s->psf_f = m + 4 * d;
    s->pb_f = m + 5 * d, s->psb_f = m + 6 * d, s->pb_b = m + 7 * d, s->psb_b = m + 8 * d, s->tmp = m + 9 * d;
    s->rho_f = m + 10 * d, s->rho_b = m + 11 * d, s->dlt = m + 12 * d;
    s->lvl = m + 13 * d;
    for (i = 0; i < d; i++) {
        if (s->dense)
            s->minv[i * d + i] = s->chol[i * d + i] = 1;
        else
            s->minv[i] = 1;
    }
    s->eps = c->o.step_size > 0 ? c->o.step_size : 1;
    s->need_eps_init = 1;
    return s;
}

/* ---- the Hamiltonian with metric M (minv = M^-1) ---- */

static void sharp(const hmc_state *s, const double *p, double *out)   /* out = minv p */
{
    int i, j, d = s->d;
    if (!s->dense) {
        for (i = 0; i < d; i++) out[i] = s->minv[i] * p[i];
        return;
    }
    for (i = 0; i < d; i++) {
        double a = 0;
        for (j = 0; j < d; j++) a += s->minv[i * d + j] * p[j];
        out[i] = a;
    }
}

static double kinetic(hmc_state *s, const double *p)
{
    int i;
    double k = 0;
    sharp(s, p, s->tmp);
    for (i = 0; i < s->d; i++) k += p[i] * s->tmp[i];
    return 0.5 * k;
}

static double hamiltonian(hmc_state *s, const point *z)
{
    double h = -z->lp + kinetic(s, z->p);
    return isnan(h) ? INFINITY : h;
}

/* p ~ N(0, M): with minv = L L', p = L^-T xi has covariance L^-T L^-1 = M */
static void draw_momentum(hmc_state *s, point *z, plm_rng *r)
{
    int i, d = s->d;
    if (!s->dense) {
        for (i = 0; i < d; i++) z->p[i] = plm_rng_normal(r) / sqrt(s->minv[i]);
        return;
    }
    for (i = 0; i < d; i++) z->p[i] = plm_rng_normal(r);
    {
        gsl_matrix_view L = gsl_matrix_view_array(s->chol, (size_t)d, (size_t)d);
        gsl_vector_view v = gsl_vector_view_array(z->p, (size_t)d);
        gsl_blas_dtrsv(CblasLower, CblasTrans, CblasNonUnit, &L.matrix, &v.vector);
    }
}

static void evaluate(hmc_state *s, point *z)
{
    z->lp = s->t->ops->logp_grad(s->t, s->ws, z->q, z->g);
    if (z->lp == INFINITY && !s->err)
        s->err = plm_fail(s->ctx, PLM_EDOM, "nuts: the %s target's log density is +inf at a point of the trajectory",
                          s->t->ops->name);
}

static void leapfrog(hmc_state *s, point *z, double eps)
{
    int i, d = s->d;
    for (i = 0; i < d; i++) z->p[i] += 0.5 * eps * z->g[i];
    sharp(s, z->p, s->tmp);
    for (i = 0; i < d; i++) z->q[i] += eps * s->tmp[i];
    evaluate(s, z);
    for (i = 0; i < d; i++) z->p[i] += 0.5 * eps * z->g[i];
}

/* Stan's heuristic: double or halve eps until one leapfrog step's acceptance crosses 0.8. */
static plm_status init_stepsize(hmc_state *s, plm_rng *r)
{
    point *z = &s->z;
    double h0, dh;
    int direction, i;
    point_copy(z, &s->cur, s->d);
    draw_momentum(s, z, r);
    h0 = hamiltonian(s, z);
    leapfrog(s, z, s->eps);
    dh = h0 - hamiltonian(s, z);
    direction = dh > log(0.8) ? 1 : -1;
    for (i = 0; i < 200; i++) {
        point_copy(z, &s->cur, s->d);
        draw_momentum(s, z, r);
        h0 = hamiltonian(s, z);
        leapfrog(s, z, s->eps);
        dh = h0 - hamiltonian(s, z);
        if ((direction == 1 && !(dh > log(0.8))) || (direction == -1 && !(dh < log(0.8)))) break;
        s->eps = direction == 1 ? 2 * s->eps : 0.5 * s->eps;
        if (s->eps > 1e7)
            return plm_fail(s->ctx, PLM_EDOM, "nuts: the step size grew past 1e7 (is the %s target improper?)",
                            s->t->ops->name);
        if (s->eps < 1e-300) return plm_fail(s->ctx, PLM_EDOM, "nuts: the step size fell to 0 (is the gradient right?)");
    }
    s->mu = log(10 * s->eps);
    s->sbar = s->xbar = 0;
    s->da_counter = 0;
    return s->err;
}

/* ---- NUTS ---- */

static double logaddexp(double a, double b)
{
    if (a == -INFINITY) return b;
    if (b == -INFINITY) return a;
    return a > b ? a + log1p(exp(b - a)) : b + log1p(exp(a - b));
}

/* Both ends of a trajectory segment still move apart along rho (Betancourt's generalised criterion). */
static int no_uturn(const hmc_state *s, const double *psharp_minus, const double *psharp_plus, const double *rho)
{
    int i;
    double a = 0, b = 0;
    for (i = 0; i < s->d; i++) a += psharp_plus[i] * rho[i], b += psharp_minus[i] * rho[i];
    return a > 0 && b > 0;
}

/* Extend the trajectory from s->z by 2^depth leapfrog steps in direction sign (s->z moves to the new end).
** Multinomial sampling puts one of the new states in *zprop with probability proportional to its weight;
** *lsw accumulates the log of the new states' total weight, rho their momenta; ps_beg/ps_end and
** p_beg/p_end receive the first and last momenta (sharp and plain) in the direction of travel. Returns 0
** when the new states U-turn or diverge (the caller then stops and ignores them). */
static int build_tree(hmc_state *s, int depth, point *zprop, double *ps_beg, double *ps_end, double *rho,
                      double *p_beg, double *p_end, double h0, double sign, double *lsw, plm_rng *r)
{
    int d = s->d, i;
    double *L, *rho_l, *rho_r, *ps_lend, *p_lend, *ps_rbeg, *p_rbeg, *rsub, lsw_l = -INFINITY, lsw_r = -INFINITY, lsw_sub;
    point zr;
    if (depth == 0) {
        double h, dh;
        leapfrog(s, &s->z, sign * s->eps);
        s->n_leapfrog++;
        h = hamiltonian(s, &s->z);
        if (h - h0 > MAX_DELTA_H) s->divergent = 1;
        dh = h0 - h;
        *lsw = logaddexp(*lsw, dh);
        s->sum_metro += dh > 0 ? 1 : exp(dh);
        point_copy(zprop, &s->z, d);
        sharp(s, s->z.p, ps_beg);
        memcpy(ps_end, ps_beg, (size_t)d * sizeof *ps_end);
        for (i = 0; i < d; i++) rho[i] += s->z.p[i];
        memcpy(p_beg, s->z.p, (size_t)d * sizeof *p_beg);
        memcpy(p_end, s->z.p, (size_t)d * sizeof *p_end);
        return !s->divergent && !s->err;
    }
    L = s->lvl + (size_t)LEVEL_VECS * (size_t)d * (size_t)depth;
    rho_l = L, rho_r = L + d, ps_lend = L + 2 * d, p_lend = L + 3 * d, ps_rbeg = L + 4 * d, p_rbeg = L + 5 * d;
    rsub = L + 6 * d;
    zr.q = L + 7 * d, zr.p = L + 8 * d, zr.g = L + 9 * d;
    memset(rho_l, 0, (size_t)2 * (size_t)d * sizeof *rho_l);
    if (!build_tree(s, depth - 1, zprop, ps_beg, ps_lend, rho_l, p_beg, p_lend, h0, sign, &lsw_l, r)) return 0;
    if (!build_tree(s, depth - 1, &zr, ps_rbeg, ps_end, rho_r, p_rbeg, p_end, h0, sign, &lsw_r, r)) return 0;
    lsw_sub = logaddexp(lsw_l, lsw_r);
    *lsw = logaddexp(*lsw, lsw_sub);
    /* inside a subtree the choice is plain multinomial: the right half wins with its share of the weight */
    if (plm_rng_uniform(r) < exp(lsw_r - lsw_sub)) point_copy(zprop, &zr, d);
    for (i = 0; i < d; i++) rsub[i] = rho_l[i] + rho_r[i], rho[i] += rsub[i];
    if (!no_uturn(s, ps_beg, ps_end, rsub)) return 0;
    /* Stan's extra checks: each half together with the neighbouring state of the other half, which catch
    ** U-turns that the whole-subtree check misses for targets with very different scales */
    for (i = 0; i < d; i++) rsub[i] = rho_l[i] + p_rbeg[i];
    if (!no_uturn(s, ps_beg, ps_rbeg, rsub)) return 0;
    for (i = 0; i < d; i++) rsub[i] = rho_r[i] + p_lend[i];
    return no_uturn(s, ps_lend, ps_end, rsub);
}

static void nuts_transition(hmc_state *s, plm_rng *r, int max_depth, double *depth_out)
{
    int d = s->d, depth = 0, i;
    double h0, lsw = 0, *rho_f = s->rho_f, *rho_b = s->rho_b;
    point_copy(&s->zs, &s->cur, d);
    draw_momentum(s, &s->zs, r);
    point_copy(&s->zf, &s->zs, d);
    point_copy(&s->zb, &s->zs, d);
    h0 = hamiltonian(s, &s->zs);
    sharp(s, s->zs.p, s->psf_b);
    memcpy(s->psf_f, s->psf_b, (size_t)d * sizeof *s->psf_f);
    memcpy(s->psb_f, s->psf_b, (size_t)d * sizeof *s->psf_f);
    memcpy(s->psb_b, s->psf_b, (size_t)d * sizeof *s->psf_f);
    memcpy(s->pf_b, s->zs.p, (size_t)d * sizeof *s->pf_b);
    memcpy(s->pf_f, s->zs.p, (size_t)d * sizeof *s->pf_b);
    memcpy(s->pb_f, s->zs.p, (size_t)d * sizeof *s->pf_b);
    memcpy(s->pb_b, s->zs.p, (size_t)d * sizeof *s->pf_b);
    memcpy(s->rho, s->zs.p, (size_t)d * sizeof *s->rho);
    s->n_leapfrog = 0, s->divergent = 0, s->sum_metro = 0;
    while (depth < max_depth) {
        double lsw_sub = -INFINITY;
        int valid, persist;
        memset(rho_f, 0, (size_t)d * sizeof *rho_f);
        memset(rho_b, 0, (size_t)d * sizeof *rho_b);
        /* the old trajectory becomes one subtree of the new: its inner end (the forward end when extending
        ** forward) is what the checks between subtrees compare with the new subtree's first state. Taking the
        ** previous new subtree's first state instead makes the criterion depend on the order the trajectory
        ** was built in, which breaks reversibility: variances came out 10% high on a correlated Gaussian. */
        if (plm_rng_uniform(r) > 0.5) {
            memcpy(rho_b, s->rho, (size_t)d * sizeof *rho_b);
            memcpy(s->pb_f, s->pf_f, (size_t)d * sizeof *s->pb_f);
            memcpy(s->psb_f, s->psf_f, (size_t)d * sizeof *s->psb_f);
            point_copy(&s->z, &s->zf, d);
            valid = build_tree(s, depth, &s->zp, s->psf_b, s->psf_f, rho_f, s->pf_b, s->pf_f, h0, 1, &lsw_sub, r);
            point_copy(&s->zf, &s->z, d);
        } else {
            memcpy(rho_f, s->rho, (size_t)d * sizeof *rho_f);
            memcpy(s->pf_b, s->pb_b, (size_t)d * sizeof *s->pf_b);
            memcpy(s->psf_b, s->psb_b, (size_t)d * sizeof *s->psf_b);
            point_copy(&s->z, &s->zb, d);
            valid = build_tree(s, depth, &s->zp, s->psb_f, s->psb_b, rho_b, s->pb_f, s->pb_b, h0, -1, &lsw_sub, r);
            point_copy(&s->zb, &s->z, d);
        }
        if (!valid) break;
        depth++;
        /* biased progressive sampling at the top level favours the newer, farther subtree (Betancourt) */
        if (lsw_sub > lsw || plm_rng_uniform(r) < exp(lsw_sub - lsw)) point_copy(&s->zs, &s->zp, d);
        lsw = logaddexp(lsw, lsw_sub);
        for (i = 0; i < d; i++) s->rho[i] = rho_b[i] + rho_f[i];
        persist = no_uturn(s, s->psb_b, s->psf_f, s->rho);
        for (i = 0; i < d; i++) s->tmp[i] = rho_b[i] + s->pf_b[i];
        persist = persist && no_uturn(s, s->psb_b, s->psf_b, s->tmp);
        for (i = 0; i < d; i++) s->tmp[i] = rho_f[i] + s->pb_f[i];
        persist = persist && no_uturn(s, s->psb_f, s->psf_f, s->tmp);
        if (!persist) break;
    }
    point_copy(&s->cur, &s->zs, d);
    *depth_out = depth;
}

/* ---- warm-up: dual averaging and metric windows ---- */

static void windows_init(hmc_state *s, long nwarm)
{
    s->nwarm = nwarm;
    s->init_buffer = INIT_BUFFER, s->term_buffer = TERM_BUFFER, s->base_window = BASE_WINDOW;
    s->metric_on = nwarm >= 20;
    if (s->init_buffer + s->base_window + s->term_buffer > nwarm) {
        s->init_buffer = (long)(0.15 * (double)nwarm);
        s->term_buffer = (long)(0.1 * (double)nwarm);
        s->base_window = nwarm - (s->init_buffer + s->term_buffer);
    }
    s->win_counter = 0;
    s->win_size = s->base_window;
    s->win_next = s->init_buffer + s->win_size - 1;
}

static void next_window(hmc_state *s)
{
    long last = s->nwarm - s->term_buffer - 1;
    if (s->win_next == last) return;
    s->win_size *= 2;
    s->win_next = s->win_counter + s->win_size;
    /* a window that would leave too short a remainder absorbs it */
    if (s->win_next != last && s->win_next + 2 * s->win_size >= s->nwarm - s->term_buffer) s->win_next = last;
}

/* The regularised estimate of Stan: shrink toward 1e-3 I with the weight of 5 pseudo-draws. */
static int metric_update(hmc_state *s)
{
    int i, j, d = s->d;
    double n = s->wn, w = n / (n + 5), reg = 1e-3 * (5 / (n + 5));
    if (!s->dense) {
        for (i = 0; i < d; i++) s->minv[i] = w * s->wm2[i] / (n - 1) + reg;
    } else {
        gsl_matrix_view L = gsl_matrix_view_array(s->chol, (size_t)d, (size_t)d);
        for (i = 0; i < d; i++)
            for (j = 0; j < d; j++) s->minv[i * d + j] = w * s->wm2[i * d + j] / (n - 1) + (i == j ? reg : 0);
        memcpy(s->chol, s->minv, (size_t)d * (size_t)d * sizeof *s->chol);
        if (gsl_linalg_cholesky_decomp1(&L.matrix) != GSL_SUCCESS) {
            /* not positive definite (cannot happen with the ridge above unless draws are NaN): keep identity */
            memset(s->minv, 0, (size_t)d * (size_t)d * sizeof *s->minv);
            memset(s->chol, 0, (size_t)d * (size_t)d * sizeof *s->chol);
            for (i = 0; i < d; i++) s->minv[i * d + i] = s->chol[i * d + i] = 1;
        }
        for (i = 0; i < d; i++)
            for (j = i + 1; j < d; j++) s->chol[i * d + j] = 0;
    }
    memset(s->wmean, 0, (size_t)d * sizeof *s->wmean);
    memset(s->wm2, 0, (s->dense ? (size_t)d * (size_t)d : (size_t)d) * sizeof *s->wm2);
    s->wn = 0;
    return 1;
}

static void hmc_adapt(const plm_kernel *k, void *p, long it, long nwarm, const double *u, double stat)
{
    hmc_state *s = p;
    const hmc_cfg *c = k->cfg;
    double delta = c->o.delta > 0 ? c->o.delta : 0.8, eta, x, xeta;
    int i, j, d = s->d;
    if (it == 0) windows_init(s, nwarm);
    /* dual averaging (Hoffman and Gelman 2014, algorithm 5, Stan's constants) */
    s->da_counter++;
    if (stat > 1) stat = 1;
    eta = 1.0 / ((double)s->da_counter + DA_T0);
    s->sbar = (1 - eta) * s->sbar + eta * (delta - stat);
    x = s->mu - s->sbar * sqrt((double)s->da_counter) / DA_GAMMA;
    xeta = pow((double)s->da_counter, -DA_KAPPA);
    s->xbar = (1 - xeta) * s->xbar + xeta * x;
    s->eps = exp(x);
    if (s->metric_on) {
        long cnt = s->win_counter;
        if (cnt >= s->init_buffer && cnt < nwarm - s->term_buffer && cnt != nwarm) {
            double *dlt = s->dlt;   /* deltas before the mean update */
            s->wn += 1;
            for (i = 0; i < d; i++) {
                dlt[i] = u[i] - s->wmean[i];
                s->wmean[i] += dlt[i] / s->wn;
            }
            if (!s->dense)
                for (i = 0; i < d; i++) s->wm2[i] += dlt[i] * (u[i] - s->wmean[i]);
            else
                for (i = 0; i < d; i++)
                    for (j = 0; j < d; j++) s->wm2[i * d + j] += dlt[i] * (u[j] - s->wmean[j]);
        }
        if (cnt == s->win_next && cnt != nwarm) {
            next_window(s);
            if (s->wn >= 3) metric_update(s);
            /* a new metric needs a new step size: re-run the heuristic and restart dual averaging */
            s->need_eps_init = 1;
        }
        s->win_counter++;
    }
    if (it == nwarm - 1) s->eps = exp(s->xbar);
}

/* ---- the kernels ---- */

static const char *const nuts_names[] = {"stepsize__", "treedepth__", "n_leapfrog__", "divergent__", "energy__"};
static const char *const hmc_names[] = {"stepsize__", "n_leapfrog__", "divergent__", "energy__"};

static plm_status hmc_step(const plm_kernel *k, void *p, plm_ctx *ctx, const plm_target *t, void *ws, plm_rng *r,
                           double *u, double *lp, double *stat, double *extra)
{
    hmc_state *s = p;
    const hmc_cfg *c = k->cfg;
    int d = s->d;
    s->ctx = ctx, s->t = t, s->ws = ws, s->err = PLM_OK;
    if (!t->ops->logp_grad)
        return plm_fail(ctx, PLM_ENOTSUP, "%s: the %s target has no gradient", c->nuts ? "nuts" : "hmc", t->ops->name);
    /* the cached point (log density, gradient) is reused only when both u and *lp match it: a kernel
    ** restricted to a block (kernel_compose.h) sees the same u after other kernels moved the other
    ** coordinates, and then *lp differs (equal to the last bit only by accident of measure zero) */
    if (!s->cur_valid || *lp != s->cur.lp || memcmp(s->cur.q, u, (size_t)d * sizeof *u) != 0) {
        memcpy(s->cur.q, u, (size_t)d * sizeof *u);
        evaluate(s, &s->cur);
        if (s->err) return s->err;
        if (isnan(s->cur.lp)) return plm_fail(ctx, PLM_EDOM, "%s: the log density is NaN at the chain's point", c->nuts ? "nuts" : "hmc");
        s->cur_valid = 1;
    }
    if (s->need_eps_init) {
        plm_status st = init_stepsize(s, r);
        s->need_eps_init = 0;
        if (st) return st;
    }
    if (c->nuts) {
        double depth;
        nuts_transition(s, r, c->o.max_depth > 0 ? c->o.max_depth : 10, &depth);
        extra[0] = s->eps, extra[1] = depth, extra[2] = (double)s->n_leapfrog, extra[3] = s->divergent;
        extra[4] = hamiltonian(s, &s->cur);
        *stat = s->n_leapfrog ? s->sum_metro / (double)s->n_leapfrog : 0;
    } else {
        int i, L = c->o.steps > 0 ? c->o.steps : 10;
        double h0, h, a;
        /* a fixed trajectory length can match a period of the dynamics (a whole orbit of a Gaussian) and
        ** stall the chain; a length drawn afresh each iteration, independent of the state, keeps the kernel
        ** reversible and breaks the resonance */
        L = 1 + (int)plm_rng_uint(r, (uint64_t)L);
        point_copy(&s->z, &s->cur, d);
        draw_momentum(s, &s->z, r);
        h0 = hamiltonian(s, &s->z);
        s->divergent = 0;
        for (i = 0; i < L && !s->err; i++) leapfrog(s, &s->z, s->eps);
        h = hamiltonian(s, &s->z);
        if (h - h0 > MAX_DELTA_H) s->divergent = 1;
        a = h0 - h >= 0 ? 1 : exp(h0 - h);
        *stat = a;
        if (plm_rng_uniform(r) < a) point_copy(&s->cur, &s->z, d);
        extra[0] = s->eps, extra[1] = L, extra[2] = s->divergent, extra[3] = hamiltonian(s, &s->cur);
    }
    if (s->err) return s->err;
    memcpy(u, s->cur.q, (size_t)d * sizeof *u);
    *lp = s->cur.lp;
    return PLM_OK;
}

static const plm_kernel_ops nuts_ops = {"nuts", 5, nuts_names, hmc_new, hmc_free, hmc_step, hmc_adapt};
static const plm_kernel_ops hmc_ops = {"hmc", 4, hmc_names, hmc_new, hmc_free, hmc_step, hmc_adapt};

static plm_status make(plm_ctx *ctx, const plm_hmc_opts *o, int nuts, plm_kernel **out)
{
    plm_kernel *k;
    hmc_cfg *c;
    plm_hmc_opts def = {0, 0, 0, 0, 0};
    const char *who = nuts ? "nuts" : "hmc";
    *out = NULL;
    if (!o) o = &def;
    if (!(o->delta == 0 || (o->delta > 0 && o->delta < 1)))
        return plm_fail(ctx, PLM_EINVAL, "%s: delta must be in (0, 1) (got %g)", who, o->delta);
    if (o->max_depth < 0 || o->max_depth > 30)
        return plm_fail(ctx, PLM_EINVAL, "%s: max_depth must be in 1..30 (got %d)", who, o->max_depth);
    if (!(o->step_size >= 0 && o->step_size < INFINITY))
        return plm_fail(ctx, PLM_EINVAL, "%s: step_size must be > 0 and finite (got %g)", who, o->step_size);
    if (o->steps < 0 || o->steps > 100000)
        return plm_fail(ctx, PLM_EINVAL, "%s: steps must be in 1..100000 (got %d)", who, o->steps);
    k = plm_gc_alloc(sizeof *k);
    c = plm_gc_alloc_atomic(sizeof *c);
    if (!k || !c) return plm_fail(ctx, PLM_ENOMEM, "%s: out of memory", who);
    c->o = *o;
    c->nuts = nuts;
    k->ops = nuts ? &nuts_ops : &hmc_ops;
    k->cfg = c;
    *out = k;
    return PLM_OK;
}

plm_status plm_kernel_nuts(plm_ctx *ctx, const plm_hmc_opts *o, plm_kernel **out) { return make(ctx, o, 1, out); }
plm_status plm_kernel_hmc(plm_ctx *ctx, const plm_hmc_opts *o, plm_kernel **out) { return make(ctx, o, 0, out); }
