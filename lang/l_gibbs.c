/* l_gibbs.c -- exact Gibbs kernels from Lua (runtime/gibbs.h): plume.infer's method "gibbs" over every
** latent site of a traced model, kernel descriptions for plume.kernel.gibbs / block_gibbs (built into
** runtime kernels when they meet a model), graph:gibbs_plan(), and plume.select / plume.vector, which let a
** model index a list by a discrete symbol (mu[z]). */
#include "l_expr.h"
#include "lgibbs.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PLM_L_GIBBS_KERNEL "plume.kernel.gibbs"

/* Does site name `name` stand for `want`: equal, or want is name[...] (an entry of a vector of sites)? */
static int names_site(const char *want, const char *name)
{
    size_t n = strlen(want);
    return strcmp(want, name) == 0 || (strncmp(want, name, n) == 0 && name[n] == '[');
}

int plm_l_gibbs_resolve(lua_State *L, int idx, const plm_gmodel *gm, const char *fn, int **sites)
{
    lua_Integer k, len;
    int n = 0, i, *s;
    idx = lua_absindex(L, idx);
    if (lua_type(L, idx) == LUA_TSTRING) {   /* one name */
        lua_createtable(L, 1, 0);
        lua_pushvalue(L, idx);
        lua_rawseti(L, -2, 1);
        lua_replace(L, idx);
    }
    if (!lua_istable(L, idx)) return luaL_error(L, "%s: option 'sites' must be a list of site names (got %s)", fn, luaL_typename(L, idx));
    len = luaL_len(L, idx);
    if (len < 1) return luaL_error(L, "%s: option 'sites' is empty", fn);
    s = plm_l_scratch(L, ((size_t)gm->n + 1) * sizeof *s);
    for (k = 1; k <= len; k++) {
        const char *want;
        int found = 0;
        if (lua_geti(L, idx, k) != LUA_TSTRING) return luaL_error(L, "%s: site %d of 'sites' must be a name (got %s)", fn, (int)k, luaL_typename(L, -1));
        want = lua_tostring(L, -1);
        for (i = 0; i < gm->n; i++) {
            int j, dup = 0;
            if (!names_site(want, gm->sites[i].name)) continue;
            if (gm->sites[i].kind != PLM_GSITE_LATENT) {
                if (strcmp(want, gm->sites[i].name) == 0)
                    return luaL_error(L, "%s: site '%s' is %s, not latent: a kernel updates latent sites only", fn, want,
                                      plm_gsite_kind_name(gm->sites[i].kind));
                continue;
            }
            found = 1;
            for (j = 0; j < n; j++) dup |= s[j] == i;
            if (!dup && n < gm->n) s[n++] = i;
        }
        if (!found) return luaL_error(L, "%s: the model has no latent site named '%s'", fn, want);
        lua_pop(L, 1);
    }
    *sites = s;
    return n;
}

plm_kernel *plm_l_gibbs_make(lua_State *L, int idx, const plm_gmodel *gm, const char *fn)
{
    int *sites, n, block, top = lua_gettop(L);
    plm_kernel *k;
    plm_ctx ctx;
    plm_ctx_clear(&ctx);
    idx = lua_absindex(L, idx);
    lua_getfield(L, idx, "kind");
    block = lua_type(L, -1) == LUA_TSTRING && strcmp(lua_tostring(L, -1), "block_gibbs") == 0;
    lua_getfield(L, idx, "sites");
    n = plm_l_gibbs_resolve(L, -1, gm, fn, &sites);
    if ((block ? plm_kernel_block_gibbs : plm_kernel_gibbs)(&ctx, gm, sites, n, &k)) {
        if (ctx.status == PLM_ENOTSUP)
            luaL_error(L, "%s: %s (use method = \"auto\", which moves such sites with another kernel)", fn, ctx.msg);
        plm_l_fail_in(L, &ctx, fn);
    }
    lua_settop(L, top);
    return k;
}

static int kernel_desc(lua_State *L, const char *kind)
{
    static const char *const names[] = {"sites", NULL};
    char fn[64];
    snprintf(fn, sizeof fn, "plume.kernel.%s", kind);
    luaL_checktype(L, 1, LUA_TTABLE);
    plm_l_checkopts(L, 1, fn, names);
    lua_getfield(L, 1, "sites");
    if (lua_type(L, -1) != LUA_TTABLE && lua_type(L, -1) != LUA_TSTRING)
        return luaL_error(L, "%s: option 'sites' must be a list of site names (got %s)", fn, luaL_typename(L, -1));
    lua_createtable(L, 0, 2);
    lua_pushstring(L, kind);
    lua_setfield(L, -2, "kind");
    lua_pushvalue(L, -2);
    lua_setfield(L, -2, "sites");
    luaL_setmetatable(L, PLM_L_GIBBS_KERNEL);
    return 1;
}

int plm_l_kernel_gibbs(lua_State *L) { return kernel_desc(L, "gibbs"); }
int plm_l_kernel_block_gibbs(lua_State *L) { return kernel_desc(L, "block_gibbs"); }

int plm_l_gibbs_plan(lua_State *L, const plm_gmodel *gm)
{
    int i, n = 0;
    plm_ctx ctx;
    plm_ctx_clear(&ctx);
    lua_newtable(L);
    for (i = 0; i < gm->n; i++) {
        plm_gibbs_plan p;
        if (gm->sites[i].kind != PLM_GSITE_LATENT) continue;
        if (plm_gibbs_plan_site(&ctx, gm, i, &p)) return plm_l_fail_in(L, &ctx, "graph:gibbs_plan");
        lua_createtable(L, 0, 3);
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
    st = plm_mcmc_run(&ctx, target, k, &mo, &U, &accept);
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
    if (o->output) {
        FILE *f = fopen(o->output, "w");
        if (!f) return luaL_error(L, "%s: cannot open '%s' for writing", fn, o->output);
        st = plm_draws_write_csv(&ctx, plm_results_draws(R), f);
        if (fclose(f) || st) return luaL_error(L, "%s: writing '%s' failed", fn, o->output);
    }
    plm_l_push_results(L, R);
    plm_l_pushdraws(L, U);
    lua_setfield(L, -2, "sampler");
    return 1;
}

void plm_l_open_gibbs(lua_State *L)
{
    luaL_newmetatable(L, PLM_L_GIBBS_KERNEL);
    lua_pushstring(L, PLM_L_GIBBS_KERNEL);
    lua_setfield(L, -2, "__name");
    lua_pop(L, 1);
}
