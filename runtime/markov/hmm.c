/* hmm.c -- the HMM object: validation, construction for each emission family, emission log-likelihoods and
** sampling. The kernels are in hmm_kernel.c, inference on the object in hmm_infer.c, Baum-Welch in hmm_fit.c. */
#include "hmm_impl.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LOG_SQRT_2PI 0.91893853320467274178

/* ---- Validation ------------------------------------------------------------------------------------- */

static plm_status check_probrow(plm_ctx *ctx, const char *fn, const char *what, int row, const double *p, int n)
{
    double s = 0;
    int j;
    char name[48];
    if (row > 0)
        snprintf(name, sizeof name, "%s row %d", what, row);
    else
        snprintf(name, sizeof name, "%s", what);
    for (j = 0; j < n; j++) {
        if (!isfinite(p[j]))
            return plm_fail(ctx, PLM_EINVAL, "%s: %s entry %d must be a finite probability (got %g)", fn, name, j + 1, p[j]);
        if (p[j] < 0)
            return plm_fail(ctx, PLM_EINVAL, "%s: %s entry %d is negative (%g)", fn, name, j + 1, p[j]);
        s += p[j];
    }
    if (fabs(s - 1) > 1e-9)
        return plm_fail(ctx, PLM_EINVAL, "%s: %s must sum to 1 (sum is %.12g)", fn, name, s);
    return PLM_OK;
}

plm_status plm_hmm_check_chain(plm_ctx *ctx, const char *fn, int K, const double *init, const double *trans)
{
    plm_status st;
    int i;
    if (K < 1) return plm_fail(ctx, PLM_EINVAL, "%s: there must be at least one state", fn);
    if (init && (st = check_probrow(ctx, fn, "init", 0, init, K))) return st;
    if (trans)
        for (i = 0; i < K; i++)
            if ((st = check_probrow(ctx, fn, "trans", i + 1, trans + (size_t)i * K, K))) return st;
    return PLM_OK;
}

/* ---- The model object ------------------------------------------------------------------------------- */

static const char *const emit_names[] = {"categorical", "normal", "poisson", "bernoulli", "mvnormal"};

const char *plm_hmm_emit_name(plm_hmm_emit e)
{
    return (unsigned)e < sizeof emit_names / sizeof *emit_names ? emit_names[e] : "?";
}

static double *gc_doubles(size_t n)
{
    return plm_gc_alloc_atomic((n ? n : 1) * sizeof(double));
}

/* Validate the chain and allocate a model with its chain copied; par (npar doubles) left to the caller. */
static plm_status new_base(plm_ctx *ctx, plm_hmm_emit kind, int K, const double *init, const double *trans,
                           size_t npar, plm_hmm **out)
{
    plm_status st = plm_hmm_check_chain(ctx, "hmm", K, init, trans);
    plm_hmm *h;
    size_t KK = (size_t)K * K;
    if (st) return st;
    if (!(h = plm_gc_alloc(sizeof *h)) || !(h->init = gc_doubles(K)) || !(h->trans = gc_doubles(KK))
        || !(h->logtrans = gc_doubles(KK)) || !(h->par = gc_doubles(npar)) || !(h->lognorm = gc_doubles(2 * (size_t)K)))
        return plm_failm(ctx, PLM_ENOMEM, "hmm", "out of memory");
    h->K = K;
    h->emit = kind;
    h->D = 1;
    memcpy(h->init, init, (size_t)K * sizeof *init);
    memcpy(h->trans, trans, KK * sizeof *trans);
    plm_hmm_log_matrix(K, trans, h->logtrans);
    *out = h;
    return PLM_OK;
}

