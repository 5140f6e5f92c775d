/* bffg_kernel.c -- the kernels BFFG knows: discrete transition matrices (and CTMCs over an interval, through
** their transition matrix) and linear-Gaussian kernels y ~ N(B x + beta, Q) (and Brownian motion over an
** interval). Each kind is a plm_bffg_kernel_ops table: pull-back of a message, the message of an observation,
** and the guided kernel with its draw and weight.
**
** Linear-Gaussian algebra. Messages are log h(y) = c + F'y - y'Hy/2 with H only positive semi-definite (a
** coordinate never observed has no curvature), so nothing here inverts H. Q enters through a factor G (dout*r,
** G G' = Q: its Cholesky factor, or V sqrt(Lambda) over the positive eigenvalues when Q is singular), and every
** solve is with the Cholesky factor R of M = I_r + G'HG, whose eigenvalues are >= 1: it is always well
** conditioned, even when H or Q is singular. For y ~ N(mu, Q):
**   integral of N(y; mu, Q) h(y) dy = exp(c~ + F~'mu - mu'H~mu/2), with (push-through / Woodbury identities)
**     W = R^-1 G'H,  u = R^-1 G'F,  H~ = H - W'W,  F~ = F - W'u,  c~ = c + u'u/2 - log det R,
** and mu = B x + beta gives the parent's message H_p = B'H~B, F_p = B'(F~ - H~ beta),
** c_p = c~ + F~'beta - beta'H~beta/2. The subtraction in H~ loses relative accuracy of order eps * |H Q| when the
** observations are far more precise than the kernel's noise; the exact zero-noise limit needs no subtraction but
** an invertible Q, which latent kernels need not have.
** The guided kernel q(y | x) ~ N(y; mu, Q) h(y) is y = mu + G u with u = R^-T (a + z), a = R^-1 G'(F - H mu),
** z ~ N(0, I_r). In the coordinates u of the kernel's noise (y = mu + G u, u ~ N(0, I) under the model) the
** weight is log p - log q = |z|^2/2 - |u|^2/2 - log det R, which is also log p(y|x) - log q(y|x) in y when Q is
** invertible (the Jacobian |det G| cancels). */
#include "bffg_impl.h"

#include <gsl/gsl_cdf.h>
#include <gsl/gsl_eigen.h>
#include <gsl/gsl_linalg.h>
#include <math.h>
#include <string.h>

#define LOG_2PI 1.8378770664093454836

/* ---- small dense helpers (row-major) ------------------------------------------------------------------ */

#define SMALL_CHOL 4

/* Lower Cholesky factor of the n*n matrix A in place (upper triangle zeroed) by GSL; *logdet receives
** sum log L_ii. Returns 0, or -1 when A is not positive definite. */
int plm_bffg_chol_lower(double *A, int n, double *logdet)
{
    gsl_matrix_view v;
    int i, j, l;
    *logdet = 0;
    if (n == 0) return 0;
    if (n <= SMALL_CHOL) {   /* plain Cholesky-Banachiewicz: GSL's set-up costs more than the work at these sizes */
        double prod = 1;     /* one log for the determinant (n <= 4 factors cannot overflow for finite input) */
        for (i = 0; i < n; i++) {
            for (j = 0; j <= i; j++) {
                double acc = A[i * n + j];
                for (l = 0; l < j; l++) acc -= A[i * n + l] * A[j * n + l];
                if (i == j) {
                    if (!(acc > 0)) return -1;
                    A[i * n + i] = sqrt(acc);
                    prod *= A[i * n + i];
                } else
                    A[i * n + j] = acc / A[j * n + j];
            }
            for (j = i + 1; j < n; j++) A[i * n + j] = 0;
        }
        *logdet = log(prod);
        return 0;
    }
    v = gsl_matrix_view_array(A, (size_t)n, (size_t)n);
    if (gsl_linalg_cholesky_decomp1(&v.matrix) != 0) return -1;
    for (i = 0; i < n; i++) {
        if (!(A[i * n + i] > 0)) return -1;
        *logdet += log(A[i * n + i]);
        for (j = i + 1; j < n; j++) A[i * n + j] = 0;
    }
    return 0;
}

/* x := L^-1 x for lower triangular L (n*n), x of n entries with stride s. */
void plm_bffg_solve_lower(const double *L, int n, double *x, int s)
{
    for (int i = 0; i < n; i++) {
        double acc = x[i * s];
        for (int j = 0; j < i; j++) acc -= L[i * n + j] * x[j * s];
        x[i * s] = acc / L[i * n + i];
    }
}

/* x := L^-T x. */
void plm_bffg_solve_lower_t(const double *L, int n, double *x)
{
    for (int i = n - 1; i >= 0; i--) {
        double acc = x[i];
        for (int j = i + 1; j < n; j++) acc -= L[j * n + i] * x[j];
        x[i] = acc / L[i * n + i];
    }
}

