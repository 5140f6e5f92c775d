/* l_dist.c -- plume.dist.*: distribution objects from Lua (constructors named after the runtime kinds),
** with :sample([n]), :logpdf(x), :mean(), :var(), .name, :params() and a readable tostring. */
#include "lutil.h"
#include "larray.h"
#include "ldist.h"
#include "l_expr.h"

#include <limits.h>
#include <math.h>
#include <string.h>


plm_dist *plm_l_checkdist(lua_State *L, int idx, const char *fn, const char *arg)
{
    return plm_l_checkobj(L, idx, PLM_L_DIST, fn, arg);
}

void plm_l_pushdist(lua_State *L, plm_dist *d)
{
    plm_l_pushobj(L, d, PLM_L_DIST);
}

int plm_l_todistvalue(lua_State *L, int idx, const plm_dist *d, double *x)
{
    int i;
    idx = lua_absindex(L, idx);
    if (d->dim == 1 && d->kind != PLM_DIST_DIRICHLET && d->kind != PLM_DIST_MULTINOMIAL && d->kind != PLM_DIST_MVNORMAL) {
        if (lua_type(L, idx) == LUA_TBOOLEAN && d->kind == PLM_DIST_BERNOULLI) {
            x[0] = lua_toboolean(L, idx);
            return 1;
        }
        if (lua_type(L, idx) != LUA_TNUMBER) return 0;
        x[0] = lua_tonumber(L, idx);
        if (d->kind == PLM_DIST_CATEGORICAL) x[0] -= d->base;
        return 1;
    }
    {
        plm_l_array *a = plm_l_toarray(L, idx);
        if (a) {
            if (a->n != (size_t)d->dim) return 0;
            memcpy(x, a->data, a->n * sizeof *x);
            return 1;
        }
    }
    if (lua_type(L, idx) != LUA_TTABLE || luaL_len(L, idx) != d->dim) return 0;
    for (i = 0; i < d->dim; i++) {
        int ok;
        lua_geti(L, idx, i + 1);
        x[i] = lua_tonumberx(L, -1, &ok);
        lua_pop(L, 1);
        if (!ok) return 0;
    }
    return 1;
}

void plm_l_pushdistvalue(lua_State *L, const plm_dist *d, const double *x)
{
    const plm_dist_info *info = plm_dist_info_of(d->kind);
    if (d->kind == PLM_DIST_DIRICHLET || d->kind == PLM_DIST_MULTINOMIAL || d->kind == PLM_DIST_MVNORMAL) {
        int i;
        lua_createtable(L, d->dim, 0);
        for (i = 0; i < d->dim; i++) {
            if (info->discrete)
                lua_pushinteger(L, (lua_Integer)x[i]);
            else
                lua_pushnumber(L, x[i]);
            lua_rawseti(L, -2, i + 1);
        }
    } else if (d->kind == PLM_DIST_CATEGORICAL)
        lua_pushinteger(L, (lua_Integer)x[0] + d->base);
    else if (info->discrete && fabs(x[0]) < 9e15)
        lua_pushinteger(L, (lua_Integer)x[0]);
    else
        lua_pushnumber(L, x[0]);
}

/* Vector parameters are indexed by int in the runtime: refuse longer ones before the cast. */
static void check_len(lua_State *L, const char *fn, const char *arg, size_t K)
{
    if (K > INT_MAX) luaL_error(L, "%s: %s has %I entries (at most %d)", fn, arg, (lua_Integer)K, INT_MAX);
}

