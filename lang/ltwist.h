/* ltwist.h -- twists as Lua values (lang/l_twist.c), for LM contexts (lang/l_lmctx.c). Internal to lang/.
** A twist is a function twist (Lua functions psi, batch, phi), an exact HMM x automaton guide
** (runtime/lm/twist.h) or a network twist (runtime/lm/twistnet.h). A context keeps a state for its twist:
** state_doubles() doubles. */
#ifndef PLM_LTWIST_H
#define PLM_LTWIST_H

#include <lua.h>

#include "plume.h"

#define PLM_L_TWIST "plume.twist"
typedef struct plm_l_twist plm_l_twist;

plm_l_twist *plm_l_checktwist(lua_State *L, int idx, const char *fn, const char *arg);
size_t plm_l_twist_state_doubles(const plm_l_twist *tw);
void plm_l_twist_start(const plm_l_twist *tw, double *state);
/* out[v] = log psi_{t+1}(gen, v) for all v of lm's vocabulary (phi for candidates that end the text: EOS or the
** twist's max_tokens-th token); -inf where logp0[v] is -inf. The twist is at stack index twidx. The nprompt tokens
** before gen are the context's prompt (network twists read the LM's hidden state after prompt and gen). */
void plm_l_twist_rows(lua_State *L, int twidx, plm_lm *lm, const double *state, size_t nprompt, const plm_token *gen,
                      size_t ngen, const double *logp0, double *out);
/* Token v joins the prefix. */
void plm_l_twist_advance(const plm_l_twist *tw, double *state, plm_token v);

#endif
