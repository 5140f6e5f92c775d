/* l_mle.c -- plume.mle(ssm, ys, opts): maximum likelihood for a plume.ssm by stochastic approximation
** (runtime/engines/ssm_mle.h): the score by on-line PaRIS (method = "score"), by PaRIS inside conditional SMC
** (method = "ppg") or Markov score climbing along conditional SMC paths (method = "msc"). The whole loop runs
** in C. */
#include "lssm.h"
#include "l_expr.h"
#include "ssm_mle.h"

#include <math.h>
#include <string.h>

static const char *const mle_options[] = {"params", "method", "iters", "step", "kappa", "particles",
                                          "backward_draws", "seed", "threads", NULL};

/* plume.mle(ssm, ys, {params = {name = start, ...}, method =, iters =, step =, ...}) -> result */
static int l_mle(lua_State *L)
{
    const char *fn = "plume.mle", *method;
    int opts = lua_istable(L, 3) ? 3 : 0, info, names, ptab, nf = 0, j, *idx;
    plm_ssm *m0 = plm_l_tossm(L, 1), mc;
    plm_mle_opts o;
    double *par, *traj, *ys;
    long T, k;
    lua_Integer v;
    plm_ctx ctx;
    plm_status st;
    if (!m0) return luaL_error(L, "%s: expected a plume.ssm (got %s)", fn, luaL_typename(L, 1));
    if (!opts) return luaL_error(L, "%s: options must be a table with params = {name = start value, ...}", fn);
    plm_l_checkopts(L, opts, fn, mle_options);
    ys = plm_l_ssm_ys(L, 2, m0->ydim, fn, &T);
    plm_mle_opts_default(&o);
    method = plm_l_optstr(L, opts, fn, "method", "score");
    if (!strcmp(method, "score"))
        o.method = PLM_MLE_SCORE;
    else if (!strcmp(method, "ppg"))
        o.method = PLM_MLE_PPG;
    else if (!strcmp(method, "msc"))
        o.method = PLM_MLE_MSC;
    else
        return luaL_error(L, "%s: unknown method '%s' (\"score\", \"ppg\", \"msc\")", fn, method);
    v = plm_l_optint(L, opts, fn, "iters", 100);
    if (v < 1 || v > 10000000) return luaL_error(L, "%s: option 'iters' must be in 1..1e7 (got %d)", fn, (int)v);
    o.iters = (long)v;
    o.step = plm_l_optnum(L, opts, fn, "step", 0.1);
    if (!(o.step > 0 && isfinite(o.step))) return luaL_error(L, "%s: option 'step' must be > 0 (got %f)", fn, o.step);
    o.kappa = plm_l_optnum(L, opts, fn, "kappa", 0.6);
    if (!(o.kappa > 0.5 && o.kappa <= 1))
        return luaL_error(L, "%s: option 'kappa' must be in (0.5, 1] (got %f)", fn, o.kappa);
    v = plm_l_optint(L, opts, fn, "particles", 100);
    if (v < 2 || v > 100000000) return luaL_error(L, "%s: option 'particles' must be in 2..1e8 (got %d)", fn, (int)v);
    o.N = (size_t)v;
    v = plm_l_optint(L, opts, fn, "backward_draws", 2);
    if (v < 1 || v > 1000) return luaL_error(L, "%s: option 'backward_draws' must be in 1..1000 (got %d)", fn, (int)v);
    o.Ntilde = (int)v;
    o.seed = plm_l_seed(L, opts, fn);
    o.nthreads = plm_l_threads(L, opts, fn);
    /* the parameters learnt and their starts; the others keep the model's values */
    lua_getiuservalue(L, 1, 1);
    info = lua_gettop(L);
    lua_getfield(L, info, "names");
    names = lua_gettop(L);
    par = plm_l_scratch(L, ((size_t)m0->np + 1) * sizeof *par);
    memcpy(par, m0->params, (size_t)m0->np * sizeof *par);
    idx = plm_l_scratch(L, ((size_t)m0->np + 1) * sizeof *idx);
    if (lua_getfield(L, opts, "params") != LUA_TTABLE)
        return luaL_error(L, "%s: option 'params' must be a table {name = start value} of the parameters to learn", fn);
    ptab = lua_gettop(L);
    for (j = 0; j < m0->np; j++) {
        lua_rawgeti(L, names, j + 1);
        if (lua_gettable(L, ptab) != LUA_TNIL) {
            if (!lua_isnumber(L, -1)) {
                lua_rawgeti(L, names, j + 1);
                return luaL_error(L, "%s: params.%s must be a number (the start)", fn, lua_tostring(L, -1));
            }
            par[j] = lua_tonumber(L, -1);
            idx[nf++] = j;
        }
        lua_pop(L, 1);
    }
    lua_pushnil(L);
    while (lua_next(L, ptab)) {   /* every name given must be a parameter */
        int found = 0;
        lua_pop(L, 1);
        for (j = 0; j < m0->np && !found; j++) {
            lua_rawgeti(L, names, j + 1);
            found = lua_rawequal(L, -1, -2);
            lua_pop(L, 1);
        }
        if (!found)
            return luaL_error(L, "%s: params.%s is not a parameter of the model", fn, luaL_tolstring(L, -1, NULL));
    }
    if (nf == 0) return luaL_error(L, "%s: params names no parameter to learn", fn);
    for (j = 0; j < m0->np; j++)
        if (isnan(par[j])) {
            lua_rawgeti(L, names, j + 1);
            return luaL_error(L, "%s: parameter '%s' has no value (give it in params to learn it, or set it on the "
                              "model)", fn, lua_tostring(L, -1));
        }
    o.nfree = nf;
    o.idx = idx;
    traj = plm_l_scratch(L, ((size_t)o.iters + 1) * (size_t)nf * sizeof *traj);
    /* a copy of the model runs with its own parameters; the derivative programs are built on the original */
    plm_ctx_clear(&ctx);
    {
        double *g = plm_l_scratch(L, ((size_t)m0->np + 1) * sizeof *g);
        if ((st = plm_ssm_logjoint_grad(&ctx, m0, 0, NULL, NULL, g, NULL)))
            return luaL_error(L, "%s: the score needs derivatives of the model's log densities: %s", fn, ctx.msg);
    }
    plm_ssm_with_params(m0, plm_l_scratch(L, ((size_t)m0->np + 1) * sizeof *par), &mc);
    memcpy(mc.params, par, (size_t)m0->np * sizeof *par);
    plm_interrupt_clear();
    st = plm_mle_run(&ctx, &mc, T, ys, &o, traj);
    if (st == PLM_EINTR) plm_interrupt_clear();
    if (st) return plm_l_fail_as(L, &ctx, fn);
    /* result: params (the last iterate), average (over the last half), trajectory[name][k + 1] */
    lua_createtable(L, 0, 6);
    lua_createtable(L, 0, nf);
    lua_createtable(L, 0, nf);
    lua_createtable(L, 0, nf);
    for (j = 0; j < nf; j++) {
        double s = 0;
        long from = o.iters / 2, n = 0;
        lua_rawgeti(L, names, idx[j] + 1);
        lua_pushnumber(L, traj[(size_t)o.iters * (size_t)nf + (size_t)j]);
        lua_setfield(L, -5, lua_tostring(L, -2));
        for (k = from + 1; k <= o.iters; k++, n++) s += traj[(size_t)k * (size_t)nf + (size_t)j];
        lua_pushnumber(L, s / (double)n);
        lua_setfield(L, -4, lua_tostring(L, -2));
        lua_createtable(L, (int)o.iters + 1, 0);
        for (k = 0; k <= o.iters; k++) {
            lua_pushnumber(L, traj[(size_t)k * (size_t)nf + (size_t)j]);
            lua_rawseti(L, -2, k + 1);
        }
        lua_setfield(L, -3, lua_tostring(L, -2));
        lua_pop(L, 1);
    }
    lua_setfield(L, -4, "trajectory");
    lua_setfield(L, -3, "average");
    lua_setfield(L, -2, "params");
    lua_pushstring(L, method);
    lua_setfield(L, -2, "method");
    lua_pushinteger(L, o.iters);
    lua_setfield(L, -2, "iters");
    return 1;
}

void plm_l_open_mle(lua_State *L)
{
    lua_pushcfunction(L, l_mle);
    lua_setfield(L, -2, "mle");
}
