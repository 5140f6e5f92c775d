/* l_lgssm.c -- plume.lgssm{A=, Q=, C=, R=, m0=, P0= [, b=, d=]}: linear-Gaussian state space models from Lua,
** with :loglik(ys), :filter(ys), :smooth(ys), :sample(T [, seed]) and a readable tostring.
** Observations ys: a list of T vectors (nil or NaN entries missing, nil for a whole missing vector), or for
** one-dimensional observations a flat list of numbers or a plume.array. Quantities of dimension 1 come back
** as plain numbers (means[t], covs[t] the variance) so that scalar models read naturally. */
#include "lutil.h"
#include "larray.h"

#include <math.h>
#include <string.h>

#define LGSSM_META "plume.lgssm"

/* Is the value at idx a table whose first entry is a number? */
static int is_flat_list(lua_State *L, int idx)
{
    int flat;
    if (lua_type(L, idx) != LUA_TTABLE) return 0;
    flat = lua_geti(L, idx, 1) == LUA_TNUMBER;
    lua_pop(L, 1);
    return flat;
}

/* Field `key` of the spec table at idx as a rows x cols matrix (a number is accepted for 1 x 1, and a flat
** list for a vector). Pushes the owner. NULL when the field is absent and optional. */
static double *spec_field(lua_State *L, int idx, const char *key, int rows, int cols, int vec, int required)
{
    size_t r, c;
    double *x;
    int t = lua_getfield(L, idx, key);
    if (t == LUA_TNIL) {
        if (required) luaL_error(L, "lgssm: missing field '%s'", key);
        lua_pop(L, 1);
        return NULL;
    }
    if (t == LUA_TNUMBER && rows == 1 && cols == 1) {
        double v = lua_tonumber(L, -1);
        x = plm_l_scratch(L, sizeof *x);
        *x = v;
        lua_remove(L, -2);
        return x;
    }
    if (vec || (rows == 1 && is_flat_list(L, -1))) {   /* a 1 x n matrix may be written as a flat list */
        x = plm_l_checkvec(L, -1, "lgssm", key, &r, 0);
        if (!vec) {
            if ((int)r != cols) luaL_error(L, "lgssm: %s must be %d x %d, got 1 x %d", key, rows, cols, (int)r);
            lua_remove(L, -2);
            return x;
        }
        if ((int)r != rows) luaL_error(L, "lgssm: %s must have %d entries, got %d", key, rows, (int)r);
    } else {
        x = plm_l_checkmat(L, -1, "lgssm", key, &r, &c);
        if ((int)r != rows || (int)c != cols)
            luaL_error(L, "lgssm: %s must be %d x %d, got %d x %d", key, rows, cols, (int)r, (int)c);
    }
    lua_remove(L, -2);
    return x;
}

