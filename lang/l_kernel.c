/* l_kernel.c -- plume.kernel: MCMC kernels as values that compose (mh, slice, elliptical_slice, hmc, nuts on
** sets of sites; cycle, mixture, rep), run by plume.infer(model, data, {kernel = k}) on the static graph
** (l_static.c). A value is a description; plm_l_kernel_build makes the C kernel from it once the graph is
** traced: a kernel for a whole target is restricted to its sites' coordinates (kernel_compose.h). */
#include "lkernel.h"

#include <lauxlib.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "hmc.h"
#include "kernel_compose.h"
#include "lgibbs.h"
#include "lutil.h"
#include "ldist.h"
#include "linfer.h"
#include "lmodel.h"
#include "mh_trace.h"
#include "slice.h"

#define PLM_L_KERNEL_ROOTS "plume.kernel.roots"   /* a box rooting a composite's children while they build */

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
        if (!plm_l_iskernel_or_fn(L, -1))
            return luaL_error(L, "plume.kernel.cycle: element %d is not a kernel or a function (got %s)", i, luaL_typename(L, -1));
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
        if (!plm_l_iskernel_or_fn(L, -1)) return luaL_error(L, "plume.kernel.mixture: element %d's first entry is not a kernel or a function", i);
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
    if (!plm_l_iskernel_or_fn(L, 1)) return luaL_error(L, "plume.kernel.rep: expected a kernel or a function (got %s)", luaL_typename(L, 1));
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

/* The composite `kind` ("cycle", "mixture" or "rep") of the value at idx over its n children ks, already built
** (static or trace kernels alike). Leaves the stack as it found it. */
static plm_kernel *compose(lua_State *L, int idx, const char *kind, plm_kernel **ks, int n, const char *fn)
{
    plm_kernel *k = NULL;
    plm_ctx ctx;
    int i;
    plm_ctx_clear(&ctx);
    if (kind[0] == 'm') {
        double *w = lua_newuserdatauv(L, (size_t)n * sizeof *w, 0);
        lua_getfield(L, idx, "weights");
        for (i = 0; i < n; i++) w[i] = (lua_geti(L, -1, i + 1), lua_tonumber(L, -1)), lua_pop(L, 1);
        if (plm_kernel_mixture(&ctx, (const plm_kernel *const *)ks, w, n, &k)) plm_l_fail_in(L, &ctx, fn);
        lua_pop(L, 2);
    } else if (kind[0] == 'c') {
        if (plm_kernel_cycle(&ctx, (const plm_kernel *const *)ks, n, &k)) plm_l_fail_in(L, &ctx, fn);
    } else {
        lua_getfield(L, idx, "n");
        if (plm_kernel_rep(&ctx, ks[0], (int)lua_tointeger(L, -1), &k)) plm_l_fail_in(L, &ctx, fn);
        lua_pop(L, 1);
    }
    return k;
}

