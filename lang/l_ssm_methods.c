/* l_ssm_methods.c -- the methods and fields of a plume.ssm: simulate paths, the complete-data log density and
** its gradient, parameter values and priors. */
#include "lssm.h"
#include "larray.h"
#include "ldist.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

l_ssm *plm_l_checkssm(lua_State *L, int idx, const char *fn)
{
    return plm_l_checkobj(L, idx, PLM_L_SSM, fn, "self");
}

/* set parameter values from a table name -> number; unknown names are errors */
static void set_params(lua_State *L, l_ssm *S, int self, int tbl, const char *fn)
{
    tbl = lua_absindex(L, tbl);
    lua_getiuservalue(L, self, 1);
    lua_getfield(L, -1, "names");
    plm_l_set_named(L, tbl, -1, S->m->params, S->m->np, fn);
    lua_pop(L, 2);
}

static int l_ssm_set_params(lua_State *L)
{
    l_ssm *S = plm_l_checkssm(L, 1, "ssm:set_params");
    luaL_checktype(L, 2, LUA_TTABLE);
    set_params(L, S, 1, 2, "ssm:set_params");
    return 0;
}

/* Raise "fn: parameter 'name' has no value (NaN; hint)" for the k-th (0-based) parameter of the ssm at self. */
static int no_value(lua_State *L, int self, int k, const char *fn, const char *hint)
{
    lua_getiuservalue(L, self, 1);
    lua_getfield(L, -1, "names");
    lua_geti(L, -1, k + 1);
    return luaL_error(L, "%s: parameter '%s' has no value (NaN; %s)", fn, lua_tostring(L, -1), hint);
}

/* parameters without a value get a draw from their prior (stream 2^62 of the seed, apart from particles) */
static void fill_priors(lua_State *L, l_ssm *S, int self, unsigned long long seed, double *saved)
{
    int i, np = S->m->np;
    plm_rng r;
    plm_rng_init(&r, seed, (uint64_t)1 << 62);
    memcpy(saved, S->m->params, (size_t)np * sizeof *saved);
    lua_getiuservalue(L, self, 1);
    lua_getfield(L, -1, "names");
    lua_getfield(L, -2, "priors");
    for (i = 0; i < np; i++) {
        if (!isnan(S->m->params[i])) continue;
        lua_geti(L, -2, i + 1);
        lua_gettable(L, -2);
        {
            plm_dist *d = plm_l_testobj(L, -1, PLM_L_DIST);
            double v = NAN;
            if (d && d->dim == 1) plm_dist_sample(d, &r, &v);
            S->m->params[i] = v;
        }
        lua_pop(L, 1);
    }
    lua_pop(L, 3);
}

static void push_value(lua_State *L, double v, int disc)
{
    if (disc && v == floor(v) && fabs(v) < 9e15)
        lua_pushinteger(L, (lua_Integer)v);
    else
        lua_pushnumber(L, v);
}

