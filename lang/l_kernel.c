/* l_kernel.c -- plume.kernel: MCMC kernels as values that compose (mh, slice, elliptical_slice, hmc, nuts on
** sets of sites; cycle, mixture, rep), run by plume.infer(model, data, {kernel = k}) on the static graph
** (l_static.c). A value is a description; plm_l_kernel_build makes the C kernel from it once the graph is
** traced: a kernel for a whole target is restricted to its sites' coordinates (kernel_compose.h). */
#include "lkernel.h"

#include <lauxlib.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "hmc.h"
#include "kernel_compose.h"
#include "lgibbs.h"
#include "lutil.h"
#include "lmodel.h"
#include "slice.h"

/* A kernel made from the graph by a C function (plm_l_kernel_sites), kept in the value as a userdata. */
typedef struct site_builder {
    plm_l_site_kernel_fn build;
    int discrete;
} site_builder;

int plm_l_iskernel(lua_State *L, int idx)
{
    int yes;
    if (!lua_istable(L, idx) || !lua_getmetatable(L, idx)) return 0;
    luaL_getmetatable(L, PLM_L_KERNEL);
    yes = lua_rawequal(L, -1, -2);
    lua_pop(L, 2);
    return yes;
}

/* A new kernel value {kind = kind} with the metatable, on top of the stack. */
static void new_kernel(lua_State *L, const char *kind)
{
    lua_newtable(L);
    lua_pushstring(L, kind);
    lua_setfield(L, -2, "kind");
    luaL_setmetatable(L, PLM_L_KERNEL);
}

/* Copy opts.sites (a name or a list of names) into the kernel value on top; absent: every site. */
static void take_sites(lua_State *L, int opts, const char *fn)
{
    int t = lua_getfield(L, opts, "sites"), n, i;
    if (t == LUA_TNIL) {
        lua_pop(L, 1);
        return;
    }
    if (t == LUA_TSTRING) {
        lua_createtable(L, 1, 0);
        lua_insert(L, -2);
        lua_rawseti(L, -2, 1);
    } else if (t != LUA_TTABLE)
        luaL_error(L, "%s: option 'sites' must be a site name or a list of names (got %s)", fn, luaL_typename(L, -1));
    n = (int)luaL_len(L, -1);
    if (n < 1) luaL_error(L, "%s: option 'sites' is empty", fn);
    for (i = 1; i <= n; i++)
        if (lua_geti(L, -1, i) != LUA_TSTRING)
            luaL_error(L, "%s: sites[%d] must be a site name (got %s)", fn, i, luaL_typename(L, -1));
        else
            lua_pop(L, 1);
    lua_setfield(L, -2, "sites");
}

/* Copy the number opts[key] (checked by ok) into the value on top. */
static void take_num(lua_State *L, int opts, const char *fn, const char *key, const char *range, int (*ok)(double))
{
    if (lua_getfield(L, opts, key) == LUA_TNIL) {
        lua_pop(L, 1);
        return;
    }
    if (!lua_isnumber(L, -1) || !ok(lua_tonumber(L, -1)))
        luaL_error(L, "%s: option '%s' must be %s (got %s)", fn, key, range, luaL_tolstring(L, -1, NULL));
    lua_setfield(L, -2, key);
}

static int positive(double x) { return x > 0 && isfinite(x); }
static int depth_ok(double x) { return x >= 1 && x <= 30 && x == floor(x); }
static int steps_ok(double x) { return x >= 1 && x <= 100000 && x == floor(x); }

static int opts_table(lua_State *L, const char *fn)
{
    if (lua_isnoneornil(L, 1)) lua_newtable(L), lua_replace(L, 1);
    luaL_argexpected(L, lua_istable(L, 1), 1, "options table");
    (void)fn;
    lua_settop(L, 1);
    return 1;
}

static int l_mh(lua_State *L)
{
    static const char *const names[] = {"sites", "proposal", NULL};
    const char *fn = "plume.kernel.mh";
    int o = opts_table(L, fn);
    plm_l_checkopts(L, o, fn, names);
    new_kernel(L, "mh");
    take_sites(L, o, fn);
    take_num(L, o, fn, "proposal", "a scale > 0", positive);
    return 1;
}

static int l_slice(lua_State *L)
{
    static const char *const names[] = {"sites", "width", NULL};
    const char *fn = "plume.kernel.slice";
    int o = opts_table(L, fn);
    plm_l_checkopts(L, o, fn, names);
    new_kernel(L, "slice");
    take_sites(L, o, fn);
    take_num(L, o, fn, "width", "a width > 0", positive);
    return 1;
}

