/* l_bffg_reaction.c -- reaction networks from Lua: plume.reactions{species=, reactions=, params=} (the rates traced
** once into a compiled program, runtime/engines/bffg_reaction.h), with net:rates(x), net:ode(x0, times),
** net:simulate{x0=, times=, seed=}, and the BFFG edge plume.markov_kernel.reactions{network=, t0=, t1=, dt=, at=}. */
#include "lbffg.h"
#include "l_expr.h"
#include "larray.h"

#include "bffg_reaction.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define NET_META "plume.reactions"

static const plm_reactions *check_net(lua_State *L, int idx, const char *fn)
{
    return plm_l_checkobj(L, idx, NET_META, fn, "the network (a plume.reactions)");
}

const plm_reactions *plm_l_tonet(lua_State *L, int idx) { return plm_l_testobj(L, idx, NET_META); }

static int cmp_str(const void *a, const void *b) { return strcmp(*(const char *const *)a, *(const char *const *)b); }

/* The state at idx (a list of d counts) into a new scratch buffer, left on the stack above the list. */
static double *check_state(lua_State *L, int idx, int d, const char *fn, const char *what)
{
    size_t n;
    double *x = plm_l_checkvec(L, idx, fn, what, &n, 0);
    if (n != (size_t)d) luaL_error(L, "%s: %s must have %d entries, one per species (got %d)", fn, what, d, (int)n);
    return x;
}

