/* ssm.c -- state-space model kernels: compile the traced pieces once, then bind the current parameters,
** time and covariates as uniform inputs and run the programs over particle blocks. */
#include "ssm.h"

#include "par.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define X_BIT (1u << PLM_GRP_X)
#define Z_BIT (1u << PLM_GRP_Z)

plm_status plm_ssm_new(plm_ctx *ctx, const plm_ssm_spec *s, plm_ssm **out)
{
    plm_ssm *m = plm_gc_alloc(sizeof *m);
    plm_status st;
    int i;
    if (!m) return plm_fail(ctx, PLM_ENOMEM, "ssm: out of memory");
    if (s->dim < 1 || s->ydim < 1 || s->dim > 64 || s->ydim > 64 || s->np < 0 || s->ncov < 0)
        return plm_fail(ctx, PLM_EINVAL, "ssm: dim and ydim must be in 1..64 (got %d and %d)", s->dim, s->ydim);
    m->g = s->g;
    m->init_lp = s->init_lp;
    m->trans_lp = s->trans_lp;
    m->obs_lp = s->obs_lp;
    m->dim = s->dim;
    m->ydim = s->ydim;
    m->np = s->np;
    m->ncov = s->ncov;
    m->params = plm_gc_alloc_atomic((size_t)(s->np + 1) * sizeof(double));
    m->cov_col = plm_gc_alloc_atomic((size_t)(s->ncov + 1) * sizeof(int));
    m->cov_lag = plm_gc_alloc_atomic((size_t)(s->ncov + 1) * sizeof(int));
    if (!m->params || !m->cov_col || !m->cov_lag) return plm_fail(ctx, PLM_ENOMEM, "ssm: out of memory");
    for (i = 0; i < s->np; i++) m->params[i] = NAN;
    for (i = 0; i < s->ncov; i++) {
        m->cov_col[i] = s->cov_col[i];
        m->cov_lag[i] = s->cov_lag[i];
    }
    if ((st = plm_prog_compile(ctx, s->g, s->dim, s->init_x, 0, &m->init_sample)) ||
        (st = plm_prog_compile(ctx, s->g, 1, &s->init_lp, Z_BIT, &m->init_logpdf)) ||
        (st = plm_prog_compile(ctx, s->g, s->dim, s->trans_x, X_BIT, &m->trans_sample)) ||
        (st = plm_prog_compile(ctx, s->g, 1, &s->trans_lp, X_BIT | Z_BIT, &m->trans_logpdf)) ||
        (st = plm_prog_compile(ctx, s->g, s->ydim, s->obs_y, X_BIT, &m->obs_sample)) ||
        (st = plm_prog_compile(ctx, s->g, 1, &s->obs_lp, X_BIT, &m->obs_logpdf)))
        return st;
    {
        int *o = malloc((size_t)(s->dim + 1) * sizeof *o);
        if (!o) return plm_fail(ctx, PLM_ENOMEM, "ssm: out of memory");
        memcpy(o, s->init_x, (size_t)s->dim * sizeof *o);
        o[s->dim] = s->boot1_lw;
        st = plm_prog_compile(ctx, s->g, s->dim + 1, o, 0, &m->boot1);
        if (!st) {
            memcpy(o, s->trans_x, (size_t)s->dim * sizeof *o);
            o[s->dim] = s->boot_lw;
            st = plm_prog_compile(ctx, s->g, s->dim + 1, o, X_BIT, &m->boot);
        }
        free(o);
        if (st) return st;
    }
    if (s->prop_x) {
        int *o = malloc((size_t)(s->dim + 1) * sizeof *o);
        if (!o) return plm_fail(ctx, PLM_ENOMEM, "ssm: out of memory");
        memcpy(o, s->prop_x, (size_t)s->dim * sizeof *o);
        o[s->dim] = s->prop_lq;
        st = plm_prog_compile(ctx, s->g, s->dim + 1, o, X_BIT, &m->prop_sample);
        if (!st) {
            o[s->dim] = s->prop_lw;
            st = plm_prog_compile(ctx, s->g, s->dim + 1, o, X_BIT, &m->guided);
        }
        free(o);
        if (st || (st = plm_prog_compile(ctx, s->g, 1, &s->prop_lp, X_BIT | Z_BIT, &m->prop_logpdf))) return st;
    }
    *out = m;
    return PLM_OK;
}

