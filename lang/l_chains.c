/* l_chains.c -- MH chains on several threads: one Lua state per chain.
** A model program is Lua, and a Lua state runs on one thread at a time; so for threads > 1 each chain gets its
** own state holding a copy of the program and its arguments. Copies are made of plain data (numbers,
** strings, tables), Lua functions (with their upvalues) and distributions; a program that closes over
** anything else -- or that fails in its own state, say by reading a global of the user's script -- runs on
** the calling state instead. Each chain does exactly what it would do there, so the draws are the same. */
#include "linfer.h"
#include "larray.h"
#include "ldist.h"
#include "plume_lua.h"

#include <lualib.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef plm_l_program program;

typedef struct dumpbuf {
    char *p;
    size_t n, cap;
} dumpbuf;

static int dump_writer(lua_State *L, const void *p, size_t sz, void *ud)
{
    dumpbuf *b = ud;
    (void)L;
    if (b->n + sz > b->cap) {
        size_t nc = (b->n + sz) * 2 + 256;
        char *q = realloc(b->p, nc);
        if (!q) return 1;
        b->p = q;
        b->cap = nc;
    }
    memcpy(b->p + b->n, p, sz);
    b->n += sz;
    return 0;
}

/* The plume module of a state, from package.loaded (there may be no global `plume`: `local P = require
** "plume"`). Pushes it (nil when not loaded). */
static void push_module(lua_State *L)
{
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
    lua_getfield(L, -1, "plume");
    lua_remove(L, -2);
}

/* Library values (plume.dist, plume.dist.normal, math.exp, string.format, ...) are not copied but looked up
** by name: search the globals and the plume module two levels deep for the value at idx of `from`; push the
** value at the same place in `to`. Returns 0 when it is not a library value. */
static int push_same_library_value(lua_State *from, int idx, lua_State *to)
{
    int r;
    for (r = -1; r < 1; r++) {
        int root;
        if (r < 0) lua_pushglobaltable(from);
        else push_module(from);
        if (!lua_istable(from, -1)) {
            lua_pop(from, 1);
            continue;
        }
        root = lua_gettop(from);
        lua_pushnil(from);
        while (lua_next(from, root)) {
            int found = 0;
            if (lua_type(from, -2) == LUA_TSTRING) {
                if (lua_rawequal(from, -1, idx)) found = 1;
                else if (lua_istable(from, -1)) {
                    int sub = lua_gettop(from);
                    lua_pushnil(from);
                    while (lua_next(from, sub)) {
                        if (lua_type(from, -2) == LUA_TSTRING && lua_rawequal(from, -1, idx)) {
                            /* root[k1][k2] */
                            if (r < 0) lua_pushglobaltable(to);
                            else push_module(to);
                            lua_getfield(to, -1, lua_tostring(from, -4));
                            lua_getfield(to, -1, lua_tostring(from, -2));
                            lua_replace(to, -3);
                            lua_pop(to, 1);
                            lua_pop(from, 5);
                            return !lua_isnil(to, -1) || (lua_pop(to, 1), 0);
                        }
                        lua_pop(from, 1);
                    }
                }
            }
            if (found) {
                if (r < 0) lua_pushglobaltable(to);
                else push_module(to);
                lua_getfield(to, -1, lua_tostring(from, -2));
                lua_remove(to, -2);
                lua_pop(from, 3);
                return !lua_isnil(to, -1) || (lua_pop(to, 1), 0);
            }
            lua_pop(from, 1);
        }
        lua_pop(from, 1);
    }
    return 0;
}

