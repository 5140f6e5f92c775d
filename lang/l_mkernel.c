/* l_mkernel.c -- the Markov kernels of backward filtering, forward guiding as Lua values:
** plume.markov_kernel.discrete, linear_gaussian, ctmc, brownian and sde (runtime/engines/bffg.h). */
#include "lbffg.h"
#include "lmodel.h"
#include "l_expr.h"
#include "larray.h"
#include "ldist.h"

#include <math.h>
#include <string.h>

#define CTMC_META "plume.ctmc"

/* ---- kernels ------------------------------------------------------------------------------------------ */

plm_bffg_kernel *plm_l_checkmkernel(lua_State *L, int idx, const char *fn, const char *arg)
{
    return plm_l_checkobj(L, idx, KERNEL_META, fn, arg);
}

/* Field `key` of the table at t as a matrix: a number is 1x1, a flat list a column when `column` (else a row).
** Pushes the owner; absent fields give NULL with *rows = 0. */
static double *field_mat(lua_State *L, int t, const char *fn, const char *key, size_t *rows, size_t *cols, int column)
{
    int ty = lua_getfield(L, t, key);
    double *x;
    *rows = *cols = 0;
    if (ty == LUA_TNIL) return NULL;
    if (ty == LUA_TNUMBER) {
        x = plm_l_scratch(L, sizeof *x);
        x[0] = lua_tonumber(L, -2);
        lua_remove(L, -2);
        *rows = *cols = 1;
        return x;
    }
    if (ty == LUA_TTABLE) {
        lua_rawgeti(L, -1, 1);
        if (lua_type(L, -1) == LUA_TNUMBER) {   /* a flat list */
            size_t n;
            lua_pop(L, 1);
            x = plm_l_checkvec(L, -1, fn, key, &n, 0);
            lua_remove(L, -2);
            if (column) *rows = n, *cols = 1;
            else *rows = 1, *cols = n;
            return x;
        }
        lua_pop(L, 1);
    }
    x = plm_l_checkmat(L, -1, fn, key, rows, cols);
    lua_remove(L, -2);
    return x;
}

static int push_kernel(lua_State *L, plm_bffg_kernel *k)
{
    plm_l_pushobj(L, k, KERNEL_META);
    return 1;
}

/* markov_kernel.discrete(P): rows are the parent's states, columns the child's. */
static int l_kernel_discrete(lua_State *L)
{
    const char *fn = "markov_kernel.discrete";
    size_t r, c;
    double *P;
    plm_bffg_kernel *k;
    plm_ctx ctx;
    if (lua_istable(L, 1) && lua_getfield(L, 1, "P") != LUA_TNIL) lua_replace(L, 1);
    else lua_settop(L, 1);
    P = plm_l_checkmat(L, 1, fn, "P", &r, &c);
    if (r > 1000000 || c > 1000000) return luaL_error(L, "%s: P is too large (%d x %d)", fn, (int)r, (int)c);
    plm_ctx_clear(&ctx);
    if (plm_bffg_kernel_discrete(&ctx, (int)r, (int)c, P, &k)) return plm_l_fail(L, &ctx);
    return push_kernel(L, k);
}

/* markov_kernel.linear_gaussian{B=, beta=, Q=, aux=}: y ~ N(B x + beta, Q). */
static int l_kernel_linear_gaussian(lua_State *L)
{
    const char *fn = "markov_kernel.linear_gaussian";
    size_t br, bc, er, ec, qr, qc;
    double *B, *beta, *Q;
    plm_bffg_kernel *k;
    plm_ctx ctx;
    static const char *const opts[] = {"B", "beta", "Q", "aux", NULL};
    luaL_checktype(L, 1, LUA_TTABLE);
    plm_l_checkopts(L, 1, fn, opts);
    B = field_mat(L, 1, fn, "B", &br, &bc, 0);
    if (!B) return luaL_error(L, "%s: missing field 'B' (the matrix of the mean B x + beta)", fn);
    beta = field_mat(L, 1, fn, "beta", &er, &ec, 1);
    Q = field_mat(L, 1, fn, "Q", &qr, &qc, 0);
    if (!Q) return luaL_error(L, "%s: missing field 'Q' (the covariance)", fn);
    if (beta && (ec != 1 || er != br))
        return luaL_error(L, "%s: beta must have %d entries, one per row of B (got %d)", fn, (int)br, (int)(er * ec));
    if (qr != br || qc != br) return luaL_error(L, "%s: Q must be %d x %d like B's rows (got %d x %d)", fn, (int)br, (int)br, (int)qr, (int)qc);
    plm_ctx_clear(&ctx);
    if (plm_bffg_kernel_linear_gaussian(&ctx, (int)br, (int)bc, B, beta, Q, &k)) return plm_l_fail(L, &ctx);
    if (lua_getfield(L, 1, "aux") != LUA_TNIL) {
        plm_bffg_kernel *aux = plm_l_checkmkernel(L, -1, fn, "aux");
        if (plm_bffg_kernel_set_aux(&ctx, k, aux)) return plm_l_fail(L, &ctx);
    }
    return push_kernel(L, k);
}