/* Dimensions up to which a pull-back needs no allocation. */
#define SMALL 8

static double *dalloc(size_t n)
{
    return plm_gc_alloc_atomic((n ? n : 1) * sizeof(double));
}

/* ---- discrete ----------------------------------------------------------------------------------------- */

/* out->v[i] = sum_j P[i][j] w[j], rescaled to max 1 with the log of the scale added to out->c. */
static plm_status disc_pullback(plm_ctx *ctx, const plm_bffg_kernel *k, const plm_bffg_msg *child, plm_bffg_msg *out)
{
    int rows = k->din ? k->din : 1, K = k->dout, i, j;
    double mx = 0;
    (void)ctx;
    for (i = 0; i < rows; i++) {
        const double *p = k->P + (size_t)i * K;
        double acc = 0;
        for (j = 0; j < K; j++) acc += p[j] * child->v[j];
        if (k->din)
            out->v[i] = acc;
        mx = fmax(mx, acc);
        if (!k->din) mx = acc;
    }
    if (mx == 0) {
        out->c = -INFINITY;
        return PLM_OK;
    }
    if (k->din)
        for (i = 0; i < rows; i++) out->v[i] /= mx;
    out->c = child->c + log(mx);
    return PLM_OK;
}

static plm_status disc_observe(plm_ctx *ctx, const plm_bffg_kernel *k, const double *y, plm_bffg_msg *out)
{
    int rows = k->din ? k->din : 1, K = k->dout, s = (int)y[0], i;
    double mx = 0;
    (void)ctx;
    for (i = 0; i < rows; i++) mx = fmax(mx, k->P[(size_t)i * K + s]);
    if (mx == 0) {
        out->c = -INFINITY;
        return PLM_OK;
    }
    if (k->din)
        for (i = 0; i < rows; i++) out->v[i] = k->P[(size_t)i * K + s] / mx;
    out->c = log(mx);
    return PLM_OK;
}

/* The guided kernel needs only the child's message vector, which the filter keeps. */
static plm_status disc_guide(plm_ctx *ctx, const plm_bffg_kernel *k, const plm_bffg_msg *child, void **guide)
{
    (void)ctx, (void)k;
    *guide = child->v;
    return PLM_OK;
}

/* q(j) = P[x][j] v[j] / S; the weight log P[x][y] - log q(y) is log S - log v[y] when exact. */
static double disc_draw(const plm_bffg_kernel *k, const void *guide, const double *x, double *y, plm_rng *r,
                        double uz)
{
    const double *v = guide, *p = k->P + (size_t)(x ? (int)x[0] : 0) * k->dout;
    int K = k->dout, j, pick = -1;
    double S = 0, u, q;
    for (j = 0; j < K; j++) S += p[j] * v[j];
    if (!(S > 0)) {   /* unreachable from a parent drawn from its own guided kernel */
        y[0] = 0;
        return -INFINITY;
    }
    u = (r ? plm_rng_uniform(r) : uz) * S;
    for (j = 0; j < K; j++) {
        double t = p[j] * v[j];
        if (t > 0) {
            pick = j;
            if (u < t) break;
            u -= t;
        }
    }
    y[0] = pick;
    q = p[pick] * v[pick] / S;
    return log(p[pick]) - log(q);
}

static double disc_sample(const plm_bffg_kernel *k, const void *guide, const double *x, double *y, plm_rng *r,
                          double *work)
{
    (void)work;
    return disc_draw(k, guide, x, y, r, 0);
}

/* The uniform is Phi(z), kept inside (0, 1) like plm_rng_uniform's. */
static double disc_sample_z(const plm_bffg_kernel *k, const void *guide, const double *x, const double *z, double *y,
                            double *work)
{
    double u = gsl_cdf_ugaussian_P(z[0]);
    (void)work;
    return disc_draw(k, guide, x, y, NULL, fmin(fmax(u, 0x1.0p-54), 1 - 0x1.0p-54));
}

static double disc_logpdf(const plm_bffg_kernel *k, const double *x, const double *y, double *work)
{
    (void)work;
    return log(k->P[(size_t)(x ? (int)x[0] : 0) * k->dout + (int)y[0]]);
}

static const plm_bffg_kernel_ops disc_ops = {"discrete", disc_pullback, disc_observe, disc_guide, disc_sample,
                                             disc_logpdf, disc_sample_z, NULL, NULL, NULL, NULL, NULL};

