/* l_expr.c -- the tracing front end: symbolic values (plume.sym) with arithmetic metamethods, plume.math,
** plume.ifelse and the comparison functions, symbolic distributions, plume.compile (a traced Lua function
** compiled to a native kernel, with gradients) and plume.native (C functions bound through libffi).
** Untraceable code is reported at trace time with the user's line and what to use instead. */
#include "l_expr.h"

#include <dlfcn.h>
#include <ffi.h>
#include <math.h>
#include <string.h>

/* ---- graphs and symbols ---- */

plm_graph *plm_l_newgraph(lua_State *L)
{
    plm_graph *g = plm_graph_new();
    if (!g) luaL_error(L, "plume: out of memory");
    plm_l_pushobj(L, g, PLM_L_GRAPH);
    return g;
}

void plm_l_pushsym(lua_State *L, int holder_idx, int id)
{
    plm_l_sym *s;
    holder_idx = lua_absindex(L, holder_idx);
    if (id < 0) luaL_error(L, "plume: out of memory while tracing");
    s = lua_newuserdatauv(L, sizeof *s, 1);
    s->g = plm_l_testobj(L, holder_idx, PLM_L_GRAPH);
    s->id = id;
    lua_pushvalue(L, holder_idx);
    lua_setiuservalue(L, -2, 1);
    luaL_setmetatable(L, PLM_L_SYM);
}

plm_l_sym *plm_l_tosym(lua_State *L, int idx)
{
    return luaL_testudata(L, idx, PLM_L_SYM);
}

/* push a symbol for node id in the graph of the symbol (or symdist) at idx */
static void push_like(lua_State *L, int idx, int id)
{
    idx = lua_absindex(L, idx);
    lua_getiuservalue(L, idx, 1);
    plm_l_pushsym(L, -1, id);
    lua_remove(L, -2);
}

int plm_l_hassym(lua_State *L, int idx)
{
    lua_Integer i, n;
    int found = 0;
    idx = lua_absindex(L, idx);
    if (plm_l_tosym(L, idx)) return 1;
    if (lua_type(L, idx) != LUA_TTABLE) return 0;
    n = luaL_len(L, idx);
    for (i = 1; i <= n && !found; i++) {
        lua_geti(L, idx, i);
        if (plm_l_tosym(L, -1))
            found = 1;
        else if (lua_type(L, -1) == LUA_TTABLE) {
            lua_Integer j, m = luaL_len(L, -1);
            for (j = 1; j <= m && !found; j++) {
                lua_geti(L, -1, j);
                found = plm_l_tosym(L, -1) != NULL;
                lua_pop(L, 1);
            }
        }
        lua_pop(L, 1);
    }
    return found;
}

int plm_l_tonode(lua_State *L, int idx, plm_graph *g, const char *what)
{
    plm_l_sym *s = plm_l_tosym(L, idx);
    int id;
    if (s) {
        if (s->g != g) luaL_error(L, "%s: symbols of two different models cannot be mixed", what);
        return s->id;
    }
    if (lua_type(L, idx) == LUA_TNUMBER)
        id = plm_graph_const(g, lua_tonumber(L, idx));
    else if (lua_type(L, idx) == LUA_TBOOLEAN)
        id = plm_graph_const(g, lua_toboolean(L, idx));
    else
        return luaL_error(L, "%s must be a number or a symbolic value (got %s)", what, luaL_typename(L, idx));
    if (id < 0) luaL_error(L, "plume: out of memory while tracing");
    return id;
}

/* the graph of the first symbol among arguments from..to, or NULL */
static plm_l_sym *first_sym(lua_State *L, int from, int to, int *where)
{
    int i;
    for (i = from; i <= to; i++) {
        plm_l_sym *s = plm_l_tosym(L, i);
        if (s) {
            if (where) *where = i;
            return s;
        }
    }
    return NULL;
}

/* ---- plume.math, arithmetic metamethods ---- */

