/* l_optim.c -- beyond sampling on static models: plume.optimize (the mode of the log density by quasi-Newton
** iterations on the unconstrained space, with the compiled gradient: runtime/optimize.h) and plume.laplace
** (draws of the Gaussian approximation at that mode, mapped back through the transforms, as a posterior
** object like plume.infer's). Both trace the program once (l_static.c); a dynamic program is an error that
** says why. */
#include "l_expr.h"
#include "linfer.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "gmodel.h"
#include "optimize.h"

static const char *const optimize_opts[] = {"init", "method", "jacobian", "max_iter", "tol_grad", "tol_rel_obj", NULL};
static const char *const laplace_opts[] = {"init", "method", "max_iter", "tol_grad", "tol_rel_obj", "draws", "seed",
                                           "threads", "quiet", NULL};

static plm_gmodel *trace(lua_State *L, int model, int data, const char *fn)
{
    plm_l_program pg;
    plm_gmodel *gm;
    plm_l_push_program(L, model, data, &pg, fn);
    if (!plm_l_trace_static(L, &pg, &gm))
        luaL_error(L, "%s: needs a static model (one whose structure does not depend on its random choices), and "
                      "this one is not: %s", fn, lua_tostring(L, -1));
    return gm;
}

/* The log density of gm without the log Jacobians of the latent sites' transforms: the density of the
** values on their own (constrained) scale. The Jacobian nodes are rebuilt as gmodel.c builds them; the
** graph hash-conses, so they are the very nodes inside gm->lp and the difference is exact. */
static int lp_without_jacobian(plm_gmodel *gm)
{
    plm_graph *g = gm->g;
    int i, lp = gm->lp;
    for (i = 0; i < gm->n && lp >= 0; i++) {
        const plm_gsite *s = &gm->sites[i];
        int u, lj;
        if (s->kind != PLM_GSITE_LATENT || s->dim != 1 || (s->lo < 0 && s->hi < 0)) continue;
        u = gm->x[s->first];
        if (s->lo >= 0 && s->hi >= 0) {
            int w = plm_graph_op(g, PLM_OP_SUB, s->hi, s->lo, -1);
            int a = plm_graph_op(g, PLM_OP_SUB, plm_graph_op(g, PLM_OP_LOG, w, -1, -1),
                                 plm_graph_op(g, PLM_OP_SOFTPLUS, u, -1, -1), -1);
            lj = plm_graph_op(g, PLM_OP_SUB, a,
                              plm_graph_op(g, PLM_OP_SOFTPLUS, plm_graph_op(g, PLM_OP_NEG, u, -1, -1), -1, -1), -1);
        } else
            lj = u;
        lp = plm_graph_op(g, PLM_OP_SUB, lp, lj, -1);
    }
    return lp;
}

static plm_target *make_target(lua_State *L, plm_gmodel *gm, int jacobian, const char *fn)
{
    plm_target *t;
    plm_ctx ctx;
    plm_status st;
    int lp;
    plm_ctx_clear(&ctx);
    lp = jacobian ? gm->lp : lp_without_jacobian(gm);
    if (lp < 0) luaL_error(L, "%s: out of memory", fn);
    if ((st = plm_target_from_graph(&ctx, gm->g, lp, gm->dim, gm->x, NULL, 0, &t))) {
        if (st == PLM_ENOTSUP) luaL_error(L, "%s: the log density has no gradient: %s", fn, ctx.msg);
        plm_l_fail_in(L, &ctx, fn);
    }
    return t;
}

