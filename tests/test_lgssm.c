/* test_lgssm.c -- the square-root Kalman filter and RTS smoother against dense joint-Gaussian computations. */
#include "check.h"
#include "plume.h"

#include <gsl/gsl_linalg.h>
#include <stdlib.h>

#define MAXD 64

typedef struct dense {
    int N;                     /* total observed entries */
    double mu[MAXD], S[MAXD * MAXD];
} dense;

/* Moments of x_1..x_T and of y (only the entries that are not NaN), computed directly from the model:
** mean_t = A mean_{t-1} + b, V_t = A V_{t-1} A' + Q, Cov(x_t, x_s) = A^{t-s} V_s for t >= s. */
typedef struct joint {
    int n, m, T;
    double mx[MAXD], Cxx[MAXD * MAXD];   /* all states stacked: T*n */
} joint;

static void matmul(const double *X, const double *Y, double *Z, int a, int b, int c)
{
    int i, j, k;
    for (i = 0; i < a; i++)
        for (j = 0; j < c; j++) {
            double v = 0;
            for (k = 0; k < b; k++) v += X[i * b + k] * Y[k * c + j];
            Z[i * c + j] = v;
        }
}

static void state_moments(const plm_lgssm_spec *s, int T, joint *J)
{
    int n = s->n, t, u, i, j;
    double V[16 * 16], AV[16 * 16], Vn[16 * 16], mean[16], mn[16], Ak[16 * 16], tmp[16 * 16];
    int N = T * n;
    J->n = n, J->m = s->m, J->T = T;
    memcpy(mean, s->m0, n * sizeof *mean);
    memcpy(V, s->P0, n * n * sizeof *V);
    for (t = 0; t < T; t++) {
        matmul(s->A, mean, mn, n, n, 1);
        for (i = 0; i < n; i++) mean[i] = mn[i] + (s->b ? s->b[i] : 0);
        matmul(s->A, V, AV, n, n, n);
        for (i = 0; i < n; i++)
            for (j = 0; j < n; j++) {
                double v = s->Q[i * n + j];
                int k;
                for (k = 0; k < n; k++) v += AV[i * n + k] * s->A[j * n + k];
                Vn[i * n + j] = v;
            }
        memcpy(V, Vn, sizeof V);
        memcpy(J->mx + t * n, mean, n * sizeof *mean);
        /* Cov(x_u, x_t) = A^{u-t} V_t for u >= t */
        memset(Ak, 0, sizeof Ak);
        for (i = 0; i < n; i++) Ak[i * n + i] = 1;
        for (u = t; u < T; u++) {
            matmul(Ak, V, tmp, n, n, n);
            for (i = 0; i < n; i++)
                for (j = 0; j < n; j++) {
                    J->Cxx[(u * n + i) * N + t * n + j] = tmp[i * n + j];
                    J->Cxx[(t * n + j) * N + u * n + i] = tmp[i * n + j];
                }
            matmul(s->A, Ak, tmp, n, n, n);
            memcpy(Ak, tmp, sizeof tmp);
        }
    }
}

/* Observed entries of y_1..y_tmax: their mean, covariance, and cross-covariance with every state. */
typedef struct obsjoint {
    int N, idx_t[MAXD], idx_j[MAXD];
    double y[MAXD], my[MAXD], Syy[MAXD * MAXD], Sxy[MAXD * MAXD];  /* Sxy: (T*n) x N */
} obsjoint;

