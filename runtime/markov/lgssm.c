/* lgssm.c -- square-root Kalman filter, RTS smoother and sampler for plm_lgssm.
** Every covariance is carried as a factor S with P = S S'. Each step rebuilds the factor by orthogonal
** triangularisation of a pre-array (Householder reflections applied from the right), so the covariances that
** come out are S S' by construction: symmetric and positive semi-definite however long or badly conditioned
** the series, where the textbook update P - K S K' can go indefinite in floating point. */
#include "lgssm.h"

#include <gsl/gsl_eigen.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define LOG2PI 1.83787706640934548356

static void tria(double *restrict M, int r, int c, int w);

/* ---- validation ---- */

static plm_status check_finite(plm_ctx *ctx, const char *name, const double *x, int rows, int cols, int is_vec)
{
    int i, j;
    for (i = 0; i < rows; i++)
        for (j = 0; j < cols; j++) {
            double v = x[i * cols + j];
            if (isfinite(v)) continue;
            if (is_vec) return plm_fail(ctx, PLM_EINVAL, "lgssm: %s[%d] is not finite (%g)", name, i + 1, v);
            return plm_fail(ctx, PLM_EINVAL, "lgssm: %s[%d][%d] is not finite (%g)", name, i + 1, j + 1, v);
        }
    return PLM_OK;
}

/* Lower Cholesky factor of the n*n matrix X into L (zeros above the diagonal). Returns 0, or -1 when a pivot
** is not positive (X is not numerically positive definite). */
static int chol_lower(const double *X, int n, double *L)
{
    int i, j, k;
    memset(L, 0, (size_t)n * n * sizeof *L);
    for (j = 0; j < n; j++) {
        double dj = X[j * n + j];
        for (k = 0; k < j; k++) dj -= L[j * n + k] * L[j * n + k];
        if (!(dj > 0)) return -1;
        L[j * n + j] = sqrt(dj);
        for (i = j + 1; i < n; i++) {
            double v = X[i * n + j];
            for (k = 0; k < j; k++) v -= L[i * n + k] * L[j * n + k];
            L[i * n + j] = v / L[j * n + j];
        }
    }
    return 0;
}

/* Check that X (n*n) is symmetric, store its symmetrised copy in Xs and a square factor G (G G' = X) in G.
** need_pd: X must be positive definite (G is then the lower Cholesky factor); otherwise positive
** semi-definite is enough, and a singular X gets the eigen factor V sqrt(max(L, 0)). */
static plm_status factor_cov(plm_ctx *ctx, const char *name, const double *X, int n, int need_pd, double *Xs,
                             double *G)
{
    double scale = 0, lmin, lmax;
    int i, j;
    plm_status st;
    gsl_matrix *Am, *V;
    gsl_vector *ev;
    gsl_eigen_symmv_workspace *ws;

    if ((st = check_finite(ctx, name, X, n, n, 0))) return st;
    for (i = 0; i < n * n; i++) scale = fmax(scale, fabs(X[i]));
    for (i = 0; i < n; i++)
        for (j = i + 1; j < n; j++)
            if (fabs(X[i * n + j] - X[j * n + i]) > 1e-10 * scale)
                return plm_fail(ctx, PLM_EINVAL, "lgssm: %s is not symmetric (%s[%d][%d] = %g, %s[%d][%d] = %g)",
                                name, name, i + 1, j + 1, X[i * n + j], name, j + 1, i + 1, X[j * n + i]);
    for (i = 0; i < n; i++)
        for (j = 0; j < n; j++) Xs[i * n + j] = 0.5 * (X[i * n + j] + X[j * n + i]);
    if (chol_lower(Xs, n, G) == 0) return PLM_OK;

    /* Not numerically positive definite: the eigenvalues decide between singular-but-valid and invalid. */
    Am = gsl_matrix_alloc((size_t)n, (size_t)n);
    V = gsl_matrix_alloc((size_t)n, (size_t)n);
    ev = gsl_vector_alloc((size_t)n);
    ws = gsl_eigen_symmv_alloc((size_t)n);
    if (!Am || !V || !ev || !ws) {
        st = plm_fail(ctx, PLM_ENOMEM, "lgssm: out of memory");
        goto done;
    }
    memcpy(Am->data, Xs, (size_t)n * n * sizeof *Xs);
    gsl_eigen_symmv(Am, ev, V, ws);
    lmin = gsl_vector_min(ev);
    lmax = gsl_vector_max(ev);
    if (need_pd) {
        st = plm_fail(ctx, PLM_EINVAL, "lgssm: %s must be positive definite (smallest eigenvalue %g)", name, lmin);
        goto done;
    }
    /* Eigenvalues of a PSD matrix computed in floating point can come out slightly negative. */
    if (lmin < -1e-10 * fmax(lmax, 0) || (lmax <= 0 && lmin < 0)) {
        st = plm_fail(ctx, PLM_EINVAL, "lgssm: %s must be positive semi-definite (smallest eigenvalue %g)", name,
                      lmin);
        goto done;
    }
    for (i = 0; i < n; i++)
        for (j = 0; j < n; j++) G[i * n + j] = gsl_matrix_get(V, (size_t)i, (size_t)j) * sqrt(fmax(gsl_vector_get(ev, (size_t)j), 0));
    st = PLM_OK;
done:
    if (ws) gsl_eigen_symmv_free(ws);
    if (ev) gsl_vector_free(ev);
    if (V) gsl_matrix_free(V);
    if (Am) gsl_matrix_free(Am);
    return st;
}