plm_status plm_hmm_new_categorical(plm_ctx *ctx, int K, int M, const double *init, const double *trans,
                                   const double *emit, plm_hmm **out)
{
    plm_hmm *h;
    plm_status st;
    int k, m;
    if (M < 1) return plm_failm(ctx, PLM_EINVAL, "hmm", "emit must have at least one symbol");
    if ((st = new_base(ctx, PLM_HMM_CATEGORICAL, K, init, trans, (size_t)K * M, &h))) return st;
    for (k = 0; k < K; k++)
        if ((st = check_probrow(ctx, "hmm", "emit", k + 1, emit + (size_t)k * M, M))) return st;
    if (!(h->emitT = gc_doubles((size_t)K * M)) || !(h->logemitT = gc_doubles((size_t)K * M)))
        return plm_failm(ctx, PLM_ENOMEM, "hmm", "out of memory");
    h->M = M;
    memcpy(h->par, emit, (size_t)K * M * sizeof *emit);
    for (k = 0; k < K; k++)
        for (m = 0; m < M; m++) {
            h->emitT[(size_t)m * K + k] = emit[(size_t)k * M + m];
            h->logemitT[(size_t)m * K + k] = log(emit[(size_t)k * M + m]);
        }
    *out = h;
    return PLM_OK;
}

plm_status plm_hmm_new_scalar(plm_ctx *ctx, plm_hmm_emit kind, int K, const double *init, const double *trans,
                              const double *par, plm_hmm **out)
{
    const int np = kind == PLM_HMM_NORMAL ? 2 : 1;
    plm_hmm *h;
    plm_status st;
    int k;
    if (kind != PLM_HMM_NORMAL && kind != PLM_HMM_POISSON && kind != PLM_HMM_BERNOULLI)
        return plm_failm(ctx, PLM_EINVAL, "hmm", "%s is not a scalar emission family", plm_hmm_emit_name(kind));
    if ((st = new_base(ctx, kind, K, init, trans, (size_t)K * np, &h))) return st;
    for (k = 0; k < K; k++) {
        const double *p = par + (size_t)k * np;
        switch (kind) {
        case PLM_HMM_NORMAL:
            if (!isfinite(p[0])) return plm_failm(ctx, PLM_EINVAL, "hmm", "emit state %d: mu must be finite (got %g)", k + 1, p[0]);
            if (!(p[1] > 0 && isfinite(p[1])))
                return plm_failm(ctx, PLM_EINVAL, "hmm", "emit state %d: sigma must be > 0 (got %g)", k + 1, p[1]);
            h->lognorm[k] = -log(p[1]) - LOG_SQRT_2PI;
            break;
        case PLM_HMM_POISSON:
            if (!(p[0] >= 0 && isfinite(p[0])))
                return plm_failm(ctx, PLM_EINVAL, "hmm", "emit state %d: lambda must be >= 0 (got %g)", k + 1, p[0]);
            h->lognorm[k] = log(p[0]);
            break;
        default:
            if (!(p[0] >= 0 && p[0] <= 1))
                return plm_failm(ctx, PLM_EINVAL, "hmm", "emit state %d: p must be in [0, 1] (got %g)", k + 1, p[0]);
            h->lognorm[2 * k] = log(p[0]);
            h->lognorm[2 * k + 1] = log1p(-p[0]);
        }
    }
    memcpy(h->par, par, (size_t)K * np * sizeof *par);
    *out = h;
    return PLM_OK;
}

plm_status plm_hmm_new_mvnormal(plm_ctx *ctx, int K, int D, const double *init, const double *trans,
                                const double *mu, const double *Sigma, plm_hmm **out)
{
    const size_t DD = (size_t)D * D;
    plm_hmm *h;
    plm_status st;
    int k;
    if (D < 1) return plm_failm(ctx, PLM_EINVAL, "hmm", "mvnormal emissions need dimension >= 1");
    if ((st = new_base(ctx, PLM_HMM_MVNORMAL, K, init, trans, (size_t)K * (D + DD), &h))) return st;
    if (!(h->chol = gc_doubles(K * DD))) return plm_failm(ctx, PLM_ENOMEM, "hmm", "out of memory");
    h->D = D;
    for (k = 0; k < K; k++) {
        plm_dist *d;
        plm_ctx sub;
        if (plm_dist_new_mvnormal(&sub, mu + (size_t)k * D, Sigma + k * DD, D, &d))
            return plm_failm(ctx, PLM_EINVAL, "hmm", "emit state %d: %s", k + 1, plm_ctx_errmsg(&sub));
        memcpy(h->chol + k * DD, d->aux, DD * sizeof(double));
        h->lognorm[k] = d->c;
    }
    memcpy(h->par, mu, (size_t)K * D * sizeof *mu);
    memcpy(h->par + (size_t)K * D, Sigma, K * DD * sizeof *Sigma);
    *out = h;
    return PLM_OK;
}