static void obs_moments(const plm_lgssm_spec *s, const joint *J, const double *ys, int tmax, obsjoint *O)
{
    int n = s->n, m = s->m, Nx = J->T * n, a, c, k, l;
    O->N = 0;
    for (a = 0; a < tmax; a++)
        for (c = 0; c < m; c++)
            if (!isnan(ys[a * m + c])) {
                O->idx_t[O->N] = a, O->idx_j[O->N] = c, O->y[O->N] = ys[a * m + c];
                O->N++;
            }
    for (a = 0; a < O->N; a++) {
        int ta = O->idx_t[a], ja = O->idx_j[a];
        double v = s->d ? s->d[ja] : 0;
        for (k = 0; k < n; k++) v += s->C[ja * n + k] * J->mx[ta * n + k];
        O->my[a] = v;
        for (c = 0; c < O->N; c++) {
            int tc = O->idx_t[c], jc = O->idx_j[c];
            double w = ta == tc ? s->R[ja * m + jc] : 0;
            for (k = 0; k < n; k++)
                for (l = 0; l < n; l++)
                    w += s->C[ja * n + k] * J->Cxx[(ta * n + k) * Nx + tc * n + l] * s->C[jc * n + l];
            O->Syy[a * O->N + c] = w;
        }
        for (k = 0; k < Nx; k++) {
            double w = 0;
            for (l = 0; l < n; l++) w += J->Cxx[k * Nx + ta * n + l] * s->C[ja * n + l];
            O->Sxy[k * O->N + a] = w;
        }
    }
}

/* Dense log N(y; my, Syy). */
static double dense_loglik(const obsjoint *O)
{
    int N = O->N, i;
    double L[MAXD * MAXD], r[MAXD], ll = -0.5 * N * log(2 * M_PI);
    gsl_matrix_view Lv = gsl_matrix_view_array(L, N, N);
    gsl_vector_view rv = gsl_vector_view_array(r, N);
    memcpy(L, O->Syy, N * N * sizeof *L);
    gsl_linalg_cholesky_decomp1(&Lv.matrix);
    for (i = 0; i < N; i++) r[i] = O->y[i] - O->my[i];
    gsl_blas_dtrsv(CblasLower, CblasNoTrans, CblasNonUnit, &Lv.matrix, &rv.vector);
    for (i = 0; i < N; i++) ll += -0.5 * r[i] * r[i] - log(L[i * N + i]);
    return ll;
}

/* Dense conditional moments of state t given the observed entries: mean (n) and covariance (n*n). */
static void dense_condition(const plm_lgssm_spec *s, const joint *J, const obsjoint *O, int t, double *mean,
                            double *cov)
{
    int n = s->n, N = O->N, Nx = J->T * n, i, j, k;
    double L[MAXD * MAXD], r[MAXD], G[MAXD * 16];
    gsl_matrix_view Lv = gsl_matrix_view_array(L, N, N);
    gsl_vector_view rv = gsl_vector_view_array(r, N);
    memcpy(L, O->Syy, N * N * sizeof *L);
    gsl_linalg_cholesky_decomp1(&Lv.matrix);
    for (i = 0; i < N; i++) r[i] = O->y[i] - O->my[i];
    gsl_linalg_cholesky_svx(&Lv.matrix, &rv.vector);   /* r = Syy^-1 (y - my) */
    for (i = 0; i < n; i++) {
        double v = J->mx[t * n + i];
        for (k = 0; k < N; k++) v += O->Sxy[(t * n + i) * N + k] * r[k];
        mean[i] = v;
    }
    for (i = 0; i < n; i++) {   /* G[:, i] = Syy^-1 Syx_i */
        double g[MAXD];
        gsl_vector_view gv = gsl_vector_view_array(g, N);
        for (k = 0; k < N; k++) g[k] = O->Sxy[(t * n + i) * N + k];
        gsl_linalg_cholesky_svx(&Lv.matrix, &gv.vector);
        for (k = 0; k < N; k++) G[k * n + i] = g[k];
    }
    for (i = 0; i < n; i++)
        for (j = 0; j < n; j++) {
            double v = J->Cxx[(t * n + i) * Nx + t * n + j];
            for (k = 0; k < N; k++) v -= O->Sxy[(t * n + i) * N + k] * G[k * n + j];
            cov[i * n + j] = v;
        }
}

