/* l_bffg.c -- backward filtering, forward guiding from Lua: the kernels (plume.markov_kernel.*) are in
** l_mkernel.c; here plume.dag() with g:root / g:kernel / g:observe / g:loglik, plume.tree.newick(text) with
** tree:dag{...}, and plume.bffg(g, obs, opts). Lua describes the model once; the filter and the guided draws run
** in C (runtime/bffg.h). Discrete states are 1-based here, 0-based in C. */
#include "lmodel.h"
#include "lbffg.h"
#include "expr_native.h"
#include "l_expr.h"
#include "larray.h"
#include "ldist.h"

#include <math.h>
#include <string.h>

#define DAG_META "plume.dag"
#define TREE_META "plume.tree"

/* ---- values ------------------------------------------------------------------------------------------- */

/* A value for a node with kernel k from the Lua value at idx into x (width doubles; discrete 1-based -> 0-based). */
static void read_value(lua_State *L, int idx, const plm_bffg_kernel *k, double *x, const char *fn, const char *node)
{
    int dis, dout;
    plm_bffg_kernel_info(k, NULL, NULL, &dis, &dout);
    if (dis) {
        lua_Integer s;
        int ok;
        s = lua_tointegerx(L, idx, &ok);
        if (!ok || lua_type(L, idx) != LUA_TNUMBER || s < 1 || s > dout)
            luaL_error(L, "%s: the value of '%s' must be a state in 1..%d (got %s)", fn, node, dout, luaL_tolstring(L, idx, NULL));
        x[0] = (double)(s - 1);
    } else if (dout == 1 && lua_type(L, idx) == LUA_TNUMBER) {
        x[0] = lua_tonumber(L, idx);
    } else {
        size_t n;
        double *v = plm_l_checkvec(L, idx, fn, node, &n, 0);
        if (n != (size_t)dout) luaL_error(L, "%s: the value of '%s' must have %d entries (got %d)", fn, node, dout, (int)n);
        memcpy(x, v, n * sizeof *x);
        lua_pop(L, 1);
    }
}

/* ---- dags --------------------------------------------------------------------------------------------- */

static plm_bffg_model *check_dag(lua_State *L, int idx, const char *fn)
{
    return plm_l_checkobj(L, idx, DAG_META, fn, "the model (a plume.dag)");
}

static int l_dag_new(lua_State *L)
{
    plm_bffg_model *m;
    plm_ctx ctx;
    plm_ctx_clear(&ctx);
    if (plm_bffg_model_new(&ctx, &m)) return plm_l_fail(L, &ctx);
    plm_l_pushobj(L, m, DAG_META);
    return 1;
}

static const char *check_name(lua_State *L, int idx, const char *fn)
{
    if (lua_type(L, idx) != LUA_TSTRING) luaL_error(L, "%s: the node name must be a string (got %s)", fn, luaL_typename(L, idx));
    return lua_tostring(L, idx);
}

static int find_parent(lua_State *L, const plm_bffg_model *m, int idx, const char *fn)
{
    const char *p = check_name(L, idx, fn);
    int i = plm_bffg_find(m, p);
    if (i < 0) luaL_error(L, "%s: there is no node '%s' (add the parent first)", fn, p);
    return i;
}

