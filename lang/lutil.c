/* lutil.c -- argument checking and conversions shared by the Lua bindings. */
#include "lutil.h"

#include <math.h>
#include <stdarg.h>
#include <string.h>

/* The run depth lives in the registry, so every coroutine and every copy of a chain's state sees its own
** Lua state's depth and nothing is process-wide. */
static const char run_depth_key = 'r';

static lua_Integer run_depth(lua_State *L)
{
    lua_Integer d;
    lua_rawgetp(L, LUA_REGISTRYINDEX, &run_depth_key);
    d = lua_tointeger(L, -1);
    lua_pop(L, 1);
    return d;
}

static void set_run_depth(lua_State *L, lua_Integer d)
{
    lua_pushinteger(L, d);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &run_depth_key);
}

void plm_l_run_enter(lua_State *L) { set_run_depth(L, run_depth(L) + 1); }
void plm_l_run_leave(lua_State *L) { lua_Integer d = run_depth(L); set_run_depth(L, d > 0 ? d - 1 : 0); }
int plm_l_in_run(lua_State *L) { return run_depth(L) > 0; }

static int reject_tostring(lua_State *L)
{
    lua_getfield(L, 1, "msg");
    return 1;
}

int plm_l_isreject(lua_State *L, int idx)
{
    int r = 0;
    if (lua_type(L, idx) == LUA_TTABLE && lua_getmetatable(L, idx)) {
        luaL_getmetatable(L, PLM_L_REJECT);
        r = lua_rawequal(L, -1, -2);
        lua_pop(L, 2);
    }
    return r;
}

/* Raise msg (already formatted) with the caller's position, as a rejection inside runs. */
static int raise_msg(lua_State *L, plm_status st, const char *msg)
{
    luaL_where(L, 1);
    lua_pushstring(L, msg);
    lua_concat(L, 2);
    if ((st == PLM_EINVAL || st == PLM_EDOM) && plm_l_in_run(L)) {
        lua_createtable(L, 0, 2);
        lua_insert(L, -2);
        lua_setfield(L, -2, "msg");
        lua_pushinteger(L, st);
        lua_setfield(L, -2, "status");
        if (luaL_newmetatable(L, PLM_L_REJECT)) {
            lua_pushcfunction(L, reject_tostring);
            lua_setfield(L, -2, "__tostring");
        }
        lua_setmetatable(L, -2);
    }
    return lua_error(L);
}

int plm_l_fail(lua_State *L, plm_ctx *ctx)
{
    return raise_msg(L, ctx->status, ctx->msg[0] ? ctx->msg : "plume: unknown error");
}

void plm_l_pushmodule(lua_State *L)
{
    if (lua_getfield(L, LUA_REGISTRYINDEX, PLM_L_MODULE) != LUA_TTABLE) luaL_error(L, "plume: the module is not loaded");
}

int plm_l_fail_as(lua_State *L, plm_ctx *ctx, const char *fn)
{
    char buf[PLM_MSG_MAX];
    if (ctx->body > 0) {
        snprintf(buf, sizeof buf, "%s: %s", fn, plm_ctx_errbody(ctx));
        memcpy(ctx->msg, buf, sizeof buf);
        ctx->body = 0;
    }
    return plm_l_fail(L, ctx);
}

int plm_l_raise(lua_State *L, plm_status st, const char *fmt, ...)
{
    va_list ap;
    const char *msg;
    va_start(ap, fmt);
    msg = lua_pushvfstring(L, fmt, ap);
    va_end(ap);
    return raise_msg(L, st, msg);
}

static int typeerr(lua_State *L, int idx, const char *fn, const char *arg, const char *want)
{
    return luaL_error(L, "%s: %s must be %s (got %s)", fn, arg, want, luaL_typename(L, idx));
}

double plm_l_checknum(lua_State *L, int idx, const char *fn, const char *arg)
{
    int ok;
    lua_Number x = lua_tonumberx(L, idx, &ok);
    if (!ok || lua_type(L, idx) != LUA_TNUMBER) typeerr(L, idx, fn, arg, "a number");
    return x;
}

lua_Integer plm_l_checkint(lua_State *L, int idx, const char *fn, const char *arg)
{
    int ok;
    lua_Integer x;
    if (lua_type(L, idx) != LUA_TNUMBER) typeerr(L, idx, fn, arg, "an integer");
    x = lua_tointegerx(L, idx, &ok);
    if (!ok) luaL_error(L, "%s: %s must be an integer (got %s)", fn, arg, lua_tostring(L, idx));
    return x;
}

/* Push opts[key] (nil when opts is absent); return its type. */
static int getopt(lua_State *L, int idx, const char *key)
{
    if (idx == 0 || lua_type(L, idx) != LUA_TTABLE) {
        lua_pushnil(L);
        return LUA_TNIL;
    }
    return lua_getfield(L, idx, key);
}

