/* test_twist.c -- the twisted SMC step, token automata, the HMM guide's checks and files, and speculative
** verification, in C: the twisted proposal's weight is the same for every token, every proposal's expected
** weight is sum_v p0 psi / psi_prev (the identity behind unbiasedness), a proposal that misses the target is
** refused, and speculative verification outputs the target's distribution (a chi-square-free check by 5 standard
** errors per token over 200,000 rounds; accepting every draft token fails it). Fixed seeds. */
#include <stdlib.h>

#include "check.h"
#include "plume.h"

#define NV 5
static const double P0[NV] = {0.4, 0.25, 0.2, 0.1, 0.05};
static const double PSI[NV] = {0.9, 0.1, 0.5, 0.0, 0.3};

static double logsum(const double *x, int n)
{
    double s = 0;
    for (int i = 0; i < n; i++) s += exp(x[i]);
    return log(s);
}

static void rows(double *lp0, double *lpsi)
{
    for (int v = 0; v < NV; v++) lp0[v] = log(P0[v]), lpsi[v] = log(PSI[v]);
}

static void test_twisted_proposal_weight_is_the_same_for_every_token(void)
{
    plm_ctx ctx;
    double lp0[NV], lpsi[NV], lq[NV], inc[NV], z = 0;
    plm_ctx_clear(&ctx);
    rows(lp0, lpsi);
    for (int v = 0; v < NV; v++) z += P0[v] * PSI[v];
    CHECK(plm_twist_step(&ctx, NV, PLM_TWIST_PROP_TWIST, lp0, lpsi, log(0.7), lq, inc) == PLM_OK);
    for (int v = 0; v < NV; v++) {
        if (PSI[v] == 0) {
            CHECK(lq[v] == -INFINITY);
            continue;
        }
        CHECK_NEAR(inc[v], log(z) - log(0.7), 1e-14);
        CHECK_NEAR(exp(lq[v]), P0[v] * PSI[v] / z, 1e-14);
    }
    CHECK_NEAR(logsum(lq, NV), 0, 1e-14);
}

static void test_every_proposal_has_expected_weight_sum_p0_psi_over_psi_prev(void)
{
    plm_ctx ctx;
    double lp0[NV], lpsi[NV], lq[NV], inc[NV], z = 0;
    plm_twist_proposal kinds[3] = {PLM_TWIST_PROP_P0, PLM_TWIST_PROP_TWIST, PLM_TWIST_PROP_USER};
    plm_ctx_clear(&ctx);
    rows(lp0, lpsi);
    for (int v = 0; v < NV; v++) z += P0[v] * PSI[v];
    for (int k = 0; k < 3; k++) {
        double e = 0;
        for (int v = 0; v < NV; v++) lq[v] = log(1.0 + v);   /* the user's q: unnormalised, normalised by the step */
        CHECK(plm_twist_step(&ctx, NV, kinds[k], lp0, lpsi, log(0.7), lq, inc) == PLM_OK);
        for (int v = 0; v < NV; v++)
            if (inc[v] > -INFINITY) e += exp(lq[v] + inc[v]);
        CHECK_NEAR(e, z / 0.7, 1e-14);
    }
}

static void test_a_proposal_that_misses_the_target_is_refused(void)
{
    plm_ctx ctx;
    double lp0[NV], lpsi[NV], lq[NV] = {0, 0, -INFINITY, 0, 0}, inc[NV];
    plm_ctx_clear(&ctx);
    rows(lp0, lpsi);
    CHECK(plm_twist_step(&ctx, NV, PLM_TWIST_PROP_USER, lp0, lpsi, 0, lq, inc) == PLM_EINVAL);
    CHECK(strstr(plm_ctx_errmsg(&ctx), "token 2 probability 0") != NULL);
    /* no reachable target: every increment is -inf (the particle dies), not an error */
    for (int v = 0; v < NV; v++) lpsi[v] = -INFINITY;
    CHECK(plm_twist_step(&ctx, NV, PLM_TWIST_PROP_TWIST, lp0, lpsi, 0, lq, inc) == PLM_OK);
    for (int v = 0; v < NV; v++) CHECK(inc[v] == -INFINITY);
}

static void test_keyword_automaton_accepts_iff_every_keyword_appears(void)
{
    plm_ctx ctx;
    plm_tdfa *d;
    plm_token kw[2] = {1, 3}, a[3] = {3, 0, 1}, b[3] = {3, 3, 0};
    plm_ctx_clear(&ctx);
    CHECK(plm_tdfa_keywords(&ctx, NV, kw, 2, &d) == PLM_OK);
    CHECK(d->S == 4);
    CHECK(d->accept[plm_tdfa_run(d, a, 3)]);
    CHECK(!d->accept[plm_tdfa_run(d, b, 3)]);
    plm_tdfa_free(d);
    kw[1] = NV;
    CHECK(plm_tdfa_keywords(&ctx, NV, kw, 2, &d) == PLM_EINVAL);
}