/* The prior of a root from a plume.dist (normal, mvnormal, categorical), a kernel with no input, or a fixed value
** (a number or a list of numbers). */
static plm_bffg_kernel *root_prior(lua_State *L, int idx, const char *fn)
{
    plm_bffg_kernel *k = NULL;
    plm_dist *d;
    plm_ctx ctx;
    plm_ctx_clear(&ctx);
    if ((k = plm_l_testobj(L, idx, KERNEL_META))) {
        int din;
        plm_bffg_kernel_info(k, NULL, &din, NULL, NULL);
        if (din) luaL_error(L, "%s: a root's kernel must be a prior (no input); use a plume.dist or a value", fn);
        return k;
    }
    if ((d = plm_l_testobj(L, idx, PLM_L_DIST))) {
        int K = d->K, i, j;
        double *Q;
        switch (d->kind) {
        case PLM_DIST_NORMAL: {
            double var = d->p[1] * d->p[1];
            if (plm_bffg_kernel_linear_gaussian(&ctx, 1, 0, NULL, &d->p[0], &var, &k)) plm_l_fail(L, &ctx);
            return k;
        }
        case PLM_DIST_MVNORMAL:
            Q = plm_l_scratch(L, (size_t)K * K * sizeof *Q);
            for (i = 0; i < K; i++)
                for (j = 0; j < K; j++) {
                    double acc = 0;
                    for (int l = 0; l <= (i < j ? i : j); l++) acc += d->aux[i * K + l] * d->aux[j * K + l];
                    Q[i * K + j] = acc;
                }
            if (plm_bffg_kernel_linear_gaussian(&ctx, K, 0, NULL, d->v, Q, &k)) plm_l_fail(L, &ctx);
            lua_pop(L, 1);
            return k;
        case PLM_DIST_CATEGORICAL:
            if (plm_bffg_kernel_discrete(&ctx, 0, K, d->v, &k)) plm_l_fail(L, &ctx);
            return k;
        default:
            luaL_error(L, "%s: a root's distribution must be normal, mvnormal or categorical (got %s)", fn,
                       plm_dist_info_of(d->kind)->name);
        }
    }
    if (lua_type(L, idx) == LUA_TNUMBER || lua_istable(L, idx)) {   /* a fixed value: N(x, 0) */
        size_t n = 1;
        double *x, *Z;
        if (lua_type(L, idx) == LUA_TNUMBER) {
            x = plm_l_scratch(L, sizeof *x);
            x[0] = lua_tonumber(L, idx);
        } else
            x = plm_l_checkvec(L, idx, fn, "the root's value", &n, 0);
        if (n == 0) luaL_error(L, "%s: the root's value is empty", fn);
        Z = plm_l_scratch(L, n * n * sizeof *Z);
        memset(Z, 0, n * n * sizeof *Z);
        if (plm_bffg_kernel_linear_gaussian(&ctx, (int)n, 0, NULL, x, Z, &k)) plm_l_fail(L, &ctx);
        lua_pop(L, 2);
        return k;
    }
    luaL_error(L, "%s: the root needs a plume.dist (normal, mvnormal, categorical), a prior kernel or a value (got %s)", fn,
               luaL_typename(L, idx));
    return NULL;
}

static void add_node(lua_State *L, plm_bffg_model *m, const char *name, int parent, const plm_bffg_kernel *k,
                     const double *value)
{
    plm_ctx ctx;
    plm_ctx_clear(&ctx);
    if (plm_bffg_add(&ctx, m, name, parent, k, value, NULL)) plm_l_fail(L, &ctx);
}

/* The parents at idx: a name, or a list of names (several parents). Returns their number; *out points at
** scratch memory pushed on the stack (or at `one`). */
static int find_parents(lua_State *L, const plm_bffg_model *m, int idx, const char *fn, int *one, int **out)
{
    int n, j;
    if (!lua_istable(L, idx)) {
        *one = find_parent(L, m, idx, fn);
        *out = one;
        return 1;
    }
    idx = lua_absindex(L, idx);
    n = (int)lua_rawlen(L, idx);
    if (n < 1) luaL_error(L, "%s: the list of parents is empty", fn);
    *out = plm_l_scratch(L, (size_t)n * sizeof **out);
    for (j = 1; j <= n; j++) {
        lua_rawgeti(L, idx, j);
        (*out)[j - 1] = find_parent(L, m, -1, fn);
        lua_pop(L, 1);
    }
    return n;
}

static void add_node_multi(lua_State *L, plm_bffg_model *m, const char *name, int np, const int *parents,
                           const plm_bffg_kernel *k, const double *value)
{
    plm_ctx ctx;
    plm_ctx_clear(&ctx);
    if (plm_bffg_add_multi(&ctx, m, name, np, parents, k, value, NULL)) plm_l_fail(L, &ctx);
}

/* g:root(name, prior) -> g */
static int l_dag_root(lua_State *L)
{
    plm_bffg_model *m = check_dag(L, 1, "dag:root");
    const char *name = check_name(L, 2, "dag:root");
    plm_bffg_kernel *k = root_prior(L, 3, "dag:root");
    add_node(L, m, name, -1, k, NULL);
    lua_settop(L, 1);
    return 1;
}

