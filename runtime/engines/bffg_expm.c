/* bffg_expm.c -- the exact transition of a linear auxiliary diffusion over one grid step, for the diffusion and
** reaction-network kernels of BFFG: the matrix exponential (scaling and squaring with a Pade approximant) and
** Van Loan's integral for the step's covariance. */
#include "bffg_impl.h"

#include <gsl/gsl_linalg.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- the matrix exponential --------------------------------------------------------------------------- */

static void mmul(const double *X, const double *Y, double *C, int n)
{
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) {
            double acc = 0;
            for (int l = 0; l < n; l++) acc += X[i * n + l] * Y[l * n + j];
            C[i * n + j] = acc;
        }
}

/* The Pade approximants of Higham's scaling and squaring ("The scaling and squaring method for the matrix
** exponential revisited", SIAM J. Matrix Anal. Appl. 2005, Table 2.3 and Algorithm 2.3): degree m is used when the
** 1-norm is at most theta_m, with backward error below the unit roundoff; degree 13 with scaling above theta_13. A
** diffusion's step over a fine grid has a small norm (dt 1e-3 and a drift Jacobian of 100 give 0.1): degree 5,
** three matrix products instead of six. */
static const double pade_b[5][14] = {
    {120.0, 60.0, 12.0, 1.0},
    {30240.0, 15120.0, 3360.0, 420.0, 30.0, 1.0},
    {17297280.0, 8648640.0, 1995840.0, 277200.0, 25200.0, 1512.0, 56.0, 1.0},
    {17643225600.0, 8821612800.0, 2075673600.0, 302702400.0, 30270240.0, 2162160.0, 110880.0, 3960.0, 90.0, 1.0},
    {64764752532480000.0, 32382376266240000.0, 7771770303897600.0, 1187353796428800.0, 129060195264000.0,
     10559470521600.0, 670442572800.0, 33522128640.0, 1323241920.0, 40840800.0, 960960.0, 16380.0, 182.0, 1.0}};
static const double pade_theta[5] = {1.495585217958292e-2, 2.539398330063230e-1, 9.504178996162932e-1,
                                     2.097847961257068e0, 5.371920351148152e0};
static const int pade_m[5] = {3, 5, 7, 9, 13};

/* Small matrices (the auxiliary steps of 2- and 3-dimensional diffusions: n <= 8) work on the stack: a parameter
** move of pCN makes two exponentials per diffusion kernel. */
#define EXPM_STACK 8

/* X <- A^-1 X for n x n A and X (n <= EXPM_STACK), by Gaussian elimination with partial pivoting on A and X's rows
** together; A is overwritten. A = V - U is close to the identity's multiple b0 I here (well conditioned by the
** choice of degree), and for matrices this small GSL's LU with its BLAS calls costs several times the arithmetic. */
static void small_solve(double *A, double *X, int n)
{
    int i, j, k, p;
    for (k = 0; k < n; k++) {
        double piv = fabs(A[k * n + k]), t;
        for (p = k, i = k + 1; i < n; i++)
            if (fabs(A[i * n + k]) > piv) piv = fabs(A[i * n + k]), p = i;
        if (p != k)
            for (j = 0; j < n; j++) {
                t = A[k * n + j], A[k * n + j] = A[p * n + j], A[p * n + j] = t;
                t = X[k * n + j], X[k * n + j] = X[p * n + j], X[p * n + j] = t;
            }
        for (i = k + 1; i < n; i++) {
            double l = A[i * n + k] / A[k * n + k];
            for (j = k + 1; j < n; j++) A[i * n + j] -= l * A[k * n + j];
            for (j = 0; j < n; j++) X[i * n + j] -= l * X[k * n + j];
        }
    }
    for (k = n - 1; k >= 0; k--)
        for (j = 0; j < n; j++) {
            double acc = X[k * n + j];
            for (i = k + 1; i < n; i++) acc -= A[k * n + i] * X[i * n + j];
            X[k * n + j] = acc / A[k * n + k];
        }
}

