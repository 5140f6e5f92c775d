/* lutil.h -- helpers shared by the Lua binding files: argument checks that name the argument, option
** tables, rejections, runtime objects held by userdata, seeds and threads. It declares only what lutil.c
** defines: plume.array is in larray.h, distributions in ldist.h, language models in llm.h.
** Internal to lang/ (not installed). Every check raises a Lua error that blames the user's line. */
#ifndef PLM_LUTIL_H
#define PLM_LUTIL_H

#include <lauxlib.h>
#include <lua.h>
#include <stddef.h>

#include "plume.h"

/* Raise the runtime's failure as a Lua error (with the caller's file:line). Never returns.
** Inside a model run driven by an engine (see plm_l_run_enter), an invalid parameter or a value outside a
** domain (PLM_EINVAL, PLM_EDOM) raises a rejection instead of a plain error: the engine gives that run log
** density -inf (a proposal that makes a scale infinite is rejected, not fatal). At top level it stays an
** error. plm_l_raise does the same for a status and a message formatted here. */
int plm_l_fail(lua_State *L, plm_ctx *ctx);
/* The same, naming the Lua method: a runtime failure "hmm: text" (made with plm_failm) is raised as
** "hmm:loglik: text", without rewriting any message. */
int plm_l_fail_as(lua_State *L, plm_ctx *ctx, const char *fn);
int plm_l_raise(lua_State *L, plm_status st, const char *fmt, ...);

/* Engines bracket every model run they drive (including each resume of a particle's coroutine) with
** enter/leave, so that failures inside become rejections. Nesting counts. */
void plm_l_run_enter(lua_State *L);
void plm_l_run_leave(lua_State *L);
int plm_l_in_run(lua_State *L);

/* A rejection is a Lua table with metatable PLM_L_REJECT: {msg = "file:line: message", status = code};
** tostring gives msg, so one that escapes to top level still prints as a normal error. Returns 1 when the
** error value at idx is one. */
#define PLM_L_REJECT "plume.reject"
int plm_l_isreject(lua_State *L, int idx);

/* Numbers and integers, with the function and argument named in the error:
** "normal: sigma must be a number (got string)". */
double plm_l_checknum(lua_State *L, int idx, const char *fn, const char *arg);
lua_Integer plm_l_checkint(lua_State *L, int idx, const char *fn, const char *arg);

/* Options from the table at idx (idx may be 0 or a nil slot: the default is returned). Wrong types raise
** "fn: option 'samples' must be an integer (got string)". */
double plm_l_optnum(lua_State *L, int idx, const char *fn, const char *key, double def);
lua_Integer plm_l_optint(lua_State *L, int idx, const char *fn, const char *key, lua_Integer def);
int plm_l_optbool(lua_State *L, int idx, const char *fn, const char *key, int def);
const char *plm_l_optstr(lua_State *L, int idx, const char *fn, const char *key, const char *def);


/* Scratch memory owned by a new userdata pushed on the stack (freed by Lua's GC). */
void *plm_l_scratch(lua_State *L, size_t bytes);

/* Push a Lua array {x[0], ..., x[n-1]}. */
void plm_l_pushvec(lua_State *L, const double *x, size_t n);
/* Push a table of rows x rows of cols. */
void plm_l_pushmat(lua_State *L, const double *x, size_t rows, size_t cols);


/* Runtime objects held by a Lua userdata: the userdata roots the GC object (see plm_root) and unroots it
** when Lua collects the userdata. `meta` names a metatable created with luaL_newmetatable; objects whose
** metatable has no __gc get plm_l_box_gc installed by plm_l_newmeta. */
typedef struct plm_l_box {
    void *obj;
    long root;
} plm_l_box;
void *plm_l_pushobj(lua_State *L, void *obj, const char *meta);
void *plm_l_checkobj(lua_State *L, int idx, const char *meta, const char *fn, const char *arg);
void *plm_l_testobj(lua_State *L, int idx, const char *meta);
/* Create metatable `meta` with methods (and __index = methods), plus __gc that unroots; leaves it on the stack. */
void plm_l_newmeta(lua_State *L, const char *meta, const luaL_Reg *methods, const luaL_Reg *metamethods);



/* The plume module table, kept in the registry by luaopen_plume: C code reaches plume's Lua-level functions
** through it (`local P = require "plume"` leaves no global `plume`). */
#define PLM_L_MODULE "plume.module"
void plm_l_pushmodule(lua_State *L);

/* Refuse option keys not in names (a NULL-terminated list): "fn: unknown option 'x' (options: a, b, c)". */
void plm_l_checkopts(lua_State *L, int idx, const char *fn, const char *const *names);

/* Set params[i] from the table at tbl (name -> number), where the names are the Lua list at names_idx (np
** of them). Unknown names and non-numbers are errors naming them. */
void plm_l_set_named(lua_State *L, int tbl, int names_idx, double *params, int np, const char *fn);

/* The default random stream of the Lua state (plume.seed resets it), and a seed drawn from it, for draws
** made without an explicit seed. */
plm_rng *plm_l_default_rng(lua_State *L);
uint64_t plm_l_default_seed(lua_State *L);

/* Parameters for a run: `threads` option (0 -> plm_default_threads) and a `seed` option (absent -> the next
** seed of plume's default stream, so that plume.seed(n) makes a script reproducible). */
int plm_l_threads(lua_State *L, int opts, const char *fn);
unsigned long long plm_l_seed(lua_State *L, int opts, const char *fn);

/* Under mpirun (l_mpi.c): may this process write the file path (1 on rank 0, and for names os.tmpname gave this
** process; 0 elsewhere: plume's writers then skip the file)? Is it to show progress lines (0 on ranks other than
** 0 unless plume.mpi.print_all)? */
int plm_l_mpi_writes(lua_State *L, const char *path);
int plm_l_mpi_chatty(void);

#endif
