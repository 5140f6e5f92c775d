/* l_model.c -- the `m` handle of dynamic model programs: m:sample, m:observe, m:factor, m:deterministic.
** What the methods do under an engine -- draw fresh, replay, propose, branch, yield at checkpoints -- is that
** engine's table of hooks (lmodel.h); the handle itself only checks arguments, records sites and hands
** values to the program. The engines are l_infer.c (prior, IS, MH), l_smc.c and l_beam.c. */
#include "lmodel.h"
#include "larray.h"
#include "ldist.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define MAXDIM_STACK 64

typedef plm_l_exec exec;
typedef plm_l_handle handle;

static exec *check_active(lua_State *L, const char *fn)
{
    handle *h = luaL_testudata(L, 1, PLM_L_HANDLE);
    if (!h) return luaL_error(L, "%s: call it with ':' on the model handle (m:%s(...))", fn, fn + 2), NULL;
    if (!h->ex) return luaL_error(L, "%s: called outside a model run (the handle is only valid while plume runs the model)", fn), NULL;
    return h->ex;
}

static const char *check_addr(lua_State *L, const char *fn)
{
    if (lua_type(L, 2) != LUA_TSTRING && lua_type(L, 2) != LUA_TNUMBER)
        luaL_error(L, "%s: address must be a string (got %s)", fn, luaL_typename(L, 2));
    return lua_tostring(L, 2);
}

static void add_site(lua_State *L, exec *ex, const char *fn, const char *addr, plm_site_kind kind,
                     const plm_dist *d, const double *x, int dim, double lp)
{
    if (plm_trace_add(&ex->ctx, ex->tr, addr, kind, d, x, dim, lp, NULL))
        luaL_error(L, "%s: %s", fn, plm_ctx_errmsg(&ex->ctx));
}

const char *plm_l_value_str(lua_State *L, const plm_dist *d, const double *x, int dim)
{
    luaL_Buffer b;
    char num[32];
    int i;
    if (dim == 1) {
        snprintf(num, sizeof num, "%.15g", x[0] + (d && d->kind == PLM_DIST_CATEGORICAL ? d->base : 0));
        return lua_pushstring(L, num);
    }
    luaL_buffinit(L, &b);
    luaL_addchar(&b, '{');
    for (i = 0; i < dim && i < 8; i++) {
        if (i) luaL_addstring(&b, ", ");
        snprintf(num, sizeof num, "%.15g", x[i]);
        luaL_addstring(&b, num);
    }
    if (dim > 8) luaL_addstring(&b, ", ...");
    luaL_addchar(&b, '}');
    luaL_pushresult(&b);
    return lua_tostring(L, -1);
}

/* A log density of +inf (a density with a pole at the value) or NaN would make every weight and acceptance
** ratio meaningless: it is an error that names the site, the value and the distribution (at stack idx). */
static void check_density(lua_State *L, const char *fn, const char *addr, int idx, const plm_dist *d, const double *x,
                          double lp)
{
    if (!(lp == INFINITY || isnan(lp))) return;
    {
        const char *dist = luaL_tolstring(L, idx, NULL), *value = plm_l_value_str(L, d, x, d->dim);
        luaL_error(L, "%s '%s': the log density of %s at %s is %s", fn, addr, dist, value, isnan(lp) ? "NaN" : "+inf");
    }
}

/* m:sample's continuation after a twisted token's checkpoint yielded: the value is still on top */
static int hand_over_k(lua_State *L, int status, lua_KContext k)
{
    (void)L, (void)status, (void)k;
    return 1;
}

int plm_l_hand_over(lua_State *L, exec *ex, const plm_dist *d, const double *x)
{
    plm_l_pushdistvalue(L, d, x);
    /* a distribution with a hook (an LM context's next-token distribution) learns the chosen value */
    if (lua_getiuservalue(L, 3, 1) == LUA_TFUNCTION) {
        lua_pushvalue(L, -2);
        lua_call(L, 1, 1);
        if (lua_type(L, -1) == LUA_TNUMBER) {
            /* a twisted context's incremental weight: a factor, and a checkpoint so that SMC resamples here */
            double w = lua_tonumber(L, -1);
            int r;
            lua_pop(L, 1);
            if (isnan(w) || w == INFINITY) return luaL_error(L, "m:sample: the twist's incremental log weight is %s", isnan(w) ? "NaN" : "+inf");
            ex->tr->loglik += w;
            if (!ex->hooks->checkpoint) return 1;
            ex->yield_k = hand_over_k;
            r = ex->hooks->checkpoint(L, ex, w);
            ex->yield_k = NULL;
            (void)r;
            return 1;
        }
        lua_pop(L, 1);
    } else
        lua_pop(L, 1);
    return 1;
}

int plm_l_sample_finish(lua_State *L, exec *ex, const char *addr, const plm_dist *d, const double *x, double lp)
{
    add_site(L, ex, "m:sample", addr, PLM_SITE_LATENT, d, x, d->dim, lp);
    return plm_l_hand_over(L, ex, d, x);
}

int plm_l_improper_error(lua_State *L, const char *addr)
{
    return luaL_error(L, "m:sample '%s': %s is an improper prior: it has no sampler, so only method = \"mh\" can use "
                         "it, on a site that exists from the first run", addr, luaL_tolstring(L, 3, NULL));
}

void plm_l_sample_fresh(lua_State *L, exec *ex, const char *addr, const plm_dist *d, double *x, double *lp)
{
    if (plm_dist_info_of(d->kind)->improper) plm_l_improper_error(L, addr);
    plm_dist_sample(d, ex->rng, x);
    *lp = plm_dist_logpdf(d, x);
}