/* markov_kernel.ctmc{Q=, t=}: Q a rate matrix or a plume.ctmc. */
static int l_kernel_ctmc(lua_State *L)
{
    const char *fn = "markov_kernel.ctmc";
    static const char *const opts[] = {"Q", "t", NULL};
    plm_ctmc *c;
    plm_bffg_kernel *k;
    plm_ctx ctx;
    double t;
    luaL_checktype(L, 1, LUA_TTABLE);
    plm_l_checkopts(L, 1, fn, opts);
    plm_ctx_clear(&ctx);
    if (lua_getfield(L, 1, "t") == LUA_TNIL) return luaL_error(L, "%s: missing field 't' (the time the chain runs)", fn);
    t = plm_l_checknum(L, -1, fn, "t");
    if (lua_getfield(L, 1, "Q") == LUA_TNIL) return luaL_error(L, "%s: missing field 'Q' (the rate matrix)", fn);
    if (!(c = plm_l_testobj(L, -1, CTMC_META))) {
        size_t r, cols;
        double *Q = plm_l_checkmat(L, -1, fn, "Q", &r, &cols);
        if (r != cols) return luaL_error(L, "%s: Q must be square (got %d x %d)", fn, (int)r, (int)cols);
        if (plm_ctmc_new(&ctx, Q, (int)r, &c)) return plm_l_fail(L, &ctx);
    }
    if (plm_bffg_kernel_ctmc(&ctx, c, t, &k)) return plm_l_fail(L, &ctx);
    return push_kernel(L, k);
}

/* markov_kernel.brownian{rate=, t=}: N(x, t rate); rate a variance rate (number) or a covariance rate matrix. */
static int l_kernel_brownian(lua_State *L)
{
    const char *fn = "markov_kernel.brownian";
    static const char *const opts[] = {"rate", "t", NULL};
    size_t r, c;
    double *S, t;
    plm_bffg_kernel *k;
    plm_ctx ctx;
    luaL_checktype(L, 1, LUA_TTABLE);
    plm_l_checkopts(L, 1, fn, opts);
    if (lua_getfield(L, 1, "t") == LUA_TNIL) return luaL_error(L, "%s: missing field 't' (the time, e.g. a branch length)", fn);
    t = plm_l_checknum(L, -1, fn, "t");
    S = field_mat(L, 1, fn, "rate", &r, &c, 0);
    if (!S) return luaL_error(L, "%s: missing field 'rate' (the variance rate)", fn);
    if (r != c) return luaL_error(L, "%s: rate must be a number or a square matrix (got %d x %d)", fn, (int)r, (int)c);
    plm_ctx_clear(&ctx);
    if (plm_bffg_kernel_brownian(&ctx, (int)r, S, t, &k)) return plm_l_fail(L, &ctx);
    return push_kernel(L, k);
}

/* markov_kernel.gamma_process{shape=, rate=, t=}: y = x + Gamma(shape t, rate) */
static int l_kernel_gamma(lua_State *L)
{
    const char *fn = "markov_kernel.gamma_process";
    static const char *const opts[] = {"shape", "rate", "t", NULL};
    double v[3];
    plm_bffg_kernel *k;
    plm_ctx ctx;
    int i;
    luaL_checktype(L, 1, LUA_TTABLE);
    plm_l_checkopts(L, 1, fn, opts);
    for (i = 0; i < 3; i++) {
        if (lua_getfield(L, 1, opts[i]) == LUA_TNIL) return luaL_error(L, "%s: missing field '%s'", fn, opts[i]);
        v[i] = plm_l_checknum(L, -1, fn, opts[i]);
        lua_pop(L, 1);
    }
    plm_ctx_clear(&ctx);
    if (plm_bffg_kernel_gamma(&ctx, v[0], v[1], v[2], &k)) return plm_l_fail(L, &ctx);
    return push_kernel(L, k);
}