/* The constructors share one function; the kind travels as an upvalue. */
static int l_dist_new(lua_State *L)
{
    plm_dist_kind kind = (plm_dist_kind)lua_tointeger(L, lua_upvalueindex(1));
    const plm_dist_info *info = plm_dist_info_of(kind);
    plm_ctx ctx;
    plm_dist *d = NULL;
    plm_status st;
    size_t K, K2, r, c;
    double *v, *m, n;
    plm_ctx_clear(&ctx);
    /* symbolic arguments (inside a traced model function) make a symbolic distribution */
    {
        int i, top = lua_gettop(L);
        for (i = 1; i <= top; i++)
            if (plm_l_hassym(L, i)) return plm_l_symdist_new(L, kind);
    }
    switch (kind) {
    case PLM_DIST_CATEGORICAL:
        v = plm_l_checkvec(L, 1, info->name, "probs", &K, 0);
        check_len(L, info->name, "probs", K);
        st = plm_dist_new_categorical(&ctx, v, (int)K, &d);
        break;
    case PLM_DIST_DIRICHLET:
        v = plm_l_checkvec(L, 1, info->name, "alpha", &K, 0);
        check_len(L, info->name, "alpha", K);
        st = plm_dist_new_dirichlet(&ctx, v, (int)K, &d);
        break;
    case PLM_DIST_MULTINOMIAL:
        n = plm_l_checknum(L, 1, info->name, "n");
        v = plm_l_checkvec(L, 2, info->name, "probs", &K, 0);
        check_len(L, info->name, "probs", K);
        st = plm_dist_new_multinomial(&ctx, n, v, (int)K, &d);
        break;
    case PLM_DIST_MVNORMAL:
        v = plm_l_checkvec(L, 1, info->name, "mu", &K, 0);
        check_len(L, info->name, "mu", K);
        m = plm_l_checkmat(L, 2, info->name, "Sigma", &r, &c);
        if (r != K || c != K)
            return luaL_error(L, "mvnormal: Sigma must be %I x %I to match mu (got %I x %I)", (lua_Integer)K,
                              (lua_Integer)K, (lua_Integer)r, (lua_Integer)c);
        (void)K2;
        st = plm_dist_new_mvnormal(&ctx, v, m, (int)K, &d);
        break;
    default: {
        double p[3] = {0, 0, 0};
        int i;
        for (i = 0; i < info->nparams; i++) p[i] = plm_l_checknum(L, i + 1, info->name, info->params[i]);
        st = plm_dist_new(&ctx, kind, p, &d);
    }
    }
    if (st) return plm_l_fail(L, &ctx);
    plm_l_pushdist(L, d);
    return 1;
}

/* plume.dist.categorical_logits(logits [, {base = 1}]): categorical from unnormalised log weights; base is the
** label of the first category (0 for token ids). */
static int l_categorical_logits(lua_State *L)
{
    plm_ctx ctx;
    plm_dist *d;
    size_t K;
    double *v = plm_l_checkvec(L, 1, "categorical_logits", "logits", &K, 0);
    lua_Integer base = plm_l_optint(L, lua_istable(L, 2) ? 2 : 0, "categorical_logits", "base", 1);
    check_len(L, "categorical_logits", "logits", K);
    if (base < INT_MIN || base > INT_MAX)
        return luaL_error(L, "categorical_logits: base must be in %d..%d (got %I)", INT_MIN, INT_MAX, base);
    plm_ctx_clear(&ctx);
    if (plm_dist_new_categorical_logits(&ctx, v, (int)K, &d)) return plm_l_fail(L, &ctx);
    d->base = (int)base;
    plm_l_pushdist(L, d);
    return 1;
}

/* plume.dist.truncated(d, lo, hi): d (scalar, continuous) restricted to [lo, hi], renormalised; lo or hi may
** be -math.huge / math.huge (or nil) for an open side. */
static int l_truncated(lua_State *L)
{
    plm_ctx ctx;
    plm_dist *base, *d;
    double lo, hi;
    int i;
    for (i = 1; i <= 3; i++)
        if (plm_l_hassym(L, i))
            return luaL_error(L, "truncated: symbolic arguments are not supported (use it in models run by "
                              "plume.infer)");
    base = plm_l_checkdist(L, 1, "truncated", "d");
    lo = lua_isnoneornil(L, 2) ? -HUGE_VAL : plm_l_checknum(L, 2, "truncated", "lo");
    hi = lua_isnoneornil(L, 3) ? HUGE_VAL : plm_l_checknum(L, 3, "truncated", "hi");
    plm_ctx_clear(&ctx);
    if (plm_dist_new_truncated(&ctx, base, lo, hi, &d)) return plm_l_fail(L, &ctx);
    plm_l_pushdist(L, d);
    return 1;
}

static int l_seed(lua_State *L)
{
    lua_Integer s = plm_l_checkint(L, 1, "plume.seed", "seed");
    plm_rng_init(plm_l_default_rng(L), (uint64_t)s, 0);
    return 0;
}

static int l_dist_sample(lua_State *L)
{
    plm_dist *d = plm_l_checkdist(L, 1, "sample", "self");
    plm_rng *r = plm_l_default_rng(L);
    double one[64], *x = d->dim <= 64 ? one : plm_l_scratch(L, (size_t)d->dim * sizeof(double));
    if (plm_dist_info_of(d->kind)->improper)
        return luaL_error(L, "%s: an improper prior has no draws; use it with method = \"mh\" (give init = ... to "
                          "choose a start)", plm_dist_info_of(d->kind)->name);
    if (lua_isnoneornil(L, 2)) {
        plm_dist_sample(d, r, x);
        plm_l_pushdistvalue(L, d, x);
        return 1;
    }
    {
        /* checked as a double: an integer cast first would wrap 1e12 to a negative int */
        double nd = plm_l_checknum(L, 2, "sample", "n");
        lua_Integer n, i;
        if (!(nd >= 0 && nd <= 100000000 && nd == floor(nd)))
            return luaL_error(L, "sample: n must be a whole number in 0..100000000 (got %f)", (lua_Number)nd);
        n = (lua_Integer)nd;
        lua_createtable(L, (int)n, 0);
        for (i = 1; i <= n; i++) {
            plm_dist_sample(d, r, x);
            plm_l_pushdistvalue(L, d, x);
            lua_rawseti(L, -2, i);
        }
    }
    return 1;
}