plm_status plm_bffg_kernel_discrete(plm_ctx *ctx, int Kin, int Kout, const double *P, plm_bffg_kernel **out)
{
    int rows = Kin ? Kin : 1, i, j;
    plm_bffg_kernel *k;
    plm_init();
    if (Kin < 0 || Kout < 1) return plm_fail(ctx, PLM_EINVAL, "markov_kernel.discrete: needs >= 1 states (got %d -> %d)", Kin, Kout);
    if (!P) return plm_fail(ctx, PLM_EINVAL, "markov_kernel.discrete: missing matrix P");
    for (i = 0; i < rows; i++) {
        double s = 0;
        for (j = 0; j < Kout; j++) {
            double p = P[(size_t)i * Kout + j];
            if (!(p >= 0) || !isfinite(p))
                return plm_fail(ctx, PLM_EINVAL, "markov_kernel.discrete: P[%d][%d] must be a probability (got %g)", i + 1,
                                j + 1, p);
            s += p;
        }
        if (fabs(s - 1) > 1e-9)
            return plm_fail(ctx, PLM_EINVAL, "markov_kernel.discrete: row %d of P must sum to 1 (sum is %.17g)", i + 1, s);
    }
    k = plm_gc_alloc(sizeof *k);
    if (!k || !(k->P = dalloc((size_t)rows * Kout))) return plm_fail(ctx, PLM_ENOMEM, "markov_kernel.discrete: out of memory");
    memcpy(k->P, P, (size_t)rows * Kout * sizeof *P);
    k->ops = &disc_ops;
    k->discrete_in = 1, k->discrete_out = 1;
    k->din = Kin, k->dout = Kout;
    k->nz = 1;
    *out = k;
    return PLM_OK;
}

plm_status plm_bffg_kernel_ctmc(plm_ctx *ctx, const plm_ctmc *chain, double t, plm_bffg_kernel **out)
{
    double *P;
    plm_status st;
    if (!chain) return plm_fail(ctx, PLM_EINVAL, "markov_kernel.ctmc: missing chain");
    if (!(t >= 0) || !isfinite(t)) return plm_fail(ctx, PLM_EINVAL, "markov_kernel.ctmc: t must be finite and >= 0 (got %g)", t);
    if (!(P = dalloc((size_t)chain->K * chain->K))) return plm_fail(ctx, PLM_ENOMEM, "markov_kernel.ctmc: out of memory");
    if ((st = plm_ctmc_transition(ctx, chain, t, P))) return st;
    return plm_bffg_kernel_discrete(ctx, chain->K, chain->K, P, out);
}

/* ---- linear-Gaussian ---------------------------------------------------------------------------------- */

/* The guided kernel toward a child with message (F, H): see the header comment. */
typedef struct lg_guide {
    int r, dc;
    double *R;      /* r*r lower Cholesky factor of I + G'HG */
    double *GtH;    /* r*dc */
    double *GtF;    /* r */
    double logdetR;
} lg_guide;

/* G'H, M = I + G'HG and its Cholesky factor R (into the caller's GtH r*dc and R r*r). */
static inline __attribute__((always_inline)) plm_status
lg_factor_d(plm_ctx *ctx, const plm_bffg_kernel *k, const double *H, double *GtH, double *R, double *logdetR, const int D)
{
    int dc = D ? D : k->dout, r = D ? D : k->r, a, b, i, j;
    const double *G = k->G;
    for (a = 0; a < r; a++)
        for (j = 0; j < dc; j++) {
            double acc = 0;
            for (i = 0; i < dc; i++) acc += G[i * r + a] * H[i * dc + j];
            GtH[a * dc + j] = acc;
        }
    for (a = 0; a < r; a++)
        for (b = 0; b <= a; b++) {
            double acc = 0;
            for (j = 0; j < dc; j++) acc += GtH[a * dc + j] * G[j * r + b];
            R[a * r + b] = R[b * r + a] = acc + (a == b);
        }
    if (plm_bffg_chol_lower(R, r, logdetR))
        return plm_fail(ctx, PLM_EDOM, "bffg: a Gaussian message lost positive semi-definiteness (I + G'HG is not "
                                       "positive definite); the model is too ill-conditioned");
    return PLM_OK;
}

static plm_status lg_factor(plm_ctx *ctx, const plm_bffg_kernel *k, const double *H, double *GtH, double *R,
                            double *logdetR)
{
    return lg_factor_d(ctx, k, H, GtH, R, logdetR, 0);
}

