/* lutil.h -- helpers shared by the Lua binding files: argument checks that name the argument, option
** tables, numeric vectors and matrices from Lua tables or plume arrays, runtime objects held by userdata.
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

/* A vector of doubles from a Lua array of numbers or a plume.array at idx. Pushes one value (the
** owner of the returned memory: a scratch userdata or the array itself) that keeps it alive while it
** stays on the stack. *n receives the length. Missing entries (nil holes) are an error unless
** allow_nan is set, in which case nil becomes NaN. */
double *plm_l_checkvec(lua_State *L, int idx, const char *fn, const char *arg, size_t *n, int allow_nan);

/* A row-major matrix from a table of equal-length rows (or a plume.array with a shape). Pushes its
** owner like plm_l_checkvec. Ragged rows name the row: "hmm: trans row 2 has 3 entries, expected 2". */
double *plm_l_checkmat(lua_State *L, int idx, const char *fn, const char *arg, size_t *rows, size_t *cols);

/* Scratch memory owned by a new userdata pushed on the stack (freed by Lua's GC). */
void *plm_l_scratch(lua_State *L, size_t bytes);

/* Push a Lua array {x[0], ..., x[n-1]}. */
void plm_l_pushvec(lua_State *L, const double *x, size_t n);
/* Push a table of rows x rows of cols. */
void plm_l_pushmat(lua_State *L, const double *x, size_t rows, size_t cols);

/* plume.array: a contiguous vector of doubles (1-based from Lua), optionally shaped rows x cols. */
typedef struct plm_l_array {
    size_t n, rows, cols;    /* rows = n, cols = 1 when unshaped */
    double *data;            /* points at the userdata's own tail */
} plm_l_array;
#define PLM_L_ARRAY "plume.array"
plm_l_array *plm_l_newarray(lua_State *L, size_t n);
plm_l_array *plm_l_toarray(lua_State *L, int idx);   /* NULL when idx is not a plume.array */

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

/* plume.dist objects (lang/l_dist.c). */
#define PLM_L_DIST "plume.dist"
plm_dist *plm_l_checkdist(lua_State *L, int idx, const char *fn, const char *arg);
void plm_l_pushdist(lua_State *L, plm_dist *d);
/* Read one value of d from the Lua value at idx into x (d->dim doubles); categorical values are shifted
** from 1-based to 0-based. Returns 0 and leaves x alone when the Lua value has the wrong shape or type. */
int plm_l_todistvalue(lua_State *L, int idx, const plm_dist *d, double *x);
/* Push one value of d from x (scalars as numbers, integers for discrete kinds, vectors as tables). */
void plm_l_pushdistvalue(lua_State *L, const plm_dist *d, const double *x);

/* plume.lm objects (lang/l_lm.c): a userdata owning a plm_lm (freed when Lua collects it). Token ids are 0-based. */
#define PLM_L_LM "plume.lm"
plm_lm *plm_l_checklm(lua_State *L, int idx, const char *fn, const char *arg);
/* Push lm as a Lua object that takes ownership of it. */
void plm_l_pushlm(lua_State *L, plm_lm *lm);

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

#endif