static int apply(lua_State *L, const char *name, plm_op op, int nargs)
{
    int where = 0, i, ids[3] = {-1, -1, -1};
    plm_l_sym *s = first_sym(L, 1, nargs, &where);
    char what[64];
    if (!s) {
        double x[3] = {0, 0, 0};
        for (i = 0; i < nargs; i++) {
            snprintf(what, sizeof what, "%s: argument %d", name, i + 1);
            if (lua_type(L, i + 1) == LUA_TBOOLEAN)
                x[i] = lua_toboolean(L, i + 1);
            else
                x[i] = plm_l_checknum(L, i + 1, name, what + strlen(name) + 2);
        }
        lua_pushnumber(L, plm_op_eval(op, x[0], x[1], x[2]));
        return 1;
    }
    for (i = 0; i < nargs; i++) {
        snprintf(what, sizeof what, "%s: argument %d", name, i + 1);
        ids[i] = plm_l_tonode(L, i + 1, s->g, what);
    }
    push_like(L, where, plm_graph_op(s->g, op, ids[0], ids[1], ids[2]));
    return 1;
}

typedef struct math_fn {
    const char *name;
    plm_op op;
    int nargs;
} math_fn;

static const math_fn math_fns[] = {
    {"exp", PLM_OP_EXP, 1},         {"log1p", PLM_OP_LOG1P, 1},   {"expm1", PLM_OP_EXPM1, 1},
    {"sqrt", PLM_OP_SQRT, 1},       {"sin", PLM_OP_SIN, 1},       {"cos", PLM_OP_COS, 1},
    {"tan", PLM_OP_TAN, 1},         {"asin", PLM_OP_ASIN, 1},     {"acos", PLM_OP_ACOS, 1},
    {"sinh", PLM_OP_SINH, 1},       {"cosh", PLM_OP_COSH, 1},     {"tanh", PLM_OP_TANH, 1},
    {"logistic", PLM_OP_LOGISTIC, 1}, {"softplus", PLM_OP_SOFTPLUS, 1}, {"abs", PLM_OP_ABS, 1},
    {"lgamma", PLM_OP_LGAMMA, 1},   {"digamma", PLM_OP_DIGAMMA, 1}, {"trigamma", PLM_OP_TRIGAMMA, 1},
    {"erf", PLM_OP_ERF, 1},         {"normcdf", PLM_OP_PHI, 1},   {"floor", PLM_OP_FLOOR, 1},
    {"sign", PLM_OP_SIGN, 1},       {"pow", PLM_OP_POW, 2},       {"atan2", PLM_OP_ATAN2, 2},
    {NULL, 0, 0}};

static int l_math(lua_State *L)
{
    const math_fn *f = &math_fns[lua_tointeger(L, lua_upvalueindex(1))];
    char name[48];
    snprintf(name, sizeof name, "plume.math.%s", f->name);
    lua_settop(L, f->nargs);
    return apply(L, name, f->op, f->nargs);
}

/* log(x [, base]) as in Lua's math.log */
static int l_math_log(lua_State *L)
{
    if (lua_isnoneornil(L, 2)) {
        lua_settop(L, 1);
        return apply(L, "plume.math.log", PLM_OP_LOG, 1);
    }
    lua_settop(L, 2);
    lua_pushcfunction(L, l_math_log);
    lua_pushvalue(L, 1);
    lua_call(L, 1, 1);
    lua_pushcfunction(L, l_math_log);
    lua_pushvalue(L, 2);
    lua_call(L, 1, 1);
    lua_replace(L, 2);
    lua_replace(L, 1);
    return apply(L, "plume.math.log", PLM_OP_DIV, 2);
}

/* atan(y [, x]) as in Lua's math.atan */
static int l_math_atan(lua_State *L)
{
    if (lua_isnoneornil(L, 2)) {
        lua_settop(L, 1);
        return apply(L, "plume.math.atan", PLM_OP_ATAN, 1);
    }
    lua_settop(L, 2);
    return apply(L, "plume.math.atan", PLM_OP_ATAN2, 2);
}

static int l_pair(lua_State *L)
{
    plm_op op = (plm_op)lua_tointeger(L, lua_upvalueindex(1));
    return apply(L, lua_tostring(L, lua_upvalueindex(2)), op, 2);
}

