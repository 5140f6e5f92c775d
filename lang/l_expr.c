/* l_expr.c -- the tracing front end: symbolic values (plume.sym) with arithmetic metamethods, plume.math,
** plume.ifelse, plume.pick and the comparison functions, and the traced call that reports untraceable code
** with the user's line and what to use instead. Symbolic distributions are in l_symdist.c, plume.compile in
** l_compile.c, plume.native in l_native.c. */
#include "l_expr.h"

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
void plm_l_pushlike(lua_State *L, int idx, int id)
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
plm_l_sym *plm_l_firstsym(lua_State *L, int from, int to, int *where)
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
    plm_l_sym *s = plm_l_firstsym(L, 1, nargs, &where);
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
    plm_l_pushlike(L, where, plm_graph_op(s->g, op, ids[0], ids[1], ids[2]));
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
    if (!plm_l_firstsym(L, 1, 2, NULL)) {
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
        plm_l_pushlike(L, 1, plm_graph_op(c->g, PLM_OP_SELECT, c->id, a, b));
    }
    return 1;
}

/* plume.pick(i, list): list[i] for a symbolic index i (1-based), as a chain of selects; rows are picked
** elementwise. An index that is not a whole number in 1..#list never yields an entry: the chain ends in NaN
** (which the model objects report, and which makes a log density NaN rather than a wrong finite value), and
** a plain number raises a domain error (a rejection inside an engine-driven run). */
static int l_pick(lua_State *L)
{
    plm_l_sym *s = plm_l_tosym(L, 1);
    lua_Integer n, k;
    luaL_checktype(L, 2, LUA_TTABLE);
    n = luaL_len(L, 2);
    if (!s) {
        double i = plm_l_checknum(L, 1, "plume.pick", "i");
        if (!(i >= 1 && i <= (double)n && i == floor(i)))
            return plm_l_raise(L, PLM_EDOM, "plume.pick: index %s is not a whole number in 1..%I (the list has %I entries)",
                               luaL_tolstring(L, 1, NULL), (LUAI_UACINT)n, (LUAI_UACINT)n);
        lua_geti(L, 2, (lua_Integer)i);
        return 1;
    }
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
        int r = plm_graph_const(s->g, NAN), i = s->id;
        for (k = n; k >= 1; k--) {
            int v;
            lua_geti(L, 2, k);
            v = plm_l_tonode(L, -1, s->g, "plume.pick: list entry");
            lua_pop(L, 1);
            r = plm_graph_op(s->g, PLM_OP_SELECT, plm_graph_op(s->g, PLM_OP_EQ, i, plm_graph_const(s->g, (double)k), -1),
                             v, r);
        }
        plm_l_pushlike(L, 1, r);
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
                                       {"ge", l_ge}, {"eq", l_eq}, {"ne", l_ne}, {"pick", l_pick}, {NULL, NULL}};
        luaL_setfuncs(L, fns, 0);
    }
}