plm_kernel *plm_l_kernel_build(lua_State *L, int idx, plm_gmodel *gm, const char *fn)
{
    const char *kind;
    plm_kernel *k = NULL, **ks;
    plm_ctx ctx;
    int *sites, n, i;
    idx = lua_absindex(L, idx);
    if (lua_isfunction(L, idx)) luaL_error(L, "%s: a Lua function kernel runs on the program's traces only", fn);
    if (!plm_l_iskernel(L, idx)) luaL_error(L, "%s: option 'kernel' must be a plume.kernel value (got %s)", fn, luaL_typename(L, idx));
    luaL_checkstack(L, 16, fn);
    plm_ctx_clear(&ctx);
    lua_getfield(L, idx, "kind");
    kind = lua_tostring(L, -1);
    lua_pop(L, 1);   /* the value keeps the string alive */
    if (strcmp(kind, "cycle") == 0 || strcmp(kind, "mixture") == 0 || strcmp(kind, "rep") == 0) {
        lua_getfield(L, idx, "kernels");
        n = (int)luaL_len(L, -1);
        /* GC memory rooted by a box on the stack while the children build: a child built later may collect, and
        ** Lua's own memory is not scanned for the kernels built before it */
        ks = plm_gc_alloc((size_t)n * sizeof *ks);
        if (!ks) luaL_error(L, "%s: out of memory", fn);
        plm_l_pushobj(L, ks, PLM_L_KERNEL_ROOTS);
        for (i = 0; i < n; i++) {
            lua_geti(L, -2, i + 1);
            ks[i] = plm_l_kernel_build(L, -1, gm, fn);
            lua_pop(L, 1);
        }
        k = compose(L, idx, kind, ks, n, fn);
        lua_pop(L, 2);
        return k;
    }
    if (strcmp(kind, "learned") == 0) return plm_l_learned_build(L, idx, gm, fn);
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

/* ---- on dynamic programs: trace kernels, traces as Lua values, kernels written in Lua ---- */

int plm_l_iskernel_or_fn(lua_State *L, int idx)
{
    return lua_isfunction(L, idx) || plm_l_iskernel(L, idx);
}

/* Call f on each child of the composite kernel value at idx (none for a leaf); stops at the first nonzero. */
static int any_child(lua_State *L, int idx, int (*f)(lua_State *L, int idx))
{
    int n, i, r = 0;
    idx = lua_absindex(L, idx);
    if (lua_getfield(L, idx, "kernels") != LUA_TTABLE) {
        lua_pop(L, 1);
        return 0;
    }
    n = (int)luaL_len(L, -1);
    for (i = 1; i <= n && !r; i++) {
        lua_geti(L, -1, i);
        r = f(L, -1);
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    return r;
}

int plm_l_kernel_has_fn(lua_State *L, int idx)
{
    if (lua_isfunction(L, idx)) return 1;
    return plm_l_iskernel(L, idx) && any_child(L, idx, plm_l_kernel_has_fn);
}

static const char *not_trace_kind;

static int not_trace(lua_State *L, int idx)
{
    const char *kind;
    if (lua_isfunction(L, idx)) return 0;
    kind = (lua_getfield(L, idx, "kind"), lua_tostring(L, -1));
    lua_pop(L, 1);   /* the value keeps the string */
    if (strcmp(kind, "mh") == 0 || strcmp(kind, "gibbs") == 0) return 0;
    if (strcmp(kind, "cycle") == 0 || strcmp(kind, "mixture") == 0 || strcmp(kind, "rep") == 0)
        return any_child(L, idx, not_trace);
    not_trace_kind = kind;
    return 1;
}

const char *plm_l_kernel_not_trace(lua_State *L, int idx)
{
    return not_trace(L, idx) ? not_trace_kind : NULL;
}

/* A trace as a Lua value ("plume.trace"): a copy of a chain's trace, or a proposal made from one by tr:with,
** which keeps the trace it came from as its user value (plume.kernel.accept checks it). */
#define PLM_L_TRACE "plume.trace"

typedef struct ltrace {
    plm_trace *tr, *cons;     /* GC, rooted; cons: the values tr:with imposed (NULL for a chain's trace) */
    long root, root_cons;
    double fresh;             /* log density of the values drawn fresh by tr:with */
    int rejected;             /* the program rejected the run (its log density is -inf) */
    lua_Integer call;         /* the kernel call that made it */
} ltrace;

/* The kernel call in progress (one at a time: chains with Lua kernels run on the calling state). */
typedef struct kcall {
    plm_mh_chain *ch;
    plm_l_trace_host *host;
    plm_rng *rng;             /* plume's default stream, holding the chain's during the call */
    lua_Integer id;
} kcall;

static const char CALL_KEY = 'k';   /* registry: light userdata of the kcall in progress */
static const char PROG_KEY = 'p';   /* registry: {fn, handle, args...} of the program, during a kernel call */
static lua_Integer ncalls;          /* ids of kernel calls (serial: Lua kernels run on the main thread) */

static int trace_gc(lua_State *L)
{
    ltrace *t = luaL_checkudata(L, 1, PLM_L_TRACE);
    if (t->root) plm_unroot(t->root);
    if (t->root_cons) plm_unroot(t->root_cons);
    t->root = t->root_cons = 0;
    return 0;
}

static ltrace *push_trace(lua_State *L, plm_trace *tr, lua_Integer call)
{
    ltrace *t = lua_newuserdatauv(L, sizeof *t, 1);
    memset(t, 0, sizeof *t);
    luaL_setmetatable(L, PLM_L_TRACE);
    t->tr = tr;
    t->call = call;
    if (!(t->root = plm_root(tr))) luaL_error(L, "plume: out of memory");
    return t;
}

static ltrace *check_trace(lua_State *L, int idx, const char *fn)
{
    ltrace *t = luaL_testudata(L, idx, PLM_L_TRACE);
    if (!t) luaL_error(L, "%s: expected a trace (got %s)", fn, luaL_typename(L, idx));
    return t;
}

/* The kernel call that t belongs to; an error when the call is over (a trace kept from an earlier one). */
static kcall *call_of(lua_State *L, const ltrace *t, const char *fn)
{
    kcall *k = (lua_rawgetp(L, LUA_REGISTRYINDEX, &CALL_KEY), lua_touserdata(L, -1));
    lua_pop(L, 1);
    if (!k || k->id != t->call)
        luaL_error(L, "%s: this trace belongs to a kernel call that is over (a kernel works on the trace it is given)", fn);
    return k;
}

/* tr:get(name): the value of site name */
static int l_trace_get(lua_State *L)
{
    ltrace *t = check_trace(L, 1, "tr:get");
    const char *name = luaL_checkstring(L, 2);
    const plm_site *s = plm_trace_find(t->tr, name);
    if (!s) return luaL_error(L, "tr:get: the trace has no site '%s'", name);
    if (s->dist)
        plm_l_pushdistvalue(L, s->dist, s->value);
    else if (s->dim == 1)
        lua_pushnumber(L, s->value[0]);
    else
        plm_l_pushvec(L, s->value, (size_t)s->dim);
    return 1;
}

/* tr:sites(): the latent sites' names in the order the program sampled them */
static int l_trace_sites(lua_State *L)
{
    ltrace *t = check_trace(L, 1, "tr:sites");
    size_t i;
    int n = 0;
    lua_createtable(L, (int)t->tr->nlatent, 0);
    for (i = 0; i < t->tr->n; i++)
        if (t->tr->sites[i].kind == PLM_SITE_LATENT) {
            lua_pushstring(L, t->tr->sites[i].addr);
            lua_rawseti(L, -2, ++n);
        }
    return 1;
}

/* tr:with{name = value, ...} or tr:with(name, value): the program run again with these values, the other
** choices kept where they still fit and new ones drawn from their priors: a new trace, scored. */
static int l_trace_with(lua_State *L)
{
    const char *fn = "tr:with";
    ltrace *t = check_trace(L, 1, fn), *nt;
    kcall *k = call_of(L, t, fn);
    plm_trace *cons, *out;
    plm_ctx ctx;
    plm_status st;
    double fresh, *x;
    int rejected;
    char why[256];
    if (lua_type(L, 2) == LUA_TSTRING) {
        lua_settop(L, 3);
        lua_createtable(L, 0, 1);
        lua_insert(L, 2);
        lua_settable(L, 2);
    }
    luaL_argexpected(L, lua_istable(L, 2), 2, "table of values by site name");
    lua_settop(L, 2);
    plm_ctx_clear(&ctx);
    if (plm_trace_new(&ctx, &cons) || plm_trace_new(&ctx, &out)) return plm_l_fail_in(L, &ctx, fn);
    lua_pushnil(L);
    while (lua_next(L, 2)) {
        const char *name = lua_tostring(L, -2);
        const plm_site *s;
        if (lua_type(L, -2) != LUA_TSTRING) return luaL_error(L, "%s: keys must be site names (got %s)", fn, luaL_typename(L, -2));
        s = plm_trace_find(t->tr, name);
        if (!s && lua_type(L, -1) == LUA_TNUMBER) {
            /* a site this trace lacks (a birth move's new component): a scalar imposed as it is; the run checks
            ** its dimension against the site's distribution, and fails if the program does not sample it */
            double v = lua_tonumber(L, -1);
            if (plm_trace_add(&ctx, cons, name, PLM_SITE_LATENT, NULL, &v, 1, 0, NULL)) return plm_l_fail_in(L, &ctx, fn);
            lua_pop(L, 1);
            continue;
        }
        if (!s || s->kind != PLM_SITE_LATENT)
            return luaL_error(L, "%s: the trace has no latent site '%s'%s", fn, name,
                              s ? " (it is observed)" : " (the model did not sample it in this run)");
        x = plm_l_scratch(L, (size_t)s->dim * sizeof *x);
        if (!plm_l_todistvalue(L, -2, s->dist, x))
            return luaL_error(L, "%s: the value of '%s' must be %s (got %s)", fn, name,
                              s->dim == 1 ? "a number" : "a table of numbers", luaL_typename(L, -2));
        if (plm_trace_add(&ctx, cons, name, PLM_SITE_LATENT, s->dist, x, s->dim, 0, NULL)) return plm_l_fail_in(L, &ctx, fn);
        lua_pop(L, 2);
    }
    nt = push_trace(L, out, k->id);   /* rooted before the run allocates */
    if (!(nt->root_cons = plm_root(cons))) return luaL_error(L, "plume: out of memory");
    nt->cons = cons;
    {
        /* the program's function, handle and arguments, copied into this frame for the run */
        const plm_l_program *saved = k->host->pg;
        plm_l_program here;
        int i, top = lua_gettop(L);
        luaL_checkstack(L, saved->nargs + 8, fn);
        lua_rawgetp(L, LUA_REGISTRYINDEX, &PROG_KEY);
        for (i = 0; i < 2 + saved->nargs; i++) lua_rawgeti(L, top + 1, i + 1);
        here.fn = top + 2;
        here.handle = top + 3;
        here.args = top + 4;
        here.nargs = saved->nargs;
        k->host->pg = &here;
        st = plm_mh_chain_propose(&ctx, k->ch, k->rng, t->tr, cons, out, &fresh, &rejected, why, sizeof why);
        k->host->pg = saved;
        if (st == PLM_ERUNTIME && k->host->lua_err) lua_replace(L, top + 1);   /* the program's error */
        lua_settop(L, top + (st == PLM_ERUNTIME && k->host->lua_err));
    }
    if (st == PLM_ERUNTIME && k->host->lua_err) {
        k->host->lua_err = 0;
        return lua_error(L);   /* the program's own error, on top */
    }
    if (st == PLM_EINTR) return luaL_error(L, "%s: interrupted", fn);
    if (st) {
        size_t i;
        for (i = 0; i < cons->n; i++)   /* a site imposed though this trace lacks it, and the run did not make */
            if (!cons->sites[i].dist && !plm_trace_find(out, cons->sites[i].addr))
                return luaL_error(L, "%s: the trace has no latent site '%s' (the model did not sample it in this run, "
                                  "nor in the run with the imposed values)", fn, cons->sites[i].addr);
        return luaL_error(L, "%s: %s", fn, ctx.msg);
    }
    nt->fresh = fresh;
    nt->rejected = rejected;
    lua_pushvalue(L, 1);
    lua_setiuservalue(L, -2, 1);
    return 1;
}

static int l_trace_index(lua_State *L)
{
    ltrace *t = check_trace(L, 1, "trace");
    const char *key = lua_tostring(L, 2);
    if (key && strcmp(key, "logp") == 0) lua_pushnumber(L, t->rejected ? -INFINITY : plm_trace_score(t->tr));
    else if (key && strcmp(key, "logprior") == 0) lua_pushnumber(L, t->rejected ? -INFINITY : t->tr->logprior);
    else if (key && strcmp(key, "loglik") == 0) lua_pushnumber(L, t->rejected ? -INFINITY : t->tr->loglik);
    else {
        lua_getmetatable(L, 1);
        lua_getfield(L, -1, "methods");
        lua_getfield(L, -1, key ? key : "");
    }
    return 1;
}

/* plume.trace{mu = 0.31, k = 1; logp = -4.2} */
static int l_trace_tostring(lua_State *L)
{
    ltrace *t = check_trace(L, 1, "trace");
    luaL_Buffer b;
    size_t i;
    int n = 0;
    luaL_buffinit(L, &b);
    luaL_addstring(&b, "plume.trace{");
    for (i = 0; i < t->tr->n; i++) {
        const plm_site *s = &t->tr->sites[i];
        if (s->kind != PLM_SITE_LATENT) continue;
        if (n++ == 8) {
            luaL_addstring(&b, ", ...");
            break;
        }
        if (n > 1) luaL_addstring(&b, ", ");
        luaL_addstring(&b, s->addr);
        luaL_addstring(&b, " = ");
        plm_l_value_str(L, s->dist, s->value, s->dim);
        luaL_addvalue(&b);
    }
    lua_pushfstring(L, "; logp = %f}", (lua_Number)(t->rejected ? -INFINITY : plm_trace_score(t->tr)));
    luaL_addvalue(&b);
    luaL_pushresult(&b);
    return 1;
}

/* plume.kernel.accept(tr, tr2 [, log_q_ratio]) -> tr2, true or tr, false: the Metropolis-Hastings test of the
** proposal tr2 = tr:with{...}. log_q_ratio is log q(tr | tr2) - log q(tr2 | tr) for the values the kernel
** imposed (0 for a symmetric proposal); the densities of the choices the program drew fresh or dropped are
** accounted here. */
static int l_accept(lua_State *L)
{
    const char *fn = "plume.kernel.accept";
    ltrace *a = check_trace(L, 1, fn), *b = check_trace(L, 2, fn);
    double lq = luaL_optnumber(L, 3, 0), loga;
    kcall *k = call_of(L, a, fn);
    int yes;
    lua_settop(L, 3);
    if (isnan(lq) || lq == INFINITY) return luaL_error(L, "%s: log_q_ratio must be a number < inf (got %f)", fn, (lua_Number)lq);
    lua_getiuservalue(L, 2, 1);
    if (!b->cons || !lua_rawequal(L, -1, 1))
        return luaL_error(L, "%s: the proposal (argument 2) must be made from the trace (argument 1) by tr:with{...}", fn);
    loga = b->rejected ? -INFINITY : plm_mh_trace_logratio(a->tr, b->tr, b->cons, b->fresh) + lq;
    yes = loga >= 0 || plm_rng_uniform(k->rng) < exp(loga);   /* NaN: rejected */
    lua_pushvalue(L, yes ? 2 : 1);
    lua_pushboolean(L, yes);
    return 2;
}

/* ---- the kernel of a Lua function ---- */

typedef struct fn_cfg {
    lua_State *L;
    int fn;                   /* stack index of the function (plm_l_trace_kernel_build) */
    char where[160];          /* "file.lua:12", where the function is defined */
} fn_cfg;

static void *fn_new(const plm_kernel *k, const plm_target *t)
{
    static char state;        /* no state: the function is the kernel */
    (void)k;
    return plm_mh_target_chain(t) ? &state : NULL;
}

static void fn_free(void *p) { (void)p; }

/* Fail the step with the error message built by fmt (pushed as the Lua error the engine raises). */
static plm_status fn_fail(lua_State *L, plm_ctx *ctx, plm_l_trace_host *host, int base, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    lua_pushvfstring(L, fmt, ap);
    va_end(ap);
    lua_replace(L, base + 1);
    lua_settop(L, base + 1);
    host->lua_err = 1;
    return plm_fail(ctx, PLM_ERUNTIME, "the kernel function failed");
}

/* Call the function with a copy of the chain's trace (plume's default stream holding the chain's, so that its
** draws -- d:sample(), tr:with's fresh choices, accept's test -- come from the chain's stream); what it returns
** becomes the chain's trace. Statistic: 1 when it returned another trace than the one it was given. */
static plm_status fn_step(const plm_kernel *kn, void *p, plm_ctx *ctx, const plm_target *t, void *ws, plm_rng *r,
                          double *u, double *lp, double *stat, double *extra)
{
    const fn_cfg *c = kn->cfg;
    lua_State *L = c->L;
    plm_mh_chain *ch = plm_mh_target_chain(t);
    plm_l_trace_host *host = plm_mh_chain_program(ch)->ud;
    plm_rng saved, *def = plm_l_default_rng(L);
    plm_trace *copy;
    kcall k;
    ltrace *out;
    int base = lua_gettop(L), st;
    (void)p;
    (void)ws;
    (void)u;
    (void)extra;
    luaL_checkstack(L, 8, "plume.infer");
    if (plm_trace_new(ctx, &copy) || plm_mh_trace_copy(ctx, copy, plm_mh_chain_trace(ch))) return ctx->status;
    k.ch = ch;
    k.host = host;
    k.rng = def;
    k.id = ++ncalls;
    plm_rng_copy(&saved, def);
    plm_rng_copy(def, r);
    lua_pushlightuserdata(L, &k);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &CALL_KEY);
    {
        const plm_l_program *pg = host->pg;
        int i;
        luaL_checkstack(L, pg->nargs + 8, "plume.infer");
        lua_createtable(L, 2 + pg->nargs, 0);
        lua_pushvalue(L, pg->fn);
        lua_rawseti(L, -2, 1);
        lua_pushvalue(L, pg->handle);
        lua_rawseti(L, -2, 2);
        for (i = 0; i < pg->nargs; i++) lua_pushvalue(L, pg->args + i), lua_rawseti(L, -2, 3 + i);
        lua_rawsetp(L, LUA_REGISTRYINDEX, &PROG_KEY);
    }
    push_trace(L, copy, k.id);                 /* base + 1: the trace given */
    lua_pushvalue(L, c->fn);
    lua_pushvalue(L, base + 1);
    st = lua_pcall(L, 1, 1, 0);
    lua_pushnil(L);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &CALL_KEY);
    lua_pushnil(L);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &PROG_KEY);
    plm_rng_copy(r, def);
    plm_rng_copy(def, &saved);
    if (st != LUA_OK) {
        lua_replace(L, base + 1);
        lua_settop(L, base + 1);
        host->lua_err = 1;
        return plm_fail(ctx, st == LUA_ERRMEM ? PLM_ENOMEM : PLM_ERUNTIME, "the kernel function failed");
    }
    out = luaL_testudata(L, -1, PLM_L_TRACE);
    if (!out)
        return fn_fail(L, ctx, host, base, "plume.infer: the kernel function at %s returned %s, not a trace (a kernel "
                       "returns the trace it is given or one made from it by tr:with{...})", c->where, luaL_typename(L, -1));
    if (out->call != k.id)
        return fn_fail(L, ctx, host, base, "plume.infer: the kernel function at %s returned a trace of another kernel "
                       "call (a kernel returns the trace it is given or one made from it by tr:with{...})", c->where);
    if (out->rejected || !(plm_trace_score(out->tr) > -INFINITY))
        return fn_fail(L, ctx, host, base, "plume.infer: the kernel function at %s returned a trace of log density %s "
                       "(test a proposal with plume.kernel.accept)", c->where, out->rejected ? "-inf (rejected)" : "-inf");
    *stat = lua_rawequal(L, -1, base + 1) ? 0 : 1;
    if (*stat && plm_mh_chain_set(ctx, ch, out->tr)) {
        lua_settop(L, base);
        return ctx->status;
    }
    *lp = plm_trace_score(out->tr);
    lua_settop(L, base);
    return PLM_OK;
}