/* A diffusion coefficient as the covariance a = sigma sigma' (d*d, pushed scratch): sigma a number (sigma I), a
** list of d numbers (diagonal) or a d x m matrix. */
static double *read_sigma(lua_State *L, int idx, int d, const char *fn, const char *what)
{
    double *a;
    int i, j, l;
    idx = lua_absindex(L, idx);
    a = plm_l_scratch(L, (size_t)d * d * sizeof *a);
    memset(a, 0, (size_t)d * d * sizeof *a);
    if (lua_type(L, idx) == LUA_TNUMBER) {
        double v = lua_tonumber(L, idx);
        for (i = 0; i < d; i++) a[i * d + i] = v * v;
        return a;
    }
    if (!lua_istable(L, idx)) luaL_error(L, "%s: %s must be a number, a list of %d numbers or a %d x m matrix (got %s)", fn,
                                         what, d, d, luaL_typename(L, idx));
    lua_rawgeti(L, idx, 1);
    if (lua_type(L, -1) == LUA_TNUMBER) {
        size_t n;
        double *v;
        lua_pop(L, 1);
        v = plm_l_checkvec(L, idx, fn, what, &n, 0);
        if (n != (size_t)d) luaL_error(L, "%s: %s as a list must have %d entries, the diagonal (got %d)", fn, what, d, (int)n);
        for (i = 0; i < d; i++) a[i * d + i] = v[i] * v[i];
        lua_pop(L, 1);
    } else {
        size_t r, c;
        double *S;
        lua_pop(L, 1);
        S = plm_l_checkmat(L, idx, fn, what, &r, &c);
        if (r != (size_t)d) luaL_error(L, "%s: %s must have %d rows (got %d)", fn, what, d, (int)r);
        for (i = 0; i < d; i++)
            for (j = 0; j < d; j++)
                for (l = 0; l < (int)c; l++) a[i * d + j] += S[i * c + l] * S[j * c + l];
        lua_pop(L, 1);
    }
    return a;
}

/* A d-vector field (pushed scratch), or NULL when absent. */
static double *opt_vec(lua_State *L, int t, const char *key, int d, const char *fn)
{
    double *v;
    size_t n;
    if (lua_getfield(L, t, key) == LUA_TNIL) {
        lua_pop(L, 1);
        return NULL;
    }
    if (d == 1 && lua_type(L, -1) == LUA_TNUMBER) {
        v = plm_l_scratch(L, sizeof *v);
        v[0] = lua_tonumber(L, -2);
        lua_remove(L, -2);
        return v;
    }
    v = plm_l_checkvec(L, -1, fn, key, &n, 0);
    if (n != (size_t)d) luaL_error(L, "%s: %s must have %d entries (got %d)", fn, key, d, (int)n);
    lua_remove(L, -2);
    return v;
}

/* markov_kernel.nonlinear_gaussian{dim=1, mean=function(p, x), params={}, Q=, at=}: y ~ N(mean(x), Q), the mean
** traced and compiled once (through plume.sde, as a drift), the backward filter through its linearisation at `at`. */
static int l_kernel_nonlinear(lua_State *L)
{
    const char *fn = "markov_kernel.nonlinear_gaussian";
    static const char *const opts[] = {"dim", "mean", "params", "Q", "at", NULL};
    int d, top;
    size_t qr, qc;
    double *Q, *at;
    plm_sde *s;
    plm_bffg_kernel *k;
    plm_ctx ctx;
    luaL_checktype(L, 1, LUA_TTABLE);
    plm_l_checkopts(L, 1, fn, opts);
    lua_settop(L, 1);
    d = (int)plm_l_optint(L, 1, fn, "dim", 1);
    if (d < 1 || d > 64) return luaL_error(L, "%s: dim must be in 1..64 (got %d)", fn, d);
    if (lua_getfield(L, 1, "mean") != LUA_TFUNCTION)
        return luaL_error(L, "%s: field 'mean' must be a function(p, x) returning the mean", fn);
    lua_pop(L, 1);
    /* plume.sde{dim = d, params = params, drift = mean, diffusion = zero}: compiles the mean and its Jacobian */
    plm_l_pushmodule(L);
    lua_getfield(L, -1, "sde");   /* 3 */
    lua_createtable(L, 0, 4);
    lua_pushinteger(L, d);
    lua_setfield(L, -2, "dim");
    if (lua_getfield(L, 1, "params") == LUA_TNIL) {
        lua_pop(L, 1);
        lua_newtable(L);
    }
    lua_setfield(L, -2, "params");
    lua_getfield(L, 1, "mean");
    lua_setfield(L, -2, "drift");
    if (luaL_loadstring(L, "local d = ... return function() if d == 1 then return 0 end local z = {} "
                           "for i = 1, d do z[i] = 0 end return z end") != LUA_OK)
        return lua_error(L);
    lua_pushinteger(L, d);
    lua_call(L, 1, 1);
    lua_setfield(L, -2, "diffusion");
    lua_call(L, 1, 1);   /* 3: the sde (kept alive by the kernel, which points to it) */
    s = plm_l_tosde(L, 3);
    top = lua_gettop(L);
    Q = field_mat(L, 1, fn, "Q", &qr, &qc, 0);
    if (!Q) return luaL_error(L, "%s: missing field 'Q' (the covariance)", fn);
    if ((int)qr != d || (int)qc != d) return luaL_error(L, "%s: Q must be %d x %d (got %d x %d)", fn, d, d, (int)qr, (int)qc);
    if (!(at = opt_vec(L, 1, "at", d, fn))) return luaL_error(L, "%s: missing field 'at' (the linearisation point)", fn);
    plm_ctx_clear(&ctx);
    if (plm_bffg_kernel_nonlinear(&ctx, s, Q, at, &k)) return plm_l_fail(L, &ctx);
    lua_settop(L, top);
    return push_kernel(L, k);
}

