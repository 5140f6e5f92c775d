/* l_ssm.c -- plume.ssm{ params=, init=, trans=, obs=, dim=, data=, proposal= }: the model functions are traced
** once with symbolic (p, x, t) and compiled (runtime/compiler/ssm.c). The methods are in l_ssm_methods.c. */
#include "lssm.h"
#include "larray.h"
#include "ldist.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define PLM_L_SERIES "plume.series"

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

void plm_l_open_ssm(lua_State *L)
{
    static const luaL_Reg meta[] = {{"__index", plm_l_ssm_index}, {"__tostring", plm_l_ssm_tostring}, {NULL, NULL}};
    static const luaL_Reg smeta[] = {{"__index", l_series_index}, {"__len", l_series_len}, {NULL, NULL}};
    plm_l_newmeta(L, PLM_L_SSM, NULL, meta);
    lua_pop(L, 1);
    luaL_newmetatable(L, PLM_L_SERIES);
    luaL_setfuncs(L, smeta, 0);
    lua_pop(L, 1);
    lua_pushcfunction(L, l_ssm_new);
    lua_setfield(L, -2, "ssm");
}