plm_status plm_expm(plm_ctx *ctx, int n, const double *A, double *E)
{
    size_t nn = (size_t)n * n, pst[EXPM_STACK];
    double wst[8 * EXPM_STACK * EXPM_STACK], *w, norm = 0, scale;
    double *As, *A2, *A4, *A6, *U, *V, *T;
    const double *b;
    int i, j, s = 0, sign, deg, m;
    gsl_permutation perm;
    plm_status st = PLM_OK;
    if (n < 1) return plm_fail(ctx, PLM_EINVAL, "expm: the matrix must be at least 1 x 1 (got %d)", n);
    w = n <= EXPM_STACK ? wst : malloc(7 * nn * sizeof *w + (size_t)n * sizeof(size_t));
    if (!w) return plm_fail(ctx, PLM_ENOMEM, "expm: out of memory");
    perm.size = (size_t)n, perm.data = n <= EXPM_STACK ? pst : (size_t *)(w + 7 * nn);
    As = w, A2 = w + nn, A4 = w + 2 * nn, A6 = w + 3 * nn, U = w + 4 * nn, V = w + 5 * nn, T = w + 6 * nn;
    for (j = 0; j < n; j++) {   /* the 1-norm: the largest column sum */
        double c = 0;
        for (i = 0; i < n; i++) c += fabs(A[i * n + j]);
        norm = fmax(norm, c);
    }
    if (!isfinite(norm)) {
        if (w != wst) free(w);
        return plm_fail(ctx, PLM_EDOM, "expm: the matrix is not finite");
    }
    for (deg = 0; deg < 4 && norm > pade_theta[deg]; deg++) {}
    m = pade_m[deg], b = pade_b[deg];
    if (norm > pade_theta[4]) s = (int)ceil(log2(norm / pade_theta[4]));
    scale = ldexp(1.0, -s);
    for (i = 0; i < (int)nn; i++) As[i] = A[i] * scale;
    mmul(As, As, A2, n);
    if (m >= 5) mmul(A2, A2, A4, n);
    if (m >= 7) mmul(A4, A2, A6, n);
    if (m == 13) {
        /* U = As [A6 (b13 A6 + b11 A4 + b9 A2) + b7 A6 + b5 A4 + b3 A2 + b1 I],
        ** V = A6 (b12 A6 + b10 A4 + b8 A2) + b6 A6 + b4 A4 + b2 A2 + b0 I */
        for (i = 0; i < (int)nn; i++) T[i] = b[13] * A6[i] + b[11] * A4[i] + b[9] * A2[i];
        mmul(A6, T, U, n);
        for (i = 0; i < (int)nn; i++) U[i] += b[7] * A6[i] + b[5] * A4[i] + b[3] * A2[i];
        for (i = 0; i < (int)nn; i++) T[i] = b[12] * A6[i] + b[10] * A4[i] + b[8] * A2[i];
        mmul(A6, T, V, n);
        for (i = 0; i < (int)nn; i++) V[i] += b[6] * A6[i] + b[4] * A4[i] + b[2] * A2[i];
    } else {
        /* U = As sum_k b_{2k+1} A^{2k}, V = sum_k b_{2k} A^{2k}, k = 0..(m-1)/2, the powers A2, A4, A6 and, for
        ** m = 9, A8 = A4 A4 */
        const double *P[5] = {NULL, A2, A4, A6, NULL};
        if (m == 9) {
            mmul(A4, A4, T, n);
            P[4] = T;
        }
        for (i = 0; i < (int)nn; i++) {
            double u = 0, v = 0;
            for (int k = 1; 2 * k <= m; k++) u += b[2 * k + 1] * P[k][i], v += b[2 * k] * P[k][i];
            U[i] = u, V[i] = v;
        }
    }
    for (i = 0; i < n; i++) U[i * n + i] += b[1], V[i * n + i] += b[0];
    mmul(As, U, T, n);
    memcpy(U, T, nn * sizeof *U);
    /* (V - U) E = V + U */
    for (i = 0; i < (int)nn; i++) {
        double v = V[i], u = U[i];
        As[i] = v - u;
        E[i] = v + u;
    }
    if (n <= EXPM_STACK)
        small_solve(As, E, n);
    else {
        gsl_matrix_view M = gsl_matrix_view_array(As, (size_t)n, (size_t)n);
        gsl_linalg_LU_decomp(&M.matrix, &perm, &sign);
        for (j = 0; j < n; j++) {
            gsl_vector_view col = gsl_vector_view_array_with_stride(E + j, (size_t)n, (size_t)n);
            gsl_linalg_LU_svx(&M.matrix, &perm, &col.vector);
        }
    }
    for (i = 0; i < s; i++) {
        mmul(E, E, T, n);
        memcpy(E, T, nn * sizeof *E);
    }
    for (i = 0; i < (int)nn; i++)
        if (!isfinite(E[i])) {
            st = plm_fail(ctx, PLM_EDOM, "expm: the exponential overflows (1-norm of the matrix %g)", norm);
            break;
        }
    if (w != wst) free(w);
    return st;
}