static int l_minmax(lua_State *L)
{
    plm_op op = (plm_op)lua_tointeger(L, lua_upvalueindex(1));
    const char *name = lua_tostring(L, lua_upvalueindex(2));
    int n = lua_gettop(L), i;
    if (n < 1) return luaL_error(L, "%s: at least one argument expected", name);
    lua_pushvalue(L, 1);
    for (i = 2; i <= n; i++) {
        lua_pushinteger(L, op);
        lua_pushstring(L, name);
        lua_pushcclosure(L, l_pair, 2);
        lua_insert(L, -2);
        lua_pushvalue(L, i);
        lua_call(L, 2, 1);
    }
    return 1;
}

static int sym_binop(lua_State *L, plm_op op, const char *name)
{
    lua_settop(L, 2);
    if (luaL_testudata(L, 1, PLM_L_SYMDIST) || luaL_testudata(L, 2, PLM_L_SYMDIST))
        return luaL_error(L, "cannot do arithmetic (%s) on a distribution", name);
    return apply(L, name, op, 2);
}

static int l_sym_add(lua_State *L) { return sym_binop(L, PLM_OP_ADD, "+"); }
static int l_sym_sub(lua_State *L) { return sym_binop(L, PLM_OP_SUB, "-"); }
static int l_sym_mul(lua_State *L) { return sym_binop(L, PLM_OP_MUL, "*"); }
static int l_sym_div(lua_State *L) { return sym_binop(L, PLM_OP_DIV, "/"); }
static int l_sym_pow(lua_State *L) { return sym_binop(L, PLM_OP_POW, "^"); }
static int l_sym_unm(lua_State *L)
{
    lua_settop(L, 1);
    return apply(L, "-", PLM_OP_NEG, 1);
}

/* Lua's floored division and modulo: a // b = floor(a / b), a % b = a - floor(a / b) * b */
static int l_sym_idiv(lua_State *L)
{
    sym_binop(L, PLM_OP_DIV, "//");
    lua_replace(L, 1);
    lua_settop(L, 1);
    return apply(L, "//", PLM_OP_FLOOR, 1);
}

static int l_sym_mod(lua_State *L)
{
    lua_settop(L, 2);
    lua_pushcfunction(L, l_sym_idiv);
    lua_pushvalue(L, 1);
    lua_pushvalue(L, 2);
    lua_call(L, 2, 1);          /* q */
    lua_pushvalue(L, 2);
    lua_replace(L, 2);
    lua_settop(L, 3);
    lua_pushcfunction(L, l_sym_mul);
    lua_pushvalue(L, 3);
    lua_pushvalue(L, 2);
    lua_call(L, 2, 1);          /* q * b */
    lua_replace(L, 2);
    lua_settop(L, 2);
    return sym_binop(L, PLM_OP_SUB, "%");
}

static int l_sym_compare(lua_State *L)
{
    const char *op = lua_tostring(L, lua_upvalueindex(1));
    const char *shown = op[0] != '<' ? "'=='" : op[1] == '=' ? "'<=' or '>='" : "'<' or '>'";
    return luaL_error(L,
                      "cannot compare symbolic values with %s: a traced model runs once, so 'if', 'and', 'or' "
                      "cannot branch on a symbol; use plume.ifelse(plume.%s(a, b), x, y) (or a:%s(b); also "
                      "plume.lt/le/gt/ge/eq/ne), or the dynamic plume.model form",
                      shown, op[0] != '<' ? "eq" : op[1] == '=' ? "le" : "lt", op[0] != '<' ? "eq" : op[1] == '=' ? "le" : "lt");
}

static int l_sym_len(lua_State *L)
{
    return luaL_error(L, "a symbolic value is a scalar: '#' applies to vector states (tables of symbols)");
}

static int l_sym_concat(lua_State *L)
{
    return luaL_error(L, "cannot concatenate a symbolic value: its value is only known when the compiled model runs");
}

static int l_sym_call(lua_State *L)
{
    return luaL_error(L, "a symbolic value is not a function");
}