/* Copy the value at idx of `from` onto `to`. Returns 0 when it cannot be copied (then `to` may hold partial
** values above its original top: the caller discards the state). */
static int xcopy(lua_State *from, int idx, lua_State *to, int depth)
{
    idx = lua_absindex(from, idx);
    if (depth > 32 || !lua_checkstack(to, 8) || !lua_checkstack(from, 8)) return 0;
    switch (lua_type(from, idx)) {
    case LUA_TNIL: lua_pushnil(to); return 1;
    case LUA_TBOOLEAN: lua_pushboolean(to, lua_toboolean(from, idx)); return 1;
    case LUA_TNUMBER:
        if (lua_isinteger(from, idx)) lua_pushinteger(to, lua_tointeger(from, idx));
        else lua_pushnumber(to, lua_tonumber(from, idx));
        return 1;
    case LUA_TSTRING: {
        size_t n;
        const char *s = lua_tolstring(from, idx, &n);
        lua_pushlstring(to, s, n);
        return 1;
    }
    case LUA_TTABLE: {
        int same;
        /* the plume module and the globals are the other state's own */
        push_module(from);
        same = lua_rawequal(from, -1, idx);
        lua_pop(from, 1);
        if (same) return push_module(to), 1;
        lua_pushglobaltable(from);
        same = lua_rawequal(from, -1, idx);
        lua_pop(from, 1);
        if (same) return lua_pushglobaltable(to), 1;
        if (push_same_library_value(from, idx, to)) return 1;
        if (lua_getmetatable(from, idx)) {
            lua_pop(from, 1);
            return 0;
        }
        lua_newtable(to);
        lua_pushnil(from);
        while (lua_next(from, idx)) {
            if (!xcopy(from, -2, to, depth + 1) || !xcopy(from, -1, to, depth + 1)) {
                lua_pop(from, 2);
                return 0;
            }
            lua_rawset(to, -3);
            lua_pop(from, 1);
        }
        return 1;
    }
    case LUA_TFUNCTION: {
        dumpbuf db = {NULL, 0, 0};
        const char *name;
        int i, ok;
        if (lua_iscfunction(from, idx)) return push_same_library_value(from, idx, to);
        lua_pushvalue(from, idx);
        ok = lua_dump(from, dump_writer, &db, 0) == 0 && db.p;
        lua_pop(from, 1);
        ok = ok && luaL_loadbufferx(to, db.p, db.n, "=model", "b") == LUA_OK;
        free(db.p);
        if (!ok) return 0;
        for (i = 1; (name = lua_getupvalue(from, idx, i)) != NULL; i++) {
            if (strcmp(name, "_ENV") == 0)
                lua_pushglobaltable(to);
            else if (!xcopy(from, -1, to, depth + 1)) {
                lua_pop(from, 1);
                return 0;
            }
            lua_pop(from, 1);
            lua_setupvalue(to, -2, i);
        }
        return 1;
    }
    case LUA_TUSERDATA: {
        plm_dist *d = plm_l_testobj(from, idx, PLM_L_DIST);
        plm_l_array *a = plm_l_toarray(from, idx);
        if (d) {
            plm_l_pushdist(to, d);   /* distributions are immutable GC objects: share */
            return 1;
        }
        if (a) {
            plm_l_array *c = plm_l_newarray(to, a->n);
            memcpy(c->data, a->data, a->n * sizeof *a->data);
            c->rows = a->rows;
            c->cols = a->cols;
            return 1;
        }
        return 0;
    }
    default:
        return 0;
    }
}

typedef struct chainjob {
    lua_State **S;             /* one state per chain */
    plm_draws **D;             /* one single-chain draws table per chain (owned by results on its state) */
    const plm_l_infer_opts *o;
    int nargs;
    double *accept;
    int *failed;               /* the chain's protected call failed */
    plm_status *status;        /* the kernel's status (PLM_EINTR: interrupted) */
} chainjob;

/* chain_main(job, c, fn, args..., handle, results, init or nil): runs in chain c's own state */
static int chain_main(lua_State *L)
{
    chainjob *J = lua_touserdata(L, 1);
    int c = (int)lua_tointeger(L, 2), lua_err;
    plm_ctx ctx;
    program pg;
    plm_results *R = plm_l_toresults(L, 5 + J->nargs);
    plm_ctx_clear(&ctx);
    pg.fn = 3;
    pg.args = 4;
    pg.nargs = J->nargs;
    pg.handle = 4 + J->nargs;
    J->status[c] = plm_l_mh_chain(L, &pg, J->o, c, R, 0, NULL, lua_istable(L, 6 + J->nargs) ? 6 + J->nargs : 0,
                                  &ctx, &J->accept[c], &lua_err);
    if (lua_err) return lua_error(L);
    if (J->status[c]) return plm_l_fail_in(L, &ctx, "plume.infer");
    return 0;
}

static void chain_worker(void *arg, size_t begin, size_t end, int worker)
{
    chainjob *J = arg;
    size_t c;
    (void)worker;
    for (c = begin; c < end; c++) {
        lua_State *S = J->S[c];
        int i, top = lua_gettop(S);
        lua_pushcfunction(S, chain_main);
        lua_pushlightuserdata(S, J);
        lua_pushinteger(S, (lua_Integer)c);
        for (i = 1; i <= top; i++) lua_pushvalue(S, i);
        /* a failure is a flag, not a copied message: a copy that failed for want of memory would read as success */
        if (lua_pcall(S, 2 + top, 0, 0) != LUA_OK) {
            J->failed[c] = 1;
            lua_pop(S, 1);
        }
    }
}

