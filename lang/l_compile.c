/* l_compile.c -- plume.compile: a Lua function traced once with symbolic arguments and compiled to a native
** kernel (runtime/expr.h), callable on numbers or on arrays of points, with its gradient compiled on first use. */
#include "l_expr.h"
#include "larray.h"

#include <string.h>

#define PLM_L_FN "plume.fn"

typedef struct l_fn {
    plm_graph *g;
    plm_prog *prog, *gprog;
    int nin, nout, table;
    int *outs, *ins;
} l_fn;

/* plume.compile(fn, nin): trace fn(x1, ..., xnin) once and compile what it returns (a number or symbol, or
** a table of them) */
static int l_compile(lua_State *L)
{
    lua_Integer nin = plm_l_checkint(L, 2, "plume.compile", "nin"), i;
    plm_graph *g;
    l_fn *f;
    int holder, nres;
    plm_ctx ctx;
    plm_ctx_clear(&ctx);
    luaL_checktype(L, 1, LUA_TFUNCTION);
    if (nin < 0 || nin > 1000) return luaL_error(L, "plume.compile: nin must be in 0..1000 (got %d)", (int)nin);
    g = plm_l_newgraph(L);
    holder = lua_gettop(L);
    f = plm_gc_alloc(sizeof *f);
    if (!f) return luaL_error(L, "plume: out of memory");
    f->g = g;
    f->nin = (int)nin;
    f->ins = plm_gc_alloc_atomic((size_t)(nin + 1) * sizeof(int));
    lua_pushvalue(L, 1);
    for (i = 0; i < nin; i++) {
        f->ins[i] = plm_graph_input(g, PLM_GRP_X, (int)i);
        plm_l_pushsym(L, holder, f->ins[i]);
    }
    plm_l_trace_call(L, (int)nin, 1, "plume.compile");
    nres = lua_gettop(L);
    if (lua_type(L, nres) == LUA_TTABLE) {
        lua_Integer n = luaL_len(L, nres);
        if (n < 1) return luaL_error(L, "plume.compile: the function returned an empty table");
        f->table = 1;
        f->nout = (int)n;
        f->outs = plm_gc_alloc_atomic((size_t)n * sizeof(int));
        for (i = 0; i < n; i++) {
            lua_geti(L, nres, i + 1);
            f->outs[i] = plm_l_tonode(L, -1, g, "plume.compile: returned entry");
            lua_pop(L, 1);
        }
    } else {
        f->nout = 1;
        f->outs = plm_gc_alloc_atomic(sizeof(int));
        f->outs[0] = plm_l_tonode(L, nres, g, "plume.compile: the returned value");
    }
    if (plm_prog_compile(&ctx, g, f->nout, f->outs, 1u << PLM_GRP_X, &f->prog)) return plm_l_fail(L, &ctx);
    plm_l_pushobj(L, f, PLM_L_FN);
    return 1;
}

/* f(x1, ..., xn) with numbers -> numbers; with arrays (tables or plume.array) of one length -> plume.arrays */
static int l_fn_call(lua_State *L)
{
    l_fn *f = plm_l_checkobj(L, 1, PLM_L_FN, "compiled function", "self");
    int i, o, vec = lua_gettop(L) >= 2 && lua_type(L, 2) != LUA_TNUMBER;
    size_t n = 1;
    double *X, **out;
    plm_prog_in in[PLM_NGROUPS];
    plm_ctx ctx;
    plm_ctx_clear(&ctx);
    memset(in, 0, sizeof in);
    if (lua_gettop(L) - 1 != f->nin)
        return luaL_error(L, "compiled function: expected %d arguments (got %d)", f->nin, lua_gettop(L) - 1);
    if (vec) {
        plm_l_checkvec(L, 2, "compiled function", "argument 1", &n, 0);
        lua_pop(L, 1);
    }
    X = plm_l_scratch(L, (size_t)(f->nin + 1) * n * sizeof *X);
    for (i = 0; i < f->nin; i++) {
        if (vec) {
            size_t m;
            char what[32];
            double *v;
            snprintf(what, sizeof what, "argument %d", i + 1);
            v = plm_l_checkvec(L, i + 2, "compiled function", what, &m, 0);
            if (m != n) return luaL_error(L, "compiled function: argument %d has %d values, expected %d", i + 1, (int)m, (int)n);
            memcpy(X + (size_t)i * n, v, n * sizeof *v);
            lua_pop(L, 1);
        } else
            X[i] = plm_l_checknum(L, i + 2, "compiled function", "argument");
    }
    in[PLM_GRP_X].p = X;
    in[PLM_GRP_X].ld = n;
    out = plm_l_scratch(L, (size_t)f->nout * sizeof *out);
    if (vec) {
        for (o = 0; o < f->nout; o++) out[o] = plm_l_newarray(L, n)->data;
    } else {
        double *ob = plm_l_scratch(L, (size_t)f->nout * sizeof *ob);
        for (o = 0; o < f->nout; o++) out[o] = ob + o;
    }
    if (plm_prog_eval(&ctx, f->prog, n, in, out, NULL, 1)) return plm_l_fail(L, &ctx);
    if (!vec)
        for (o = 0; o < f->nout; o++) lua_pushnumber(L, out[o][0]);
    return f->nout;
}