static int l_sym_tostring(lua_State *L)
{
    plm_l_sym *s = luaL_checkudata(L, 1, PLM_L_SYM);
    int grp, idx;
    if (plm_graph_is_input(s->g, s->id, &grp, &idx)) {
        static const char *gn[PLM_NGROUPS] = {"param", "time", "covariate", "x", "y", "z"};
        lua_pushfstring(L, "plume.sym(%s[%d])", gn[grp], idx + 1);
    } else
        lua_pushfstring(L, "plume.sym(%s #%d)", plm_op_name((plm_op)plm_graph_node(s->g, s->id, NULL, NULL)), s->id);
    return 1;
}

/* ---- comparisons, ifelse, pick ---- */

static int compare(lua_State *L, plm_op op, int swap, int negate, const char *name)
{
    lua_settop(L, 2);
    if (swap) {
        lua_pushvalue(L, 1);
        lua_remove(L, 1);
    }
    if (!first_sym(L, 1, 2, NULL)) {
        double a = plm_l_checknum(L, 1, name, swap ? "b" : "a"), b = plm_l_checknum(L, 2, name, swap ? "a" : "b");
        lua_pushboolean(L, (plm_op_eval(op, a, b, 0) != 0) != negate);
        return 1;
    }
    return apply(L, name, op, 2);
}

static int l_lt(lua_State *L) { return compare(L, PLM_OP_LT, 0, 0, "plume.lt"); }
static int l_le(lua_State *L) { return compare(L, PLM_OP_LE, 0, 0, "plume.le"); }
static int l_gt(lua_State *L) { return compare(L, PLM_OP_LT, 1, 0, "plume.gt"); }
static int l_ge(lua_State *L) { return compare(L, PLM_OP_LE, 1, 0, "plume.ge"); }
static int l_eq(lua_State *L) { return compare(L, PLM_OP_EQ, 0, 0, "plume.eq"); }
static int l_ne(lua_State *L) { return compare(L, PLM_OP_NE, 0, 0, "plume.ne"); }

/* plume.ifelse(c, a, b): a plain choice when c is a boolean or number, a select node when c is symbolic;
** tables of equal length are chosen elementwise */
static int l_ifelse(lua_State *L)
{
    plm_l_sym *c;
    lua_settop(L, 3);
    c = plm_l_tosym(L, 1);
    if (!c) {
        int t = lua_type(L, 1) == LUA_TNUMBER ? lua_tonumber(L, 1) != 0 : lua_toboolean(L, 1);
        lua_pushvalue(L, t ? 2 : 3);
        return 1;
    }
    if (lua_type(L, 2) == LUA_TTABLE && lua_type(L, 3) == LUA_TTABLE) {
        lua_Integer n = luaL_len(L, 2), i;
        if (luaL_len(L, 3) != n) return luaL_error(L, "plume.ifelse: the two tables have different lengths");
        lua_createtable(L, (int)n, 0);
        for (i = 1; i <= n; i++) {
            lua_pushcfunction(L, l_ifelse);
            lua_pushvalue(L, 1);
            lua_geti(L, 2, i);
            lua_geti(L, 3, i);
            lua_call(L, 3, 1);
            lua_rawseti(L, -2, i);
        }
        return 1;
    }
    {
        int a = plm_l_tonode(L, 2, c->g, "plume.ifelse: the value if true");
        int b = plm_l_tonode(L, 3, c->g, "plume.ifelse: the value if false");
        push_like(L, 1, plm_graph_op(c->g, PLM_OP_SELECT, c->id, a, b));
    }
    return 1;
}

