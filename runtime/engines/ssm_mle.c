/* ssm_mle.c -- stochastic-approximation maximum likelihood for state-space models (see ssm_mle.h). */
#include "ssm_mle.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "pgibbs.h"
#include "ppg.h"
#include "smooth.h"

void plm_mle_opts_default(plm_mle_opts *o)
{
    memset(o, 0, sizeof *o);
    o->method = PLM_MLE_SCORE;
    o->iters = 100;
    o->step = 0.1;
    o->kappa = 0.6;
    o->N = 100;
    o->Ntilde = 2;
    o->seed = 1;
    o->nthreads = 1;
}

/* The score functional for PaRIS: out[j][r] = d/d theta_idx[j] of log p(xb_r | xa_r) + log p(y_t | xb_r) (log
** p(x_1) at t = 1), from the derivative programs of the ssm (parameters first among their outputs). */
typedef struct score_fn {
    plm_ssm *m;
    const double *ys;
    const plm_mle_opts *o;
    double *buf;      /* (np + 2 dim) * cap */
    size_t cap;
} score_fn;

static plm_status eval_grad(plm_ctx *ctx, const plm_ssm *m, const plm_prog *p, long t, size_t n, const double *x,
                            const double *z, const double *y, double *buf, int nthreads)
{
    plm_prog_in in[PLM_NGROUPS];
    double tcb[64], *tc = m->ncov < 63 ? tcb : malloc(((size_t)m->ncov + 1) * sizeof *tc), *o[256];
    int k, nout = plm_prog_nout(p);
    plm_status st;
    if (!tc) return plm_fail(ctx, PLM_ENOMEM, "mle: out of memory");
    if (nout > 256) {
        if (tc != tcb) free(tc);
        return plm_fail(ctx, PLM_EINVAL, "mle: too many parameters and state components (%d derivatives)", nout);
    }
    for (k = 0; k < nout; k++) o[k] = buf + (size_t)k * n;
    st = plm_ssm_bind(ctx, m, p, t, tc, in);
    if (!st) {
        in[PLM_GRP_X].p = x;
        in[PLM_GRP_X].ld = n;
        in[PLM_GRP_Z].p = z;
        in[PLM_GRP_Z].ld = n;
        in[PLM_GRP_Y].p = y;
        st = plm_prog_eval(ctx, p, n, in, o, NULL, nthreads);
    }
    if (tc != tcb) free(tc);
    return st;
}

static plm_status score_h(plm_ctx *ctx, void *ud, long t, size_t n, const double *xa, const double *xb, double **out)
{
    score_fn *S = ud;
    const plm_ssm *m = S->m;
    const double *y = S->ys + (size_t)(t - 1) * (size_t)m->ydim;
    const int nt = n >= 4096 ? S->o->nthreads : 1;
    int j, missing = 0;
    size_t r;
    plm_status st;
    if (n > S->cap) {
        double *b = realloc(S->buf, (size_t)(m->np + 2 * m->dim) * n * sizeof *b);
        if (!b) return plm_fail(ctx, PLM_ENOMEM, "mle: out of memory");
        S->buf = b, S->cap = n;
    }
    /* the transition (or initial) term */
    if ((st = eval_grad(ctx, m, t == 1 ? m->init_grad : m->trans_grad, t, n, xa, xb, NULL, S->buf, nt))) return st;
    for (j = 0; j < S->o->nfree; j++) memcpy(out[j], S->buf + (size_t)S->o->idx[j] * n, n * sizeof *S->buf);
    for (j = 0; j < m->ydim; j++) missing |= isnan(y[j]);
    if (missing) return PLM_OK;
    /* the observation term at the new state */
    if ((st = eval_grad(ctx, m, m->obs_grad, t, n, xb, NULL, y, S->buf, nt))) return st;
    for (j = 0; j < S->o->nfree; j++) {
        const double *g = S->buf + (size_t)S->o->idx[j] * n;
        for (r = 0; r < n; r++) out[j][r] += g[r];
    }
    return PLM_OK;
}

/* The score estimate at m->params into s (nfree values). */
static plm_status score_at(plm_ctx *ctx, plm_ssm *m, long T, const double *ys, const plm_mle_opts *o, long k,
                           score_fn *S, plm_csmc *w, plm_ppg_sweeper *pg, double *path, int *have_path, double *gp,
                           double *s)
{
    const uint64_t seed = o->seed + 1000003ULL * (uint64_t)k;
    plm_status st;
    int j;
    if (o->method == PLM_MLE_PPG) {   /* PaRIS inside a sweep conditional on the last one's traced path */
        if ((st = plm_ppg_sweep(ctx, pg, m, ys, seed, *have_path, o->nthreads, path, s))) return st;
        *have_path = 1;
        return PLM_OK;
    }
    if (o->method == PLM_MLE_SCORE) {
        plm_pf_opts pf;
        plm_smooth_opts so;
        plm_smooth_stats stats;
        plm_pf_result res;
        plm_pf_opts_default(&pf);
        pf.N = o->N;
        pf.seed = seed;
        pf.nthreads = o->nthreads;
        plm_smooth_opts_default(&so);
        so.Ntilde = o->Ntilde;
        so.seed = pf.seed;
        so.nthreads = o->nthreads;
        st = plm_paris_online_fn(ctx, m, T, ys, &pf, o->nfree, score_h, S, &so, s, &stats, &res);
        if (!st) plm_pf_result_free(&res);
        return st;
    }
    /* Markov score climbing: the path moves by one conditional SMC sweep from the previous one */
    if ((st = plm_csmc_sweep(ctx, w, m, ys, seed, *have_path, 1, o->nthreads, path)))
        return st;
    *have_path = 1;
    if ((st = plm_ssm_logjoint_grad(ctx, m, T, path, ys, gp, NULL))) return st;
    for (j = 0; j < o->nfree; j++) s[j] = gp[o->idx[j]];
    return PLM_OK;
}