/* The starting point: 0 on the unconstrained scale (the middle of each support), or the values of `init`. */
static void start_point(lua_State *L, const plm_gmodel *gm, int opts, const char *fn, double *u)
{
    plm_ctx ctx;
    int tab;
    plm_ctx_clear(&ctx);
    memset(u, 0, (size_t)gm->dim * sizeof *u);
    if (!opts || lua_getfield(L, opts, "init") == LUA_TNIL) {
        if (opts) lua_pop(L, 1);
        return;
    }
    if (!lua_istable(L, -1)) luaL_error(L, "%s: option 'init' must be a table of values by site name (got %s)", fn, luaL_typename(L, -1));
    tab = lua_gettop(L);
    lua_pushnil(L);
    while (lua_next(L, tab)) {
        const char *name = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
        int s = name ? plm_gmodel_find(gm, name) : -1, dim, i;
        double *x;
        if (s < 0 || gm->sites[s].kind != PLM_GSITE_LATENT)
            luaL_error(L, "%s: init names %s%s%s, which is not a latent site of the model", fn, name ? "'" : "",
                       name ? name : luaL_typename(L, -2), name ? "'" : "");
        dim = gm->sites[s].dim;
        x = plm_l_scratch(L, (size_t)dim * sizeof *x);
        lua_insert(L, -2);
        if (dim == 1 && lua_type(L, -1) == LUA_TNUMBER)
            x[0] = lua_tonumber(L, -1);
        else if (dim > 1 && lua_istable(L, -1) && luaL_len(L, -1) == dim)
            for (i = 0; i < dim; i++) x[i] = (lua_geti(L, -1, i + 1), lua_tonumber(L, -1)), lua_pop(L, 1);
        else
            luaL_error(L, "%s: init value of '%s' must be %s (got %s)", fn, name, dim == 1 ? "a number" : "a table of numbers",
                       luaL_typename(L, -1));
        if (plm_gmodel_unconstrain(&ctx, gm, s, x, u + gm->sites[s].first)) luaL_error(L, "%s: %s", fn, ctx.msg);
        lua_pop(L, 2);
    }
    lua_pop(L, 1);
}

/* n points of u (row-major, n x dim) as a one-chain draws table whose columns are the coordinates. */
static plm_draws *u_draws(lua_State *L, const plm_gmodel *gm, const double *u, size_t n, const char *fn)
{
    plm_draws *U;
    plm_ctx ctx;
    char name[32];
    size_t k;
    int i;
    plm_ctx_clear(&ctx);
    if (plm_draws_new(&ctx, 1, &U)) plm_l_fail_in(L, &ctx, fn);
    for (i = 0; i < gm->dim; i++) {
        snprintf(name, sizeof name, "u[%d]", i + 1);
        plm_draws_col(U, name, 1);
    }
    for (k = 0; k < n; k++)
        if (plm_draws_push(&ctx, U, 0, u + k * (size_t)gm->dim, gm->dim, 0)) plm_l_fail_in(L, &ctx, fn);
    return U;
}

/* Push {name = value} of every latent and deterministic scalar at the point u ("x[2]" for vector entries). */
static void push_values(lua_State *L, const plm_gmodel *gm, const double *u, const char *fn)
{
    plm_draws *U = u_draws(L, gm, u, 1, fn), *D;
    plm_ctx ctx;
    int k;
    plm_ctx_clear(&ctx);
    if (plm_draws_new(&ctx, 1, &D) || plm_gmodel_draws(&ctx, gm, U, D, 1)) plm_l_fail_in(L, &ctx, fn);
    lua_createtable(L, 0, plm_draws_ncols(D));
    for (k = 0; k < plm_draws_ncols(D); k++) {
        lua_pushnumber(L, plm_draws_chain(D, k, 0)[0]);
        lua_setfield(L, -2, plm_draws_name(D, k));
    }
}

typedef struct mode_run {
    plm_gmodel *gm;
    plm_target *t;
    double *u;
    plm_optim_result res;
    int jacobian;
} mode_run;