/* plume.pick(i, list): list[i] for a symbolic index i (1-based), as a chain of selects; rows are picked
** elementwise */
static int l_pick(lua_State *L)
{
    plm_l_sym *s = plm_l_tosym(L, 1);
    lua_Integer n, k;
    luaL_checktype(L, 2, LUA_TTABLE);
    if (!s) {
        lua_geti(L, 2, plm_l_checkint(L, 1, "plume.pick", "i"));
        return 1;
    }
    n = luaL_len(L, 2);
    if (n < 1) return luaL_error(L, "plume.pick: the list is empty");
    lua_geti(L, 2, 1);
    if (lua_type(L, -1) == LUA_TTABLE) {
        lua_Integer m = luaL_len(L, -1), j;
        lua_pop(L, 1);
        lua_createtable(L, (int)m, 0);
        for (j = 1; j <= m; j++) {
            lua_pushcfunction(L, l_pick);
            lua_pushvalue(L, 1);
            lua_createtable(L, (int)n, 0);
            for (k = 1; k <= n; k++) {
                if (lua_geti(L, 2, k) != LUA_TTABLE) return luaL_error(L, "plume.pick: row %d is not a table", (int)k);
                lua_geti(L, -1, j);
                lua_remove(L, -2);
                lua_rawseti(L, -2, k);
            }
            lua_call(L, 2, 1);
            lua_rawseti(L, -2, j);
        }
        return 1;
    }
    lua_pop(L, 1);
    {
        int r = plm_graph_const(s->g, 0), i = s->id;
        for (k = n; k >= 1; k--) {
            int v;
            lua_geti(L, 2, k);
            v = plm_l_tonode(L, -1, s->g, "plume.pick: list entry");
            lua_pop(L, 1);
            r = plm_graph_op(s->g, PLM_OP_SELECT, plm_graph_op(s->g, PLM_OP_EQ, i, plm_graph_const(s->g, (double)k), -1),
                             v, k == n ? v : r);
        }
        push_like(L, 1, r);
    }
    return 1;
}

static int l_sym_index(lua_State *L)
{
    if (lua_type(L, 2) == LUA_TNUMBER)
        return luaL_error(L, "a symbolic value is a scalar and cannot be indexed (x[%d]): vector states need dim > 1",
                          (int)lua_tointeger(L, 2));
    lua_pushvalue(L, 2);
    lua_rawget(L, lua_upvalueindex(1));
    return 1;
}

/* ---- symbolic distributions ---- */

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
    push_like(L, 1, r);
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

/* ---- tracing calls ---- */

static int is_math_name(const char *n)
{
    const math_fn *f;
    for (f = math_fns; f->name; f++)
        if (strcmp(f->name, n) == 0) return 1;
    return strcmp(n, "log") == 0 || strcmp(n, "atan") == 0 || strcmp(n, "min") == 0 || strcmp(n, "max") == 0;
}

static int trace_handler(lua_State *L)
{
    const char *msg = lua_tostring(L, 1), *what = lua_tostring(L, lua_upvalueindex(1)), *p;
    luaL_Buffer b;
    if (!msg) msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    luaL_buffinit(L, &b);
    if ((p = strstr(msg, "bad argument #")) && (strstr(p, "got plume.sym") || strstr(p, "got plume.symdist"))) {
        const char *q = strchr(p, '\''), *e = q ? strchr(q + 1, '\'') : NULL;
        char name[64] = "?";
        if (q && e && e - q - 1 < (long)sizeof name) {
            memcpy(name, q + 1, (size_t)(e - q - 1));
            name[e - q - 1] = 0;
        }
        luaL_addlstring(&b, msg, (size_t)(p - msg));
        {
            const char *base = strncmp(name, "math.", 5) == 0 ? name + 5 : name;
            if (strstr(p, "got plume.symdist"))
                lua_pushfstring(L, "'%s' cannot take a symbolic distribution", name);
            else if (is_math_name(base))
                lua_pushfstring(L, "'math.%s' cannot take a symbolic value: use plume.math.%s", base, base);
            else
                lua_pushfstring(L,
                                "'%s' cannot take a symbolic value: use a supported function (plume.math.*), "
                                "plume.native, or the dynamic plume.model form",
                                name);
            luaL_addvalue(&b);
        }
    } else if ((p = strstr(msg, "attempt to ")) && strstr(p, "plume.sym")) {
        luaL_addstring(&b, msg);
        luaL_addstring(&b, " (symbolic values support + - * / ^ %, plume.math.* and plume.ifelse)");
    } else
        luaL_addstring(&b, msg);
    if (what && *what) {
        luaL_addstring(&b, " (while tracing ");
        luaL_addstring(&b, what);
        luaL_addchar(&b, ')');
    }
    luaL_pushresult(&b);
    return 1;
}