/* sv:simulate(T [, {seed=, particles=, params=, threads=}]) */
static int l_ssm_simulate(lua_State *L)
{
    l_ssm *S = plm_l_checkssm(L, 1, "ssm:simulate");
    plm_ssm *m = S->m;
    lua_Integer T = plm_l_checkint(L, 2, "ssm:simulate", "T");
    int opts = lua_istable(L, 3) ? 3 : 0, threads, many, k;
    lua_Integer n = 1;
    unsigned long long seed;
    double *xs, *ys, *saved;
    size_t t, i;
    plm_status st;
    plm_ctx ctx;
    static const char *const names[] = {"seed", "particles", "params", "threads", NULL};
    plm_ctx_clear(&ctx);
    if (!lua_isnoneornil(L, 3) && !opts)
        return luaL_error(L, "ssm:simulate: options must be a table (got %s)", luaL_typename(L, 3));
    plm_l_checkopts(L, opts, "ssm:simulate", names);
    if (T < 1 || T > 100000000) return luaL_error(L, "ssm:simulate: T must be in 1..1e8 (got %I)", T);
    if (opts) {
        n = plm_l_optint(L, opts, "ssm:simulate", "particles", 1);
        if (n < 1 || n > 100000000) return luaL_error(L, "ssm:simulate: option 'particles' must be in 1..1e8 (got %I)", n);
    }
    many = opts && lua_getfield(L, opts, "particles") != LUA_TNIL;
    if (opts) lua_pop(L, 1);
    if ((double)T * (double)n * (m->dim + m->ydim) > 4e8) {
        char nb[32];
        snprintf(nb, sizeof nb, "%.0f", (double)T * (double)n * (m->dim + m->ydim));
        return luaL_error(L, "ssm:simulate: T (%I) x particles (%I) x %d numbers per step is %s, over the limit of 4e8", T,
                          n, m->dim + m->ydim, nb);
    }
    threads = plm_l_threads(L, opts, "ssm:simulate");
    seed = plm_l_seed(L, opts, "ssm:simulate");
    saved = plm_l_scratch(L, (size_t)(m->np + 1) * sizeof *saved);
    xs = plm_l_scratch(L, (size_t)T * (size_t)n * m->dim * sizeof *xs);
    ys = plm_l_scratch(L, (size_t)T * (size_t)n * m->ydim * sizeof *ys);
    fill_priors(L, S, 1, seed, saved);
    if (opts && lua_getfield(L, opts, "params") == LUA_TTABLE) set_params(L, S, 1, -1, "ssm:simulate");
    if (opts) lua_pop(L, 1);
    for (k = 0; k < m->np; k++)
        if (isnan(m->params[k])) {
            memcpy(m->params, saved, (size_t)m->np * sizeof *saved);
            return no_value(L, 1, k, "ssm:simulate", "give it one with params= or a prior");
        }
    st = plm_ssm_simulate(&ctx, m, (long)T, (size_t)n, seed, xs, ys, threads);
    memcpy(m->params, saved, (size_t)m->np * sizeof *saved);
    if (st) return plm_l_fail_as(L, &ctx, "ssm:simulate");
    if (!many) {
        for (k = 0; k < 2; k++) {
            int d = k ? m->ydim : m->dim, disc = k ? S->ydisc : S->xdisc, j;
            double *v = k ? ys : xs;
            lua_createtable(L, (int)T, 0);
            for (t = 0; t < (size_t)T; t++) {
                if (d == 1)
                    push_value(L, v[t], disc);
                else {
                    lua_createtable(L, d, 0);
                    for (j = 0; j < d; j++) {
                        push_value(L, v[t * d + j], disc);
                        lua_rawseti(L, -2, j + 1);
                    }
                }
                lua_rawseti(L, -2, (lua_Integer)t + 1);
            }
        }
        return 2;
    }
    /* particles: per component a plume.array of shape T x particles */
    for (k = 0; k < 2; k++) {
        int d = k ? m->ydim : m->dim, j;
        double *v = k ? ys : xs;
        if (d > 1) lua_createtable(L, d, 0);
        for (j = 0; j < d; j++) {
            plm_l_array *a = plm_l_newarray(L, (size_t)T * (size_t)n);
            a->rows = (size_t)T;
            a->cols = (size_t)n;
            for (t = 0; t < (size_t)T; t++)
                for (i = 0; i < (size_t)n; i++) a->data[t * n + i] = v[(t * d + j) * n + i];
            if (d > 1) lua_rawseti(L, -2, j + 1);
        }
    }
    return 2;
}

/* read T values of dimension d from a Lua table (numbers or d-tables) or a plume.array (d = 1) */
static double *read_path(lua_State *L, int idx, int d, lua_Integer *T, const char *what)
{
    plm_l_array *a = plm_l_toarray(L, idx);
    double *v;
    lua_Integer t;
    int j;
    if (a && d == 1) {
        *T = (lua_Integer)a->n;
        v = plm_l_scratch(L, (a->n + 1) * sizeof *v);
        memcpy(v, a->data, a->n * sizeof *v);
        return v;
    }
    if (!lua_istable(L, idx)) luaL_error(L, "ssm:logjoint: %s must be a table (got %s)", what, luaL_typename(L, idx));
    *T = luaL_len(L, idx);
    v = plm_l_scratch(L, (size_t)(*T * d + 1) * sizeof *v);
    for (t = 0; t < *T; t++) {
        lua_geti(L, idx, t + 1);
        if (d == 1) {
            if (!lua_isnumber(L, -1)) luaL_error(L, "ssm:logjoint: %s[%d] must be a number", what, (int)t + 1);
            v[t] = lua_tonumber(L, -1);
        } else {
            if (!lua_istable(L, -1) || luaL_len(L, -1) != d)
                luaL_error(L, "ssm:logjoint: %s[%d] must be a table of %d numbers", what, (int)t + 1, d);
            for (j = 0; j < d; j++) {
                lua_geti(L, -1, j + 1);
                v[t * d + j] = lua_tonumber(L, -1);
                lua_pop(L, 1);
            }
        }
        lua_pop(L, 1);
    }
    return v;
}