static int opterr(lua_State *L, const char *fn, const char *key, const char *want)
{
    return luaL_error(L, "%s: option '%s' must be %s (got %s)", fn, key, want, luaL_typename(L, -1));
}

double plm_l_optnum(lua_State *L, int idx, const char *fn, const char *key, double def)
{
    double x = def;
    idx = idx ? lua_absindex(L, idx) : 0;
    if (getopt(L, idx, key) != LUA_TNIL) {
        if (lua_type(L, -1) != LUA_TNUMBER) opterr(L, fn, key, "a number");
        x = lua_tonumber(L, -1);
    }
    lua_pop(L, 1);
    return x;
}

lua_Integer plm_l_optint(lua_State *L, int idx, const char *fn, const char *key, lua_Integer def)
{
    lua_Integer x = def;
    int ok;
    idx = idx ? lua_absindex(L, idx) : 0;
    if (getopt(L, idx, key) != LUA_TNIL) {
        if (lua_type(L, -1) != LUA_TNUMBER) opterr(L, fn, key, "an integer");
        x = lua_tointegerx(L, -1, &ok);
        if (!ok) luaL_error(L, "%s: option '%s' must be an integer (got %s)", fn, key, lua_tostring(L, -1));
    }
    lua_pop(L, 1);
    return x;
}

int plm_l_optbool(lua_State *L, int idx, const char *fn, const char *key, int def)
{
    int x = def;
    idx = idx ? lua_absindex(L, idx) : 0;
    if (getopt(L, idx, key) != LUA_TNIL) {
        if (lua_type(L, -1) != LUA_TBOOLEAN) opterr(L, fn, key, "a boolean");
        x = lua_toboolean(L, -1);
    }
    lua_pop(L, 1);
    return x;
}

const char *plm_l_optstr(lua_State *L, int idx, const char *fn, const char *key, const char *def)
{
    const char *s = def;
    idx = idx ? lua_absindex(L, idx) : 0;
    if (getopt(L, idx, key) != LUA_TNIL) {
        if (lua_type(L, -1) != LUA_TSTRING) opterr(L, fn, key, "a string");
        /* the string stays alive: it is referenced by the options table */
        s = lua_tostring(L, -1);
    }
    lua_pop(L, 1);
    return s;
}

void *plm_l_scratch(lua_State *L, size_t bytes)
{
    return lua_newuserdatauv(L, bytes ? bytes : 1, 0);
}

