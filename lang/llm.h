/* llm.h -- plume.lm objects as Lua values (lang/l_lm.c). Internal to lang/. */
#ifndef PLM_LLM_H
#define PLM_LLM_H

#include <lua.h>

#include "plume.h"

/* plume.lm objects (lang/l_lm.c): a userdata owning a plm_lm (freed when Lua collects it). Token ids are 0-based. */
#define PLM_L_LM "plume.lm"
plm_lm *plm_l_checklm(lua_State *L, int idx, const char *fn, const char *arg);
/* Push lm as a Lua object that takes ownership of it. */
void plm_l_pushlm(lua_State *L, plm_lm *lm);
/* A token list from a string (tokenized by lm) or a Lua table of integer ids in 0..n_vocab-1; errors name fn
** and arg. Pushes the owner of the memory; *n receives the length. */
plm_token *plm_l_checktokens(lua_State *L, int idx, plm_lm *lm, const char *fn, const char *arg, size_t *n);

#endif
