/* test_bffg_sde.c -- BFFG through diffusions (guided proposals) and guided SMC along chains, against exact
** references: the matrix exponential of a rotation-scaling matrix in closed form, the exact transition of a
** rotating Ornstein-Uhlenbeck process (isotropic, so Q is a multiple of I), and the Kalman filter / RTS smoother
** (runtime/lgssm.h) of the OU process observed at integer times. Statistical checks use fixed seeds and 4.5
** Monte Carlo standard errors, each with a negative control that must fail them. */
#include "check.h"
#include "bffg_chain.h"
#include "plume.h"

#include <stdlib.h>

static plm_ctx ctx;

/* ---- the matrix exponential and the auxiliary's transition -------------------------------------------- */

/* exp([[a, -w], [w, a]]) = e^a [[cos w, -sin w], [sin w, cos w]] */
static void test_expm_matches_rotation_scaling_closed_form(void)
{
    /* 1-norms |a| + |w| that pick each Pade degree: 3 (below 0.015), 5 (0.25), 7 (0.95), 9 (2.1), 13, 13 scaled */
    static const double cases[][2] = {{0.1, 0.2},  {-0.7, 1.5},    {-3, 20},     {2, -7},    {1e-9, 1e-9},
                                      {-40, 100},  {0.004, -0.009}, {0.05, 0.15}, {-0.02, 0.2}, {0.3, -1.5},
                                      {1.2, 0.85}, {-0.9, 0.04}};
    double E[4], N[4] = {0, 1, 0, 0}, A3[9] = {1, 2, 0, 0, 1, 3, 0, 0, 2}, E3[9];
    size_t c;
    for (c = 0; c < sizeof cases / sizeof *cases; c++) {
        double a = cases[c][0], w = cases[c][1], A[4] = {a, -w, w, a}, ea = exp(a);
        CHECK(plm_expm(&ctx, 2, A, E) == PLM_OK);
        CHECK_NEAR(E[0], ea * cos(w), 1e-13 * ea * (1 + fabs(w)));
        CHECK_NEAR(E[1], -ea * sin(w), 1e-13 * ea * (1 + fabs(w)));
        CHECK_NEAR(E[2], ea * sin(w), 1e-13 * ea * (1 + fabs(w)));
        CHECK_NEAR(E[3], ea * cos(w), 1e-13 * ea * (1 + fabs(w)));
    }
    CHECK(plm_expm(&ctx, 2, N, E) == PLM_OK);   /* nilpotent: I + N */
    CHECK(E[0] == 1 && E[1] == 1 && E[2] == 0 && E[3] == 1);
    /* upper triangular with a repeated eigenvalue: [[e, 2e, 3e(e-1)... ]] written out by hand */
    CHECK(plm_expm(&ctx, 3, A3, E3) == PLM_OK);
    {
        double e = exp(1), e2 = exp(2);
        CHECK_NEAR(E3[0], e, 1e-14 * e2);
        CHECK_NEAR(E3[1], 2 * e, 1e-14 * e2);
        CHECK_NEAR(E3[4], e, 1e-14 * e2);
        CHECK_NEAR(E3[5], 3 * (e2 - e), 1e-13 * e2);
        CHECK_NEAR(E3[8], e2, 1e-14 * e2);
        /* [0][2] = 6 (e^2 - 2e): d/dt of the chain 1 -> 2 -> 3 */
        CHECK_NEAR(E3[2], 6 * (e2 - 2 * e), 1e-13 * e2);
        CHECK(E3[3] == 0 && E3[6] == 0 && E3[7] == 0);
    }
    N[0] = NAN;
    CHECK(plm_expm(&ctx, 2, N, E) == PLM_EDOM);
}

/* The rotating OU process dX = (B X + beta) dt + s dW, B = [[-lam, -om], [om, -lam]]: exp(B h) = e^{-lam h}
** R(om h), m = B^-1 (exp(B h) - I) beta, Q = s^2 (1 - e^{-2 lam h}) / (2 lam) I (rotations keep it isotropic). */
static const double LAM = 0.7, OM = 1.5, SIG = 0.8, beta_ou[2] = {0.3, -0.2};
static const double B_ou[4] = {-0.7, -1.5, 1.5, -0.7};