/* Opening the libraries allocates, and an allocation failure raises: do it under lua_pcall. */
static int open_state(lua_State *S)
{
    luaL_openlibs(S);
    luaL_requiref(S, "plume", luaopen_plume, 1);
    lua_pop(S, 1);
    return 0;
}

static void free_job(chainjob *J, int C)
{
    int c;
    for (c = 0; c < C; c++)
        if (J->S && J->S[c]) lua_close(J->S[c]);
    free(J->S), free(J->D), free(J->failed), free(J->status), free(J->accept);
}

int plm_l_mh_parallel(lua_State *L, const program *pg, const plm_l_infer_opts *o, plm_results *R, double *accept,
                      int inits)
{
    int C = o->chains, c, ok = 1, i, interrupted = 0;
    chainjob J;
    plm_ctx ctx;
    plm_draws *D = plm_results_draws(R);
    double *row = NULL;
    plm_ctx_clear(&ctx);
    memset(&J, 0, sizeof J);
    J.o = o;
    J.nargs = pg->nargs;
    J.S = calloc((size_t)C, sizeof *J.S);
    J.D = calloc((size_t)C, sizeof *J.D);
    J.failed = calloc((size_t)C, sizeof *J.failed);
    J.status = calloc((size_t)C, sizeof *J.status);
    J.accept = calloc((size_t)C, sizeof *J.accept);
    if (!J.S || !J.D || !J.failed || !J.status || !J.accept) ok = 0;
    for (c = 0; ok && c < C; c++) {
        lua_State *S = J.S[c] = luaL_newstate();
        if (!S) {
            ok = 0;
            break;
        }
        lua_pushcfunction(S, open_state);
        if (lua_pcall(S, 0, 0, 0) != LUA_OK) {
            ok = 0;
            break;
        }
        lua_settop(S, 0);
        ok = xcopy(L, pg->fn, S, 0);
        for (i = 0; ok && i < pg->nargs; i++) ok = xcopy(L, pg->args + i, S, 0);
        if (!ok) break;
        lua_settop(S, 1 + pg->nargs);
        plm_l_newhandle(S);
        J.D[c] = plm_results_draws(plm_l_newresults(S, 1, 0));   /* stays on the stack: it owns the draws */
        lua_rawgeti(L, inits, c + 1);
        ok = xcopy(L, -1, S, 0);
        lua_pop(L, 1);
    }
    if (ok) {
        plm_parallel_for(o->threads, (size_t)C, 1, chain_worker, &J);
        for (c = 0; c < C; c++) {
            if (J.failed[c]) ok = 0;
            if (J.failed[c] && J.status[c] == PLM_EINTR) interrupted = 1;
        }
        /* an interrupt is not a reason to start again on this state (the chains left it raised, so that every
        ** thread stops at its next run) */
        if (interrupted) {
            plm_interrupt_clear();
            free_job(&J, C);
            return luaL_error(L, "plume.infer: interrupted"), 0;
        }
    }
    if (ok) {
        /* merge chain by chain: columns are added in the order a single state would have added them */
        for (c = 0; c < C && ok; c++) {
            plm_draws *Dc = J.D[c];
            int nc = plm_draws_ncols(Dc), j, *map = malloc((size_t)(nc ? nc : 1) * sizeof *map);
            size_t k, len = plm_draws_len(Dc, 0);
            if (!map) ok = 0;
            for (j = 0; ok && j < nc; j++)
                if ((map[j] = plm_draws_col(D, plm_draws_name(Dc, j), 1)) < 0) ok = 0;
            if (ok) {
                int nd = plm_draws_ncols(D);
                double *r = realloc(row, (size_t)(nd ? nd : 1) * sizeof *row);
                if (!r) ok = 0;
                else row = r;
                for (k = 0; ok && k < len; k++) {
                    for (j = 0; j < nd; j++) row[j] = NAN;
                    for (j = 0; j < nc; j++) row[map[j]] = plm_draws_chain(Dc, j, 0)[k];
                    if (plm_draws_push(&ctx, D, c, row, nd, 0)) ok = 0;
                }
            }
            free(map);
        }
        if (ok) memcpy(accept, J.accept, (size_t)C * sizeof *accept);
    }
    free(row);
    free_job(&J, C);
    if (!ok && plm_draws_len(D, 0)) return luaL_error(L, "plume.infer: out of memory while merging chains"), 0;
    return ok;
}