/* named "lua": l_infer.c keeps kernels holding it on the calling state */
static const plm_kernel_ops fn_ops = {"lua", 0, NULL, fn_new, fn_free, fn_step, NULL};

/* The names of the value's sites (NULL with *n = 0 when it has none: every site); kept by the value. */
static const char **site_names(lua_State *L, int idx, int *n)
{
    const char **names = NULL;
    int i;
    *n = 0;
    if (lua_getfield(L, idx, "sites") == LUA_TTABLE) {
        *n = (int)luaL_len(L, -1);
        names = plm_l_scratch(L, (size_t)*n * sizeof *names);   /* left on the stack */
        for (i = 0; i < *n; i++) names[i] = (lua_geti(L, -2, i + 1), lua_tostring(L, -1)), lua_pop(L, 1);
        lua_remove(L, -2);
    } else
        lua_pop(L, 1);
    return names;
}

plm_kernel *plm_l_trace_kernel_build(lua_State *L, int idx, const char *fn)
{
    plm_kernel *k = NULL, **ks;
    plm_ctx ctx;
    const char *kind;
    int n, i, list;
    idx = lua_absindex(L, idx);
    luaL_checkstack(L, 16, fn);
    plm_ctx_clear(&ctx);
    if (lua_isfunction(L, idx)) {
        fn_cfg *c = plm_gc_alloc(sizeof *c);
        lua_Debug ar;
        if (!(k = plm_gc_alloc(sizeof *k)) || !c) luaL_error(L, "%s: out of memory", fn);
        lua_pushvalue(L, idx);   /* stays: the kernel calls it there */
        c->L = L;
        c->fn = lua_gettop(L);
        lua_pushvalue(L, idx);
        lua_getinfo(L, ">S", &ar);
        snprintf(c->where, sizeof c->where, "%s:%d", ar.short_src, ar.linedefined);
        k->ops = &fn_ops;
        k->cfg = c;
        return k;
    }
    kind = (lua_getfield(L, idx, "kind"), lua_tostring(L, -1));
    lua_pop(L, 1);
    if (strcmp(kind, "mh") == 0 || strcmp(kind, "gibbs") == 0) {
        const char **names = site_names(L, idx, &n);
        if (kind[0] == 'm') {
            double scale = (lua_getfield(L, idx, "proposal"), luaL_optnumber(L, -1, 0));
            lua_pop(L, 1);
            if (plm_trace_kernel_mh(&ctx, names, n, scale, &k)) plm_l_fail_in(L, &ctx, fn);
        } else if (plm_trace_kernel_gibbs(&ctx, names, n, &k))
            plm_l_fail_in(L, &ctx, fn);
        return k;
    }
    if (strcmp(kind, "cycle") != 0 && strcmp(kind, "mixture") != 0 && strcmp(kind, "rep") != 0)
        luaL_error(L, "%s: kernel %s needs a static model; on a dynamic program use plume.kernel.mh, plume.kernel.gibbs, "
                      "Lua functions and their cycles, mixtures and repetitions", fn, kind);
    /* what the children push (their functions) stays on the stack, above the list of kernels */
    lua_getfield(L, idx, "kernels");
    list = lua_gettop(L);
    n = (int)luaL_len(L, list);
    ks = plm_gc_alloc((size_t)n * sizeof *ks);   /* the composite keeps the array */
    if (!ks) luaL_error(L, "%s: out of memory", fn);
    for (i = 0; i < n; i++) {
        lua_geti(L, list, i + 1);
        ks[i] = plm_l_trace_kernel_build(L, -1, fn);
    }
    return compose(L, idx, kind, ks, n, fn);
}