void plm_l_trace_call(lua_State *L, int nargs, int nres, const char *what)
{
    int base = lua_gettop(L) - nargs, st;
    lua_pushstring(L, what ? what : "");
    lua_pushcclosure(L, trace_handler, 1);
    lua_insert(L, base);
    st = lua_pcall(L, nargs, nres, base);
    lua_remove(L, base);
    if (st != LUA_OK) lua_error(L);
}

void plm_l_funcwhere(lua_State *L, int idx, char *buf, size_t n)
{
    lua_Debug ar;
    lua_pushvalue(L, idx);
    if (lua_getinfo(L, ">S", &ar) && ar.linedefined > 0)
        snprintf(buf, n, "%s:%d", ar.short_src, ar.linedefined);
    else
        snprintf(buf, n, "?");
}

/* ---- plume.compile ---- */

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

/* ---- plume.native ---- */

#define PLM_L_NATIVE "plume.native"

enum { NT_VOID, NT_DOUBLE, NT_FLOAT, NT_INT, NT_LONG };

typedef struct l_native {
    plm_native nat;
    ffi_cif cif;
    ffi_type *atypes[PLM_NATIVE_MAXARGS + 2];
    int types[PLM_NATIVE_MAXARGS + 2], rtype, nargs, alldouble;
    char name[64];
} l_native;

static int parse_type(const char *s, size_t n)
{
    static const struct {
        const char *name;
        int t;
    } T[] = {{"double", NT_DOUBLE}, {"float", NT_FLOAT}, {"int", NT_INT}, {"long", NT_LONG},
             {"int32_t", NT_INT}, {"int64_t", NT_LONG}, {"void", NT_VOID}};
    size_t i;
    while (n && (*s == ' ' || *s == '\t')) s++, n--;
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t')) n--;
    for (i = 0; i < sizeof T / sizeof *T; i++)
        if (strlen(T[i].name) == n && strncmp(T[i].name, s, n) == 0) return T[i].t;
    return -1;
}

static ffi_type *ffi_of(int t)
{
    switch (t) {
    case NT_DOUBLE: return &ffi_type_double;
    case NT_FLOAT: return &ffi_type_float;
    case NT_INT: return &ffi_type_sint32;
    case NT_LONG: return &ffi_type_sint64;
    default: return &ffi_type_void;
    }
}

/* "double(double, int)" -> types; returns an error message or NULL */
static const char *parse_sig(const char *sig, l_native *f, char *err, size_t nerr)
{
    const char *lp = strchr(sig, '('), *rp = strrchr(sig, ')'), *s;
    if (!lp || !rp || rp < lp) return "expected the form 'double(double, double)'";
    f->rtype = parse_type(sig, (size_t)(lp - sig));
    if (f->rtype < 0) {
        snprintf(err, nerr, "unknown return type '%.*s' (use double, float, int, long or void)", (int)(lp - sig), sig);
        return err;
    }
    f->nargs = 0;
    s = lp + 1;
    while (s < rp) {
        const char *e = memchr(s, ',', (size_t)(rp - s));
        int t;
        if (!e) e = rp;
        t = parse_type(s, (size_t)(e - s));
        if (t == NT_VOID && f->nargs == 0 && e == rp) break;   /* f(void) */
        if (t < 0 || t == NT_VOID) {
            snprintf(err, nerr, "unknown argument type '%.*s' (use double, float, int or long)", (int)(e - s), s);
            return err;
        }
        if (f->nargs == PLM_NATIVE_MAXARGS) return "at most 6 arguments are supported";
        f->types[f->nargs++] = t;
        s = e + 1;
    }
    return NULL;
}