void plm_ssm_set_data(plm_ssm *m, const double *data, int ncols, size_t T)
{
    m->data = data;
    m->ncols = ncols;
    m->T_data = T;
}

plm_status plm_ssm_bind(plm_ctx *ctx, const plm_ssm *m, const plm_prog *p, long t, double *tc, plm_prog_in *in)
{
    int s;
    memset(in, 0, PLM_NGROUPS * sizeof *in);
    in[PLM_GRP_P].p = m->params;
    tc[0] = (double)t;
    in[PLM_GRP_T].p = tc;
    for (s = 0; s < m->ncov; s++) {
        long tt = t + m->cov_lag[s];
        if (!m->data || m->cov_col[s] >= m->ncols || tt < 1 || (size_t)tt > m->T_data) {
            tc[1 + s] = NAN;
            if (!plm_prog_uses(p, PLM_GRP_C, s)) continue;
            return plm_fail(ctx, PLM_EDOM, "ssm: covariate %d is read at time %ld, outside the data (1..%zu)",
                            m->cov_col[s] + 1, tt, m->data ? m->T_data : (size_t)0);
        }
        tc[1 + s] = m->data[(size_t)m->cov_col[s] * m->T_data + (size_t)(tt - 1)];
    }
    in[PLM_GRP_C].p = tc + 1;
    return PLM_OK;
}

#define MAXOUT 65   /* dim, ydim <= 64, plus a weight */

/* Output pointers for a component-major array. */
static void outs(double *x, size_t ld, int k, double **o)
{
    int i;
    for (i = 0; i < k; i++) o[i] = x + (size_t)i * ld;
}

#define TC_DECL double tcb[64], *tc = m->ncov < 63 ? tcb : malloc((size_t)(m->ncov + 1) * sizeof *tc)
#define TC_FREE if (tc != tcb) free(tc)

static plm_status run(plm_ctx *ctx, const plm_ssm *m, const plm_prog *p, long t, size_t n, plm_prog_in *extra,
                      double *const *out, plm_rng *rng, int nthreads)
{
    plm_prog_in in[PLM_NGROUPS];
    plm_status st;
    int g;
    TC_DECL;
    if (!tc) return plm_fail(ctx, PLM_ENOMEM, "ssm: out of memory");
    st = plm_ssm_bind(ctx, m, p, t, tc, in);
    if (!st) {
        for (g = PLM_GRP_X; g < PLM_NGROUPS; g++)
            if (extra[g].p) in[g] = extra[g];
        st = plm_prog_eval(ctx, p, n, in, out, rng, nthreads);
    }
    TC_FREE;
    return st;
}

static plm_status run_into(plm_ctx *ctx, const plm_ssm *m, const plm_prog *p, long t, size_t n, plm_prog_in *extra,
                           double *x, size_t ld, int k, plm_rng *rng, int nthreads)
{
    double *o[MAXOUT];
    outs(x, ld, k, o);
    return run(ctx, m, p, t, n, extra, o, rng, nthreads);
}

plm_status plm_ssm_init_sample(plm_ctx *ctx, const plm_ssm *m, size_t n, double *x, size_t ld, plm_rng *rng,
                               int nthreads)
{
    plm_prog_in ex[PLM_NGROUPS] = {{0}};
    return run_into(ctx, m, m->init_sample, 1, n, ex, x, ld, m->dim, rng, nthreads);
}

plm_status plm_ssm_trans_sample(plm_ctx *ctx, const plm_ssm *m, long t, size_t n, const double *xprev,
                                double *xnew, size_t ld, plm_rng *rng, int nthreads)
{
    plm_prog_in ex[PLM_NGROUPS] = {{0}};
    ex[PLM_GRP_X].p = xprev;
    ex[PLM_GRP_X].ld = ld;
    return run_into(ctx, m, m->trans_sample, t, n, ex, xnew, ld, m->dim, rng, nthreads);
}

plm_status plm_ssm_obs_logpdf(plm_ctx *ctx, const plm_ssm *m, long t, size_t n, const double *x, size_t ld,
                              const double *y, double *out, int nthreads)
{
    plm_prog_in ex[PLM_NGROUPS] = {{0}};
    ex[PLM_GRP_X].p = x;
    ex[PLM_GRP_X].ld = ld;
    ex[PLM_GRP_Y].p = y;
    return run(ctx, m, m->obs_logpdf, t, n, ex, &out, NULL, nthreads);
}