static int prior_sample(lua_State *L, exec *ex, const char *addr, const plm_dist *d, double *x, double *lp)
{
    plm_l_sample_fresh(L, ex, addr, d, x, lp);
    return PLM_L_CHOSEN;
}

const plm_l_hooks plm_l_prior_hooks = {"prior", prior_sample, NULL, NULL};

/* m:sample(addr, dist) -> value */
static int l_m_sample(lua_State *L)
{
    exec *ex = check_active(L, "m:sample");
    if (ex->hooks->symbolic) return ex->hooks->symbolic(L, ex, PLM_L_M_SAMPLE);
    const char *addr = check_addr(L, "m:sample");
    plm_dist *d = plm_l_checkdist(L, 3, "m:sample", "dist");
    double buf[MAXDIM_STACK], *x = d->dim <= MAXDIM_STACK ? buf : plm_l_scratch(L, (size_t)d->dim * sizeof(double));
    double lp = -INFINITY;
    int r = ex->hooks->sample(L, ex, addr, d, x, &lp);
    if (r != PLM_L_CHOSEN) return r;
    check_density(L, "m:sample", addr, 3, d, x, lp);
    return plm_l_sample_finish(L, ex, addr, d, x, lp);
}

/* m:observe(addr, dist, value) */
static int l_m_observe(lua_State *L)
{
    exec *ex = check_active(L, "m:observe");
    if (ex->hooks->symbolic) return ex->hooks->symbolic(L, ex, PLM_L_M_OBSERVE);
    const char *addr = check_addr(L, "m:observe");
    plm_dist *d = plm_l_checkdist(L, 3, "m:observe", "dist");
    double buf[MAXDIM_STACK], *x = d->dim <= MAXDIM_STACK ? buf : plm_l_scratch(L, (size_t)d->dim * sizeof(double));
    double lp;
    if (!plm_l_todistvalue(L, 4, d, x)) {
        if (d->dim == 1)
            return luaL_error(L, "m:observe: value of '%s' must be a number (got %s)", addr, luaL_typename(L, 4));
        return luaL_error(L, "m:observe: value of '%s' must be a table of %d numbers", addr, d->dim);
    }
    /* outside the support the weight is -inf (never NaN); the engines deal with dead runs */
    lp = plm_dist_logpdf(d, x);
    check_density(L, "m:observe", addr, 3, d, x, lp);
    add_site(L, ex, "m:observe", addr, PLM_SITE_OBSERVED, d, x, d->dim, lp);
    /* a hooked distribution (an LM mask) learns the observed value too */
    if (lua_getiuservalue(L, 3, 1) == LUA_TFUNCTION) {
        lua_pushvalue(L, 4);
        lua_call(L, 1, 0);
    } else
        lua_pop(L, 1);
    return ex->hooks->checkpoint ? ex->hooks->checkpoint(L, ex, lp) : 0;
}

/* m:factor(logw) */
static int l_m_factor(lua_State *L)
{
    exec *ex = check_active(L, "m:factor");
    if (ex->hooks->symbolic) return ex->hooks->symbolic(L, ex, PLM_L_M_FACTOR);
    double w = plm_l_checknum(L, 2, "m:factor", "log weight");
    if (isnan(w)) return luaL_error(L, "m:factor: log weight is NaN");
    if (w == INFINITY) return luaL_error(L, "m:factor: log weight is +inf");
    ex->tr->loglik += w;
    return ex->hooks->checkpoint ? ex->hooks->checkpoint(L, ex, w) : 0;
}

/* m:deterministic(addr, value) -> value */
static int l_m_deterministic(lua_State *L)
{
    exec *ex = check_active(L, "m:deterministic");
    if (ex->hooks->symbolic) return ex->hooks->symbolic(L, ex, PLM_L_M_DETERMINISTIC);
    const char *addr = check_addr(L, "m:deterministic");
    if (lua_type(L, 3) == LUA_TNUMBER) {
        double v = lua_tonumber(L, 3);
        add_site(L, ex, "m:deterministic", addr, PLM_SITE_DETERMINISTIC, NULL, &v, 1, 0);
    } else if (lua_type(L, 3) == LUA_TBOOLEAN) {
        double v = lua_toboolean(L, 3);
        add_site(L, ex, "m:deterministic", addr, PLM_SITE_DETERMINISTIC, NULL, &v, 1, 0);
    } else if (lua_type(L, 3) == LUA_TTABLE || plm_l_toarray(L, 3)) {
        size_t n;
        double *v = plm_l_checkvec(L, 3, "m:deterministic", "value", &n, 1);
        add_site(L, ex, "m:deterministic", addr, PLM_SITE_DETERMINISTIC, NULL, v, (int)n, 0);
        lua_pop(L, 1);
    } else
        return luaL_error(L, "m:deterministic: value of '%s' must be a number or a table of numbers (got %s)", addr,
                          luaL_typename(L, 3));
    lua_settop(L, 3);
    return 1;
}

static int l_m_tostring(lua_State *L)
{
    handle *h = luaL_checkudata(L, 1, PLM_L_HANDLE);
    lua_pushstring(L, h->ex ? "plume model handle (running)" : "plume model handle (idle)");
    return 1;
}

plm_l_handle *plm_l_newhandle(lua_State *L)
{
    handle *h = lua_newuserdatauv(L, sizeof *h, 1);
    h->ex = NULL;
    luaL_setmetatable(L, PLM_L_HANDLE);
    return h;
}

void plm_l_open_model(lua_State *L)
{
    static const luaL_Reg hmethods[] = {
        {"sample", l_m_sample}, {"observe", l_m_observe}, {"factor", l_m_factor},
        {"deterministic", l_m_deterministic}, {NULL, NULL}};
    luaL_newmetatable(L, PLM_L_HANDLE);
    luaL_newlib(L, hmethods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_m_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pop(L, 1);
}