void plm_l_pushvec(lua_State *L, const double *x, size_t n)
{
    size_t i;
    lua_createtable(L, (int)n, 0);
    for (i = 0; i < n; i++) {
        lua_pushnumber(L, x[i]);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
}

void plm_l_pushmat(lua_State *L, const double *x, size_t rows, size_t cols)
{
    size_t i;
    lua_createtable(L, (int)rows, 0);
    for (i = 0; i < rows; i++) {
        plm_l_pushvec(L, x + i * cols, cols);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
}

/* ---- boxed runtime objects ---- */

static int box_gc(lua_State *L)
{
    plm_l_box *b = lua_touserdata(L, 1);
    if (b && b->root) {
        plm_unroot(b->root);
        b->root = 0;
        b->obj = NULL;
    }
    return 0;
}

void *plm_l_pushobj(lua_State *L, void *obj, const char *meta)
{
    plm_l_box *b = lua_newuserdatauv(L, sizeof *b, 1);
    b->obj = obj;
    b->root = 0;
    luaL_setmetatable(L, meta);
    if (!(b->root = plm_root(obj))) luaL_error(L, "plume: out of memory");
    return obj;
}

void *plm_l_testobj(lua_State *L, int idx, const char *meta)
{
    plm_l_box *b = luaL_testudata(L, idx, meta);
    return b ? b->obj : NULL;
}

void *plm_l_checkobj(lua_State *L, int idx, const char *meta, const char *fn, const char *arg)
{
    void *o = plm_l_testobj(L, idx, meta);
    if (!o) {
        const char *short_name = strchr(meta, '.') ? strchr(meta, '.') + 1 : meta;
        luaL_error(L, "%s: %s must be a %s (got %s)", fn, arg, short_name, luaL_typename(L, idx));
    }
    return o;
}

void plm_l_newmeta(lua_State *L, const char *meta, const luaL_Reg *methods, const luaL_Reg *metamethods)
{
    luaL_newmetatable(L, meta);
    if (metamethods) luaL_setfuncs(L, metamethods, 0);
    lua_getfield(L, -1, "__gc");
    if (lua_isnil(L, -1)) {
        lua_pushcfunction(L, box_gc);
        lua_setfield(L, -3, "__gc");
    }
    lua_pop(L, 1);
    if (methods) {
        lua_getfield(L, -1, "__index");
        if (lua_isnil(L, -1)) {
            lua_pop(L, 1);
            lua_newtable(L);
            lua_pushvalue(L, -1);
            lua_setfield(L, -3, "__index");
        }
        luaL_setfuncs(L, methods, 0);
        lua_pop(L, 1);
    }
    lua_pushstring(L, meta);
    lua_setfield(L, -2, "__name");
}

int plm_l_threads(lua_State *L, int opts, const char *fn)
{
    lua_Integer t = plm_l_optint(L, opts, fn, "threads", 0);
    if (t < 0 || t > 256) luaL_error(L, "%s: option 'threads' must be between 0 and 256 (got %d)", fn, (int)t);
    return t == 0 ? plm_default_threads() : (int)t;
}

unsigned long long plm_l_seed(lua_State *L, int opts, const char *fn)
{
    lua_Integer s;
    int ok;
    opts = opts ? lua_absindex(L, opts) : 0;
    if (getopt(L, opts, "seed") == LUA_TNIL) {
        /* one rule for every function: no seed continues plume's default stream, so plume.seed(n) at the top
        ** of a script makes every run after it reproducible (the stream starts from entropy otherwise) */
        lua_pop(L, 1);
        return plm_l_default_seed(L);
    }
    if (lua_type(L, -1) != LUA_TNUMBER) opterr(L, fn, "seed", "an integer");
    s = lua_tointegerx(L, -1, &ok);
    if (!ok) luaL_error(L, "%s: option 'seed' must be an integer (got %s)", fn, lua_tostring(L, -1));
    lua_pop(L, 1);
    return (unsigned long long)s;
}

void plm_l_checkopts(lua_State *L, int idx, const char *fn, const char *const *names)
{
    if (!idx || lua_type(L, idx) != LUA_TTABLE) return;
    idx = lua_absindex(L, idx);
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        int i, ok = 0;
        const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
        for (i = 0; k && names[i]; i++) ok |= strcmp(k, names[i]) == 0;
        if (!ok) {
            luaL_Buffer b;
            luaL_buffinit(L, &b);
            for (i = 0; names[i]; i++) {
                if (i) luaL_addstring(&b, ", ");
                luaL_addstring(&b, names[i]);
            }
            luaL_pushresult(&b);
            if (!k) luaL_error(L, "%s: options must be a table with string keys (options: %s)", fn, lua_tostring(L, -1));
            luaL_error(L, "%s: unknown option '%s' (options: %s)", fn, k, lua_tostring(L, -1));
        }
        lua_pop(L, 1);
    }
}

void plm_l_set_named(lua_State *L, int tbl, int names_idx, double *params, int np, const char *fn)
{
    int i;
    tbl = lua_absindex(L, tbl);
    names_idx = lua_absindex(L, names_idx);
    lua_pushnil(L);
    while (lua_next(L, tbl)) {
        int found = -1;
        const char *k;
        if (lua_type(L, -2) != LUA_TSTRING) luaL_error(L, "%s: parameter names must be strings", fn);
        k = lua_tostring(L, -2);
        for (i = 0; i < np && found < 0; i++) {
            lua_geti(L, names_idx, i + 1);
            if (lua_type(L, -1) == LUA_TSTRING && strcmp(lua_tostring(L, -1), k) == 0) found = i;
            lua_pop(L, 1);
        }
        if (found < 0) luaL_error(L, "%s: unknown parameter '%s'", fn, k);
        if (lua_type(L, -1) != LUA_TNUMBER)
            luaL_error(L, "%s: parameter '%s' must be a number (got %s)", fn, k, luaL_typename(L, -1));
        params[found] = lua_tonumber(L, -1);
        lua_pop(L, 1);
    }
}

/* The default stream for draws made directly from Lua (d:sample()): plume.seed(s) resets it. */
plm_rng *plm_l_default_rng(lua_State *L)
{
    plm_rng *r;
    if (lua_getfield(L, LUA_REGISTRYINDEX, "plume.rng") == LUA_TUSERDATA) {
        r = lua_touserdata(L, -1);
        lua_pop(L, 1);
        r->gsl.state = r->s;
        return r;
    }
    lua_pop(L, 1);
    r = lua_newuserdatauv(L, sizeof *r, 0);
    plm_rng_init(r, plm_rng_entropy_seed(), 0);
    lua_setfield(L, LUA_REGISTRYINDEX, "plume.rng");
    return r;
}

uint64_t plm_l_default_seed(lua_State *L)
{
    return plm_rng_next(plm_l_default_rng(L));
}
