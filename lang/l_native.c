/* l_native.c -- plume.native: C functions of a shared library bound through libffi, callable from Lua on
** numbers and, for double(double, ...) signatures, inside traced code as native calls of compiled kernels. */
#include "l_expr.h"

#include <dlfcn.h>
#include <ffi.h>
#include <string.h>

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
    s = plm_l_firstsym(L, 2, n + 1, &where);
    if (s) {
        int args[PLM_NATIVE_MAXARGS];
        if (!f->alldouble)
            return luaL_error(L, "%s: only functions of signature double(double, ...) can take symbolic values", f->name);
        for (i = 0; i < n; i++) args[i] = plm_l_tonode(L, i + 2, s->g, f->name);
        plm_l_pushlike(L, where, plm_graph_native(s->g, &f->nat, args));
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

void plm_l_open_native(lua_State *L)
{
    static const luaL_Reg natmeta[] = {{"__call", l_native_call}, {NULL, NULL}};
    plm_l_newmeta(L, PLM_L_NATIVE, NULL, natmeta);
    lua_pop(L, 1);
    lua_pushcfunction(L, l_native_new);
    lua_setfield(L, -2, "native");
}