static void ou_exact(double h, double *Phi, double *m, double *Q)
{
    double e = exp(-LAM * h), c = cos(OM * h), s = sin(OM * h), M[4], det = LAM * LAM + OM * OM;
    double Binv[4] = {-LAM / det, OM / det, -OM / det, -LAM / det}, q = SIG * SIG * (1 - e * e) / (2 * LAM);
    Phi[0] = e * c, Phi[1] = -e * s, Phi[2] = e * s, Phi[3] = e * c;
    M[0] = Phi[0] - 1, M[1] = Phi[1], M[2] = Phi[2], M[3] = Phi[3] - 1;
    for (int i = 0; i < 2; i++) {
        double v0 = M[0] * beta_ou[0] + M[1] * beta_ou[1], v1 = M[2] * beta_ou[0] + M[3] * beta_ou[1];
        m[i] = Binv[i * 2] * v0 + Binv[i * 2 + 1] * v1;
    }
    Q[0] = Q[3] = q, Q[1] = Q[2] = 0;
}

static void test_aux_transition_matches_the_exact_ou_transition(void)
{
    static const double hs[] = {1e-4, 0.01, 1, 3.5};
    double a[4] = {SIG * SIG, 0, 0, SIG * SIG}, Phi[4], m[2], Q[4], P2[4], m2[2], Q2[4];
    for (size_t c = 0; c < sizeof hs / sizeof *hs; c++) {
        ou_exact(hs[c], Phi, m, Q);
        CHECK(plm_bffg_aux_transition(&ctx, 2, B_ou, beta_ou, a, hs[c], P2, m2, Q2) == PLM_OK);
        for (int i = 0; i < 4; i++) CHECK_NEAR(P2[i], Phi[i], 1e-14);
        for (int i = 0; i < 2; i++) CHECK_NEAR(m2[i], m[i], 1e-14);
        for (int i = 0; i < 4; i++) CHECK_NEAR(Q2[i], Q[i], 1e-14 * (1 + Q[0]) + 1e-13 * Q[0]);
    }
}

/* A fine step (|B h| <= 1/2) is summed as a series, a coarser one by two exponentials: the step of 2h is the
** composition of two steps of h, so the series at h (|B h| = 0.3) composed with itself must give the exponentials'
** answer at 2h (|B 2h| = 0.6). With noise on the second coordinate alone (FitzHugh-Nagumo's a~), Q[0] is of order
** h^3 and fifty times smaller than Q[3] at 2h: it is checked relative to itself. */
static void test_series_and_exponential_steps_compose_across_the_switch(void)
{
    static const double B[4] = {-12.0, -10.0, 1.5, -1.0}, beta[2] = {0.7, -0.2}, a[4] = {0, 0, 0, 0.09};
    double h = 0.3 / 22.0, P1[4], m1[2], Q1[4], P2[4], m2[2], Q2[4], PP[4], mm[2], QQ[4], T[4];
    CHECK(plm_bffg_aux_transition(&ctx, 2, B, beta, a, h, P1, m1, Q1) == PLM_OK);
    CHECK(plm_bffg_aux_transition(&ctx, 2, B, beta, a, 2 * h, P2, m2, Q2) == PLM_OK);
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 2; j++) {
            PP[i * 2 + j] = P1[i * 2] * P1[j] + P1[i * 2 + 1] * P1[2 + j];
            T[i * 2 + j] = P1[i * 2] * Q1[j] + P1[i * 2 + 1] * Q1[2 + j];   /* P1 Q1 */
        }
    for (int i = 0; i < 2; i++) {
        mm[i] = P1[i * 2] * m1[0] + P1[i * 2 + 1] * m1[1] + m1[i];
        for (int j = 0; j < 2; j++) QQ[i * 2 + j] = T[i * 2] * P1[j * 2] + T[i * 2 + 1] * P1[j * 2 + 1] + Q1[i * 2 + j];
    }
    for (int i = 0; i < 4; i++) {
        CHECK_NEAR(PP[i], P2[i], 1e-14);
        CHECK_NEAR(QQ[i], Q2[i], 1e-12 * fabs(Q2[i]));
    }
    for (int i = 0; i < 2; i++) CHECK_NEAR(mm[i], m2[i], 1e-14);
    CHECK(Q2[0] > 0 && Q2[0] < 0.05 * Q2[3]);
}

/* ---- the OU process observed at t = 1, 2, 3 ------------------------------------------------------------ */

#define TO 3
static const double m0[2] = {1, -0.5}, P0[4] = {0.5, 0.1, 0.1, 0.4}, Cobs[2] = {1, 0}, Robs[1] = {0.1};
static double ys[TO];