static inline __attribute__((always_inline)) plm_status
lg_pullback_d(plm_ctx *ctx, const plm_bffg_kernel *k, const plm_bffg_msg *child, plm_bffg_msg *out, const int D)
{
    int dc = D ? D : k->dout, dp = D ? D : k->din, r = D ? D : k->r, a, i, j, l;
    const double *H = child->H, *F = child->v, *beta = k->beta, *B = k->B;
    /* small kernels (the steps of a diffusion's backward filter run this thousands of times per filter) work on
    ** the stack; larger ones on GC memory */
    double sbuf[4 * SMALL * SMALL + 4 * SMALL], *buf = sbuf;
    double *GtH, *R, *u, *Ht, *Ft, *Hb, *T;
    double logdetR, ct, uu = 0, acc;
    plm_status st;
    if (dc > SMALL || dp > SMALL || r > SMALL) {
        if (!(buf = dalloc((size_t)r * dc + (size_t)r * r + (size_t)r + (size_t)dc * dc + 2 * (size_t)dc + (size_t)dc * dp)))
            return plm_fail(ctx, PLM_ENOMEM, "bffg: out of memory");
    }
    GtH = buf, R = GtH + (size_t)r * dc, u = R + (size_t)r * r, Ht = u + r, Ft = Ht + (size_t)dc * dc, Hb = Ft + dc;
    T = Hb + dc;
    if ((st = lg_factor_d(ctx, k, H, GtH, R, &logdetR, D))) return st;
    /* W = R^-1 G'H (in GtH), u = R^-1 G'F */
    for (a = 0; a < r; a++) {
        acc = 0;
        for (i = 0; i < dc; i++) acc += k->G[i * r + a] * F[i];
        u[a] = acc;
    }
    for (j = 0; j < dc; j++) plm_bffg_solve_lower(R, r, GtH + j, dc);
    plm_bffg_solve_lower(R, r, u, 1);
    for (a = 0; a < r; a++) uu += u[a] * u[a];
    /* H~ = H - W'W, F~ = F - W'u */
    for (i = 0; i < dc; i++) {
        for (j = 0; j <= i; j++) {
            acc = H[i * dc + j];
            for (a = 0; a < r; a++) acc -= GtH[a * dc + i] * GtH[a * dc + j];
            Ht[i * dc + j] = Ht[j * dc + i] = acc;
        }
        acc = F[i];
        for (a = 0; a < r; a++) acc -= GtH[a * dc + i] * u[a];
        Ft[i] = acc;
    }
    ct = child->c + 0.5 * uu - logdetR;
    /* through mu = B x + beta */
    for (i = 0; i < dc; i++) {
        acc = 0;
        for (j = 0; j < dc; j++) acc += Ht[i * dc + j] * beta[j];
        Hb[i] = acc;
    }
    acc = 0;
    for (i = 0; i < dc; i++) acc += beta[i] * (Ft[i] - 0.5 * Hb[i]);
    out->c = ct + acc;
    for (l = 0; l < dp; l++) {
        acc = 0;
        for (i = 0; i < dc; i++) acc += B[i * dp + l] * (Ft[i] - Hb[i]);
        out->v[l] = acc;
    }
    if (dp) {
        /* H_p = B'H~B, through T = H~B (dc*dp, reusing nothing: dp may exceed dc) */
        for (i = 0; i < dc; i++)
            for (l = 0; l < dp; l++) {
                acc = 0;
                for (j = 0; j < dc; j++) acc += Ht[i * dc + j] * B[j * dp + l];
                T[i * dp + l] = acc;
            }
        for (l = 0; l < dp; l++)
            for (a = 0; a <= l; a++) {
                acc = 0;
                for (i = 0; i < dc; i++) acc += B[i * dp + l] * T[i * dp + a];
                out->H[l * dp + a] = out->H[a * dp + l] = acc;
            }
    }
    return PLM_OK;
}

/* The pull-back with the dimensions as constants for a square kernel of full rank 1 or 2 (a diffusion's steps:
** the compiler unrolls the loops), else generic. */
static plm_status lg_pullback(plm_ctx *ctx, const plm_bffg_kernel *k, const plm_bffg_msg *child, plm_bffg_msg *out)
{
    if (child->gamma) {   /* only a fixed start (a prior with Q = 0) can take a gamma process's message */
        double x = k->beta[0];
        if (k->din != 0 || k->r != 0)
            return plm_fail(ctx, PLM_EINVAL, "bffg: a gamma process's message can only reach a fixed value (a root "
                                             "given as a number), not a linear-Gaussian kernel");
        out->c = x < child->gy ? child->c + (child->gk - 1) * log(child->gy - x) - child->gb * (child->gy - x) : -INFINITY;
        return PLM_OK;
    }
    if (k->dout == k->din && k->r == k->dout && k->dout == 1) return lg_pullback_d(ctx, k, child, out, 1);
    if (k->dout == k->din && k->r == k->dout && k->dout == 2) return lg_pullback_d(ctx, k, child, out, 2);
    return lg_pullback_d(ctx, k, child, out, 0);
}

