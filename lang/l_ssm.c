/* l_ssm.c -- plume.ssm{ params=, init=, trans=, obs=, dim=, data=, proposal= }: the model functions are traced
** once with symbolic (p, x, t) and compiled (runtime/ssm.c); :simulate, :logjoint, :set_params and .params. */
#include "l_expr.h"
#include "larray.h"
#include "ldist.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define PLM_L_SSM "plume.ssm"
#define PLM_L_SERIES "plume.series"
#define MAX_COV 256

/* covariate slots created while tracing: (column, lag) pairs */
typedef struct cov_reg {
    int n;
    int col[MAX_COV], lag[MAX_COV];
} cov_reg;

typedef struct l_series {
    plm_graph *g;
    cov_reg *reg;
    int col;
    const double *v;
    size_t T;
    const char *name;
} l_series;

/* series[t + k] with symbolic t: a covariate slot; series[i] with a number: the plain value */
static int l_series_index(lua_State *L)
{
    l_series *s = luaL_checkudata(L, 1, PLM_L_SERIES);
    plm_l_sym *k = plm_l_tosym(L, 2);
    const int *args;
    int lag = 0, i, slot = -1, op, nargs, grp, idx;
    if (!k) {
        lua_Integer i1 = plm_l_checkint(L, 2, s->name, "index");
        if (i1 < 1 || (size_t)i1 > s->T) return luaL_error(L, "data.%s[%d]: index outside 1..%d", s->name, (int)i1, (int)s->T);
        lua_pushnumber(L, s->v[i1 - 1]);
        return 1;
    }
    if (k->g != s->g) return luaL_error(L, "data.%s: indexed by a symbol of another model", s->name);
    op = plm_graph_node(k->g, k->id, &nargs, &args);
    if (plm_graph_is_input(k->g, k->id, &grp, &idx) && grp == PLM_GRP_T && idx == 0)
        lag = 0;
    else if ((op == PLM_OP_ADD || op == PLM_OP_SUB) && nargs == 2) {
        int a = args[0], b = args[1], tin = plm_graph_input(k->g, PLM_GRP_T, 0);
        double c;
        if (a == tin && plm_graph_is_const(k->g, b, &c) && c == floor(c))
            lag = (int)(op == PLM_OP_ADD ? c : -c);
        else if (op == PLM_OP_ADD && b == tin && plm_graph_is_const(k->g, a, &c) && c == floor(c))
            lag = (int)c;
        else
            goto bad;
    } else
        goto bad;
    for (i = 0; i < s->reg->n; i++)
        if (s->reg->col[i] == s->col && s->reg->lag[i] == lag) slot = i;
    if (slot < 0) {
        if (s->reg->n == MAX_COV) return luaL_error(L, "data: more than %d distinct covariate reads", MAX_COV);
        slot = s->reg->n++;
        s->reg->col[slot] = s->col;
        s->reg->lag[slot] = lag;
    }
    lua_getiuservalue(L, 1, 1);
    plm_l_pushsym(L, -1, plm_graph_input(s->g, PLM_GRP_C, slot));
    return 1;
bad:
    return luaL_error(L, "data.%s: a data column is indexed by the time t, t + k or t - k (k a whole number), "
                         "or by a number", s->name);
}

static int l_series_len(lua_State *L)
{
    l_series *s = luaL_checkudata(L, 1, PLM_L_SERIES);
    lua_pushinteger(L, (lua_Integer)s->T);
    return 1;
}

typedef struct l_ssm {
    plm_ssm *m;
    double *data;
    int xdisc, ydisc;
    cov_reg reg;     /* filled by the series while tracing */
} l_ssm;