/* A 3-state, 2-observation model with every feature: drift b, offset d, correlated Q and R. */
static const double A3[] = {0.9, 0.2, 0.0, -0.1, 0.8, 0.3, 0.05, 0.0, 0.7};
static const double b3[] = {0.1, -0.2, 0.3};
static const double Q3[] = {0.5, 0.1, 0.0, 0.1, 0.4, 0.05, 0.0, 0.05, 0.3};
static const double C3[] = {1.0, 0.5, 0.0, 0.0, -0.3, 1.2};
static const double d3[] = {0.2, -0.1};
static const double R3[] = {0.6, 0.2, 0.2, 0.9};
static const double m03[] = {0.5, -1.0, 0.2};
static const double P03[] = {1.0, 0.3, 0.1, 0.3, 2.0, 0.0, 0.1, 0.0, 0.5};

static plm_lgssm_spec spec3(void)
{
    plm_lgssm_spec s = {3, 2, A3, b3, Q3, C3, d3, R3, m03, P03};
    return s;
}

static const double ys3[] = {0.3, -0.5, 1.1, 0.2, -0.4, 0.9, 0.8, -1.3, 0.05, 0.6, 1.7, -0.2};   /* T = 6 */

/* Filter means/covs at every t equal dense conditioning on y_1..y_t, smoother on y_1..y_T, loglik the dense
** log density: all to 1e-9. */
static void compare_with_dense(const plm_lgssm_spec *sp, const double *ys, int T)
{
    plm_ctx ctx;
    plm_lgssm *s;
    joint J;
    obsjoint O;
    int n = sp->n, t, i;
    double ll, ll2, means[16 * 8], covs[16 * 16 * 8], dm[16], dc[256];
    CHECK(plm_lgssm_new(&ctx, sp, &s) == PLM_OK);
    state_moments(sp, T, &J);
    obs_moments(sp, &J, ys, T, &O);
    CHECK(plm_lgssm_loglik(&ctx, s, T, ys, &ll) == PLM_OK);
    CHECK_NEAR(ll, dense_loglik(&O), 1e-9);
    CHECK(plm_lgssm_smooth(&ctx, s, T, ys, means, covs, &ll2) == PLM_OK);
    CHECK_NEAR(ll2, ll, 1e-12);
    for (t = 0; t < T; t++) {
        dense_condition(sp, &J, &O, t, dm, dc);
        for (i = 0; i < n; i++) CHECK_NEAR(means[t * n + i], dm[i], 1e-9);
        for (i = 0; i < n * n; i++) CHECK_NEAR(covs[t * n * n + i], dc[i], 1e-9);
    }
    CHECK(plm_lgssm_filter(&ctx, s, T, ys, means, covs, NULL) == PLM_OK);
    for (t = 0; t < T; t++) {
        obs_moments(sp, &J, ys, t + 1, &O);
        if (O.N == 0) continue;
        dense_condition(sp, &J, &O, t, dm, dc);
        for (i = 0; i < n; i++) CHECK_NEAR(means[t * n + i], dm[i], 1e-9);
        for (i = 0; i < n * n; i++) CHECK_NEAR(covs[t * n * n + i], dc[i], 1e-9);
    }
}

static void test_loglik_filter_smoother_equal_dense_joint_gaussian(void)
{
    plm_lgssm_spec sp = spec3();
    compare_with_dense(&sp, ys3, 6);
}

/* A scalar local-level model with singular P0 (known start) and no b, d: the PSD paths of the code. */
static void test_scalar_model_with_known_start_equals_dense(void)
{
    static const double A[] = {1}, Q[] = {0.3}, C[] = {2}, R[] = {0.5}, m0[] = {1}, P0[] = {0};
    static const double ys[] = {2.1, 1.5, 3.0, 2.2, 2.8};
    plm_lgssm_spec sp = {1, 1, A, NULL, Q, C, NULL, R, m0, P0};
    compare_with_dense(&sp, ys, 5);
}