/* The step of a fine grid (|B h| <= 1/2 in the infinity norm, d <= SERIES_D) by the Taylor series of its three
** integrals, term by term in the matrices themselves:
**   Phi = sum_k (B h)^k / k!,  m = sum_k (B h)^k / (k + 1)! beta h,  Q = sum_k h^(k+1) L^k(a) / (k + 1)!
** with L(X) = B X + X B' (d/du of exp(B u) a exp(B'u) is L of it). Every term is a product of nonnegative factorial
** weights and matrix products, so a small entry of Q (those a~ does not drive, of order h^3) is summed from its own
** terms with no cancellation against large ones. The terms shrink at least by half each time; the sums stop when a
** term is below 2^-60 of the sum, about 12 terms at |B h| = 0.1. No solve, where the two exponentials of the general
** path take two LU factorisations: a parameter move of pCN remakes every kernel's step (plm_bffg_kernels_sde_remake). */
#define SERIES_D 4
#define MAXABS(acc, v) ((acc) = fabs(v) > (acc) ? fabs(v) : (acc))   /* (fmax is a call into libm here) */

static int aux_series(int d, const double *B, const double *beta, const double *a, double h, double *Phi, double *m,
                      double *Q)
{
    double Bh[SERIES_D * SERIES_D], T[SERIES_D * SERIES_D], T2[SERIES_D * SERIES_D], S[SERIES_D * SERIES_D];
    double X[SERIES_D * SERIES_D], X2[SERIES_D * SERIES_D], norm = 0, tn, sn;
    int i, j, l, k, dd = d * d;
    if (d > SERIES_D) return 0;
    for (i = 0; i < d; i++) {
        double row = 0;
        for (j = 0; j < d; j++) row += fabs(Bh[i * d + j] = B[i * d + j] * h);
        MAXABS(norm, row);
    }
    if (!(norm <= 0.5)) return 0;
    /* Phi and S = sum_k (B h)^k / (k + 1)! (m = S beta h) */
    for (i = 0; i < dd; i++) T[i] = Phi[i] = S[i] = (i % (d + 1) == 0);
    for (k = 1; k < 40; k++) {
        tn = sn = 0;
        for (i = 0; i < d; i++)
            for (j = 0; j < d; j++) {
                double acc = 0;
                for (l = 0; l < d; l++) acc += T[i * d + l] * Bh[l * d + j];
                T2[i * d + j] = acc / k;
            }
        for (i = 0; i < dd; i++) {
            T[i] = T2[i];
            Phi[i] += T[i];
            S[i] += T[i] / (k + 1);
            MAXABS(tn, T[i]);
            MAXABS(sn, Phi[i]);
        }
        if (tn <= 0x1p-60 * sn) break;
    }
    for (i = 0; i < d; i++) {
        double acc = 0;
        for (j = 0; j < d && beta; j++) acc += S[i * d + j] * beta[j];
        m[i] = acc * h;
    }
    /* Q: X_0 = a h, X_k = L(X_(k-1)) h / (k + 1) */
    for (i = 0; i < dd; i++) X[i] = Q[i] = a[i] * h;
    for (k = 1; k < 40; k++) {
        tn = sn = 0;
        for (i = 0; i < d; i++)
            for (j = 0; j < d; j++) {
                double acc = 0;
                for (l = 0; l < d; l++) acc += Bh[i * d + l] * X[l * d + j] + X[i * d + l] * Bh[j * d + l];
                X2[i * d + j] = acc / (k + 1);
            }
        for (i = 0; i < dd; i++) {
            X[i] = X2[i];
            Q[i] += X[i];
            MAXABS(tn, X[i]);
            MAXABS(sn, Q[i]);
        }
        if (tn <= 0x1p-60 * sn) break;
    }
    for (i = 0; i < d; i++)   /* symmetric up to rounding: make it exactly so */
        for (j = 0; j < i; j++) Q[i * d + j] = Q[j * d + i] = 0.5 * (Q[i * d + j] + Q[j * d + i]);
    for (i = 0; i < dd; i++)
        if (!isfinite(Phi[i]) || !isfinite(Q[i])) return 0;   /* (the general path reports it) */
    for (i = 0; i < d; i++)
        if (!isfinite(m[i])) return 0;
    return 1;
}