static double *gc_copy(const double *x, size_t n)
{
    double *y = plm_gc_alloc_atomic(n * sizeof *y);
    if (y && x) memcpy(y, x, n * sizeof *y);
    return y;
}

plm_status plm_lgssm_new(plm_ctx *ctx, const plm_lgssm_spec *sp, plm_lgssm **out)
{
    plm_lgssm *s;
    plm_status st;
    int n = sp->n, m = sp->m;
    size_t nn, mm;
    plm_init();
    *out = NULL;
    if (n < 1 || m < 1) return plm_fail(ctx, PLM_EINVAL, "lgssm: dimensions must be >= 1 (state %d, observation %d)", n, m);
    if (!sp->A || !sp->Q || !sp->C || !sp->R || !sp->m0 || !sp->P0)
        return plm_fail(ctx, PLM_EINVAL, "lgssm: A, Q, C, R, m0 and P0 are required");
    if ((st = check_finite(ctx, "A", sp->A, n, n, 0)) || (st = check_finite(ctx, "C", sp->C, m, n, 0)) ||
        (st = check_finite(ctx, "m0", sp->m0, n, 1, 1)) ||
        (sp->b && (st = check_finite(ctx, "b", sp->b, n, 1, 1))) ||
        (sp->d && (st = check_finite(ctx, "d", sp->d, m, 1, 1))))
        return st;
    nn = (size_t)n * n;
    mm = (size_t)m * m;
    if (!(s = plm_gc_alloc(sizeof *s))) return plm_fail(ctx, PLM_ENOMEM, "lgssm: out of memory");
    s->n = n;
    s->m = m;
    s->A = gc_copy(sp->A, nn);
    s->b = gc_copy(sp->b, (size_t)n);
    s->C = gc_copy(sp->C, (size_t)m * n);
    s->d = gc_copy(sp->d, (size_t)m);
    s->m0 = gc_copy(sp->m0, (size_t)n);
    s->Q = gc_copy(NULL, nn);
    s->R = gc_copy(NULL, mm);
    s->P0 = gc_copy(NULL, nn);
    s->GQ = gc_copy(NULL, nn);
    s->GR = gc_copy(NULL, mm);
    s->G0 = gc_copy(NULL, nn);
    if (!s->A || !s->b || !s->C || !s->d || !s->m0 || !s->Q || !s->R || !s->P0 || !s->GQ || !s->GR || !s->G0)
        return plm_fail(ctx, PLM_ENOMEM, "lgssm: out of memory");
    if ((st = factor_cov(ctx, "Q", sp->Q, n, 0, s->Q, s->GQ)) || (st = factor_cov(ctx, "R", sp->R, m, 1, s->R, s->GR)) ||
        (st = factor_cov(ctx, "P0", sp->P0, n, 0, s->P0, s->G0)))
        return st;
    /* Eigen factors of singular Q or P0 are full; triangularise them so every factor is lower triangular
    ** (the banded pre-arrays rely on it). */
    tria(s->GQ, n, n, n);
    tria(s->G0, n, n, n);
    *out = s;
    return PLM_OK;
}