/* h(x) = N(y; B x + beta, Q) = exp(-|A x - e|^2/2 - log det L - dout/2 log 2 pi), A = L^-1 B, e = L^-1 (y - beta). */
static plm_status lg_observe(plm_ctx *ctx, const plm_bffg_kernel *k, const double *y, plm_bffg_msg *out)
{
    int dc = k->dout, dp = k->din, i, j, l;
    double *A = dalloc((size_t)dc * (dp ? dp : 1)), *e = dalloc((size_t)dc), ee = 0;
    if (!A || !e) return plm_fail(ctx, PLM_ENOMEM, "bffg: out of memory");
    if (!k->L) return plm_fail(ctx, PLM_EINVAL, "bffg: an observed linear-Gaussian kernel needs Q positive definite");
    for (i = 0; i < dc; i++) e[i] = y[i] - k->beta[i];
    plm_bffg_solve_lower(k->L, dc, e, 1);
    for (i = 0; i < dc; i++) ee += e[i] * e[i];
    out->c = -0.5 * ee - k->logdetL - 0.5 * dc * LOG_2PI;
    if (!dp) return PLM_OK;
    memcpy(A, k->B, (size_t)dc * dp * sizeof *A);
    for (l = 0; l < dp; l++) plm_bffg_solve_lower(k->L, dc, A + l, dp);
    for (l = 0; l < dp; l++) {
        double acc = 0;
        for (i = 0; i < dc; i++) acc += A[i * dp + l] * e[i];
        out->v[l] = acc;
        for (j = 0; j <= l; j++) {
            acc = 0;
            for (i = 0; i < dc; i++) acc += A[i * dp + l] * A[i * dp + j];
            out->H[l * dp + j] = out->H[j * dp + l] = acc;
        }
    }
    return PLM_OK;
}

static plm_status lg_guide_new(plm_ctx *ctx, const plm_bffg_kernel *k, const plm_bffg_msg *child, void **guide)
{
    int r = k->r, dc = k->dout, a, i;
    lg_guide *g = plm_gc_alloc(sizeof *g);
    plm_status st;
    if (!g || !(g->R = dalloc((size_t)r * r)) || !(g->GtH = dalloc((size_t)r * dc)) || !(g->GtF = dalloc((size_t)r)))
        return plm_fail(ctx, PLM_ENOMEM, "bffg: out of memory");
    g->r = r, g->dc = dc;
    if ((st = lg_factor(ctx, k, child->H, g->GtH, g->R, &g->logdetR))) return st;
    for (a = 0; a < r; a++) {
        double acc = 0;
        for (i = 0; i < dc; i++) acc += k->G[i * r + a] * child->v[i];
        g->GtF[a] = acc;
    }
    *guide = g;
    return PLM_OK;
}

/* The kernel's mean mu at x, and a = R^-1 (G'F - G'H mu), the guided draw's shift in the noise's coordinates (lg_draw
** and its inverse). Returns nonzero when a nonlinear mean cannot be evaluated. */
static int lg_shift(const plm_bffg_kernel *k, const lg_guide *g, const double *x, double *mu, double *a)
{
    int dc = k->dout, dp = k->din, rr = k->r, i, j;
    if (k->mean) {
        if (plm_sde_drift(NULL, k->mean, 0, 1, x, 1, mu)) return 1;
    } else
        for (i = 0; i < dc; i++) {
            double acc = k->beta[i];
            for (j = 0; j < dp; j++) acc += k->B[i * dp + j] * x[j];
            mu[i] = acc;
        }
    for (i = 0; i < rr; i++) {
        double acc = g->GtF[i];
        for (j = 0; j < dc; j++) acc -= g->GtH[i * dc + j] * mu[j];
        a[i] = acc;
    }
    plm_bffg_solve_lower(g->R, rr, a, 1);
    return 0;
}

/* work: dc (mu) + r (a, then u). The innovations come from z, or (z NULL) from r. */
static double lg_draw(const plm_bffg_kernel *k, const void *guide, const double *x, const double *zin, double *y,
                      plm_rng *r, double *work)
{
    const lg_guide *g = guide;
    int dc = k->dout, rr = k->r, i, j;
    double *mu = work, *a = work + dc, zz = 0, uu = 0;
    if (lg_shift(k, g, x, mu, a)) return NAN;
    for (i = 0; i < rr; i++) {
        double z = zin ? zin[i] : plm_rng_normal(r);
        zz += z * z;
        a[i] += z;
    }
    plm_bffg_solve_lower_t(g->R, rr, a);
    for (i = 0; i < rr; i++) uu += a[i] * a[i];
    for (i = 0; i < dc; i++) {
        double acc = mu[i];
        for (j = 0; j < rr; j++) acc += k->G[i * rr + j] * a[j];
        y[i] = acc;
    }
    return 0.5 * zz - 0.5 * uu - g->logdetR;
}

