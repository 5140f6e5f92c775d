/* lbffg.h -- what the BFFG binding files share (internal to lang/): l_mkernel.c makes kernels, l_bffg.c
** builds DAGs and trees from them and runs plume.bffg. */
#ifndef PLM_LBFFG_H
#define PLM_LBFFG_H

#include "lutil.h"

#define KERNEL_META "plume.markov_kernel"

/* The kernel userdata at idx (an error naming fn and arg otherwise). */
plm_bffg_kernel *plm_l_checkmkernel(lua_State *L, int idx, const char *fn, const char *arg);

#endif