/* A diffusion kernel with save times (list at idx) from parent: a chain of its pieces (plm_bffg_kernel_sde_piece)
** through latent nodes "<name>@<time>", the last piece ending at node name. */
static void add_pieces(lua_State *L, plm_bffg_model *m, const char *name, int parent, const plm_bffg_kernel *k, int idx)
{
    int n = (int)lua_rawlen(L, idx), i, index;
    double t0, t1;
    plm_ctx ctx;
    plm_bffg_kernel *piece;
    plm_bffg_kernel_sde_span(k, &t0, &t1);
    plm_ctx_clear(&ctx);
    for (i = 0; i <= n; i++) {
        double a = i == 0 ? t0 : (lua_rawgeti(L, idx, i), lua_tonumber(L, -1)), b;
        const char *nm = name;
        if (i > 0) lua_pop(L, 1);
        b = i == n ? t1 : (lua_rawgeti(L, idx, i + 1), lua_tonumber(L, -1));
        if (i < n) {
            lua_pop(L, 1);
            nm = lua_pushfstring(L, "%s@%f", name, b);   /* (%.14g) */
        }
        if (plm_bffg_kernel_sde_piece(&ctx, k, a, b, &piece) || plm_bffg_add(&ctx, m, nm, parent, piece, NULL, &index))
            plm_l_fail(L, &ctx);
        parent = index;
    }
}

/* g:kernel(name, parent or {parents}, kernel) -> g */
static int l_dag_kernel(lua_State *L)
{
    plm_bffg_model *m = check_dag(L, 1, "dag:kernel");
    const char *name = check_name(L, 2, "dag:kernel");
    int one, *parents, np;
    plm_bffg_kernel *k = plm_l_checkmkernel(L, 4, "dag:kernel", "kernel");
    np = find_parents(L, m, 3, "dag:kernel", &one, &parents);
    if (plm_l_mkernel_save(L, 4)) {
        if (np != 1) luaL_error(L, "dag:kernel: node '%s': a diffusion kernel takes one parent", name);
        add_pieces(L, m, name, parents[0], k, lua_gettop(L));
    } else
        add_node_multi(L, m, name, np, parents, k, NULL);
    lua_settop(L, 1);
    return 1;
}

/* g:observe(name, parent or {parents}, kernel, value) -> g */
static int l_dag_observe(lua_State *L)
{
    plm_bffg_model *m = check_dag(L, 1, "dag:observe");
    const char *name = check_name(L, 2, "dag:observe");
    plm_bffg_kernel *k = plm_l_checkmkernel(L, 4, "dag:observe", "kernel");
    int one, *parents, np = find_parents(L, m, 3, "dag:observe", &one, &parents);
    double x[64], *v = x;
    int dout;
    if (plm_l_mkernel_save(L, 4)) luaL_error(L, "dag:observe: the kernel's save times are for latent nodes (dag:kernel)");
    plm_bffg_kernel_info(k, NULL, NULL, NULL, &dout);
    if (dout > 64) v = plm_l_scratch(L, (size_t)dout * sizeof *v);
    if (lua_isnoneornil(L, 5)) return luaL_error(L, "dag:observe: node '%s' needs a value", name);
    read_value(L, 5, k, v, "dag:observe", name);
    add_node_multi(L, m, name, np, parents, k, v);
    lua_settop(L, 1);
    return 1;
}

/* Observed values from the table at idx (name -> value) as per-node overrides (NULL: none). Pushes one value
** that owns the memory (nil when there are no overrides). */
static const double **obs_values(lua_State *L, const plm_bffg_model *m, int idx, const char *fn)
{
    const double **vals;
    double *store;
    size_t *off, total = 0, nn;
    int i, n = plm_bffg_nnodes(m);
    if (lua_isnoneornil(L, idx)) {
        lua_pushnil(L);
        return NULL;
    }
    if (!lua_istable(L, idx)) luaL_error(L, "%s: obs must be a table of node name -> value (got %s)", fn, luaL_typename(L, idx));
    idx = lua_absindex(L, idx);
    nn = (size_t)(n ? n : 1);
    /* one block: per-node pointers, per-node offsets, then the values */
    vals = plm_l_scratch(L, nn * (sizeof *vals + sizeof *off));
    off = (size_t *)(void *)(vals + nn);
    for (i = 0; i < n; i++) {
        plm_bffg_node_info info;
        plm_bffg_node(m, i, &info);
        vals[i] = NULL;
        off[i] = total;
        total += (size_t)info.width;
    }
    store = plm_l_scratch(L, (total ? total : 1) * sizeof *store);
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        plm_bffg_node_info info;
        const char *name;
        if (lua_type(L, -2) != LUA_TSTRING) luaL_error(L, "%s: obs keys must be node names (got %s)", fn, luaL_typename(L, -2));
        name = lua_tostring(L, -2);
        if ((i = plm_bffg_find(m, name)) < 0) luaL_error(L, "%s: obs names no node '%s'", fn, name);
        plm_bffg_node(m, i, &info);
        if (!info.observed) luaL_error(L, "%s: node '%s' is latent; obs may only give values of observed nodes", fn, name);
        read_value(L, -1, info.kernel, store + off[i], fn, name);
        vals[i] = store + off[i];
        lua_pop(L, 1);
    }
    /* the two blocks stay alive as a pair in one table */
    lua_createtable(L, 2, 0);
    lua_insert(L, -3);
    lua_rawseti(L, -3, 2);
    lua_rawseti(L, -2, 1);
    return vals;
}