static plm_sde *ou_sde(void)
{
    plm_graph *g = plm_graph_new();
    int x0 = plm_graph_input(g, PLM_GRP_X, 0), x1 = plm_graph_input(g, PLM_GRP_X, 1), drift[2], diff[2];
    plm_sde_spec sp;
    plm_sde *s = NULL;
    for (int i = 0; i < 2; i++)
        drift[i] = plm_graph_op(g, PLM_OP_ADD,
                                plm_graph_op(g, PLM_OP_ADD, plm_graph_op(g, PLM_OP_MUL, plm_graph_const(g, B_ou[2 * i]), x0, -1),
                                             plm_graph_op(g, PLM_OP_MUL, plm_graph_const(g, B_ou[2 * i + 1]), x1, -1), -1),
                                plm_graph_const(g, beta_ou[i]), -1);
    diff[0] = diff[1] = plm_graph_const(g, SIG);
    sp.g = g, sp.dim = 2, sp.m = 2, sp.np = 0, sp.diagonal = 1, sp.drift = drift, sp.diff = diff;
    CHECK(plm_sde_new(&ctx, &sp, &s) == PLM_OK);
    return s;
}

static plm_lgssm *ou_kalman(void)
{
    static double Phi[4], m[2], Q[4];
    plm_lgssm_spec sp = {2, 1, Phi, m, Q, Cobs, NULL, Robs, m0, P0};
    plm_lgssm *k = NULL;
    ou_exact(1, Phi, m, Q);
    CHECK(plm_lgssm_new(&ctx, &sp, &k) == PLM_OK);
    return k;
}

/* x0 ~ N(m0, P0); x_t = X(t) of the OU process from x_{t-1} (a diffusion kernel on [t-1, t]); y_t = x_t[1] +
** N(0, 0.1). aux: NULL linearises the drift at (0, 0) (exact: the drift is linear), else {B, beta, a}. */
static plm_bffg_model *ou_chain(double dt, const double *const *aux, int time_change)
{
    plm_sde *s = ou_sde();
    plm_bffg_model *m;
    plm_bffg_kernel *prior, *obs, *k;
    static const double at[2] = {0, 0};
    int t, prev;
    CHECK(plm_bffg_model_new(&ctx, &m) == PLM_OK);
    CHECK(plm_bffg_kernel_linear_gaussian(&ctx, 2, 0, NULL, m0, P0, &prior) == PLM_OK);
    CHECK(plm_bffg_kernel_linear_gaussian(&ctx, 1, 2, Cobs, NULL, Robs, &obs) == PLM_OK);
    CHECK(plm_bffg_add(&ctx, m, "x0", -1, prior, NULL, &prev) == PLM_OK);
    for (t = 1; t <= TO; t++) {
        plm_bffg_sde_opts o = {t - 1, t, dt, time_change, aux ? NULL : at, aux ? aux[0] : NULL, aux ? aux[1] : NULL,
                               aux ? aux[2] : NULL};
        CHECK(plm_bffg_kernel_sde(&ctx, s, &o, &k) == PLM_OK);
        prev = bffg_step(&ctx, m, t, prev, k, obs, &ys[t - 1]);
    }
    return m;
}

/* Largest |z| over the means of x_1..x_T (both coordinates) from weighted draws against the smoother's. */
static double ou_max_z(const double *draws, const double *lw, size_t n, const double *sm, const double *sc)
{
    double mx = -INFINITY, W = 0, W2 = 0, worst = 0, ess, *w = malloc(n * sizeof *w);
    size_t s;
    for (s = 0; s < n; s++) mx = fmax(mx, lw[s]);
    for (s = 0; s < n; s++) w[s] = exp(lw[s] - mx), W += w[s], W2 += w[s] * w[s];
    ess = W * W / W2;
    for (int t = 1; t <= TO; t++)
        for (int j = 0; j < 2; j++) {
            double mean = 0;
            for (s = 0; s < n; s++) mean += w[s] * draws[s * 2 * (TO + 1) + 2 * t + j];
            mean /= W;
            worst = fmax(worst, fabs(mean - sm[(t - 1) * 2 + j]) / sqrt(sc[(t - 1) * 4 + j * 3] / ess));
        }
    free(w);
    return worst;
}

