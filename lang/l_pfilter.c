/* l_pfilter.c -- particle filters and smoothers for plume.ssm models (runtime/pfilter.h, runtime/smooth.h):
** plume.smc(ssm, ys, opts) runs the native filter (plume.smc keeps its program engine for everything else:
** this file wraps it with a dispatch on the first argument), ssm:loglik(ys, opts) is its log evidence, and
** plume.smooth(ssm, ys, opts) runs FFBS or PaRIS. Functions of the state the user passes (moments, look-ahead
** weights, additive functionals) are traced on the ssm's own graph and compiled like the model. */
#include "lssm.h"
#include "larray.h"
#include "lmodel.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define PLM_L_SSM "plume.ssm"

/* The ssm at idx, with its info table (names, holder, p: see l_ssm.c) pushed. */
static plm_ssm *check_ssm(lua_State *L, int idx, const char *fn)
{
    plm_ssm *m = plm_l_tossm(L, idx);
    if (!m) luaL_error(L, "%s: expected a plume.ssm (got %s)", fn, luaL_typename(L, idx));
    lua_getiuservalue(L, idx, 1);
    return m;
}


/* Push the symbolic state of group grp (a symbol for dim 1, else a list). */
static void push_state(lua_State *L, int holder, plm_graph *g, int grp, int dim)
{
    int k;
    if (dim == 1) {
        plm_l_pushsym(L, holder, plm_graph_input(g, grp, 0));
        return;
    }
    lua_createtable(L, dim, 0);
    for (k = 0; k < dim; k++) {
        plm_l_pushsym(L, holder, plm_graph_input(g, grp, k));
        lua_rawseti(L, -2, k + 1);
    }
}