static plm_bffg_filter *run_filter(lua_State *L, const plm_bffg_model *m, const double **vals, const char *fn)
{
    plm_bffg_filter *f;
    plm_ctx ctx;
    plm_ctx_clear(&ctx);
    if (plm_bffg_nnodes(m) == 0) luaL_error(L, "%s: the model has no nodes", fn);
    if (plm_bffg_backward(&ctx, m, vals, &f)) {
        if (ctx.status == PLM_EINTR) plm_interrupt_clear();
        plm_l_fail(L, &ctx);
    }
    return f;
}

/* g:loglik(obs) -> the backward filter's log-likelihood (exact when no kernel has an auxiliary) */
static int l_dag_loglik(lua_State *L)
{
    plm_bffg_model *m = check_dag(L, 1, "dag:loglik");
    const double **vals = obs_values(L, m, 2, "dag:loglik");
    plm_bffg_filter *f = run_filter(L, m, vals, "dag:loglik");
    lua_pushnumber(L, plm_bffg_filter_loglik(f));
    plm_bffg_filter_release(f);   /* (a likelihood in a loop would leave its guides to the collector) */
    return 1;
}

/* g:nodes() -> list of {name=, parent=, observed=, discrete=, dim=} */
static int l_dag_nodes(lua_State *L)
{
    plm_bffg_model *m = check_dag(L, 1, "dag:nodes");
    int i, n = plm_bffg_nnodes(m);
    lua_createtable(L, n, 0);
    for (i = 0; i < n; i++) {
        plm_bffg_node_info info, pinfo;
        plm_bffg_node(m, i, &info);
        lua_createtable(L, 0, 5);
        lua_pushstring(L, info.name);
        lua_setfield(L, -2, "name");
        if (info.parent >= 0) {
            plm_bffg_node(m, info.parent, &pinfo);
            lua_pushstring(L, pinfo.name);
            lua_setfield(L, -2, "parent");
        }
        if (info.nparents > 1) {
            lua_createtable(L, info.nparents, 0);
            for (int j = 0; j < info.nparents; j++) {
                plm_bffg_node(m, info.parents[j], &pinfo);
                lua_pushstring(L, pinfo.name);
                lua_rawseti(L, -2, j + 1);
            }
            lua_setfield(L, -2, "parents");
        }
        lua_pushboolean(L, info.observed);
        lua_setfield(L, -2, "observed");
        lua_pushboolean(L, info.discrete);
        lua_setfield(L, -2, "discrete");
        lua_pushinteger(L, info.dim);
        lua_setfield(L, -2, "dim");
        lua_rawseti(L, -2, i + 1);
    }
    return 1;
}

static int l_dag_tostring(lua_State *L)
{
    plm_bffg_model *m = check_dag(L, 1, "tostring");
    int i, n = plm_bffg_nnodes(m), obs = 0, roots = 0;
    for (i = 0; i < n; i++) {
        plm_bffg_node_info info;
        plm_bffg_node(m, i, &info);
        obs += info.observed, roots += info.parent < 0;
    }
    lua_pushfstring(L, "dag(%d nodes: %d latent, %d observed; %d root%s)", n, n - obs, obs, roots, roots == 1 ? "" : "s");
    return 1;
}

/* ---- trees -------------------------------------------------------------------------------------------- */

static plm_tree *check_tree(lua_State *L, int idx, const char *fn)
{
    return plm_l_checkobj(L, idx, TREE_META, fn, "self");
}

