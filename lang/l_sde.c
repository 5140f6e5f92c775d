/* l_sde.c -- plume.sde{ dim=, params=, drift=, diffusion= }: drift and diffusion traced once with symbolic
** (p, x, t) and compiled (runtime/sde.c); :simulate{...}, :drift, :diffusion, :jacobian, :set_params, .params. */
#include "l_expr.h"
#include "larray.h"
#include "ldist.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define PLM_L_SDE "plume.sde"

typedef struct l_sde {
    plm_sde *s;
} l_sde;

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* nodes of a traced vector result: a number/symbol (dim 1) or a table of dim of them */
static void vec_nodes(lua_State *L, int idx, plm_graph *g, int dim, int *out, const char *what, const char *where)
{
    int i;
    idx = lua_absindex(L, idx);
    if (lua_type(L, idx) != LUA_TTABLE) {
        if (dim != 1)
            luaL_error(L, "sde: %s (defined at %s) must return a table of %d values (got %s)", what, where, dim,
                       luaL_typename(L, idx));
        out[0] = plm_l_tonode(L, idx, g, what);
        return;
    }
    if (luaL_len(L, idx) != dim)
        luaL_error(L, "sde: %s (defined at %s) returned %d values, expected %d", what, where, (int)luaL_len(L, idx), dim);
    for (i = 0; i < dim; i++) {
        char w[96];
        snprintf(w, sizeof w, "sde: %s entry %d", what, i + 1);
        lua_geti(L, idx, i + 1);
        out[i] = plm_l_tonode(L, -1, g, w);
        lua_pop(L, 1);
    }
}

