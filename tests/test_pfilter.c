/* test_pfilter.c -- the runtime side of the particle filters: Gaussian transitions are recognised with the
** right mean and density bound (and a discrete one is not), memory without history is O(N), Ctrl-C stops a
** run, the look-ahead and the history are consistent with the filter. Models are traced from Lua. */
#include "check.h"
#include "l_expr.h"
#include "plume.h"
#include "plume_lua.h"

#include <stdlib.h>

static const char *models =
    "sv = plume.ssm{\n"
    "  params = { mu = -1, rho = 0.95, sigma = 0.3 },\n"
    "  init  = function(p) return plume.dist.normal(p.mu, 1) end,\n"
    "  trans = function(p, x, t) return plume.dist.normal(p.mu + p.rho * (x - p.mu), p.sigma) end,\n"
    "  obs   = function(p, x, t) return plume.dist.normal(0, plume.math.exp(x / 2)) end,\n"
    "}\n"
    "hetero = plume.ssm{\n"
    "  init  = function(p) return plume.dist.normal(0, 1) end,\n"
    "  trans = function(p, x, t) return plume.dist.normal(x, plume.math.exp(x / 4)) end,\n"
    "  obs   = function(p, x, t) return plume.dist.normal(x, 1) end,\n"
    "}\n"
    "chain = plume.ssm{\n"
    "  init  = function(p) return plume.dist.categorical({0.5, 0.5}) end,\n"
    "  trans = function(p, x, t) return plume.dist.categorical(plume.pick(x, {{0.9, 0.1}, {0.2, 0.8}})) end,\n"
    "  obs   = function(p, x, t) return plume.dist.normal(x, 1) end,\n"
    "}\n";

static plm_State *P;
static plm_ssm *sv, *hetero, *chain;
static plm_ctx ctx;

static void test_gaussian_transition_mean_and_bound(void)
{
    plm_ssm_gauss G;
    double x[3] = {-2, 0, 1.5}, mean[3], lb;
    int i;
    CHECK(plm_ssm_gauss_init(&ctx, sv, &G) == PLM_OK);
    CHECK(G.const_cov == 1);
    CHECK(plm_ssm_gauss_mean(&ctx, &G, 5, 3, x, mean, 1) == PLM_OK);
    for (i = 0; i < 3; i++) CHECK_REL(mean[i], -1 + 0.95 * (x[i] + 1), 1e-12);
    CHECK(plm_ssm_gauss_log_bound(&ctx, &G, 5, &lb) == PLM_OK);
    CHECK_REL(lb, -log(0.3) - 0.5 * log(2 * M_PI), 1e-12);
    /* a state-dependent scale: still Gaussian in x_t, but no bound over x_{t-1} */
    CHECK(plm_ssm_gauss_init(&ctx, hetero, &G) == PLM_OK);
    CHECK(G.const_cov == 0);
    CHECK(plm_ssm_gauss_log_bound(&ctx, &G, 5, &lb) == PLM_ENOTSUP);
    CHECK(plm_ssm_gauss_mean(&ctx, &G, 5, 3, x, mean, 1) == PLM_OK);
    for (i = 0; i < 3; i++) CHECK_REL(mean[i], x[i], 1e-12);
    /* negative control: a discrete chain is not taken for a Gaussian */
    CHECK(plm_ssm_gauss_init(&ctx, chain, &G) == PLM_ENOTSUP);
}

static void test_memory_without_history_is_linear_in_particles(void)
{
    plm_pf_opts o;
    plm_pf_result r;
    double ys[3] = {0.1, -0.3, 0.2};
    plm_pf_opts_default(&o);
    o.N = 1000000;
    CHECK(plm_pf_bytes(sv, 1000, &o, 0) < 200e6);
    CHECK(plm_pf_bytes(sv, 1000, &o, 0) < plm_pf_bytes(sv, 1, &o, 0) + 1000 * 64.0);   /* T adds per-step summaries only */
    CHECK(plm_pf_run(&ctx, sv, 3, ys, &o, &r) == PLM_OK);
    CHECK(r.xs == NULL && r.logw == NULL && r.anc == NULL);
    CHECK(isfinite(r.logz));
    plm_pf_result_free(&r);
    o.history = 1;
    CHECK(plm_pf_bytes(sv, 1000, &o, 0) > 1000 * 1e6 * 8);
}

static void test_interrupt_stops_the_filter(void)
{
    plm_pf_opts o;
    plm_pf_result r;
    double ys[3] = {0.1, -0.3, 0.2};
    plm_pf_opts_default(&o);
    plm_interrupt();
    CHECK(plm_pf_run(&ctx, sv, 3, ys, &o, &r) == PLM_EINTR);
    CHECK(strstr(ctx.msg, "interrupted at t = 1") != NULL);
    plm_interrupt_clear();
    CHECK(plm_pf_run(&ctx, sv, 3, ys, &o, &r) == PLM_OK);
    plm_pf_result_free(&r);
}

static void test_history_weights_are_normalised_and_ancestors_in_range(void)
{
    plm_pf_opts o;
    plm_pf_result r;
    double ys[4] = {0.1, -0.3, 2.5, 0.2}, s;
    size_t i;
    long t;
    plm_pf_opts_default(&o);
    o.N = 300;
    o.history = 1;
    o.ess_threshold = 1;
    o.scheme = PLM_RESAMPLE_RESIDUAL;
    CHECK(plm_pf_run(&ctx, sv, 4, ys, &o, &r) == PLM_OK);
    for (t = 0; t < 4; t++) {
        for (s = 0, i = 0; i < o.N; i++) {
            s += exp(r.logw[t * o.N + i]);
            CHECK(r.anc[t * o.N + i] < o.N);
        }
        CHECK_NEAR(s, 1, 1e-12);
        CHECK(r.resampled[t] == (t > 0));
    }
    plm_pf_result_free(&r);
}

static void test_bad_options_name_the_option(void)
{
    plm_pf_opts o;
    plm_pf_result r;
    double ys[1] = {0};
    plm_pf_opts_default(&o);
    o.N = 0;
    CHECK(plm_pf_run(&ctx, sv, 1, ys, &o, &r) == PLM_EINVAL && strstr(ctx.msg, "particles"));
    plm_pf_opts_default(&o);
    o.method = PLM_PF_GUIDED;
    CHECK(plm_pf_run(&ctx, sv, 1, ys, &o, &r) == PLM_EINVAL && strstr(ctx.msg, "proposal"));
    o.method = PLM_PF_AUXILIARY;
    CHECK(plm_pf_run(&ctx, sv, 1, ys, &o, &r) == PLM_EINVAL && strstr(ctx.msg, "look-ahead"));
}

int main(void)
{
    lua_State *L;
    P = plm_open();
    if (!P || plm_dostring(P, models)) {
        printf("FAIL setup: %s\n", P ? plm_errmsg(P) : "no state");
        return 1;
    }
    L = plm_lua(P);
    lua_getglobal(L, "sv");
    sv = plm_l_tossm(L, -1);
    lua_getglobal(L, "hetero");
    hetero = plm_l_tossm(L, -1);
    lua_getglobal(L, "chain");
    chain = plm_l_tossm(L, -1);
    RUN(test_gaussian_transition_mean_and_bound);
    RUN(test_memory_without_history_is_linear_in_particles);
    RUN(test_interrupt_stops_the_filter);
    RUN(test_history_weights_are_normalised_and_ancestors_in_range);
    RUN(test_bad_options_name_the_option);
    plm_close(P);
    return CHECK_DONE();
}