static int l_dist_logpdf(lua_State *L)
{
    plm_dist *d = plm_l_checkdist(L, 1, "logpdf", "self");
    double one[64], *x = d->dim <= 64 ? one : plm_l_scratch(L, (size_t)d->dim * sizeof(double));
    /* a plume.array of scalars: score them all, return the sum */
    if (d->dim == 1 && plm_l_toarray(L, 2)) {
        plm_l_array *a = plm_l_toarray(L, 2);
        lua_pushnumber(L, plm_dist_logpdf_sum(d, a->n, a->data));
        return 1;
    }
    if (!plm_l_todistvalue(L, 2, d, x)) {
        if (d->dim == 1)
            return luaL_error(L, "%s:logpdf: x must be a number (got %s)", plm_dist_info_of(d->kind)->name,
                              luaL_typename(L, 2));
        return luaL_error(L, "%s:logpdf: x must be a table of %d numbers", plm_dist_info_of(d->kind)->name, d->dim);
    }
    lua_pushnumber(L, plm_dist_logpdf(d, x));
    return 1;
}

static int push_moment(lua_State *L, int var)
{
    plm_dist *d = plm_l_checkdist(L, 1, var ? "var" : "mean", "self");
    double one[64], *x = d->dim <= 64 ? one : plm_l_scratch(L, (size_t)d->dim * sizeof(double));
    plm_ctx ctx;
    plm_ctx_clear(&ctx);
    if ((var ? plm_dist_var : plm_dist_mean)(&ctx, d, x)) return plm_l_fail(L, &ctx);
    if (d->dim > 1 || d->kind == PLM_DIST_MVNORMAL || d->kind == PLM_DIST_DIRICHLET || d->kind == PLM_DIST_MULTINOMIAL)
        plm_l_pushvec(L, x, (size_t)d->dim);
    else
        lua_pushnumber(L, (!var && d->kind == PLM_DIST_CATEGORICAL) ? x[0] + d->base : x[0]);
    return 1;
}

static int l_dist_mean(lua_State *L) { return push_moment(L, 0); }
static int l_dist_var(lua_State *L) { return push_moment(L, 1); }

static void add_num(luaL_Buffer *b, double x)
{
    char s[32];
    snprintf(s, sizeof s, "%.6g", x);
    luaL_addstring(b, s);
}

static void add_vec(luaL_Buffer *b, const double *x, int n)
{
    int i;
    luaL_addchar(b, '{');
    for (i = 0; i < n; i++) {
        if (i) luaL_addstring(b, ", ");
        if (i == 6 && n > 8) {
            luaL_addstring(b, "...");
            break;
        }
        add_num(b, x[i]);
    }
    luaL_addchar(b, '}');
}

static int l_dist_tostring(lua_State *L)
{
    plm_dist *d = plm_l_checkdist(L, 1, "tostring", "self");
    const plm_dist_info *info = plm_dist_info_of(d->kind);
    luaL_Buffer b;
    int i;
    luaL_buffinit(L, &b);
    luaL_addstring(&b, info->name);
    luaL_addchar(&b, '(');
    switch (d->kind) {
    case PLM_DIST_CATEGORICAL: case PLM_DIST_DIRICHLET:
        luaL_addstring(&b, info->params[0]);
        luaL_addstring(&b, "=");
        add_vec(&b, d->v, d->K);
        break;
    case PLM_DIST_MULTINOMIAL:
        luaL_addstring(&b, "n=");
        add_num(&b, d->p[0]);
        luaL_addstring(&b, ", probs=");
        add_vec(&b, d->v, d->K);
        break;
    case PLM_DIST_MVNORMAL:
        luaL_addstring(&b, "mu=");
        add_vec(&b, d->v, d->K);
        luaL_addstring(&b, ", Sigma=<");
        add_num(&b, d->K);
        luaL_addstring(&b, "x");
        add_num(&b, d->K);
        luaL_addstring(&b, ">");
        break;
    case PLM_DIST_TRUNCATED:
        plm_l_pushdist(L, (plm_dist *)d->inner);
        luaL_tolstring(L, -1, NULL);
        lua_remove(L, -2);
        luaL_addvalue(&b);
        luaL_addstring(&b, ", lo=");
        add_num(&b, d->p[0]);
        luaL_addstring(&b, ", hi=");
        add_num(&b, d->p[1]);
        break;
    default:
        for (i = 0; i < info->nparams; i++) {
            if (i) luaL_addstring(&b, ", ");
            luaL_addstring(&b, info->params[i]);
            luaL_addchar(&b, '=');
            add_num(&b, d->p[i]);
        }
    }
    luaL_addchar(&b, ')');
    luaL_pushresult(&b);
    return 1;
}

