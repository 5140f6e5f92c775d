/* l_symdist.c -- symbolic distributions (plume.symdist): plume.dist.<kind>(...) with symbolic arguments, as a
** runtime plm_symdist over the model's graph plus the 1-based shift of categorical values, with d:logpdf(x)
** as a symbol. The model objects (plume.ssm, plume.sde) draw and score them natively. */
#include "l_expr.h"
#include "ldist.h"

#include <string.h>

static plm_l_symdist *new_symdist(lua_State *L, plm_graph *g, int holder, plm_dist_kind kind, int K, int np)
{
    plm_l_symdist *d;
    holder = lua_absindex(L, holder);
    d = lua_newuserdatauv(L, sizeof *d + (size_t)(np + 1) * sizeof(int), 1);
    d->g = g;
    d->d.kind = kind;
    d->d.K = K;
    d->d.np = np;
    d->d.p = d->p;
    d->shift = kind == PLM_DIST_CATEGORICAL;
    lua_pushvalue(L, holder);
    lua_setiuservalue(L, -2, 1);
    luaL_setmetatable(L, PLM_L_SYMDIST);
    return d;
}

/* find a symbol at idx or inside its table (rows too) and push its graph holder */
static plm_graph *find_graph(lua_State *L, int from, int to)
{
    int i;
    for (i = from; i <= to; i++) {
        plm_l_sym *s = plm_l_tosym(L, i);
        if (s) {
            lua_getiuservalue(L, i, 1);
            return s->g;
        }
        if (lua_type(L, i) == LUA_TTABLE) {
            lua_Integer k, n = luaL_len(L, i);
            for (k = 1; k <= n; k++) {
                lua_geti(L, i, k);
                if ((s = plm_l_tosym(L, -1))) {
                    lua_getiuservalue(L, -1, 1);
                    lua_remove(L, -2);
                    return s->g;
                }
                if (lua_type(L, -1) == LUA_TTABLE) {
                    lua_Integer j, m = luaL_len(L, -1);
                    for (j = 1; j <= m; j++) {
                        lua_geti(L, -1, j);
                        if ((s = plm_l_tosym(L, -1))) {
                            lua_getiuservalue(L, -1, 1);
                            lua_remove(L, -2);
                            lua_remove(L, -2);
                            lua_remove(L, -2);
                            return s->g;
                        }
                        lua_pop(L, 1);
                    }
                }
                lua_pop(L, 1);
            }
        }
    }
    return NULL;
}

int plm_l_symdist_new(lua_State *L, plm_dist_kind kind)
{
    const plm_dist_info *info = plm_dist_info_of(kind);
    int top = lua_gettop(L), holder, i, j;
    char what[64];
    plm_graph *g = find_graph(L, 1, top);
    plm_l_symdist *d;
    if (!g) return luaL_error(L, "%s: no symbolic argument", info->name);
    holder = lua_gettop(L);
    switch (kind) {
    case PLM_DIST_CATEGORICAL: {
        lua_Integer K;
        luaL_checktype(L, 1, LUA_TTABLE);
        K = luaL_len(L, 1);
        if (K < 1) return luaL_error(L, "categorical: probs must not be empty");
        d = new_symdist(L, g, holder, kind, (int)K, (int)K);
        for (i = 0; i < K; i++) {
            snprintf(what, sizeof what, "categorical: probs[%d]", i + 1);
            lua_geti(L, 1, i + 1);
            d->p[i] = plm_l_tonode(L, -1, g, what);
            lua_pop(L, 1);
        }
        break;
    }
    case PLM_DIST_MVNORMAL: {
        lua_Integer K;
        luaL_checktype(L, 1, LUA_TTABLE);
        luaL_checktype(L, 2, LUA_TTABLE);
        K = luaL_len(L, 1);
        if (K < 1 || K > 64) return luaL_error(L, "mvnormal: symbolic mu must have 1..64 entries (got %d)", (int)K);
        if (luaL_len(L, 2) != K) return luaL_error(L, "mvnormal: Sigma must have %d rows", (int)K);
        d = new_symdist(L, g, holder, kind, (int)K, (int)(K + K * K));
        for (i = 0; i < K; i++) {
            snprintf(what, sizeof what, "mvnormal: mu[%d]", i + 1);
            lua_geti(L, 1, i + 1);
            d->p[i] = plm_l_tonode(L, -1, g, what);
            lua_pop(L, 1);
            if (lua_geti(L, 2, i + 1) != LUA_TTABLE || luaL_len(L, -1) != K)
                return luaL_error(L, "mvnormal: Sigma row %d must be a table of %d entries", i + 1, (int)K);
            for (j = 0; j < K; j++) {
                snprintf(what, sizeof what, "mvnormal: Sigma[%d][%d]", i + 1, j + 1);
                lua_geti(L, -1, j + 1);
                d->p[K + i * K + j] = plm_l_tonode(L, -1, g, what);
                lua_pop(L, 1);
            }
            lua_pop(L, 1);
        }
        break;
    }
    case PLM_DIST_DIRICHLET: case PLM_DIST_MULTINOMIAL:
        return luaL_error(L, "%s: symbolic parameters are not supported", info->name);
    default:
        d = new_symdist(L, g, holder, kind, 0, info->nparams);
        for (i = 0; i < info->nparams; i++) {
            snprintf(what, sizeof what, "%s: %s", info->name, info->params[i]);
            d->p[i] = plm_l_tonode(L, i + 1, g, what);
        }
    }
    return 1;
}