/* Nodes of a traced result at idx: a number or symbol (one node) or a list of them. Returns the count. */
static int result_nodes(lua_State *L, int idx, plm_graph *g, const char *what, int *nodes, int max)
{
    int n, k;
    idx = lua_absindex(L, idx);
    if (lua_type(L, idx) != LUA_TTABLE) {
        nodes[0] = plm_l_tonode(L, idx, g, what);
        return 1;
    }
    n = (int)luaL_len(L, idx);
    if (n < 1 || n > max) luaL_error(L, "%s must return a number or a list of 1..%d numbers", what, max);
    for (k = 0; k < n; k++) {
        lua_geti(L, idx, k + 1);
        nodes[k] = plm_l_tonode(L, -1, g, what);
        lua_pop(L, 1);
    }
    return n;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Sort the n strings of the list at idx in place. */
static void sort_names(lua_State *L, int idx, int n)
{
    const char **k = plm_l_scratch(L, ((size_t)n + 1) * sizeof *k);
    int i;
    for (i = 0; i < n; i++) {
        lua_rawgeti(L, idx, i + 1);
        k[i] = lua_tostring(L, -1);   /* kept alive by the list while it is sorted */
        lua_pop(L, 1);
    }
    qsort(k, (size_t)n, sizeof *k, cmp_str);
    lua_createtable(L, n, 0);
    for (i = 0; i < n; i++) {
        lua_pushstring(L, k[i]);
        lua_rawseti(L, -2, i + 1);
    }
    for (i = 0; i < n; i++) {
        lua_rawgeti(L, -1, i + 1);
        lua_rawseti(L, idx, i + 1);
    }
    lua_pop(L, 2);
}

static plm_prog *compile(lua_State *L, plm_graph *g, int n, const int *nodes, unsigned varying)
{
    plm_ctx ctx;
    plm_prog *p;
    plm_ctx_clear(&ctx);
    if (plm_prog_compile(&ctx, g, n, nodes, varying, &p)) plm_l_fail(L, &ctx);
    return p;
}

/* Common options of filters and smoothers. */
typedef struct pf_args {
    plm_ssm *m;
    int info;            /* stack slot of the ssm's info table */
    plm_graph *g;
    int holder;
    long T;
    double *ys;
    plm_pf_opts o;
    double *saved;       /* parameters to restore */
    int nmom, momnames;
    plm_ssm_gauss gauss;
    int have_gauss;
    plm_ssm_optimal opt;   /* guided without a model proposal */
} pf_args;

static const char *const pf_methods[] = {"bootstrap", "guided", "auxiliary", NULL};

static void restore(pf_args *a)
{
    memcpy(a->m->params, a->saved, (size_t)a->m->np * sizeof *a->saved);
}

static void fail_restore(lua_State *L, pf_args *a, plm_ctx *ctx)
{
    restore(a);
    plm_l_fail(L, ctx);
}

/* Read the filter options at opts (0: none) for the ssm at 1 and ys at 2; traced functions are compiled
** here. Sets the parameters from opts.params (restored by the caller with restore()). */
static void pf_setup(lua_State *L, int opts, const char *fn, pf_args *a, int smoothing)
{
    const char *method, *scheme;
    int sc, k;
    lua_Integer N;
    memset(a, 0, sizeof *a);
    a->m = check_ssm(L, 1, fn);
    a->info = lua_gettop(L);
    lua_getfield(L, a->info, "holder");
    a->holder = lua_gettop(L);
    a->g = plm_l_testobj(L, a->holder, PLM_L_GRAPH);
    a->ys = plm_l_ssm_ys(L, 2, a->m->ydim, fn, &a->T);
    plm_pf_opts_default(&a->o);
    N = plm_l_optint(L, opts, fn, "particles", 1000);
    if (N < 1 || N > 100000000) luaL_error(L, "%s: option 'particles' must be in 1..1e8 (got %d)", fn, (int)N);
    a->o.N = (size_t)N;
    method = plm_l_optstr(L, opts, fn, smoothing ? "filter" : "method", "bootstrap");
    for (k = 0; pf_methods[k] && strcmp(pf_methods[k], method); k++) continue;
    if (!pf_methods[k])
        luaL_error(L, "%s: unknown %s '%s' (\"bootstrap\", \"guided\", \"auxiliary\")", fn,
                   smoothing ? "filter" : "method", method);
    a->o.method = (plm_pf_method)k;
    if (a->o.method == PLM_PF_GUIDED && !a->m->guided) {
        /* no proposal given: the locally optimal one, when plume can derive it */
        plm_ctx ctx;
        plm_ctx_clear(&ctx);
        if (plm_ssm_optimal_init(&ctx, a->m, &a->opt))
            luaL_error(L, "%s: method \"guided\" needs a model with a proposal (plume.ssm{..., proposal = ...}); "
                       "plume derives the optimal one only for a Gaussian transition and an observation log density "
                       "quadratic in the state, and here %s", fn, ctx.msg);
        a->o.optimal = &a->opt;
    }
    scheme = plm_l_optstr(L, opts, fn, "resample", "systematic");
    if ((sc = plm_resample_scheme_by_name(scheme)) < 0)
        luaL_error(L, "%s: unknown resampling scheme '%s' (resample: %s)", fn, scheme, plm_resample_scheme_list);
    a->o.scheme = (plm_resample_scheme)sc;
    a->o.ess_threshold = plm_l_optnum(L, opts, fn, "ess_threshold", 0.5);
    if (!(a->o.ess_threshold >= 0 && a->o.ess_threshold <= 1))
        luaL_error(L, "%s: option 'ess_threshold' must be in [0, 1] (got %f)", fn, a->o.ess_threshold);
    a->o.seed = plm_l_seed(L, opts, fn);
    a->o.nthreads = plm_l_threads(L, opts, fn);
    a->o.history = smoothing || plm_l_optbool(L, opts, fn, "history", 0);
    /* under mpirun the particles are spread over the ranks unless told otherwise; results are the same */
    {
        const char *d = plm_l_optstr(L, opts, fn, "distribute", "particles");
        if (strcmp(d, "particles") && strcmp(d, "none"))
            luaL_error(L, "%s: option 'distribute' must be \"particles\" or \"none\" (got '%s')", fn, d);
        a->o.distribute = d[0] == 'p';
    }
    /* look-ahead: given, or the observation density at the transition mean */
    if (a->o.method == PLM_PF_AUXILIARY) {
        if (opts && lua_getfield(L, opts, "lookahead") != LUA_TNIL) {
            int node;
            if (!lua_isfunction(L, -1)) luaL_error(L, "%s: option 'lookahead' must be a function(p, x, y, t)", fn);
            lua_getfield(L, a->info, "p");
            push_state(L, a->holder, a->g, PLM_GRP_X, a->m->dim);
            push_state(L, a->holder, a->g, PLM_GRP_Y, a->m->ydim);
            plm_l_pushsym(L, a->holder, plm_graph_input(a->g, PLM_GRP_T, 0));
            plm_l_trace_call(L, 4, 1, "lookahead");
            node = plm_l_tonode(L, -1, a->g, "lookahead");
            a->o.lookahead = compile(L, a->g, 1, &node, 1u << PLM_GRP_X);
        } else {
            plm_ctx ctx;
            plm_ctx_clear(&ctx);
            if (plm_ssm_gauss_init(&ctx, a->m, &a->gauss))
                luaL_error(L, "%s: method \"auxiliary\" needs option 'lookahead' here: %s", fn, ctx.msg);
            a->o.gauss = &a->gauss;
        }
        if (opts) lua_pop(L, 1);
    }
    /* moments = {name = function(x) ... end}: compiled as one program, outputs in sorted name order */
    if (opts && lua_getfield(L, opts, "moments") != LUA_TNIL) {
        int tab = lua_gettop(L), names, n = 0, *nodes;
        if (!lua_istable(L, tab)) luaL_error(L, "%s: option 'moments' must be a table of functions of the state", fn);
        lua_newtable(L);
        names = lua_gettop(L);
        lua_pushnil(L);
        while (lua_next(L, tab)) {
            if (lua_type(L, -2) != LUA_TSTRING || !lua_isfunction(L, -1))
                luaL_error(L, "%s: moments must map names to functions of the state", fn);
            lua_pop(L, 1);
            lua_pushvalue(L, -1);
            lua_rawseti(L, names, ++n);
        }
        sort_names(L, names, n);
        nodes = plm_l_scratch(L, (size_t)n * sizeof *nodes);
        for (k = 0; k < n; k++) {
            lua_rawgeti(L, names, k + 1);
            lua_gettable(L, tab);
            push_state(L, a->holder, a->g, PLM_GRP_X, a->m->dim);
            plm_l_trace_call(L, 1, 1, "moments");
            nodes[k] = plm_l_tonode(L, -1, a->g, "a moment");
            lua_pop(L, 1);
        }
        a->o.moments = compile(L, a->g, n, nodes, 1u << PLM_GRP_X);
        a->nmom = n;
        lua_pop(L, 1);   /* scratch */
        lua_remove(L, tab);
        a->momnames = lua_gettop(L);   /* the sorted names, for the results */
    } else if (opts)
        lua_pop(L, 1);
    if (plm_pf_bytes(a->m, a->T, &a->o, a->nmom) > 16e9)
        luaL_error(L, "%s: %.1f GB would be needed (particles x steps%s)", fn, plm_pf_bytes(a->m, a->T, &a->o, a->nmom) / 1e9,
                   a->o.history ? " with history" : "");
}

/* Set the parameters from opts.params for the run (restore() puts the model's own back); every parameter
** must have a value. Called last, so that no error between here and the run leaves them changed. */
static void pf_params(lua_State *L, int opts, const char *fn, pf_args *a)
{
    int k;
    a->saved = plm_l_scratch(L, ((size_t)a->m->np + 1) * sizeof *a->saved);
    memcpy(a->saved, a->m->params, (size_t)a->m->np * sizeof *a->saved);
    if (opts && lua_getfield(L, opts, "params") != LUA_TNIL) {
        if (!lua_istable(L, -1)) luaL_error(L, "%s: option 'params' must be a table of values", fn);
        lua_getfield(L, a->info, "names");
        plm_l_set_named(L, lua_gettop(L) - 1, lua_gettop(L), a->m->params, a->m->np, fn);
        lua_pop(L, 1);
    }
    if (opts) lua_pop(L, 1);
    lua_getfield(L, a->info, "names");
    for (k = 0; k < a->m->np; k++)
        if (isnan(a->m->params[k])) {
            lua_rawgeti(L, -1, k + 1);
            restore(a);
            luaL_error(L, "%s: parameter '%s' has no value (pass params = {%s = ...})", fn, lua_tostring(L, -1),
                       lua_tostring(L, -1));
        }
    lua_pop(L, 1);
}

/* v[(t-1)*dim + k] as a list over t of numbers (dim 1) or of dim-lists */
static void push_series(lua_State *L, const double *v, long T, int dim)
{
    long t;
    int k;
    lua_createtable(L, (int)T, 0);
    for (t = 0; t < T; t++) {
        if (dim == 1)
            lua_pushnumber(L, v[t]);
        else {
            lua_createtable(L, dim, 0);
            for (k = 0; k < dim; k++) {
                lua_pushnumber(L, v[(size_t)t * (size_t)dim + (size_t)k]);
                lua_rawseti(L, -2, k + 1);
            }
        }
        lua_rawseti(L, -2, t + 1);
    }
}

/* particles-per-time arrays: component k of every particle at every time as a T x N plume.array */
static void push_particles(lua_State *L, const double *xs, long T, size_t N, int dim)
{
    int k;
    if (dim > 1) lua_createtable(L, dim, 0);
    for (k = 0; k < dim; k++) {
        plm_l_array *a = plm_l_newarray(L, (size_t)T * N);
        long t;
        a->rows = (size_t)T;
        a->cols = N;
        for (t = 0; t < T; t++)
            memcpy(a->data + (size_t)t * N, xs + ((size_t)t * (size_t)dim + (size_t)k) * N, N * sizeof *xs);
        if (dim > 1) lua_rawseti(L, -2, k + 1);
    }
}

static int l_result_tostring(lua_State *L)
{
    lua_getfield(L, 1, "method");
    lua_getfield(L, 1, "particles");
    lua_getfield(L, 1, "logz");
    lua_getfield(L, 1, "T");
    lua_pushfstring(L, "particle filter (%s, %d particles, %d steps): logz = %f", lua_tostring(L, -4),
                    (int)lua_tointeger(L, -3), (int)lua_tointeger(L, -1), lua_tonumber(L, -2));
    return 1;
}

/* The filter's results as a table on the stack. */
static void push_result(lua_State *L, const pf_args *a, const plm_pf_result *r)
{
    long t;
    int j, nres = 0;
    lua_createtable(L, 0, 16);
    lua_pushnumber(L, r->logz);
    lua_setfield(L, -2, "logz");
    plm_l_pushvec(L, r->logz_inc, (size_t)r->T);
    lua_setfield(L, -2, "logz_increments");
    plm_l_pushvec(L, r->ess, (size_t)r->T);
    lua_setfield(L, -2, "ess");
    lua_createtable(L, (int)r->T, 0);
    for (t = 0; t < r->T; t++) {
        lua_pushboolean(L, r->resampled[t]);
        lua_rawseti(L, -2, t + 1);
        nres += r->resampled[t];
    }
    lua_setfield(L, -2, "resampled");
    lua_pushinteger(L, nres);
    lua_setfield(L, -2, "resamples");
    push_series(L, r->means, r->T, r->dim);
    lua_setfield(L, -2, "means");
    push_series(L, r->vars, r->T, r->dim);
    lua_setfield(L, -2, "vars");
    if (r->nmom) {
        lua_pushvalue(L, a->momnames);
        lua_createtable(L, 0, r->nmom);
        for (j = 0; j < r->nmom; j++) {
            lua_rawgeti(L, -2, j + 1);
            lua_createtable(L, (int)r->T, 0);
            for (t = 0; t < r->T; t++) {
                lua_pushnumber(L, r->moments[(size_t)t * (size_t)r->nmom + (size_t)j]);
                lua_rawseti(L, -2, t + 1);
            }
            lua_settable(L, -3);
        }
        lua_setfield(L, -3, "moments");
        lua_pop(L, 1);
    }
    if (r->xs) {
        plm_l_array *lw, *an;
        size_t i, n = (size_t)r->T * r->N;
        push_particles(L, r->xs, r->T, r->N, r->dim);
        lua_setfield(L, -2, "particles_history");
        lw = plm_l_newarray(L, n);
        lw->rows = (size_t)r->T;
        lw->cols = r->N;
        memcpy(lw->data, r->logw, n * sizeof *lw->data);
        lua_setfield(L, -2, "logw");
        an = plm_l_newarray(L, n);
        an->rows = (size_t)r->T;
        an->cols = r->N;
        for (i = 0; i < n; i++) an->data[i] = (double)r->anc[i] + 1;
        lua_setfield(L, -2, "ancestors");
    }
    lua_pushstring(L, pf_methods[a->o.method]);
    lua_setfield(L, -2, "method");
    lua_pushinteger(L, (lua_Integer)r->N);
    lua_setfield(L, -2, "particles");
    lua_pushinteger(L, r->T);
    lua_setfield(L, -2, "T");
    lua_pushstring(L, plm_resample_scheme_name(a->o.scheme));
    lua_setfield(L, -2, "resample");
    lua_pushinteger(L, (lua_Integer)a->o.seed);
    lua_setfield(L, -2, "seed");
    if (luaL_newmetatable(L, "plume.pfilter_result")) {
        lua_pushcfunction(L, l_result_tostring);
        lua_setfield(L, -2, "__tostring");
    }
    lua_setmetatable(L, -2);
}

static const char *const filter_options[] = {"particles", "method", "resample", "ess_threshold", "seed", "threads",
                                             "history", "moments", "lookahead", "params", "quiet", "distribute", NULL};

/* Run the filter; on success *r holds the result (free it) and the parameters are restored. */
/* The filter at the run's parameters, which stay set when keep is 1 (a smoother runs next at them). */
static void run_filter_at(lua_State *L, pf_args *a, plm_pf_result *r, int keep)
{
    plm_ctx ctx;
    plm_status st;
    plm_ctx_clear(&ctx);
    plm_interrupt_clear();
    st = plm_pf_run(&ctx, a->m, a->T, a->ys, &a->o, r);
    if (st == PLM_EINTR) plm_interrupt_clear();
    if (st) fail_restore(L, a, &ctx);
    if (!keep) restore(a);
}

static void run_filter(lua_State *L, pf_args *a, plm_pf_result *r)
{
    run_filter_at(L, a, r, 0);
}

/* plume._pfilter(ssm, ys, opts): what plume.smc(ssm, ys, opts) runs */
static int l_pfilter(lua_State *L)
{
    const char *fn = "plume.smc";
    int opts = lua_istable(L, 3) ? 3 : 0;
    pf_args a;
    plm_pf_result r;
    if (!lua_isnoneornil(L, 3) && !opts) return luaL_error(L, "%s: options must be a table (got %s)", fn, luaL_typename(L, 3));
    plm_l_checkopts(L, opts, fn, filter_options);
    pf_setup(L, opts, fn, &a, 0);
    pf_params(L, opts, fn, &a);
    run_filter(L, &a, &r);
    push_result(L, &a, &r);
    plm_pf_result_free(&r);
    return 1;
}

/* ssm:loglik(ys [, opts]): the filter's log evidence */
static int l_ssm_loglik(lua_State *L)
{
    const char *fn = "ssm:loglik";
    int opts = lua_istable(L, 3) ? 3 : 0;
    pf_args a;
    plm_pf_result r;
    double lz;
    if (!lua_isnoneornil(L, 3) && !opts) return luaL_error(L, "%s: options must be a table (got %s)", fn, luaL_typename(L, 3));
    plm_l_checkopts(L, opts, fn, filter_options);
    pf_setup(L, opts, fn, &a, 0);
    a.o.history = 0;
    pf_params(L, opts, fn, &a);
    run_filter(L, &a, &r);
    lz = r.logz;
    plm_pf_result_free(&r);
    lua_pushnumber(L, lz);
    return 1;
}

static const char *const smooth_options[] = {"method", "particles", "filter", "resample", "ess_threshold", "seed",
                                             "threads", "params", "trajectories", "rejection", "bound", "max_tries",
                                             "functional", "backward_draws", "lookahead", "quiet", "online",
                                             "mh_steps", "distribute", NULL};

/* plume.smooth(ssm, ys, {method = "ffbs" | "paris", ...}) */
static int l_smooth(lua_State *L)
{
    const char *fn = "plume.smooth", *method;
    int opts = lua_istable(L, 3) ? 3 : 0, paris, rej_default, K = 0, hnodes[64], scalar = 1, online;
    double out[64];
    pf_args a;
    plm_pf_result r;
    plm_smooth_opts so;
    plm_smooth_stats stats;
    plm_ssm_gauss G;
    plm_prog *hprog = NULL;
    plm_ctx ctx;
    plm_status st;
    lua_Integer M;
    if (!lua_isnoneornil(L, 3) && !opts) return luaL_error(L, "%s: options must be a table (got %s)", fn, luaL_typename(L, 3));
    plm_l_checkopts(L, opts, fn, smooth_options);
    method = plm_l_optstr(L, opts, fn, "method", "ffbs");
    if (strcmp(method, "ffbs") && strcmp(method, "paris"))
        return luaL_error(L, "%s: unknown method '%s' (\"ffbs\", \"paris\")", fn, method);
    paris = method[0] == 'p';
    plm_smooth_opts_default(&so);
    so.max_tries = (int)plm_l_optint(L, opts, fn, "max_tries", 10);
    if (so.max_tries < 0) return luaL_error(L, "%s: option 'max_tries' must be >= 0 (got %d)", fn, so.max_tries);
    M = plm_l_optint(L, opts, fn, "trajectories", 0);
    if (M < 0 || M > 100000000) return luaL_error(L, "%s: option 'trajectories' must be in 1..1e8 (got %d)", fn, (int)M);
    so.mh_steps = (int)plm_l_optint(L, opts, fn, "mh_steps", 5);
    if (so.mh_steps < 0 || so.mh_steps > 1000)
        return luaL_error(L, "%s: option 'mh_steps' must be in 0..1000 (got %d)", fn, so.mh_steps);
    so.Ntilde = (int)plm_l_optint(L, opts, fn, "backward_draws", 2);
    if (so.Ntilde < 1 || so.Ntilde > 1000)
        return luaL_error(L, "%s: option 'backward_draws' must be in 1..1000 (got %d)", fn, so.Ntilde);
    pf_setup(L, opts, fn, &a, 1);
    so.seed = a.o.seed;
    so.nthreads = a.o.nthreads;
    plm_ctx_clear(&ctx);
    /* the bound: given, or derived for a Gaussian transition */
    so.log_bound_const = plm_l_optnum(L, opts, fn, "bound", NAN);
    rej_default = !isnan(so.log_bound_const);
    if (!rej_default && plm_ssm_gauss_init(&ctx, a.m, &G) == PLM_OK && G.const_cov) {
        so.gauss = &G;
        rej_default = 1;
    }
    so.rejection = plm_l_optbool(L, opts, fn, "rejection", rej_default);
    if (so.rejection && !rej_default)
        return luaL_error(L, "%s: rejection sampling needs a bound of the transition density: plume derives it for "
                             "Gaussian transitions whose covariance does not depend on the state; give bound = log "
                             "of an upper bound, or rejection = false", fn);
    so.M = M ? (size_t)M : (a.o.N < 100 ? a.o.N : 100);
    if (paris) {
        if (!opts || lua_getfield(L, opts, "functional") != LUA_TFUNCTION)
            return luaL_error(L, "%s: method \"paris\" needs functional = function(t, xprev, x) ... end", fn);
        plm_l_pushsym(L, a.holder, plm_graph_input(a.g, PLM_GRP_T, 0));
        push_state(L, a.holder, a.g, PLM_GRP_X, a.m->dim);
        push_state(L, a.holder, a.g, PLM_GRP_Z, a.m->dim);
        plm_l_trace_call(L, 3, 1, "functional");
        scalar = lua_type(L, -1) != LUA_TTABLE;
        K = result_nodes(L, -1, a.g, "functional", hnodes, 64);
        hprog = compile(L, a.g, K, hnodes, (1u << PLM_GRP_X) | (1u << PLM_GRP_Z));
        lua_pop(L, 1);
    }
    online = paris && plm_l_optbool(L, opts, fn, "online", 1);
    pf_params(L, opts, fn, &a);
    if (online) {   /* PaRIS inside the filter: no history */
        plm_interrupt_clear();
        a.o.history = 0;
        st = plm_paris_online(&ctx, a.m, a.T, a.ys, &a.o, hprog, &so, out, &stats, &r);
        if (st == PLM_EINTR) plm_interrupt_clear();
        if (st) fail_restore(L, &a, &ctx);
    } else
        run_filter_at(L, &a, &r, 1);
    if (paris) {
        if (!online && (st = plm_paris(&ctx, a.m, &r, hprog, &so, out, &stats))) {
            plm_pf_result_free(&r);
            fail_restore(L, &a, &ctx);
        }
        restore(&a);
        lua_createtable(L, 0, 9);
        lua_pushboolean(L, online);
        lua_setfield(L, -2, "online");
        if (scalar)
            lua_pushnumber(L, out[0]);
        else
            plm_l_pushvec(L, out, (size_t)K);
        lua_setfield(L, -2, "value");
    } else {
        size_t dim = (size_t)a.m->dim, T = (size_t)a.T;
        double *paths = malloc(T * dim * so.M * sizeof *paths), *means = malloc(T * dim * sizeof *means);
        double *vars = malloc(T * dim * sizeof *vars);
        if (!paths || !means || !vars) {
            free(paths), free(means), free(vars);
            plm_pf_result_free(&r);
            restore(&a);
            return luaL_error(L, "%s: out of memory (%zu trajectories of %zu steps)", fn, so.M, T);
        }
        plm_interrupt_clear();
        st = plm_ffbs(&ctx, a.m, &r, &so, paths, means, vars, &stats);
        restore(&a);
        if (st) {
            free(paths), free(means), free(vars);
            plm_pf_result_free(&r);
            return plm_l_fail(L, &ctx);
        }
        lua_createtable(L, 0, 8);
        push_series(L, means, a.T, a.m->dim);
        lua_setfield(L, -2, "means");
        push_series(L, vars, a.T, a.m->dim);
        lua_setfield(L, -2, "vars");
        push_particles(L, paths, a.T, so.M, a.m->dim);
        lua_setfield(L, -2, "trajectories");
        free(paths), free(means), free(vars);
    }
    lua_pushnumber(L, r.logz);
    lua_setfield(L, -2, "logz");
    lua_pushstring(L, method);
    lua_setfield(L, -2, "method");
    lua_pushboolean(L, so.rejection);
    lua_setfield(L, -2, "rejection");
    lua_createtable(L, 0, 3);
    lua_pushinteger(L, (lua_Integer)stats.proposals);
    lua_setfield(L, -2, "proposals");
    lua_pushinteger(L, (lua_Integer)stats.accepted);
    lua_setfield(L, -2, "accepted");
    lua_pushinteger(L, (lua_Integer)stats.exact);
    lua_setfield(L, -2, "exact");
    lua_pushinteger(L, (lua_Integer)stats.mh);
    lua_setfield(L, -2, "mh");
    lua_setfield(L, -2, "backward");
    plm_pf_result_free(&r);
    return 1;
}

/* ssm.__index with :loglik added in front of l_ssm.c's own __index (upvalue 1) */
static int l_ssm_index(lua_State *L)
{
    if (lua_type(L, 2) == LUA_TSTRING && strcmp(lua_tostring(L, 2), "loglik") == 0) {
        lua_pushcfunction(L, l_ssm_loglik);
        return 1;
    }
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, 1);
    return 1;
}

