/* kalman.c -- benchmark: plume's square-root Kalman filter against the plain textbook covariance filter written
** here (P <- A P A' + Q; S = C P C' + R; K = P C' S^-1; P <- P - K C P, Cholesky of S for the likelihood),
** state dimension 10, T = 100,000, observation dimensions 5 and 10. Both compute the log-likelihood; the
** "filter" rows also store every filtered mean and covariance. Prints CPU times (best of 5 runs, the two
** implementations interleaved) and the ratio plume / textbook.
** Usage: build/bench/kalman [T] */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "plume.h"

#define N 10
#define MMAX 10
#define REPS 5

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);   /* CPU time: other jobs on a shared machine distort wall time */
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

/* Textbook filter; means/covs may be NULL. Returns the log-likelihood. */
static double textbook(int m, const double *A, const double *Q, const double *C, const double *R, const double *m0,
                       const double *P0, size_t T, const double *ys, double *means, double *covs)
{
    double x[N], P[N * N], xp[N], Pp[N * N], AP[N * N], CP[MMAX * N], S[MMAX * MMAX], v[MMAX], K[N * MMAX];
    double ll = 0;
    size_t t;
    int i, j, k;
    memcpy(x, m0, sizeof x);
    memcpy(P, P0, sizeof P);
    for (t = 0; t < T; t++) {
        const double *y = ys + t * m;
        for (i = 0; i < N; i++) {
            double s = 0;
            for (k = 0; k < N; k++) s += A[i * N + k] * x[k];
            xp[i] = s;
        }
        for (i = 0; i < N; i++)
            for (j = 0; j < N; j++) {
                double s = 0;
                for (k = 0; k < N; k++) s += A[i * N + k] * P[k * N + j];
                AP[i * N + j] = s;
            }
        for (i = 0; i < N; i++)
            for (j = 0; j < N; j++) {
                double s = Q[i * N + j];
                for (k = 0; k < N; k++) s += AP[i * N + k] * A[j * N + k];
                Pp[i * N + j] = s;
            }
        for (i = 0; i < m; i++)
            for (j = 0; j < N; j++) {
                double s = 0;
                for (k = 0; k < N; k++) s += C[i * N + k] * Pp[k * N + j];
                CP[i * N + j] = s;
            }
        for (i = 0; i < m; i++) {
            double s = y[i];
            for (k = 0; k < N; k++) s -= C[i * N + k] * xp[k];
            v[i] = s;
            for (j = 0; j < m; j++) {
                double w = R[i * m + j];
                for (k = 0; k < N; k++) w += CP[i * N + k] * C[j * N + k];
                S[i * m + j] = w;
            }
        }
        for (j = 0; j < m; j++) {   /* Cholesky S = L L' in place (lower) */
            double d = S[j * m + j];
            for (k = 0; k < j; k++) d -= S[j * m + k] * S[j * m + k];
            d = sqrt(d);
            S[j * m + j] = d;
            ll -= log(d);
            for (i = j + 1; i < m; i++) {
                double w = S[i * m + j];
                for (k = 0; k < j; k++) w -= S[i * m + k] * S[j * m + k];
                S[i * m + j] = w / d;
            }
        }
        /* K' = S^-1 C Pp: two triangular solves on each column of CP; also S^-1 v for the likelihood */
        for (i = 0; i < m; i++) {
            double w = v[i];
            for (k = 0; k < i; k++) w -= S[i * m + k] * v[k];
            v[i] = w / S[i * m + i];
            ll -= 0.5 * (v[i] * v[i] + 1.8378770664093453);
        }
        for (i = m - 1; i >= 0; i--) {
            double w = v[i];
            for (k = i + 1; k < m; k++) w -= S[k * m + i] * v[k];
            v[i] = w / S[i * m + i];
        }
        for (j = 0; j < N; j++) {
            double z[MMAX];
            for (i = 0; i < m; i++) {
                double w = CP[i * N + j];
                for (k = 0; k < i; k++) w -= S[i * m + k] * z[k];
                z[i] = w / S[i * m + i];
            }
            for (i = m - 1; i >= 0; i--) {
                double w = z[i];
                for (k = i + 1; k < m; k++) w -= S[k * m + i] * z[k];
                z[i] = w / S[i * m + i];
            }
            for (i = 0; i < m; i++) K[j * m + i] = z[i];
        }
        for (i = 0; i < N; i++) {   /* v now holds S^-1 (y - C xp) */
            double s = xp[i];
            for (k = 0; k < m; k++) s += CP[k * N + i] * v[k];
            x[i] = s;
        }
        for (i = 0; i < N; i++)
            for (j = 0; j < N; j++) {
                double s = Pp[i * N + j];
                for (k = 0; k < m; k++) s -= K[i * m + k] * CP[k * N + j];
                P[i * N + j] = s;
            }
        if (means) memcpy(means + t * N, x, sizeof x);
        if (covs) memcpy(covs + t * N * N, P, sizeof P);
    }
    return ll;
}