plm_l_symdist *plm_l_tosymdist(lua_State *L, int idx, plm_graph *g)
{
    plm_l_symdist *s = luaL_testudata(L, idx, PLM_L_SYMDIST);
    plm_dist *d;
    idx = lua_absindex(L, idx);
    if (s) {
        if (s->g != g) luaL_error(L, "a distribution of another model cannot be used here");
        lua_pushvalue(L, idx);
        return s;
    }
    d = plm_l_testobj(L, idx, PLM_L_DIST);
    if (!d) return NULL;
    {
        /* a numeric distribution: its parameters become constants of g */
        const plm_dist_info *info = plm_dist_info_of(d->kind);
        int K = d->K, i, j, k, np = d->kind == PLM_DIST_CATEGORICAL ? K : d->kind == PLM_DIST_MVNORMAL ? K + K * K
                                                                                                   : info->nparams;
        plm_l_symdist *r;
        if (d->kind == PLM_DIST_DIRICHLET || d->kind == PLM_DIST_MULTINOMIAL)
            luaL_error(L, "%s cannot be used as a state or observation distribution of a traced model", info->name);
        /* the new symdist's user value must hold g: a fresh holder box does */
        plm_l_pushobj(L, g, PLM_L_GRAPH);
        r = new_symdist(L, g, -1, d->kind, d->kind == PLM_DIST_CATEGORICAL || d->kind == PLM_DIST_MVNORMAL ? K : 0, np);
        lua_remove(L, -2);
        if (d->kind == PLM_DIST_CATEGORICAL)
            for (i = 0; i < K; i++) r->p[i] = plm_graph_const(g, d->v[i]);
        else if (d->kind == PLM_DIST_MVNORMAL) {
            for (i = 0; i < K; i++) r->p[i] = plm_graph_const(g, d->v[i]);
            for (i = 0; i < K; i++)
                for (j = 0; j < K; j++) {
                    double s2 = 0;
                    for (k = 0; k <= (i < j ? i : j); k++) s2 += d->aux[i * K + k] * d->aux[j * K + k];
                    r->p[K + i * K + j] = plm_graph_const(g, s2);
                }
        } else
            for (i = 0; i < info->nparams; i++) r->p[i] = plm_graph_const(g, d->p[i]);
        for (i = 0; i < np; i++)
            if (r->p[i] < 0) luaL_error(L, "plume: out of memory while tracing");
        return r;
    }
}

plm_status plm_l_symdist_sample(plm_ctx *ctx, plm_graph *g, const plm_l_symdist *d, int *out)
{
    plm_status st = plm_symdist_sample(ctx, g, &d->d, out);
    if (st == PLM_OK && d->shift)
        out[0] = plm_graph_op(g, PLM_OP_ADD, out[0], plm_graph_const(g, d->shift), -1);
    return st;
}

plm_status plm_l_symdist_logpdf(plm_ctx *ctx, plm_graph *g, const plm_l_symdist *d, const int *x, int *out)
{
    if (d->shift) {
        int x0 = plm_graph_op(g, PLM_OP_SUB, x[0], plm_graph_const(g, d->shift), -1);
        return plm_symdist_logpdf(ctx, g, &d->d, &x0, out);
    }
    return plm_symdist_logpdf(ctx, g, &d->d, x, out);
}

static int l_symdist_logpdf(lua_State *L)
{
    plm_l_symdist *d = luaL_checkudata(L, 1, PLM_L_SYMDIST);
    int x[64], dim = plm_symdist_dim(&d->d), i, r;
    plm_ctx ctx;
    plm_ctx_clear(&ctx);
    if (dim == 1)
        x[0] = plm_l_tonode(L, 2, d->g, "logpdf: x");
    else {
        luaL_checktype(L, 2, LUA_TTABLE);
        if (luaL_len(L, 2) != dim) return luaL_error(L, "logpdf: x must have %d entries", dim);
        for (i = 0; i < dim; i++) {
            lua_geti(L, 2, i + 1);
            x[i] = plm_l_tonode(L, -1, d->g, "logpdf: x entry");
            lua_pop(L, 1);
        }
    }
    if (plm_l_symdist_logpdf(&ctx, d->g, d, x, &r)) return plm_l_fail(L, &ctx);
    plm_l_pushlike(L, 1, r);
    return 1;
}

static int l_symdist_index(lua_State *L)
{
    plm_l_symdist *d = luaL_checkudata(L, 1, PLM_L_SYMDIST);
    const char *k = lua_tostring(L, 2);
    if (k && strcmp(k, "name") == 0) lua_pushstring(L, plm_dist_info_of(d->d.kind)->name);
    else if (k && strcmp(k, "dim") == 0) lua_pushinteger(L, plm_symdist_dim(&d->d));
    else if (k && strcmp(k, "symbolic") == 0) lua_pushboolean(L, 1);
    else if (k && strcmp(k, "logpdf") == 0) lua_pushcfunction(L, l_symdist_logpdf);
    else if (k && (strcmp(k, "sample") == 0 || strcmp(k, "mean") == 0 || strcmp(k, "var") == 0))
        return luaL_error(L, "%s:%s: this distribution has symbolic parameters; return it from the model function "
                             "and plume samples it natively",
                          plm_dist_info_of(d->d.kind)->name, k);
    else
        lua_pushnil(L);
    return 1;
}

static int l_symdist_tostring(lua_State *L)
{
    plm_l_symdist *d = luaL_checkudata(L, 1, PLM_L_SYMDIST);
    lua_pushfstring(L, "%s(<symbolic>)", plm_dist_info_of(d->d.kind)->name);
    return 1;
}

void plm_l_open_symdist(lua_State *L)
{
    luaL_newmetatable(L, PLM_L_SYMDIST);
    lua_pushcfunction(L, l_symdist_index);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_symdist_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pop(L, 1);
}
