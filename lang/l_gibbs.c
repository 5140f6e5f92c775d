/* l_gibbs.c -- exact Gibbs kernels from Lua (runtime/gibbs.h): plume.infer's method "gibbs" over every
** latent site of a traced model, the kernel values plume.kernel.gibbs / block_gibbs (lkernel.h: built into
** runtime kernels when they meet a model, composable with the others), plume.kernel.gaussian_block, graph:gibbs_plan(), and plume.select / plume.vector, which let a
** model index a list by a discrete symbol (mu[z]). */
#include "l_expr.h"
#include "lgibbs.h"
#include "lkernel.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The builders of the kernel values: a site without an exact conditional is an error that suggests "auto". */
static plm_status gibbs_build(plm_ctx *ctx, const plm_gmodel *m, const int *sites, int n, plm_kernel **out)
{
    plm_status st = plm_kernel_gibbs(ctx, m, sites, n, out);
    if (st == PLM_ENOTSUP) {
        char why[sizeof ctx->msg];
        snprintf(why, sizeof why, "%s", ctx->msg);
        plm_fail(ctx, st, "%s (method \"auto\" moves such sites with another kernel)", why);
    }
    return st;
}

static plm_status block_build(plm_ctx *ctx, const plm_gmodel *m, const int *sites, int n, plm_kernel **out)
{
    return plm_kernel_block_gibbs(ctx, m, sites, n, out);
}

static plm_status gauss_build(plm_ctx *ctx, const plm_gmodel *m, const int *sites, int n, plm_kernel **out)
{
    return plm_kernel_gaussian_block(ctx, m, sites, n, out);
}

int plm_l_kernel_gaussian_block(lua_State *L) { return plm_l_kernel_sites(L, "gaussian_block", gauss_build, 0); }
int plm_l_kernel_gibbs(lua_State *L) { return plm_l_kernel_sites(L, "gibbs", gibbs_build, 1); }
int plm_l_kernel_block_gibbs(lua_State *L) { return plm_l_kernel_sites(L, "block_gibbs", block_build, 1); }

int plm_l_gibbs_plan(lua_State *L, const plm_gmodel *gm)
{
    int i, n = 0, ncand = 0, nb = 0, c = 0;
    int *cand = plm_l_scratch(L, ((size_t)gm->n + 1) * sizeof *cand);
    int *block = plm_l_scratch(L, ((size_t)gm->n + 1) * sizeof *block);
    char refused[400];
    plm_ctx ctx;
    plm_ctx_clear(&ctx);
    /* the Gaussian blocks auto would draw jointly (plm_gibbs_gaussian_blocks) */
    for (i = 0; i < gm->n; i++) {
        plm_gibbs_plan p;
        if (gm->sites[i].kind != PLM_GSITE_LATENT) continue;
        if (plm_gibbs_plan_site(&ctx, gm, i, &p)) return plm_l_fail_in(L, &ctx, "graph:gibbs_plan");
        if (p.how == PLM_GIBBS_NORMAL) cand[ncand++] = i;
    }
    if (ncand > 1 && plm_gibbs_gaussian_blocks(&ctx, gm, cand, ncand, block, &nb, refused, sizeof refused))
        return plm_l_fail_in(L, &ctx, "graph:gibbs_plan");
    lua_newtable(L);
    for (i = 0; i < gm->n; i++) {
        plm_gibbs_plan p;
        if (gm->sites[i].kind != PLM_GSITE_LATENT) continue;
        if (plm_gibbs_plan_site(&ctx, gm, i, &p)) return plm_l_fail_in(L, &ctx, "graph:gibbs_plan");
        lua_createtable(L, 0, 4);
        if (c < ncand && cand[c] == i) {   /* candidates are in site order */
            if (ncand > 1 && block[c] >= 0) {
                lua_pushinteger(L, block[c] + 1);
                lua_setfield(L, -2, "block");
            }
            c++;
        }
        lua_pushstring(L, gm->sites[i].name);
        lua_setfield(L, -2, "site");
        lua_pushstring(L, plm_gibbs_how_name(p.how));
        lua_setfield(L, -2, "update");
        lua_pushstring(L, p.why);
        lua_setfield(L, -2, "why");
        lua_rawseti(L, -2, ++n);
    }
    return 1;
}

int plm_l_infer_gibbs(lua_State *L, plm_gmodel *gm, const plm_l_infer_opts *o, const double *u0, int threads)
{
    const char *fn = "plume.infer";
    int *sites = plm_l_scratch(L, ((size_t)gm->n + 1) * sizeof *sites), n = 0, i, c;
    plm_target *target;
    plm_kernel *k;
    plm_mcmc_opts mo;
    plm_draws *U;
    plm_results *R;
    plm_ctx ctx;
    plm_status st;
    double t0 = plm_l_now(), t1, t2, accept;
    plm_ctx_clear(&ctx);
    for (i = 0; i < gm->n; i++)
        if (gm->sites[i].kind == PLM_GSITE_LATENT) sites[n++] = i;
    if ((st = plm_gmodel_target(&ctx, gm, &target)) && st != PLM_ENOTSUP) return plm_l_fail_in(L, &ctx, fn);
    plm_ctx_clear(&ctx);
    if (plm_kernel_gibbs(&ctx, gm, sites, n, &k)) {
        if (ctx.status == PLM_ENOTSUP)
            return luaL_error(L, "%s: method \"gibbs\": %s (use method = \"auto\", which moves such sites with another "
                                 "kernel)", fn, ctx.msg);
        return plm_l_fail_in(L, &ctx, fn);
    }
    t1 = plm_l_now();
    memset(&mo, 0, sizeof mo);
    mo.chains = o->chains;
    mo.warmup = o->warmup;
    mo.samples = (o->samples + o->thin - 1) / o->thin;
    mo.thin = o->thin;
    mo.seed = o->seed;
    mo.threads = threads;
    mo.init = u0;
    st = (o->local ? plm_mcmc_run_local : plm_mcmc_run)(&ctx, target, k, &mo, &U, &accept);
    t2 = plm_l_now();
    if (st == PLM_EINTR) {
        plm_interrupt_clear();
        return luaL_error(L, "%s: interrupted", fn);
    }
    if (st) return plm_l_fail_in(L, &ctx, fn);
    R = plm_l_newresults(L, o->chains, 0);
    if (plm_gmodel_draws(&ctx, gm, U, plm_results_draws(R), threads)) return plm_l_fail_in(L, &ctx, fn);
    for (c = 0; c < o->chains; c++)
        if (plm_results_push(&ctx, R, "accept_rate", 1)) return plm_l_fail_in(L, &ctx, fn);
    if (plm_results_set(&ctx, R, "compile_time", t1 - t0) || plm_results_set(&ctx, R, "sampling_time", t2 - t1) ||
        plm_results_set_int(&ctx, R, "dim", gm->dim))
        return plm_l_fail_in(L, &ctx, fn);
    return plm_l_static_finish(L, R, U, o->output, fn);
}

void plm_l_open_gibbs(lua_State *L)
{
    (void)L;   /* plume.kernel.gibbs / block_gibbs are registered with the other kernels (l_kernel.c) */
}