/* Singular Q (a constant-velocity model driven through velocity only) and a singular P0: the smoother's
** gain meets exactly known directions. */
static void test_singular_process_noise_equals_dense(void)
{
    static const double A[] = {1, 1, 0, 1}, Q[] = {0, 0, 0, 0.2}, C[] = {1, 0}, R[] = {0.4}, m0[] = {0, 1};
    static const double P0[] = {0, 0, 0, 0};
    static const double ys[] = {1.2, 1.8, 3.3, 4.1, NAN, 6.2};
    plm_lgssm_spec sp = {2, 1, A, NULL, Q, C, NULL, R, m0, P0};
    compare_with_dense(&sp, ys, 6);
}

/* Whole and partial missing observations equal the dense joint with those entries marginalised out. */
static void test_missing_entries_equal_marginalised_dense_joint(void)
{
    plm_lgssm_spec sp = spec3();
    double ys[12];
    memcpy(ys, ys3, sizeof ys);
    ys[2] = ys[3] = NAN;   /* t = 2 missing entirely */
    ys[5] = NAN;           /* t = 3 second entry missing */
    ys[8] = NAN;           /* t = 5 first entry missing */
    ys[10] = ys[11] = NAN; /* t = 6 missing entirely: the smoother's last step is a pure prediction */
    compare_with_dense(&sp, ys, 6);
}

/* Fully missing data: loglik 0 and the filter is the prior prediction. */
static void test_all_missing_gives_zero_loglik_and_prior(void)
{
    plm_lgssm_spec sp = spec3();
    plm_ctx ctx;
    plm_lgssm *s;
    joint J;
    double ys[6], ll = 1, means[6], covs[18];
    int i;
    for (i = 0; i < 6; i++) ys[i] = NAN;
    CHECK(plm_lgssm_new(&ctx, &sp, &s) == PLM_OK);
    CHECK(plm_lgssm_filter(&ctx, s, 2, ys, means, covs, &ll) == PLM_OK);
    CHECK(ll == 0);
    state_moments(&sp, 2, &J);
    for (i = 0; i < 3; i++) CHECK_NEAR(means[3 + i], J.mx[3 + i], 1e-12);
    for (i = 0; i < 3; i++) CHECK_NEAR(covs[9 + i * 3 + i], J.Cxx[(3 + i) * 6 + 3 + i], 1e-12);
}

static int is_pd(const double *P, int n)
{
    double L[256];
    gsl_matrix_view Lv = gsl_matrix_view_array(L, n, n);
    gsl_error_handler_t *old = gsl_set_error_handler_off();
    int ok, i, j;
    for (i = 0; i < n; i++)   /* Cholesky reads one triangle: test the symmetric part */
        for (j = 0; j < n; j++) L[i * n + j] = 0.5 * (P[i * n + j] + P[j * n + i]);
    ok = gsl_linalg_cholesky_decomp1(&Lv.matrix) == 0;
    gsl_set_error_handler(old);
    return ok;
}

/* The textbook covariance filter (P <- P - K S K', no symmetrisation): the negative control for the
** stability test. Returns the first t at which P is not positive definite or not finite, or -1. */
static long textbook_first_failure(const plm_lgssm_spec *s, size_t T, const double *ys)
{
    int n = s->n, i, j, k;
    double P[16], Pp[16], AP[16], PC[4], Sinv, K[4];
    size_t t;
    memcpy(P, s->P0, n * n * sizeof *P);
    for (t = 0; t < T; t++) {
        matmul(s->A, P, AP, n, n, n);
        for (i = 0; i < n; i++)
            for (j = 0; j < n; j++) {
                double v = s->Q[i * n + j];
                for (k = 0; k < n; k++) v += AP[i * n + k] * s->A[j * n + k];
                Pp[i * n + j] = v;
            }
        for (i = 0; i < n; i++) {   /* m = 1 */
            double v = 0;
            for (k = 0; k < n; k++) v += Pp[i * n + k] * s->C[k];
            PC[i] = v;
        }
        Sinv = s->R[0];
        for (k = 0; k < n; k++) Sinv += s->C[k] * PC[k];
        Sinv = 1 / Sinv;
        for (i = 0; i < n; i++) K[i] = PC[i] * Sinv;
        for (i = 0; i < n; i++)
            for (j = 0; j < n; j++) P[i * n + j] = Pp[i * n + j] - K[i] * PC[j];
        (void)ys;
        if (!is_pd(P, n)) return (long)t;
    }
    return -1;
}