plm_status plm_hmm_new_dists(plm_ctx *ctx, int K, const double *init, const double *trans, plm_dist *const *dists,
                             plm_hmm **out)
{
    plm_dist_kind kind;
    int k;
    if (K < 1) return plm_failm(ctx, PLM_EINVAL, "hmm", "there must be at least one state");
    kind = dists[0]->kind;
    for (k = 1; k < K; k++)
        if (dists[k]->kind != kind)
            return plm_failm(ctx, PLM_EINVAL, "hmm", "emit entry %d is a %s distribution, but entry 1 is a %s", k + 1,
                            plm_dist_info_of(dists[k]->kind)->name, plm_dist_info_of(kind)->name);
    switch (kind) {
    case PLM_DIST_NORMAL:
    case PLM_DIST_POISSON:
    case PLM_DIST_BERNOULLI: {
        const int np = kind == PLM_DIST_NORMAL ? 2 : 1;
        double *par = malloc((size_t)K * np * sizeof *par);
        plm_status st;
        if (!par) return plm_failm(ctx, PLM_ENOMEM, "hmm", "out of memory");
        for (k = 0; k < K; k++) memcpy(par + (size_t)k * np, dists[k]->p, np * sizeof *par);
        st = plm_hmm_new_scalar(ctx, kind == PLM_DIST_NORMAL ? PLM_HMM_NORMAL : kind == PLM_DIST_POISSON ? PLM_HMM_POISSON : PLM_HMM_BERNOULLI,
                                K, init, trans, par, out);
        free(par);
        return st;
    }
    case PLM_DIST_CATEGORICAL: {
        int M = 0;
        double *em;
        plm_status st;
        for (k = 0; k < K; k++)
            if (dists[k]->K > M) M = dists[k]->K;
        if (!(em = calloc((size_t)K * M, sizeof *em))) return plm_failm(ctx, PLM_ENOMEM, "hmm", "out of memory");
        for (k = 0; k < K; k++) memcpy(em + (size_t)k * M, dists[k]->v, (size_t)dists[k]->K * sizeof *em);
        st = plm_hmm_new_categorical(ctx, K, M, init, trans, em, out);
        free(em);
        return st;
    }
    case PLM_DIST_MVNORMAL: {
        const int D = dists[0]->K;
        const size_t DD = (size_t)D * D;
        double *mu, *S;
        plm_status st;
        for (k = 1; k < K; k++)
            if (dists[k]->K != D)
                return plm_failm(ctx, PLM_EINVAL, "hmm", "emit entry %d has dimension %d, but entry 1 has %d", k + 1, dists[k]->K, D);
        if (!(mu = malloc((size_t)K * (D + DD) * sizeof *mu))) return plm_failm(ctx, PLM_ENOMEM, "hmm", "out of memory");
        S = mu + (size_t)K * D;
        for (k = 0; k < K; k++) {
            /* the dist keeps Sigma as its Cholesky factor L: rebuild Sigma = L L' */
            const double *L = dists[k]->aux;
            int i, j, l;
            memcpy(mu + (size_t)k * D, dists[k]->v, (size_t)D * sizeof *mu);
            for (i = 0; i < D; i++)
                for (j = 0; j < D; j++) {
                    double s = 0;
                    for (l = 0; l <= (i < j ? i : j); l++) s += L[i * D + l] * L[j * D + l];
                    S[k * DD + (size_t)i * D + j] = s;
                }
        }
        st = plm_hmm_new_mvnormal(ctx, K, D, init, trans, mu, S, out);
        free(mu);
        return st;
    }
    default:
        return plm_failm(ctx, PLM_EINVAL, "hmm",
                        "emit entry 1 is a %s distribution; per-state emissions must be normal, poisson, bernoulli, "
                        "mvnormal or categorical", plm_dist_info_of(kind)->name);
    }
}