static void test_guide_refuses_rows_that_are_not_distributions_and_reads_back_its_file(void)
{
    plm_ctx ctx;
    plm_tdfa *d;
    plm_hmmguide *g, *h;
    plm_token kw[1] = {2}, eos[1] = {4};
    double init[2] = {0.5, 0.5}, bad[4] = {0.5, 0.4, 0.5, 0.5}, trans[4] = {0.9, 0.1, 0.3, 0.7}, emit[2 * NV];
    char path[] = "/tmp/plume_twist_XXXXXX";
    int fd = mkstemp(path);
    plm_ctx_clear(&ctx);
    for (int v = 0; v < 2 * NV; v++) emit[v] = 1.0 / NV;
    CHECK(plm_tdfa_keywords(&ctx, NV, kw, 1, &d) == PLM_OK);
    CHECK(plm_hmmguide_new(&ctx, 2, NV, init, bad, emit, d, NULL, eos, 1, 4, 0, &g) == PLM_EINVAL);
    CHECK(strstr(plm_ctx_errmsg(&ctx), "trans row 1 sums to 0.9") != NULL);
    CHECK(plm_hmmguide_new(&ctx, 2, NV, init, trans, emit, d, NULL, eos, 1, 4, 0.01, &g) == PLM_OK);
    CHECK(fd >= 0);
    CHECK(plm_hmmguide_save(&ctx, g, path) == PLM_OK);
    CHECK(plm_hmmguide_load(&ctx, path, &h) == PLM_OK);
    CHECK(h->K == 2 && h->V == NV && h->S == 2 && h->T == 4);
    for (int i = 0; i < 5 * 2 * 2; i++) CHECK(h->B[i] == g->B[i]);
    for (int i = 0; i < 2 * NV; i++) CHECK(h->emitT[i] == g->emitT[i]);
    plm_hmmguide_free(h);
    plm_hmmguide_free(g);
    plm_tdfa_free(d);
    remove(path);
}

/* frequencies of the first output token of one verification (k = 2) against p: largest |z| over tokens */
static double spec_max_z(plm_spec_rule rule)
{
    static const double p[3 * NV] = {0.4, 0.25, 0.2, 0.1, 0.05, 0.2, 0.2, 0.2, 0.2, 0.2, 0.1, 0.1, 0.1, 0.1, 0.6};
    static const double q[2 * NV] = {0.1, 0.1, 0.3, 0.3, 0.2, 0.5, 0.1, 0.1, 0.1, 0.2};
    double lp[3 * NV], lq[2 * NV], z = 0;
    long count[NV] = {0}, n = 200000;
    plm_rng r;
    plm_ctx ctx;
    plm_ctx_clear(&ctx);
    for (int i = 0; i < 3 * NV; i++) lp[i] = log(p[i]);
    for (int i = 0; i < 2 * NV; i++) lq[i] = log(q[i]);
    plm_rng_init(&r, 11, 0);
    for (long it = 0; it < n; it++) {
        plm_token draft[2], out[3];
        int n_out, n_acc;
        for (int j = 0; j < 2; j++) {   /* draw the draft tokens from q's rows */
            double u = plm_rng_uniform(&r), acc = 0;
            int v;
            for (v = 0; v < NV - 1; v++) {
                acc += q[j * NV + v];
                if (u < acc) break;
            }
            draft[j] = v;
        }
        plm_spec_verify(&ctx, NV, 2, lq, draft, lp, 0, &r, rule, out, &n_out, &n_acc);
        count[out[0]]++;
    }
    for (int v = 0; v < NV; v++) {
        double se = sqrt(p[v] * (1 - p[v]) / n);
        z = fmax(z, fabs((double)count[v] / n - p[v]) / se);
    }
    return z;
}

static void test_speculative_verification_outputs_the_target(void)
{
    CHECK(spec_max_z(PLM_SPEC_EXACT) < 5);
    CHECK(spec_max_z(PLM_SPEC_ACCEPT_ALL) > 20);   /* the negative control: the draft's distribution */
}

int main(void)
{
    RUN(test_twisted_proposal_weight_is_the_same_for_every_token);
    RUN(test_every_proposal_has_expected_weight_sum_p0_psi_over_psi_prev);
    RUN(test_a_proposal_that_misses_the_target_is_refused);
    RUN(test_keyword_automaton_accepts_iff_every_keyword_appears);
    RUN(test_guide_refuses_rows_that_are_not_distributions_and_reads_back_its_file);
    RUN(test_speculative_verification_outputs_the_target);
    return CHECK_DONE();
}
