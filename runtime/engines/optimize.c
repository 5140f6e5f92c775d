/* optimize.c -- modes and Laplace approximations of targets (see optimize.h). GSL minimises, so the
** objective handed to it is -log density. */
#include "optimize.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <gsl/gsl_blas.h>
#include <gsl/gsl_errno.h>
#include <gsl/gsl_linalg.h>
#include <gsl/gsl_multimin.h>

#include "rng.h"

typedef struct objective {
    const plm_target *t;
    void *ws;
    double *g;      /* dim: scratch gradient */
} objective;

/* -lp and -gradient. A point outside the support (lp = -inf, or NaN from an overflowing transform) is given a
** huge finite objective and a zero gradient, so that the line search backs off instead of stopping on inf. */
static double neg_lp_grad(objective *o, const gsl_vector *x, gsl_vector *df)
{
    int i, d = o->t->dim;
    double lp = o->t->ops->logp_grad(o->t, o->ws, x->data, o->g);
    int ok = isfinite(lp);
    for (i = 0; ok && i < d; i++) ok = isfinite(o->g[i]);
    if (df)
        for (i = 0; i < d; i++) gsl_vector_set(df, (size_t)i, ok ? -o->g[i] : 0);
    return ok ? -lp : 1e300;
}

static double f_only(const gsl_vector *x, void *p) { return neg_lp_grad(p, x, NULL); }
static void df_only(const gsl_vector *x, void *p, gsl_vector *df) { neg_lp_grad(p, x, df); }
static void f_df(const gsl_vector *x, void *p, double *f, gsl_vector *df) { *f = neg_lp_grad(p, x, df); }

static double max_abs(const gsl_vector *v)
{
    double m = 0;
    size_t i;
    for (i = 0; i < v->size; i++)
        if (!(fabs(gsl_vector_get(v, i)) <= m)) m = fabs(gsl_vector_get(v, i));
    return m;
}

plm_status plm_optimize(plm_ctx *ctx, const plm_target *t, const double *u0, const plm_optim_opts *opts, double *u,
                        plm_optim_result *res)
{
    int d = t->dim, it = 0, max_iter = opts && opts->max_iter > 0 ? opts->max_iter : 2000;
    double tol_grad = opts && opts->tol_grad > 0 ? opts->tol_grad : 1e-8;
    double tol_rel = opts && opts->tol_rel_obj > 0 ? opts->tol_rel_obj : 1e-12;
    double step = opts && opts->step > 0 ? opts->step : 0.1, fprev;
    gsl_multimin_fdfminimizer *s = NULL;
    gsl_multimin_function_fdf fn;
    gsl_vector *x = NULL;
    objective o;
    plm_status st = PLM_OK;
    memset(res, 0, sizeof *res);
    if (!t->ops->logp_grad) return plm_fail(ctx, PLM_ENOTSUP, "optimize: the target has no gradient");
    o.t = t;
    o.ws = plm_target_ws_new(t);
    o.g = malloc(((size_t)d + 1) * sizeof *o.g);
    x = gsl_vector_alloc((size_t)d);
    s = gsl_multimin_fdfminimizer_alloc(gsl_multimin_fdfminimizer_vector_bfgs2, (size_t)d);
    if (!o.ws || !o.g || !x || !s) {
        st = plm_fail(ctx, PLM_ENOMEM, "optimize: out of memory");
        goto done;
    }
    memcpy(x->data, u0, (size_t)d * sizeof *u0);
    if (!isfinite(t->ops->logp_grad(t, o.ws, u0, o.g))) {
        st = plm_fail(ctx, PLM_EDEAD, "optimize: the log density at the initial point is not finite");
        goto done;
    }
    fn.n = (size_t)d;
    fn.f = f_only;
    fn.df = df_only;
    fn.fdf = f_df;
    fn.params = &o;
    /* line-search tolerance 0.1: GSL's recommendation for bfgs2 */
    gsl_multimin_fdfminimizer_set(s, &fn, x, step, 0.1);
    fprev = s->f;
    while (it < max_iter) {
        int gs;
        if (plm_interrupted()) {
            st = plm_fail(ctx, PLM_EINTR, "optimize: interrupted");
            goto done;
        }
        gs = gsl_multimin_fdfminimizer_iterate(s);
        it++;
        if (max_abs(s->gradient) < tol_grad) {
            res->converged = 1;
            break;
        }
        if (gs) {   /* GSL_ENOPROG: the line search found no lower point */
            res->converged = fabs(fprev - s->f) <= tol_rel * (1 + fabs(s->f));
            break;
        }
        if (fabs(fprev - s->f) <= tol_rel * (1 + fabs(s->f)) && fprev != s->f) {
            res->converged = 1;
            break;
        }
        fprev = s->f;
    }
    memcpy(u, s->x->data, (size_t)d * sizeof *u);
    res->lp = -s->f;
    res->grad_max = max_abs(s->gradient);
    res->iterations = it;
    if (s->f >= 1e300) res->lp = -INFINITY, res->converged = 0;
done:
    if (s) gsl_multimin_fdfminimizer_free(s);
    if (x) gsl_vector_free(x);
    free(o.g);
    if (o.ws) plm_target_ws_free(t, o.ws);
    return st;
}