/* A badly conditioned model (an integrated random walk observed through tiny noise, R = 1e-10, a vague
** P0 = 1e8 I and Q spanning four orders of magnitude) over T = 20,000 steps: no NaN and every filtered and smoothed covariance stays
** positive definite. Negative control: the textbook update loses positive definiteness on the same model. */
static void test_long_badly_conditioned_series_stays_positive_definite(void)
{
    static const double A[] = {1, 1, 0, 0, 1, 1, 0, 0, 1};
    static const double Q[] = {1e-12, 0, 0, 0, 1e-10, 0, 0, 0, 1e-8};
    static const double C[] = {1, 1e-4, 0}, R[] = {1e-10}, m0[] = {0, 0, 0};
    static const double P0[] = {1e8, 0, 0, 0, 1e8, 0, 0, 0, 1e8};
    plm_lgssm_spec sp = {3, 1, A, NULL, Q, C, NULL, R, m0, P0};
    enum { T = 20000 };
    plm_ctx ctx;
    plm_lgssm *s;
    plm_rng r;
    double *ys = malloc(T * sizeof *ys), *means = malloc(T * 3 * sizeof *means), *covs = malloc(T * 9 * sizeof *covs);
    double ll;
    size_t t, bad_nan = 0, bad_pd = 0;
    int i;
    plm_rng_init(&r, 7, 0);
    CHECK(plm_lgssm_new(&ctx, &sp, &s) == PLM_OK);
    CHECK(plm_lgssm_sample(&ctx, s, T, &r, NULL, ys) == PLM_OK);
    for (t = 0; t < T; t += 7) ys[t] = NAN;   /* gaps make the covariance swing */
    CHECK(plm_lgssm_filter(&ctx, s, T, ys, means, covs, &ll) == PLM_OK);
    CHECK(isfinite(ll));
    for (t = 0; t < T; t++) {
        for (i = 0; i < 3; i++) bad_nan += !isfinite(means[t * 3 + i]);
        bad_pd += !is_pd(covs + t * 9, 3);
    }
    CHECK(plm_lgssm_smooth(&ctx, s, T, ys, means, covs, NULL) == PLM_OK);
    for (t = 0; t < T; t++) {
        for (i = 0; i < 3; i++) bad_nan += !isfinite(means[t * 3 + i]);
        bad_pd += !is_pd(covs + t * 9, 3);
    }
    CHECK(bad_nan == 0);
    CHECK(bad_pd == 0);
    if (bad_pd) printf("  %zu covariances not positive definite\n", bad_pd);
    CHECK(textbook_first_failure(&sp, T, ys) >= 0);   /* negative control */
    free(ys), free(means), free(covs);
}

/* Simulation: the mean and variance of y_3 over 20,000 draws match the dense moments within 4 Monte Carlo
** standard errors (sd/sqrt(N) for the mean, sd^2 sqrt(2/N) for the variance). */
static void test_sample_moments_match_model(void)
{
    plm_lgssm_spec sp = spec3();
    plm_ctx ctx;
    plm_lgssm *s;
    plm_rng r;
    joint J;
    obsjoint O;
    enum { N = 20000, T = 3 };
    double ys[T * 2], xs[T * 3], sum[2] = {0, 0}, sum2[2] = {0, 0}, yfull[T * 2];
    int k, j;
    CHECK(plm_lgssm_new(&ctx, &sp, &s) == PLM_OK);
    plm_rng_init(&r, 11, 0);
    for (k = 0; k < N; k++) {
        CHECK(plm_lgssm_sample(&ctx, s, T, &r, xs, ys) == PLM_OK);
        for (j = 0; j < 2; j++) sum[j] += ys[4 + j], sum2[j] += ys[4 + j] * ys[4 + j];
    }
    for (j = 0; j < T * 2; j++) yfull[j] = 0;
    state_moments(&sp, T, &J);
    obs_moments(&sp, &J, yfull, T, &O);
    for (j = 0; j < 2; j++) {
        double mean = sum[j] / N, var = sum2[j] / N - mean * mean, tv = O.Syy[(4 + j) * O.N + 4 + j];
        CHECK_NEAR(mean, O.my[4 + j], 4 * sqrt(tv / N));
        CHECK_NEAR(var, tv, 4 * tv * sqrt(2.0 / N));
    }
}