/* ---- the square-root steps ---- */

typedef struct work {
    int n, m;
    double *x, *xp, *xs;   /* n: filtered, predicted, smoothed-ahead means */
    double *S, *Sp;        /* n*n lower factors: filtered, predicted */
    double *M;             /* pre-array: (m+n) x (m+n) for updates, n x 3n for smoothing */
    double *e;             /* m: whitened innovation */
    double *W, *J, *B;     /* n*n smoother scratch */
    double *Ro, *Lo;       /* m*m: observed block of R and its factor */
    int *obs;              /* m: indices of observed entries */
    void *mem;
} work;

static int work_alloc(work *w, int n, int m)
{
    size_t nn = (size_t)n * n, pre = (size_t)(m + n) * (m + n), sm = 3 * nn, total;
    double *p;
    if (sm > pre) pre = sm;
    total = 3 * (size_t)n + 5 * nn + pre + (size_t)m + 2 * (size_t)m * m;
    w->n = n;
    w->m = m;
    if (!(w->mem = malloc(total * sizeof(double) + (size_t)m * sizeof(int)))) return -1;
    p = w->mem;
    w->x = p, p += n;
    w->xp = p, p += n;
    w->xs = p, p += n;
    w->S = p, p += nn;
    w->Sp = p, p += nn;
    w->W = p, p += nn;
    w->J = p, p += nn;
    w->B = p, p += nn;
    w->M = p, p += pre;
    w->e = p, p += m;
    w->Ro = p, p += (size_t)m * m;
    w->Lo = p, p += (size_t)m * m;
    w->obs = (int *)p;
    return 0;
}

/* Lower-triangularise the r x c row-major array M (r <= c) in place by Householder reflections applied from
** the right: afterwards M[:, :r] = L is lower triangular with L L' equal to the original M M', a non-negative
** diagonal, and M[:, r:] is zero. Row i's reflection zeroes its entries right of the diagonal; it touches
** only rows below i, so the rows above keep their zeros.
** Band: the caller promises that row i has no non-zero right of column i + w - 1 when its turn comes (w = c
** for a dense array). The reflections then only touch columns [i, i + w), which is what makes the pre-arrays
** below, built from lower-triangular blocks, cost about as much as the textbook covariance update. */
static void tria(double *restrict M, int r, int c, int w)
{
    int i, j, k;
    for (i = 0; i < r; i++) {
        double *restrict v = M + (size_t)i * c;
        int hi = i + w < c ? i + w : c;
        double nrm = 0, x0 = v[i], alpha, beta;
        for (j = i; j < hi; j++) nrm += v[j] * v[j];
        nrm = sqrt(nrm);
        if (nrm == 0) continue;
        alpha = x0 >= 0 ? -nrm : nrm;     /* sign chosen against x0: no cancellation in v0 = x0 - alpha */
        v[i] = x0 - alpha;
        beta = 1.0 / (nrm * (nrm + fabs(x0)));   /* 2 / (v'v) */
        /* rows in pairs: each load of v serves two rows, and the two dot products run side by side */
        for (k = i + 1; k + 1 < r; k += 2) {
            double *restrict u = M + (size_t)k * c, *restrict u2 = u + c;
            double d0 = 0, d1 = 0;
            for (j = i; j < hi; j++) d0 += u[j] * v[j], d1 += u2[j] * v[j];
            d0 *= beta, d1 *= beta;
            for (j = i; j < hi; j++) u[j] -= d0 * v[j], u2[j] -= d1 * v[j];
        }
        if (k < r) {
            double *restrict u = M + (size_t)k * c;
            double d0 = 0;
            for (j = i; j < hi; j++) d0 += u[j] * v[j];
            d0 *= beta;
            for (j = i; j < hi; j++) u[j] -= d0 * v[j];
        }
        for (j = i + 1; j < hi; j++) v[j] = 0;
        v[i] = alpha;
        if (alpha < 0)   /* flip column i (an orthogonal map) so the diagonal is >= 0 */
            for (k = i; k < r; k++) M[(size_t)k * c + i] = -M[(size_t)k * c + i];
    }
}