/* sv:logjoint(xs, ys [, params]) */
static int l_ssm_logjoint(lua_State *L)
{
    l_ssm *S = plm_l_checkssm(L, 1, "ssm:logjoint");
    plm_ssm *m = S->m;
    lua_Integer T, Ty;
    double *xs, *ys, r, *saved = plm_l_scratch(L, (size_t)(m->np + 1) * sizeof *saved);
    plm_status st;
    int k;
    plm_ctx ctx;
    plm_ctx_clear(&ctx);
    xs = read_path(L, 2, m->dim, &T, "xs");
    ys = read_path(L, 3, m->ydim, &Ty, "ys");
    if (T != Ty) return luaL_error(L, "ssm:logjoint: xs has %I times, ys has %I", T, Ty);
    memcpy(saved, m->params, (size_t)m->np * sizeof *saved);
    if (lua_istable(L, 4)) set_params(L, S, 1, 4, "ssm:logjoint");
    for (k = 0; k < m->np; k++)
        if (isnan(m->params[k])) {
            memcpy(m->params, saved, (size_t)m->np * sizeof *saved);
            return no_value(L, 1, k, "ssm:logjoint", "pass a table of values");
        }
    st = plm_ssm_logjoint(&ctx, m, (long)T, xs, ys, &r);
    memcpy(m->params, saved, (size_t)m->np * sizeof *saved);
    if (st) return plm_l_fail(L, &ctx);
    if (isnan(r))
        return luaL_error(L, "ssm:logjoint: the log density is NaN: a parameter is outside its domain (a scale <= 0, "
                             "a probability outside [0, 1]?) or a plume.pick index outside its list");
    lua_pushnumber(L, r);
    return 1;
}

/* sv:logjoint_grad(xs, ys [, params]) -> { params = {name = d/dparam}, x = {d/dx_t} } */
static int l_ssm_logjoint_grad(lua_State *L)
{
    l_ssm *S = plm_l_checkssm(L, 1, "ssm:logjoint_grad");
    plm_ssm *m = S->m;
    lua_Integer T, Ty;
    double *xs, *ys, *gp, *gx, *saved = plm_l_scratch(L, (size_t)(m->np + 1) * sizeof *saved);
    plm_status st;
    int k;
    plm_ctx ctx;
    plm_ctx_clear(&ctx);
    xs = read_path(L, 2, m->dim, &T, "xs");
    ys = read_path(L, 3, m->ydim, &Ty, "ys");
    if (T != Ty) return luaL_error(L, "ssm:logjoint_grad: xs has %I times, ys has %I", T, Ty);
    gp = plm_l_scratch(L, (size_t)(m->np + 1) * sizeof *gp);
    gx = plm_l_scratch(L, (size_t)(T * m->dim + 1) * sizeof *gx);
    memcpy(saved, m->params, (size_t)m->np * sizeof *saved);
    if (lua_istable(L, 4)) set_params(L, S, 1, 4, "ssm:logjoint_grad");
    for (k = 0; k < m->np; k++)
        if (isnan(m->params[k])) {
            memcpy(m->params, saved, (size_t)m->np * sizeof *saved);
            return no_value(L, 1, k, "ssm:logjoint_grad", "pass a table of values");
        }
    st = plm_ssm_logjoint_grad(&ctx, m, (long)T, xs, ys, gp, gx);
    memcpy(m->params, saved, (size_t)m->np * sizeof *saved);
    if (st) return plm_l_fail(L, &ctx);
    lua_createtable(L, 0, 2);
    lua_newtable(L);
    lua_getiuservalue(L, 1, 1);
    lua_getfield(L, -1, "names");
    for (k = 0; k < m->np; k++) {
        lua_geti(L, -1, k + 1);
        lua_pushnumber(L, gp[k]);
        lua_settable(L, -5);
    }
    lua_pop(L, 2);
    lua_setfield(L, -2, "params");
    if (m->dim == 1)
        plm_l_pushvec(L, gx, (size_t)T);
    else
        plm_l_pushmat(L, gx, (size_t)T, (size_t)m->dim);
    lua_setfield(L, -2, "x");
    return 1;
}