static int l_hmc(lua_State *L)
{
    static const char *const names[] = {"sites", "steps", "step_size", "delta", NULL};
    const char *fn = "plume.kernel.hmc";
    int o = opts_table(L, fn);
    plm_l_checkopts(L, o, fn, names);
    new_kernel(L, "hmc");
    take_sites(L, o, fn);
    take_num(L, o, fn, "steps", "an integer in 1..1e5", steps_ok);
    take_num(L, o, fn, "step_size", "a step size > 0", positive);
    return 1;
}

static int l_nuts(lua_State *L)
{
    static const char *const names[] = {"sites", "max_depth", "metric", "step_size", NULL};
    const char *fn = "plume.kernel.nuts";
    int o = opts_table(L, fn);
    plm_l_checkopts(L, o, fn, names);
    new_kernel(L, "nuts");
    take_sites(L, o, fn);
    take_num(L, o, fn, "max_depth", "an integer in 1..30", depth_ok);
    take_num(L, o, fn, "step_size", "a step size > 0", positive);
    if (lua_getfield(L, o, "metric") != LUA_TNIL) {
        const char *m = lua_tostring(L, -1);
        if (lua_type(L, -1) != LUA_TSTRING || (strcmp(m, "diag") != 0 && strcmp(m, "dense") != 0))
            return luaL_error(L, "%s: option 'metric' must be \"diag\" or \"dense\" (got %s)", fn, luaL_tolstring(L, -1, NULL));
        lua_setfield(L, -2, "metric");
    } else
        lua_pop(L, 1);
    return 1;
}

static plm_status ess_build(plm_ctx *ctx, const plm_gmodel *m, const int *sites, int nsites, plm_kernel **out)
{
    /* the elliptical slice kernel adds its prior programs to the graph, which the model owns */
    return plm_kernel_ess(ctx, (plm_gmodel *)m, sites, nsites, out);
}

int plm_l_kernel_sites(lua_State *L, const char *kind, plm_l_site_kernel_fn build, int discrete)
{
    static const char *const names[] = {"sites", NULL};
    char fn[64];
    site_builder *b;
    int o;
    snprintf(fn, sizeof fn, "plume.kernel.%s", kind);
    o = opts_table(L, fn);
    plm_l_checkopts(L, o, fn, names);
    new_kernel(L, kind);
    take_sites(L, o, fn);
    b = lua_newuserdatauv(L, sizeof *b, 0);
    b->build = build;
    b->discrete = discrete;
    lua_setfield(L, -2, "_build");
    return 1;
}

static int l_ess(lua_State *L) { return plm_l_kernel_sites(L, "elliptical_slice", ess_build, 0); }

/* plume.kernel.cycle{k1, k2, ...} */
static int l_cycle(lua_State *L)
{
    int n, i;
    luaL_checktype(L, 1, LUA_TTABLE);
    n = (int)luaL_len(L, 1);
    if (n < 1) return luaL_error(L, "plume.kernel.cycle: expected a list of kernels");
    for (i = 1; i <= n; i++) {
        lua_geti(L, 1, i);
        if (!plm_l_iskernel(L, -1)) return luaL_error(L, "plume.kernel.cycle: element %d is not a kernel (got %s)", i, luaL_typename(L, -1));
        lua_pop(L, 1);
    }
    new_kernel(L, "cycle");
    lua_pushvalue(L, 1);
    lua_setfield(L, -2, "kernels");
    return 1;
}

/* plume.kernel.mixture{{k1, w1}, {k2, w2}, ...} */
static int l_mixture(lua_State *L)
{
    int n, i;
    luaL_checktype(L, 1, LUA_TTABLE);
    n = (int)luaL_len(L, 1);
    if (n < 1) return luaL_error(L, "plume.kernel.mixture: expected a list of {kernel, weight} pairs");
    new_kernel(L, "mixture");
    lua_createtable(L, n, 0);
    lua_createtable(L, n, 0);
    for (i = 1; i <= n; i++) {
        double w;
        if (lua_geti(L, 1, i) != LUA_TTABLE) return luaL_error(L, "plume.kernel.mixture: element %d must be {kernel, weight}", i);
        lua_geti(L, -1, 1);
        if (!plm_l_iskernel(L, -1)) return luaL_error(L, "plume.kernel.mixture: element %d's first entry is not a kernel", i);
        lua_rawseti(L, -4, i);
        lua_geti(L, -1, 2);
        w = lua_tonumber(L, -1);
        if (!lua_isnumber(L, -1) || !(w >= 0 && isfinite(w)))
            return luaL_error(L, "plume.kernel.mixture: element %d's weight must be a number >= 0 (got %s)", i, luaL_tolstring(L, -1, NULL));
        lua_rawseti(L, -3, i);
        lua_pop(L, 1);
    }
    lua_setfield(L, -3, "weights");
    lua_setfield(L, -2, "kernels");
    return 1;
}