/* One traced result as distributions: a distribution, or a table of scalar distributions (independent
** components). Pushes the symdists and returns their count; *dim gets the total dimension, *disc whether
** any is discrete. Errors name the function and where it is defined. */
static int collect(lua_State *L, int idx, plm_graph *g, const char *what, const char *where, int *disc, int *dim)
{
    int nd = 0;
    plm_l_symdist *d;
    idx = lua_absindex(L, idx);
    *disc = 0;
    if ((d = plm_l_tosymdist(L, idx, g))) {
        if (d->d.kind == PLM_DIST_CATEGORICAL || plm_dist_info_of(d->d.kind)->discrete) *disc = 1;
        *dim = plm_symdist_dim(&d->d);
        return 1;
    }
    if (lua_type(L, idx) == LUA_TTABLE && luaL_len(L, idx) > 0) {
        lua_Integer i, n = luaL_len(L, idx);
        for (i = 1; i <= n; i++) {
            lua_geti(L, idx, i);
            d = plm_l_tosymdist(L, -1, g);
            if (!d || plm_symdist_dim(&d->d) != 1)
                luaL_error(L, "ssm: %s (defined at %s) returned a table whose entry %d is not a scalar distribution",
                           what, where, (int)i);
            if (d->d.kind == PLM_DIST_CATEGORICAL || plm_dist_info_of(d->d.kind)->discrete) *disc = 1;
            lua_remove(L, -2);
            nd++;
        }
        *dim = nd;
        return nd;
    }
    return luaL_error(L,
                      "ssm: %s (defined at %s) must return a distribution (or a table of distributions, one per "
                      "component), got %s; a model that cannot be traced can use the dynamic plume.model form",
                      what, where, luaL_typename(L, idx));
}

/* draws and log density at value nodes `at` of the nd symdists on the stack top */
static void build(lua_State *L, plm_graph *g, int nd, int *draws, const int *at, int *lp)
{
    int i, off = 0;
    plm_ctx ctx;
    plm_ctx_clear(&ctx);
    *lp = plm_graph_const(g, 0);
    for (i = 0; i < nd; i++) {
        plm_l_symdist *d = luaL_checkudata(L, -nd + i, PLM_L_SYMDIST);
        int l, k = plm_symdist_dim(&d->d);
        if (draws && plm_l_symdist_sample(&ctx, g, d, draws + off)) plm_l_fail(L, &ctx);
        if (at && plm_l_symdist_logpdf(&ctx, g, d, at + off, &l)) plm_l_fail(L, &ctx);
        if (at) *lp = plm_graph_op(g, PLM_OP_ADD, *lp, l, -1);
        off += k;
    }
}

static void push_state(lua_State *L, int holder, int grp, int dim)
{
    int k;
    if (dim == 1) {
        plm_l_pushsym(L, holder, plm_graph_input(plm_l_testobj(L, holder, PLM_L_GRAPH), grp, 0));
        return;
    }
    lua_createtable(L, dim, 0);
    for (k = 0; k < dim; k++) {
        plm_l_pushsym(L, holder, plm_graph_input(plm_l_testobj(L, holder, PLM_L_GRAPH), grp, k));
        lua_rawseti(L, -2, k + 1);
    }
}

/* the state as the given nodes: a symbol (dim 1) or a table of them */
static void push_nodes(lua_State *L, int holder, const int *nodes, int dim)
{
    int k;
    if (dim == 1) {
        plm_l_pushsym(L, holder, nodes[0]);
        return;
    }
    lua_createtable(L, dim, 0);
    for (k = 0; k < dim; k++) {
        plm_l_pushsym(L, holder, nodes[k]);
        lua_rawseti(L, -2, k + 1);
    }
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* sorted string keys of the table at idx into a new Lua array pushed on the stack; returns the count */
static int sorted_keys(lua_State *L, int idx, const char *fn, const char *arg)
{
    int n = 0, i;
    const char **k;
    idx = lua_absindex(L, idx);
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        if (lua_type(L, -2) != LUA_TSTRING) luaL_error(L, "%s: %s keys must be names", fn, arg);
        n++;
        lua_pop(L, 1);
    }
    k = plm_l_scratch(L, (size_t)(n + 1) * sizeof *k);
    i = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        k[i++] = lua_tostring(L, -2);
        lua_pop(L, 1);
    }
    qsort(k, (size_t)n, sizeof *k, cmp_str);
    lua_createtable(L, n, 0);
    for (i = 0; i < n; i++) {
        lua_pushstring(L, k[i]);
        lua_rawseti(L, -2, i + 1);
    }
    lua_remove(L, -2);
    return n;
}