plm_status plm_ssm_obs_sample(plm_ctx *ctx, const plm_ssm *m, long t, size_t n, const double *x, size_t ld,
                              double *y, size_t ldy, plm_rng *rng, int nthreads)
{
    plm_prog_in ex[PLM_NGROUPS] = {{0}};
    ex[PLM_GRP_X].p = x;
    ex[PLM_GRP_X].ld = ld;
    return run_into(ctx, m, m->obs_sample, t, n, ex, y, ldy, m->ydim, rng, nthreads);
}

plm_status plm_ssm_trans_logpdf(plm_ctx *ctx, const plm_ssm *m, long t, size_t n, const double *xprev,
                                const double *xnew, size_t ld, double *out, int nthreads)
{
    plm_prog_in ex[PLM_NGROUPS] = {{0}};
    ex[PLM_GRP_X].p = xprev;
    ex[PLM_GRP_X].ld = ld;
    ex[PLM_GRP_Z].p = xnew;
    ex[PLM_GRP_Z].ld = ld;
    return run(ctx, m, t <= 1 ? m->init_logpdf : m->trans_logpdf, t, n, ex, &out, NULL, nthreads);
}

plm_status plm_ssm_prop_sample(plm_ctx *ctx, const plm_ssm *m, long t, size_t n, const double *xprev,
                               const double *y, double *xnew, size_t ld, double *logq, plm_rng *rng, int nthreads)
{
    plm_prog_in ex[PLM_NGROUPS] = {{0}};
    double *o[MAXOUT];
    plm_status st;
    if (!m->prop_sample) return plm_fail(ctx, PLM_EINVAL, "ssm: the model has no proposal");
    outs(xnew, ld, m->dim, o);
    o[m->dim] = logq;
    ex[PLM_GRP_X].p = xprev;
    ex[PLM_GRP_X].ld = ld;
    ex[PLM_GRP_Y].p = y;
    st = run(ctx, m, m->prop_sample, t, n, ex, o, rng, nthreads);
    return st;
}

plm_status plm_ssm_step(plm_ctx *ctx, const plm_ssm *m, long t, size_t n, const double *xprev, const double *y,
                        double *xnew, size_t ld, double *logw, plm_rng *rng, int nthreads)
{
    plm_prog_in ex[PLM_NGROUPS] = {{0}};
    double *o[MAXOUT];
    plm_status st;
    outs(xnew, ld, m->dim, o);
    o[m->dim] = logw;
    ex[PLM_GRP_X].p = xprev;
    ex[PLM_GRP_X].ld = ld;
    ex[PLM_GRP_Y].p = y;
    st = run(ctx, m, t <= 1 ? m->boot1 : m->boot, t, n, ex, o, rng, nthreads);
    return st;
}

plm_status plm_ssm_step_guided(plm_ctx *ctx, const plm_ssm *m, long t, size_t n, const double *xprev,
                               const double *y, double *xnew, size_t ld, double *logw, plm_rng *rng, int nthreads)
{
    plm_prog_in ex[PLM_NGROUPS] = {{0}};
    double *o[MAXOUT];
    if (!m->guided) return plm_fail(ctx, PLM_EINVAL, "ssm: the model has no proposal");
    if (t < 2) return plm_fail(ctx, PLM_EINVAL, "ssm: the guided step starts at t = 2 (got t = %ld)", t);
    outs(xnew, ld, m->dim, o);
    o[m->dim] = logw;
    ex[PLM_GRP_X].p = xprev;
    ex[PLM_GRP_X].ld = ld;
    ex[PLM_GRP_Y].p = y;
    return run(ctx, m, m->guided, t, n, ex, o, rng, nthreads);
}

plm_status plm_ssm_prop_logpdf(plm_ctx *ctx, const plm_ssm *m, long t, size_t n, const double *xprev,
                               const double *y, const double *xnew, size_t ld, double *out, int nthreads)
{
    plm_prog_in ex[PLM_NGROUPS] = {{0}};
    if (!m->prop_logpdf) return plm_fail(ctx, PLM_EINVAL, "ssm: the model has no proposal");
    ex[PLM_GRP_X].p = xprev;
    ex[PLM_GRP_X].ld = ld;
    ex[PLM_GRP_Y].p = y;
    ex[PLM_GRP_Z].p = xnew;
    ex[PLM_GRP_Z].ld = ld;
    return run(ctx, m, m->prop_logpdf, t, n, ex, &out, NULL, nthreads);
}