void plm_l_push_params(lua_State *L, int idx, int np, const double *params)
{
    int i;
    idx = lua_absindex(L, idx);
    lua_newtable(L);
    lua_getiuservalue(L, idx, 1);
    lua_getfield(L, -1, "names");
    lua_getfield(L, -2, "priors");
    for (i = 0; i < np; i++) {
        lua_geti(L, -2, i + 1);
        if (isnan(params[i])) {
            lua_pushvalue(L, -1);
            lua_gettable(L, -3);
        } else
            lua_pushnumber(L, params[i]);
        lua_settable(L, -6);
    }
    lua_pop(L, 3);
}

int plm_l_ssm_index(lua_State *L)
{
    l_ssm *S = plm_l_checkssm(L, 1, "ssm");
    const char *k = luaL_checkstring(L, 2);
    if (strcmp(k, "params") == 0) {
        plm_l_push_params(L, 1, S->m->np, S->m->params);
        return 1;
    }
    if (strcmp(k, "priors") == 0) {
        lua_getiuservalue(L, 1, 1);
        lua_getfield(L, -1, "priors");
        return 1;
    }
    if (strcmp(k, "dim") == 0) { lua_pushinteger(L, S->m->dim); return 1; }
    if (strcmp(k, "ydim") == 0) { lua_pushinteger(L, S->m->ydim); return 1; }
    if (strcmp(k, "simulate") == 0) { lua_pushcfunction(L, l_ssm_simulate); return 1; }
    if (strcmp(k, "logjoint") == 0) { lua_pushcfunction(L, l_ssm_logjoint); return 1; }
    if (strcmp(k, "logjoint_grad") == 0) { lua_pushcfunction(L, l_ssm_logjoint_grad); return 1; }
    if (strcmp(k, "set_params") == 0) { lua_pushcfunction(L, l_ssm_set_params); return 1; }
    if (strcmp(k, "has_proposal") == 0) { lua_pushboolean(L, S->m->prop_sample != NULL); return 1; }
    lua_pushnil(L);
    return 1;
}

int plm_l_ssm_tostring(lua_State *L)
{
    l_ssm *S = plm_l_checkssm(L, 1, "ssm");
    lua_pushfstring(L, "plume.ssm(dim=%d, ydim=%d, %d parameters%s)", S->m->dim, S->m->ydim, S->m->np,
                    S->m->prop_sample ? ", proposal" : "");
    return 1;
}

/* T observations as ys[(t-1)*ydim + k]: a list of numbers (ydim 1; NaN or 0/0 marks a missing one), a
** plume.array, or a list of ydim-lists. Pushes the owner of the memory. */
double *plm_l_ssm_ys(lua_State *L, int idx, int ydim, const char *fn, long *T)
{
    plm_l_array *a = plm_l_toarray(L, idx);
    double *v;
    lua_Integer t, n;
    int k;
    if (a && (ydim == 1 || a->cols == (size_t)ydim)) {
        lua_pushvalue(L, idx);
        *T = (long)(a->n / (size_t)ydim);
        return a->data;
    }
    if (!lua_istable(L, idx)) luaL_error(L, "%s: ys must be a list of observations (got %s)", fn, luaL_typename(L, idx));
    n = luaL_len(L, idx);
    if (n < 1) luaL_error(L, "%s: ys is empty", fn);
    v = plm_l_scratch(L, (size_t)n * (size_t)ydim * sizeof *v);
    for (t = 1; t <= n; t++) {
        int ty = lua_geti(L, idx, t);
        if (ydim == 1 && ty == LUA_TNUMBER)
            v[t - 1] = lua_tonumber(L, -1);
        else if (ydim > 1 && ty == LUA_TTABLE && luaL_len(L, -1) == ydim)
            for (k = 0; k < ydim; k++) {
                if (lua_geti(L, -1, k + 1) != LUA_TNUMBER)
                    luaL_error(L, "%s: ys[%d][%d] must be a number (got %s)", fn, (int)t, k + 1, luaL_typename(L, -1));
                v[(t - 1) * ydim + k] = lua_tonumber(L, -1);
                lua_pop(L, 1);
            }
        else if (ydim == 1)
            luaL_error(L, "%s: ys[%d] must be a number (got %s; 0/0 marks a missing observation)", fn, (int)t,
                       luaL_typename(L, -1));
        else
            luaL_error(L, "%s: ys[%d] must be a list of %d numbers", fn, (int)t, ydim);
        lua_pop(L, 1);
    }
    *T = (long)n;
    return v;
}