/* With the auxiliary equal to the target (here found by linearising the linear drift), G = (b - b~)'r -
** tr[(a - a~)(H - rr')]/2 vanishes identically, so every path's log weight is log p(y) up to rounding (the
** drift difference is a few ulps, times |r| times T: below 1e-12), whatever dt. The backward filter is exact for
** the auxiliary at any dt, so it equals the Kalman value to rounding. The draws are Euler paths of the guided
** diffusion, so their law has an O(dt) error: at dt = 2e-3 that is far below the Monte Carlo error. */
static void test_ou_auxiliary_equal_to_target_weights_are_exact(void)
{
    enum { N = 2000 };
    plm_bffg_filter *f;
    double kal, sm[2 * TO], sc[4 * TO], *draws = malloc(N * 2 * (TO + 1) * sizeof *draws), lw[N], edge[N * 7];
    CHECK(plm_lgssm_smooth(&ctx, ou_kalman(), TO, ys, sm, sc, &kal) == PLM_OK);
    CHECK(plm_bffg_backward(&ctx, ou_chain(0.25, NULL, 0), NULL, &f) == PLM_OK);   /* the grid does not matter */
    CHECK_NEAR(plm_bffg_filter_loglik(f), kal, 1e-10);
    CHECK(plm_bffg_backward(&ctx, ou_chain(2e-3, NULL, 0), NULL, &f) == PLM_OK);
    CHECK_NEAR(plm_bffg_filter_loglik(f), kal, 1e-10);
    CHECK(plm_bffg_forward(&ctx, f, N, 17, 0, draws, lw, edge) == PLM_OK);
    for (int s = 0; s < N; s++) CHECK_NEAR(lw[s], kal, 1e-10);
    CHECK_NEAR(plm_bffg_logmeanexp(lw, N), kal, 1e-10);
    CHECK(ou_max_z(draws, lw, N, sm, sc) < 4.5);
    /* the time change gives the same weights and (to O(dt)) the same law */
    CHECK(plm_bffg_backward(&ctx, ou_chain(2e-3, NULL, 1), NULL, &f) == PLM_OK);
    CHECK_NEAR(plm_bffg_filter_loglik(f), kal, 1e-10);
    CHECK(plm_bffg_forward(&ctx, f, N, 18, 0, draws, lw, NULL) == PLM_OK);
    for (int s = 0; s < N; s++) CHECK_NEAR(lw[s], kal, 1e-10);
    CHECK(ou_max_z(draws, lw, N, sm, sc) < 4.5);
    /* negative control: a coarse grid (dt = 0.25) is visibly biased with this many draws */
    CHECK(plm_bffg_backward(&ctx, ou_chain(0.25, NULL, 0), NULL, &f) == PLM_OK);
    CHECK(plm_bffg_forward(&ctx, f, N, 17, 0, draws, lw, NULL) == PLM_OK);
    CHECK(ou_max_z(draws, lw, N, sm, sc) > 4.5);
    free(draws);
}

/* A wrong auxiliary (weaker mean reversion, slower rotation, larger noise): the weights vary, the weighted means
** match the smoother, the unweighted ones do not (negative control), and the likelihood estimate is within its
** Monte Carlo error of the Kalman value. Euler paths and the Riemann sum of G make an O(dt) bias: measured with
** 40,000 paths, log-likelihood +0.030 at dt = 4e-3 (4.8 standard errors) and +0.003 at dt = 1e-3 (0.5), so
** dt = 1e-3 keeps it well inside the tolerance of 5,000 paths (standard error about 0.02). */
static void test_ou_wrong_auxiliary_reweighted_means_match(void)
{
    enum { N = 5000 };
    static const double Bw[4] = {-0.3, -1.2, 1.2, -0.3}, bw[2] = {0, 0}, aw[4] = {0.8, 0, 0, 0.8};
    const double *aux[3] = {Bw, bw, aw};
    plm_bffg_filter *f;
    double kal, sm[2 * TO], sc[4 * TO], *draws = malloc(N * 2 * (TO + 1) * sizeof *draws), *lw = malloc(N * sizeof *lw);
    double *flat = calloc(N, sizeof *flat), ess, se;
    CHECK(plm_lgssm_smooth(&ctx, ou_kalman(), TO, ys, sm, sc, &kal) == PLM_OK);
    CHECK(plm_bffg_backward(&ctx, ou_chain(1e-3, aux, 0), NULL, &f) == PLM_OK);
    CHECK(fabs(plm_bffg_filter_loglik(f) - kal) > 0.1);
    CHECK(plm_bffg_forward(&ctx, f, N, 23, 0, draws, lw, NULL) == PLM_OK);
    ess = plm_bffg_ess(lw, N);
    printf("  wrong auxiliary: ess %.0f of %d, weighted z %.2f, unweighted z %.2f, loglik %.4f vs %.4f\n", ess, N,
           ou_max_z(draws, lw, N, sm, sc), ou_max_z(draws, flat, N, sm, sc), plm_bffg_logmeanexp(lw, N), kal);
    CHECK(ess > 0.02 * N && ess < 0.95 * N);
    CHECK(ou_max_z(draws, lw, N, sm, sc) < 4.5);
    CHECK(ou_max_z(draws, flat, N, sm, sc) > 4.5);
    se = sqrt((N / ess - 1) / N);
    CHECK_NEAR(plm_bffg_logmeanexp(lw, N), kal, 4.5 * se);
    free(draws), free(lw), free(flat);
}