static plm_status check_finite(plm_ctx *ctx, const double *x, size_t count, size_t n, long t, const char *what)
{
    size_t i;
    for (i = 0; i < count; i++)
        if (isnan(x[i]))
            return plm_failm(ctx, PLM_EDOM, "ssm", "%s is NaN at t=%ld (particle %zu): check the parameters", what,
                            t, i % n + 1);
    return PLM_OK;
}

/* Simulation runs each block of paths through all T steps (its state stays in cache, and threads meet once,
** not at every step); the covariate bindings were checked by the caller, so workers bind without a ctx. */
typedef struct sim_job {
    const plm_ssm *m;
    long T;
    size_t n;
    double *xs, *ys;
    plm_rng *rng;
    int failed;   /* 1: memory, 2: interrupted */
} sim_job;

static void sim_blocks(void *arg, size_t b0, size_t b1, int worker)
{
    sim_job *J = arg;
    const plm_ssm *m = J->m;
    size_t n = J->n, b, dx = (size_t)m->dim * n, dy = (size_t)m->ydim * n;
    plm_prog_ws wi, wt, wo;
    plm_prog_in in[PLM_NGROUPS];
    double *o[MAXOUT], *tc = malloc(((size_t)m->ncov + 1) * sizeof *tc);
    long t;
    (void)worker;
    if (!tc || plm_prog_ws_init(NULL, &wi, m->init_sample)) {
        free(tc);
        J->failed = 1;
        return;
    }
    if (plm_prog_ws_init(NULL, &wt, m->trans_sample)) {
        plm_prog_ws_free(&wi);
        free(tc);
        J->failed = 1;
        return;
    }
    if (plm_prog_ws_init(NULL, &wo, m->obs_sample)) {
        plm_prog_ws_free(&wi);
        plm_prog_ws_free(&wt);
        free(tc);
        J->failed = 1;
        return;
    }
    for (b = b0; b < b1 && !J->failed; b++) {
        size_t first = b * PLM_EXPR_BLOCK, mm = n - first < PLM_EXPR_BLOCK ? n - first : PLM_EXPR_BLOCK;
        for (t = 1; t <= J->T; t++) {
            double *x = J->xs + (size_t)(t - 1) * dx;
            if (t == 1) {
                plm_ssm_bind(NULL, m, m->init_sample, t, tc, in);
                plm_prog_uniforms(&wi, in);
                outs(x, n, m->dim, o);
                plm_prog_block(&wi, in, first, mm, o, J->rng);
            } else {
                plm_ssm_bind(NULL, m, m->trans_sample, t, tc, in);
                in[PLM_GRP_X].p = x - dx;
                in[PLM_GRP_X].ld = n;
                plm_prog_uniforms(&wt, in);
                outs(x, n, m->dim, o);
                plm_prog_block(&wt, in, first, mm, o, J->rng);
            }
            plm_ssm_bind(NULL, m, m->obs_sample, t, tc, in);
            in[PLM_GRP_X].p = x;
            in[PLM_GRP_X].ld = n;
            plm_prog_uniforms(&wo, in);
            outs(J->ys + (size_t)(t - 1) * dy, n, m->ydim, o);
            plm_prog_block(&wo, in, first, mm, o, J->rng);
            if ((t & 255) == 0 && plm_interrupted()) {
                J->failed = 2;
                break;
            }
        }
    }
    plm_prog_ws_free(&wi);
    plm_prog_ws_free(&wt);
    plm_prog_ws_free(&wo);
    free(tc);
}

