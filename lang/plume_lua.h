/* plume_lua.h -- embedding plume in a C program: a plume state is a Lua 5.4 state with the plume module
** loaded (as the global `plume`) and plume's Lua modules on the search path. Same shape as Lua's own API:
** open, run code, read results through the lua_State, close. */
#ifndef PLUME_LUA_H
#define PLUME_LUA_H

#include <lua.h>

typedef struct plm_State plm_State;

/* A new plume state, or NULL when memory is exhausted. Close it with plm_close. */
plm_State *plm_open(void);

/* Run a chunk of Lua source / a script file. Return 0 on success; otherwise non-zero, and plm_errmsg
** gives "file:line: message" (chunks run by plm_dostring are named "=(string)"). */
int plm_dostring(plm_State *P, const char *code);
int plm_dofile(plm_State *P, const char *path);

/* The message of the last failed call ("" when the last call succeeded). Valid until the next call. */
const char *plm_errmsg(plm_State *P);

/* The underlying Lua state, for reading results with the Lua C API (lua_getglobal, ...). */
lua_State *plm_lua(plm_State *P);

/* Ask the code running in P (plm_dostring, plm_dofile, on any thread of its engines) to stop; it fails
** with "interrupted". Only P's runs see it: each state has its own interrupt domain. Async-signal-safe, so
** a host's SIGINT handler may call it. */
void plm_interrupt_state(plm_State *P);

/* P's interrupt domain, for hosts that call into P->L directly with the Lua API: make it the thread's
** current domain around those calls (plm_intr_use in plume.h). */
struct plm_intr *plm_state_intr(plm_State *P);

/* Close the state and free everything it holds. */
void plm_close(plm_State *P);

/* The module opener, as `require "plume"` calls it from a stock Lua interpreter. */
int luaopen_plume(lua_State *L);

#endif