/* d.name, d.dim, d.discrete, then methods */
static int l_dist_index(lua_State *L)
{
    plm_dist *d = plm_l_checkdist(L, 1, "index", "self");
    const char *k = lua_tostring(L, 2);
    const plm_dist_info *info = plm_dist_info_of(d->kind);
    if (k && strcmp(k, "name") == 0) {
        lua_pushstring(L, info->name);
        return 1;
    }
    if (k && strcmp(k, "dim") == 0) {
        lua_pushinteger(L, d->dim);
        return 1;
    }
    if (k && strcmp(k, "discrete") == 0) {
        lua_pushboolean(L, info->discrete);
        return 1;
    }
    lua_getfield(L, lua_upvalueindex(1), k ? k : "");
    return 1;
}

/* d:params() -> table keyed by parameter name */
static int l_dist_params(lua_State *L)
{
    plm_dist *d = plm_l_checkdist(L, 1, "params", "self");
    const plm_dist_info *info = plm_dist_info_of(d->kind);
    int i;
    lua_newtable(L);
    switch (d->kind) {
    case PLM_DIST_CATEGORICAL: case PLM_DIST_DIRICHLET:
        plm_l_pushvec(L, d->v, (size_t)d->K);
        lua_setfield(L, -2, info->params[0]);
        break;
    case PLM_DIST_MULTINOMIAL:
        lua_pushnumber(L, d->p[0]);
        lua_setfield(L, -2, "n");
        plm_l_pushvec(L, d->v, (size_t)d->K);
        lua_setfield(L, -2, "probs");
        break;
    case PLM_DIST_MVNORMAL: {
        int K = d->K, j, k;
        double *S = plm_l_scratch(L, (size_t)K * K * sizeof(double));
        for (i = 0; i < K; i++)
            for (j = 0; j < K; j++) {
                double s = 0;
                for (k = 0; k <= (i < j ? i : j); k++) s += d->aux[i * K + k] * d->aux[j * K + k];
                S[i * K + j] = s;
            }
        plm_l_pushvec(L, d->v, (size_t)K);
        lua_setfield(L, -3, "mu");
        plm_l_pushmat(L, S, (size_t)K, (size_t)K);
        lua_setfield(L, -3, "Sigma");
        lua_pop(L, 1);
        break;
    }
    case PLM_DIST_TRUNCATED:
        plm_l_pushdist(L, (plm_dist *)d->inner);
        lua_setfield(L, -2, "d");
        lua_pushnumber(L, d->p[0]);
        lua_setfield(L, -2, "lo");
        lua_pushnumber(L, d->p[1]);
        lua_setfield(L, -2, "hi");
        break;
    default:
        for (i = 0; i < info->nparams; i++) {
            lua_pushnumber(L, d->p[i]);
            lua_setfield(L, -2, info->params[i]);
        }
    }
    return 1;
}

void plm_l_open_dist(lua_State *L)
{
    static const luaL_Reg methods[] = {
        {"sample", l_dist_sample}, {"logpdf", l_dist_logpdf}, {"mean", l_dist_mean},
        {"var", l_dist_var}, {"params", l_dist_params}, {NULL, NULL}};
    int k;
    plm_l_newmeta(L, PLM_L_DIST, NULL, NULL);    /* __gc (unroot) and __name */
    lua_pushcfunction(L, l_dist_tostring);
    lua_setfield(L, -2, "__tostring");
    luaL_newlib(L, methods);
    lua_pushcclosure(L, l_dist_index, 1);
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);

    lua_newtable(L);
    for (k = 0; k < PLM_DIST_NKINDS; k++) {
        if (k == PLM_DIST_TRUNCATED) continue;
        lua_pushinteger(L, k);
        lua_pushcclosure(L, l_dist_new, 1);
        lua_setfield(L, -2, plm_dist_info_of((plm_dist_kind)k)->name);
    }
    lua_pushcfunction(L, l_categorical_logits);
    lua_setfield(L, -2, "categorical_logits");
    lua_pushcfunction(L, l_truncated);
    lua_setfield(L, -2, "truncated");
    lua_setfield(L, -2, "dist");
    lua_pushcfunction(L, l_seed);
    lua_setfield(L, -2, "seed");
}