plm_status plm_ssm_simulate(plm_ctx *ctx, const plm_ssm *m, long T, size_t n, unsigned long long seed,
                            double *xs, double *ys, int nthreads)
{
    plm_rng *rng;
    plm_prog_in in[PLM_NGROUPS];
    plm_status st = PLM_OK;
    sim_job J;
    size_t i, dx = (size_t)m->dim * n, dy = (size_t)m->ydim * n;
    long t;
    TC_DECL;
    if (!tc) return plm_failm(ctx, PLM_ENOMEM, "ssm", "out of memory");
    /* every covariate the programs read must exist, checked here once so the workers cannot fail on it */
    for (t = 1; t <= T && !st; t++) {
        st = plm_ssm_bind(ctx, m, t == 1 ? m->init_sample : m->trans_sample, t, tc, in);
        if (!st) st = plm_ssm_bind(ctx, m, m->obs_sample, t, tc, in);
    }
    TC_FREE;
    if (st) return st;
    rng = malloc((n ? n : 1) * sizeof *rng);
    if (!rng) return plm_failm(ctx, PLM_ENOMEM, "ssm", "out of memory");
    for (i = 0; i < n; i++) plm_rng_init(&rng[i], seed, i);
    memset(&J, 0, sizeof J);
    J.m = m;
    J.T = T;
    J.n = n;
    J.xs = xs;
    J.ys = ys;
    J.rng = rng;
    plm_parallel_for(nthreads, (n + PLM_EXPR_BLOCK - 1) / PLM_EXPR_BLOCK, 1, sim_blocks, &J);
    free(rng);
    if (J.failed == 1) return plm_failm(ctx, PLM_ENOMEM, "ssm", "out of memory");
    if (J.failed == 2) return plm_failm(ctx, PLM_EINTR, "ssm", "interrupted");
    for (t = 1; t <= T && !st; t++) {
        st = check_finite(ctx, xs + (size_t)(t - 1) * dx, dx, n, t, "the state");
        if (!st) st = check_finite(ctx, ys + (size_t)(t - 1) * dy, dy, n, t, "the observation");
    }
    return st;
}

plm_status plm_ssm_logjoint(plm_ctx *ctx, const plm_ssm *m, long T, const double *xs, const double *ys,
                            double *out)
{
    double s = 0, v;
    long t;
    plm_status st;
    for (t = 1; t <= T; t++) {
        const double *x = xs + (size_t)(t - 1) * m->dim;
        st = plm_ssm_trans_logpdf(ctx, m, t, 1, t > 1 ? x - m->dim : x, x, 1, &v, 1);
        if (st) return st;
        s += v;
        st = plm_ssm_obs_logpdf(ctx, m, t, 1, x, 1, ys + (size_t)(t - 1) * m->ydim, &v, 1);
        if (st) return st;
        s += v;
    }
    *out = s;
    return PLM_OK;
}

/* d lp / d (params, then the state groups listed) as one compiled program */
static plm_status grad_prog(plm_ctx *ctx, plm_ssm *m, int lp, int ngrp, const int *grps, int ndim, plm_prog **out)
{
    int nw = m->np + ngrp * ndim, i, k, *wrt = malloc((size_t)(nw + 1) * sizeof *wrt);
    int *d = malloc((size_t)(nw + 1) * sizeof *d);
    unsigned varying = 0;
    plm_status st;
    if (!wrt || !d) {
        free(wrt);
        free(d);
        return plm_fail(ctx, PLM_ENOMEM, "ssm: out of memory");
    }
    for (i = 0; i < m->np; i++) wrt[i] = plm_graph_input(m->g, PLM_GRP_P, i);
    for (k = 0; k < ngrp; k++) {
        varying |= 1u << grps[k];
        for (i = 0; i < ndim; i++) wrt[m->np + k * ndim + i] = plm_graph_input(m->g, grps[k], i);
    }
    st = plm_graph_grad(ctx, m->g, lp, nw, wrt, d);
    if (!st) st = plm_prog_compile(ctx, m->g, nw, d, varying, out);
    free(wrt);
    free(d);
    return st;
}

/* d obs_lp / d (params, X) with X and Y varying */
static plm_status grad_prog_y(plm_ctx *ctx, plm_ssm *m, plm_prog **out)
{
    int nw = m->np + m->dim, i, *wrt = malloc((size_t)(nw + 1) * sizeof *wrt), *d = malloc((size_t)(nw + 1) * sizeof *d);
    plm_status st;
    if (!wrt || !d) {
        free(wrt);
        free(d);
        return plm_fail(ctx, PLM_ENOMEM, "ssm: out of memory");
    }
    for (i = 0; i < m->np; i++) wrt[i] = plm_graph_input(m->g, PLM_GRP_P, i);
    for (i = 0; i < m->dim; i++) wrt[m->np + i] = plm_graph_input(m->g, PLM_GRP_X, i);
    st = plm_graph_grad(ctx, m->g, m->obs_lp, nw, wrt, d);
    if (!st) st = plm_prog_compile(ctx, m->g, nw, d, (1u << PLM_GRP_X) | (1u << PLM_GRP_Y), out);
    free(wrt);
    free(d);
    return st;
}