static int get_fn(lua_State *L, int opts, const char *key, int required)
{
    int t = lua_getfield(L, opts, key);
    if (t == LUA_TNIL && !required) {
        lua_pop(L, 1);
        return 0;
    }
    if (t != LUA_TFUNCTION) luaL_error(L, "ssm: option '%s' must be a function (got %s)", key, lua_typename(L, t));
    return 1;
}

static int l_ssm_new(lua_State *L)
{
    int opts = 1, holder, info, ptab, np, i, dim, nd, disc, ncols = 0, top, rdim;
    plm_graph *g;
    cov_reg *reg;
    plm_ssm_spec spec;
    int *nodes, *init_x, *trans_x, *obs_y, *prop_x = NULL, zin[64], yin[64], ydim;
    size_t data_T = 0;
    char where[256];
    l_ssm *S;
    plm_ctx ctx;
    static const char *const fields[] = {"params", "data", "dim", "init", "trans", "obs", "proposal", NULL};
    lua_Integer dim_opt;
    plm_ctx_clear(&ctx);
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    plm_l_checkopts(L, opts, "ssm", fields);
    dim_opt = plm_l_optint(L, opts, "ssm", "dim", 1);
    if (dim_opt < 1 || dim_opt > 64) return luaL_error(L, "ssm: dim must be in 1..64 (got %I)", dim_opt);
    dim = (int)dim_opt;
    memset(&spec, 0, sizeof spec);
    g = plm_l_newgraph(L);
    holder = lua_gettop(L);
    lua_newtable(L);   /* info: names, priors, values, holder */
    info = lua_gettop(L);
    lua_pushvalue(L, holder);
    lua_setfield(L, info, "holder");
    S = plm_gc_alloc(sizeof *S);
    if (!S) return luaL_error(L, "plume: out of memory");
    reg = &S->reg;

    /* parameters: numbers (values) or distributions (priors) */
    if (lua_getfield(L, opts, "params") == LUA_TNIL) {
        lua_pop(L, 1);
        lua_newtable(L);
    }
    if (!lua_istable(L, -1)) return luaL_error(L, "ssm: params must be a table (got %s)", luaL_typename(L, -1));
    np = sorted_keys(L, -1, "ssm", "params");
    lua_setfield(L, info, "names");
    lua_newtable(L);
    ptab = lua_gettop(L);   /* the symbolic p */
    lua_newtable(L);        /* priors */
    lua_newtable(L);        /* values */
    lua_getfield(L, info, "names");
    for (i = 0; i < np; i++) {
        const char *name;
        lua_geti(L, -1, i + 1);
        name = lua_tostring(L, -1);
        lua_getfield(L, ptab - 1, name);   /* params[name] */
        if (lua_type(L, -1) == LUA_TNUMBER) {
            lua_pushvalue(L, -1);
            lua_setfield(L, ptab + 2, name);
        } else if (plm_l_testobj(L, -1, PLM_L_DIST)) {
            lua_pushvalue(L, -1);
            lua_setfield(L, ptab + 1, name);
        } else
            return luaL_error(L, "ssm: params.%s must be a number (a value) or a distribution (a prior), got %s", name,
                              luaL_typename(L, -1));
        lua_pop(L, 1);
        plm_l_pushsym(L, holder, plm_graph_input(g, PLM_GRP_P, i));
        lua_setfield(L, ptab, name);
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    lua_setfield(L, info, "values");
    lua_setfield(L, info, "priors");
    lua_remove(L, ptab - 1);   /* the params table */
    ptab = lua_gettop(L);

    /* data columns: p.<name>[t] reads a covariate */
    if (lua_getfield(L, opts, "data") != LUA_TNIL) {
        int c, dtab = lua_gettop(L);
        if (!lua_istable(L, dtab)) return luaL_error(L, "ssm: data must be a table of named columns");
        ncols = sorted_keys(L, dtab, "ssm", "data");
        for (c = 0; c < ncols; c++) {
            size_t n;
            const char *name;
            double *v;
            l_series *sr;
            lua_geti(L, dtab + 1, c + 1);
            name = lua_tostring(L, -1);
            lua_getfield(L, dtab, name);
            v = plm_l_checkvec(L, lua_gettop(L), "ssm", "a data column", &n, 1);
            if (c == 0) {
                data_T = n;
                S->data = plm_gc_alloc_atomic((size_t)ncols * (n + 1) * sizeof(double));
                if (!S->data) return luaL_error(L, "plume: out of memory");
            } else if (n != data_T)
                return luaL_error(L, "ssm: data.%s has %d values, other columns have %d", name, (int)n, (int)data_T);
            memcpy(S->data + (size_t)c * data_T, v, n * sizeof *v);
            lua_pop(L, 2);
            if (lua_getfield(L, ptab, name) != LUA_TNIL)
                return luaL_error(L, "ssm: data.%s has the name of a parameter", name);
            lua_pop(L, 1);
            sr = lua_newuserdatauv(L, sizeof *sr, 2);   /* user values: the graph, later the ssm */
            sr->g = g;
            sr->reg = reg;
            sr->col = c;
            sr->v = S->data + (size_t)c * data_T;
            sr->T = data_T;
            sr->name = name;   /* kept alive by info.datanames */
            lua_pushvalue(L, holder);
            lua_setiuservalue(L, -2, 1);
            luaL_setmetatable(L, PLM_L_SERIES);
            lua_setfield(L, ptab, name);
            lua_pop(L, 1);
        }
        lua_setfield(L, info, "datanames");
    }
    lua_pop(L, 1);
    nodes = plm_l_scratch(L, 4 * 64 * sizeof(int));
    init_x = nodes;
    trans_x = nodes + 64;
    obs_y = nodes + 128;
    top = lua_gettop(L);

    for (i = 0; i < dim; i++) zin[i] = plm_graph_input(g, PLM_GRP_Z, i);

    /* init(p, t=1) */
    get_fn(L, opts, "init", 1);
    plm_l_funcwhere(L, -1, where, sizeof where);
    lua_pushvalue(L, ptab);
    lua_pushinteger(L, 1);
    plm_l_trace_call(L, 2, 1, "ssm init");
    nd = collect(L, -1, g, "init", where, &disc, &rdim);
    if (rdim != dim)
        return luaL_error(L, "ssm: init (defined at %s) returned a distribution of dimension %d, but dim = %d", where,
                          rdim, dim);
    build(L, g, nd, init_x, zin, &spec.init_lp);
    lua_settop(L, top);
    S->xdisc = disc;

    /* trans(p, x, t) */
    get_fn(L, opts, "trans", 1);
    plm_l_funcwhere(L, -1, where, sizeof where);
    lua_pushvalue(L, ptab);
    push_state(L, holder, PLM_GRP_X, dim);
    plm_l_pushsym(L, holder, plm_graph_input(g, PLM_GRP_T, 0));
    plm_l_trace_call(L, 3, 1, "ssm trans");
    nd = collect(L, -1, g, "trans", where, &disc, &rdim);
    if (rdim != dim)
        return luaL_error(L, "ssm: trans (defined at %s) returned a distribution of dimension %d, but dim = %d", where,
                          rdim, dim);
    build(L, g, nd, trans_x, zin, &spec.trans_lp);
    lua_settop(L, top);

    /* obs(p, x, t) */
    get_fn(L, opts, "obs", 1);
    plm_l_funcwhere(L, -1, where, sizeof where);
    lua_pushvalue(L, ptab);
    push_state(L, holder, PLM_GRP_X, dim);
    plm_l_pushsym(L, holder, plm_graph_input(g, PLM_GRP_T, 0));
    plm_l_trace_call(L, 3, 1, "ssm obs");
    nd = collect(L, -1, g, "obs", where, &disc, &ydim);
    if (ydim > 64) return luaL_error(L, "ssm: observations of dimension %d (at most 64)", ydim);
    for (i = 0; i < ydim; i++) yin[i] = plm_graph_input(g, PLM_GRP_Y, i);
    build(L, g, nd, obs_y, yin, &spec.obs_lp);
    lua_settop(L, top);
    S->ydisc = disc;

    /* obs again at the init and transition draws: the fused bootstrap step */
    for (i = 0; i < 2; i++) {
        int *at = i ? trans_x : init_x, ignore;
        get_fn(L, opts, "obs", 1);
        lua_pushvalue(L, ptab);
        push_nodes(L, holder, at, dim);
        plm_l_pushsym(L, holder, plm_graph_input(g, PLM_GRP_T, 0));   /* bound to 1 for the init step */
        plm_l_trace_call(L, 3, 1, "ssm obs");
        nd = collect(L, -1, g, "obs", where, &ignore, &rdim);
        if (rdim != ydim) return luaL_error(L, "ssm: obs returned values of different dimensions when traced twice");
        build(L, g, nd, NULL, yin, i ? &spec.boot_lw : &spec.boot1_lw);
        lua_settop(L, top);
    }

    /* proposal(p, x, y, t), optional */
    if (get_fn(L, opts, "proposal", 0)) {
        plm_l_funcwhere(L, -1, where, sizeof where);
        lua_pushvalue(L, ptab);
        push_state(L, holder, PLM_GRP_X, dim);
        push_state(L, holder, PLM_GRP_Y, ydim);
        plm_l_pushsym(L, holder, plm_graph_input(g, PLM_GRP_T, 0));
        plm_l_trace_call(L, 4, 1, "ssm proposal");
        nd = collect(L, -1, g, "proposal", where, &disc, &rdim);
        if (rdim != dim)
            return luaL_error(L, "ssm: proposal (defined at %s) returned a distribution of dimension %d, but dim = %d",
                              where, rdim, dim);
        prop_x = nodes + 192;
        build(L, g, nd, prop_x, zin, &spec.prop_lp);
        build(L, g, nd, NULL, prop_x, &spec.prop_lq);
        lua_settop(L, top);
        /* the guided step's weight at the proposal draws: trans and obs traced again there */
        {
            int tlp, olp, ignore;
            get_fn(L, opts, "trans", 1);
            lua_pushvalue(L, ptab);
            push_state(L, holder, PLM_GRP_X, dim);
            plm_l_pushsym(L, holder, plm_graph_input(g, PLM_GRP_T, 0));
            plm_l_trace_call(L, 3, 1, "ssm trans");
            nd = collect(L, -1, g, "trans", where, &ignore, &rdim);
            build(L, g, nd, NULL, prop_x, &tlp);
            lua_settop(L, top);
            get_fn(L, opts, "obs", 1);
            lua_pushvalue(L, ptab);
            push_nodes(L, holder, prop_x, dim);
            plm_l_pushsym(L, holder, plm_graph_input(g, PLM_GRP_T, 0));
            plm_l_trace_call(L, 3, 1, "ssm obs");
            nd = collect(L, -1, g, "obs", where, &ignore, &rdim);
            build(L, g, nd, NULL, yin, &olp);
            lua_settop(L, top);
            spec.prop_lw = plm_graph_op(g, PLM_OP_SUB, plm_graph_op(g, PLM_OP_ADD, tlp, olp, -1), spec.prop_lq, -1);
        }
    }

    spec.g = g;
    spec.dim = dim;
    spec.ydim = ydim;
    spec.np = np;
    spec.init_x = init_x;
    spec.trans_x = trans_x;
    spec.obs_y = obs_y;
    spec.prop_x = prop_x;
    spec.ncov = reg->n;
    spec.cov_col = reg->col;
    spec.cov_lag = reg->lag;
    if (plm_ssm_new(&ctx, &spec, &S->m)) return plm_l_fail(L, &ctx);
    if (ncols) plm_ssm_set_data(S->m, S->data, ncols, data_T);
    /* parameter values */
    lua_getfield(L, info, "names");
    lua_getfield(L, info, "values");
    for (i = 0; i < np; i++) {
        lua_geti(L, -2, i + 1);
        lua_gettable(L, -2);
        S->m->params[i] = lua_isnumber(L, -1) ? lua_tonumber(L, -1) : NAN;
        lua_pop(L, 1);
    }
    lua_pop(L, 2);
    lua_pushvalue(L, ptab);
    lua_setfield(L, info, "p");
    plm_l_pushobj(L, S, PLM_L_SSM);
    lua_pushvalue(L, info);
    lua_setiuservalue(L, -2, 1);
    /* a series kept by the user (through p) keeps the ssm, whose memory holds its values and slots */
    if (ncols) {
        lua_getfield(L, info, "datanames");
        for (i = 1; i <= ncols; i++) {
            lua_geti(L, -1, i);
            lua_gettable(L, ptab);
            lua_pushvalue(L, -3);
            lua_setiuservalue(L, -2, 2);
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
    }
    return 1;
}

plm_ssm *plm_l_tossm(lua_State *L, int idx)
{
    l_ssm *S = plm_l_testobj(L, idx, PLM_L_SSM);
    return S ? S->m : NULL;
}

static l_ssm *check_ssm(lua_State *L, int idx, const char *fn)
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
    l_ssm *S = check_ssm(L, 1, "ssm:set_params");
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
    l_ssm *S = check_ssm(L, 1, "ssm:simulate");
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
    l_ssm *S = check_ssm(L, 1, "ssm:logjoint");
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
    l_ssm *S = check_ssm(L, 1, "ssm:logjoint_grad");
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

static int l_ssm_index(lua_State *L)
{
    l_ssm *S = check_ssm(L, 1, "ssm");
    const char *k = luaL_checkstring(L, 2);
    int i;
    if (strcmp(k, "params") == 0) {
        /* name -> current value, or the prior when there is none */
        lua_newtable(L);
        lua_getiuservalue(L, 1, 1);
        lua_getfield(L, -1, "names");
        lua_getfield(L, -2, "priors");
        for (i = 0; i < S->m->np; i++) {
            lua_geti(L, -2, i + 1);
            if (isnan(S->m->params[i])) {
                lua_pushvalue(L, -1);
                lua_gettable(L, -3);
            } else
                lua_pushnumber(L, S->m->params[i]);
            lua_settable(L, -6);
        }
        lua_pop(L, 3);
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

static int l_ssm_tostring(lua_State *L)
{
    l_ssm *S = check_ssm(L, 1, "ssm");
    lua_pushfstring(L, "plume.ssm(dim=%d, ydim=%d, %d parameters%s)", S->m->dim, S->m->ydim, S->m->np,
                    S->m->prop_sample ? ", proposal" : "");
    return 1;
}

void plm_l_open_ssm(lua_State *L)
{
    static const luaL_Reg meta[] = {{"__index", l_ssm_index}, {"__tostring", l_ssm_tostring}, {NULL, NULL}};
    static const luaL_Reg smeta[] = {{"__index", l_series_index}, {"__len", l_series_len}, {NULL, NULL}};
    plm_l_newmeta(L, PLM_L_SSM, NULL, meta);
    lua_pop(L, 1);
    luaL_newmetatable(L, PLM_L_SERIES);
    luaL_setfuncs(L, smeta, 0);
    lua_pop(L, 1);
    lua_pushcfunction(L, l_ssm_new);
    lua_setfield(L, -2, "ssm");
}