/* plume.kernel.rep(k, n) */
static int l_rep(lua_State *L)
{
    lua_Integer n = luaL_checkinteger(L, 2);
    if (!plm_l_iskernel(L, 1)) return luaL_error(L, "plume.kernel.rep: expected a kernel (got %s)", luaL_typename(L, 1));
    if (n < 1 || n > 1000000) return luaL_error(L, "plume.kernel.rep: the count must be in 1..1e6 (got %I)", n);
    new_kernel(L, "rep");
    lua_createtable(L, 1, 0);
    lua_pushvalue(L, 1);
    lua_rawseti(L, -2, 1);
    lua_setfield(L, -2, "kernels");
    lua_pushinteger(L, n);
    lua_setfield(L, -2, "n");
    return 1;
}

/* "nuts{mu, sigma; max_depth = 8}", "cycle{gibbs{z}, nuts}" */
static void describe(lua_State *L, int idx, luaL_Buffer *b)
{
    static const char *const keys[] = {"proposal", "width", "steps", "step_size", "max_depth", "metric", NULL};
    int i, n, first = 1;
    idx = lua_absindex(L, idx);
    lua_getfield(L, idx, "kind");
    luaL_addvalue(b);
    lua_getfield(L, idx, "kind");
    if (strcmp(lua_tostring(L, -1), "cycle") == 0 || strcmp(lua_tostring(L, -1), "mixture") == 0 ||
        strcmp(lua_tostring(L, -1), "rep") == 0) {
        int mix = strcmp(lua_tostring(L, -1), "mixture") == 0;
        lua_pop(L, 1);
        luaL_addchar(b, '{');
        lua_getfield(L, idx, "kernels");
        n = (int)luaL_len(L, -1);
        for (i = 1; i <= n; i++) {
            if (i > 1) luaL_addstring(b, ", ");
            lua_geti(L, -1, i);
            describe(L, -1, b);
            lua_pop(L, 1);
            if (mix) {
                lua_getfield(L, idx, "weights");
                lua_geti(L, -1, i);
                lua_pushfstring(L, ": %f", (lua_Number)lua_tonumber(L, -1));
                luaL_addvalue(b);
                lua_pop(L, 2);
            }
        }
        lua_pop(L, 1);
        if (lua_getfield(L, idx, "n") != LUA_TNIL) {
            lua_pushfstring(L, " x %I", (lua_Integer)lua_tointeger(L, -1));
            luaL_addvalue(b);
        }
        lua_pop(L, 1);
        luaL_addchar(b, '}');
        return;
    }
    lua_pop(L, 1);
    luaL_addchar(b, '{');
    if (lua_getfield(L, idx, "sites") == LUA_TTABLE) {
        n = (int)luaL_len(L, -1);
        for (i = 1; i <= n; i++) {
            if (i > 1) luaL_addstring(b, ", ");
            lua_geti(L, -1, i);
            luaL_addvalue(b);
        }
        first = 0;
    } else {
        int all;
        lua_getfield(L, idx, "_build");
        all = lua_isuserdata(L, -1) && ((const site_builder *)lua_touserdata(L, -1))->discrete;
        lua_pop(L, 1);
        luaL_addstring(b, all ? "all sites" : "all continuous sites");
        first = 0;
    }
    lua_pop(L, 1);
    for (i = 0; keys[i]; i++)
        if (lua_getfield(L, idx, keys[i]) != LUA_TNIL) {
            luaL_addstring(b, first ? "" : "; ");
            first = 0;
            lua_pushfstring(L, "%s = %s", keys[i], luaL_tolstring(L, -1, NULL));
            lua_remove(L, -2);
            lua_remove(L, -2);
            luaL_addvalue(b);
        } else
            lua_pop(L, 1);
    luaL_addchar(b, '}');
}

static int l_kernel_tostring(lua_State *L)
{
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    luaL_addstring(&b, "plume.kernel ");
    describe(L, 1, &b);
    luaL_pushresult(&b);
    return 1;
}

/* ---- building the C kernel ---- */

/* Does the name `want` stand for site name `name`: equal, or name is want[...] (an entry of a vector of sites)? */
static int names_site(const char *want, const char *name)
{
    size_t n = strlen(want);
    return strcmp(want, name) == 0 || (strncmp(want, name, n) == 0 && name[n] == '[');
}