static int l_native_new(lua_State *L)
{
    const char *lib, *name, *sig, *grad, *msg;
    char err[160];
    void *h, *fn;
    l_native *f;
    int i;
    luaL_checktype(L, 1, LUA_TTABLE);
    lib = plm_l_optstr(L, 1, "plume.native", "lib", NULL);
    name = plm_l_optstr(L, 1, "plume.native", "name", NULL);
    sig = plm_l_optstr(L, 1, "plume.native", "sig", NULL);
    grad = plm_l_optstr(L, 1, "plume.native", "grad", NULL);
    if (!name) return luaL_error(L, "plume.native: option 'name' (the C symbol) is required");
    if (!sig) return luaL_error(L, "plume.native: option 'sig' is required, e.g. sig = \"double(double, double)\"");
    f = plm_gc_alloc(sizeof *f);
    if (!f) return luaL_error(L, "plume: out of memory");
    if ((msg = parse_sig(sig, f, err, sizeof err))) return luaL_error(L, "plume.native: bad signature '%s': %s", sig, msg);
    h = dlopen(lib, RTLD_NOW | RTLD_LOCAL);
    if (!h) return luaL_error(L, "plume.native: cannot open library '%s': %s", lib ? lib : "(the program)", dlerror());
    fn = dlsym(h, name);
    if (!fn) return luaL_error(L, "plume.native: symbol '%s' not found in '%s'", name, lib ? lib : "(the program)");
    snprintf(f->name, sizeof f->name, "%s", name);
    f->nat.name = f->name;
    f->nat.nargs = f->nargs;
    f->nat.fn = fn;
    f->alldouble = f->rtype == NT_DOUBLE;
    for (i = 0; i < f->nargs; i++) {
        f->atypes[i] = ffi_of(f->types[i]);
        if (f->types[i] != NT_DOUBLE) f->alldouble = 0;
    }
    if (grad) {
        if (!f->alldouble) return luaL_error(L, "plume.native: a grad function needs sig double(double, ...)");
        f->nat.grad = dlsym(h, grad);
        if (!f->nat.grad)
            return luaL_error(L, "plume.native: grad symbol '%s' not found in '%s'", grad, lib ? lib : "(the program)");
    }
    if (ffi_prep_cif(&f->cif, FFI_DEFAULT_ABI, (unsigned)f->nargs, ffi_of(f->rtype), f->atypes) != FFI_OK)
        return luaL_error(L, "plume.native: libffi cannot prepare a call of signature '%s'", sig);
    /* graphs point at f->nat for as long as they live: keep it for the life of the program */
    plm_root(f);
    plm_l_pushobj(L, f, PLM_L_NATIVE);
    return 1;
}

static int l_native_call(lua_State *L)
{
    l_native *f = plm_l_checkobj(L, 1, PLM_L_NATIVE, "native", "self");
    int n = lua_gettop(L) - 1, i, where = 0;
    plm_l_sym *s;
    if (n != f->nargs) return luaL_error(L, "%s: expected %d arguments (got %d)", f->name, f->nargs, n);
    s = first_sym(L, 2, n + 1, &where);
    if (s) {
        int args[PLM_NATIVE_MAXARGS];
        if (!f->alldouble)
            return luaL_error(L, "%s: only functions of signature double(double, ...) can take symbolic values", f->name);
        for (i = 0; i < n; i++) args[i] = plm_l_tonode(L, i + 2, s->g, f->name);
        push_like(L, where, plm_graph_native(s->g, &f->nat, args));
        return 1;
    }
    {
        double dv[PLM_NATIVE_MAXARGS];
        float fv[PLM_NATIVE_MAXARGS];
        int iv[PLM_NATIVE_MAXARGS];
        long lv[PLM_NATIVE_MAXARGS];
        void *av[PLM_NATIVE_MAXARGS];
        union {
            double d;
            float f;
            ffi_sarg i;
            long l;
        } rv;
        for (i = 0; i < n; i++) {
            switch (f->types[i]) {
            case NT_DOUBLE: dv[i] = plm_l_checknum(L, i + 2, f->name, "argument"); av[i] = &dv[i]; break;
            case NT_FLOAT: fv[i] = (float)plm_l_checknum(L, i + 2, f->name, "argument"); av[i] = &fv[i]; break;
            case NT_INT: iv[i] = (int)plm_l_checkint(L, i + 2, f->name, "argument"); av[i] = &iv[i]; break;
            default: lv[i] = (long)plm_l_checkint(L, i + 2, f->name, "argument"); av[i] = &lv[i]; break;
            }
        }
        ffi_call(&f->cif, FFI_FN(f->nat.fn), &rv, av);
        switch (f->rtype) {
        case NT_DOUBLE: lua_pushnumber(L, rv.d); return 1;
        case NT_FLOAT: lua_pushnumber(L, rv.f); return 1;
        case NT_INT: lua_pushinteger(L, (int)rv.i); return 1;
        case NT_LONG: lua_pushinteger(L, rv.l); return 1;
        default: return 0;
        }
    }
}