void plm_l_open_kernel(lua_State *L)
{
    plm_l_newmeta(L, PLM_L_KERNEL_ROOTS, NULL, NULL);
    lua_pop(L, 1);
    static const luaL_Reg fns[] = {{"mh", l_mh}, {"slice", l_slice}, {"elliptical_slice", l_ess}, {"hmc", l_hmc},
                                   {"nuts", l_nuts}, {"cycle", l_cycle}, {"mixture", l_mixture}, {"rep", l_rep},
                                   {"gibbs", plm_l_kernel_gibbs}, {"block_gibbs", plm_l_kernel_block_gibbs},
                                   {"gaussian_block", plm_l_kernel_gaussian_block}, {"learned", plm_l_kernel_learned},
                                   {"accept", l_accept}, {NULL, NULL}};
    static const luaL_Reg trace_methods[] = {{"get", l_trace_get}, {"sites", l_trace_sites}, {"with", l_trace_with},
                                             {NULL, NULL}};
    luaL_newmetatable(L, PLM_L_KERNEL);
    lua_pushcfunction(L, plm_l_kernel_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pushstring(L, PLM_L_KERNEL);
    lua_setfield(L, -2, "__name");
    lua_pop(L, 1);
    luaL_newmetatable(L, PLM_L_TRACE);
    lua_pushcfunction(L, l_trace_index);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_trace_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pushcfunction(L, trace_gc);
    lua_setfield(L, -2, "__gc");
    luaL_newlib(L, trace_methods);
    lua_setfield(L, -2, "methods");
    lua_pop(L, 1);
    luaL_newlib(L, fns);
    lua_setfield(L, -2, "kernel");
}