static int l_tree_newick(lua_State *L)
{
    plm_tree *t;
    plm_ctx ctx;
    if (lua_type(L, 1) != LUA_TSTRING) return luaL_error(L, "tree.newick: text must be a string (got %s)", luaL_typename(L, 1));
    plm_ctx_clear(&ctx);
    if (plm_tree_newick(&ctx, lua_tostring(L, 1), &t)) return plm_l_fail(L, &ctx);
    plm_l_pushobj(L, t, TREE_META);
    return 1;
}

static int l_tree_tips(lua_State *L)
{
    plm_tree *t = check_tree(L, 1, "tree:tips");
    int i, k = 0;
    lua_createtable(L, t->ntips, 0);
    for (i = 0; i < t->n; i++)
        if (t->tip[i]) {
            lua_pushstring(L, t->name[i]);
            lua_rawseti(L, -2, ++k);
        }
    return 1;
}

static int l_tree_nodes(lua_State *L)
{
    plm_tree *t = check_tree(L, 1, "tree:nodes");
    int i;
    lua_createtable(L, t->n, 0);
    for (i = 0; i < t->n; i++) {
        lua_createtable(L, 0, 4);
        lua_pushstring(L, t->name[i]);
        lua_setfield(L, -2, "name");
        if (t->parent[i] >= 0) {
            lua_pushstring(L, t->name[t->parent[i]]);
            lua_setfield(L, -2, "parent");
        }
        if (!isnan(t->length[i])) {
            lua_pushnumber(L, t->length[i]);
            lua_setfield(L, -2, "length");
        }
        lua_pushboolean(L, t->tip[i]);
        lua_setfield(L, -2, "tip");
        lua_rawseti(L, -2, i + 1);
    }
    return 1;
}

/* tree:dag{root = prior, process = function(t, name) -> kernel, data = {tip = value}} -> a plume.dag whose nodes
** are the tree's: the root with the prior, every other node through process(branch length, name) from its
** parent; tips named in data are observed, the other nodes latent. */
static int l_tree_dag(lua_State *L)
{
    const char *fn = "tree:dag";
    static const char *const opts[] = {"root", "process", "data", NULL};
    plm_tree *t = check_tree(L, 1, fn);
    plm_bffg_model *m;
    int i, nd = 0;
    double x[64];
    luaL_checktype(L, 2, LUA_TTABLE);
    plm_l_checkopts(L, 2, fn, opts);
    lua_settop(L, 2);
    lua_getfield(L, 2, "root");      /* 3 */
    lua_getfield(L, 2, "process");   /* 4 */
    lua_getfield(L, 2, "data");      /* 5 */
    if (lua_isnil(L, 3)) return luaL_error(L, "%s: missing field 'root' (the prior of the root's value)", fn);
    if (!lua_isfunction(L, 4))
        return luaL_error(L, "%s: 'process' must be a function(t, name) returning a plume.markov_kernel (got %s)", fn,
                          luaL_typename(L, 4));
    if (!lua_isnil(L, 5) && !lua_istable(L, 5)) return luaL_error(L, "%s: 'data' must be a table of tip name -> value", fn);
    if (lua_istable(L, 5)) {   /* every key must be a tip */
        lua_pushnil(L);
        while (lua_next(L, 5)) {
            int found = 0;
            if (lua_type(L, -2) != LUA_TSTRING) return luaL_error(L, "%s: data keys must be tip names", fn);
            for (i = 0; i < t->n && !found; i++) found = t->tip[i] && strcmp(t->name[i], lua_tostring(L, -2)) == 0;
            if (!found) return luaL_error(L, "%s: data names '%s', which is not a tip of the tree", fn, lua_tostring(L, -2));
            lua_pop(L, 1);
            nd++;
        }
    }
    l_dag_new(L);   /* 6 */
    m = check_dag(L, 6, fn);
    add_node(L, m, t->name[0], -1, root_prior(L, 3, fn), NULL);
    for (i = 1; i < t->n; i++) {
        plm_bffg_kernel *k;
        int top = lua_gettop(L), observed = 0, dout;
        if (isnan(t->length[i])) return luaL_error(L, "%s: the branch into '%s' has no length", fn, t->name[i]);
        lua_pushvalue(L, 4);
        lua_pushnumber(L, t->length[i]);
        lua_pushstring(L, t->name[i]);
        lua_call(L, 2, 1);
        if (!plm_l_testobj(L, -1, KERNEL_META))
            return luaL_error(L, "%s: process(%f, '%s') returned %s, not a plume.markov_kernel", fn, t->length[i], t->name[i],
                              luaL_typename(L, -1));
        k = plm_l_checkmkernel(L, -1, fn, "process result");
        if (plm_l_mkernel_save(L, -1))
            return luaL_error(L, "%s: process(%f, '%s') returned a kernel with save times: those are for dag:kernel", fn,
                              t->length[i], t->name[i]);
        plm_bffg_kernel_info(k, NULL, NULL, NULL, &dout);
        if (t->tip[i] && lua_istable(L, 5)) {
            lua_getfield(L, 5, t->name[i]);
            if (!lua_isnil(L, -1)) {
                if (dout > 64) return luaL_error(L, "%s: tip values of more than 64 entries are not supported", fn);
                read_value(L, -1, k, x, fn, t->name[i]);
                observed = 1;
            }
        }
        add_node(L, m, t->name[i], t->parent[i], k, observed ? x : NULL);
        lua_settop(L, top);
    }
    lua_settop(L, 6);
    return 1;
}