static int l_sde_new(lua_State *L)
{
    int dim, holder, info, ptab, np = 0, i, k, m = 0, diagonal = 0;
    plm_graph *g;
    int *drift, *diff;
    const char **names;
    char where[256];
    plm_sde_spec spec;
    l_sde *S;
    plm_ctx ctx;
    static const char *const fields[] = {"drift", "diffusion", "params", "dim", NULL};
    lua_Integer dim_opt;
    plm_ctx_clear(&ctx);
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    plm_l_checkopts(L, 1, "sde", fields);
    dim_opt = plm_l_optint(L, 1, "sde", "dim", 1);
    if (dim_opt < 1 || dim_opt > 64) return luaL_error(L, "sde: dim must be in 1..64 (got %I)", dim_opt);
    dim = (int)dim_opt;
    g = plm_l_newgraph(L);
    holder = lua_gettop(L);
    lua_newtable(L);
    info = lua_gettop(L);
    lua_pushvalue(L, holder);
    lua_setfield(L, info, "holder");
    S = plm_gc_alloc(sizeof *S);
    drift = plm_l_scratch(L, (size_t)(dim + 1) * sizeof *drift);
    diff = plm_l_scratch(L, (size_t)(dim * 64 + 1) * sizeof *diff);
    if (!S) return luaL_error(L, "plume: out of memory");

    /* parameters (sorted names): numbers, or distributions as priors */
    if (lua_getfield(L, 1, "params") == LUA_TNIL) {
        lua_pop(L, 1);
        lua_newtable(L);
    }
    if (!lua_istable(L, -1)) return luaL_error(L, "sde: params must be a table");
    lua_pushnil(L);
    while (lua_next(L, -2)) {
        if (lua_type(L, -2) != LUA_TSTRING) return luaL_error(L, "sde: params keys must be names");
        np++;
        lua_pop(L, 1);
    }
    names = plm_l_scratch(L, (size_t)(np + 1) * sizeof *names);
    lua_insert(L, -2);
    i = 0;
    lua_pushnil(L);
    while (lua_next(L, -2)) {
        names[i++] = lua_tostring(L, -2);
        lua_pop(L, 1);
    }
    qsort(names, (size_t)np, sizeof *names, cmp_str);
    lua_newtable(L);   /* names */
    lua_newtable(L);   /* values */
    lua_newtable(L);   /* priors */
    lua_newtable(L);   /* p */
    ptab = lua_gettop(L);
    for (i = 0; i < np; i++) {
        lua_pushstring(L, names[i]);
        lua_rawseti(L, ptab - 3, i + 1);
        lua_getfield(L, ptab - 4, names[i]);
        if (lua_type(L, -1) == LUA_TNUMBER)
            lua_setfield(L, ptab - 2, names[i]);
        else if (plm_l_testobj(L, -1, PLM_L_DIST))
            lua_setfield(L, ptab - 1, names[i]);
        else
            return luaL_error(L, "sde: params.%s must be a number (a value) or a distribution (a prior), got %s",
                              names[i], luaL_typename(L, -1));
        plm_l_pushsym(L, holder, plm_graph_input(g, PLM_GRP_P, i));
        lua_setfield(L, ptab, names[i]);
    }
    lua_pushvalue(L, ptab - 1);
    lua_setfield(L, info, "priors");
    lua_pushvalue(L, ptab - 2);
    lua_setfield(L, info, "values");
    lua_pushvalue(L, ptab - 3);
    lua_setfield(L, info, "names");

    /* drift(p, x, t) and diffusion(p, x, t) */
    for (k = 0; k < 2; k++) {
        const char *key = k ? "diffusion" : "drift";
        int r;
        if (lua_getfield(L, 1, key) != LUA_TFUNCTION)
            return luaL_error(L, "sde: option '%s' must be a function (got %s)", key, luaL_typename(L, -1));
        plm_l_funcwhere(L, -1, where, sizeof where);
        lua_pushvalue(L, ptab);
        if (dim == 1)
            plm_l_pushsym(L, holder, plm_graph_input(g, PLM_GRP_X, 0));
        else {
            lua_createtable(L, dim, 0);
            for (i = 0; i < dim; i++) {
                plm_l_pushsym(L, holder, plm_graph_input(g, PLM_GRP_X, i));
                lua_rawseti(L, -2, i + 1);
            }
        }
        plm_l_pushsym(L, holder, plm_graph_input(g, PLM_GRP_T, 0));
        plm_l_trace_call(L, 3, 1, k ? "sde diffusion" : "sde drift");
        r = lua_gettop(L);
        if (!k) {
            if (plm_l_testobj(L, r, PLM_L_DIST) || luaL_testudata(L, r, PLM_L_SYMDIST))
                return luaL_error(L, "sde: drift (defined at %s) must return values, not a distribution", where);
            vec_nodes(L, r, g, dim, drift, "drift", where);
        } else {
            /* a matrix (rows of m entries), or a vector / scalar for diagonal noise */
            int ismat = 0;
            if (lua_type(L, r) == LUA_TTABLE) {
                lua_geti(L, r, 1);
                ismat = lua_type(L, -1) == LUA_TTABLE;
                if (ismat) m = (int)luaL_len(L, -1);
                lua_pop(L, 1);
            }
            if (ismat) {
                if (m < 1 || m > 64) return luaL_error(L, "sde: diffusion rows must have 1..64 entries");
                if (luaL_len(L, r) != dim)
                    return luaL_error(L, "sde: diffusion (defined at %s) has %d rows, expected dim = %d", where,
                                      (int)luaL_len(L, r), dim);
                for (i = 0; i < dim; i++) {
                    char w[64];
                    lua_geti(L, r, i + 1);
                    if (!lua_istable(L, -1) || luaL_len(L, -1) != m)
                        return luaL_error(L, "sde: diffusion (defined at %s) row %d must have %d entries", where, i + 1, m);
                    snprintf(w, sizeof w, "diffusion row %d", i + 1);
                    vec_nodes(L, -1, g, m, diff + i * m, w, where);
                    lua_pop(L, 1);
                }
                diagonal = 0;
            } else {
                vec_nodes(L, r, g, dim, diff, "diffusion", where);
                m = dim;
                diagonal = 1;
            }
        }
        lua_settop(L, ptab);
    }
    memset(&spec, 0, sizeof spec);
    spec.g = g;
    spec.dim = dim;
    spec.m = m;
    spec.np = np;
    spec.diagonal = diagonal;
    spec.drift = drift;
    spec.diff = diff;
    if (plm_sde_new(&ctx, &spec, &S->s)) return plm_l_fail(L, &ctx);
    for (i = 0; i < np; i++) {
        lua_getfield(L, ptab - 2, names[i]);
        S->s->params[i] = lua_isnumber(L, -1) ? lua_tonumber(L, -1) : NAN;
        lua_pop(L, 1);
    }
    plm_l_pushobj(L, S, PLM_L_SDE);
    lua_pushvalue(L, info);
    lua_setiuservalue(L, -2, 1);
    return 1;
}