plm_status plm_hessian(plm_ctx *ctx, const plm_target *t, const double *u, double h, double *H)
{
    int d = t->dim, i, j;
    double *v = malloc(3 * ((size_t)d + 1) * sizeof *v), *gp = v + d + 1, *gm = gp + d + 1;
    void *ws = plm_target_ws_new(t);
    plm_status st = PLM_OK;
    if (!t->ops->logp_grad) st = plm_fail(ctx, PLM_ENOTSUP, "hessian: the target has no gradient");
    else if (!v || !ws) st = plm_fail(ctx, PLM_ENOMEM, "hessian: out of memory");
    if (st) goto done;
    if (h <= 0) h = 1e-5;
    memcpy(v, u, (size_t)d * sizeof *v);
    for (j = 0; j < d; j++) {
        double hj = h * fmax(1, fabs(u[j]));
        v[j] = u[j] + hj;
        t->ops->logp_grad(t, ws, v, gp);
        v[j] = u[j] - hj;
        t->ops->logp_grad(t, ws, v, gm);
        v[j] = u[j];
        for (i = 0; i < d; i++) H[(size_t)i * d + j] = (gp[i] - gm[i]) / (2 * hj);
    }
    for (i = 0; i < d; i++)
        for (j = 0; j < i; j++) {
            double a = 0.5 * (H[(size_t)i * d + j] + H[(size_t)j * d + i]);
            H[(size_t)i * d + j] = H[(size_t)j * d + i] = a;
        }
    for (i = 0; i < d * d && !st; i++)
        if (!isfinite(H[i])) st = plm_fail(ctx, PLM_EDOM, "hessian: entry (%d, %d) is not finite", i / d + 1, i % d + 1);
done:
    plm_target_ws_free(t, ws);
    free(v);
    return st;
}

plm_status plm_laplace_draws(plm_ctx *ctx, const double *mode, const double *H, int dim, size_t n, uint64_t seed,
                             double *out, double *logdet)
{
    gsl_matrix *P = gsl_matrix_alloc((size_t)dim, (size_t)dim);
    gsl_vector_view z;
    plm_rng r;
    size_t k;
    int i;
    if (!P) return plm_fail(ctx, PLM_ENOMEM, "laplace: out of memory");
    for (i = 0; i < dim * dim; i++) P->data[i] = -H[i];
    /* precision P = L L^T; u = mode + L^-T z has covariance L^-T L^-1 = P^-1 */
    if (gsl_linalg_cholesky_decomp1(P)) {
        gsl_matrix_free(P);
        return plm_fail(ctx, PLM_EDOM, "laplace: the Hessian at the mode is not negative definite (not a strict "
                        "maximum, or the density is flat in some direction)");
    }
    if (logdet) {
        double s = 0;
        for (i = 0; i < dim; i++) s += 2 * log(gsl_matrix_get(P, (size_t)i, (size_t)i));
        *logdet = s;
    }
    plm_rng_init(&r, seed, 0);
    for (k = 0; k < n; k++) {
        double *row = out + k * (size_t)dim;
        for (i = 0; i < dim; i++) row[i] = plm_rng_normal(&r);
        z = gsl_vector_view_array(row, (size_t)dim);
        gsl_blas_dtrsv(CblasLower, CblasTrans, CblasNonUnit, P, &z.vector);
        for (i = 0; i < dim; i++) row[i] += mode[i];
    }
    gsl_matrix_free(P);
    return PLM_OK;
}