static int l_tree_tostring(lua_State *L)
{
    plm_tree *t = check_tree(L, 1, "tostring");
    lua_pushfstring(L, "tree(%d tips, %d nodes)", t->ntips, t->n);
    return 1;
}

/* ---- plume.bffg --------------------------------------------------------------------------------------- */

/* The draws as a posterior object (plume._posterior, upvalue 1): one weighted chain, columns named after the
** latent nodes ("x", or "x[1]", "x[2]" for vectors; discrete states 1-based). Kept in one function so that it
** can move onto the shared results builder unchanged. Leaves the posterior on the stack. */
static void push_results(lua_State *L, const plm_bffg_model *m, const double *draws, const double *logw, size_t n,
                         double loglik_filter, uint64_t seed, const char *method, double loglik, long resamples)
{
    plm_ctx ctx;
    plm_draws *D;
    size_t width = plm_bffg_draw_width(m), s;
    int i, j, nn = plm_bffg_nnodes(m), res;
    double *row = plm_l_scratch(L, (width ? width : 1) * sizeof *row), lse;
    int *disc = plm_l_scratch(L, (width ? width : 1) * sizeof *disc);
    plm_ctx_clear(&ctx);
    if (plm_draws_new(&ctx, 1, &D)) plm_l_fail(L, &ctx);
    plm_draws_set_weighted(D, 1);
    for (i = 0; i < nn; i++) {
        plm_bffg_node_info info;
        plm_bffg_node(m, i, &info);
        if (info.observed) continue;
        for (j = 0; j < info.width; j++) {
            char name[512];
            if (info.width == 1) snprintf(name, sizeof name, "%s", info.name);
            else snprintf(name, sizeof name, "%s[%d]", info.name, j + 1);
            if (plm_draws_col(D, name, 1) != (int)info.offset + j) luaL_error(L, "plume.bffg: duplicate column '%s'", name);
            disc[info.offset + j] = info.discrete;
        }
    }
    for (s = 0; s < n; s++) {
        for (j = 0; j < (int)width; j++) row[j] = draws[s * width + j] + disc[j];
        if (plm_draws_push(&ctx, D, 0, row, (int)width, logw[s])) plm_l_fail(L, &ctx);
    }
    lse = plm_bffg_logmeanexp(logw, n) + log((double)n);
    lua_newtable(L);
    res = lua_gettop(L);
    plm_l_pushdraws(L, D);
    lua_setfield(L, res, "_draws");
    lua_pushstring(L, method);
    lua_setfield(L, res, "method");
    lua_pushinteger(L, (lua_Integer)n);
    lua_setfield(L, res, "samples");
    lua_pushnumber(L, loglik);
    lua_setfield(L, res, "logz");
    lua_pushnumber(L, loglik);
    lua_setfield(L, res, "loglik");
    if (resamples >= 0) {
        lua_pushinteger(L, resamples);
        lua_setfield(L, res, "resamples");
    }
    lua_pushnumber(L, loglik_filter);
    lua_setfield(L, res, "loglik_filter");
    lua_pushnumber(L, plm_bffg_ess(logw, n));
    lua_setfield(L, res, "ess");
    lua_pushinteger(L, (lua_Integer)seed);
    lua_setfield(L, res, "seed");
    lua_createtable(L, (int)n, 0);
    lua_createtable(L, (int)n, 0);
    for (s = 0; s < n; s++) {
        lua_pushnumber(L, logw[s]);
        lua_rawseti(L, -2, (lua_Integer)s + 1);
        lua_pushnumber(L, logw[s] - lse);
        lua_rawseti(L, -3, (lua_Integer)s + 1);
    }
    lua_setfield(L, res, "log_weights_raw");
    lua_setfield(L, res, "log_weights");
    lua_getfield(L, lua_upvalueindex(1), "_posterior");
    lua_pushvalue(L, res);
    lua_call(L, 1, 1);
}