/* dst (rows x n, row stride ld) = X (rows x n) * L (n x n lower triangular). */
static void mul_lower(double *restrict dst, int ld, const double *restrict X, int rows, const double *restrict L,
                      int n)
{
    int i, j, k;
    for (i = 0; i < rows; i++) {
        double *restrict d = dst + (size_t)i * ld;
        const double *restrict xi = X + (size_t)i * n;
        for (j = 0; j < n; j++) d[j] = 0;
        for (k = 0; k < n; k++) {
            double a = xi[k];
            const double *restrict lk = L + (size_t)k * n;
            if (a == 0) continue;
            for (j = 0; j <= k; j++) d[j] += a * lk[j];
        }
    }
}

/* P = S S' for lower-triangular S: exactly symmetric because each pair is computed once and mirrored. */
static void factor_to_cov(const double *restrict S, int n, double *restrict P)
{
    int i, j, k;
    for (i = 0; i < n; i++)
        for (j = 0; j <= i; j++) {
            double v = 0;
            for (k = 0; k <= j; k++) v += S[i * n + k] * S[j * n + k];
            P[i * n + j] = P[j * n + i] = v;
        }
}

/* Time update: (x, S) of x_{t-1} -> (xp, Sp) of x_t, from the pre-array [A S, GQ] (n x 2n). GQ is lower
** triangular, so row i is zero right of column n + i: a band of width n + 1. */
static void predict(const plm_lgssm *s, work *w, const double *x, const double *S, double *xp, double *Sp)
{
    int n = s->n, i, j, k;
    double *M = w->M;
    for (i = 0; i < n; i++) {
        double v = s->b[i];
        for (k = 0; k < n; k++) v += s->A[i * n + k] * x[k];
        xp[i] = v;
    }
    mul_lower(M, 2 * n, s->A, n, S, n);
    for (i = 0; i < n; i++) memcpy(M + (size_t)i * 2 * n + n, s->GQ + (size_t)i * n, (size_t)n * sizeof *M);
    tria(M, n, 2 * n, n + 1);
    for (i = 0; i < n; i++)
        for (j = 0; j < n; j++) Sp[i * n + j] = j <= i ? M[(size_t)i * 2 * n + j] : 0;
}