/* plume.reactions{species = {"S", "I", "R"}, reactions = {{stoich = {-1, 1, 0}, rate = "beta*S*I/N"}, ...},
** params = {beta = 0.5, N = 10}}. A rate is a string (an expression in the species and parameter names and the
** functions of plume.math) or a function(x, p) (x: the counts by name and by index, p: the parameters). */
static int l_reactions_new(lua_State *L)
{
    const char *fn = "plume.reactions";
    static const char *const opts[] = {"species", "reactions", "params", NULL};
    static const char *const ropts[] = {"stoich", "rate", "name", NULL};
    int d, R, np = 0, i, j, holder, info, env, xtab, ptab, *rate;
    const char **names;
    double *S, *params;
    plm_graph *g;
    plm_reactions *net;
    plm_ctx ctx;
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    plm_l_checkopts(L, 1, fn, opts);
    if (lua_getfield(L, 1, "species") != LUA_TTABLE)   /* 2 */
        return luaL_error(L, "%s: field 'species' must be a list of names (got %s)", fn, luaL_typename(L, 2));
    d = (int)luaL_len(L, 2);
    if (d < 1 || d > PLM_RX_MAX_SPECIES) return luaL_error(L, "%s: species must list 1..%d names (got %d)", fn, PLM_RX_MAX_SPECIES, d);
    if (lua_getfield(L, 1, "reactions") != LUA_TTABLE)   /* 3 */
        return luaL_error(L, "%s: field 'reactions' must be a list of {stoich=, rate=} (got %s)", fn, luaL_typename(L, 3));
    R = (int)luaL_len(L, 3);
    if (R < 1 || R > PLM_RX_MAX_REACTIONS) return luaL_error(L, "%s: reactions must list 1..%d reactions (got %d)", fn, PLM_RX_MAX_REACTIONS, R);
    if (lua_getfield(L, 1, "params") == LUA_TNIL) {   /* 4 */
        lua_pop(L, 1);
        lua_newtable(L);
    }
    if (!lua_istable(L, 4)) return luaL_error(L, "%s: params must be a table of name = number", fn);
    lua_pushnil(L);
    while (lua_next(L, 4)) {
        if (lua_type(L, -2) != LUA_TSTRING) return luaL_error(L, "%s: params keys must be names", fn);
        if (lua_type(L, -1) != LUA_TNUMBER)
            return luaL_error(L, "%s: params.%s must be a number (got %s)", fn, lua_tostring(L, -2), luaL_typename(L, -1));
        np++;
        lua_pop(L, 1);
    }
    names = plm_l_scratch(L, (size_t)(np + 1) * sizeof *names);   /* 5 */
    i = 0;
    lua_pushnil(L);
    while (lua_next(L, 4)) {
        names[i++] = lua_tostring(L, -2);
        lua_pop(L, 1);
    }
    qsort(names, (size_t)np, sizeof *names, cmp_str);
    params = plm_l_scratch(L, (size_t)(np + 1) * sizeof *params);   /* 6 */
    S = plm_l_scratch(L, (size_t)R * d * sizeof *S);                 /* 7 */
    rate = plm_l_scratch(L, (size_t)R * sizeof *rate);               /* 8 */
    g = plm_l_newgraph(L);                                           /* 9 */
    holder = 9;
    /* info: {holder, species, params (names)}, kept as the network's user value */
    lua_createtable(L, 0, 3);   /* 10 */
    info = 10;
    lua_pushvalue(L, holder);
    lua_setfield(L, info, "holder");
    lua_createtable(L, d, 0);   /* 11: x (symbols by name and index) */
    xtab = 11;
    lua_createtable(L, d, 0);   /* 12: the species names */
    for (j = 0; j < d; j++) {
        if (lua_geti(L, 2, j + 1) != LUA_TSTRING) return luaL_error(L, "%s: species[%d] must be a name (got %s)", fn, j + 1, luaL_typename(L, -1));
        lua_pushvalue(L, -1);
        lua_rawseti(L, 12, j + 1);
        lua_pushvalue(L, -1);
        if (lua_rawget(L, xtab) != LUA_TNIL) return luaL_error(L, "%s: species '%s' is named twice", fn, lua_tostring(L, -2));
        lua_pop(L, 1);
        plm_l_pushsym(L, holder, plm_graph_input(g, PLM_GRP_X, j));
        lua_pushvalue(L, -1);
        lua_rawseti(L, xtab, j + 1);
        lua_rawset(L, xtab);
    }
    lua_setfield(L, info, "species");
    lua_createtable(L, 0, np);   /* 12: p */
    ptab = 12;
    lua_createtable(L, np, 0);
    for (i = 0; i < np; i++) {
        lua_getfield(L, 4, names[i]);
        params[i] = lua_tonumber(L, -1);
        lua_pop(L, 1);
        lua_pushstring(L, names[i]);
        lua_rawseti(L, -2, i + 1);
        lua_pushstring(L, names[i]);
        if (lua_rawget(L, xtab) != LUA_TNIL) return luaL_error(L, "%s: '%s' names both a species and a parameter", fn, names[i]);
        lua_pop(L, 1);
        plm_l_pushsym(L, holder, plm_graph_input(g, PLM_GRP_P, i));
        lua_setfield(L, ptab, names[i]);
    }
    lua_setfield(L, info, "params");
    /* env of string rates: species and parameters by name, then plume.math */
    lua_newtable(L);   /* 13 */
    env = 13;
    for (i = 0; i < 2; i++) {
        lua_pushnil(L);
        while (lua_next(L, i ? ptab : xtab)) {
            if (lua_type(L, -2) == LUA_TSTRING) {
                lua_pushvalue(L, -2);
                lua_insert(L, -2);
                lua_rawset(L, env);
            } else
                lua_pop(L, 1);
        }
    }
    lua_createtable(L, 0, 1);
    plm_l_pushmodule(L);
    lua_getfield(L, -1, "math");
    lua_remove(L, -2);
    lua_setfield(L, -2, "__index");
    lua_setmetatable(L, env);
    for (i = 0; i < R; i++) {
        int t, ty;
        char what[64];
        if (lua_geti(L, 3, i + 1) != LUA_TTABLE) return luaL_error(L, "%s: reactions[%d] must be a table {stoich=, rate=}", fn, i + 1);
        t = lua_gettop(L);
        plm_l_checkopts(L, t, fn, ropts);
        if (lua_getfield(L, t, "stoich") != LUA_TTABLE) return luaL_error(L, "%s: reactions[%d].stoich must be a list of %d changes", fn, i + 1, d);
        if (luaL_len(L, -1) != d)
            return luaL_error(L, "%s: reactions[%d].stoich must have %d entries, one per species (got %d)", fn, i + 1, d, (int)luaL_len(L, -1));
        for (j = 0; j < d; j++) {
            int ok;
            lua_Integer v;
            lua_geti(L, -1, j + 1);
            v = lua_tointegerx(L, -1, &ok);
            if (!ok) return luaL_error(L, "%s: reactions[%d].stoich[%d] must be an integer (got %s)", fn, i + 1, j + 1, luaL_tolstring(L, -1, NULL));
            S[i * d + j] = (double)v;
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
        ty = lua_getfield(L, t, "rate");
        snprintf(what, sizeof what, "reactions[%d].rate", i + 1);
        if (ty == LUA_TSTRING) {
            const char *src = lua_tostring(L, -1);
            lua_pushfstring(L, "return %s", src);
            if (luaL_loadbufferx(L, lua_tostring(L, -1), luaL_len(L, -1), what, "t") != LUA_OK)
                return luaL_error(L, "%s: %s = \"%s\" is not an expression: %s", fn, what, src, lua_tostring(L, -1));
            lua_pushvalue(L, env);
            lua_setupvalue(L, -2, 1);
            plm_l_trace_call(L, 0, 1, what);
        } else if (ty == LUA_TFUNCTION) {
            lua_pushvalue(L, xtab);
            lua_pushvalue(L, ptab);
            plm_l_trace_call(L, 2, 1, what);
        } else if (ty == LUA_TNUMBER) {
            lua_pushvalue(L, -1);
        } else
            return luaL_error(L, "%s: %s must be an expression (a string), a function(x, p) or a number (got %s)", fn, what,
                              luaL_typename(L, -1));
        rate[i] = plm_l_tonode(L, -1, g, what);
        lua_settop(L, env);
    }
    plm_ctx_clear(&ctx);
    if (plm_reactions_new(&ctx, g, d, R, np, S, rate, params, &net)) return plm_l_fail_as(L, &ctx, fn);
    plm_l_pushobj(L, net, NET_META);
    lua_pushvalue(L, info);
    lua_setiuservalue(L, -2, 1);
    return 1;
}

/* net:rates(x) -> the R rates at x */
static int l_reactions_rates(lua_State *L)
{
    const char *fn = "reactions:rates";
    const plm_reactions *net = check_net(L, 1, fn);
    int d, R;
    double *x, *lam;
    plm_ctx ctx;
    plm_reactions_size(net, &d, &R, NULL);
    x = check_state(L, 2, d, fn, "x");
    lam = plm_l_scratch(L, (size_t)R * sizeof *lam);
    plm_ctx_clear(&ctx);
    if (plm_reactions_rates(&ctx, net, x, lam)) return plm_l_fail_as(L, &ctx, fn);
    plm_l_pushvec(L, lam, (size_t)R);
    return 1;
}

/* Times: a list of increasing numbers. */
static double *check_times(lua_State *L, int idx, const char *fn, size_t *n)
{
    double *t = plm_l_checkvec(L, idx, fn, "times", n, 0);
    if (*n < 1) luaL_error(L, "%s: times must list at least one time", fn);
    return t;
}

static void push_states(lua_State *L, const double *out, size_t n, int d)
{
    lua_createtable(L, (int)n, 0);
    for (size_t i = 0; i < n; i++) {
        plm_l_pushvec(L, out + i * d, (size_t)d);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
}

/* net:ode(x0, times [, {dt = 0.01}]) -> the rate equation's states at the times (x0 at times[1]) */
static int l_reactions_ode(lua_State *L)
{
    const char *fn = "reactions:ode";
    const plm_reactions *net = check_net(L, 1, fn);
    int d;
    size_t n;
    double *x0, *t, *out, dt;
    plm_ctx ctx;
    lua_settop(L, 4);
    plm_reactions_size(net, &d, NULL, NULL);
    dt = lua_isnil(L, 4) ? 0.01 : plm_l_optnum(L, 4, fn, "dt", 0.01);
    x0 = check_state(L, 2, d, fn, "x0");
    t = check_times(L, 3, fn, &n);
    out = plm_l_scratch(L, n * d * sizeof *out);
    plm_ctx_clear(&ctx);
    if (plm_reactions_ode(&ctx, net, x0, n, t, dt, out)) return plm_l_fail_as(L, &ctx, fn);
    push_states(L, out, n, d);
    return 1;
}

/* net:simulate{x0=, times=, seed=} -> one exact path's states at the times (Gillespie) */
static int l_reactions_simulate(lua_State *L)
{
    const char *fn = "reactions:simulate";
    static const char *const opts[] = {"x0", "times", "seed", NULL};
    const plm_reactions *net = check_net(L, 1, fn);
    int d;
    size_t n;
    double *x0, *t, *out;
    uint64_t seed;
    plm_ctx ctx;
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_settop(L, 2);
    plm_l_checkopts(L, 2, fn, opts);
    plm_reactions_size(net, &d, NULL, NULL);
    seed = plm_l_seed(L, 2, fn);
    if (lua_getfield(L, 2, "x0") == LUA_TNIL) return luaL_error(L, "%s: missing field 'x0' (the initial counts)", fn);
    x0 = check_state(L, -1, d, fn, "x0");
    if (lua_getfield(L, 2, "times") == LUA_TNIL) return luaL_error(L, "%s: missing field 'times'", fn);
    t = check_times(L, -1, fn, &n);
    out = plm_l_scratch(L, n * d * sizeof *out);
    plm_ctx_clear(&ctx);
    if (plm_reactions_simulate(&ctx, net, x0, n, t, seed, 0, 0, out)) {
        if (ctx.status == PLM_EINTR) plm_interrupt_clear();
        return plm_l_fail_as(L, &ctx, fn);
    }
    push_states(L, out, n, d);
    return 1;
}

static int l_reactions_index(lua_State *L)
{
    const plm_reactions *net = check_net(L, 1, "reactions");
    const char *k = lua_tostring(L, 2);
    int d, R;
    plm_reactions_size(net, &d, &R, NULL);
    if (k && (strcmp(k, "species") == 0 || strcmp(k, "params") == 0)) {
        lua_getiuservalue(L, 1, 1);
        lua_getfield(L, -1, k);
        return 1;
    }
    if (k && strcmp(k, "nreactions") == 0) {
        lua_pushinteger(L, R);
        return 1;
    }
    luaL_getmetafield(L, 1, "__methods");
    lua_getfield(L, -1, k ? k : "");
    return 1;
}

static int l_reactions_tostring(lua_State *L)
{
    const plm_reactions *net = check_net(L, 1, "tostring");
    int d, R, np;
    plm_reactions_size(net, &d, &R, &np);
    lua_pushfstring(L, "plume.reactions(%d species, %d reactions, %d params)", d, R, np);
    return 1;
}

/* plume.markov_kernel.reactions{network=, t0=0, t1=, dt=, at=, ode=true}: X(t1) given X(t0) */
static int l_kernel_reactions(lua_State *L)
{
    const char *fn = "markov_kernel.reactions";
    static const char *const opts[] = {"network", "t0", "t1", "dt", "at", "ode", "_weight", NULL};
    const plm_reactions *net;
    plm_bffg_reaction_opts o;
    plm_bffg_kernel *k;
    const char *w;
    int d;
    plm_ctx ctx;
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    plm_l_checkopts(L, 1, fn, opts);
    memset(&o, 0, sizeof o);
    if (lua_getfield(L, 1, "network") == LUA_TNIL) return luaL_error(L, "%s: missing field 'network' (a plume.reactions)", fn);
    net = check_net(L, -1, fn);
    plm_reactions_size(net, &d, NULL, NULL);
    o.t0 = plm_l_optnum(L, 1, fn, "t0", 0);
    if (lua_getfield(L, 1, "t1") == LUA_TNIL) return luaL_error(L, "%s: missing field 't1' (the end of the interval)", fn);
    o.t1 = plm_l_optnum(L, 1, fn, "t1", 0);
    if (lua_getfield(L, 1, "dt") == LUA_TNIL) return luaL_error(L, "%s: missing field 'dt' (the grid step of the guiding)", fn);
    o.dt = plm_l_optnum(L, 1, fn, "dt", 0);
    o.ode = plm_l_optbool(L, 1, fn, "ode", 1);
    /* _weight: a test hook, not part of the API (the tests' negative controls drop a term of the exact weight) */
    w = plm_l_optstr(L, 1, fn, "_weight", "exact");
    if (strcmp(w, "exact") == 0) o.omit = 0;
    else if (strcmp(w, "no_integral") == 0) o.omit = 1;
    else if (strcmp(w, "no_jumps") == 0) o.omit = 2;
    else return luaL_error(L, "%s: _weight must be \"exact\", \"no_integral\" or \"no_jumps\" (got '%s')", fn, w);
    if (lua_getfield(L, 1, "at") == LUA_TNIL)
        return luaL_error(L, "%s: missing field 'at' (the reference counts at t0 for the linear-noise approximation)", fn);
    o.at = check_state(L, -1, d, fn, "at");
    plm_ctx_clear(&ctx);
    if (plm_bffg_kernel_reaction(&ctx, net, &o, &k)) {
        if (ctx.status == PLM_EINTR) plm_interrupt_clear();
        return plm_l_fail_as(L, &ctx, fn);
    }
    plm_l_pushobj(L, k, KERNEL_META);
    return 1;
}

void plm_l_open_bffg_reaction(lua_State *L)
{
    static const luaL_Reg methods[] = {{"rates", l_reactions_rates}, {"ode", l_reactions_ode},
                                       {"simulate", l_reactions_simulate}, {NULL, NULL}};
    static const luaL_Reg meta[] = {{"__tostring", l_reactions_tostring}, {NULL, NULL}};
    plm_l_newmeta(L, NET_META, methods, meta);
    /* __index: the methods, and the fields species, params, nreactions */
    lua_getfield(L, -1, "__index");
    lua_setfield(L, -2, "__methods");
    lua_pushcfunction(L, l_reactions_index);
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);
    lua_pushcfunction(L, l_reactions_new);
    lua_setfield(L, -2, "reactions");
    lua_getfield(L, -1, "markov_kernel");
    lua_pushcfunction(L, l_kernel_reactions);
    lua_setfield(L, -2, "reactions");
    lua_pop(L, 1);
}