static double lg_sample(const plm_bffg_kernel *k, const void *guide, const double *x, double *y, plm_rng *r,
                        double *work)
{
    return lg_draw(k, guide, x, NULL, y, r, work);
}

static double lg_sample_z(const plm_bffg_kernel *k, const void *guide, const double *x, const double *z, double *y,
                          double *work)
{
    return lg_draw(k, guide, x, z, y, NULL, work);
}

/* The inverse of lg_sample_z for the conjugate update (bffg_conj.c): y = mu + G a with a = R^-T (R^-1 (G'F - G'H mu)
** + z), so a = (G'G)^-1 G'(y - mu) and z = R'a - R^-1 (G'F - G'H mu). work: as lg_draw's, then r + r * r. */
static void lg_unsample_z(const plm_bffg_kernel *k, const void *gold, const void *guide, const double *x, const double *y,
                          const double *zold, double *z, double *work)
{
    const lg_guide *g = guide;
    int dc = k->dout, rr = k->r, i, j, l;
    double *mu = work, *a0 = work + dc, *a = a0 + rr, *M = a + rr, ld;
    (void)gold, (void)zold;
    if (lg_shift(k, g, x, mu, a0)) goto fail;
    for (i = 0; i < rr; i++) {
        double at = 0;
        for (j = 0; j < dc; j++) at += k->G[j * rr + i] * (y[j] - mu[j]);
        a[i] = at;
        for (l = 0; l < rr; l++) {
            double gg = 0;
            for (j = 0; j < dc; j++) gg += k->G[j * rr + i] * k->G[j * rr + l];
            M[i * rr + l] = gg;
        }
    }
    if (plm_bffg_chol_lower(M, rr, &ld)) goto fail;
    plm_bffg_solve_lower(M, rr, a, 1);
    plm_bffg_solve_lower_t(M, rr, a);
    for (i = 0; i < rr; i++) {
        double acc = -a0[i];
        for (j = i; j < rr; j++) acc += g->R[j * rr + i] * a[j];
        z[i] = acc;
    }
    return;
fail:
    for (i = 0; i < rr; i++) z[i] = NAN;
}

static double lg_logpdf(const plm_bffg_kernel *k, const double *x, const double *y, double *work)
{
    int dc = k->dout, dp = k->din, i, j;
    double ee = 0;
    if (k->mean) {
        if (plm_sde_drift(NULL, k->mean, 0, 1, x, 1, work)) return NAN;
        for (i = 0; i < dc; i++) work[i] = y[i] - work[i];
    } else
        for (i = 0; i < dc; i++) {
            double acc = y[i] - k->beta[i];
            for (j = 0; j < dp; j++) acc -= k->B[i * dp + j] * x[j];
            work[i] = acc;
        }
    plm_bffg_solve_lower(k->L, dc, work, 1);
    for (i = 0; i < dc; i++) ee += work[i] * work[i];
    return -0.5 * ee - k->logdetL - 0.5 * dc * LOG_2PI;
}

static const plm_bffg_kernel_ops lg_ops = {"linear_gaussian", lg_pullback, lg_observe, lg_guide_new, lg_sample,
                                           lg_logpdf, lg_sample_z, NULL, NULL, lg_unsample_z, NULL, NULL};