static void expect_error(const plm_lgssm_spec *sp, const char *want)
{
    plm_ctx ctx;
    plm_lgssm *s = (plm_lgssm *)1;
    plm_ctx_clear(&ctx);
    CHECK(plm_lgssm_new(&ctx, sp, &s) == PLM_EINVAL);
    CHECK(s == NULL);
    CHECK(strstr(ctx.msg, want) != NULL);
    if (!strstr(ctx.msg, want)) printf("  message \"%s\" lacks \"%s\"\n", ctx.msg, want);
}

static void test_bad_parameters_name_the_argument(void)
{
    plm_lgssm_spec sp = spec3();
    double Q[9], R[4], P0[9], A[9];
    memcpy(Q, Q3, sizeof Q), memcpy(R, R3, sizeof R), memcpy(P0, P03, sizeof P0), memcpy(A, A3, sizeof A);
    Q[1] = 0.3;
    sp.Q = Q;
    expect_error(&sp, "Q is not symmetric (Q[1][2] = 0.3, Q[2][1] = 0.1)");
    Q[1] = 0.1, Q[0] = -0.5;
    expect_error(&sp, "Q must be positive semi-definite");
    sp = spec3();
    R[0] = R[3] = 0.2;
    sp.R = R;
    expect_error(&sp, "R must be positive definite");
    R[0] = 0.6, R[3] = 0.9, R[1] = R[2] = 0.2;
    P0[4] = -2;
    sp = spec3();
    sp.P0 = P0;
    expect_error(&sp, "P0 must be positive semi-definite");
    sp = spec3();
    A[5] = NAN;
    sp.A = A;
    expect_error(&sp, "A[2][3] is not finite");
    sp = spec3();
    sp.m = 0;
    expect_error(&sp, "dimensions must be >= 1");
}

static void test_bad_observations_are_errors(void)
{
    plm_lgssm_spec sp = spec3();
    plm_ctx ctx;
    plm_lgssm *s;
    double ys[4] = {1, 2, INFINITY, 0}, ll;
    CHECK(plm_lgssm_new(&ctx, &sp, &s) == PLM_OK);
    CHECK(plm_lgssm_loglik(&ctx, s, 2, ys, &ll) == PLM_EINVAL);
    CHECK(strstr(ctx.msg, "ys[2][1] is infinite") != NULL);
    CHECK(plm_lgssm_loglik(&ctx, s, 0, ys, &ll) == PLM_EINVAL);
    CHECK(strstr(ctx.msg, "empty") != NULL);
}

int main(void)
{
    plm_init();
    RUN(test_loglik_filter_smoother_equal_dense_joint_gaussian);
    RUN(test_scalar_model_with_known_start_equals_dense);
    RUN(test_singular_process_noise_equals_dense);
    RUN(test_missing_entries_equal_marginalised_dense_joint);
    RUN(test_all_missing_gives_zero_loglik_and_prior);
    RUN(test_long_badly_conditioned_series_stays_positive_definite);
    RUN(test_sample_moments_match_model);
    RUN(test_bad_parameters_name_the_argument);
    RUN(test_bad_observations_are_errors);
    return CHECK_DONE();
}