/* Measurement update with the observed entries of y: (xp, Sp) -> (x, S), adding log p(y_obs | past) to *ll.
** With p observed entries and Lo the lower Cholesky factor of R_oo, the pre-array ((p+n) x (n+p))
**     [ C_o Sp   Lo ]   triangularises to   [ Se  0  ]
**     [ Sp       0  ]                       [ Kb  S+ ]
** with Se Se' the innovation covariance, Kb = P C_o' Se^-T and S+ the filtered factor. Putting the
** triangular Lo on the right makes every row zero beyond column n + i: a band of width n + 1.
** Returns 0, or -1 when the innovation covariance is numerically singular. */
static int update(const plm_lgssm *s, work *w, const double *y, const double *xp, const double *Sp, double *x,
                  double *S, double *ll)
{
    int n = s->n, m = s->m, c, p = 0, i, j, k;
    double *M = w->M, *e = w->e, q = 0, logdet = 0, det = 1;
    const double *Lo = s->GR;
    for (j = 0; j < m; j++)
        if (!isnan(y[j])) w->obs[p++] = j;
    if (p == 0) {
        memcpy(x, xp, (size_t)n * sizeof *x);
        memcpy(S, Sp, (size_t)n * n * sizeof *S);
        return 0;
    }
    if (p < m) {   /* partly observed: the factor of the observed block of R (rows of GR would not be triangular) */
        for (i = 0; i < p; i++)
            for (j = 0; j < p; j++) w->Ro[i * p + j] = s->R[w->obs[i] * m + w->obs[j]];
        if (chol_lower(w->Ro, p, w->Lo)) return -1;
        Lo = w->Lo;
    }
    c = n + p;
    for (i = 0; i < p; i++) {
        int o = w->obs[i];
        const double *restrict Co = s->C + (size_t)o * n;
        double *restrict d = M + (size_t)i * c;
        double r = y[o] - s->d[o];
        for (k = 0; k < n; k++) r -= Co[k] * xp[k];
        e[i] = r;
        for (j = 0; j < n; j++) d[j] = 0;
        for (k = 0; k < n; k++) {   /* C_o Sp, Sp lower triangular */
            double a = Co[k];
            const double *restrict sk = Sp + (size_t)k * n;
            for (j = 0; j <= k; j++) d[j] += a * sk[j];
        }
        memcpy(d + n, Lo + (size_t)i * p, (size_t)p * sizeof *d);
    }
    for (i = 0; i < n; i++) {
        double *row = M + (size_t)(p + i) * c;
        memcpy(row, Sp + (size_t)i * n, (size_t)n * sizeof *row);
        memset(row + n, 0, (size_t)p * sizeof *row);
    }
    tria(M, p + n, c, n + 1);
    for (i = 0; i < p; i++) {   /* e <- Se^-1 e: the whitened innovation */
        double piv = M[(size_t)i * c + i], v = e[i];
        if (!(piv > 0)) return -1;
        for (k = 0; k < i; k++) v -= M[(size_t)i * c + k] * e[k];
        e[i] = v / piv;
        q += e[i] * e[i];
        det *= piv;
        if (!(det > 1e-200 && det < 1e200)) logdet += log(det), det = 1;   /* one log per step, no overflow */
    }
    logdet += log(det);
    *ll += -0.5 * (p * LOG2PI + q) - logdet;
    for (i = 0; i < n; i++) {
        const double *row = M + (size_t)(p + i) * c;
        double v = xp[i];
        for (k = 0; k < p; k++) v += row[k] * e[k];
        x[i] = v;
        for (j = 0; j < n; j++) S[i * n + j] = j <= i ? row[p + j] : 0;
    }
    return 0;
}

static plm_status check_obs(plm_ctx *ctx, size_t T, int m, const double *ys)
{
    size_t t;
    int j;
    if (T == 0) return plm_fail(ctx, PLM_EINVAL, "lgssm: the observation sequence is empty");
    for (t = 0; t < T; t++)
        for (j = 0; j < m; j++)
            if (isinf(ys[t * m + j]))
                return plm_fail(ctx, PLM_EINVAL, "lgssm: ys[%zu][%d] is infinite (missing entries are NaN)", t + 1, j + 1);
    return PLM_OK;
}

enum { RUN_LOGLIK, RUN_FILTER, RUN_FACTORS };

/* The forward pass. RUN_FILTER writes means and covariances; RUN_FACTORS writes means and the lower factors
** (the smoother's input). */
static plm_status forward(plm_ctx *ctx, const plm_lgssm *s, work *w, size_t T, const double *ys, double *means,
                          double *covs, double *loglik, int mode)
{
    int n = s->n, m = s->m;
    size_t t, nn = (size_t)n * n;
    double ll = 0;
    memcpy(w->x, s->m0, (size_t)n * sizeof *w->x);
    memcpy(w->S, s->G0, nn * sizeof *w->S);
    for (t = 0; t < T; t++) {
        if ((t & 4095) == 4095 && plm_interrupted()) return plm_fail(ctx, PLM_EINTR, "lgssm: interrupted");
        predict(s, w, w->x, w->S, w->xp, w->Sp);
        if (update(s, w, ys + t * m, w->xp, w->Sp, w->x, w->S, &ll))
            return plm_fail(ctx, PLM_ERUNTIME, "lgssm: the innovation covariance at t = %zu is numerically singular", t + 1);
        if (mode == RUN_LOGLIK) continue;
        memcpy(means + t * n, w->x, (size_t)n * sizeof *means);
        if (mode == RUN_FILTER)
            factor_to_cov(w->S, n, covs + t * nn);
        else
            memcpy(covs + t * nn, w->S, nn * sizeof *covs);
    }
    if (loglik) *loglik = ll;
    return PLM_OK;
}