/* plume.smc dispatches on its first argument: a plume.ssm runs the native filter, anything else the program
** engine of l_smc.c. The dispatcher is a C closure holding the original's upvalues at the same indices (so the
** original's C function can run in this very call frame, and every error still blames the caller's line),
** then the original closure itself as the last upvalue. */
static int l_smc_dispatch(lua_State *L)
{
    int last = 1;
    if (plm_l_tossm(L, 1)) return l_pfilter(L);
    while (!lua_isnone(L, lua_upvalueindex(last + 1))) last++;
    return lua_tocfunction(L, lua_upvalueindex(last))(L);
}

void plm_l_open_pfilter(lua_State *L)
{
    int plume = lua_gettop(L);
    lua_pushcfunction(L, l_pfilter);
    lua_setfield(L, plume, "_pfilter");
    lua_pushcfunction(L, l_smooth);
    lua_setfield(L, plume, "smooth");
    if (lua_getfield(L, plume, "smc") == LUA_TFUNCTION && lua_tocfunction(L, -1)) {
        int orig = lua_gettop(L), n = 0;
        while (lua_getupvalue(L, orig, n + 1)) n++;   /* pushes the original's upvalues in order */
        lua_pushvalue(L, orig);
        lua_pushcclosure(L, l_smc_dispatch, n + 1);
        lua_setfield(L, plume, "smc");
    }
    lua_settop(L, plume);
    if (luaL_getmetatable(L, PLM_L_SSM) == LUA_TTABLE) {
        lua_getfield(L, -1, "__index");
        lua_pushcclosure(L, l_ssm_index, 1);
        lua_setfield(L, -2, "__index");
    }
    lua_settop(L, plume);
}
