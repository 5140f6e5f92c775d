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

plm_status plm_expm(plm_ctx *ctx, int n, const double *A, double *E)
{
    static const double b[14] = {64764752532480000.0, 32382376266240000.0, 7771770303897600.0, 1187353796428800.0,
                                 129060195264000.0,   10559470521600.0,    670442572800.0,     33522128640.0,
                                 1323241920.0,        40840800.0,          960960.0,           16380.0,
                                 182.0,               1.0};
    const double theta13 = 5.371920351148152;
    size_t nn = (size_t)n * n;
    double *w = n > 0 ? calloc(7 * nn, sizeof *w) : NULL, norm = 0, scale;
    double *As, *A2, *A4, *A6, *U, *V, *T;
    int i, j, s = 0, sign;
    gsl_permutation *perm;
    plm_status st = PLM_OK;
    if (n < 1) return plm_fail(ctx, PLM_EINVAL, "expm: the matrix must be at least 1 x 1 (got %d)", n);
    if (!w) return plm_fail(ctx, PLM_ENOMEM, "expm: out of memory");
    As = w, A2 = w + nn, A4 = w + 2 * nn, A6 = w + 3 * nn, U = w + 4 * nn, V = w + 5 * nn, T = w + 6 * nn;
    for (j = 0; j < n; j++) {   /* the 1-norm: the largest column sum */
        double c = 0;
        for (i = 0; i < n; i++) c += fabs(A[i * n + j]);
        norm = fmax(norm, c);
    }
    if (!isfinite(norm)) {
        free(w);
        return plm_fail(ctx, PLM_EDOM, "expm: the matrix is not finite");
    }
    if (norm > theta13) s = (int)ceil(log2(norm / theta13));
    scale = ldexp(1.0, -s);
    for (i = 0; i < (int)nn; i++) As[i] = A[i] * scale;
    mmul(As, As, A2, n);
    mmul(A2, A2, A4, n);
    mmul(A4, A2, A6, n);
    /* U = As [A6 (b13 A6 + b11 A4 + b9 A2) + b7 A6 + b5 A4 + b3 A2 + b1 I],
    ** V = A6 (b12 A6 + b10 A4 + b8 A2) + b6 A6 + b4 A4 + b2 A2 + b0 I */
    for (i = 0; i < (int)nn; i++) T[i] = b[13] * A6[i] + b[11] * A4[i] + b[9] * A2[i];
    mmul(A6, T, U, n);
    for (i = 0; i < (int)nn; i++) U[i] += b[7] * A6[i] + b[5] * A4[i] + b[3] * A2[i];
    for (i = 0; i < n; i++) U[i * n + i] += b[1];
    mmul(As, U, T, n);
    memcpy(U, T, nn * sizeof *U);
    for (i = 0; i < (int)nn; i++) T[i] = b[12] * A6[i] + b[10] * A4[i] + b[8] * A2[i];
    mmul(A6, T, V, n);
    for (i = 0; i < (int)nn; i++) V[i] += b[6] * A6[i] + b[4] * A4[i] + b[2] * A2[i];
    for (i = 0; i < n; i++) V[i * n + i] += b[0];
    /* (V - U) E = V + U */
    for (i = 0; i < (int)nn; i++) {
        double v = V[i], u = U[i];
        As[i] = v - u;
        E[i] = v + u;
    }
    perm = gsl_permutation_alloc((size_t)n);
    if (!perm) st = plm_fail(ctx, PLM_ENOMEM, "expm: out of memory");
    else {
        gsl_matrix_view M = gsl_matrix_view_array(As, (size_t)n, (size_t)n);
        gsl_linalg_LU_decomp(&M.matrix, perm, &sign);
        for (j = 0; j < n; j++) {
            gsl_vector_view col = gsl_vector_view_array_with_stride(E + j, (size_t)n, (size_t)n);
            gsl_linalg_LU_svx(&M.matrix, perm, &col.vector);
        }
        gsl_permutation_free(perm);
        for (i = 0; i < s; i++) {
            mmul(E, E, T, n);
            memcpy(E, T, nn * sizeof *E);
        }
        for (i = 0; i < (int)nn; i++)
            if (!isfinite(E[i])) {
                st = plm_fail(ctx, PLM_EDOM, "expm: the exponential overflows (1-norm of the matrix %g)", norm);
                break;
            }
    }
    free(w);
    return st;
}

plm_status plm_bffg_aux_transition(plm_ctx *ctx, int d, const double *B, const double *beta, const double *a, double h,
                                   double *Phi, double *m, double *Q)
{
    int n1 = d + 1, n2 = 2 * d, i, j, l;
    double *M = calloc((size_t)n2 * n2 + (size_t)n1 * n1, sizeof *M), *E;
    plm_status st;
    if (!M || !(E = malloc(((size_t)n2 * n2 + 1) * sizeof *E))) {
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
    free(M);
    free(E);
    return st;
}
