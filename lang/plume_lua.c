/* plume_lua.c -- the plume Lua module (luaopen_plume) and the embedding API (plm_open, plm_dostring, ...).
** plume's own Lua sources are compiled into the library (build/gen/embedded.c) and found by a searcher
** placed before the file searchers, so an installed plume never depends on where its sources were. */
#include "plume_lua.h"

#include <lauxlib.h>
#include <lualib.h>
#include <stdlib.h>
#include <string.h>

#include "lutil.h"
#include "plume.h"

#define PLM_MODULE(x) void plm_l_open_##x(lua_State *L);
#include "modules.def"
#undef PLM_MODULE

extern const struct plm_embedded {
    const char *name, *path, *src;
    size_t len;
} plm_embedded[];

struct plm_State {
    lua_State *L;
    plm_intr *intr;           /* this state's interrupt domain: plm_interrupt_state stops only its runs */
    char *err;
    const char *err_static;   /* set instead of err when copying a message failed */
};

static int embedded_searcher(lua_State *L)
{
    const char *name = luaL_checkstring(L, 1);
    const struct plm_embedded *e;
    for (e = plm_embedded; e->name; e++) {
        if (strcmp(e->name, name) == 0) {
            char chunk[256];
            snprintf(chunk, sizeof chunk, "@%s", e->path);
            if (luaL_loadbufferx(L, e->src, e->len, chunk, "t") != LUA_OK) return lua_error(L);
            lua_pushstring(L, e->path);
            return 2;
        }
    }
    lua_pushfstring(L, "no embedded plume module '%s'", name);
    return 1;
}

static void add_searcher(lua_State *L)
{
    int n, i;
    lua_getglobal(L, "package");
    if (lua_getfield(L, -1, "searchers") != LUA_TTABLE) {
        lua_pop(L, 2);
        return;
    }
    /* idempotent: a second luaopen_plume must not stack searchers */
    n = (int)luaL_len(L, -1);
    for (i = 1; i <= n; i++) {
        lua_rawgeti(L, -1, i);
        if (lua_tocfunction(L, -1) == embedded_searcher) {
            lua_pop(L, 3);
            return;
        }
        lua_pop(L, 1);
    }
    for (i = n; i >= 2; i--) {   /* insert at position 2: after preload, before the path searchers */
        lua_rawgeti(L, -1, i);
        lua_rawseti(L, -2, i + 1);
    }
    lua_pushcfunction(L, embedded_searcher);
    lua_rawseti(L, -2, 2);
    lua_pop(L, 2);
}

int luaopen_plume(lua_State *L)
{
    plm_init();
    add_searcher(L);
    lua_newtable(L);
    lua_pushstring(L, PLUME_VERSION);
    lua_setfield(L, -2, "version");
    /* the module's C code finds the table here, never through a global the user may not have */
    lua_pushvalue(L, -1);
    lua_setfield(L, LUA_REGISTRYINDEX, PLM_L_MODULE);
    /* each C part must leave the stack as it found it: a slip would silently hand back the wrong table */
#define PLM_MODULE(x)                                                                               \
    {                                                                                               \
        int top_ = lua_gettop(L);                                                                   \
        plm_l_open_##x(L);                                                                          \
        if (lua_gettop(L) != top_) return luaL_error(L, "plume: module '%s' left the stack unbalanced", #x); \
    }
#include "modules.def"
#undef PLM_MODULE
    /* the Lua half of the module: plume._init(plume) adds what is written in Lua */
    lua_getglobal(L, "require");
    lua_pushstring(L, "plume._init");
    lua_call(L, 1, 1);
    lua_pushvalue(L, -2);
    lua_call(L, 1, 0);
    return 1;
}

/* Opening the libraries allocates, and an allocation failure raises a Lua error: outside a protected call
** that would reach the panic function and abort the host, so they are opened under lua_pcall. */
static int open_all(lua_State *L)
{
    luaL_openlibs(L);
    luaL_requiref(L, "plume", luaopen_plume, 1);
    return 0;
}

plm_State *plm_open(void)
{
    plm_State *P = calloc(1, sizeof *P);
    int entered;
    if (!P) return NULL;
    entered = plm_thread_enter();
    if (!(P->intr = plm_intr_new()) || !(P->L = luaL_newstate())) {
        plm_intr_free(P->intr);
        free(P);
        plm_thread_leave(entered);
        return NULL;
    }
    lua_pushcfunction(P->L, open_all);
    if (lua_pcall(P->L, 0, 0, 0) != LUA_OK) {
        lua_close(P->L);
        plm_intr_free(P->intr);
        free(P);
        P = NULL;
    }
    plm_thread_leave(entered);
    return P;
}

/* A message that cannot be copied (no memory) is replaced by a fixed one, so a failure never reads as
** success through an empty plm_errmsg. */
static void set_err(plm_State *P, const char *msg)
{
    static const char nomem[] = "plume: out of memory (the error message could not be kept)";
    free(P->err);
    P->err = NULL;
    P->err_static = NULL;
    if (msg && !(P->err = strdup(msg))) P->err_static = nomem;
}

static int traceback(lua_State *L)
{
    const char *msg = lua_tostring(L, 1);
    if (!msg && luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING) return 1;
    if (!msg) msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    lua_pushstring(L, msg);
    return 1;
}

static int finish(plm_State *P, int status)
{
    lua_State *L = P->L;
    if (status == LUA_OK) {
        /* the run polls this state's domain, so another state's Ctrl-C does not stop it */
        plm_intr *prev = plm_intr_use(P->intr);
        int entered = plm_thread_enter();
        P->intr->flag = 0;
        status = lua_pcall(L, 0, 0, -2);
        plm_thread_leave(entered);
        plm_intr_use(prev);
        lua_sethook(L, NULL, 0, 0);
        P->intr->flag = 0;
    }
    if (status != LUA_OK) {
        const char *msg = lua_tostring(L, -1);
        set_err(P, msg ? msg : "plume: error with no message");
        lua_pop(L, 2);
        return 1;
    }
    set_err(P, NULL);
    lua_pop(L, 1);
    return 0;
}

int plm_dostring(plm_State *P, const char *code)
{
    lua_pushcfunction(P->L, traceback);
    return finish(P, luaL_loadbuffer(P->L, code, strlen(code), "=(string)"));
}

int plm_dofile(plm_State *P, const char *path)
{
    lua_pushcfunction(P->L, traceback);
    return finish(P, luaL_loadfile(P->L, path));
}

const char *plm_errmsg(plm_State *P)
{
    return P->err ? P->err : P->err_static ? P->err_static : "";
}

lua_State *plm_lua(plm_State *P)
{
    return P->L;
}

/* Lua code stops through a hook, C loops through the domain's flag (as lua.c's Ctrl-C does) */
static void stop_hook(lua_State *L, lua_Debug *ar)
{
    (void)ar;
    lua_sethook(L, NULL, 0, 0);
    luaL_error(L, "interrupted");
}

void plm_interrupt_state(plm_State *P)
{
    plm_intr_raise(P->intr);
    lua_sethook(P->L, stop_hook, LUA_MASKCALL | LUA_MASKRET | LUA_MASKLINE | LUA_MASKCOUNT, 1);
}

plm_intr *plm_state_intr(plm_State *P)
{
    return P->intr;
}

void plm_close(plm_State *P)
{
    int entered;
    if (!P) return;
    entered = plm_thread_enter();
    lua_close(P->L);
    plm_thread_leave(entered);
    plm_intr_free(P->intr);
    free(P->err);
    free(P);
}