static void test_ou_forward_is_the_same_for_any_thread_count(void)
{
    enum { N = 600 };
    static const double Bw[4] = {0.5, 0, 0, 0.5}, bw[2] = {0, 0}, aw[4] = {1.0, 0, 0, 1.0};
    const double *aux[3] = {Bw, bw, aw};
    double *d1 = malloc(N * 8 * sizeof *d1), *d2 = malloc(N * 8 * sizeof *d2), w1[N], w2[N], l1, l2;
    plm_bffg_filter *f;
    CHECK(plm_bffg_backward(&ctx, ou_chain(0.01, aux, 1), NULL, &f) == PLM_OK);
    CHECK(plm_bffg_forward(&ctx, f, N, 9, 1, d1, w1, NULL) == PLM_OK);
    CHECK(plm_bffg_forward(&ctx, f, N, 9, 3, d2, w2, NULL) == PLM_OK);
    CHECK(memcmp(d1, d2, N * 8 * sizeof *d1) == 0 && memcmp(w1, w2, sizeof w1) == 0);
    CHECK(plm_bffg_smc(&ctx, f, N, 9, 1, PLM_RESAMPLE_SYSTEMATIC, 1, d1, w1, &l1, NULL) == PLM_OK);
    CHECK(plm_bffg_smc(&ctx, f, N, 9, 3, PLM_RESAMPLE_SYSTEMATIC, 1, d2, w2, &l2, NULL) == PLM_OK);
    CHECK(memcmp(d1, d2, N * 8 * sizeof *d1) == 0 && memcmp(w1, w2, sizeof w1) == 0 && l1 == l2);
    free(d1), free(d2);
}

/* ---- guided SMC ---------------------------------------------------------------------------------------- */

/* Exact messages (the OU chain with its own auxiliary): the twisted SMC's incremental weights are all equal, so
** its estimate is the Kalman log-likelihood to rounding, with or without resampling. */
static void test_smc_with_exact_messages_returns_the_exact_loglik(void)
{
    enum { N = 300 };
    plm_bffg_filter *f;
    double kal, *draws = malloc(N * 8 * sizeof *draws), lw[N], ll;
    size_t nres;
    CHECK(plm_lgssm_loglik(&ctx, ou_kalman(), TO, ys, &kal) == PLM_OK);
    CHECK(plm_bffg_backward(&ctx, ou_chain(0.01, NULL, 0), NULL, &f) == PLM_OK);
    CHECK(plm_bffg_smc(&ctx, f, N, 4, 0, PLM_RESAMPLE_SYSTEMATIC, 1, draws, lw, &ll, &nres) == PLM_OK);
    CHECK_NEAR(ll, kal, 1e-9);
    CHECK(nres == 2);   /* after x1 and x2, not after the last stage */
    CHECK(plm_bffg_smc(&ctx, f, N, 4, 0, PLM_RESAMPLE_SYSTEMATIC, 0, draws, lw, &ll, &nres) == PLM_OK);
    CHECK_NEAR(ll, kal, 1e-9);
    CHECK(nres == 0);
    free(draws);
}