/* The option save of markov_kernel.sde at index t: a number or a list of times strictly inside (t0, t1), each
** different; pushes them sorted as a list (or nil when absent). */
static void push_save(lua_State *L, int t, double t0, double t1, const char *fn)
{
    int ty = lua_getfield(L, t, "save"), n, i, j;
    double *v;
    if (ty == LUA_TNIL) return;
    if (ty == LUA_TNUMBER) {
        lua_createtable(L, 1, 0);
        lua_insert(L, -2);
        lua_rawseti(L, -2, 1);
    } else if (ty != LUA_TTABLE)
        luaL_error(L, "%s: save must be a time or a list of times (got %s)", fn, luaL_typename(L, -1));
    n = (int)lua_rawlen(L, -1);
    if (n < 1) luaL_error(L, "%s: save is an empty list", fn);
    v = plm_l_scratch(L, (size_t)n * sizeof *v);
    lua_insert(L, -2);   /* (the scratch under the list) */
    for (i = 0; i < n; i++) {
        int isnum;
        lua_rawgeti(L, -1, i + 1);
        v[i] = lua_tonumberx(L, -1, &isnum);
        if (!isnum) luaL_error(L, "%s: save[%d] must be a number (got %s)", fn, i + 1, luaL_typename(L, -1));
        if (!(v[i] > t0 && v[i] < t1)) luaL_error(L, "%s: save[%d] = %f is not inside the interval (%f, %f)", fn, i + 1, v[i], t0, t1);
        lua_pop(L, 1);
    }
    for (i = 1; i < n; i++)   /* insertion sort: a few times */
        for (j = i; j > 0 && v[j - 1] > v[j]; j--) {
            double x = v[j];
            v[j] = v[j - 1], v[j - 1] = x;
        }
    for (i = 1; i < n; i++)
        if (v[i] == v[i - 1]) luaL_error(L, "%s: save lists the time %f twice", fn, v[i]);
    lua_pop(L, 1);
    lua_createtable(L, n, 0);
    for (i = 0; i < n; i++) {
        lua_pushnumber(L, v[i]);
        lua_rawseti(L, -2, i + 1);
    }
    lua_remove(L, -2);   /* the scratch */
}

int plm_l_mkernel_save(lua_State *L, int idx)
{
    if (!plm_l_testobj(L, idx, KERNEL_META)) return 0;
    if (lua_getiuservalue(L, idx, 1) == LUA_TTABLE) return 1;
    lua_pop(L, 1);
    return 0;
}