plm_status plm_hmm_state_dist(plm_ctx *ctx, const plm_hmm *h, int k, plm_dist **out)
{
    if (k < 0 || k >= h->K) return plm_failm(ctx, PLM_EINVAL, "hmm", "state %d out of range", k + 1);
    switch (h->emit) {
    case PLM_HMM_CATEGORICAL: return plm_dist_new_categorical(ctx, h->par + (size_t)k * h->M, h->M, out);
    case PLM_HMM_NORMAL: return plm_dist_new(ctx, PLM_DIST_NORMAL, h->par + 2 * k, out);
    case PLM_HMM_POISSON: return plm_dist_new(ctx, PLM_DIST_POISSON, h->par + k, out);
    case PLM_HMM_BERNOULLI: return plm_dist_new(ctx, PLM_DIST_BERNOULLI, h->par + k, out);
    default: {
        const size_t D = (size_t)h->D;
        return plm_dist_new_mvnormal(ctx, h->par + k * D, h->par + h->K * D + k * D * D, h->D, out);
    }
    }
}

/* ---- Observations and emission log-likelihoods ------------------------------------------------------ */

plm_status plm_hmm_check_obs(plm_ctx *ctx, const plm_hmm *h, size_t T, const double *y)
{
    size_t t;
    if (T == 0) return plm_failm(ctx, PLM_EINVAL, "hmm", "the sequence is empty");
    switch (h->emit) {
    case PLM_HMM_CATEGORICAL:
        for (t = 0; t < T; t++)
            if (!(y[t] >= 0 && y[t] < h->M && y[t] == floor(y[t])))
                return plm_failm(ctx, PLM_EDOM, "hmm", "observation at t=%zu is %g, but symbols are 0..%d", t, y[t], h->M - 1);
        break;
    case PLM_HMM_POISSON:
        for (t = 0; t < T; t++)
            if (!(y[t] >= 0 && isfinite(y[t]) && y[t] == floor(y[t])))
                return plm_failm(ctx, PLM_EDOM, "hmm", "observation at t=%zu is %g, but poisson emissions are counts 0, 1, 2, ...", t, y[t]);
        break;
    case PLM_HMM_BERNOULLI:
        for (t = 0; t < T; t++)
            if (!(y[t] == 0 || y[t] == 1))
                return plm_failm(ctx, PLM_EDOM, "hmm", "observation at t=%zu is %g, but bernoulli emissions are 0 or 1", t, y[t]);
        break;
    default:
        for (t = 0; t < T * (size_t)h->D; t++)
            if (!isfinite(y[t]))
                return plm_failm(ctx, PLM_EDOM, "hmm", "observation at t=%zu is not finite (%g)", t / h->D, y[t]);
    }
    return PLM_OK;
}