plm_status plm_lgssm_loglik(plm_ctx *ctx, const plm_lgssm *s, size_t T, const double *ys, double *loglik)
{
    return plm_lgssm_filter(ctx, s, T, ys, NULL, NULL, loglik);
}

plm_status plm_lgssm_filter(plm_ctx *ctx, const plm_lgssm *s, size_t T, const double *ys, double *means,
                            double *covs, double *loglik)
{
    work w;
    plm_status st;
    double ll;
    if ((st = check_obs(ctx, T, s->m, ys))) return st;
    if (work_alloc(&w, s->n, s->m)) return plm_fail(ctx, PLM_ENOMEM, "lgssm: out of memory");
    st = forward(ctx, s, &w, T, ys, means, covs, &ll, means && covs ? RUN_FILTER : RUN_LOGLIK);
    free(w.mem);
    if (st == PLM_OK && loglik) *loglik = ll;
    return st;
}

/* Solve J Pp = X for J (n x n) with Pp = Sp Sp' (X rows are right-hand sides). A zero pivot of Sp means a
** direction the prediction knows exactly; its component is set to zero, which is the generalised inverse
** the smoother needs (that direction carries no information back). */
static void solve_gain(const double *Sp, int n, const double *X, double *J)
{
    int r, i, k;
    double dmax = 0, tol;
    for (i = 0; i < n; i++) dmax = fmax(dmax, Sp[i * n + i]);
    tol = 1e-14 * dmax;
    for (r = 0; r < n; r++) {
        double *z = J + (size_t)r * n;
        const double *x = X + (size_t)r * n;
        for (i = 0; i < n; i++) {   /* Sp z = x */
            double v = x[i];
            for (k = 0; k < i; k++) v -= Sp[i * n + k] * z[k];
            z[i] = Sp[i * n + i] > tol ? v / Sp[i * n + i] : 0;
        }
        for (i = n - 1; i >= 0; i--) {   /* Sp' j = z, in place */
            double v = z[i];
            for (k = i + 1; k < n; k++) v -= Sp[k * n + i] * z[k];
            z[i] = Sp[i * n + i] > tol ? v / Sp[i * n + i] : 0;
        }
    }
}