/* G (d*r) with G G' = Q: the Cholesky factor when Q is positive definite (also kept as L), else V sqrt(Lambda)
** over the eigenvalues above d * 1e-14 * the largest. */
static plm_status factor_psd(plm_ctx *ctx, plm_bffg_kernel *k, const double *Q, const char *fn)
{
    int d = k->dout, i, j, r = 0;
    double *L = k->L ? k->L : dalloc((size_t)d * d), logdet, lmax = 0, tol;   /* (k->L: room made with k) */
    gsl_matrix *A, *V;
    gsl_vector *lam;
    gsl_eigen_symmv_workspace *w;
    if (!L) return plm_fail(ctx, PLM_ENOMEM, "%s: out of memory", fn);
    for (i = 0; i < d; i++)
        for (j = 0; j < d; j++) {
            double q = Q[i * d + j], qt = Q[j * d + i];
            if (!isfinite(q)) return plm_fail(ctx, PLM_EINVAL, "%s: Q[%d][%d] must be finite (got %g)", fn, i + 1, j + 1, q);
            if (fabs(q - qt) > 1e-12 * (fabs(q) + fabs(qt)))
                return plm_fail(ctx, PLM_EINVAL, "%s: Q is not symmetric (Q[%d][%d] = %g, Q[%d][%d] = %g)", fn, i + 1, j + 1,
                                q, j + 1, i + 1, qt);
        }
    memcpy(L, Q, (size_t)d * d * sizeof *L);
    if (plm_bffg_chol_lower(L, d, &logdet) == 0) {
        k->G = k->L = L;
        k->r = d;
        k->logdetL = logdet;
        return PLM_OK;
    }
    A = gsl_matrix_alloc((size_t)d, (size_t)d), V = gsl_matrix_alloc((size_t)d, (size_t)d);
    lam = gsl_vector_alloc((size_t)d), w = gsl_eigen_symmv_alloc((size_t)d);
    if (!A || !V || !lam || !w) {
        gsl_matrix_free(A), gsl_matrix_free(V), gsl_vector_free(lam), gsl_eigen_symmv_free(w);
        return plm_fail(ctx, PLM_ENOMEM, "%s: out of memory", fn);
    }
    for (i = 0; i < d; i++)
        for (j = 0; j < d; j++) gsl_matrix_set(A, (size_t)i, (size_t)j, Q[i * d + j]);
    gsl_eigen_symmv(A, lam, V, w);
    for (i = 0; i < d; i++) lmax = fmax(lmax, gsl_vector_get(lam, (size_t)i));
    tol = d * 1e-14 * lmax;
    for (i = 0; i < d; i++) {
        double l = gsl_vector_get(lam, (size_t)i);
        if (l < -tol - 1e-300) {
            gsl_matrix_free(A), gsl_matrix_free(V), gsl_vector_free(lam), gsl_eigen_symmv_free(w);
            return plm_fail(ctx, PLM_EINVAL, "%s: Q is not positive semi-definite (it has eigenvalue %g)", fn, l);
        }
        r += l > tol;
    }
    k->G = dalloc((size_t)d * (r ? r : 1));
    k->r = r;
    for (j = 0, r = 0; j < d; j++) {
        double l = gsl_vector_get(lam, (size_t)j);
        if (!(l > tol)) continue;
        for (i = 0; i < d; i++) k->G[i * k->r + r] = gsl_matrix_get(V, (size_t)i, (size_t)j) * sqrt(l);
        r++;
    }
    gsl_matrix_free(A), gsl_matrix_free(V), gsl_vector_free(lam), gsl_eigen_symmv_free(w);
    k->L = NULL;
    return PLM_OK;
}

plm_status plm_bffg_kernel_linear_gaussian(plm_ctx *ctx, int dout, int din, const double *B, const double *beta,
                                           const double *Q, plm_bffg_kernel **out)
{
    const char *fn = "markov_kernel.linear_gaussian";
    plm_bffg_kernel *k;
    int i;
    plm_status st;
    plm_init();
    if (dout < 1 || din < 0) return plm_fail(ctx, PLM_EINVAL, "%s: dimensions must be >= 1 (got %d -> %d)", fn, din, dout);
    if (!Q || (din && !B)) return plm_fail(ctx, PLM_EINVAL, "%s: missing %s", fn, Q ? "B" : "Q");
    /* one block: the kernel, B, beta and room for Q's Cholesky factor (diffusion kernels make one per distinct
    ** grid step, and a parameter move of pCN remakes them all) */
    k = plm_gc_alloc(sizeof *k + ((size_t)dout * din + (size_t)dout + (size_t)dout * dout) * sizeof(double));
    if (!k) return plm_fail(ctx, PLM_ENOMEM, "%s: out of memory", fn);
    k->B = (double *)(k + 1), k->beta = k->B + (size_t)dout * din, k->L = k->beta + dout;
    k->ops = &lg_ops;
    k->din = din, k->dout = dout;
    if (din) memcpy(k->B, B, (size_t)dout * din * sizeof *B);
    if (beta) memcpy(k->beta, beta, (size_t)dout * sizeof *beta);
    for (i = 0; i < dout * din; i++)
        if (!isfinite(k->B[i])) return plm_fail(ctx, PLM_EINVAL, "%s: B[%d][%d] must be finite (got %g)", fn, i / din + 1, i % din + 1, k->B[i]);
    for (i = 0; i < dout; i++)
        if (!isfinite(k->beta[i])) return plm_fail(ctx, PLM_EINVAL, "%s: beta[%d] must be finite (got %g)", fn, i + 1, k->beta[i]);
    if ((st = factor_psd(ctx, k, Q, fn))) return st;
    k->work = (size_t)dout + (size_t)k->r;
    k->nz = (size_t)k->r;
    *out = k;
    return PLM_OK;
}

static const plm_bffg_kernel_ops nl_ops = {"nonlinear_gaussian", lg_pullback, lg_observe, lg_guide_new, lg_sample,
                                           lg_logpdf, lg_sample_z, NULL, NULL, lg_unsample_z, NULL, NULL};