/* A linear-Gaussian chain of 10 steps whose backward filter uses a wrong auxiliary (no discretisation at all).
** Over R seeds the SMC estimate Z^ of p(y) is unbiased on the natural scale: mean(Z^/Z) = 1 within 4.5 standard
** errors. Negative control: on the log scale the estimate is biased downward (Jensen), mean(log Z^ - log Z) < 0
** by more than 4.5 standard errors, so the check has the power to see a bias of that size. */
#define TL 10
static void test_smc_with_a_wrong_auxiliary_is_unbiased(void)
{
    enum { R = 400, N = 16 };
    static const double A[4] = {0.8, 0.5, -0.1, 0.8}, b2[2] = {0.1, 0.2}, Q[4] = {0.2, 0, 0, 1}, mu0[2] = {1, 0},
                        S0[4] = {1, 0, 0, 1}, Aaux[4] = {0.4, 0.2, 0, 0.5}, Qaux[4] = {0.8, 0, 0, 3}, R1[1] = {1};
    plm_lgssm_spec sp = {2, 1, A, b2, Q, Cobs, NULL, R1, mu0, S0};
    plm_lgssm *ref;
    plm_bffg_model *m;
    plm_bffg_kernel *prior, *trans, *obs, *aux;
    plm_bffg_filter *f;
    double y[TL], kal, *draws = malloc(N * 2 * (TL + 1) * sizeof *draws), lw[N], ratio[R], logs[R];
    double mr = 0, vr = 0, ml = 0, vl = 0;
    int t, prev, r;
    plm_rng rng;
    plm_rng_init(&rng, 77, 0);
    CHECK(plm_lgssm_new(&ctx, &sp, &ref) == PLM_OK);
    CHECK(plm_lgssm_sample(&ctx, ref, TL, &rng, NULL, y) == PLM_OK);
    CHECK(plm_lgssm_loglik(&ctx, ref, TL, y, &kal) == PLM_OK);
    CHECK(plm_bffg_model_new(&ctx, &m) == PLM_OK);
    CHECK(plm_bffg_kernel_linear_gaussian(&ctx, 2, 0, NULL, mu0, S0, &prior) == PLM_OK);
    CHECK(plm_bffg_kernel_linear_gaussian(&ctx, 2, 2, A, b2, Q, &trans) == PLM_OK);
    CHECK(plm_bffg_kernel_linear_gaussian(&ctx, 2, 2, Aaux, NULL, Qaux, &aux) == PLM_OK);
    CHECK(plm_bffg_kernel_set_aux(&ctx, trans, aux) == PLM_OK);
    CHECK(plm_bffg_kernel_linear_gaussian(&ctx, 1, 2, Cobs, NULL, R1, &obs) == PLM_OK);
    CHECK(plm_bffg_add(&ctx, m, "x0", -1, prior, NULL, &prev) == PLM_OK);
    for (t = 1; t <= TL; t++) {
        prev = bffg_step(&ctx, m, t, prev, trans, obs, &y[t - 1]);
    }
    CHECK(plm_bffg_backward(&ctx, m, NULL, &f) == PLM_OK);
    for (r = 0; r < R; r++) {
        double ll;
        CHECK(plm_bffg_smc(&ctx, f, N, 1000 + r, 1, PLM_RESAMPLE_SYSTEMATIC, 1, draws, lw, &ll, NULL) == PLM_OK);
        ratio[r] = exp(ll - kal), logs[r] = ll - kal;
        mr += ratio[r] / R, ml += logs[r] / R;
    }
    for (r = 0; r < R; r++) vr += (ratio[r] - mr) * (ratio[r] - mr) / (R - 1), vl += (logs[r] - ml) * (logs[r] - ml) / (R - 1);
    printf("  smc over %d seeds: mean Z^/Z = %.4f (se %.4f), mean log Z^/Z = %.4f (se %.4f)\n", R, mr, sqrt(vr / R), ml,
           sqrt(vl / R));
    CHECK(vr > 1e-4);   /* the estimate does vary: the auxiliary is wrong */
    CHECK(fabs(mr - 1) < 4.5 * sqrt(vr / R));
    CHECK(ml < -4.5 * sqrt(vl / R));
    free(draws);
}