/* ---- registration ---- */

void plm_l_open_expr(lua_State *L)
{
    static const luaL_Reg symmeta[] = {
        {"__add", l_sym_add}, {"__sub", l_sym_sub}, {"__mul", l_sym_mul}, {"__div", l_sym_div},
        {"__pow", l_sym_pow}, {"__unm", l_sym_unm}, {"__idiv", l_sym_idiv}, {"__mod", l_sym_mod},
        {"__len", l_sym_len}, {"__concat", l_sym_concat}, {"__call", l_sym_call},
        {"__tostring", l_sym_tostring}, {NULL, NULL}};
    static const luaL_Reg symmethods[] = {{"lt", l_lt}, {"le", l_le}, {"gt", l_gt}, {"ge", l_ge},
                                          {"eq", l_eq}, {"ne", l_ne}, {NULL, NULL}};
    static const char *cmpops[3][2] = {{"__lt", "<"}, {"__le", "<="}, {"__eq", "=="}};
    const math_fn *m;
    int i;

    plm_l_newmeta(L, PLM_L_GRAPH, NULL, NULL);
    lua_pop(L, 1);

    luaL_newmetatable(L, PLM_L_SYM);
    luaL_setfuncs(L, symmeta, 0);
    for (i = 0; i < 3; i++) {
        lua_pushstring(L, cmpops[i][1]);
        lua_pushcclosure(L, l_sym_compare, 1);
        lua_setfield(L, -2, cmpops[i][0]);
    }
    luaL_newlib(L, symmethods);
    lua_pushcclosure(L, l_sym_index, 1);
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);

    luaL_newmetatable(L, PLM_L_SYMDIST);
    lua_pushcfunction(L, l_symdist_index);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_symdist_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pop(L, 1);

    {
        static const luaL_Reg fnmeta[] = {{"__call", l_fn_call}, {"__index", l_fn_index}, {NULL, NULL}};
        plm_l_newmeta(L, PLM_L_FN, NULL, fnmeta);
        lua_pop(L, 1);
    }
    {
        static const luaL_Reg natmeta[] = {{"__call", l_native_call}, {NULL, NULL}};
        plm_l_newmeta(L, PLM_L_NATIVE, NULL, natmeta);
        lua_pop(L, 1);
    }

    lua_newtable(L);
    for (m = math_fns; m->name; m++) {
        lua_pushinteger(L, m - math_fns);
        lua_pushcclosure(L, l_math, 1);
        lua_setfield(L, -2, m->name);
    }
    lua_pushcfunction(L, l_math_log);
    lua_setfield(L, -2, "log");
    lua_pushcfunction(L, l_math_atan);
    lua_setfield(L, -2, "atan");
    lua_pushinteger(L, PLM_OP_MIN);
    lua_pushstring(L, "plume.math.min");
    lua_pushcclosure(L, l_minmax, 2);
    lua_setfield(L, -2, "min");
    lua_pushinteger(L, PLM_OP_MAX);
    lua_pushstring(L, "plume.math.max");
    lua_pushcclosure(L, l_minmax, 2);
    lua_setfield(L, -2, "max");
    lua_pushnumber(L, M_PI);
    lua_setfield(L, -2, "pi");
    lua_pushnumber(L, HUGE_VAL);
    lua_setfield(L, -2, "huge");
    lua_setfield(L, -2, "math");

    {
        static const luaL_Reg fns[] = {{"ifelse", l_ifelse}, {"lt", l_lt}, {"le", l_le}, {"gt", l_gt},
                                       {"ge", l_ge}, {"eq", l_eq}, {"ne", l_ne}, {"pick", l_pick},
                                       {"compile", l_compile}, {"native", l_native_new}, {NULL, NULL}};
        luaL_setfuncs(L, fns, 0);
    }
}