plm_status plm_lgssm_smooth(plm_ctx *ctx, const plm_lgssm *s, size_t T, const double *ys, double *means,
                            double *covs, double *loglik)
{
    work w;
    plm_status st;
    int n = s->n, i, j, k;
    size_t nn = (size_t)n * n, t;
    double ll, *M;
    if ((st = check_obs(ctx, T, s->m, ys))) return st;
    if (work_alloc(&w, s->n, s->m)) return plm_fail(ctx, PLM_ENOMEM, "lgssm: out of memory");
    M = w.M;
    if ((st = forward(ctx, s, &w, T, ys, means, covs, &ll, RUN_FACTORS))) goto done;
    /* Backward pass. Slot t holds the filtered mean and factor; it is overwritten by the smoothed ones, and
    ** slot t+1's smoothed factor becomes a covariance once slot t no longer needs it. Factor form:
    **   Ps_t = (I - J A) P_t (I - J A)' + J Q J' + J Ps_{t+1} J',   J = P_t A' Pp^-1,
    ** a sum of PSD terms equal to the usual P_t + J (Ps_{t+1} - Pp) J', which can go indefinite. */
    for (t = T - 1; t-- > 0;) {
        double *St = covs + t * nn, *Ss1 = covs + (t + 1) * nn, *xt = means + t * n, *xs1 = means + (t + 1) * n;
        if ((t & 4095) == 0 && plm_interrupted()) {
            st = plm_fail(ctx, PLM_EINTR, "lgssm: interrupted");
            goto done;
        }
        predict(s, &w, xt, St, w.xp, w.Sp);
        /* W = St' A', then X = St W = P_t A' (into B) */
        for (k = 0; k < n; k++)
            for (i = 0; i < n; i++) {
                double v = 0;
                for (j = k; j < n; j++) v += St[j * n + k] * s->A[i * n + j];
                w.W[k * n + i] = v;
            }
        for (i = 0; i < n; i++)
            for (j = 0; j < n; j++) {
                double v = 0;
                for (k = 0; k <= i; k++) v += St[i * n + k] * w.W[k * n + j];
                w.B[i * n + j] = v;
            }
        solve_gain(w.Sp, n, w.B, w.J);
        for (i = 0; i < n; i++) {   /* smoothed mean */
            double v = xt[i];
            for (k = 0; k < n; k++) v += w.J[i * n + k] * (xs1[k] - w.xp[k]);
            w.xs[i] = v;
        }
        /* B = I - J A */
        for (i = 0; i < n; i++)
            for (j = 0; j < n; j++) {
                double v = i == j;
                for (k = 0; k < n; k++) v -= w.J[i * n + k] * s->A[k * n + j];
                w.B[i * n + j] = v;
            }
        mul_lower(M, 3 * n, w.B, n, St, n);
        for (i = 0; i < n; i++)
            for (j = 0; j < n; j++) {
                double v = 0;
                for (k = 0; k < n; k++) v += w.J[i * n + k] * s->GQ[k * n + j];
                M[(size_t)i * 3 * n + n + j] = v;
            }
        mul_lower(M + 2 * n, 3 * n, w.J, n, Ss1, n);
        tria(M, n, 3 * n, 3 * n);
        memcpy(xt, w.xs, (size_t)n * sizeof *xt);
        for (i = 0; i < n; i++)
            for (j = 0; j < n; j++) St[i * n + j] = j <= i ? M[(size_t)i * 3 * n + j] : 0;
        memcpy(w.W, Ss1, nn * sizeof *w.W);
        factor_to_cov(w.W, n, Ss1);
    }
    memcpy(w.W, covs, nn * sizeof *w.W);
    factor_to_cov(w.W, n, covs);
    if (loglik) *loglik = ll;
done:
    free(w.mem);
    return st;
}

plm_status plm_lgssm_sample(plm_ctx *ctx, const plm_lgssm *s, size_t T, plm_rng *r, double *xs, double *ys)
{
    int n = s->n, m = s->m, i, k;
    size_t t;
    double *x, *xn, *z;
    if (T == 0) return plm_fail(ctx, PLM_EINVAL, "lgssm: sample: T must be >= 1");
    if (!(x = malloc((size_t)(2 * n + (n > m ? n : m)) * sizeof *x))) return plm_fail(ctx, PLM_ENOMEM, "lgssm: out of memory");
    xn = x + n;
    z = xn + n;
    for (i = 0; i < n; i++) z[i] = plm_rng_normal(r);
    for (i = 0; i < n; i++) {
        double v = s->m0[i];
        for (k = 0; k < n; k++) v += s->G0[i * n + k] * z[k];
        x[i] = v;
    }
    for (t = 0; t < T; t++) {
        for (i = 0; i < n; i++) z[i] = plm_rng_normal(r);
        for (i = 0; i < n; i++) {
            double v = s->b[i];
            for (k = 0; k < n; k++) v += s->A[i * n + k] * x[k] + s->GQ[i * n + k] * z[k];
            xn[i] = v;
        }
        memcpy(x, xn, (size_t)n * sizeof *x);
        if (xs) memcpy(xs + t * n, x, (size_t)n * sizeof *x);
        for (i = 0; i < m; i++) z[i] = plm_rng_normal(r);
        if (ys)
            for (i = 0; i < m; i++) {
                double v = s->d[i];
                for (k = 0; k < n; k++) v += s->C[i * n + k] * x[k];
                for (k = 0; k < m; k++) v += s->GR[i * m + k] * z[k];
                ys[t * m + i] = v;
            }
    }
    free(x);
    return PLM_OK;
}