static int is_discrete(const plm_gsite *s)
{
    return s->dist >= 0 && plm_dist_info_of((plm_dist_kind)s->dist)->discrete;
}

/* The sites of the value at idx as site indices into out (gm->n at most), checked; returns the count. A name
** is a site's name or stands for the entries of a vector of sites ("z" for "z[1]", "z[2]", ...). */
static int resolve_sites(lua_State *L, int idx, plm_gmodel *gm, const char *fn, const char *kind, int discrete_ok, int *out)
{
    int n = 0, i, k;
    if (lua_getfield(L, idx, "sites") == LUA_TNIL) {
        /* every latent site this kind of kernel can move */
        for (i = 0; i < gm->n; i++) {
            const plm_gsite *s = &gm->sites[i];
            if (s->kind != PLM_GSITE_LATENT) continue;
            if (!discrete_ok && is_discrete(s)) continue;
            out[n++] = i;
        }
        lua_pop(L, 1);
        if (!n) luaL_error(L, "%s: kernel %s has no site it can move in this model", fn, kind);
        return n;
    }
    for (k = 1; k <= (int)luaL_len(L, -1); k++) {
        const char *name;
        int found = 0;
        lua_geti(L, -1, k);
        name = lua_tostring(L, -1);
        for (i = 0; i < gm->n; i++) {
            const plm_gsite *s = &gm->sites[i];
            int exact = strcmp(name, s->name) == 0;
            if (!names_site(name, s->name)) continue;
            if (s->kind != PLM_GSITE_LATENT) {
                if (!exact) continue;   /* a prefix skips observed entries */
                luaL_error(L, "%s: kernel %s names site '%s', which is %s, not latent", fn, kind, name,
                           plm_gsite_kind_name(s->kind));
            }
            if (!discrete_ok && is_discrete(s))
                luaL_error(L, "%s: kernel %s is for continuous sites, and site '%s' is discrete (%s): use gibbs", fn,
                           kind, s->name, plm_dist_info_of((plm_dist_kind)s->dist)->name);
            for (int j = 0; j < n; j++)
                if (out[j] == i) luaL_error(L, "%s: kernel %s names site '%s' twice", fn, kind, s->name);
            out[n++] = i;
            found = 1;
        }
        if (!found) luaL_error(L, "%s: kernel %s names site '%s', which the model does not have", fn, kind, name);
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    return n;
}

/* k restricted to the coordinates of sites[0..n-1] (k itself when they are all of u, in order). */
static plm_kernel *restrict_to(lua_State *L, plm_gmodel *gm, const plm_kernel *k, const int *sites, int n, const char *fn)
{
    int *idx = lua_newuserdatauv(L, ((size_t)gm->dim + 1) * sizeof *idx, 0), nc = 0, i, j, all;
    plm_kernel *out;
    plm_ctx ctx;
    for (i = 0; i < n; i++)
        for (j = 0; j < gm->sites[sites[i]].dim; j++) idx[nc++] = gm->sites[sites[i]].first + j;
    all = nc == gm->dim;
    for (i = 0; all && i < nc; i++) all = idx[i] == i;
    out = (plm_kernel *)k;
    plm_ctx_clear(&ctx);
    if (!all && plm_kernel_restrict(&ctx, k, idx, nc, &out)) plm_l_fail_in(L, &ctx, fn);
    lua_pop(L, 1);
    return out;
}

plm_kernel *plm_l_kernel_build(lua_State *L, int idx, plm_gmodel *gm, const char *fn)
{
    const char *kind;
    plm_kernel *k = NULL, **ks;
    plm_ctx ctx;
    int *sites, n, i;
    idx = lua_absindex(L, idx);
    if (!plm_l_iskernel(L, idx)) luaL_error(L, "%s: option 'kernel' must be a plume.kernel value (got %s)", fn, luaL_typename(L, idx));
    luaL_checkstack(L, 16, fn);
    plm_ctx_clear(&ctx);
    lua_getfield(L, idx, "kind");
    kind = lua_tostring(L, -1);
    lua_pop(L, 1);   /* the value keeps the string alive */
    if (strcmp(kind, "cycle") == 0 || strcmp(kind, "mixture") == 0 || strcmp(kind, "rep") == 0) {
        double *w;
        lua_getfield(L, idx, "kernels");
        n = (int)luaL_len(L, -1);
        ks = lua_newuserdatauv(L, (size_t)n * sizeof *ks, 0);   /* kept on the stack while children build */
        w = lua_newuserdatauv(L, (size_t)n * sizeof *w, 0);
        for (i = 0; i < n; i++) {
            lua_geti(L, -3, i + 1);
            ks[i] = plm_l_kernel_build(L, -1, gm, fn);
            lua_pop(L, 1);
        }
        if (kind[0] == 'm') {
            lua_getfield(L, idx, "weights");
            for (i = 0; i < n; i++) w[i] = (lua_geti(L, -1, i + 1), lua_tonumber(L, -1)), lua_pop(L, 1);
            lua_pop(L, 1);
            if (plm_kernel_mixture(&ctx, (const plm_kernel *const *)ks, w, n, &k)) plm_l_fail_in(L, &ctx, fn);
        } else if (kind[0] == 'c') {
            if (plm_kernel_cycle(&ctx, (const plm_kernel *const *)ks, n, &k)) plm_l_fail_in(L, &ctx, fn);
        } else {
            lua_getfield(L, idx, "n");
            if (plm_kernel_rep(&ctx, ks[0], (int)lua_tointeger(L, -1), &k)) plm_l_fail_in(L, &ctx, fn);
            lua_pop(L, 1);
        }
        lua_pop(L, 3);
        return k;
    }
    sites = lua_newuserdatauv(L, ((size_t)gm->n + 1) * sizeof *sites, 0);   /* popped before returning */
    if (lua_getfield(L, idx, "_build") == LUA_TUSERDATA) {
        const site_builder *b = lua_touserdata(L, -1);
        n = resolve_sites(L, idx, gm, fn, kind, b->discrete, sites);
        if (b->build(&ctx, gm, sites, n, &k)) plm_l_fail_in(L, &ctx, fn);
        lua_pop(L, 2);
        return k;
    }
    lua_pop(L, 1);
    n = resolve_sites(L, idx, gm, fn, kind, 0, sites);
    if (strcmp(kind, "nuts") == 0 || strcmp(kind, "hmc") == 0) {
        plm_hmc_opts ho;
        memset(&ho, 0, sizeof ho);
        ho.max_depth = (int)(lua_getfield(L, idx, "max_depth"), luaL_optinteger(L, -1, 0));
        ho.steps = (int)(lua_getfield(L, idx, "steps"), luaL_optinteger(L, -1, 0));
        ho.step_size = (lua_getfield(L, idx, "step_size"), luaL_optnumber(L, -1, 0));
        ho.dense = lua_getfield(L, idx, "metric") == LUA_TSTRING && strcmp(lua_tostring(L, -1), "dense") == 0;
        lua_pop(L, 4);
        if ((kind[0] == 'n' ? plm_kernel_nuts : plm_kernel_hmc)(&ctx, &ho, &k)) plm_l_fail_in(L, &ctx, fn);
    } else if (strcmp(kind, "slice") == 0) {
        double width = (lua_getfield(L, idx, "width"), luaL_optnumber(L, -1, 0));
        lua_pop(L, 1);
        if (plm_kernel_slice(&ctx, width, 0, &k)) plm_l_fail_in(L, &ctx, fn);
    } else if (strcmp(kind, "mh") == 0) {
        double scale = (lua_getfield(L, idx, "proposal"), luaL_optnumber(L, -1, 0));
        lua_pop(L, 1);
        if (plm_kernel_rwmh_scaled(&ctx, 0, scale, &k)) plm_l_fail_in(L, &ctx, fn);
    } else
        luaL_error(L, "%s: unknown kernel kind '%s'", fn, kind);
    k = restrict_to(L, gm, k, sites, n, fn);
    lua_pop(L, 1);
    return k;
}

void plm_l_open_kernel(lua_State *L)
{
    static const luaL_Reg fns[] = {{"mh", l_mh}, {"slice", l_slice}, {"elliptical_slice", l_ess}, {"hmc", l_hmc},
                                   {"nuts", l_nuts}, {"cycle", l_cycle}, {"mixture", l_mixture}, {"rep", l_rep},
                                   {"gibbs", plm_l_kernel_gibbs}, {"block_gibbs", plm_l_kernel_block_gibbs},
                                   {"gaussian_block", plm_l_kernel_gaussian_block},
                                   {NULL, NULL}};
    luaL_newmetatable(L, PLM_L_KERNEL);
    lua_pushcfunction(L, l_kernel_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pushstring(L, PLM_L_KERNEL);
    lua_setfield(L, -2, "__name");
    lua_pop(L, 1);
    luaL_newlib(L, fns);
    lua_setfield(L, -2, "kernel");
}
