/* lbffg.h -- what the BFFG binding files share (internal to lang/): l_mkernel.c makes kernels, l_bffg.c
** builds DAGs and trees from them and runs plume.bffg; l_bffg_mcmc.c is its method "mcmc". */
#ifndef PLM_LBFFG_H
#define PLM_LBFFG_H

#include "lutil.h"

#define KERNEL_META "plume.markov_kernel"

/* The kernel userdata at idx (an error naming fn and arg otherwise). */
plm_bffg_kernel *plm_l_checkmkernel(lua_State *L, int idx, const char *fn, const char *arg);
/* 1 with the kernel's save times (markov_kernel.sde{save = ...}, a sorted list) pushed, 0 with nothing pushed. */
int plm_l_mkernel_save(lua_State *L, int idx);

/* The plume.reactions network at idx, or NULL (l_bffg_reaction.c). */
const struct plm_reactions *plm_l_tonet(lua_State *L, int idx);

/* plume.bffg's method "mcmc" on model m with observed-value overrides vals (l_bffg.c): reads its options from the
** table at index 3 and leaves the posterior on the stack. Must run inside plume.bffg (upvalue 1: the module). */
void plm_l_bffg_mcmc(lua_State *L, const plm_bffg_model *m, const double **vals, lua_Integer n, uint64_t seed, int threads);

#endif