/* f:grad(x1, ..., xn): the gradient (one output) or the Jacobian rows (several outputs) at a point */
static int l_fn_grad(lua_State *L)
{
    l_fn *f = plm_l_checkobj(L, 1, PLM_L_FN, "grad", "self");
    int i, o, nd = f->nin * f->nout;
    double *X, *res, **out;
    plm_prog_in in[PLM_NGROUPS];
    plm_ctx ctx;
    plm_ctx_clear(&ctx);
    memset(in, 0, sizeof in);
    if (lua_gettop(L) - 1 != f->nin) return luaL_error(L, "grad: expected %d arguments (got %d)", f->nin, lua_gettop(L) - 1);
    if (!f->gprog) {
        int *d = plm_gc_alloc_atomic((size_t)(nd + 1) * sizeof(int));
        plm_prog *p;
        if (!d) return luaL_error(L, "plume: out of memory");
        for (o = 0; o < f->nout; o++)
            if (plm_graph_grad(&ctx, f->g, f->outs[o], f->nin, f->ins, d + o * f->nin)) return plm_l_fail(L, &ctx);
        if (plm_prog_compile(&ctx, f->g, nd, d, 1u << PLM_GRP_X, &p)) return plm_l_fail(L, &ctx);
        f->gprog = p;
    }
    X = plm_l_scratch(L, (size_t)(f->nin + 1) * sizeof *X);
    res = plm_l_scratch(L, (size_t)(nd + 1) * sizeof *res);
    out = plm_l_scratch(L, (size_t)(nd + 1) * sizeof *out);
    for (i = 0; i < f->nin; i++) X[i] = plm_l_checknum(L, i + 2, "grad", "argument");
    for (i = 0; i < nd; i++) out[i] = res + i;
    in[PLM_GRP_X].p = X;
    in[PLM_GRP_X].ld = 1;
    if (plm_prog_eval(&ctx, f->gprog, 1, in, out, NULL, 1)) return plm_l_fail(L, &ctx);
    if (!f->table)
        plm_l_pushvec(L, res, (size_t)f->nin);
    else
        plm_l_pushmat(L, res, (size_t)f->nout, (size_t)f->nin);
    return 1;
}

static int l_fn_index(lua_State *L)
{
    l_fn *f = plm_l_checkobj(L, 1, PLM_L_FN, "compiled function", "self");
    const char *k = luaL_checkstring(L, 2);
    plm_prog_info info;
    plm_prog_describe(f->prog, &info);
    if (strcmp(k, "grad") == 0) lua_pushcfunction(L, l_fn_grad);
    else if (strcmp(k, "nodes") == 0) lua_pushinteger(L, info.nlive);
    else if (strcmp(k, "instructions") == 0) lua_pushinteger(L, info.ninstructions);
    else if (strcmp(k, "registers") == 0) lua_pushinteger(L, info.nregisters);
    else lua_pushnil(L);
    return 1;
}

void plm_l_open_compile(lua_State *L)
{
    static const luaL_Reg fnmeta[] = {{"__call", l_fn_call}, {"__index", l_fn_index}, {NULL, NULL}};
    plm_l_newmeta(L, PLM_L_FN, NULL, fnmeta);
    lua_pop(L, 1);
    lua_pushcfunction(L, l_compile);
    lua_setfield(L, -2, "compile");
}