plm_status plm_bffg_kernel_nonlinear(plm_ctx *ctx, const plm_sde *s, const double *Q, const double *at,
                                     plm_bffg_kernel **out)
{
    const char *fn = "markov_kernel.nonlinear_gaussian";
    int d, i, j;
    double *J, *f, *beta;
    plm_bffg_kernel *lin, *k;
    plm_sde *frozen;
    plm_status st;
    plm_init();
    if (!s || !Q || !at) return plm_fail(ctx, PLM_EINVAL, "%s: needs the mean, Q and the linearisation point", fn);
    d = s->dim;
    for (i = 0; i < d; i++)
        if (!isfinite(at[i])) return plm_fail(ctx, PLM_EINVAL, "%s: at[%d] must be finite (got %g)", fn, i + 1, at[i]);
    J = dalloc((size_t)d * d), f = dalloc((size_t)d), beta = dalloc((size_t)d);
    frozen = plm_gc_alloc(sizeof *frozen);
    if (!J || !f || !beta || !frozen) return plm_fail(ctx, PLM_ENOMEM, "%s: out of memory", fn);
    *frozen = *s;   /* the parameters as they are now */
    if (!(frozen->params = dalloc((size_t)s->np))) return plm_fail(ctx, PLM_ENOMEM, "%s: out of memory", fn);
    memcpy(frozen->params, s->params, (size_t)s->np * sizeof *s->params);
    if ((st = plm_sde_jacobian(ctx, frozen, 0, 1, at, 1, J)) || (st = plm_sde_drift(ctx, frozen, 0, 1, at, 1, f))) return st;
    for (i = 0; i < d; i++) {
        double acc = f[i];
        for (j = 0; j < d; j++) acc -= J[i * d + j] * at[j];
        if (!isfinite(acc)) return plm_fail(ctx, PLM_EINVAL, "%s: the mean or its Jacobian is not finite at 'at'", fn);
        beta[i] = acc;
    }
    /* the linearisation is the auxiliary (the backward filter's kernel); the kernel itself is its copy with the
    ** compiled mean */
    if ((st = plm_bffg_kernel_linear_gaussian(ctx, d, d, J, beta, Q, &lin))) return st;
    if (!(k = plm_gc_alloc(sizeof *k))) return plm_fail(ctx, PLM_ENOMEM, "%s: out of memory", fn);
    *k = *lin;
    k->ops = &nl_ops;
    k->mean = frozen;
    k->aux = lin;
    *out = k;
    return PLM_OK;
}

plm_status plm_bffg_kernel_brownian(plm_ctx *ctx, int d, const double *Sigma, double t, plm_bffg_kernel **out)
{
    double *B, *Q;
    int i;
    if (d < 1) return plm_fail(ctx, PLM_EINVAL, "markov_kernel.brownian: dimension must be >= 1 (got %d)", d);
    if (!(t >= 0) || !isfinite(t)) return plm_fail(ctx, PLM_EINVAL, "markov_kernel.brownian: t must be finite and >= 0 (got %g)", t);
    if (!(B = dalloc((size_t)d * d)) || !(Q = dalloc((size_t)d * d)))
        return plm_fail(ctx, PLM_ENOMEM, "markov_kernel.brownian: out of memory");
    for (i = 0; i < d; i++) B[i * d + i] = 1;
    for (i = 0; i < d * d; i++) Q[i] = t * Sigma[i];
    return plm_bffg_kernel_linear_gaussian(ctx, d, d, B, NULL, Q, out);
}

plm_status plm_bffg_kernel_set_aux(plm_ctx *ctx, plm_bffg_kernel *k, const plm_bffg_kernel *aux)
{
    if (aux && (aux->discrete_in != k->discrete_in || aux->discrete_out != k->discrete_out || aux->din != k->din ||
                aux->dout != k->dout))
        return plm_fail(ctx, PLM_EINVAL, "bffg: the auxiliary kernel maps %s %d -> %s %d, but the kernel maps %s %d -> %s %d",
                        aux->discrete_in ? "states" : "R^", aux->din, aux->discrete_out ? "states" : "R^", aux->dout,
                        k->discrete_in ? "states" : "R^", k->din, k->discrete_out ? "states" : "R^", k->dout);
    if (k->impl || (aux && aux->impl))
        return plm_fail(ctx, PLM_EINVAL, "bffg: a %s kernel takes its auxiliary when it is made, and cannot be one",
                        k->impl ? k->ops->name : aux->ops->name);
    if (aux && aux->aux) return plm_fail(ctx, PLM_EINVAL, "bffg: an auxiliary kernel cannot have an auxiliary itself");
    k->aux = aux;
    return PLM_OK;
}

const char *plm_bffg_kernel_info(const plm_bffg_kernel *k, int *discrete_in, int *din, int *discrete_out, int *dout)
{
    if (discrete_in) *discrete_in = k->discrete_in;
    if (din) *din = k->din;
    if (discrete_out) *discrete_out = k->discrete_out;
    if (dout) *dout = k->dout;
    return k->ops->name;
}