plm_status plm_bffg_aux_transition(plm_ctx *ctx, int d, const double *B, const double *beta, const double *a, double h,
                                   double *Phi, double *m, double *Q)
{
    int n1 = d + 1, n2 = 2 * d, i, j, l, small = n2 <= EXPM_STACK;
    double Mst[2 * EXPM_STACK * EXPM_STACK], *M = small ? Mst : calloc((size_t)n2 * n2 + (size_t)n1 * n1, sizeof *M), *E;
    plm_status st;
    if (aux_series(d, B, beta, a, h, Phi, m, Q)) return PLM_OK;
    if (small) {
        memset(Mst, 0, sizeof Mst);
        E = Mst + EXPM_STACK * EXPM_STACK;
    } else if (!M || !(E = malloc(((size_t)n2 * n2 + 1) * sizeof *E))) {
        free(M);
        return plm_fail(ctx, PLM_ENOMEM, "bffg: out of memory");
    }
    /* [[B, beta], [0, 0]] h -> [[Phi, m], [0, 1]] */
    for (i = 0; i < d; i++) {
        for (j = 0; j < d; j++) M[i * n1 + j] = B[i * d + j] * h;
        M[i * n1 + d] = beta ? beta[i] * h : 0;
    }
    if ((st = plm_expm(ctx, n1, M, E))) goto done;
    for (i = 0; i < d; i++) {
        for (j = 0; j < d; j++) Phi[i * d + j] = E[i * n1 + j];
        m[i] = E[i * n1 + d];
    }
    /* Van Loan: [[-B, a], [0, B']] h -> [[*, K], [0, exp(B'h)]], Q = exp(B'h)' K = Phi K */
    memset(M, 0, (size_t)n2 * n2 * sizeof *M);
    for (i = 0; i < d; i++)
        for (j = 0; j < d; j++) {
            M[i * n2 + j] = -B[i * d + j] * h;
            M[i * n2 + d + j] = a[i * d + j] * h;
            M[(d + i) * n2 + d + j] = B[j * d + i] * h;
        }
    if ((st = plm_expm(ctx, n2, M, E))) goto done;
    for (i = 0; i < d; i++)
        for (j = 0; j < d; j++) {
            double acc = 0;
            for (l = 0; l < d; l++) acc += E[(d + l) * n2 + d + i] * E[l * n2 + d + j];
            Q[i * d + j] = acc;
        }
    for (i = 0; i < d; i++)   /* symmetric up to rounding: make it exactly so */
        for (j = 0; j < i; j++) Q[i * d + j] = Q[j * d + i] = 0.5 * (Q[i * d + j] + Q[j * d + i]);
done:
    if (!small) {
        free(M);
        free(E);
    }
    return st;
}