plm_status plm_mle_run(plm_ctx *ctx, plm_ssm *m, long T, const double *ys, const plm_mle_opts *o, double *traj)
{
    const int nf = o->nfree;
    double *s = malloc(((size_t)nf + 1) * sizeof *s), *gp = malloc(((size_t)m->np + 1) * sizeof *gp);
    double *good = malloc(((size_t)nf + 1) * sizeof *good), *path = malloc((size_t)T * (size_t)m->dim * sizeof *path);
    plm_csmc *w = NULL;
    plm_ppg_sweeper *pg = NULL;
    plm_smooth_stats stats;
    score_fn S;
    plm_status st = PLM_OK;
    int j, have_path = 0;
    long k;
    memset(&S, 0, sizeof S);
    S.m = m, S.ys = ys, S.o = o;
    if (!s || !gp || !good || !path) {
        st = plm_fail(ctx, PLM_ENOMEM, "mle: out of memory");
        goto done;
    }
    if (o->iters < 1 || !(o->step > 0) || !(o->kappa > 0.5 && o->kappa <= 1) || o->N < 2 || nf < 1 || T < 1 ||
        (o->method != PLM_MLE_MSC && o->Ntilde < 1)) {
        st = plm_fail(ctx, PLM_EINVAL, "mle: need iters >= 1, step > 0, kappa in (0.5, 1], particles >= 2, "
                      "backward draws >= 1 and a parameter to learn");
        goto done;
    }
    for (j = 0; j < m->np; j++)
        if (isnan(m->params[j])) {
            st = plm_fail(ctx, PLM_EINVAL, "mle: parameter %d has no value", j + 1);
            goto done;
        }
    /* the derivative programs (built on first use) */
    if ((st = plm_ssm_logjoint_grad(ctx, m, 0, NULL, NULL, gp, NULL))) goto done;
    if (o->method == PLM_MLE_MSC && !(w = plm_csmc_new(m, T, o->N))) {
        st = plm_fail(ctx, PLM_ENOMEM, "mle: out of memory (%ld x %zu particles)", T, o->N);
        goto done;
    }
    if (o->method == PLM_MLE_PPG) {
        plm_smooth_opts so;
        plm_smooth_opts_default(&so);
        so.Ntilde = o->Ntilde;
        if (!(pg = plm_ppg_sweeper_new(ctx, m, T, o->N, nf, score_h, &S, &so, o->nthreads, &stats))) {
            st = ctx->status ? ctx->status : PLM_ENOMEM;
            goto done;
        }
    }
    for (j = 0; j < nf; j++) traj[j] = m->params[o->idx[j]];
    for (k = 1; k <= o->iters; k++) {
        double gamma = o->step * pow((double)k, -o->kappa);
        int halvings;
        if (plm_interrupted()) {
            st = plm_fail(ctx, PLM_EINTR, "mle: interrupted at iteration %ld", k);
            goto done;
        }
        for (j = 0; j < nf; j++) good[j] = m->params[o->idx[j]];
        if ((st = score_at(ctx, m, T, ys, o, k, &S, w, pg, path, &have_path, gp, s))) goto done;
        for (j = 0; j < nf; j++)
            if (!isfinite(s[j])) {
                st = plm_fail(ctx, PLM_EDOM, "mle: the score of parameter %d is %g at iteration %ld", o->idx[j] + 1,
                              s[j], k);
                goto done;
            }
        /* the step, halved while the new point is outside the model's domain (its filter or sweep fails) */
        for (halvings = 0;; halvings++) {
            st = PLM_OK;
            for (j = 0; j < nf; j++) m->params[o->idx[j]] = good[j] + gamma * s[j] / (double)T;
            if (o->method != PLM_MLE_SCORE) {   /* the path's log density must stay finite: its gradient tells */
                st = plm_ssm_logjoint_grad(ctx, m, T, path, ys, gp, NULL);
                for (j = 0; j < m->np && !st; j++)
                    if (!isfinite(gp[j])) st = plm_fail(ctx, PLM_EDOM, "mle: the log density is not finite");
            }
            if (!st && o->method != PLM_MLE_MSC) {
                plm_pf_opts pf;
                plm_pf_result res;
                plm_pf_opts_default(&pf);
                pf.N = 2;
                pf.seed = o->seed;
                st = plm_pf_run(ctx, m, T, ys, &pf, &res);   /* a cheap check that the densities are finite */
                if (!st) plm_pf_result_free(&res);
                else if (st == PLM_EDOM && halvings < 30) {   /* two particles can miss: retry with more */
                    pf.N = 64;
                    if (!(st = plm_pf_run(ctx, m, T, ys, &pf, &res))) plm_pf_result_free(&res);
                }
            }
            if (st != PLM_EDOM) break;
            if (halvings == 30) {
                for (j = 0; j < nf; j++) m->params[o->idx[j]] = good[j];
                st = plm_fail(ctx, PLM_EDOM, "mle: no step from iteration %ld stays inside the model's domain (%s)",
                              k, ctx->msg);
                goto done;
            }
            gamma *= 0.5;
        }
        if (st) goto done;
        for (j = 0; j < nf; j++) traj[(size_t)k * (size_t)nf + (size_t)j] = m->params[o->idx[j]];
    }
done:
    free(s);
    free(gp);
    free(good);
    free(path);
    free(S.buf);
    plm_csmc_free(w);
    plm_ppg_sweeper_free(pg);
    return st;
}