/* markov_kernel.sde{sde=, t0=0, t1=, dt=, time_change=false, at=, aux={B=, beta=, sigma=}, save=}: X(t1) given X(t0) of a
** plume.sde, with the parameters it has now. save: times inside (t0, t1) at which the path is kept too (g:kernel
** makes the kernel a chain of pieces with a latent node at each, named "<node>@<time>"), kept as the userdata's
** user value. */
static int l_kernel_sde(lua_State *L)
{
    const char *fn = "markov_kernel.sde";
    static const char *const opts[] = {"sde", "t0", "t1", "dt", "time_change", "at", "aux", "save", NULL};
    static const char *const aux_opts[] = {"B", "beta", "sigma", NULL};
    plm_bffg_sde_opts o;
    plm_sde *s;
    plm_bffg_kernel *k;
    plm_ctx ctx;
    int d, i;
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    plm_l_checkopts(L, 1, fn, opts);
    memset(&o, 0, sizeof o);
    lua_getfield(L, 1, "sde");   /* 2 */
    if (!(s = plm_l_tosde(L, 2)))
        return luaL_error(L, "%s: field 'sde' must be a plume.sde (got %s)", fn, luaL_typename(L, 2));
    d = s->dim;
    for (i = 0; i < s->np; i++)
        if (isnan(s->params[i])) {
            lua_getiuservalue(L, 2, 1);
            lua_getfield(L, -1, "names");
            lua_geti(L, -1, i + 1);
            return luaL_error(L, "%s: the sde's parameter '%s' has no value (NaN; use s:set_params)", fn, lua_tostring(L, -1));
        }
    o.t0 = plm_l_optnum(L, 1, fn, "t0", 0);
    if (lua_getfield(L, 1, "t1") == LUA_TNIL) return luaL_error(L, "%s: missing field 't1' (the end of the interval)", fn);
    lua_pop(L, 1);
    o.t1 = plm_l_optnum(L, 1, fn, "t1", 0);
    if (lua_getfield(L, 1, "dt") == LUA_TNIL) return luaL_error(L, "%s: missing field 'dt' (the step of the guided paths)", fn);
    lua_pop(L, 1);
    o.dt = plm_l_optnum(L, 1, fn, "dt", 0);
    o.time_change = plm_l_optbool(L, 1, fn, "time_change", 0);
    lua_settop(L, 2);
    o.at = opt_vec(L, 1, "at", d, fn);   /* its owner stays on the stack */
    if (lua_getfield(L, 1, "aux") != LUA_TNIL) {
        int t = lua_gettop(L);
        size_t r, c;
        if (!lua_istable(L, t)) return luaL_error(L, "%s: aux must be a table {B=, beta=, sigma=}", fn);
        plm_l_checkopts(L, t, fn, aux_opts);
        if ((o.B = field_mat(L, t, fn, "B", &r, &c, 0)) && (r != (size_t)d || c != (size_t)d))
            return luaL_error(L, "%s: aux.B must be %d x %d (got %d x %d)", fn, d, d, (int)r, (int)c);
        o.beta = opt_vec(L, t, "beta", d, fn);
        if (lua_getfield(L, t, "sigma") != LUA_TNIL) o.a = read_sigma(L, -1, d, fn, "aux.sigma");
    }
    if (!o.at && (!o.B || !o.a))
        return luaL_error(L, "%s: give 'at' (the point where the drift is linearised) or aux = {B=, beta=, sigma=}", fn);
    plm_ctx_clear(&ctx);
    if (plm_bffg_kernel_sde(&ctx, s, &o, &k)) {
        if (ctx.status == PLM_EINTR) plm_interrupt_clear();
        return plm_l_fail(L, &ctx);
    }
    push_save(L, 1, o.t0, o.t1, fn);
    if (lua_isnil(L, -1)) return push_kernel(L, k);   /* the kernel (GC memory) holds the sde */
    push_kernel(L, k);
    lua_insert(L, -2);
    lua_setiuservalue(L, -2, 1);
    return 1;
}

static int l_kernel_tostring(lua_State *L)
{
    const plm_bffg_kernel *k = plm_l_checkmkernel(L, 1, "tostring", "self");
    int di, din, dout;
    const char *kind = plm_bffg_kernel_info(k, &di, &din, NULL, &dout);
    if (din == 0)
        lua_pushfstring(L, "markov_kernel.%s(prior on %s %d)", kind, di ? "states" : "R^", dout);
    else if (di)
        lua_pushfstring(L, "markov_kernel.%s(%d states -> %d states)", kind, din, dout);
    else
        lua_pushfstring(L, "markov_kernel.%s(R^%d -> R^%d)", kind, din, dout);
    return 1;
}

void plm_l_open_mkernel(lua_State *L)
{
    static const luaL_Reg kernel_meta[] = {{"__tostring", l_kernel_tostring}, {NULL, NULL}};
    static const luaL_Reg kernel_methods[] = {{NULL, NULL}};
    static const luaL_Reg kernels[] = {{"discrete", l_kernel_discrete}, {"linear_gaussian", l_kernel_linear_gaussian},
                                       {"ctmc", l_kernel_ctmc}, {"brownian", l_kernel_brownian}, {"sde", l_kernel_sde},
                                       {"gamma_process", l_kernel_gamma}, {"nonlinear_gaussian", l_kernel_nonlinear},
                                       {NULL, NULL}};
    plm_l_newmeta(L, KERNEL_META, kernel_methods, kernel_meta);
    lua_pop(L, 1);
    luaL_newlib(L, kernels);
    lua_setfield(L, -2, "markov_kernel");
}