plm_sde *plm_l_tosde(lua_State *L, int idx)
{
    l_sde *S = plm_l_testobj(L, idx, PLM_L_SDE);
    return S ? S->s : NULL;
}

static l_sde *check_sde(lua_State *L, int idx, const char *fn)
{
    return plm_l_checkobj(L, idx, PLM_L_SDE, fn, "self");
}

/* set parameter values from a table name -> number; unknown names are errors */
static void set_params(lua_State *L, l_sde *S, int self, int tbl, const char *fn)
{
    tbl = lua_absindex(L, tbl);
    lua_getiuservalue(L, self, 1);
    lua_getfield(L, -1, "names");
    plm_l_set_named(L, tbl, -1, S->s->params, S->s->np, fn);
    lua_pop(L, 2);
}

static int l_sde_set_params(lua_State *L)
{
    l_sde *S = check_sde(L, 1, "sde:set_params");
    luaL_checktype(L, 2, LUA_TTABLE);
    set_params(L, S, 1, 2, "sde:set_params");
    return 0;
}

static void check_values(lua_State *L, l_sde *S, int self, const char *fn)
{
    int i;
    for (i = 0; i < S->s->np; i++)
        if (isnan(S->s->params[i])) {
            lua_getiuservalue(L, self, 1);
            lua_getfield(L, -1, "names");
            lua_geti(L, -1, i + 1);
            luaL_error(L, "%s: parameter '%s' has no value (NaN; use :set_params)", fn, lua_tostring(L, -1));
        }
}

/* A number as a person writes it, for messages (luaL_error has no %g). */
static const char *num(char *buf, double v)
{
    snprintf(buf, 32, "%.10g", v);
    return buf;
}

/* The grid has at most this many steps: it is an array of doubles (800 MB at the limit). */
#define MAX_STEPS 100000000