/* Trace (model at 1, data at 2), read the options at 3 and find the mode into r. */
static void find_mode(lua_State *L, const char *fn, const char *const *names, int jacobian_default, mode_run *r)
{
    int opts = lua_istable(L, 3) ? 3 : 0;
    plm_optim_opts oo;
    plm_ctx ctx;
    plm_status st;
    const char *method;
    if (!lua_isnoneornil(L, 3) && !opts) luaL_error(L, "%s: options must be a table (got %s)", fn, luaL_typename(L, 3));
    plm_l_checkopts(L, opts, fn, names);
    method = plm_l_optstr(L, opts, fn, "method", "lbfgs");
    if (strcmp(method, "lbfgs") != 0 && strcmp(method, "bfgs") != 0)
        luaL_error(L, "%s: option 'method' must be \"lbfgs\" or \"bfgs\" (got \"%s\")", fn, method);
    memset(&oo, 0, sizeof oo);
    oo.max_iter = (int)plm_l_optint(L, opts, fn, "max_iter", 2000);
    oo.tol_grad = plm_l_optnum(L, opts, fn, "tol_grad", 1e-8);
    oo.tol_rel_obj = plm_l_optnum(L, opts, fn, "tol_rel_obj", 1e-12);
    if (oo.max_iter < 1) luaL_error(L, "%s: option 'max_iter' must be >= 1 (got %d)", fn, oo.max_iter);
    if (!(oo.tol_grad > 0)) luaL_error(L, "%s: option 'tol_grad' must be > 0 (got %f)", fn, oo.tol_grad);
    if (!(oo.tol_rel_obj > 0)) luaL_error(L, "%s: option 'tol_rel_obj' must be > 0 (got %f)", fn, oo.tol_rel_obj);
    r->jacobian = plm_l_optbool(L, opts, fn, "jacobian", jacobian_default);
    r->gm = trace(L, 1, 2, fn);
    r->t = make_target(L, r->gm, r->jacobian, fn);
    r->u = plm_l_scratch(L, ((size_t)r->gm->dim + 1) * sizeof *r->u);
    start_point(L, r->gm, opts, fn, r->u);
    plm_ctx_clear(&ctx);
    if ((st = plm_optimize(&ctx, r->t, r->u, &oo, r->u, &r->res))) {
        plm_ctx bc;
        plm_ctx_clear(&bc);
        if (st == PLM_EINTR) plm_interrupt_clear();
        if (st == PLM_EDEAD && plm_gmodel_blame(&bc, r->gm, r->u))
            luaL_error(L, "%s: the log density at the initial point is not finite: %s", fn, bc.msg);
        plm_l_fail_in(L, &ctx, fn);
    }
}

static void set_fit_fields(lua_State *L, const mode_run *r)
{
    lua_pushnumber(L, r->res.lp);
    lua_setfield(L, -2, "lp");
    lua_pushinteger(L, r->res.iterations);
    lua_setfield(L, -2, "iterations");
    lua_pushboolean(L, r->res.converged);
    lua_setfield(L, -2, "converged");
    lua_pushnumber(L, r->res.grad_max);
    lua_setfield(L, -2, "grad_max");
    lua_pushboolean(L, r->jacobian);
    lua_setfield(L, -2, "jacobian");
}

/* plume.optimize(model, data [, {init=, method="lbfgs", jacobian=true, max_iter=, tol_grad=, tol_rel_obj=}])
** -> {values = {site = value}, u = {...}, lp =, iterations =, converged =, grad_max =, jacobian =} */
static int l_optimize(lua_State *L)
{
    const char *fn = "plume.optimize";
    mode_run r;
    lua_settop(L, 3);
    find_mode(L, fn, optimize_opts, 1, &r);
    lua_createtable(L, 0, 8);
    push_values(L, r.gm, r.u, fn);
    lua_setfield(L, -2, "values");
    plm_l_pushvec(L, r.u, (size_t)r.gm->dim);
    lua_setfield(L, -2, "u");
    set_fit_fields(L, &r);
    lua_pushstring(L, "lbfgs");
    lua_setfield(L, -2, "method");
    return 1;
}