static pthread_mutex_t grad_mu = PTHREAD_MUTEX_INITIALIZER;

/* Does p read neither the time nor a covariate? Then it can score every time step in one call. */
static int time_free(const plm_ssm *m, const plm_prog *p)
{
    int s;
    for (s = 0; s < 3; s++)
        if (plm_prog_uses(p, PLM_GRP_T, s)) return 0;
    for (s = 0; s < m->ncov; s++)
        if (plm_prog_uses(p, PLM_GRP_C, s)) return 0;
    return 1;
}

/* The parameter part of the gradient with the transition and observation terms of all times batched: one
** program call over T - 1 transitions and one over T observations instead of 2 T calls of one point (what
** makes conjugate updates in particle Gibbs cheap next to the sweep). Missing observations are skipped. */
static plm_status grad_batched(plm_ctx *ctx, plm_ssm *m, long T, const double *xs, const double *ys, double *gp)
{
    const size_t n = (size_t)T, dim = (size_t)m->dim, ydim = (size_t)m->ydim, nw = (size_t)(m->np + 2 * m->dim);
    double *xc = malloc(dim * n * sizeof *xc), *yc = malloc(ydim * n * sizeof *yc);
    double *buf = malloc(nw * n * sizeof *buf), **o = malloc(nw * sizeof *o);
    plm_prog_in ex[PLM_NGROUPS] = {{0}};
    plm_status st;
    size_t i, k;
    int j;
    if (!xc || !yc || !buf || !o) {
        st = plm_fail(ctx, PLM_ENOMEM, "ssm: out of memory");
        goto done;
    }
    for (k = 0; k < dim; k++)   /* component-major copies: x[k*n + i] is component k at time i + 1 */
        for (i = 0; i < n; i++) xc[k * n + i] = xs[i * dim + k];
    for (k = 0; k < ydim; k++)
        for (i = 0; i < n; i++) yc[k * n + i] = ys[i * ydim + k];
    for (k = 0; k < nw; k++) o[k] = buf + k * n;
    /* transitions 2..T: X the states 1..T-1, Z the states 2..T (ld n, offsets 0 and 1) */
    ex[PLM_GRP_X].p = xc;
    ex[PLM_GRP_X].ld = n;
    ex[PLM_GRP_Z].p = xc + 1;
    ex[PLM_GRP_Z].ld = n;
    if ((st = run(ctx, m, m->trans_grad, 2, n - 1, ex, o, NULL, 1))) goto done;
    for (j = 0; j < m->np; j++)
        for (i = 0; i < n - 1; i++) gp[j] += o[j][i];
    /* observations 1..T */
    memset(ex, 0, sizeof ex);
    ex[PLM_GRP_X].p = xc;
    ex[PLM_GRP_X].ld = n;
    ex[PLM_GRP_Y].p = yc;
    ex[PLM_GRP_Y].ld = n;
    if ((st = run(ctx, m, m->obs_grad_xy, 1, n, ex, o, NULL, 1))) goto done;
    for (i = 0; i < n; i++) {
        int missing = 0;
        for (k = 0; k < ydim; k++) missing |= isnan(yc[k * n + i]);
        if (missing) continue;
        for (j = 0; j < m->np; j++) gp[j] += o[j][i];
    }
done:
    free(xc);
    free(yc);
    free(buf);
    free(o);
    return st;
}