int main(int argc, char **argv)
{
    size_t T = argc > 1 ? (size_t)atol(argv[1]) : 100000;
    double A[N * N], Q[N * N], G[N * N], C[MMAX * N], R[MMAX * MMAX], m0[N] = {0}, P0[N * N];
    double *ys = malloc(T * MMAX * sizeof *ys), *means = malloc(T * N * sizeof *means);
    double *covs = malloc(T * N * N * sizeof *covs);
    plm_rng r;
    plm_ctx ctx;
    int i, j, k, m, ms[] = {5, 10}, c;
    plm_init();
    plm_rng_init(&r, 1, 0);
    /* A: a damped rotation-like random matrix with spectral radius below 1; Q = G G' / N + 0.01 I */
    for (i = 0; i < N * N; i++) A[i] = 0.3 * plm_rng_normal(&r) / sqrt(N), G[i] = plm_rng_normal(&r);
    for (i = 0; i < N; i++) A[i * N + i] += 0.6;
    for (i = 0; i < N; i++)
        for (j = 0; j < N; j++) {
            double s = i == j ? 0.01 : 0;
            for (k = 0; k < N; k++) s += G[i * N + k] * G[j * N + k] / N;
            Q[i * N + j] = s;
            P0[i * N + j] = i == j ? 1 : 0;
        }
    printf("Kalman filter, state dimension %d, T = %zu (CPU seconds, best of %d interleaved runs)\n", N, T, REPS);
    printf("%-4s %-8s %10s %10s %7s %12s\n", "m", "mode", "plume", "textbook", "ratio", "|dloglik|");
    for (c = 0; c < 2; c++) {
        plm_lgssm_spec sp;
        plm_lgssm *s;
        double ll_p = 0, ll_t = 0, tp, tt;
        int rep, mode;
        m = ms[c];
        for (i = 0; i < m * N; i++) C[i] = plm_rng_normal(&r);
        for (i = 0; i < m; i++)
            for (j = 0; j < m; j++) R[i * m + j] = i == j ? 0.5 : 0.1;
        sp = (plm_lgssm_spec){N, m, A, NULL, Q, C, NULL, R, m0, P0};
        if (plm_lgssm_new(&ctx, &sp, &s) || plm_lgssm_sample(&ctx, s, T, &r, NULL, ys)) {
            fprintf(stderr, "kalman: %s\n", ctx.msg);
            return 1;
        }
        for (mode = 0; mode < 2; mode++) {
            double bp = 1e300, bt = 1e300;
            for (rep = 0; rep < REPS; rep++) {   /* interleaved, so both see the same machine load */
                double t0 = now();
                if (plm_lgssm_filter(&ctx, s, T, ys, mode ? means : NULL, mode ? covs : NULL, &ll_p)) {
                    fprintf(stderr, "kalman: %s\n", ctx.msg);
                    return 1;
                }
                tp = now() - t0;
                if (tp < bp) bp = tp;
                t0 = now();
                ll_t = textbook(m, A, Q, C, R, m0, P0, T, ys, mode ? means : NULL, mode ? covs : NULL);
                tt = now() - t0;
                if (tt < bt) bt = tt;
            }
            printf("%-4d %-8s %10.4f %10.4f %7.2f %12.3g\n", m, mode ? "filter" : "loglik", bp, bt, bp / bt,
                   fabs(ll_p - ll_t));
        }
    }
    free(ys), free(means), free(covs);
    return 0;
}