/* sde:simulate{ x0=, t_end=, dt= | times=, t0=0, seed=, paths=, method="euler"|"milstein", every=1, threads= } */
static int l_sde_simulate(lua_State *L)
{
    l_sde *S = check_sde(L, 1, "sde:simulate");
    plm_sde *s = S->s;
    int d = s->dim, many, threads, method = PLM_SDE_EULER, x0pp = 0, c;
    const char *meth;
    lua_Integer paths, every;
    double *grid, *x0, *out;
    size_t ngrid, nx0, nsaves, k, i;
    unsigned long long seed;
    char nb[4][32];
    plm_ctx ctx;
    static const char *const names[] = {"x0",   "t_end",  "dt",    "times",   "t0", "seed",
                                        "paths", "method", "every", "threads", NULL};
    plm_ctx_clear(&ctx);
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_settop(L, 2);
    plm_l_checkopts(L, 2, "sde:simulate", names);
    check_values(L, S, 1, "sde:simulate");
    paths = plm_l_optint(L, 2, "sde:simulate", "paths", 1);
    many = lua_getfield(L, 2, "paths") != LUA_TNIL;
    lua_pop(L, 1);
    if (paths < 1 || paths > 100000000) return luaL_error(L, "sde:simulate: option 'paths' must be in 1..1e8 (got %I)", paths);
    every = plm_l_optint(L, 2, "sde:simulate", "every", 1);
    if (every < 1) return luaL_error(L, "sde:simulate: option 'every' must be >= 1 (got %I)", every);
    meth = plm_l_optstr(L, 2, "sde:simulate", "method", "euler");
    if (strcmp(meth, "milstein") == 0)
        method = PLM_SDE_MILSTEIN;
    else if (strcmp(meth, "euler") != 0 && strcmp(meth, "euler_maruyama") != 0)
        return luaL_error(L, "sde:simulate: method must be \"euler\" or \"milstein\" (got \"%s\")", meth);
    threads = plm_l_threads(L, 2, "sde:simulate");
    seed = plm_l_seed(L, 2, "sde:simulate");
    if (lua_getfield(L, 2, "times") != LUA_TNIL) {
        double *t = plm_l_checkvec(L, -1, "sde:simulate", "times", &ngrid, 0);
        grid = plm_l_scratch(L, (ngrid + 1) * sizeof *grid);
        memcpy(grid, t, ngrid * sizeof *t);
    } else {
        double t0 = plm_l_optnum(L, 2, "sde:simulate", "t0", 0);
        double t_end = plm_l_optnum(L, 2, "sde:simulate", "t_end", NAN);
        double dt = plm_l_optnum(L, 2, "sde:simulate", "dt", NAN);
        double nsteps;
        if (isnan(t_end) || isnan(dt)) return luaL_error(L, "sde:simulate: give t_end and dt, or times");
        if (!(dt > 0) || !(t_end > t0) || !isfinite(t0) || !isfinite(t_end))
            return luaL_error(L, "sde:simulate: need finite t0 < t_end and dt > 0 (got t0 = %s, t_end = %s, dt = %s)",
                              num(nb[0], t0), num(nb[1], t_end), num(nb[2], dt));
        /* counted in doubles, so no size_t or int can wrap before the limit is checked */
        nsteps = ceil((t_end - t0) / dt - 1e-9);
        if (!(nsteps <= MAX_STEPS))
            return luaL_error(L, "sde:simulate: (t_end - t0) / dt = %s steps is over the limit of 1e8 (t0 = %s, t_end = %s, "
                                 "dt = %s; raise dt or give times=)",
                              num(nb[0], nsteps), num(nb[1], t0), num(nb[2], t_end), num(nb[3], dt));
        ngrid = (size_t)nsteps + 1;
        grid = plm_l_scratch(L, (ngrid + 1) * sizeof *grid);
        for (k = 0; k < ngrid; k++) grid[k] = t0 + (double)k * dt;
        grid[ngrid - 1] = t_end;
    }
    if (lua_getfield(L, 2, "x0") == LUA_TNIL) return luaL_error(L, "sde:simulate: option 'x0' is required");
    if (d == 1 && lua_type(L, -1) == LUA_TNUMBER) {
        x0 = plm_l_scratch(L, sizeof *x0);
        x0[0] = lua_tonumber(L, -2);
        nx0 = 1;
    } else
        x0 = plm_l_checkvec(L, -1, "sde:simulate", "x0", &nx0, 0);
    if (ngrid > MAX_STEPS + 1) return luaL_error(L, "sde:simulate: times has %I entries (the limit is 1e8)", (lua_Integer)ngrid);
    if (nx0 == (size_t)d * (size_t)paths && paths > 1 && nx0 != (size_t)d)
        x0pp = 1;
    else if (nx0 != (size_t)d)
        return luaL_error(L, "sde:simulate: x0 must have %d values (or %d per path)", d, d);
    nsaves = plm_sde_nsaves(ngrid, (size_t)every);
    if ((double)nsaves * (double)paths * d > 4e8)
        return luaL_error(L, "sde:simulate: %I saved times x %I paths x %d components is over the limit of 4e8 values (use every=)",
                          (lua_Integer)nsaves, paths, d);
    out = plm_l_scratch(L, (nsaves * (size_t)paths * (size_t)d + 1) * sizeof *out);
    if (plm_sde_simulate(&ctx, s, (plm_sde_method)method, grid, ngrid, (size_t)paths, x0, x0pp, (size_t)every, seed,
                         out, threads))
        return plm_l_fail_as(L, &ctx, "sde:simulate");
    /* the saved times */
    {
        plm_l_array *ta = plm_l_newarray(L, nsaves);
        size_t sv = 0;
        for (k = 0; k < ngrid; k++)
            if (k % (size_t)every == 0 || k == ngrid - 1) ta->data[sv++] = grid[k];
    }
    if (!many) {
        lua_createtable(L, (int)nsaves, 0);
        for (k = 0; k < nsaves; k++) {
            if (d == 1)
                lua_pushnumber(L, out[k]);
            else {
                lua_createtable(L, d, 0);
                for (c = 0; c < d; c++) {
                    lua_pushnumber(L, out[k * d + c]);
                    lua_rawseti(L, -2, c + 1);
                }
            }
            lua_rawseti(L, -2, (lua_Integer)k + 1);
        }
        return 2;
    }
    if (d > 1) lua_createtable(L, d, 0);
    for (c = 0; c < d; c++) {
        plm_l_array *a = plm_l_newarray(L, nsaves * (size_t)paths);
        a->rows = nsaves;
        a->cols = (size_t)paths;
        for (k = 0; k < nsaves; k++)
            for (i = 0; i < (size_t)paths; i++) a->data[k * paths + i] = out[(k * d + c) * paths + i];
        if (d > 1) lua_rawseti(L, -2, c + 1);
    }
    return 2;
}