/* Emission log-likelihoods without checks (the caller checked the observations once). Returns PLM_ENOMEM
** only for mvnormal emissions of dimension > 64 when scratch memory runs out. */
plm_status plm_hmm_emit_rows(const plm_hmm *h, size_t T, const double *restrict y, double *restrict logB)
{
    const int K = h->K;
    const double *restrict par = h->par, *restrict ln = h->lognorm;
    size_t t;
    int k;
    switch (h->emit) {
    case PLM_HMM_CATEGORICAL:
        for (t = 0; t < T; t++) memcpy(logB + t * K, h->logemitT + (size_t)y[t] * K, (size_t)K * sizeof *logB);
        break;
    case PLM_HMM_NORMAL:
        for (t = 0; t < T; t++)
            for (k = 0; k < K; k++) {
                const double z = (y[t] - par[2 * k]) / par[2 * k + 1];
                logB[t * K + k] = ln[k] - 0.5 * z * z;
            }
        break;
    case PLM_HMM_POISSON:
        for (t = 0; t < T; t++) {
            const double c = lgamma(y[t] + 1);
            for (k = 0; k < K; k++)
                logB[t * K + k] = (y[t] > 0 ? y[t] * ln[k] : 0) - par[k] - c;
        }
        break;
    case PLM_HMM_BERNOULLI:
        for (t = 0; t < T; t++)
            for (k = 0; k < K; k++) logB[t * K + k] = ln[2 * k + (y[t] == 0)];
        break;
    case PLM_HMM_MVNORMAL: {
        const int D = h->D;
        const size_t DD = (size_t)D * D;
        double z[64], *zz = D <= 64 ? z : malloc((size_t)D * sizeof *zz);
        if (!zz) return PLM_ENOMEM;
        for (t = 0; t < T; t++)
            for (k = 0; k < K; k++) {
                /* solve L z = y - mu; the density is lognorm - |z|^2 / 2 */
                const double *L = h->chol + k * DD, *mu = par + (size_t)k * D, *yt = y + t * D;
                double q = 0;
                int i, j;
                for (i = 0; i < D; i++) {
                    double s = yt[i] - mu[i];
                    for (j = 0; j < i; j++) s -= L[i * D + j] * zz[j];
                    zz[i] = s / L[i * D + i];
                    q += zz[i] * zz[i];
                }
                logB[t * K + k] = ln[k] - 0.5 * q;
            }
        if (zz != z) free(zz);
        break;
    }
    }
    return PLM_OK;
}

plm_status plm_hmm_emit_loglik(plm_ctx *ctx, const plm_hmm *h, size_t T, const double *y, double *logB)
{
    plm_status st = plm_hmm_check_obs(ctx, h, T, y);
    if (st) return st;
    if (plm_hmm_emit_rows(h, T, y, logB)) return plm_failm(ctx, PLM_ENOMEM, "hmm", "out of memory");
    return PLM_OK;
}

/* ---- Sampling --------------------------------------------------------------------------------------- */

/* Index drawn from probabilities p (n, summing to 1 within 1e-9): the last positive entry takes the slack. */
static int draw_index(plm_rng *r, const double *p, int n)
{
    double u = plm_rng_uniform(r), c = 0;
    int i, last = 0;
    for (i = 0; i < n; i++) {
        if (p[i] > 0) last = i;
        c += p[i];
        if (u < c && p[i] > 0) return i;
    }
    return last;
}

static void draw_emission(const plm_hmm *h, int k, plm_rng *r, double *yt)
{
    switch (h->emit) {
    case PLM_HMM_CATEGORICAL: yt[0] = draw_index(r, h->par + (size_t)k * h->M, h->M); break;
    case PLM_HMM_NORMAL: yt[0] = h->par[2 * k] + h->par[2 * k + 1] * plm_rng_normal(r); break;
    case PLM_HMM_POISSON: yt[0] = plm_dist_sample1(PLM_DIST_POISSON, h->par + k, r); break;
    case PLM_HMM_BERNOULLI: yt[0] = plm_rng_uniform(r) < h->par[k] ? 1 : 0; break;
    case PLM_HMM_MVNORMAL: {
        const int D = h->D;
        const double *L = h->chol + (size_t)k * D * D, *mu = h->par + (size_t)k * D;
        int i, j;
        for (i = 0; i < D; i++) yt[i] = 0;
        for (j = 0; j < D; j++) {   /* y = mu + L z, column by column so z needs no storage */
            const double z = plm_rng_normal(r);
            for (i = j; i < D; i++) yt[i] += L[i * D + j] * z;
        }
        for (i = 0; i < D; i++) yt[i] += mu[i];
        break;
    }
    }
}

plm_status plm_hmm_sample(plm_ctx *ctx, const plm_hmm *h, size_t T, plm_rng *r, int *states, double *y)
{
    size_t t;
    int s;
    if (T == 0) return plm_failm(ctx, PLM_EINVAL, "hmm", "sample needs T >= 1");
    s = draw_index(r, h->init, h->K);
    for (t = 0; t < T; t++) {
        if (t > 0) s = draw_index(r, h->trans + (size_t)s * h->K, h->K);
        states[t] = s;
        draw_emission(h, s, r, y + t * (size_t)h->D);
    }
    return PLM_OK;
}