/* plume.laplace(model, data [, {draws = 1000, seed =, init =, ...optimize's options}]) -> a posterior of
** `draws` draws of N(mode, (-H)^-1) on the unconstrained space, H the Hessian of the log density (with the
** Jacobians) by central differences of the compiled gradient, mapped back to the sites' supports. */
static int l_laplace(lua_State *L)
{
    const char *fn = "plume.laplace";
    int opts, threads, top;
    long ndraws;
    unsigned long long seed;
    mode_run r;
    double *H, *U, logdet;
    plm_results *R;
    plm_draws *Ud;
    plm_ctx ctx;
    lua_settop(L, 3);
    opts = lua_istable(L, 3) ? 3 : 0;
    find_mode(L, fn, laplace_opts, 1, &r);
    ndraws = (long)plm_l_optint(L, opts, fn, "draws", 1000);
    if (ndraws < 1 || ndraws > 100000000) luaL_error(L, "%s: option 'draws' must be in 1..1e8 (got %d)", fn, (int)ndraws);
    threads = plm_l_threads(L, opts, fn);
    seed = plm_l_seed(L, opts, fn);
    if (!r.res.converged)
        luaL_error(L, "%s: the optimizer did not converge in %d iterations (max |gradient| %f): no mode to expand "
                      "around (raise max_iter, or give init)", fn, r.res.iterations, r.res.grad_max);
    H = plm_l_scratch(L, (size_t)r.gm->dim * (size_t)r.gm->dim * sizeof *H);
    U = plm_l_scratch(L, (size_t)ndraws * (size_t)r.gm->dim * sizeof *U);
    plm_ctx_clear(&ctx);
    if (plm_hessian(&ctx, r.t, r.u, 0, H) ||
        plm_laplace_draws(&ctx, r.u, H, r.gm->dim, (size_t)ndraws, seed, U, &logdet))
        plm_l_fail_in(L, &ctx, fn);
    Ud = u_draws(L, r.gm, U, (size_t)ndraws, fn);
    R = plm_l_newresults(L, 1, 0);
    if (plm_gmodel_draws(&ctx, r.gm, Ud, plm_results_draws(R), threads)) plm_l_fail_in(L, &ctx, fn);
    top = lua_gettop(L);
    plm_l_push_results(L, R);
    lua_pushvalue(L, top);                 /* the results box owns the draws: keep it with the table */
    lua_setfield(L, -2, "_results");
    plm_l_pushdraws(L, Ud);
    lua_setfield(L, -2, "sampler");
    push_values(L, r.gm, r.u, fn);
    lua_setfield(L, -2, "mode");
    set_fit_fields(L, &r);
    lua_pushnumber(L, 0.5 * r.gm->dim * log(2 * M_PI) - 0.5 * logdet + r.res.lp);
    lua_setfield(L, -2, "logz");   /* the Laplace estimate of the log normalising constant */
    lua_pushstring(L, "laplace");
    lua_setfield(L, -2, "method");
    lua_pushinteger(L, 1);
    lua_setfield(L, -2, "chains");
    lua_pushinteger(L, ndraws);
    lua_setfield(L, -2, "samples");
    lua_pushinteger(L, 0);
    lua_setfield(L, -2, "warmup");
    lua_pushinteger(L, 1);
    lua_setfield(L, -2, "thin");
    lua_pushinteger(L, (lua_Integer)seed);
    lua_setfield(L, -2, "seed");
    lua_pushvalue(L, 1);
    lua_setfield(L, -2, "_model");
    lua_pushvalue(L, 2);
    lua_setfield(L, -2, "_data");
    plm_l_pushmodule(L);
    lua_getfield(L, -1, "_posterior");
    lua_insert(L, -3);
    lua_pop(L, 1);
    lua_call(L, 1, 1);
    return 1;
}

void plm_l_open_optim(lua_State *L)
{
    lua_pushcfunction(L, l_optimize);
    lua_setfield(L, -2, "optimize");
    lua_pushcfunction(L, l_laplace);
    lua_setfield(L, -2, "laplace");
}