/* evaluate drift / diffusion / jacobian at one state x (number or table) and time t */
static int eval_point(lua_State *L, int which)
{
    static const char *fn[3] = {"sde:drift", "sde:diffusion", "sde:jacobian"};
    l_sde *S = check_sde(L, 1, fn[which]);
    plm_sde *s = S->s;
    double x[64], t = luaL_optnumber(L, 3, 0), res[64 * 64];
    size_t n;
    int d = s->dim;
    plm_ctx ctx;
    plm_ctx_clear(&ctx);
    check_values(L, S, 1, fn[which]);
    if (d == 1 && lua_type(L, 2) == LUA_TNUMBER)
        x[0] = lua_tonumber(L, 2);
    else {
        double *v = plm_l_checkvec(L, 2, fn[which], "x", &n, 0);
        if (n != (size_t)d) return luaL_error(L, "%s: x must have %d values", fn[which], d);
        memcpy(x, v, n * sizeof *v);
    }
    if ((which == 0 ? plm_sde_drift : which == 1 ? plm_sde_diffusion : plm_sde_jacobian)(&ctx, s, t, 1, x, 1, res))
        return plm_l_fail(L, &ctx);
    if (which == 0) {
        if (d == 1) lua_pushnumber(L, res[0]); else plm_l_pushvec(L, res, (size_t)d);
    } else if (which == 1) {
        if (plm_prog_nout(s->diff_prog) == d * s->m)
            plm_l_pushmat(L, res, (size_t)d, (size_t)s->m);
        else {   /* diagonal noise given as a vector: shown as the matrix it stands for */
            double M[64 * 64];
            int i, j;
            for (i = 0; i < d; i++)
                for (j = 0; j < d; j++) M[i * d + j] = i == j ? res[i] : 0;
            plm_l_pushmat(L, M, (size_t)d, (size_t)d);
        }
    } else
        plm_l_pushmat(L, res, (size_t)d, (size_t)d);
    return 1;
}

static int l_sde_drift(lua_State *L) { return eval_point(L, 0); }
static int l_sde_diffusion(lua_State *L) { return eval_point(L, 1); }
static int l_sde_jacobian(lua_State *L) { return eval_point(L, 2); }

static int l_sde_index(lua_State *L)
{
    l_sde *S = check_sde(L, 1, "sde");
    const char *k = luaL_checkstring(L, 2);
    if (strcmp(k, "params") == 0) {
        plm_l_push_params(L, 1, S->s->np, S->s->params);
        return 1;
    }
    if (strcmp(k, "dim") == 0) { lua_pushinteger(L, S->s->dim); return 1; }
    if (strcmp(k, "noise_dim") == 0) { lua_pushinteger(L, S->s->m); return 1; }
    if (strcmp(k, "diagonal") == 0) { lua_pushboolean(L, S->s->milstein != NULL); return 1; }
    if (strcmp(k, "simulate") == 0) { lua_pushcfunction(L, l_sde_simulate); return 1; }
    if (strcmp(k, "drift") == 0) { lua_pushcfunction(L, l_sde_drift); return 1; }
    if (strcmp(k, "diffusion") == 0) { lua_pushcfunction(L, l_sde_diffusion); return 1; }
    if (strcmp(k, "jacobian") == 0) { lua_pushcfunction(L, l_sde_jacobian); return 1; }
    if (strcmp(k, "set_params") == 0) { lua_pushcfunction(L, l_sde_set_params); return 1; }
    lua_pushnil(L);
    return 1;
}

static int l_sde_tostring(lua_State *L)
{
    l_sde *S = check_sde(L, 1, "sde");
    lua_pushfstring(L, "plume.sde(dim=%d, noise=%d%s, %d parameters)", S->s->dim, S->s->m,
                    S->s->milstein ? " diagonal" : "", S->s->np);
    return 1;
}

void plm_l_open_sde(lua_State *L)
{
    static const luaL_Reg meta[] = {{"__index", l_sde_index}, {"__tostring", l_sde_tostring}, {NULL, NULL}};
    plm_l_newmeta(L, PLM_L_SDE, NULL, meta);
    lua_pop(L, 1);
    lua_pushcfunction(L, l_sde_new);
    lua_setfield(L, -2, "sde");
}