plm_status plm_ssm_logjoint_grad(plm_ctx *ctx, plm_ssm *m, long T, const double *xs, const double *ys, double *gp,
                                 double *gx)
{
    static const int gz[1] = {PLM_GRP_Z}, gxz[2] = {PLM_GRP_X, PLM_GRP_Z}, gxo[1] = {PLM_GRP_X};
    int np = m->np, dim = m->dim, i, nw = np + 2 * dim;
    double *buf, **o;
    long t;
    plm_status st = PLM_OK;
    /* the derivative programs are built on first use, which grows the model's graph: one lock makes that safe
    ** when several threads (chains of a sampler) ask at once; afterwards it only guards three pointer reads */
    pthread_mutex_lock(&grad_mu);
    if ((!m->init_grad && (st = grad_prog(ctx, m, m->init_lp, 1, gz, dim, &m->init_grad))) ||
        (!m->trans_grad && (st = grad_prog(ctx, m, m->trans_lp, 2, gxz, dim, &m->trans_grad))) ||
        (!m->obs_grad && (st = grad_prog(ctx, m, m->obs_lp, 1, gxo, dim, &m->obs_grad))) ||
        (!m->obs_grad_xy && (st = grad_prog_y(ctx, m, &m->obs_grad_xy)))) {
        pthread_mutex_unlock(&grad_mu);
        return st;
    }
    pthread_mutex_unlock(&grad_mu);
    buf = malloc((size_t)(nw + 1) * sizeof *buf);
    o = malloc((size_t)(nw + 1) * sizeof *o);
    if (!buf || !o) {
        free(buf);
        free(o);
        return plm_fail(ctx, PLM_ENOMEM, "ssm: out of memory");
    }
    for (i = 0; i < nw; i++) o[i] = buf + i;
    for (i = 0; i < np; i++) gp[i] = 0;
    if (gx)
        for (i = 0; i < (long)T * dim; i++) gx[i] = 0;
    if (!gx && T >= 2 && time_free(m, m->trans_grad) && time_free(m, m->obs_grad_xy)) {
        /* the initial term alone, then every other term in two calls */
        plm_prog_in ex[PLM_NGROUPS] = {{0}};
        ex[PLM_GRP_X].p = xs;
        ex[PLM_GRP_X].ld = 1;
        ex[PLM_GRP_Z].p = xs;
        ex[PLM_GRP_Z].ld = 1;
        if (!(st = run(ctx, m, m->init_grad, 1, 1, ex, o, NULL, 1))) {
            for (i = 0; i < np; i++) gp[i] += buf[i];
            st = grad_batched(ctx, m, T, xs, ys, gp);
        }
        free(buf);
        free(o);
        return st;
    }
    for (t = 1; t <= T && !st; t++) {
        const double *x = xs + (size_t)(t - 1) * dim;
        plm_prog_in ex[PLM_NGROUPS] = {{0}};
        /* transition (or init) term: parameters, then the previous state (X), then this state (Z) */
        ex[PLM_GRP_X].p = t > 1 ? x - dim : x;
        ex[PLM_GRP_X].ld = 1;
        ex[PLM_GRP_Z].p = x;
        ex[PLM_GRP_Z].ld = 1;
        if (t == 1) {
            if ((st = run(ctx, m, m->init_grad, t, 1, ex, o, NULL, 1))) break;
            for (i = 0; i < np; i++) gp[i] += buf[i];
            if (gx)
                for (i = 0; i < dim; i++) gx[i] += buf[np + i];
        } else {
            if ((st = run(ctx, m, m->trans_grad, t, 1, ex, o, NULL, 1))) break;
            for (i = 0; i < np; i++) gp[i] += buf[i];
            if (gx)
                for (i = 0; i < dim; i++) {
                    gx[(size_t)(t - 2) * dim + i] += buf[np + i];
                    gx[(size_t)(t - 1) * dim + i] += buf[np + dim + i];
                }
        }
        /* observation term; a missing observation (a NaN component) has none */
        {
            const double *y = ys + (size_t)(t - 1) * m->ydim;
            int missing = 0;
            for (i = 0; i < m->ydim; i++) missing |= isnan(y[i]);
            if (missing) continue;
        }
        ex[PLM_GRP_X].p = x;
        ex[PLM_GRP_Y].p = ys + (size_t)(t - 1) * m->ydim;
        if ((st = run(ctx, m, m->obs_grad, t, 1, ex, o, NULL, 1))) break;
        for (i = 0; i < np; i++) gp[i] += buf[i];
        if (gx)
            for (i = 0; i < dim; i++) gx[(size_t)(t - 1) * dim + i] += buf[np + i];
    }
    free(buf);
    free(o);
    return st;
}
