/* test_bffg_riccati.c -- the backward filter of a 2-d diffusion kernel (bffg_sde_back2.c: runs of equal steps by the
** linear-fractional form of the Riccati recursion, lf_run) against the plain step-by-step pull-back through the same
** step transitions (plm_bffg_pullback_grid: bffg_kernel.c's Cholesky form, one step at a time), at every grid
** point: H, F and the constant at t0, to 1e-9 relative. The cases stress what the linear-fractional form could get
** wrong: a near-exact observation (H = 1e8), a stiff drift over 4,000 steps, an expanding drift (growth e^20), a
** last step shorter than the rest, and a time-changed grid (no two steps equal). A reference through steps 1e-6
** longer must differ by more than the tolerance (the comparison can fail). */
#include "check.h"
#include "plume.h"
#include "bffg_impl.h"
#include "bffg_sde_impl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static plm_ctx ctx;

#include "sde_models.h"

typedef struct grid_msgs {
    double c0, *F, *H;
} grid_msgs;

static void keep(void *ud, size_t k, const plm_bffg_msg *h)
{
    grid_msgs *g = ud;
    if (k == 0) g->c0 = h->c;
    memcpy(g->F + 2 * k, h->v, 2 * sizeof *h->v);
    memcpy(g->H + 4 * k, h->H, 4 * sizeof *h->H);
}

/* The largest difference between two sets of grid messages, each point's relative to its own scale. */
static double max_rel(size_t N, const double *Fa, const double *Ha, double ca, const grid_msgs *b)
{
    double worst = fabs(ca - b->c0) / (1 + fabs(b->c0));
    size_t k;
    int j;
    for (k = 0; k <= N; k++) {
        double sH = 1e-300, sF = 1;
        for (j = 0; j < 4; j++) sH = fmax(sH, fabs(b->H[4 * k + j]));
        for (j = 0; j < 2; j++) sF = fmax(sF, fabs(b->F[2 * k + j]));
        for (j = 0; j < 4; j++) worst = fmax(worst, fabs(Ha[4 * k + j] - b->H[4 * k + j]) / sH);
        for (j = 0; j < 2; j++) worst = fmax(worst, fabs(Fa[2 * k + j] - b->F[2 * k + j]) / sF);
    }
    return worst;
}

/* The FitzHugh-Nagumo kernel on [0, t1] with step dt (time change tc), linearised at `at`, its guide toward the
** child message (c, F, H) against the step-by-step pull-back; and (control) against one through steps of a
** 1e-6 longer grid. */
static void check_case(const char *name, double at1, double t1, double dt, int tc, const double *Hc, const double *Fc)
{
    plm_sde *s = fhn();
    double at[2] = {at1, 0}, c = -2, F[2], H[4], d, ctrl;
    plm_bffg_sde_opts o = {0, t1, dt, tc, at, NULL, NULL, NULL};
    plm_bffg_kernel *k, **steps;
    plm_bffg_msg child = {c, 2, 0, F, H, 0, 0, 0, 0}, out = child;
    const sde_kernel *K;
    const sde_guide *g;
    void *guide = NULL;
    grid_msgs ref;
    size_t N, n;
    memcpy(F, Fc, sizeof F), memcpy(H, Hc, sizeof H);
    child.c = c;
    CHECK(plm_bffg_kernel_sde(&ctx, s, &o, &k) == PLM_OK);
    K = k->impl;
    N = K->N;
    CHECK(K->two);
    CHECK(k->ops->guide(&ctx, k, &child, &guide) == PLM_OK);
    g = guide;
    ref.F = malloc((N + 1) * 2 * sizeof(double)), ref.H = malloc((N + 1) * 4 * sizeof(double));
    out.v = malloc(2 * sizeof(double)), out.H = malloc(4 * sizeof(double));
    CHECK(plm_bffg_pullback_grid(&ctx, 2, N, K->step, &child, keep, &ref, &out) == PLM_OK);
    d = max_rel(N, g->F, g->H, g->c[0], &ref);
    /* the control: the same child pulled back through transitions over steps 1e-6 longer */
    steps = plm_gc_alloc(N * sizeof *steps);   /* (collector memory: it holds collector objects) */
    for (n = 0; n < N; n++) {
        double Phi[4], mm[2], Q[4];
        CHECK(plm_bffg_aux_transition(&ctx, 2, K->B, K->beta, K->a, (K->t[n + 1] - K->t[n]) * (1 + 1e-6), Phi, mm, Q) == PLM_OK);
        CHECK(plm_bffg_kernel_linear_gaussian(&ctx, 2, 2, Phi, mm, Q, &steps[n]) == PLM_OK);
    }
    {
        grid_msgs off = {0, malloc((N + 1) * 2 * sizeof(double)), malloc((N + 1) * 4 * sizeof(double))};
        CHECK(plm_bffg_pullback_grid(&ctx, 2, N, (const plm_bffg_kernel *const *)steps, &child, keep, &off, &out) == PLM_OK);
        ctrl = max_rel(N, g->F, g->H, g->c[0], &off);
        free(off.F), free(off.H);
    }
    printf("  %s (%zu steps): largest relative difference %.1e; against steps 1e-6 longer %.1e\n", name, N, d, ctrl);
    CHECK(d <= 1e-9);
    CHECK(ctrl > 1e-9);
    free(ref.F), free(ref.H), free(out.v), free(out.H);
}

static void test_equal_steps_match_the_step_by_step_pullback(void)
{
    static const double Hobs[4] = {100, 0, 0, 0}, Fobs[2] = {80, 0};
    static const double Hexact[4] = {1e8, 0, 0, 0}, Fexact[2] = {5e7, 0};
    static const double Hfull[4] = {4, 1, 1, 2}, Ffull[2] = {-1, 0.5};
    check_case("observation noise 0.01, 100 steps", 0.8, 0.1, 1e-3, 0, Hobs, Fobs);
    check_case("near-exact observation (H = 1e8)", 0.5, 0.1, 1e-3, 0, Hexact, Fexact);
    check_case("stiff drift (B~11 = -57.5) over 4,000 steps", -1.5, 4, 1e-3, 0, Hfull, Ffull);
    check_case("expanding drift (B~11 = +10) over 2,000 steps", 0, 2, 1e-3, 0, Hfull, Ffull);
    check_case("a shorter last step", 0.8, 0.1234, 0.01, 0, Hobs, Fobs);
}

static void test_unequal_steps_match_the_step_by_step_pullback(void)
{
    static const double Hfull[4] = {4, 1, 1, 2}, Ffull[2] = {-1, 0.5};
    check_case("time-changed grid", 0.8, 0.5, 1e-3, 1, Hfull, Ffull);
}

int main(void)
{
    (void)ou, (void)nonlinear3;   /* (sde_models.h's other diffusions) */
    plm_ctx_clear(&ctx);
    RUN(test_equal_steps_match_the_step_by_step_pullback);
    RUN(test_unequal_steps_match_the_step_by_step_pullback);
    return CHECK_DONE();
}
