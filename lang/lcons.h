/* lcons.h -- constraints (plume.regex, plume.grammar, plume.json_schema) as Lua values (lang/l_constraint.c),
** for the other bindings that use them (LM contexts). Internal to lang/. */
#ifndef PLM_LCONS_H
#define PLM_LCONS_H

#include <lua.h>

#include "plume.h"

#define PLM_L_CONS "plume.constraint"

/* The compiled constraint behind a Lua value, shared by reference count: an LM context that holds states of
** it keeps it alive even when the Lua value is collected first (finalisers run in any order). */
typedef struct plm_l_cons {
    plm_cons *c;
    int refs;
} plm_l_cons;

/* The constraint at idx, or NULL when the value is not one. */
plm_l_cons *plm_l_testcons(lua_State *L, int idx);
void plm_l_cons_retain(plm_l_cons *k);
void plm_l_cons_release(plm_l_cons *k);
/* The vocabulary trie of the lm at idx (built on first use, cached per lm object). */
plm_vtrie *plm_l_vtrie(lua_State *L, int idx);

#endif