/* Pieces of a diffusion kernel (plm_bffg_kernel_sde_piece) chained through latent nodes are the same process
** observed at the cuts: cut on the kernel's grid, the filter is the unsplit chain's to rounding (the Kalman value
** here), and the piece has the kernel's span. A piece outside the span is refused. */
static void test_pieces_of_a_kernel_keep_the_likelihood(void)
{
    plm_sde *s = ou_sde();
    plm_bffg_model *m;
    plm_bffg_kernel *prior, *obs, *k, *p1, *p2;
    plm_bffg_filter *f;
    static const double at[2] = {0, 0};
    double kal, sm[2 * TO], sc[4 * TO], t0, t1;
    int t, prev, mid;
    CHECK(plm_lgssm_smooth(&ctx, ou_kalman(), TO, ys, sm, sc, &kal) == PLM_OK);
    CHECK(plm_bffg_model_new(&ctx, &m) == PLM_OK);
    CHECK(plm_bffg_kernel_linear_gaussian(&ctx, 2, 0, NULL, m0, P0, &prior) == PLM_OK);
    CHECK(plm_bffg_kernel_linear_gaussian(&ctx, 1, 2, Cobs, NULL, Robs, &obs) == PLM_OK);
    CHECK(plm_bffg_add(&ctx, m, "x0", -1, prior, NULL, &prev) == PLM_OK);
    for (t = 1; t <= TO; t++) {
        plm_bffg_sde_opts o = {t - 1, t, 0.01, 0, at, NULL, NULL, NULL};
        char nm[16];
        CHECK(plm_bffg_kernel_sde(&ctx, s, &o, &k) == PLM_OK);
        plm_bffg_kernel_sde_span(k, &t0, &t1);
        CHECK(t0 == t - 1 && t1 == t);
        CHECK(plm_bffg_kernel_sde_piece(&ctx, k, t - 1, t - 0.7, &p1) == PLM_OK);
        CHECK(plm_bffg_kernel_sde_piece(&ctx, k, t - 0.7, t, &p2) == PLM_OK);
        snprintf(nm, sizeof nm, "cut%d", t);
        CHECK(plm_bffg_add(&ctx, m, nm, prev, p1, NULL, &mid) == PLM_OK);
        prev = bffg_step(&ctx, m, t, mid, p2, obs, &ys[t - 1]);
    }
    CHECK(plm_bffg_backward(&ctx, m, NULL, &f) == PLM_OK);
    CHECK_NEAR(plm_bffg_filter_loglik(f), kal, 1e-10);
    CHECK(plm_bffg_kernel_sde_piece(&ctx, k, TO - 1.5, TO, &p1) == PLM_EINVAL && strstr(ctx.msg, "not inside"));
    CHECK(plm_bffg_kernel_sde_piece(&ctx, k, TO - 0.5, TO - 0.5, &p1) == PLM_EINVAL);
    CHECK(plm_bffg_kernel_sde_piece(&ctx, prior, 0, 1, &p1) == PLM_EINVAL && strstr(ctx.msg, "not a diffusion"));
    plm_bffg_kernel_sde_span(prior, &t0, &t1);
    CHECK(isnan(t0) && isnan(t1));
}

/* ---- refusals ------------------------------------------------------------------------------------------ */

static void test_bad_diffusion_kernels_are_refused(void)
{
    plm_sde *s = ou_sde();
    plm_bffg_kernel *k, *lg;
    plm_bffg_model *m;
    plm_bffg_filter *f;
    static const double at[2] = {0, 0}, I2[4] = {1, 0, 0, 1}, neg[4] = {-1, 0, 0, 1}, y0[2] = {0, 0};
    plm_bffg_sde_opts o = {0, 1, 0.1, 0, at, NULL, NULL, NULL};
    o.t1 = 0;
    CHECK(plm_bffg_kernel_sde(&ctx, s, &o, &k) == PLM_EINVAL && strstr(ctx.msg, "t0 < t1"));
    o.t1 = 1, o.dt = 1e-9;
    CHECK(plm_bffg_kernel_sde(&ctx, s, &o, &k) == PLM_EINVAL && strstr(ctx.msg, "over the limit"));
    o.dt = 0.1, o.at = NULL;
    CHECK(plm_bffg_kernel_sde(&ctx, s, &o, &k) == PLM_EINVAL && strstr(ctx.msg, "'at'"));
    o.B = I2, o.a = neg;
    CHECK(plm_bffg_kernel_sde(&ctx, s, &o, &k) == PLM_EINVAL && strstr(ctx.msg, "semi-definite"));
    o.a = I2;
    CHECK(plm_bffg_kernel_sde(&ctx, s, &o, &k) == PLM_OK);
    CHECK(strcmp(plm_bffg_kernel_info(k, NULL, NULL, NULL, NULL), "sde") == 0);
    CHECK(plm_bffg_kernel_linear_gaussian(&ctx, 2, 2, I2, NULL, I2, &lg) == PLM_OK);
    CHECK(plm_bffg_kernel_set_aux(&ctx, k, lg) == PLM_EINVAL && strstr(ctx.msg, "when it is made"));
    CHECK(plm_bffg_model_new(&ctx, &m) == PLM_OK);
    CHECK(plm_bffg_kernel_linear_gaussian(&ctx, 2, 0, NULL, m0, P0, &lg) == PLM_OK);
    CHECK(plm_bffg_add(&ctx, m, "x0", -1, lg, NULL, NULL) == PLM_OK);
    CHECK(plm_bffg_add(&ctx, m, "x1", 0, k, y0, NULL) == PLM_EINVAL && strstr(ctx.msg, "cannot be observed"));
    /* smc refuses trees */
    CHECK(plm_bffg_add(&ctx, m, "a", 0, k, NULL, NULL) == PLM_OK);
    CHECK(plm_bffg_add(&ctx, m, "b", 0, k, NULL, NULL) == PLM_OK);
    CHECK(plm_bffg_backward(&ctx, m, NULL, &f) == PLM_OK);
    {
        double d[6], w[1], ll;
        CHECK(plm_bffg_smc(&ctx, f, 1, 1, 1, PLM_RESAMPLE_SYSTEMATIC, 1, d, w, &ll, NULL) == PLM_EINVAL &&
              strstr(ctx.msg, "chain"));
    }
}