/* plume.bffg(g, obs, {samples=, method="is"|"smc", seed=, threads=, resample="systematic", ess_threshold=1})
** -> posterior */
static int l_bffg(lua_State *L)
{
    const char *fn = "plume.bffg";
    static const char *const opts[] = {"samples", "method", "seed",   "threads", "resample", "ess_threshold", "warmup",
                                       "chains",  "rho",    "target_accept", "step", "params", "sde", "network", "init", "fixed_aux",
                                       "blocks", "native", "adapt_cov", "output", NULL};
    plm_bffg_model *m = check_dag(L, 1, fn);
    const double **vals;
    const char *method;
    int smc, scheme = PLM_RESAMPLE_SYSTEMATIC;
    double thr = 1, loglik;
    size_t nres = 0;
    lua_Integer n;
    uint64_t seed;
    int threads;
    plm_bffg_filter *f;
    double *draws, *logw;
    size_t width;
    plm_ctx ctx;
    lua_settop(L, 3);
    if (!lua_isnil(L, 3)) {
        luaL_checktype(L, 3, LUA_TTABLE);
        plm_l_checkopts(L, 3, fn, opts);
    }
    n = plm_l_optint(L, 3, fn, "samples", 1000);
    if (n < 1 || n > 100000000) return luaL_error(L, "%s: option 'samples' must be in 1..1e8 (got %d)", fn, (int)n);
    method = plm_l_optstr(L, 3, fn, "method", "is");
    if (strcmp(method, "is") != 0 && strcmp(method, "smc") != 0 && strcmp(method, "mcmc") != 0)
        return luaL_error(L, "%s: method '%s' is not available (methods: is, smc, mcmc)", fn, method);
    if (lua_istable(L, 3)) plm_l_optbool(L, 3, fn, "native", 1);   /* checked here, used by l_bffg_entry */
    if (method[0] != 'm' && lua_istable(L, 3)) {
        static const char *const only[] = {"warmup", "chains", "rho", "target_accept", "step", "params", "sde", "network",
                                           "init", "fixed_aux", "blocks", "adapt_cov", NULL};
        for (int i = 0; only[i]; i++)
            if (lua_getfield(L, 3, only[i]) != LUA_TNIL) return luaL_error(L, "%s: option '%s' is for method \"mcmc\"", fn, only[i]);
        lua_settop(L, 3);
    }
    smc = method[0] == 's';
    if (lua_istable(L, 3)) {
        const char *rs = plm_l_optstr(L, 3, fn, "resample", "systematic");
        if ((scheme = plm_resample_scheme_by_name(rs)) < 0)
            return luaL_error(L, "%s: unknown resample scheme '%s' (schemes: %s)", fn, rs, plm_resample_scheme_list);
        thr = plm_l_optnum(L, 3, fn, "ess_threshold", 1);
        if (!(thr >= 0 && thr <= 1)) return luaL_error(L, "%s: option 'ess_threshold' must be in [0, 1] (got %f)", fn, thr);
        if (!smc && (lua_getfield(L, 3, "resample") != LUA_TNIL || lua_getfield(L, 3, "ess_threshold") != LUA_TNIL))
            return luaL_error(L, "%s: options 'resample' and 'ess_threshold' are for method \"smc\"", fn);
        lua_settop(L, 3);
    }
    if (lua_istable(L, 3) && lua_getfield(L, 3, "seed") != LUA_TNIL)
        seed = plm_l_seed(L, 3, fn);
    else
        seed = plm_l_default_seed(L);
    lua_settop(L, 3);
    threads = plm_l_threads(L, 3, fn);
    vals = obs_values(L, m, 2, fn);
    if (method[0] == 'm') {
        int top = lua_gettop(L);
        plm_l_bffg_mcmc(L, m, vals, n, seed, threads);
        lua_replace(L, top + 1);
        lua_settop(L, top + 1);
        return 1;
    }
    f = run_filter(L, m, vals, fn);
    width = plm_bffg_draw_width(m);
    draws = plm_l_scratch(L, (size_t)n * (width ? width : 1) * sizeof *draws);
    logw = plm_l_scratch(L, (size_t)n * sizeof *logw);
    plm_ctx_clear(&ctx);
    if (smc ? plm_bffg_smc(&ctx, f, (size_t)n, seed, threads, (plm_resample_scheme)scheme, thr, draws, logw, &loglik, &nres)
            : plm_bffg_forward(&ctx, f, (size_t)n, seed, threads, draws, logw, NULL)) {
        if (ctx.status == PLM_EINTR) plm_interrupt_clear();
        return plm_l_fail_as(L, &ctx, fn);
    }
    if (!smc) loglik = plm_bffg_logmeanexp(logw, (size_t)n);
    push_results(L, m, draws, logw, (size_t)n, plm_bffg_filter_loglik(f), seed, smc ? "bffg-smc" : "bffg-is", loglik,
                 smc ? (long)nres : -1);
    if (lua_istable(L, 3) && lua_getfield(L, 3, "output") != LUA_TNIL) {   /* the weighted draws, made at once */
        const char *path = plm_l_optstr(L, 3, fn, "output", NULL);
        lua_pop(L, 1);
        lua_getfield(L, -1, "write_csv");
        lua_pushvalue(L, -2);
        lua_pushstring(L, path);
        lua_call(L, 2, 0);
    } else
        lua_pop(L, 1);
    return 1;
}