static int l_lgssm_new(lua_State *L)
{
    plm_lgssm_spec sp;
    plm_lgssm *s;
    plm_ctx ctx;
    size_t n, m, cols;
    int top;
    static const char *const fields[] = {"m0", "P0", "A", "Q", "C", "R", "b", "d", NULL};
    luaL_checktype(L, 1, LUA_TTABLE);
    plm_l_checkopts(L, 1, "lgssm", fields);
    top = lua_gettop(L);
    /* n from m0, m from the rows of C */
    if (lua_getfield(L, 1, "m0") == LUA_TNIL) return luaL_error(L, "lgssm: missing field 'm0'");
    if (lua_type(L, -1) == LUA_TNUMBER)
        n = 1;
    else {
        plm_l_checkvec(L, -1, "lgssm", "m0", &n, 0);
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    if (lua_getfield(L, 1, "C") == LUA_TNIL) return luaL_error(L, "lgssm: missing field 'C'");
    if (lua_type(L, -1) == LUA_TNUMBER || is_flat_list(L, -1))
        m = 1;
    else {
        plm_l_checkmat(L, -1, "lgssm", "C", &m, &cols);
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    if (n < 1 || n > 10000) return luaL_error(L, "lgssm: m0 must have 1 to 10000 entries (got %d)", (int)n);
    if (m < 1 || m > 10000) return luaL_error(L, "lgssm: C must have 1 to 10000 rows (got %d)", (int)m);
    sp.n = (int)n;
    sp.m = (int)m;
    sp.m0 = spec_field(L, 1, "m0", sp.n, 1, 1, 1);
    sp.A = spec_field(L, 1, "A", sp.n, sp.n, 0, 1);
    sp.Q = spec_field(L, 1, "Q", sp.n, sp.n, 0, 1);
    sp.C = spec_field(L, 1, "C", sp.m, sp.n, 0, 1);
    sp.R = spec_field(L, 1, "R", sp.m, sp.m, 0, 1);
    sp.P0 = spec_field(L, 1, "P0", sp.n, sp.n, 0, 1);
    sp.b = spec_field(L, 1, "b", sp.n, 1, 1, 0);
    sp.d = spec_field(L, 1, "d", sp.m, 1, 1, 0);
    plm_ctx_clear(&ctx);
    if (plm_lgssm_new(&ctx, &sp, &s)) return plm_l_fail(L, &ctx);
    lua_settop(L, top);
    plm_l_pushobj(L, s, LGSSM_META);
    return 1;
}

static plm_lgssm *check_self(lua_State *L, const char *fn)
{
    return plm_l_checkobj(L, 1, LGSSM_META, fn, "self");
}

/* Read one entry of an observation vector: number, NaN or nil (missing). */
static double obs_entry(lua_State *L, const char *fn, size_t t, int j, int with_j)
{
    int type = lua_type(L, -1);
    double v = NAN;
    if (type == LUA_TNUMBER)
        v = lua_tonumber(L, -1);
    else if (type != LUA_TNIL) {
        if (with_j) luaL_error(L, "%s: ys[%I][%d] must be a number or nil (got %s)", fn, (lua_Integer)t + 1, j + 1, luaL_typename(L, -1));
        luaL_error(L, "%s: ys[%I] must be a number or nil (got %s)", fn, (lua_Integer)t + 1, luaL_typename(L, -1));
    }
    lua_pop(L, 1);
    return v;
}

/* ys at idx as T*m doubles (NaN = missing); pushes the owner. */
static double *check_ys(lua_State *L, int idx, const char *fn, int m, size_t *T)
{
    plm_l_array *a = plm_l_toarray(L, idx);
    double *y;
    size_t t, len;
    int j;
    idx = lua_absindex(L, idx);
    if (a) {
        if (a->cols == (size_t)m && (m > 1 || a->cols == 1)) {
            lua_pushvalue(L, idx);
            *T = a->rows;
            return a->data;
        }
        return luaL_error(L, "%s: ys is a plume.array of %d x %d, expected T x %d", fn, (int)a->rows, (int)a->cols, m), NULL;
    }
    if (lua_type(L, idx) != LUA_TTABLE) return luaL_error(L, "%s: ys must be a list of observations (got %s)", fn, luaL_typename(L, idx)), NULL;
    /* ys.n (as table.pack sets it) fixes the length when trailing observations are nil */
    if (lua_getfield(L, idx, "n") == LUA_TNUMBER && lua_isinteger(L, -1) && lua_tointeger(L, -1) >= 0)
        len = (size_t)lua_tointeger(L, -1);
    else
        len = (size_t)luaL_len(L, idx);
    lua_pop(L, 1);
    y = plm_l_scratch(L, (len ? len : 1) * (size_t)m * sizeof *y);
    for (t = 0; t < len; t++) {
        int type = lua_geti(L, idx, (lua_Integer)t + 1);
        double *yt = y + t * m;
        plm_l_array *va;
        if (type == LUA_TNIL || (type == LUA_TNUMBER && m == 1)) {
            yt[0] = obs_entry(L, fn, t, 0, 0);
            for (j = 1; j < m; j++) yt[j] = NAN;
        } else if ((va = plm_l_toarray(L, -1))) {
            if (va->n != (size_t)m) luaL_error(L, "%s: ys[%d] has %d entries, expected %d", fn, (int)t + 1, (int)va->n, m);
            memcpy(yt, va->data, (size_t)m * sizeof *yt);
            lua_pop(L, 1);
        } else if (type == LUA_TTABLE) {
            size_t n = (size_t)lua_rawlen(L, -1);
            if (n > (size_t)m) luaL_error(L, "%s: ys[%d] has %d entries, expected %d", fn, (int)t + 1, (int)n, m);
            for (j = 0; j < m; j++) {
                lua_geti(L, -1, j + 1);
                yt[j] = obs_entry(L, fn, t, j, 1);
            }
            lua_pop(L, 1);
        } else if (m == 1)
            luaL_error(L, "%s: ys[%I] must be a number or nil (got %s)", fn, (lua_Integer)t + 1, luaL_typename(L, -1));
        else
            luaL_error(L, "%s: ys[%d] must be a vector of %d numbers (got %s)", fn, (int)t + 1, m, luaL_typename(L, -1));
    }
    *T = len;
    return y;
}

/* Push T vectors of dimension n (plain numbers when n == 1). */
static void push_vectors(lua_State *L, const double *x, size_t T, int n)
{
    size_t t;
    lua_createtable(L, (int)T, 0);
    for (t = 0; t < T; t++) {
        if (n == 1)
            lua_pushnumber(L, x[t]);
        else
            plm_l_pushvec(L, x + t * n, (size_t)n);
        lua_rawseti(L, -2, (lua_Integer)t + 1);
    }
}

static void push_covs(lua_State *L, const double *P, size_t T, int n)
{
    size_t t, nn = (size_t)n * n;
    lua_createtable(L, (int)T, 0);
    for (t = 0; t < T; t++) {
        if (n == 1)
            lua_pushnumber(L, P[t]);
        else
            plm_l_pushmat(L, P + t * nn, (size_t)n, (size_t)n);
        lua_rawseti(L, -2, (lua_Integer)t + 1);
    }
}

static int l_lgssm_loglik(lua_State *L)
{
    plm_lgssm *s = check_self(L, "lgssm:loglik");
    plm_ctx ctx;
    size_t T;
    double *ys = check_ys(L, 2, "lgssm:loglik", s->m, &T), ll;
    plm_ctx_clear(&ctx);
    if (plm_lgssm_loglik(&ctx, s, T, ys, &ll)) return plm_l_fail(L, &ctx);
    lua_pushnumber(L, ll);
    return 1;
}

static int filter_or_smooth(lua_State *L, int smooth)
{
    const char *fn = smooth ? "lgssm:smooth" : "lgssm:filter";
    plm_lgssm *s = check_self(L, fn);
    plm_ctx ctx;
    size_t T, n = (size_t)s->n;
    double *ys = check_ys(L, 2, fn, s->m, &T), *means, *covs, ll;
    plm_status st;
    /* the means and covariances become Lua tables: T (n^2 + n) numbers, capped like every result table */
    if ((double)T * (double)(n * n + n) > 1e8) {
        char nb[32];
        snprintf(nb, sizeof nb, "%.0f", (double)T * (double)(n * n + n));
        return luaL_error(L, "%s: %I observations of state dimension %d would return %s numbers (the limit is 1e8)", fn,
                          (lua_Integer)T, (int)n, nb);
    }
    means = plm_l_scratch(L, (T ? T : 1) * n * sizeof *means);
    covs = plm_l_scratch(L, (T ? T : 1) * n * n * sizeof *covs);
    plm_ctx_clear(&ctx);
    st = (smooth ? plm_lgssm_smooth : plm_lgssm_filter)(&ctx, s, T, ys, means, covs, &ll);
    if (st) return plm_l_fail(L, &ctx);
    push_vectors(L, means, T, s->n);
    push_covs(L, covs, T, s->n);
    lua_pushnumber(L, ll);
    return 3;
}

static int l_lgssm_filter(lua_State *L) { return filter_or_smooth(L, 0); }
static int l_lgssm_smooth(lua_State *L) { return filter_or_smooth(L, 1); }

static int l_lgssm_sample(lua_State *L)
{
    plm_lgssm *s = check_self(L, "lgssm:sample");
    lua_Integer T = plm_l_checkint(L, 2, "lgssm:sample", "T");
    uint64_t seed = lua_isnoneornil(L, 3) ? plm_l_default_seed(L) : (uint64_t)plm_l_checkint(L, 3, "lgssm:sample", "seed");
    plm_rng r;
    plm_ctx ctx;
    double *xs, *ys;
    if (T < 1 || T > 100000000) return luaL_error(L, "lgssm:sample: T must be in 1..1e8 (got %I)", T);
    if ((double)T * (s->n + s->m) > 1e8) {
        char nb[32];
        snprintf(nb, sizeof nb, "%.0f", (double)T * (s->n + s->m));
        return luaL_error(L, "lgssm:sample: T = %I steps of %d states and %d observations would return %s numbers (the limit is 1e8)",
                          T, s->n, s->m, nb);
    }
    xs = plm_l_scratch(L, (size_t)T * s->n * sizeof *xs);
    ys = plm_l_scratch(L, (size_t)T * s->m * sizeof *ys);
    plm_rng_init(&r, seed, 0);
    plm_ctx_clear(&ctx);
    if (plm_lgssm_sample(&ctx, s, (size_t)T, &r, xs, ys)) return plm_l_fail(L, &ctx);
    push_vectors(L, xs, (size_t)T, s->n);
    push_vectors(L, ys, (size_t)T, s->m);
    return 2;
}

static int l_lgssm_tostring(lua_State *L)
{
    plm_lgssm *s = check_self(L, "tostring");
    lua_pushfstring(L, "lgssm(state dimension %d, observation dimension %d)", s->n, s->m);
    return 1;
}

void plm_l_open_lgssm(lua_State *L)
{
    static const luaL_Reg methods[] = {{"loglik", l_lgssm_loglik}, {"filter", l_lgssm_filter},
                                       {"smooth", l_lgssm_smooth}, {"sample", l_lgssm_sample}, {NULL, NULL}};
    static const luaL_Reg meta[] = {{"__tostring", l_lgssm_tostring}, {NULL, NULL}};
    plm_l_newmeta(L, LGSSM_META, methods, meta);
    lua_pop(L, 1);
    lua_pushcfunction(L, l_lgssm_new);
    lua_setfield(L, -2, "lgssm");
}