/* dX = X^3 dt + dW from X(0) = 3 leaves the finite numbers before t = 1: the engine names the draw and node. */
static void test_a_path_that_explodes_is_reported(void)
{
    plm_graph *g = plm_graph_new();
    int x = plm_graph_input(g, PLM_GRP_X, 0), drift, diff;
    plm_sde_spec sp;
    plm_sde *s;
    plm_bffg_kernel *prior, *k, *obs;
    plm_bffg_model *m;
    plm_bffg_filter *f;
    static const double at[1] = {0}, three[1] = {3}, zero[1] = {0}, one[1] = {1}, yv[1] = {0};
    plm_bffg_sde_opts o = {0, 1, 0.01, 0, at, NULL, NULL, NULL};
    double d[2 * 4], w[4];
    drift = plm_graph_op(g, PLM_OP_MUL, x, plm_graph_op(g, PLM_OP_MUL, x, x, -1), -1);
    diff = plm_graph_const(g, 1);
    sp.g = g, sp.dim = 1, sp.m = 1, sp.np = 0, sp.diagonal = 1, sp.drift = &drift, sp.diff = &diff;
    CHECK(plm_sde_new(&ctx, &sp, &s) == PLM_OK);
    CHECK(plm_bffg_kernel_sde(&ctx, s, &o, &k) == PLM_OK);
    CHECK(plm_bffg_kernel_linear_gaussian(&ctx, 1, 0, NULL, three, zero, &prior) == PLM_OK);
    CHECK(plm_bffg_kernel_linear_gaussian(&ctx, 1, 1, one, NULL, one, &obs) == PLM_OK);
    CHECK(plm_bffg_model_new(&ctx, &m) == PLM_OK);
    CHECK(plm_bffg_add(&ctx, m, "x0", -1, prior, NULL, NULL) == PLM_OK);
    CHECK(plm_bffg_add(&ctx, m, "x1", 0, k, NULL, NULL) == PLM_OK);
    CHECK(plm_bffg_add(&ctx, m, "y", 1, obs, yv, NULL) == PLM_OK);
    CHECK(plm_bffg_backward(&ctx, m, NULL, &f) == PLM_OK);
    CHECK(plm_bffg_forward(&ctx, f, 4, 1, 1, d, w, NULL) == PLM_EDOM && strstr(ctx.msg, "draw 1") &&
          strstr(ctx.msg, "'x1'"));
}

int main(void)
{
    plm_rng r;
    plm_lgssm *k;
    plm_ctx_clear(&ctx);
    k = ou_kalman();
    plm_rng_init(&r, 2025, 0);
    CHECK(plm_lgssm_sample(&ctx, k, TO, &r, NULL, ys) == PLM_OK);
    RUN(test_expm_matches_rotation_scaling_closed_form);
    RUN(test_aux_transition_matches_the_exact_ou_transition);
    RUN(test_series_and_exponential_steps_compose_across_the_switch);
    RUN(test_ou_auxiliary_equal_to_target_weights_are_exact);
    RUN(test_ou_wrong_auxiliary_reweighted_means_match);
    RUN(test_ou_forward_is_the_same_for_any_thread_count);
    RUN(test_smc_with_exact_messages_returns_the_exact_loglik);
    RUN(test_smc_with_a_wrong_auxiliary_is_unbiased);
    RUN(test_pieces_of_a_kernel_keep_the_likelihood);
    RUN(test_bad_diffusion_kernels_are_refused);
    RUN(test_a_path_that_explodes_is_reported);
    return CHECK_DONE();
}