/* plume.bffg with option native (default true): native = false runs l_bffg with native code suspended (the
** interpreter for every drift; results are the same bit for bit, only slower), restored on errors too. The
** results get field native: whether the diffusions' guided paths ran natively. */
static int l_bffg_entry(lua_State *L)
{
    int native = 1, i, nsde = 0, nnat = 0, st;
    plm_bffg_model *m = check_dag(L, 1, "plume.bffg");
    lua_settop(L, 3);
    if (lua_istable(L, 3)) native = plm_l_optbool(L, 3, "plume.bffg", "native", 1);
    lua_pushvalue(L, lua_upvalueindex(1));   /* the arguments stay below the call: they keep m alive */
    lua_pushcclosure(L, l_bffg, 1);
    for (i = 1; i <= 3; i++) lua_pushvalue(L, i);
    if (!native) plm_native_suspend(1);
    st = lua_pcall(L, 3, 1, 0);
    for (i = 0; i < plm_bffg_nnodes(m); i++) {
        plm_bffg_node_info info;
        plm_bffg_node(m, i, &info);
        if (plm_bffg_kernel_sde_of(info.kernel)) nsde++, nnat += plm_bffg_kernel_sde_native(info.kernel) > 0;
    }
    if (!native) plm_native_suspend(-1);
    if (st != LUA_OK) return lua_error(L);
    if (lua_istable(L, -1)) {
        lua_pushboolean(L, nsde > 0 && nnat == nsde);
        lua_setfield(L, -2, "native");
    }
    return 1;
}

void plm_l_open_bffg(lua_State *L)
{
    static const luaL_Reg dag_methods[] = {{"root", l_dag_root}, {"kernel", l_dag_kernel}, {"observe", l_dag_observe},
                                           {"loglik", l_dag_loglik}, {"nodes", l_dag_nodes}, {NULL, NULL}};
    static const luaL_Reg dag_meta[] = {{"__tostring", l_dag_tostring}, {NULL, NULL}};
    static const luaL_Reg tree_methods[] = {{"tips", l_tree_tips}, {"nodes", l_tree_nodes}, {"dag", l_tree_dag}, {NULL, NULL}};
    static const luaL_Reg tree_meta[] = {{"__tostring", l_tree_tostring}, {NULL, NULL}};
    plm_l_newmeta(L, DAG_META, dag_methods, dag_meta);
    lua_pop(L, 1);
    plm_l_newmeta(L, TREE_META, tree_methods, tree_meta);
    lua_pop(L, 1);
    lua_pushcfunction(L, l_dag_new);
    lua_setfield(L, -2, "dag");
    lua_createtable(L, 0, 1);
    lua_pushcfunction(L, l_tree_newick);
    lua_setfield(L, -2, "newick");
    lua_setfield(L, -2, "tree");
    lua_pushvalue(L, -1);
    lua_pushcclosure(L, l_bffg_entry, 1);
    lua_setfield(L, -2, "bffg");
}
